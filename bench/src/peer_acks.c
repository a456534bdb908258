/*
 * The unanswered publishes of a peer connection (see peer_acks.h).
 */
#include "peer_acks.h"

#include <stdlib.h>

static void peer_acks__pop_answered(peer_acks *a)
{
    while (a->n && !a->ring[a->head].cb) {
        a->head = (a->head + 1) & (a->cap - 1);
        a->n--;
    }
}

void peer_acks_add(peer_acks *a, uint64_t id, peer_ack_cb cb, void *arg)
{
    if (a->n == a->cap) {
        /* Grow, unrolling the ring so that it starts at slot 0. */
        uint32_t cap = a->cap ? a->cap * 2 : 16;
        peer_ack_slot *r = malloc(cap * sizeof(*r));
        if (!r)
            abort();
        for (uint32_t i = 0; i < a->n; i++)
            r[i] = a->ring[(a->head + i) & (a->cap - 1)];
        free(a->ring);
        a->ring = r;
        a->cap = cap;
        a->head = 0;
    }
    peer_ack_slot *s = &a->ring[(a->head + a->n) & (a->cap - 1)];
    s->id = id;
    s->cb = cb;
    s->arg = arg;
    a->n++;
}

int peer_acks_take(peer_acks *a, uint64_t id, peer_ack_cb *cb, void **arg)
{
    for (uint32_t i = 0; i < a->n; i++) {
        peer_ack_slot *s = &a->ring[(a->head + i) & (a->cap - 1)];
        if (s->id != id || !s->cb)
            continue;
        *cb = s->cb;
        *arg = s->arg;
        s->cb = NULL;
        peer_acks__pop_answered(a);
        return 1;
    }
    return 0;
}

int peer_acks_take_oldest(peer_acks *a, peer_ack_cb *cb, void **arg)
{
    peer_acks__pop_answered(a);
    if (!a->n)
        return 0;
    peer_ack_slot *s = &a->ring[a->head];
    *cb = s->cb;
    *arg = s->arg;
    a->head = (a->head + 1) & (a->cap - 1);
    a->n--;
    return 1;
}

void peer_acks_free(peer_acks *a)
{
    free(a->ring);
    a->ring = NULL;
    a->cap = a->head = a->n = 0;
}
