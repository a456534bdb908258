/*
 * The broker: who numbers a channel's publications and carries them (and
 * join/leave) to every node that has subscribers. The channel owner
 * (core/owner.c) holds every channel rule and calls a broker through this
 * small interface; the broker answers through the owner's sink. Two
 * backends implement it, in the spirit of redis's ae.c over ae_epoll.c and
 * ae_kqueue.c:
 *
 *   broker/memory.c   a single node: the owner's own stream is the truth
 *                     (continued from the durable store when the
 *                     namespace is durable); delivery is immediate.
 *   broker/redis/     cluster mode: Redis numbers publications (a Lua
 *                     script), pub/sub carries them to every node, which
 *                     delivers them in offset order and repairs gaps from
 *                     Redis's hot window.
 *
 * Everything runs on the owner's worker thread. A call that can complete
 * at once may call the sink before it returns (the memory broker always
 * does): after an operation returned 0 the caller must not touch the
 * request again. Operations return 0 (accepted), BROKER_AGAIN (the stream
 * is not ready yet: the owner parks the request and handles it again when
 * the sink's ready() says so), or a protocol error code with *errmsg set
 * to a static text or NULL.
 */
#ifndef HERALD_BROKER_H
#define HERALD_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "core/channel.h"
#include "core/pub.h"
#include "core/requests.h"

#define BROKER_AGAIN (-1)

/* What a window read found: the stream as the broker has it now. */
typedef struct broker_window {
    const char *epoch;       /* IDS_LEN bytes */
    uint64_t top;            /* the stream's newest offset */
    uint64_t first;          /* the oldest offset the window holds, 0 when
                                it is empty (before the caller's keep) */
    publist pubs;            /* the records asked for; the sink takes them */
} broker_window;

/* The owner's side. ctx is the owner. c stays valid during a call, but a
 * broker must not touch c after ready() or idle() returned: the owner may
 * have freed it. */
typedef struct broker_sink {
    void *ctx;
    /* The stream of a channel, if the owner has one. */
    chan_state *(*find)(void *ctx, const char *chan, size_t len);
    /* The stream's position as the broker knows it (a first sync). */
    void (*position)(void *ctx, chan_state *c, const char *epoch,
                     uint64_t top);
    /* The next publication of a followed stream, in offset order. */
    void (*deliver)(void *ctx, chan_state *c, pub *p);
    /* The broker lost the stream (a gap it cannot fill, a new epoch): the
     * local subscribers must recover. */
    void (*reset)(void *ctx, chan_state *c, const char *epoch, uint64_t top,
                  const char *why);
    /* The stream is ready (code 0: parked requests may go) or cannot be
     * (code: they fail with it). */
    void (*ready)(void *ctx, chan_state *c, int code, const char *errmsg);
    /* The broker holds nothing more for the stream (it unsubscribed):
     * free it if unused. */
    void (*idle)(void *ctx, chan_state *c);
    /* A join or leave to announce to this node's subscribers. */
    void (*announce)(void *ctx, chan_state *c, int join, const char *client,
                     const char *user, size_t user_len);
    /* A publish is sequenced (code 0: r->offset, r->epoch set, and r->p
     * sealed when the owner asked for it) or failed. */
    void (*published)(void *ctx, pub_req *r, int code, const char *errmsg);
    /* A window read is back (w NULL: the broker could not answer). */
    void (*window)(void *ctx, chan_state *c, chan_req *r, broker_window *w);
    /* A presence query is answered (r->entries set) or failed. */
    void (*presence)(void *ctx, pres_req *r, int code, const char *errmsg);
} broker_sink;

/* Cluster control, the server API's questions to every node (channels,
 * disconnect, info): the worker's side, set by the worker. */
typedef struct broker_ctl {
    void *ctx;
    /* An ask (JSON) from some node's API, for this worker: answer it with
     * answer(reply_to). */
    void (*asked)(void *ctx, const char *reply_to, size_t rlen,
                  const char *body, size_t len);
    /* An answer (JSON) to one of this worker's asks. */
    void (*answered)(void *ctx, const char *body, size_t len);
    /* An ask went out: `receivers` workers of all nodes got it (each
     * answers once), or -1: it could not be sent. */
    void (*sent)(void *ctx, const route *to, long receivers);
    /* The broker's copy of this worker's clients (client_change) may be
     * incomplete (a link came back, Redis may have lost its data): tell
     * it every connected client again. NULL: nothing to tell. */
    void (*clients_lost)(void *ctx);
} broker_ctl;

typedef struct broker broker;

typedef struct broker_ops {
    const char *name;        /* "memory", "redis" (/healthz, logs) */
    /* On the worker's thread, its loop about to run. */
    void (*start)(broker *b);
    /* The worker is stopping: close connections; what waits fails. */
    void (*stop)(broker *b);
    /* After the loop ended. */
    void (*destroy)(broker *b);
    /* This node has subscribers of c: deliver its publications. 0 when
     * the stream is ready, BROKER_AGAIN (ready() follows), or an error. */
    int (*follow)(broker *b, chan_state *c, const char **errmsg);
    /* Cluster: a client knows the stream up to `offset`, beyond what
     * this node has delivered (it comes from a node ahead). 0 when the
     * node has delivered that far, BROKER_AGAIN when it is on its way
     * (ready() follows once delivered that far, when the stream was reset
     * meanwhile, or after the broker's timeout in any case), or an error.
     * NULL for a broker that is itself the stream (single node). */
    int (*catch_up)(broker *b, chan_state *c, uint64_t offset,
                    const char **errmsg);
    /* c has no subscribers, parked requests or reads: 1 when the owner
     * may free it now (the broker let go of it), 0 when the broker keeps
     * it for now (it calls idle() when it lets go). */
    int (*release)(broker *b, chan_state *c);
    /* The owner needs room (max_channels, history_memory_mb): like
     * release, but what only retention keeps (the ring's history) does not
     * keep c; what correctness needs does (a durable stream with writes
     * not yet in the store would later reload an older top). NULL: the
     * owner uses release. */
    int (*evict)(broker *b, chan_state *c);
    /* The owner frees c whatever the broker holds (shutdown). */
    void (*forget)(broker *b, chan_state *c);
    /* Sequences r->p on the channel (c is the owner's stream). */
    int (*publish)(broker *b, chan_state *c, pub_req *r,
                   const char **errmsg);
    /* Reads the stream's window: epoch, top, first, and up to `limit`
     * records from offset `lo` (newest first when reverse, then the newest
     * `limit` from lo on) among the newest `keep`; answered with window(). */
    int (*read)(broker *b, chan_state *c, chan_req *r, uint64_t lo,
                uint32_t limit, int reverse, uint32_t keep,
                const char **errmsg);
    /* A client joined (1) or left (0) the channel's presence here. */
    void (*presence_change)(broker *b, chan_state *c, int join,
                            const char *client, const char *user);
    /* This node's subscribers of c went from none to one (occupied 1) or
     * from one to none (0). The broker makes the webhook's occupied and
     * vacated events once per channel across the nodes: the memory
     * broker at once; the Redis broker when the set of nodes with
     * subscribers becomes non-empty or empty (docs/webhooks.md). */
    void (*occupancy)(broker *b, chan_state *c, int occupied);
    /* A client of this worker connected (1) or went (0): the Redis broker
     * keeps this node's clients so that another node can make their
     * disconnect events if this one dies; the memory broker has nothing to
     * keep. */
    void (*client_change)(broker *b, const char *client, const char *user,
                          int connected);
    /* Who is present on the channel, across nodes. */
    int (*presence_query)(broker *b, chan_state *c, pres_req *r,
                          const char **errmsg);
    /* A message for the broker that reached the owner's mailbox (the
     * memory broker's durable stream tops); NULL when none are expected. */
    void (*receive)(broker *b, msg *m);
    /* Cluster control: sends an ask (JSON) to every worker of every node
     * (ctl.asked there); ctl.sent follows with how many got it. 0, or -1
     * when it cannot be sent now. NULL for a single node. */
    int (*ask_all)(broker *b, const char *body, size_t len, const route *to);
    /* Answers an ask to the worker that sent it. */
    void (*answer)(broker *b, const char *reply_to, size_t rlen,
                   const char *body, size_t len);
} broker_ops;

struct broker {
    const broker_ops *ops;
    broker_sink sink;        /* set by the owner before start */
    broker_ctl ctl;          /* set by the worker before start */
    uint32_t min_ring;       /* the owner's ring keeps at least this many */
    uint8_t multi_node;      /* other nodes publish to the same streams */
};

#endif
