/*
 * The Nchan peer driver (peer.h, `--target nchan`): nginx with the nchan
 * module, configured by bench/peers/nchan (nginx.conf.in). The base URL
 * (--url, default ws://127.0.0.1:8090) names the server; under its path
 * a subscriber opens the WebSocket ws://HOST:PORT/sub/<channel> (Nchan
 * subscribes it during the handshake; every publication arrives as one
 * text message holding the published body), and a publisher POSTs the
 * payload to http://HOST:PORT/pub/<channel>, where 201 (delivered to
 * subscribers) or 202 (none yet) is the acknowledgement.
 *
 * Publishers speak HTTP/1.1 themselves, on one keep-alive uv_tcp
 * connection each, and pipeline their POSTs: nginx answers pipelined
 * requests in order, so the answers match a FIFO of callbacks, and the
 * publications reach Nchan in the order the bench numbered them, which
 * the bench's gap/duplicate check relies on. libcurl was the other
 * choice; it no longer pipelines, so a window of concurrent POSTs would
 * travel on as many connections and could be published out of order (and
 * cost a connection per request in flight).
 *
 * An idle connection (connections scenario) is a WebSocket subscriber of
 * the channel NCHAN_IDLE_CHANNEL, where nothing is published: an Nchan
 * WebSocket is always subscribed to a channel.
 *
 * Threading: everything happens on the context's loop thread (peer.h).
 * Lifetime: a client is freed after its closed callback, or by ctx_free
 * when ctx_close ended it. A publisher's socket state lives apart from
 * the client (nchan__http) and is freed by the handle's close callback,
 * because libuv still calls back (cancelled writes) after uv_close.
 */
#define _GNU_SOURCE   /* memmem */
#include "peer.h"

#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <herald/ws.h>
#include <utlist.h>

#define NCHAN_DEFAULT_URL "ws://127.0.0.1:8090"
#define NCHAN_IDLE_CHANNEL "bench-idle"
/* A response longer than this (headers and body) is a protocol error. */
#define NCHAN_MAX_RESPONSE (1024 * 1024)

typedef struct nchan_pending {
    peer_ack_cb cb;
    void *arg;
} nchan_pending;

typedef struct nchan__http nchan__http;

struct peer_client {
    peer_ctx *ctx;
    peer_client *prev, *next;   /* ctx->clients (utlist) */
    const peer_callbacks *cb;
    void *user;
    hc_ws *ws;                  /* subscriber, idle: NULL once closed */
    nchan__http *http;          /* publisher: NULL once closed */
    unsigned char kind, ready;
};

/* A publisher's HTTP connection. */
struct nchan__http {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t wreq;
    peer_client *c;             /* NULL once the client is gone */
    char *out;                  /* requests not yet handed to uv_write */
    size_t out_len, out_cap;
    char *wbuf;                 /* the requests being written */
    size_t wbuf_cap;
    int writing;
    char *in;                   /* responses read, from in_off to in_len */
    size_t in_off, in_len, in_cap;
    /* Unanswered requests, oldest first: a ring of cap (a power of 2)
     * slots, n used from head. */
    nchan_pending *ring;
    uint32_t cap, head, n;
};

struct peer_ctx {
    uv_loop_t *loop;
    hc_ws_ctx *ws;
    peer_client *clients;
    int closing;
    /* The last base URL, split: WebSocket prefix (ws://host:port/path),
     * HTTP host header, path prefix, and the resolved address. */
    char *base;
    char *ws_prefix;
    char *host_hdr;
    char *path_prefix;
    struct sockaddr_storage addr;
    char url[4096];             /* scratch */
};

static void *nchan__xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        abort();   /* out of memory: the project's one policy */
    return p;
}

static char *nchan__xstrndup(const char *s, size_t n)
{
    char *d = nchan__xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void nchan__reserve(char **buf, size_t *cap, size_t need)
{
    size_t n;
    if (need <= *cap)
        return;
    n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    *buf = nchan__xrealloc(*buf, n);
    *cap = n;
}

/* --- Base URL ------------------------------------------------------------ */

/* Splits ws[s]://host[:port][/path] (http:// too) and resolves the host
 * for the publishers. Returns 0, or -1 with a message on stderr. */
static int nchan__set_base(peer_ctx *ctx, const char *base)
{
    const char *p, *hp_end, *host, *host_end, *port = NULL;
    char hostbuf[256], portbuf[8];
    struct addrinfo hints, *res = NULL;
    size_t plen;
    int rc;

    if (ctx->base && !strcmp(ctx->base, base))
        return 0;
    if (!strncmp(base, "ws://", 5) || !strncmp(base, "http://", 7)) {
        p = strchr(base, ':') + 3;
    } else {
        fprintf(stderr, "nchan: URL must be ws://HOST:PORT[/PATH] (no TLS): %s\n",
                base);
        return -1;
    }
    hp_end = p + strcspn(p, "/?#");
    host = p;
    if (*p == '[') {
        host = p + 1;
        host_end = memchr(p, ']', (size_t)(hp_end - p));
        if (!host_end) {
            fprintf(stderr, "nchan: bad IPv6 address in %s\n", base);
            return -1;
        }
        if (host_end + 1 < hp_end && host_end[1] == ':')
            port = host_end + 2;
    } else {
        host_end = memchr(p, ':', (size_t)(hp_end - p));
        if (host_end)
            port = host_end + 1;
        else
            host_end = hp_end;
    }
    if (host_end == host || (size_t)(host_end - host) >= sizeof(hostbuf) ||
        (port && (hp_end - port < 1 || hp_end - port > 5)) ||
        (*hp_end && *hp_end != '/')) {
        fprintf(stderr, "nchan: bad URL %s\n", base);
        return -1;
    }
    memcpy(hostbuf, host, (size_t)(host_end - host));
    hostbuf[host_end - host] = '\0';
    snprintf(portbuf, sizeof(portbuf), "%.*s", port ? (int)(hp_end - port) : 2,
             port ? port : "80");
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(hostbuf, portbuf, &hints, &res);
    if (rc || !res) {
        fprintf(stderr, "nchan: cannot resolve %s: %s\n", hostbuf,
                gai_strerror(rc));
        return -1;
    }
    memcpy(&ctx->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);

    free(ctx->base);
    free(ctx->ws_prefix);
    free(ctx->host_hdr);
    free(ctx->path_prefix);
    ctx->base = nchan__xstrndup(base, strlen(base));
    plen = strlen(hp_end);
    while (plen && hp_end[plen - 1] == '/')
        plen--;
    ctx->path_prefix = nchan__xstrndup(hp_end, plen);
    ctx->host_hdr = nchan__xstrndup(p, (size_t)(hp_end - p));
    ctx->ws_prefix = nchan__xrealloc(NULL, (size_t)(hp_end - p) + plen + 8);
    sprintf(ctx->ws_prefix, "ws://%.*s%s", (int)(hp_end - p), p,
            ctx->path_prefix);
    return 0;
}

/* --- Clients ------------------------------------------------------------- */

static peer_client *nchan__new(peer_ctx *ctx, const peer_options *o,
                               peer_role kind)
{
    peer_client *c = nchan__xrealloc(NULL, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->ctx = ctx;
    c->cb = o->cb;
    c->user = o->user;
    c->kind = (unsigned char)kind;
    return c;
}

/* The client is dead: tell the bench (unless the context is closing),
 * then free it. */
static void nchan__die(peer_client *c, const char *why)
{
    peer_ctx *ctx = c->ctx;
    if (ctx->closing)
        return;                 /* ctx_free frees it */
    c->cb->closed(c, c->ready, why, c->user);
    if (ctx->closing)
        return;
    DL_DELETE(ctx->clients, c);
    free(c);
}

/* --- Subscribers and idle connections (WebSocket) ------------------------ */

static void nchan__ws_open(hc_ws *ws, void *user)
{
    peer_client *c = user;
    (void)ws;
    /* Nchan subscribed the connection during the handshake. */
    c->ready = 1;
    c->cb->ready(c, c->user);
}

static void nchan__ws_message(hc_ws *ws, int binary, const char *data,
                              size_t len, void *user)
{
    peer_client *c = user;
    (void)ws;
    (void)binary;
    if (c->kind == PEER_SUBSCRIBER)
        c->cb->message(c, data, len, c->user);
}

static void nchan__ws_closed(hc_ws *ws, const hc_ws_closed *ev, void *user)
{
    peer_client *c = user;
    (void)ws;
    c->ws = NULL;
    nchan__die(c, ev->reason[0] ? ev->reason : "nchan: connection closed");
}

static const hc_ws_callbacks nchan__wscb = {
    .open = nchan__ws_open,
    .message = nchan__ws_message,
    .closed = nchan__ws_closed,
};

static peer_client *nchan__ws_client(peer_ctx *ctx, const peer_options *o,
                                     peer_role kind, const char *channel)
{
    peer_client *c;
    hc_ws_options wo;
    char err[256];
    if (ctx->closing ||
        nchan__set_base(ctx, o->url ? o->url : NCHAN_DEFAULT_URL) < 0)
        return NULL;
    if ((size_t)snprintf(ctx->url, sizeof(ctx->url), "%s/sub/%s",
                         ctx->ws_prefix, channel) >= sizeof(ctx->url)) {
        fprintf(stderr, "nchan: channel name too long\n");
        return NULL;
    }
    c = nchan__new(ctx, o, kind);
    /* Linked first: no callback comes from hc_ws_open itself, but keep
     * the client findable by ctx_close from the start. */
    DL_PREPEND(ctx->clients, c);
    memset(&wo, 0, sizeof(wo));
    wo.url = ctx->url;
    wo.local_addr = o->local_addr;
    wo.cb = &nchan__wscb;
    wo.user = c;
    c->ws = hc_ws_open(ctx->ws, &wo, err, sizeof(err));
    if (!c->ws) {
        fprintf(stderr, "nchan: %s\n", err);
        DL_DELETE(ctx->clients, c);
        free(c);
        return NULL;
    }
    return c;
}

/* --- Publishers (HTTP/1.1, pipelined) ------------------------------------ */

static void nchan__http_closed(uv_handle_t *h)
{
    nchan__http *hp = h->data;
    free(hp->out);
    free(hp->wbuf);
    free(hp->in);
    free(hp->ring);
    free(hp);
}

/* Closes the socket; the state is freed by the close callback. */
static void nchan__http_close(nchan__http *hp)
{
    hp->c = NULL;
    if (!uv_is_closing((uv_handle_t *)&hp->tcp))
        uv_close((uv_handle_t *)&hp->tcp, nchan__http_closed);
}

/* The publisher's connection failed: every unanswered publish fails, then
 * the client dies. */
static void nchan__pub_fail(peer_client *c, const char *why)
{
    nchan__http *hp = c->http;
    peer_ctx *ctx = c->ctx;
    c->http = NULL;
    if (!hp)
        return;
    hp->c = NULL;
    while (hp->n && !ctx->closing) {
        nchan_pending q = hp->ring[hp->head];
        hp->head = (hp->head + 1) & (hp->cap - 1);
        hp->n--;
        q.cb(c, 0, why, q.arg);
    }
    nchan__http_close(hp);
    nchan__die(c, why);
}

static void nchan__flush(nchan__http *hp);

static void nchan__write_cb(uv_write_t *req, int status)
{
    nchan__http *hp = req->data;
    hp->writing = 0;
    if (!hp->c)
        return;                 /* closed: cancelled write */
    if (status < 0) {
        nchan__pub_fail(hp->c, "nchan: publish connection write failed");
        return;
    }
    nchan__flush(hp);
}

/* Hands what is queued to uv_write, one write in flight at a time: what
 * is published meanwhile is batched into the next one. */
static void nchan__flush(nchan__http *hp)
{
    uv_buf_t b;
    char *t;
    size_t tc;
    if (hp->writing || !hp->out_len)
        return;
    t = hp->wbuf;
    tc = hp->wbuf_cap;
    hp->wbuf = hp->out;
    hp->wbuf_cap = hp->out_cap;
    hp->out = t;
    hp->out_cap = tc;
    b = uv_buf_init(hp->wbuf, (unsigned)hp->out_len);
    hp->out_len = 0;
    hp->wreq.data = hp;
    if (uv_write(&hp->wreq, (uv_stream_t *)&hp->tcp, &b, 1,
                 nchan__write_cb) < 0) {
        nchan__pub_fail(hp->c, "nchan: publish connection write failed");
        return;
    }
    hp->writing = 1;
}

static void nchan__alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    nchan__http *hp = h->data;
    (void)hint;
    if (hp->in_off && hp->in_off == hp->in_len)
        hp->in_off = hp->in_len = 0;
    nchan__reserve(&hp->in, &hp->in_cap, hp->in_len + 16384);
    *buf = uv_buf_init(hp->in + hp->in_len,
                       (unsigned)(hp->in_cap - hp->in_len));
}

/* The value of header `name` (with its colon) in a header block, or -1. */
static long nchan__header_num(const char *h, size_t len, const char *name)
{
    size_t nl = strlen(name);
    const char *p = h, *end = h + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl))
            return strtol(p + nl, NULL, 10);
        p = eol + 1;
    }
    return -1;
}

/* Parses every complete response in the buffer and answers its publish.
 * Returns -1 after the client died or the context closed. */
static int nchan__responses(nchan__http *hp)
{
    peer_client *c = hp->c;
    peer_ctx *ctx = c->ctx;
    for (;;) {
        const char *r = hp->in + hp->in_off;
        size_t avail = hp->in_len - hp->in_off;
        const char *hend;
        long clen;
        int status;
        size_t total;
        nchan_pending q;

        if (avail < 12)
            break;
        hend = memmem(r, avail, "\r\n\r\n", 4);
        if (!hend) {
            if (avail > NCHAN_MAX_RESPONSE)
                goto bad;
            break;
        }
        if (strncmp(r, "HTTP/1.", 7) || r[8] != ' ')
            goto bad;
        status = atoi(r + 9);
        clen = nchan__header_num(r, (size_t)(hend - r), "Content-Length:");
        if (clen < 0) {
            if (nchan__header_num(r, (size_t)(hend - r),
                                  "Transfer-Encoding:") != -1 ||
                (status != 204 && status != 304))
                goto bad;   /* Nchan always sends a Content-Length */
            clen = 0;
        }
        if (clen > NCHAN_MAX_RESPONSE)
            goto bad;
        total = (size_t)(hend + 4 - r) + (size_t)clen;
        if (avail < total)
            break;
        hp->in_off += total;
        if (!hp->n)
            goto bad;       /* an answer to nothing */
        q = hp->ring[hp->head];
        hp->head = (hp->head + 1) & (hp->cap - 1);
        hp->n--;
        if (status == 201 || status == 202) {
            q.cb(c, 1, NULL, q.arg);
        } else {
            char why[64];
            snprintf(why, sizeof(why), "nchan: publish answered HTTP %d",
                     status);
            q.cb(c, 0, why, q.arg);
        }
        if (ctx->closing || c->http != hp)
            return -1;
    }
    return 0;
bad:
    nchan__pub_fail(c, "nchan: malformed HTTP response");
    return -1;
}

static void nchan__read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    nchan__http *hp = s->data;
    (void)buf;
    if (!hp->c)
        return;
    if (n < 0) {
        nchan__pub_fail(hp->c, n == UV_EOF ? "nchan: server closed the "
                                             "publish connection"
                                           : "nchan: publish connection "
                                             "read failed");
        return;
    }
    hp->in_len += (size_t)n;
    if (nchan__responses(hp) < 0)
        return;
    if (hp->in_off == hp->in_len) {
        hp->in_off = hp->in_len = 0;
    } else if (hp->in_off > 65536) {
        memmove(hp->in, hp->in + hp->in_off, hp->in_len - hp->in_off);
        hp->in_len -= hp->in_off;
        hp->in_off = 0;
    }
}

static void nchan__connect_cb(uv_connect_t *req, int status)
{
    nchan__http *hp = req->data;
    peer_client *c = hp->c;
    if (!c)
        return;
    if (status < 0) {
        char why[128];
        snprintf(why, sizeof(why), "nchan: publisher connect failed: %s",
                 uv_strerror(status));
        nchan__pub_fail(c, why);
        return;
    }
    uv_tcp_nodelay(&hp->tcp, 1);
    if (uv_read_start((uv_stream_t *)&hp->tcp, nchan__alloc_cb,
                      nchan__read_cb) < 0) {
        nchan__pub_fail(c, "nchan: publish connection read failed");
        return;
    }
    c->ready = 1;
    c->cb->ready(c, c->user);
}

static peer_client *nchan__publisher(peer_ctx *ctx, const peer_options *o)
{
    peer_client *c;
    nchan__http *hp;
    if (ctx->closing ||
        nchan__set_base(ctx, o->url ? o->url : NCHAN_DEFAULT_URL) < 0)
        return NULL;
    c = nchan__new(ctx, o, PEER_PUBLISHER);
    hp = nchan__xrealloc(NULL, sizeof(*hp));
    memset(hp, 0, sizeof(*hp));
    hp->c = c;
    c->http = hp;
    uv_tcp_init(ctx->loop, &hp->tcp);
    hp->tcp.data = hp;
    hp->connect.data = hp;
    DL_PREPEND(ctx->clients, c);
    if (uv_tcp_connect(&hp->connect, &hp->tcp,
                       (const struct sockaddr *)&ctx->addr,
                       nchan__connect_cb) < 0) {
        fprintf(stderr, "nchan: cannot start the publisher's connection\n");
        c->http = NULL;
        nchan__http_close(hp);
        DL_DELETE(ctx->clients, c);
        free(c);
        return NULL;
    }
    return c;
}

static int nchan_publish(peer_client *c, const char *channel,
                         const char *data, size_t len, peer_ack_cb cb,
                         void *arg)
{
    peer_ctx *ctx = c->ctx;
    nchan__http *hp = c->http;
    size_t cn = strlen(channel), need;
    int k;
    if (!hp || !c->ready || ctx->closing || c->kind != PEER_PUBLISHER)
        return -1;
    need = 160 + strlen(ctx->path_prefix) + cn + strlen(ctx->host_hdr) + len;
    nchan__reserve(&hp->out, &hp->out_cap, hp->out_len + need);
    k = snprintf(hp->out + hp->out_len, need,
                 "POST %s/pub/%s HTTP/1.1\r\nHost: %s\r\n"
                 "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                 ctx->path_prefix, channel, ctx->host_hdr, len);
    memcpy(hp->out + hp->out_len + k, data, len);
    hp->out_len += (size_t)k + len;
    if (hp->n == hp->cap) {
        /* Grow the ring, unwrapping it. */
        uint32_t cap = hp->cap ? hp->cap * 2 : 16;
        nchan_pending *r = nchan__xrealloc(NULL, cap * sizeof(*r));
        for (uint32_t i = 0; i < hp->n; i++)
            r[i] = hp->ring[(hp->head + i) & (hp->cap - 1)];
        free(hp->ring);
        hp->ring = r;
        hp->cap = cap;
        hp->head = 0;
    }
    hp->ring[(hp->head + hp->n) & (hp->cap - 1)] = (nchan_pending){ cb, arg };
    hp->n++;
    nchan__flush(hp);
    return 0;
}

/* Subscribers and idle connections are WebSockets (an idle one subscribed
 * to NCHAN_IDLE_CHANNEL, where nothing is published), publishers HTTP. */
static peer_client *nchan_open(peer_ctx *ctx, const peer_options *o,
                               peer_role role, const char *channel)
{
    if (role == PEER_PUBLISHER)
        return nchan__publisher(ctx, o);
    return nchan__ws_client(ctx, o, role,
                            role == PEER_IDLE ? NCHAN_IDLE_CHANNEL : channel);
}

/* --- Context ------------------------------------------------------------- */

static peer_ctx *nchan_ctx_new(uv_loop_t *loop, char *err, size_t errlen)
{
    peer_ctx *ctx = nchan__xrealloc(NULL, sizeof(*ctx));
    memset(ctx, 0, sizeof(*ctx));
    ctx->loop = loop;
    ctx->ws = hc_ws_ctx_new(loop, NULL, err, errlen);
    if (!ctx->ws) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

static void nchan_ctx_close(peer_ctx *ctx)
{
    if (ctx->closing)
        return;
    ctx->closing = 1;
    for (peer_client *c = ctx->clients; c; c = c->next) {
        c->ws = NULL;           /* hc_ws_ctx_close closes them */
        if (c->http) {
            nchan__http_close(c->http);
            c->http = NULL;
        }
    }
    hc_ws_ctx_close(ctx->ws);
}

static void nchan_ctx_free(peer_ctx *ctx)
{
    if (!ctx)
        return;
    if (!ctx->closing)
        nchan_ctx_close(ctx);
    hc_ws_ctx_free(ctx->ws);    /* runs the loop until it is dry */
    while (ctx->clients) {
        peer_client *c = ctx->clients;
        ctx->clients = c->next;
        free(c);
    }
    free(ctx->base);
    free(ctx->ws_prefix);
    free(ctx->host_hdr);
    free(ctx->path_prefix);
    free(ctx);
}

const peer_driver peer_nchan = {
    .name = "nchan",
    .default_url = NCHAN_DEFAULT_URL,
    .ctx_new = nchan_ctx_new,
    .ctx_close = nchan_ctx_close,
    .ctx_free = nchan_ctx_free,
    .open = nchan_open,
    .publish = nchan_publish,
};
