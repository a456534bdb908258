/*
 * The WebSocket client transport (herald/ws.h): libwebsockets 4.1's client
 * role on the owner's libuv loop, for the Herald client (hc_client.c) and
 * herald-bench's peer drivers. It is built for 10,000+ connections per
 * process: a connection is one small struct; received messages reach the
 * owner straight from lws's buffer unless they come in pieces (then one
 * reassembly buffer, released when large); queued sends live in one
 * growable buffer per connection. It also parses ws:// URLs
 * (hc_url_parse), which the bench's lean reader shares.
 *
 * Lifetimes: an hc_ws is freed only when lws no longer points at it
 * (WSI_DESTROY, or the connection never started), it is dead (closed by the
 * owner, or its closed callback has run), and none of its callbacks is on
 * the stack (house rule 6). Everything runs on the context's loop thread.
 */
#include "herald/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <libwebsockets.h>

_Static_assert(HC_WS_PRE >= LWS_PRE, "HC_WS_PRE must cover LWS_PRE");

/* lws 4.1 keeps LWS_WRITE_CLOSE (4) out of its public header but maps it to
 * the close opcode; returning -1 from a callback drops the socket without a
 * close frame, so close frames are written by hand (as the server does). */
#define HC_WS_WRITE_CLOSE ((enum lws_write_protocol)4)
/* Queued messages written per WRITEABLE callback at most (while the socket
 * is not choked). */
#define HC_WS_WRITES_PER_CB 64
/* A reassembly or send buffer larger than this is released when empty. */
#define HC_WS_KEEP (64 * 1024)
/* Default limit of a received message. */
#define HC_WS_MAX_MESSAGE (16 * 1024 * 1024)
/* How long hc_ws_ctx_close() waits for close handshakes before it destroys
 * the lws contexts anyway. */
#define HC_WS_CLOSE_GRACE_MS 2000
/* Connections are spread over up to HC_WS_SHARDS lws contexts, one more per
 * HC_WS_SHARD_WSI live connections (see ws.h). Measured: a reconnect of
 * 10,000 Herald clients took 5-8 s with the bench 78-83 % in lws's timer
 * list in one context, 2 s spread; 15,000 connections to Nchan offered at
 * 30,000/s took 20 s of bench CPU and half of them timed out. */
#define HC_WS_SHARDS 32
#define HC_WS_SHARD_WSI 256

/* One queued outgoing message in hc_ws.tx: this header, LWS_PRE bytes for
 * lws to build the frame header in, the payload, padding to 8. lws writes
 * only into the LWS_PRE bytes before a payload, so an earlier record's
 * header is never overwritten. */
typedef struct hc_ws__rec {
    uint32_t len;
    uint32_t binary;
} hc_ws__rec;

struct hc_ws {
    hc_ws_ctx *ctx;
    hc_ws *prev, *next;         /* ctx->conns */
    struct lws *wsi;            /* NULL once lws destroyed it */
    const hc_ws_callbacks *cb;
    void *user;
    size_t max_message;
    char *rx;                   /* reassembly of a fragmented message */
    size_t rx_len, rx_cap;
    char *tx;                   /* queued records from tx_off to tx_len */
    size_t tx_off, tx_len, tx_cap;
    uint64_t last_rx_ms;
    unsigned depth;             /* our callbacks on the stack */
    int close_code;             /* from the server's close frame */
    char close_reason[124];
    unsigned char open;         /* handshake done, not closed */
    unsigned char dead;         /* closed by the owner, or reported */
    unsigned char want_close;   /* a close frame to write */
    unsigned char want_write;   /* the owner asked for writeable */
    unsigned char ping_due;
    unsigned char in_writeable; /* the owner's writeable is running */
    unsigned char write_failed; /* hc_ws_write failed in there */
    unsigned char remote_close; /* close_code/close_reason are set */
    unsigned char starting;     /* inside lws_client_connect_via_info */
    unsigned char start_failed; /* it failed synchronously */
    unsigned char rx_binary;
};

struct hc_ws_ctx {
    uv_loop_t *loop;
    /* Each cleared by lws (pcontext) when it is gone. */
    struct lws_context *lws[HC_WS_SHARDS];
    unsigned n_shards;          /* created so far */
    unsigned next_shard;        /* round robin of new connections */
    struct lws_context_creation_info info;  /* to create more shards */
    void *loops[1];
    char *ca_file;              /* owned copy for info */
    uv_timer_t destroy_timer;   /* runs lws_context_destroy off-callback */
    hc_ws *conns;               /* every hc_ws not yet freed */
    unsigned n_wsi;             /* live wsis */
    unsigned char closing, destroy_started, timer_closed;
    char start_err[128];        /* a synchronous connect failure's reason */
};

static void *hc_ws__xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        abort();   /* out of memory: the project's one policy */
    return p;
}

/* --- URLs ------------------------------------------------------------------ */

void hc_url_authority(const hc_url *u, char *out, size_t n)
{
    int v6 = strchr(u->host, ':') != NULL;
    snprintf(out, n, "%s%s%s:%d", v6 ? "[" : "", u->host, v6 ? "]" : "",
             u->port);
}

int hc_url_parse(const char *url, hc_url *u, char *err, size_t errlen)
{
    const char *p, *hs_end, *host_end, *port_at = NULL;
    size_t hl;

    memset(u, 0, sizeof(*u));
    if (!strncmp(url, "ws://", 5)) {
        p = url + 5;
    } else if (!strncmp(url, "wss://", 6)) {
        u->tls = 1;
        p = url + 6;
    } else {
        snprintf(err, errlen, "URL must start with ws:// or wss://: %s", url);
        return -1;
    }
    hs_end = p + strcspn(p, "/?#");
    if (*p == '[') {
        host_end = memchr(p, ']', (size_t)(hs_end - p));
        if (!host_end) {
            snprintf(err, errlen, "bad IPv6 address in %s", url);
            return -1;
        }
        p++;
        if (host_end + 1 < hs_end && host_end[1] == ':')
            port_at = host_end + 2;
    } else {
        host_end = memchr(p, ':', (size_t)(hs_end - p));
        if (host_end)
            port_at = host_end + 1;
        else
            host_end = hs_end;
    }
    hl = (size_t)(host_end - p);
    if (hl == 0 || hl >= sizeof(u->host)) {
        snprintf(err, errlen, "bad host in %s", url);
        return -1;
    }
    memcpy(u->host, p, hl);
    u->host[hl] = '\0';
    u->port = u->tls ? 443 : 80;
    if (port_at) {
        char *end;
        long port = strtol(port_at, &end, 10);
        if (end != hs_end || port < 1 || port > 65535) {
            snprintf(err, errlen, "bad port in %s", url);
            return -1;
        }
        u->port = (int)port;
    }
    /* RFC 6455 3: no fragment in a WebSocket URI. */
    if (strchr(hs_end, '#') || strlen(hs_end) >= sizeof(u->path)) {
        snprintf(err, errlen, "bad path in %s", url);
        return -1;
    }
    snprintf(u->path, sizeof(u->path), "%s", hs_end);
    return 0;
}

/* --- Lifetime ---------------------------------------------------------------- */

static void hc_ws__unlink(hc_ws *c)
{
    hc_ws_ctx *ctx = c->ctx;
    if (c->prev)
        c->prev->next = c->next;
    else
        ctx->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void hc_ws__free(hc_ws *c)
{
    hc_ws__unlink(c);
    free(c->rx);
    free(c->tx);
    free(c);
}

static void hc_ws__maybe_free(hc_ws *c)
{
    if (c->dead && !c->wsi && c->depth == 0)
        hc_ws__free(c);
}

/* The connection ended (or never opened): report once, then it is dead.
 * code and why describe a local end; a close frame from the server takes
 * precedence. */
static void hc_ws__report(hc_ws *c, int code, const char *why)
{
    hc_ws_closed ev;
    int was_open = c->open;
    c->open = 0;
    if (c->dead)
        return;
    c->dead = 1;
    if (c->starting) {
        /* hc_ws_open will return NULL with this reason. */
        c->start_failed = 1;
        snprintf(c->ctx->start_err, sizeof(c->ctx->start_err), "%s",
                 why ? why : "connection failed");
        return;
    }
    if (c->ctx->closing)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.was_open = was_open;
    ev.remote = c->remote_close;
    ev.code = c->remote_close ? c->close_code : code;
    ev.reason = c->remote_close ? c->close_reason
                                : why ? why : "connection closed";
    c->depth++;
    c->cb->closed(c, &ev, c->user);
    c->depth--;
}

/* --- Receiving ------------------------------------------------------------------ */

static void hc_ws__deliver(hc_ws *c, int binary, const char *data, size_t len)
{
    c->depth++;
    c->cb->message(c, binary, data, len, c->user);
    c->depth--;
}

/* Returns -1 to drop the connection (message too large). */
static int hc_ws__receive(hc_ws *c, struct lws *wsi, const char *in,
                          size_t len)
{
    int final = lws_is_final_fragment(wsi) &&
                lws_remaining_packet_payload(wsi) == 0;
    c->last_rx_ms = uv_now(c->ctx->loop);
    if (final && c->rx_len == 0 && len <= c->max_message) {
        /* The common case: a whole message in one piece, no copy. */
        hc_ws__deliver(c, lws_frame_is_binary(wsi), in, len);
        return 0;
    }
    if (c->rx_len == 0)
        c->rx_binary = (unsigned char)lws_frame_is_binary(wsi);
    if (c->rx_len + len > c->max_message) {
        hc_ws__report(c, 1009, "message larger than the limit");
        return -1;
    }
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 1024;
        while (cap < c->rx_len + len)
            cap *= 2;
        c->rx = hc_ws__xrealloc(c->rx, cap);
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (!final)
        return 0;
    /* rx_len is reset before delivering: a callback may close c, and the
     * buffer stays valid until c is freed, which cannot happen while the
     * callback runs. */
    len = c->rx_len;
    c->rx_len = 0;
    hc_ws__deliver(c, c->rx_binary, c->rx, len);
    if (c->rx_cap > HC_WS_KEEP && !c->dead) {
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
    return 0;
}

/* --- Sending -------------------------------------------------------------------- */

static size_t hc_ws__rec_size(size_t len)
{
    return (sizeof(hc_ws__rec) + LWS_PRE + len + 7) & ~(size_t)7;
}

/* A WRITEABLE callback: a close frame, or a ping, or queued messages while
 * the socket takes them and then the owner's writeable. Returns -1 to drop
 * the connection. */
static int hc_ws__writeable(hc_ws *c)
{
    int n = 0;
    if (c->want_close) {
        unsigned char cl[LWS_PRE + 2];
        cl[LWS_PRE] = 1000 >> 8;
        cl[LWS_PRE + 1] = 1000 & 0xff;
        c->want_close = 0;
        if (lws_write(c->wsi, cl + LWS_PRE, 2, HC_WS_WRITE_CLOSE) < 0)
            return -1;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 2);
        return 0;
    }
    if (c->dead || !c->open)
        return 0;
    if (c->ping_due) {
        unsigned char ping[LWS_PRE + 1];
        ping[LWS_PRE] = 'c';   /* lws 4.1 reports no empty pongs */
        c->ping_due = 0;
        if (lws_write(c->wsi, ping + LWS_PRE, 1, LWS_WRITE_PING) < 0) {
            hc_ws__report(c, 1006, "write failed");
            return -1;
        }
        lws_callback_on_writable(c->wsi);
        return 0;
    }
    while (c->tx_off < c->tx_len) {
        hc_ws__rec *r = (hc_ws__rec *)(c->tx + c->tx_off);
        unsigned char *p = (unsigned char *)(r + 1) + LWS_PRE;
        if (n && (n >= HC_WS_WRITES_PER_CB || lws_send_pipe_choked(c->wsi))) {
            lws_callback_on_writable(c->wsi);
            return 0;
        }
        if (lws_write(c->wsi, p, r->len,
                      r->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) <
            (int)r->len) {
            hc_ws__report(c, 1006, "write failed");
            return -1;
        }
        c->tx_off += hc_ws__rec_size(r->len);
        n++;
    }
    c->tx_off = c->tx_len = 0;
    if (c->tx_cap > HC_WS_KEEP) {
        free(c->tx);
        c->tx = NULL;
        c->tx_cap = 0;
    }
    if (!c->want_write || !c->cb->writeable)
        return 0;
    if (n && lws_send_pipe_choked(c->wsi)) {
        lws_callback_on_writable(c->wsi);
        return 0;
    }
    c->want_write = 0;
    c->in_writeable = 1;
    c->write_failed = 0;
    c->cb->writeable(c, c->user);
    c->in_writeable = 0;
    if (c->write_failed) {
        hc_ws__report(c, 1006, "write failed");
        return -1;
    }
    return 0;
}

int hc_ws_send(hc_ws *c, int binary, const void *data, size_t len)
{
    size_t need = hc_ws__rec_size(len);
    hc_ws__rec *r;
    if (!c || !c->open || c->dead || !c->wsi || len > UINT32_MAX)
        return -1;
    if (c->tx_off && c->tx_off == c->tx_len)
        c->tx_off = c->tx_len = 0;
    if (c->tx_len + need > c->tx_cap) {
        size_t cap;
        if (c->tx_off) {
            /* Move the unsent records to the front first. */
            memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
            c->tx_len -= c->tx_off;
            c->tx_off = 0;
        }
        cap = c->tx_cap ? c->tx_cap : 512;
        while (cap < c->tx_len + need)
            cap *= 2;
        if (cap != c->tx_cap) {
            c->tx = hc_ws__xrealloc(c->tx, cap);
            c->tx_cap = cap;
        }
    }
    r = (hc_ws__rec *)(c->tx + c->tx_len);
    r->len = (uint32_t)len;
    r->binary = binary != 0;
    if (len)
        memcpy((char *)(r + 1) + LWS_PRE, data, len);
    c->tx_len += need;
    lws_callback_on_writable(c->wsi);
    return 0;
}

void hc_ws_want_write(hc_ws *c)
{
    if (!c || !c->open || c->dead || !c->wsi)
        return;
    c->want_write = 1;
    lws_callback_on_writable(c->wsi);
}

int hc_ws_write(hc_ws *c, int binary, void *data, size_t len)
{
    if (!c->in_writeable || c->write_failed || c->dead || len > INT32_MAX)
        return -1;
    if (lws_write(c->wsi, data, len,
                  binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)len) {
        c->write_failed = 1;
        return -1;
    }
    return 0;
}

void hc_ws_ping(hc_ws *c)
{
    if (!c || !c->open || c->dead || !c->wsi)
        return;
    c->ping_due = 1;
    lws_callback_on_writable(c->wsi);
}

uint64_t hc_ws_last_rx_ms(const hc_ws *c)
{
    return c->last_rx_ms;
}

/* --- lws glue ---------------------------------------------------------------------- */

static void hc_ws__destroy_soon(hc_ws_ctx *ctx, uint64_t delay_ms);

static int hc_ws__callback(struct lws *wsi, enum lws_callback_reasons reason,
                           void *user, void *in, size_t len)
{
    hc_ws *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    int rc = 0;
    if (!c)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    c->depth++;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c->dead) {
            rc = -1;
            break;
        }
        c->wsi = wsi;
        c->open = 1;
        c->last_rx_ms = uv_now(c->ctx->loop);
        c->cb->open(c, c->user);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c->dead)
            rc = hc_ws__receive(c, wsi, in, len);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        if (!c->dead)
            c->last_rx_ms = uv_now(c->ctx->loop);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (c->want_close || (!c->dead && c->open))
            rc = hc_ws__writeable(c);
        break;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* lws answers with its close frame and then closes; the code and
         * reason are reported when it does. A frame without a code counts
         * as no close frame (1006), as RFC 6455 7.1.5 has it. */
        if (!c->dead && len >= 2) {
            const unsigned char *p = in;
            size_t rl = len - 2;
            c->remote_close = 1;
            c->close_code = p[0] << 8 | p[1];
            if (rl >= sizeof(c->close_reason))
                rl = sizeof(c->close_reason) - 1;
            memcpy(c->close_reason, p + 2, rl);
            c->close_reason[rl] = '\0';
        }
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        hc_ws__report(c, 1006, in ? (const char *)in : "connection failed");
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        hc_ws__report(c, 1006, "connection closed");
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        hc_ws__report(c, 1006, "connection closed");
        lws_set_opaque_user_data(wsi, NULL);
        c->wsi = NULL;
        c->ctx->n_wsi--;
        if (c->ctx->closing && c->ctx->n_wsi == 0)
            hc_ws__destroy_soon(c->ctx, 0);
        break;
    default:
        break;
    }
    c->depth--;
    hc_ws__maybe_free(c);
    return rc;
}

static const struct lws_protocols hc_ws__protocols[] = {
    /* rx_buffer_size 1024: lws allocates it per connection; longer
     * messages arrive in pieces and are reassembled here. */
    { "hc-ws", hc_ws__callback, 0, 1024, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* No lws "validity" timers: owners have their own liveness checks (the
 * Herald client's ping and pong timeout) or none (peers ping on their own
 * terms, and lws answers). lws's default policy (ping after 300 s idle)
 * re-inserts a per-connection timer into one sorted list on every received
 * message, an O(connections) walk that took half the CPU of a bench
 * holding 10,000 subscribers. */
static const lws_retry_bo_t hc_ws__no_validity = {
    .secs_since_valid_ping = 0,
    .secs_since_valid_hangup = 0,
};

/* --- Connections ------------------------------------------------------------------ */

/* The lws context for the next connection, creating shards as the number
 * of live connections grows; NULL if none can be had. wss:// connections
 * all use the first context, the only one with TLS (ws.h); OpenSSL's global
 * state is set up (and torn down) by that one only. */
static struct lws_context *hc_ws__shard(hc_ws_ctx *ctx, int tls)
{
    unsigned want = 1 + ctx->n_wsi / HC_WS_SHARD_WSI;
    if (tls)
        return ctx->lws[0];
    if (want > HC_WS_SHARDS)
        want = HC_WS_SHARDS;
    while (ctx->n_shards < want && !ctx->closing) {
        struct lws_context_creation_info info = ctx->info;
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.client_ssl_ca_filepath = NULL;
        info.pcontext = &ctx->lws[ctx->n_shards];
        ctx->lws[ctx->n_shards] = lws_create_context(&info);
        if (!ctx->lws[ctx->n_shards])
            break;
        ctx->n_shards++;
    }
    for (unsigned i = 0; i < ctx->n_shards; i++) {
        unsigned k = ctx->next_shard++ % ctx->n_shards;
        if (ctx->lws[k])
            return ctx->lws[k];
    }
    return NULL;
}

hc_ws *hc_ws_open(hc_ws_ctx *ctx, const hc_ws_options *o, char *err,
                  size_t errlen)
{
    struct lws_client_connect_info ci;
    char path[1040], hosthdr[300], dummy[8];
    const char *dp;
    hc_url u;
    struct lws *wsi;
    hc_ws *c;

    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (!ctx || ctx->closing || !o || !o->url || !o->cb || !o->cb->open ||
        !o->cb->message || !o->cb->closed) {
        snprintf(err, errlen, "no context, URL or callbacks");
        return NULL;
    }
    if (hc_url_parse(o->url, &u, err, errlen) < 0)
        return NULL;
    dp = o->default_path ? o->default_path : "/";
    if (!u.path[0])
        snprintf(path, sizeof(path), "%s", dp);
    else   /* "?q" without a path becomes "/?q" */
        snprintf(path, sizeof(path), "%s%s", u.path[0] == '/' ? "" : "/",
                 u.path);
    hc_url_authority(&u, hosthdr, sizeof(hosthdr));
    c = hc_ws__xrealloc(NULL, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->ctx = ctx;
    c->cb = o->cb;
    c->user = o->user;
    c->max_message = o->max_message ? o->max_message : HC_WS_MAX_MESSAGE;
    c->next = ctx->conns;
    if (ctx->conns)
        ctx->conns->prev = c;
    ctx->conns = c;

    /* lws copies these strings (its connect stash). */
    memset(&ci, 0, sizeof(ci));
    ci.context = hc_ws__shard(ctx, u.tls);
    if (!ci.context) {
        snprintf(err, errlen, "no lws context");
        hc_ws__free(c);
        return NULL;
    }
    ci.address = u.host;
    ci.port = u.port;
    ci.path = path;
    ci.host = hosthdr;
    ci.origin = o->origin;
    ci.protocol = o->subprotocol;
    ci.local_protocol_name = hc_ws__protocols[0].name;
    ci.iface = o->local_addr;       /* source address (NULL: any) */
    ci.retry_and_idle_policy = &hc_ws__no_validity;
    ci.opaque_user_data = c;
    if (u.tls) {
        ci.ssl_connection = LCCSCF_USE_SSL;
        if (o->tls_insecure)
            ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
                                 LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                 LCCSCF_ALLOW_EXPIRED;
    }

    /* lws may fail synchronously; it has then (or has not) called back
     * with CONNECTION_ERROR and destroyed the wsi before returning NULL.
     * `starting` keeps the closed callback from running in here. */
    ctx->start_err[0] = '\0';
    c->starting = 1;
    c->wsi = (struct lws *)1;       /* "lws may point at c" until known */
    ctx->n_wsi++;
    c->depth++;
    wsi = lws_client_connect_via_info(&ci);
    c->depth--;
    c->starting = 0;
    if (!wsi) {
        if (c->wsi == (struct lws *)1) {
            /* No WSI_DESTROY came for it. */
            ctx->n_wsi--;
            c->wsi = NULL;
        }
        snprintf(err, errlen, "cannot connect to %s: %s", o->url,
                 ctx->start_err[0] ? ctx->start_err : "lws refused");
        c->dead = 1;
        hc_ws__maybe_free(c);
        return NULL;
    }
    if (c->wsi == (struct lws *)1)
        c->wsi = wsi;
    if (c->start_failed) {
        snprintf(err, errlen, "cannot connect to %s: %s", o->url,
                 ctx->start_err);
        hc_ws__maybe_free(c);
        return NULL;
    }
    return c;
}

/* Has lws close the connection without a close frame. lws 4.1 kills on
 * a zero-second timeout, but on a foreign libuv loop it looks at its
 * timers only after socket events: called from outside an lws callback
 * (a uv timer of the owner) on a quiet connection, the kill would wait for
 * the next event, and the server would keep the connection. Waking the
 * service makes it happen now. */
static void hc_ws__kill(hc_ws *c)
{
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    lws_cancel_service(lws_get_context(c->wsi));
}

void hc_ws_close(hc_ws *c)
{
    if (!c || c->dead)
        return;
    c->dead = 1;
    if (c->wsi) {
        if (c->open) {
            c->want_close = 1;
            lws_callback_on_writable(c->wsi);
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 2);
        } else {
            hc_ws__kill(c);
        }
    }
    c->open = 0;
    hc_ws__maybe_free(c);
}

void hc_ws_drop(hc_ws *c)
{
    if (!c || c->dead)
        return;
    c->dead = 1;
    c->open = 0;
    if (c->wsi)
        hc_ws__kill(c);
    hc_ws__maybe_free(c);
}

/* --- Context ----------------------------------------------------------------------- */

static void hc_ws__destroy_cb(uv_timer_t *t)
{
    hc_ws_ctx *ctx = t->data;
    if (ctx->destroy_started)
        return;
    ctx->destroy_started = 1;
    /* First pass: lws closes its handles on the loop and clears ctx->lws[]
     * through pcontext when it is done. */
    for (unsigned i = 0; i < ctx->n_shards; i++)
        if (ctx->lws[i])
            lws_context_destroy(ctx->lws[i]);
}

static void hc_ws__destroy_soon(hc_ws_ctx *ctx, uint64_t delay_ms)
{
    if (!ctx->destroy_started && !ctx->timer_closed)
        uv_timer_start(&ctx->destroy_timer, hc_ws__destroy_cb, delay_ms, 0);
}

hc_ws_ctx *hc_ws_ctx_new(uv_loop_t *loop, const hc_ws_ctx_options *opt,
                         char *err, size_t errlen)
{
    struct lws_context_creation_info *info;
    struct rlimit rl;
    hc_ws_ctx *ctx = hc_ws__xrealloc(NULL, sizeof(*ctx));

    memset(ctx, 0, sizeof(*ctx));
    /* lws logs notices to stderr by default; a library keeps quiet. */
    lws_set_log_level(opt && opt->lws_log_level ? opt->lws_log_level : LLL_ERR,
                      NULL);
    ctx->loop = loop;
    ctx->loops[0] = loop;
    info = &ctx->info;
    info->port = CONTEXT_PORT_NO_LISTEN;
    info->protocols = hc_ws__protocols;
    info->options = LWS_SERVER_OPTION_LIBUV |
                    LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info->foreign_loops = ctx->loops;
    info->count_threads = 1;
    /* lws indexes connections by descriptor, process-wide. */
    info->fd_limit_per_thread = 20000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        info->fd_limit_per_thread = (unsigned)rl.rlim_cur;
    if (opt && opt->ca_file) {
        size_t n = strlen(opt->ca_file) + 1;
        ctx->ca_file = memcpy(hc_ws__xrealloc(NULL, n), opt->ca_file, n);
        info->client_ssl_ca_filepath = ctx->ca_file;
    }
    info->timeout_secs = 10;            /* connect + handshake */
    /* The first shard now, so that a setup failure (a bad CA file) shows
     * here. lws clears ctx->lws[0] through pcontext when the context is
     * gone (it does not write it at creation in 4.1). */
    info->pcontext = &ctx->lws[0];
    ctx->lws[0] = lws_create_context(info);
    if (!ctx->lws[0]) {
        if (err)
            snprintf(err, errlen, "lws_create_context failed");
        free(ctx->ca_file);
        free(ctx);
        return NULL;
    }
    ctx->n_shards = 1;
    uv_timer_init(loop, &ctx->destroy_timer);
    ctx->destroy_timer.data = ctx;
    return ctx;
}

void hc_ws_ctx_close(hc_ws_ctx *ctx)
{
    hc_ws *c, *next;
    if (!ctx || ctx->closing)
        return;
    ctx->closing = 1;
    for (c = ctx->conns; c; c = next) {
        next = c->next;
        hc_ws_close(c);
    }
    hc_ws__destroy_soon(ctx, ctx->n_wsi ? HC_WS_CLOSE_GRACE_MS : 0);
}

static void hc_ws__timer_closed(uv_handle_t *h)
{
    (void)h;
}

void hc_ws_ctx_free(hc_ws_ctx *ctx)
{
    if (!ctx)
        return;
    if (!ctx->closing)
        hc_ws_ctx_close(ctx);
    if (!ctx->destroy_started) {
        uv_timer_stop(&ctx->destroy_timer);
        hc_ws__destroy_cb(&ctx->destroy_timer);
    }
    if (!ctx->timer_closed) {
        ctx->timer_closed = 1;
        uv_close((uv_handle_t *)&ctx->destroy_timer, hc_ws__timer_closed);
    }
    uv_run(ctx->loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < ctx->n_shards; i++) {
        if (ctx->lws[i]) {
            /* Second pass, as lws requires on a foreign loop. */
            lws_context_destroy(ctx->lws[i]);
            uv_run(ctx->loop, UV_RUN_DEFAULT);
        }
    }
    /* Connections whose wsi lws dropped without telling us. */
    while (ctx->conns)
        hc_ws__free(ctx->conns);
    free(ctx->ca_file);
    free(ctx);
}

unsigned hc_ws_ctx_shards(const hc_ws_ctx *ctx)
{
    return ctx->n_shards;
}
