/*
 * Per-connection send queue: a ring of frame references with a byte count.
 * Entries are numbered (seq) in push order. An entry may be reserved
 * before its frame exists (a reply another worker is still computing) and
 * filled later; output stops at the first unfilled entry, which is how
 * replies leave in the order their commands arrived and pushes never
 * overtake a reply queued before them.
 * The queue itself never refuses a frame; the caller compares
 * sendq_bytes() with the configured send_queue_max and applies the policy
 * (close the client with 4001). An idle connection's queue holds no memory:
 * the ring is allocated at the first push and released when the connection
 * goes away.
 */
#ifndef HERALD_SENDQ_H
#define HERALD_SENDQ_H

#include <stddef.h>
#include <stdint.h>

#include "net/frame.h"

typedef struct sendq {
    frame **ring;       /* capacity slots, power of two, or NULL */
    uint32_t cap;
    uint32_t head;      /* index of the oldest frame */
    uint32_t count;
    size_t bytes;       /* sum of payload lengths queued */
    uint64_t next_seq;  /* seq the next pushed entry gets */
} sendq;

void sendq_init(sendq *q);
/* Takes one reference of f (the caller's). */
void sendq_push(sendq *q, frame *f);
/* Reserves an entry to be filled later; returns its seq. */
uint64_t sendq_reserve(sendq *q);
/* Fills a reserved entry (takes the reference). Returns -1, releasing f,
 * when the entry no longer exists (the queue was cleared). */
int sendq_fill(sendq *q, uint64_t seq, frame *f);
/* The i-th oldest entry, or NULL (beyond the end, or not filled yet). */
frame *sendq_peek(const sendq *q, uint32_t i);
/* Number of leading entries that are filled (ready to write). */
uint32_t sendq_ready(const sendq *q);
/* Drops the n oldest frames, releasing their references. */
void sendq_drop(sendq *q, uint32_t n);
void sendq_clear(sendq *q);         /* drops all, keeps the ring */
void sendq_free(sendq *q);          /* drops all, frees the ring */

static inline uint32_t sendq_count(const sendq *q) { return q->count; }
static inline size_t sendq_bytes(const sendq *q) { return q->bytes; }

#endif
