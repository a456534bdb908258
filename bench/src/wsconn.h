/*
 * wsconn: a minimal WebSocket client connection for the peer drivers
 * (peer.h), on libwebsockets' client role with a libuv foreign loop (a
 * wsconn_ctx per bench thread, spreading its connections over up to 32 lws
 * contexts: lws 4.1 inserts timers into one sorted list per context, so
 * thousands of connections opening at once in one context cost O(n^2);
 * only the first context does TLS). It moves whole
 * messages: the driver sees each received text or binary message once,
 * reassembled, and sends whole messages (queued in order, written when the
 * socket is writable). Ping/pong is answered by lws.
 *
 * Every call and callback happens on the context's loop thread.
 */
#ifndef HERALD_BENCH_WSCONN_H
#define HERALD_BENCH_WSCONN_H

#include <stddef.h>
#include <uv.h>

typedef struct wsconn_ctx wsconn_ctx;
typedef struct wsconn wsconn;

typedef struct wsconn_cb {
    /* The opening handshake is done. */
    void (*open)(wsconn *c, void *user);
    /* One whole received message. */
    void (*message)(wsconn *c, int binary, const char *data, size_t len,
                    void *user);
    /* The connection failed to open (was_open = 0) or is closed (by either
     * side or lost). Called exactly once, unless wsconn_close() was called
     * first; the wsconn is freed after the call returns. */
    void (*closed)(wsconn *c, int was_open, const char *why, void *user);
} wsconn_cb;

wsconn_ctx *wsconn_ctx_new(uv_loop_t *loop, char *err, size_t errlen);
/* Closes every connection (no callbacks) and lets the loop run dry. */
void wsconn_ctx_close(wsconn_ctx *ctx);
/* After uv_run has returned. */
void wsconn_ctx_free(wsconn_ctx *ctx);

/* url: ws://host:port/path?query (wss:// too). local_addr: source address
 * to bind, or NULL. NULL + err on a bad URL or when the connection cannot
 * be started; later failures come through closed(). */
wsconn *wsconn_open(wsconn_ctx *ctx, const char *url, const char *local_addr,
                    const wsconn_cb *cb, void *user, char *err,
                    size_t errlen);
/* Queues one message (copied). 0, or -1 if the connection is not open. */
int wsconn_send(wsconn *c, int binary, const char *data, size_t len);
/* Sends a close frame and closes; no callback follows. */
void wsconn_close(wsconn *c);
void *wsconn_user(wsconn *c);

#endif
