/*
 * A small scripted WebSocket server for the client library's unit tests
 * (test_ws.c: the transport; test_faults.c: the client on top of it), on
 * the test's uv loop: plain uv_tcp, the RFC 6455 handshake and framing.
 * It records every frame a client sends (unmasked) and sends what a test
 * scripts from its on_event hook, called after the 101 answer, after
 * every received frame and at the client's end of the TCP connection.
 * Header-only (static inline functions, so that a test need not use them
 * all): each test executable includes it once, after defining _GNU_SOURCE
 * (memmem).
 */
#ifndef HERALD_TEST_WS_SCRIPT_H
#define HERALD_TEST_WS_SCRIPT_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <uv.h>

#define SRV_MAX_CONNS 1024

typedef struct srv_msg {
    int opcode;                 /* 1 text, 2 binary, 8 close, 9 ping */
    size_t len;
    char *data;
} srv_msg;

typedef struct srv_conn {
    uv_tcp_t tcp;
    struct srv *srv;
    char *in;                   /* received, not yet parsed */
    size_t in_len, in_cap;
    int upgraded;
    char request[4096];         /* the HTTP upgrade request */
    srv_msg msgs[256];          /* frames received after the upgrade */
    int n_msgs;
    int eof;                    /* the client's TCP connection ended */
    int scripted;               /* the test's script has been sent */
    int closed;
} srv_conn;

typedef struct srv {
    uv_tcp_t listener;
    int port;
    srv_conn *conns[SRV_MAX_CONNS];
    int n_conns;
    /* Called after the 101 answer and after every received frame. */
    void (*on_event)(srv_conn *sc);
} srv;

static inline void srv_write(srv_conn *sc, const void *data, size_t len);

static inline void srv_frame(srv_conn *sc, int fin, int opcode,
                             const void *data, size_t len)
{
    unsigned char h[10];
    size_t hl = 2;
    h[0] = (unsigned char)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        h[1] = (unsigned char)len;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    srv_write(sc, h, hl);
    if (len)
        srv_write(sc, data, len);
}

static inline void srv_close_frame(srv_conn *sc, int code, const char *reason)
{
    char b[128];
    size_t n = strlen(reason);
    b[0] = (char)(code >> 8);
    b[1] = (char)(code & 0xff);
    memcpy(b + 2, reason, n);
    srv_frame(sc, 1, 8, b, n + 2);
}

static inline void srv_write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static inline void srv_write(srv_conn *sc, const void *data, size_t len)
{
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init(malloc(len), (unsigned)len);
    cr_assert(w && b.base);
    memcpy(b.base, data, len);
    w->data = b.base;
    cr_assert_eq(uv_write(w, (uv_stream_t *)&sc->tcp, &b, 1, srv_write_done),
                 0);
}

static inline void srv_conn_closed(uv_handle_t *h)
{
    srv_conn *sc = h->data;
    sc->closed = 1;
}

static inline void srv_conn_close(srv_conn *sc)
{
    if (!uv_is_closing((uv_handle_t *)&sc->tcp))
        uv_close((uv_handle_t *)&sc->tcp, srv_conn_closed);
}

/* The value of a request header, copied into out ("" when absent). */
static inline void srv_header(const srv_conn *sc, const char *name,
                              char *out, size_t n)
{
    size_t nl = strlen(name);
    const char *p = sc->request;
    out[0] = '\0';
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1, *e = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            snprintf(out, n, "%.*s", (int)(e - v), v);
            return;
        }
    }
}

static inline void srv_upgrade(srv_conn *sc)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char key[128], proto[128], cat[256], acc[64], resp[512];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    srv_header(sc, "Sec-WebSocket-Key", key, sizeof(key));
    srv_header(sc, "Sec-WebSocket-Protocol", proto, sizeof(proto));
    snprintf(cat, sizeof(cat), "%s%s", key, guid);
    cr_assert(EVP_Digest(cat, strlen(cat), md, &mdlen, EVP_sha1(), NULL));
    EVP_EncodeBlock((unsigned char *)acc, md, (int)mdlen);
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     acc, proto[0] ? "Sec-WebSocket-Protocol: " : "", proto,
                     proto[0] ? "\r\n" : "");
    srv_write(sc, resp, (size_t)n);
    sc->upgraded = 1;
}

/* Parses the client's (masked) frames; one srv_msg per frame. */
static inline void srv_parse(srv_conn *sc)
{
    for (;;) {
        unsigned char *p = (unsigned char *)sc->in;
        size_t avail = sc->in_len, hl = 2, len;
        if (!sc->upgraded) {
            char *end = memmem(sc->in, sc->in_len, "\r\n\r\n", 4);
            if (!end)
                return;
            size_t rl = (size_t)(end + 4 - sc->in);
            cr_assert_lt(rl, sizeof(sc->request));
            memcpy(sc->request, sc->in, rl);
            sc->request[rl] = '\0';
            memmove(sc->in, sc->in + rl, sc->in_len - rl);
            sc->in_len -= rl;
            srv_upgrade(sc);
            if (sc->srv->on_event)
                sc->srv->on_event(sc);
            continue;
        }
        if (avail < 2)
            return;
        cr_assert(p[1] & 0x80, "client frames are masked");
        len = p[1] & 0x7f;
        if (len == 126) {
            if (avail < 4)
                return;
            len = (size_t)p[2] << 8 | p[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[2 + i];
            hl = 10;
        }
        if (avail < hl + 4 + len)
            return;
        cr_assert_lt(sc->n_msgs, 256);
        srv_msg *m = &sc->msgs[sc->n_msgs++];
        m->opcode = p[0] & 0x0f;
        m->len = len;
        m->data = malloc(len + 1);
        for (size_t i = 0; i < len; i++)
            m->data[i] = (char)(p[hl + 4 + i] ^ p[hl + i % 4]);
        m->data[len] = '\0';
        memmove(sc->in, sc->in + hl + 4 + len, avail - hl - 4 - len);
        sc->in_len -= hl + 4 + len;
        if (m->opcode == 9)                 /* ping: pong */
            srv_frame(sc, 1, 10, m->data, m->len);
        if (sc->srv->on_event)
            sc->srv->on_event(sc);
    }
}

static inline void srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    srv_conn *sc = h->data;
    (void)hint;
    if (sc->in_cap - sc->in_len < 65536) {
        sc->in_cap = sc->in_cap * 2 + 65536;
        sc->in = realloc(sc->in, sc->in_cap);
        cr_assert(sc->in);
    }
    *b = uv_buf_init(sc->in + sc->in_len, (unsigned)(sc->in_cap - sc->in_len));
}

static inline void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    srv_conn *sc = s->data;
    (void)b;
    if (n < 0) {
        sc->eof = 1;
        if (sc->srv->on_event)
            sc->srv->on_event(sc);
        srv_conn_close(sc);
        return;
    }
    sc->in_len += (size_t)n;
    srv_parse(sc);
}

static inline void srv_accept(uv_stream_t *l, int status)
{
    srv *s = l->data;
    cr_assert_eq(status, 0);
    cr_assert_lt(s->n_conns, SRV_MAX_CONNS);
    srv_conn *sc = calloc(1, sizeof(*sc));
    cr_assert(sc);
    sc->srv = s;
    uv_tcp_init(l->loop, &sc->tcp);
    sc->tcp.data = sc;
    cr_assert_eq(uv_accept(l, (uv_stream_t *)&sc->tcp), 0);
    s->conns[s->n_conns++] = sc;
    uv_read_start((uv_stream_t *)&sc->tcp, srv_alloc, srv_read);
}

static inline void srv_start(uv_loop_t *loop, srv *s)
{
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int bl = sizeof(bound);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    cr_assert_eq(uv_tcp_bind(&s->listener, (const struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&s->listener, 1024, srv_accept), 0);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &bl);
    s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static inline void srv_stop(srv *s)
{
    for (int i = 0; i < s->n_conns; i++)
        srv_conn_close(s->conns[i]);
    if (!uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, NULL);
}

static inline void srv_free(srv *s)
{
    for (int i = 0; i < s->n_conns; i++) {
        for (int k = 0; k < s->conns[i]->n_msgs; k++)
            free(s->conns[i]->msgs[k].data);
        free(s->conns[i]->in);
        free(s->conns[i]);
    }
}

/* Runs loop until `until` holds, checked on `poll` (an initialised timer)
 * every millisecond. */
static int (*ws_until)(void);

static inline void ws_until_check(uv_timer_t *t)
{
    if (ws_until())
        uv_timer_stop(t);
}

static inline void ws_run_until(uv_loop_t *loop, uv_timer_t *poll,
                                int (*until)(void))
{
    ws_until = until;
    uv_timer_start(poll, ws_until_check, 1, 1);
    while (uv_is_active((uv_handle_t *)poll))
        uv_run(loop, UV_RUN_ONCE);
}

#endif
