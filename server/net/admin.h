/*
 * What the server API asks of a worker's connections (core/requests.h:
 * chans_ask, disc_ask): the channels this worker has subscribers of, and
 * closing the connections of a user or a client. Each ask is answered in
 * place and posted back to the asker; every worker is asked and the asker
 * merges the answers (api/api.c). Runs on the worker's thread.
 */
#ifndef HERALD_NET_ADMIN_H
#define HERALD_NET_ADMIN_H

#include "core/requests.h"
#include "net/conn.h"

/* Takes an ask (CON_CHANNELS, CON_DISCONNECT): answers it and posts it
 * back to the asker. */
void admin_receive(conns *n, msg *m);

/* Fills a with this worker's matching channels (by name, at most
 * a->limit: O(channels on this worker) and a sort of the matches) and
 * posts it back. */
void admin_channels(conns *n, chans_ask *a);

/* Closes the matching connections (code, no reconnect unless asked),
 * counts them in a->closed and posts a back. */
void admin_disconnect(conns *n, disc_ask *a);

#endif
