/*
 * wsconn: the WebSocket transport of the peer drivers (wsconn.h), on
 * libwebsockets 4.1's client role with the bench thread's libuv loop as a
 * foreign loop. It is built for 10,000+
 * connections per process: a connection is one small struct; received
 * messages reach the driver straight from lws's buffer unless they come
 * in pieces (then one reassembly buffer, released when large); queued
 * sends live in one growable buffer per connection, written as several
 * frames per WRITEABLE while the socket takes them. A wsconn_ctx spreads
 * its connections over several lws contexts on the same loop (see
 * WSCONN_SHARDS), as the Herald C client does.
 *
 * Lifetimes: a wsconn is freed only when lws no longer points at it
 * (WSI_DESTROY, or the connection never started), it is dead (closed by
 * the driver, or its closed() callback has run), and none of its
 * callbacks is on the stack (house rule 6). Everything runs on the
 * context's loop thread.
 */
#include "wsconn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <libwebsockets.h>

#include <herald/client.h>     /* hc_url_parse */

/* lws 4.1 keeps LWS_WRITE_CLOSE (4) out of its public header but maps it to
 * the close opcode; returning -1 from a callback drops the socket without a
 * close frame, so close frames are written by hand (as hc_client does). */
#define WSCONN_WRITE_CLOSE ((enum lws_write_protocol)4)
/* Frames written per WRITEABLE callback at most (while not choked). */
#define WSCONN_WRITES_PER_CB 64
/* A reassembly buffer larger than this is released after its message. */
#define WSCONN_RX_KEEP (64 * 1024)
/* A received message larger than this closes the connection (1009). */
#define WSCONN_RX_MAX (16 * 1024 * 1024)
/* How long wsconn_ctx_close() waits for close handshakes before it
 * destroys the lws context anyway. */
#define WSCONN_CLOSE_GRACE_MS 2000
/* Connections are spread over up to WSCONN_SHARDS lws contexts on the
 * loop, one more per WSCONN_SHARD_WSI live connections: lws 4.1 keeps a
 * context's pending timeouts (connect, handshake) in one list sorted by
 * deadline and inserts by walking it, so k connections opening at once
 * cost O(k^2) in one context. Measured against Nchan: 15,000 connections
 * offered at 30,000/s took 20 s of bench CPU and half of them timed out
 * with one context. */
#define WSCONN_SHARDS 32
#define WSCONN_SHARD_WSI 256

/* One queued outgoing message in wsconn.tx: this header, LWS_PRE bytes
 * for lws to build the frame header in, the payload, padding to 8. lws
 * writes only into the LWS_PRE bytes before a payload, so an earlier
 * record's header is never overwritten. */
typedef struct wsconn__rec {
    uint32_t len;
    uint32_t binary;
} wsconn__rec;

struct wsconn {
    wsconn_ctx *ctx;
    wsconn *prev, *next;        /* ctx->conns */
    struct lws *wsi;            /* NULL once lws destroyed it */
    const wsconn_cb *cb;
    void *user;
    char *rx;                   /* reassembly of a fragmented message */
    size_t rx_len, rx_cap;
    char *tx;                   /* queued records from tx_off to tx_len */
    size_t tx_off, tx_len, tx_cap;
    unsigned depth;             /* our callbacks on the stack */
    unsigned char open;         /* handshake done, not closed */
    unsigned char dead;         /* closed by the driver or reported */
    unsigned char want_close;   /* a close frame to write */
    unsigned char starting;     /* inside lws_client_connect_via_info */
    unsigned char start_failed; /* it failed synchronously */
    unsigned char rx_binary;
};

struct wsconn_ctx {
    uv_loop_t *loop;
    /* Each cleared by lws (pcontext) when it is gone. */
    struct lws_context *lws[WSCONN_SHARDS];
    unsigned n_shards;          /* created so far */
    unsigned next_shard;        /* round robin of new connections */
    struct lws_context_creation_info info;  /* to create more shards */
    void *loops[1];
    uv_timer_t destroy_timer;   /* runs lws_context_destroy off-callback */
    wsconn *conns;              /* every wsconn not yet freed */
    unsigned n_wsi;             /* live wsis */
    unsigned char closing, destroy_started, timer_closed;
    char start_err[128];        /* a synchronous connect failure's reason */
};

static void *wsconn__xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        abort();   /* out of memory: the project's one policy */
    return p;
}

/* --- Lifetime ----------------------------------------------------------- */

static void wsconn__unlink(wsconn *c)
{
    wsconn_ctx *ctx = c->ctx;
    if (c->prev)
        c->prev->next = c->next;
    else
        ctx->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void wsconn__free(wsconn *c)
{
    wsconn__unlink(c);
    free(c->rx);
    free(c->tx);
    free(c);
}

static void wsconn__maybe_free(wsconn *c)
{
    if (c->dead && !c->wsi && c->depth == 0)
        wsconn__free(c);
}

/* The connection ended (or never opened): report once, then it is dead. */
static void wsconn__report(wsconn *c, const char *why)
{
    int was_open = c->open;
    c->open = 0;
    if (c->dead)
        return;
    c->dead = 1;
    if (c->starting) {
        /* wsconn_open will return NULL with this reason. */
        c->start_failed = 1;
        snprintf(c->ctx->start_err, sizeof(c->ctx->start_err), "%s",
                 why ? why : "connection failed");
        return;
    }
    if (c->ctx->closing)
        return;
    c->depth++;
    c->cb->closed(c, was_open, why, c->user);
    c->depth--;
}

/* --- Receiving ---------------------------------------------------------- */

static void wsconn__deliver(wsconn *c, int binary, const char *data,
                            size_t len)
{
    c->depth++;
    c->cb->message(c, binary, data, len, c->user);
    c->depth--;
}

/* Returns -1 to drop the connection (message too large). */
static int wsconn__receive(wsconn *c, struct lws *wsi, const char *in,
                           size_t len)
{
    int final = lws_is_final_fragment(wsi) &&
                lws_remaining_packet_payload(wsi) == 0;
    if (final && c->rx_len == 0) {
        /* The common case: a whole message in one piece, no copy. */
        wsconn__deliver(c, lws_frame_is_binary(wsi), in, len);
        return 0;
    }
    if (c->rx_len == 0)
        c->rx_binary = (unsigned char)lws_frame_is_binary(wsi);
    if (c->rx_len + len > WSCONN_RX_MAX) {
        wsconn__report(c, "wsconn: message larger than 16 MiB");
        return -1;
    }
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 1024;
        while (cap < c->rx_len + len)
            cap *= 2;
        c->rx = wsconn__xrealloc(c->rx, cap);
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
    wsconn__deliver(c, c->rx_binary, c->rx, len);
    if (c->rx_cap > WSCONN_RX_KEEP && !c->dead) {
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
    return 0;
}

/* --- Sending ------------------------------------------------------------ */

static size_t wsconn__rec_size(size_t len)
{
    return (sizeof(wsconn__rec) + LWS_PRE + len + 7) & ~(size_t)7;
}

/* Writes queued frames while the socket takes them; a close frame last.
 * Returns -1 to drop the connection. */
static int wsconn__writeable(wsconn *c)
{
    int n = 0;
    while (c->tx_off < c->tx_len && !c->want_close) {
        wsconn__rec *r = (wsconn__rec *)(c->tx + c->tx_off);
        unsigned char *p = (unsigned char *)(r + 1) + LWS_PRE;
        if (n && (n >= WSCONN_WRITES_PER_CB || lws_send_pipe_choked(c->wsi))) {
            lws_callback_on_writable(c->wsi);
            return 0;
        }
        if (lws_write(c->wsi, p, r->len,
                      r->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) <
            (int)r->len) {
            wsconn__report(c, "wsconn: write failed");
            return -1;
        }
        c->tx_off += wsconn__rec_size(r->len);
        n++;
    }
    if (c->tx_off == c->tx_len) {
        c->tx_off = c->tx_len = 0;
        if (c->tx_cap > WSCONN_RX_KEEP) {
            free(c->tx);
            c->tx = NULL;
            c->tx_cap = 0;
        }
    }
    if (c->want_close) {
        unsigned char cl[LWS_PRE + 2];
        if (n) {
            lws_callback_on_writable(c->wsi);
            return 0;
        }
        cl[LWS_PRE] = 1000 >> 8;
        cl[LWS_PRE + 1] = 1000 & 0xff;
        c->want_close = 0;
        if (lws_write(c->wsi, cl + LWS_PRE, 2, WSCONN_WRITE_CLOSE) < 0)
            return -1;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 2);
    }
    return 0;
}

int wsconn_send(wsconn *c, int binary, const char *data, size_t len)
{
    size_t need = wsconn__rec_size(len);
    wsconn__rec *r;
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
            c->tx = wsconn__xrealloc(c->tx, cap);
            c->tx_cap = cap;
        }
    }
    r = (wsconn__rec *)(c->tx + c->tx_len);
    r->len = (uint32_t)len;
    r->binary = binary != 0;
    if (len)
        memcpy((char *)(r + 1) + LWS_PRE, data, len);
    c->tx_len += need;
    lws_callback_on_writable(c->wsi);
    return 0;
}

/* --- lws glue ----------------------------------------------------------- */

static void wsconn__destroy_soon(wsconn_ctx *ctx, uint64_t delay_ms);

static int wsconn__callback(struct lws *wsi, enum lws_callback_reasons reason,
                            void *user, void *in, size_t len)
{
    wsconn *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
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
        c->cb->open(c, c->user);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c->dead)
            rc = wsconn__receive(c, wsi, in, len);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (c->want_close || (!c->dead && c->open))
            rc = wsconn__writeable(c);
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        wsconn__report(c, in ? (const char *)in : "connection failed");
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        wsconn__report(c, "connection closed");
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        wsconn__report(c, "connection closed");
        lws_set_opaque_user_data(wsi, NULL);
        c->wsi = NULL;
        c->ctx->n_wsi--;
        if (c->ctx->closing && c->ctx->n_wsi == 0)
            wsconn__destroy_soon(c->ctx, 0);
        break;
    default:
        break;
    }
    c->depth--;
    wsconn__maybe_free(c);
    return rc;
}

static const struct lws_protocols wsconn__protocols[] = {
    /* rx_buffer_size 1024: lws allocates it per connection; longer
     * messages arrive in pieces and are reassembled here. */
    { "wsconn", wsconn__callback, 0, 1024, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* No lws "validity" timers: lws's default policy re-inserts a
 * per-connection timer into one sorted list on every received message, an
 * O(connections) walk (see hc_client.c). Peers ping on their own terms,
 * and lws answers pings. */
static const lws_retry_bo_t wsconn__no_validity = {
    .secs_since_valid_ping = 0,
    .secs_since_valid_hangup = 0,
};

/* --- Connections -------------------------------------------------------- */

/* The lws context for the next connection, creating shards as the
 * number of live connections grows; NULL if none can be had. wss://
 * connections all use the first context, the only one with TLS: a TLS
 * client context loads the system CA store (about 1 MB), and OpenSSL's
 * global state is set up (and torn down) by one context only. */
static struct lws_context *wsconn__shard(wsconn_ctx *ctx, int tls)
{
    unsigned want = 1 + ctx->n_wsi / WSCONN_SHARD_WSI;
    if (tls)
        return ctx->lws[0];
    if (want > WSCONN_SHARDS)
        want = WSCONN_SHARDS;
    while (ctx->n_shards < want && !ctx->closing) {
        struct lws_context_creation_info info = ctx->info;
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
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

wsconn *wsconn_open(wsconn_ctx *ctx, const char *url, const char *local_addr,
                    const wsconn_cb *cb, void *user, char *err,
                    size_t errlen)
{
    struct lws_client_connect_info ci;
    char host[256], path[1040], hosthdr[300], dummy[8];
    hc_url u;
    int tls, port;
    struct lws *wsi;
    wsconn *c;

    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (!ctx || ctx->closing || !url || !cb) {
        snprintf(err, errlen, "wsconn: no context, URL or callbacks");
        return NULL;
    }
    if (hc_url_parse(url, &u, err, errlen) < 0)
        return NULL;
    tls = u.tls;
    port = u.port;
    snprintf(host, sizeof(host), "%s", u.host);
    /* "?q" without a path becomes "/?q". */
    snprintf(path, sizeof(path), "%s%s", u.path[0] == '/' ? "" : "/", u.path);
    snprintf(hosthdr, sizeof(hosthdr), "%s:%d", host, port);
    c = wsconn__xrealloc(NULL, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->ctx = ctx;
    c->cb = cb;
    c->user = user;
    c->next = ctx->conns;
    if (ctx->conns)
        ctx->conns->prev = c;
    ctx->conns = c;

    /* lws copies these strings (its connect stash). No Origin header:
     * some peers check it, and a bench client has no page origin. */
    memset(&ci, 0, sizeof(ci));
    ci.context = wsconn__shard(ctx, tls);
    if (!ci.context) {
        snprintf(err, errlen, "wsconn: no lws context");
        wsconn__unlink(c);
        free(c);
        return NULL;
    }
    ci.address = host;
    ci.port = port;
    ci.path = path;
    ci.host = hosthdr;
    ci.local_protocol_name = "wsconn";
    ci.iface = local_addr;          /* source address (NULL: any) */
    ci.retry_and_idle_policy = &wsconn__no_validity;
    ci.opaque_user_data = c;
    if (tls)
        /* Peers on the bench host use self-signed certificates. */
        ci.ssl_connection = LCCSCF_USE_SSL | LCCSCF_ALLOW_SELFSIGNED |
                            LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                            LCCSCF_ALLOW_EXPIRED;

    /* lws may fail synchronously; it has then (or has not) called back
     * with CONNECTION_ERROR and destroyed the wsi before returning NULL.
     * `starting` keeps the closed() callback from running in here. */
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
        snprintf(err, errlen, "wsconn: cannot connect to %s: %s", url,
                 ctx->start_err[0] ? ctx->start_err : "lws refused");
        c->dead = 1;
        wsconn__maybe_free(c);
        return NULL;
    }
    if (c->wsi == (struct lws *)1)
        c->wsi = wsi;
    if (c->start_failed) {
        snprintf(err, errlen, "wsconn: cannot connect to %s: %s", url,
                 ctx->start_err);
        wsconn__maybe_free(c);
        return NULL;
    }
    return c;
}

void wsconn_close(wsconn *c)
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
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
                            LWS_TO_KILL_ASYNC);
        }
    }
    c->open = 0;
    wsconn__maybe_free(c);
}

void *wsconn_user(wsconn *c)
{
    return c->user;
}

/* --- Context ------------------------------------------------------------ */

static void wsconn__destroy_cb(uv_timer_t *t)
{
    wsconn_ctx *ctx = t->data;
    if (ctx->destroy_started)
        return;
    ctx->destroy_started = 1;
    /* First pass: lws closes its handles on the loop and clears ctx->lws[]
     * through pcontext when it is done. */
    for (unsigned i = 0; i < ctx->n_shards; i++)
        if (ctx->lws[i])
            lws_context_destroy(ctx->lws[i]);
}

static void wsconn__destroy_soon(wsconn_ctx *ctx, uint64_t delay_ms)
{
    if (!ctx->destroy_started && !ctx->timer_closed)
        uv_timer_start(&ctx->destroy_timer, wsconn__destroy_cb, delay_ms, 0);
}

wsconn_ctx *wsconn_ctx_new(uv_loop_t *loop, char *err, size_t errlen)
{
    struct lws_context_creation_info *info;
    struct rlimit rl;
    wsconn_ctx *ctx = wsconn__xrealloc(NULL, sizeof(*ctx));

    memset(ctx, 0, sizeof(*ctx));
    lws_set_log_level(LLL_ERR, NULL);
    ctx->loop = loop;
    ctx->loops[0] = loop;
    info = &ctx->info;
    info->port = CONTEXT_PORT_NO_LISTEN;
    info->protocols = wsconn__protocols;
    info->options = LWS_SERVER_OPTION_LIBUV |
                    LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info->foreign_loops = ctx->loops;
    info->count_threads = 1;
    /* lws indexes connections by descriptor, process-wide. */
    info->fd_limit_per_thread = 20000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        info->fd_limit_per_thread = (unsigned)rl.rlim_cur;
    info->timeout_secs = 10;            /* connect + handshake */
    /* The first shard now, so that a setup failure shows here. lws clears
     * ctx->lws[0] through pcontext when the context is gone (it does not
     * write it at creation in 4.1). */
    info->pcontext = &ctx->lws[0];
    ctx->lws[0] = lws_create_context(info);
    if (!ctx->lws[0]) {
        snprintf(err, errlen, "wsconn: lws_create_context failed");
        free(ctx);
        return NULL;
    }
    ctx->n_shards = 1;
    uv_timer_init(loop, &ctx->destroy_timer);
    ctx->destroy_timer.data = ctx;
    return ctx;
}

void wsconn_ctx_close(wsconn_ctx *ctx)
{
    wsconn *c, *next;
    if (!ctx || ctx->closing)
        return;
    ctx->closing = 1;
    for (c = ctx->conns; c; c = next) {
        next = c->next;
        wsconn_close(c);
    }
    wsconn__destroy_soon(ctx, ctx->n_wsi ? WSCONN_CLOSE_GRACE_MS : 0);
}

static void wsconn__timer_closed(uv_handle_t *h)
{
    (void)h;
}

void wsconn_ctx_free(wsconn_ctx *ctx)
{
    if (!ctx)
        return;
    if (!ctx->closing)
        wsconn_ctx_close(ctx);
    if (!ctx->destroy_started) {
        uv_timer_stop(&ctx->destroy_timer);
        wsconn__destroy_cb(&ctx->destroy_timer);
    }
    if (!ctx->timer_closed) {
        ctx->timer_closed = 1;
        uv_close((uv_handle_t *)&ctx->destroy_timer, wsconn__timer_closed);
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
        wsconn__free(ctx->conns);
    free(ctx);
}
