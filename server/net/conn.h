/*
 * A client connection (the lws per-session data of the WebSocket
 * protocols): the protocol state machine, the receive reassembly buffer,
 * the bounded send queue and the subscriptions. Owned by its worker thread.
 * Also the lws protocol callback, which serves HTTP (/healthz) on the same
 * port and WebSocket at /ws.
 */
#ifndef HERALD_CONN_H
#define HERALD_CONN_H

#include <stdint.h>

#include <libwebsockets.h>

#include <herald/proto.h>

#include "core/hub.h"
#include "base/ids.h"
#include "base/mailbox.h"
#include "net/sendq.h"

struct worker;

/* Commands answered by another worker that one connection may have
 * outstanding; past it, the connection stops being read until replies
 * come back (flow control instead of an unbounded queue). */
#define CONN_MAX_INFLIGHT 64

typedef struct conn {
    struct lws *wsi;
    struct worker *w;
    uint32_t slot, gen;
    uint8_t enc;               /* proto_enc */
    uint8_t live;              /* established and in the slot table */
    uint8_t connected;         /* connect done (or anonymous implied) */
    uint8_t closing;           /* close_code chosen; no more input */
    uint8_t writable_req;      /* lws_callback_on_writable pending */
    uint8_t ping_due;          /* a ping frame is to be written */
    uint8_t awaiting_pong;
    uint8_t rx_overflow;       /* discarding an oversize message */
    uint8_t rx_binary;
    uint8_t rx_active;         /* inside a fragmented message */
    uint8_t flow_off;          /* rx paused for CONN_MAX_INFLIGHT */
    uint8_t malformed;         /* consecutive malformed commands */
    uint8_t close_sent;        /* close frame handed to lws */
    uint8_t flush_queued;      /* on the worker's flush list */
    uint16_t close_code;
    uint16_t inflight;
    uint16_t n_subs;
    char id[IDS_LEN + 1];
    char *user;                /* from the token; NULL = anonymous */
    int64_t expires;           /* token exp, 0 = none */
    sendq q;
    char *rx;                  /* reassembly of fragmented messages */
    uint32_t rx_len, rx_cap;
    hub_sub *subs;             /* this connection's subscriptions */
    struct conn *wprev, *wnext;/* heartbeat wheel slot list */
    struct conn *fprev, *fnext;/* worker flush list */
    uint64_t due_s;            /* next heartbeat check */
    uint64_t last_rx_s;
    uint64_t ping_sent_s;      /* when the last ping was queued */
    double tokens;             /* rate limit bucket */
    uint64_t tokens_ms;
} conn;

extern const struct lws_protocols conn_protocols[];

/* Mailbox replies and deliveries addressed to this worker's connections. */
void conn_on_msg(struct worker *w, msg *m);

/* Starts a graceful close: code and reason go out in a disconnect push
 * (after what is queued, except for 4001/4002 which drop the queue) and in
 * the close frame. */
void conn_close(conn *c, int code, const char *reason, int reconnect);

/* Writes what the connections on the worker's flush list have ready:
 * called once per loop iteration, before the loop waits (uv_prepare). */
void conn_flush(struct worker *w);

/* Heartbeat check from the worker tick. */
void conn_heartbeat(conn *c, uint64_t now_s);

#endif
