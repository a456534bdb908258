/*
 * The process: what every thread may read (the configuration, read-only
 * after start; node name; counters that are atomics) and the few things
 * every part needs without knowing the others: which worker owns a
 * channel, posting a message to a worker, the depth of a worker's mailbox,
 * the clock. No worker writes another worker's state; they talk through
 * mailboxes (mailbox.h).
 */
#ifndef HERALD_BASE_SERVER_H
#define HERALD_BASE_SERVER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/config.h"
#include "base/mailbox.h"

struct store;
struct admit;
struct api_keys;
struct metrics;
struct jwt_keys;
struct ssl_ctx_st;
struct hooks;
struct web_site;

typedef struct server {
    const config *cfg;
    uint32_t n_workers;
    mailbox **inbox;              /* each worker's mailbox, by index */
    char node[64];
    uint16_t listen_port;         /* the bound port (config may say 0) */
    uint16_t api_port;            /* api_listen's bound port; 0 = none */
    uint16_t tls_port;            /* tls_listen's bound port; 0 = none */
    uint8_t tls_on_listen;        /* `listen` serves TLS (tls_cert without
                                     tls_listen) */
    uint8_t api_on_main;          /* the server API shares the main port
                                     (no api_listen, keys, `listen` plain) */
    uint8_t sniff_main;           /* the main port's first bytes choose
                                     between lws and the own HTTP server
                                     (net/sniff.c): the API or the static
                                     site is on it */
    uint32_t max_connections;     /* resolved from config or RLIMIT_NOFILE */
    atomic_uint connections;      /* WebSocket connections, all workers */
    atomic_uint api_connections;  /* api_listen connections, all workers;
                                     both count against max_connections */
    atomic_uint draining;         /* workers still draining at shutdown */
    atomic_uint broker_down;      /* cluster: worker-Redis links not up */
    atomic_uint channels;         /* channel streams, all owners */
    atomic_ullong channels_evicted; /* idle streams evicted for room */
    struct store *store;          /* durable history, or NULL */
    struct admit *admit;          /* per-address admission, or NULL (off) */
    struct api_keys *api_keys;    /* server API keys (api/keys.h) */
    struct keyring *keyring;      /* token keys in force (auth/keyring.h) */
    struct proxy *proxy;          /* proxy mode (auth/proxy.h), or NULL */
    struct ssl_ctx_st *api_tls;   /* api_tls: the API connections' TLS
                                     context, shared by the workers (made
                                     at start, read-only after); or NULL */
    struct hooks *hooks;          /* webhooks (hooks/hooks.h); NULL: none
                                     configured */
    struct web_site *site;        /* static_dir (web/site.h), or NULL */
    struct metrics *metrics;      /* per-worker counters (metrics/metrics.h);
                                     NULL: `metrics = false` */
    int64_t started_ms;           /* wall clock at start (uptime) */
    uv_async_t *drained;          /* main loop: a worker finished draining */
    int64_t (*clock_ms)(void);    /* wall clock; NULL: the real one (tests
                                     set their own) */
} server;

/* The worker that owns (sequences) a channel. */
uint16_t server_owner(const server *s, const char *chan, size_t len);

/* Posts a message to worker `to` (any thread). */
void server_post(server *s, uint16_t to, msg *m);

/* Counted (fan-out) messages waiting in worker w's mailbox. */
unsigned server_backlog(const server *s, uint16_t w);

/* Wall-clock milliseconds (publication times, history age). */
int64_t server_now_ms(const server *s);

#endif
