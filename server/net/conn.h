/*
 * A worker's client connections: the lws per-session data of the
 * WebSocket protocols (one `conn` each: the protocol state machine, the
 * receive reassembly buffer, the bounded send queue and the
 * subscriptions), and what they share on their worker (`conns`: the
 * connection table, the subscription index, the heartbeat wheel, the list
 * of connections with output to write, the encode buffers). Owned by the
 * worker thread; the worker (worker.h) embeds one `conns` and calls the
 * functions below from its loop. The lws protocol callback also serves
 * plain HTTP on the same port through http.h.
 */
#ifndef HERALD_NET_CONN_H
#define HERALD_NET_CONN_H

#include <stdint.h>

#include <libwebsockets.h>
#include <uv.h>

#include <herald/proto.h>

#include "base/ids.h"
#include "base/mailbox.h"
#include "base/server.h"
#include "core/hub.h"
#include "net/heartbeat.h"
#include "base/log.h"
#include "net/sendq.h"

/* Commands answered by another worker that one connection may have
 * outstanding; past it, the connection's commands wait (the rest of the
 * frame is held, the socket is not read) until half of them are answered:
 * flow control instead of an unbounded queue. The same happens while the
 * connection's queued output is over send_queue_max (a client that sends
 * but does not read); if it stays there for pong_timeout, 4001. */
#define CONN_MAX_INFLIGHT 64

struct conns;
struct metrics_worker;

typedef struct conn {
    struct lws *wsi;
    struct conns *n;
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
    uint8_t flow_off;          /* rx paused (lws_rx_flow_control) */
    uint8_t out_blocked;       /* queued output over send_queue_max */
    uint8_t malformed;         /* consecutive malformed commands */
    uint8_t close_sent;        /* close frame handed to lws */
    uint8_t flush_queued;      /* on the worker's flush list */
    uint8_t hb_suspect;        /* out of the wheel, on the suspects list */
    uint8_t proxied;           /* connected by the connect proxy: its expiry
                                  asks the refresh proxy */
    uint8_t refreshing;        /* a refresh proxy call is out */
    uint16_t close_code;
    uint16_t inflight;
    uint32_t n_subs;
    char id[IDS_LEN + 1];
    uint16_t peer_code;        /* the client's close code, when it closed
                                  first (for metrics; in padding) */
    char *user;                /* from the token; NULL = anonymous */
    int64_t expires;           /* token exp, 0 = none */
    char **grants;             /* `channels` claim, n_grants entries:
                                  channels of private namespaces it opens */
    uint32_t n_grants;
    uint32_t sub_expires;      /* the earliest channel-token exp of the
                                  subscriptions (hub_sub.expires), 0 none */
    char *info;                /* `info` claim as compact JSON, or NULL */
    struct conn_px *px;        /* a command waiting for the backend's
                                  verdict (proxy mode); input waits too */
    sendq q;
    char *rx;                  /* reassembly of fragmented messages */
    uint32_t rx_len, rx_cap;
    char *held;                /* messages received, waiting to be run
                                  (conn_hold) */
    uint32_t held_len;
    uint64_t over_since_s;     /* when output went over send_queue_max */
    uint64_t opened_s;         /* when the WebSocket handshake completed */
    hub_sub *subs;             /* this connection's subscriptions */
    hb_node hb;                /* in the heartbeat wheel */
    struct conn *fprev, *fnext;/* flush list */
    uint64_t last_rx_s;
    uint64_t ping_sent_s;      /* when the last ping was queued */
    double tokens;             /* rate limit bucket */
    uint64_t tokens_ms;
} conn;

/* A connection as it was when referred to: a later close frees its slot
 * and bumps the generation. */
struct conn_ref {
    uint32_t slot, gen;
};

typedef struct conn_slot {
    conn *c;
    uint32_t gen;
} conn_slot;

/* Log lines a client can cause, each behind its own gate (log_gate). */
enum conn_log_line {
    CONN_LOG_SLOW, CONN_LOG_TOKEN, CONN_LOG_PROTOCOL, CONN_LOG_LIMIT,
    CONN_LOG_LINES
};

typedef struct conns {
    server *srv;
    uint16_t worker;          /* this worker's index */
    uv_loop_t *loop;
    hub hub;                  /* this worker's part of the subscriptions */
    ids_rng rng;
    conn_slot *slots;         /* connection table; index = conn slot */
    uint32_t n_slots;
    uint32_t *free_slots;
    uint32_t n_free;
    uint32_t count;           /* live connections */
    hb_wheel wheel;
    uint64_t now_s;           /* monotonic seconds, updated each tick */
    struct conn_ref *suspects; /* no pong in time as a tick saw it: judged
                                  after the next poll (conns_judge) */
    uint32_t n_suspects, cap_suspects;
    conn *flush;              /* connections with output to write */
    proto_buf scratch;        /* coalescing of batched frames */
    proto_buf enc;            /* encoding of replies, stolen into frames */
    int draining;             /* shutting down: no new connections */
    log_gate gates[CONN_LOG_LINES];
    struct lws_context *lws_wake; /* a timeout was armed: wake lws (see
                                     conns_lws_wake) */
    struct metrics_worker *m; /* this worker's counters; NULL: metrics off */
    struct broker *broker;    /* the worker's (clients kept for webhooks) */
    /* The command conn_run is running, as received (a command that waits
     * for a proxy verdict keeps a copy and runs again once allowed). */
    const char *cur_cmd;
    size_t cur_len;
    int cur_binary;
} conns;

extern const struct lws_protocols conn_protocols[];

void conns_init(conns *n, server *srv, uint16_t worker, uv_loop_t *loop);
/* After every connection is gone. */
void conns_free(conns *n);

/* A message for the connections (CON_*): replies and pushes; takes it. */
void conns_receive(conns *n, msg *m);

/* Writes what the connections on the flush list have ready: called once
 * per loop iteration, before the loop waits (uv_prepare); returns 1 when
 * some have more to write. */
int conns_flush(conns *n);

/* Before the loop waits: when a connection's lws timeout (a close
 * deadline) was armed since the last call, makes lws take it into account
 * (lws 4.1 re-arms its timer only after its own events). */
void conns_lws_wake(conns *n);

/* Once a second: heartbeats of the connections due now. */
void conns_tick(conns *n, uint64_t now_s);
/* After each poll of the loop (a uv_check handle): the stale verdicts of
 * the last tick, now that the sockets were read (see conn_heartbeat). */
void conns_judge(conns *n);

/* Shutdown: every connection is closed with 4000 after what is queued,
 * and new ones are closed at once. */
void conns_drain(conns *n);

/* Tells the broker every connected client again (broker_ctl
 * clients_lost; webhooks in a cluster). */
void conns_track_all(conns *n);

/* Starts a graceful close: code and reason go out in a disconnect push
 * (after what is queued, except for 4001/4002 which drop the queue) and in
 * the close frame. */
void conn_close(conn *c, int code, const char *reason, int reconnect);

#endif
