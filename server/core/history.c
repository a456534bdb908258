/*
 * History ring implementation. Offsets in the ring are contiguous (the
 * owner appends every publication of the channel), so positions are found
 * by arithmetic instead of search.
 */
#include "core/history.h"

#include <stdlib.h>
#include <string.h>

void history_init(history *h, uint32_t capacity)
{
    memset(h, 0, sizeof(*h));
    h->capacity = capacity;
}

/* A publication of `size` bytes comes in (in) or goes out of the ring. */
static void history_account(history *h, size_t size, int in)
{
    if (in)
        h->bytes += size;
    else
        h->bytes -= size;
    if (h->total) {
        if (in)
            *h->total += size;
        else
            *h->total -= size;
    }
}

void history_free(history *h)
{
    while (h->count) {
        pub *p = h->ring[h->head];
        history_account(h, p->size, 0);
        pub_unref(p);
        h->head = (h->head + 1) & (h->slots - 1);
        h->count--;
    }
    free(h->ring);
    h->ring = NULL;
    h->slots = 0;
    h->head = 0;
}

static void history_grow(history *h)
{
    uint32_t n = h->slots ? h->slots * 2 : 4;
    pub **r = malloc(sizeof(*r) * n);
    if (!r)
        abort();
    for (uint32_t i = 0; i < h->count; i++)
        r[i] = h->ring[(h->head + i) & (h->slots - 1)];
    free(h->ring);
    h->ring = r;
    h->slots = n;
    h->head = 0;
}

static void history_drop_oldest(history *h)
{
    history_account(h, h->ring[h->head]->size, 0);
    pub_unref(h->ring[h->head]);
    h->ring[h->head] = NULL;
    h->head = (h->head + 1) & (h->slots - 1);
    h->count--;
}

void history_push(history *h, pub *p)
{
    if (h->capacity == 0)
        return;
    if (h->count == h->capacity)
        history_drop_oldest(h);
    if (h->count == h->slots)
        history_grow(h);
    h->ring[(h->head + h->count) & (h->slots - 1)] = pub_ref(p);
    h->count++;
    history_account(h, p->size, 1);
}

void history_expire(history *h, int64_t now_ms, int64_t ttl_ms)
{
    if (ttl_ms <= 0)
        return;
    while (h->count && h->ring[h->head]->time_ms <= now_ms - ttl_ms)
        history_drop_oldest(h);
}

pub *history_at(const history *h, uint32_t i)
{
    if (i >= h->count)
        return NULL;
    return h->ring[(h->head + i) & (h->slots - 1)];
}

uint64_t history_first_offset(const history *h)
{
    return h->count ? h->ring[h->head]->offset : 0;
}

size_t history_select(const history *h, uint64_t after, uint32_t limit,
                      int reverse, pub **out)
{
    if (h->count == 0 || limit == 0)
        return 0;
    uint64_t first = history_first_offset(h);
    /* Index of the first publication with offset > after. */
    uint32_t start = 0;
    if (after >= first) {
        uint64_t skip = after - first + 1;
        if (skip >= h->count)
            return 0;
        start = (uint32_t)skip;
    }
    uint32_t avail = h->count - start;
    uint32_t n = avail < limit ? avail : limit;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = reverse ? h->count - 1 - k : start + k;
        out[k] = pub_ref(history_at(h, i));
    }
    return n;
}
