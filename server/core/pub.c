/*
 * Publication allocation and release. The release uses acq_rel ordering so
 * the thread that frees sees every write made before other threads dropped
 * their references.
 */
#include "core/pub.h"

#include <stdlib.h>
#include <string.h>

static char *pub_copy(char **cursor, proto_slice s, proto_slice *out)
{
    char *dst = *cursor;
    if (s.len)
        memcpy(dst, s.ptr, s.len);
    out->ptr = dst;
    out->len = s.len;
    *cursor += s.len;
    return dst;
}

pub *pub_new(proto_slice channel, uint64_t offset, proto_slice epoch,
             const proto_data *data, const proto_client_info *info,
             int64_t time_ms)
{
    size_t n = channel.len + epoch.len + data->json.len + data->mp.len;
    if (info)
        n += info->client.len + info->user.len;
    pub *p = malloc(sizeof(*p) + n);
    if (!p)
        abort();
    atomic_init(&p->refs, 1);
    p->offset = offset;
    p->time_ms = time_ms;
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
    return p;
}

void pub_unref(pub *p)
{
    if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        free(p);
}
