/*
 * The heartbeat wheel: a timing wheel of one-second slots in which every
 * connection waits for its next liveness check (ping due, pong overdue,
 * token expiry), so a worker's once-a-second tick visits only the
 * connections due now: O(1) per connection per check, and no timer per
 * connection (lws 4.1 keeps timers in one sorted list, O(n) to insert).
 * A node due more than a turn away waits in its slot and is put back when
 * visited early. Owned by one worker thread.
 */
#ifndef HERALD_NET_HEARTBEAT_H
#define HERALD_NET_HEARTBEAT_H

#include <stdint.h>

#define HB_SLOTS 64

typedef struct hb_node {
    struct hb_node *prev, *next;
    uint64_t due_s;          /* the second it is due */
} hb_node;

typedef struct hb_wheel {
    hb_node *slot[HB_SLOTS];
} hb_wheel;

/* Puts n in the slot of n->due_s. */
void hb_insert(hb_wheel *w, hb_node *n);
/* Takes n out of its slot (no-op when it is in none). */
void hb_remove(hb_wheel *w, hb_node *n);
/* Detaches the slot of second now_s and returns its nodes, a list through
 * next (each node's links are cleared as the caller walks it: see
 * hb_next). */
hb_node *hb_take(hb_wheel *w, uint64_t now_s);
/* The node after n in a taken list; clears n's links. */
hb_node *hb_next(hb_node *n);

#endif
