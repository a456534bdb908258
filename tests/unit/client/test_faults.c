/*
 * Tests of hc_client_faults_get(): the protocol faults of a server that
 * the client library absorbs (a publication at or below the delivered
 * position is dropped; recovered:true whose publications do not continue
 * the position is reported as recovered = 0) are counted, so that a load
 * generator can see them (herald-bench churn). The server is the scripted
 * one of ws_script.h, answering the client's JSON commands as a Herald
 * server would, with the faults put in on purpose.
 */
#define _GNU_SOURCE   /* memmem, in ws_script.h */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <herald/client.h>

#include "ws_script.h"

typedef struct world {
    uv_loop_t loop;
    uv_timer_t deadline, poll;
    srv s;
    hc_ctx *ctx;
    hc_client *c;
    int handled[SRV_MAX_CONNS];     /* frames of each connection answered */
    uint64_t pubs[32];              /* offsets delivered, in order */
    char pub_chan[32][8];
    int n_pubs;
    hc_sub_event evs[8];            /* subscription events */
    char ev_chan[8][8];
    int n_evs;
    /* The test's answer to `subscribe CHANNEL`: the ok map's contents. */
    const char *(*sub_answer)(const char *channel);
    const char *pushes;             /* sent after the first subscribe reply */
    int pushed;
    char refresh_token[64];         /* the token of the last refresh */
    int64_t refresh_expires;        /* from the refresh reply */
    int refreshed;
} world;

static world W;

/* The value of "key":"..." or "key":N in one JSON command line. */
static void field(const char *line, const char *key, char *out, size_t n)
{
    char pat[32];
    const char *p, *e;
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    out[0] = '\0';
    if (!(p = strstr(line, pat)))
        return;
    p += strlen(pat);
    if (*p == '"') {
        e = strchr(++p, '"');
    } else {
        e = p + strspn(p, "0123456789");
    }
    snprintf(out, n, "%.*s", (int)(e - p), p);
}

static void answer(srv_conn *sc, const char *line)
{
    char id[16], op[16], chan[64], msg[1024];
    int n;
    field(line, "id", id, sizeof(id));
    field(line, "op", op, sizeof(op));
    field(line, "channel", chan, sizeof(chan));
    if (!strcmp(op, "connect"))
        n = snprintf(msg, sizeof(msg), "{\"id\":%s,\"ok\":{\"client\":\"c1\","
                     "\"node\":\"n1\",\"ping\":25}}", id);
    else if (!strcmp(op, "refresh")) {
        field(line, "token", W.refresh_token, sizeof(W.refresh_token));
        n = !strcmp(W.refresh_token, "bad")
            ? snprintf(msg, sizeof(msg), "{\"id\":%s,\"error\":{\"code\":103,"
                       "\"message\":\"token for another user\"}}", id)
            : snprintf(msg, sizeof(msg),
                       "{\"id\":%s,\"ok\":{\"expires\":1700000000}}", id);
    } else if (!strcmp(op, "subscribe"))
        n = snprintf(msg, sizeof(msg), "{\"id\":%s,\"ok\":{%s}}", id,
                     W.sub_answer(chan));
    else
        n = snprintf(msg, sizeof(msg), "{\"id\":%s,\"ok\":{}}", id);
    srv_frame(sc, 1, 1, msg, (size_t)n);
    if (!strcmp(op, "subscribe") && W.pushes && !W.pushed) {
        W.pushed = 1;
        srv_frame(sc, 1, 1, W.pushes, strlen(W.pushes));
    }
}

/* Answers every command line of every text frame not answered yet. */
static void script(srv_conn *sc)
{
    int i = 0;
    while (i < W.s.n_conns && W.s.conns[i] != sc)
        i++;
    for (; W.handled[i] < sc->n_msgs; W.handled[i]++) {
        srv_msg *m = &sc->msgs[W.handled[i]];
        char *save = NULL;
        if (m->opcode != 1)
            continue;
        for (char *line = strtok_r(m->data, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            answer(sc, line);
    }
}

static void on_pub(hc_client *c, const hc_pub *p, void *user)
{
    (void)c;
    (void)user;
    cr_assert_lt(W.n_pubs, 32);
    snprintf(W.pub_chan[W.n_pubs], 8, "%.*s", (int)p->channel.len,
             p->channel.ptr);
    W.pubs[W.n_pubs++] = p->offset;
}

static void on_sub(hc_client *c, const hc_sub_event *ev, void *user)
{
    (void)c;
    (void)user;
    cr_assert_lt(W.n_evs, 8);
    snprintf(W.ev_chan[W.n_evs], 8, "%.*s", (int)ev->channel.len,
             ev->channel.ptr);
    W.evs[W.n_evs++] = *ev;
}

static void deadline_cb(uv_timer_t *t)
{
    (void)t;
    cr_assert_fail("the test did not finish in time");
}

static void world_start(const char *(*sub_answer)(const char *),
                        const char *pushes)
{
    char url[64], err[256] = "";
    hc_options o;
    memset(&W, 0, sizeof(W));
    W.sub_answer = sub_answer;
    W.pushes = pushes;
    uv_loop_init(&W.loop);
    uv_timer_init(&W.loop, &W.deadline);
    uv_timer_start(&W.deadline, deadline_cb, 20000, 0);
    uv_timer_init(&W.loop, &W.poll);
    W.s.on_event = script;
    srv_start(&W.loop, &W.s);
    W.ctx = hc_ctx_new(&W.loop, NULL);
    cr_assert(W.ctx);
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/ws", W.s.port);
    hc_options_init(&o);
    o.url = url;
    o.reconnect = 0;
    o.cb.pub = on_pub;
    o.cb.subscription = on_sub;
    W.c = hc_client_new(W.ctx, &o, err, sizeof(err));
    cr_assert(W.c, "%s", err);
}

static void run_until(int (*until)(void))
{
    ws_run_until(&W.loop, &W.poll, until);
}

static void world_end(void)
{
    hc_client_close(W.c);
    hc_ctx_close(W.ctx);
    srv_stop(&W.s);
    uv_timer_stop(&W.deadline);
    uv_close((uv_handle_t *)&W.deadline, NULL);
    uv_close((uv_handle_t *)&W.poll, NULL);
    uv_run(&W.loop, UV_RUN_DEFAULT);
    hc_ctx_free(W.ctx);
    cr_expect_eq(uv_loop_close(&W.loop), 0);
    srv_free(&W.s);
}

/* --- Repeated and old offsets ------------------------------------------- */

static const char *top5(const char *channel)
{
    (void)channel;
    return "\"epoch\":\"e1\",\"offset\":5";
}

#define PUB(o) "{\"push\":\"pub\",\"channel\":\"ch\",\"offset\":" #o \
               ",\"epoch\":\"e1\",\"data\":" #o "}"

static int got_8(void)
{
    return W.n_pubs && W.pubs[W.n_pubs - 1] == 8;
}

Test(client_faults, repeated_and_old_offsets_are_dropped_and_counted)
{
    hc_client_faults f;
    /* 6 and 7, then 6 again, 5 (the subscribe reply's top, which the
     * client has), 3 (older), and 8. */
    world_start(top5, PUB(6) "\n" PUB(7) "\n" PUB(6) "\n" PUB(5) "\n"
                      PUB(3) "\n" PUB(8));
    hc_client_faults_get(W.c, &f);
    cr_assert_eq(f.duplicates, 0);
    cr_assert_eq(hc_subscribe(W.c, "ch", NULL, NULL, NULL), HC_OK);
    run_until(got_8);
    cr_assert_eq(W.n_pubs, 3);
    cr_expect_eq(W.pubs[0], 6);
    cr_expect_eq(W.pubs[1], 7);
    cr_expect_eq(W.pubs[2], 8);
    hc_client_faults_get(W.c, &f);
    cr_expect_eq(f.duplicates, 3);
    cr_expect_eq(f.false_recoveries, 0);
    world_end();
}

/* --- recovered:true that does not continue the position ----------------- */

/* Both from since 3 (epoch e1): "bad" claims recovery but its
 * publications skip 5; "good" really continues 3 up to its top. */
static const char *recover(const char *channel)
{
    if (!strcmp(channel, "bad"))
        return "\"epoch\":\"e1\",\"offset\":7,\"recovered\":true,"
               "\"publications\":["
               "{\"channel\":\"bad\",\"offset\":4,\"epoch\":\"e1\",\"data\":4},"
               "{\"channel\":\"bad\",\"offset\":6,\"epoch\":\"e1\",\"data\":6},"
               "{\"channel\":\"bad\",\"offset\":7,\"epoch\":\"e1\",\"data\":7}]";
    return "\"epoch\":\"e1\",\"offset\":5,\"recovered\":true,"
           "\"publications\":["
           "{\"channel\":\"good\",\"offset\":4,\"epoch\":\"e1\",\"data\":4},"
           "{\"channel\":\"good\",\"offset\":5,\"epoch\":\"e1\",\"data\":5}]";
}

static int got_both(void)
{
    return W.n_evs == 2 && W.n_pubs >= 2;
}

Test(client_faults, a_recovery_that_does_not_continue_is_counted)
{
    hc_client_faults f;
    hc_since since = { 3, "e1" };
    world_start(recover, NULL);
    cr_assert_eq(hc_subscribe(W.c, "bad", &since, NULL, NULL), HC_OK);
    cr_assert_eq(hc_subscribe(W.c, "good", &since, NULL, NULL), HC_OK);
    run_until(got_both);
    for (int i = 0; i < 2; i++) {
        int bad = !strcmp(W.ev_chan[i], "bad");
        cr_expect_eq(W.evs[i].kind, HC_SUB_SUBSCRIBED);
        /* The client tells the application what really happened. */
        cr_expect_eq(W.evs[i].recovered, bad ? 0 : 1, "%s", W.ev_chan[i]);
        cr_expect_eq(W.evs[i].offset, bad ? 7u : 3u, "%s", W.ev_chan[i]);
    }
    /* Only "good" delivered its recovered publications. */
    cr_assert_eq(W.n_pubs, 2);
    for (int i = 0; i < 2; i++) {
        cr_expect_str_eq(W.pub_chan[i], "good");
        cr_expect_eq(W.pubs[i], 4u + (uint64_t)i);
    }
    hc_client_faults_get(W.c, &f);
    cr_expect_eq(f.false_recoveries, 1);
    cr_expect_eq(f.duplicates, 0);
    world_end();
}

/* --- Token lifetimes: refresh, and the server's unsubscribe push -------- */

static void on_refresh(hc_client *c, const hc_reply *r, void *arg)
{
    (void)c;
    if (arg == (void *)2)
        return;              /* failed by the close: any local code */
    cr_expect_eq(r->code, arg ? 103 : 0);
    W.refresh_expires = r->expires;
    W.refreshed = 1;
}

static int refreshed(void)
{
    return W.refreshed;
}

Test(client_tokens, refresh_sends_the_token_and_reports_the_new_expiry)
{
    world_start(top5, NULL);
    cr_assert_eq(hc_refresh(W.c, "", NULL, NULL), HC_ERR_INVALID);
    cr_assert_eq(hc_refresh(W.c, "h.p.s", on_refresh, NULL), HC_OK);
    run_until(refreshed);
    cr_expect_str_eq(W.refresh_token, "h.p.s");
    cr_expect_eq(W.refresh_expires, 1700000000);
    /* a refused one reaches the callback with its code */
    W.refreshed = 0;
    cr_assert_eq(hc_refresh(W.c, "bad", on_refresh, (void *)1), HC_OK);
    run_until(refreshed);
    cr_expect_eq(W.refresh_expires, 0);
    /* one still in flight when the client closes is freed (ASan) */
    cr_assert_eq(hc_refresh(W.c, "late", on_refresh, (void *)2), HC_OK);
    world_end();
}

static int got_unsubscribed(void)
{
    return W.n_evs == 2;
}

Test(client_tokens, an_unsubscribe_push_ends_the_subscription)
{
    world_start(top5, "{\"push\":\"unsubscribe\",\"channel\":\"ch\","
                      "\"code\":109,\"reason\":\"channel token expired\"}");
    cr_assert_eq(hc_subscribe(W.c, "ch", NULL, NULL, NULL), HC_OK);
    run_until(got_unsubscribed);
    cr_expect_eq(W.evs[0].kind, HC_SUB_SUBSCRIBED);
    cr_expect_eq(W.evs[1].kind, HC_SUB_UNSUBSCRIBED);
    cr_expect_eq(W.evs[1].code, 109);
    cr_expect_str_eq(W.ev_chan[1], "ch");
    /* out of the subscription set: subscribing again is not HC_ERR_EXISTS */
    cr_expect_eq(hc_subscribe(W.c, "ch", NULL, NULL, NULL), HC_OK);
    world_end();
}
