/*
 * The ordered-delivery state machine (order.h).
 */
#include "broker/redis/order.h"

#include <string.h>


void order_init(order *o)
{
    memset(o, 0, sizeof(*o));
}

void order_free(order *o)
{
    publist_free(&o->hold);
}

static int order_same_epoch(const order *o, const pub *p)
{
    return memcmp(p->view.epoch.ptr, o->epoch, IDS_LEN) == 0;
}

static void order_deliver(order *o, pub *p, const order_out *out)
{
    o->top = p->offset;
    out->deliver(out->ctx, p);
}

static void order_reset(order *o, const char *epoch, uint64_t top,
                        const char *why, const order_out *out)
{
    memcpy(o->epoch, epoch, IDS_LEN);
    o->top = top;
    out->reset(out->ctx, epoch, top, why);
}

static void order_hold_add(order *o, pub *p)
{
    /* Sorted by offset, no duplicates; records mostly arrive in order. */
    pub **v = o->hold.v;
    size_t i = o->hold.n;
    while (i > 0 && v[i - 1]->offset > p->offset)
        i--;
    if (i > 0 && v[i - 1]->offset == p->offset) {
        pub_unref(p);
        return;
    }
    publist_room(&o->hold, 1);
    v = o->hold.v;
    memmove(v + i + 1, v + i, sizeof(pub *) * (o->hold.n - i));
    v[i] = p;
    o->hold.n++;
}

static void order_fill(order *o, const order_out *out)
{
    if (out->fill(out->ctx, o->top + 1) == 0)
        o->filling = 1;
    /* else: the link is going down; repaired when it is back */
}

/* Delivers held records while they continue the stream. With `final`
 * (a fill read just came back), a gap still left cannot be filled. */
static void order_drain(order *o, int final, const order_out *out)
{
    size_t i = 0;
    for (; i < o->hold.n; i++) {
        pub *p = o->hold.v[i];
        if (!order_same_epoch(o, p)) {
            order_reset(o, p->view.epoch.ptr, p->offset - 1,
                        "epoch changed in Redis", out);
        } else if (p->offset <= o->top) {
            pub_unref(p);
            continue;
        } else if (p->offset != o->top + 1) {
            if (!final)
                break;
            order_reset(o, o->epoch, p->offset - 1,
                        "missed records are no longer in the hot window",
                        out);
        }
        order_deliver(o, p, out);
        pub_unref(p);
    }
    if (i) {
        memmove(o->hold.v, o->hold.v + i, sizeof(pub *) * (o->hold.n - i));
        o->hold.n -= i;
    }
    if (o->hold.n && !o->filling)
        order_fill(o, out);
}

void order_record(order *o, pub *p, const order_out *out)
{
    if (o->hold.n >= ORDER_HOLD_MAX) {
        /* Redis keeps sending while the window read does not come back:
         * give up on this stretch rather than grow. */
        publist_clear(&o->hold);
        order_reset(o, o->epoch, p->offset - 1, "hold buffer full", out);
    }
    /* Through the hold, which is empty while everything arrives in order:
     * delivered at once if it continues the stream, dropped if it is a
     * duplicate, held (and the window read) if it is ahead of a gap. */
    order_hold_add(o, p);
    if (o->live && !o->filling)
        order_drain(o, 0, out);
}

void order_sync(order *o, const char *epoch, uint64_t top,
                const order_out *out)
{
    o->live = 1;
    if (!o->has_epoch) {
        o->has_epoch = 1;
        memcpy(o->epoch, epoch, IDS_LEN);
        o->top = top;
        out->position(out->ctx, epoch, top);
    } else if (memcmp(o->epoch, epoch, IDS_LEN) != 0 || top < o->top) {
        order_reset(o, epoch, top, "Redis lost the stream", out);
    } else if (top > o->top) {
        order_fill(o, out);   /* missed while the link was down */
    }
    if (!o->filling)
        order_drain(o, 0, out);
}

void order_filled(order *o, const char *epoch, uint64_t top, publist *recs,
                  const order_out *out)
{
    int wanted = o->filling && o->live;   /* else given up meanwhile */
    o->filling = 0;
    if (!wanted) {
        publist_clear(recs);
        return;
    }
    if (memcmp(epoch, o->epoch, IDS_LEN) != 0) {
        publist_clear(recs);
        publist_clear(&o->hold);
        order_reset(o, epoch, top, "Redis lost the stream", out);
    } else {
        for (size_t i = 0; i < recs->n; i++)
            order_hold_add(o, recs->v[i]);
        recs->n = 0;
    }
    /* Everything up to top was in the window when it was read, and what
     * came later through pub/sub continues it: a gap left now is lost. */
    order_drain(o, 1, out);
    if (o->top < top && memcmp(epoch, o->epoch, IDS_LEN) == 0)
        order_reset(o, o->epoch, top,
                    "missed records are no longer in the hot window", out);
}

void order_fill_failed(order *o)
{
    o->filling = 0;
}

void order_stop(order *o)
{
    publist_clear(&o->hold);
    o->filling = 0;
    o->live = 0;
}

void order_forget(order *o)
{
    order_stop(o);
    o->has_epoch = 0;
}

int order_ready(const order *o)
{
    return o->live && !o->filling;
}
