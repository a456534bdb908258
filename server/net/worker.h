/*
 * A worker: one thread, one libuv loop (epoll), one libwebsockets context
 * attached to that loop as a foreign loop, its own listening socket
 * (SO_REUSEPORT, so the kernel spreads accepted connections over workers),
 * its connections, its part of the subscription index (hub) and the
 * streams of the channels it owns. Everything in here is touched only by
 * the worker's thread, except the mailbox.
 */
#ifndef HERALD_WORKER_H
#define HERALD_WORKER_H

#include <pthread.h>
#include <stdint.h>

#include <libwebsockets.h>
#include <uv.h>

#include "core/channel.h"
#include "core/hub.h"
#include "base/ids.h"
#include "base/mailbox.h"
#include "base/server.h"

struct conn;

#define WHEEL_SLOTS 64   /* heartbeat wheel: one slot per second */

typedef struct conn_slot {
    struct conn *c;
    uint32_t gen;
} conn_slot;

typedef struct worker {
    server *srv;
    uint16_t index;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t tick;
    uv_prepare_t flush_prep;  /* conn_flush before the loop waits */
    uv_idle_t flush_idle;     /* active while output is left to flush */
    struct conn *flush;       /* connections with output to write */
    uv_poll_t listen_poll;
    int listen_fd;
    int spare_fd;             /* reserve fd for EMFILE, -1 when spent */
    uint64_t emfile_logged_s;  /* last "out of descriptors" log line */
    uint64_t emfile_drops;     /* connections refused since then */
    uv_timer_t accept_resume;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    mailbox mb;
    hub hub;
    chanreg reg;              /* streams of the channels this worker owns */
    struct cluster *cl;       /* cluster mode: links to Redis, else NULL */
    ids_rng rng;

    conn_slot *slots;         /* connection table; index = conn slot */
    uint32_t n_slots;
    uint32_t *free_slots;
    uint32_t n_free;
    uint32_t n_conns;

    struct conn *wheel[WHEEL_SLOTS];
    uint64_t now_s;           /* monotonic seconds, updated each tick */

    proto_buf scratch;        /* coalescing of batched frames */
    proto_buf enc;            /* encoding of replies, stolen into frames */

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

/* Posts a message to worker `to` (any thread). */
void worker_post(server *srv, uint16_t to, msg *m);

/* Connection table of this worker. */
uint32_t worker_slot_alloc(worker *w, struct conn *c, uint32_t *gen);
void worker_slot_free(worker *w, uint32_t slot);
struct conn *worker_slot_get(worker *w, uint32_t slot, uint32_t gen);

#endif
