/*
 * Publications: immutable once shared, refcounted (atomically: they cross
 * worker threads). One allocation holds the channel name, the epoch, the
 * data in both encodings and the publisher info, so retaining a
 * publication in history or handing it to another worker is one
 * reference, not a copy.
 *
 * A publication starts as a draft (pub_draft, on the publisher's worker)
 * that the broker seals with its offset, epoch and time before anyone
 * else holds it (pub_seal). Lists of references (replies carrying
 * history, reads of the store or the broker's window) are publists.
 */
#ifndef HERALD_CORE_PUB_H
#define HERALD_CORE_PUB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <herald/proto.h>

typedef struct pub {
    atomic_uint refs;
    uint32_t size;               /* bytes of the allocation (what a history
                                    ring retains) */
    uint64_t offset;
    int64_t time_ms;             /* wall clock when sequenced */
    int64_t drafted_ns;          /* monotonic clock when drafted on this
                                    node, 0 when made from a record or a
                                    document (the publish-to-fan-out
                                    latency, metrics/metrics.h) */
    proto_pub view;              /* slices into _mem, ready to encode */
    proto_client_info info;      /* view.info points here when set */
    proto_slice ikey;            /* the publisher's idempotency_key (in
                                    _mem; len 0: none): the durable store
                                    keeps it (store/doc.c) */
    uint64_t ihash;              /* with ikey: a hash of the data
                                    (core/idem.h idem_hash) */
    char _mem[];
} pub;

/* Creates a publication with one reference. info may be NULL. */
pub *pub_new(proto_slice channel, uint64_t offset, proto_slice epoch,
             const proto_data *data, const proto_client_info *info,
             int64_t time_ms);
/* A draft: offset 0, room for an epoch (IDS_LEN bytes), stamped with
 * the monotonic clock. */
pub *pub_draft(proto_slice channel, const proto_data *data,
               const proto_client_info *info);
/* A draft that carries its idempotency key (len 0: none) and data hash. */
pub *pub_draft_keyed(proto_slice channel, const proto_data *data,
                     const proto_client_info *info, proto_slice ikey,
                     uint64_t ihash);
/* Seals a draft that nobody else holds yet: offset, epoch (IDS_LEN
 * bytes) and time. */
void pub_seal(pub *p, uint64_t offset, const char *epoch, int64_t time_ms);

static inline pub *pub_ref(pub *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void pub_unref(pub *p);

/* A growable array of publication references, oldest first unless said
 * otherwise. Owned by one thread at a time (it travels inside messages). */
typedef struct publist {
    pub **v;
    size_t n, cap;
} publist;

/* Appends p, taking the caller's reference. */
void publist_push(publist *l, pub *p);
/* Makes room for `more` and returns where they go (then add to l->n). */
pub **publist_room(publist *l, size_t more);
/* Moves every reference of src to the end of dst (src left empty). */
void publist_move(publist *dst, publist *src);
/* Releases the references, keeps the array. */
void publist_clear(publist *l);
/* Releases the references and the array. */
void publist_free(publist *l);

/* Offset of the last publication, or `empty` when there is none. */
static inline uint64_t publist_last(const publist *l, uint64_t empty)
{
    return l->n ? l->v[l->n - 1]->offset : empty;
}

#endif
