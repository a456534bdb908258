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
#include "api/openapi.h"
#include "base/mem.h"
#include "broker/broker.h"
#include "core/idem.h"
#include "core/node.h"
#include "core/pub.h"
#include "core/rules.h"
#include "metrics/expo.h"
#include "metrics/metrics.h"

#define API_PREFIX "/api/v1/"
#define API_BROADCAST_MAX 1000
#define API_BROADCAST_BYTES (16u << 20)
#define API_CHANNELS_MAX 10000

/* What a route works with. */
typedef struct api_ctx {
    server *srv;
    struct broker *broker;    /* the worker's: asks of every node */
    const http1_request *req;
    const route *to;          /* where owners' replies come back */
    api_answer *ans;          /* an answer made now */
    api_call **call;          /* or the call waiting for replies */
} api_ctx;

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
 * (max_channels), not the caller's mistake; an idempotency key reused
 * with other data is a conflict (409), not a malformed call. */
static int status_of_owner(const chan_req *r)
{
    if (r->code == PROTO_E_BAD_REQUEST && r->errmsg == idem_conflict)
        return 409;
    return r->code == PROTO_E_LIMIT ? 503 : status_of(r->code);
}

/* --- calls waiting for replies ------------------------------------------ */

enum call_kind {
    CALL_ONE, CALL_BROADCAST, CALL_CHANNELS, CALL_DISCONNECT, CALL_INFO
};

/* A channel as one worker counted it. */
typedef struct chan_seen {
    char *name;
    uint32_t subs;
    uint8_t here;             /* a worker of this node */
} chan_seen;

typedef struct bc_result {
    const char *chan;         /* into the call's allocation */
    int code;                 /* 0 published, or refused with code */
    const char *message;      /* static text for code */
    uint8_t done;
    uint8_t duplicate;        /* an idempotent repeat */
    uint64_t offset;
    char epoch[IDS_LEN + 1];
} bc_result;

struct api_call {
    enum call_kind kind;
    uint32_t expected, got;
    api_answer one;           /* CALL_ONE: the answer to its reply */
    size_t n;                 /* CALL_BROADCAST: results, request order */
    bc_result *res;
    chan_seen *chans;         /* CALL_CHANNELS: every worker's */
    size_t n_chans;
    uint32_t limit;
    uint8_t truncated;
    uint32_t closed;          /* CALL_DISCONNECT: connections closed */
    /* cluster mode: asks of every worker of every node */
    uint8_t remote;
    uint8_t sent;             /* expected is known (the ask's receivers) */
    uint8_t failed;           /* the ask could not be sent */
    char node[64];            /* this node */
    json_t *nodes;            /* node -> its info (CALL_INFO), or true */
    json_t *info;             /* CALL_INFO: this node's, at the call */
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
    json_decref(call->nodes);
    json_decref(call->info);
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

/* The body's optional "idempotency_key" (null counts as absent) into key
 * (PROTO_IDEM_KEY_MAX + 1 bytes, "" when none): 0, or -1 after answering
 * 400. */
static int publish_key(const api_body *b, char *key, api_answer *ans)
{
    json_t *v = json_object_get(b->doc, "idempotency_key");
    key[0] = '\0';
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) ||
        !proto_idem_key_valid(json_string_value(v), json_string_length(v))) {
        api_error(ans, 400, PROTO_E_BAD_REQUEST,
                  "idempotency_key must be a string of 1..64 printable ASCII "
                  "characters (no space)");
        return -1;
    }
    memcpy(key, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* Sends the publication to the channel's owner (the draft copies d and
 * the idempotency key, "" for none). */
static void publish_post(server *srv, const char *chan, size_t clen,
                         const config_ns *ns, const proto_data *d,
                         const char *key, const route *reply_to)
{
    pub_req *r = chan_req_new(sizeof(pub_req), OWN_PUBLISH, chan, clen, "", 0);
    r->h.route = *reply_to;
    r->h.ns = ns;
    pub_req_draft(r, d, NULL, (proto_slice){ key, strlen(key) },
                  (proto_slice){ "api", 3 });
    metrics_worker *m = metrics_of(srv->metrics, reply_to->worker);
    if (m)
        metrics_add(&m->received[METRICS_SRC_API], 1);
    server_post(srv, server_owner(srv, r->h.chan, r->h.chan_len), &r->h.hdr);
}

/* POST /api/v1/publish {"channel": "...", "data": ...}: the publication a
 * client's publish makes (offsets, history, the durable store, cluster). */
static int route_publish(api_ctx *x)
{
    static const char *const fields[] = { "channel", "data",
                                          "idempotency_key", NULL };
    api_body b;
    char chan[256], key[PROTO_IDEM_KEY_MAX + 1];
    proto_data d;
    void *owned = NULL;
    const config_ns *ns = NULL;
    int posted = 0;
    if (api_body_parse(x->req, &b, x->ans) < 0)
        return 0;
    int has = api_body_only(&b, fields, x->ans) < 0
                  ? -1
                  : api_body_string(&b, "channel", chan, sizeof(chan), x->ans);
    if (has == 0)
        api_error(x->ans, 400, PROTO_E_BAD_REQUEST, "field channel is required");
    if (has > 0 && publish_key(&b, key, x->ans) == 0 &&
        api_body_data(&b, &d, &owned, x->ans) == 0 &&
        publish_size(x->srv, &d, x->ans) == 0) {
        const char *message;
        int code = publish_check(x->srv, chan, strlen(chan), &ns, &message);
        if (code) {
            api_error(x->ans, status_of(code), code, message);
        } else {
            publish_post(x->srv, chan, strlen(chan), ns, &d, key, x->to);
            *x->call = call_new(CALL_ONE, 1);
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
static int route_broadcast(api_ctx *x)
{
    static const char *const fields[] = { "channels", "data",
                                          "idempotency_key", NULL };
    api_body b;
    char key[PROTO_IDEM_KEY_MAX + 1];
    json_t *list = NULL;
    proto_data d;
    void *owned = NULL;
    if (api_body_parse(x->req, &b, x->ans) < 0)
        return 0;
    if (api_body_only(&b, fields, x->ans) < 0 ||
        broadcast_channels(&b, &list, x->ans) < 0 ||
        publish_key(&b, key, x->ans) < 0 ||
        api_body_data(&b, &d, &owned, x->ans) < 0 ||
        publish_size(x->srv, &d, x->ans) < 0) {
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
        api_error(x->ans, 413, PROTO_E_TOO_LARGE,
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
        r->code = publish_check(x->srv, chan, clen, &ns, &r->message);
        if (r->code) {
            r->done = 1;
            continue;
        }
        route to = *x->to;
        to.seq = i;
        publish_post(x->srv, chan, clen, ns, &d, key, &to);
        c->expected++;
    }
    free(owned);
    api_body_free(&b);
    if (c->expected) {
        *x->call = c;
        return (int)c->expected;
    }
    api_call_answer(c, x->ans, 0);   /* every channel refused */
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
        if (r->done && !r->code && r->duplicate)
            json_object_set_new(o, "duplicate", json_true());
        json_array_append_new(results, o);
    }
    api_answer_json(ans, 200, json_pack("{s:o}", "results", results));
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
static int route_history(api_ctx *x)
{
    uint64_t limit = rules_history_default_limit(x->srv->cfg), since = 0;
    char epoch[IDS_LEN + 2], rev[8], chan[256];
    int has_limit = param_u64(x->req, "limit", &limit, x->ans);
    int has_since = has_limit < 0 ? -1 : param_u64(x->req, "since_offset", &since, x->ans);
    int has_epoch = has_since < 0 ? -1 : param(x->req, "since_epoch", epoch,
                                               sizeof(epoch), x->ans);
    int has_rev = has_epoch < 0 ? -1 : param(x->req, "reverse", rev, sizeof(rev), x->ans);
    if (has_rev < 0)
        return 0;
    if (has_since != has_epoch) {
        api_error(x->ans, 400, PROTO_E_BAD_REQUEST,
                  "since_offset and since_epoch go together");
        return 0;
    }
    if (has_rev && strcmp(rev, "true") != 0 && strcmp(rev, "false") != 0) {
        api_error(x->ans, 400, PROTO_E_BAD_REQUEST,
                  "query parameter reverse: expected true or false");
        return 0;
    }
    if (limit > UINT32_MAX)
        limit = UINT32_MAX;
    const config_ns *ns = NULL;
    if (param_channel(x->srv, x->req, RULES_HISTORY, (uint32_t)limit, chan,
                      sizeof(chan), &ns, x->ans) < 0)
        return 0;
    hist_req *r = chan_req_new(sizeof(hist_req), OWN_HISTORY, chan,
                               strlen(chan), "", 0);
    r->h.route = *x->to;
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
    server_post(x->srv, server_owner(x->srv, r->h.chan, r->h.chan_len), &r->h.hdr);
    *x->call = call_new(CALL_ONE, 1);
    return 1;
}

/* GET /api/v1/presence?channel= */
static int route_presence(api_ctx *x)
{
    char chan[256];
    const config_ns *ns = NULL;
    if (param_channel(x->srv, x->req, RULES_PRESENCE, 0, chan, sizeof(chan), &ns,
                      x->ans) < 0)
        return 0;
    pres_req *r = chan_req_new(sizeof(pres_req), OWN_PRESENCE, chan,
                               strlen(chan), "", 0);
    r->h.route = *x->to;
    r->h.ns = ns;
    server_post(x->srv, server_owner(x->srv, r->h.chan, r->h.chan_len), &r->h.hdr);
    *x->call = call_new(CALL_ONE, 1);
    return 1;
}

/* --- asks of every node (cluster mode) ----------------------------------- */

static int in_cluster(const api_ctx *x)
{
    return x->broker && x->broker->ops->ask_all;
}

/* Sends `ask` (taken) with the call's address to every worker of every
 * node; the call c waits for their answers (api_call_sent says how many).
 * Returns 1, or 0 after answering 503 when the broker cannot send it. */
static int ask_all(api_ctx *x, api_call *c, json_t *ask)
{
    json_object_set_new(ask, "to",
                        json_pack("{s:i,s:I,s:I,s:I}", "w", (int)x->to->worker,
                                  "s", (json_int_t)x->to->slot, "g",
                                  (json_int_t)x->to->gen, "c",
                                  (json_int_t)x->to->cmd_id));
    char *text = json_dumps(ask, JSON_COMPACT);
    json_decref(ask);
    if (!text)
        abort();
    int rc = x->broker->ops->ask_all(x->broker, text, strlen(text), x->to);
    free(text);
    if (rc < 0) {
        api_call_free(c);
        api_error(x->ans, 503, PROTO_E_NOT_AVAILABLE,
                  "broker unavailable: the other nodes cannot be asked");
        return 0;
    }
    c->remote = 1;
    c->expected = 0;
    snprintf(c->node, sizeof(c->node), "%s", x->srv->node);
    c->nodes = json_object();
    *x->call = c;
    return 1;
}

json_t *api_call_answer_parse(const char *body, size_t len, uint16_t worker,
                              route *to)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *t = json_object_get(doc, "to");
    json_int_t w = json_integer_value(json_object_get(t, "w")),
               sl = json_integer_value(json_object_get(t, "s")),
               g = json_integer_value(json_object_get(t, "g")),
               c = json_integer_value(json_object_get(t, "c"));
    if (!json_is_object(t) || w != worker || sl < 0 || sl > UINT32_MAX ||
        g < 0 || g > UINT32_MAX || c < 0 || c > UINT32_MAX ||
        !json_is_string(json_object_get(doc, "node")) ||
        !json_is_object(json_object_get(doc, "result"))) {
        json_decref(doc);
        return NULL;
    }
    *to = (route){ .worker = worker, .api = 1, .slot = (uint32_t)sl,
                   .gen = (uint32_t)g, .cmd_id = (uint32_t)c };
    return doc;
}

/* GET /api/v1/channels?prefix=&after=&limit=: the channels with
 * subscribers on this node, by name, with their subscriber counts. Every
 * worker is asked for its first `limit` channels after `after`, so the
 * merged first `limit` have exact counts; "truncated" says there are more
 * (ask again with after = the last name). */
static int route_channels(api_ctx *x)
{
    char prefix[256] = "", after[256] = "";
    uint64_t limit = 1000;
    int r = param(x->req, "prefix", prefix, sizeof(prefix), x->ans);
    if (r >= 0)
        r = param(x->req, "after", after, sizeof(after), x->ans);
    if (r >= 0)
        r = param_u64(x->req, "limit", &limit, x->ans);
    if (r < 0)
        return 0;
    if (limit < 1 || limit > API_CHANNELS_MAX) {
        char text[96];
        snprintf(text, sizeof(text), "query parameter limit: 1 to %d",
                 API_CHANNELS_MAX);
        api_error(x->ans, 400, PROTO_E_BAD_REQUEST, text);
        return 0;
    }
    api_call *c = call_new(CALL_CHANNELS, x->srv->n_workers);
    c->limit = (uint32_t)limit;
    if (in_cluster(x))
        return ask_all(x, c, json_pack("{s:s,s:s,s:s,s:I}", "op", "channels",
                                       "prefix", prefix, "after", after,
                                       "limit", (json_int_t)limit));
    for (uint32_t w = 0; w < x->srv->n_workers; w++) {
        chans_ask *a = chans_ask_new();
        a->route = *x->to;
        memcpy(a->prefix, prefix, sizeof(prefix));
        memcpy(a->after, after, sizeof(after));
        a->limit = (uint32_t)limit;
        server_post(x->srv, (uint16_t)w, &a->hdr);
    }
    *x->call = c;
    return (int)c->expected;
}

static int seen_cmp(const void *x, const void *y)
{
    return strcmp(((const chan_seen *)x)->name, ((const chan_seen *)y)->name);
}

static void channels_add(api_call *c, char *name, uint32_t subs, int here)
{
    if ((c->n_chans & (c->n_chans + 1)) == 0 || !c->chans)
        c->chans = mem_realloc_array(c->chans, 2 * c->n_chans + 1,
                                     sizeof(*c->chans));
    c->chans[c->n_chans++] = (chan_seen){ name, subs, (uint8_t)here };
}

/* Merges a worker's answer in (names taken from the message). */
static void channels_take(api_call *c, chans_ask *a)
{
    c->truncated |= a->truncated;
    for (size_t i = 0; i < a->n; i++)
        channels_add(c, a->v[i].name, a->v[i].subs, 1);
    a->n = 0;                 /* the names are the call's now */
}

/* The same from another node's answer: {"channels": [[name, n], ...],
 * "truncated": bool}, at most the call's limit of names. */
static void channels_take_remote(api_call *c, json_t *result, int here)
{
    json_t *list = json_object_get(result, "channels");
    size_t n = json_array_size(list);
    c->truncated |= json_is_true(json_object_get(result, "truncated")) ||
                    n > c->limit;
    for (size_t i = 0; i < n && i < c->limit; i++) {
        json_t *e = json_array_get(list, i);
        const char *name = json_string_value(json_array_get(e, 0));
        json_int_t subs = json_integer_value(json_array_get(e, 1));
        if (name && proto_channel_valid(name, strlen(name)) && subs > 0 &&
            subs <= UINT32_MAX)
            channels_add(c, mem_strdup(name), (uint32_t)subs, here);
    }
}

static void channels_answer(api_call *c, api_answer *ans)
{
    if (c->n_chans)
        qsort(c->chans, c->n_chans, sizeof(*c->chans), seen_cmp);
    json_t *list = json_array();
    size_t kept = 0;
    for (size_t i = 0; i < c->n_chans; i++) {
        uint64_t here = 0, all = 0;
        size_t j = i;
        for (; j < c->n_chans && strcmp(c->chans[i].name, c->chans[j].name) == 0;
             j++) {
            all += c->chans[j].subs;
            here += c->chans[j].here ? c->chans[j].subs : 0;
        }
        if (kept == c->limit) {
            c->truncated = 1;
            break;
        }
        json_t *o = json_pack("{s:s,s:I}", "channel", c->chans[i].name,
                              "subscribers", (json_int_t)here);
        if (c->remote)
            json_object_set_new(o, "cluster_subscribers",
                                json_integer((json_int_t)all));
        json_array_append_new(list, o);
        kept++;
        i = j - 1;
    }
    api_answer_json(ans, 200, json_pack("{s:o,s:b}", "channels", list,
                                    "truncated", c->truncated));
}

static int call_complete(const api_call *c)
{
    return c->failed || (c->sent && c->got >= c->expected);
}

int api_call_take_answer(api_call *call, json_t *answer)
{
    if (!call->remote)
        return 0;
    const char *node = json_string_value(json_object_get(answer, "node"));
    json_t *result = json_object_get(answer, "result");
    int here = strcmp(node, call->node) == 0;
    if (call->kind == CALL_CHANNELS) {
        channels_take_remote(call, result, here);
    } else if (call->kind == CALL_DISCONNECT) {
        json_int_t n = json_integer_value(json_object_get(result, "closed"));
        if (n > 0 && n <= UINT32_MAX)
            call->closed += (uint32_t)n;
    }
    if (!json_object_get(call->nodes, node))
        json_object_set(call->nodes, node,
                        call->kind == CALL_INFO ? result : json_true());
    call->got++;
    return call_complete(call);
}

int api_call_sent(api_call *call, long receivers)
{
    if (!call->remote)
        return 0;
    if (receivers < 0)
        call->failed = 1;
    else
        call->expected = (uint32_t)receivers;
    call->sent = 1;
    return call_complete(call);
}

/* The answer of an ask of every node. */
static void remote_answer(api_call *c, api_answer *ans, int timed_out)
{
    if (c->failed) {
        api_error(ans, 503, PROTO_E_NOT_AVAILABLE,
                  "broker unavailable: the other nodes cannot be asked");
        return;
    }
    if (timed_out || !c->sent || c->got < c->expected) {
        char text[160];
        if (c->sent)
            snprintf(text, sizeof(text), "no answer in time (api_timeout_ms):"
                     " %u of %u workers answered", c->got, c->expected);
        else
            snprintf(text, sizeof(text), "no answer in time (api_timeout_ms):"
                     " the broker did not confirm the ask");
        api_error(ans, 504, PROTO_E_NOT_AVAILABLE, text);
        return;
    }
    if (c->kind == CALL_CHANNELS) {
        channels_answer(c, ans);
    } else if (c->kind == CALL_DISCONNECT) {
        api_answer_json(ans, 200, json_pack("{s:i,s:i}", "disconnected",
                                        (int)c->closed, "nodes",
                                        (int)json_object_size(c->nodes)));
    } else {
        /* this node, then every node that answered, by name */
        size_t n = json_object_size(c->nodes), i = 0;
        const char **names = mem_alloc((n + 1) * sizeof(*names));
        const char *name;
        json_t *v, *doc = json_deep_copy(c->info), *list = json_array();
        json_object_foreach(c->nodes, name, v)
            names[i++] = name;
        qsort(names, n, sizeof(*names), str_cmp);
        for (i = 0; i < n; i++)
            json_array_append(list, json_object_get(c->nodes, names[i]));
        free(names);
        json_object_set_new(doc, "nodes", list);
        api_answer_json(ans, 200, doc);
    }
}

/* GET /api/v1/info: this node (node, version, uptime, connections,
 * workers, channels, broker, store); in cluster mode "nodes": every node
 * that answered, this one included. */
static int route_info(api_ctx *x)
{
    if (!in_cluster(x)) {
        api_answer_json(x->ans, 200, node_info(x->srv));
        return 0;
    }
    api_call *c = call_new(CALL_INFO, 0);
    c->info = node_info(x->srv);
    return ask_all(x, c, json_pack("{s:s}", "op", "info"));
}

/* POST /api/v1/disconnect {"user": "..."} or {"client": "..."}, "code"?
 * (4000-4999, default 4102), "reconnect"? (false): closes the matching
 * connections on this node; answers how many. */
static int route_disconnect(api_ctx *x)
{
    static const char *const fields[] = { "user", "client", "code",
                                          "reconnect", NULL };
    api_body b;
    disc_ask proto = { .code = PROTO_CLOSE_KICKED };
    if (api_body_parse(x->req, &b, x->ans) < 0)
        return 0;
    int has_user = api_body_only(&b, fields, x->ans) < 0
                       ? -1
                       : api_body_string(&b, "user", proto.user,
                                         sizeof(proto.user), x->ans);
    int has_client = has_user < 0 ? -1
                                  : api_body_string(&b, "client", proto.client,
                                                    sizeof(proto.client), x->ans);
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
        api_error(x->ans, 400, PROTO_E_BAD_REQUEST, problem);
    if (problem || has_client < 0) {
        api_body_free(&b);
        return 0;
    }
    if (code)
        proto.code = (uint16_t)json_integer_value(code);
    proto.reconnect = rec && json_is_true(rec);
    api_body_free(&b);
    if (in_cluster(x))
        return ask_all(x, call_new(CALL_DISCONNECT, 0),
                       json_pack("{s:s,s:s,s:s,s:i,s:b}", "op", "disconnect",
                                 "user", proto.user, "client", proto.client,
                                 "code", (int)proto.code, "reconnect",
                                 (int)proto.reconnect));
    for (uint32_t w = 0; w < x->srv->n_workers; w++) {
        disc_ask *a = disc_ask_new();
        a->route = *x->to;
        memcpy(a->user, proto.user, sizeof(a->user));
        memcpy(a->client, proto.client, sizeof(a->client));
        a->code = proto.code;
        a->reconnect = proto.reconnect;
        server_post(x->srv, (uint16_t)w, &a->hdr);
    }
    *x->call = call_new(CALL_DISCONNECT, x->srv->n_workers);
    return (int)x->srv->n_workers;
}

/* The answer to an owner's reply to a single-request call. */
static void reply_answer(const msg *m, api_answer *ans)
{
    const chan_req *r = (const chan_req *)m;
    ans->extra[0] = '\0';
    ans->content_type = NULL;
    if (r->code) {
        api_error(ans, status_of_owner(r), r->code,
                  r->errmsg ? r->errmsg : "refused by the channel's owner");
        return;
    }
    if (m->type == CON_PUBLISHED) {
        const pub_req *p = (const pub_req *)m;
        json_t *doc = json_pack("{s:I,s:s%}", "offset", (json_int_t)p->offset,
                                "epoch", p->epoch, (size_t)IDS_LEN);
        if (p->duplicate)
            json_object_set_new(doc, "duplicate", json_true());
        api_answer_json(ans, 200, doc);
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
        r->duplicate = p->duplicate;
        memcpy(r->epoch, p->epoch, IDS_LEN);
        r->epoch[IDS_LEN] = '\0';
    }
    call->got++;
    return call->got >= call->expected;
}

void api_call_answer(api_call *call, api_answer *ans, int timed_out)
{
    ans->extra[0] = '\0';
    if (call->remote) {
        remote_answer(call, ans, timed_out);
        return;
    }
    if (call->kind == CALL_BROADCAST) {
        broadcast_answer(call, ans);
        return;
    }
    if (call->kind == CALL_CHANNELS && !timed_out) {
        channels_answer(call, ans);
        return;
    }
    if (call->kind == CALL_DISCONNECT && !timed_out) {
        api_answer_json(ans, 200, json_pack("{s:i}", "disconnected",
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
    int (*fn)(api_ctx *x);
} routes[] = {
    { API_PREFIX "info", HTTP_GET, "GET, HEAD", route_info },
    { API_PREFIX "publish", HTTP_POST, "POST", route_publish },
    { API_PREFIX "history", HTTP_GET, "GET, HEAD", route_history },
    { API_PREFIX "presence", HTTP_GET, "GET, HEAD", route_presence },
    { API_PREFIX "broadcast", HTTP_POST, "POST", route_broadcast },
    { API_PREFIX "channels", HTTP_GET, "GET, HEAD", route_channels },
    { API_PREFIX "disconnect", HTTP_POST, "POST", route_disconnect },
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
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        snprintf(ans->extra, sizeof(ans->extra), "Allow: GET, HEAD\r\n");
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

/* GET /api/v1/openapi.json (docs/openapi.yaml): public like any
 * documentation, so no key. 1 when req was for it (ans filled), else 0. */
static int route_openapi(const http1_request *req, api_answer *ans)
{
    if (strcmp(req->path.ptr, API_PREFIX "openapi.json") != 0)
        return 0;
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        snprintf(ans->extra, sizeof(ans->extra), "Allow: GET, HEAD\r\n");
        api_error(ans, 405, PROTO_E_BAD_REQUEST, "method not allowed");
        return 1;
    }
    ans->status = 200;
    proto_buf_reset(&ans->body);
    proto_buf_append(&ans->body, api_openapi_json, api_openapi_json_len);
    return 1;
}

/* The key check of every call (401, or 503 when no key is configured):
 * its index, or -1 with the answer. */
static int api_key_of(server *srv, const http1_request *req, api_answer *ans)
{
    api_keys *keys = srv->api_keys;
    if (!keys || api_keys_count(keys) == 0) {
        api_error(ans, 503, PROTO_E_NOT_AVAILABLE,
                  "no API keys configured (api_keys, HERALD_API_KEY)");
        return -1;
    }
    int key = api_keys_match(keys, req->authorization.ptr,
                             req->authorization.len);
    if (key < 0) {
        snprintf(ans->extra, sizeof(ans->extra),
                 "WWW-Authenticate: apikey\r\n");
        api_error(ans, 401, PROTO_E_UNAUTHORIZED,
                  req->authorization.ptr ? "unknown API key"
                                         : "missing Authorization: apikey KEY");
    }
    return key;
}

int api_expect(server *srv, const http1_request *head, api_answer *ans)
{
    ans->extra[0] = '\0';
    return api_key_of(srv, head, ans) < 0 ? -1 : 0;
}

int api_route(server *srv, struct broker *b, const http1_request *req,
              uint64_t now_ms, const route *reply_to, api_answer *ans,
              api_call **call)
{
    ans->extra[0] = '\0';
    ans->content_type = NULL;
    *call = NULL;
    if (strcmp(req->path.ptr, "/metrics") == 0)
        return route_metrics(srv, req, ans);
    if (route_openapi(req, ans))
        return 0;
    int key = api_key_of(srv, req, ans);
    if (key < 0)
        return 0;
    uint64_t wait = api_keys_take(srv->api_keys, key, now_ms);
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
        /* HEAD is GET without the body (listen.c leaves it out) */
        if (req->method != routes[i].method &&
            !(req->method == HTTP_HEAD && routes[i].method == HTTP_GET))
            continue;
        api_ctx x = { srv, b, req, reply_to, ans, call };
        return routes[i].fn(&x);
    }
    if (allow) {
        snprintf(ans->extra, sizeof(ans->extra), "Allow: %s\r\n", allow);
        api_error(ans, 405, PROTO_E_BAD_REQUEST, "method not allowed");
        return 0;
    }
    api_error(ans, 404, PROTO_E_BAD_REQUEST, "no such API route");
    return 0;
}
