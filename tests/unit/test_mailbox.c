/* Unit tests of server/mailbox.c: FIFO order per producer under
 * concurrency, message contents and release. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mailbox.h"

Test(mailbox, fifo_and_strings)
{
    mailbox mb;
    mailbox_init(&mb, NULL);
    for (uint64_t i = 0; i < 10; i++) {
        msg *m = msg_new(MSG_UNSUB, "chan", 4, "user", 4);
        m->offset = i;
        mailbox_post(&mb, m);
    }
    msg *m = mailbox_take(&mb);
    cr_assert_null(mailbox_take(&mb), "take empties the mailbox");
    for (uint64_t i = 0; i < 10; i++) {
        cr_assert_not_null(m);
        cr_assert_eq(m->offset, i);
        cr_assert_str_eq(msg_chan(m), "chan");
        cr_assert_str_eq(msg_user(m), "user");
        msg *next = m->next;
        msg_free(m);
        m = next;
    }
    cr_assert_null(m);
    mailbox_destroy(&mb);
}

Test(mailbox, messages_release_their_publications)
{
    mailbox mb;
    mailbox_init(&mb, NULL);
    proto_data d = { { "1", 1 }, { "\x01", 1 }, 0 };
    pub *p = pub_new((proto_slice){ "c", 1 }, 1,
                     (proto_slice){ "0123456789abcdef", 16 }, &d, NULL, 0);
    msg *m = msg_new(MSG_DELIVER, NULL, 0, NULL, 0);
    m->p = pub_ref(p);
    mailbox_post(&mb, m);
    cr_assert_eq(atomic_load(&mb.delivers), 1);
    msg *h = msg_new(MSG_HIST_REP, "c", 1, NULL, 0);
    h->pubs = malloc(sizeof(pub *) * 2);
    h->pubs[0] = pub_ref(p);
    h->pubs[1] = pub_ref(p);
    h->n_pubs = 2;
    mailbox_post(&mb, h);
    cr_assert_eq(atomic_load(&p->refs), 4);
    mailbox_close(&mb);
    mailbox_post(&mb, msg_new(MSG_STOP, NULL, 0, NULL, 0));
    mailbox_destroy(&mb);   /* frees queued messages and their references */
    cr_assert_eq(atomic_load(&p->refs), 1);
    pub_unref(p);
}

enum { PRODUCERS = 4, PER = 50000 };
static mailbox cmb;

static void *producer(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    for (uint64_t i = 0; i < PER; i++) {
        msg *m = msg_new(MSG_UNSUB, NULL, 0, NULL, 0);
        m->token = id;
        m->offset = i;
        mailbox_post(&cmb, m);
    }
    return NULL;
}

Test(mailbox, concurrent_producers_keep_their_order)
{
    mailbox_init(&cmb, NULL);
    pthread_t t[PRODUCERS];
    for (uintptr_t i = 0; i < PRODUCERS; i++)
        pthread_create(&t[i], NULL, producer, (void *)i);
    uint64_t next[PRODUCERS] = { 0 };
    uint64_t got = 0;
    while (got < (uint64_t)PRODUCERS * PER) {
        msg *m = mailbox_take(&cmb);
        while (m) {
            msg *n = m->next;
            cr_assert_lt(m->token, PRODUCERS);
            cr_assert_eq(m->offset, next[m->token], "producer %llu out of order",
                         (unsigned long long)m->token);
            next[m->token]++;
            got++;
            msg_free(m);
            m = n;
        }
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(t[i], NULL);
    cr_assert_null(mailbox_take(&cmb));
    for (int i = 0; i < PRODUCERS; i++)
        cr_assert_eq(next[i], PER);
    mailbox_destroy(&cmb);
}
