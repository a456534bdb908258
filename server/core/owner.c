/*
 * The channel owner (owner.h). Requests are answered in place (the request
 * struct becomes the reply). A request the broker cannot serve yet (its
 * stream is being subscribed to in Redis, or loaded from the durable
 * store) is parked on the stream and handled again from the start when
 * the broker says the stream is ready.
 *
 * Where publications come from, oldest to newest:
 *   the durable store (durable namespaces; reader threads, store.h),
 *   the broker's window (Redis's hot window; on a single node the ring),
 *   the ring (what this node delivered most recently).
 * A recovery takes the ring when it reaches back to the client's
 * position; otherwise it reads the window and, below the window, the
 * store, in as many steps as the stream moving on meanwhile needs. A
 * history page reads the window and, for durable namespaces, the store
 * before it (forward: the store part first; reverse: the window's newest,
 * then older ones from the store).
 */
#include "core/owner.h"

#include <stdlib.h>
#include <string.h>

#include <herald/proto.h>

#include "base/log.h"
#include "base/mem.h"
#include "broker/broker.h"
#include "core/idem.h"
#include "core/requests.h"
#include "hooks/hooks.h"
#include "metrics/metrics.h"
#include "store/store.h"

/* Store reads one recovery may take when the ring moves on meanwhile. */
#define OWNER_READ_ROUNDS 8
/* Idle streams one eviction looks at before it gives up (a stream with
 * requests in flight, or that the broker keeps for now, goes to the end
 * of the list). */
#define OWNER_EVICT_SCAN 64
/* The "too many channels" warning, at most once per this many ms. */
#define OWNER_FULL_LOG_MS 10000
/* Waits (each up to the broker's timeout) for this node to catch up with
 * a subscribe's since before it is answered 108. */
#define OWNER_CATCH_UP_WAITS 2

static const char *const STORE_DOWN = "durable store unavailable";
static const char *const WINDOW_DOWN = "broker unavailable";
static const char *const TOO_MANY = "too many channels on this node";

/* ---- replies -------------------------------------------------------------- */

/* Turns a request into its reply (type, code); it is not posted. */
static void owner_reply_prepare(chan_req *r, int code)
{
    r->hdr.to = MSG_TO_CONNS;
    r->hdr.type = requests_reply_type(r->hdr.type);
    r->code = code;
}

static void owner_reply(owner *o, chan_req *r, int code)
{
    owner_reply_prepare(r, code);
    server_post(o->srv, r->route.worker, &r->hdr);
}

static void owner_fail(owner *o, chan_req *r, int code, const char *why)
{
    r->errmsg = why;
    owner_reply(o, r, code);
}

/* ---- streams -------------------------------------------------------------- */

static void owner_drop(owner *o, chan_state *c)
{
    chanreg_drop(&o->reg, c);
    atomic_fetch_sub_explicit(&o->srv->channels, 1, memory_order_relaxed);
}

/* Evicts streams without subscribers, least recently used first, while
 * the registry is over its bounds: max_channels when `for_new` (room for
 * one more stream), history_memory_mb always. `keep` is never evicted
 * (the stream just published to). A stream with requests in flight, or
 * that the broker keeps for now (a durable stream with writes not yet in
 * MongoDB, a Redis UNSUBSCRIBE not yet confirmed), goes to the end of the
 * list. Evicting loses a non-durable stream's history and epoch: a client
 * recovering on it gets recovered:false with the new epoch, never a gap.
 * Returns 0 when a new stream does not fit. */
/* A single node's only memory of a stream's idempotency keys inside
 * their window is the stream itself (a cluster keeps them in Redis, a
 * durable stream in the store, where a new stream looks them up): such a
 * stream is not evicted, or a repeat would publish again. */
static int owner_holds_keys(const owner *o, const chan_state *c)
{
    return c->idem && !o->b->multi_node && !c->ns->durable;
}

static int owner_evict(owner *o, const chan_state *keep, int for_new)
{
    chanreg *r = &o->reg;
    const chan_state *kept = NULL;   /* the first one skipped */
    for (int scan = 0; scan < OWNER_EVICT_SCAN; scan++) {
        if (!(for_new && chanreg_full(r)) && !chanreg_over_bytes(r))
            return 1;
        chan_state *c = chanreg_idle_oldest(r);
        if (!c || c == kept)
            break;   /* none, or every one was skipped: order kept */
        int gone = c != keep && !c->waiting && !c->reads &&
                   !owner_holds_keys(o, c) &&
                   (o->b->ops->evict ? o->b->ops->evict(o->b, c)
                                     : o->b->ops->release(o->b, c));
        if (!gone) {
            if (!kept)
                kept = c;
            chanreg_touch(r, c);
            continue;
        }
        owner_drop(o, c);
        atomic_fetch_add_explicit(&o->srv->channels_evicted, 1,
                                  memory_order_relaxed);
    }
    if (!(for_new && chanreg_full(r)))
        return 1;
    int64_t now = server_now_ms(o->srv);
    if (now - o->full_logged_ms >= OWNER_FULL_LOG_MS) {
        o->full_logged_ms = now;
        log_warn("channel limit reached, no idle channel to evict: new "
                 "channels get 106",
                 LOG_INT("worker", o->index), LOG_INT("channels", r->n),
                 LOG_INT("limit", r->max_n));
    }
    return 0;
}

/* The stream of r's channel, created when it has none (NULL when the
 * owner is full: answered 106). */
static chan_state *owner_stream(owner *o, const chan_req *r)
{
    chan_state *c = chanreg_find(&o->reg, r->chan, r->chan_len);
    if (c)
        return c;
    if (!owner_evict(o, NULL, 1))
        return NULL;
    atomic_fetch_add_explicit(&o->srv->channels, 1, memory_order_relaxed);
    c = chanreg_get(&o->reg, r->chan, r->chan_len, r->ns);
    c->born_ms = server_now_ms(o->srv);
    return c;
}

static store *owner_store(const owner *o, const config_ns *ns)
{
    return ns->durable ? o->st : NULL;
}

/* Drops a stream nothing needs any more: no subscribers, parked requests
 * or reads in flight, expired history, and the broker lets go of it. */
static void owner_release(owner *o, chan_state *c)
{
    int64_t now = server_now_ms(o->srv);
    chan_expire(c, now);
    if (c->idem) {
        idem_expire(c->idem, now);
        if (idem_empty(c->idem)) {
            free(c->idem);
            c->idem = NULL;
        }
    }
    /* Keys inside their window keep the stream (evicting it under
     * max_channels or history_memory_mb pressure loses them). */
    if (c->total || c->waiting || c->reads || c->idem)
        return;
    if (o->b->ops->release(o->b, c))
        owner_drop(o, c);
}

/* A worker holding worker_queue_max undelivered fan-out messages makes a
 * publish to a channel it has subscribers of wait (error 110). */
static int owner_backlogged(const owner *o, const chan_state *c)
{
    uint32_t max = o->srv->cfg->worker_queue_max;
    for (uint32_t i = 0; i < o->srv->n_workers; i++)
        if (c->wcount[i] && server_backlog(o->srv, (uint16_t)i) >= max)
            return 1;
    return 0;
}

/* The most one recovery may return: recovery_max, and without a durable
 * store no more than the history keeps. */
static uint32_t owner_recovery_max(const owner *o, const config_ns *ns)
{
    uint32_t max = o->srv->cfg->recovery_max;
    if (!owner_store(o, ns) && ns->history_size < max)
        max = ns->history_size;
    return max;
}

/* Publications older than this are not retained (history_ttl), except
 * where the durable store keeps them (its retention decides). */
static int64_t owner_oldest(const owner *o, const config_ns *ns)
{
    if (owner_store(o, ns) || !ns->history_ttl)
        return INT64_MIN;
    return server_now_ms(o->srv) - (int64_t)ns->history_ttl * 1000;
}

/* The oldest offset a window retains for a namespace keeping `keep`: the
 * broker's first, raised to the newest `keep`; top + 1 when it retains
 * none (nothing kept, or an empty window: after a restart the ring of a
 * durable stream starts empty). */
static uint64_t owner_window_first(const broker_window *w, uint32_t keep)
{
    if (!keep || !w->first)
        return w->top + 1;
    uint64_t first = w->first;
    if (w->top >= keep && w->top - keep + 1 > first)
        first = w->top - keep + 1;
    return first;
}

static int owner_same_epoch(const char *epoch, size_t len, const char *e)
{
    return len == IDS_LEN && memcmp(epoch, e, IDS_LEN) == 0;
}

/* Reads (lo, hi) of the stream from the store into out; the request comes
 * back to this owner as it is (its type says where it continues). */
static void owner_read_store(owner *o, chan_state *c, chan_req *r,
                             publist *out, int16_t *status, const char *epoch,
                             uint64_t lo, uint64_t hi, uint32_t n,
                             int reverse, int strict)
{
    c->reads++;
    store_read_range(o->st, o->index, &r->hdr, out, status, epoch, lo, hi, n,
                     (reverse ? STORE_READ_REVERSE : 0) |
                         (strict ? STORE_READ_STRICT : 0) |
                         (o->b->multi_node ? STORE_READ_OTHERS : 0));
}

static void owner_sub_read(owner *o, chan_state *c, sub_req *r);
static void owner_hist_read(owner *o, chan_state *c, hist_req *r);

/* A request back from a store read: on to its stream (held there by its
 * reads count), unless the store did not answer in time (108) or the
 * stream is gone (cannot happen). */
static void owner_read_back(owner *o, chan_req *r)
{
    int sub = r->hdr.type == OWN_SUB_READ;
    publist *pubs = sub ? &((sub_req *)r)->pubs : &((hist_req *)r)->pubs;
    int16_t status = sub ? ((sub_req *)r)->prog.read_status
                         : ((hist_req *)r)->prog.read_status;
    chan_state *c = chanreg_find(&o->reg, r->chan, r->chan_len);
    if (!c) {
        log_error("store read for a stream that is gone",
                  LOG_STRN("channel", r->chan, r->chan_len));
        publist_clear(pubs);
        owner_fail(o, r, PROTO_E_INTERNAL, NULL);
        return;
    }
    c->reads--;
    if (status == PROTO_E_NOT_AVAILABLE) {
        publist_clear(pubs);
        owner_fail(o, r, PROTO_E_NOT_AVAILABLE, STORE_DOWN);
        owner_release(o, c);
    } else if (sub) {
        owner_sub_read(o, c, (sub_req *)r);
    } else {
        owner_hist_read(o, c, (hist_req *)r);
    }
}

/* A broker operation did not accept r: BROKER_AGAIN parks it (handled
 * again from the start, as `type`, when the stream is ready), an error
 * answers it. */
static void owner_refused(owner *o, chan_state *c, chan_req *r, uint8_t type,
                          int rc, const char *why)
{
    if (rc == BROKER_AGAIN) {
        r->hdr.type = type;
        chan_park(c, &r->hdr);
        return;
    }
    owner_fail(o, r, rc, why);
    owner_release(o, c);
}

/* ---- subscribe ------------------------------------------------------------ */

static void owner_sub_step(owner *o, chan_state *c, sub_req *r);
static void owner_sub_ahead(owner *o, chan_state *c, sub_req *r);
static void owner_subscribe(owner *o, sub_req *r);

/* The subscription starts: the subscriber is counted (publications from
 * now on reach its worker after this reply), presence, reply with the
 * stream's position. */
static void owner_sub_finish(owner *o, chan_state *c, sub_req *r,
                             int recovered)
{
    const config_ns *ns = c->ns;
    r->recovered = (int8_t)recovered;
    if (recovered != 1)
        publist_clear(&r->pubs);
    chan_sub_add(&o->reg, c, r->h.route.worker);
    if (c->total == 1)
        o->b->ops->occupancy(o->b, c, 1);
    /* This reply reaches its worker after any reset posted there: the new
     * subscriber is not being reset, fan-out to that worker resumes. */
    c->wcut[r->h.route.worker] = 0;
    /* Presence entries are kept for join/leave too: they tell a client's
     * first subscription from a repeated one. */
    if ((ns->presence || ns->join_leave) &&
        presence_add(&c->presence, r->h.client, r->h.user, r->h.route.worker))
        o->b->ops->presence_change(o->b, c, 1, r->h.client, r->h.user);
    memcpy(r->epoch, c->epoch, IDS_LEN + 1);
    r->top = c->top;
    owner_reply(o, &r->h, 0);
}

/* 1 when the broker follows c (delivers its publications here); else r
 * is parked (the stream is being followed) or answered (it cannot be). */
static int owner_followed(owner *o, chan_state *c, sub_req *r)
{
    const char *why = NULL;
    int rc = o->b->ops->follow(o->b, c, &why);
    if (rc)
        owner_refused(o, c, &r->h, OWN_SUBSCRIBE, rc, why);
    return rc == 0;
}

static void owner_subscribe(owner *o, sub_req *r)
{
    /* A parked request starts over: what it had read is stale. */
    publist_clear(&r->pubs);
    memset(&r->prog, 0, sizeof(r->prog));
    chan_state *c = owner_stream(o, &r->h);
    if (!c) {
        owner_fail(o, &r->h, PROTO_E_LIMIT, TOO_MANY);
        return;
    }
    if (!owner_followed(o, c, r))
        return;
    const config_ns *ns = c->ns;
    if (ns->max_subscribers && c->total >= ns->max_subscribers) {
        owner_fail(o, &r->h, PROTO_E_LIMIT, NULL);
        owner_release(o, c);
        return;
    }
    chan_expire(c, server_now_ms(o->srv));
    if (!r->has_since) {
        owner_sub_finish(o, c, r, -1);
        return;
    }
    int same = owner_same_epoch(r->since.epoch, r->since.epoch_len, c->epoch);
    if (same && r->since.offset > c->top && o->b->ops->catch_up) {
        owner_sub_ahead(o, c, r);
        return;
    }
    if (!same || r->since.offset > c->top ||
        c->top - r->since.offset > owner_recovery_max(o, ns)) {
        owner_sub_finish(o, c, r, 0);
        return;
    }
    if (chan_recover(c, r->since.epoch, r->since.epoch_len, r->since.offset,
                     UINT32_MAX, &r->pubs)) {
        owner_sub_finish(o, c, r, 1);
        return;
    }
    owner_sub_step(o, c, r);
}

/* Cluster: the client knows the stream beyond what this node delivered
 * (it comes from a node that is ahead). Answering at this node's top
 * would push again what the client has; the broker's window says first
 * whether the position exists at all (owner_sub_ahead_window). */
static void owner_sub_ahead(owner *o, chan_state *c, sub_req *r)
{
    if (r->waits >= OWNER_CATCH_UP_WAITS) {
        /* Still behind after the waits: the node's link to the stream is
         * failing (its heartbeat will tell); the client retries. */
        owner_fail(o, &r->h, PROTO_E_NOT_AVAILABLE, WINDOW_DOWN);
        owner_release(o, c);
        return;
    }
    r->prog.ahead = 1;
    const char *why = NULL;
    c->reads++;
    int rc = o->b->ops->read(o->b, c, &r->h, r->since.offset, 0, 0, 0, &why);
    if (rc) {
        c->reads--;
        owner_refused(o, c, &r->h, OWN_SUBSCRIBE, rc, why);
    }
}

/* The window's position for a since beyond this node's top. Beyond the
 * stream's top, or of another epoch: the position is not in the stream,
 * recovered:false. Otherwise this node is behind: the subscribe waits
 * (parked) until the broker has delivered up to since, then starts over
 * and recovers from the ring like any other. */
static void owner_sub_ahead_window(owner *o, chan_state *c, sub_req *r,
                                   broker_window *w)
{
    publist_clear(&w->pubs);
    if (memcmp(w->epoch, c->epoch, IDS_LEN) != 0 ||
        r->since.offset > w->top) {
        owner_sub_finish(o, c, r, 0);
        return;
    }
    const char *why = NULL;
    int rc = 0;
    if (c->top < r->since.offset) {
        r->waits++;
        rc = o->b->ops->catch_up(o->b, c, r->since.offset, &why);
    }
    if (rc == 0)
        owner_subscribe(o, r);   /* caught up: start over */
    else
        owner_refused(o, c, &r->h, OWN_SUBSCRIBE, rc, why);
}

/* One step of a recovery the ring could not answer alone: r->pubs holds
 * since+1 .. got; the ring, the broker's window or the store gives what
 * follows. */
static void owner_sub_step(owner *o, chan_state *c, sub_req *r)
{
    uint64_t got = publist_last(&r->pubs, r->since.offset);
    if (memcmp(r->since.epoch, c->epoch, IDS_LEN) != 0) {
        owner_sub_finish(o, c, r, 0);   /* the stream was reset meanwhile */
        return;
    }
    if (got >= c->top) {
        owner_sub_finish(o, c, r, 1);
        return;
    }
    if (got + 1 >= chan_ring_start(c)) {
        size_t n0 = r->pubs.n;
        chan_ring_take(c, got, (uint32_t)(c->top - got), 0, &r->pubs);
        if (r->pubs.n - n0 == c->top - got && r->pubs.v[n0]->offset == got + 1) {
            owner_sub_finish(o, c, r, 1);
            return;
        }
        /* Cannot happen while the ring is contiguous; read the window
         * rather than hand out a gap. */
        for (size_t i = n0; i < r->pubs.n; i++)
            pub_unref(r->pubs.v[i]);
        r->pubs.n = n0;
    }
    /* The stream moved on faster than it could be read: more than one
     * reply may carry. */
    if (c->top - r->since.offset > owner_recovery_max(o, c->ns)) {
        owner_sub_finish(o, c, r, 0);
        return;
    }
    if (!r->prog.wfirst || r->prog.wfirst <= got + 1) {
        const char *why = NULL;
        c->reads++;
        int rc = o->b->ops->read(o->b, c, &r->h, got + 1,
                                 (uint32_t)(c->top - got), 0,
                                 c->ns->history_size, &why);
        if (rc) {
            c->reads--;
            owner_refused(o, c, &r->h, OWN_SUBSCRIBE, rc, why);
        }
        return;   /* else owner_sub_window */
    }
    if (!owner_store(o, c->ns) || ++r->prog.rounds > OWNER_READ_ROUNDS) {
        owner_sub_finish(o, c, r, 0);
        return;
    }
    r->h.hdr.type = OWN_SUB_READ;
    owner_read_store(o, c, &r->h, &r->pubs, &r->prog.read_status, c->epoch, got,
                     r->prog.wfirst, (uint32_t)(r->prog.wfirst - got - 1), 0, 1);
}

/* The broker's window for a recovery: what continues the position, within
 * the namespace's history (size, age); below the window, the store. */
static void owner_sub_window(owner *o, chan_state *c, sub_req *r,
                             broker_window *w)
{
    if (r->prog.ahead) {
        owner_sub_ahead_window(o, c, r, w);
        return;
    }
    if (memcmp(w->epoch, c->epoch, IDS_LEN) != 0 ||
        memcmp(r->since.epoch, c->epoch, IDS_LEN) != 0) {
        publist_clear(&w->pubs);
        owner_sub_finish(o, c, r, 0);
        return;
    }
    uint64_t got0 = publist_last(&r->pubs, r->since.offset), got = got0;
    uint64_t wfirst = owner_window_first(w, c->ns->history_size);
    int64_t oldest = owner_oldest(o, c->ns);
    int gap = 0;   /* nothing after a gap continues the position */
    for (size_t i = 0; i < w->pubs.n; i++) {
        pub *p = w->pubs.v[i];
        if (!gap && p->offset == got + 1 && p->offset <= c->top &&
            p->offset >= wfirst && p->time_ms >= oldest) {
            publist_push(&r->pubs, p);
            got++;
        } else {
            pub_unref(p);
            gap = 1;
        }
    }
    w->pubs.n = 0;
    r->prog.wfirst = wfirst;
    if (got > got0) {
        owner_sub_step(o, c, r);
        return;
    }
    if (wfirst > got + 1 && owner_store(o, c->ns)) {
        owner_sub_step(o, c, r);   /* the store part below the window */
        return;
    }
    owner_sub_finish(o, c, r, 0);
}

/* A recovery's store read is back. The broker may have lost the stream
 * meanwhile (a Redis link that went down and came back while MongoDB was
 * read): the recovery starts over once it follows the stream again. */
static void owner_sub_read(owner *o, chan_state *c, sub_req *r)
{
    if (!owner_followed(o, c, r))
        return;
    if (r->prog.read_status) {
        owner_sub_finish(o, c, r, 0);   /* the start is gone (retention) */
    } else {
        r->prog.wfirst = 0;   /* the window may continue the store part */
        owner_sub_step(o, c, r);
    }
}

static void owner_unsubscribe(owner *o, chan_req *r)
{
    chan_state *c = chanreg_find(&o->reg, r->chan, r->chan_len);
    if (c) {
        uint32_t before = c->total;
        chan_sub_del(&o->reg, c, r->route.worker);
        if (before == 1 && c->total == 0)
            o->b->ops->occupancy(o->b, c, 0);
        char *user = NULL;
        if ((c->ns->presence || c->ns->join_leave) &&
            presence_del(&c->presence, r->client, &user))
            o->b->ops->presence_change(o->b, c, 0, r->client,
                                       user ? user : "");
        free(user);
        owner_release(o, c);
    }
    requests_free(&r->hdr);
}

/* ---- publish -------------------------------------------------------------- */

static void owner_publish(owner *o, pub_req *r);

/* The stream's idempotency keys, made on first use. */
static idem_map *owner_idem_map(chan_state *c)
{
    if (!c->idem) {
        c->idem = mem_alloc(sizeof(*c->idem));
        idem_init(c->idem);
    }
    return c->idem;
}

static int64_t owner_idem_window_ms(const owner *o)
{
    return (int64_t)o->srv->cfg->idempotency_window * 1000;
}

/* Answers r as a repeat of the publication e sealed: its offset and epoch
 * when the data is the same, 107 (the API's 409) when the key came with
 * other data. Nothing is published. */
static void owner_idem_answer(owner *o, pub_req *r, const idem_entry *e)
{
    pub_unref(r->p);
    r->p = NULL;
    if (r->ihash != e->hash) {
        owner_fail(o, &r->h, PROTO_E_BAD_REQUEST, idem_conflict);
        return;
    }
    r->offset = e->offset;
    memcpy(r->epoch, e->epoch, IDS_LEN);
    r->epoch[IDS_LEN] = '\0';
    r->duplicate = 1;
    owner_reply(o, &r->h, 0);
}

/* Answers the requests waiting on a key: as repeats of `first` (code 0),
 * or with the first publication's error (they may retry). */
static void owner_idem_answer_list(owner *o, msg *w, int code,
                                   const char *why, const idem_entry *first)
{
    while (w) {
        msg *next = w->next;
        pub_req *r = (pub_req *)w;
        w->next = NULL;
        if (code) {
            pub_unref(r->p);
            r->p = NULL;
            owner_fail(o, &r->h, code, why);
        } else {
            owner_idem_answer(o, r, first);
        }
        w = next;
    }
}

/* A durable stream younger than the window may not know keys published
 * before a restart (or before it was dropped from memory): the store is
 * asked. */
static int owner_idem_ask_store(const owner *o, const chan_state *c,
                                int64_t now)
{
    return owner_store(o, c->ns) && now - c->born_ms < owner_idem_window_ms(o);
}

/* Idempotent publish, before anything is reserved: 1 when r is answered
 * (a repeat) or waits for the first request with its key; 0 when it goes
 * on to publish, leading its key (then the stream holds a read until the
 * key is sealed or dropped: owner_idem_sealed, owner_idem_failed). */
static int owner_idem_check(owner *o, chan_state *c, pub_req *r)
{
    if (!r->ikey_len || !o->srv->cfg->idempotency_window || r->idem_lead)
        return 0;
    idem_map *m = owner_idem_map(c);
    int64_t now = server_now_ms(o->srv);
    idem_expire(m, now);
    idem_entry *e = idem_find(m, r->ikey, r->ikey_len);
    if (e && e->state == IDEM_SEALED && e->expires_ms <= now) {
        idem_drop(m, e);
        e = NULL;
    }
    if (e && e->state == IDEM_SEALED) {
        owner_idem_answer(o, r, e);
        owner_release(o, c);
        return 1;
    }
    if (e) {
        idem_wait(e, &r->h.hdr);   /* the first one is on its way */
        return 1;
    }
    c->reads++;
    if (owner_idem_ask_store(o, c, now)) {
        e = idem_open(m, r->ikey, r->ikey_len, IDEM_LOOKUP);
        m->lookups++;
        idem_wait(e, &r->h.hdr);
        store_find_key(o->st, o->index, c->name, c->len, r->ikey,
                       r->ikey_len);
        return 1;
    }
    idem_open(m, r->ikey, r->ikey_len, IDEM_PENDING);
    r->idem_lead = 1;
    return 0;
}

/* The leading request of a key failed: its key is forgotten and the
 * requests waiting on it get the same answer. */
static void owner_idem_failed(owner *o, chan_state *c, pub_req *r, int code,
                              const char *why)
{
    if (!r->idem_lead)
        return;
    r->idem_lead = 0;
    idem_entry *e = c->idem ? idem_find(c->idem, r->ikey, r->ikey_len) : NULL;
    if (e) {
        msg *w = idem_take_waiters(e);
        idem_drop(c->idem, e);
        owner_idem_answer_list(o, w, code, why, NULL);
    }
    c->reads--;
}

/* The leading request of a key is sequenced (or Redis knew the key): the
 * key is sealed with the first publication, and the waiting requests are
 * answered as repeats. */
static void owner_idem_sealed(owner *o, chan_state *c, pub_req *r)
{
    r->idem_lead = 0;
    idem_entry *e = c->idem ? idem_find(c->idem, r->ikey, r->ikey_len) : NULL;
    if (e) {
        msg *w = idem_take_waiters(e);
        idem_seal(c->idem, e, r->offset, r->epoch,
                  r->idem_found ? r->idem_first_hash : r->ihash,
                  server_now_ms(o->srv) + owner_idem_window_ms(o),
                  o->srv->cfg->idempotency_max);
        idem_entry first = *e;
        owner_idem_answer_list(o, w, 0, NULL, &first);
    }
    c->reads--;
}

/* The durable store's answer for a key (owner_idem_check): a publication
 * inside the window answers the waiting requests as repeats; none, and the
 * first of them publishes (the others wait on); no answer, 108. */
static void owner_idem_found(owner *o, idem_found_msg *f)
{
    chan_state *c = chanreg_find(&o->reg, f->h.chan, f->h.chan_len);
    idem_entry *e = c && c->idem ? idem_find(c->idem, f->key, f->key_len)
                                 : NULL;
    if (!e || e->state != IDEM_LOOKUP) {
        log_error("idempotency key lookup for a key not being looked up",
                  LOG_STRN("channel", f->h.chan, f->h.chan_len));
        free(f);
        return;
    }
    int64_t expires = f->time_ms + owner_idem_window_ms(o);
    msg *w = idem_take_waiters(e);
    /* the publishes that came meanwhile go once no lookup is left; they
     * are counted in c->reads, so c stays through what follows */
    msg *held = --c->idem->lookups ? NULL : idem_take_held(c->idem);
    if (!w) {
        /* Cannot happen: the request that asked waits on the entry. */
        idem_drop(c->idem, e);
        c->reads--;
        owner_release(o, c);
    } else if (f->found == STORE_TOP_FAILED) {
        idem_drop(c->idem, e);
        owner_idem_answer_list(o, w, PROTO_E_NOT_AVAILABLE, STORE_DOWN, NULL);
        c->reads--;
        owner_release(o, c);
    } else if (f->found == STORE_TOP_FOUND &&
               expires > server_now_ms(o->srv)) {
        idem_seal(c->idem, e, f->offset, f->epoch, f->hash, expires,
                  o->srv->cfg->idempotency_max);
        idem_entry first = *e;
        owner_idem_answer_list(o, w, 0, NULL, &first);
        c->reads--;
        owner_release(o, c);
    } else {
        /* Not published inside the window: the first request leads. */
        pub_req *lead = (pub_req *)w;
        e->state = IDEM_PENDING;
        for (msg *m = w->next; m;) {
            msg *next = m->next;
            idem_wait(e, m);
            m = next;
        }
        lead->h.hdr.next = NULL;
        lead->idem_lead = 1;
        owner_publish(o, lead);
    }
    free(f);
    while (held) {
        msg *next = held->next;
        held->next = NULL;
        c->reads--;
        owner_publish(o, (pub_req *)held);
        held = next;
    }
}

/* A publish refused before the broker took it. */
static void owner_pub_fail(owner *o, chan_state *c, pub_req *r, int code,
                           const char *why)
{
    owner_idem_failed(o, c, r, code, why);
    owner_fail(o, &r->h, code, why);
    owner_release(o, c);
}

/* 1 when the namespace's publications go to the webhooks. */
static int owner_pub_hook(const owner *o, const config_ns *ns)
{
    return ns->publication_webhook &&
           hooks_wants(o->srv->hooks, CONFIG_HOOK_PUBLICATION);
}

/* The publication event, once per publication across the cluster: made
 * where it was published, with the offset and epoch it got. */
static void owner_pub_emit(owner *o, const pub_req *r)
{
    if (!r->p || !owner_pub_hook(o, r->h.ns))
        return;
    proto_pub v = r->p->view;
    v.offset = r->offset;
    v.epoch = (proto_slice){ r->epoch, strlen(r->epoch) };
    hook_event ev = { .type = CONFIG_HOOK_PUBLICATION, .pub = &v };
    hooks_emit(o->srv->hooks, &ev);
}

static void owner_publish(owner *o, pub_req *r)
{
    chan_state *c = owner_stream(o, &r->h);
    if (!c) {
        owner_fail(o, &r->h, PROTO_E_LIMIT, TOO_MANY);
        return;
    }
    /* A publisher's publications keep their order: a keyed one waits
     * behind requests parked until the stream is ready (its key would
     * otherwise be looked up out of turn), and any behind a key being
     * looked up in the store. */
    if (r->ikey_len && c->waiting && !r->idem_lead) {
        owner_refused(o, c, &r->h, OWN_PUBLISH, BROKER_AGAIN, NULL);
        return;
    }
    if (c->idem && c->idem->lookups && !r->idem_lead) {
        c->reads++;
        idem_hold(c->idem, &r->h.hdr);
        return;
    }
    if (owner_idem_check(o, c, r))
        return;
    if (owner_backlogged(o, c)) {
        owner_pub_fail(o, c, r, PROTO_E_RATE_LIMITED, NULL);
        return;
    }
    const config_ns *ns = r->h.ns;
    /* Durable namespaces: room in the writer queue (or the spill file)
     * first, so a publish is refused rather than acknowledged and then
     * dropped. */
    store *st = owner_store(o, ns);
    if (st && !store_fits(r->p)) {
        owner_pub_fail(o, c, r, PROTO_E_TOO_LARGE,
                       "too large for the durable store");
        return;
    }
    r->store_where = 0;
    if (st) {
        int where = store_reserve(st, r->p, ns->ack_durable);
        if (where == STORE_REFUSED) {
            owner_pub_fail(o, c, r, PROTO_E_NOT_AVAILABLE,
                           "durable store backlog full");
            return;
        }
        r->store_where = (uint8_t)where;
    }
    /* The publication event (publication_webhook) is made from the
     * sealed draft. */
    r->need_draft = st != NULL || owner_pub_hook(o, ns);
    const char *why = NULL;
    int rc = o->b->ops->publish(o->b, c, r, &why);
    if (rc == 0) {
        owner_release(o, c);   /* r is the broker's now */
        return;
    }
    if (r->store_where) {
        store_unreserve(st, r->store_where, r->p);
        r->store_where = 0;
    }
    if (rc != BROKER_AGAIN)
        owner_idem_failed(o, c, r, rc, why);
    owner_refused(o, c, &r->h, OWN_PUBLISH, rc, why);
}

/* Cluster: Redis had the key (another node, or this one before it forgot):
 * nothing was published; the reservation goes back. */
static void owner_pub_repeat(owner *o, pub_req *r)
{
    if (r->store_where)
        store_unreserve(o->st, r->store_where, r->p);
    pub_unref(r->p);
    r->p = NULL;
    if (r->ihash != r->idem_first_hash) {
        owner_fail(o, &r->h, PROTO_E_BAD_REQUEST, idem_conflict);
        return;
    }
    r->duplicate = 1;
    owner_reply(o, &r->h, 0);
}

/* The broker's answer to a publish: to the store (durable), and the reply
 * (ack "durable": the store sends it once the publication is in MongoDB;
 * live delivery does not wait). */
static void owner_published(void *ctx, pub_req *r, int code,
                            const char *errmsg)
{
    owner *o = ctx;
    if (r->idem_lead) {
        /* The stream stays while its key is open (a read). */
        chan_state *c = chanreg_find(&o->reg, r->h.chan, r->h.chan_len);
        if (c && code)
            owner_idem_failed(o, c, r, code, errmsg);
        else if (c)
            owner_idem_sealed(o, c, r);
    }
    store *st = r->store_where ? o->st : NULL;
    if (code) {
        if (st)
            store_unreserve(st, r->store_where, r->p);
        owner_fail(o, &r->h, code, errmsg);
        return;
    }
    if (r->idem_found) {
        owner_pub_repeat(o, r);
        return;
    }
    owner_pub_emit(o, r);
    pub *p = r->p;
    r->p = NULL;
    if (st && r->h.ns->ack_durable) {
        owner_reply_prepare(&r->h, 0);
        store_push(st, r->store_where, p, &r->h.hdr, r->h.route.worker);
        pub_unref(p);
        return;
    }
    if (st)
        store_push(st, r->store_where, p, NULL, 0);
    pub_unref(p);
    owner_reply(o, &r->h, 0);
}

/* ---- history -------------------------------------------------------------- */

static void owner_hist_step(owner *o, chan_state *c, hist_req *r);

static void owner_history(owner *o, hist_req *r)
{
    /* A parked request starts over: what it had read is stale. */
    publist_clear(&r->pubs);
    memset(&r->prog, 0, sizeof(r->prog));
    chan_state *c = owner_stream(o, &r->h);
    if (!c) {
        owner_fail(o, &r->h, PROTO_E_LIMIT, TOO_MANY);
        return;
    }
    owner_hist_step(o, c, r);
}

/* Reads the window from the request's position (the client's since, or
 * after the store part already read). */
static void owner_hist_step(owner *o, chan_state *c, hist_req *r)
{
    uint64_t lo = r->prog.cont ? r->prog.from + 1
                  : r->prog.store_done ? 1
                  : r->has_since ? r->since.offset + 1 : 1;
    const char *why = NULL;
    chan_expire(c, server_now_ms(o->srv));
    c->reads++;
    int rc = o->b->ops->read(o->b, c, &r->h, lo,
                             r->limit - (uint32_t)r->pubs.n, r->reverse,
                             c->ns->history_size, &why);
    if (rc) {
        c->reads--;
        owner_refused(o, c, &r->h, OWN_HISTORY, rc, why);
    }
    /* else owner_hist_window */
}

static void owner_hist_reply(owner *o, chan_state *c, hist_req *r, int code,
                             const char *epoch, uint64_t top)
{
    if (code)
        publist_clear(&r->pubs);
    memmove(r->epoch, epoch, IDS_LEN);   /* may be r->epoch itself */
    r->epoch[IDS_LEN] = '\0';
    r->top = top;
    owner_reply(o, &r->h, code);
    owner_release(o, c);
}

/* The window for a history page. Durable namespaces read what lies before
 * the window from the store: forward, the store part first and the window
 * after it in another pass; reverse, the window's newest first and older
 * ones from the store appended. */
static void owner_hist_window(owner *o, chan_state *c, hist_req *r,
                              broker_window *w)
{
    const config_ns *ns = c->ns;
    /* The position this pass continues after: the client's since, or the
     * end of the store part read before (in the window's epoch). */
    int since = r->prog.cont || r->has_since;
    uint64_t soff = r->prog.cont ? r->prog.from : r->since.offset;
    int same = r->prog.cont ? memcmp(r->epoch, w->epoch, IDS_LEN) == 0
                       : owner_same_epoch(r->since.epoch, r->since.epoch_len,
                                          w->epoch);
    store *st = owner_store(o, ns);
    uint64_t wstart = owner_window_first(w, ns->history_size);
    uint64_t lo = since ? soff : 0;
    int from_store = st && r->limit && !r->prog.store_done && lo < w->top &&
                     wstart > lo + 1 && (!since || same);
    if (from_store) {
        memcpy(r->epoch, w->epoch, IDS_LEN);
        r->epoch[IDS_LEN] = '\0';
        r->prog.snap_top = w->top;
        if (!r->reverse) {
            publist_clear(&w->pubs);
            r->prog.from = lo;
            r->h.hdr.type = OWN_HIST_READ;
            owner_read_store(o, c, &r->h, &r->pubs, &r->prog.read_status, w->epoch,
                             lo, wstart, r->limit - (uint32_t)r->pubs.n, 0,
                             since);
            return;
        }
    }
    int code = 0;
    if (since && !from_store &&
        (!same || soff > w->top ||
         (r->limit && soff < w->top &&
          (w->first == 0 || wstart > soff + 1))))
        code = PROTO_E_UNRECOVERABLE;
    int64_t oldest = owner_oldest(o, ns);
    publist page = { 0 };
    for (size_t i = 0; i < w->pubs.n; i++) {
        pub *p = w->pubs.v[i];
        if (!code && p->time_ms < oldest) {
            /* Older than history_ttl: not retained. */
            if (since && !r->reverse && page.n == 0 && p->offset == soff + 1)
                code = PROTO_E_UNRECOVERABLE;
            pub_unref(p);
        } else if (code) {
            pub_unref(p);
        } else {
            publist_push(&page, p);
        }
    }
    w->pubs.n = 0;
    if (code)
        publist_clear(&page);
    if (from_store && !code && page.n < r->limit) {
        /* reverse: older ones from the store, after the window's */
        publist_move(&r->pubs, &page);
        publist_free(&page);
        r->h.hdr.type = OWN_HIST_READ;
        owner_read_store(o, c, &r->h, &r->pubs, &r->prog.read_status, w->epoch,
                         lo, wstart, r->limit - (uint32_t)r->pubs.n, 1, since);
        return;
    }
    publist_move(&r->pubs, &page);   /* forward: after a store part */
    publist_free(&page);
    owner_hist_reply(o, c, r, code, w->epoch, w->top);
}

/* A history page's store read is back. Reverse: complete (the window part
 * came first). Forward: the window continues after the store part, unless
 * nothing older was stored (then the window's oldest are the oldest). */
static void owner_hist_read(owner *o, chan_state *c, hist_req *r)
{
    if (r->prog.read_status) {
        /* the start is gone (111) */
        owner_hist_reply(o, c, r, r->prog.read_status, r->epoch, 0);
        return;
    }
    uint64_t got = publist_last(&r->pubs, r->prog.from);
    if (r->reverse || r->pubs.n >= r->limit || got >= r->prog.snap_top) {
        owner_hist_reply(o, c, r, 0, r->epoch, r->prog.snap_top);
        return;
    }
    if (r->pubs.n || r->prog.cont || r->has_since) {
        r->prog.cont = 1;
        r->prog.from = got;
    } else {
        r->prog.store_done = 1;
    }
    owner_hist_step(o, c, r);
}

/* ---- presence ------------------------------------------------------------- */

static void owner_presence(owner *o, pres_req *r)
{
    chan_state *c = owner_stream(o, &r->h);
    if (!c) {
        owner_fail(o, &r->h, PROTO_E_LIMIT, TOO_MANY);
        return;
    }
    const char *why = NULL;
    int rc = o->b->ops->presence_query(o->b, c, r, &why);
    if (rc)
        owner_refused(o, c, &r->h, OWN_PRESENCE, rc, why);
    else
        owner_release(o, c);
}

static void owner_presence_done(void *ctx, pres_req *r, int code,
                                const char *errmsg)
{
    owner *o = ctx;
    if (code)
        owner_fail(o, &r->h, code, errmsg);
    else
        owner_reply(o, &r->h, 0);
}

/* ---- the broker's sink ---------------------------------------------------- */

static chan_state *owner_find(void *ctx, const char *chan, size_t len)
{
    owner *o = ctx;
    return chanreg_find(&o->reg, chan, len);
}

/* A first sync: the ring cannot continue to it (what was published while
 * the stream was not followed never reached it), so it starts empty. */
static void owner_position(void *ctx, chan_state *c, const char *epoch,
                           uint64_t top)
{
    chan_restart(c, epoch, top);
}

/* Posts one message, made for each, to every worker that has subscribers
 * of c. */
static void owner_to_subscribers(owner *o, const chan_state *c,
                                 msg *(*make)(const chan_state *c,
                                              const void *arg),
                                 const void *arg)
{
    for (uint32_t i = 0; i < o->srv->n_workers; i++)
        if (c->wcount[i])
            server_post(o->srv, (uint16_t)i, make(c, arg));
}

static msg *owner_make_reset(const chan_state *c, const void *arg);

/* Fan-out messages (publications, join and leave) a worker may have
 * waiting before the owner stops queueing more for it. A publish through
 * this node is refused (110) already at worker_queue_max; publications
 * that come numbered from other nodes cannot be, hence the cut-off at
 * twice that (and on a single node only concurrent owners could ever
 * reach it). */
static uint64_t owner_fanout_max(const owner *o)
{
    return 2 * (uint64_t)o->srv->cfg->worker_queue_max;
}

#define OWNER_CUT_LOG_MS 10000

/* Like owner_to_subscribers, bounded: a worker whose mailbox holds
 * owner_fanout_max() messages gets no more for c; its subscribers of c
 * are closed with 4003 instead (one reset message), reconnect and recover
 * with since. Until a new subscriber of c on that worker is answered
 * (owner_sub_finish clears the cut), nothing more goes there: every
 * subscriber it had is being reset. */
static void owner_fan_out(owner *o, chan_state *c,
                          msg *(*make)(const chan_state *c, const void *arg),
                          const void *arg)
{
    for (uint32_t i = 0; i < o->srv->n_workers; i++) {
        if (!c->wcount[i] || c->wcut[i])
            continue;
        if (server_backlog(o->srv, (uint16_t)i) < owner_fanout_max(o)) {
            server_post(o->srv, (uint16_t)i, make(c, arg));
            continue;
        }
        c->wcut[i] = 1;
        server_post(o->srv, (uint16_t)i, owner_make_reset(c, NULL));
        o->cuts++;
        int64_t now = server_now_ms(o->srv);
        if (now - o->cut_logged_ms >= OWNER_CUT_LOG_MS) {
            log_warn("fan-out cut off: a worker's mailbox is full, closing its "
                     "subscribers of the channel with 4003",
                     LOG_STRN("channel", c->name, c->len), LOG_INT("worker", i),
                     LOG_INT("queued", server_backlog(o->srv, (uint16_t)i)),
                     LOG_INT("cut_offs", o->cuts));
            o->cut_logged_ms = now;
            o->cuts = 0;
        }
    }
}

static msg *owner_make_deliver(const chan_state *c, const void *p)
{
    return &deliver_msg_new((pub *)p)->hdr;
}

static msg *owner_make_reset(const chan_state *c, const void *arg)
{
    return &reset_msg_new(c->name, c->len)->hdr;
}

/* Publish-to-fan-out latency: from the draft on this node (single node:
 * the publisher's worker, the owner's mailbox, the broker), or, for a
 * publication made from a Redis record (cluster), from when its owner
 * numbered it, by the wall clock (milliseconds, across nodes). */
static void owner_observe(const owner *o, const pub *p)
{
    int64_t ns;
    if (p->drafted_ns)
        ns = metrics_clock_ns() - p->drafted_ns;
    else if (p->time_ms)
        ns = (server_now_ms(o->srv) - p->time_ms) * 1000000;
    else
        return;
    metrics_observe_latency(o->m, ns > 0 ? (uint64_t)ns : 0);
}

/* The next publication of a stream: into the ring, and one message per
 * worker with subscribers (each encodes it once for all of its own). */
static void owner_deliver(void *ctx, chan_state *c, pub *p)
{
    owner *o = ctx;
    chan_append(&o->reg, c, p, server_now_ms(o->srv));
    owner_fan_out(o, c, owner_make_deliver, p);
    if (o->m)
        owner_observe(o, p);
    if (chanreg_over_bytes(&o->reg))
        owner_evict(o, c, 0);
}

/* The stream has a gap the broker cannot fill, or its data was lost (a
 * new epoch): the local subscribers are closed with 4003 and recover with
 * since, which tells them what is still there. */
static void owner_reset(void *ctx, chan_state *c, const char *epoch,
                        uint64_t top, const char *why)
{
    owner *o = ctx;
    log_warn("channel stream reset: closing its subscribers with 4003",
             LOG_STRN("channel", c->name, c->len), LOG_STR("reason", why),
             LOG_INT("delivered", c->top), LOG_INT("top", top));
    owner_to_subscribers(o, c, owner_make_reset, NULL);
    chan_restart(c, epoch, top);
}

/* The parked requests of a stream go again (or fail with code). */
static void owner_ready(void *ctx, chan_state *c, int code,
                        const char *errmsg)
{
    owner *o = ctx;
    msg *m = chan_unpark(c);
    c->reads++;   /* c stays while its requests run */
    while (m) {
        msg *next = m->next;
        m->next = NULL;
        if (code) {
            if (m->type == OWN_PUBLISH)
                owner_idem_failed(o, c, (pub_req *)m, code, errmsg);
            owner_fail(o, (chan_req *)m, code, errmsg);
        } else {
            owner_receive(o, m);
        }
        m = next;
    }
    c->reads--;
    owner_release(o, c);
}

static void owner_idle(void *ctx, chan_state *c)
{
    owner_release(ctx, c);
}

typedef struct owner_join {
    int join;
    const char *client, *user;
    size_t user_len;
} owner_join;

static msg *owner_make_join(const chan_state *c, const void *arg)
{
    const owner_join *j = arg;
    return &join_msg_new(j->join, c->name, c->len, j->client, j->user,
                         j->user_len)->h.hdr;
}

/* A join or leave push to every worker with subscribers; the client itself
 * is excluded by the receiving worker. */
static void owner_announce(void *ctx, chan_state *c, int join,
                           const char *client, const char *user,
                           size_t user_len)
{
    owner_join j = { join, client, user, user_len };
    owner_fan_out(ctx, c, owner_make_join, &j);
}

static void owner_window(void *ctx, chan_state *c, chan_req *r,
                         broker_window *w)
{
    owner *o = ctx;
    c->reads--;
    if (!w) {
        owner_fail(o, r, PROTO_E_NOT_AVAILABLE, WINDOW_DOWN);
        owner_release(o, c);
    } else if (r->hdr.type == OWN_SUBSCRIBE || r->hdr.type == OWN_SUB_READ)
        owner_sub_window(o, c, (sub_req *)r, w);
    else
        owner_hist_window(o, c, (hist_req *)r, w);
}

/* ---- the mailbox ---------------------------------------------------------- */

void owner_receive(owner *o, msg *m)
{
    switch (m->type) {
    case OWN_SUBSCRIBE: owner_subscribe(o, (sub_req *)m); break;
    case OWN_UNSUBSCRIBE: owner_unsubscribe(o, (chan_req *)m); break;
    case OWN_PUBLISH: owner_publish(o, (pub_req *)m); break;
    case OWN_HISTORY: owner_history(o, (hist_req *)m); break;
    case OWN_PRESENCE: owner_presence(o, (pres_req *)m); break;
    case OWN_SUB_READ:
    case OWN_HIST_READ: owner_read_back(o, (chan_req *)m); break;
    case OWN_IDEM_FOUND: owner_idem_found(o, (idem_found_msg *)m); break;
    case OWN_STORE_TOP:
        if (o->b->ops->receive) {
            o->b->ops->receive(o->b, m);
            break;
        }
        /* fall through */
    default:
        log_error("unexpected message for a channel owner",
                  LOG_INT("type", m->type));
        requests_free(m);
    }
}

static void owner_tick_one(void *ctx, chan_state *c)
{
    owner_release(ctx, c);
}

void owner_tick(owner *o)
{
    chanreg_walk(&o->reg, OWNER_WALK_PER_TICK, owner_tick_one, o);
    if (chanreg_over_bytes(&o->reg))
        owner_evict(o, NULL, 0);
}

void owner_init(owner *o, server *srv, uint16_t index, struct broker *b)
{
    memset(o, 0, sizeof(*o));
    o->srv = srv;
    o->index = index;
    o->b = b;
    o->st = srv->store;
    o->m = metrics_of(srv->metrics, index);
    chanreg_init(&o->reg, srv->n_workers, requests_free);
    o->reg.min_ring = b->min_ring;
    /* The node's bounds, shared evenly: a channel's owner is a hash of
     * its name. */
    const config *cfg = srv->cfg;
    o->reg.max_n = (cfg->max_channels + srv->n_workers - 1) / srv->n_workers;
    o->reg.max_bytes = ((size_t)cfg->history_memory_mb << 20) / srv->n_workers;
    b->sink = (broker_sink){
        .ctx = o,
        .find = owner_find,
        .position = owner_position,
        .deliver = owner_deliver,
        .reset = owner_reset,
        .ready = owner_ready,
        .idle = owner_idle,
        .announce = owner_announce,
        .published = owner_published,
        .window = owner_window,
        .presence = owner_presence_done,
    };
}

void owner_free(owner *o)
{
    chan_state *c, *tmp;
    HASH_ITER(hh, o->reg.chans, c, tmp)
        if (c->bs)
            o->b->ops->forget(o->b, c);
    atomic_fetch_sub_explicit(&o->srv->channels, (unsigned)o->reg.n,
                              memory_order_relaxed);
    chanreg_free(&o->reg);
}
