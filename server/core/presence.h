/*
 * Presence of one channel on this node: who is subscribed (client id and
 * user), with a count of their subscriptions here, kept by the channel's
 * owner. In cluster mode this is this node's part, which the Redis broker
 * keeps fresh in Redis; the answer to a presence query comes from the
 * broker. A presence snapshot (the reply) is packed into one block:
 * entries first, then their strings.
 */
#ifndef HERALD_CORE_PRESENCE_H
#define HERALD_CORE_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

#include <herald/proto.h>

#include "base/ids.h"

/* A client's presence identity is its user, and when its connection token
 * carried `info`, PRESENCE_INFO_SEP and that info's compact JSON: one
 * NUL-terminated string that the owner, the brokers and Redis keep and
 * pass as they are; the encoders split it (presence_ident_split). A user
 * never contains the separator (auth/jwt.c refuses control characters in
 * sub). */
#define PRESENCE_INFO_SEP '\x1f'

/* user and conn_info (empty when none) of an identity of len bytes. */
void presence_ident_split(const char *ident, size_t len, proto_slice *user,
                          proto_slice *conn_info);

typedef struct presence_entry {
    UT_hash_handle hh;
    char client[IDS_LEN + 1];
    uint16_t worker;
    uint16_t refs;           /* subscriptions of this client here */
    char *user;              /* the identity (above), NUL-terminated, ""
                                when anonymous without info */
} presence_entry;

typedef struct presence_set {
    presence_entry *h;       /* uthash head */
    uint32_t n;
} presence_set;

/* Returns 1 when the client is new in the set (a join to announce). */
int presence_add(presence_set *s, const char *client, const char *user,
                 uint16_t worker);
/* Returns 1 and the user (moved to *user_out, caller frees; may be NULL)
 * when the client left the set (a leave to announce). */
int presence_del(presence_set *s, const char *client, char **user_out);
void presence_free(presence_set *s);

/* A snapshot being packed: n entries with str_bytes of strings in all. */
typedef struct presence_pack {
    proto_presence_entry *v;  /* the block (NULL when n = 0) */
    size_t n;                 /* entries added so far */
    char *s;                  /* where the next strings go */
} presence_pack;

void presence_pack_init(presence_pack *pk, size_t n, size_t str_bytes);
void presence_pack_add(presence_pack *pk, const char *client, size_t clen,
                       const char *user, size_t ulen);
/* The snapshot of a set. */
void presence_pack_set(presence_pack *pk, const presence_set *s);

#endif
