/*
 * The channel-owner side of the hub: requests from any worker about a
 * channel (subscribe, unsubscribe, publish, history, presence) are handled
 * here, on the thread that owns the channel's stream, and answered through
 * the requester's mailbox. Fan-out of a sequenced publication is one
 * MSG_DELIVER per worker that has subscribers, never per subscriber.
 */
#ifndef HERALD_OWNER_H
#define HERALD_OWNER_H

#include "base/mailbox.h"

struct worker;

/* Sets up the owner side of worker w (after its channel registry). */
void owner_init(struct worker *w);

/* Handles MSG_SUB_REQ, MSG_UNSUB, MSG_PUB_REQ, MSG_HIST_REQ, MSG_PRES_REQ;
 * takes ownership of m. */
void owner_handle(struct worker *w, msg *m);

/* Periodic: history expiry by age, dropping unused streams. */
void owner_expire(struct worker *w);

/* Wall-clock milliseconds. */
int64_t owner_now_ms(void);

#endif
