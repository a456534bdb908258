/*
 * The rules of judge.h: the shape of a range read's answer, and what it
 * means given what may still be on its way to the store.
 */
#include "store/judge.h"

int store_judge_shape(const store_range *r, publist *l)
{
    pub **v = l->v;
    size_t k = 0;
    while (k < l->n && (k == 0 || v[k]->offset ==
                        (r->reverse ? v[k - 1]->offset - 1
                                    : v[k - 1]->offset + 1)))
        k++;
    for (size_t i = k; i < l->n; i++)
        pub_unref(v[i]);
    l->n = k;
    uint64_t want = r->hi > r->lo ? r->hi - r->lo - 1 : 0;
    if (want > r->n)
        want = r->n;
    if (want == 0)
        return STORE_SHAPE_OK;
    if (k == 0)
        return STORE_SHAPE_NONE;
    if (r->reverse)
        return v[0]->offset == r->hi - 1 ? STORE_SHAPE_OK : STORE_SHAPE_SHORT;
    if (r->strict && v[0]->offset != r->lo + 1)
        return STORE_SHAPE_START;
    if (k < want && v[k - 1]->offset != r->hi - 1)
        return STORE_SHAPE_SHORT;
    return STORE_SHAPE_OK;
}

int store_judge_answer(const store_range *r, int shape, int pending,
                       int timed_out, int trimmed)
{
    if (shape == STORE_SHAPE_OK)
        return STORE_ANSWER_OK;
    if (shape == STORE_SHAPE_NONE && !r->strict) {
        /* Without a start to keep (history without since, reverse):
         * nothing older is retained, the memory part is the answer. */
        return STORE_ANSWER_OK;
    }
    /* Missing publications may still be on their way: wait while this
     * node's writers have what was queued before the read, or (cluster)
     * for the other nodes' writers. */
    if ((pending || r->others) && !timed_out)
        return STORE_ANSWER_RETRY;
    if (pending)
        return STORE_ANSWER_UNAVAILABLE;
    if (r->others) {
        /* Another node may still hold them (its writes failing: its spill
         * file). Only retention is a reason to call the start gone. */
        if (shape != STORE_SHAPE_START)
            return STORE_ANSWER_UNAVAILABLE;
        if (trimmed < 0)
            return STORE_ANSWER_CHECK;
        return trimmed ? STORE_ANSWER_GONE : STORE_ANSWER_UNAVAILABLE;
    }
    /* Single node, nothing on its way: what is missing will not come. */
    return STORE_ANSWER_GONE;
}
