/*
 * Internals of the C client library shared by its source files: the
 * context (one lws context on one uv loop), the client, its commands and
 * subscriptions. Everything here is owned by the loop thread; nothing is
 * locked. Symbols use the hc__ prefix and are not part of the contract.
 */
#ifndef HC_INTERNAL_H
#define HC_INTERNAL_H

#include <libwebsockets.h>
#include <uthash.h>

#include "herald/client.h"
#include "herald/proto.h"
#include "herald/proto_client.h"
#include "hc_policy.h"

/* Frames of batched commands stay below this (the server refuses a whole
 * frame over its max_message_size, 64 KiB by default); a larger command
 * travels alone. */
#define HC_BATCH_MAX (16 * 1024)
/* How long hc_ctx_close() waits for close handshakes before it destroys
 * the lws context anyway. */
#define HC_CLOSE_GRACE_MS 2000

/* Connections of a context are spread over up to HC_LWS_SHARDS lws
 * contexts on the same loop, one more per HC_LWS_SHARD_WSI live
 * connections: lws 4.1 keeps each context's timers (connect and handshake
 * timeouts) in one list sorted by deadline, inserted by walking from the
 * head, so k connections connecting at once cost O(k^2) in one context; a
 * reconnect storm of 10,000 clients spent seconds there. */
#define HC_LWS_SHARDS 32
#define HC_LWS_SHARD_WSI 256

struct hc_ctx {
    uv_loop_t *loop;
    /* Each cleared by lws (pcontext) when gone. */
    struct lws_context *lws[HC_LWS_SHARDS];
    unsigned n_shards;            /* created so far */
    unsigned next_shard;          /* round robin of connection attempts */
    struct lws_context_creation_info info;  /* to create more shards */
    void *loops[1];
    char *ca_file;                /* owned copy for info */
    uv_timer_t destroy_timer;     /* runs lws_context_destroy off-callback */
    int closing;
    int destroy_started;
    int timer_closed;
    unsigned n_wsi;               /* live client wsis of this context */
    uint64_t rng;                 /* jitter */
    struct hc_client *clients;    /* utlist DL list */
};

/* One command accepted from the application (or made internally). Its
 * encoded bytes sit in the client's `out` buffer, in list order, until
 * written; then it waits for its reply (replies come in command order). */
typedef struct hc_cmd {
    struct hc_cmd *next, *prev;
    uint32_t id;
    uint8_t op;             /* proto_op */
    uint8_t internal;       /* connect or resubscribe: not the app's */
    uint8_t sent;
    uint8_t since_sent;     /* subscribe carried `since` */
    uint32_t len;           /* bytes in out (JSON: with its '\n') */
    hc_reply_cb cb;
    void *arg;
    struct hc_sub *sub;     /* subscribe */
} hc_cmd;

typedef struct hc_sub {
    UT_hash_handle hh;
    hc__stream st;          /* delivered position */
    int active;             /* subscribed on the current connection */
    int answered;           /* the first reply has been reported */
    hc_reply_cb cb;         /* first reply */
    void *arg;
    hc_cmd *cmd;            /* subscribe in flight on this connection */
    int has_since;          /* the application's since, until has_pos */
    uint64_t since_offset;
    size_t since_epoch_len;
    char since_epoch[HC_EPOCH_MAX + 1];
    size_t len;
    char channel[];
} hc_sub;

struct hc_client {
    hc_ctx *ctx;
    struct hc_client *next, *prev;     /* ctx->clients */
    hc_options opt;                    /* strings point into `strs` */
    char *strs;
    char host[256];
    char hosthdr[300];
    char path[1024];
    int port, tls;
    proto_enc enc;

    hc_state state;
    struct lws *wsi;                   /* current connection, or NULL */
    unsigned n_wsi;                    /* wsis still pointing at us */
    uv_timer_t timer;                  /* reconnect delay / liveness */
    int timer_closed;

    proto_sreader rd;
    proto_buf rx;                      /* reassembly of fragments */
    proto_buf out;                     /* encoded, unwritten commands */
    size_t out_off;                    /* bytes of out already written */
    hc_cmd *cmds;                      /* utlist DL: sent, then unsent */
    unsigned n_pending;                /* application commands in cmds */
    hc_sub *subs;                      /* uthash by channel */
    uint32_t next_id;

    unsigned attempt;                  /* failed attempts in a row */
    unsigned reconnects;
    int ever_connected;
    int close_code;                    /* from the close frame */
    char close_reason[124];
    int got_close;
    int push_code, push_reconnect, got_push;
    int conn_failed;                   /* connect refused here */
    int want_close;                    /* send a close frame (app close) */
    int ping_due;
    uint64_t last_rx_ms;
    uint32_t ping_s;
    int app_closed;
    int depth;                         /* entry points on the stack */
};

#endif
