/*
 * Unit tests of server/core/requests.c, the typed messages between
 * workers: constructors copy the channel and user (slices of larger
 * buffers, not NUL-terminated) into the message's own allocation and set
 * the receiver; deliveries are counted for back-pressure; the reply type
 * of each request; requests_free releases what every family holds, in
 * either direction of travel, and a mailbox given requests_free frees
 * what is left in it at shutdown.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/requests.h"

static pub *mkpub(void)
{
    proto_data d = { { "1", 1 }, { "\x01", 1 }, 0 };
    return pub_new((proto_slice){ "c", 1 }, 1,
                   (proto_slice){ "0123456789abcdef", 16 }, &d, NULL, 0);
}

Test(requests, constructors_copy_and_terminate_strings)
{
    const char chan[] = "news:worldXXXX", user[] = "aliceYYYY";
    sub_req *r = chan_req_new(sizeof(sub_req), OWN_SUBSCRIBE, chan, 10, user,
                              5);
    cr_assert_eq(r->h.hdr.to, MSG_TO_OWNER);
    cr_assert_eq(r->h.hdr.type, OWN_SUBSCRIBE);
    cr_assert_eq(r->h.hdr.counted, 0);
    cr_assert_eq(r->h.chan_len, 10);
    cr_assert_eq(r->h.user_len, 5);
    cr_assert_str_eq(r->h.chan, "news:world");
    cr_assert_str_eq(r->h.user, "alice");
    cr_assert((const char *)r->h.chan >= (const char *)(r + 1),
              "in the message's own allocation, after the struct");
    cr_assert_null(r->h.hdr.next);
    cr_assert_eq(r->pubs.n, 0);
    cr_assert_eq(r->h.code, 0);
    requests_free(&r->h.hdr);

    chan_req *u = chan_req_new(sizeof(chan_req), OWN_UNSUBSCRIBE, "c", 1,
                               NULL, 0);
    cr_assert_str_eq(u->chan, "c");
    cr_assert_str_eq(u->user, "", "anonymous");
    requests_free(&u->hdr);

    /* The longest channel and user the protocol allows. */
    char lc[255], lu[255];
    memset(lc, 'c', sizeof(lc));
    memset(lu, 'u', sizeof(lu));
    pub_req *p = chan_req_new(sizeof(pub_req), OWN_PUBLISH, lc, sizeof(lc),
                              lu, sizeof(lu));
    cr_assert_eq(strlen(p->h.chan), 255);
    cr_assert_eq(strlen(p->h.user), 255);
    cr_assert_eq(memcmp(p->h.chan, lc, 255), 0);
    cr_assert_eq(memcmp(p->h.user, lu, 255), 0);
    requests_free(&p->h.hdr);
    requests_free(NULL);

    join_msg *j = join_msg_new(1, "roomZZ", 4, "0123456789abcdefQ", "bobW",
                               3);
    cr_assert_eq(j->h.hdr.to, MSG_TO_CONNS);
    cr_assert_eq(j->h.hdr.type, CON_JOIN);
    cr_assert_eq(j->join, 1);
    cr_assert_str_eq(j->h.chan, "room");
    cr_assert_str_eq(j->user, "bob");
    cr_assert_str_eq(j->client, "0123456789abcdef");
    requests_free(&j->h.hdr);

    reset_msg *rs = reset_msg_new("abcdef", 3);
    cr_assert_eq(rs->hdr.type, CON_RESET);
    cr_assert_str_eq(rs->chan, "abc");
    requests_free(&rs->hdr);

    store_top_msg *t = store_top_msg_new("d:x", 3);
    cr_assert_eq(t->h.hdr.to, MSG_TO_OWNER);
    cr_assert_eq(t->h.hdr.type, OWN_STORE_TOP);
    cr_assert_str_eq(t->h.chan, "d:x");
    requests_free(&t->h.hdr);

    msg *w = worker_msg_new(WRK_STOP);
    cr_assert_eq(w->to, MSG_TO_WORKER);
    cr_assert_eq(w->type, WRK_STOP);
    requests_free(w);
}

Test(requests, reply_types)
{
    cr_assert_eq(requests_reply_type(OWN_SUBSCRIBE), CON_SUBSCRIBED);
    cr_assert_eq(requests_reply_type(OWN_SUB_READ), CON_SUBSCRIBED);
    cr_assert_eq(requests_reply_type(OWN_PUBLISH), CON_PUBLISHED);
    cr_assert_eq(requests_reply_type(OWN_HISTORY), CON_HISTORY);
    cr_assert_eq(requests_reply_type(OWN_HIST_READ), CON_HISTORY);
    cr_assert_eq(requests_reply_type(OWN_PRESENCE), CON_PRESENCE);
    cr_assert_eq(requests_reply_type(OWN_UNSUBSCRIBE), 0, "no reply");
}

/* A request of each family holding references, as a request and as a
 * reply: requests_free releases them all. */
Test(requests, free_releases_what_every_family_holds)
{
    pub *p = mkpub();
    for (int reply = 0; reply < 2; reply++) {
        sub_req *s = chan_req_new(sizeof(sub_req), OWN_SUBSCRIBE, "c", 1,
                                  NULL, 0);
        for (int i = 0; i < 3; i++)
            publist_push(&s->pubs, pub_ref(p));
        hist_req *h = chan_req_new(sizeof(hist_req), OWN_HIST_READ, "c", 1,
                                   NULL, 0);
        publist_push(&h->pubs, pub_ref(p));
        pub_req *r = chan_req_new(sizeof(pub_req), OWN_PUBLISH, "c", 1, NULL,
                                  0);
        r->p = pub_ref(p);
        pres_req *pr = chan_req_new(sizeof(pres_req), OWN_PRESENCE, "c", 1,
                                    NULL, 0);
        pr->entries = malloc(100);   /* a snapshot */
        pr->n_entries = 1;
        if (reply) {
            s->h.hdr.to = h->h.hdr.to = r->h.hdr.to = pr->h.hdr.to =
                MSG_TO_CONNS;
            s->h.hdr.type = CON_SUBSCRIBED;
            h->h.hdr.type = CON_HISTORY;
            r->h.hdr.type = CON_PUBLISHED;
            pr->h.hdr.type = CON_PRESENCE;
        }
        deliver_msg *d = deliver_msg_new(p);
        cr_assert(d->hdr.counted, "deliveries count for back-pressure");
        cr_assert_eq(atomic_load(&p->refs), 1 + 3 + 1 + 1 + 1);
        requests_free(&s->h.hdr);
        requests_free(&h->h.hdr);
        requests_free(&r->h.hdr);
        requests_free(&pr->h.hdr);
        requests_free(&d->hdr);
        cr_assert_eq(atomic_load(&p->refs), 1, "%s", reply ? "replies"
                                                            : "requests");
    }
    pub_unref(p);
}

Test(requests, a_mailbox_frees_what_is_left_at_shutdown)
{
    mailbox mb;
    mailbox_init(&mb, NULL, requests_free);
    pub *p = mkpub();
    for (int i = 0; i < 1000; i++) {
        if (i % 2) {
            mailbox_post(&mb, &deliver_msg_new(p)->hdr);
        } else {
            hist_req *h = chan_req_new(sizeof(hist_req), OWN_HISTORY, "chan",
                                       4, "user", 4);
            h->h.hdr.to = MSG_TO_CONNS;
            h->h.hdr.type = CON_HISTORY;
            publist_push(&h->pubs, pub_ref(p));
            publist_push(&h->pubs, pub_ref(p));
            mailbox_post(&mb, &h->h.hdr);
        }
    }
    cr_assert_eq(mailbox_backlog(&mb), 500);
    cr_assert_eq(atomic_load(&p->refs), 1 + 500 + 1000);
    mailbox_destroy(&mb);
    cr_assert_eq(atomic_load(&p->refs), 1);
    pub_unref(p);
}
