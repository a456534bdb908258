/*
 * Per-worker counter blocks and the label sets (metrics.h).
 */
#include "metrics/metrics.h"

#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/mem.h"

metrics *metrics_new(uint32_t n_workers, const char *key)
{
    metrics *m = mem_calloc(1, sizeof(*m));
    m->n_workers = n_workers;
    size_t bytes = sizeof(metrics_worker) * (n_workers ? n_workers : 1);
    void *blocks = NULL;
    /* sizeof(metrics_worker) is a multiple of its 64-byte alignment, so
     * every block of the array starts on a cache line of its own. */
    if (posix_memalign(&blocks, _Alignof(metrics_worker), bytes) != 0)
        abort();
    memset(blocks, 0, bytes);
    m->w = blocks;
    if (key && key[0]) {
        m->has_key = 1;
        config_api_key_digest(key, strlen(key), m->key_digest);
    }
    return m;
}

void metrics_free(metrics *m)
{
    if (!m)
        return;
    free(m->w);
    free(m);
}

/* --- label sets ------------------------------------------------------------ */

/* The close codes a connection ends with: the server's (protocol-v1.md,
 * and RFC 6455 ones Herald or lws fail a connection with) and the ones
 * clients send. */
static const unsigned close_codes[METRICS_CLOSE_NONE] = {
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011,
    4000, 4001, 4002, 4003, 4100, 4101, 4102, 4103,
};

static const char *const close_labels[METRICS_CLOSE_CODES] = {
    "1000", "1001", "1002", "1003", "1005", "1006", "1007", "1008", "1009",
    "1011", "4000", "4001", "4002", "4003", "4100", "4101", "4102", "4103",
    "none", "other",
};

unsigned metrics_close_index(unsigned code)
{
    if (code == 0)
        return METRICS_CLOSE_NONE;
    for (unsigned i = 0; i < METRICS_CLOSE_NONE; i++)
        if (close_codes[i] == code)
            return i;
    return METRICS_CLOSE_OTHER;
}

const char *metrics_close_label(unsigned i)
{
    return i < METRICS_CLOSE_CODES ? close_labels[i] : "other";
}

static const char *const error_labels[METRICS_ERROR_CODES] = {
    "100", "101", "102", "103", "104", "105", "106",
    "107", "108", "109", "110", "111", "112", "other",
};

unsigned metrics_error_index(int code)
{
    if (code >= METRICS_ERROR_FIRST &&
        code < METRICS_ERROR_FIRST + METRICS_ERROR_CODES - 1)
        return (unsigned)(code - METRICS_ERROR_FIRST);
    return METRICS_ERROR_CODES - 1;
}

const char *metrics_error_label(unsigned i)
{
    return i < METRICS_ERROR_CODES ? error_labels[i] : "other";
}

/* The API's paths (api/api.c, docs/api.md); any other path is "other",
 * so a client probing random URLs cannot grow the exposition. */
static const char *const routes[METRICS_API_ROUTES] = {
    "/api/v1/info", "/api/v1/publish", "/api/v1/broadcast",
    "/api/v1/history", "/api/v1/presence", "/api/v1/channels",
    "/api/v1/disconnect", "/api/v1/openapi.json", "/metrics", "other",
};

unsigned metrics_route_index(const char *path)
{
    if (path)
        for (unsigned i = 0; i < METRICS_API_ROUTES - 1; i++)
            if (strcmp(path, routes[i]) == 0)
                return i;
    return METRICS_API_ROUTES - 1;
}

const char *metrics_route_label(unsigned i)
{
    return i < METRICS_API_ROUTES ? routes[i] : "other";
}

static const int statuses[METRICS_API_STATUSES - 1] = {
    200, 400, 401, 403, 404, 405, 408, 409, 411, 413,
    415, 429, 431, 500, 501, 503, 504, 505, 100,
};

static const char *const status_labels[METRICS_API_STATUSES] = {
    "200", "400", "401", "403", "404", "405", "408", "409", "411", "413",
    "415", "429", "431", "500", "501", "503", "504", "505", "100", "other",
};

unsigned metrics_status_index(int status)
{
    for (unsigned i = 0; i < METRICS_API_STATUSES - 1; i++)
        if (statuses[i] == status)
            return i;
    return METRICS_API_STATUSES - 1;
}

const char *metrics_status_label(unsigned i)
{
    return i < METRICS_API_STATUSES ? status_labels[i] : "other";
}

/* From 10 microseconds (a publish handed to its owner on an idle node)
 * to 2.5 seconds (an owner's mailbox far behind, or a Redis round trip
 * under trouble). */
static const uint64_t bucket_ns[METRICS_LATENCY_BUCKETS] = {
    10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
    100000000, 250000000, 500000000, 1000000000, 2500000000ULL,
    5000000000ULL,
};

static const char *const bucket_labels[METRICS_LATENCY_BUCKETS + 1] = {
    "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005",
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
};

uint64_t metrics_bucket_ns(unsigned i)
{
    return i < METRICS_LATENCY_BUCKETS ? bucket_ns[i] : UINT64_MAX;
}

const char *metrics_bucket_label(unsigned i)
{
    return i <= METRICS_LATENCY_BUCKETS ? bucket_labels[i] : "+Inf";
}

void metrics_observe_latency(metrics_worker *m, uint64_t ns)
{
    if (!m)
        return;
    /* Once per publication, not per delivery: a short linear walk. */
    unsigned i = 0;
    while (i < METRICS_LATENCY_BUCKETS && ns > bucket_ns[i])
        i++;
    metrics_add(&m->lat_bucket[i], 1);
    metrics_add(&m->lat_sum_ns, ns);
}
