/* Unit tests of server/hub.c: the per-worker subscription index. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"

static size_t list_len(hub_sub *conn_list)
{
    size_t n = 0;
    for (hub_sub *s = conn_list; s; s = s->cnext)
        n++;
    return n;
}

Test(hub, add_find_remove_and_channel_lifetime)
{
    hub h;
    hub_init(&h);
    int c1, c2;
    hub_sub *l1 = NULL, *l2 = NULL;
    hub_sub *a = hub_sub_add(&h, &l1, &c1, "news", 4, 1);
    hub_sub *b = hub_sub_add(&h, &l2, &c2, "news", 4, 2);
    hub_sub *c = hub_sub_add(&h, &l1, &c1, "chat:x", 6, 3);
    cr_assert_eq(h.n_chans, 2);
    hub_chan *news = hub_chan_find(&h, "news", 4);
    cr_assert_not_null(news);
    cr_assert_eq(news->n, 2);
    cr_assert_str_eq(news->name, "news");
    cr_assert_eq(a->chan, news);
    cr_assert_eq(b->chan, news);
    cr_assert_eq(list_len(l1), 2);
    cr_assert_eq(hub_sub_find(l1, "chat:x", 6), c);
    cr_assert_null(hub_sub_find(l2, "chat:x", 6));
    cr_assert_null(hub_sub_find(l1, "new", 3), "prefix is not a match");
    cr_assert_eq(a->active, 0, "subscriptions start pending");

    cr_assert_eq(hub_sub_remove(&h, &l1, a), 0);
    cr_assert_eq(news->n, 1);
    cr_assert_eq(hub_sub_remove(&h, &l2, b), 1, "last one frees the channel");
    cr_assert_null(hub_chan_find(&h, "news", 4));
    cr_assert_null(l2);
    cr_assert_eq(list_len(l1), 1);
    hub_sub_remove(&h, &l1, c);
    cr_assert_eq(h.n_chans, 0);
    hub_free(&h);
}

Test(hub, many_subscribers_removed_in_random_order)
{
    enum { CONNS = 2000, CHANS = 5 };
    hub h;
    hub_init(&h);
    static hub_sub *lists[CONNS];
    static hub_sub *subs[CONNS * CHANS];
    char name[16];
    size_t n = 0;
    for (int c = 0; c < CONNS; c++)
        for (int k = 0; k < CHANS; k++) {
            snprintf(name, sizeof(name), "ch%d", (c + k) % 50);
            subs[n] = hub_sub_add(&h, &lists[c], &lists[c], name,
                                  strlen(name), n);
            n++;
        }
    cr_assert_eq(h.n_chans, 50);
    size_t total = 0;
    for (int k = 0; k < 50; k++) {
        snprintf(name, sizeof(name), "ch%d", k);
        total += hub_chan_find(&h, name, strlen(name))->n;
    }
    cr_assert_eq(total, n);
    srand(11);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        hub_sub *t = subs[i];
        subs[i] = subs[j];
        subs[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        hub_sub *s = subs[i];
        hub_sub **l = (hub_sub **)s->conn;
        hub_sub_remove(&h, l, s);
        if (i == n / 2) {
            size_t left = 0;
            for (int c = 0; c < CONNS; c++)
                left += list_len(lists[c]);
            cr_assert_eq(left, n - i - 1);
        }
    }
    cr_assert_eq(h.n_chans, 0);
    for (int c = 0; c < CONNS; c++)
        cr_assert_null(lists[c]);
    hub_free(&h);
}

Test(hub, orphans_are_found_by_token_and_removed)
{
    hub h;
    hub_init(&h);
    int c1, c2;
    hub_sub *l1 = NULL, *l2 = NULL;
    hub_sub *a = hub_sub_add(&h, &l1, &c1, "room", 4, 77);
    hub_sub *b = hub_sub_add(&h, &l2, &c2, "room", 4, 78);
    b->active = 1;
    hub_sub_orphan(&l1, a);
    cr_assert_null(l1, "detached from its connection");
    cr_assert_null(a->conn);
    cr_assert_eq(hub_chan_find(&h, "room", 4)->n, 2, "still in the channel");
    cr_assert_null(hub_orphan_find(&h, "room", 4, 78), "b is not an orphan");
    cr_assert_null(hub_orphan_find(&h, "room", 4, 99));
    cr_assert_null(hub_orphan_find(&h, "nope", 4, 77));
    cr_assert_eq(hub_orphan_find(&h, "room", 4, 77), a);
    cr_assert_eq(hub_sub_remove(&h, NULL, a), 0);
    cr_assert_eq(hub_chan_find(&h, "room", 4)->n, 1);
    cr_assert_eq(hub_sub_remove(&h, &l2, b), 1);
    hub_free(&h);
}
