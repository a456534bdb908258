/*
 * Subscription index implementation on uthash (channels by name) and
 * utlist (the two intrusive lists).
 */
#include "core/hub.h"

#include <stdlib.h>
#include <string.h>

#include <utlist.h>

#undef uthash_fatal
#define uthash_fatal(msg) abort()

void hub_init(hub *h)
{
    memset(h, 0, sizeof(*h));
}

void hub_free(hub *h)
{
    hub_chan *c, *tmp;
    HASH_ITER(hh, h->chans, c, tmp) {
        HASH_DEL(h->chans, c);
        free(c);
    }
    h->n_chans = 0;
}

hub_chan *hub_chan_find(const hub *h, const char *name, size_t len)
{
    hub_chan *c = NULL;
    HASH_FIND(hh, h->chans, name, len, c);
    return c;
}

hub_sub *hub_sub_add(hub *h, hub_sub **conn_list, void *conn,
                     const char *name, size_t len, uint64_t token)
{
    hub_chan *c = hub_chan_find(h, name, len);
    if (!c) {
        c = calloc(1, sizeof(*c) + len + 1);
        if (!c)
            abort();
        memcpy(c->name, name, len);
        c->len = (uint16_t)len;
        HASH_ADD(hh, h->chans, name[0], len, c);
        h->n_chans++;
    }
    hub_sub *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->conn = conn;
    s->chan = c;
    s->token = token;
    DL_APPEND(c->subs, s);
    DL_APPEND2(*conn_list, s, cprev, cnext);
    c->n++;
    return s;
}

int hub_sub_remove(hub *h, hub_sub **conn_list, hub_sub *s)
{
    hub_chan *c = s->chan;
    DL_DELETE(c->subs, s);
    if (s->conn)
        DL_DELETE2(*conn_list, s, cprev, cnext);
    free(s);
    if (--c->n == 0) {
        HASH_DEL(h->chans, c);
        h->n_chans--;
        free(c);
        return 1;
    }
    return 0;
}

hub_sub *hub_sub_find(const hub *h, hub_sub *conn_list, uint32_t conn_n,
                      const void *conn, const char *name, size_t len)
{
    hub_chan *c = hub_chan_find(h, name, len);
    if (!c)
        return NULL;
    if (c->n < conn_n) {
        for (hub_sub *s = c->subs; s; s = s->next)
            if (s->conn == conn)
                return s;
        return NULL;
    }
    for (hub_sub *s = conn_list; s; s = s->cnext)
        if (s->chan == c)
            return s;
    return NULL;
}

void hub_sub_orphan(hub_sub **conn_list, hub_sub *s)
{
    DL_DELETE2(*conn_list, s, cprev, cnext);
    s->cprev = s->cnext = NULL;
    s->conn = NULL;
    s->active = 0;
}

hub_sub *hub_orphan_find(const hub *h, const char *name, size_t len,
                         uint64_t token)
{
    hub_chan *c = hub_chan_find(h, name, len);
    if (!c)
        return NULL;
    for (hub_sub *s = c->subs; s; s = s->next)
        if (!s->conn && s->token == token)
            return s;
    return NULL;
}
