/*
 * A worker's listening socket. Each worker binds its own with
 * SO_REUSEPORT (the kernel spreads new connections over workers) and hands
 * each accepted socket, once the per-address limits (admit.h) let it in,
 * to an adopt function: the main listener's puts it in its lws vhost with
 * lws_adopt_socket_vhost() (lws's own listener cannot be shared between
 * contexts in lws 4.1), the server API's (api_listen) in its own HTTP/1.1
 * server. When the process runs out of descriptors, the spare descriptor
 * kept for that purpose is closed to accept and immediately drop the
 * pending connection, and accepting pauses briefly, so the loop neither
 * spins nor crashes. Owned by the worker thread (listener_open runs before
 * it starts).
 */
#ifndef HERALD_NET_LISTENER_H
#define HERALD_NET_LISTENER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/server.h"

/* Takes an accepted, non-blocking socket and its admission ticket (given
 * back with admit_release when the connection ends); returns 0, or -1
 * after closing fd (the listener then releases the ticket). */
typedef int (*listener_adopt_fn)(void *arg, int fd, void *ticket);

typedef struct listener {
    server *srv;
    uint16_t worker;
    int fd;
    int spare_fd;             /* reserve fd for EMFILE, -1 when spent */
    uv_poll_t poll;
    uv_timer_t resume;
    listener_adopt_fn adopt;  /* where accepted sockets go */
    void *adopt_arg;
    const char *what;         /* "listen", "tls_listen" or "api_listen",
                                 in messages */
    int tls;                  /* its clients speak TLS: a refusal is the
                                 close alone (no plaintext HTTP answer) */
    const uint32_t *conns;    /* the worker's connection count (logs) */
    const uint64_t *now_s;    /* the worker's clock (log rate) */
    uint64_t emfile_logged_s; /* last "out of descriptors" log line */
    uint64_t emfile_drops;    /* connections refused since then */
    uint64_t refused_logged_s;/* last per-address refusal log line */
    uint64_t refused;         /* refused by admit since then */
} listener;

/* Binds the socket for addr (what: the key, in messages); *port is the
 * port to bind, and gets the one bound when it is 0 (the first worker's
 * choice, which the others then take). Worker 0 first checks that the
 * port is free: see listener.c. -1 with a message in err. */
int listener_open(listener *l, server *srv, uint16_t worker,
                  const config_listen *addr, const char *what,
                  uint16_t *port, char *err, size_t errlen);
/* On the worker's loop: starts accepting into adopt. */
void listener_start(listener *l, uv_loop_t *loop, listener_adopt_fn adopt,
                    void *adopt_arg, const uint32_t *conns,
                    const uint64_t *now_s);
/* Shutdown: closes the socket, so new connections are refused at once
 * (a load balancer fails over) instead of waiting in the backlog. */
void listener_close(listener *l);
/* The worker's loop is stopping: closes the handles. */
void listener_stop(listener *l);
/* After the loop ended. */
void listener_free(listener *l);

#endif
