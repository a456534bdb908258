/*
 * The Centrifugo peer driver (peer.h, `--target centrifugo`): speaks
 * Centrifugo's bidirectional client protocol v2 with JSON encoding over a
 * plain WebSocket (herald/ws.h), the way centrifuge-js does. The server side
 * is bench/peers/centrifugo (start.sh, config.json).
 *
 * Framing: every command is one JSON object; several may travel in one
 * WebSocket message separated by '\n', and the server batches its replies
 * and pushes the same way, so every received message is split at '\n' and
 * each line handled. A connection goes: WebSocket open; `{"id":1,
 * "connect":{}}` (anonymous, no token: config.json allows it) answered by
 * `{"id":1,"connect":{...,"pong":true}}`. An idle connection or a publisher
 * is ready then; a subscriber sends `{"id":2,"subscribe":{"channel":C}}`
 * and is ready on `{"id":2,"subscribe":{}}`. A publish is `{"id":N,
 * "publish":{"channel":C,"data":D}}` (N from 3 up) answered by
 * `{"id":N,"publish":{}}` or `{"id":N,"error":{"code":..,"message":..}}`.
 * Publications arrive as `{"push":{"channel":C,"pub":{"data":D,...}}}`.
 * The server pings with an empty object `{}`; when the connect result says
 * "pong":true the client must answer `{}` within the pong timeout, and
 * must not send `{}` unasked (the server disconnects on an unneeded pong).
 *
 * Payloads: D is a JSON value embedded raw, both ways. The bench's JSON
 * stamp is a JSON string, published as is and handed back as the same raw
 * bytes (quotes included), which is what stamp_decode(STAMP_JSON) reads.
 * The payload must therefore be valid JSON (the bench refuses
 * --encoding msgpack for peer targets).
 *
 * Memory: a client is one struct plus its channel name (subscriber) and a
 * ring of unanswered publishes (publisher; grown by doubling, never
 * shrunk). Commands are built in one scratch buffer of the context
 * (hc_ws_send copies), so the steady state allocates nothing per message.
 *
 * Threading: everything happens on the context's loop thread (peer.h).
 * Lifetime: a client is freed after its closed callback, or by ctx_free
 * when ctx_close ended it; code that calls back into the bench checks
 * ctx->closing and the client's `dead` flag afterwards and touches nothing
 * more when either is set.
 */
#include "peer.h"
#include "peer_acks.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <herald/ws.h>
#include <utlist.h>

#define CF_DEFAULT_URL "ws://127.0.0.1:8094/connection/websocket"
#define CF_WS_PATH "/connection/websocket"
/* http_api.key of bench/peers/centrifugo/config.json (a bench on
 * loopback, not a secret). */
#define CF_API_KEY "herald-bench-api-key"

enum cf_state {
    CF_WS_OPENING,    /* WebSocket handshake under way */
    CF_CONNECTING,    /* connect command sent, waiting for its reply */
    CF_SUBSCRIBING,   /* subscriber: subscribe sent, waiting for its reply */
    CF_READY,
};

/* Command ids: connect and subscribe are fixed, publishes count from 3. */
enum { CF_ID_CONNECT = 1, CF_ID_SUBSCRIBE = 2, CF_ID_FIRST_PUB = 3 };

struct peer_client {
    peer_ctx *ctx;
    peer_client *prev, *next;  /* ctx->clients (utlist) */
    hc_ws *ws;                 /* NULL once closed */
    const peer_callbacks *cb;
    void *user;
    char *channel;             /* subscriber only */
    peer_acks acks;            /* unanswered publishes; ids +1 each */
    uint32_t next_id;
    unsigned char kind, state, ready, pong, dead;
};

struct peer_ctx {
    uv_loop_t *loop;
    hc_ws_ctx *ws;
    peer_client *clients;
    int closing;
    /* Scratch buffer for outgoing commands (hc_ws_send copies). */
    char *out;
    size_t out_cap, out_len;
};

/* Out of memory aborts, as everywhere in the bench. */
static void *cf_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "herald-bench: out of memory\n");
        abort();
    }
    return q;
}

/* ---- building commands in ctx->out ---- */

static void cf_out_reserve(peer_ctx *ctx, size_t more)
{
    if (ctx->out_len + more <= ctx->out_cap)
        return;
    size_t cap = ctx->out_cap ? ctx->out_cap : 256;
    while (cap < ctx->out_len + more)
        cap *= 2;
    ctx->out = cf_xrealloc(ctx->out, cap);
    ctx->out_cap = cap;
}

static void cf_out_raw(peer_ctx *ctx, const char *s, size_t n)
{
    cf_out_reserve(ctx, n);
    memcpy(ctx->out + ctx->out_len, s, n);
    ctx->out_len += n;
}

static void cf_out_str(peer_ctx *ctx, const char *s)
{
    cf_out_raw(ctx, s, strlen(s));
}

/* A JSON string literal of s (quotes, escapes for '"', '\\' and control
 * characters; other bytes as they are). */
static void cf_out_json_string(peer_ctx *ctx, const char *s)
{
    static const char hex[16] = "0123456789abcdef";
    cf_out_reserve(ctx, 2 + 6 * strlen(s));
    char *o = ctx->out + ctx->out_len;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *o++ = '\\';
            *o++ = (char)*p;
        } else if (*p < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[*p >> 4];
            o[5] = hex[*p & 15];
            o += 6;
        } else {
            *o++ = (char)*p;
        }
    }
    *o++ = '"';
    ctx->out_len = (size_t)(o - ctx->out);
}

static void cf_out_u32(peer_ctx *ctx, uint32_t v)
{
    char b[16];
    int n = snprintf(b, sizeof b, "%u", (unsigned)v);
    cf_out_raw(ctx, b, (size_t)n);
}

/* Sends what was built and empties the buffer. 0, or -1 if not open. */
static int cf_out_send(peer_client *c)
{
    peer_ctx *ctx = c->ctx;
    int rc = c->ws ? hc_ws_send(c->ws, 0, ctx->out, ctx->out_len) : -1;
    ctx->out_len = 0;
    return rc;
}

/* ---- reading replies: a small bounds-checked JSON scanner ---- */

static const char *cf_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* p at '"': returns the position after the closing quote, or NULL. */
static const char *cf_skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Skips one JSON value starting at p (no leading white space). Returns the
 * position after it, or NULL when it is malformed or truncated. Objects
 * and arrays are walked with a depth counter, not recursion. */
static const char *cf_skip_value(const char *p, const char *end)
{
    int depth = 0;
    if (p >= end)
        return NULL;
    do {
        if (p >= end)
            return NULL;
        switch (*p) {
        case '"':
            if (!(p = cf_skip_string(p, end)))
                return NULL;
            break;
        case '{': case '[':
            depth++;
            p++;
            break;
        case '}': case ']':
            if (--depth < 0)
                return NULL;
            p++;
            break;
        default:
            /* Numbers, literals, ':' and ',' inside containers. */
            p++;
            while (p < end && *p != ',' && *p != '}' && *p != ']' &&
                   *p != '"' && *p != '{' && *p != '[' && *p != ':' &&
                   *p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
                p++;
            if (depth == 0)
                return p;
            break;
        }
    } while (depth > 0);
    return p;
}

/* Iterates the members of an object. *pp starts at '{' (first call) or
 * after the previous member. Returns 1 with the key (without quotes; not
 * unescaped, our keys have no escapes) and the value span, 0 at the end,
 * -1 when malformed. */
static int cf_obj_next(const char **pp, const char *end, const char **key,
                       size_t *klen, const char **val, const char **vend)
{
    const char *p = cf_ws(*pp, end);
    if (p >= end)
        return -1;
    if (*p == '{' || *p == ',')
        p = cf_ws(p + 1, end);
    if (p < end && *p == '}') {
        *pp = p + 1;
        return 0;
    }
    if (p >= end || *p != '"')
        return -1;
    const char *k = p + 1, *ke = cf_skip_string(p, end);
    if (!ke)
        return -1;
    p = cf_ws(ke, end);
    if (p >= end || *p != ':')
        return -1;
    p = cf_ws(p + 1, end);
    const char *v = p;
    if (!(p = cf_skip_value(p, end)))
        return -1;
    *key = k;
    *klen = (size_t)(ke - 1 - k);
    *val = v;
    *vend = p;
    p = cf_ws(p, end);
    if (p >= end || (*p != ',' && *p != '}'))
        return -1;
    *pp = p;
    return 1;
}

static int cf_key_is(const char *k, size_t klen, const char *lit)
{
    size_t n = strlen(lit);
    return klen == n && memcmp(k, lit, n) == 0;
}

/* Finds `name` in the object [p, end). 1 with the value span, else 0. */
static int cf_obj_get(const char *p, const char *end, const char *name,
                      const char **val, const char **vend)
{
    const char *k;
    size_t klen;
    int r;
    while ((r = cf_obj_next(&p, end, &k, &klen, val, vend)) == 1)
        if (cf_key_is(k, klen, name))
            return 1;
    return 0;
}

static uint32_t cf_parse_u32(const char *p, const char *end)
{
    uint64_t v = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++)
        if ((v = v * 10 + (uint64_t)(*p - '0')) > UINT32_MAX)
            return 0;
    return (uint32_t)v;
}

/* "code <code>: <message>" of an error object, into buf. */
static const char *cf_error_text(const char *e, const char *ee, char *buf,
                                 size_t cap)
{
    const char *v, *ve;
    uint32_t code = 0;
    int mlen = 0;
    const char *msg = "";
    if (cf_obj_get(e, ee, "code", &v, &ve))
        code = cf_parse_u32(v, ve);
    if (cf_obj_get(e, ee, "message", &v, &ve) && ve - v >= 2 && *v == '"') {
        msg = v + 1;
        mlen = (int)(ve - v - 2);
    }
    snprintf(buf, cap, "centrifugo error %u: %.*s", (unsigned)code, mlen, msg);
    return buf;
}

/* ---- client lifetime ---- */

static void cf_client_free(peer_client *c)
{
    free(c->channel);
    peer_acks_free(&c->acks);
    free(c);
}

/* Answers every unanswered publish with a failure. */
static void cf_fail_pending(peer_client *c, const char *why)
{
    peer_ack_cb cb;
    void *arg;
    while (!c->ctx->closing && peer_acks_take_oldest(&c->acks, &cb, &arg))
        cb(c, 0, why, arg);
}

/* The connection is over (ws already closed, or freed by the transport):
 * answer
 * the unanswered publishes, tell the bench, free the client. */
static void cf_client_end(peer_client *c, const char *why)
{
    peer_ctx *ctx = c->ctx;
    c->ws = NULL;
    c->dead = 1;
    cf_fail_pending(c, why);
    if (ctx->closing)
        return;            /* ctx_free frees it */
    DL_DELETE(ctx->clients, c);
    c->cb->closed(c, c->ready, why, c->user);
    cf_client_free(c);
}

/* A protocol failure seen by us: close the socket (no transport callback
 * follows) and end the client. */
static void cf_client_fail(peer_client *c, const char *why)
{
    if (c->ws)
        hc_ws_close(c->ws);
    cf_client_end(c, why);
}

/* ---- protocol ---- */

static void cf_send_connect(peer_client *c)
{
    peer_ctx *ctx = c->ctx;
    cf_out_str(ctx, "{\"id\":1,\"connect\":{}}");
    c->state = CF_CONNECTING;
    if (cf_out_send(c) < 0)
        cf_client_fail(c, "send failed (connect)");
}

/* -1 when the send failed and the client ended (c may be freed). */
static int cf_send_subscribe(peer_client *c)
{
    peer_ctx *ctx = c->ctx;
    cf_out_str(ctx, "{\"id\":2,\"subscribe\":{\"channel\":");
    cf_out_json_string(ctx, c->channel);
    cf_out_str(ctx, "}}");
    c->state = CF_SUBSCRIBING;
    if (cf_out_send(c) < 0) {
        cf_client_fail(c, "send failed (subscribe)");
        return -1;
    }
    return 0;
}

static void cf_became_ready(peer_client *c)
{
    c->state = CF_READY;
    c->ready = 1;
    c->cb->ready(c, c->user);
}

/* The reply to a publish: find it in the ring (normally the oldest) and
 * answer it; then drop answered entries from the head. */
static void cf_publish_reply(peer_client *c, uint32_t id, int ok,
                             const char *why)
{
    peer_ack_cb cb;
    void *arg;
    if (peer_acks_take(&c->acks, id, &cb, &arg))
        cb(c, ok, why, arg);
}

/* One reply or push (one line). Returns 0, or -1 when the client ended. */
static int cf_handle_line(peer_client *c, const char *p, const char *end)
{
    const char *k, *v, *ve, *err = NULL, *erre = NULL, *push = NULL,
               *pushe = NULL, *res = NULL, *rese = NULL;
    size_t klen;
    uint32_t id = 0;
    int r, members = 0;
    char why[256];

    p = cf_ws(p, end);
    if (p >= end)
        return 0;                    /* an empty line */
    if (*p != '{') {
        cf_client_fail(c, "centrifugo: malformed reply (not an object)");
        return -1;
    }
    while ((r = cf_obj_next(&p, end, &k, &klen, &v, &ve)) == 1) {
        members++;
        if (cf_key_is(k, klen, "id"))
            id = cf_parse_u32(v, ve);
        else if (cf_key_is(k, klen, "error"))
            err = v, erre = ve;
        else if (cf_key_is(k, klen, "push"))
            push = v, pushe = ve;
        else
            res = v, rese = ve;      /* connect, subscribe, publish, ... */
    }
    if (r < 0) {
        cf_client_fail(c, "centrifugo: malformed reply");
        return -1;
    }

    if (members == 0) {
        /* A server ping: answer with a pong when the server asked for
         * pongs (an unasked pong is a protocol error there). */
        if (c->pong) {
            cf_out_str(c->ctx, "{}");
            if (cf_out_send(c) < 0) {
                cf_client_fail(c, "send failed (pong)");
                return -1;
            }
        }
        return 0;
    }

    if (push) {
        /* A subscriber has one subscription: the push's channel is ours
         * and is not compared. */
        const char *pub, *pube, *d, *de;
        if (c->kind != PEER_SUBSCRIBER || c->state != CF_READY)
            return 0;
        if (!cf_obj_get(push, pushe, "pub", &pub, &pube))
            return 0;               /* join, leave, unsubscribe, ... */
        if (!cf_obj_get(pub, pube, "data", &d, &de))
            return 0;
        c->cb->message(c, d, (size_t)(de - d), c->user);
        return c->dead || c->ctx->closing ? -1 : 0;
    }

    if (id == 0)
        return 0;                   /* nothing we know */

    if (id == CF_ID_CONNECT) {
        if (c->state != CF_CONNECTING)
            return 0;
        if (err) {
            cf_client_fail(c, cf_error_text(err, erre, why, sizeof why));
            return -1;
        }
        if (res && cf_obj_get(res, rese, "pong", &v, &ve))
            c->pong = (ve - v == 4 && memcmp(v, "true", 4) == 0);
        if (c->kind == PEER_SUBSCRIBER)
            return cf_send_subscribe(c);
        cf_became_ready(c);
        return c->dead || c->ctx->closing ? -1 : 0;
    }

    if (id == CF_ID_SUBSCRIBE && c->kind == PEER_SUBSCRIBER) {
        if (c->state != CF_SUBSCRIBING)
            return 0;
        if (err) {
            char e[200];
            snprintf(why, sizeof why, "subscribe refused: %s",
                     cf_error_text(err, erre, e, sizeof e));
            cf_client_fail(c, why);
            return -1;
        }
        cf_became_ready(c);
        return c->dead || c->ctx->closing ? -1 : 0;
    }

    if (c->acks.n > 0) {
        cf_publish_reply(c, id, err == NULL,
                         err ? cf_error_text(err, erre, why, sizeof why)
                             : NULL);
        return c->dead || c->ctx->closing ? -1 : 0;
    }
    return 0;
}

/* ---- transport callbacks ---- */

static void cf_on_open(hc_ws *ws, void *user)
{
    (void)ws;                       /* the same as c->ws */
    peer_client *c = user;
    cf_send_connect(c);
}

static void cf_on_message(hc_ws *ws, int binary, const char *data,
                          size_t len, void *user)
{
    (void)ws;                       /* the same as c->ws */
    peer_client *c = user;
    const char *p = data, *end = data + len;
    if (binary) {
        cf_client_fail(c, "centrifugo: binary message on a JSON connection");
        return;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (cf_handle_line(c, p, le) < 0)
            return;                 /* the client ended, or ctx_close */
        p = nl ? nl + 1 : end;
    }
}

static void cf_on_closed(hc_ws *ws, const hc_ws_closed *ev, void *user)
{
    (void)ws;                       /* the same as c->ws */
    peer_client *c = user;
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s",
             ev->was_open ? "" : "connect failed: ",
             ev->reason[0] ? ev->reason : "closed");
    cf_client_end(c, buf);
}

static const hc_ws_callbacks cf_ws_cb = {
    .open = cf_on_open,
    .message = cf_on_message,
    .closed = cf_on_closed,
};

/* ---- the driver ---- */

static peer_ctx *cf_ctx_new(uv_loop_t *loop, char *err, size_t errlen)
{
    peer_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ctx->loop = loop;
    if (!(ctx->ws = hc_ws_ctx_new(loop, NULL, err, errlen))) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

static void cf_ctx_close(peer_ctx *ctx)
{
    ctx->closing = 1;
    for (peer_client *c = ctx->clients; c; c = c->next)
        c->ws = NULL;               /* freed by hc_ws_ctx_close */
    hc_ws_ctx_close(ctx->ws);
}

static void cf_ctx_free(peer_ctx *ctx)
{
    peer_client *c = ctx->clients, *next;
    for (; c; c = next) {
        next = c->next;
        cf_client_free(c);
    }
    hc_ws_ctx_free(ctx->ws);
    free(ctx->out);
    free(ctx);
}

/* --url may be the server's base (ws://host:port[/]): then the WebSocket
 * endpoint's path is added. A URL with another path is used as given. */
static const char *cf_url(const peer_options *o, char *buf, size_t cap)
{
    const char *u = o->url ? o->url : CF_DEFAULT_URL;
    const char *hp = strstr(u, "://");
    hp = hp ? hp + 3 : u;
    const char *path = strchr(hp, '/');
    if (path && strcmp(path, "/") != 0)
        return u;
    snprintf(buf, cap, "%.*s%s", path ? (int)(path - u) : (int)strlen(u), u,
             CF_WS_PATH);
    return buf;
}

static peer_client *cf_open(peer_ctx *ctx, const peer_options *o,
                            peer_role kind, const char *channel)
{
    char err[256], url[512];
    hc_ws_options wo;
    peer_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ctx = ctx;
    c->cb = o->cb;
    c->user = o->user;
    c->kind = (unsigned char)kind;
    c->state = CF_WS_OPENING;
    c->next_id = CF_ID_FIRST_PUB;
    if (channel && !(c->channel = strdup(channel))) {
        free(c);
        return NULL;
    }
    /* Linked before hc_ws_open: ctx_close must find it from the start. */
    DL_PREPEND(ctx->clients, c);
    memset(&wo, 0, sizeof wo);
    wo.url = cf_url(o, url, sizeof url);
    wo.local_addr = o->local_addr;
    wo.tls_insecure = 1;            /* peers on the bench host: self-signed */
    wo.cb = &cf_ws_cb;
    wo.user = c;
    c->ws = hc_ws_open(ctx->ws, &wo, err, sizeof err);
    if (!c->ws) {
        fprintf(stderr, "herald-bench: centrifugo: %s\n", err);
        DL_DELETE(ctx->clients, c);
        cf_client_free(c);
        return NULL;
    }
    return c;
}

static int cf_publish(peer_client *c, const char *channel, const char *data,
                      size_t len, peer_ack_cb cb, void *arg)
{
    peer_ctx *ctx = c->ctx;
    if (c->dead || !c->ws || c->state != CF_READY || len == 0)
        return -1;
    uint32_t id = c->next_id++;
    if (c->next_id == 0)
        c->next_id = CF_ID_FIRST_PUB;   /* after 4 billion publishes */
    cf_out_str(ctx, "{\"id\":");
    cf_out_u32(ctx, id);
    cf_out_str(ctx, ",\"publish\":{\"channel\":");
    cf_out_json_string(ctx, channel);
    cf_out_str(ctx, ",\"data\":");
    cf_out_raw(ctx, data, len);
    cf_out_str(ctx, "}}");
    if (cf_out_send(c) < 0)
        return -1;
    peer_acks_add(&c->acks, id, cb, arg);
    return 0;
}

const peer_driver peer_centrifugo = {
    .name = "centrifugo",
    .default_url = CF_DEFAULT_URL,
    .ctx_new = cf_ctx_new,
    .ctx_close = cf_ctx_close,
    .ctx_free = cf_ctx_free,
    .open = cf_open,
    .publish = cf_publish,
    /* The server HTTP API (http_api in bench/peers/centrifugo/config.json,
     * on the client port): POST /api/publish {"channel","data"}, answered
     * {"result":{}} or {"error":{...}}. */
    .api_url = "http://127.0.0.1:8094/api/publish",
    .api_path = "/api/publish",
    .api_auth = "X-API-Key: " CF_API_KEY,
};
