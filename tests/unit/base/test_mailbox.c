/*
 * Unit tests of server/base/mailbox.c: FIFO order; take returns batches; 4
 * producer threads and a consumer thread (every message arrives exactly
 * once, each producer's in order, counted messages tracked in the backlog
 * and given back); waking a real libuv loop, and after mailbox_close posts
 * only queue (the async handle may be gone); destroy frees what is queued
 * with the mailbox's free function. The messages here are a test family
 * (tmsg); the real families are tested in tests/unit/core/test_requests.c.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "base/mailbox.h"

/* A test message family: the header, a producer id and a sequence. */
typedef struct tmsg {
    msg hdr;
    uint64_t id, seq;
    int *freed;              /* counts frees, when set */
} tmsg;

static void tmsg_free(msg *m)
{
    tmsg *t = (tmsg *)m;
    if (t->freed)
        (*t->freed)++;
    free(t);
}

enum { T_PLAIN = 1, T_COUNTED, T_STOP };

static tmsg *tmsg_new(uint8_t type, uint64_t id, uint64_t seq)
{
    tmsg *t = calloc(1, sizeof(*t));
    cr_assert_not_null(t);
    t->hdr.to = MSG_TO_CONNS;
    t->hdr.type = type;
    t->hdr.counted = type == T_COUNTED;
    t->id = id;
    t->seq = seq;
    return t;
}

Test(mailbox, fifo)
{
    mailbox mb;
    int freed = 0;
    mailbox_init(&mb, NULL, tmsg_free);
    for (uint64_t i = 0; i < 10; i++)
        mailbox_post(&mb, &tmsg_new(T_PLAIN, 0, i)->hdr);
    msg *m = mailbox_take(&mb);
    cr_assert_null(mailbox_take(&mb), "take empties the mailbox");
    for (uint64_t i = 0; i < 10; i++) {
        cr_assert_not_null(m);
        cr_assert_eq(((tmsg *)m)->seq, i);
        msg *next = m->next;
        ((tmsg *)m)->freed = &freed;
        tmsg_free(m);
        m = next;
    }
    cr_assert_null(m);
    cr_assert_eq(freed, 10);
    mailbox_destroy(&mb);
}

enum { PRODUCERS = 4, PER = 50000 };
static mailbox cmb;

static void *producer(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    for (uint64_t i = 0; i < PER; i++)
        mailbox_post(&cmb, &tmsg_new(T_PLAIN, id, i)->hdr);
    return NULL;
}

Test(mailbox, concurrent_producers_keep_their_order)
{
    mailbox_init(&cmb, NULL, tmsg_free);
    pthread_t t[PRODUCERS];
    for (uintptr_t i = 0; i < PRODUCERS; i++)
        pthread_create(&t[i], NULL, producer, (void *)i);
    uint64_t next[PRODUCERS] = { 0 };
    uint64_t got = 0;
    while (got < (uint64_t)PRODUCERS * PER) {
        msg *m = mailbox_take(&cmb);
        while (m) {
            msg *n = m->next;
            tmsg *tm = (tmsg *)m;
            cr_assert_lt(tm->id, PRODUCERS);
            cr_assert_eq(tm->seq, next[tm->id], "producer %llu out of order",
                         (unsigned long long)tm->id);
            next[tm->id]++;
            got++;
            tmsg_free(m);
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

Test(mailbox, take_returns_batches_in_order)
{
    mailbox mb;
    mailbox_init(&mb, NULL, tmsg_free);
    cr_assert_null(mailbox_take(&mb));
    uint64_t next_post = 0, next_take = 0;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < round % 7; i++) {
            tmsg *t = tmsg_new(T_PLAIN, 0, next_post++);
            t->hdr.next = (msg *)&mb;   /* post resets it */
            mailbox_post(&mb, &t->hdr);
        }
        for (msg *m = mailbox_take(&mb), *n; m; m = n) {
            n = m->next;
            cr_assert_eq(((tmsg *)m)->seq, next_take++);
            tmsg_free(m);
        }
        cr_assert_eq(next_take, next_post);
        cr_assert_null(mailbox_take(&mb));
    }
    mailbox_destroy(&mb);
}

Test(mailbox, destroy_frees_queued_messages_and_counts_them_done)
{
    mailbox mb;
    int freed = 0;
    mailbox_init(&mb, NULL, tmsg_free);
    for (int i = 0; i < 1000; i++) {
        tmsg *t = tmsg_new(i % 2 ? T_COUNTED : T_PLAIN, 0, (uint64_t)i);
        t->freed = &freed;
        mailbox_post(&mb, &t->hdr);
    }
    cr_assert_eq(mailbox_backlog(&mb), 500, "counted ones only");
    mailbox_destroy(&mb);
    cr_assert_eq(freed, 1000, "each freed once by the free function");
}

/* 4 producers, 1 consumer thread. Every 5th message is counted; the
 * consumer gives them back as a worker does, so the backlog ends at 0 and
 * never exceeds what was posted. */
enum { T_PRODUCERS = 4, T_PER = 50000 };
static mailbox tmb;
static atomic_uint t_posted_counted;

static void *t_producer(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    for (uint64_t i = 0; i < T_PER; i++) {
        uint8_t type = i % 5 == 0 ? T_COUNTED : T_PLAIN;
        if (type == T_COUNTED)
            atomic_fetch_add(&t_posted_counted, 1);
        mailbox_post(&tmb, &tmsg_new(type, id, i)->hdr);
    }
    return NULL;
}

typedef struct t_result {
    uint64_t got;
    uint64_t counted;
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
            tmsg *t = (tmsg *)m;
            uint64_t id = t->id, off = t->seq;
            if (id >= T_PRODUCERS || off >= T_PER ||
                r->seen[id * T_PER + off] || off != r->next[id])
                r->dup_or_order++;
            if (id < T_PRODUCERS && off < T_PER) {
                r->seen[id * T_PER + off] = 1;
                r->next[id] = off + 1;
            }
            if (m->counted) {
                if (mailbox_backlog(&tmb) == 0)
                    r->dup_or_order++;   /* counted fewer than queued */
                mailbox_done(&tmb, m);
                r->counted++;
            }
            r->got++;
            tmsg_free(m);
            m = n;
        }
    }
    return NULL;
}

Test(mailbox, producers_and_a_consumer_thread)
{
    mailbox_init(&tmb, NULL, tmsg_free);
    atomic_init(&t_posted_counted, 0);
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
    cr_assert_eq(res.counted, (uint64_t)T_PRODUCERS * (T_PER / 5));
    cr_assert_eq(atomic_load(&t_posted_counted), res.counted);
    cr_assert_eq(mailbox_backlog(&tmb), 0);
    cr_assert_null(mailbox_take(&tmb));
    free(res.seen);
    mailbox_destroy(&tmb);
}

/* The real wake-up path: a libuv loop owns the mailbox and drains it from
 * its async callback, as a worker does; a producer thread posts and then a
 * stop message, on which the loop closes its handle and ends. */
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
        if (m->type == T_STOP) {
            w->stopped = 1;
            mailbox_close(&w->mb);
            uv_close((uv_handle_t *)a, NULL);
        } else if (w->stopped || ((tmsg *)m)->seq != w->got) {
            w->stray++;
        } else {
            w->got++;
        }
        tmsg_free(m);
    }
}

static void *w_producer(void *arg)
{
    w_loop *w = arg;
    for (uint64_t i = 0; i < W_MSGS; i++)
        mailbox_post(&w->mb, &tmsg_new(T_PLAIN, 0, i)->hdr);
    mailbox_post(&w->mb, &tmsg_new(T_STOP, 0, 0)->hdr);
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
    mailbox_init(&w.mb, &w.async, tmsg_free);
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
    int freed = 0;
    mailbox_init(&mb, a, tmsg_free);

    mailbox_post(&mb, &tmsg_new(T_PLAIN, 0, 0)->hdr);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(async_calls, 1, "a post wakes the owner");
    msg *m = mailbox_take(&mb);
    cr_assert_not_null(m);
    tmsg_free(m);

    /* The owner's loop goes away: close the mailbox, then free the handle.
     * Posting afterwards must not touch the freed handle (AddressSanitizer
     * would report a use after free) and must still queue the message. */
    mailbox_close(&mb);
    cr_assert_null(mb.wake);
    uv_close((uv_handle_t *)a, free_on_close);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(closed_count, 1);
    cr_assert_eq(async_calls, 1);

    for (int i = 0; i < 10; i++) {
        tmsg *t = tmsg_new(T_COUNTED, 0, (uint64_t)i);
        t->freed = &freed;
        mailbox_post(&mb, &t->hdr);
    }
    cr_assert_eq(mailbox_backlog(&mb), 10, "still counted");
    m = mailbox_take(&mb);
    for (int i = 0; i < 5; i++) {   /* queued, in order */
        cr_assert_not_null(m);
        cr_assert_eq(((tmsg *)m)->seq, (uint64_t)i);
        msg *n = m->next;
        mailbox_done(&mb, m);
        tmsg_free(m);
        m = n;
    }
    cr_assert_eq(mailbox_backlog(&mb), 5);
    /* Put the rest back and let mailbox_destroy free them. */
    while (m) {
        msg *n = m->next;
        mailbox_done(&mb, m);   /* posting counts it again */
        mailbox_post(&mb, m);
        m = n;
    }
    cr_assert_eq(mailbox_backlog(&mb), 5);
    mailbox_destroy(&mb);
    cr_assert_eq(freed, 10);
    cr_assert_eq(uv_loop_close(&loop), 0);
}
