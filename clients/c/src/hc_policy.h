/*
 * The client's pure decision logic, kept apart from I/O so unit tests can
 * drive it (tests/unit/test_client_policy.c): reconnect backoff with full
 * jitter, which close codes allow a reconnect, and the per-channel stream
 * position that de-duplicates publications and detects gaps.
 */
#ifndef HC_POLICY_H
#define HC_POLICY_H

#include <stddef.h>
#include <stdint.h>

#define HC_EPOCH_MAX 64

/* Full jitter: a delay drawn uniformly from [0, min(max, base * 2^attempt)]
 * using the random value rnd. base 0 gives 0. */
uint64_t hc__backoff_delay(unsigned base_ms, unsigned max_ms,
                           unsigned attempt, uint64_t rnd);

/* xorshift64*: the jitter's random source (never returns 0 state). */
uint64_t hc__rand_next(uint64_t *state);

/* Whether the client may reconnect after close code `code` (and the
 * server's disconnect push, when one came: push_reconnect 0 forbids).
 * 1000, 4100, 4101 and 4102 forbid it; everything else allows it. */
int hc__close_allows_reconnect(int code, int push_reconnect);
/* 4103 (connection limit): reconnect, but never sooner than the base. */
int hc__close_needs_backoff(int code);

/* A channel's delivered position: what the application has seen. */
typedef struct hc__stream {
    int has_pos;                  /* 0 until the first subscribe reply */
    uint64_t offset;              /* last delivered (or the reply's top) */
    size_t epoch_len;
    char epoch[HC_EPOCH_MAX + 1];
} hc__stream;

typedef enum hc__verdict {
    HC__DELIVER = 0,     /* the next offset: deliver */
    HC__DUPLICATE,       /* already delivered: drop */
    HC__GAP              /* offsets skipped or epoch changed: deliver, but
                            tell the application publications were missed */
} hc__verdict;

/* Judges a publication (epoch, offset) against the stream and, unless it
 * is a duplicate, advances the stream to it. A stream without a position
 * takes the first publication as a gap-free start. */
hc__verdict hc__stream_pub(hc__stream *s, const char *epoch, size_t epoch_len,
                           uint64_t offset);
/* Sets the position (subscribe reply without recovery, or recovered = 0). */
void hc__stream_set(hc__stream *s, const char *epoch, size_t epoch_len,
                    uint64_t offset);
int hc__stream_epoch_is(const hc__stream *s, const char *epoch, size_t len);

#endif
