/*
 * This node as the server API shows it (GET /api/v1/info, and each
 * node's answer in cluster mode): node, version, uptime, WebSocket
 * connections, workers, channel streams, broker state (memory, up, down)
 * and store state (none, ok, failing). Any thread: it reads atomics.
 */
#ifndef HERALD_CORE_NODE_H
#define HERALD_CORE_NODE_H

#include <jansson.h>

#include "base/server.h"

/* A new object. */
json_t *node_info(const server *srv);

#endif
