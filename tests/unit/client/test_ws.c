/*
 * Tests of the WebSocket client transport (clients/c/src/hc_ws.c,
 * herald/ws.h) that the Herald client and herald-bench's peer drivers share,
 * against a small scripted WebSocket server on the same uv loop (below:
 * plain uv_tcp, RFC 6455 handshake and framing). Each test runs one loop
 * with a deadline timer; the server records what it received and sends
 * what the test scripts, so that both directions are checked byte for
 * byte: reassembly of fragmented and large messages, the order of queued
 * and pulled sends, the close frame both ways (code and reason), the
 * message size limit (1009), a drop without a close frame, a refused
 * connection, pings, and the spreading of connections over lws contexts.
 */
#define _GNU_SOURCE   /* memmem */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include <herald/ws.h>

/* --- The scripted server ---------------------------------------------------- */

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

static void srv_write(srv_conn *sc, const void *data, size_t len);

static void srv_frame(srv_conn *sc, int fin, int opcode, const void *data,
                      size_t len)
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

static void srv_close_frame(srv_conn *sc, int code, const char *reason)
{
    char b[128];
    size_t n = strlen(reason);
    b[0] = (char)(code >> 8);
    b[1] = (char)(code & 0xff);
    memcpy(b + 2, reason, n);
    srv_frame(sc, 1, 8, b, n + 2);
}

static void srv_write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void srv_write(srv_conn *sc, const void *data, size_t len)
{
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init(malloc(len), (unsigned)len);
    cr_assert(w && b.base);
    memcpy(b.base, data, len);
    w->data = b.base;
    cr_assert_eq(uv_write(w, (uv_stream_t *)&sc->tcp, &b, 1, srv_write_done),
                 0);
}

static void srv_conn_closed(uv_handle_t *h)
{
    srv_conn *sc = h->data;
    sc->closed = 1;
}

static void srv_conn_close(srv_conn *sc)
{
    if (!uv_is_closing((uv_handle_t *)&sc->tcp))
        uv_close((uv_handle_t *)&sc->tcp, srv_conn_closed);
}

/* The value of a request header, copied into out ("" when absent). */
static void srv_header(const srv_conn *sc, const char *name, char *out,
                       size_t n)
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

static void srv_upgrade(srv_conn *sc)
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
static void srv_parse(srv_conn *sc)
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

static void srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
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

static void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
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

static void srv_accept(uv_stream_t *l, int status)
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

static void srv_start(uv_loop_t *loop, srv *s)
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

static void srv_stop(srv *s)
{
    for (int i = 0; i < s->n_conns; i++)
        srv_conn_close(s->conns[i]);
    if (!uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, NULL);
}

static void srv_free(srv *s)
{
    for (int i = 0; i < s->n_conns; i++) {
        for (int k = 0; k < s->conns[i]->n_msgs; k++)
            free(s->conns[i]->msgs[k].data);
        free(s->conns[i]->in);
        free(s->conns[i]);
    }
}

/* --- The client side ------------------------------------------------------- */

typedef struct got_msg {
    int binary;
    size_t len;
    char *data;
} got_msg;

/* One test's world: the loop, the server, the transport and what the
 * client callbacks saw. */
typedef struct world {
    uv_loop_t loop;
    uv_timer_t deadline;
    uv_timer_t poll;            /* run_until's check */
    srv s;
    hc_ws_ctx *ctx;
    hc_ws *ws;
    int opened, n_closed, writeables;
    hc_ws_closed closed;
    char closed_reason[128];
    got_msg msgs[16];
    int n_msgs;
    int pull_pending;           /* a message to write from writeable */
    int done;
} world;

static world W;

static void on_open(hc_ws *ws, void *user)
{
    (void)ws;
    ((world *)user)->opened++;
}

static void on_message(hc_ws *ws, int binary, const char *data, size_t len,
                       void *user)
{
    world *w = user;
    (void)ws;
    cr_assert_lt(w->n_msgs, 16);
    got_msg *m = &w->msgs[w->n_msgs++];
    m->binary = binary;
    m->len = len;
    m->data = malloc(len + 1);
    memcpy(m->data, data, len);
    m->data[len] = '\0';
}

static void on_writeable(hc_ws *ws, void *user)
{
    world *w = user;
    char buf[HC_WS_PRE + 16];
    w->writeables++;
    if (w->pull_pending) {
        memcpy(buf + HC_WS_PRE, "pulled", 6);
        cr_assert_eq(hc_ws_write(ws, 0, buf + HC_WS_PRE, 6), 0);
        w->pull_pending = 0;
    }
}

static void on_closed(hc_ws *ws, const hc_ws_closed *ev, void *user)
{
    world *w = user;
    (void)ws;
    w->n_closed++;
    w->closed = *ev;
    snprintf(w->closed_reason, sizeof(w->closed_reason), "%s", ev->reason);
    w->closed.reason = w->closed_reason;
    w->ws = NULL;
}

static const hc_ws_callbacks cbs = { on_open, on_message, on_writeable,
                                     on_closed };

static void deadline_cb(uv_timer_t *t)
{
    (void)t;
    cr_assert_fail("the test did not finish in time");
}

static void world_init(void (*on_event)(srv_conn *))
{
    char err[128] = "";
    memset(&W, 0, sizeof(W));
    uv_loop_init(&W.loop);
    uv_timer_init(&W.loop, &W.deadline);
    uv_timer_start(&W.deadline, deadline_cb, 20000, 0);
    uv_timer_init(&W.loop, &W.poll);
    W.s.on_event = on_event;
    srv_start(&W.loop, &W.s);
    W.ctx = hc_ws_ctx_new(&W.loop, NULL, err, sizeof(err));
    cr_assert(W.ctx, "%s", err);
}

static hc_ws *world_open(const char *path, size_t max_message)
{
    char url[128], err[256] = "";
    hc_ws_options o;
    hc_ws *ws;
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d%s", W.s.port, path);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.default_path = "/dflt";
    o.subprotocol = "test.v1";
    o.origin = "example.test";
    o.max_message = max_message;
    o.cb = &cbs;
    o.user = &W;
    ws = hc_ws_open(W.ctx, &o, err, sizeof(err));
    cr_assert(ws, "%s", err);
    return ws;
}

/* Runs the loop until `until` holds (checked on a 1 ms timer). */
static int (*g_until)(void);
static void poll_cb(uv_timer_t *t)
{
    if (g_until())
        uv_timer_stop(t);
}

static void run_until(int (*until)(void))
{
    g_until = until;
    uv_timer_start(&W.poll, poll_cb, 1, 1);
    while (uv_is_active((uv_handle_t *)&W.poll))
        uv_run(&W.loop, UV_RUN_ONCE);
}

/* Shuts everything down the way owners do and frees it (the sanitizer
 * build checks that nothing leaks). */
static void world_end(void)
{
    hc_ws_ctx_close(W.ctx);
    srv_stop(&W.s);
    uv_timer_stop(&W.deadline);
    uv_close((uv_handle_t *)&W.deadline, NULL);
    uv_close((uv_handle_t *)&W.poll, NULL);
    uv_run(&W.loop, UV_RUN_DEFAULT);
    hc_ws_ctx_free(W.ctx);
    cr_expect_eq(uv_loop_close(&W.loop), 0);
    srv_free(&W.s);
    for (int i = 0; i < W.n_msgs; i++)
        free(W.msgs[i].data);
}

static srv_conn *conn0(void)
{
    return W.s.n_conns ? W.s.conns[0] : NULL;
}

/* --- Tests -------------------------------------------------------------------- */

/* After the upgrade: a text message in three fragments, a 5000-byte binary
 * message (lws hands it over in 1 KiB pieces), then a close frame. */
static void script_fragments(srv_conn *sc)
{
    static char big[5000];
    if (sc->scripted || !sc->upgraded || sc->eof)
        return;
    sc->scripted = 1;
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7);
    srv_frame(sc, 0, 1, "hel", 3);
    srv_frame(sc, 0, 0, "lo ", 3);
    srv_frame(sc, 1, 0, "world", 5);
    srv_frame(sc, 1, 2, big, sizeof(big));
    srv_close_frame(sc, 4000, "bye");
}

static int got_closed(void)
{
    return W.n_closed > 0;
}

Test(client_ws, whole_messages_and_the_servers_close_frame)
{
    world_init(script_fragments);
    W.ws = world_open("", 0);
    run_until(got_closed);
    cr_assert_eq(W.opened, 1);
    cr_assert_eq(W.n_msgs, 2);
    cr_expect_eq(W.msgs[0].binary, 0);
    cr_expect_str_eq(W.msgs[0].data, "hello world");
    cr_expect_eq(W.msgs[1].binary, 1);
    cr_assert_eq(W.msgs[1].len, 5000);
    for (size_t i = 0; i < 5000; i++)
        cr_assert_eq(W.msgs[1].data[i], (char)(i * 7), "byte %zu", i);
    cr_expect_eq(W.n_closed, 1);
    cr_expect_eq(W.closed.was_open, 1);
    cr_expect_eq(W.closed.remote, 1);
    cr_expect_eq(W.closed.code, 4000);
    cr_expect_str_eq(W.closed.reason, "bye");
    /* The handshake carried the default path, the subprotocol and Origin. */
    cr_expect(!strncmp(conn0()->request, "GET /dflt HTTP/1.1\r\n", 20), "%s",
              conn0()->request);
    char v[128];
    srv_header(conn0(), "Sec-WebSocket-Protocol", v, sizeof(v));
    cr_expect_str_eq(v, "test.v1");
    srv_header(conn0(), "Origin", v, sizeof(v));
    cr_expect_str_eq(v, "http://example.test");   /* lws adds the scheme */
    world_end();
}

static int server_got_close(void)
{
    srv_conn *sc = conn0();
    return sc && sc->n_msgs && sc->msgs[sc->n_msgs - 1].opcode == 8;
}

static int server_got_151(void)
{
    return conn0() && conn0()->n_msgs >= 151;
}

static int opened(void)
{
    return W.opened > 0;
}

static int pulled(void)
{
    return W.writeables > 0;
}

Test(client_ws, queued_and_pulled_sends_keep_their_order_then_close_frame)
{
    char m[32];
    world_init(NULL);
    W.ws = world_open("/p?q=1", 0);
    run_until(opened);
    /* 100 queued messages (more than one WRITEABLE writes), one pulled
     * (written from the writeable callback once nothing is queued), then
     * 50 more queued. */
    for (int i = 0; i < 100; i++) {
        int n = snprintf(m, sizeof(m), "m%d", i);
        cr_assert_eq(hc_ws_send(W.ws, i % 2, m, (size_t)n), 0);
    }
    W.pull_pending = 1;
    hc_ws_want_write(W.ws);
    run_until(pulled);
    cr_expect_eq(W.writeables, 1);
    for (int i = 100; i < 150; i++) {
        int n = snprintf(m, sizeof(m), "m%d", i);
        cr_assert_eq(hc_ws_send(W.ws, 0, m, (size_t)n), 0);
    }
    run_until(server_got_151);
    /* Closing discards what is still queued: the close frame comes next. */
    cr_assert_eq(hc_ws_send(W.ws, 0, "discarded", 9), 0);
    hc_ws_close(W.ws);
    cr_expect_eq(hc_ws_send(W.ws, 0, "late", 4), -1);
    W.ws = NULL;
    run_until(server_got_close);
    srv_conn *sc = conn0();
    cr_expect(!strncmp(sc->request, "GET /p?q=1 HTTP/1.1\r\n", 21));
    /* 150 queued messages in order, the pulled one after the first 100
     * (queued messages go first), then the close frame with 1000. */
    cr_assert_eq(sc->n_msgs, 152, "%d frames", sc->n_msgs);
    for (int i = 0, k = 0; i < 151; i++) {
        if (i == 100) {
            cr_expect_eq(sc->msgs[i].opcode, 1);
            cr_expect_str_eq(sc->msgs[i].data, "pulled");
            continue;
        }
        snprintf(m, sizeof(m), "m%d", k);
        cr_expect_str_eq(sc->msgs[i].data, m, "frame %d", i);
        cr_expect_eq(sc->msgs[i].opcode, k < 100 && k % 2 ? 2 : 1);
        k++;
    }
    cr_expect_eq(sc->msgs[151].opcode, 8);
    cr_expect_eq((unsigned char)sc->msgs[151].data[0] << 8 |
                     (unsigned char)sc->msgs[151].data[1], 1000);
    /* hc_ws_close: no callback. */
    cr_expect_eq(W.n_closed, 0);
    world_end();
}

static void script_big(srv_conn *sc)
{
    static char big[3000];
    if (!sc->upgraded || sc->scripted || sc->eof)
        return;
    sc->scripted = 1;
    memset(big, 'x', sizeof(big));
    srv_frame(sc, 1, 1, big, sizeof(big));
}

Test(client_ws, a_message_over_the_limit_ends_the_connection_with_1009)
{
    world_init(script_big);
    W.ws = world_open("/", 2000);
    run_until(got_closed);
    cr_expect_eq(W.n_msgs, 0);
    cr_expect_eq(W.closed.was_open, 1);
    cr_expect_eq(W.closed.remote, 0);
    cr_expect_eq(W.closed.code, 1009);
    world_end();
}

static void script_small(srv_conn *sc)
{
    static char m[500];
    if (!sc->upgraded || sc->scripted || sc->eof)
        return;
    sc->scripted = 1;
    memset(m, 'y', sizeof(m));
    srv_frame(sc, 1, 1, m, sizeof(m));   /* one piece, under the rx buffer */
    srv_close_frame(sc, 4000, "end");
}

Test(client_ws, a_limit_below_the_receive_buffer_holds_for_whole_messages)
{
    world_init(script_small);
    W.ws = world_open("/", 100);
    run_until(got_closed);
    cr_expect_eq(W.n_msgs, 0, "500 bytes over a limit of 100: not delivered");
    cr_expect_eq(W.closed.remote, 0);
    cr_expect_eq(W.closed.code, 1009);
    world_end();
}

static int server_saw_eof(void)
{
    return conn0() && conn0()->eof;
}

Test(client_ws, drop_ends_the_tcp_connection_without_a_close_frame)
{
    world_init(NULL);
    W.ws = world_open("/", 0);
    run_until(opened);
    hc_ws_drop(W.ws);
    W.ws = NULL;
    run_until(server_saw_eof);
    cr_expect_eq(conn0()->n_msgs, 0, "no close frame");
    cr_expect_eq(W.n_closed, 0);
    world_end();
}

static int server_got_ping(void)
{
    srv_conn *sc = conn0();
    return sc && sc->n_msgs && sc->msgs[0].opcode == 9;
}

static uint64_t at_open;

static int clock_moved(void)
{
    return uv_now(&W.loop) >= at_open + 20;
}

static int last_rx_moved(void)
{
    return hc_ws_last_rx_ms(W.ws) > at_open;
}

Test(client_ws, ping_reaches_the_server_and_its_pong_counts_as_life)
{
    world_init(NULL);
    W.ws = world_open("/", 0);
    run_until(opened);
    at_open = hc_ws_last_rx_ms(W.ws);
    cr_assert_gt(at_open, 0);
    /* Let the clock move with nothing received, then ping: only the pong
     * can move last_rx. */
    run_until(clock_moved);
    cr_assert_eq(hc_ws_last_rx_ms(W.ws), at_open);
    hc_ws_ping(W.ws);
    run_until(server_got_ping);
    cr_expect_eq(conn0()->msgs[0].len, 1);
    run_until(last_rx_moved);
    cr_expect_gt(hc_ws_last_rx_ms(W.ws), at_open);
    hc_ws_close(W.ws);
    W.ws = NULL;
    world_end();
}

Test(client_ws, a_refused_connection_is_reported_not_open)
{
    char url[64], err[256] = "";
    hc_ws_options o;
    world_init(NULL);
    /* A port nothing listens on: the server's, once it is closed. */
    int port = W.s.port;
    uv_close((uv_handle_t *)&W.s.listener, NULL);
    uv_run(&W.loop, UV_RUN_NOWAIT);
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", port);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.cb = &cbs;
    o.user = &W;
    W.ws = hc_ws_open(W.ctx, &o, err, sizeof(err));
    if (W.ws) {
        run_until(got_closed);
        cr_expect_eq(W.n_closed, 1);
        cr_expect_eq(W.closed.was_open, 0);
        cr_expect_eq(W.closed.code, 1006);
    } else {
        cr_expect(strstr(err, "cannot connect"), "%s", err);
    }
    cr_expect_eq(W.opened, 0);
    world_end();
}

Test(client_ws, bad_urls_and_missing_callbacks_are_refused_at_once)
{
    char err[256] = "";
    hc_ws_options o;
    world_init(NULL);
    memset(&o, 0, sizeof(o));
    o.url = "http://127.0.0.1/";
    o.cb = &cbs;
    cr_expect_null(hc_ws_open(W.ctx, &o, err, sizeof(err)));
    cr_expect(strstr(err, "ws:// or wss://"), "%s", err);
    o.url = "ws://127.0.0.1:1/";
    o.cb = NULL;
    cr_expect_null(hc_ws_open(W.ctx, &o, err, sizeof(err)));
    world_end();
}

/* 600 connections on one context: lws contexts are added as live
 * connections grow (one per 256), and every connection opens. */
#define MANY 600
static hc_ws *many[MANY];
static int many_opened;

static void many_open(hc_ws *ws, void *user)
{
    (void)ws;
    (void)user;
    many_opened++;
}

static const hc_ws_callbacks many_cbs = { many_open, on_message, NULL,
                                          on_closed };

static int all_open(void)
{
    return many_opened == MANY;
}

Test(client_ws, connections_spread_over_lws_contexts)
{
    char url[64], err[256];
    hc_ws_options o;
    world_init(NULL);
    cr_assert_eq(hc_ws_ctx_shards(W.ctx), 1);
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", W.s.port);
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.cb = &many_cbs;
    o.user = &W;
    for (int i = 0; i < MANY; i++) {
        many[i] = hc_ws_open(W.ctx, &o, err, sizeof(err));
        cr_assert(many[i], "%d: %s", i, err);
    }
    cr_expect_eq(hc_ws_ctx_shards(W.ctx), 1 + (MANY - 1) / 256);
    run_until(all_open);
    cr_expect_eq(W.n_closed, 0);
    for (int i = 0; i < MANY; i++)
        hc_ws_close(many[i]);
    world_end();
}
