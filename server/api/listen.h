/*
 * The api_listen server: one worker's HTTP/1.1 connections on its libuv
 * loop, each parsed by http1 (keep-alive, one request at a time: a
 * pipelined request waits in the input buffer until the answer before it
 * is written) and answered by the API's routes (api.h); connections taken
 * from the main port (net/sniff.c) also get the static site (web/site.h)
 * when static_dir is set, and /healthz. Bounds: the input
 * kept per connection (max_head + max_body + one read), a deadline per
 * request (handshake_timeout from its first byte: a slow head or body
 * gets 408 and the close), api_timeout_ms for an owner's answer (504), an
 * idle keep-alive timeout. Owned by the worker thread.
 */
#ifndef HERALD_API_LISTEN_H
#define HERALD_API_LISTEN_H

#include <stdint.h>

#include <uv.h>

#include "base/mailbox.h"
#include "base/server.h"
#include "core/requests.h"

typedef struct api_listen api_listen;

struct broker;

/* b: the worker's broker, for asks of every node (cluster mode). */
api_listen *api_listen_new(server *srv, uint16_t worker, uv_loop_t *loop,
                           struct broker *b);
/* A listener_adopt_fn: the accepted socket becomes an API connection. */
int api_listen_adopt(void *arg, int fd, void *ticket);
/* The same for api_listen's sockets: over TLS when srv->api_tls is set
 * (api/tls.h). */
int api_listen_adopt_tls(void *arg, int fd, void *ticket);
/* An owner's reply for one of this worker's API calls (requests_for_api):
 * answered, or dropped when the call is gone (closed, timed out); m is
 * freed. */
void api_listen_receive(api_listen *a, msg *m);
/* Cluster mode: an answer (JSON) from some node's worker to an ask of
 * this worker's API calls, and how many workers an ask reached (-1: it
 * could not be sent). */
void api_listen_answered(api_listen *a, const char *body, size_t len);
void api_listen_sent(api_listen *a, const route *to, long receivers);
/* Once a second: requests past their deadline, idle connections. */
void api_listen_tick(api_listen *a, uint64_t now_ms);
/* Shutdown: idle connections close now, busy ones after their answer. */
void api_listen_drain(api_listen *a);
/* Connections open (the worker's drain waits for none). */
uint32_t api_listen_count(const api_listen *a);
/* The loop is stopping: closes every handle (frees after the loop ran). */
void api_listen_stop(api_listen *a);
void api_listen_free(api_listen *a);

#endif
