/*
 * Herald's HTTP endpoints on the WebSocket port (the lws protocol callback
 * in conn.c hands every plain HTTP request here): /healthz, and /metrics
 * when api_listen is not set (metrics/expo.h: Prometheus text; JSON
 * otherwise), all with Cache-Control: no-store; unknown paths get 404,
 * methods other than GET 405, /ws without an upgrade 426.
 */
#ifndef HERALD_NET_HTTP_H
#define HERALD_NET_HTTP_H

#include <libwebsockets.h>

#include "base/server.h"

/* Answers the request for uri on wsi; returns what the lws callback
 * returns (-1: close the connection). draining: this worker shuts down. */
int http_serve(struct lws *wsi, const char *uri, server *srv,
               int draining);

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: 0 for a WebSocket upgrade; any other
 * (HTTP/2's "h2c") is answered 400 and the connection closed (-1). */
int http_confirm_upgrade(struct lws *wsi, const char *upgrade);

#endif
