/*
 * Presence in Redis (redis_priv.h): per channel a sorted set of client ids
 * scored by expiry (Redis's clock, so nodes' clocks do not matter) and a
 * hash of their users. The owning node adds and removes its clients as
 * they subscribe and leave, announcing joins and leaves through the
 * channel's pub/sub channel when the namespace has join_leave, and renews
 * its entries every presence_ttl/3; the renewal also removes expired
 * entries (a dead node's) and announces their leave, and announces again
 * an entry that had gone (after a partition or a Redis restart).
 */
#include "broker/redis/redis_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "core/presence.h"

/* The keys every presence script takes: expiry set, users, pub/sub. */
typedef struct pres_keys {
    char t[REDIS_KEY_MAX], u[REDIS_KEY_MAX], ch[REDIS_KEY_MAX];
    size_t tl, ul, chl;
    char ttl[24];            /* presence_ttl in ms */
} pres_keys;

/* The keys of channel c; returns the link of its Redis server. */
static rlink *pres_keys_of(redis_broker *rb, pres_keys *k, const chan_state *c)
{
    const char *chan = c->name;
    size_t len = c->len;
    k->tl = redis_key(rb, k->t, chan, len, ":pt");
    k->ul = redis_key(rb, k->u, chan, len, ":pu");
    k->chl = redis_key(rb, k->ch, chan, len, "");
    snprintf(k->ttl, sizeof(k->ttl), "%llu",
             (unsigned long long)rb->srv->cfg->presence_ttl * 1000);
    return redis_link_of(rb, chan, len);
}

void redis_presence_change(broker *b, chan_state *c, int join,
                           const char *client, const char *user)
{
    pres_keys k;
    rlink *l = pres_keys_of((redis_broker *)b, &k, c);
    const char *announce = c->ns->join_leave ? "1" : "0";
    rreq *rq = rreq_new(l, NULL, NULL, 0);
    int rc;
    if (join) {
        const char *kv[] = { k.t, k.u, client, user, k.ttl, k.ch, announce };
        size_t kl[] = { k.tl, k.ul, IDS_LEN, strlen(user), strlen(k.ttl),
                        k.chl, 1 };
        rc = rlink_eval(l, rq, SC_JOIN, 2, kv, kl, 7);
    } else {
        const char *kv[] = { k.t, k.u, client, k.ch, announce };
        size_t kl[] = { k.tl, k.ul, IDS_LEN, k.chl, 1 };
        rc = rlink_eval(l, rq, SC_LEAVE, 2, kv, kl, 5);
    }
    if (rc < 0)
        free(rq);   /* the refresh after reconnecting puts it right */
}

static void redis_presence_refresh_batch(struct broker_stream *rs,
                                         const pres_keys *k,
                                         presence_entry **e);

/* A refresh call's answer: how many expired entries it removed. A full
 * batch may have left more: another call (entries of none) goes on
 * sweeping, each a short script, until one removes fewer. */
static void redis_on_refresh(rreq *rq, redisReply *r)
{
    redis_broker *rb = rq->l->rb;
    if (r && r->type == REDIS_REPLY_ERROR) {
        log_warn("Redis command failed", LOG_STRN("error", r->str, r->len));
        return;
    }
    if (!r || r->type != REDIS_REPLY_INTEGER ||
        r->integer < REDIS_PRESENCE_BATCH || !rq->l->up)
        return;
    struct broker_stream *rs = NULL;
    HASH_FIND(hh, rb->streams, rq->name, rq->len, rs);
    if (!rs)
        return;
    pres_keys k;
    pres_keys_of(rb, &k, rs->c);
    presence_entry *none = NULL;
    redis_presence_refresh_batch(rs, &k, &none);
}

/* One refresh script call: the keys of c, then up to REDIS_PRESENCE_BATCH
 * client, user pairs from *e on (advanced past them). */
static void redis_presence_refresh_batch(struct broker_stream *rs,
                                         const pres_keys *k,
                                         presence_entry **e)
{
    enum { HEAD = 5 };
    const char *kv[HEAD + 2 * REDIS_PRESENCE_BATCH];
    size_t kl[HEAD + 2 * REDIS_PRESENCE_BATCH];
    kv[0] = k->t;
    kl[0] = k->tl;
    kv[1] = k->u;
    kl[1] = k->ul;
    kv[2] = k->ttl;
    kl[2] = strlen(k->ttl);
    kv[3] = k->ch;
    kl[3] = k->chl;
    kv[4] = rs->c->ns->join_leave ? "1" : "0";
    kl[4] = 1;
    size_t i = HEAD;
    for (; *e && i < HEAD + 2 * REDIS_PRESENCE_BATCH; *e = (*e)->hh.next) {
        kv[i] = (*e)->client;
        kl[i++] = IDS_LEN;
        kv[i] = (*e)->user;
        kl[i++] = strlen((*e)->user);
    }
    rreq *rq = rreq_new(rs->l, redis_on_refresh, rs->c->name, rs->c->len);
    if (rlink_eval(rs->l, rq, SC_REFRESH, 2, kv, kl, (int)i) < 0)
        free(rq);
}

/* Every followed channel with presence: this node's entries renewed,
 * REDIS_PRESENCE_BATCH per script call (a huge channel in one call would
 * be one enormous command, and one script holding Redis for its whole
 * run), each call also sweeping up to that many expired entries (and
 * more calls while there are more: redis_on_refresh). */
void redis_presence_refresh(redis_broker *rb)
{
    struct broker_stream *rs, *tmp;
    HASH_ITER(hh, rb->streams, rs, tmp) {
        chan_state *c = rs->c;
        if (!(c->ns->presence || c->ns->join_leave) ||
            (!c->total && !c->presence.n) || !rs->l->up)
            continue;
        pres_keys k;
        pres_keys_of(rb, &k, c);
        presence_entry *e = c->presence.h;
        do
            redis_presence_refresh_batch(rs, &k, &e);
        while (e);
    }
}

/* Client, user pairs of the live entries. */
static void redis_on_presence(rreq *rq, redisReply *r)
{
    redis_broker *rb = rq->l->rb;
    pres_req *pr = rq->arg;
    size_t bytes = 0;
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements % 2 == 0;
    for (size_t i = 0; ok && i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            ok = 0;
        else
            bytes += r->element[i]->len;
    }
    if (!ok) {
        rb->b.sink.presence(rb->b.sink.ctx, pr, PROTO_E_NOT_AVAILABLE,
                            REDIS_DOWN);
        return;
    }
    presence_pack pk;
    presence_pack_init(&pk, r->elements / 2, bytes);
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        presence_pack_add(&pk, r->element[i]->str, r->element[i]->len,
                          r->element[i + 1]->str, r->element[i + 1]->len);
    pr->entries = pk.v;
    pr->n_entries = pk.n;
    rb->b.sink.presence(rb->b.sink.ctx, pr, 0, NULL);
}

int redis_presence_query(broker *b, chan_state *c, pres_req *r,
                         const char **errmsg)
{
    pres_keys k;
    rlink *l = pres_keys_of((redis_broker *)b, &k, c);
    const char *kv[] = { k.t, k.u };
    size_t kl[] = { k.tl, k.ul };
    rreq *rq = rreq_new(l, redis_on_presence, NULL, 0);
    rq->arg = r;
    if (rlink_eval(l, rq, SC_QUERY, 2, kv, kl, 2) < 0) {
        free(rq);
        *errmsg = REDIS_DOWN;
        return PROTO_E_NOT_AVAILABLE;
    }
    return 0;
}
