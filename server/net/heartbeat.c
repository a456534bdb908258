/*
 * The heartbeat wheel (heartbeat.h).
 */
#include "net/heartbeat.h"

#include <stddef.h>
#include <string.h>

void hb_init(hb_wheel *w, uint64_t now_s)
{
    memset(w, 0, sizeof(*w));
    w->done_s = now_s;
}

void hb_insert(hb_wheel *w, hb_node *n)
{
    if (n->due_s <= w->done_s)
        n->due_s = w->done_s + 1;   /* its slot was taken already */
    hb_node **head = &w->slot[n->due_s % HB_SLOTS];
    n->prev = NULL;
    n->next = *head;
    if (*head)
        (*head)->prev = n;
    *head = n;
}

void hb_remove(hb_wheel *w, hb_node *n)
{
    hb_node **head = &w->slot[n->due_s % HB_SLOTS];
    if (n->prev)
        n->prev->next = n->next;
    else if (*head == n)
        *head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

hb_node *hb_take(hb_wheel *w, uint64_t now_s)
{
    if (now_s <= w->done_s)
        return NULL;
    /* Seconds to take: done_s + 1 .. now_s, at most one turn. */
    uint64_t span = now_s - w->done_s < HB_SLOTS ? now_s - w->done_s
                                                 : HB_SLOTS;
    w->done_s = now_s;
    hb_node *head = NULL, *tail = NULL;
    for (uint64_t i = span; i-- > 0;) {
        hb_node **slot = &w->slot[(now_s - i) % HB_SLOTS];
        hb_node *n = *slot;
        *slot = NULL;
        if (!n)
            continue;
        if (tail)
            tail->next = n;
        else
            head = n;
        n->prev = tail;
        for (tail = n; tail->next; tail = tail->next)
            ;
    }
    return head;
}

hb_node *hb_next(hb_node *n)
{
    hb_node *next = n->next;
    n->prev = n->next = NULL;
    return next;
}
