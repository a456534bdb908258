/*
 * HTTP endpoints (http.h).
 *
 * GET /healthz: 200 {"status":"ok",...}; 503 "draining" during shutdown
 * and, in cluster mode, 503 "degraded" with "broker":"down" while any
 * worker's link to any Redis server is down (so a balancer sends new
 * clients elsewhere; connected clients stay). With a durable store, its
 * state in "store". "channels": the channel streams the owners keep
 * (bounded by max_channels), "channels_evicted": idle ones evicted to make
 * room since the start.
 *
 * GET /metrics: the Prometheus exposition (metrics/expo.h), here when
 * api_listen is not configured (with it, /metrics is served there and is
 * 404 here), and when `metrics` is on.
 *
 * A request with a body is answered and its connection closed; others may
 * keep their connection (http_has_body).
 */
#include "net/http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "metrics/expo.h"
#include "metrics/health.h"

/* Writes the answer. close: the connection is closed after it (-1 from
 * the callback), with "connection: close" (lws sets it when the common
 * headers get no length); otherwise lws keeps the connection for the
 * client's next request. */
static int http_reply(struct lws *wsi, unsigned status, const char *body,
                      int close)
{
    unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start,
                                      *end = hdr + sizeof(hdr) - 1;
    size_t len = strlen(body);
    if (lws_add_http_common_headers(wsi, status, "application/json",
                                    close ? LWS_ILLEGAL_HTTP_CONTENT_LEN : len,
                                    &p, end) ||
        (close && lws_add_http_header_content_length(wsi, len, &p, end)) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p,
                                     end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    unsigned char buf[LWS_PRE + 1024];
    if (len > sizeof(buf) - LWS_PRE)
        return -1;
    memcpy(buf + LWS_PRE, body, len);
    if (lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) != (int)len)
        return -1;
    if (close)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Keep-alive only for requests without a body. lws 4.1.6 parses a request
 * pipelined after another from its receive buffer, and when that request
 * carries a body, lws_http_action re-reads the buffer it came from in a
 * loop that never ends (roles/http/server/server.c; still in 4.3): one
 * packet "GET /healthz ... POST /healthz ... Content-Length: 1 ... 1"
 * stalled a worker for good. The loop comes after LWS_CALLBACK_HTTP, so a
 * request that has or announces a body (any method but GET, a
 * Content-Length other than 0, a Transfer-Encoding) is answered there and
 * its connection closed: lws never reads the body (nor waits for it:
 * "Content-Length: 1000" and nothing sent held the socket). */
static int http_has_body(struct lws *wsi)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0 ||
        lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
        return 1;
    char cl[24];
    int n = lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH);
    return n < 0 || (n > 0 && strcmp(cl, "0") != 0);
}

static int http_healthz(struct lws *wsi, server *srv, int draining)
{
    char body[HEALTH_BODY_MAX];
    int status = health_render(srv, draining, body);
    return http_reply(wsi, (unsigned)status, body, srv->sniff_main);
}

/* The exposition is several KiB, more than http_reply's stack buffer:
 * it is rendered into a heap buffer with LWS_PRE headroom and written
 * with one lws_write. lws 4.1 takes the whole buffer: what the socket does
 * not take at once is copied to the connection's buflist_out and sent as
 * the socket drains, and lws_http_transaction_completed waits for it
 * (docs/lws-http.md, section 5). */
static int http_metrics(struct lws *wsi, server *srv)
{
    char auth[CONFIG_API_KEY_MAX + 16];
    int alen = lws_hdr_copy(wsi, auth, sizeof(auth),
                            WSI_TOKEN_HTTP_AUTHORIZATION);
    if (!metrics_authorized(srv, alen > 0 ? auth : NULL,
                            alen > 0 ? (size_t)alen : 0)) {
        /* lws_hdr_copy gives -1 for a header too long for auth: no key is
         * that long, so it is refused like a wrong one. */
        unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start,
                                          *end = hdr + sizeof(hdr) - 1;
        static const char body[] = "{\"error\":\"unauthorized\"}";
        unsigned char buf[LWS_PRE + sizeof(body)];
        if (lws_add_http_common_headers(wsi, HTTP_STATUS_UNAUTHORIZED,
                                        "application/json",
                                        sizeof(body) - 1, &p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_WWW_AUTHENTICATE,
                                         (const unsigned char *)"apikey", 6,
                                         &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        memcpy(buf + LWS_PRE, body, sizeof(body) - 1);
        if (lws_write(wsi, buf + LWS_PRE, sizeof(body) - 1,
                      LWS_WRITE_HTTP_FINAL) != (int)sizeof(body) - 1)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    proto_buf b;
    proto_buf_init(&b, LWS_PRE);
    metrics_render(srv, &b);
    unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start,
                                      *end = hdr + sizeof(hdr) - 1;
    int rc = 0;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, METRICS_CONTENT_TYPE,
                                    b.len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p,
                                     end) ||
        lws_finalize_write_http_header(wsi, start, &p, end) ||
        lws_write(wsi, (unsigned char *)proto_buf_data(&b), b.len,
                  LWS_WRITE_HTTP_FINAL) != (int)b.len)
        rc = -1;
    proto_buf_free(&b);
    if (rc < 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

int http_serve(struct lws *wsi, const char *uri, server *srv,
               int draining)
{
    if (http_has_body(wsi)) {
        if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
            return http_reply(wsi, HTTP_STATUS_BAD_REQUEST,
                              "{\"error\":\"a GET request has no body\"}", 1);
        return http_reply(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED,
                          "{\"error\":\"method not allowed\"}", 1);
    }
    if (strcmp(uri, "/healthz") == 0)
        return http_healthz(wsi, srv, draining);
    if (strcmp(uri, "/metrics") == 0 && srv->metrics &&
        !srv->cfg->api_listen.host[0])
        return http_metrics(wsi, srv);
    /* When the server API or the static site shares the port, the first
     * bytes of a connection decide who serves it (net/sniff.c): a
     * connection kept alive here would take a later request for them to
     * lws. */
    if (strcmp(uri, "/ws") == 0)
        return http_reply(wsi, 426,
                          "{\"error\":\"WebSocket upgrade required\"}",
                          srv->sniff_main);
    return http_reply(wsi, HTTP_STATUS_NOT_FOUND,
                      "{\"error\":\"not found\"}", srv->sniff_main);
}

int http_confirm_upgrade(struct lws *wsi, const char *upgrade)
{
    if (upgrade && strcasecmp(upgrade, "websocket") == 0)
        return 0;
    return http_reply(wsi, HTTP_STATUS_BAD_REQUEST,
                      "{\"error\":\"only WebSocket upgrades are served\"}", 1);
}
