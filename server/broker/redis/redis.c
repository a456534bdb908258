/*
 * The Redis broker's operations (redis.h): following streams (SUBSCRIBE,
 * then epoch and top read with the range script, then delivery in offset
 * order through order.c), publishing (the publish script), window reads
 * for recovery and history, and what arrives on pub/sub.
 *
 * A followed stream goes IDLE -> SUBSCRIBING -> SYNC -> LIVE, and back to
 * IDLE through UNSUBSCRIBING when its last subscriber left; a link that
 * goes down puts its streams in DOWN (subscribers kept) and the link's
 * return subscribes and repairs them. Records that arrive before the
 * stream is LIVE are held by the ordering machine.
 */
#include "broker/redis/redis_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "base/log.h"
#include "base/mem.h"
#include "broker/redis/record.h"
#include "broker/redis/redis.h"

#undef uthash_fatal
#define uthash_fatal(msg) abort()

#define REDIS_TICK_MS 100

const char *const REDIS_DOWN = "broker unavailable";
/* The link broke with the publish script sent: it may have run. */
static const char *const REDIS_LOST =
    "broker unavailable (in flight: may have been published)";

static redis_broker *rb_of(broker *b)
{
    return (redis_broker *)b;
}

uint64_t redis_now(const redis_broker *rb)
{
    return uv_now(rb->loop);
}

uint32_t redis_shard(const char *chan, size_t len, uint32_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)chan[i];
        h *= 16777619u;
    }
    return n ? h % n : 0;
}

rlink *redis_link_of(redis_broker *rb, const char *chan, size_t len)
{
    return &rb->links[redis_shard(chan, len, rb->n)];
}

size_t redis_key(const redis_broker *rb, char *out, const char *chan,
                 size_t len, const char *suffix)
{
    int n = snprintf(out, REDIS_KEY_MAX, "%s:{%.*s}%s",
                     rb->srv->cfg->redis_prefix, (int)len, chan, suffix);
    return n < 0 ? 0 : (size_t)n;
}

/* Seconds the stream's keys outlive its last publication. */
static uint32_t redis_stream_ttl(const redis_broker *rb, const config_ns *ns)
{
    uint32_t t = rb->srv->cfg->stream_ttl;
    return t > ns->history_ttl ? t : ns->history_ttl;
}

/* ---- streams -------------------------------------------------------------- */

static struct broker_stream *redis_stream(redis_broker *rb, chan_state *c)
{
    struct broker_stream *rs = c->bs;
    if (rs)
        return rs;
    rs = mem_calloc(1, sizeof(*rs));
    rs->c = c;
    rs->l = redis_link_of(rb, c->name, c->len);
    order_init(&rs->ord);
    HASH_ADD_KEYPTR(hh, rb->streams, c->name, c->len, rs);
    c->bs = rs;
    return rs;
}

static struct broker_stream *redis_stream_find(redis_broker *rb,
                                               const char *chan, size_t len)
{
    struct broker_stream *rs = NULL;
    HASH_FIND(hh, rb->streams, chan, len, rs);
    return rs;
}

static void redis_await_clear(redis_broker *rb, struct broker_stream *rs)
{
    if (rs->await_top)
        rb->n_awaiting--;
    rs->await_top = 0;
    rs->await_until_ms = 0;
    rs->await_reset = 0;
}

static void redis_forget(broker *b, chan_state *c)
{
    struct broker_stream *rs = c->bs;
    if (!rs)
        return;
    redis_await_clear(rb_of(b), rs);
    HASH_DEL(rb_of(b)->streams, rs);
    order_free(&rs->ord);
    free(rs);
    c->bs = NULL;
}

/* ---- what the ordering machine asks for ---------------------------------- */

static void redis_out_deliver(void *ctx, pub *p)
{
    struct broker_stream *rs = ctx;
    redis_broker *rb = rs->l->rb;
    rb->b.sink.deliver(rb->b.sink.ctx, rs->c, p);
}

static void redis_out_reset(void *ctx, const char *epoch, uint64_t top,
                            const char *why)
{
    struct broker_stream *rs = ctx;
    redis_broker *rb = rs->l->rb;
    if (rs->await_top)
        rs->await_reset = 1;   /* the waiting subscribe is answered again */
    rb->b.sink.reset(rb->b.sink.ctx, rs->c, epoch, top, why);
}

static void redis_out_position(void *ctx, const char *epoch, uint64_t top)
{
    struct broker_stream *rs = ctx;
    redis_broker *rb = rs->l->rb;
    rb->b.sink.position(rb->b.sink.ctx, rs->c, epoch, top);
}

static int redis_read_range(redis_broker *rb, rlink *l, rreq *rq,
                            const char *chan, size_t len, uint64_t lo,
                            uint32_t limit, int reverse, int64_t keep);
static void redis_on_fill(rreq *rq, redisReply *r);

static int redis_out_fill(void *ctx, uint64_t from)
{
    struct broker_stream *rs = ctx;
    rreq *rq = rreq_new(rs->l, redis_on_fill, rs->c->name, rs->c->len);
    if (redis_read_range(rs->l->rb, rs->l, rq, rs->c->name, rs->c->len, from,
                         1000000, 0, -1) < 0) {
        free(rq);
        return -1;
    }
    return 0;
}

static order_out redis_out(struct broker_stream *rs)
{
    return (order_out){
        .ctx = rs,
        .deliver = redis_out_deliver,
        .reset = redis_out_reset,
        .position = redis_out_position,
        .fill = redis_out_fill,
    };
}

/* The stream is live again (or could not be): its parked requests go
 * (a catch-up's included: it is handled again from the start). The last
 * thing done with rs: the owner may free the stream. */
static void redis_ready(redis_broker *rb, struct broker_stream *rs, int code,
                        const char *why)
{
    redis_await_clear(rb, rs);
    rb->b.sink.ready(rb->b.sink.ctx, rs->c, code, why);
}

/* After deliveries: a subscribe waiting for the stream to catch up goes
 * once it has, or once the stream was reset. 1 when ready() was called
 * (rs may be gone). */
static int redis_await_check(redis_broker *rb, struct broker_stream *rs)
{
    if (!rs->await_top ||
        (rs->c->top < rs->await_top && !rs->await_reset))
        return 0;
    redis_ready(rb, rs, 0, NULL);
    return 1;
}

/* ---- reads of the hot window ---------------------------------------------- */

/* Sends the range script for chan: epoch, top, first offset of the
 * window, and up to `limit` records from offset `lo` (newest first when
 * reverse) among the newest `keep` (-1: the whole window). Creates the
 * stream when missing. */
static int redis_read_range(redis_broker *rb, rlink *l, rreq *rq,
                            const char *chan, size_t len, uint64_t lo,
                            uint32_t limit, int reverse, int64_t keep)
{
    char ks[REDIS_KEY_MAX], kw[REDIS_KEY_MAX], ttl[16], slo[24], lim[16],
        kp[24], cand[IDS_LEN + 1];
    ids_hex(ids_next(&rb->rng), cand);
    snprintf(ttl, sizeof(ttl), "%u", rb->srv->cfg->stream_ttl);
    snprintf(slo, sizeof(slo), "%llu", (unsigned long long)lo);
    snprintf(lim, sizeof(lim), "%u", limit);
    snprintf(kp, sizeof(kp), "%lld", (long long)keep);
    const char *kv[] = { ks, kw, cand, ttl, slo, lim, reverse ? "1" : "0",
                         kp };
    size_t kl[] = { redis_key(rb, ks, chan, len, ":s"),
                    redis_key(rb, kw, chan, len, ":w"), IDS_LEN, strlen(ttl),
                    strlen(slo), strlen(lim), 1, strlen(kp) };
    return rlink_eval(l, rq, SC_RANGE, 2, kv, kl, 8);
}

/* The range script's answer; the records parsed into publications of
 * chan (malformed ones logged and left out). -1 when malformed. */
static int redis_range_parse(redisReply *r, const char *chan, size_t len,
                             broker_window *w)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[0]->len != IDS_LEN ||
        r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_INTEGER ||
        r->element[3]->type != REDIS_REPLY_ARRAY)
        return -1;
    w->epoch = r->element[0]->str;
    w->top = (uint64_t)r->element[1]->integer;
    w->first = (uint64_t)r->element[2]->integer;
    redisReply *recs = r->element[3];
    for (size_t i = 0; i < recs->elements; i++) {
        redisReply *e = recs->element[i];
        pub *p = e->type == REDIS_REPLY_STRING
                     ? record_parse(chan, len, e->str, e->len) : NULL;
        if (p)
            publist_push(&w->pubs, p);
    }
    return 0;
}

static void redis_on_window(rreq *rq, redisReply *r)
{
    redis_broker *rb = rq->l->rb;
    broker_window w = { 0 };
    int ok = redis_range_parse(r, rq->c->name, rq->c->len, &w) == 0;
    rb->b.sink.window(rb->b.sink.ctx, rq->c, rq->arg, ok ? &w : NULL);
    publist_free(&w.pubs);
}

static int redis_read(broker *b, chan_state *c, chan_req *r, uint64_t lo,
                      uint32_t limit, int reverse, uint32_t keep,
                      const char **errmsg)
{
    redis_broker *rb = rb_of(b);
    rlink *l = redis_link_of(rb, c->name, c->len);
    rreq *rq = rreq_new(l, redis_on_window, NULL, 0);
    rq->arg = r;
    rq->c = c;
    if (redis_read_range(rb, l, rq, c->name, c->len, lo, limit, reverse,
                         keep) < 0) {
        free(rq);
        *errmsg = REDIS_DOWN;
        return PROTO_E_NOT_AVAILABLE;
    }
    return 0;
}

/* ---- following ------------------------------------------------------------- */

/* SUBSCRIBE in Redis; -1 (the stream DOWN) when it cannot be sent. */
static int redis_subscribe(redis_broker *rb, struct broker_stream *rs)
{
    char k[REDIS_KEY_MAX];
    size_t kl = redis_key(rb, k, rs->c->name, rs->c->len, "");
    if (rlink_pubsub(rs->l, "SUBSCRIBE", k, kl) < 0) {
        rs->state = RS_DOWN;
        return -1;
    }
    rs->state = RS_SUBSCRIBING;
    return 0;
}

/* Follows the stream again for requests parked on it; they fail when the
 * SUBSCRIBE cannot be sent. The last thing done with rs. */
static void redis_resubscribe(redis_broker *rb, struct broker_stream *rs)
{
    if (redis_subscribe(rb, rs) < 0 && rs->c->waiting)
        redis_ready(rb, rs, PROTO_E_NOT_AVAILABLE, REDIS_DOWN);
}

static void redis_on_ensure(rreq *rq, redisReply *r);

/* Reads epoch and top after the subscription is confirmed (records that
 * arrive meanwhile are held). */
static void redis_ensure(redis_broker *rb, struct broker_stream *rs)
{
    rreq *rq = rreq_new(rs->l, redis_on_ensure, rs->c->name, rs->c->len);
    if (redis_read_range(rb, rs->l, rq, rs->c->name, rs->c->len, 1, 0, 0,
                         0) < 0) {
        free(rq);
        return;   /* the link is going down */
    }
    rs->state = RS_SYNC;
}

static void redis_on_ensure(rreq *rq, redisReply *r)
{
    redis_broker *rb = rq->l->rb;
    struct broker_stream *rs = redis_stream_find(rb, rq->name, rq->len);
    if (!rs || rs->state != RS_SYNC)
        return;
    broker_window w = { 0 };
    if (redis_range_parse(r, rq->name, rq->len, &w) < 0) {
        if (!r)
            return;   /* the link went down: repaired when it is back */
        /* Redis answered with an error (out of memory, a key of another
         * type): the waiting subscribers are told, a later subscribe
         * tries again. */
        log_warn("stream read failed",
                 LOG_STRN("error", r->type == REDIS_REPLY_ERROR ? r->str : "",
                          r->type == REDIS_REPLY_ERROR ? r->len : 0));
        rs->state = RS_DOWN;
        redis_ready(rb, rs, PROTO_E_NOT_AVAILABLE, REDIS_DOWN);
        return;
    }
    rs->state = RS_LIVE;
    order_out out = redis_out(rs);
    order_sync(&rs->ord, w.epoch, w.top, &out);
    publist_free(&w.pubs);
    if (order_ready(&rs->ord))
        redis_ready(rb, rs, 0, NULL);
}

static void redis_on_fill(rreq *rq, redisReply *r)
{
    redis_broker *rb = rq->l->rb;
    struct broker_stream *rs = redis_stream_find(rb, rq->name, rq->len);
    if (!rs || !rs->ord.filling)
        return;
    broker_window w = { 0 };
    if (rs->state != RS_LIVE ||
        redis_range_parse(r, rq->name, rq->len, &w) < 0) {
        order_fill_failed(&rs->ord);
        publist_free(&w.pubs);
        /* NULL: the link went down, repaired when it is back. An error
         * reply: the held records wait for the next record to retry. */
        if (r && rs->state == RS_LIVE) {
            log_warn("window read failed",
                     LOG_STRN("channel", rq->name, rq->len));
            redis_ready(rb, rs, 0, NULL);
        }
        return;
    }
    order_out out = redis_out(rs);
    order_filled(&rs->ord, w.epoch, w.top, &w.pubs, &out);
    publist_free(&w.pubs);
    if (order_ready(&rs->ord))
        redis_ready(rb, rs, 0, NULL);
    else
        redis_await_check(rb, rs);
}

static int redis_follow(broker *b, chan_state *c, const char **errmsg)
{
    redis_broker *rb = rb_of(b);
    if (!redis_link_of(rb, c->name, c->len)->up) {
        *errmsg = REDIS_DOWN;
        return PROTO_E_NOT_AVAILABLE;
    }
    struct broker_stream *rs = redis_stream(rb, c);
    if (rs->state == RS_LIVE && order_ready(&rs->ord))
        return 0;
    if ((rs->state == RS_IDLE || rs->state == RS_DOWN) &&
        redis_subscribe(rb, rs) < 0) {
        *errmsg = REDIS_DOWN;
        return PROTO_E_NOT_AVAILABLE;
    }
    /* Subscribing, syncing, filling a gap, or unsubscribing (subscribed
     * again when that is confirmed, since a request waits). */
    return BROKER_AGAIN;
}

static int redis_catch_up(broker *b, chan_state *c, uint64_t offset,
                          const char **errmsg)
{
    redis_broker *rb = rb_of(b);
    struct broker_stream *rs = c->bs;
    if (!rs || !rs->l->up || rs->state == RS_IDLE || rs->state == RS_DOWN ||
        rs->state == RS_UNSUBSCRIBING) {
        *errmsg = REDIS_DOWN;
        return PROTO_E_NOT_AVAILABLE;
    }
    if (c->top >= offset)
        return 0;
    if (!rs->await_top) {
        rb->n_awaiting++;
        rs->await_until_ms =
            redis_now(rb) + rb->srv->cfg->redis_timeout_ms;
    }
    if (offset > rs->await_top)
        rs->await_top = offset;
    return BROKER_AGAIN;
}

/* Catch-ups that waited redis_timeout_ms: their subscribes are handled
 * again (and decide what to answer). A lagging pub/sub connection is
 * dropped by its heartbeat within about that time anyway. */
static void redis_await_expire(redis_broker *rb, uint64_t now)
{
    if (!rb->n_awaiting)
        return;
    struct broker_stream *rs, *tmp;
    HASH_ITER(hh, rb->streams, rs, tmp)
        if (rs->await_top && now >= rs->await_until_ms)
            redis_ready(rb, rs, 0, NULL);
}

static int redis_release(broker *b, chan_state *c)
{
    redis_broker *rb = rb_of(b);
    struct broker_stream *rs = c->bs;
    if (!rs)
        return 1;
    order_stop(&rs->ord);
    /* Not subscribed on the link's current connection (idle, or down: the
     * link reconnected since, or the subscription failed): nothing to
     * undo, and an UNSUBSCRIBE would never be confirmed (hiredis reports
     * only channels its connection subscribed). */
    if (rs->state == RS_IDLE || rs->state == RS_DOWN || !rs->l->up) {
        redis_forget(b, c);
        return 1;
    }
    if (rs->state == RS_UNSUBSCRIBING)
        return 0;
    char k[REDIS_KEY_MAX];
    size_t kl = redis_key(rb, k, c->name, c->len, "");
    if (rlink_pubsub(rs->l, "UNSUBSCRIBE", k, kl) < 0) {
        redis_forget(b, c);
        return 1;
    }
    rs->state = RS_UNSUBSCRIBING;
    return 0;
}

/* A pub/sub message of a channel: a record, a join or leave, or a
 * subscription's confirmation. */
void redis_on_sub(rlink *l, redisReply *rep)
{
    redis_broker *rb = l->rb;
    const char *kind = rep->element[0]->str, *name = rep->element[1]->str;
    size_t nlen = rep->element[1]->len;
    /* "prefix:{channel}" */
    size_t plen = strlen(rb->srv->cfg->redis_prefix);
    if (nlen < plen + 4 || name[plen] != ':' || name[plen + 1] != '{' ||
        name[nlen - 1] != '}')
        return;
    struct broker_stream *rs =
        redis_stream_find(rb, name + plen + 2, nlen - plen - 3);
    if (!rs)
        return;
    if (strcmp(kind, "message") == 0) {
        redisReply *e = rep->element[2];
        if (e->type != REDIS_REPLY_STRING || e->len == 0)
            return;
        if (rs->state == RS_UNSUBSCRIBING || rs->state == RS_IDLE ||
            rs->state == RS_SUBSCRIBING)
            return;
        if (e->str[0] == 'J' || e->str[0] == 'L') {
            record_presence jl;
            if (rs->state == RS_LIVE &&
                record_presence_parse(e->str, e->len, &jl))
                rb->b.sink.announce(rb->b.sink.ctx, rs->c, jl.join,
                                    jl.client, jl.user, jl.user_len);
            return;
        }
        pub *p = record_parse(rs->c->name, rs->c->len, e->str, e->len);
        if (p) {
            order_out out = redis_out(rs);
            order_record(&rs->ord, p, &out);
            redis_await_check(rb, rs);
        }
    } else if (strcmp(kind, "subscribe") == 0) {
        if (rs->state == RS_SUBSCRIBING)
            redis_ensure(rb, rs);
    } else if (strcmp(kind, "unsubscribe") == 0) {
        if (rs->state != RS_UNSUBSCRIBING)
            return;
        rs->state = RS_IDLE;
        /* Not followed while unsubscribed: start again from Redis's top. */
        order_forget(&rs->ord);
        if (rs->c->waiting)
            redis_resubscribe(rb, rs);
        else
            rb->b.sink.idle(rb->b.sink.ctx, rs->c);
    }
}

void redis_link_up(rlink *l)
{
    redis_broker *rb = l->rb;
    /* Resubscribe and repair every stream that has subscribers here. */
    struct broker_stream *rs, *tmp;
    HASH_ITER(hh, rb->streams, rs, tmp)
        if (rs->l == l && rs->state == RS_DOWN &&
            (rs->c->total || rs->c->waiting))
            redis_resubscribe(rb, rs);
    /* Presence entries of this node went missing if Redis restarted. */
    rb->next_refresh_ms = 0;
    redis_occupancy_link_up(l);
}

void redis_link_lost(rlink *l)
{
    redis_broker *rb = l->rb;
    struct broker_stream *rs, *tmp;
    HASH_ITER(hh, rb->streams, rs, tmp) {
        if (rs->l != l || rs->state == RS_IDLE)
            continue;
        order_stop(&rs->ord);
        rs->state = RS_DOWN;
        /* Fails what waits; the owner lets go of streams nobody needs. */
        redis_ready(rb, rs, PROTO_E_NOT_AVAILABLE, REDIS_DOWN);
    }
}

/* ---- publish ---------------------------------------------------------------- */

static void redis_on_pub(rreq *rq, redisReply *r)
{
    redis_broker *rb = rq->l->rb;
    pub_req *pr = rq->arg;
    if (!r || r->type != REDIS_REPLY_ARRAY ||
        (r->elements != 2 && r->elements != 3) ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[1]->len != IDS_LEN ||
        (r->elements == 3 && r->element[2]->type != REDIS_REPLY_STRING)) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_warn("publish script failed",
                     LOG_STRN("error", r->str, r->len));
        /* The link broke with the script in flight: it may or may not
         * have run, and the client is told so (retry is its call). */
        rb->b.sink.published(rb->b.sink.ctx, pr, PROTO_E_NOT_AVAILABLE,
                             r ? REDIS_DOWN : REDIS_LOST);
        return;
    }
    pr->offset = (uint64_t)r->element[0]->integer;
    memcpy(pr->epoch, r->element[1]->str, IDS_LEN);
    pr->epoch[IDS_LEN] = '\0';
    if (r->elements == 3) {
        /* The key had published already: nothing was published now. */
        char h[17];
        size_t n = r->element[2]->len < 16 ? r->element[2]->len : 16;
        memcpy(h, r->element[2]->str, n);
        h[n] = '\0';
        pr->idem_found = 1;
        pr->idem_first_hash = strtoull(h, NULL, 16);
    } else if (pr->p) {
        pub_seal(pr->p, pr->offset, pr->epoch, pr->p->time_ms);
    }
    rb->b.sink.published(rb->b.sink.ctx, pr, 0, NULL);
}

static int redis_publish(broker *b, chan_state *c, pub_req *r,
                         const char **errmsg)
{
    redis_broker *rb = rb_of(b);
    rlink *l = redis_link_of(rb, c->name, c->len);
    if (l->pending >= REDIS_PENDING_MAX)
        return PROTO_E_RATE_LIMITED;
    const config_ns *ns = c->ns;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    r->p->time_ms = server_now_ms(rb->srv);
    record_body(&sb, r->p);
    if (!r->need_draft) {
        /* Only the record travels: the draft is not needed back. */
        pub_unref(r->p);
        r->p = NULL;
    }
    char ks[REDIS_KEY_MAX], kw[REDIS_KEY_MAX], kc[REDIS_KEY_MAX], win[16],
        ttl[16], cand[IDS_LEN + 1];
    /* prefix:{channel}:idem:key */
    char ki[REDIS_KEY_MAX + PROTO_IDEM_KEY_MAX + 8], iwin[24], ihash[24];
    ids_hex(ids_next(&rb->rng), cand);
    uint32_t window = ns->history_size > REDIS_WINDOW_MIN ? ns->history_size
                                                          : REDIS_WINDOW_MIN;
    snprintf(win, sizeof(win), "%u", window);
    snprintf(ttl, sizeof(ttl), "%u", redis_stream_ttl(rb, ns));
    int keyed = r->ikey_len && rb->srv->cfg->idempotency_window;
    int ni = keyed ? snprintf(ki, sizeof(ki), "%s:{%.*s}:idem:%s",
                              rb->srv->cfg->redis_prefix, (int)c->len,
                              c->name, r->ikey)
                   : 0;
    snprintf(iwin, sizeof(iwin), "%llu",
             (unsigned long long)rb->srv->cfg->idempotency_window * 1000ull);
    snprintf(ihash, sizeof(ihash), "%016llx", (unsigned long long)r->ihash);
    /* EVALSHA's keys come before its other arguments. */
    const char *kv[] = { ks, kw, ki, cand, sb.data, win, ttl, kc, iwin,
                         ihash };
    size_t kl[] = { redis_key(rb, ks, c->name, c->len, ":s"),
                    redis_key(rb, kw, c->name, c->len, ":w"), (size_t)ni,
                    IDS_LEN, sb.size, strlen(win), strlen(ttl),
                    redis_key(rb, kc, c->name, c->len, ""), strlen(iwin),
                    strlen(ihash) };
    if (!keyed) {
        /* No key: drop ki and the key's two arguments. */
        memmove(kv + 2, kv + 3, sizeof(kv[0]) * 5);
        memmove(kl + 2, kl + 3, sizeof(kl[0]) * 5);
    }
    rreq *rq = rreq_new(l, redis_on_pub, NULL, 0);
    rq->arg = r;
    int rc = keyed ? rlink_eval(l, rq, SC_PUB, 3, kv, kl, 10)
                   : rlink_eval(l, rq, SC_PUB, 2, kv, kl, 7);
    msgpack_sbuffer_destroy(&sb);
    if (rc < 0) {
        free(rq);
        *errmsg = REDIS_DOWN;
        return PROTO_E_NOT_AVAILABLE;
    }
    return 0;
}

/* ---- periodic ---------------------------------------------------------------- */

/* A channel with subscribers but no publications for stream_ttl would
 * lose its stream in Redis and start a new epoch under them: keep the keys
 * of followed streams alive. */
static void redis_keep_streams(redis_broker *rb)
{
    struct broker_stream *rs, *tmp;
    HASH_ITER(hh, rb->streams, rs, tmp) {
        chan_state *c = rs->c;
        if (rs->state != RS_LIVE || !c->total || !rs->l->up)
            continue;
        char ttl[16];
        snprintf(ttl, sizeof(ttl), "%u", redis_stream_ttl(rb, c->ns));
        static const char *const suffix[2] = { ":s", ":w" };
        for (int k = 0; k < 2; k++) {
            char key[REDIS_KEY_MAX];
            size_t kl = redis_key(rb, key, c->name, c->len, suffix[k]);
            const char *argv[] = { "EXPIRE", key, ttl };
            size_t lens[] = { 6, kl, strlen(ttl) };
            rreq *rq = rreq_new(rs->l, NULL, NULL, 0);
            if (rlink_send(rs->l, rq, 3, argv, lens) < 0)
                free(rq);
        }
    }
}

static void redis_on_timer(uv_timer_t *t)
{
    redis_broker *rb = t->data;
    const config *cfg = rb->srv->cfg;
    uint64_t now = redis_now(rb);
    /* A tick that comes far too late means this loop was busy (or the
     * machine starved it): replies may sit unread in the sockets, so the
     * links get one more iteration before anything is declared timed
     * out. Only once in a row, so a loop that is always late still
     * times out. */
    int late = !rb->late_tick && rb->last_tick_ms &&
               now - rb->last_tick_ms > 3 * REDIS_TICK_MS;
    rb->late_tick = late;
    rb->last_tick_ms = now;
    for (uint32_t i = 0; i < rb->n; i++)
        rlink_tick(&rb->links[i], now, late);
    redis_await_expire(rb, now);
    if (now >= rb->next_refresh_ms) {
        rb->next_refresh_ms = now + (uint64_t)cfg->presence_ttl * 1000 / 3;
        redis_presence_refresh(rb);
        redis_occupancy_tick(rb);
    }
    if (now >= rb->next_keep_ms) {
        if (rb->next_keep_ms)
            redis_keep_streams(rb);
        rb->next_keep_ms = now + (uint64_t)cfg->stream_ttl * 1000 / 4;
    }
}

/* ---- lifecycle ---------------------------------------------------------------- */

static void redis_start(broker *b)
{
    redis_broker *rb = rb_of(b);
    uv_timer_init(rb->loop, &rb->timer);
    rb->timer.data = rb;
    uv_timer_start(&rb->timer, redis_on_timer, REDIS_TICK_MS, REDIS_TICK_MS);
    for (uint32_t i = 0; i < rb->n; i++) {
        /* down_logged = 0: a first connect that fails says "broker down"
         * once, with the reason, then stays quiet while retrying. */
        rlink_connect(&rb->links[i]);
    }
}

static void redis_timer_closed(uv_handle_t *h)
{
    (void)h;
}

static void redis_stop(broker *b)
{
    redis_broker *rb = rb_of(b);
    rb->stopping = 1;
    uv_timer_stop(&rb->timer);
    uv_close((uv_handle_t *)&rb->timer, redis_timer_closed);
    for (uint32_t i = 0; i < rb->n; i++)
        rlink_close(&rb->links[i]);
}

static void redis_destroy(broker *b)
{
    redis_broker *rb = rb_of(b);
    redis_occupancy_free(rb);
    free(rb->links);
    free(rb);
}

static const broker_ops redis_ops = {
    .name = "redis",
    .start = redis_start,
    .stop = redis_stop,
    .destroy = redis_destroy,
    .follow = redis_follow,
    .catch_up = redis_catch_up,
    .release = redis_release,
    .forget = redis_forget,
    .publish = redis_publish,
    .read = redis_read,
    .presence_change = redis_presence_change,
    .occupancy = redis_occupancy,
    .client_change = redis_client_change,
    .presence_query = redis_presence_query,
    .receive = NULL,
    .ask_all = redis_ask_all,
    .answer = redis_answer,
};

broker *broker_redis_new(server *srv, uint16_t worker, uv_loop_t *loop)
{
    const config *cfg = srv->cfg;
    redis_broker *rb = mem_calloc(1, sizeof(*rb));
    rb->b.ops = &redis_ops;
    rb->b.min_ring = REDIS_WINDOW_MIN;
    rb->b.multi_node = 1;
    rb->srv = srv;
    rb->worker = worker;
    rb->loop = loop;
    ids_rng_seed(&rb->rng);
    rb->n = cfg->n_redis;
    rb->links = mem_calloc(rb->n, sizeof(rlink));
    char id[IDS_LEN + 1];
    ids_hex(ids_next(&rb->rng), id);
    snprintf(rb->hb, sizeof(rb->hb), "%s:!hb:%s", cfg->redis_prefix, id);
    snprintf(rb->ctl, sizeof(rb->ctl), "%s:!ctl", cfg->redis_prefix);
    snprintf(rb->reply, sizeof(rb->reply), "%s:!re:%s", cfg->redis_prefix, id);
    for (uint32_t i = 0; i < rb->n; i++) {
        rlink *l = &rb->links[i];
        l->rb = rb;
        l->idx = i;
        l->rc = &cfg->redis[i];
    }
    redis_occupancy_init(rb);
    return &rb->b;
}
