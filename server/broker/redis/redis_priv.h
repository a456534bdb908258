/*
 * Inside the Redis broker (redis.h): the state its parts share. redis.c
 * implements the broker operations (following streams, publishing, window
 * reads) and handles pub/sub; link.c the connections to each Redis server
 * (connect, timeouts, reconnect, scripts); presence.c presence in Redis;
 * order.c delivery in offset order; record.c and scripts.c what goes to
 * Redis. Nothing outside broker/redis/ includes this. Everything runs on
 * the owning worker's thread.
 */
#ifndef HERALD_BROKER_REDIS_PRIV_H
#define HERALD_BROKER_REDIS_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uthash.h>

#include "base/config.h"
#include "base/server.h"
#include "broker/broker.h"
#include "broker/redis/order.h"
#include "broker/redis/resolve.h"
#include "broker/redis/scripts.h"

#define REDIS_KEY_MAX 340
#define REDIS_WINDOW_MIN 64      /* hot window and local ring, at least */
/* Commands awaiting Redis per link: beyond this, client requests are
 * refused (110) instead of growing hiredis's output buffer without bound. */
#define REDIS_PENDING_MAX 65536
/* Presence entries per refresh script call (presence.c), and expired
 * entries one call removes at most (the script's own bound). */
#define REDIS_PRESENCE_BATCH SCRIPT_REFRESH_SWEEP

extern const char *const REDIS_DOWN;   /* "broker unavailable" */

typedef struct redis_broker redis_broker;
typedef struct rlink rlink;
typedef struct rreq rreq;
typedef struct rresolve rresolve;

/* One command sent to Redis and what to do with its reply. */
typedef void (*rreq_fn)(rreq *rq, redisReply *r);

struct rreq {
    rlink *l;
    rreq_fn done;            /* NULL: the reply only counts (errors logged
                                once per outage) */
    uint8_t script;          /* SCRIPT LOAD: which (scripts.h) */
    void *arg;               /* the request it answers (pub_req, ...) */
    chan_state *c;           /* window reads: the stream (held by the
                                owner's reads count until the reply) */
    uint16_t len;
    char name[];             /* channel, to find the stream again */
};

/* The connections to one Redis server: a command connection and a
 * pub/sub connection (which always holds a subscription to the worker's
 * private heartbeat channel: hiredis 0.14 leaves subscribed mode when the
 * count drops to 0 and would then abort on a confirmation still in
 * flight). */
struct rlink {
    redis_broker *rb;
    uint32_t idx;
    const config_redis *rc;
    redisAsyncContext *cmd, *sub;
    rresolve *resolving;     /* the host name being resolved (connecting) */
    char addr[RESOLVE_ADDR_MAX];   /* numeric address of the last connect */
    int up;                  /* counted as up (srv->broker_down) */
    int connecting;
    int scripts_left;        /* SCRIPT LOAD replies still expected */
    int sub_ready;           /* control channel subscribed */
    uint32_t pending;        /* commands awaiting replies on cmd */
    uint64_t progress_ms;    /* last reply, or when pending became > 0 */
    uint64_t connect_ms;
    uint64_t retry_at_ms;    /* reconnect due (0: not scheduled) */
    uint32_t attempt;
    int down_logged;
    /* Heartbeat: a PUBLISH to the heartbeat channel on cmd, which must come
     * back on sub within redis_timeout_ms (sub's only liveness check). */
    uint64_t hb_seq;         /* the last one sent */
    uint64_t hb_sent_ms;     /* when it was sent; 0: none outstanding */
    uint64_t hb_next_ms;     /* when the next one is due */
};

/* Where a followed stream stands with Redis. */
enum rstream_state {
    RS_IDLE = 0,       /* not subscribed in Redis */
    RS_SUBSCRIBING,    /* SUBSCRIBE sent */
    RS_SYNC,           /* subscribed; reading epoch and top */
    RS_LIVE,           /* delivering */
    RS_UNSUBSCRIBING,  /* UNSUBSCRIBE sent (the last subscriber left) */
    RS_DOWN,           /* the link is down; subscribers kept, repaired */
};

/* The broker's state of one stream (chan_state.bs). */
struct broker_stream {
    UT_hash_handle hh;       /* by channel name (the owner's c->name) */
    chan_state *c;
    rlink *l;
    uint8_t state;           /* enum rstream_state */
    uint8_t await_reset;     /* reset while a catch-up waited */
    uint64_t await_top;      /* a subscribe waits until delivered this far
                                (catch_up); 0: none */
    uint64_t await_until_ms; /* ... or until then */
    order ord;
};

struct redis_broker {
    broker b;
    server *srv;
    uint16_t worker;
    uv_loop_t *loop;
    ids_rng rng;
    uint32_t n;
    rlink *links;
    struct broker_stream *streams;   /* uthash by name */
    uint32_t n_awaiting;     /* streams with await_top set */
    uv_timer_t timer;
    int stopping;
    uint64_t next_refresh_ms;
    uint64_t next_keep_ms;   /* stream keys of followed channels */
    char sha[SC_N][41];
    char ctl[REDIS_KEY_MAX]; /* cluster control, every worker: P:!ctl */
    char reply[REDIS_KEY_MAX]; /* this worker's answers: P:!re:<id> */
    char hb[REDIS_KEY_MAX];  /* this worker's heartbeat channel, P:!hb:<id>
                                (private: a random id per start) */
    uint64_t last_tick_ms;   /* the timer's previous run */
    int late_tick;           /* the previous run came late: its timeout
                                verdicts were deferred by one tick */
    /* Webhooks across nodes (occupancy.c). */
    char member[96];         /* "<node>.<start ms>/<worker>" */
    uint8_t *lease_held;     /* per link: a renewal found the lease */
    struct occ_retry *occ_retry; /* removals that failed, per link */
    uint32_t n_occ_retry;
};

/* ---- redis.c ---- */
uint64_t redis_now(const redis_broker *rb);
/* prefix:{channel}suffix: the braces are a Redis Cluster hash tag, so all
 * keys of a channel hash to one slot. */
size_t redis_key(const redis_broker *rb, char *out, const char *chan,
                 size_t len, const char *suffix);
rlink *redis_link_of(redis_broker *rb, const char *chan, size_t len);
/* The link is up: resubscribe and repair what it carries. */
void redis_link_up(rlink *l);
/* The link went down: streams it carries wait for it. */
void redis_link_lost(rlink *l);
/* A pub/sub message other than the control channel's. */
void redis_on_sub(rlink *l, redisReply *r);

/* ---- link.c ---- */
rreq *rreq_new(rlink *l, rreq_fn done, const char *chan, size_t len);
/* Sends a command on the link's command connection. -1 when it cannot
 * (the request is not consumed: the caller answers and frees it). */
int rlink_send(rlink *l, rreq *rq, int argc, const char **argv,
               const size_t *lens);
/* EVALSHA of a script with nkeys keys, then the arguments. */
int rlink_eval(rlink *l, rreq *rq, int script, int nkeys, const char **kv,
               const size_t *kl, int nargs);
/* SUBSCRIBE or UNSUBSCRIBE on the pub/sub connection. */
int rlink_pubsub(rlink *l, const char *verb, const char *key, size_t klen);
void rlink_connect(rlink *l);
void rlink_down(rlink *l, const char *why);
/* Timeouts, heartbeats, reconnects (every REDIS_TICK_MS). `late`: the
 * loop itself was stalled since the previous tick, so replies may be
 * waiting unread in the sockets: no timeout verdicts this time. */
void rlink_tick(rlink *l, uint64_t now, int late);
/* Closes the connections for good (the worker stops). */
void rlink_close(rlink *l);

/* ---- control.c ---- */
int redis_ask_all(broker *b, const char *body, size_t len, const route *to);
void redis_answer(broker *b, const char *reply_to, size_t rlen,
                  const char *body, size_t len);
/* A pub/sub message or confirmation of a control channel: handled, 1. */
int redis_control_on_sub(rlink *l, redisReply *rep);

/* ---- occupancy.c ---- */
void redis_occupancy_init(redis_broker *rb);
void redis_occupancy_free(redis_broker *rb);
/* A channel's first subscriber here (1) or its last left (0). */
void redis_occupancy(broker *b, chan_state *c, int occupied);
/* A client connected (1) or went (0) on this worker. */
void redis_client_change(broker *b, const char *client, const char *user,
                         int connected);
/* The link is up: channels with subscribers added again, failed removals
 * sent. */
void redis_occupancy_link_up(rlink *l);
/* Every presence_ttl/3: leases, and reaping of dead members. */
void redis_occupancy_tick(redis_broker *rb);

/* ---- presence.c ---- */
void redis_presence_change(broker *b, chan_state *c, int join,
                           const char *client, const char *user);
int redis_presence_query(broker *b, chan_state *c, pres_req *r,
                         const char **errmsg);
/* Renews this node's entries of every followed channel and expires (and
 * announces) those of nodes that stopped. */
void redis_presence_refresh(redis_broker *rb);

#endif
