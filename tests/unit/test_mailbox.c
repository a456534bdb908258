/*
 * Unit tests of server/mailbox.c: FIFO order; msg_new's strings; msg_free
 * and mailbox_destroy release what messages hold; 4 producer threads and a
 * consumer thread (every message arrives exactly once, each producer's in
 * order, MSG_DELIVER counted); waking a real libuv loop, and after
 * mailbox_close posts only queue (the async handle may be gone).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "base/mailbox.h"

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

static pub *mkpub(void)
{
    proto_data d = { { "1", 1 }, { "\x01", 1 }, 0 };
    return pub_new((proto_slice){ "c", 1 }, 1,
                   (proto_slice){ "0123456789abcdef", 16 }, &d, NULL, 0);
}

Test(mailbox, msg_new_copies_and_terminates_strings)
{
    /* Sources are slices of larger buffers, not NUL-terminated. */
    const char chan[] = "news:worldXXXX", user[] = "aliceYYYY";
    msg *m = msg_new(MSG_SUB_REQ, chan, 10, user, 5);
    cr_assert_eq(m->type, MSG_SUB_REQ);
    cr_assert_eq(m->chan_len, 10);
    cr_assert_eq(m->user_len, 5);
    cr_assert_str_eq(msg_chan(m), "news:world");
    cr_assert_str_eq(msg_user(m), "alice");
    cr_assert_eq(m->recovered, -1, "no since until said otherwise");
    cr_assert_null(m->next);
    cr_assert_null(m->p);
    cr_assert_null(m->pubs);
    cr_assert_null(m->extra);
    cr_assert_eq(m->n_pubs, 0);
    cr_assert_eq(m->code, 0);
    msg_free(m);

    m = msg_new(MSG_STOP, NULL, 0, NULL, 0);
    cr_assert_str_eq(msg_chan(m), "");
    cr_assert_str_eq(msg_user(m), "");
    msg_free(m);

    m = msg_new(MSG_UNSUB, "c", 1, NULL, 0);
    cr_assert_str_eq(msg_chan(m), "c");
    cr_assert_str_eq(msg_user(m), "", "anonymous");
    msg_free(m);

    m = msg_new(MSG_JOIN, NULL, 0, "bob", 3);
    cr_assert_str_eq(msg_chan(m), "");
    cr_assert_str_eq(msg_user(m), "bob");
    msg_free(m);

    /* The longest channel and user the protocol allows. */
    char lc[255], lu[255];
    memset(lc, 'c', sizeof(lc));
    memset(lu, 'u', sizeof(lu));
    m = msg_new(MSG_PUB_REQ, lc, sizeof(lc), lu, sizeof(lu));
    cr_assert_eq(strlen(msg_chan(m)), 255);
    cr_assert_eq(strlen(msg_user(m)), 255);
    cr_assert_eq(memcmp(msg_chan(m), lc, 255), 0);
    cr_assert_eq(memcmp(msg_user(m), lu, 255), 0);
    msg_free(m);
    msg_free(NULL);
}

Test(mailbox, msg_free_releases_everything_held)
{
    pub *p = mkpub();
    msg *m = msg_new(MSG_SUB_REP, "c", 1, NULL, 0);
    m->p = pub_ref(p);
    m->n_pubs = 3;
    m->pubs = malloc(sizeof(pub *) * 3);
    for (int i = 0; i < 3; i++)
        m->pubs[i] = pub_ref(p);
    m->extra = malloc(100);   /* a presence snapshot */
    m->n_extra = 1;
    cr_assert_eq(atomic_load(&p->refs), 5);
    msg_free(m);
    cr_assert_eq(atomic_load(&p->refs), 1);
    pub_unref(p);
}

Test(mailbox, take_returns_batches_in_order)
{
    mailbox mb;
    mailbox_init(&mb, NULL);
    cr_assert_null(mailbox_take(&mb));
    uint64_t next_post = 0, next_take = 0;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < round % 7; i++) {
            msg *m = msg_new(MSG_UNSUB, NULL, 0, NULL, 0);
            m->offset = next_post++;
            m->next = (msg *)&mb;   /* post resets it */
            mailbox_post(&mb, m);
        }
        for (msg *m = mailbox_take(&mb), *n; m; m = n) {
            n = m->next;
            cr_assert_eq(m->offset, next_take++);
            msg_free(m);
        }
        cr_assert_eq(next_take, next_post);
        cr_assert_null(mailbox_take(&mb));
    }
    mailbox_destroy(&mb);
}

Test(mailbox, destroy_frees_queued_messages_and_their_references)
{
    mailbox mb;
    mailbox_init(&mb, NULL);
    pub *p = mkpub();
    for (int i = 0; i < 1000; i++) {
        msg *m = msg_new(i % 2 ? MSG_DELIVER : MSG_HIST_REP, "chan", 4,
                         "user", 4);
        if (i % 2) {
            m->p = pub_ref(p);
        } else {
            m->pubs = malloc(sizeof(pub *) * 2);
            m->pubs[0] = pub_ref(p);
            m->pubs[1] = pub_ref(p);
            m->n_pubs = 2;
        }
        mailbox_post(&mb, m);
    }
    cr_assert_eq(atomic_load(&mb.delivers), 500);
    cr_assert_eq(atomic_load(&p->refs), 1 + 500 + 1000);
    mailbox_destroy(&mb);
    cr_assert_eq(atomic_load(&p->refs), 1);
    pub_unref(p);
}

/* 4 producers, 1 consumer thread. Every 5th message is a MSG_DELIVER; the
 * consumer gives back the delivery count as a worker does, so the count
 * ends at 0 and never exceeds what was posted. */
enum { T_PRODUCERS = 4, T_PER = 50000 };
static mailbox tmb;
static atomic_uint t_posted_delivers;

static void *t_producer(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    for (uint64_t i = 0; i < T_PER; i++) {
        uint8_t type = i % 5 == 0 ? MSG_DELIVER : MSG_UNSUB;
        msg *m = msg_new(type, NULL, 0, NULL, 0);
        m->token = id;
        m->offset = i;
        if (type == MSG_DELIVER)
            atomic_fetch_add(&t_posted_delivers, 1);
        mailbox_post(&tmb, m);
    }
    return NULL;
}

typedef struct t_result {
    uint64_t got;
    uint64_t delivers;
    uint64_t dup_or_order;   /* messages seen out of order or twice */
    uint8_t *seen;           /* [T_PRODUCERS * T_PER] */
    uint64_t next[T_PRODUCERS];
} t_result;

static void *t_consumer(void *arg)
{
    t_result *r = arg;
    while (r->got < (uint64_t)T_PRODUCERS * T_PER) {
        msg *m = mailbox_take(&tmb);
        if (!m) {
            sched_yield();
            continue;
        }
        while (m) {
            msg *n = m->next;
            uint64_t id = m->token, off = m->offset;
            if (id >= T_PRODUCERS || off >= T_PER ||
                r->seen[id * T_PER + off] || off != r->next[id])
                r->dup_or_order++;
            if (id < T_PRODUCERS && off < T_PER) {
                r->seen[id * T_PER + off] = 1;
                r->next[id] = off + 1;
            }
            if (m->type == MSG_DELIVER) {
                unsigned before = atomic_fetch_sub(&tmb.delivers, 1);
                if (before == 0)
                    r->dup_or_order++;   /* counted fewer than queued */
                r->delivers++;
            }
            r->got++;
            msg_free(m);
            m = n;
        }
    }
    return NULL;
}

Test(mailbox, producers_and_a_consumer_thread)
{
    mailbox_init(&tmb, NULL);
    atomic_init(&t_posted_delivers, 0);
    t_result res = { 0 };
    res.seen = calloc((size_t)T_PRODUCERS * T_PER, 1);
    cr_assert_not_null(res.seen);
    pthread_t cons, prod[T_PRODUCERS];
    cr_assert_eq(pthread_create(&cons, NULL, t_consumer, &res), 0);
    for (uintptr_t i = 0; i < T_PRODUCERS; i++)
        cr_assert_eq(pthread_create(&prod[i], NULL, t_producer, (void *)i), 0);
    for (int i = 0; i < T_PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    pthread_join(cons, NULL);

    cr_assert_eq(res.got, (uint64_t)T_PRODUCERS * T_PER);
    cr_assert_eq(res.dup_or_order, 0);
    for (size_t i = 0; i < (size_t)T_PRODUCERS * T_PER; i++)
        cr_assert(res.seen[i], "message %zu of producer %zu never arrived",
                  i % T_PER, i / T_PER);
    for (int i = 0; i < T_PRODUCERS; i++)
        cr_assert_eq(res.next[i], T_PER);
    cr_assert_eq(res.delivers, (uint64_t)T_PRODUCERS * (T_PER / 5));
    cr_assert_eq(atomic_load(&t_posted_delivers), res.delivers);
    cr_assert_eq(atomic_load(&tmb.delivers), 0);
    cr_assert_null(mailbox_take(&tmb));
    free(res.seen);
    mailbox_destroy(&tmb);
}

/* The real wake-up path: a libuv loop owns the mailbox and drains it from
 * its async callback, as a worker does; a producer thread posts and then a
 * MSG_STOP, on which the loop closes its handle and ends. */
enum { W_MSGS = 20000 };

typedef struct w_loop {
    mailbox mb;
    uv_async_t async;
    uint64_t got, wakes, stray;
    int stopped;
} w_loop;

static void w_on_async(uv_async_t *a)
{
    w_loop *w = a->data;
    w->wakes++;
    for (msg *m = mailbox_take(&w->mb), *n; m; m = n) {
        n = m->next;
        if (m->type == MSG_STOP) {
            w->stopped = 1;
            mailbox_close(&w->mb);
            uv_close((uv_handle_t *)a, NULL);
        } else if (w->stopped || m->offset != w->got) {
            w->stray++;
        } else {
            w->got++;
        }
        msg_free(m);
    }
}

static void *w_producer(void *arg)
{
    w_loop *w = arg;
    for (uint64_t i = 0; i < W_MSGS; i++) {
        msg *m = msg_new(MSG_UNSUB, NULL, 0, NULL, 0);
        m->offset = i;
        mailbox_post(&w->mb, m);
    }
    mailbox_post(&w->mb, msg_new(MSG_STOP, NULL, 0, NULL, 0));
    return NULL;
}

Test(mailbox, posts_wake_the_owner_loop, .timeout = 60)
{
    uv_loop_t loop;
    static w_loop w;
    memset(&w, 0, sizeof(w));
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(uv_async_init(&loop, &w.async, w_on_async), 0);
    w.async.data = &w;
    mailbox_init(&w.mb, &w.async);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, w_producer, &w), 0);
    /* Returns once the handle is closed: only wake-ups can get it there. */
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(t, NULL);
    cr_assert_eq(w.stopped, 1);
    cr_assert_eq(w.got, W_MSGS);
    cr_assert_eq(w.stray, 0);
    cr_assert_geq(w.wakes, 1);
    cr_assert_leq(w.wakes, W_MSGS + 1, "wake-ups coalesce, never multiply");
    cr_assert_eq(uv_loop_close(&loop), 0);
    mailbox_destroy(&w.mb);
}

static int closed_count;

static void free_on_close(uv_handle_t *h)
{
    closed_count++;
    free(h);
}

static int async_calls;

static void count_async(uv_async_t *a)
{
    async_calls++;
}

Test(mailbox, after_close_posts_only_queue)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    uv_async_t *a = malloc(sizeof(*a));
    cr_assert_eq(uv_async_init(&loop, a, count_async), 0);
    mailbox mb;
    mailbox_init(&mb, a);

    mailbox_post(&mb, msg_new(MSG_UNSUB, NULL, 0, NULL, 0));
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(async_calls, 1, "a post wakes the owner");
    msg *m = mailbox_take(&mb);
    cr_assert_not_null(m);
    msg_free(m);

    /* The owner's loop goes away: close the mailbox, then free the handle.
     * Posting afterwards must not touch the freed handle (AddressSanitizer
     * would report a use after free) and must still queue the message. */
    mailbox_close(&mb);
    cr_assert_null(mb.wake);
    uv_close((uv_handle_t *)a, free_on_close);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(closed_count, 1);
    cr_assert_eq(async_calls, 1);

    pub *p = mkpub();
    for (int i = 0; i < 10; i++) {
        msg *d = msg_new(MSG_DELIVER, "c", 1, NULL, 0);
        d->p = pub_ref(p);
        d->offset = (uint64_t)i;
        mailbox_post(&mb, d);
    }
    cr_assert_eq(atomic_load(&mb.delivers), 10, "still counted");
    m = mailbox_take(&mb);
    for (int i = 0; i < 5; i++) {   /* queued, in order */
        cr_assert_not_null(m);
        cr_assert_eq(m->offset, (uint64_t)i);
        msg *n = m->next;
        msg_free(m);
        m = n;
    }
    /* Put the rest back and let mailbox_destroy free them. */
    while (m) {
        msg *n = m->next;
        mailbox_post(&mb, m);
        m = n;
    }
    cr_assert_eq(atomic_load(&p->refs), 1 + 5);
    mailbox_destroy(&mb);
    cr_assert_eq(atomic_load(&p->refs), 1);
    pub_unref(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
}
