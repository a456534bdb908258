/*
 * Publications: immutable, refcounted (atomically: they cross worker
 * threads), created by the channel's owner worker when it assigns the
 * offset. One allocation holds the channel name, the epoch, the data in
 * both encodings and the publisher info, so retaining a publication in
 * history or handing it to another worker is one reference, not a copy.
 */
#ifndef HERALD_PUB_H
#define HERALD_PUB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <herald/proto.h>

typedef struct pub {
    atomic_uint refs;
    uint64_t offset;
    int64_t time_ms;             /* wall clock when sequenced */
    proto_pub view;              /* slices into _mem, ready to encode */
    proto_client_info info;      /* view.info points here when set */
    char _mem[];
} pub;

/* Creates a publication with one reference. info may be NULL. */
pub *pub_new(proto_slice channel, uint64_t offset, proto_slice epoch,
             const proto_data *data, const proto_client_info *info,
             int64_t time_ms);

static inline pub *pub_ref(pub *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void pub_unref(pub *p);

#endif
