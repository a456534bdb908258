/*
 * Unit tests of server/metrics/: the per-worker blocks (cache-line
 * alignment, gauges going down), the label sets (close codes, error
 * codes, API routes and statuses, latency buckets, each with its "other"),
 * summing over workers at render time, and the text exposition itself
 * (HELP and TYPE per family, label escaping, cumulative histogram buckets,
 * _sum in seconds), and the metrics key.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/server.h"
#include "metrics/expo.h"
#include "metrics/metrics.h"

#define KEY "mmmmmmmmmmmmmmmmmmmmmmmm"

static config cfg;
static server srv;

/* A server with n workers' counters and no mailboxes or store. */
static void setup_server(uint32_t n, const char *key)
{
    memset(&srv, 0, sizeof(srv));
    config_defaults(&cfg);
    srv.cfg = &cfg;
    srv.n_workers = n;
    snprintf(srv.node, sizeof(srv.node), "%s", "node-1");
    srv.started_ms = 1700000000123;
    srv.metrics = metrics_new(n, key);
}

/* The exposition, NUL-terminated (the caller frees it). */
static char *render(void)
{
    proto_buf b;
    proto_buf_init(&b, 0);
    metrics_render(&srv, &b);
    char *text = malloc(b.len + 1);
    memcpy(text, proto_buf_data(&b), b.len);
    text[b.len] = '\0';
    proto_buf_free(&b);
    return text;
}

/* 1 when text has `line` as a whole line. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

Test(metrics, blocks_are_cache_line_aligned)
{
    metrics *m = metrics_new(3, NULL);
    cr_assert_eq(sizeof(metrics_worker) % 64, 0);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq((uintptr_t)metrics_of(m, i) % 64, 0);
    cr_assert_null(metrics_of(NULL, 1), "metrics off: no block");
    cr_assert_eq(metrics_get(&metrics_of(m, 2)->delivered), 0);
    metrics_free(m);
    metrics_free(NULL);
}

Test(metrics, null_block_hooks_do_nothing)
{
    /* metrics = false: every hook takes NULL and returns */
    metrics_conn_opened(NULL);
    metrics_conn_closed(NULL, 1000);
    metrics_error_sent(NULL, 107);
    metrics_api_request(NULL, "/metrics", 200);
    metrics_observe_latency(NULL, 5);
}

Test(metrics, label_sets_have_an_other)
{
    cr_assert_str_eq(metrics_close_label(metrics_close_index(4001)), "4001");
    cr_assert_str_eq(metrics_close_label(metrics_close_index(1000)), "1000");
    cr_assert_str_eq(metrics_close_label(metrics_close_index(0)), "none");
    cr_assert_str_eq(metrics_close_label(metrics_close_index(4999)), "other");
    cr_assert_str_eq(metrics_close_label(metrics_close_index(65535)), "other");
    cr_assert_str_eq(metrics_error_label(metrics_error_index(100)), "100");
    cr_assert_str_eq(metrics_error_label(metrics_error_index(112)), "112");
    cr_assert_str_eq(metrics_error_label(metrics_error_index(113)), "other");
    cr_assert_str_eq(metrics_error_label(metrics_error_index(99)), "other");
    cr_assert_str_eq(metrics_error_label(metrics_error_index(-1)), "other");
    cr_assert_str_eq(metrics_route_label(metrics_route_index("/api/v1/publish")),
                     "/api/v1/publish");
    cr_assert_str_eq(metrics_route_label(metrics_route_index("/metrics")),
                     "/metrics");
    cr_assert_str_eq(metrics_route_label(metrics_route_index("/api/v1/publishx")),
                     "other");
    cr_assert_str_eq(metrics_route_label(metrics_route_index(NULL)), "other");
    cr_assert_str_eq(metrics_status_label(metrics_status_index(429)), "429");
    cr_assert_str_eq(metrics_status_label(metrics_status_index(418)), "other");
}

Test(metrics, latency_buckets_are_upper_bounds)
{
    metrics *m = metrics_new(1, NULL);
    metrics_worker *w = metrics_of(m, 0);
    metrics_observe_latency(w, 0);            /* le 1e-05 */
    metrics_observe_latency(w, 10000);        /* exactly 1e-05: le 1e-05 */
    metrics_observe_latency(w, 10001);        /* le 2.5e-05 */
    metrics_observe_latency(w, 1000000);      /* le 0.001 */
    metrics_observe_latency(w, 9000000000ULL);/* beyond 5 s: +Inf only */
    cr_assert_eq(metrics_get(&w->lat_bucket[0]), 2);
    cr_assert_eq(metrics_get(&w->lat_bucket[1]), 1);
    cr_assert_eq(metrics_bucket_ns(6), 1000000);
    cr_assert_str_eq(metrics_bucket_label(6), "0.001");
    cr_assert_eq(metrics_get(&w->lat_bucket[6]), 1);
    cr_assert_eq(metrics_get(&w->lat_bucket[METRICS_LATENCY_BUCKETS]), 1);
    cr_assert_str_eq(metrics_bucket_label(METRICS_LATENCY_BUCKETS), "+Inf");
    cr_assert_eq(metrics_get(&w->lat_sum_ns), 9001020001ULL);
    /* bounds strictly increase */
    for (unsigned i = 1; i < METRICS_LATENCY_BUCKETS; i++)
        cr_assert_gt(metrics_bucket_ns(i), metrics_bucket_ns(i - 1));
    metrics_free(m);
}

Test(metrics, gauges_go_up_and_down)
{
    metrics *m = metrics_new(1, NULL);
    metrics_worker *w = metrics_of(m, 0);
    metrics_conn_opened(w);
    metrics_conn_opened(w);
    metrics_conn_closed(w, 4001);
    metrics_conn_closed(w, 1000);
    metrics_conn_closed(w, 0);  /* a third close with one fewer open: -1 */
    cr_assert_eq((int64_t)metrics_get(&w->conns), -1);
    cr_assert_eq(metrics_get(&w->accepted), 2);
    cr_assert_eq(metrics_get(&w->closed[metrics_close_index(0)]), 1);
    metrics_free(m);
}

Test(metrics, render_sums_workers_and_labels_per_worker)
{
    setup_server(3, NULL);
    for (uint32_t i = 0; i < 3; i++) {
        metrics_worker *w = metrics_of(srv.metrics, i);
        for (uint32_t k = 0; k <= i; k++)
            metrics_conn_opened(w);                  /* 1 + 2 + 3 */
        metrics_add(&w->delivered, 100 * (i + 1));   /* 100, 200, 300 */
        metrics_add(&w->received[METRICS_SRC_CLIENT], 1);
        metrics_add(&w->bytes_out, 1000);
        metrics_error_sent(w, 110);
        metrics_api_request(w, "/api/v1/publish", 200);
    }
    metrics_conn_closed(metrics_of(srv.metrics, 2), 4001);
    metrics_error_sent(metrics_of(srv.metrics, 0), 7);
    metrics_api_request(metrics_of(srv.metrics, 1), "/x", 404);
    metrics_api_request(metrics_of(srv.metrics, 1), NULL, 400);
    char *t = render();
    cr_assert(has_line(t, "herald_connections{worker=\"0\"} 1"), "%s", t);
    cr_assert(has_line(t, "herald_connections{worker=\"1\"} 2"));
    cr_assert(has_line(t, "herald_connections{worker=\"2\"} 2"));
    cr_assert(has_line(t, "herald_connections_accepted_total 6"));
    cr_assert(has_line(t, "herald_connections_closed_total{code=\"4001\"} 1"));
    cr_assert(has_line(t, "herald_publications_delivered_total{worker=\"2\"} 300"));
    cr_assert(has_line(t, "herald_publications_received_total{source=\"client\"} 3"));
    cr_assert(has_line(t, "herald_publications_received_total{source=\"api\"} 0"));
    cr_assert(has_line(t, "herald_websocket_sent_bytes_total 3000"));
    cr_assert(has_line(t, "herald_errors_total{code=\"110\"} 3"));
    cr_assert(has_line(t, "herald_errors_total{code=\"other\"} 1"));
    cr_assert(has_line(t, "herald_api_requests_total{route=\"/api/v1/publish\","
                          "status=\"200\"} 3"));
    cr_assert(has_line(t, "herald_api_requests_total{route=\"other\","
                          "status=\"404\"} 1"));
    cr_assert(has_line(t, "herald_api_requests_total{route=\"other\","
                          "status=\"400\"} 1"));
    /* labels never seen are not written (the sets stay bounded and the
     * exposition short) */
    cr_assert_null(strstr(t, "code=\"4002\""));
    cr_assert_null(strstr(t, "status=\"500\""));
    free(t);
    metrics_free(srv.metrics);
}

Test(metrics, render_has_help_and_type_for_every_family)
{
    setup_server(2, NULL);
    char *t = render();
    /* every sample's family was announced by # HELP and # TYPE before it */
    char fam[128] = "";
    for (char *line = t; *line;) {
        char *nl = strchr(line, '\n');
        cr_assert_not_null(nl, "the exposition ends with a newline");
        *nl = '\0';
        if (strncmp(line, "# HELP ", 7) == 0) {
            sscanf(line + 7, "%127s", fam);
            cr_assert_gt(strlen(line), 7 + strlen(fam) + 1, "help text: %s", line);
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128], type[32];
            cr_assert_eq(sscanf(line + 7, "%127s %31s", name, type), 2);
            cr_assert_str_eq(name, fam, "TYPE right after its HELP");
            cr_assert(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                      strcmp(type, "histogram") == 0, "%s", line);
        } else {
            cr_assert_neq(line[0], '#', "%s", line);
            cr_assert_eq(strncmp(line, fam, strlen(fam)), 0,
                         "sample %s outside its family %s", line, fam);
            char c = line[strlen(fam)];
            cr_assert(c == ' ' || c == '{' || c == '_', "%s", line);
        }
        line = nl + 1;
    }
    free(t);
    metrics_free(srv.metrics);
}

Test(metrics, histogram_is_cumulative_with_sum_in_seconds)
{
    setup_server(2, NULL);
    metrics_observe_latency(metrics_of(srv.metrics, 0), 20000);     /* 20 us */
    metrics_observe_latency(metrics_of(srv.metrics, 1), 20000);
    metrics_observe_latency(metrics_of(srv.metrics, 1), 1500000000); /* 1.5 s */
    char *t = render();
    cr_assert(has_line(t, "herald_publish_fanout_seconds_bucket{le=\"1e-05\"} 0"), "%s", t);
    cr_assert(has_line(t, "herald_publish_fanout_seconds_bucket{le=\"2.5e-05\"} 2"));
    cr_assert(has_line(t, "herald_publish_fanout_seconds_bucket{le=\"1\"} 2"));
    cr_assert(has_line(t, "herald_publish_fanout_seconds_bucket{le=\"2.5\"} 3"));
    cr_assert(has_line(t, "herald_publish_fanout_seconds_bucket{le=\"+Inf\"} 3"));
    cr_assert(has_line(t, "herald_publish_fanout_seconds_count 3"));
    cr_assert(has_line(t, "herald_publish_fanout_seconds_sum 1.500040000"));
    free(t);
    metrics_free(srv.metrics);
}

Test(metrics, process_gauges_and_escaped_labels)
{
    setup_server(1, NULL);
    snprintf(srv.node, sizeof(srv.node), "%s", "a\"b\\c");
    atomic_store(&srv.channels, 42);
    char *t = render();
    cr_assert(has_line(t, "herald_info{node=\"a\\\"b\\\\c\",version=\""
                          HERALD_VERSION "\"} 1"), "%s", t);
    cr_assert(has_line(t, "herald_start_time_seconds 1700000000"));
    cr_assert(has_line(t, "herald_channels 42"));
    cr_assert(has_line(t, "herald_broker_up{broker=\"memory\"} 1"));
    cr_assert_null(strstr(t, "herald_store_up"), "no store: no store families");
    cr_assert_null(strstr(t, "herald_broker_links_down"));
    free(t);
    metrics_free(srv.metrics);

    /* cluster mode with a link down */
    setup_server(1, NULL);
    cfg.n_redis = 1;
    atomic_store(&srv.broker_down, 1);
    t = render();
    cr_assert(has_line(t, "herald_broker_up{broker=\"redis\"} 0"), "%s", t);
    cr_assert(has_line(t, "herald_broker_links_down 1"));
    free(t);
    metrics_free(srv.metrics);
}

Test(metrics, key_is_checked_when_configured)
{
    setup_server(1, NULL);
    cr_assert(metrics_authorized(&srv, NULL, 0), "no key configured: open");
    metrics_free(srv.metrics);

    setup_server(1, KEY);
#define AUTH(s) metrics_authorized(&srv, s, strlen(s))
    cr_assert(AUTH("apikey " KEY));
    cr_assert(AUTH("APIKEY " KEY), "the scheme is case-insensitive");
    cr_assert_not(metrics_authorized(&srv, NULL, 0));
    cr_assert_not(AUTH(""));
    cr_assert_not(AUTH("apikey "));
    cr_assert_not(AUTH("apikey " KEY "m"));
    cr_assert_not(AUTH("apikey mmmmmmmmmmmmmmmmmmmmmmm"));
    cr_assert_not(AUTH("Bearer " KEY));
    cr_assert_not(AUTH(KEY));
    metrics_free(srv.metrics);
}
