/*
 * Inter-worker messages. Each worker has one mailbox: a mutex-protected
 * FIFO that any thread appends to and only the owning worker drains, woken
 * by uv_async_send (which coalesces wake-ups). Messages from one sender
 * arrive in the order sent, which is what keeps every channel's offsets in
 * order on every worker: the owner sends a subscribe reply and the
 * publications after it through the same FIFO.
 *
 * Bounds: fan-out messages (MSG_DELIVER) are counted, and a channel owner
 * refuses a publish (error 110) when a destination already holds
 * worker_queue_max of them; every other message answers a client command,
 * and a connection has at most CONN_MAX_INFLIGHT of those in flight.
 */
#ifndef HERALD_MAILBOX_H
#define HERALD_MAILBOX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/ids.h"
#include "core/pub.h"

enum msg_type {
    MSG_SUB_REQ = 1,   /* worker -> owner: subscribe (maybe with since) */
    MSG_SUB_REP,       /* owner -> worker */
    MSG_UNSUB,         /* worker -> owner: a subscription ended */
    MSG_PUB_REQ,       /* worker -> owner: sequence this draft */
    MSG_PUB_REP,       /* owner -> worker: offset/epoch or error */
    MSG_DELIVER,       /* owner -> worker: fan out p to local subscribers */
    MSG_JOIN,          /* owner -> worker: join/leave push to local subs */
    MSG_HIST_REQ,
    MSG_HIST_REP,
    MSG_PRES_REQ,
    MSG_PRES_REP,
    MSG_CL_RESET,      /* owner -> worker: close the channel's subscribers
                          with 4003 (cluster: a gap that cannot be filled) */
    MSG_STORE_LAST,    /* store reader -> owner: a durable stream's last
                          epoch and offset (flag: 1 found, 2 failed) */
    MSG_STORE_READ,    /* store reader -> owner: a SUB_REQ/HIST_REQ back
                          with publications read from the store (req: the
                          request's type; code: 0, 111 gone, 108 failed) */
    MSG_SHUTDOWN,      /* main -> worker: drain connections (4000) */
    MSG_STOP,          /* main -> worker: every worker drained; exit */
};

/* Where a reply goes: a connection (slot + generation) of a worker, and the
 * command id to answer. */
typedef struct msg_route {
    uint16_t worker;
    uint32_t slot;
    uint32_t gen;
    uint32_t cmd_id;
    uint64_t seq;            /* the reply's reserved send-queue entry */
} msg_route;

typedef struct msg {
    struct msg *next;
    uint8_t type;
    uint8_t flag;            /* join(1)/leave(0); has_since; reverse */
    int8_t recovered;        /* SUB_REP: -1 no since, 0, 1 */
    msg_route route;
    int code;                /* replies: 0 or an error code */
    const char *errmsg;      /* replies: static message for code, or NULL */
    uint64_t token;          /* subscription token */
    uint64_t offset;         /* since offset / top offset */
    uint32_t limit;          /* history limit */
    char epoch[IDS_LEN + 1]; /* since epoch / current epoch */
    uint8_t epoch_len;
    uint8_t req;             /* STORE_READ: SUB_REQ or HIST_REQ */
    uint64_t snap_top;       /* STORE_READ, reverse history: the top when
                                the memory part was taken */
    char client[IDS_LEN + 1];
    pub *p;                  /* PUB_REQ draft, DELIVER publication */
    pub **pubs;              /* SUB_REP/HIST_REP publications (malloc'd) */
    size_t n_pubs;
    void *extra;             /* PRES_REP: presence snapshot (malloc'd) */
    size_t n_extra;
    uint16_t chan_len;
    uint16_t user_len;
    char str[];              /* channel, NUL, user, NUL */
} msg;

/* Allocates a message with room for channel and user strings. */
msg *msg_new(uint8_t type, const char *chan, size_t chan_len,
             const char *user, size_t user_len);
static inline const char *msg_chan(const msg *m) { return m->str; }
static inline const char *msg_user(const msg *m)
{
    return m->str + m->chan_len + 1;
}
/* Frees the message and releases what it holds (publications, extra). */
void msg_free(msg *m);

typedef struct mailbox {
    pthread_mutex_t lock;
    msg *head, *tail;        /* under lock */
    atomic_uint delivers;    /* MSG_DELIVER queued, for back-pressure */
    uv_async_t *wake;        /* the owner's async handle; under lock */
} mailbox;

void mailbox_init(mailbox *mb, uv_async_t *wake);
void mailbox_destroy(mailbox *mb);   /* frees queued messages */
void mailbox_post(mailbox *mb, msg *m);
/* Stops waking the owner (its loop is going away); later posts only queue
 * and are freed by mailbox_destroy(). */
void mailbox_close(mailbox *mb);
/* Takes every queued message (FIFO list), or NULL. */
msg *mailbox_take(mailbox *mb);

#endif
