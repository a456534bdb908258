/*
 * Unit tests of server/hub.c, the per-worker subscription index: add, find
 * and remove; a channel lives exactly as long as it has subscriptions;
 * connection lists are independent of each other; 10,000 channels and a
 * channel with 10,000 subscribers, removed in random order, checked against
 * a shadow count; orphans (detached from their connection, found by token,
 * removed without a list).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hub.h"

static size_t list_len(hub_sub *conn_list)
{
    size_t n = 0;
    for (hub_sub *s = conn_list; s; s = s->cnext)
        n++;
    return n;
}

/* hub_sub_find walks the shorter of two lists: both ways must agree. */
static hub_sub *find(const hub *h, hub_sub *conn_list, const void *conn,
                     const char *name, size_t len)
{
    hub_sub *by_conn = hub_sub_find(h, conn_list, 0, conn, name, len);
    hub_sub *by_chan = hub_sub_find(h, conn_list, UINT32_MAX, conn, name,
                                    len);
    cr_assert_eq(by_conn, by_chan, "%.*s: the connection's list and the "
                 "channel's agree", (int)len, name);
    return by_conn;
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
    cr_assert_eq(find(&h, l1, &c1, "chat:x", 6), c);
    cr_assert_null(find(&h, l2, &c2, "chat:x", 6));
    cr_assert_null(find(&h, l1, &c1, "new", 3), "prefix is not a match");
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

/* Subscriptions of a channel, walked through its list. */
static size_t chan_len(const hub_chan *c)
{
    size_t n = 0;
    for (hub_sub *s = c->subs; s; s = s->next)
        n++;
    return n;
}

Test(hub, connection_lists_are_independent)
{
    hub h;
    hub_init(&h);
    int conn[3];
    hub_sub *list[3] = { NULL, NULL, NULL };
    const char *names[] = { "a", "b", "c", "d" };
    hub_sub *s[3][4];
    /* Connection i subscribes to channels i.. in order. */
    for (int c = 0; c < 3; c++)
        for (int k = c; k < 4; k++)
            s[c][k] = hub_sub_add(&h, &list[c], &conn[c], names[k], 1,
                                  (uint64_t)(c * 10 + k));
    cr_assert_eq(h.n_chans, 4);
    cr_assert_eq(list_len(list[0]), 4);
    cr_assert_eq(list_len(list[1]), 3);
    cr_assert_eq(list_len(list[2]), 2);
    /* Insertion order within a connection's list. */
    int k = 0;
    for (hub_sub *x = list[0]; x; x = x->cnext, k++) {
        cr_assert_eq(x, s[0][k]);
        cr_assert_eq(x->conn, &conn[0]);
        cr_assert_eq(x->token, (uint64_t)k);
    }
    cr_assert_eq(hub_chan_find(&h, "c", 1)->n, 3);
    cr_assert_eq(chan_len(hub_chan_find(&h, "c", 1)), 3);
    cr_assert_eq(find(&h, list[1], &conn[1], "c", 1), s[1][2]);
    cr_assert_eq(find(&h, list[2], &conn[2], "c", 1), s[2][2]);
    cr_assert_null(find(&h, list[1], &conn[1], "a", 1));

    /* Removing from the middle of one list leaves the others whole. */
    cr_assert_eq(hub_sub_remove(&h, &list[1], s[1][2]), 0);
    cr_assert_eq(list_len(list[1]), 2);
    cr_assert_eq(list[1], s[1][1]);
    cr_assert_eq(list[1]->cnext, s[1][3]);
    cr_assert_null(find(&h, list[1], &conn[1], "c", 1));
    cr_assert_eq(list_len(list[0]), 4);
    cr_assert_eq(list_len(list[2]), 2);
    cr_assert_eq(find(&h, list[0], &conn[0], "c", 1), s[0][2]);
    cr_assert_eq(hub_chan_find(&h, "c", 1)->n, 2);

    /* Connection 0 goes away: only channel "a" was its alone. */
    int freed = 0;
    while (list[0])
        freed += hub_sub_remove(&h, &list[0], list[0]);
    cr_assert_eq(freed, 1);
    cr_assert_null(hub_chan_find(&h, "a", 1));
    cr_assert_eq(h.n_chans, 3);
    cr_assert_eq(hub_chan_find(&h, "b", 1)->n, 1);
    cr_assert_eq(hub_chan_find(&h, "b", 1)->subs, s[1][1]);
    cr_assert_eq(list_len(list[1]), 2);
    cr_assert_eq(list_len(list[2]), 2);
    while (list[1])
        hub_sub_remove(&h, &list[1], list[1]);
    while (list[2])
        hub_sub_remove(&h, &list[2], list[2]);
    cr_assert_eq(h.n_chans, 0);
    cr_assert_null(h.chans);
    hub_free(&h);
}

Test(hub, names_are_compared_by_length_and_bytes)
{
    hub h;
    hub_init(&h);
    int conn;
    hub_sub *l = NULL;
    /* Only the first len bytes name the channel. */
    hub_sub *a = hub_sub_add(&h, &l, &conn, "newsroom", 4, 1);
    hub_sub *b = hub_sub_add(&h, &l, &conn, "newsroom", 8, 2);
    hub_sub *c = hub_sub_add(&h, &l, &conn, "a\0b", 3, 3);
    cr_assert_eq(h.n_chans, 3);
    cr_assert_str_eq(a->chan->name, "news", "stored NUL-terminated");
    cr_assert_eq(a->chan->len, 4);
    cr_assert_str_eq(b->chan->name, "newsroom");
    cr_assert_neq(a->chan, b->chan);
    cr_assert_eq(hub_chan_find(&h, "news", 4), a->chan);
    cr_assert_eq(hub_chan_find(&h, "a\0b", 3), c->chan);
    cr_assert_null(hub_chan_find(&h, "a", 1));
    cr_assert_null(hub_chan_find(&h, "newsroo", 7));
    cr_assert_eq(find(&h, l, &conn, "newsroom", 8), b);
    cr_assert_eq(find(&h, l, &conn, "news", 4), a);
    while (l)
        hub_sub_remove(&h, &l, l);
    cr_assert_eq(h.n_chans, 0);
    hub_free(&h);
}

/* 10,000 connections, each subscribed to its own channel and to one shared
 * channel: 10,001 channels, 20,000 subscriptions. They are removed in a
 * random order; after every removal the affected channel's count (or its
 * absence) and the number of channels match a shadow model, and at
 * checkpoints every list is walked. */
enum { MANY = 10000 };

static hub_sub *m_lists[MANY];
static hub_sub *m_subs[2 * MANY];
static uint32_t m_count[MANY + 1];   /* [MANY] is the shared channel */

static int chan_index(const hub_chan *c)
{
    if (strcmp(c->name, "shared") == 0)
        return MANY;
    return atoi(c->name + 4);
}

static void check_everything(const hub *h, size_t live_chans)
{
    size_t chans = 0, subs = 0, from_lists = 0;
    for (hub_chan *c = h->chans; c; c = c->hh.next) {
        chans++;
        cr_assert_eq(c->n, m_count[chan_index(c)], "channel %s", c->name);
        cr_assert_eq(chan_len(c), c->n, "channel %s list", c->name);
        subs += c->n;
    }
    for (int i = 0; i < MANY; i++)
        from_lists += list_len(m_lists[i]);
    cr_assert_eq(chans, live_chans);
    cr_assert_eq(h->n_chans, live_chans);
    cr_assert_eq(subs, from_lists);
}

Test(hub, ten_thousand_channels_and_subscribers_removed_at_random)
{
    hub h;
    hub_init(&h);
    char name[32];
    size_t n = 0;
    for (int i = 0; i < MANY; i++) {
        snprintf(name, sizeof(name), "solo%d", i);
        m_subs[n] = hub_sub_add(&h, &m_lists[i], &m_lists[i], name,
                                strlen(name), (uint64_t)n);
        n++;
        m_count[i] = 1;
        m_subs[n] = hub_sub_add(&h, &m_lists[i], &m_lists[i], "shared", 6,
                                (uint64_t)n);
        n++;
        m_count[MANY]++;
    }
    size_t live = MANY + 1;
    cr_assert_eq(hub_chan_find(&h, "shared", 6)->n, MANY);
    check_everything(&h, live);

    srand(2024);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        hub_sub *t = m_subs[i];
        m_subs[i] = m_subs[j];
        m_subs[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        hub_sub *s = m_subs[i];
        int idx = chan_index(s->chan);
        char cname[32];
        size_t clen = s->chan->len;
        memcpy(cname, s->chan->name, clen + 1);
        uint32_t left = --m_count[idx];
        int freed = hub_sub_remove(&h, (hub_sub **)s->conn, s);
        cr_assert_eq(freed, left == 0, "channel %s", cname);
        if (left == 0) {
            live--;
            cr_assert_null(hub_chan_find(&h, cname, clen));
        } else {
            cr_assert_eq(hub_chan_find(&h, cname, clen)->n, left);
        }
        cr_assert_eq(h.n_chans, live);
        if (i % 2500 == 0)
            check_everything(&h, live);
    }
    cr_assert_eq(live, 0);
    check_everything(&h, 0);
    for (int i = 0; i < MANY; i++)
        cr_assert_null(m_lists[i]);
    hub_free(&h);
}

Test(hub, orphan_in_the_middle_and_last_orphan_frees_the_channel)
{
    hub h;
    hub_init(&h);
    int conn;
    hub_sub *l = NULL;
    hub_sub *x = hub_sub_add(&h, &l, &conn, "x", 1, 5);
    hub_sub *y = hub_sub_add(&h, &l, &conn, "y", 1, 5);
    hub_sub *z = hub_sub_add(&h, &l, &conn, "z", 1, 5);
    y->active = 1;

    hub_sub_orphan(&l, y);
    cr_assert_eq(y->active, 0, "an orphan receives nothing");
    cr_assert_null(y->conn);
    cr_assert_eq(list_len(l), 2);
    cr_assert_eq(l, x);
    cr_assert_eq(x->cnext, z);
    cr_assert_null(find(&h, l, &conn, "y", 1), "no longer the connection's");
    cr_assert_eq(find(&h, l, &conn, "z", 1), z);
    /* Same token in other channels: found only where it is orphaned. */
    cr_assert_null(hub_orphan_find(&h, "x", 1, 5));
    cr_assert_eq(hub_orphan_find(&h, "y", 1, 5), y);

    /* The connection goes away with its remaining subscriptions. */
    hub_sub_orphan(&l, x);
    hub_sub_orphan(&l, z);
    cr_assert_null(l);
    cr_assert_eq(h.n_chans, 3);
    cr_assert_eq(hub_orphan_find(&h, "x", 1, 5), x);
    cr_assert_eq(hub_orphan_find(&h, "z", 1, 5), z);

    /* The owner's replies arrive: each removal frees its channel. */
    cr_assert_eq(hub_sub_remove(&h, NULL, hub_orphan_find(&h, "y", 1, 5)), 1);
    cr_assert_null(hub_chan_find(&h, "y", 1));
    cr_assert_null(hub_orphan_find(&h, "y", 1, 5));
    cr_assert_eq(hub_sub_remove(&h, NULL, hub_orphan_find(&h, "x", 1, 5)), 1);
    cr_assert_eq(hub_sub_remove(&h, NULL, hub_orphan_find(&h, "z", 1, 5)), 1);
    cr_assert_eq(h.n_chans, 0);
    hub_free(&h);
}

Test(hub, orphans_beside_live_subscribers)
{
    hub h;
    hub_init(&h);
    int c1, c2;
    hub_sub *l1 = NULL, *l2 = NULL;
    hub_sub *live = hub_sub_add(&h, &l1, &c1, "room", 4, 1);
    hub_sub *o1 = hub_sub_add(&h, &l2, &c2, "room", 4, 2);
    hub_sub *o2 = hub_sub_add(&h, &l2, &c2, "room", 4, 3);
    hub_sub_orphan(&l2, o1);
    hub_sub_orphan(&l2, o2);
    cr_assert_null(l2);
    cr_assert_eq(hub_chan_find(&h, "room", 4)->n, 3, "orphans still count");
    cr_assert_null(hub_orphan_find(&h, "room", 4, 1), "live is no orphan");
    cr_assert_eq(hub_orphan_find(&h, "room", 4, 3), o2);
    cr_assert_eq(hub_sub_remove(&h, NULL, o2), 0);
    cr_assert_eq(hub_orphan_find(&h, "room", 4, 2), o1);
    cr_assert_eq(hub_sub_remove(&h, NULL, o1), 0);
    cr_assert_eq(hub_chan_find(&h, "room", 4)->n, 1);
    cr_assert_eq(hub_chan_find(&h, "room", 4)->subs, live);
    cr_assert_eq(list_len(l1), 1, "the live connection is untouched");
    cr_assert_eq(hub_sub_remove(&h, &l1, live), 1);
    cr_assert_null(l1);
    hub_free(&h);
}
