/*
 * Unit tests of server/history.c and server/pub.c: a capacity of 0 keeps
 * nothing, the ring grows from a few slots by doubling up to its capacity,
 * the oldest is evicted at capacity, history_select windows (after, limit,
 * reverse), expiry by age, and that every reference the ring holds is
 * released on eviction, expiry and history_free (checked by holding a
 * reference of our own and reading the count).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "core/history.h"
#include "core/pub.h"

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
    proto_client_info info = { .client = { "c1", 2 }, .user = { "alice", 5 } };
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

static unsigned refs(pub *p)
{
    return atomic_load(&p->refs);
}

Test(history, empty_history)
{
    history h;
    history_init(&h, 10);
    pub *v[4];
    cr_assert_eq(history_count(&h), 0);
    cr_assert_eq(history_first_offset(&h), 0);
    cr_assert_null(history_at(&h, 0));
    cr_assert_eq(history_select(&h, 0, 4, 0, v), 0);
    cr_assert_eq(history_select(&h, 0, 4, 1, v), 0);
    history_expire(&h, 1000000, 1);
    cr_assert_null(h.ring, "no memory before the first publication");
    history_free(&h);
    history_free(&h);   /* twice is harmless */
}

Test(history, off_retains_no_reference_and_no_memory)
{
    history h;
    history_init(&h, 0);
    pub *p = mkpub(1, 0);
    for (int i = 0; i < 100; i++)
        history_push(&h, p);
    cr_assert_eq(refs(p), 1);
    cr_assert_null(h.ring);
    cr_assert_eq(history_first_offset(&h), 0);
    pub *v[2];
    cr_assert_eq(history_select(&h, 0, 2, 0, v), 0);
    pub_unref(p);
    history_free(&h);
}

Test(history, grows_from_few_slots_up_to_capacity)
{
    history h;
    history_init(&h, 1000);
    cr_assert_eq(h.slots, 0);
    fill(&h, 1, 1, 0);
    cr_assert_eq(h.slots, 4, "first push: 4 slots");
    fill(&h, 2, 3, 0);
    cr_assert_eq(h.slots, 4, "3 publications fit in 4 slots");
    fill(&h, 4, 5, 0);
    cr_assert_eq(h.slots, 8);
    fill(&h, 6, 1000, 0);
    cr_assert_eq(h.slots, 1024);
    cr_assert_eq(history_count(&h), 1000);
    for (uint32_t i = 0; i < 1000; i++)
        cr_assert_eq(history_at(&h, i)->offset, i + 1);
    fill(&h, 1001, 1500, 0);
    cr_assert_eq(h.slots, 1024, "never more slots than the capacity needs");
    cr_assert_eq(history_count(&h), 1000);
    cr_assert_eq(history_first_offset(&h), 501);
    history_free(&h);
    cr_assert_null(h.ring);
}

/* A capacity that is not a power of two: the ring has spare slots and
 * eviction walks the head around them. Checked after every push. */
Test(history, eviction_across_the_ring_keeps_offsets_contiguous)
{
    static const uint32_t caps[] = { 1, 2, 3, 5, 6, 8, 9 };
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
        uint32_t cap = caps[c];
        history h;
        history_init(&h, cap);
        for (uint64_t n = 1; n <= 60; n++) {
            fill(&h, n, n, 0);
            uint32_t want = n < cap ? (uint32_t)n : cap;
            uint64_t first = n - want + 1;
            cr_assert_eq(history_count(&h), want, "cap %u after %llu", cap,
                         (unsigned long long)n);
            cr_assert_eq(history_first_offset(&h), first);
            for (uint32_t i = 0; i < want; i++)
                cr_assert_eq(history_at(&h, i)->offset, first + i,
                             "cap %u after %llu: [%u]", cap,
                             (unsigned long long)n, i);
            cr_assert_null(history_at(&h, want));
        }
        cr_assert_leq(h.slots, 16);
        history_free(&h);
    }
}

Test(history, select_more_windows)
{
    history h;
    history_init(&h, 6);
    fill(&h, 1, 20, 0);   /* keeps 15..20 */
    pub *v[16];
    uint64_t all[] = { 15, 16, 17, 18, 19, 20 };
    expect_offsets(v, history_select(&h, 0, 6, 0, v), all, 6);
    expect_offsets(v, history_select(&h, 14, 100, 0, v), all, 6);
    uint64_t mid[] = { 17, 18, 19 };
    expect_offsets(v, history_select(&h, 16, 3, 0, v), mid, 3);
    uint64_t last[] = { 20 };
    expect_offsets(v, history_select(&h, 19, 1, 0, v), last, 1);
    expect_offsets(v, history_select(&h, 19, 100, 1, v), last, 1);
    cr_assert_eq(history_select(&h, 20, 100, 1, v), 0, "at top, reverse");
    cr_assert_eq(history_select(&h, 21, 100, 1, v), 0, "beyond, reverse");
    cr_assert_eq(history_select(&h, UINT64_MAX, 100, 0, v), 0);
    uint64_t rall[] = { 20, 19, 18, 17, 16, 15 };
    expect_offsets(v, history_select(&h, 0, 100, 1, v), rall, 6);
    expect_offsets(v, history_select(&h, 3, 100, 1, v), rall, 6);
    uint64_t rtwo[] = { 20, 19 };
    expect_offsets(v, history_select(&h, 0, 2, 1, v), rtwo, 2);
    expect_offsets(v, history_select(&h, 18, 5, 1, v), rtwo, 2);
    cr_assert_eq(history_select(&h, 0, 0, 1, v), 0, "limit 0, reverse");
    history_free(&h);
}

Test(history, select_takes_references)
{
    history h;
    history_init(&h, 4);
    pub *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = mkpub((uint64_t)i + 1, 0);
        history_push(&h, p[i]);
        cr_assert_eq(history_at(&h, (uint32_t)i), p[i], "the same object");
    }
    pub *v[4];
    cr_assert_eq(history_select(&h, 1, 4, 0, v), 3);
    cr_assert_eq(refs(p[0]), 2, "not selected");
    for (int i = 1; i < 4; i++) {
        cr_assert_eq(v[i - 1], p[i]);
        cr_assert_eq(refs(p[i]), 3, "test + history + selection");
    }
    /* The selection outlives the history. */
    history_free(&h);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(refs(p[i]), i == 0 ? 1 : 2);
    for (int i = 0; i < 3; i++)
        pub_unref(v[i]);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(refs(p[i]), 1);
        pub_unref(p[i]);
    }
}

Test(history, eviction_and_free_release_every_reference)
{
    enum { N = 50, CAP = 7 };
    pub *p[N];
    history h;
    history_init(&h, CAP);
    for (int i = 0; i < N; i++) {
        p[i] = mkpub((uint64_t)i + 1, 0);
        history_push(&h, p[i]);
        for (int j = 0; j <= i; j++)
            cr_assert_eq(refs(p[j]), j > i - CAP ? 2u : 1u,
                         "after push %d: pub %d has %u refs", i, j,
                         refs(p[j]));
    }
    history_free(&h);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(refs(p[i]), 1, "pub %d", i);
        pub_unref(p[i]);
    }
    cr_assert_eq(history_count(&h), 0);
    cr_assert_null(h.ring);
}

Test(history, ttl_boundary_and_release)
{
    history h;
    history_init(&h, 10);
    pub *p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = mkpub((uint64_t)i + 1, 5000 + 100 * i);   /* 5000, 5100, 5200 */
        history_push(&h, p[i]);
    }
    history_expire(&h, 999999, -5);
    cr_assert_eq(history_count(&h), 3, "a negative ttl is no limit");
    history_expire(&h, 5099, 100);   /* older than 4999: none */
    cr_assert_eq(history_count(&h), 3);
    history_expire(&h, 5100, 100);   /* exactly ttl old: expired */
    cr_assert_eq(history_count(&h), 2);
    cr_assert_eq(refs(p[0]), 1, "expired reference released");
    cr_assert_eq(history_first_offset(&h), 2);
    history_expire(&h, 5299, 100);
    cr_assert_eq(history_count(&h), 1);
    cr_assert_eq(history_first_offset(&h), 3);
    cr_assert_eq(refs(p[1]), 1);
    cr_assert_eq(refs(p[2]), 2);
    /* Publishing after expiry continues the ring. */
    pub *q = mkpub(4, 6000);
    history_push(&h, q);
    pub_unref(q);
    pub *v[4];
    uint64_t want[] = { 3, 4 };
    expect_offsets(v, history_select(&h, 0, 4, 0, v), want, 2);
    history_free(&h);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(refs(p[i]), 1);
        pub_unref(p[i]);
    }
}

Test(pub, without_info_and_with_empty_fields)
{
    proto_data d = { { NULL, 0 }, { "\xc4\x01\x07", 3 }, 1 };
    pub *p = pub_new((proto_slice){ "c", 1 }, 9, (proto_slice){ NULL, 0 },
                     &d, NULL, -1);
    cr_assert_null(p->view.info);
    cr_assert_eq(p->info.client.len, 0);
    cr_assert_eq(p->info.user.len, 0);
    cr_assert_eq(p->offset, 9);
    cr_assert_eq(p->time_ms, -1);
    cr_assert_eq(p->view.epoch.len, 0);
    cr_assert_eq(p->view.data.json.len, 0);
    cr_assert_eq(p->view.data.binary, 1);
    cr_assert_eq(p->view.data.mp.len, 3);
    cr_assert_eq(memcmp(p->view.data.mp.ptr, "\xc4\x01\x07", 3), 0);
    cr_assert_eq(refs(p), 1);
    pub_unref(p);
    pub_unref(NULL);   /* allowed */
}

Test(pub, copies_its_inputs)
{
    char chan[] = "room:1", ep[] = "0123456789abcdef", js[] = "\"hi\"";
    char cl[] = "aaaaaaaaaaaaaaaa", us[] = "bob";
    proto_data d = { { js, 4 }, { "\xa2hi", 3 }, 0 };
    proto_client_info info = { .client = { cl, 16 }, .user = { us, 3 } };
    pub *p = pub_new((proto_slice){ chan, 6 }, 1, (proto_slice){ ep, 16 },
                     &d, &info, 0);
    memset(chan, 'x', 6);
    memset(ep, 'x', 16);
    memset(js, 'x', 4);
    memset(cl, 'x', 16);
    memset(us, 'x', 3);
    cr_assert_eq(memcmp(p->view.channel.ptr, "room:1", 6), 0);
    cr_assert_eq(memcmp(p->view.epoch.ptr, "0123456789abcdef", 16), 0);
    cr_assert_eq(memcmp(p->view.data.json.ptr, "\"hi\"", 4), 0);
    cr_assert_eq(memcmp(p->view.info->client.ptr, "aaaaaaaaaaaaaaaa", 16), 0);
    cr_assert_eq(memcmp(p->view.info->user.ptr, "bob", 3), 0);
    pub_unref(p);
}

/* Publications cross worker threads: references taken and dropped
 * concurrently must balance. */
enum { REF_THREADS = 4, REF_ROUNDS = 100000 };

static void *ref_churn(void *arg)
{
    pub *p = arg;
    for (int i = 0; i < REF_ROUNDS; i++) {
        pub_ref(p);
        pub_ref(p);
        pub_unref(p);
        pub_unref(p);
    }
    return NULL;
}

Test(pub, references_balance_across_threads)
{
    pub *p = mkpub(1, 0);
    pthread_t t[REF_THREADS];
    for (int i = 0; i < REF_THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, ref_churn, p), 0);
    for (int i = 0; i < REF_THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(refs(p), 1);
    pub_unref(p);
}
