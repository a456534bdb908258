/*
 * Delivery order and retries of webhook events, without I/O (the unit
 * tests drive it with a fake clock). Each endpoint has HOOK_LANES lanes;
 * an event goes to the lane of its key (hook_event_key: the channel, or
 * the client for connect/disconnect), and a lane sends one event at a
 * time: the next only after the previous was delivered or dropped. So
 * one key's events are never reordered, and a failing event holds back
 * the others of its lane (head-of-line blocking, the price of order).
 *
 * A lane belongs to the sender thread (hooks.c); nothing here locks.
 */
#ifndef HERALD_HOOKS_LANE_H
#define HERALD_HOOKS_LANE_H

#include <stddef.h>
#include <stdint.h>

#define HOOK_LANES 32
/* Backoff after a failed attempt: 250 ms, doubling, at most 30 s, each
 * with jitter (a random part of up to half of it taken off). */
#define HOOK_BACKOFF_FIRST_MS 250
#define HOOK_BACKOFF_MAX_MS 30000

/* One event's body, shared by the endpoints that want it. Sender thread
 * only once queued. */
typedef struct hook_body {
    uint32_t refs;              /* deliveries still holding it */
    int type;                   /* enum config_hook_event */
    uint32_t key_hash;          /* of hook_event_key */
    struct hook_body *next;     /* in the incoming list */
    char id[33];
    size_t len;
    char json[];
} hook_body;

/* One event on its way to one endpoint. */
typedef struct hook_item {
    struct hook_item *next;
    hook_body *body;
    uint32_t attempts;          /* POSTs that failed so far */
} hook_item;

typedef struct hook_lane {
    hook_item *head, *tail;
    uint32_t n;
    int busy;                   /* the head's POST is in flight */
    int64_t not_before_ms;      /* the head's next attempt (monotonic) */
} hook_lane;

/* A hash of a key (FNV-1a) and the lane it gives. */
uint32_t hook_key_hash(const char *key, size_t len);
static inline uint32_t hook_lane_index(uint32_t key_hash)
{
    return key_hash % HOOK_LANES;
}

/* The wait before attempt `failures` + 1 (failures >= 1); rnd: any
 * random number (the jitter). */
int64_t hook_backoff_ms(uint32_t failures, uint64_t rnd);

/* Appends an item (taken). */
void hook_lane_push(hook_lane *l, hook_item *it);

/* The head when it may be sent now (not busy, its time has come): the
 * lane becomes busy. NULL otherwise. */
hook_item *hook_lane_take(hook_lane *l, int64_t now_ms);

/* When the lane has something to send next (INT64_MAX: nothing, or busy). */
int64_t hook_lane_due(const hook_lane *l);

enum hook_outcome { HOOK_DELIVERED, HOOK_RETRY, HOOK_GAVE_UP };

/* The head's POST ended: ok, or failed (a retry after the backoff, or
 * dropped after max_attempts). A delivered or dropped head is unlinked
 * and returned in *done for the caller to release. */
enum hook_outcome hook_lane_result(hook_lane *l, int ok,
                                   uint32_t max_attempts, int64_t now_ms,
                                   uint64_t rnd, hook_item **done);

/* Unlinks and returns the head (shutdown: dropping what is left). */
hook_item *hook_lane_pop(hook_lane *l);

#endif
