/*
 * Unit tests of server/core/owner.c as the broker's sink, driven by a
 * scripted broker that does what the Redis broker does (positions, resets,
 * parks, windows, links that go away) without Redis, and a scripted store
 * (the store functions the owner calls are defined here, so this test
 * links none of server/store/). Covered: a first sync empties the ring (a
 * stream kept while it was not followed has missed what was published
 * meanwhile); a recovery whose store read comes back after the broker lost
 * the stream starts over once it follows the stream again; a reset closes
 * the local subscribers and restarts the stream; a stream that cannot be
 * followed fails its parked requests; a subscribe whose since is beyond
 * what this node delivered waits for it to catch up (and is answered
 * recovered:false when the position is beyond the stream itself).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <herald/proto.h>

#include "base/config.h"
#include "base/server.h"
#include "broker/broker.h"
#include "core/owner.h"
#include "core/requests.h"
#include "store/store.h"
#include "testkit.h"

/* ---- the scripted store ---- */

static msg *read_msg;             /* the request a store read holds */
static publist *read_out;
static int16_t *read_status;
static uint64_t read_lo, read_hi;
static int reads;

int store_fits(const pub *p)
{
    return 1;
}

int store_reserve(store *s, const pub *p, int ack_durable)
{
    return STORE_TO_RING;
}

void store_push(store *s, int where, pub *p, msg *ack, uint16_t ack_to)
{
    requests_free(ack);
}

void store_unreserve(store *s, int where, const pub *p)
{
}

void store_find_key(store *s, uint16_t owner_index, const char *chan, size_t len,
                    const char *key, size_t key_len)
{
}

void store_read_range(store *s, uint16_t owner_index, msg *m, publist *out,
                      int16_t *status, const char *epoch, uint64_t lo,
                      uint64_t hi, uint32_t n, unsigned flags)
{
    read_msg = m;
    read_out = out;
    read_status = status;
    read_lo = lo;
    read_hi = hi;
    reads++;
}

/* ---- the scripted broker ---- */

static int follow_rc;            /* what follow answers */
static int follows;
static int window_first;         /* the window read answers [first, top] */
static int64_t window_top;       /* the window's top; -1: the owner's */
static int window_reads;
static int catch_ups;            /* catch_up calls */

static const char *E = "eeeeeeeeeeeeeeee", *F = "ffffffffffffffff";

static pub *rec(const char *chan, const char *epoch, uint64_t offset)
{
    proto_data d = { { "1", 1 }, { "\x01", 1 }, 0 };
    return pub_new((proto_slice){ chan, strlen(chan) }, offset,
                   (proto_slice){ epoch, IDS_LEN }, &d, NULL, 1);
}

static int fb_follow(broker *b, chan_state *c, const char **errmsg)
{
    follows++;
    *errmsg = "broker unavailable";
    return follow_rc;
}

static int fb_release(broker *b, chan_state *c)
{
    return 1;
}

static void fb_forget(broker *b, chan_state *c)
{
}

static int fb_read(broker *b, chan_state *c, chan_req *r, uint64_t lo,
                   uint32_t limit, int reverse, uint32_t keep,
                   const char **errmsg)
{
    window_reads++;
    broker_window w = { .epoch = c->epoch,
                        .top = window_top < 0 ? c->top : (uint64_t)window_top,
                        .first = (uint64_t)window_first };
    for (uint64_t o = lo > (uint64_t)window_first ? lo : (uint64_t)window_first;
         o <= c->top && w.pubs.n < limit; o++)
        publist_push(&w.pubs, rec(c->name, c->epoch, o));
    b->sink.window(b->sink.ctx, c, r, &w);
    publist_free(&w.pubs);
    return 0;
}

static int fb_catch_up(broker *b, chan_state *c, uint64_t offset,
                       const char **errmsg)
{
    catch_ups++;
    return c->top >= offset ? 0 : BROKER_AGAIN;
}

static void fb_presence_change(broker *b, chan_state *c, int join,
                               const char *client, const char *user)
{
}

static int occupied, vacated;   /* occupancy calls */

static void fb_occupancy(broker *b, chan_state *c, int occ)
{
    if (occ)
        occupied++;
    else
        vacated++;
}

static const broker_ops fake_ops = {
    .name = "fake",
    .occupancy = fb_occupancy,
    .follow = fb_follow,
    .catch_up = fb_catch_up,
    .release = fb_release,
    .forget = fb_forget,
    .read = fb_read,
    .presence_change = fb_presence_change,
};

/* ---- the owner ---- */

static config cfg;
static server srv;
static mailbox boxes[2];
static mailbox *inbox[2];
static owner own;
static broker fb;
static int64_t test_clock(void)
{
    return 1700000000000;
}

static void setup(void)
{
    config_defaults(&cfg);
    /* Written around a default namespace that keeps no history (the
     * built-in default keeps 100 for 120 s): the namespaces below are
     * copies of it. */
    cfg.namespaces[0].history_size = 0;
    cfg.namespaces[0].history_ttl = 0;
    testkit_add_ns(&cfg, "h")->history_size = 100;
    config_ns *d = testkit_add_ns(&cfg, "d");
    d->history_size = 5;
    d->durable = 1;
    memset(&srv, 0, sizeof(srv));
    srv.cfg = &cfg;
    srv.n_workers = 2;
    for (int i = 0; i < 2; i++) {
        mailbox_init(&boxes[i], NULL, requests_free);
        inbox[i] = &boxes[i];
    }
    srv.inbox = inbox;
    srv.clock_ms = test_clock;
    srv.store = (store *)&srv;   /* only compared with NULL by the owner */
    memset(&fb, 0, sizeof(fb));
    fb.ops = &fake_ops;
    fb.min_ring = 64;
    fb.multi_node = 1;
    follow_rc = 0;
    follows = reads = window_reads = catch_ups = 0;
    occupied = vacated = 0;
    window_first = 1;
    window_top = -1;
    read_msg = NULL;
    owner_init(&own, &srv, 0, &fb);
}

static void teardown(void)
{
    owner_free(&own);
    for (int i = 0; i < 2; i++)
        mailbox_destroy(&boxes[i]);
}

TestSuite(owner_sink, .init = setup, .fini = teardown);

static sub_req *sub_new(const char *chan, uint16_t w, const char *client,
                        const char *epoch, int64_t since)
{
    sub_req *r = chan_req_new(sizeof(sub_req), OWN_SUBSCRIBE, chan,
                              strlen(chan), "", 0);
    r->h.ns = config_ns_of_channel(&cfg, chan, strlen(chan));
    r->h.route.worker = w;
    memcpy(r->h.client, client, IDS_LEN);
    if (since >= 0) {
        r->has_since = 1;
        memcpy(r->since.epoch, epoch, IDS_LEN);
        r->since.epoch_len = IDS_LEN;
        r->since.offset = (uint64_t)since;
    }
    return r;
}

/* The subscribe reply queued for worker w (others are dropped), or NULL. */
static sub_req *reply(uint16_t w)
{
    sub_req *got = NULL;
    msg *m = mailbox_take(&boxes[w]);
    while (m) {
        msg *n = m->next;
        mailbox_done(&boxes[w], m);
        if (m->type == CON_SUBSCRIBED && !got)
            got = (sub_req *)m;
        else
            requests_free(m);
        m = n;
    }
    return got;
}

static void deliver(chan_state *c, const char *epoch, uint64_t from,
                    uint64_t to)
{
    for (uint64_t o = from; o <= to; o++) {
        pub *p = rec(c->name, epoch, o);
        fb.sink.deliver(fb.sink.ctx, c, p);
        pub_unref(p);
    }
}

static void expect_offsets(const publist *l, uint64_t first, uint64_t last)
{
    cr_assert_eq(l->n, last - first + 1, "%zu publications", l->n);
    for (size_t i = 0; i < l->n; i++)
        cr_assert_eq(l->v[i]->offset, first + i);
}

Test(owner_sink, a_first_sync_empties_the_ring)
{
    owner_receive(&own, &sub_new("h:x", 0, "aaaaaaaaaaaaaaaa", NULL, -1)->h.hdr);
    requests_free(&reply(0)->h.hdr);
    chan_state *c = fb.sink.find(fb.sink.ctx, "h:x", 3);
    cr_assert_not_null(c);
    fb.sink.position(fb.sink.ctx, c, E, 0);
    deliver(c, E, 1, 10);
    /* The stream is kept while not followed (a subscribe parked on it,
     * say), 11..20 are published elsewhere meanwhile, then it is followed
     * again: a first sync at 20. */
    fb.sink.position(fb.sink.ctx, c, E, 20);
    cr_assert_eq(history_count(&c->hist), 0, "the ring could not continue");
    cr_assert_eq(c->top, 20);
    deliver(c, E, 21, 22);

    /* since 5: not from the ring (6..20 never reached it): the window. */
    window_first = 1;
    owner_receive(&own, &sub_new("h:x", 1, "bbbbbbbbbbbbbbbb", E, 5)->h.hdr);
    sub_req *s = reply(1);
    cr_assert_not_null(s);
    cr_assert_eq(window_reads, 1, "read from the window");
    cr_assert_eq(s->recovered, 1);
    expect_offsets(&s->pubs, 6, 22);
    requests_free(&s->h.hdr);

    /* since 20: the ring has 21 and 22. */
    owner_receive(&own, &sub_new("h:x", 1, "cccccccccccccccc", E, 20)->h.hdr);
    s = reply(1);
    cr_assert_eq(window_reads, 1, "from the ring");
    cr_assert_eq(s->recovered, 1);
    expect_offsets(&s->pubs, 21, 22);
    requests_free(&s->h.hdr);
}

Test(owner_sink, a_store_read_back_after_the_broker_lost_the_stream)
{
    /* Durable namespace d (window keeps 5): a subscriber keeps the stream,
     * 20 delivered, the window holds 16..20. */
    owner_receive(&own, &sub_new("d:x", 0, "aaaaaaaaaaaaaaaa", NULL, -1)->h.hdr);
    requests_free(&reply(0)->h.hdr);
    chan_state *c = fb.sink.find(fb.sink.ctx, "d:x", 3);
    fb.sink.position(fb.sink.ctx, c, E, 0);
    deliver(c, E, 1, 20);
    window_first = 16;

    /* since 2, ring 1..20 has it: asks nothing. Evict by restarting the
     * ring at 20 (as after a sync), so 3..15 must come from the store. */
    fb.sink.position(fb.sink.ctx, c, E, 20);
    owner_receive(&own, &sub_new("d:x", 1, "bbbbbbbbbbbbbbbb", E, 2)->h.hdr);
    cr_assert_eq(reads, 1, "below the window: the store");
    cr_assert_eq(read_lo, 2);
    cr_assert_eq(read_hi, 16);
    cr_assert_null(reply(1), "waits for the store");

    /* The link goes down and comes back meanwhile: the broker no longer
     * follows the stream until it is ready again. */
    int before = follows;
    follow_rc = BROKER_AGAIN;
    for (uint64_t o = 3; o <= 15; o++)
        publist_push(read_out, rec("d:x", E, o));
    *read_status = 0;
    owner_receive(&own, read_msg);
    cr_assert_eq(follows, before + 1, "asks the broker first");
    cr_assert_null(reply(1), "parked, not answered with a dead stream");
    cr_assert_not_null(c->waiting);

    /* Followed again: the recovery starts over. */
    follow_rc = 0;
    fb.sink.ready(fb.sink.ctx, c, 0, NULL);
    cr_assert_eq(reads, 2, "the store part read again");
    for (uint64_t o = 3; o <= 15; o++)
        publist_push(read_out, rec("d:x", E, o));
    *read_status = 0;
    owner_receive(&own, read_msg);
    sub_req *s = reply(1);
    cr_assert_not_null(s);
    cr_assert_eq(s->h.code, 0);
    cr_assert_eq(s->recovered, 1);
    expect_offsets(&s->pubs, 3, 20);
    cr_assert_eq(c->total, 2, "counted once");
    requests_free(&s->h.hdr);
}

Test(owner_sink, a_reset_closes_the_local_subscribers)
{
    owner_receive(&own, &sub_new("h:r", 1, "aaaaaaaaaaaaaaaa", NULL, -1)->h.hdr);
    requests_free(&reply(1)->h.hdr);
    chan_state *c = fb.sink.find(fb.sink.ctx, "h:r", 3);
    fb.sink.position(fb.sink.ctx, c, E, 0);
    deliver(c, E, 1, 5);
    reply(1);   /* the deliveries */
    fb.sink.reset(fb.sink.ctx, c, F, 9, "test");
    msg *m = mailbox_take(&boxes[1]);
    cr_assert_not_null(m);
    cr_assert_eq(m->type, CON_RESET, "to the worker with subscribers");
    cr_assert_str_eq(((reset_msg *)m)->chan, "h:r");
    cr_assert_null(m->next);
    requests_free(m);
    cr_assert_null(mailbox_take(&boxes[0]), "none to a worker without");
    cr_assert_str_eq(c->epoch, F);
    cr_assert_eq(c->top, 9);
    cr_assert_eq(history_count(&c->hist), 0);
}

Test(owner_sink, a_stream_that_cannot_be_followed_fails_what_waits)
{
    follow_rc = BROKER_AGAIN;
    owner_receive(&own, &sub_new("h:w", 0, "aaaaaaaaaaaaaaaa", NULL, -1)->h.hdr);
    owner_receive(&own, &sub_new("h:w", 1, "bbbbbbbbbbbbbbbb", NULL, -1)->h.hdr);
    cr_assert_null(reply(0), "parked");
    chan_state *c = fb.sink.find(fb.sink.ctx, "h:w", 3);
    cr_assert_not_null(c);
    fb.sink.ready(fb.sink.ctx, c, PROTO_E_NOT_AVAILABLE, "broker unavailable");
    for (uint16_t w = 0; w < 2; w++) {
        sub_req *s = reply(w);
        cr_assert_not_null(s, "worker %u answered", w);
        cr_assert_eq(s->h.code, PROTO_E_NOT_AVAILABLE);
        cr_assert_str_eq(s->h.errmsg, "broker unavailable");
        requests_free(&s->h.hdr);
    }
    cr_assert_null(fb.sink.find(fb.sink.ctx, "h:w", 3), "dropped: unused");
}

Test(owner_sink, a_since_beyond_this_node_waits_until_it_caught_up)
{
    owner_receive(&own, &sub_new("h:k", 0, "aaaaaaaaaaaaaaaa", NULL, -1)->h.hdr);
    requests_free(&reply(0)->h.hdr);
    chan_state *c = fb.sink.find(fb.sink.ctx, "h:k", 3);
    fb.sink.position(fb.sink.ctx, c, E, 0);
    deliver(c, E, 1, 5);
    reply(0);

    /* Redis is at 8, this node delivered 5; a client has 8 (from a node
     * ahead). */
    window_top = 8;
    owner_receive(&own, &sub_new("h:k", 1, "bbbbbbbbbbbbbbbb", E, 8)->h.hdr);
    cr_assert_eq(window_reads, 1, "asks the window where the stream is");
    cr_assert_eq(catch_ups, 1);
    cr_assert_null(reply(1), "waits, not recovered:false at 5");
    cr_assert_not_null(c->waiting);
    deliver(c, E, 6, 8);
    reply(0);
    fb.sink.ready(fb.sink.ctx, c, 0, NULL);   /* the broker: caught up */
    sub_req *s = reply(1);
    cr_assert_not_null(s);
    cr_assert_eq(s->h.code, 0);
    cr_assert_eq(s->recovered, 1);
    cr_assert_eq(s->top, 8, "continues where the client is");
    cr_assert_eq(s->pubs.n, 0);
    requests_free(&s->h.hdr);

    /* since 20 > the stream's top: that position never existed. */
    owner_receive(&own, &sub_new("h:k", 1, "cccccccccccccccc", E, 20)->h.hdr);
    s = reply(1);
    cr_assert_not_null(s);
    cr_assert_eq(s->recovered, 0);
    cr_assert_eq(s->top, 8);
    requests_free(&s->h.hdr);

    /* A node that stays behind: after two waits the client is told 108
     * (it retries) rather than kept forever. */
    window_top = 12;
    owner_receive(&own, &sub_new("h:k", 1, "dddddddddddddddd", E, 12)->h.hdr);
    cr_assert_null(reply(1));
    fb.sink.ready(fb.sink.ctx, c, 0, NULL);   /* the broker's timeout */
    cr_assert_null(reply(1), "waits once more");
    fb.sink.ready(fb.sink.ctx, c, 0, NULL);
    s = reply(1);
    cr_assert_not_null(s);
    cr_assert_eq(s->h.code, PROTO_E_NOT_AVAILABLE);
    cr_assert_eq(catch_ups, 3);
    requests_free(&s->h.hdr);
    cr_assert_eq(c->total, 3, "the answered subscribers only");
}

/* Counts the messages of each type queued for worker w (takes them). */
static void drain_count(uint16_t w, int *delivers, int *joins, int *resets,
                        int *subscribed)
{
    *delivers = *joins = *resets = *subscribed = 0;
    msg *m = mailbox_take(&boxes[w]);
    while (m) {
        msg *n = m->next;
        mailbox_done(&boxes[w], m);
        *delivers += m->type == CON_DELIVER;
        *joins += m->type == CON_JOIN;
        *resets += m->type == CON_RESET;
        *subscribed += m->type == CON_SUBSCRIBED;
        requests_free(m);
        m = n;
    }
}

Test(owner_sink, fan_out_to_a_worker_that_does_not_drain_is_cut_off)
{
    cfg.worker_queue_max = 64;
    owner_receive(&own, &sub_new("h:f", 1, "aaaaaaaaaaaaaaaa", NULL, -1)->h.hdr);
    owner_receive(&own, &sub_new("h:f", 0, "bbbbbbbbbbbbbbbb", NULL, -1)->h.hdr);
    chan_state *c = fb.sink.find(fb.sink.ctx, "h:f", 3);
    fb.sink.position(fb.sink.ctx, c, E, 0);
    int d, j, r, s;
    drain_count(0, &d, &j, &r, &s);
    /* Worker 1 drains nothing: 128 deliveries (2 x worker_queue_max)
     * queue, then one reset and nothing more; worker 0 gets them all. */
    int d0 = 0;
    for (uint64_t o = 1; o <= 300; o++) {
        deliver(c, E, o, o);
        drain_count(0, &d, &j, &r, &s);   /* worker 0 keeps up */
        d0 += d;
        cr_assert_eq(r, 0);
    }
    cr_assert_eq(d0, 300);
    cr_assert_eq(server_backlog(&srv, 1), 128, "128 deliveries (the reset is not counted)");
    fb.sink.announce(fb.sink.ctx, c, 1, "cccccccccccccccc", "u", 1);
    cr_assert_eq(server_backlog(&srv, 0), 1, "a join counts like a delivery");
    cr_assert_eq(server_backlog(&srv, 1), 128, "none for the cut-off worker");
    drain_count(0, &d, &j, &r, &s);
    cr_assert_eq(j, 1);

    /* A new subscriber on worker 1, answered after the reset: fan-out
     * resumes for it (once the worker has room). */
    owner_receive(&own, &sub_new("h:f", 1, "dddddddddddddddd", NULL, -1)->h.hdr);
    drain_count(1, &d, &j, &r, &s);
    cr_assert_eq(d, 128, "what was queued before the cut");
    cr_assert_eq(r, 1, "one reset, however many were cut off");
    cr_assert_eq(s, 2);
    deliver(c, E, 301, 302);
    drain_count(1, &d, &j, &r, &s);
    cr_assert_eq(d, 2);
    cr_assert_eq(r, 0);
    drain_count(0, &d, &j, &r, &s);
}

/* The broker hears when this node's subscribers of a channel go from none
 * to one and from one to none (webhooks' occupied and vacated), not at
 * every subscriber. */
Test(owner_sink, occupancy_at_the_first_and_last_subscriber)
{
    owner_receive(&own, &sub_new("h:o", 0, "aaaaaaaaaaaaaaaa", NULL, -1)->h.hdr);
    requests_free(&reply(0)->h.hdr);
    owner_receive(&own, &sub_new("h:o", 1, "bbbbbbbbbbbbbbbb", NULL, -1)->h.hdr);
    requests_free(&reply(1)->h.hdr);
    cr_assert_eq(occupied, 1);
    cr_assert_eq(vacated, 0);
    const char *clients[2] = { "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb" };
    for (uint16_t w = 0; w < 2; w++) {
        chan_req *u = chan_req_new(sizeof(chan_req), OWN_UNSUBSCRIBE, "h:o", 3,
                                   NULL, 0);
        u->route.worker = w;
        memcpy(u->client, clients[w], IDS_LEN);
        owner_receive(&own, &u->hdr);
        cr_assert_eq(vacated, w == 1);
    }
    cr_assert_eq(occupied, 1);
}
