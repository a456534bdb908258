/*
 * The /healthz document (health.h).
 */
#include "metrics/health.h"

#include <stdio.h>

#include "store/store.h"

int health_render(const server *srv, int draining,
                  char body[HEALTH_BODY_MAX])
{
    const size_t cap = HEALTH_BODY_MAX;
    int cluster = srv->cfg->n_redis > 0;
    int down = cluster && atomic_load(&srv->broker_down) > 0;
    const char *status = draining ? "draining" : down ? "degraded" : "ok";
    int n = snprintf(body, cap,
                     "{\"status\":\"%s\",\"node\":\"%s\",\"connections\":%u,"
                     "\"workers\":%u,\"broker\":\"%s\",\"channels\":%u,"
                     "\"channels_evicted\":%llu",
                     status, srv->node,
                     atomic_load(&srv->connections),
                     srv->n_workers,
                     !cluster ? "memory" : down ? "down" : "up",
                     atomic_load(&srv->channels),
                     (unsigned long long)atomic_load(&srv->channels_evicted));
    const store *st = srv->store;
    if (st && n > 0 && (size_t)n < cap)
        n += snprintf(body + n, cap - (size_t)n,
                      ",\"store\":{\"status\":\"%s\",\"backlog\":%llu,"
                      "\"written\":%llu,\"spilled\":%llu,"
                      "\"spill_bytes\":%llu,\"retention_passes\":%llu,"
                      "\"retention_deleted\":%llu}",
                      store_failing(st) ? "failing" : "ok",
                      (unsigned long long)store_backlog(st),
                      (unsigned long long)store_written(st),
                      (unsigned long long)store_spilled(st),
                      (unsigned long long)store_spill_bytes(st),
                      (unsigned long long)store_retention_passes(st),
                      (unsigned long long)store_retention_deleted(st));
    if (n > 0 && (size_t)n < cap - 1)
        snprintf(body + n, cap - (size_t)n, "}");
    return draining || down ? 503 : 200;
}
