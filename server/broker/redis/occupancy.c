/*
 * Webhook events that need the whole cluster (docs/webhooks.md, "Cluster"):
 * occupied and vacated once per channel across the nodes, and the vacated
 * and disconnect events of a node that died.
 *
 * Every worker of every node is a *member* ("<node>.<start ms>/<worker>":
 * a restarted node is a new member, so what the old one left is reaped).
 * In each Redis server a member keeps:
 *   P:{chan}:nodes          the members with subscribers of chan
 *   P:!hk:<m>:chans         the channels of that server it is in
 *   P:!hk:<m>:clients       its connected clients (hash client -> user) of
 *                           that server (a client's server: the hash of
 *                           its id)
 *   P:!hk:<m>:lease         renewed every presence_ttl/3, expiring after
 *                           presence_ttl
 *   P:!hk:members           every member
 * A channel's owner worker adds its member to the channel's set at its
 * first subscriber and removes it at its last (SC_OCC): only the call that
 * made the set non-empty or empty makes the event. Worker 0 of each node
 * reaps (SC_REAP): a member without lease loses its channels (vacated for
 * those whose set became empty) and clients (disconnect, code 1006). The
 * script is atomic and pops what it reports, so two nodes reaping at once
 * report each channel and client once (the script is the lock); each call
 * handles at most REDIS_REAP_BATCH of them and the reaper calls again while
 * one reported anything.
 *
 * Only with webhooks (srv->hooks): without them nothing here runs.
 */
#include "broker/redis/redis_priv.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "hooks/hooks.h"

#define REDIS_REAP_BATCH 512
/* Removals that failed while a link was down, retried when it is up
 * again (bounded: beyond it the member keeps the channel until it dies). */
#define REDIS_OCC_RETRY_MAX 65536

static int occ_on(const redis_broker *rb)
{
    hooks *h = rb->srv->hooks;
    return hooks_wants(h, CONFIG_HOOK_OCCUPIED) ||
           hooks_wants(h, CONFIG_HOOK_VACATED) ||
           hooks_wants(h, CONFIG_HOOK_DISCONNECT);
}

static size_t occ_member_key(const redis_broker *rb, char *out,
                             const char *suffix)
{
    int n = snprintf(out, REDIS_KEY_MAX, "%s:!hk:%s:%s",
                     rb->srv->cfg->redis_prefix, rb->member, suffix);
    return n < 0 ? 0 : (size_t)n;
}

static void occ_log_error(redisReply *r)
{
    if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("Redis command failed", LOG_STRN("error", r->str, r->len));
}

/* ---- occupancy of a channel ---------------------------------------------- */

static void occ_remember(redis_broker *rb, uint32_t link, const char *chan,
                         size_t len);

static void occ_on_reply(rreq *rq, redisReply *r)
{
    redis_broker *rb = rq->l->rb;
    int add = rq->arg != NULL;
    occ_log_error(r);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        if (!add)
            occ_remember(rb, rq->l->idx, rq->name, rq->len);
        return;
    }
    if (r->integer == 1)
        hooks_emit_channel(rb->srv->hooks,
                           add ? CONFIG_HOOK_OCCUPIED : CONFIG_HOOK_VACATED,
                           rq->name, rq->len);
}

static void occ_send(redis_broker *rb, const char *chan, size_t len, int add)
{
    char ck[REDIS_KEY_MAX], mk[REDIS_KEY_MAX];
    size_t cl = redis_key(rb, ck, chan, len, ":nodes");
    size_t ml = occ_member_key(rb, mk, "chans");
    rlink *l = redis_link_of(rb, chan, len);
    const char *kv[] = { ck, mk, rb->member, chan, add ? "1" : "0" };
    size_t kl[] = { cl, ml, strlen(rb->member), len, 1 };
    rreq *rq = rreq_new(l, occ_on_reply, chan, len);
    rq->arg = add ? (void *)1 : NULL;
    if (rlink_eval(l, rq, SC_OCC, 2, kv, kl, 5) < 0) {
        free(rq);
        /* An add is made again when the link is up (every channel with
         * subscribers); a removal is remembered. */
        if (!add)
            occ_remember(rb, l->idx, chan, len);
    }
}

void redis_occupancy(broker *b, chan_state *c, int occupied)
{
    redis_broker *rb = (redis_broker *)b;
    if (!occ_on(rb))
        return;
    occ_send(rb, c->name, c->len, occupied);
}

typedef struct occ_retry {
    struct occ_retry *next;
    uint32_t link;
    uint16_t len;
    char name[];
} occ_retry;

static void occ_remember(redis_broker *rb, uint32_t link, const char *chan,
                         size_t len)
{
    if (rb->n_occ_retry >= REDIS_OCC_RETRY_MAX) {
        log_warn("webhooks: too many channel removals waiting for Redis; "
                 "this one is kept until the node's lease expires",
                 LOG_STRN("channel", chan, len));
        return;
    }
    occ_retry *o = mem_alloc(sizeof(*o) + len + 1);
    o->link = link;
    o->len = (uint16_t)len;
    memcpy(o->name, chan, len);
    o->name[len] = '\0';
    o->next = rb->occ_retry;
    rb->occ_retry = o;
    rb->n_occ_retry++;
}

static void occ_renew(redis_broker *rb, rlink *l);

/* The link is up (again): the lease first, which makes this a member
 * that reapers know of before anything of it is written on this server
 * (commands of one link run in order); then channels with subscribers
 * are added (again: a Redis that lost its data, or adds that failed) and
 * removals that failed are sent (a channel whose subscribers came back
 * meanwhile is not removed); the member's clients of this server are
 * written anew from the worker's connections (changes that failed while
 * the link was down). */
void redis_occupancy_link_up(rlink *l)
{
    redis_broker *rb = l->rb;
    if (!occ_on(rb))
        return;
    occ_renew(rb, l);
    if (hooks_wants(rb->srv->hooks, CONFIG_HOOK_DISCONNECT)) {
        char mk[REDIS_KEY_MAX];
        size_t ml = occ_member_key(rb, mk, "clients");
        const char *argv[] = { "DEL", mk };
        size_t lens[] = { 3, ml };
        rreq *rq = rreq_new(l, NULL, NULL, 0);
        if (rlink_send(l, rq, 2, argv, lens) < 0)
            free(rq);
        /* Every client goes to its own server: the ones of other servers
         * are written again there too, which changes nothing. */
        if (rb->b.ctl.clients_lost)
            rb->b.ctl.clients_lost(rb->b.ctl.ctx);
    }
    struct broker_stream *rs, *tmp;
    HASH_ITER(hh, rb->streams, rs, tmp)
        if (rs->l == l && rs->c->total)
            occ_send(rb, rs->c->name, rs->c->len, 1);
    occ_retry **p = &rb->occ_retry;
    while (*p) {
        occ_retry *o = *p;
        if (o->link != l->idx) {
            p = &o->next;
            continue;
        }
        *p = o->next;
        rb->n_occ_retry--;
        chan_state *c = rb->b.sink.find(rb->b.sink.ctx, o->name, o->len);
        if (!c || !c->total)
            occ_send(rb, o->name, o->len, 0);
        free(o);
    }
}

/* ---- connected clients ---------------------------------------------------- */

void redis_client_change(broker *b, const char *client, const char *user,
                         int connected)
{
    redis_broker *rb = (redis_broker *)b;
    if (!hooks_wants(rb->srv->hooks, CONFIG_HOOK_DISCONNECT))
        return;
    char mk[REDIS_KEY_MAX];
    size_t ml = occ_member_key(rb, mk, "clients");
    rlink *l = redis_link_of(rb, client, IDS_LEN);
    rreq *rq = rreq_new(l, NULL, NULL, 0);
    int rc;
    if (connected) {
        const char *argv[] = { "HSET", mk, client, user };
        size_t lens[] = { 4, ml, IDS_LEN, strlen(user) };
        rc = rlink_send(l, rq, 4, argv, lens);
    } else {
        const char *argv[] = { "HDEL", mk, client };
        size_t lens[] = { 4, ml, IDS_LEN };
        rc = rlink_send(l, rq, 3, argv, lens);
    }
    if (rc < 0)
        free(rq);   /* at worst a disconnect made twice (at least once) */
}

/* ---- leases and reaping ---------------------------------------------------- */

static void occ_reap(redis_broker *rb, rlink *l);

/* The renewal's answer: whether the lease still existed. One that had
 * lapsed while this member was alive (a partition longer than
 * presence_ttl) was reaped: its channels are added again. */
static void occ_on_lease(rreq *rq, redisReply *r)
{
    rlink *l = rq->l;
    redis_broker *rb = l->rb;
    occ_log_error(r);
    if (!r || r->type != REDIS_REPLY_INTEGER)
        return;
    if (r->integer == 0 && rb->lease_held[l->idx]) {
        rb->lease_held[l->idx] = 0;   /* not twice for one lapse */
        log_warn("webhooks: this node's lease in Redis had expired (other "
                 "nodes made its vacated and disconnect events); its "
                 "channels are added again",
                 LOG_STR("member", rb->member), LOG_INT("redis", l->idx));
        redis_occupancy_link_up(l);
    }
    rb->lease_held[l->idx] = 1;
}

static void occ_renew(redis_broker *rb, rlink *l)
{
    char lk[REDIS_KEY_MAX], gk[REDIS_KEY_MAX], ttl[24];
    size_t ll = occ_member_key(rb, lk, "lease");
    int gl = snprintf(gk, sizeof(gk), "%s:!hk:members",
                      rb->srv->cfg->redis_prefix);
    snprintf(ttl, sizeof(ttl), "%" PRIu64,
             (uint64_t)rb->srv->cfg->presence_ttl * 1000);
    const char *kv[] = { lk, gk, rb->member, ttl };
    size_t kl[] = { ll, (size_t)gl, strlen(rb->member), strlen(ttl) };
    rreq *rq = rreq_new(l, occ_on_lease, NULL, 0);
    if (rlink_eval(l, rq, SC_LEASE, 2, kv, kl, 4) < 0)
        free(rq);
}

/* What a reap call took from dead members: triples of kind ("V": a
 * channel became vacant, "D": a client of a dead member), name, user. */
static void occ_on_reap(rreq *rq, redisReply *r)
{
    rlink *l = rq->l;
    redis_broker *rb = l->rb;
    occ_log_error(r);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 3 != 0)
        return;
    hooks *h = rb->srv->hooks;
    size_t n = 0;
    int more = 0;
    for (size_t i = 0; i + 2 < r->elements; i += 3) {
        redisReply *k = r->element[i], *a = r->element[i + 1],
                   *u = r->element[i + 2];
        if (k->type != REDIS_REPLY_STRING || a->type != REDIS_REPLY_STRING ||
            u->type != REDIS_REPLY_STRING || k->len != 1)
            continue;
        if (k->str[0] == 'M') {
            more = 1;
            continue;
        }
        n++;
        if (k->str[0] == 'V') {
            hooks_emit_channel(h, CONFIG_HOOK_VACATED, a->str, a->len);
        } else if (k->str[0] == 'D') {
            hook_event ev = { .type = CONFIG_HOOK_DISCONNECT,
                              .client = { a->str, a->len },
                              .user = { u->str, u->len },
                              .code = 1006 };
            hooks_emit(h, &ev);
        }
    }
    if (n > 0)
        log_info("webhooks: events of a node whose lease expired",
                 LOG_INT("events", (long long)n), LOG_INT("redis", l->idx));
    if ((n > 0 || more) && l->up && !rb->stopping)
        occ_reap(rb, l);    /* there may be more */
}

static void occ_reap(redis_broker *rb, rlink *l)
{
    char gk[REDIS_KEY_MAX], batch[16];
    int gl = snprintf(gk, sizeof(gk), "%s:!hk:members",
                      rb->srv->cfg->redis_prefix);
    snprintf(batch, sizeof(batch), "%d", REDIS_REAP_BATCH);
    const char *pfx = rb->srv->cfg->redis_prefix;
    const char *kv[] = { gk, pfx, rb->member, batch };
    size_t kl[] = { (size_t)gl, strlen(pfx), strlen(rb->member),
                    strlen(batch) };
    rreq *rq = rreq_new(l, occ_on_reap, NULL, 0);
    if (rlink_eval(l, rq, SC_REAP, 1, kv, kl, 4) < 0)
        free(rq);
}

/* Every presence_ttl/3: this member's lease on every server, and (worker
 * 0) reaping of dead members. */
void redis_occupancy_tick(redis_broker *rb)
{
    if (!rb->srv->hooks)
        return;
    for (uint32_t i = 0; i < rb->n; i++) {
        rlink *l = &rb->links[i];
        if (!l->up)
            continue;
        occ_renew(rb, l);
        if (rb->worker == 0)
            occ_reap(rb, l);
    }
}

void redis_occupancy_init(redis_broker *rb)
{
    snprintf(rb->member, sizeof(rb->member), "%s.%" PRIx64 "/%u",
             rb->srv->node, (uint64_t)rb->srv->started_ms,
             (unsigned)rb->worker);
    rb->lease_held = mem_calloc(rb->n ? rb->n : 1, 1);
}

void redis_occupancy_free(redis_broker *rb)
{
    while (rb->occ_retry) {
        occ_retry *o = rb->occ_retry;
        rb->occ_retry = o->next;
        free(o);
    }
    free(rb->lease_held);
}
