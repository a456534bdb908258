/*
 * Mailbox implementation: the lock is held only to link or unlink the list,
 * and the drain takes the whole list at once, so a busy owner and its
 * producers contend for a few instructions per batch.
 */
#include "base/mailbox.h"

#include <stdlib.h>
#include <string.h>

msg *msg_new(uint8_t type, const char *chan, size_t chan_len,
             const char *user, size_t user_len)
{
    msg *m = calloc(1, sizeof(*m) + chan_len + user_len + 2);
    if (!m)
        abort();
    m->type = type;
    m->recovered = -1;
    m->chan_len = (uint16_t)chan_len;
    m->user_len = (uint16_t)user_len;
    if (chan_len)
        memcpy(m->str, chan, chan_len);
    if (user_len)
        memcpy(m->str + chan_len + 1, user, user_len);
    return m;
}

void msg_free(msg *m)
{
    if (!m)
        return;
    pub_unref(m->p);
    for (size_t i = 0; i < m->n_pubs; i++)
        pub_unref(m->pubs[i]);
    free(m->pubs);
    free(m->extra);
    free(m);
}

void mailbox_init(mailbox *mb, uv_async_t *wake)
{
    pthread_mutex_init(&mb->lock, NULL);
    mb->head = mb->tail = NULL;
    atomic_init(&mb->delivers, 0);
    mb->wake = wake;
}

void mailbox_destroy(mailbox *mb)
{
    msg *m = mailbox_take(mb);
    while (m) {
        msg *next = m->next;
        msg_free(m);
        m = next;
    }
    pthread_mutex_destroy(&mb->lock);
}

void mailbox_post(mailbox *mb, msg *m)
{
    m->next = NULL;
    if (m->type == MSG_DELIVER)
        atomic_fetch_add_explicit(&mb->delivers, 1, memory_order_relaxed);
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
