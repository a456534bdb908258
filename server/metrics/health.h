/*
 * The /healthz document: {"status":"ok"|"draining"|"degraded",...} with
 * the node, its connections and channels, the broker's state and, with a
 * durable store, the store's. One text for both HTTP servers of the main
 * port (net/http.c for lws's connections, api/listen.c for the static
 * site's kept-alive ones), so they never disagree. Any thread.
 */
#ifndef HERALD_METRICS_HEALTH_H
#define HERALD_METRICS_HEALTH_H

#include <stddef.h>

#include "base/server.h"

/* Room for the whole document. */
#define HEALTH_BODY_MAX 768

/* Writes the document into body; returns the HTTP status (200, or 503
 * while draining or, in cluster mode, while a Redis link is down). */
int health_render(const server *srv, int draining,
                  char body[HEALTH_BODY_MAX]);

#endif
