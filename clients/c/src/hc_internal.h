/*
 * Internals of the C client library shared by its source files: the
 * context (one WebSocket transport context, herald/ws.h, on one uv loop),
 * the client, its commands and subscriptions. Everything here is owned by
 * the loop thread; nothing is locked. Symbols use the hc__ prefix and are
 * not part of the contract.
 */
#ifndef HC_INTERNAL_H
#define HC_INTERNAL_H

#include <uthash.h>

#include "herald/client.h"
#include "herald/ws.h"
#include "herald/proto.h"
#include "herald/proto_client.h"
#include "hc_policy.h"

/* Frames of batched commands stay below this (the server refuses a whole
 * frame over its max_message_size, 64 KiB by default); a larger command
 * travels alone. */
#define HC_BATCH_MAX (16 * 1024)

struct hc_ctx {
    uv_loop_t *loop;
    hc_ws_ctx *ws;                /* the transport: lws contexts, sockets */
    int closing;
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
    uint8_t lib_cb;         /* cb is the library's own (it frees arg):
                               called even after the app closed */
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
    hc_options opt;                    /* strings point into `strs`, the
                                          token into `token` after
                                          hc_refresh */
    char *strs;
    char *token;
    char origin[300];                  /* host:port, the Origin header */
    proto_enc enc;

    hc_state state;
    /* The current connection (one per attempt), or NULL. A transport
     * connection calls nothing back once it is closed, dropped or has
     * reported its end, so no callback of an earlier attempt can reach
     * the client. */
    hc_ws *ws;
    uv_timer_t timer;                  /* reconnect delay / liveness */
    int timer_closed;

    proto_sreader rd;
    proto_buf out;                     /* encoded, unwritten commands */
    size_t out_off;                    /* bytes of out already written */
    hc_cmd *cmds;                      /* utlist DL: sent, then unsent */
    unsigned n_pending;                /* application commands in cmds */
    hc_sub *subs;                      /* uthash by channel */
    uint32_t next_id;

    unsigned attempt;                  /* failed attempts in a row */
    unsigned reconnects;
    int ever_connected;
    int got_close;                     /* the server sent a close frame */
    int push_code, push_reconnect, got_push;
    int conn_failed;                   /* connect refused here */
    uint32_t ping_s;
    int app_closed;
    int depth;                         /* entry points on the stack */
    hc_client_faults faults;           /* hc_client_faults_get() */
};

#endif
