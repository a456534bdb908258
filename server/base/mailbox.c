/*
 * Mailbox implementation: the lock is held only to link or unlink the list,
 * and the drain takes the whole list at once, so a busy owner and its
 * producers contend for a few instructions per batch.
 */
#include "base/mailbox.h"

#include <stdlib.h>

void mailbox_init(mailbox *mb, uv_async_t *wake, msg_free_fn free_fn)
{
    pthread_mutex_init(&mb->lock, NULL);
    mb->head = mb->tail = NULL;
    atomic_init(&mb->backlog, 0);
    mb->wake = wake;
    mb->free_fn = free_fn;
}

void mailbox_destroy(mailbox *mb)
{
    msg *m = mailbox_take(mb);
    while (m) {
        msg *next = m->next;
        mailbox_done(mb, m);
        mb->free_fn(m);
        m = next;
    }
    pthread_mutex_destroy(&mb->lock);
}

void mailbox_post(mailbox *mb, msg *m)
{
    m->next = NULL;
    if (m->counted)
        atomic_fetch_add_explicit(&mb->backlog, 1, memory_order_relaxed);
    pthread_mutex_lock(&mb->lock);
    if (mb->tail)
        mb->tail->next = m;
    else
        mb->head = m;
    mb->tail = m;
    /* Woken under the lock so that mailbox_close() cannot free the async
     * handle between the check and the send. */
    if (mb->wake)
        uv_async_send(mb->wake);
    pthread_mutex_unlock(&mb->lock);
}

void mailbox_close(mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    mb->wake = NULL;
    pthread_mutex_unlock(&mb->lock);
}

msg *mailbox_take(mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    msg *m = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    return m;
}

void mailbox_done(mailbox *mb, const msg *m)
{
    if (m->counted)
        atomic_fetch_sub_explicit(&mb->backlog, 1, memory_order_relaxed);
}
