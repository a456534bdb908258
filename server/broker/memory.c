/*
 * The memory broker: a single node. The owner's stream is the whole
 * truth, so sequencing is the next offset of the owner's stream and
 * delivery is immediate; the window is the history ring; join and leave
 * are announced at once; presence is the owner's own set.
 *
 * A durable namespace's stream continues where the store left it: the
 * first use of such a stream (after a start, or after it was dropped from
 * memory) asks the store for its last epoch and offset on a reader thread,
 * and requests wait until the answer is there. Afterwards the stream stays
 * in memory while any publication may still be on its way to the store:
 * reloaded from the store meanwhile, it would take an older top and hand
 * out an offset a second time.
 */
#include "broker/memory.h"

#include <stdlib.h>
#include <string.h>

#include <herald/proto.h>

#include "base/mem.h"
#include "base/server.h"
#include "core/presence.h"
#include "hooks/hooks.h"
#include "store/store.h"

/* Per durable stream: where its position stands. Non-durable streams
 * need none (bs stays NULL). */
enum { MEM_LOADING = 1, MEM_LOADED, MEM_FAILED };

struct broker_stream {
    uint8_t state;
};

typedef struct memory_broker {
    broker b;
    server *srv;
    store *st;               /* durable store, or NULL */
    uint16_t worker;         /* where the store's answers go */
} memory_broker;

static memory_broker *mem_of(broker *b)
{
    return (memory_broker *)b;
}

/* 0 when the stream's position is known, BROKER_AGAIN while it is being
 * read from the store (starting that read the first time). */
static int mem_ready(memory_broker *m, chan_state *c)
{
    if (!m->st || !c->ns->durable)
        return 0;
    if (!c->bs) {
        c->bs = mem_calloc(1, sizeof(*c->bs));
        c->bs->state = MEM_LOADING;
        store_load_last(m->st, m->worker, c->name, c->len);
        return BROKER_AGAIN;
    }
    return c->bs->state == MEM_LOADED ? 0 : BROKER_AGAIN;
}

/* Nothing to connect or close: every operation completes at once. */
static void mem_start(broker *b)
{
}

static void mem_stop(broker *b)
{
}

static void mem_destroy(broker *b)
{
    free(mem_of(b));
}

static int mem_follow(broker *b, chan_state *c, const char **errmsg)
{
    return mem_ready(mem_of(b), c);
}

static void mem_forget(broker *b, chan_state *c)
{
    free(c->bs);
    c->bs = NULL;
}

/* release (keep_history) and evict: whether c may be freed now. */
static int mem_let_go(broker *b, chan_state *c, int keep_history)
{
    memory_broker *m = mem_of(b);
    if (c->bs && c->bs->state == MEM_LOADING)
        return 0;
    /* Never positioned, or the store did not answer: nothing to keep (a
     * stream kept unpositioned would start over at offset 1). */
    if (!c->bs && m->st && c->ns->durable) {
        mem_forget(b, c);
        return 1;
    }
    if (c->bs && c->bs->state == MEM_FAILED) {
        mem_forget(b, c);
        return 1;
    }
    /* A non-durable stream's history exists only here. */
    if (keep_history && history_count(&c->hist) > 0)
        return 0;
    /* Reloaded from the store while a publication is on its way there,
     * the stream would take an older top and hand out an offset twice. */
    if (c->bs && store_backlog(m->st) > 0)
        return 0;
    mem_forget(b, c);
    return 1;
}

static int mem_release(broker *b, chan_state *c)
{
    return mem_let_go(b, c, 1);
}

/* Evicted, a durable stream is reloaded from the store when used again
 * (recovery continues from there); a non-durable one starts a new epoch. */
static int mem_evict(broker *b, chan_state *c)
{
    return mem_let_go(b, c, 0);
}

/* Sequences the draft: the next offset of the stream, delivered at once. */
static int mem_publish(broker *b, chan_state *c, pub_req *r,
                       const char **errmsg)
{
    int rc = mem_ready(mem_of(b), c);
    if (rc)
        return rc;
    pub_seal(r->p, c->top + 1, c->epoch, server_now_ms(mem_of(b)->srv));
    b->sink.deliver(b->sink.ctx, c, r->p);
    r->offset = c->top;
    memcpy(r->epoch, c->epoch, IDS_LEN + 1);
    b->sink.published(b->sink.ctx, r, 0, NULL);
    return 0;
}

/* The window is the ring (keep: it keeps history_size already, and the
 * owner applied history_ttl to it). */
static int mem_read(broker *b, chan_state *c, chan_req *r, uint64_t lo,
                    uint32_t limit, int reverse, uint32_t keep,
                    const char **errmsg)
{
    broker_window w = {
        .epoch = c->epoch,
        .top = c->top,
        .first = history_first_offset(&c->hist),
    };
    int rc = mem_ready(mem_of(b), c);
    if (rc)
        return rc;
    chan_ring_take(c, lo ? lo - 1 : 0, limit, reverse, &w.pubs);
    b->sink.window(b->sink.ctx, c, r, &w);
    publist_free(&w.pubs);
    return 0;
}

static void mem_presence_change(broker *b, chan_state *c, int join,
                                const char *client, const char *user)
{
    if (c->ns->join_leave)
        b->sink.announce(b->sink.ctx, c, join, client, user, strlen(user));
}

static int mem_presence_query(broker *b, chan_state *c, pres_req *r,
                              const char **errmsg)
{
    presence_pack pk;
    presence_pack_set(&pk, &c->presence);
    r->entries = pk.v;
    r->n_entries = pk.n;
    b->sink.presence(b->sink.ctx, r, 0, NULL);
    return 0;
}

/* A durable stream's last position, read by the store. */
static void mem_receive(broker *b, msg *msg_)
{
    store_top_msg *t = (store_top_msg *)msg_;
    chan_state *c = b->sink.find(b->sink.ctx, t->h.chan, t->h.chan_len);
    if (!c || !c->bs || c->bs->state != MEM_LOADING) {
        free(t);
        return;
    }
    if (t->found == STORE_TOP_FAILED) {
        /* Not knowing where the stream stopped, starting it again would
         * hand out offsets twice: refuse until the store answers. */
        c->bs->state = MEM_FAILED;
        free(t);
        b->sink.ready(b->sink.ctx, c, PROTO_E_NOT_AVAILABLE,
                      "durable store unavailable");
        return;
    }
    if (t->found == STORE_TOP_FOUND)
        b->sink.position(b->sink.ctx, c, t->epoch, t->offset);
    c->bs->state = MEM_LOADED;
    free(t);
    b->sink.ready(b->sink.ctx, c, 0, NULL);
}

/* A single node: its own count is the channel's. */
static void mem_occupancy(broker *b, chan_state *c, int occupied)
{
    hooks_emit_channel(mem_of(b)->srv->hooks,
                       occupied ? CONFIG_HOOK_OCCUPIED : CONFIG_HOOK_VACATED,
                       c->name, c->len);
}

/* A single node dies with its clients: nobody is left to tell. */
static void mem_client_change(broker *b, const char *client, const char *user,
                              int connected)
{
    (void)b;
    (void)client;
    (void)user;
    (void)connected;
}

static const broker_ops memory_ops = {
    .name = "memory",
    .start = mem_start,
    .stop = mem_stop,
    .destroy = mem_destroy,
    .follow = mem_follow,
    .release = mem_release,
    .evict = mem_evict,
    .forget = mem_forget,
    .publish = mem_publish,
    .read = mem_read,
    .presence_change = mem_presence_change,
    .occupancy = mem_occupancy,
    .client_change = mem_client_change,
    .presence_query = mem_presence_query,
    .receive = mem_receive,
};

broker *broker_memory_new(server *srv, uint16_t worker)
{
    memory_broker *m = mem_calloc(1, sizeof(*m));
    m->b.ops = &memory_ops;
    m->srv = srv;
    m->st = srv->store;
    m->worker = worker;
    return &m->b;
}
