/*
 * The heartbeat wheel: a timing wheel of one-second slots in which every
 * connection waits for its next liveness check (ping due, pong overdue,
 * token expiry), so a worker's once-a-second tick visits only the
 * connections due now: O(1) per connection per check, and no timer per
 * connection (lws 4.1 keeps timers in one sorted list, O(n) to insert).
 * A node due more than a turn away waits in its slot and is put back when
 * visited early. A tick that comes late (the loop stalled for more than a
 * second) takes every slot since the last one it took, so no connection
 * waits a whole turn for it. Owned by one worker thread.
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
    uint64_t done_s;         /* the last second taken */
} hb_wheel;

/* An empty wheel whose seconds up to now_s count as taken (a wheel of
 * zeroes starts at second 0). */
void hb_init(hb_wheel *w, uint64_t now_s);

/* Puts n in the slot of n->due_s. A node due at or before the last second
 * taken is due at the next one (its due_s is moved there). */
void hb_insert(hb_wheel *w, hb_node *n);
/* Takes n out of its slot (no-op when it is in none). */
void hb_remove(hb_wheel *w, hb_node *n);
/* Detaches the slots of the seconds after the last one taken up to now_s
 * (every slot after a stall of a turn or more) and
 * returns their nodes, oldest second first, a list through next (each
 * node's links are cleared as the caller walks it: see hb_next). Nodes not
 * due yet may be among them: the caller puts those back. */
hb_node *hb_take(hb_wheel *w, uint64_t now_s);
/* The node after n in a taken list; clears n's links. */
hb_node *hb_next(hb_node *n);

#endif
