/* Unit tests of server/history.c and server/pub.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "history.h"
#include "pub.h"

static pub *mkpub(uint64_t off, int64_t t)
{
    proto_data d = { { "1", 1 }, { "\x01", 1 }, 0 };
    pub *p = pub_new((proto_slice){ "ch", 2 }, off,
                     (proto_slice){ "0123456789abcdef", 16 }, &d, NULL, t);
    return p;
}

/* Appends offsets first..last; the history holds the only references. */
static void fill(history *h, uint64_t first, uint64_t last, int64_t t0)
{
    for (uint64_t o = first; o <= last; o++) {
        pub *p = mkpub(o, t0 + (int64_t)o);
        history_push(h, p);
        pub_unref(p);
    }
}

static void expect_offsets(pub **v, size_t n, const uint64_t *want, size_t nw)
{
    cr_assert_eq(n, nw, "got %zu publications, want %zu", n, nw);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(v[i]->offset, want[i], "[%zu] = %llu, want %llu", i,
                     (unsigned long long)v[i]->offset,
                     (unsigned long long)want[i]);
        pub_unref(v[i]);
    }
}

Test(history, off_keeps_nothing)
{
    history h;
    history_init(&h, 0);
    pub *p = mkpub(1, 0);
    history_push(&h, p);
    cr_assert_eq(history_count(&h), 0);
    cr_assert_eq(atomic_load(&p->refs), 1);
    pub_unref(p);
    history_free(&h);
}

Test(history, evicts_oldest_at_capacity_and_releases_it)
{
    history h;
    history_init(&h, 5);
    pub *first = mkpub(1, 0);
    history_push(&h, first);
    cr_assert_eq(atomic_load(&first->refs), 2);
    fill(&h, 2, 12, 0);
    cr_assert_eq(history_count(&h), 5);
    cr_assert_eq(history_first_offset(&h), 8);
    cr_assert_eq(history_at(&h, 4)->offset, 12);
    cr_assert_null(history_at(&h, 5));
    cr_assert_eq(atomic_load(&first->refs), 1, "evicted reference released");
    pub_unref(first);
    history_free(&h);
}

Test(history, select_windows)
{
    history h;
    history_init(&h, 100);
    fill(&h, 1, 10, 0);
    pub *v[16];
    uint64_t all[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
    expect_offsets(v, history_select(&h, 0, 100, 0, v), all, 10);
    uint64_t first3[] = { 1, 2, 3 };
    expect_offsets(v, history_select(&h, 0, 3, 0, v), first3, 3);
    uint64_t after6[] = { 7, 8, 9, 10 };
    expect_offsets(v, history_select(&h, 6, 100, 0, v), after6, 4);
    uint64_t after6_2[] = { 7, 8 };
    expect_offsets(v, history_select(&h, 6, 2, 0, v), after6_2, 2);
    cr_assert_eq(history_select(&h, 10, 5, 0, v), 0, "nothing after top");
    cr_assert_eq(history_select(&h, 50, 5, 0, v), 0, "beyond top");
    cr_assert_eq(history_select(&h, 0, 0, 0, v), 0, "limit 0");
    uint64_t rev[] = { 10, 9, 8 };
    expect_offsets(v, history_select(&h, 0, 3, 1, v), rev, 3);
    uint64_t rev_after7[] = { 10, 9, 8 };
    expect_offsets(v, history_select(&h, 7, 10, 1, v), rev_after7, 3);
    history_free(&h);
}

Test(history, select_after_eviction)
{
    history h;
    history_init(&h, 4);
    fill(&h, 1, 10, 0);   /* keeps 7..10 */
    pub *v[8];
    uint64_t want[] = { 7, 8, 9, 10 };
    expect_offsets(v, history_select(&h, 2, 8, 0, v), want, 4);
    uint64_t want9[] = { 10 };
    expect_offsets(v, history_select(&h, 9, 8, 0, v), want9, 1);
    history_free(&h);
}

Test(history, ttl_expires_by_time)
{
    history h;
    history_init(&h, 100);
    fill(&h, 1, 10, 1000);   /* publication o at time 1000 + o */
    history_expire(&h, 1000 + 10, 0);
    cr_assert_eq(history_count(&h), 10, "ttl 0 keeps everything");
    history_expire(&h, 1000 + 10 + 5, 10);   /* drops time <= 1005 */
    cr_assert_eq(history_count(&h), 5);
    cr_assert_eq(history_first_offset(&h), 6);
    history_expire(&h, 1000000, 10);
    cr_assert_eq(history_count(&h), 0);
    cr_assert_eq(history_first_offset(&h), 0);
    history_free(&h);
}

Test(pub, one_allocation_holds_every_field)
{
    proto_data d = { { "{\"a\":1}", 7 }, { "\x81\xa1" "a\x01", 4 }, 0 };
    proto_client_info info = { { "c1", 2 }, { "alice", 5 } };
    pub *p = pub_new((proto_slice){ "chat:x", 6 }, 42,
                     (proto_slice){ "0123456789abcdef", 16 }, &d, &info, 7);
    cr_assert_eq(p->view.offset, 42);
    cr_assert_eq(p->view.channel.len, 6);
    cr_assert_eq(memcmp(p->view.channel.ptr, "chat:x", 6), 0);
    cr_assert_eq(memcmp(p->view.data.json.ptr, "{\"a\":1}", 7), 0);
    cr_assert_eq(memcmp(p->view.data.mp.ptr, "\x81\xa1" "a\x01", 4), 0);
    cr_assert_eq(p->view.info, &p->info);
    cr_assert_eq(memcmp(p->view.info->user.ptr, "alice", 5), 0);
    pub_ref(p);
    pub_unref(p);
    cr_assert_eq(atomic_load(&p->refs), 1);
    pub_unref(p);
}
