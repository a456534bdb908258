/*
 * The heartbeat wheel (heartbeat.h).
 */
#include "net/heartbeat.h"

#include <stddef.h>

void hb_insert(hb_wheel *w, hb_node *n)
{
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
    hb_node **slot = &w->slot[now_s % HB_SLOTS];
    hb_node *n = *slot;
    *slot = NULL;
    return n;
}

hb_node *hb_next(hb_node *n)
{
    hb_node *next = n->next;
    n->prev = n->next = NULL;
    return next;
}
