/*
 * Unit tests of server/store/judge.c: the shape of a range read's answer
 * (only the contiguous run is kept) and what it means. A missing start is
 * not "gone" while publications queued before the read are unwritten
 * here (two writers, a spill replay: they land out of order), nor in
 * cluster mode unless retention explains it; the single node with
 * nothing on its way calls it gone at once.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/pub.h"
#include "store/judge.h"

static pub *mk(uint64_t offset)
{
    proto_data d = { 0 };
    d.json.ptr = "1";
    d.json.len = 1;
    d.mp.ptr = "\x01";
    d.mp.len = 1;
    return pub_new((proto_slice){ "c", 1 }, offset,
                   (proto_slice){ "0123456789abcdef", 16 }, &d, NULL, 0);
}

/* A list of the given offsets (0 ends it). */
static publist list_of(const uint64_t *offs)
{
    publist l = { 0 };
    for (; *offs; offs++)
        publist_push(&l, mk(*offs));
    return l;
}

static store_range range(uint64_t lo, uint64_t hi, int strict, int reverse,
                         int others)
{
    store_range r = { .lo = lo, .hi = hi, .n = 1000, .strict = strict,
                      .reverse = reverse, .others = others };
    return r;
}

Test(store_judge, complete_range_is_ok)
{
    store_range r = range(0, 5, 1, 0, 0);
    publist l = list_of((uint64_t[]){ 1, 2, 3, 4, 0 });
    cr_assert_eq(store_judge_shape(&r, &l), STORE_SHAPE_OK);
    cr_assert_eq(l.n, 4);
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_OK, 1, 0, -1),
                 STORE_ANSWER_OK);
    publist_free(&l);
}

Test(store_judge, later_batch_first_is_a_missing_start)
{
    /* 21..30 landed, 1..20 not yet (another writer's batch). */
    store_range r = range(0, 31, 1, 0, 0);
    publist l = list_of((uint64_t[]){ 21, 22, 23, 30, 0 });
    cr_assert_eq(store_judge_shape(&r, &l), STORE_SHAPE_START);
    cr_assert_eq(l.n, 3, "only the contiguous run is kept");
    publist_free(&l);
}

Test(store_judge, missing_start_waits_while_writes_queued_before_are_pending)
{
    store_range r = range(5, 31, 1, 0, 0);
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_START, 1, 0, -1),
                 STORE_ANSWER_RETRY);
    /* still behind when the wait is over: 108, not 111 */
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_START, 1, 1, -1),
                 STORE_ANSWER_UNAVAILABLE);
    /* nothing on its way: gone */
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_START, 0, 0, -1),
                 STORE_ANSWER_GONE);
}

Test(store_judge, holes_and_nothing_follow_the_same_rule)
{
    store_range r = range(5, 31, 1, 0, 0);
    for (int shape = STORE_SHAPE_SHORT; shape <= STORE_SHAPE_NONE; shape++) {
        cr_assert_eq(store_judge_answer(&r, shape, 1, 0, -1),
                     STORE_ANSWER_RETRY);
        cr_assert_eq(store_judge_answer(&r, shape, 1, 1, -1),
                     STORE_ANSWER_UNAVAILABLE);
        cr_assert_eq(store_judge_answer(&r, shape, 0, 0, -1),
                     STORE_ANSWER_GONE);
    }
}

Test(store_judge, nothing_stored_without_since_is_the_memory_part)
{
    store_range r = range(0, 31, 0, 0, 0);
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_NONE, 1, 0, -1),
                 STORE_ANSWER_OK);
    r.others = 1;
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_NONE, 0, 0, -1),
                 STORE_ANSWER_OK);
}

Test(store_judge, cluster_waits_then_needs_evidence_of_retention)
{
    store_range r = range(5, 31, 1, 0, 1);
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_START, 0, 0, -1),
                 STORE_ANSWER_RETRY, "other nodes' writers may be behind");
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_START, 0, 1, -1),
                 STORE_ANSWER_CHECK);
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_START, 0, 1, 1),
                 STORE_ANSWER_GONE);
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_START, 0, 1, 0),
                 STORE_ANSWER_UNAVAILABLE);
    /* this node's own writes pending: behind, whatever retention did */
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_START, 1, 1, -1),
                 STORE_ANSWER_UNAVAILABLE);
    /* a hole in the middle stays 108 (in flight when Redis broke) */
    cr_assert_eq(store_judge_answer(&r, STORE_SHAPE_SHORT, 0, 1, -1),
                 STORE_ANSWER_UNAVAILABLE);
}

Test(store_judge, reverse_needs_the_newest)
{
    store_range r = range(0, 11, 1, 1, 0);
    publist l = list_of((uint64_t[]){ 10, 9, 8, 0 });
    cr_assert_eq(store_judge_shape(&r, &l), STORE_SHAPE_OK);
    publist_free(&l);
    l = list_of((uint64_t[]){ 9, 8, 7, 0 });
    cr_assert_eq(store_judge_shape(&r, &l), STORE_SHAPE_SHORT);
    publist_free(&l);
}

Test(store_judge, forward_without_since_may_start_late_but_not_end_early)
{
    store_range r = range(0, 11, 0, 0, 0);
    publist l = list_of((uint64_t[]){ 4, 5, 6, 7, 8, 9, 10, 0 });
    cr_assert_eq(store_judge_shape(&r, &l), STORE_SHAPE_OK);
    publist_free(&l);
    l = list_of((uint64_t[]){ 4, 5, 6, 0 });
    cr_assert_eq(store_judge_shape(&r, &l), STORE_SHAPE_SHORT);
    publist_free(&l);
}

Test(store_judge, limit_bounds_what_is_wanted)
{
    store_range r = range(0, 101, 1, 0, 0);
    r.n = 3;
    publist l = list_of((uint64_t[]){ 1, 2, 3, 0 });
    cr_assert_eq(store_judge_shape(&r, &l), STORE_SHAPE_OK);
    publist_free(&l);
    r.n = 0;
    l = list_of((uint64_t[]){ 0 });
    cr_assert_eq(store_judge_shape(&r, &l), STORE_SHAPE_OK);
    publist_free(&l);
}
