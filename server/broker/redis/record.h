/*
 * The record of a publication in Redis (the hot window's members and what
 * pub/sub carries): "<offset>:<epoch>:<body>", the body a msgpack array
 * [time_ms, binary, json, msgpack, client, user] and nothing after it,
 * with the data byte-exact in both encodings, so no node converts it
 * again. Join and leave travel
 * on the same pub/sub channel as "J:<client>:<user>" and
 * "L:<client>:<user>". Pure (no I/O).
 */
#ifndef HERALD_BROKER_REDIS_RECORD_H
#define HERALD_BROKER_REDIS_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "core/pub.h"

/* Appends the body of p's record (time_ms, data, publisher) to sb. */
void record_body(msgpack_sbuffer *sb, const pub *p);

/* A record of channel chan as a new publication, or NULL (logged) when it
 * is malformed. */
pub *record_parse(const char *chan, size_t chan_len, const char *rec,
                  size_t len);

/* A join or leave record: 1 with its parts (pointers into rec), 0 when
 * rec is not one. */
typedef struct record_presence {
    int join;
    const char *client;      /* IDS_LEN bytes */
    const char *user;
    size_t user_len;
} record_presence;

int record_presence_parse(const char *rec, size_t len, record_presence *out);

#endif
