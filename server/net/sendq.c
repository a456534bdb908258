/*
 * Send queue ring. Growth doubles the ring (amortised O(1) push); frames
 * are pointers, so a queue of a thousand messages costs 8 KiB of ring.
 */
#include "net/sendq.h"

#include <stdlib.h>
#include <string.h>

#define SENDQ_MIN_CAP 8

void sendq_init(sendq *q)
{
    memset(q, 0, sizeof(*q));
}

static void sendq_grow(sendq *q)
{
    uint32_t ncap = q->cap ? q->cap * 2 : SENDQ_MIN_CAP;
    frame **nr = malloc(sizeof(*nr) * ncap);
    if (!nr)
        abort();
    for (uint32_t i = 0; i < q->count; i++)
        nr[i] = q->ring[(q->head + i) & (q->cap - 1)];
    free(q->ring);
    q->ring = nr;
    q->cap = ncap;
    q->head = 0;
}

void sendq_push(sendq *q, frame *f)
{
    if (q->count == q->cap)
        sendq_grow(q);
    q->ring[(q->head + q->count) & (q->cap - 1)] = f;
    q->count++;
    q->next_seq++;
    if (f)
        q->bytes += f->len;
}

uint64_t sendq_reserve(sendq *q)
{
    uint64_t seq = q->next_seq;
    sendq_push(q, NULL);
    return seq;
}

int sendq_fill(sendq *q, uint64_t seq, frame *f)
{
    uint64_t first = q->next_seq - q->count;
    if (seq < first || seq >= q->next_seq) {
        frame_unref(f);
        return -1;
    }
    frame **slot = &q->ring[(q->head + (uint32_t)(seq - first)) & (q->cap - 1)];
    if (*slot) {
        frame_unref(f);
        return -1;
    }
    *slot = f;
    q->bytes += f->len;
    return 0;
}

uint32_t sendq_ready(const sendq *q)
{
    uint32_t n = 0;
    while (n < q->count && q->ring[(q->head + n) & (q->cap - 1)])
        n++;
    return n;
}

frame *sendq_peek(const sendq *q, uint32_t i)
{
    if (i >= q->count)
        return NULL;
    return q->ring[(q->head + i) & (q->cap - 1)];
}

void sendq_drop(sendq *q, uint32_t n)
{
    if (n > q->count)
        n = q->count;
    for (uint32_t i = 0; i < n; i++) {
        frame *f = q->ring[q->head];
        if (f) {
            q->bytes -= f->len;
            frame_unref(f);
        }
        q->head = (q->head + 1) & (q->cap - 1);
    }
    q->count -= n;
    if (q->count == 0)
        q->head = 0;
}

void sendq_clear(sendq *q)
{
    sendq_drop(q, q->count);
}

void sendq_free(sendq *q)
{
    sendq_clear(q);
    free(q->ring);
    q->ring = NULL;
    q->cap = 0;
}
