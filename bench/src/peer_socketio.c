/*
 * The Socket.IO 4 peer driver (peer.h, `--target socketio`): speaks
 * Engine.IO v4 / Socket.IO v5 over a plain WebSocket (herald/ws.h), the way a
 * Socket.IO client does with transports: ["websocket"] (no long-polling,
 * no upgrade). The server side is bench/peers/socketio/server.js.
 *
 * One connection goes: WebSocket open; the server's Engine.IO open packet
 * `0{"sid":..,"pingInterval":..}`; we connect to the main namespace (`40`)
 * and the server answers `40{"sid":..}`. An idle connection or a publisher
 * is ready then; a subscriber emits `420["sub","<channel>"]` (ack id 0) and
 * is ready when `430[...]` answers it. Publications arrive as events
 * `42["m",<payload>]`; a publish is `42<id>["pub","<channel>",<payload>]`
 * (ids from 1) answered by `43<id>[{"ok":true}]`. The server pings (`2`),
 * we answer `3`.
 *
 * Payloads are JSON text, as on the other JSON peers: the bench's stamp is
 * a JSON string (stamp.h), sent verbatim as the event's argument, so the
 * server handles the stamp string itself ("HB1:..."), as an application
 * emitting a string would. A payload that is not a well-formed JSON string
 * is sent as a JSON string of its bytes instead (escaped), so the packet
 * stays valid. A received `m` argument is handed back as its JSON text,
 * quotes and any escapes included (the scan honours escapes to find the
 * string's end): for the bench's stamps that is exactly what was published.
 *
 * Memory: a client is one struct plus, for a subscriber, its channel name
 * and, for a publisher, a ring of unanswered publishes (grown by doubling,
 * never shrunk). Messages are built in one scratch buffer of the context
 * and received payloads are passed on in place, so the steady state
 * allocates nothing per message.
 *
 * Threading: everything happens on the context's loop thread (peer.h).
 * Lifetime: a client is freed after its closed callback, or by ctx_free
 * when ctx_close ended it; code that calls back into the bench checks
 * ctx->closing afterwards and touches nothing more if it is set.
 */
#define _GNU_SOURCE   /* memmem */
#include "peer.h"
#include "peer_acks.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <herald/ws.h>
#include <utlist.h>

#define SIO_DEFAULT_URL "ws://127.0.0.1:8092"
#define SIO_QUERY "EIO=4&transport=websocket"

enum sio_state {
    SIO_WS_OPENING,   /* WebSocket handshake under way */
    SIO_EIO_OPENING,  /* waiting for the Engine.IO open packet */
    SIO_NS_OPENING,   /* `40` sent, waiting for the namespace answer */
    SIO_SUBSCRIBING,  /* subscriber: "sub" emitted, waiting for its ack */
    SIO_READY,
};

struct peer_client {
    peer_ctx *ctx;
    peer_client *prev, *next;  /* ctx->clients (utlist) */
    hc_ws *ws;                 /* NULL once closed */
    const peer_callbacks *cb;
    void *user;
    char *channel;             /* subscriber only */
    peer_acks acks;            /* unanswered publishes; ids +1 each */
    uint64_t next_id;
    unsigned char kind, state, ready;
};

struct peer_ctx {
    uv_loop_t *loop;
    hc_ws_ctx *ws;
    peer_client *clients;
    int closing;
    /* Scratch buffer to build messages in (hc_ws_send copies them). */
    char *out;
    size_t out_cap;
    /* The last base URL and its Engine.IO URL, to build it once. */
    char *base_url, *eio_url;
};

static void *sio__xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        abort();   /* out of memory: the project's one policy */
    return p;
}

static char *sio__xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(sio__xrealloc(NULL, n), s, n);
}

static void sio__reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    *buf = sio__xrealloc(*buf, n);
    *cap = n;
}

/* ------------------------------------------------------------------ */
/* JSON strings */

/* Upper bound of a JSON-escaped string of n bytes, with its quotes. */
static size_t sio__escaped_max(size_t n)
{
    return 6 * n + 2;
}

/* Writes `s` as a JSON string (with quotes) at p; returns the end. */
static char *sio__escape(char *p, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = (char)ch;
        } else if (ch < 0x20) {
            *p++ = '\\';
            switch (ch) {
            case '\n': *p++ = 'n'; break;
            case '\r': *p++ = 'r'; break;
            case '\t': *p++ = 't'; break;
            case '\b': *p++ = 'b'; break;
            case '\f': *p++ = 'f'; break;
            default:
                *p++ = 'u'; *p++ = '0'; *p++ = '0';
                *p++ = hex[ch >> 4]; *p++ = hex[ch & 15];
            }
        } else {
            *p++ = (char)ch;
        }
    }
    *p++ = '"';
    return p;
}

static int sio__is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
           (ch >= 'A' && ch <= 'F');
}

/* Whether s is exactly one well-formed JSON string (quotes, escapes, no
 * raw control characters); bytes >= 0x80 are taken as UTF-8. */
static int sio__is_json_string(const char *s, size_t n)
{
    if (n < 2 || s[0] != '"' || s[n - 1] != '"')
        return 0;
    for (size_t i = 1; i < n - 1; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch < 0x20)
            return 0;
        if (ch != '\\')
            continue;
        if (++i >= n - 1)
            return 0;
        switch (s[i]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
            break;
        case 'u':
            if (i + 4 >= n - 1 || !sio__is_hex(s[i + 1]) ||
                !sio__is_hex(s[i + 2]) || !sio__is_hex(s[i + 3]) ||
                !sio__is_hex(s[i + 4]))
                return 0;
            i += 4;
            break;
        default:
            return 0;
        }
    }
    return 1;
}

/* Scans a JSON string starting at its opening quote p (< end), honouring
 * escapes; returns the position after its closing quote, or NULL. */
static const char *sio__scan_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

static const char *sio__ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Skips one JSON value of any kind (for a non-string event argument);
 * returns its end, or NULL. Strings inside are honoured. */
static const char *sio__skip_value(const char *p, const char *end)
{
    int depth = 0;
    while (p < end) {
        char ch = *p;
        if (ch == '"') {
            p = sio__scan_string(p, end);
            if (!p)
                return NULL;
            if (depth == 0)
                return p;
            continue;
        }
        if (ch == '[' || ch == '{') {
            depth++;
        } else if (ch == ']' || ch == '}') {
            if (depth == 0)
                return p;
            if (--depth == 0)
                return p + 1;
        } else if (ch == ',' && depth == 0) {
            return p;
        }
        p++;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Clients */

static void sio__client_free(peer_client *c)
{
    free(c->channel);
    peer_acks_free(&c->acks);
    free(c);
}

/* Fails every unanswered publish (exactly one answer each). Returns -1 if
 * a callback closed the context. */
static int sio__fail_pending(peer_client *c, const char *why)
{
    peer_ack_cb cb;
    void *arg;
    while (peer_acks_take_oldest(&c->acks, &cb, &arg)) {
        cb(c, 0, why, arg);
        if (c->ctx->closing)
            return -1;
    }
    return 0;
}

/* The client is dead (its connection closed or being closed by us): answer
 * what is pending, tell the bench, free it. */
static void sio__die(peer_client *c, const char *why)
{
    peer_ctx *ctx = c->ctx;
    c->ws = NULL;
    if (sio__fail_pending(c, why))
        return;                 /* ctx_close: ctx_free frees it */
    c->cb->closed(c, c->ready, why, c->user);
    if (ctx->closing)
        return;
    DL_DELETE(ctx->clients, c);
    sio__client_free(c);
}

/* A protocol error of ours: close the socket (no transport callback follows)
 * and die. */
static void sio__fail(peer_client *c, const char *why)
{
    if (c->ws)
        hc_ws_close(c->ws);
    sio__die(c, why);
}

static int sio__send(peer_client *c, const char *data, size_t len)
{
    if (!c->ws)
        return -1;
    return hc_ws_send(c->ws, 0, data, len);
}

static void sio__set_ready(peer_client *c)
{
    c->state = SIO_READY;
    c->ready = 1;
    c->cb->ready(c, c->user);
}

/* `40{...}`: the namespace is connected. */
static void sio__on_ns_connected(peer_client *c)
{
    if (c->kind != PEER_SUBSCRIBER) {
        sio__set_ready(c);
        return;
    }
    peer_ctx *ctx = c->ctx;
    size_t n = strlen(c->channel);
    sio__reserve(&ctx->out, &ctx->out_cap, 16 + sio__escaped_max(n));
    char *p = ctx->out;
    memcpy(p, "420[\"sub\",", 10);
    p = sio__escape(p + 10, c->channel, n);
    *p++ = ']';
    if (sio__send(c, ctx->out, (size_t)(p - ctx->out))) {
        sio__fail(c, "socketio: cannot send sub");
        return;
    }
    c->state = SIO_SUBSCRIBING;
}

/* `43<id>[...]`: an acknowledgement. */
static void sio__on_ack(peer_client *c, const char *p, const char *end)
{
    uint64_t id = 0;
    const char *d = p;
    while (p < end && *p >= '0' && *p <= '9')
        id = id * 10 + (uint64_t)(*p++ - '0');
    if (p == d) {
        sio__fail(c, "socketio: ack without an id");
        return;
    }
    /* server.js answers {"ok":true} or {"error":"..."}. */
    static const char ok_text[] = "\"ok\":true";
    int ok = (size_t)(end - p) >= sizeof ok_text - 1 &&
             memmem(p, (size_t)(end - p), ok_text, sizeof ok_text - 1);
    if (c->state == SIO_SUBSCRIBING && id == 0) {
        if (!ok) {
            sio__fail(c, "socketio: sub refused");
            return;
        }
        sio__set_ready(c);
        return;
    }
    /* Publishes are answered in order by Socket.IO; an answer out of order
     * is still matched by id. */
    peer_ack_cb cb;
    void *arg;
    if (peer_acks_take(&c->acks, id, &cb, &arg))
        cb(c, ok, ok ? NULL : "socketio: publish refused", arg);
    /* else an answer to nothing we asked: ignore it. */
}

/* `42...["m",<data>]`: an event. */
static void sio__on_event(peer_client *c, const char *p, const char *end)
{
    while (p < end && *p >= '0' && *p <= '9')
        p++;                    /* an ack id the server asks for: none here */
    p = sio__ws(p, end);
    if (p >= end || *p != '[')
        goto bad;
    p = sio__ws(p + 1, end);
    if (end - p < 3 || memcmp(p, "\"m\"", 3))
        return;                 /* another event: not ours */
    p = sio__ws(p + 3, end);
    if (p >= end || *p != ',')
        goto bad;
    p = sio__ws(p + 1, end);
    if (p >= end)
        goto bad;
    /* The argument's JSON text: a string with its quotes (the bench's
     * stamps), or any other value (it will not decode as a stamp and is
     * counted as an error by the bench). */
    const char *q = *p == '"' ? sio__scan_string(p, end)
                              : sio__skip_value(p, end);
    const char *after = q ? sio__ws(q, end) : end;
    if (after >= end || (*after != ']' && *after != ','))
        goto bad;
    c->cb->message(c, p, (size_t)(q - p), c->user);
    return;
bad:
    sio__fail(c, "socketio: malformed event");
}

static void sio__ws_message(hc_ws *ws, int binary, const char *data,
                            size_t len, void *user)
{
    peer_client *c = user;
    const char *end = data + len;
    (void)ws;
    if (binary || len == 0) {
        sio__fail(c, "socketio: unexpected binary or empty message");
        return;
    }
    switch (data[0]) {
    case '0':                   /* Engine.IO open */
        if (c->state != SIO_EIO_OPENING) {
            sio__fail(c, "socketio: unexpected open packet");
            return;
        }
        if (sio__send(c, "40", 2)) {
            sio__fail(c, "socketio: cannot send namespace connect");
            return;
        }
        c->state = SIO_NS_OPENING;
        return;
    case '1':                   /* Engine.IO close */
        sio__fail(c, "socketio: closed by the server");
        return;
    case '2':                   /* ping: answer with the same payload */
        if (len <= 64) {
            char pong[64];
            memcpy(pong, data, len);
            pong[0] = '3';
            sio__send(c, pong, len);
        }
        return;
    case '3':                   /* pong, noop */
    case '6':
        return;
    case '4':                   /* message: a Socket.IO packet follows */
        break;
    default:
        sio__fail(c, "socketio: unknown Engine.IO packet");
        return;
    }
    if (len < 2) {
        sio__fail(c, "socketio: empty Socket.IO packet");
        return;
    }
    switch (data[1]) {
    case '0':                   /* CONNECT answered */
        if (c->state != SIO_NS_OPENING) {
            sio__fail(c, "socketio: unexpected namespace connect");
            return;
        }
        sio__on_ns_connected(c);
        return;
    case '1':                   /* DISCONNECT */
        sio__fail(c, "socketio: disconnected by the server");
        return;
    case '2':
        if (c->state != SIO_READY)
            return;             /* nothing can be for us before sub's ack */
        sio__on_event(c, data + 2, end);
        return;
    case '3':
        sio__on_ack(c, data + 2, end);
        return;
    case '4':                   /* CONNECT_ERROR */
        sio__fail(c, "socketio: namespace connect refused");
        return;
    default:
        return;                 /* binary events: not used here */
    }
}

static void sio__ws_open(hc_ws *ws, void *user)
{
    peer_client *c = user;
    (void)ws;
    c->state = SIO_EIO_OPENING;
}

static void sio__ws_closed(hc_ws *ws, const hc_ws_closed *ev, void *user)
{
    peer_client *c = user;
    (void)ws;
    sio__die(c, ev->reason[0] ? ev->reason : "socketio: connection closed");
}

static const hc_ws_callbacks sio__wscb = {
    .open = sio__ws_open,
    .message = sio__ws_message,
    .closed = sio__ws_closed,
};

/* The Engine.IO URL for a base URL: ws://host:port gets
 * /socket.io/?EIO=4&transport=websocket; a base with a path keeps it (a
 * server mounted elsewhere) and gets the query appended. */
static const char *sio__url(peer_ctx *ctx, const char *base)
{
    if (ctx->base_url && !strcmp(ctx->base_url, base))
        return ctx->eio_url;
    free(ctx->base_url);
    free(ctx->eio_url);
    ctx->base_url = sio__xstrdup(base);
    size_t n = strlen(base);
    ctx->eio_url = sio__xrealloc(NULL, n + sizeof "/socket.io/?" SIO_QUERY);
    const char *host = strstr(base, "://");
    host = host ? host + 3 : base;
    const char *path = strchr(host, '/');
    if (strchr(base, '?'))
        sprintf(ctx->eio_url, "%s&%s", base, SIO_QUERY);
    else if (path && path[1])
        sprintf(ctx->eio_url, "%s?%s", base, SIO_QUERY);
    else
        sprintf(ctx->eio_url, "%.*s/socket.io/?%s",
                (int)(path ? (size_t)(path - base) : n), base, SIO_QUERY);
    return ctx->eio_url;
}

static peer_client *sio_open(peer_ctx *ctx, const peer_options *o,
                             peer_role kind, const char *channel)
{
    if (ctx->closing)
        return NULL;
    peer_client *c = sio__xrealloc(NULL, sizeof *c);
    memset(c, 0, sizeof *c);
    c->ctx = ctx;
    c->cb = o->cb;
    c->user = o->user;
    c->kind = (unsigned char)kind;
    c->state = SIO_WS_OPENING;
    c->next_id = 1;
    if (channel)
        c->channel = sio__xstrdup(channel);
    char err[256];
    hc_ws_options wo;
    memset(&wo, 0, sizeof wo);
    wo.url = sio__url(ctx, o->url ? o->url : SIO_DEFAULT_URL);
    wo.local_addr = o->local_addr;
    wo.tls_insecure = 1;        /* peers on the bench host: self-signed */
    wo.cb = &sio__wscb;
    wo.user = c;
    c->ws = hc_ws_open(ctx->ws, &wo, err, sizeof err);
    if (!c->ws) {
        fprintf(stderr, "socketio: %s\n", err);
        sio__client_free(c);
        return NULL;
    }
    DL_PREPEND(ctx->clients, c);
    return c;
}

/* ------------------------------------------------------------------ */
/* The driver */

static peer_ctx *sio_ctx_new(uv_loop_t *loop, char *err, size_t errlen)
{
    peer_ctx *ctx = sio__xrealloc(NULL, sizeof *ctx);
    memset(ctx, 0, sizeof *ctx);
    ctx->loop = loop;
    ctx->ws = hc_ws_ctx_new(loop, NULL, err, errlen);
    if (!ctx->ws) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

static void sio_ctx_close(peer_ctx *ctx)
{
    if (ctx->closing)
        return;
    ctx->closing = 1;
    for (peer_client *c = ctx->clients; c; c = c->next)
        c->ws = NULL;
    hc_ws_ctx_close(ctx->ws);
}

static void sio_ctx_free(peer_ctx *ctx)
{
    if (!ctx)
        return;
    hc_ws_ctx_free(ctx->ws);
    while (ctx->clients) {
        peer_client *c = ctx->clients;
        ctx->clients = c->next;
        sio__client_free(c);
    }
    free(ctx->out);
    free(ctx->base_url);
    free(ctx->eio_url);
    free(ctx);
}

static int sio_publish(peer_client *c, const char *channel, const char *data,
                       size_t len, peer_ack_cb cb, void *arg)
{
    peer_ctx *ctx = c->ctx;
    if (!c->ws || c->state != SIO_READY || ctx->closing)
        return -1;
    size_t cn = strlen(channel);
    sio__reserve(&ctx->out, &ctx->out_cap,
                 32 + sio__escaped_max(cn) + sio__escaped_max(len));
    uint64_t id = c->next_id;
    char *p = ctx->out;
    p += sprintf(p, "42%llu[\"pub\",", (unsigned long long)id);
    p = sio__escape(p, channel, cn);
    *p++ = ',';
    if (sio__is_json_string(data, len)) {
        memcpy(p, data, len);
        p += len;
    } else {
        p = sio__escape(p, data, len);
    }
    *p++ = ']';
    if (sio__send(c, ctx->out, (size_t)(p - ctx->out)))
        return -1;
    peer_acks_add(&c->acks, id, cb, arg);
    c->next_id++;
    return 0;
}

const peer_driver peer_socketio = {
    .name = "socketio",
    .default_url = SIO_DEFAULT_URL,
    .ctx_new = sio_ctx_new,
    .ctx_close = sio_ctx_close,
    .ctx_free = sio_ctx_free,
    .open = sio_open,
    .publish = sio_publish,
};
