/*
 * The main port's first bytes: when the server API is served on the main
 * listener (api_listen not set, API keys configured), a new connection
 * goes to the API's HTTP/1.1 server (api/listen.h) when its request line
 * is for /api/v1 or /metrics, and to libwebsockets otherwise (WebSocket
 * handshakes, /healthz, TLS). With the static site (static_dir), the own
 * server takes every request line but /ws's (the site, /healthz,
 * /metrics and the API when it is on this port), and lws keeps the
 * WebSocket handshakes and whatever is not a request line. Both paths then behave exactly as on their
 * own ports: the API keeps its keep-alive, pipelining and bounds, and
 * lws's HTTP server, which cannot safely take request bodies on a
 * kept-alive connection (docs/lws-http.md), never sees an API request.
 *
 * The bytes are only peeked (MSG_PEEK), so whoever takes the socket reads
 * them again. A connection that sends nothing within handshake_timeout is
 * closed; at most SNIFF_MAX connections per worker wait to be told apart
 * (beyond that they go straight to lws, as without the API). Owned by the
 * worker thread.
 */
#ifndef HERALD_NET_SNIFF_H
#define HERALD_NET_SNIFF_H

#include <stdint.h>

#include <uv.h>

#include "base/server.h"
#include "net/listener.h"

#define SNIFF_MAX 4096

typedef struct sniffing sniffing;

typedef struct sniff {
    server *srv;
    uv_loop_t *loop;
    listener_adopt_fn ws, api;    /* where a told-apart socket goes */
    void *ws_arg, *api_arg;
    sniffing *list;               /* connections waiting */
    uint32_t count;
    uv_timer_t retry;             /* re-polls those that sent too little */
    int draining;
    int site;                     /* the static site is on: see above */
} sniff;

void sniff_init(sniff *s, server *srv, uv_loop_t *loop, listener_adopt_fn ws,
                void *ws_arg, listener_adopt_fn api, void *api_arg);
/* A listener_adopt_fn for the main listener. */
int sniff_adopt(void *arg, int fd, void *ticket);
/* Once a second: connections silent for handshake_timeout are closed. */
void sniff_tick(sniff *s, uint64_t now_ms);
/* Shutdown: every waiting connection is closed. */
void sniff_drain(sniff *s);
uint32_t sniff_count(const sniff *s);
/* The loop is stopping: closes the handles. */
void sniff_stop(sniff *s);

/* What the first bytes (n of them) are for: 1 the own HTTP server, 0
 * lws, -1 not known yet (a prefix of a request line that decides). site:
 * the static site is served (everything but /ws is the own server's).
 * Exposed for tests. */
int sniff_classify(const char *p, size_t n, int site);

#endif
