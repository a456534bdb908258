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

#include "api/body.h"
#include "api/keys.h"
#include "base/mem.h"
#include "core/pub.h"
#include "core/rules.h"

#define API_PREFIX "/api/v1/"
#define API_BROADCAST_MAX 1000
#define API_BROADCAST_BYTES (16u << 20)
#define API_CHANNELS_MAX 10000

static void answer_json(api_answer *ans, int status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text)
        abort();
    ans->status = status;
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
                      const route *reply_to, api_answer *ans, api_call **call)
{
    (void)req;
    (void)reply_to;
    (void)call;
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

/* The status of an owner's refusal: 106 from an owner is its capacity
 * (max_channels), not the caller's mistake. */
static int status_of_owner(int code)
{
    return code == PROTO_E_LIMIT ? 503 : status_of(code);
}

/* --- calls waiting for replies ------------------------------------------ */

enum call_kind { CALL_ONE, CALL_BROADCAST, CALL_CHANNELS, CALL_DISCONNECT };

typedef struct bc_result {
    const char *chan;         /* into the call's allocation */
    int code;                 /* 0 published, or refused with code */
    const char *message;      /* static text for code */
    uint8_t done;
    uint64_t offset;
    char epoch[IDS_LEN + 1];
} bc_result;

struct api_call {
    enum call_kind kind;
    uint32_t expected, got;
    api_answer one;           /* CALL_ONE: the answer to its reply */
    size_t n;                 /* CALL_BROADCAST: results, request order */
    bc_result *res;
    chan_count *chans;        /* CALL_CHANNELS: every worker's, merged */
    size_t n_chans;
    uint32_t limit;
    uint8_t truncated;
    uint32_t closed;          /* CALL_DISCONNECT: connections closed */
};

static api_call *call_new(enum call_kind kind, uint32_t expected)
{
    api_call *c = mem_calloc(1, sizeof(*c));
    c->kind = kind;
    c->expected = expected;
    proto_buf_init(&c->one.body, 0);
    return c;
}

void api_call_free(api_call *call)
{
    if (!call)
        return;
    proto_buf_free(&call->one.body);
    if (call->res) {
        for (size_t i = 0; i < call->n; i++)
            free((char *)call->res[i].chan);
        free(call->res);
    }
    for (size_t i = 0; i < call->n_chans; i++)
        free(call->chans[i].name);
    free(call->chans);
    free(call);
}

/* --- POST /api/v1/publish and /api/v1/broadcast --------------------------- */

/* Checks a channel and its namespace's rules for a backend's publish: 0
 * with *ns, or the protocol code (and *message). */
static int publish_check(server *srv, const char *chan, size_t clen,
                         const config_ns **ns, const char **message)
{
    rules_who who = { .anonymous = 0, .client = 0 };
    int code = proto_channel_valid(chan, clen)
                   ? rules_check(srv->cfg, RULES_PUBLISH, chan, clen, &who, 0,
                                 srv->store != NULL, ns)
                   : PROTO_E_BAD_CHANNEL;
    *message = code == PROTO_E_BAD_CHANNEL
                   ? "bad channel name or unknown namespace"
                   : "not allowed in this channel's namespace";
    return code;
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
    server_post(srv, server_owner(srv, r->h.chan, r->h.chan_len), &r->h.hdr);
}

/* POST /api/v1/publish {"channel": "...", "data": ...}: the publication a
 * client's publish makes (offsets, history, the durable store, cluster). */
static int route_publish(server *srv, const http1_request *req,
                         const route *reply_to, api_answer *ans,
                         api_call **call)
{
    static const char *const fields[] = { "channel", "data", NULL };
    api_body b;
    char chan[256];
    proto_data d;
    void *owned = NULL;
    const config_ns *ns = NULL;
    int posted = 0;
    if (api_body_parse(req, &b, ans) < 0)
        return 0;
    int has = api_body_only(&b, fields, ans) < 0
                  ? -1
                  : api_body_string(&b, "channel", chan, sizeof(chan), ans);
    if (has == 0)
        api_error(ans, 400, PROTO_E_BAD_REQUEST, "field channel is required");
    if (has > 0 && api_body_data(&b, &d, &owned, ans) == 0 &&
        publish_size(srv, &d, ans) == 0) {
        const char *message;
        int code = publish_check(srv, chan, strlen(chan), &ns, &message);
        if (code) {
            api_error(ans, status_of(code), code, message);
        } else {
            publish_post(srv, chan, strlen(chan), ns, &d, reply_to);
            *call = call_new(CALL_ONE, 1);
            posted = 1;
        }
    }
    free(owned);
    api_body_free(&b);
    return posted;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The "channels" field of a broadcast: 1..API_BROADCAST_MAX distinct
 * strings. 0, or -1 after answering 400. */
static int broadcast_channels(const api_body *b, json_t **out,
                              api_answer *ans)
{
    json_t *list = json_object_get(b->doc, "channels");
    size_t n = json_array_size(list);
    if (!json_is_array(list) || n == 0 || n > API_BROADCAST_MAX) {
        char text[96];
        snprintf(text, sizeof(text), "field channels: expected an array of "
                 "1 to %d channel names", API_BROADCAST_MAX);
        api_error(ans, 400, PROTO_E_BAD_REQUEST, text);
        return -1;
    }
    const char **names = mem_alloc(n * sizeof(*names));
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        json_t *v = json_array_get(list, i);
        ok = json_is_string(v) && json_string_length(v) > 0 &&
             json_string_length(v) < 256 &&
             strlen(json_string_value(v)) == json_string_length(v);
        names[i] = ok ? json_string_value(v) : NULL;
    }
    if (ok) {
        qsort(names, n, sizeof(*names), str_cmp);
        for (size_t i = 1; i < n && ok; i++)
            ok = strcmp(names[i - 1], names[i]) != 0;
        if (!ok)
            api_error(ans, 400, PROTO_E_BAD_REQUEST,
                      "field channels: a channel is named twice");
    } else {
        api_error(ans, 400, PROTO_E_BAD_REQUEST,
                  "field channels: every channel is a string of 1 to 255 "
                  "bytes");
    }
    free(names);
    *out = list;
    return ok ? 0 : -1;
}

/* POST /api/v1/broadcast {"channels": [...], "data": ...}: one publication
 * per channel, answered with a result per channel in request order once
 * every owner replied (a refused channel has its error in its result). */
static int route_broadcast(server *srv, const http1_request *req,
                           const route *reply_to, api_answer *ans,
                           api_call **call)
{
    static const char *const fields[] = { "channels", "data", NULL };
    api_body b;
    json_t *list = NULL;
    proto_data d;
    void *owned = NULL;
    if (api_body_parse(req, &b, ans) < 0)
        return 0;
    if (api_body_only(&b, fields, ans) < 0 ||
        broadcast_channels(&b, &list, ans) < 0 ||
        api_body_data(&b, &d, &owned, ans) < 0 ||
        publish_size(srv, &d, ans) < 0) {
        free(owned);
        api_body_free(&b);
        return 0;
    }
    size_t n = json_array_size(list);
    /* every channel gets its own copy of the data (a publication carries
     * its channel and offset): bounded per request */
    if (n * (d.json.len + d.mp.len) > API_BROADCAST_BYTES) {
        free(owned);
        api_body_free(&b);
        api_error(ans, 413, PROTO_E_TOO_LARGE,
                  "channels x data larger than the broadcast limit (16 MiB)");
        return 0;
    }
    api_call *c = call_new(CALL_BROADCAST, 0);
    c->n = n;
    c->res = mem_calloc(n, sizeof(*c->res));
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(list, i);
        const char *chan = json_string_value(v);
        size_t clen = json_string_length(v);
        bc_result *r = &c->res[i];
        const config_ns *ns = NULL;
        r->chan = mem_strdup(chan);
        r->code = publish_check(srv, chan, clen, &ns, &r->message);
        if (r->code) {
            r->done = 1;
            continue;
        }
        route to = *reply_to;
        to.seq = i;
        publish_post(srv, chan, clen, ns, &d, &to);
        c->expected++;
    }
    free(owned);
    api_body_free(&b);
    if (c->expected) {
        *call = c;
        return (int)c->expected;
    }
    api_call_answer(c, ans, 0);   /* every channel refused */
    api_call_free(c);
    return 0;
}

static void broadcast_answer(const api_call *c, api_answer *ans)
{
    json_t *results = json_array();
    for (size_t i = 0; i < c->n; i++) {
        const bc_result *r = &c->res[i];
        json_t *o;
        if (!r->done)
            o = json_pack("{s:s,s:{s:i,s:s}}", "channel", r->chan, "error",
                          "code", PROTO_E_NOT_AVAILABLE, "message",
                          "no answer in time (api_timeout_ms): the "
                          "publication may have been made");
        else if (r->code)
            o = json_pack("{s:s,s:{s:i,s:s}}", "channel", r->chan, "error",
                          "code", r->code, "message", r->message);
        else
            o = json_pack("{s:s,s:I,s:s}", "channel", r->chan, "offset",
                          (json_int_t)r->offset, "epoch", r->epoch);
        json_array_append_new(results, o);
    }
    answer_json(ans, 200, json_pack("{s:o}", "results", results));
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
                         const route *reply_to, api_answer *ans,
                         api_call **call)
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
    *call = call_new(CALL_ONE, 1);
    return 1;
}

/* GET /api/v1/presence?channel= */
static int route_presence(server *srv, const http1_request *req,
                          const route *reply_to, api_answer *ans,
                          api_call **call)
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
    *call = call_new(CALL_ONE, 1);
    return 1;
}

/* GET /api/v1/channels?prefix=&after=&limit=: the channels with
 * subscribers on this node, by name, with their subscriber counts. Every
 * worker is asked for its first `limit` channels after `after`, so the
 * merged first `limit` have exact counts; "truncated" says there are more
 * (ask again with after = the last name). */
static int route_channels(server *srv, const http1_request *req,
                          const route *reply_to, api_answer *ans,
                          api_call **call)
{
    char prefix[256] = "", after[256] = "";
    uint64_t limit = 1000;
    int r = param(req, "prefix", prefix, sizeof(prefix), ans);
    if (r >= 0)
        r = param(req, "after", after, sizeof(after), ans);
    if (r >= 0)
        r = param_u64(req, "limit", &limit, ans);
    if (r < 0)
        return 0;
    if (limit < 1 || limit > API_CHANNELS_MAX) {
        char text[96];
        snprintf(text, sizeof(text), "query parameter limit: 1 to %d",
                 API_CHANNELS_MAX);
        api_error(ans, 400, PROTO_E_BAD_REQUEST, text);
        return 0;
    }
    api_call *c = call_new(CALL_CHANNELS, srv->n_workers);
    c->limit = (uint32_t)limit;
    for (uint32_t w = 0; w < srv->n_workers; w++) {
        chans_ask *a = chans_ask_new();
        a->route = *reply_to;
        memcpy(a->prefix, prefix, sizeof(prefix));
        memcpy(a->after, after, sizeof(after));
        a->limit = (uint32_t)limit;
        server_post(srv, (uint16_t)w, &a->hdr);
    }
    *call = c;
    return (int)c->expected;
}

static int count_cmp(const void *x, const void *y)
{
    return strcmp(((const chan_count *)x)->name, ((const chan_count *)y)->name);
}

/* Merges a worker's answer in (names taken from the message). */
static void channels_take(api_call *c, chans_ask *a)
{
    c->truncated |= a->truncated;
    if (!a->n)
        return;
    c->chans = mem_realloc_array(c->chans, c->n_chans + a->n,
                                 sizeof(*c->chans));
    memcpy(c->chans + c->n_chans, a->v, a->n * sizeof(*a->v));
    c->n_chans += a->n;
    a->n = 0;                 /* the names are the call's now */
}

static void channels_answer(api_call *c, api_answer *ans)
{
    if (c->n_chans)
        qsort(c->chans, c->n_chans, sizeof(*c->chans), count_cmp);
    json_t *list = json_array();
    size_t kept = 0;
    for (size_t i = 0; i < c->n_chans; i++) {
        uint64_t subs = c->chans[i].subs;
        while (i + 1 < c->n_chans &&
               strcmp(c->chans[i].name, c->chans[i + 1].name) == 0)
            subs += c->chans[++i].subs;
        if (kept == c->limit) {
            c->truncated = 1;
            break;
        }
        json_array_append_new(list,
                              json_pack("{s:s,s:I}", "channel",
                                        c->chans[i].name, "subscribers",
                                        (json_int_t)subs));
        kept++;
    }
    answer_json(ans, 200, json_pack("{s:o,s:b}", "channels", list,
                                    "truncated", c->truncated));
}

/* POST /api/v1/disconnect {"user": "..."} or {"client": "..."}, "code"?
 * (4000-4999, default 4102), "reconnect"? (false): closes the matching
 * connections on this node; answers how many. */
static int route_disconnect(server *srv, const http1_request *req,
                            const route *reply_to, api_answer *ans,
                            api_call **call)
{
    static const char *const fields[] = { "user", "client", "code",
                                          "reconnect", NULL };
    api_body b;
    disc_ask proto = { .code = PROTO_CLOSE_KICKED };
    if (api_body_parse(req, &b, ans) < 0)
        return 0;
    int has_user = api_body_only(&b, fields, ans) < 0
                       ? -1
                       : api_body_string(&b, "user", proto.user,
                                         sizeof(proto.user), ans);
    int has_client = has_user < 0 ? -1
                                  : api_body_string(&b, "client", proto.client,
                                                    sizeof(proto.client), ans);
    json_t *code = json_object_get(b.doc, "code"),
           *rec = json_object_get(b.doc, "reconnect");
    const char *problem = NULL;
    if (has_client < 0)
        ;
    else if (has_user + has_client != 1)
        problem = "exactly one of user and client is required";
    else if (code && (!json_is_integer(code) ||
                      json_integer_value(code) < 4000 ||
                      json_integer_value(code) > 4999))
        problem = "field code: an integer from 4000 to 4999";
    else if (rec && !json_is_boolean(rec))
        problem = "field reconnect: true or false";
    if (problem)
        api_error(ans, 400, PROTO_E_BAD_REQUEST, problem);
    if (problem || has_client < 0) {
        api_body_free(&b);
        return 0;
    }
    if (code)
        proto.code = (uint16_t)json_integer_value(code);
    proto.reconnect = rec && json_is_true(rec);
    api_body_free(&b);
    for (uint32_t w = 0; w < srv->n_workers; w++) {
        disc_ask *a = disc_ask_new();
        a->route = *reply_to;
        memcpy(a->user, proto.user, sizeof(a->user));
        memcpy(a->client, proto.client, sizeof(a->client));
        a->code = proto.code;
        a->reconnect = proto.reconnect;
        server_post(srv, (uint16_t)w, &a->hdr);
    }
    *call = call_new(CALL_DISCONNECT, srv->n_workers);
    return (int)srv->n_workers;
}

/* The answer to an owner's reply to a single-request call. */
static void reply_answer(const msg *m, api_answer *ans)
{
    const chan_req *r = (const chan_req *)m;
    ans->extra[0] = '\0';
    if (r->code) {
        api_error(ans, status_of_owner(r->code), r->code,
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

int api_call_take(api_call *call, msg *m)
{
    if (call->kind == CALL_ONE) {
        reply_answer(m, &call->one);
    } else if (call->kind == CALL_CHANNELS) {
        if (m->type != CON_CHANNELS_DONE)
            return call->got >= call->expected;
        channels_take(call, (chans_ask *)m);
    } else if (call->kind == CALL_DISCONNECT) {
        if (m->type != CON_DISCONNECT_DONE)
            return call->got >= call->expected;
        call->closed += ((const disc_ask *)m)->closed;
    } else {
        const pub_req *p = (const pub_req *)m;
        uint64_t i = p->h.route.seq;
        if (m->type != CON_PUBLISHED || i >= call->n || call->res[i].done)
            return call->got >= call->expected;   /* not ours: ignored */
        bc_result *r = &call->res[i];
        r->done = 1;
        r->code = p->h.code;
        r->message = p->h.errmsg ? p->h.errmsg
                                 : "refused by the channel's owner";
        r->offset = p->offset;
        memcpy(r->epoch, p->epoch, IDS_LEN);
        r->epoch[IDS_LEN] = '\0';
    }
    call->got++;
    return call->got >= call->expected;
}

void api_call_answer(api_call *call, api_answer *ans, int timed_out)
{
    ans->extra[0] = '\0';
    if (call->kind == CALL_BROADCAST) {
        broadcast_answer(call, ans);
        return;
    }
    if (call->kind == CALL_CHANNELS && !timed_out) {
        channels_answer(call, ans);
        return;
    }
    if (call->kind == CALL_DISCONNECT && !timed_out) {
        answer_json(ans, 200, json_pack("{s:i}", "disconnected",
                                        (int)call->closed));
        return;
    }
    if (timed_out || call->got < call->expected) {
        api_error(ans, 504, PROTO_E_NOT_AVAILABLE,
                  call->kind == CALL_ONE
                      ? "no answer in time (api_timeout_ms): a publication "
                        "may have been made"
                      : "no answer in time (api_timeout_ms)");
        return;
    }
    ans->status = call->one.status;
    memcpy(ans->extra, call->one.extra, sizeof(ans->extra));
    proto_buf_reset(&ans->body);
    proto_buf_append(&ans->body, proto_buf_data(&call->one.body),
                     call->one.body.len);
}

/* The routes and their methods; a known path with another method is 405
 * (with Allow), an unknown one 404. */
static const struct {
    const char *path;
    enum http_method method;
    const char *allow;
    int (*fn)(server *srv, const http1_request *req, const route *reply_to,
              api_answer *ans, api_call **call);
} routes[] = {
    { API_PREFIX "info", HTTP_GET, "GET", route_info },
    { API_PREFIX "publish", HTTP_POST, "POST", route_publish },
    { API_PREFIX "history", HTTP_GET, "GET", route_history },
    { API_PREFIX "presence", HTTP_GET, "GET", route_presence },
    { API_PREFIX "broadcast", HTTP_POST, "POST", route_broadcast },
    { API_PREFIX "channels", HTTP_GET, "GET", route_channels },
    { API_PREFIX "disconnect", HTTP_POST, "POST", route_disconnect },
};

int api_route(server *srv, const http1_request *req, uint64_t now_ms,
              const route *reply_to, api_answer *ans, api_call **call)
{
    ans->extra[0] = '\0';
    *call = NULL;
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
        return routes[i].fn(srv, req, reply_to, ans, call);
    }
    if (allow) {
        snprintf(ans->extra, sizeof(ans->extra), "Allow: %s\r\n", allow);
        api_error(ans, 405, PROTO_E_BAD_REQUEST, "method not allowed");
        return 0;
    }
    api_error(ans, 404, PROTO_E_BAD_REQUEST, "no such API route");
    return 0;
}
