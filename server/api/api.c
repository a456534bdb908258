/*
 * The server API's routes (api.h).
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <msgpack.h>

#include "api/keys.h"
#include "base/mem.h"
#include "core/pub.h"
#include "core/rules.h"
#include "metrics/expo.h"
#include "metrics/metrics.h"

#define API_PREFIX "/api/v1/"

static void answer_json(api_answer *ans, int status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text)
        abort();
    ans->status = status;
    ans->content_type = NULL;
    proto_buf_reset(&ans->body);
    proto_buf_append(&ans->body, text, strlen(text));
    free(text);
}

void api_error(api_answer *ans, int status, int code, const char *message)
{
    answer_json(ans, status,
                json_pack("{s:{s:i,s:s}}", "error", "code", code, "message",
                          message));
}

static int route_info(server *srv, const http1_request *req,
                      const route *reply_to, api_answer *ans)
{
    (void)req;
    (void)reply_to;
    int cluster = srv->cfg->n_redis > 0;
    int down = cluster && atomic_load(&srv->broker_down) > 0;
    json_t *doc = json_pack(
        "{s:s,s:s,s:I,s:i,s:i,s:s}", "node", srv->node, "version",
        HERALD_VERSION, "uptime_s",
        (json_int_t)((server_now_ms(srv) - srv->started_ms) / 1000),
        "connections", (int)atomic_load(&srv->connections), "workers",
        (int)srv->n_workers, "broker",
        !cluster ? "memory" : down ? "down" : "up");
    answer_json(ans, 200, doc);
    return 0;
}

/* The HTTP status of a protocol error code: whose fault, and what to do. */
static int status_of(int code)
{
    switch (code) {
    case PROTO_E_UNAUTHORIZED: return 401;
    case PROTO_E_PERMISSION: return 403;
    case PROTO_E_NOT_AVAILABLE: return 503;
    case PROTO_E_RATE_LIMITED: return 429;
    case PROTO_E_TOO_LARGE: return 413;
    case PROTO_E_INTERNAL: return 500;
    default: return 400;      /* 102, 106, 107: the request itself */
    }
}

static const char *media_type(const http1_request *req)
{
    if (!req->content_type.ptr)
        return "";
    return req->content_type.ptr;
}

/* "application/json", with or without parameters. */
static int is_json(const http1_request *req)
{
    const char *t = media_type(req);
    size_t n = strcspn(t, "; ");
    return n == 16 && strncasecmp(t, "application/json", 16) == 0;
}

static int is_msgpack(const http1_request *req)
{
    const char *t = media_type(req);
    size_t n = strcspn(t, "; ");
    return n == 19 && strncasecmp(t, "application/msgpack", 19) == 0;
}

/* The body {channel, data} in msgpack: the channel into chan (cap bytes)
 * and data in both encodings; 0, or -1 after answering 400. */
static int publish_msgpack(const http1_request *req, char *chan, size_t cap,
                           proto_data *d, void **owned, api_answer *ans)
{
    size_t objlen;
    if (proto_mp_frame(req->body.ptr, req->body.len, &objlen) < 0 ||
        objlen != req->body.len) {
        api_error(ans, 400, PROTO_E_BAD_REQUEST,
                  "the body must be one msgpack map {channel, data}");
        return -1;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    const char *problem = NULL;
    const msgpack_object *data = NULL;
    chan[0] = '\0';
    if (msgpack_unpack_next(&u, req->body.ptr, req->body.len, &off) !=
            MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP) {
        problem = "the body must be one msgpack map {channel, data}";
    } else {
        const msgpack_object_map *m = &u.data.via.map;
        for (uint32_t i = 0; i < m->size && !problem; i++) {
            const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR)
                problem = "map keys must be strings";
            else if (k->via.str.size == 7 &&
                     memcmp(k->via.str.ptr, "channel", 7) == 0) {
                if (v->type != MSGPACK_OBJECT_STR || chan[0] ||
                    v->via.str.size == 0 || v->via.str.size >= cap)
                    problem = "channel (a string) and data are required";
                else if (memchr(v->via.str.ptr, '\0', v->via.str.size))
                    problem = "bad channel name or unknown namespace";
                else {
                    memcpy(chan, v->via.str.ptr, v->via.str.size);
                    chan[v->via.str.size] = '\0';
                }
            } else if (k->via.str.size == 4 &&
                       memcmp(k->via.str.ptr, "data", 4) == 0 && !data) {
                data = v;
            } else {
                problem = "unknown field (a publication has channel and data)";
            }
        }
        if (!problem && (!chan[0] || !data))
            problem = "channel (a string) and data are required";
    }
    if (!problem) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_object(&pk, *data);
        proto_error perr;
        if (proto_data_from_msgpack(sb.data, sb.size, d, owned, &perr)) {
            msgpack_sbuffer_destroy(&sb);
            msgpack_unpacked_destroy(&u);
            api_error(ans, 400, PROTO_E_BAD_REQUEST, perr.message);
            return -1;
        }
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_unpacked_destroy(&u);
    if (problem) {
        api_error(ans, 400, PROTO_E_BAD_REQUEST, problem);
        return -1;
    }
    return 0;
}

/* Checks the channel and its namespace's rules for a backend's publish;
 * 0 with *ns, or -1 after answering. */
static int publish_rules(server *srv, const char *chan, size_t clen,
                         const config_ns **ns, api_answer *ans)
{
    rules_who who = { .anonymous = 0, .client = 0 };
    int code = proto_channel_valid(chan, clen)
                   ? rules_check(srv->cfg, RULES_PUBLISH, chan, clen, &who, 0,
                                 srv->store != NULL, ns)
                   : PROTO_E_BAD_CHANNEL;
    if (!code)
        return 0;
    api_error(ans, status_of(code), code,
              code == PROTO_E_BAD_CHANNEL
                  ? "bad channel name or unknown namespace"
                  : "not allowed in this channel's namespace");
    return -1;
}

/* A publication is pushed to subscribers in one frame: no larger than a
 * client may publish (max_message_size), or it would close every
 * subscriber whose send queue it overflows. 0, or -1 after answering. */
static int publish_size(server *srv, const proto_data *d, api_answer *ans)
{
    size_t max = srv->cfg->max_message_size;
    if (d->json.len <= max && d->mp.len <= max)
        return 0;
    api_error(ans, 413, PROTO_E_TOO_LARGE,
              "data larger than max_message_size");
    return -1;
}

/* Sends the publication to the channel's owner (the draft copies d). */
static void publish_post(server *srv, const char *chan, size_t clen,
                         const config_ns *ns, const proto_data *d,
                         const route *reply_to)
{
    pub_req *r = chan_req_new(sizeof(pub_req), OWN_PUBLISH, chan, clen, "", 0);
    r->h.route = *reply_to;
    r->h.ns = ns;
    r->p = pub_draft((proto_slice){ chan, clen }, d, NULL);
    metrics_worker *m = metrics_of(srv->metrics, reply_to->worker);
    if (m)
        metrics_add(&m->received[METRICS_SRC_API], 1);
    server_post(srv, server_owner(srv, r->h.chan, r->h.chan_len), &r->h.hdr);
}

/* POST /api/v1/publish {"channel": "...", "data": ...}: the publication a
 * client's publish makes (offsets, history, the durable store, cluster).
 * The body is JSON, or msgpack with Content-Type application/msgpack. */
static int route_publish(server *srv, const http1_request *req,
                         const route *reply_to, api_answer *ans)
{
    if (is_msgpack(req)) {
        char chan[256];
        proto_data d;
        void *owned = NULL;
        const config_ns *ns = NULL;
        if (publish_msgpack(req, chan, sizeof(chan), &d, &owned, ans) < 0)
            return 0;
        if (publish_size(srv, &d, ans) < 0 ||
            publish_rules(srv, chan, strlen(chan), &ns, ans) < 0) {
            free(owned);
            return 0;
        }
        publish_post(srv, chan, strlen(chan), ns, &d, reply_to);
        free(owned);
        return 1;
    }
    if (!is_json(req)) {
        api_error(ans, 415, PROTO_E_BAD_REQUEST,
                  "Content-Type must be application/json or "
                  "application/msgpack");
        return 0;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(req->body.ptr, req->body.len,
                             JSON_REJECT_DUPLICATES, &jerr);
    if (!doc || !json_is_object(doc)) {
        json_decref(doc);
        api_error(ans, 400, PROTO_E_BAD_REQUEST,
                  "the body must be a JSON object {\"channel\", \"data\"}");
        return 0;
    }
    const char *key;
    json_t *v, *jchan = NULL, *data = NULL;
    json_object_foreach(doc, key, v) {
        if (strcmp(key, "channel") == 0)
            jchan = v;
        else if (strcmp(key, "data") == 0)
            data = v;
        else {
            json_decref(doc);
            api_error(ans, 400, PROTO_E_BAD_REQUEST,
                      "unknown field (a publication has channel and data)");
            return 0;
        }
    }
    if (!json_is_string(jchan) || !data) {
        json_decref(doc);
        api_error(ans, 400, PROTO_E_BAD_REQUEST,
                  "channel (a string) and data are required");
        return 0;
    }
    const char *chan = json_string_value(jchan);
    size_t clen = json_string_length(jchan);
    const config_ns *ns = NULL;
    if (publish_rules(srv, chan, clen, &ns, ans) < 0) {
        json_decref(doc);
        return 0;
    }
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        abort();
    proto_data d;
    void *owned = NULL;
    proto_error perr;
    if (proto_data_from_json(text, strlen(text), &d, &owned, &perr)) {
        free(text);
        json_decref(doc);
        api_error(ans, 400, PROTO_E_BAD_REQUEST, perr.message);
        return 0;
    }
    if (publish_size(srv, &d, ans) < 0) {
        free(owned);
        free(text);
        json_decref(doc);
        return 0;
    }
    publish_post(srv, chan, clen, ns, &d, reply_to);
    free(owned);
    free(text);
    json_decref(doc);
    return 1;
}

/* A query parameter: 1 with the value, 0 absent; a malformed one (or one
 * given twice) answers 400 naming it and returns -1. */
static int param(const http1_request *req, const char *name, char *out,
                 size_t cap, api_answer *ans)
{
    size_t len;
    int r = http1_query_get(&req->query, name, out, cap, &len);
    if (r < 0) {
        char text[96];
        snprintf(text, sizeof(text), "query parameter %s: malformed, too long "
                 "or given twice", name);
        api_error(ans, 400, PROTO_E_BAD_REQUEST, text);
    }
    return r;
}

/* A non-negative integer parameter (decimal digits only). */
static int param_u64(const http1_request *req, const char *name,
                     uint64_t *out, api_answer *ans)
{
    char v[24];
    int r = param(req, name, v, sizeof(v), ans);
    if (r <= 0)
        return r;
    uint64_t n = 0;
    size_t i = 0;
    for (; v[i]; i++) {
        unsigned d = (unsigned)(v[i] - '0');
        if (d > 9 || n > (UINT64_MAX - d) / 10)
            break;
        n = n * 10 + d;
    }
    if (!i || v[i]) {
        char text[96];
        snprintf(text, sizeof(text), "query parameter %s: expected a "
                 "non-negative integer", name);
        api_error(ans, 400, PROTO_E_BAD_REQUEST, text);
        return -1;
    }
    *out = n;
    return 1;
}

/* The channel parameter, checked against the namespace rules for op. */
static int param_channel(server *srv, const http1_request *req,
                         enum rules_op op, uint32_t limit, char *chan,
                         size_t cap, const config_ns **ns, api_answer *ans)
{
    int r = param(req, "channel", chan, cap, ans);
    if (r < 0)
        return -1;
    if (r == 0) {
        api_error(ans, 400, PROTO_E_BAD_REQUEST,
                  "query parameter channel is required");
        return -1;
    }
    size_t clen = strlen(chan);
    rules_who who = { .anonymous = 0, .client = 0 };
    int code = proto_channel_valid(chan, clen)
                   ? rules_check(srv->cfg, op, chan, clen, &who, limit,
                                 srv->store != NULL, ns)
                   : PROTO_E_BAD_CHANNEL;
    if (code) {
        api_error(ans, status_of(code), code,
                  code == PROTO_E_BAD_CHANNEL
                      ? "bad channel name or unknown namespace"
                  : code == PROTO_E_NOT_AVAILABLE
                      ? "not available in this channel's namespace"
                      : "not allowed in this channel's namespace");
        return -1;
    }
    return 0;
}

/* GET /api/v1/history?channel=&limit=&since_offset=&since_epoch=&reverse= */
static int route_history(server *srv, const http1_request *req,
                         const route *reply_to, api_answer *ans)
{
    uint64_t limit = rules_history_default_limit(srv->cfg), since = 0;
    char epoch[IDS_LEN + 2], rev[8], chan[256];
    int has_limit = param_u64(req, "limit", &limit, ans);
    int has_since = has_limit < 0 ? -1 : param_u64(req, "since_offset", &since, ans);
    int has_epoch = has_since < 0 ? -1 : param(req, "since_epoch", epoch,
                                               sizeof(epoch), ans);
    int has_rev = has_epoch < 0 ? -1 : param(req, "reverse", rev, sizeof(rev), ans);
    if (has_rev < 0)
        return 0;
    if (has_since != has_epoch) {
        api_error(ans, 400, PROTO_E_BAD_REQUEST,
                  "since_offset and since_epoch go together");
        return 0;
    }
    if (has_rev && strcmp(rev, "true") != 0 && strcmp(rev, "false") != 0) {
        api_error(ans, 400, PROTO_E_BAD_REQUEST,
                  "query parameter reverse: expected true or false");
        return 0;
    }
    if (limit > UINT32_MAX)
        limit = UINT32_MAX;
    const config_ns *ns = NULL;
    if (param_channel(srv, req, RULES_HISTORY, (uint32_t)limit, chan,
                      sizeof(chan), &ns, ans) < 0)
        return 0;
    hist_req *r = chan_req_new(sizeof(hist_req), OWN_HISTORY, chan,
                               strlen(chan), "", 0);
    r->h.route = *reply_to;
    r->h.ns = ns;
    r->limit = (uint32_t)limit;
    r->reverse = has_rev && rev[0] == 't';
    r->has_since = (uint8_t)(has_since > 0);
    if (has_since > 0) {
        r->since.offset = since;
        size_t elen = strlen(epoch);
        if (elen <= IDS_LEN) {
            memcpy(r->since.epoch, epoch, elen);
            r->since.epoch_len = (uint8_t)elen;
        } else {
            r->since.epoch_len = UINT8_MAX;   /* no epoch is that long */
        }
    }
    server_post(srv, server_owner(srv, r->h.chan, r->h.chan_len), &r->h.hdr);
    return 1;
}

/* GET /api/v1/presence?channel= */
static int route_presence(server *srv, const http1_request *req,
                          const route *reply_to, api_answer *ans)
{
    char chan[256];
    const config_ns *ns = NULL;
    if (param_channel(srv, req, RULES_PRESENCE, 0, chan, sizeof(chan), &ns,
                      ans) < 0)
        return 0;
    pres_req *r = chan_req_new(sizeof(pres_req), OWN_PRESENCE, chan,
                               strlen(chan), "", 0);
    r->h.route = *reply_to;
    r->h.ns = ns;
    server_post(srv, server_owner(srv, r->h.chan, r->h.chan_len), &r->h.hdr);
    return 1;
}

void api_reply(const msg *m, api_answer *ans)
{
    const chan_req *r = (const chan_req *)m;
    ans->extra[0] = '\0';
    ans->content_type = NULL;
    if (r->code) {
        api_error(ans, status_of(r->code), r->code,
                  r->errmsg ? r->errmsg : "refused by the channel's owner");
        return;
    }
    if (m->type == CON_PUBLISHED) {
        const pub_req *p = (const pub_req *)m;
        answer_json(ans, 200,
                    json_pack("{s:I,s:s%}", "offset", (json_int_t)p->offset,
                              "epoch", p->epoch, (size_t)IDS_LEN));
        return;
    }
    ans->status = 200;
    proto_buf_reset(&ans->body);
    if (m->type == CON_HISTORY) {
        const hist_req *h = (const hist_req *)m;
        proto_pub *v = h->pubs.n ? mem_alloc(sizeof(*v) * h->pubs.n) : NULL;
        for (size_t i = 0; i < h->pubs.n; i++)
            v[i] = h->pubs.v[i]->view;
        proto_enc_history_result(&ans->body, PROTO_JSON,
                                 (proto_slice){ h->epoch, IDS_LEN }, h->top, v,
                                 h->pubs.n);
        free(v);
        return;
    }
    const pres_req *p = (const pres_req *)m;
    proto_enc_presence_result(&ans->body, PROTO_JSON, p->entries,
                              p->n_entries);
}

/* The routes and their methods; a known path with another method is 405
 * (with Allow), an unknown one 404. */
static const struct {
    const char *path;
    enum http_method method;
    const char *allow;
    int (*fn)(server *srv, const http1_request *req, const route *reply_to,
              api_answer *ans);
} routes[] = {
    { API_PREFIX "info", HTTP_GET, "GET", route_info },
    { API_PREFIX "publish", HTTP_POST, "POST", route_publish },
    { API_PREFIX "history", HTTP_GET, "GET", route_history },
    { API_PREFIX "presence", HTTP_GET, "GET", route_presence },
};

/* GET /metrics: the Prometheus exposition (docs/metrics.md), open unless
 * metrics_key is set; 404 with `metrics = false`. */
static int route_metrics(server *srv, const http1_request *req,
                         api_answer *ans)
{
    if (!srv->metrics) {
        api_error(ans, 404, PROTO_E_BAD_REQUEST,
                  "no such route (metrics = false)");
        return 0;
    }
    if (req->method != HTTP_GET) {
        snprintf(ans->extra, sizeof(ans->extra), "Allow: GET\r\n");
        api_error(ans, 405, PROTO_E_BAD_REQUEST, "method not allowed");
        return 0;
    }
    if (!metrics_authorized(srv, req->authorization.ptr,
                            req->authorization.len)) {
        snprintf(ans->extra, sizeof(ans->extra),
                 "WWW-Authenticate: apikey\r\n");
        api_error(ans, 401, PROTO_E_UNAUTHORIZED,
                  req->authorization.ptr ? "unknown metrics key"
                                         : "missing Authorization: apikey KEY");
        return 0;
    }
    ans->status = 200;
    ans->content_type = METRICS_CONTENT_TYPE;
    proto_buf_reset(&ans->body);
    metrics_render(srv, &ans->body);
    return 0;
}

int api_route(server *srv, const http1_request *req, uint64_t now_ms,
              const route *reply_to, api_answer *ans)
{
    ans->extra[0] = '\0';
    ans->content_type = NULL;
    if (strcmp(req->path.ptr, "/metrics") == 0)
        return route_metrics(srv, req, ans);
    api_keys *keys = srv->api_keys;
    if (!keys || api_keys_count(keys) == 0) {
        api_error(ans, 503, PROTO_E_NOT_AVAILABLE,
                  "no API keys configured (api_keys, HERALD_API_KEY)");
        return 0;
    }
    int key = api_keys_match(keys, req->authorization.ptr,
                             req->authorization.len);
    if (key < 0) {
        snprintf(ans->extra, sizeof(ans->extra),
                 "WWW-Authenticate: apikey\r\n");
        api_error(ans, 401, PROTO_E_UNAUTHORIZED,
                  req->authorization.ptr ? "unknown API key"
                                         : "missing Authorization: apikey KEY");
        return 0;
    }
    uint64_t wait = api_keys_take(keys, key, now_ms);
    if (wait) {
        snprintf(ans->extra, sizeof(ans->extra), "Retry-After: %llu\r\n",
                 (unsigned long long)((wait + 999) / 1000));
        api_error(ans, 429, PROTO_E_RATE_LIMITED, "rate limit of this API key");
        return 0;
    }
    const char *allow = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(req->path.ptr, routes[i].path) != 0)
            continue;
        allow = routes[i].allow;
        if (req->method != routes[i].method)
            continue;
        return routes[i].fn(srv, req, reply_to, ans);
    }
    if (allow) {
        snprintf(ans->extra, sizeof(ans->extra), "Allow: %s\r\n", allow);
        api_error(ans, 405, PROTO_E_BAD_REQUEST, "method not allowed");
        return 0;
    }
    api_error(ans, 404, PROTO_E_BAD_REQUEST, "no such API route");
    return 0;
}
