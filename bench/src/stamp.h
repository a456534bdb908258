/*
 * Payload stamps for herald-bench: every publication the bench sends
 * carries its send time (CLOCK_MONOTONIC ns; the bench runs on one host),
 * the publisher's number and the publisher's sequence number, padded to the
 * requested payload size. The stamp is a string, so it is valid data in both
 * encodings: JSON `"HB1:<t>:<seq>:<pub>:xxxx"`, msgpack a str object with
 * the same text (any str header width is accepted, since the server may
 * re-encode). Fixed-width hex fields keep encode and decode branch-free and
 * allocation-free.
 */
#ifndef HERALD_BENCH_STAMP_H
#define HERALD_BENCH_STAMP_H

#include <stddef.h>
#include <stdint.h>

typedef struct stamp {
    uint64_t t_ns;      /* send time, CLOCK_MONOTONIC */
    uint64_t seq;       /* publisher's sequence number */
    uint32_t pub;       /* publisher number */
} stamp;

enum { STAMP_JSON = 0, STAMP_MSGPACK = 1 };

/* The text: "HB1:" + 16 hex + ":" + 16 hex + ":" + 8 hex + ":" = 47 bytes. */
#define STAMP_TEXT 47
/* Smallest encoded payload (JSON: text + two quotes). */
#define STAMP_MIN_SIZE (STAMP_TEXT + 2)

/* Writes a payload of exactly max(size, STAMP_MIN_SIZE) bytes (msgpack:
 * at least STAMP_TEXT + 1) into buf (cap bytes). Returns the length, or 0
 * when cap is too small. */
size_t stamp_encode(int enc, const stamp *s, size_t size, char *buf,
                    size_t cap);
/* Decodes a payload. Returns 0, or -1 when it is not a bench stamp. */
int stamp_decode(int enc, const void *data, size_t len, stamp *out);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t stamp_now_ns(void);

#endif
