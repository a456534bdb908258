/*
 * The hub's subscription index of one worker: channel -> local subscribers
 * and connection -> its subscriptions, both intrusive doubly-linked lists,
 * so subscribe, unsubscribe and disconnect cost O(that connection's
 * subscriptions) and fan-out walks exactly the channel's local subscribers.
 * Owned by one worker thread; nothing here is shared.
 *
 * A subscription is "pending" from the subscribe command until the channel
 * owner's reply arrives (with the offset it starts after), then "active";
 * only active subscriptions receive publications.
 */
#ifndef HERALD_HUB_H
#define HERALD_HUB_H

#include <stddef.h>
#include <stdint.h>

#include <uthash.h>

typedef struct hub_chan hub_chan;

typedef struct hub_sub {
    void *conn;                    /* the subscriber (struct conn *) */
    hub_chan *chan;
    struct hub_sub *prev, *next;   /* in chan->subs */
    struct hub_sub *cprev, *cnext; /* in the connection's list */
    uint64_t token;                /* matches owner replies to this sub */
    uint8_t active;
    uint32_t expires;              /* its channel token's exp (unix s; the
                                      subscriber's worker ends it then), 0 */
} hub_sub;

struct hub_chan {
    UT_hash_handle hh;
    hub_sub *subs;                 /* utlist DL head */
    uint32_t n;                    /* subscriptions, pending included */
    uint16_t len;
    char name[];                   /* NUL-terminated */
};

typedef struct hub {
    hub_chan *chans;               /* uthash head */
    size_t n_chans;
} hub;

void hub_init(hub *h);
/* Frees every channel; subscriptions must be removed first. */
void hub_free(hub *h);

hub_chan *hub_chan_find(const hub *h, const char *name, size_t len);

/* Adds a pending subscription of conn to the channel (created on demand)
 * and links it into *conn_list. */
hub_sub *hub_sub_add(hub *h, hub_sub **conn_list, void *conn,
                     const char *name, size_t len, uint64_t token);
/* Unlinks and frees s (conn_list is ignored for an orphan); frees the channel when it has no subscribers left.
 * Returns 1 when the channel was freed. */
int hub_sub_remove(hub *h, hub_sub **conn_list, hub_sub *s);
/* Detaches a pending subscription from its connection (which is going
 * away or unsubscribed) so the owner's reply still finds it by token. */
void hub_sub_orphan(hub_sub **conn_list, hub_sub *s);
/* Finds an orphaned subscription of a channel by token (O(channel's local
 * subscribers); orphans are rare). */
hub_sub *hub_orphan_find(const hub *h, const char *name, size_t len,
                         uint64_t token);
/* The connection's subscription to a channel, or NULL: O(the smaller of
 * its subscriptions and the channel's subscribers). */
hub_sub *hub_sub_find(const hub *h, hub_sub *conn_list, const char *name,
                      size_t len);

#endif
