/*
 * Unit tests of server/core/presence.c: presence sets count a client's
 * subscriptions on this node, so only its first subscription is a join and
 * only its last one a leave; the leaving user is handed to the caller;
 * anonymous clients have the empty user; snapshots pack entries and
 * strings into one block.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/presence.h"

static const char *A = "aaaaaaaaaaaaaaaa", *B = "bbbbbbbbbbbbbbbb",
                  *C = "cccccccccccccccc";

Test(presence, counts_and_hands_back_the_user)
{
    presence_set s = { 0 };
    cr_assert_eq(presence_add(&s, A, "alice", 0), 1);
    cr_assert_eq(presence_add(&s, B, "", 2), 1);
    cr_assert_eq(presence_add(&s, A, "alice", 0), 0,
                 "already present: no second join");
    cr_assert_eq(s.n, 2);
    char *user = NULL;
    cr_assert_eq(presence_del(&s, A, &user), 0, "one reference left");
    cr_assert_eq(presence_del(&s, A, &user), 1);
    cr_assert_str_eq(user, "alice");
    free(user);
    cr_assert_eq(presence_del(&s, C, NULL), 0);
    cr_assert_eq(s.n, 1);
    presence_free(&s);
    cr_assert_eq(s.n, 0);
    cr_assert_null(s.h);
}

Test(presence, joins_only_new_clients)
{
    presence_set s = { 0 };
    cr_assert_eq(presence_add(&s, A, "alice", 3), 1);
    cr_assert_eq(presence_add(&s, B, NULL, 1), 1, "anonymous");
    cr_assert_eq(presence_add(&s, A, "alice", 3), 0);
    cr_assert_eq(presence_add(&s, A, "alice", 3), 0);
    cr_assert_eq(s.n, 2);

    presence_entry *e = NULL;
    HASH_FIND_STR(s.h, A, e);
    cr_assert_not_null(e);
    cr_assert_eq(e->refs, 3);
    cr_assert_eq(e->worker, 3);
    cr_assert_str_eq(e->user, "alice");
    HASH_FIND_STR(s.h, B, e);
    cr_assert_not_null(e);
    cr_assert_str_eq(e->user, "", "anonymous is the empty user");
    cr_assert_eq(e->worker, 1);

    char *user = (char *)"untouched";
    cr_assert_eq(presence_del(&s, C, &user), 0, "never joined");
    cr_assert_str_eq(user, "untouched");
    cr_assert_eq(presence_del(&s, A, &user), 0);
    cr_assert_eq(presence_del(&s, A, &user), 0);
    cr_assert_eq(s.n, 2, "still present with one subscription");
    cr_assert_eq(presence_del(&s, A, &user), 1, "the leave");
    cr_assert_str_eq(user, "alice");
    free(user);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(presence_del(&s, A, NULL), 0, "already left");

    /* A client that comes back is a new join. */
    cr_assert_eq(presence_add(&s, A, "alice", 0), 1);
    cr_assert_eq(s.n, 2);
    cr_assert_eq(presence_del(&s, B, NULL), 1);
    cr_assert_eq(s.n, 1);
    /* presence_free releases the remaining entry (and its user). */
    presence_free(&s);
}

Test(presence, snapshot_packs_entries_and_strings)
{
    presence_set s = { 0 };
    presence_add(&s, A, "alice", 0);
    presence_add(&s, B, "", 1);
    presence_add(&s, C, "carol-with-a-longer-name", 2);
    presence_pack pk;
    presence_pack_set(&pk, &s);
    cr_assert_eq(pk.n, 3);
    int seen = 0;
    for (size_t i = 0; i < pk.n; i++) {
        const proto_presence_entry *e = &pk.v[i];
        cr_assert_eq(e->client.len, 16);
        const char *want = NULL;
        if (memcmp(e->client.ptr, A, 16) == 0) {
            want = "alice";
            seen |= 1;
        } else if (memcmp(e->client.ptr, B, 16) == 0) {
            want = "";
            seen |= 2;
        } else if (memcmp(e->client.ptr, C, 16) == 0) {
            want = "carol-with-a-longer-name";
            seen |= 4;
        }
        cr_assert_not_null(want, "an entry of the set");
        cr_assert_eq(e->user.len, strlen(want));
        cr_assert_eq(memcmp(e->user.ptr, want, e->user.len), 0);
        /* The strings live in the same block, after the entries. */
        cr_assert((const char *)e->client.ptr >= (const char *)(pk.v + 3));
    }
    cr_assert_eq(seen, 7, "every client once");
    free(pk.v);   /* one block */

    presence_set empty = { 0 };
    presence_pack_set(&pk, &empty);
    cr_assert_eq(pk.n, 0);
    cr_assert_null(pk.v, "nothing allocated for nobody");
    presence_free(&s);
}

Test(presence, pack_from_parts)
{
    /* As the Redis broker packs a reply: clients of any length. */
    presence_pack pk;
    presence_pack_init(&pk, 2, 3 + 1 + 2 + 0);
    presence_pack_add(&pk, "abc", 3, "u", 1);
    presence_pack_add(&pk, "de", 2, "", 0);
    cr_assert_eq(pk.n, 2);
    cr_assert_eq(pk.v[0].client.len, 3);
    cr_assert_eq(memcmp(pk.v[0].client.ptr, "abc", 3), 0);
    cr_assert_eq(memcmp(pk.v[0].user.ptr, "u", 1), 0);
    cr_assert_eq(pk.v[1].client.len, 2);
    cr_assert_eq(pk.v[1].user.len, 0);
    cr_assert_eq(pk.s, (char *)(pk.v + 2) + 6, "exactly the bytes promised");
    free(pk.v);
}

Test(presence, identity_splits_into_user_and_conn_info)
{
    proto_slice u, ci;
    presence_ident_split("alice", 5, &u, &ci);
    cr_assert(u.len == 5 && !memcmp(u.ptr, "alice", 5) && ci.len == 0);
    const char with[] = "alice\x1f{\"a\":1}";
    presence_ident_split(with, sizeof(with) - 1, &u, &ci);
    cr_assert(u.len == 5 && !memcmp(u.ptr, "alice", 5));
    cr_assert(ci.len == 7 && !memcmp(ci.ptr, "{\"a\":1}", 7));
    const char anon[] = "\x1f{}";
    presence_ident_split(anon, sizeof(anon) - 1, &u, &ci);
    cr_assert(u.len == 0 && ci.len == 2);
    presence_ident_split("", 0, &u, &ci);
    cr_assert(u.len == 0 && ci.len == 0);
    /* packed entries are split too */
    presence_pack pk;
    presence_pack_init(&pk, 1, IDS_LEN + sizeof(with) - 1);
    presence_pack_add(&pk, "0123456789abcdef", IDS_LEN, with, sizeof(with) - 1);
    cr_assert(pk.v[0].user.len == 5 && pk.v[0].conn_info.len == 7);
    free(pk.v);
}
