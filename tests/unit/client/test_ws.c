/*
 * Tests of the WebSocket client transport (clients/c/src/hc_ws.c,
 * herald/ws.h) that the Herald client and herald-bench's peer drivers share,
 * against a small scripted WebSocket server on the same uv loop
 * (ws_script.h: plain uv_tcp, RFC 6455 handshake and framing). Each test runs one loop
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

#include "ws_script.h"

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
static void run_until(int (*until)(void))
{
    ws_run_until(&W.loop, &W.poll, until);
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
