/*
 * Herald C client library (herald_client): WebSocket clients of a Herald
 * server on a libuv loop the application owns.
 *
 * Model. An hc_ctx binds the WebSocket transport (herald/ws.h: libwebsockets
 * on the loop as a "foreign loop") to one uv_loop_t; one context serves many
 * thousands of hc_client connections. Everything runs on the loop's thread: every
 * function here must be called from that thread, and every callback is
 * called on it. For several threads, use one loop and one hc_ctx per thread.
 *
 * A client is a logical connection that survives reconnects: it reconnects
 * by itself with exponential backoff and full jitter, sends `connect` (with
 * the token) again, and resubscribes every channel with `since` = the last
 * position it delivered, so the application sees each channel's
 * publications in offset order, without duplicates, and is told through the
 * subscription callback whenever continuity could not be kept
 * (recovered = 0). See clients/c/README.md for the full semantics.
 *
 * Strings handed to callbacks (hc_str) point into library memory that is
 * valid only during the callback, and are not NUL-terminated.
 */
#ifndef HERALD_CLIENT_H
#define HERALD_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The transport the client is built on; its hc_url_parse() is the URL
 * parser of hc_client_new(). */
#include "herald/ws.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hc_ctx hc_ctx;          /* opaque: one per loop */
typedef struct hc_client hc_client;    /* opaque: one per connection */

typedef enum hc_encoding {
    HC_JSON = 0,       /* herald.v1.json: data is JSON text */
    HC_MSGPACK = 1     /* herald.v1.msgpack: data is one msgpack object */
} hc_encoding;

/* Result codes. 0 is success, positive values are the server's error codes
 * (100..112, protocol-v1.md), negative values are the library's own. */
enum hc_result {
    HC_OK = 0,
    HC_ERR_INVALID = -1,          /* bad argument (URL, channel name, ...) */
    HC_ERR_QUEUE_FULL = -2,       /* max_pending commands or max_queue_bytes */
    HC_ERR_CONNECTION_LOST = -3,  /* sent, but the connection dropped before
                                     the reply: the outcome is unknown */
    HC_ERR_CLOSED = -4,           /* the client is closed or gave up */
    HC_ERR_EXISTS = -5,           /* already subscribed (locally) */
    HC_ERR_PROTOCOL = -6          /* the server sent something undecodable */
};
/* A short text for any result code (server codes included). */
const char *hc_strerror(int code);

typedef struct hc_str {
    const char *ptr;
    size_t len;
} hc_str;

/* --- Context ------------------------------------------------------------ */

typedef struct hc_ctx_options {
    const char *ca_file;   /* PEM CA bundle for wss:// (NULL: system) */
    int lws_log_level;     /* lws_set_log_level() bits (process-wide);
                              0: errors only */
} hc_ctx_options;

/* Creates the lws context on `loop`. opt may be NULL. NULL on failure. */
hc_ctx *hc_ctx_new(uv_loop_t *loop, const hc_ctx_options *opt);
/* Starts shutting down, from the loop thread (for example in a signal
 * handler's callback): every client is closed as by hc_client_close()
 * (close frames are sent), then the lws context releases its loop handles,
 * so uv_run() returns once the application's own handles are closed too. */
void hc_ctx_close(hc_ctx *ctx);
/* After uv_run() has returned: finishes the lws context's destruction
 * (lws needs a second pass on a foreign loop; this runs the loop briefly)
 * and frees the context. Calls hc_ctx_close() first if needed. */
void hc_ctx_free(hc_ctx *ctx);

/* --- Client ---------------------------------------------------------------*/

typedef enum hc_state {
    HC_STATE_CONNECTING = 1,  /* opening the WebSocket */
    HC_STATE_HANDSHAKE,       /* WebSocket open, `connect` sent */
    HC_STATE_CONNECTED,       /* `connect` answered ok */
    HC_STATE_WAITING,         /* disconnected, reconnect timer running */
    HC_STATE_CLOSED           /* gave up (see hc_disconnected) or closed */
} hc_state;

/* One publication: from a pub push, or in a history reply. */
typedef struct hc_pub {
    hc_str channel;
    uint64_t offset;
    hc_str epoch;
    const void *data;        /* the data in the client's encoding: JSON
                                text, or one msgpack object */
    size_t data_len;
    int binary;              /* JSON only: data is base64 of msgpack bin */
    hc_str client, user;     /* publisher info (empty when absent) */
    int64_t time_ms;         /* 0 when absent */
} hc_pub;

typedef struct hc_presence_entry {
    hc_str client, user;
} hc_presence_entry;

/* The answer to one command. The reply callback of every accepted command
 * is called exactly once, with the server's reply or with a local error. */
typedef struct hc_reply {
    int code;                /* 0 ok; > 0 server error; < 0 HC_ERR_* */
    hc_str message;          /* error text (server or library) */
    hc_encoding encoding;
    hc_str ok;               /* the raw "ok" map in the client's encoding */
    /* Fields of ok replies, when present: */
    uint64_t offset;         /* subscribe, publish, history */
    hc_str epoch;
    int recovered;           /* subscribe with since: 0/1; else -1 */
    const hc_pub *pubs;      /* history, subscribe: publications */
    size_t n_pubs;
    const hc_presence_entry *presence;   /* presence: clients */
    size_t n_presence;
    int64_t expires;         /* refresh: the new token's exp, 0 if none */
} hc_reply;

typedef void (*hc_reply_cb)(hc_client *c, const hc_reply *r, void *arg);

typedef struct hc_connected {
    hc_str client, node;     /* the server's connect reply */
    uint32_t ping;           /* server ping interval (s) */
    int64_t expires;         /* token expiry (unix s), 0 if none */
    unsigned reconnects;     /* how many times this client reconnected */
} hc_connected;

typedef struct hc_disconnected {
    int code;                /* WebSocket close code; 1006 when the
                                connection failed or dropped without one */
    hc_str reason;
    int reconnect;           /* 1: a reconnect is scheduled */
    uint64_t delay_ms;       /* ... in this many milliseconds */
} hc_disconnected;

typedef enum hc_sub_kind {
    HC_SUB_SUBSCRIBED = 1,   /* the first subscribe was answered ok */
    HC_SUB_RESUBSCRIBED,     /* resubscribed after a reconnect */
    HC_SUB_GAP,              /* the live stream skipped offsets or changed
                                epoch: publications were missed */
    HC_SUB_FAILED,           /* a resubscribe was refused: the channel has
                                been removed from the subscription set */
    HC_SUB_UNSUBSCRIBED      /* the server ended the subscription (code 109:
                                its channel token expired); removed from
                                the subscription set */
} hc_sub_kind;

typedef struct hc_sub_event {
    hc_sub_kind kind;
    hc_str channel;
    hc_str epoch;
    uint64_t offset;         /* position after this event */
    int recovered;           /* 1: nothing was missed; 0: publications were
                                missed (gap); -1: no since was involved */
    int code;                /* HC_SUB_FAILED, HC_SUB_UNSUBSCRIBED: the
                                server's code */
    hc_str message;
} hc_sub_event;

typedef struct hc_callbacks {
    /* `connect` answered ok (also after every reconnect). */
    void (*connected)(hc_client *c, const hc_connected *ev, void *user);
    /* The WebSocket closed or could not be opened. */
    void (*disconnected)(hc_client *c, const hc_disconnected *ev, void *user);
    /* A publication on a subscribed channel, in offset order, never twice. */
    void (*pub)(hc_client *c, const hc_pub *pub, void *user);
    /* Subscription state changes, including every recovery outcome. */
    void (*subscription)(hc_client *c, const hc_sub_event *ev, void *user);
    /* join (join = 1) and leave pushes. */
    void (*join)(hc_client *c, int join, hc_str channel, hc_str client,
                 hc_str user, void *user_arg);
    /* The server's disconnect push, just before it closes. */
    void (*disconnect_push)(hc_client *c, int code, hc_str reason,
                            int reconnect, void *user);
    /* An error reply that matches no command, or an undecodable message
     * (code HC_ERR_PROTOCOL). */
    void (*error)(hc_client *c, int code, hc_str message, void *user);
} hc_callbacks;

typedef struct hc_options {
    const char *url;             /* ws://host:port/path or wss://... */
    hc_encoding encoding;        /* default HC_JSON */
    const char *token;           /* connection JWT, or NULL (anonymous) */
    const char *name, *version;  /* sent in connect, optional */
    hc_callbacks cb;
    void *user;                  /* passed to every hc_callbacks call */
    int reconnect;               /* default 1; 0: never reconnect */
    unsigned backoff_base_ms;    /* default 250 */
    unsigned backoff_max_ms;     /* default 10000 */
    /* Commands accepted but not answered yet (queued or in flight), and
     * bytes encoded but not yet written. Over either: HC_ERR_QUEUE_FULL. */
    unsigned max_pending;        /* default 4096 */
    size_t max_queue_bytes;      /* default 1 MiB */
    size_t max_message_bytes;    /* largest server message; default 16 MiB */
    /* Liveness: when nothing arrives for the server's ping interval the
     * client sends a WebSocket ping; with no answer within this many more
     * ms it drops the connection and reconnects. 0 disables. */
    unsigned pong_timeout_ms;    /* default 10000 */
    int tls_insecure;            /* wss: accept self-signed/mismatched */
    /* Local (source) IP address to bind before connecting, e.g.
     * "127.0.0.7", or NULL for the kernel's choice. A load generator
     * spreads many connections over 127.0.0.0/8 this way, past the 64k
     * ephemeral ports of one source address. Passed to lws as `iface`
     * (an interface name works too). */
    const char *local_addr;
} hc_options;

void hc_options_init(hc_options *o);

/* Creates a client and starts connecting. The options' strings are copied.
 * Returns NULL with a message in err for a bad URL or option. */
hc_client *hc_client_new(hc_ctx *ctx, const hc_options *o, char *err,
                         size_t errlen);
/* Closes the client: sends a close frame (1000) if connected, calls every
 * pending reply callback with HC_ERR_CLOSED (before returning), and calls
 * nothing else afterwards. The client's memory is released later, when lws
 * is done with the connection; `c` must not be used after this call. Safe
 * to call from inside any of the client's callbacks. */
void hc_client_close(hc_client *c);

/* Drops the current connection abruptly, without a close frame (the server
 * sees the TCP connection end), and reconnects as after a network failure:
 * the disconnected callback gets 1006, then the usual backoff, connect and
 * resubscribe with `since` follow. Does nothing unless a connection is
 * open or being opened. For tests and load generators (herald-bench's
 * reconnect scenario). */
void hc_client_drop(hc_client *c);

/* Protocol faults of the server that the library absorbed, counted over
 * the client's life (every connection). A server that keeps the contract
 * (protocol-v1.md) causes none; the application cannot see them otherwise,
 * since the library hides the first and reports the second as an ordinary
 * recovered = 0. For tests and load generators (herald-bench's churn
 * scenario counts them as duplicates and misreported recoveries). */
typedef struct hc_client_faults {
    /* Publications at or below the channel's delivered position in its
     * epoch (a repeated offset, or one older than a subscribe reply's top
     * or than `since`): dropped, not delivered. */
    uint64_t duplicates;
    /* Subscribe replies with recovered:true whose publications did not
     * continue the position up to the reply's offset, or whose epoch was
     * not the position's: reported to the application as recovered = 0. */
    uint64_t false_recoveries;
} hc_client_faults;
void hc_client_faults_get(const hc_client *c, hc_client_faults *out);

hc_state hc_client_state(const hc_client *c);
void *hc_client_user(const hc_client *c);
hc_encoding hc_client_encoding(const hc_client *c);

/* --- Commands -------------------------------------------------------------
 * Each returns HC_OK when the command was accepted (its callback, which
 * may be NULL, will be called exactly once, never before the function
 * returns), or a negative HC_ERR_* (the callback is not called).
 *
 * While the client is not connected, commands are queued (bounded by
 * max_pending / max_queue_bytes) and sent, in order, after the next
 * successful connect. A command already sent when the connection drops
 * fails with HC_ERR_CONNECTION_LOST: it may or may not have been executed.
 * Subscriptions are state, not commands: see hc_subscribe(). */

typedef struct hc_since {
    uint64_t offset;
    const char *epoch;
} hc_since;

/* Adds `channel` to the client's subscription set and subscribes. The
 * callback gets the first answer: ok (then publications flow to
 * callbacks.pub) or the server's error (the channel is then removed from
 * the set). A subscribe interrupted by a disconnect is not failed: it is
 * sent again after the reconnect. `since` (may be NULL) asks the server to
 * recover from that position (e.g. one the application stored). */
int hc_subscribe(hc_client *c, const char *channel, const hc_since *since,
                 hc_reply_cb cb, void *arg);
/* Removes `channel` from the set: no publication of it is delivered after
 * this call. The callback gets the server's answer, or ok when the
 * connection dropped first (a new connection is not subscribed). */
int hc_unsubscribe(hc_client *c, const char *channel, hc_reply_cb cb,
                   void *arg);
/* Publishes data given in the client's encoding (JSON text, or one msgpack
 * object). JSON line breaks are replaced by spaces (they can only be
 * whitespace in valid JSON, and a command must be one line). */
int hc_publish(hc_client *c, const char *channel, const void *data,
               size_t len, hc_reply_cb cb, void *arg);

typedef struct hc_history_options {
    const hc_since *since;   /* NULL: from the oldest retained */
    int has_limit;
    uint32_t limit;
    int reverse;
} hc_history_options;

int hc_history(hc_client *c, const char *channel,
               const hc_history_options *opt, hc_reply_cb cb, void *arg);
int hc_presence(hc_client *c, const char *channel, hc_reply_cb cb, void *arg);
int hc_ping(hc_client *c, hc_reply_cb cb, void *arg);
/* Sends `refresh` with a new connection token (same user) before the one
 * the connection has expires; the reply carries its `expires`. Once the
 * server accepts it, the new token is also the one later reconnects send
 * (a refused one changes nothing). */
int hc_refresh(hc_client *c, const char *token, hc_reply_cb cb, void *arg);

/* Appends `data` (in encoding enc) as JSON text to a malloc'd,
 * NUL-terminated string (msgpack bin becomes a base64 string). Returns
 * NULL if the data is not representable in JSON. free() the result. */
char *hc_data_to_json(hc_encoding enc, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
