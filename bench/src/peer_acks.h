/*
 * The unanswered publishes of one peer connection, oldest first, for the
 * peer drivers whose protocol answers a publish by id (Socket.IO acks,
 * Centrifugo replies). A ring of slots that doubles when full; ids are the
 * driver's, normally answered in order, matched by id when not. Owned by
 * the connection's loop thread.
 */
#ifndef HERALD_BENCH_PEER_ACKS_H
#define HERALD_BENCH_PEER_ACKS_H

#include <stdint.h>

#include "peer.h"

typedef struct peer_ack_slot {
    uint64_t id;
    peer_ack_cb cb;      /* NULL once answered (out-of-order answers) */
    void *arg;
} peer_ack_slot;

typedef struct peer_acks {
    peer_ack_slot *ring; /* cap slots (a power of 2), n used from head */
    uint32_t cap, head, n;
} peer_acks;

/* Records a publish sent with this id. */
void peer_acks_add(peer_acks *a, uint64_t id, peer_ack_cb cb, void *arg);

/* Takes the publish with this id: 1 with its callback and argument (to be
 * called by the driver), or 0 when nothing waits under that id. */
int peer_acks_take(peer_acks *a, uint64_t id, peer_ack_cb *cb, void **arg);

/* Takes the oldest unanswered publish: 1, or 0 when none is left (to fail
 * them all when the connection ends). */
int peer_acks_take_oldest(peer_acks *a, peer_ack_cb *cb, void **arg);

void peer_acks_free(peer_acks *a);

#endif
