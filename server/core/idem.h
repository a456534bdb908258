/*
 * Idempotent publish: a channel stream's memory of the idempotency keys
 * published with (docs/api-design.md, "Idempotent publish"). The owner
 * (core/owner.c) keeps one map per stream, on its own thread.
 *
 * An entry is open while its first publication is on its way (being
 * sequenced, or a durable stream's key being looked up in the store):
 * requests with the same key wait on it (a list of messages) instead of
 * publishing again. Once sealed it holds the first publication's offset,
 * epoch and data hash until it expires (idempotency_window after the
 * publication) or, past idempotency_max sealed entries, until it is the
 * oldest one dropped to make room: the limit of the guarantee. Open
 * entries are not counted in that bound: they are bounded by the
 * publishes in flight.
 */
#ifndef HERALD_CORE_IDEM_H
#define HERALD_CORE_IDEM_H

#include <stddef.h>
#include <stdint.h>

#include <uthash.h>
#include <herald/proto.h>

#if PROTO_IDEM_KEY_MAX < 32
#error "scoped idempotency keys need 32 bytes"
#endif

#include "base/ids.h"
#include "base/mailbox.h"

enum {
    IDEM_LOOKUP = 1,   /* open: the durable store is asked for the key */
    IDEM_PENDING,      /* open: its first publication is being sequenced */
    IDEM_SEALED,       /* offset, epoch and hash known */
};

typedef struct idem_entry {
    UT_hash_handle hh;
    struct idem_entry *prev, *next;   /* sealed entries, oldest first */
    msg *waiters, *waiters_tail;      /* requests waiting (FIFO, msg.next) */
    uint64_t hash;                    /* of the first publication's data */
    uint64_t offset;
    int64_t expires_ms;
    char epoch[IDS_LEN + 1];
    uint8_t state;
    uint8_t len;
    char key[PROTO_IDEM_KEY_MAX + 1];
} idem_entry;

typedef struct idem_map {
    idem_entry *by_key;
    idem_entry *oldest, *newest;      /* sealed entries */
    uint32_t n_sealed;
    uint32_t n_open;
    uint32_t lookups;                 /* entries in IDEM_LOOKUP */
    msg *held, *held_tail;            /* publishes that came during a
                                         lookup, in arrival order: they
                                         go after it, so one publisher's
                                         offsets keep its order */
} idem_map;

/* The error text of a key reused with other data (error 107; the API
 * answers it 409). */
extern const char idem_conflict[];

/* The hash that tells "the same publication again" from "another one with
 * a reused key": 64-bit FNV-1a of the data's msgpack form (the one
 * encoding both JSON and msgpack publishers' data is converted to the same
 * way). */
uint64_t idem_hash(const proto_data *d);

/* Keys are the publisher's own: a key K given by publisher scope S is
 * kept (in the owner's map, in Redis, in the store) as the first 32 hex
 * digits of SHA-256(S, NUL, K). So a client allowed to publish on a
 * channel cannot claim a backend's key (or another user's) and have the
 * backend's publication answered "duplicate" and never made. Scopes:
 * "api" for server API keys, "user:" + the user for clients (anonymous
 * clients share "user:"). out: IDEM_SCOPED_LEN + 1 bytes. */
#define IDEM_SCOPED_LEN 32
void idem_scoped_key(proto_slice scope, proto_slice key, char *out);

void idem_init(idem_map *m);
/* Frees every entry; the requests waiting on open ones with free_msg. */
void idem_free(idem_map *m, msg_free_fn free_msg);

/* The entry of a key, or NULL. */
idem_entry *idem_find(idem_map *m, const char *key, size_t len);
/* Drops sealed entries expired at now_ms (the oldest expire first: the
 * window is the same for all). */
void idem_expire(idem_map *m, int64_t now_ms);
/* 1 when the map holds no entry. */
static inline int idem_empty(const idem_map *m)
{
    return m->n_sealed == 0 && m->n_open == 0;
}

/* A new open entry (state IDEM_LOOKUP or IDEM_PENDING) for a key not in
 * the map. */
idem_entry *idem_open(idem_map *m, const char *key, size_t len, int state);
/* An open entry learns its first publication; it expires at expires_ms.
 * Sealed entries beyond max are dropped, oldest first. */
void idem_seal(idem_map *m, idem_entry *e, uint64_t offset,
               const char *epoch, uint64_t hash, int64_t expires_ms,
               uint32_t max);
/* Removes an entry (open: its waiters must have been taken). */
void idem_drop(idem_map *m, idem_entry *e);

/* Queues a request on an open entry. */
void idem_wait(idem_entry *e, msg *m);
/* Holds a publish until no lookup is pending (FIFO). */
void idem_hold(idem_map *m, msg *r);
/* The held publishes, oldest first (the map holds none after). */
msg *idem_take_held(idem_map *m);
/* Takes the requests waiting on e (FIFO list through msg.next). */
msg *idem_take_waiters(idem_entry *e);

#endif
