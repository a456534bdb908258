/*
 * Unit tests of server/hooks/lane.c with a fake clock: one key always
 * maps to one lane; a lane sends one event at a time, in order; a failure
 * holds the lane for the backoff (250 ms doubling to 30 s, with jitter)
 * and keeps the event at the head; after max_attempts it is dropped and
 * the next goes at once.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hooks/lane.h"

Test(hooks_lane, a_key_has_one_lane)
{
    uint32_t a = hook_key_hash("chat:1", 6), b = hook_key_hash("chat:1", 6);
    cr_assert_eq(a, b);
    cr_assert_lt(hook_lane_index(a), HOOK_LANES);
    /* keys spread over the lanes */
    int used[HOOK_LANES] = { 0 }, n = 0;
    char k[32];
    for (int i = 0; i < 1000; i++) {
        int len = snprintf(k, sizeof(k), "chan:%d", i);
        used[hook_lane_index(hook_key_hash(k, (size_t)len))] = 1;
    }
    for (int i = 0; i < HOOK_LANES; i++)
        n += used[i];
    cr_assert_eq(n, HOOK_LANES);
}

Test(hooks_lane, backoff_doubles_with_jitter_up_to_30s)
{
    cr_assert_eq(hook_backoff_ms(1, 0), 250);
    cr_assert_eq(hook_backoff_ms(2, 0), 500);
    cr_assert_eq(hook_backoff_ms(3, 0), 1000);
    cr_assert_eq(hook_backoff_ms(8, 0), 30000);
    cr_assert_eq(hook_backoff_ms(100, 0), 30000);
    for (uint64_t r = 0; r < 5000; r += 7) {
        int64_t d = hook_backoff_ms(1, r);
        cr_assert(d >= 125 && d <= 250, "%lld", (long long)d);
        d = hook_backoff_ms(20, r * 2654435761u);
        cr_assert(d >= 15000 && d <= 30000, "%lld", (long long)d);
    }
}

static hook_item *item(hook_body *b)
{
    hook_item *it = calloc(1, sizeof(*it));
    it->body = b;
    return it;
}

Test(hooks_lane, one_at_a_time_in_order_with_retries)
{
    hook_body bodies[3];
    hook_lane l;
    memset(&l, 0, sizeof(l));
    for (int i = 0; i < 3; i++)
        hook_lane_push(&l, item(&bodies[i]));
    cr_assert_eq(l.n, 3);

    hook_item *it = hook_lane_take(&l, 0), *done;
    cr_assert_eq(it->body, &bodies[0]);
    cr_assert_null(hook_lane_take(&l, 0));          /* one in flight */
    cr_assert_eq(hook_lane_due(&l), INT64_MAX);

    /* fails: stays the head, waits its backoff */
    cr_assert_eq(hook_lane_result(&l, 0, 3, 1000, 0, &done), HOOK_RETRY);
    cr_assert_null(done);
    cr_assert_eq(hook_lane_due(&l), 1250);
    cr_assert_null(hook_lane_take(&l, 1249));
    it = hook_lane_take(&l, 1250);
    cr_assert_eq(it->body, &bodies[0]);
    cr_assert_eq(it->attempts, 1);

    /* delivered: the next goes at once */
    cr_assert_eq(hook_lane_result(&l, 1, 3, 1300, 0, &done), HOOK_DELIVERED);
    cr_assert_eq(done->body, &bodies[0]);
    free(done);
    it = hook_lane_take(&l, 1300);
    cr_assert_eq(it->body, &bodies[1]);

    /* three failures: dropped, the third goes next */
    cr_assert_eq(hook_lane_result(&l, 0, 3, 2000, 0, &done), HOOK_RETRY);
    cr_assert_eq(hook_lane_due(&l), 2250);
    it = hook_lane_take(&l, 2250);
    cr_assert_eq(hook_lane_result(&l, 0, 3, 2300, 0, &done), HOOK_RETRY);
    cr_assert_eq(hook_lane_due(&l), 2800);
    it = hook_lane_take(&l, 2800);
    cr_assert_eq(it->body, &bodies[1]);
    cr_assert_eq(hook_lane_result(&l, 0, 3, 2900, 0, &done), HOOK_GAVE_UP);
    cr_assert_eq(done->body, &bodies[1]);
    cr_assert_eq(done->attempts, 3);
    free(done);
    it = hook_lane_take(&l, 2900);
    cr_assert_eq(it->body, &bodies[2]);
    cr_assert_eq(hook_lane_result(&l, 1, 3, 3000, 0, &done), HOOK_DELIVERED);
    free(done);
    cr_assert_eq(l.n, 0);
    cr_assert_null(hook_lane_take(&l, 5000));
    cr_assert_null(hook_lane_pop(&l));
}

/* Many keys over the lanes, results in random order: every key's events
 * come out in the order they went in. */
Test(hooks_lane, order_per_key_whatever_the_results)
{
    enum { KEYS = 50, PER = 40 };
    static hook_body bodies[KEYS * PER];
    hook_lane lanes[HOOK_LANES];
    memset(lanes, 0, sizeof(lanes));
    char k[16];
    for (int i = 0; i < PER; i++)
        for (int key = 0; key < KEYS; key++) {
            hook_body *b = &bodies[i * KEYS + key];
            int len = snprintf(k, sizeof(k), "k%d", key);
            b->key_hash = hook_key_hash(k, (size_t)len);
            b->type = key;            /* the key, for the check */
            b->refs = (uint32_t)i;    /* the sequence number */
            hook_lane_push(&lanes[hook_lane_index(b->key_hash)], item(b));
        }
    int next[KEYS] = { 0 }, left = KEYS * PER;
    int64_t now = 0;
    srand(7);
    while (left > 0) {
        now += 100;
        for (int l = 0; l < HOOK_LANES; l++) {
            hook_item *it = hook_lane_take(&lanes[l], now), *done;
            if (!it)
                continue;
            int ok = rand() % 3 != 0;
            if (hook_lane_result(&lanes[l], ok, 1000, now, (uint64_t)rand(),
                                 &done) == HOOK_DELIVERED) {
                cr_assert_eq((int)done->body->refs, next[done->body->type]);
                next[done->body->type]++;
                free(done);
                left--;
            }
        }
    }
    for (int key = 0; key < KEYS; key++)
        cr_assert_eq(next[key], PER);
}
