/*
 * Channel rules that depend only on the configuration: which namespace a
 * channel is in (102 when none is configured) and what a client may do
 * there (anonymous clients, client publishing, whether history and
 * presence exist, the history limit). Pure functions of the immutable
 * configuration, so the requester applies them on its own thread before a
 * request travels to the channel's owner, and every way in (the WebSocket
 * commands today, the HTTP API tomorrow) applies the same ones. The rules
 * that need the channel's state (max_subscribers, back-pressure, recovery,
 * the durable store's room) are the owner's (core/owner.c).
 */
#ifndef HERALD_CORE_RULES_H
#define HERALD_CORE_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"

enum rules_op {
    RULES_SUBSCRIBE,
    RULES_PUBLISH,
    RULES_HISTORY,
    RULES_PRESENCE,
};

typedef struct rules_who {
    int anonymous;           /* no user (no token) */
    int client;              /* a client connection (allow_publish applies) */
} rules_who;

/* 0 with *ns set when `who` may do `op` on the channel, else a protocol
 * error code (PROTO_E_*). limit: a history request's limit (ignored
 * otherwise). have_store: a durable store is configured. */
int rules_check(const config *cfg, enum rules_op op, const char *chan,
                size_t len, const rules_who *who, uint32_t limit,
                int have_store, const config_ns **ns);

/* The history limit of a request that gave none. */
uint32_t rules_history_default_limit(const config *cfg);

#endif
