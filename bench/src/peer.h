/*
 * Peer drivers: how herald-bench drives servers other than Herald (Nchan,
 * Socket.IO, Centrifugo) with the same scenarios, through each peer's real
 * protocol. `--target NAME` selects one; `herald` (the default) does not
 * use this interface (it drives the C client library directly).
 *
 * The bench needs four things of a peer: open a connection, subscribe it to
 * one channel, receive that channel's publications as payload bytes (the
 * payload is the bench's stamp, see stamp.h, sent as a text message), and
 * publish a payload to a channel with an answer (acknowledged or failed).
 * Gaps and duplicates are counted from the stamps' sequence numbers.
 *
 * Threading: a peer context belongs to one bench thread and its uv loop;
 * every call and callback happens on that loop. Nothing is locked.
 */
#ifndef HERALD_BENCH_PEER_H
#define HERALD_BENCH_PEER_H

#include <stddef.h>
#include <uv.h>

typedef struct peer_ctx peer_ctx;
typedef struct peer_client peer_client;

typedef struct peer_callbacks {
    /* A subscriber is connected and its subscription confirmed (or, where
     * the peer confirms nothing, its socket is open and subscribed); a
     * publisher or idle connection is ready. Called once. */
    void (*ready)(peer_client *c, void *user);
    /* A publication on the subscribed channel: its payload bytes. */
    void (*message)(peer_client *c, const char *data, size_t len, void *user);
    /* The connection failed or was lost (ready_before: it had been ready).
     * The client is dead afterwards; the driver frees it after the call. */
    void (*closed)(peer_client *c, int ready_before, const char *why,
                   void *user);
} peer_callbacks;

/* What a connection is for (peer_driver.open). */
typedef enum peer_role {
    PEER_SUBSCRIBER,   /* subscribed to one channel (message callbacks) */
    PEER_PUBLISHER,    /* publishes (no subscription) */
    PEER_IDLE          /* connections scenario: connected the way a real
                          client is (handshake done, e.g. Socket.IO's
                          namespace connect, Centrifugo's connect
                          command), subscribed to nothing it receives */
} peer_role;

/* The answer to peer_driver.publish: ok = 1 acknowledged by the peer,
 * 0 failed (why says how). */
typedef void (*peer_ack_cb)(peer_client *c, int ok, const char *why,
                            void *arg);

typedef struct peer_options {
    const char *url;          /* --url: the peer's base URL, see each driver */
    const char *local_addr;   /* source address to bind, or NULL */
    const peer_callbacks *cb;
    void *user;
} peer_options;

typedef struct peer_driver {
    const char *name;         /* --target value */
    const char *default_url;  /* used when --url is not given */
    /* One context per bench thread, on its loop. NULL + err on failure. */
    peer_ctx *(*ctx_new)(uv_loop_t *loop, char *err, size_t errlen);
    /* Close every client of the context (no callbacks after this) and let
     * the loop run dry: after ctx_close, uv_run returns once everything is
     * closed; then ctx_free releases the rest. */
    void (*ctx_close)(peer_ctx *ctx);
    void (*ctx_free)(peer_ctx *ctx);
    /* A connection in `role` (channel: the subscriber's, else NULL), or
     * NULL with a message on stderr when it cannot be started. */
    peer_client *(*open)(peer_ctx *ctx, const peer_options *o,
                         peer_role role, const char *channel);
    /* Publishes `data` to `channel` from a publisher; `cb` gets the answer
     * exactly once (also when the connection is lost). 0 or -1 (not
     * sent: no callback). */
    int (*publish)(peer_client *c, const char *channel, const char *data,
                   size_t len, peer_ack_cb cb, void *arg);
    /* The peer's server HTTP API for the `api` scenario (apipub.h), or
     * NULL when it has none: the publish endpoint's URL (the default of
     * --api-url; a --api-url without a path gets api_path) and the header
     * line carrying the key that bench/peers/<name>/config sets (the
     * default of --api-key's header). */
    const char *api_url;
    const char *api_path;
    const char *api_auth;
} peer_driver;

/* The drivers (peer_*.c); NULL-terminated list for --target. */
extern const peer_driver peer_nchan;
extern const peer_driver peer_socketio;
extern const peer_driver peer_centrifugo;

#endif
