/*
 * Channel-owner request handling. Requests are turned into replies in
 * place where possible (the request message is re-addressed), so a
 * subscribe or publish costs one message each way.
 */
#include "core/owner.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/channel.h"
#include "broker/redis/cluster.h"
#include "base/log.h"
#include "store/store.h"
#include "net/worker.h"

int64_t owner_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void owner_reply(worker *w, msg *m, uint8_t type, int code)
{
    m->type = type;
    m->code = code;
    worker_post(w->srv, m->route.worker, m);
}

/* Join or leave push to every worker with subscribers; the client itself
 * is excluded by the receiving worker. */
static void owner_broadcast_join(worker *w, chan_state *c, int join,
                                 const char *client, const char *user)
{
    for (uint32_t i = 0; i < w->srv->n_workers; i++) {
        if (!c->wcount[i])
            continue;
        msg *j = msg_new(MSG_JOIN, c->name, c->len, user, strlen(user));
        j->flag = (uint8_t)join;
        memcpy(j->client, client, IDS_LEN + 1);
        worker_post(w->srv, (uint16_t)i, j);
    }
}

/* Store reads one recovery may take when the ring moves on meanwhile. */
#define OWNER_READ_ROUNDS 8

/* The durable store of a channel's namespace, or NULL. */
static store *owner_store(worker *w, const config_ns *ns)
{
    return ns->durable ? w->srv->store : NULL;
}

/* Asks the store for the publications of c in (lo, hi); m comes back as
 * MSG_STORE_READ. The stream is kept in memory meanwhile (owner_hold). */
static void owner_read_store(worker *w, chan_state *c, msg *m, uint64_t lo,
                             uint64_t hi, uint32_t n, int reverse, int strict)
{
    c->st_reads++;
    store_read_range(w->srv->store, w->index, m, c->epoch, lo, hi, n,
                     (reverse ? STORE_READ_REVERSE : 0) |
                     (strict ? STORE_READ_STRICT : 0));
}

/* The offset just below the memory ring: what the store must supply. */
static uint64_t owner_ring_start(const chan_state *c)
{
    uint64_t first = history_first_offset(&c->hist);
    return first ? first : c->top + 1;
}

/* The subscription starts: the subscriber is counted (publications from now
 * on reach its worker after this reply), presence, reply with the top. */
static void owner_subscribe_finish(worker *w, chan_state *c, msg *m)
{
    const config_ns *ns = c->ns;
    chan_sub_add(c, m->route.worker);
    /* Presence entries are kept for join/leave too: they tell a client's
     * first subscription from a repeated one. */
    if ((ns->presence || ns->join_leave) &&
        chan_presence_add(c, m->client, msg_user(m), m->route.worker) &&
        ns->join_leave)
        owner_broadcast_join(w, c, 1, m->client, msg_user(m));
    memcpy(m->epoch, c->epoch, IDS_LEN + 1);
    m->epoch_len = IDS_LEN;
    m->offset = c->top;
    owner_reply(w, m, MSG_SUB_REP, 0);
}

static void owner_subscribe(worker *w, msg *m)
{
    const config_ns *ns =
        config_ns_of_channel(w->srv->cfg, msg_chan(m), m->chan_len);
    if (!ns) {
        owner_reply(w, m, MSG_SUB_REP, PROTO_E_BAD_CHANNEL);
        return;
    }
    chan_state *c = chanreg_get(&w->reg, msg_chan(m), m->chan_len, ns);
    if (ns->max_subscribers && c->total >= ns->max_subscribers) {
        chanreg_gc(&w->reg, c, owner_now_ms());
        owner_reply(w, m, MSG_SUB_REP, PROTO_E_LIMIT);
        return;
    }
    history_expire(&c->hist, owner_now_ms(), (int64_t)ns->history_ttl * 1000);
    m->recovered = -1;
    if (m->flag) {
        int same = m->epoch_len == IDS_LEN &&
                   memcmp(m->epoch, c->epoch, IDS_LEN) == 0;
        uint32_t max = w->srv->cfg->recovery_max;
        if (same && m->offset < c->top && c->top - m->offset > max) {
            m->recovered = 0;   /* more than one reply may carry */
        } else {
            m->recovered = (int8_t)chan_recover(c, m->epoch, m->epoch_len,
                                                m->offset, UINT32_MAX,
                                                &m->pubs, &m->n_pubs);
            /* Older than the memory ring: the rest comes from the store,
             * and the subscription starts when it is there. */
            if (!m->recovered && same && m->offset < c->top &&
                owner_store(w, ns)) {
                uint64_t hi = owner_ring_start(c);
                m->limit = 0;   /* rounds of reads (owner_subscribe_read) */
                owner_read_store(w, c, m, m->offset, hi,
                                 (uint32_t)(hi - m->offset - 1), 0, 1);
                return;
            }
        }
    }
    owner_subscribe_finish(w, c, m);
}

/* A recovery read is back: store part + memory ring, or, when the ring
 * moved on meanwhile, one more read for what it dropped. */
static void owner_subscribe_read(worker *w, chan_state *c, msg *m)
{
    if (m->code == PROTO_E_NOT_AVAILABLE) {
        m->errmsg = "durable store unavailable";
        owner_reply(w, m, MSG_SUB_REP, PROTO_E_NOT_AVAILABLE);
        chanreg_gc(&w->reg, c, owner_now_ms());
        return;
    }
    if (m->code) {
        /* The oldest ones are gone (retention): recovered false, none. */
        for (size_t i = 0; i < m->n_pubs; i++)
            pub_unref(m->pubs[i]);
        m->n_pubs = 0;
        m->code = 0;
        m->recovered = 0;
        owner_subscribe_finish(w, c, m);
        return;
    }
    uint64_t got = m->n_pubs ? m->pubs[m->n_pubs - 1]->offset : m->offset;
    uint64_t start = owner_ring_start(c);
    if (got < c->top && start > got + 1) {
        /* The ring moved on during the read: read what it dropped, a few
         * rounds at most (a channel publishing faster than the store is
         * read and a ring too small to bridge it would never converge),
         * and never more than one reply may carry. */
        if (++m->limit > OWNER_READ_ROUNDS ||
            c->top - m->offset > w->srv->cfg->recovery_max) {
            for (size_t i = 0; i < m->n_pubs; i++)
                pub_unref(m->pubs[i]);
            m->n_pubs = 0;
            m->recovered = 0;
            owner_subscribe_finish(w, c, m);
            return;
        }
        owner_read_store(w, c, m, got, start, (uint32_t)(start - got - 1), 0,
                         1);
        return;
    }
    uint32_t more = (uint32_t)(c->top - got);
    if (more) {
        m->pubs = realloc(m->pubs, sizeof(pub *) * (m->n_pubs + more));
        if (!m->pubs)
            abort();
        m->n_pubs += history_select(&c->hist, got, more, 0,
                                    m->pubs + m->n_pubs);
    }
    m->recovered = 1;
    owner_subscribe_finish(w, c, m);
}

static void owner_unsubscribe(worker *w, msg *m)
{
    chan_state *c = chanreg_find(&w->reg, msg_chan(m), m->chan_len);
    if (c) {
        chan_sub_del(c, m->route.worker);
        char *user = NULL;
        if ((c->ns->presence || c->ns->join_leave) &&
            chan_presence_del(c, m->client, &user) &&
            c->ns->join_leave)
            owner_broadcast_join(w, c, 0, m->client, user ? user : "");
        free(user);
        chanreg_gc(&w->reg, c, owner_now_ms());
    }
    msg_free(m);
}

static void owner_publish(worker *w, msg *m)
{
    const config_ns *ns =
        config_ns_of_channel(w->srv->cfg, msg_chan(m), m->chan_len);
    if (!ns) {
        owner_reply(w, m, MSG_PUB_REP, PROTO_E_BAD_CHANNEL);
        return;
    }
    chan_state *c = chanreg_find(&w->reg, msg_chan(m), m->chan_len);
    if (c) {
        /* Back-pressure: refuse rather than queue without bound. */
        uint32_t max = w->srv->cfg->worker_queue_max;
        for (uint32_t i = 0; i < w->srv->n_workers; i++) {
            if (c->wcount[i] &&
                atomic_load_explicit(&w->srv->workers[i]->mb.delivers,
                                     memory_order_relaxed) >= max) {
                owner_reply(w, m, MSG_PUB_REP, PROTO_E_RATE_LIMITED);
                return;
            }
        }
    } else {
        c = chanreg_get(&w->reg, msg_chan(m), m->chan_len, ns);
    }
    /* Durable namespaces: room in the writer queue (or the spill file)
     * first, so a publish is refused rather than acknowledged and then
     * dropped. */
    store *st = ns->durable ? w->srv->store : NULL;
    if (st && !store_fits(m->p)) {
        m->errmsg = "too large for the durable store";
        owner_reply(w, m, MSG_PUB_REP, PROTO_E_TOO_LARGE);
        return;
    }
    int where = st ? store_reserve(st, m->p, ns->ack_durable)
                   : STORE_REFUSED;
    if (st && where == STORE_REFUSED) {
        m->errmsg = "durable store backlog full";
        owner_reply(w, m, MSG_PUB_REP, PROTO_E_NOT_AVAILABLE);
        return;
    }
    int64_t now = owner_now_ms();
    chan_publish(c, m->p, now);
    for (uint32_t i = 0; i < w->srv->n_workers; i++) {
        if (!c->wcount[i])
            continue;
        msg *d = msg_new(MSG_DELIVER, NULL, 0, NULL, 0);
        d->p = pub_ref(m->p);
        worker_post(w->srv, (uint16_t)i, d);
    }
    m->offset = c->top;
    memcpy(m->epoch, c->epoch, IDS_LEN + 1);
    m->epoch_len = IDS_LEN;
    pub *p = m->p;
    m->p = NULL;
    if (st && ns->ack_durable) {
        /* ack "durable": the store replies once the publication is in
         * MongoDB (live delivery does not wait). */
        m->type = MSG_PUB_REP;
        m->code = 0;
        store_push(st, where, p, m);
        pub_unref(p);
        chanreg_gc(&w->reg, c, now);
        return;
    }
    if (st)
        store_push(st, where, p, NULL);
    pub_unref(p);
    chanreg_gc(&w->reg, c, now);
    owner_reply(w, m, MSG_PUB_REP, 0);
}

/* Appends to m->pubs up to `room` publications of the ring after `after`
 * (newest first when reverse). */
static void owner_take_ring(chan_state *c, msg *m, uint64_t after,
                            uint32_t room, int reverse)
{
    uint32_t have = history_count(&c->hist);
    if (room > have)
        room = have;
    if (!room)
        return;
    m->pubs = realloc(m->pubs, sizeof(pub *) * (m->n_pubs + room));
    if (!m->pubs)
        abort();
    m->n_pubs += history_select(&c->hist, after, room, reverse,
                                m->pubs + m->n_pubs);
}

static void owner_history_reply(worker *w, chan_state *c, msg *m, int code,
                                uint64_t top)
{
    if (code) {
        for (size_t i = 0; i < m->n_pubs; i++)
            pub_unref(m->pubs[i]);
        m->n_pubs = 0;
    }
    memcpy(m->epoch, c->epoch, IDS_LEN + 1);
    m->epoch_len = IDS_LEN;
    m->offset = top;
    chanreg_gc(&w->reg, c, owner_now_ms());
    owner_reply(w, m, MSG_HIST_REP, code);
}

/* history: from the memory ring, and for durable namespaces from the store
 * where the ring does not reach back far enough. Forward (oldest first):
 * the store part comes first, then the ring after it; reverse: the ring's
 * newest, then older ones from the store. */
static void owner_history(worker *w, msg *m)
{
    const config_ns *ns =
        config_ns_of_channel(w->srv->cfg, msg_chan(m), m->chan_len);
    if (!ns) {
        owner_reply(w, m, MSG_HIST_REP, PROTO_E_BAD_CHANNEL);
        return;
    }
    int64_t now = owner_now_ms();
    chan_state *c = chanreg_get(&w->reg, msg_chan(m), m->chan_len, ns);
    history_expire(&c->hist, now, (int64_t)ns->history_ttl * 1000);
    int has_since = m->flag & 1, reverse = (m->flag >> 1) & 1;
    uint64_t after = 0;
    if (has_since) {
        int same = m->epoch_len == IDS_LEN &&
                   memcmp(m->epoch, c->epoch, IDS_LEN) == 0;
        if (!same || m->offset > c->top) {
            owner_history_reply(w, c, m, PROTO_E_UNRECOVERABLE, c->top);
            return;
        }
        after = m->offset;
    }
    if (!m->limit) {
        owner_history_reply(w, c, m, 0, c->top);   /* just the position */
        return;
    }
    uint64_t start = owner_ring_start(c);   /* ring covers [start, top] */
    int ring_reaches = after + 1 >= start;
    if (!ring_reaches && !owner_store(w, ns)) {
        /* Memory only: with since, the position is older than what is
         * retained; without, the ring's oldest are the oldest. */
        if (has_since) {
            owner_history_reply(w, c, m, PROTO_E_UNRECOVERABLE, c->top);
            return;
        }
        after = start - 1;
        ring_reaches = 1;
    }
    if (ring_reaches) {
        owner_take_ring(c, m, after, m->limit, reverse);
        owner_history_reply(w, c, m, 0, c->top);
        return;
    }
    if (reverse) {
        owner_take_ring(c, m, after, m->limit, 1);
        uint32_t rest = m->limit - (uint32_t)m->n_pubs;
        if (!rest) {
            owner_history_reply(w, c, m, 0, c->top);
            return;
        }
        m->snap_top = c->top;
        owner_read_store(w, c, m, after, start, rest, 1, has_since);
        return;
    }
    m->offset = after;
    owner_read_store(w, c, m, after, start, m->limit, 0, has_since);
}

/* A history read is back. Reverse: complete (the ring part was taken
 * first). Forward: the ring continues after the store part, unless it
 * moved on meanwhile: then one more read. */
static void owner_history_read(worker *w, chan_state *c, msg *m)
{
    if (m->code) {
        if (m->code == PROTO_E_NOT_AVAILABLE)
            m->errmsg = "durable store unavailable";
        owner_history_reply(w, c, m, m->code, c->top);
        return;
    }
    int reverse = (m->flag >> 1) & 1;
    if (reverse) {
        owner_history_reply(w, c, m, 0, m->snap_top);
        return;
    }
    uint32_t room = m->limit - (uint32_t)m->n_pubs;
    uint64_t got = m->n_pubs ? m->pubs[m->n_pubs - 1]->offset : m->offset;
    uint64_t start = owner_ring_start(c);
    if (!(m->flag & 1) && !m->n_pubs)
        got = start - 1;    /* nothing older stored: the ring's oldest */
    if (room && got < c->top && start > got + 1) {
        owner_read_store(w, c, m, got, start, room, 0, 1);
        return;
    }
    owner_take_ring(c, m, got, room, 0);
    owner_history_reply(w, c, m, 0, c->top);
}

static void owner_store_read(worker *w, msg *m)
{
    chan_state *c = chanreg_find(&w->reg, msg_chan(m), m->chan_len);
    m->type = m->req;
    if (!c) {
        /* Cannot happen (the stream is held while reads are in flight);
         * start the request over rather than answer from nothing. */
        for (size_t i = 0; i < m->n_pubs; i++)
            pub_unref(m->pubs[i]);
        free(m->pubs);
        m->pubs = NULL;
        m->n_pubs = 0;
        m->code = 0;
        owner_handle(w, m);
        return;
    }
    c->st_reads--;
    if (m->req == MSG_SUB_REQ)
        owner_subscribe_read(w, c, m);
    else
        owner_history_read(w, c, m);
}

static void owner_presence(worker *w, msg *m)
{
    chan_state *c = chanreg_find(&w->reg, msg_chan(m), m->chan_len);
    if (c && c->n_presence) {
        /* One block: the entry array, then the strings. */
        size_t bytes = sizeof(proto_presence_entry) * c->n_presence;
        presence_entry *e, *tmp;
        HASH_ITER(hh, c->presence, e, tmp)
            bytes += IDS_LEN + strlen(e->user);
        proto_presence_entry *v = malloc(bytes);
        if (!v)
            abort();
        char *s = (char *)(v + c->n_presence);
        size_t i = 0;
        HASH_ITER(hh, c->presence, e, tmp) {
            size_t ul = strlen(e->user);
            memcpy(s, e->client, IDS_LEN);
            v[i].client = (proto_slice){ s, IDS_LEN };
            s += IDS_LEN;
            memcpy(s, e->user, ul);
            v[i].user = (proto_slice){ s, ul };
            s += ul;
            i++;
        }
        m->extra = v;
        m->n_extra = i;
    }
    owner_reply(w, m, MSG_PRES_REP, 0);
}

/* A durable stream stays in memory while any publication may still be on
 * its way to the store: reloaded from the store meanwhile, it would take
 * an older top and hand out an offset a second time. */
static int owner_hold_durable(void *arg, const chan_state *c)
{
    store *st = arg;
    return c->ns->durable && (store_backlog(st) > 0 || c->st_reads > 0);
}

void owner_init(worker *w)
{
    /* Cluster mode: Redis numbers the streams, nothing to hold. */
    if (w->srv->store && !w->srv->cfg->n_redis) {
        w->reg.hold = owner_hold_durable;
        w->reg.hold_arg = w->srv->store;
    }
}

/* A durable channel's stream continues where the store left it: the first
 * request for it (after a start, or after the stream was dropped from
 * memory) asks the store for its last epoch and offset, and requests wait
 * until the answer is there. Returns 1 when m waits. */
static int owner_wait_for_store(worker *w, msg *m)
{
    store *st = w->srv->store;
    if (!st || (m->type != MSG_SUB_REQ && m->type != MSG_PUB_REQ &&
                m->type != MSG_HIST_REQ))
        return 0;
    const config_ns *ns =
        config_ns_of_channel(w->srv->cfg, msg_chan(m), m->chan_len);
    if (!ns || !ns->durable)
        return 0;
    chan_state *c = chanreg_find(&w->reg, msg_chan(m), m->chan_len);
    if (c && !c->st_loading)
        return 0;
    if (!c) {
        c = chanreg_get(&w->reg, msg_chan(m), m->chan_len, ns);
        c->st_loading = 1;
        store_load_last(st, w->index, msg_chan(m), m->chan_len);
    }
    m->next = NULL;
    msg **tail = &c->st_wait;
    while (*tail)
        tail = &(*tail)->next;
    *tail = m;
    return 1;
}

static void owner_store_last(worker *w, msg *m)
{
    chan_state *c = chanreg_find(&w->reg, msg_chan(m), m->chan_len);
    if (!c || !c->st_loading) {
        msg_free(m);
        return;
    }
    c->st_loading = 0;
    msg *list = c->st_wait;
    c->st_wait = NULL;
    if (m->flag == 1) {
        memcpy(c->epoch, m->epoch, IDS_LEN + 1);
        c->top = m->offset;
    } else if (m->flag == 2) {
        /* Not knowing where the stream stopped, starting it again would
         * hand out offsets twice: refuse until the store answers. */
        while (list) {
            msg *r = list;
            list = r->next;
            r->next = NULL;
            r->errmsg = "durable store unavailable";
            owner_reply(w, r, r->type == MSG_SUB_REQ   ? MSG_SUB_REP
                              : r->type == MSG_PUB_REQ ? MSG_PUB_REP
                                                       : MSG_HIST_REP,
                        PROTO_E_NOT_AVAILABLE);
        }
        /* Never loaded, so nothing to keep (its requests all waited); not
         * chanreg_gc: with a store backlog (a spill file being replayed)
         * the hold would keep it as a fresh stream, offset 1 in a new
         * epoch, and the next request would not ask the store again. */
        chanreg_drop(&w->reg, c);
    }
    msg_free(m);
    while (list) {
        msg *r = list;
        list = r->next;
        r->next = NULL;
        owner_handle(w, r);
    }
}

void owner_handle(worker *w, msg *m)
{
    if (w->cl) {
        cluster_handle(w, m);
        return;
    }
    if (m->type == MSG_STORE_LAST) {
        owner_store_last(w, m);
        return;
    }
    if (m->type == MSG_STORE_READ) {
        owner_store_read(w, m);
        return;
    }
    if (owner_wait_for_store(w, m))
        return;
    switch (m->type) {
    case MSG_SUB_REQ: owner_subscribe(w, m); break;
    case MSG_UNSUB: owner_unsubscribe(w, m); break;
    case MSG_PUB_REQ: owner_publish(w, m); break;
    case MSG_HIST_REQ: owner_history(w, m); break;
    case MSG_PRES_REQ: owner_presence(w, m); break;
    default:
        log_error("unexpected message for channel owner",
                  LOG_INT("type", m->type));
        msg_free(m);
    }
}

void owner_expire(worker *w)
{
    if (w->cl) {
        cluster_expire(w);
        return;
    }
    chanreg_expire(&w->reg, owner_now_ms());
}
