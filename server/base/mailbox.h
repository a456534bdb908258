/*
 * Inter-thread messages. Each worker has one mailbox: a mutex-protected
 * FIFO that any thread appends to and only the owning worker drains, woken
 * by uv_async_send (which coalesces wake-ups). Messages from one sender
 * arrive in the order sent, which is what keeps every channel's offsets in
 * order on every worker: the owner sends a subscribe reply and the
 * publications after it through the same FIFO.
 *
 * A message is a family struct (core/requests.h) that starts with this
 * header: the link, which receiver of the worker takes it (`to`) and that
 * receiver's type. The mailbox itself knows no family; it counts the
 * messages marked `counted` (fan-out, for back-pressure: a channel owner
 * refuses a publish when a destination holds worker_queue_max of them) and
 * frees leftovers with the free function it was given.
 */
#ifndef HERALD_BASE_MAILBOX_H
#define HERALD_BASE_MAILBOX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

/* The receivers of a worker. */
enum msg_to {
    MSG_TO_WORKER = 1,   /* the worker itself: shutdown, stop */
    MSG_TO_OWNER,        /* the channel-owner side (core/owner.h) */
    MSG_TO_CONNS,        /* the connections (net/conn.h) */
};

typedef struct msg {
    struct msg *next;
    uint8_t to;          /* enum msg_to */
    uint8_t type;        /* the receiver's message type */
    uint8_t counted;     /* counted in the mailbox's backlog */
} msg;

typedef void (*msg_free_fn)(msg *m);

typedef struct mailbox {
    pthread_mutex_t lock;
    msg *head, *tail;        /* under lock */
    atomic_uint backlog;     /* counted messages posted, not yet done */
    uv_async_t *wake;        /* the owner's async handle; under lock */
    msg_free_fn free_fn;     /* frees a message left at destroy */
} mailbox;

void mailbox_init(mailbox *mb, uv_async_t *wake, msg_free_fn free_fn);
void mailbox_destroy(mailbox *mb);   /* frees queued messages */
void mailbox_post(mailbox *mb, msg *m);
/* Stops waking the owner (its loop is going away); later posts only queue
 * and are freed by mailbox_destroy(). */
void mailbox_close(mailbox *mb);
/* Takes every queued message (FIFO list), or NULL. */
msg *mailbox_take(mailbox *mb);
/* The receiver has handled (or dropped) a counted message. */
void mailbox_done(mailbox *mb, const msg *m);

/* Counted messages waiting (any thread; a snapshot). */
static inline unsigned mailbox_backlog(mailbox *mb)
{
    return atomic_load_explicit(&mb->backlog, memory_order_relaxed);
}

#endif
