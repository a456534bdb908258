/*
 * Unit tests of server/core/owner.c through the memory broker
 * (server/broker/memory.c), without a loop or a socket: requests are built
 * as a worker builds them (core/requests.h) and handed to owner_receive;
 * replies and pushes are taken from the workers' mailboxes (two workers,
 * the owner is worker 0). The wall clock is the test's (server.clock_ms),
 * so history ages without sleeping.
 *
 * Covered: publish (sequencing, fan-out to exactly the workers with
 * subscribers, reply after delivery), subscribe with since (recovery from
 * the ring, refusals: other epoch, beyond top, evicted, recovery_max),
 * back-pressure (110 while a subscriber's worker holds worker_queue_max
 * deliveries), max_subscribers, presence and join/leave, history pages,
 * and when a stream is dropped (only without subscribers and retained
 * history; a later stream of the name has a new epoch).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <herald/proto.h>

#include "base/config.h"
#include "base/server.h"
#include "broker/broker.h"
#include "broker/memory.h"
#include "core/owner.h"
#include "core/requests.h"
#include "testkit.h"

#define WORKERS 2

static config cfg;
static server srv;
static mailbox boxes[WORKERS];
static mailbox *inbox[WORKERS];
static owner own;
static broker *brk;
static int64_t now_ms;

static int64_t test_clock(void)
{
    return now_ms;
}

static void setup(void)
{
    config_defaults(&cfg);
    /* Written around a default namespace that keeps no history (the
     * built-in default keeps 100 for 120 s): the namespaces below are
     * copies of it. */
    cfg.namespaces[0].history_size = 0;
    cfg.namespaces[0].history_ttl = 0;
    testkit_add_ns(&cfg, "h")->history_size = 5;
    config_ns *t = testkit_add_ns(&cfg, "t");
    t->history_size = 100;
    t->history_ttl = 2;
    config_ns *p = testkit_add_ns(&cfg, "p");
    p->presence = 1;
    p->join_leave = 1;
    testkit_add_ns(&cfg, "m")->max_subscribers = 2;
    cfg.worker_queue_max = 3;
    memset(&srv, 0, sizeof(srv));
    srv.cfg = &cfg;
    srv.n_workers = WORKERS;
    for (int i = 0; i < WORKERS; i++) {
        mailbox_init(&boxes[i], NULL, requests_free);
        inbox[i] = &boxes[i];
    }
    srv.inbox = inbox;
    srv.clock_ms = test_clock;
    now_ms = 1700000000000;
    brk = broker_memory_new(&srv, 0);
    owner_init(&own, &srv, 0, brk);
}

static void teardown(void)
{
    owner_free(&own);
    brk->ops->destroy(brk);
    for (int i = 0; i < WORKERS; i++)
        mailbox_destroy(&boxes[i]);
}

TestSuite(owner, .init = setup, .fini = teardown);

/* ---- requests as a worker makes them ---- */

static uint32_t next_cmd = 1;

static void *request(size_t size, uint8_t type, const char *chan,
                     uint16_t worker, const char *client, const char *user)
{
    chan_req *r = chan_req_new(size, type, chan, strlen(chan), user,
                               strlen(user));
    r->route.worker = worker;
    r->route.cmd_id = next_cmd++;
    r->ns = config_ns_of_channel(&cfg, chan, strlen(chan));
    cr_assert_not_null(r->ns, "a configured namespace: %s", chan);
    memcpy(r->client, client, IDS_LEN);
    return r;
}

static const char *A = "aaaaaaaaaaaaaaaa", *B = "bbbbbbbbbbbbbbbb",
                  *C = "cccccccccccccccc";

/* ---- what comes back ---- */

/* Every message queued for worker w, in order (a NULL-terminated list
 * through next; free with drop()). */
static msg *take(uint16_t w)
{
    return mailbox_take(&boxes[w]);
}

static int count(msg *m)
{
    int n = 0;
    for (; m; m = m->next)
        n++;
    return n;
}

static void drop(msg *m)
{
    while (m) {
        msg *n = m->next;
        mailbox_done(&boxes[0], m);   /* counted ones: any box's counter */
        requests_free(m);
        m = n;
    }
}

/* Releases what a worker took, giving back its counted messages. */
static void drop_from(uint16_t w, msg *m)
{
    while (m) {
        msg *n = m->next;
        mailbox_done(&boxes[w], m);
        requests_free(m);
        m = n;
    }
}

/* The one message queued for w, of type `type`. */
static msg *only(uint16_t w, uint8_t type)
{
    msg *m = take(w);
    cr_assert_not_null(m, "a message for worker %u", w);
    cr_assert_null(m->next, "only one message for worker %u", w);
    cr_assert_eq(m->to, MSG_TO_CONNS);
    cr_assert_eq(m->type, type, "type %u, want %u", m->type, type);
    return m;
}

static sub_req *subscribe(const char *chan, uint16_t w, const char *client,
                          const char *since_epoch, uint64_t since)
{
    sub_req *r = request(sizeof(sub_req), OWN_SUBSCRIBE, chan, w, client, "");
    if (since_epoch) {
        r->has_since = 1;
        memcpy(r->since.epoch, since_epoch, IDS_LEN);
        r->since.epoch_len = IDS_LEN;
        r->since.offset = since;
    }
    owner_receive(&own, &r->h.hdr);
    sub_req *rep = (sub_req *)only(w, CON_SUBSCRIBED);
    cr_assert_eq(rep, r, "answered in place");
    return rep;
}

static void unsubscribe(const char *chan, uint16_t w, const char *client)
{
    chan_req *r = request(sizeof(chan_req), OWN_UNSUBSCRIBE, chan, w, client,
                          "");
    owner_receive(&own, &r->hdr);
}

/* Publishes from worker w; returns the reply (not freed), after checking
 * that it is the last message queued for w. Pushes queued before it for w
 * are returned in *pushes (may be NULL to drop them). */
static pub_req *publish(const char *chan, uint16_t w, const char *text,
                        msg **pushes)
{
    pub_req *r = request(sizeof(pub_req), OWN_PUBLISH, chan, w, C, "");
    proto_data d = { { text, strlen(text) }, { "\xa1x", 2 }, 0 };
    r->p = pub_draft((proto_slice){ chan, strlen(chan) }, &d, NULL);
    owner_receive(&own, &r->h.hdr);
    msg *m = take(w), **link = &m, *last = NULL;
    cr_assert_not_null(m, "a reply");
    while ((*link)->next)
        link = &(*link)->next;
    last = *link;
    *link = NULL;
    cr_assert_eq(last->type, CON_PUBLISHED);
    if (pushes)
        *pushes = last == m ? NULL : m;
    else if (last != m)
        drop_from(w, m);
    return (pub_req *)last;
}

static uint64_t publish_ok(const char *chan, uint16_t w, msg **pushes)
{
    pub_req *r = publish(chan, w, "\"x\"", pushes);
    cr_assert_eq(r->h.code, 0, "published (code %d)", r->h.code);
    uint64_t off = r->offset;
    requests_free(&r->h.hdr);
    return off;
}

static hist_req *hist(const char *chan, uint32_t limit, int reverse,
                         const char *since_epoch, uint64_t since)
{
    hist_req *r = request(sizeof(hist_req), OWN_HISTORY, chan, 0, A, "");
    r->limit = limit;
    r->reverse = (uint8_t)reverse;
    if (since_epoch) {
        r->has_since = 1;
        memcpy(r->since.epoch, since_epoch, IDS_LEN);
        r->since.epoch_len = IDS_LEN;
        r->since.offset = since;
    }
    owner_receive(&own, &r->h.hdr);
    return (hist_req *)only(0, CON_HISTORY);
}

static void expect_offsets(const publist *l, uint64_t first, uint64_t last)
{
    cr_assert_eq(l->n, last - first + 1, "%zu publications, want %llu..%llu",
                 l->n, (unsigned long long)first, (unsigned long long)last);
    for (size_t i = 0; i < l->n; i++)
        cr_assert_eq(l->v[i]->offset, first + i);
}

/* ---- publish ---------------------------------------------------------- */

Test(owner, publish_sequences_and_fans_out_to_workers_with_subscribers)
{
    sub_req *s = subscribe("news", 1, B, NULL, 0);
    cr_assert_eq(s->h.code, 0);
    cr_assert_eq(s->recovered, -1, "no since");
    cr_assert_eq(s->top, 0);
    char epoch[IDS_LEN + 1];
    memcpy(epoch, s->epoch, sizeof(epoch));
    requests_free(&s->h.hdr);

    for (uint64_t want = 1; want <= 3; want++) {
        msg *pushes = NULL;
        pub_req *r = publish("news", 0, "{\"i\":1}", &pushes);
        cr_assert_eq(r->h.code, 0);
        cr_assert_eq(r->offset, want);
        cr_assert_str_eq(r->epoch, epoch, "the subscriber's epoch");
        cr_assert_null(r->p, "the reply holds no publication");
        cr_assert_null(pushes, "no subscriber on the publisher's worker");
        requests_free(&r->h.hdr);
        /* Worker 1 has the subscriber: one delivery, sealed. */
        msg *d = only(1, CON_DELIVER);
        cr_assert(d->counted, "deliveries count for back-pressure");
        const pub *p = ((deliver_msg *)d)->p;
        cr_assert_eq(p->offset, want);
        cr_assert_eq(memcmp(p->view.epoch.ptr, epoch, IDS_LEN), 0);
        cr_assert_eq(p->view.data.json.len, 7);
        drop_from(1, d);
    }

    /* A subscriber on the publisher's worker too: its delivery is queued
     * before the publish reply. */
    requests_free(&subscribe("news", 0, A, NULL, 0)->h.hdr);
    msg *pushes = NULL;
    pub_req *r = publish("news", 0, "1", &pushes);
    cr_assert_eq(r->offset, 4);
    cr_assert_eq(count(pushes), 1);
    cr_assert_eq(pushes->type, CON_DELIVER);
    drop_from(0, pushes);
    requests_free(&r->h.hdr);
    drop_from(1, only(1, CON_DELIVER));
}

Test(owner, streams_without_subscribers_or_history_are_dropped)
{
    /* The default namespace keeps no history: with nobody subscribed the
     * stream is gone after each publish, and the next one starts a new
     * epoch at offset 1. */
    pub_req *r = publish("plain", 0, "1", NULL);
    char epoch[IDS_LEN + 1];
    memcpy(epoch, r->epoch, sizeof(epoch));
    cr_assert_eq(r->offset, 1);
    requests_free(&r->h.hdr);
    cr_assert_eq(own.reg.n, 0, "dropped");
    r = publish("plain", 0, "2", NULL);
    cr_assert_eq(r->offset, 1, "a new stream");
    cr_assert_str_neq(r->epoch, epoch, "a new epoch");
    requests_free(&r->h.hdr);

    /* A subscriber keeps it; its unsubscribe lets it go. */
    requests_free(&subscribe("plain", 1, B, NULL, 0)->h.hdr);
    cr_assert_eq(publish_ok("plain", 0, NULL), 1);
    cr_assert_eq(publish_ok("plain", 0, NULL), 2);
    drop(take(1));
    unsubscribe("plain", 1, B);
    cr_assert_eq(own.reg.n, 0);

    /* Retained history keeps a stream without subscribers. */
    cr_assert_eq(publish_ok("h:x", 0, NULL), 1);
    cr_assert_eq(publish_ok("h:x", 0, NULL), 2);
    owner_tick(&own);
    cr_assert_eq(own.reg.n, 1, "kept for its history");
    cr_assert_eq(publish_ok("h:x", 0, NULL), 3, "the stream continues");
}

Test(owner, history_ages_out_and_then_the_stream_goes)
{
    /* Namespace t: history_ttl 2 s. */
    cr_assert_eq(publish_ok("t:x", 0, NULL), 1);
    cr_assert_eq(publish_ok("t:x", 0, NULL), 2);
    hist_req *h = hist("t:x", 10, 0, NULL, 0);
    char epoch[IDS_LEN + 1];
    memcpy(epoch, h->epoch, sizeof(epoch));
    expect_offsets(&h->pubs, 1, 2);
    requests_free(&h->h.hdr);
    now_ms += 1500;
    owner_tick(&own);
    cr_assert_eq(own.reg.n, 1, "still retained at 1.5 s");
    cr_assert_eq(publish_ok("t:x", 0, NULL), 3);
    now_ms += 1000;   /* 1 and 2 are 2.5 s old, 3 is 1 s */
    h = hist("t:x", 10, 0, NULL, 0);
    expect_offsets(&h->pubs, 3, 3);
    cr_assert_eq(h->top, 3);
    requests_free(&h->h.hdr);
    now_ms += 5000;
    owner_tick(&own);
    cr_assert_eq(own.reg.n, 0, "all aged out: dropped");
    pub_req *r = publish("t:x", 0, "1", NULL);
    cr_assert_eq(r->offset, 1);
    cr_assert_str_neq(r->epoch, epoch, "a new stream, a new epoch");
    requests_free(&r->h.hdr);
}

/* ---- subscribe with since ------------------------------------------------ */

Test(owner, subscribe_with_since_recovers_from_the_ring)
{
    requests_free(&subscribe("h:r", 0, B, NULL, 0)->h.hdr);
    for (int i = 0; i < 4; i++)
        publish_ok("h:r", 0, NULL);
    drop_from(1, take(1));
    hist_req *h = hist("h:r", 0, 0, NULL, 0);
    char epoch[IDS_LEN + 1];
    memcpy(epoch, h->epoch, sizeof(epoch));
    cr_assert_eq(h->top, 4, "limit 0: the position only");
    cr_assert_eq(h->pubs.n, 0);
    requests_free(&h->h.hdr);

    sub_req *s = subscribe("h:r", 0, A, epoch, 1);
    cr_assert_eq(s->h.code, 0);
    cr_assert_eq(s->recovered, 1);
    cr_assert_eq(s->top, 4);
    expect_offsets(&s->pubs, 2, 4);
    requests_free(&s->h.hdr);
    unsubscribe("h:r", 0, A);

    s = subscribe("h:r", 0, A, epoch, 4);
    cr_assert_eq(s->recovered, 1, "nothing missed");
    cr_assert_eq(s->pubs.n, 0);
    requests_free(&s->h.hdr);
    unsubscribe("h:r", 0, A);

    /* Retained: 4..8 (history_size 5). */
    for (int i = 0; i < 4; i++)
        publish_ok("h:r", 0, NULL);
    drop_from(1, take(1));
    s = subscribe("h:r", 0, A, epoch, 3);
    cr_assert_eq(s->recovered, 1);
    expect_offsets(&s->pubs, 4, 8);
    requests_free(&s->h.hdr);
    unsubscribe("h:r", 0, A);

    s = subscribe("h:r", 0, A, epoch, 2);
    cr_assert_eq(s->h.code, 0, "subscribed all the same");
    cr_assert_eq(s->recovered, 0, "3 was evicted: honest about the gap");
    cr_assert_eq(s->pubs.n, 0);
    cr_assert_eq(s->top, 8, "the position to continue from");
    requests_free(&s->h.hdr);
    unsubscribe("h:r", 0, A);

    s = subscribe("h:r", 0, A, epoch, 9);
    cr_assert_eq(s->recovered, 0, "beyond the top");
    requests_free(&s->h.hdr);
    unsubscribe("h:r", 0, A);

    char other[IDS_LEN + 1];
    memcpy(other, epoch, sizeof(other));
    other[0] = other[0] == 'f' ? 'e' : 'f';
    s = subscribe("h:r", 0, A, other, 7);
    cr_assert_eq(s->recovered, 0, "another epoch");
    cr_assert_str_eq(s->epoch, epoch);
    requests_free(&s->h.hdr);
}

Test(owner, recovery_max_bounds_one_recovery)
{
    cfg.recovery_max = 3;
    requests_free(&subscribe("h:m", 0, B, NULL, 0)->h.hdr);
    for (int i = 0; i < 5; i++)
        publish_ok("h:m", 0, NULL);
    drop_from(1, take(1));
    hist_req *h = hist("h:m", 0, 0, NULL, 0);
    char epoch[IDS_LEN + 1];
    memcpy(epoch, h->epoch, sizeof(epoch));
    requests_free(&h->h.hdr);
    sub_req *s = subscribe("h:m", 0, A, epoch, 2);
    cr_assert_eq(s->recovered, 1, "3 missed: allowed");
    expect_offsets(&s->pubs, 3, 5);
    requests_free(&s->h.hdr);
    unsubscribe("h:m", 0, A);
    s = subscribe("h:m", 0, A, epoch, 1);
    cr_assert_eq(s->recovered, 0, "4 missed, all retained, but more than "
                                  "recovery_max");
    cr_assert_eq(s->pubs.n, 0);
    requests_free(&s->h.hdr);
}

/* ---- limits ---------------------------------------------------------------- */

Test(owner, back_pressure_refuses_while_a_subscribers_worker_is_behind)
{
    requests_free(&subscribe("bp", 1, B, NULL, 0)->h.hdr);
    /* worker_queue_max is 3: worker 1 does not drain its mailbox. */
    for (int i = 0; i < 3; i++)
        publish_ok("bp", 0, NULL);
    cr_assert_eq(server_backlog(&srv, 1), 3);
    pub_req *r = publish("bp", 0, "1", NULL);
    cr_assert_eq(r->h.code, PROTO_E_RATE_LIMITED, "110 over the bound");
    requests_free(&r->h.hdr);
    cr_assert_eq(server_backlog(&srv, 1), 3, "nothing queued for it");

    /* Channels whose subscribers are elsewhere are not held up. */
    requests_free(&subscribe("other", 0, A, NULL, 0)->h.hdr);
    msg *pushes = NULL;
    cr_assert_eq(publish_ok("other", 0, &pushes), 1);
    drop_from(0, pushes);

    /* Worker 1 catches up: publishing resumes where it left off. */
    msg *d = take(1);
    cr_assert_eq(count(d), 3);
    drop_from(1, d);
    cr_assert_eq(server_backlog(&srv, 1), 0);
    cr_assert_eq(publish_ok("bp", 0, NULL), 4, "no offset was used by the "
                                               "refused publish");
    drop_from(1, take(1));
}

Test(owner, max_subscribers_per_channel)
{
    requests_free(&subscribe("m:x", 0, A, NULL, 0)->h.hdr);
    requests_free(&subscribe("m:x", 1, B, NULL, 0)->h.hdr);
    sub_req *s = subscribe("m:x", 1, C, NULL, 0);
    cr_assert_eq(s->h.code, PROTO_E_LIMIT);
    requests_free(&s->h.hdr);
    unsubscribe("m:x", 0, A);
    s = subscribe("m:x", 1, C, NULL, 0);
    cr_assert_eq(s->h.code, 0, "room again");
    requests_free(&s->h.hdr);
}

/* ---- presence ---------------------------------------------------------- */

Test(owner, presence_and_join_leave)
{
    /* A on worker 0: its own join goes to worker 0 (which skips A). */
    sub_req *s = request(sizeof(sub_req), OWN_SUBSCRIBE, "p:room", 0, A,
                         "alice");
    owner_receive(&own, &s->h.hdr);
    msg *m = take(0);
    cr_assert_eq(count(m), 2);
    cr_assert_eq(m->type, CON_JOIN, "announced to the workers with subscribers");
    join_msg *j = (join_msg *)m;
    cr_assert_eq(j->join, 1);
    cr_assert_eq(memcmp(j->client, A, IDS_LEN), 0);
    cr_assert_eq(j->user_len, 5);
    cr_assert_eq(memcmp(j->user, "alice", 5), 0);
    cr_assert_eq(m->next->type, CON_SUBSCRIBED);
    drop_from(0, m);

    /* B on worker 1: its join reaches both workers. */
    sub_req *b = request(sizeof(sub_req), OWN_SUBSCRIBE, "p:room", 1, B, "");
    owner_receive(&own, &b->h.hdr);
    drop_from(0, only(0, CON_JOIN));
    m = take(1);
    cr_assert_eq(count(m), 2);
    drop_from(1, m);

    pres_req *p = request(sizeof(pres_req), OWN_PRESENCE, "p:room", 0, C, "");
    owner_receive(&own, &p->h.hdr);
    p = (pres_req *)only(0, CON_PRESENCE);
    cr_assert_eq(p->h.code, 0);
    cr_assert_eq(p->n_entries, 2);
    int seen = 0;
    for (size_t i = 0; i < p->n_entries; i++) {
        if (memcmp(p->entries[i].client.ptr, A, IDS_LEN) == 0) {
            cr_assert_eq(p->entries[i].user.len, 5);
            seen |= 1;
        } else if (memcmp(p->entries[i].client.ptr, B, IDS_LEN) == 0) {
            cr_assert_eq(p->entries[i].user.len, 0, "anonymous");
            seen |= 2;
        }
    }
    cr_assert_eq(seen, 3);
    requests_free(&p->h.hdr);

    /* A leaves: a leave push to both workers, with A's user. */
    unsubscribe("p:room", 0, A);
    m = only(1, CON_JOIN);
    cr_assert_eq(((join_msg *)m)->join, 0);
    cr_assert_eq(((join_msg *)m)->user_len, 5);
    drop_from(1, m);
    cr_assert_null(take(0), "no subscriber left on worker 0");
}

/* ---- history -------------------------------------------------------------- */

Test(owner, history_pages)
{
    for (int i = 0; i < 8; i++)
        publish_ok("h:p", 0, NULL);   /* retained 4..8 */
    hist_req *h = hist("h:p", 100, 0, NULL, 0);
    cr_assert_eq(h->h.code, 0);
    cr_assert_eq(h->top, 8);
    expect_offsets(&h->pubs, 4, 8);
    char epoch[IDS_LEN + 1];
    memcpy(epoch, h->epoch, sizeof(epoch));
    requests_free(&h->h.hdr);

    h = hist("h:p", 2, 0, epoch, 5);
    expect_offsets(&h->pubs, 6, 7);
    requests_free(&h->h.hdr);

    h = hist("h:p", 3, 1, NULL, 0);
    cr_assert_eq(h->pubs.n, 3);
    cr_assert_eq(h->pubs.v[0]->offset, 8, "newest first");
    cr_assert_eq(h->pubs.v[2]->offset, 6);
    requests_free(&h->h.hdr);

    h = hist("h:p", 10, 0, epoch, 2);
    cr_assert_eq(h->h.code, PROTO_E_UNRECOVERABLE, "3 is gone");
    cr_assert_eq(h->pubs.n, 0);
    requests_free(&h->h.hdr);

    h = hist("h:p", 10, 0, epoch, 9);
    cr_assert_eq(h->h.code, PROTO_E_UNRECOVERABLE, "beyond the top");
    requests_free(&h->h.hdr);

    h = hist("h:p", 10, 0, epoch, 8);
    cr_assert_eq(h->h.code, 0, "at the top: nothing newer");
    cr_assert_eq(h->pubs.n, 0);
    requests_free(&h->h.hdr);

    h = hist("h:p", 0, 0, epoch, 2);
    cr_assert_eq(h->h.code, 0, "limit 0 asks for the position only");
    cr_assert_eq(h->top, 8);
    requests_free(&h->h.hdr);
}

/* ---- bounds: max_channels, history_memory_mb, the walk --------------------- */

/* The epoch a fresh history page reports for chan (its stream now). */
static void epoch_of(const char *chan, char *epoch)
{
    hist_req *h = hist(chan, 0, 0, NULL, 0);
    cr_assert_eq(h->h.code, 0);
    memcpy(epoch, h->epoch, IDS_LEN + 1);
    requests_free(&h->h.hdr);
}

Test(owner, bounds_come_from_the_configuration)
{
    /* config_defaults: 1,000,000 channels and 2048 MiB, two workers. */
    cr_assert_eq(own.reg.max_n, 500000);
    cr_assert_eq(own.reg.max_bytes, (size_t)1024 << 20);
}

Test(owner, the_least_recently_used_idle_stream_is_evicted)
{
    own.reg.max_n = 3;
    publish_ok("h:a", 0, NULL);
    publish_ok("h:b", 0, NULL);
    publish_ok("h:c", 0, NULL);
    cr_assert_eq(own.reg.n, 3, "kept for their history");
    cr_assert_eq(atomic_load(&srv.channels), 3);
    publish_ok("h:a", 0, NULL);   /* a is the most recent now */
    publish_ok("h:d", 0, NULL);
    cr_assert_eq(own.reg.n, 3);
    cr_assert_null(chanreg_find(&own.reg, "h:b", 3), "b: least recently used");
    cr_assert_not_null(chanreg_find(&own.reg, "h:a", 3));
    cr_assert_eq(atomic_load(&srv.channels_evicted), 1);
    publish_ok("h:e", 0, NULL);
    cr_assert_null(chanreg_find(&own.reg, "h:c", 3));
    publish_ok("h:f", 0, NULL);
    cr_assert_null(chanreg_find(&own.reg, "h:a", 3));
    cr_assert_eq(atomic_load(&srv.channels_evicted), 3);
    cr_assert_eq(atomic_load(&srv.channels), 3);
}

Test(owner, a_stream_with_subscribers_is_never_evicted)
{
    own.reg.max_n = 3;
    requests_free(&subscribe("h:s", 1, B, NULL, 0)->h.hdr);   /* the oldest */
    publish_ok("h:s", 0, NULL);
    drop_from(1, take(1));
    publish_ok("h:a", 0, NULL);
    publish_ok("h:b", 0, NULL);
    publish_ok("h:c", 0, NULL);
    cr_assert_not_null(chanreg_find(&own.reg, "h:s", 3));
    cr_assert_null(chanreg_find(&own.reg, "h:a", 3));
    /* Its subscriber leaves: it is idle, and the most recent. */
    unsubscribe("h:s", 1, B);
    cr_assert_not_null(chanreg_find(&own.reg, "h:s", 3), "history keeps it");
    publish_ok("h:d", 0, NULL);
    cr_assert_null(chanreg_find(&own.reg, "h:b", 3));
    cr_assert_not_null(chanreg_find(&own.reg, "h:s", 3));
}

Test(owner, full_and_nothing_idle_refuses_new_channels_with_106)
{
    own.reg.max_n = 2;
    requests_free(&subscribe("h:x", 1, B, NULL, 0)->h.hdr);
    requests_free(&subscribe("plain", 1, B, NULL, 0)->h.hdr);
    pub_req *r = publish("h:new", 0, "1", NULL);
    cr_assert_eq(r->h.code, PROTO_E_LIMIT, "publish to a new channel: 106");
    cr_assert_not_null(r->h.errmsg);
    requests_free(&r->h.hdr);
    sub_req *s = subscribe("h:new", 0, A, NULL, 0);
    cr_assert_eq(s->h.code, PROTO_E_LIMIT, "subscribe: 106");
    requests_free(&s->h.hdr);
    hist_req *h = hist("h:new", 10, 0, NULL, 0);
    cr_assert_eq(h->h.code, PROTO_E_LIMIT, "history: 106");
    requests_free(&h->h.hdr);
    pres_req *p = request(sizeof(pres_req), OWN_PRESENCE, "h:new", 0, C, "");
    owner_receive(&own, &p->h.hdr);
    p = (pres_req *)only(0, CON_PRESENCE);
    cr_assert_eq(p->h.code, PROTO_E_LIMIT, "presence: 106");
    requests_free(&p->h.hdr);
    cr_assert_eq(own.reg.n, 2, "nothing created");
    /* The channels that exist are served. */
    cr_assert_eq(publish_ok("h:x", 0, NULL), 1);
    drop_from(1, take(1));
    /* A subscriber leaves: its stream can go, the new channel fits. */
    unsubscribe("plain", 1, B);
    cr_assert_eq(publish_ok("h:new", 0, NULL), 1);
    cr_assert_eq(own.reg.n, 2);
}

Test(owner, recovery_on_an_evicted_stream_is_honest)
{
    own.reg.max_n = 2;
    publish_ok("h:gone", 0, NULL);
    publish_ok("h:gone", 0, NULL);
    char old[IDS_LEN + 1];
    epoch_of("h:gone", old);
    publish_ok("h:b", 0, NULL);
    publish_ok("h:c", 0, NULL);
    cr_assert_null(chanreg_find(&own.reg, "h:gone", 6), "evicted");
    /* The client had offset 1: 2 is gone with the stream. */
    sub_req *s = subscribe("h:gone", 0, A, old, 1);
    cr_assert_eq(s->h.code, 0);
    cr_assert_eq(s->recovered, 0, "not a silent gap");
    cr_assert_str_neq(s->epoch, old, "a new epoch");
    cr_assert_eq(s->top, 0);
    cr_assert_eq(s->pubs.n, 0);
    requests_free(&s->h.hdr);
    unsubscribe("h:gone", 0, A);
    /* Even a client that had seen everything is told: its position
     * belongs to a stream that no longer exists. */
    s = subscribe("h:gone", 0, A, old, 2);
    cr_assert_eq(s->recovered, 0);
    requests_free(&s->h.hdr);
}

Test(owner, idle_streams_are_evicted_above_history_memory)
{
    pub_req *r = publish("h:z", 0, "\"x\"", NULL);
    requests_free(&r->h.hdr);
    size_t one = own.reg.bytes;
    cr_assert_gt(one, 0);
    /* Room for three publications; every channel keeps up to five. */
    own.reg.max_bytes = 3 * one;
    publish_ok("h:a", 0, NULL);
    publish_ok("h:b", 0, NULL);
    cr_assert_eq(own.reg.n, 3);
    publish_ok("h:c", 0, NULL);
    cr_assert_eq(own.reg.bytes, 3 * one);
    cr_assert_null(chanreg_find(&own.reg, "h:z", 3), "least recently used");
    /* A subscribed stream is never evicted; the one published to isn't
     * either, even when it alone is over. */
    requests_free(&subscribe("h:c", 1, B, NULL, 0)->h.hdr);
    for (int i = 0; i < 4; i++) {
        publish_ok("h:c", 0, NULL);
        drop_from(1, take(1));
    }
    cr_assert_null(chanreg_find(&own.reg, "h:a", 3));
    cr_assert_null(chanreg_find(&own.reg, "h:b", 3));
    cr_assert_eq(own.reg.n, 1);
    cr_assert_eq(own.reg.bytes, 5 * one, "held by a subscribed stream");
    publish_ok("h:d", 0, NULL);
    cr_assert_eq(own.reg.n, 2, "the stream published to stays");
    owner_tick(&own);
    cr_assert_null(chanreg_find(&own.reg, "h:d", 3),
                   "the tick evicts while over");
    cr_assert_eq(atomic_load(&srv.channels_evicted), 4);
}

Test(owner, the_expiry_walk_is_incremental)
{
    /* Namespace t: history_ttl 2 s. More streams than one tick visits. */
    enum { N = OWNER_WALK_PER_TICK + OWNER_WALK_PER_TICK / 2 };
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "t:%d", i);
        publish_ok(name, 0, NULL);
    }
    cr_assert_eq(own.reg.n, N);
    now_ms += 3000;   /* every publication has aged out */
    owner_tick(&own);
    cr_assert_eq(own.reg.n, N - OWNER_WALK_PER_TICK,
                 "one tick visits OWNER_WALK_PER_TICK streams");
    cr_assert_eq(atomic_load(&srv.channels), N - OWNER_WALK_PER_TICK);
    snprintf(name, sizeof(name), "t:%d", OWNER_WALK_PER_TICK);
    cr_assert_not_null(chanreg_find(&own.reg, name, strlen(name)),
                       "where the walk stopped");
    snprintf(name, sizeof(name), "t:%d", OWNER_WALK_PER_TICK - 1);
    cr_assert_null(chanreg_find(&own.reg, name, strlen(name)));
    owner_tick(&own);
    cr_assert_eq(own.reg.n, 0, "the next tick resumes there");
    cr_assert_eq(atomic_load(&srv.channels_evicted), 0, "expired, not evicted");
}

Test(owner, streams_in_use_are_skipped_and_keep_their_order)
{
    own.reg.max_n = 3;
    publish_ok("h:a", 0, NULL);
    publish_ok("h:b", 0, NULL);
    publish_ok("h:c", 0, NULL);
    chan_state *a = chanreg_find(&own.reg, "h:a", 3);
    chan_state *b = chanreg_find(&own.reg, "h:b", 3);
    chan_state *c = chanreg_find(&own.reg, "h:c", 3);
    /* Every one has a read in flight: nothing can go. */
    a->reads = b->reads = c->reads = 1;
    pub_req *r = publish("h:d", 0, "1", NULL);
    cr_assert_eq(r->h.code, PROTO_E_LIMIT);
    requests_free(&r->h.hdr);
    cr_assert_eq(chanreg_idle_oldest(&own.reg), a, "the order is kept");
    cr_assert_eq(a->inext, b);
    cr_assert_eq(b->inext, c);
    /* c's read is back: a and b are skipped, c goes. */
    c->reads = 0;
    publish_ok("h:d", 0, NULL);
    cr_assert_null(chanreg_find(&own.reg, "h:c", 3));
    a->reads = b->reads = 0;
    publish_ok("h:e", 0, NULL);
    cr_assert_null(chanreg_find(&own.reg, "h:a", 3), "then the oldest of "
                   "the ones skipped");
    cr_assert_not_null(chanreg_find(&own.reg, "h:b", 3));
    cr_assert_not_null(chanreg_find(&own.reg, "h:d", 3));
}
