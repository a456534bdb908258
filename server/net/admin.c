/*
 * The server API's questions to a worker's connections (admin.h).
 */
#include "net/admin.h"

#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "base/mem.h"

static int count_cmp(const void *x, const void *y)
{
    return strcmp(((const chan_count *)x)->name, ((const chan_count *)y)->name);
}

void admin_channels(conns *n, chans_ask *a)
{
    size_t plen = strlen(a->prefix), cap = 0;
    hub_chan *ch, *tmp;
    HASH_ITER(hh, n->hub.chans, ch, tmp) {
        if (strncmp(ch->name, a->prefix, plen) != 0 ||
            (a->after[0] && strcmp(ch->name, a->after) <= 0))
            continue;
        if (a->n == cap) {
            cap = cap ? 2 * cap : 64;
            a->v = mem_realloc_array(a->v, cap, sizeof(*a->v));
        }
        /* the name is copied later, only for the ones kept */
        a->v[a->n].name = ch->name;
        a->v[a->n].subs = ch->n;
        a->n++;
    }
    if (a->n)
        qsort(a->v, a->n, sizeof(*a->v), count_cmp);
    if (a->n > a->limit) {
        a->truncated = 1;
        a->n = a->limit;
    }
    for (size_t i = 0; i < a->n; i++)
        a->v[i].name = mem_strdup(a->v[i].name);
    a->hdr.type = CON_CHANNELS_DONE;
    server_post(n->srv, a->route.worker, &a->hdr);
}

void admin_disconnect(conns *n, disc_ask *a)
{
    for (uint32_t i = 0; i < n->n_slots; i++) {
        conn *c = n->slots[i].c;
        if (!c || !c->live || c->closing)
            continue;
        int match = a->client[0] ? strcmp(c->id, a->client) == 0
                                 : c->user && strcmp(c->user, a->user) == 0;
        if (!match)
            continue;
        conn_close(c, a->code, "disconnected by the server API", a->reconnect);
        a->closed++;
    }
    a->hdr.type = CON_DISCONNECT_DONE;
    server_post(n->srv, a->route.worker, &a->hdr);
}

void admin_receive(conns *n, msg *m)
{
    if (m->type == CON_CHANNELS)
        admin_channels(n, (chans_ask *)m);
    else
        admin_disconnect(n, (disc_ask *)m);
}
