/*
 * Delivery in offset order of one channel followed through Redis pub/sub:
 * a pure state machine (no I/O, unit-tested without Redis). Records come
 * from pub/sub in the order Redis published them, but this node may miss
 * some (a link that broke, a subscription that was late), so:
 *
 * - until the stream is synced (its epoch and top read after the
 *   subscription was confirmed), records are held;
 * - a record that continues the delivered top is delivered; an older one
 *   is a duplicate and dropped; one further ahead is held and the missing
 *   ones are read from Redis's hot window (a fill);
 * - a fill's records and the held ones are delivered while they continue
 *   the stream; a gap the window no longer covers, a new epoch (Redis
 *   lost the stream) or more than ORDER_HOLD_MAX held records reset the
 *   stream: the caller closes the channel's local subscribers (4003),
 *   who recover with since.
 *
 * The machine keeps its own copy of the delivered position; the caller's
 * deliver/reset/position callbacks keep the owner's stream in step.
 */
#ifndef HERALD_BROKER_REDIS_ORDER_H
#define HERALD_BROKER_REDIS_ORDER_H

#include <stddef.h>
#include <stdint.h>

#include "base/ids.h"
#include "core/pub.h"

#define ORDER_HOLD_MAX 65536   /* records held ahead of a gap */

typedef struct order_out {
    void *ctx;
    /* The next publication, in offset order (borrowed: the machine
     * releases its reference after the call). */
    void (*deliver)(void *ctx, pub *p);
    /* The stream was lost or has a gap: it continues at (epoch, top). */
    void (*reset)(void *ctx, const char *epoch, uint64_t top,
                  const char *why);
    /* The first position of the stream (a first sync). */
    void (*position)(void *ctx, const char *epoch, uint64_t top);
    /* Read the window from offset `from` on; 0 when the read was sent
     * (order_filled or order_fill_failed follows). */
    int (*fill)(void *ctx, uint64_t from);
} order_out;

typedef struct order {
    char epoch[IDS_LEN];
    uint64_t top;            /* delivered */
    uint8_t has_epoch;       /* synced since the stream was followed */
    uint8_t live;            /* synced and not stopped: deliver */
    uint8_t filling;         /* a fill read is in flight */
    publist hold;            /* records ahead of a gap, by offset */
} order;

void order_init(order *o);
/* Releases what is held. */
void order_free(order *o);

/* A record from pub/sub (takes the reference). */
void order_record(order *o, pub *p, const order_out *out);
/* The stream's epoch and top as Redis has them, read after the
 * subscription was confirmed: the machine goes live (repairing what was
 * missed while it was not). */
void order_sync(order *o, const char *epoch, uint64_t top,
                const order_out *out);
/* A fill read came back: the window's epoch and top when it was read and
 * its records from the asked offset on (references taken). */
void order_filled(order *o, const char *epoch, uint64_t top, publist *recs,
                  const order_out *out);
/* A fill read failed (no answer: the link is down; or an error reply:
 * the held records wait for the next record to try again). */
void order_fill_failed(order *o);
/* Not live any more (the link is down, or the stream is given up): held
 * records dropped, the position kept for the repair after reconnecting. */
void order_stop(order *o);
/* Forgets the position too (unsubscribed: the next sync starts afresh). */
void order_forget(order *o);
/* Live and no fill in flight: the delivered position is where the stream
 * is, as far as this node can know. */
int order_ready(const order *o);

#endif
