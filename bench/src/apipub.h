/*
 * HTTP API publishers for herald-bench's `api` scenario: publications sent
 * as HTTP/1.1 POSTs with keep-alive, through libcurl's multi interface
 * driven by the bench thread's libuv loop (curl_multi_socket_action: curl
 * tells which sockets to watch and when its timer is due; the loop does the
 * waiting). One publisher is one curl easy handle with at most one request
 * in flight (HTTP/1.1 without pipelining: one request per connection at a
 * time), so the context's connection pool holds about one connection per
 * publisher and a publisher's publications reach the server in order.
 *
 * The request is `POST URL` with `Content-Type: application/json`, the
 * target's key header and the body {"channel": C, "data": D}, D the raw
 * JSON value given (the bench's stamp, a JSON string). A 200 answer whose
 * body has no "error" member is an acknowledgement (Herald: {"offset",
 * "epoch"}; Centrifugo: {"result": {}}); anything else fails, with the
 * status and the start of the body as the reason.
 *
 * Threading: a context belongs to one bench thread and its loop; every call
 * and callback happens there. curl_global_init must have been called once
 * (apipub_global_init) before any thread creates a context.
 */
#ifndef HERALD_BENCH_APIPUB_H
#define HERALD_BENCH_APIPUB_H

#include <stddef.h>
#include <uv.h>

typedef struct apipub_ctx apipub_ctx;
typedef struct apipub apipub;

/* The answer to apipub_publish: ok = 1 acknowledged, 0 failed (why). */
typedef void (*apipub_cb)(apipub *p, int ok, const char *why, void *arg);

/* Once per process, before the threads. 0, or -1 (message on stderr). */
int apipub_global_init(void);
/* Once, after the threads have ended. */
void apipub_global_cleanup(void);

/* The HTTP client's name and version (curl_version()), for reports. */
const char *apipub_client_version(void);

/* A context on `loop` posting to `url` with the header line `auth` (e.g.
 * "Authorization: apikey KEY"; NULL: none); `max_conns` bounds its
 * connection pool. NULL + err on failure. */
apipub_ctx *apipub_ctx_new(uv_loop_t *loop, const char *url, const char *auth,
                           unsigned max_conns, char *err, size_t errlen);

/* Abandons every request in flight (no callback after this), closes the
 * connections and the loop handles; uv_run then returns once they are
 * closed, and apipub_ctx_free releases the rest. */
void apipub_ctx_close(apipub_ctx *ctx);
void apipub_ctx_free(apipub_ctx *ctx);

/* A publisher (its connection opens with its first request). NULL on
 * failure. Freed by apipub_ctx_free. */
apipub *apipub_new(apipub_ctx *ctx, void *user);
void *apipub_user(const apipub *p);

/* Posts one publication of `data` (len bytes of JSON) to `channel`; `cb`
 * gets the answer exactly once, unless the context closes first. 0, or -1
 * when not sent (a request already in flight, too big, closing). */
int apipub_publish(apipub *p, const char *channel, const char *data,
                   size_t len, apipub_cb cb, void *arg);

#endif
