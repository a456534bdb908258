/*
 * Process-wide state shared by the workers: the configuration (read-only
 * after start), the worker table, and a few counters that are atomics. No
 * worker writes another worker's state; they talk through mailboxes.
 */
#ifndef HERALD_SERVER_H
#define HERALD_SERVER_H

#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

#include "base/config.h"

struct worker;
struct store;

typedef struct server {
    const config *cfg;
    uint32_t n_workers;
    struct worker **workers;
    char node[64];
    int listen_port;              /* the bound port (config may say 0) */
    uint32_t max_connections;     /* resolved from config or RLIMIT_NOFILE */
    atomic_uint connections;      /* WebSocket connections, all workers */
    atomic_uint draining;         /* workers still draining at shutdown */
    atomic_uint broker_down;      /* cluster: worker-Redis links not up */
    struct store *store;          /* durable history writer, or NULL */
    uv_async_t *drained;          /* main loop: a worker finished draining */
} server;

/* The worker that owns (sequences) a channel. */
uint16_t server_owner(const server *s, const char *chan, size_t len);

#endif
