/*
 * Publication allocation, sealing and release; publication lists. The
 * release uses acq_rel ordering so the thread that frees sees every write
 * made before other threads dropped their references.
 */
#include "core/pub.h"

#include <stdlib.h>
#include <string.h>

#include "base/ids.h"
#include "base/mem.h"
#include "metrics/metrics.h"

static void pub_copy(char **cursor, proto_slice s, proto_slice *out)
{
    char *dst = *cursor;
    if (s.len)
        memcpy(dst, s.ptr, s.len);
    out->ptr = dst;
    out->len = s.len;
    *cursor += s.len;
}

static pub *pub_make(proto_slice channel, uint64_t offset, proto_slice epoch,
                    const proto_data *data, const proto_client_info *info,
                    int64_t time_ms, proto_slice ikey)
{
    size_t n = channel.len + epoch.len + data->json.len + data->mp.len +
               ikey.len;
    if (info)
        n += info->client.len + info->user.len;
    pub *p = mem_alloc(sizeof(*p) + n);
    atomic_init(&p->refs, 1);
    p->size = (uint32_t)(sizeof(*p) + n);
    p->offset = offset;
    p->time_ms = time_ms;
    p->drafted_ns = 0;
    memset(&p->view, 0, sizeof(p->view));
    memset(&p->info, 0, sizeof(p->info));

    char *cur = p->_mem;
    pub_copy(&cur, channel, &p->view.channel);
    pub_copy(&cur, epoch, &p->view.epoch);
    pub_copy(&cur, data->json, &p->view.data.json);
    pub_copy(&cur, data->mp, &p->view.data.mp);
    p->view.data.binary = data->binary;
    p->view.offset = offset;
    if (info) {
        pub_copy(&cur, info->client, &p->info.client);
        pub_copy(&cur, info->user, &p->info.user);
        p->view.info = &p->info;
    }
    pub_copy(&cur, ikey, &p->ikey);
    p->ihash = 0;
    return p;
}

pub *pub_new(proto_slice channel, uint64_t offset, proto_slice epoch,
             const proto_data *data, const proto_client_info *info,
             int64_t time_ms)
{
    return pub_make(channel, offset, epoch, data, info, time_ms,
                    (proto_slice){ NULL, 0 });
}

pub *pub_draft_keyed(proto_slice channel, const proto_data *data,
                     const proto_client_info *info, proto_slice ikey,
                     uint64_t ihash)
{
    char epoch0[IDS_LEN];
    memset(epoch0, '0', sizeof(epoch0));
    pub *p = pub_make(channel, 0, (proto_slice){ epoch0, IDS_LEN }, data,
                      info, 0, ikey);
    p->ihash = ihash;
    /* One clock read per publication (not per delivery), metrics on or
     * off: the draft does not know the configuration. */
    p->drafted_ns = metrics_clock_ns();
    return p;
}

pub *pub_draft(proto_slice channel, const proto_data *data,
               const proto_client_info *info)
{
    return pub_draft_keyed(channel, data, info, (proto_slice){ NULL, 0 }, 0);
}

void pub_seal(pub *p, uint64_t offset, const char *epoch, int64_t time_ms)
{
    p->offset = offset;
    p->view.offset = offset;
    p->time_ms = time_ms;
    /* The draft is not shared yet, so its epoch bytes may still change. */
    memcpy((char *)p->view.epoch.ptr, epoch, IDS_LEN);
}

void pub_unref(pub *p)
{
    if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        free(p);
}

pub **publist_room(publist *l, size_t more)
{
    if (l->n + more > l->cap) {
        size_t cap = l->cap ? l->cap : 16;
        while (cap < l->n + more)
            cap *= 2;
        l->v = mem_realloc_array(l->v, cap, sizeof(pub *));
        l->cap = cap;
    }
    return l->v + l->n;
}

void publist_push(publist *l, pub *p)
{
    *publist_room(l, 1) = p;
    l->n++;
}

void publist_move(publist *dst, publist *src)
{
    if (!src->n)
        return;
    memcpy(publist_room(dst, src->n), src->v, sizeof(pub *) * src->n);
    dst->n += src->n;
    src->n = 0;
}

void publist_clear(publist *l)
{
    for (size_t i = 0; i < l->n; i++)
        pub_unref(l->v[i]);
    l->n = 0;
}

void publist_free(publist *l)
{
    publist_clear(l);
    free(l->v);
    l->v = NULL;
    l->cap = 0;
}
