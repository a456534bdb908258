/*
 * fastsub: the lean subscriber of herald-bench (see fastsub.h). The
 * connection goes CONNECTING -> HANDSHAKE (request sent, waiting for the
 * 101 answer) -> OPEN (connect and subscribe sent, frames read) -> CLOSED.
 * Received bytes are parsed where libuv put them (one shared read buffer
 * per thread); only an incomplete frame at the end of a read is copied
 * into the connection's own buffer, so an idle subscriber holds no buffer.
 */
#include "fastsub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include <herald/client.h>     /* hc_url_parse */
#include <herald/proto.h>
#include <herald/proto_client.h>

#define FS_MAX_MESSAGE (16u << 20)
#define FS_MAX_HEADER 8192
#define FS_READ_BUF (256u << 10)

enum { FS_CONNECTING, FS_HANDSHAKE, FS_OPEN, FS_CLOSED };

struct fastsub {
    uv_tcp_t tcp;
    uv_connect_t creq;
    const fastsub_cb *cb;
    void *user;
    proto_enc enc;
    uint8_t state;
    uint8_t app_closed;        /* fastsub_close(): no more callbacks */
    uint8_t reported;          /* closed() called */
    uint8_t frag_op;           /* opcode of a fragmented message */
    char key[32];              /* Sec-WebSocket-Key sent */
    char *pend;                /* bytes of an incomplete frame / header */
    size_t pend_len, pend_cap;
    char *frag;                /* a fragmented message being assembled */
    size_t frag_len, frag_cap;
    proto_sreader rd;
    char *channel;
    char host[80];             /* Host header: address:port */
    char path[128];
};

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        abort();
    return p;
}

/* --- URL ------------------------------------------------------------------ */

static int parse_url(const char *url, char *host, size_t hn, int *port,
                     char *path, size_t pn)
{
    hc_url u;
    char err[8];
    struct sockaddr_in sa;
    if (hc_url_parse(url, &u, err, sizeof(err)) < 0 || u.tls ||
        strlen(u.host) >= hn || uv_ip4_addr(u.host, u.port, &sa) != 0)
        return -1;
    snprintf(host, hn, "%s", u.host);
    *port = u.port;
    size_t slash = u.path[0] == '/' ? 0 : 1, n = strlen(u.path);
    if (slash + n >= pn)
        return -1;
    path[0] = '/';
    memcpy(path + slash, u.path, n + 1);
    return 0;
}

int fastsub_url_ok(const char *url)
{
    char host[64], path[128];
    int port;
    return parse_url(url, host, sizeof(host), &port, path, sizeof(path));
}

/* --- lifecycle ------------------------------------------------------------ */

static void fs_free_cb(uv_handle_t *h)
{
    fastsub *s = h->data;
    proto_sreader_free(&s->rd);
    free(s->pend);
    free(s->frag);
    free(s->channel);
    free(s);
}

/* Ends the connection; reports why once unless the application closed it. */
static void fs_end(fastsub *s, const char *why)
{
    if (s->state == FS_CLOSED)
        return;
    s->state = FS_CLOSED;
    if (!s->app_closed && !s->reported && s->cb->closed) {
        s->reported = 1;
        s->cb->closed(s, why, s->user);
    }
    uv_close((uv_handle_t *)&s->tcp, fs_free_cb);
}

/* --- writing -------------------------------------------------------------- */

typedef struct fs_write {
    uv_write_t req;
    char data[];
} fs_write;

static void fs_write_cb(uv_write_t *req, int status)
{
    free(req);
    (void)status;   /* a failed write shows up as a failed read too */
}

static int fs_send_raw(fastsub *s, const char *p, size_t n)
{
    fs_write *w = malloc(sizeof(*w) + n);
    if (!w)
        abort();
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, fs_write_cb) < 0) {
        free(w);
        return -1;
    }
    return 0;
}

static uint32_t fs_rand(void)
{
    static __thread uint64_t x;
    if (!x)
        x = uv_hrtime() | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return (uint32_t)x;
}

/* One masked client frame (RFC 6455 5.3: clients always mask). */
static int fs_send_frame(fastsub *s, int opcode, const char *p, size_t n)
{
    char *f = malloc(n + 14);
    size_t h = 0;
    uint32_t mk = fs_rand();
    unsigned char m[4];
    if (!f)
        abort();
    f[h++] = (char)(0x80 | opcode);
    if (n < 126) {
        f[h++] = (char)(0x80 | n);
    } else if (n <= 0xffff) {
        f[h++] = (char)(0x80 | 126);
        f[h++] = (char)(n >> 8);
        f[h++] = (char)n;
    } else {
        f[h++] = (char)(0x80 | 127);
        for (int i = 7; i >= 0; i--)
            f[h++] = (char)((uint64_t)n >> (8 * i));
    }
    memcpy(m, &mk, 4);
    memcpy(f + h, m, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        f[h + i] = (char)(p[i] ^ m[i & 3]);
    int rc = fs_send_raw(s, f, h + n);
    free(f);
    return rc;
}

/* --- handshake ------------------------------------------------------------ */

static void fs_accept_key(const char *key, char *out)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char buf[96];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdn = 0;
    size_t n = (size_t)snprintf(buf, sizeof(buf), "%s%s", key, guid);
    EVP_Digest(buf, n, md, &mdn, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdn);
}

/* The value of header `name` in the response head, or NULL. */
static const char *fs_header(const char *head, size_t n, const char *name,
                             size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = head, *end = head + n;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl && p[nl] == ':' &&
            strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

/* Checks the 101 answer; sends connect and subscribe. Returns the bytes of
 * the head consumed, 0 when incomplete, -1 when refused. */
static long fs_handshake(fastsub *s, const char *p, size_t n)
{
    const char *end = NULL;
    for (size_t i = 3; i < n; i++)
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' &&
            p[i - 3] == '\r') {
            end = p + i + 1;
            break;
        }
    if (!end)
        return n > FS_MAX_HEADER ? -1 : 0;
    size_t hn = (size_t)(end - p), vl;
    char want[64];
    if (hn < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0)
        return -1;
    const char *acc = fs_header(p, hn, "Sec-WebSocket-Accept", &vl);
    fs_accept_key(s->key, want);
    if (!acc || vl != strlen(want) || memcmp(acc, want, vl) != 0)
        return -1;
    s->state = FS_OPEN;

    proto_buf b;
    proto_cmd_out co;
    proto_buf_init(&b, 0);
    memset(&co, 0, sizeof(co));
    co.id = 1;
    co.op = PROTO_OP_CONNECT;
    co.name = (proto_slice){ "herald-bench", 12 };
    proto_enc_cmd(&b, s->enc, &co);
    if (s->enc == PROTO_JSON)
        proto_buf_append(&b, "\n", 1);
    memset(&co, 0, sizeof(co));
    co.id = 2;
    co.op = PROTO_OP_SUBSCRIBE;
    co.channel = (proto_slice){ s->channel, strlen(s->channel) };
    proto_enc_cmd(&b, s->enc, &co);
    int rc = fs_send_frame(s, s->enc == PROTO_MSGPACK ? 2 : 1,
                           proto_buf_data(&b), b.len);
    proto_buf_free(&b);
    return rc < 0 ? -1 : (long)hn;
}

/* --- frames --------------------------------------------------------------- */

/* One whole message: the server's replies and pushes, possibly batched. */
static void fs_message(fastsub *s, const char *p, size_t n)
{
    proto_smsg m;
    proto_error err;
    int rc;
    proto_sreader_frame(&s->rd, p, n);
    while ((rc = proto_snext(&s->rd, &m, &err)) != 0) {
        if (rc < 0) {
            fs_end(s, "undecodable message");
            return;
        }
        switch (m.kind) {
        case PROTO_SMSG_PUB:
            if (s->cb->pub)
                s->cb->pub(s, m.pub.offset, m.pub.data.ptr, m.pub.data.len,
                           s->user);
            break;
        case PROTO_SMSG_OK:
            if (m.id == 2 && s->cb->subscribed)
                s->cb->subscribed(s, m.has_offset ? m.offset : 0, s->user);
            break;
        case PROTO_SMSG_ERROR:
            fs_end(s, m.id == 2 ? "subscribe refused" : "error reply");
            return;
        case PROTO_SMSG_DISCONNECT:
            fs_end(s, "disconnect push");
            return;
        default:
            break;
        }
        if (s->state == FS_CLOSED)
            return;
    }
}

/* Parses frames from p; returns the bytes consumed (the rest is an
 * incomplete frame), or -1 when the connection ended. */
static long fs_frames(fastsub *s, const char *p, size_t n)
{
    size_t pos = 0;
    while (s->state == FS_OPEN) {
        const unsigned char *u = (const unsigned char *)p + pos;
        size_t left = n - pos, h = 2;
        uint64_t len;
        if (left < 2)
            break;
        int fin = u[0] & 0x80, op = u[0] & 0x0f;
        if (u[1] & 0x80) {
            fs_end(s, "masked server frame");
            return -1;
        }
        len = u[1] & 0x7f;
        if (len == 126) {
            if (left < 4)
                break;
            len = ((uint64_t)u[2] << 8) | u[3];
            h = 4;
        } else if (len == 127) {
            if (left < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | u[2 + i];
            h = 10;
        }
        if (len > FS_MAX_MESSAGE) {
            fs_end(s, "frame too large");
            return -1;
        }
        if (left < h + len)
            break;
        const char *pl = p + pos + h;
        pos += h + (size_t)len;
        switch (op) {
        case 0x1:
        case 0x2:
            if (fin) {
                fs_message(s, pl, (size_t)len);
            } else {
                s->frag_op = (uint8_t)op;
                s->frag_len = 0;
                goto append;
            }
            break;
        case 0x0:
            if (!s->frag_op) {
                fs_end(s, "stray continuation frame");
                return -1;
            }
        append:
            if (s->frag_len + len > FS_MAX_MESSAGE) {
                fs_end(s, "message too large");
                return -1;
            }
            if (s->frag_len + len > s->frag_cap) {
                s->frag_cap = s->frag_len + (size_t)len + 1024;
                s->frag = xrealloc(s->frag, s->frag_cap);
            }
            memcpy(s->frag + s->frag_len, pl, (size_t)len);
            s->frag_len += (size_t)len;
            if (fin) {
                s->frag_op = 0;
                fs_message(s, s->frag, s->frag_len);
            }
            break;
        case 0x8: {
            char code[2] = { 0x03, (char)0xe8 };   /* 1000 */
            if (len >= 2)
                memcpy(code, pl, 2);
            fs_send_frame(s, 0x8, code, 2);
            fs_end(s, "closed by the server");
            return -1;
        }
        case 0x9:
            fs_send_frame(s, 0xA, pl, (size_t)len);
            break;
        case 0xA:
            break;
        default:
            fs_end(s, "unknown opcode");
            return -1;
        }
    }
    return s->state == FS_OPEN ? (long)pos : -1;
}

/* Consumes bytes at p (handshake head, then frames); returns the bytes
 * consumed or -1 when the connection ended. */
static long fs_consume(fastsub *s, const char *p, size_t n)
{
    long used = 0;
    if (s->state == FS_HANDSHAKE) {
        used = fs_handshake(s, p, n);
        if (used < 0) {
            fs_end(s, "WebSocket handshake refused");
            return -1;
        }
        if (used == 0)
            return 0;
    }
    long more = fs_frames(s, p + used, n - (size_t)used);
    return more < 0 ? -1 : used + more;
}

/* One read buffer per thread: reads are parsed in place before the next. */
static __thread char fs_rbuf[FS_READ_BUF];

static void fs_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    *buf = uv_buf_init(fs_rbuf, FS_READ_BUF);
    (void)h;
    (void)hint;
}

static void fs_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    fastsub *s = st->data;
    const char *p = buf->base;
    size_t n;
    long used;
    if (nread < 0) {
        fs_end(s, s->state == FS_HANDSHAKE
                      ? "connection closed during the WebSocket handshake"
                  : nread == UV_EOF ? "connection closed" : "read error");
        return;
    }
    if (nread == 0 || s->state == FS_CLOSED)
        return;
    n = (size_t)nread;
    if (s->pend_len) {
        /* Complete the pending frame first, then parse on from there. */
        if (s->pend_len + n > s->pend_cap) {
            s->pend_cap = s->pend_len + n;
            s->pend = xrealloc(s->pend, s->pend_cap);
        }
        memcpy(s->pend + s->pend_len, p, n);
        s->pend_len += n;
        p = s->pend;
        n = s->pend_len;
    }
    used = fs_consume(s, p, n);
    if (used < 0)
        return;
    n -= (size_t)used;
    if (n && p != s->pend) {
        if (n > s->pend_cap) {
            s->pend_cap = n;
            s->pend = xrealloc(s->pend, n);
        }
        memcpy(s->pend, p + used, n);
    } else if (n) {
        memmove(s->pend, p + used, n);
    }
    s->pend_len = n;
    if (!n && s->pend_cap > 4096) {
        free(s->pend);
        s->pend = NULL;
        s->pend_cap = 0;
    }
}

static void fs_connect_cb(uv_connect_t *req, int status)
{
    fastsub *s = req->data;
    unsigned char raw[16];
    char head[512];
    if (s->state == FS_CLOSED)
        return;
    if (status < 0) {
        fs_end(s, uv_strerror(status));
        return;
    }
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = fs_rand();
        memcpy(raw + i, &r, 4);
    }
    EVP_EncodeBlock((unsigned char *)s->key, raw, 16);
    int n = snprintf(head, sizeof(head),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: %s\r\n\r\n",
                     s->path, s->host, s->key,
                     s->enc == PROTO_MSGPACK ? PROTO_SUBPROTO_MSGPACK
                                             : PROTO_SUBPROTO_JSON);
    s->state = FS_HANDSHAKE;
    if (fs_send_raw(s, head, (size_t)n) < 0 ||
        uv_read_start((uv_stream_t *)&s->tcp, fs_alloc_cb, fs_read_cb) < 0)
        fs_end(s, "cannot start the handshake");
}

fastsub *fastsub_open(uv_loop_t *loop, const char *url, const char *local_addr,
                      int msgpack, const char *channel, const fastsub_cb *cb,
                      void *user)
{
    char path[128], host[64];
    int port;
    struct sockaddr_in to, from;
    if (parse_url(url, host, sizeof(host), &port, path, sizeof(path)) < 0)
        return NULL;
    uv_ip4_addr(host, port, &to);
    fastsub *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->cb = cb;
    s->user = user;
    s->enc = msgpack ? PROTO_MSGPACK : PROTO_JSON;
    s->channel = strdup(channel);
    if (!s->channel)
        abort();
    snprintf(s->host, sizeof(s->host), "%s:%d", host, port);
    snprintf(s->path, sizeof(s->path), "%s", path);
    proto_sreader_init(&s->rd, s->enc);
    uv_tcp_init(loop, &s->tcp);
    s->tcp.data = s;
    s->creq.data = s;
    uv_tcp_nodelay(&s->tcp, 1);
    if ((local_addr && (uv_ip4_addr(local_addr, 0, &from) < 0 ||
                        uv_tcp_bind(&s->tcp, (struct sockaddr *)&from, 0) < 0)) ||
        uv_tcp_connect(&s->creq, &s->tcp, (struct sockaddr *)&to,
                       fs_connect_cb) < 0) {
        s->app_closed = 1;
        s->state = FS_CLOSED;
        uv_close((uv_handle_t *)&s->tcp, fs_free_cb);
        return NULL;
    }
    return s;
}

void fastsub_close(fastsub *s)
{
    if (!s || s->app_closed)
        return;
    s->app_closed = 1;
    if (s->state == FS_OPEN) {
        char code[2] = { 0x03, (char)0xe8 };   /* 1000 */
        fs_send_frame(s, 0x8, code, 2);
    }
    fs_end(s, NULL);
}
