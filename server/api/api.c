/*
 * The server API's routes (api.h).
 */
#include "api/api.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "api/keys.h"

#define API_PREFIX "/api/v1/"

static void answer_json(api_answer *ans, int status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text)
        abort();
    ans->status = status;
    proto_buf_reset(&ans->body);
    proto_buf_append(&ans->body, text, strlen(text));
    free(text);
}

void api_error(api_answer *ans, int status, int code, const char *message)
{
    answer_json(ans, status,
                json_pack("{s:{s:i,s:s}}", "error", "code", code, "message",
                          message));
}

static void route_info(server *srv, api_answer *ans)
{
    int cluster = srv->cfg->n_redis > 0;
    int down = cluster && atomic_load(&srv->broker_down) > 0;
    json_t *doc = json_pack(
        "{s:s,s:s,s:I,s:i,s:i,s:s}", "node", srv->node, "version",
        HERALD_VERSION, "uptime_s",
        (json_int_t)((server_now_ms(srv) - srv->started_ms) / 1000),
        "connections", (int)atomic_load(&srv->connections), "workers",
        (int)srv->n_workers, "broker",
        !cluster ? "memory" : down ? "down" : "up");
    answer_json(ans, 200, doc);
}

/* The routes and their methods; a known path with another method is 405
 * (with Allow), an unknown one 404. */
static const struct {
    const char *path;
    enum http_method method;
} routes[] = {
    { API_PREFIX "info", HTTP_GET },
};

void api_route(server *srv, const http1_request *req, uint64_t now_ms,
               api_answer *ans)
{
    ans->extra[0] = '\0';
    api_keys *keys = srv->api_keys;
    if (!keys || api_keys_count(keys) == 0) {
        api_error(ans, 503, 108, "no API keys configured (api_keys, "
                  "HERALD_API_KEY)");
        return;
    }
    int key = api_keys_match(keys, req->authorization.ptr,
                             req->authorization.len);
    if (key < 0) {
        snprintf(ans->extra, sizeof(ans->extra),
                 "WWW-Authenticate: apikey\r\n");
        api_error(ans, 401, 101, req->authorization.ptr
                                     ? "unknown API key"
                                     : "missing Authorization: apikey KEY");
        return;
    }
    uint64_t wait = api_keys_take(keys, key, now_ms);
    if (wait) {
        snprintf(ans->extra, sizeof(ans->extra), "Retry-After: %llu\r\n",
                 (unsigned long long)((wait + 999) / 1000));
        api_error(ans, 429, 110, "rate limit of this API key");
        return;
    }
    int known = 0;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(req->path.ptr, routes[i].path) != 0)
            continue;
        known = 1;
        if (req->method != routes[i].method)
            continue;
        route_info(srv, ans);
        return;
    }
    if (known) {
        snprintf(ans->extra, sizeof(ans->extra), "Allow: GET\r\n");
        api_error(ans, 405, 107, "method not allowed");
        return;
    }
    api_error(ans, 404, 107, "no such API route");
}
