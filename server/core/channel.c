/*
 * Channel stream bookkeeping on the owner thread.
 */
#include "core/channel.h"
#include "base/mailbox.h"

#include <stdlib.h>
#include <string.h>

#undef uthash_fatal
#define uthash_fatal(msg) abort()

void chanreg_init(chanreg *r, uint32_t n_workers)
{
    memset(r, 0, sizeof(*r));
    r->n_workers = n_workers;
    ids_rng_seed(&r->rng);
}

static void chan_free(chan_state *c)
{
    while (c->cl_wait) {
        msg *m = c->cl_wait;
        c->cl_wait = m->next;
        msg_free(m);
    }
    while (c->st_wait) {
        msg *m = c->st_wait;
        c->st_wait = m->next;
        msg_free(m);
    }
    for (uint32_t i = 0; i < c->cl_n_hold; i++)
        pub_unref(c->cl_hold[i]);
    free(c->cl_hold);
    presence_entry *e, *tmp;
    HASH_ITER(hh, c->presence, e, tmp) {
        HASH_DEL(c->presence, e);
        free(e->user);
        free(e);
    }
    history_free(&c->hist);
    free(c->wcount);
    free(c);
}

void chanreg_free(chanreg *r)
{
    chan_state *c, *tmp;
    HASH_ITER(hh, r->chans, c, tmp) {
        HASH_DEL(r->chans, c);
        chan_free(c);
    }
    r->n = 0;
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
    c = calloc(1, sizeof(*c) + len + 1);
    if (!c)
        abort();
    c->wcount = calloc(r->n_workers, sizeof(*c->wcount));
    if (!c->wcount)
        abort();
    c->ns = ns;
    ids_hex(ids_next(&r->rng), c->epoch);
    history_init(&c->hist, ns->history_size > r->min_ring ? ns->history_size
                                                          : r->min_ring);
    memcpy(c->name, name, len);
    c->len = (uint16_t)len;
    HASH_ADD(hh, r->chans, name[0], len, c);
    r->n++;
    return c;
}

int chanreg_gc(chanreg *r, chan_state *c, int64_t now_ms)
{
    history_expire(&c->hist, now_ms, (int64_t)c->ns->history_ttl * 1000);
    if (c->total > 0 || history_count(&c->hist) > 0 || c->st_loading ||
        (r->hold && r->hold(r->hold_arg, c)))
        return 0;
    HASH_DEL(r->chans, c);
    r->n--;
    chan_free(c);
    return 1;
}

void chanreg_drop(chanreg *r, chan_state *c)
{
    HASH_DEL(r->chans, c);
    r->n--;
    chan_free(c);
}

void chanreg_expire(chanreg *r, int64_t now_ms)
{
    chan_state *c, *tmp;
    HASH_ITER(hh, r->chans, c, tmp)
        chanreg_gc(r, c, now_ms);
}

int chan_recover(chan_state *c, const char *epoch, size_t epoch_len,
                 uint64_t since, uint32_t max, pub ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
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
    pub **v = malloc(sizeof(*v) * (size_t)missed);
    if (!v)
        abort();
    size_t got = history_select(&c->hist, since, (uint32_t)missed, 0, v);
    if (got != missed) {
        /* Cannot happen while offsets in the ring are contiguous; refuse
         * rather than hand out a gap. */
        for (size_t i = 0; i < got; i++)
            pub_unref(v[i]);
        free(v);
        return 0;
    }
    *out = v;
    *n = got;
    return 1;
}

void chan_sub_add(chan_state *c, uint16_t worker)
{
    c->total++;
    c->wcount[worker]++;
}

void chan_sub_del(chan_state *c, uint16_t worker)
{
    if (c->wcount[worker] > 0) {
        c->wcount[worker]--;
        c->total--;
    }
}

int chan_presence_add(chan_state *c, const char *client, const char *user,
                      uint16_t worker)
{
    presence_entry *e = NULL;
    HASH_FIND_STR(c->presence, client, e);
    if (e) {
        e->refs++;
        return 0;
    }
    e = calloc(1, sizeof(*e));
    if (!e)
        abort();
    memcpy(e->client, client, IDS_LEN);
    e->worker = worker;
    e->refs = 1;
    e->user = strdup(user ? user : "");
    if (!e->user)
        abort();
    HASH_ADD_STR(c->presence, client, e);
    c->n_presence++;
    return 1;
}

int chan_presence_del(chan_state *c, const char *client, char **user_out)
{
    presence_entry *e = NULL;
    HASH_FIND_STR(c->presence, client, e);
    if (!e || --e->refs > 0)
        return 0;
    HASH_DEL(c->presence, e);
    c->n_presence--;
    if (user_out)
        *user_out = e->user;
    else
        free(e->user);
    free(e);
    return 1;
}

void chan_publish(chan_state *c, pub *draft, int64_t now_ms)
{
    history_expire(&c->hist, now_ms, (int64_t)c->ns->history_ttl * 1000);
    c->top++;
    draft->offset = c->top;
    draft->view.offset = c->top;
    draft->time_ms = now_ms;
    /* The draft is not shared yet, so its epoch bytes may still change. */
    memcpy((char *)draft->view.epoch.ptr, c->epoch, IDS_LEN);
    history_push(&c->hist, draft);
}
