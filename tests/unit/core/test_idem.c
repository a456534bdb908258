/*
 * Unit tests of server/core/idem.c, a channel stream's idempotency keys:
 * open entries hold the requests waiting for the first publication of
 * their key; sealed ones answer repeats until they expire (oldest first)
 * or are the oldest beyond the bound; the data hash tells a repeat from a
 * key reused with other data and does not depend on the publisher's
 * encoding.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <herald/proto.h>

#include "core/idem.h"

static const char *E = "eeeeeeeeeeeeeeee";

static int freed;

static void count_free(msg *m)
{
    freed++;
    free(m);
}

static idem_entry *sealed(idem_map *m, const char *key, uint64_t offset,
                          int64_t expires, uint32_t max)
{
    idem_entry *e = idem_open(m, key, strlen(key), IDEM_PENDING);
    idem_seal(m, e, offset, E, 42, expires, max);
    return e;
}

Test(idem, open_waiters_then_sealed)
{
    idem_map m;
    idem_init(&m);
    cr_assert(idem_empty(&m));
    idem_entry *e = idem_open(&m, "k1", 2, IDEM_PENDING);
    cr_assert_eq(m.n_open, 1);
    cr_assert_eq(idem_find(&m, "k1", 2), e);
    cr_assert_null(idem_find(&m, "k", 1));
    msg a = { 0 }, b = { 0 };
    idem_wait(e, &a);
    idem_wait(e, &b);
    msg *w = idem_take_waiters(e);
    cr_assert_eq(w, &a, "first come first");
    cr_assert_eq(w->next, &b);
    cr_assert_null(b.next);
    cr_assert_null(idem_take_waiters(e));
    idem_seal(&m, e, 7, E, 99, 1000, 10);
    cr_assert_eq(m.n_open, 0);
    cr_assert_eq(m.n_sealed, 1);
    cr_assert_eq(e->state, IDEM_SEALED);
    cr_assert_eq(e->offset, 7);
    cr_assert_eq(e->hash, 99);
    cr_assert_str_eq(e->epoch, E);
    idem_free(&m, count_free);
    cr_assert(idem_empty(&m));
}

Test(idem, expiry_drops_the_oldest_first)
{
    idem_map m;
    idem_init(&m);
    sealed(&m, "a", 1, 100, 10);
    sealed(&m, "b", 2, 200, 10);
    sealed(&m, "c", 3, 300, 10);
    idem_expire(&m, 99);
    cr_assert_eq(m.n_sealed, 3);
    idem_expire(&m, 200);
    cr_assert_eq(m.n_sealed, 1, "expired at their time");
    cr_assert_null(idem_find(&m, "a", 1));
    cr_assert_null(idem_find(&m, "b", 1));
    cr_assert_not_null(idem_find(&m, "c", 1));
    idem_expire(&m, 1000);
    cr_assert(idem_empty(&m));
    cr_assert_null(m.oldest);
    cr_assert_null(m.newest);
    idem_free(&m, count_free);
}

Test(idem, the_bound_drops_the_oldest_sealed_not_open_ones)
{
    idem_map m;
    idem_init(&m);
    idem_entry *open = idem_open(&m, "open", 4, IDEM_LOOKUP);
    char key[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        sealed(&m, key, (uint64_t)i + 1, 1000000, 100);
        cr_assert_leq(m.n_sealed, 100);
    }
    cr_assert_eq(m.n_sealed, 100);
    cr_assert_eq(m.n_open, 1);
    cr_assert_eq(idem_find(&m, "open", 4), open, "open entries stay");
    cr_assert_null(idem_find(&m, "k899", 4));
    idem_entry *e = idem_find(&m, "k900", 4);
    cr_assert_not_null(e);
    cr_assert_eq(e->offset, 901);
    cr_assert_eq(m.oldest, e);
    msg *w = calloc(1, sizeof(msg));
    idem_wait(open, w);
    freed = 0;
    idem_free(&m, count_free);
    cr_assert_eq(freed, 1, "waiters of open entries are freed with the map");
    cr_assert(idem_empty(&m));
}

Test(idem, drop_unlinks_from_the_middle)
{
    idem_map m;
    idem_init(&m);
    sealed(&m, "a", 1, 100, 10);
    idem_entry *b = sealed(&m, "b", 2, 200, 10);
    sealed(&m, "c", 3, 300, 10);
    idem_drop(&m, b);
    cr_assert_eq(m.n_sealed, 2);
    cr_assert_str_eq(m.oldest->key, "a");
    cr_assert_str_eq(m.oldest->next->key, "c");
    cr_assert_str_eq(m.newest->prev->key, "a");
    idem_entry *o = idem_open(&m, "o", 1, IDEM_PENDING);
    idem_drop(&m, o);
    cr_assert_eq(m.n_open, 0);
    idem_free(&m, count_free);
}

Test(idem, hash_is_of_the_data_in_either_encoding)
{
    proto_data a, b, c;
    void *oa = NULL, *ob = NULL, *oc = NULL;
    proto_error err;
    cr_assert_eq(proto_data_from_json("{\"x\": [1, 2]}", 13, &a, &oa, &err), 0);
    /* the same value in other JSON text, and in msgpack */
    cr_assert_eq(proto_data_from_json("{\"x\":[1,2]}", 11, &b, &ob, &err), 0);
    static const char mp[] = "\x81\xa1x\x92\x01\x02";
    cr_assert_eq(proto_data_from_msgpack(mp, sizeof(mp) - 1, &c, &oc, &err), 0);
    cr_assert_eq(idem_hash(&a), idem_hash(&b));
    cr_assert_eq(idem_hash(&a), idem_hash(&c));
    proto_data d;
    void *od = NULL;
    cr_assert_eq(proto_data_from_json("{\"x\":[1,3]}", 11, &d, &od, &err), 0);
    cr_assert_neq(idem_hash(&a), idem_hash(&d));
    free(oa);
    free(ob);
    free(oc);
    free(od);
}

Test(idem, key_validity)
{
    cr_assert(proto_idem_key_valid("a", 1));
    char k[65];
    memset(k, '~', sizeof(k));
    cr_assert(proto_idem_key_valid(k, 64));
    cr_assert_not(proto_idem_key_valid(k, 65));
    cr_assert_not(proto_idem_key_valid("", 0));
    cr_assert_not(proto_idem_key_valid("a b", 3));
    cr_assert_not(proto_idem_key_valid("a\x7f", 2));
    cr_assert_not(proto_idem_key_valid("\xc3\xa9", 2));
    cr_assert_not(proto_idem_key_valid("a\0b", 3));
}
