/*
 * What the server API asks of a worker's connections (core/requests.h:
 * chans_ask, disc_ask): the channels this worker has subscribers of, and
 * closing the connections of a user or a client. Each ask is answered in
 * place and posted back to the asker; every worker is asked and the asker
 * merges the answers (api/api.c). Runs on the worker's thread.
 */
#ifndef HERALD_NET_ADMIN_H
#define HERALD_NET_ADMIN_H

#include <jansson.h>

#include <herald/proto.h>

#include "base/server.h"
#include "core/requests.h"

/* net/conn.h's; not included, so that the API (http-parser, whose
 * http_status enum clashes with libwebsockets') can include this. */
struct conns;

/* Takes an ask (CON_CHANNELS, CON_DISCONNECT): answers it and posts it
 * back to the asker. */
void admin_receive(struct conns *n, msg *m);

/* Fills a with this worker's matching channels (by name, at most
 * a->limit: O(channels on this worker) and a sort of the matches) and
 * posts it back. */
void admin_channels(struct conns *n, chans_ask *a);

/* Closes the matching connections (code, no reconnect unless asked),
 * counts them in a->closed and posts a back. */
void admin_disconnect(struct conns *n, disc_ask *a);

/* Cluster mode: an ask from some node's server API (JSON: "op" channels,
 * disconnect or info, "to" the asker's call, and the op's arguments),
 * answered for this worker into out as JSON {"to", "node", "worker",
 * "result"}. -1 for an ask that cannot be read (no answer: the asker
 * times out). */
int admin_remote(struct conns *n, const char *body, size_t len,
                 proto_buf *out);

#endif
