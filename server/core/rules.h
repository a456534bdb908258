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
    int client;              /* a client connection (allow_publish and the
                                channel authorization below apply) */
    /* Channel authorization of a client (private namespaces, personal
     * channels): */
    const char *user;        /* NULL when anonymous */
    char *const *grants;     /* the connection token's `channels` */
    uint32_t n_grants;
    int channel_token;       /* the command carried a verified channel
                                token for this channel and user */
    int subscribed;          /* the connection holds a subscription to the
                                channel (authorized when it was made) */
} rules_who;

/* Whether a `channels` grant covers the channel: equal to it, or a prefix
 * ending in '*' ("orders:acme:*"; "*" alone grants everything). */
int rules_grant_covers(const char *grant, const char *chan, size_t len);

/* The user a personal channel belongs to: what follows its last '#' (a
 * channel without '#' has none: *ulen 0 and NULL returned). */
const char *rules_channel_user(const char *chan, size_t len, size_t *ulen);

/* 0 with *ns set when `who` may do `op` on the channel, else a protocol
 * error code (PROTO_E_*). limit: a history request's limit (ignored
 * otherwise). have_store: a durable store is configured. */
int rules_check(const config *cfg, enum rules_op op, const char *chan,
                size_t len, const rules_who *who, uint32_t limit,
                int have_store, const config_ns **ns);

/* The same for a channel whose namespace the caller has found already
 * (ns not NULL). */
int rules_check_ns(const config *cfg, const config_ns *ns, enum rules_op op,
                   const char *chan, size_t len, const rules_who *who,
                   uint32_t limit, int have_store);

/* The history limit of a request that gave none. */
uint32_t rules_history_default_limit(const config *cfg);

#endif
