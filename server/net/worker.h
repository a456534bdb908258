/*
 * A worker: one thread, one libuv loop (epoll), one libwebsockets context
 * attached to that loop as a foreign loop, its own listening socket
 * (listener.h), its connections (conn.h), and the owner side of the
 * channels that hash to it (core/owner.h) over its broker
 * (broker/broker.h). The worker composes them: it runs the loop, drains
 * its mailbox into the owner and the connections, flushes output before
 * the loop waits, ticks once a second, and drains and stops at shutdown.
 * Everything in here is touched only by the worker's thread, except the
 * mailbox.
 */
#ifndef HERALD_NET_WORKER_H
#define HERALD_NET_WORKER_H

#include <pthread.h>
#include <stdint.h>

#include <libwebsockets.h>
#include <uv.h>

#include "base/mailbox.h"
#include "base/server.h"
#include "core/owner.h"
#include "net/conn.h"
#include "net/sniff.h"
#include "net/listener.h"

struct broker;

typedef struct worker {
    server *srv;
    uint16_t index;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t tick;
    uv_prepare_t flush_prep;  /* conns_flush before the loop waits */
    uv_idle_t flush_idle;     /* active while output is left to flush */
    uv_check_t judge_check;   /* conns_judge after each poll */
    listener lis;
    listener api_lis;         /* api_listen, when configured */
    listener tls_lis;         /* tls_listen, when configured */
    int tls_port;             /* tls_lis is open */
    int api_port;             /* api_lis is open */
    struct api_listen *api;   /* API connections (either port), or NULL */
    int sniffing;             /* the API is on the main port: sniff */
    sniff sniff;
    struct lws_context *ctx;
    struct lws_vhost *vh;     /* listen's (TLS when tls_on_listen) */
    struct lws_vhost *vh_tls; /* tls_listen's, or NULL */
    mailbox mb;
    conns net;                /* the connections of this worker */
    owner own;                /* the channels this worker owns */
    struct broker *broker;

    int draining;             /* shutting down: no new connections */
    int drained_reported;
    uint64_t drain_deadline_s;
    int startup_error;
} worker;

/* Creates worker i (listening socket bound, loop not running yet). */
worker *worker_new(server *srv, uint16_t index, char *err, size_t errlen);
int worker_start(worker *w);
void worker_join(worker *w);
void worker_free(worker *w);

/* Posts a control message (WRK_SHUTDOWN, WRK_STOP) to every worker. */
void worker_post_all(server *srv, uint8_t type);

#endif
