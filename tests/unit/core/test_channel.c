/*
 * Unit tests of server/core/channel.c, the channel streams of an owner
 * worker: epochs (16 hex digits, distinct per stream), offsets sealed into
 * draft publications and appended (what the memory broker does: pub_seal,
 * chan_append), the recovery rules of chan_recover, history age on append,
 * parked requests, and per-worker subscriber counts. When a stream is
 * dropped is the owner's and the broker's rule: tests/unit/core/
 * test_owner.c. Presence sets: test_presence.c. Namespaces are built here,
 * by hand or from config_defaults().
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/channel.h"
#include "core/requests.h"

static config_ns ns_hist = { .history_size = 5, .history_ttl = 0,
                             .presence = 1, .join_leave = 1 };
static config_ns ns_nohist = { .history_size = 0 };

static pub *draft(void)
{
    proto_data d = { { "1", 1 }, { "\x01", 1 }, 0 };
    return pub_new((proto_slice){ "c", 1 }, 0,
                   (proto_slice){ "0000000000000000", 16 }, &d, NULL, 0);
}

/* The registry of the test (chan_append needs it). */
static chanreg *cur;

/* Sequences a draft as the memory broker does. */
static void chan_publish(chan_state *c, pub *p, int64_t now)
{
    pub_seal(p, c->top + 1, c->epoch, now);
    chan_append(cur, c, p, now);
}

static void publish(chan_state *c, int n, int64_t now)
{
    for (int i = 0; i < n; i++) {
        pub *p = draft();
        chan_publish(c, p, now);
        pub_unref(p);
    }
}

static void reg_init(chanreg *r, uint32_t n_workers)
{
    chanreg_init(r, n_workers, requests_free);
    cur = r;
}

/* chan_recover into a fresh list: 1 with v/n set (v NULL when empty), 0
 * with nothing handed out. */
static int recover(chan_state *c, const char *epoch, size_t elen,
                   uint64_t since, uint32_t max, pub ***v, size_t *n)
{
    publist l = { 0 };
    int rc = chan_recover(c, epoch, elen, since, max, &l);
    if (!rc)
        cr_assert_eq(l.n, 0, "a refusal hands out nothing");
    *v = l.n ? l.v : NULL;
    *n = l.n;
    if (!l.n)
        free(l.v);
    return rc;
}

static int is_hex16(const char *s)
{
    if (strlen(s) != 16)
        return 0;
    for (int i = 0; i < 16; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

Test(channel, streams_have_distinct_epochs_and_sealed_offsets)
{
    chanreg r;
    reg_init(&r, 2);
    chan_state *a = chanreg_get(&r, "a", 1, &ns_hist);
    chan_state *b = chanreg_get(&r, "b", 1, &ns_hist);
    cr_assert_eq(chanreg_get(&r, "a", 1, &ns_hist), a);
    cr_assert(is_hex16(a->epoch));
    cr_assert_str_neq(a->epoch, b->epoch);
    cr_assert_eq(a->top, 0);
    for (uint64_t want = 1; want <= 3; want++) {
        pub *p = draft();
        chan_publish(a, p, 1000);
        cr_assert_eq(p->offset, want);
        cr_assert_eq(p->view.offset, want);
        cr_assert_eq(memcmp(p->view.epoch.ptr, a->epoch, 16), 0);
        pub_unref(p);
    }
    cr_assert_eq(a->top, 3);
    cr_assert_eq(history_count(&a->hist), 3);
    chanreg_free(&r);
}

Test(channel, recovery_rules)
{
    chanreg r;
    reg_init(&r, 1);
    chan_state *c = chanreg_get(&r, "c", 1, &ns_hist);
    publish(c, 8, 1000);   /* retained: 4..8 */
    pub **v;
    size_t n;
    cr_assert_eq(recover(c, c->epoch, 16, 8, UINT32_MAX, &v, &n), 1);
    cr_assert_eq(n, 0, "nothing missed");
    free(v);
    cr_assert_eq(recover(c, c->epoch, 16, 5, UINT32_MAX, &v, &n), 1);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(v[i]->offset, 6 + i);
        pub_unref(v[i]);
    }
    free(v);
    cr_assert_eq(recover(c, c->epoch, 16, 3, UINT32_MAX, &v, &n), 1,
                 "4..8 retained: recoverable from 3");
    cr_assert_eq(n, 5);
    for (size_t i = 0; i < n; i++)
        pub_unref(v[i]);
    free(v);
    cr_assert_eq(recover(c, c->epoch, 16, 2, UINT32_MAX, &v, &n), 0,
                 "3 was evicted");
    cr_assert_eq(recover(c, c->epoch, 16, 9, UINT32_MAX, &v, &n), 0,
                 "future offset");
    cr_assert_eq(recover(c, "ffffffffffffffff", 16, 8, UINT32_MAX, &v, &n), 0);
    cr_assert_eq(recover(c, c->epoch, 15, 8, UINT32_MAX, &v, &n), 0);
    cr_assert_eq(recover(c, c->epoch, 16, 5, 2, &v, &n), 0,
                 "more missed than allowed");

    chan_state *x = chanreg_get(&r, "x", 1, &ns_nohist);
    publish(x, 2, 1000);
    cr_assert_eq(recover(x, x->epoch, 16, 2, UINT32_MAX, &v, &n), 1);
    free(v);
    cr_assert_eq(recover(x, x->epoch, 16, 1, UINT32_MAX, &v, &n), 0,
                 "no history: a missed publication is unrecoverable");
    chanreg_free(&r);
}

Test(channel, per_worker_counts)
{
    chanreg r;
    reg_init(&r, 3);
    chan_state *c = chanreg_get(&r, "p", 1, &ns_hist);
    chan_sub_add(&r, c, 0);
    chan_sub_add(&r, c, 2);
    chan_sub_add(&r, c, 2);
    cr_assert_eq(c->total, 3);
    cr_assert_eq(c->wcount[2], 2);
    chan_sub_del(&r, c, 1);
    cr_assert_eq(c->total, 3, "no subscriber there: nothing changes");
    chan_sub_del(&r, c, 2);
    cr_assert_eq(c->wcount[2], 1);
    cr_assert_eq(c->total, 2);
    chanreg_free(&r);
}

static int cmp_epoch(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

Test(channel, every_stream_gets_its_own_epoch)
{
    enum { N = 2000 };
    static const char *epochs[N];
    chanreg r;
    reg_init(&r, 4);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "room:%d", i);
        chan_state *c = chanreg_get(&r, name, strlen(name), &ns_hist);
        cr_assert(is_hex16(c->epoch), "epoch '%s'", c->epoch);
        cr_assert_str_eq(c->name, name);
        cr_assert_eq(c->len, strlen(name));
        cr_assert_eq(c->ns, &ns_hist);
        cr_assert_eq(c->top, 0);
        cr_assert_eq(c->total, 0);
        for (int w = 0; w < 4; w++)
            cr_assert_eq(c->wcount[w], 0);
        cr_assert_eq(c->hist.capacity, ns_hist.history_size);
        epochs[i] = c->epoch;
    }
    cr_assert_eq(r.n, N);
    qsort(epochs, N, sizeof(epochs[0]), cmp_epoch);
    for (int i = 1; i < N; i++)
        cr_assert_str_neq(epochs[i - 1], epochs[i]);
    cr_assert_not_null(chanreg_find(&r, "room:7", 6));
    cr_assert_null(chanreg_find(&r, "room:", 5));
    cr_assert_null(chanreg_find(&r, "room:77777", 10));
    chanreg_free(&r);
    cr_assert_eq(r.n, 0);
}

Test(channel, two_registries_give_different_epochs)
{
    /* Two owners (or a restarted node) seed their own generators. */
    chanreg r1, r2;
    reg_init(&r1, 1);
    reg_init(&r2, 1);
    chan_state *a = chanreg_get(&r1, "same", 4, &ns_hist);
    chan_state *b = chanreg_get(&r2, "same", 4, &ns_hist);
    cr_assert_str_neq(a->epoch, b->epoch);
    chanreg_free(&r1);
    chanreg_free(&r2);
}

Test(channel, publish_seals_the_draft_and_retains_it)
{
    chanreg r;
    reg_init(&r, 1);
    chan_state *c = chanreg_get(&r, "c", 1, &ns_hist);
    pub *p = draft();
    const char *epoch_ptr = p->view.epoch.ptr;
    chan_publish(c, p, 123456);
    cr_assert_eq(p->offset, 1);
    cr_assert_eq(p->view.offset, 1);
    cr_assert_eq(p->time_ms, 123456);
    cr_assert_eq(p->view.epoch.ptr, epoch_ptr, "sealed in place");
    cr_assert_eq(p->view.epoch.len, 16);
    cr_assert_eq(memcmp(p->view.epoch.ptr, c->epoch, 16), 0);
    cr_assert_eq(history_at(&c->hist, 0), p, "the history holds the draft");
    cr_assert_eq(atomic_load(&p->refs), 2);
    pub_unref(p);
    chanreg_free(&r);
}

Test(channel, a_namespace_without_history_retains_nothing)
{
    config cfg;
    config_defaults(&cfg);
    /* the built-in default keeps a short history (recovery out of the
     * box); history_size 0 turns it off */
    cr_assert_eq(cfg.namespaces[0].history_size, 100);
    cr_assert_eq(cfg.namespaces[0].history_ttl, 120);
    cfg.namespaces[0].history_size = 0;
    cfg.namespaces[0].history_ttl = 0;
    const config_ns *def = &cfg.namespaces[0];
    chanreg r;
    reg_init(&r, 2);
    chan_state *c = chanreg_get(&r, "chat", 4, def);
    pub *p = draft();
    for (uint64_t want = 1; want <= 3; want++) {
        chan_publish(c, p, 1000);
        cr_assert_eq(p->offset, want, "offsets count without history too");
    }
    cr_assert_eq(atomic_load(&p->refs), 1, "nothing retained");
    cr_assert_eq(history_count(&c->hist), 0);
    pub_unref(p);

    pub **v;
    size_t n;
    cr_assert_eq(recover(c, c->epoch, 16, 3, UINT32_MAX, &v, &n), 1);
    cr_assert_eq(n, 0);
    cr_assert_null(v);
    cr_assert_eq(recover(c, c->epoch, 16, 2, UINT32_MAX, &v, &n), 0);
    cr_assert_eq(recover(c, c->epoch, 16, 0, UINT32_MAX, &v, &n), 0);
    chanreg_free(&r);
}

/* Asserts a successful recovery of exactly offsets first..last and
 * releases what it returned. */
static void expect_recovered(chan_state *c, uint64_t since, uint32_t max,
                             uint64_t first, uint64_t last)
{
    pub **v = (pub **)1;
    size_t n = 99;
    cr_assert_eq(recover(c, c->epoch, 16, since, max, &v, &n), 1,
                 "since %llu", (unsigned long long)since);
    cr_assert_eq(n, last - first + 1, "since %llu: %zu publications",
                 (unsigned long long)since, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(v[i]->offset, first + i);
        cr_assert_eq(v[i], history_at(&c->hist,
                                      (uint32_t)(first + i -
                                                 history_first_offset(&c->hist))),
                     "the retained publication itself");
        cr_assert_eq(memcmp(v[i]->view.epoch.ptr, c->epoch, 16), 0);
        cr_assert_eq(atomic_load(&v[i]->refs), 2, "history + recovery");
        pub_unref(v[i]);
    }
    free(v);
}

static void expect_refused(chan_state *c, const char *epoch, size_t elen,
                           uint64_t since, uint32_t max, const char *why)
{
    pub **v = (pub **)1;
    size_t n = 99;
    cr_assert_eq(recover(c, epoch, elen, since, max, &v, &n), 0, "%s",
                 why);
    cr_assert_null(v, "%s: nothing handed out", why);
    cr_assert_eq(n, 0, "%s", why);
}

Test(channel, recovery_in_detail)
{
    chanreg r;
    reg_init(&r, 1);
    chan_state *c = chanreg_get(&r, "c", 1, &ns_hist);   /* keeps 5 */

    /* A fresh stream: position 0 of this epoch is current. */
    pub **v;
    size_t n;
    cr_assert_eq(recover(c, c->epoch, 16, 0, UINT32_MAX, &v, &n), 1);
    cr_assert_eq(n, 0);
    free(v);
    expect_refused(c, c->epoch, 16, 1, UINT32_MAX, "since beyond a fresh top");

    publish(c, 3, 1000);
    expect_recovered(c, 0, UINT32_MAX, 1, 3);
    expect_recovered(c, 1, UINT32_MAX, 2, 3);
    expect_recovered(c, 2, 1, 3, 3);
    expect_recovered(c, 0, 3, 1, 3);
    expect_refused(c, c->epoch, 16, 0, 2, "3 missed, max 2");

    publish(c, 4, 1000);   /* top 7, retained 3..7 */
    expect_recovered(c, 2, UINT32_MAX, 3, 7);
    expect_recovered(c, 6, UINT32_MAX, 7, 7);
    expect_refused(c, c->epoch, 16, 1, UINT32_MAX, "2 was evicted");
    expect_refused(c, c->epoch, 16, 0, UINT32_MAX, "1 was evicted");
    expect_refused(c, c->epoch, 16, 8, UINT32_MAX, "since > top");
    expect_refused(c, c->epoch, 16, UINT64_MAX, UINT32_MAX, "far future");

    char other[17];
    memcpy(other, c->epoch, 17);
    other[15] = other[15] == '0' ? '1' : '0';
    expect_refused(c, other, 16, 7, UINT32_MAX, "one digit differs");
    expect_refused(c, other, 16, 5, UINT32_MAX, "one digit differs, missed");
    char longer[18];
    memcpy(longer, c->epoch, 16);
    memcpy(longer + 16, "0", 2);
    expect_refused(c, longer, 17, 7, UINT32_MAX, "17-byte epoch");
    expect_refused(c, c->epoch, 8, 7, UINT32_MAX, "8-byte epoch");
    expect_refused(c, "", 0, 0, UINT32_MAX, "empty epoch");

    /* The history ages out: the missed publications are gone. */
    config_ns ttl = ns_hist;
    ttl.history_ttl = 2;
    chan_state *t = chanreg_get(&r, "t", 1, &ttl);
    publish(t, 3, 10000);
    expect_recovered(t, 0, UINT32_MAX, 1, 3);
    publish(t, 1, 11000);
    history_expire(&t->hist, 12500, 2000);   /* the three of time 10000 */
    cr_assert_eq(history_count(&t->hist), 1);
    expect_refused(t, t->epoch, 16, 2, UINT32_MAX, "expired by age");
    expect_recovered(t, 3, UINT32_MAX, 4, 4);
    chanreg_free(&r);
}

Test(channel, subscriber_counts_per_worker)
{
    enum { W = 4 };
    chanreg r;
    reg_init(&r, W);
    chan_state *c = chanreg_get(&r, "w", 1, &ns_nohist);
    uint32_t want[W] = { 0 };
    uint32_t total = 0;
    srand(7);
    for (int i = 0; i < 5000; i++) {
        uint16_t w = (uint16_t)(rand() % W);
        if (rand() % 3) {
            chan_sub_add(&r, c, w);
            want[w]++;
            total++;
        } else {
            chan_sub_del(&r, c, w);
            if (want[w]) {
                want[w]--;
                total--;
            }
        }
        cr_assert_eq(c->wcount[w], want[w]);
        cr_assert_eq(c->total, total);
    }
    for (uint16_t w = 0; w < W; w++)
        while (want[w]--)
            chan_sub_del(&r, c, w);
    cr_assert_eq(c->total, 0);
    for (int w = 0; w < W; w++)
        cr_assert_eq(c->wcount[w], 0);
    chanreg_free(&r);
}

/* ---- bounds: the idle list, the walk, the bytes retained ---------------- */

/* The idle list from the least recently used, as names joined by ','. */
static const char *idle_names(const chanreg *r)
{
    static char buf[256];
    buf[0] = '\0';
    for (chan_state *c = chanreg_idle_oldest(r); c; c = c->inext) {
        if (buf[0])
            strcat(buf, ",");
        strcat(buf, c->name);
    }
    return buf;
}

Test(channel, idle_streams_are_listed_least_recently_used_first)
{
    chanreg r;
    reg_init(&r, 2);
    chan_state *a = chanreg_get(&r, "a", 1, &ns_hist);
    chan_state *b = chanreg_get(&r, "b", 1, &ns_hist);
    chan_state *c = chanreg_get(&r, "c", 1, &ns_hist);
    cr_assert_str_eq(idle_names(&r), "a,b,c", "in the order created");
    publish(a, 1, 1000);
    cr_assert_str_eq(idle_names(&r), "b,c,a", "a publication makes it newest");
    publish(a, 1, 1000);
    cr_assert_str_eq(idle_names(&r), "b,c,a", "the newest stays newest");
    chan_sub_add(&r, b, 1);
    cr_assert_str_eq(idle_names(&r), "c,a", "a subscriber takes it out");
    chan_sub_add(&r, b, 0);
    publish(b, 1, 1000);
    cr_assert_str_eq(idle_names(&r), "c,a", "not idle: a publication leaves it out");
    chan_sub_del(&r, b, 1);
    cr_assert_str_eq(idle_names(&r), "c,a", "one subscriber left");
    chan_sub_del(&r, b, 1);
    cr_assert_str_eq(idle_names(&r), "c,a", "none there: nothing changes");
    chan_sub_del(&r, b, 0);
    cr_assert_str_eq(idle_names(&r), "c,a,b", "the last one left: newest");
    chanreg_touch(&r, c);
    cr_assert_str_eq(idle_names(&r), "a,b,c");
    chanreg_drop(&r, b);
    cr_assert_str_eq(idle_names(&r), "a,c");
    chanreg_drop(&r, a);
    chanreg_drop(&r, c);
    cr_assert_str_eq(idle_names(&r), "");
    cr_assert_null(chanreg_idle_oldest(&r));
    chan_state *d = chanreg_get(&r, "d", 1, &ns_hist);
    cr_assert_eq(chanreg_idle_oldest(&r), d);
    chanreg_free(&r);
}

Test(channel, full_means_max_streams)
{
    chanreg r;
    reg_init(&r, 1);
    cr_assert_not(chanreg_full(&r), "no bound");
    r.max_n = 2;
    chanreg_get(&r, "a", 1, &ns_hist);
    cr_assert_not(chanreg_full(&r));
    chanreg_get(&r, "b", 1, &ns_hist);
    cr_assert(chanreg_full(&r));
    chanreg_drop(&r, chanreg_find(&r, "a", 1));
    cr_assert_not(chanreg_full(&r));
    chanreg_free(&r);
}

static int visits[64];

static void count_visit(void *ctx, chan_state *c)
{
    (void)ctx;
    visits[atoi(c->name)]++;
}

static chanreg *walk_reg;
static int drop_next_of;   /* the stream after this one is dropped too */

static void visit_and_drop(void *ctx, chan_state *c)
{
    (void)ctx;
    int i = atoi(c->name);
    visits[i]++;
    if (i % 2 == 0) {
        chanreg_drop(walk_reg, c);   /* the stream being visited */
    } else if (i == drop_next_of) {
        chan_state *n = c->hh.next;  /* the walk's next stream */
        if (n) {
            visits[atoi(n->name)] += 100;   /* never visited */
            chanreg_drop(walk_reg, n);
        }
    }
}

Test(channel, the_walk_is_bounded_and_resumes_where_it_stopped)
{
    chanreg r;
    reg_init(&r, 1);
    char name[8];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "%d", i);
        chanreg_get(&r, name, strlen(name), &ns_hist);
    }
    memset(visits, 0, sizeof(visits));
    cr_assert_eq(chanreg_walk(&r, 4, count_visit, NULL), 4);
    cr_assert_eq(chanreg_walk(&r, 4, count_visit, NULL), 4);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(visits[i], 1, "stream %d visited once", i);
    cr_assert_eq(visits[8] + visits[9], 0);
    /* Added during the round: visited in it. */
    chanreg_get(&r, "10", 2, &ns_hist);
    cr_assert_eq(chanreg_walk(&r, 4, count_visit, NULL), 3,
                 "the round ends at the last stream");
    for (int i = 0; i <= 10; i++)
        cr_assert_eq(visits[i], 1, "stream %d visited once in the round", i);
    cr_assert_eq(chanreg_walk(&r, 100, count_visit, NULL), 11,
                 "a new round from the first");
    for (int i = 0; i <= 10; i++)
        cr_assert_eq(visits[i], 2);
    chanreg_free(&r);
}

Test(channel, the_walk_survives_drops)
{
    chanreg r;
    reg_init(&r, 1);
    walk_reg = &r;
    char name[8];
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof(name), "%d", i);
        chanreg_get(&r, name, strlen(name), &ns_hist);
    }
    memset(visits, 0, sizeof(visits));
    drop_next_of = 5;   /* 5 drops 6, even ones drop themselves */
    size_t seen = 0;
    do   /* one round: it ends when the cursor is back at the start */
        seen += chanreg_walk(&r, 3, visit_and_drop, NULL);
    while (r.walk && seen < 100);
    cr_assert_eq(seen, 11, "12 streams, one dropped before its visit");
    for (int i = 0; i < 12; i++)
        cr_assert_eq(visits[i], i == 6 ? 100 : 1, "stream %d: %d", i, visits[i]);
    cr_assert_eq(r.n, 6, "the odd ones stay");
    chanreg_free(&r);
}

Test(channel, the_registry_counts_the_bytes_its_rings_hold)
{
    chanreg r;
    reg_init(&r, 1);
    config_ns small = ns_hist;   /* keeps 5 */
    small.history_ttl = 10;
    chan_state *a = chanreg_get(&r, "a", 1, &small);
    chan_state *b = chanreg_get(&r, "b", 1, &small);
    pub *p = draft();
    size_t one = p->size;
    pub_unref(p);
    cr_assert_gt(one, sizeof(pub));
    cr_assert_eq(r.bytes, 0);
    publish(a, 3, 1000);
    publish(b, 2, 5000);
    cr_assert_eq(r.bytes, 5 * one);
    cr_assert_eq(a->hist.bytes, 3 * one);
    publish(a, 4, 2000);   /* 7 published, 5 kept */
    cr_assert_eq(a->hist.bytes, 5 * one, "eviction at capacity");
    cr_assert_eq(r.bytes, 7 * one);
    chan_expire(a, 11500);   /* the three of time 1000 are older than 10 s */
    cr_assert_eq(history_count(&a->hist), 4);
    cr_assert_eq(r.bytes, 6 * one, "expiry");
    chan_restart(a, "0123456789abcdef", 50);
    cr_assert_eq(r.bytes, 2 * one, "a restart empties the ring");
    publish(a, 1, 12000);
    cr_assert_eq(a->top, 51);
    cr_assert_eq(r.bytes, 3 * one, "the ring works after a restart");
    chanreg_drop(&r, b);
    cr_assert_eq(r.bytes, one, "a dropped stream's ring");
    r.max_bytes = one;
    cr_assert_not(chanreg_over_bytes(&r));
    publish(a, 1, 12000);
    cr_assert(chanreg_over_bytes(&r));
    chanreg_free(&r);
    cr_assert_eq(r.bytes, 0);
}
