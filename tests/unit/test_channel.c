/* Unit tests of server/channel.c: streams, offsets, recovery, presence. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"

static config_ns ns_hist = { .history_size = 5, .history_ttl = 0,
                             .presence = 1, .join_leave = 1 };
static config_ns ns_nohist = { .history_size = 0 };

static pub *draft(void)
{
    proto_data d = { { "1", 1 }, { "\x01", 1 }, 0 };
    return pub_new((proto_slice){ "c", 1 }, 0,
                   (proto_slice){ "0000000000000000", 16 }, &d, NULL, 0);
}

static void publish(chan_state *c, int n, int64_t now)
{
    for (int i = 0; i < n; i++) {
        pub *p = draft();
        chan_publish(c, p, now);
        pub_unref(p);
    }
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
    chanreg_init(&r, 2);
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
    chanreg_init(&r, 1);
    chan_state *c = chanreg_get(&r, "c", 1, &ns_hist);
    publish(c, 8, 1000);   /* retained: 4..8 */
    pub **v;
    size_t n;
    cr_assert_eq(chan_recover(c, c->epoch, 16, 8, UINT32_MAX, &v, &n), 1);
    cr_assert_eq(n, 0, "nothing missed");
    free(v);
    cr_assert_eq(chan_recover(c, c->epoch, 16, 5, UINT32_MAX, &v, &n), 1);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(v[i]->offset, 6 + i);
        pub_unref(v[i]);
    }
    free(v);
    cr_assert_eq(chan_recover(c, c->epoch, 16, 3, UINT32_MAX, &v, &n), 1,
                 "4..8 retained: recoverable from 3");
    cr_assert_eq(n, 5);
    for (size_t i = 0; i < n; i++)
        pub_unref(v[i]);
    free(v);
    cr_assert_eq(chan_recover(c, c->epoch, 16, 2, UINT32_MAX, &v, &n), 0,
                 "3 was evicted");
    cr_assert_eq(chan_recover(c, c->epoch, 16, 9, UINT32_MAX, &v, &n), 0,
                 "future offset");
    cr_assert_eq(chan_recover(c, "ffffffffffffffff", 16, 8, UINT32_MAX, &v, &n), 0);
    cr_assert_eq(chan_recover(c, c->epoch, 15, 8, UINT32_MAX, &v, &n), 0);
    cr_assert_eq(chan_recover(c, c->epoch, 16, 5, 2, &v, &n), 0,
                 "more missed than allowed");

    chan_state *x = chanreg_get(&r, "x", 1, &ns_nohist);
    publish(x, 2, 1000);
    cr_assert_eq(chan_recover(x, x->epoch, 16, 2, UINT32_MAX, &v, &n), 1);
    free(v);
    cr_assert_eq(chan_recover(x, x->epoch, 16, 1, UINT32_MAX, &v, &n), 0,
                 "no history: a missed publication is unrecoverable");
    chanreg_free(&r);
}

Test(channel, gc_only_without_subscribers_and_history)
{
    chanreg r;
    chanreg_init(&r, 2);
    chan_state *c = chanreg_get(&r, "c", 1, &ns_hist);
    char old[17];
    memcpy(old, c->epoch, 17);
    chan_sub_add(c, 1);
    cr_assert_eq(c->wcount[1], 1);
    cr_assert_eq(chanreg_gc(&r, c, 0), 0, "has a subscriber");
    publish(c, 2, 1000);
    chan_sub_del(c, 1);
    cr_assert_eq(c->total, 0);
    cr_assert_eq(chanreg_gc(&r, c, 2000), 0, "has history");

    chan_state *n = chanreg_get(&r, "n", 1, &ns_nohist);
    publish(n, 1, 1000);
    cr_assert_eq(chanreg_gc(&r, n, 2000), 1);
    cr_assert_null(chanreg_find(&r, "n", 1));

    /* With a TTL the history ages out and the stream goes; a new stream of
     * the same name has a new epoch. */
    config_ns ttl = ns_hist;
    ttl.history_ttl = 1;
    chan_state *t = chanreg_get(&r, "t", 1, &ttl);
    publish(t, 3, 1000);
    memcpy(old, t->epoch, 17);
    chanreg_expire(&r, 1500);
    cr_assert_not_null(chanreg_find(&r, "t", 1));
    chanreg_expire(&r, 3000);
    cr_assert_null(chanreg_find(&r, "t", 1));
    t = chanreg_get(&r, "t", 1, &ttl);
    cr_assert_str_neq(t->epoch, old);
    cr_assert_eq(t->top, 0);
    chanreg_free(&r);
}

Test(channel, presence_and_per_worker_counts)
{
    chanreg r;
    chanreg_init(&r, 3);
    chan_state *c = chanreg_get(&r, "p", 1, &ns_hist);
    cr_assert_eq(chan_presence_add(c, "aaaaaaaaaaaaaaaa", "alice", 0), 1);
    cr_assert_eq(chan_presence_add(c, "bbbbbbbbbbbbbbbb", "", 2), 1);
    cr_assert_eq(chan_presence_add(c, "aaaaaaaaaaaaaaaa", "alice", 0), 0,
                 "already present: no second join");
    cr_assert_eq(c->n_presence, 2);
    char *user = NULL;
    cr_assert_eq(chan_presence_del(c, "aaaaaaaaaaaaaaaa", &user), 0,
                 "one reference left");
    cr_assert_eq(chan_presence_del(c, "aaaaaaaaaaaaaaaa", &user), 1);
    cr_assert_str_eq(user, "alice");
    free(user);
    cr_assert_eq(chan_presence_del(c, "cccccccccccccccc", NULL), 0);
    cr_assert_eq(c->n_presence, 1);

    chan_sub_add(c, 0);
    chan_sub_add(c, 2);
    chan_sub_add(c, 2);
    cr_assert_eq(c->total, 3);
    cr_assert_eq(c->wcount[2], 2);
    chan_sub_del(c, 1);
    cr_assert_eq(c->total, 3, "no subscriber there: nothing changes");
    chan_sub_del(c, 2);
    cr_assert_eq(c->wcount[2], 1);
    cr_assert_eq(c->total, 2);
    chanreg_free(&r);
}
