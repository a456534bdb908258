/*
 * Lanes: per-key order, backoff and the attempts bound (lane.h).
 */
#include "hooks/lane.h"

uint32_t hook_key_hash(const char *key, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 16777619u;
    }
    return h;
}

int64_t hook_backoff_ms(uint32_t failures, uint64_t rnd)
{
    int64_t d = HOOK_BACKOFF_FIRST_MS;
    for (uint32_t i = 1; i < failures && d < HOOK_BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > HOOK_BACKOFF_MAX_MS)
        d = HOOK_BACKOFF_MAX_MS;
    /* Jitter: retries of many lanes that failed together (the backend
     * restarting) do not come back together. */
    return d - (int64_t)(rnd % (uint64_t)(d / 2 + 1));
}

void hook_lane_push(hook_lane *l, hook_item *it)
{
    it->next = NULL;
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    l->n++;
}

hook_item *hook_lane_take(hook_lane *l, int64_t now_ms)
{
    if (l->busy || !l->head || l->not_before_ms > now_ms)
        return NULL;
    l->busy = 1;
    return l->head;
}

int64_t hook_lane_due(const hook_lane *l)
{
    if (l->busy || !l->head)
        return INT64_MAX;
    return l->not_before_ms;
}

hook_item *hook_lane_pop(hook_lane *l)
{
    hook_item *it = l->head;
    if (!it)
        return NULL;
    l->head = it->next;
    if (!l->head)
        l->tail = NULL;
    l->n--;
    l->busy = 0;
    l->not_before_ms = 0;     /* the next event goes at once */
    it->next = NULL;
    return it;
}

enum hook_outcome hook_lane_result(hook_lane *l, int ok,
                                   uint32_t max_attempts, int64_t now_ms,
                                   uint64_t rnd, hook_item **done)
{
    *done = NULL;
    if (!l->head)
        return HOOK_GAVE_UP;
    if (ok) {
        *done = hook_lane_pop(l);
        return HOOK_DELIVERED;
    }
    hook_item *it = l->head;
    it->attempts++;
    if (it->attempts >= max_attempts) {
        *done = hook_lane_pop(l);
        return HOOK_GAVE_UP;
    }
    l->busy = 0;
    l->not_before_ms = now_ms + hook_backoff_ms(it->attempts, rnd);
    return HOOK_RETRY;
}
