/*
 * WebSocket client connections on a libuv loop the application owns: the
 * transport the Herald client (client.h) is built on, public so that other
 * WebSocket clients on the same loop (herald-bench's peer drivers) use it
 * too instead of a copy of the libwebsockets handling.
 *
 * Model. An hc_ws_ctx binds libwebsockets 4.1's client role to one
 * uv_loop_t as a foreign loop. It spreads its connections over up to 32 lws
 * contexts on that loop, one more per 256 live connections, because lws 4.1
 * keeps each context's timers (connect and handshake timeouts) in one list
 * sorted by deadline and inserts by walking it: k connections opening at
 * once in one context cost O(k^2) (a reconnect storm of 10,000 clients
 * spent seconds there). Only the first context does TLS (a TLS client
 * context loads the system CA store, about 1 MB), so every wss:// connection
 * uses it. An hc_ws is one connection, one attempt: it never reconnects
 * (the Herald client makes a new one per attempt).
 *
 * Messages, not frames: the owner sees every received text or binary
 * message once, whole (lws hands over pieces of at most 1 KiB, the
 * per-connection receive buffer; they are reassembled here up to
 * max_message), and sends whole messages. Pings from the server are
 * answered by lws; hc_ws_ping() sends one.
 *
 * Sending, two ways. hc_ws_send() queues a copy of a message; queued
 * messages are written in order when the socket takes them, several per
 * WRITEABLE while it is not choked. An owner that builds its frames at
 * write time and must know which bytes reached the socket (the Herald
 * client: a command written before a connection drop has an unknown
 * outcome, one not yet written is sent again after the reconnect) gives a
 * writeable callback instead: after hc_ws_want_write() it is called when
 * the socket can take a frame and nothing is queued, and writes one message
 * with hc_ws_write(), straight from its own buffer.
 *
 * Threading and lifetime: every function must be called on the loop's
 * thread and every callback runs there. After hc_ws_close() or hc_ws_drop(),
 * or after its closed callback, an hc_ws calls nothing back and must not be
 * used; it is freed once libwebsockets has let go of it (never while one of
 * its callbacks is on the stack).
 */
#ifndef HERALD_WS_H
#define HERALD_WS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- URLs ------------------------------------------------------------------ */

typedef struct hc_url {
    int tls;              /* wss:// */
    int port;             /* 80 or 443 when the URL names none */
    char host[256];       /* an IPv6 address without its brackets */
    char path[1024];      /* from the first '/' or '?'; "" when none */
} hc_url;

/* Takes a ws:// or wss:// URL apart. 0, or -1 with a message in err
 * (scheme, host, port or path invalid or too long; a fragment is
 * refused). */
int hc_url_parse(const char *url, hc_url *u, char *err, size_t errlen);
/* "host:port" for the Host and Origin headers, "[host]:port" for an IPv6
 * address (RFC 3986 authority); cut to n - 1 bytes. */
void hc_url_authority(const hc_url *u, char *out, size_t n);

/* --- Context ----------------------------------------------------------------- */

typedef struct hc_ws_ctx hc_ws_ctx;   /* opaque: one per loop */
typedef struct hc_ws hc_ws;           /* opaque: one connection */

typedef struct hc_ws_ctx_options {
    const char *ca_file;   /* PEM CA bundle for wss:// (NULL: system) */
    int lws_log_level;     /* lws_set_log_level() bits (process-wide);
                              0: errors only */
} hc_ws_ctx_options;

/* Creates the first lws context on `loop` (a bad CA file fails here).
 * opt may be NULL. NULL with a message in err (may be NULL) on failure. */
hc_ws_ctx *hc_ws_ctx_new(uv_loop_t *loop, const hc_ws_ctx_options *opt,
                         char *err, size_t errlen);
/* Starts shutting down: closes every connection still open as by
 * hc_ws_close() (no callbacks), waits up to 2 s for their close handshakes,
 * then lets lws release its loop handles, so that uv_run() returns once the
 * application's own handles are closed too. */
void hc_ws_ctx_close(hc_ws_ctx *ctx);
/* After uv_run() has returned: finishes the lws contexts' destruction (lws
 * needs a second pass on a foreign loop; this runs the loop briefly) and
 * frees everything. Calls hc_ws_ctx_close() first if needed. */
void hc_ws_ctx_free(hc_ws_ctx *ctx);

/* --- Connections --------------------------------------------------------------- */

/* Why a connection ended (the closed callback). */
typedef struct hc_ws_closed {
    int was_open;          /* the opening handshake had completed */
    int remote;            /* the server sent a close frame with a code:
                              code and reason are that frame's */
    int code;              /* remote: the server's code; otherwise 1006,
                              or 1009 when a message exceeded max_message */
    const char *reason;    /* NUL-terminated; remote: the frame's reason
                              (may be empty), otherwise what happened */
} hc_ws_closed;

typedef struct hc_ws_callbacks {
    /* The opening handshake is done. */
    void (*open)(hc_ws *ws, void *user);
    /* One whole received message (valid during the call only). */
    void (*message)(hc_ws *ws, int binary, const char *data, size_t len,
                    void *user);
    /* Optional: the socket can take a message and nothing is queued, after
     * hc_ws_want_write(); write one with hc_ws_write() (and call
     * hc_ws_want_write() again for more). */
    void (*writeable)(hc_ws *ws, void *user);
    /* The connection failed to open, or is closed (by either side) or lost.
     * Called once, unless hc_ws_close()/hc_ws_drop() came first. */
    void (*closed)(hc_ws *ws, const hc_ws_closed *ev, void *user);
} hc_ws_callbacks;

typedef struct hc_ws_options {
    const char *url;            /* ws://host:port/path?query or wss:// */
    const char *default_path;   /* sent when the URL has no path (NULL:
                                   "/"); a query alone gets "/" before it */
    const char *local_addr;     /* source address to bind, or NULL */
    const char *subprotocol;    /* Sec-WebSocket-Protocol, or NULL */
    const char *origin;         /* Origin header, or NULL for none */
    int tls_insecure;           /* wss://: accept self-signed, expired and
                                   other-host certificates */
    size_t max_message;         /* larger received messages drop the
                                   connection (1009); 0: 16 MiB */
    const hc_ws_callbacks *cb;
    void *user;
} hc_ws_options;

/* Starts connecting (strings are copied). NULL with a message in err (may
 * be NULL) on a bad URL, a closing context, or a connection lws refused at
 * once; later failures come through the closed callback, never from inside
 * this call. */
hc_ws *hc_ws_open(hc_ws_ctx *ctx, const hc_ws_options *o, char *err,
                  size_t errlen);

/* Queues a copy of one message. 0, or -1 when the connection is not open. */
int hc_ws_send(hc_ws *ws, int binary, const void *data, size_t len);

/* Asks for the writeable callback (nothing when not open). */
void hc_ws_want_write(hc_ws *ws);

/* Bytes that must be writable in front of the data given to hc_ws_write()
 * (lws builds the frame header there): libwebsockets' LWS_PRE. */
#define HC_WS_PRE 16

/* Only inside the writeable callback: writes one message now from `data`,
 * with HC_WS_PRE bytes before it that may be overwritten; the message bytes
 * are changed too (lws masks a client frame in place). 0 when lws took it
 * whole (buffering what the socket did not take), -1 when the write
 * failed: how much reached the server is unknown, and the connection is
 * reported closed after the callback returns. */
int hc_ws_write(hc_ws *ws, int binary, void *data, size_t len);

/* Sends a ping (ahead of queued messages). */
void hc_ws_ping(hc_ws *ws);

/* uv_now() of the last sign of life from the server: the opening
 * handshake, any received data, a pong. */
uint64_t hc_ws_last_rx_ms(const hc_ws *ws);

/* Closes with a close frame (1000) when open, unsent messages discarded;
 * no callback follows. */
void hc_ws_close(hc_ws *ws);
/* Drops the connection without a close frame (the server sees the TCP
 * connection end, as in a network failure); no callback follows. */
void hc_ws_drop(hc_ws *ws);

/* lws contexts created so far (1 .. 32; see the model above). */
unsigned hc_ws_ctx_shards(const hc_ws_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
