/*
 * Counters for Prometheus (docs/metrics.md): one block per worker, written
 * only by that worker's thread, read by whichever thread renders /metrics
 * (metrics/expo.h), which sums the blocks. A write is a relaxed atomic
 * load and store of the sum: plain moves on x86, no lock prefix and no
 * read-modify-write that other cores would wait for; a reader sees each
 * counter whole (it may be a few increments behind, never torn). Each
 * block starts on its own cache line, so a worker's writes never bounce a
 * line that another worker writes.
 *
 * With `metrics = false` there are no blocks: the worker's pointer is NULL
 * and every hook below returns at once without touching memory, which is
 * what the on/off benchmark compares.
 *
 * Label sets are fixed here (close codes, error codes, API routes and
 * statuses, latency buckets), so a scrape's size is bounded whatever
 * clients send; a value outside a set is counted as "other".
 */
#ifndef HERALD_METRICS_METRICS_H
#define HERALD_METRICS_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define METRICS_KEY_DIGEST_LEN 32

typedef atomic_ullong metrics_counter;

enum metrics_source { METRICS_SRC_CLIENT, METRICS_SRC_API, METRICS_SOURCES };

/* Close codes counted by name; the last two slots are "none" (the socket
 * ended without a close frame from either side) and "other". */
#define METRICS_CLOSE_CODES 20
#define METRICS_CLOSE_NONE (METRICS_CLOSE_CODES - 2)
#define METRICS_CLOSE_OTHER (METRICS_CLOSE_CODES - 1)
/* Protocol error codes 100..112, then "other". */
#define METRICS_ERROR_FIRST 100
#define METRICS_ERROR_CODES 14
/* API routes by path (the last slot: any other path, or a request that
 * could not be parsed) and HTTP statuses (the last: any other). */
#define METRICS_API_ROUTES 10
#define METRICS_API_STATUSES 20
/* Publish-to-fan-out latency buckets (upper bounds; +Inf is the count). */
#define METRICS_LATENCY_BUCKETS 18

typedef struct metrics_worker {
    /* WebSocket connections (net/conn.c) */
    _Alignas(64) metrics_counter conns;        /* gauge: open now */
    metrics_counter accepted;                  /* handshakes completed */
    metrics_counter closed[METRICS_CLOSE_CODES];
    metrics_counter subscriptions;             /* gauge */
    metrics_counter bytes_in, bytes_out;       /* WebSocket payload */
    metrics_counter delivered;                 /* publications queued to
                                                  subscribers */
    metrics_counter received[METRICS_SOURCES]; /* publish requests */
    metrics_counter overflows;                 /* 4001 decided */
    metrics_counter dropped_bytes;             /* queued output dropped
                                                  by 4001/4002 closes */
    metrics_counter errors[METRICS_ERROR_CODES];
    /* publish-to-fan-out (core/owner.c): per-bucket counts, not
     * cumulative (the exposition adds them up) */
    metrics_counter lat_bucket[METRICS_LATENCY_BUCKETS + 1];
    metrics_counter lat_sum_ns;
    /* API requests answered (api/listen.c) */
    metrics_counter api[METRICS_API_ROUTES][METRICS_API_STATUSES];
} metrics_worker;

typedef struct metrics {
    uint32_t n_workers;
    metrics_worker *w;         /* n_workers blocks, cache-line aligned */
    int has_key;               /* metrics_key configured */
    unsigned char key_digest[METRICS_KEY_DIGEST_LEN];
} metrics;

/* The counters of n workers, all zero; key: metrics_key ("" or NULL:
 * /metrics is open), kept only as its SHA-256 digest. */
metrics *metrics_new(uint32_t n_workers, const char *key);
void metrics_free(metrics *m);

/* Worker i's block, or NULL when metrics are off (m NULL). */
static inline metrics_worker *metrics_of(metrics *m, uint32_t i)
{
    return m ? &m->w[i] : NULL;
}

/* --- writing (the block's worker thread only) --------------------------- */

static inline void metrics_add(metrics_counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Gauges go down by adding the two's complement; read back as signed. */
static inline void metrics_sub(metrics_counter *c, uint64_t n)
{
    metrics_add(c, (uint64_t)0 - n);
}

static inline uint64_t metrics_get(const metrics_counter *c)
{
    return atomic_load_explicit((metrics_counter *)c, memory_order_relaxed);
}

/* The index of a close code, an error code, an API path, an HTTP status
 * in their label sets, and the label text of an index. */
unsigned metrics_close_index(unsigned code);
const char *metrics_close_label(unsigned i);
unsigned metrics_error_index(int code);
const char *metrics_error_label(unsigned i);
unsigned metrics_route_index(const char *path);
const char *metrics_route_label(unsigned i);
unsigned metrics_status_index(int status);
const char *metrics_status_label(unsigned i);
/* Bucket i's upper bound in nanoseconds and as Prometheus writes it
 * ("0.0001"); i == METRICS_LATENCY_BUCKETS is +Inf. */
uint64_t metrics_bucket_ns(unsigned i);
const char *metrics_bucket_label(unsigned i);

/* A connection closed: code is the server's close code, else the peer's,
 * else 0 (no close frame). */
static inline void metrics_conn_closed(metrics_worker *m, unsigned code)
{
    if (!m)
        return;
    metrics_add(&m->closed[metrics_close_index(code)], 1);
    metrics_sub(&m->conns, 1);
}

static inline void metrics_conn_opened(metrics_worker *m)
{
    if (!m)
        return;
    metrics_add(&m->accepted, 1);
    metrics_add(&m->conns, 1);
}

static inline void metrics_error_sent(metrics_worker *m, int code)
{
    if (m)
        metrics_add(&m->errors[metrics_error_index(code)], 1);
}

static inline void metrics_api_request(metrics_worker *m, const char *path,
                                       int status)
{
    if (m)
        metrics_add(&m->api[metrics_route_index(path)]
                           [metrics_status_index(status)], 1);
}

/* A monotonic clock in nanoseconds (publication drafts carry one). */
static inline int64_t metrics_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One publish-to-fan-out latency, in nanoseconds. */
void metrics_observe_latency(metrics_worker *m, uint64_t ns);

#endif
