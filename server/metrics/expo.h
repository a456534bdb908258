/*
 * The Prometheus text exposition (format 0.0.4) of a running server, for
 * GET /metrics (api/api.c on api_listen, net/http.c on the main port):
 * the workers' counter blocks (metrics/metrics.h) summed, or one sample
 * per worker where the spread matters, and the process-wide gauges read
 * at scrape time (channels, mailbox backlogs, broker links, the store).
 * Every family and its labels: docs/metrics.md. Any thread may render;
 * nothing here takes a lock a worker waits for.
 */
#ifndef HERALD_METRICS_EXPO_H
#define HERALD_METRICS_EXPO_H

#include <stddef.h>

#include <herald/proto.h>

#include "base/server.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Appends the exposition of srv (whose metrics must be on) to out. */
void metrics_render(const server *srv, proto_buf *out);

/* 1 when a request whose Authorization header is auth (len bytes; NULL:
 * none) may read /metrics: no metrics_key configured, or "apikey KEY"
 * with that key (compared in constant time, as API keys are). */
int metrics_authorized(const server *srv, const char *auth, size_t len);

#endif
