/*
 * Channel stream bookkeeping on the owner thread (channel.h).
 */
#include "core/channel.h"

#include <stdlib.h>
#include <string.h>

#include <utlist.h>

#include "base/mem.h"

#undef uthash_fatal
#define uthash_fatal(msg) abort()

void chanreg_init(chanreg *r, uint32_t n_workers, msg_free_fn free_msg)
{
    memset(r, 0, sizeof(*r));
    r->n_workers = n_workers;
    r->free_msg = free_msg;
    ids_rng_seed(&r->rng);
}

static void chan_free(chanreg *r, chan_state *c)
{
    msg *m = chan_unpark(c);
    while (m) {
        msg *next = m->next;
        r->free_msg(m);
        m = next;
    }
    presence_free(&c->presence);
    history_free(&c->hist);
    if (c->idem) {
        idem_free(c->idem, r->free_msg);
        free(c->idem);
    }
    free(c->wcount);
    free(c);
}

void chanreg_free(chanreg *r)
{
    chan_state *c, *tmp;
    HASH_ITER(hh, r->chans, c, tmp) {
        HASH_DEL(r->chans, c);
        chan_free(r, c);
    }
    r->n = 0;
    r->idle = NULL;
    r->walk = NULL;
}

static void chanreg_idle_add(chanreg *r, chan_state *c)
{
    DL_APPEND2(r->idle, c, iprev, inext);
}

static void chanreg_idle_del(chanreg *r, chan_state *c)
{
    if (!c->iprev)
        return;
    DL_DELETE2(r->idle, c, iprev, inext);
    c->iprev = c->inext = NULL;
}

void chanreg_touch(chanreg *r, chan_state *c)
{
    if (!c->iprev || !c->inext)
        return;   /* not idle, or the most recent already */
    chanreg_idle_del(r, c);
    chanreg_idle_add(r, c);
}

size_t chanreg_walk(chanreg *r, size_t max,
                    void (*fn)(void *ctx, chan_state *c), void *ctx)
{
    size_t n = 0;
    if (!r->walk)
        r->walk = r->chans;
    while (r->walk && n < max) {
        chan_state *c = r->walk;
        /* Past c before fn runs: chanreg_drop moves the cursor on from a
         * stream it frees, so fn may drop c or any other. */
        r->walk = c->hh.next;
        fn(ctx, c);
        n++;
    }
    return n;
}

chan_state *chanreg_find(chanreg *r, const char *name, size_t len)
{
    chan_state *c = NULL;
    HASH_FIND(hh, r->chans, name, len, c);
    return c;
}

chan_state *chanreg_get(chanreg *r, const char *name, size_t len,
                        const config_ns *ns)
{
    chan_state *c = chanreg_find(r, name, len);
    if (c)
        return c;
    c = mem_calloc(1, sizeof(*c) + len + 1);
    /* wcount and wcut in one block (freed with wcount) */
    c->wcount = mem_calloc(1, r->n_workers * (sizeof(*c->wcount) + 1));
    c->wcut = (uint8_t *)(c->wcount + r->n_workers);
    c->ns = ns;
    ids_hex(ids_next(&r->rng), c->epoch);
    history_init(&c->hist, ns->history_size > r->min_ring ? ns->history_size
                                                          : r->min_ring);
    c->hist.total = &r->bytes;
    memcpy(c->name, name, len);
    c->len = (uint16_t)len;
    HASH_ADD(hh, r->chans, name[0], len, c);
    chanreg_idle_add(r, c);
    r->n++;
    return c;
}

void chanreg_drop(chanreg *r, chan_state *c)
{
    if (r->walk == c)
        r->walk = c->hh.next;
    chanreg_idle_del(r, c);
    HASH_DEL(r->chans, c);
    r->n--;
    chan_free(r, c);
}

int chan_recover(chan_state *c, const char *epoch, size_t epoch_len,
                 uint64_t since, uint32_t max, publist *out)
{
    if (epoch_len != IDS_LEN || memcmp(epoch, c->epoch, IDS_LEN) != 0)
        return 0;
    if (since > c->top)
        return 0;
    uint64_t missed = c->top - since;
    if (missed == 0)
        return 1;
    if (missed > max || history_count(&c->hist) == 0 ||
        history_first_offset(&c->hist) > since + 1)
        return 0;
    pub **v = publist_room(out, (size_t)missed);
    size_t got = history_select(&c->hist, since, (uint32_t)missed, 0, v);
    if (got != missed) {
        /* Cannot happen while offsets in the ring are contiguous; refuse
         * rather than hand out a gap. */
        for (size_t i = 0; i < got; i++)
            pub_unref(v[i]);
        return 0;
    }
    out->n += got;
    return 1;
}

void chan_ring_take(chan_state *c, uint64_t after, uint32_t limit,
                    int reverse, publist *out)
{
    uint32_t have = history_count(&c->hist);
    if (limit > have)
        limit = have;
    if (!limit)
        return;
    out->n += history_select(&c->hist, after, limit, reverse,
                             publist_room(out, limit));
}

void chan_expire(chan_state *c, int64_t now_ms)
{
    history_expire(&c->hist, now_ms, (int64_t)c->ns->history_ttl * 1000);
}

void chan_append(chanreg *r, chan_state *c, pub *p, int64_t now_ms)
{
    chan_expire(c, now_ms);
    history_push(&c->hist, p);
    c->top = p->offset;
    chanreg_touch(r, c);
}

void chan_restart(chan_state *c, const char *epoch, uint64_t top)
{
    history_free(&c->hist);
    memcpy(c->epoch, epoch, IDS_LEN);
    c->epoch[IDS_LEN] = '\0';
    c->top = top;
}

void chan_sub_add(chanreg *r, chan_state *c, uint16_t worker)
{
    if (c->total++ == 0)
        chanreg_idle_del(r, c);
    c->wcount[worker]++;
}

void chan_sub_del(chanreg *r, chan_state *c, uint16_t worker)
{
    if (c->wcount[worker] > 0) {
        c->wcount[worker]--;
        if (--c->total == 0)
            chanreg_idle_add(r, c);
    }
}

void chan_park(chan_state *c, msg *m)
{
    m->next = NULL;
    msg **tail = &c->waiting;
    while (*tail)
        tail = &(*tail)->next;
    *tail = m;
}

msg *chan_unpark(chan_state *c)
{
    msg *m = c->waiting;
    c->waiting = NULL;
    return m;
}
