/*
 * The text exposition (expo.h). Families are written in a fixed order,
 * each with its # HELP and # TYPE lines even when it has no sample yet
 * (a labelled counter shows only the label values seen so far: the sets
 * are bounded, but most of them stay zero).
 */
#include "metrics/expo.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "base/config.h"
#include "hooks/hooks.h"
#include "metrics/metrics.h"
#include "store/store.h"

/* Appends one line (at most 511 bytes: names and labels are ours, label
 * values are bounded). */
static void __attribute__((format(printf, 2, 3)))
expo_line(proto_buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = (int)sizeof(line) - 1;
    proto_buf_append(b, line, (size_t)n);
    proto_buf_append(b, "\n", 1);
}

static void expo_family(proto_buf *b, const char *name, const char *type,
                        const char *help)
{
    expo_line(b, "# HELP %s %s", name, help);
    expo_line(b, "# TYPE %s %s", name, type);
}

/* A label value with \, " and newline escaped (the format's rule), cut to
 * fit out. */
static const char *expo_escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            out[o++] = '\\';
            out[o++] = *s;
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
    return out;
}

/* --- the workers' blocks --------------------------------------------------- */

static uint64_t expo_at(const metrics *m, uint32_t w, size_t off)
{
    return metrics_get((const metrics_counter *)((const char *)&m->w[w] + off));
}

static uint64_t expo_sum(const metrics *m, size_t off)
{
    uint64_t s = 0;
    for (uint32_t w = 0; w < m->n_workers; w++)
        s += expo_at(m, w, off);
    return s;
}

#define OFF(field) offsetof(metrics_worker, field)
#define OFF_AT(field, i) (OFF(field) + (size_t)(i) * sizeof(metrics_counter))

/* A counter family of one sample: the sum over the workers. */
static void expo_total(proto_buf *b, const metrics *m, const char *name,
                       const char *help, size_t off)
{
    expo_family(b, name, "counter", help);
    expo_line(b, "%s %llu", name, (unsigned long long)expo_sum(m, off));
}

/* One sample per worker: gauges as signed values (a gauge goes up and
 * down by wrapping adds). */
static void expo_per_worker(proto_buf *b, const metrics *m, const char *name,
                            size_t off, int gauge)
{
    for (uint32_t w = 0; w < m->n_workers; w++) {
        uint64_t v = expo_at(m, w, off);
        if (gauge)
            expo_line(b, "%s{worker=\"%u\"} %lld", name, (unsigned)w,
                      (long long)(int64_t)v);
        else
            expo_line(b, "%s{worker=\"%u\"} %llu", name, (unsigned)w,
                      (unsigned long long)v);
    }
}

static void expo_connections(proto_buf *b, const server *srv,
                             const metrics *m)
{
    expo_family(b, "herald_connections", "gauge",
                "WebSocket connections open now, per worker.");
    expo_per_worker(b, m, "herald_connections", OFF(conns), 1);
    expo_total(b, m, "herald_connections_accepted_total",
               "WebSocket connections accepted (handshake completed).",
               OFF(accepted));
    expo_family(b, "herald_connections_closed_total", "counter",
                "WebSocket connections closed, by close code (the server's, "
                "else the client's; none: no close frame).");
    for (unsigned i = 0; i < METRICS_CLOSE_CODES; i++) {
        uint64_t v = expo_sum(m, OFF_AT(closed, i));
        if (v)
            expo_line(b, "herald_connections_closed_total{code=\"%s\"} %llu",
                      metrics_close_label(i), (unsigned long long)v);
    }
    expo_family(b, "herald_api_connections", "gauge",
                "api_listen HTTP connections open now.");
    expo_line(b, "herald_api_connections %u",
              atomic_load((atomic_uint *)&srv->api_connections));
    expo_family(b, "herald_subscriptions", "gauge",
                "Subscriptions of this node's connections (including those "
                "being answered), per worker.");
    expo_per_worker(b, m, "herald_subscriptions", OFF(subscriptions), 1);
}

static void expo_publications(proto_buf *b, const server *srv,
                              const metrics *m)
{
    expo_family(b, "herald_channels", "gauge",
                "Channel streams the owners keep (bounded by max_channels).");
    expo_line(b, "herald_channels %u",
              atomic_load((atomic_uint *)&srv->channels));
    expo_family(b, "herald_channels_evicted_total", "counter",
                "Idle channel streams evicted to make room.");
    expo_line(b, "herald_channels_evicted_total %llu",
              (unsigned long long)atomic_load(
                  (atomic_ullong *)&srv->channels_evicted));
    expo_family(b, "herald_publications_received_total", "counter",
                "Publish requests received by this node, by source (client: "
                "a WebSocket publish; api: the HTTP API).");
    static const char *const src[METRICS_SOURCES] = { "client", "api" };
    for (unsigned s = 0; s < METRICS_SOURCES; s++)
        expo_line(b, "herald_publications_received_total{source=\"%s\"} %llu",
                  src[s], (unsigned long long)expo_sum(m, OFF_AT(received, s)));
    expo_family(b, "herald_publications_delivered_total", "counter",
                "Publications queued to subscribers (one per subscriber), "
                "per worker.");
    expo_per_worker(b, m, "herald_publications_delivered_total",
                    OFF(delivered), 0);
    expo_total(b, m, "herald_websocket_received_bytes_total",
               "WebSocket message payload bytes received.",
               OFF(bytes_in));
    expo_total(b, m, "herald_websocket_sent_bytes_total",
               "WebSocket data frame payload bytes written (batches "
               "included; pings and close frames not).",
               OFF(bytes_out));
    expo_total(b, m, "herald_send_queue_overflows_total",
               "Connections closed with 4001 because their send queue went "
               "over send_queue_max (slow consumers).",
               OFF(overflows));
    expo_total(b, m, "herald_send_queue_dropped_bytes_total",
               "Queued output dropped when a connection was closed with "
               "4001 or 4002.",
               OFF(dropped_bytes));
    expo_family(b, "herald_errors_total", "counter",
                "Error replies sent to WebSocket clients, by protocol error "
                "code.");
    for (unsigned i = 0; i < METRICS_ERROR_CODES; i++) {
        uint64_t v = expo_sum(m, OFF_AT(errors, i));
        if (v)
            expo_line(b, "herald_errors_total{code=\"%s\"} %llu",
                      metrics_error_label(i), (unsigned long long)v);
    }
}

/* The buckets are read once each, and _count is their total, so the
 * cumulative series is consistent within a scrape even while the owner
 * writes (_sum may run a few observations ahead or behind). */
static void expo_latency(proto_buf *b, const metrics *m)
{
    static const char name[] = "herald_publish_fanout_seconds";
    expo_family(b, name, "histogram",
                "From a publication's draft (single node) or its numbering "
                "(cluster, wall clock) to its owner posting the fan-out.");
    uint64_t cum = 0;
    for (unsigned i = 0; i <= METRICS_LATENCY_BUCKETS; i++) {
        cum += expo_sum(m, OFF_AT(lat_bucket, i));
        expo_line(b, "%s_bucket{le=\"%s\"} %llu", name,
                  metrics_bucket_label(i), (unsigned long long)cum);
    }
    uint64_t ns = expo_sum(m, OFF(lat_sum_ns));
    expo_line(b, "%s_sum %llu.%09llu", name,
              (unsigned long long)(ns / 1000000000),
              (unsigned long long)(ns % 1000000000));
    expo_line(b, "%s_count %llu", name, (unsigned long long)cum);
}

static void expo_api(proto_buf *b, const metrics *m)
{
    expo_family(b, "herald_api_requests_total", "counter",
                "HTTP API requests answered on api_listen, by route (other: "
                "any other path, or a request that could not be parsed) and "
                "status.");
    for (unsigned r = 0; r < METRICS_API_ROUTES; r++)
        for (unsigned s = 0; s < METRICS_API_STATUSES; s++) {
            uint64_t v = expo_sum(m, OFF(api) + (r * METRICS_API_STATUSES + s) *
                                                    sizeof(metrics_counter));
            if (v)
                expo_line(b, "herald_api_requests_total{route=\"%s\","
                             "status=\"%s\"} %llu",
                          metrics_route_label(r), metrics_status_label(s),
                          (unsigned long long)v);
        }
}

/* --- process-wide gauges --------------------------------------------------- */

static void expo_process(proto_buf *b, const server *srv)
{
    char node[160];
    expo_family(b, "herald_info", "gauge",
                "Always 1; the labels say which node and version.");
    expo_line(b, "herald_info{node=\"%s\",version=\"%s\"} 1",
              expo_escape(srv->node, node, sizeof(node)), HERALD_VERSION);
    expo_family(b, "herald_start_time_seconds", "gauge",
                "When the process started, Unix time.");
    expo_line(b, "herald_start_time_seconds %lld",
              (long long)(srv->started_ms / 1000));
    expo_family(b, "herald_workers", "gauge", "Worker threads.");
    expo_line(b, "herald_workers %u", (unsigned)srv->n_workers);
}

static void expo_backlogs(proto_buf *b, const server *srv)
{
    expo_family(b, "herald_mailbox_backlog", "gauge",
                "Fan-out messages (publications, join/leave) waiting in a "
                "worker's mailbox.");
    for (uint32_t w = 0; srv->inbox && w < srv->n_workers; w++)
        if (srv->inbox[w])
            expo_line(b, "herald_mailbox_backlog{worker=\"%u\"} %u",
                      (unsigned)w, server_backlog(srv, (uint16_t)w));
    int cluster = srv->cfg->n_redis > 0;
    unsigned down = atomic_load((atomic_uint *)&srv->broker_down);
    expo_family(b, "herald_broker_up", "gauge",
                "1 when the broker can number and carry publications: always "
                "for the memory broker; with Redis, when every worker's link "
                "to every Redis server is up.");
    expo_line(b, "herald_broker_up{broker=\"%s\"} %d",
              cluster ? "redis" : "memory", !cluster || down == 0);
    if (cluster) {
        expo_family(b, "herald_broker_links_down", "gauge",
                    "Worker-to-Redis links that are down.");
        expo_line(b, "herald_broker_links_down %u", down);
    }
    const store *st = srv->store;
    if (!st)
        return;
    expo_family(b, "herald_store_up", "gauge",
                "1 while the durable store (MongoDB) accepts writes, 0 while "
                "it is failing.");
    expo_line(b, "herald_store_up %d", !store_failing(st));
    expo_family(b, "herald_store_backlog", "gauge",
                "Publications waiting to be written to the durable store.");
    expo_line(b, "herald_store_backlog %llu",
              (unsigned long long)store_backlog(st));
    expo_family(b, "herald_store_spill_bytes", "gauge",
                "Bytes in the spill file (publications kept on disk while "
                "MongoDB is unavailable).");
    expo_line(b, "herald_store_spill_bytes %llu",
              (unsigned long long)store_spill_bytes(st));
    expo_family(b, "herald_store_written_total", "counter",
                "Publications written to the durable store.");
    expo_line(b, "herald_store_written_total %llu",
              (unsigned long long)store_written(st));
    expo_family(b, "herald_store_spilled_total", "counter",
                "Publications written to the spill file.");
    expo_line(b, "herald_store_spilled_total %llu",
              (unsigned long long)store_spilled(st));
}

/* Webhooks (hooks/hooks.h): the sender thread's own counters. */
static void expo_hooks(proto_buf *b, const server *srv)
{
    if (!srv->hooks)
        return;
    hooks_stats st;
    hooks_get_stats(srv->hooks, &st);
    expo_family(b, "herald_webhook_events_sent_total", "counter",
                "Webhook deliveries an endpoint answered with 2xx (one per "
                "event and endpoint).");
    expo_line(b, "herald_webhook_events_sent_total %llu",
              (unsigned long long)st.sent);
    expo_family(b, "herald_webhook_attempts_failed_total", "counter",
                "Webhook POSTs that failed (status not 2xx, timeout, "
                "connection refused); each is retried until "
                "webhook_max_attempts.");
    expo_line(b, "herald_webhook_attempts_failed_total %llu",
              (unsigned long long)st.failed);
    expo_family(b, "herald_webhook_events_dropped_total", "counter",
                "Webhook events dropped: queue_full (webhook_queue_max "
                "reached, the new event), attempts (webhook_max_attempts "
                "failed), shutdown (left after webhook_drain_ms).");
    for (int r = 0; r < HOOKS_DROP_REASONS; r++)
        expo_line(b, "herald_webhook_events_dropped_total{reason=\"%s\"} "
                  "%llu", hooks_drop_label(r),
                  (unsigned long long)st.dropped[r]);
    expo_family(b, "herald_webhook_queue_depth", "gauge",
                "Webhook events waiting to be delivered.");
    expo_line(b, "herald_webhook_queue_depth %llu",
              (unsigned long long)st.queued);
}

void metrics_render(const server *srv, proto_buf *out)
{
    const metrics *m = srv->metrics;
    expo_process(out, srv);
    if (m) {
        expo_connections(out, srv, m);
        expo_publications(out, srv, m);
        expo_latency(out, m);
        expo_api(out, m);
    }
    expo_backlogs(out, srv);
    expo_hooks(out, srv);
}

int metrics_authorized(const server *srv, const char *auth, size_t len)
{
    const metrics *m = srv->metrics;
    if (!m || !m->has_key)
        return 1;
    static const char scheme[] = "apikey ";
    size_t slen = sizeof(scheme) - 1;
    if (!auth || len <= slen || len > slen + CONFIG_API_KEY_MAX ||
        strncasecmp(auth, scheme, slen) != 0)
        return 0;
    /* Digests of equal length: the comparison's time says nothing about
     * the key's length or how much of it matched. */
    unsigned char d[METRICS_KEY_DIGEST_LEN];
    config_api_key_digest(auth + slen, len - slen, d);
    return CRYPTO_memcmp(d, m->key_digest, sizeof(d)) == 0;
}
