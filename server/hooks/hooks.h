/*
 * Signed webhooks (docs/webhooks.md): events (connect, disconnect,
 * subscribe, unsubscribe, occupied, vacated, publication) POSTed as JSON
 * to the configured endpoints, signed with HMAC-SHA256.
 *
 * Any thread emits; the body is built on the emitting thread and put on a
 * bounded queue under one mutex (never waiting on the network: a full
 * queue drops the new event and counts it). One sender thread of the
 * module's own drives a libcurl multi handle: per endpoint, lanes keep
 * one key's events in order (hooks/lane.h), failures are retried with
 * backoff up to webhook_max_attempts. Delivery is at least once: the
 * event id lets the backend de-duplicate.
 */
#ifndef HERALD_HOOKS_HOOKS_H
#define HERALD_HOOKS_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "hooks/event.h"

typedef struct hooks hooks;

/* Drop reasons, in the order of hooks_stats.dropped. */
enum hooks_drop { HOOKS_DROP_QUEUE_FULL, HOOKS_DROP_ATTEMPTS,
                  HOOKS_DROP_SHUTDOWN, HOOKS_DROP_REASONS };
const char *hooks_drop_label(int reason);

typedef struct hooks_stats {
    uint64_t sent;                    /* deliveries answered 2xx */
    uint64_t failed;                  /* attempts that failed */
    uint64_t dropped[HOOKS_DROP_REASONS];
    uint64_t queued;                  /* events waiting now */
} hooks_stats;

/* Starts the sender thread when webhooks are configured; NULL when none
 * is (every emit is then a NULL check), or on an error (err says why:
 * check with hooks == NULL && err[0]). node: this node's name. */
hooks *hooks_start(const config *cfg, const char *node, char *err,
                   size_t errlen);

/* 1 when some endpoint wants events of this type (cheap: callers skip
 * building an event nobody wants). */
int hooks_wants(const hooks *h, int type);

/* Queues an event (any thread; h may be NULL). Never blocks on the
 * network; a full queue drops it (counted, logged rate-limited). */
void hooks_emit(hooks *h, const hook_event *ev);

/* An occupied or vacated event of a channel (any thread). */
void hooks_emit_channel(hooks *h, int type, const char *chan, size_t len);

/* Stops: queued events get webhook_drain_ms, what is left is dropped
 * and logged. Call after the last emit. h may be NULL. */
void hooks_stop(hooks *h);

/* Counters for /metrics (any thread). */
void hooks_get_stats(const hooks *h, hooks_stats *out);

#endif
