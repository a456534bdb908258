/*
 * A worker's listening socket. Each worker binds its own with
 * SO_REUSEPORT (the kernel spreads new connections over workers) and hands
 * accepted sockets to its lws vhost with lws_adopt_socket_vhost() (lws's
 * own listener cannot be shared between contexts in lws 4.1). When the
 * process runs out of descriptors, the spare descriptor kept for that
 * purpose is closed to accept and immediately drop the pending
 * connection, and accepting pauses briefly, so the loop neither spins nor
 * crashes. Owned by the worker thread (listener_open runs before it
 * starts).
 */
#ifndef HERALD_NET_LISTENER_H
#define HERALD_NET_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>
#include <uv.h>

#include "base/server.h"

typedef struct listener {
    server *srv;
    uint16_t worker;
    int fd;
    int spare_fd;             /* reserve fd for EMFILE, -1 when spent */
    uv_poll_t poll;
    uv_timer_t resume;
    struct lws_vhost *vh;     /* where accepted sockets go */
    const uint32_t *conns;    /* the worker's connection count (logs) */
    const uint64_t *now_s;    /* the worker's clock (log rate) */
    uint64_t emfile_logged_s; /* last "out of descriptors" log line */
    uint64_t emfile_drops;    /* connections refused since then */
    uint64_t refused_logged_s;/* last per-address refusal log line */
    uint64_t refused;         /* refused by admit since then */
} listener;

/* Binds the socket (worker 0 first checks that the port is free: see
 * listener.c); -1 with a message in err. */
int listener_open(listener *l, server *srv, uint16_t worker, char *err,
                  size_t errlen);
/* On the worker's loop: starts accepting into vh. */
void listener_start(listener *l, uv_loop_t *loop, struct lws_vhost *vh,
                    const uint32_t *conns, const uint64_t *now_s);
/* Shutdown: closes the socket, so new connections are refused at once
 * (a load balancer fails over) instead of waiting in the backlog. */
void listener_close(listener *l);
/* The worker's loop is stopping: closes the handles. */
void listener_stop(listener *l);
/* After the loop ended. */
void listener_free(listener *l);

#endif
