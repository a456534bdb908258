/*
 * The server API's routes (api.h).
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "api/keys.h"
#include "core/pub.h"
#include "core/rules.h"

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

static int route_info(server *srv, const http1_request *req,
                      const route *reply_to, api_answer *ans)
{
    (void)req;
    (void)reply_to;
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
    return 0;
}

/* The HTTP status of a protocol error code: whose fault, and what to do. */
static int status_of(int code)
{
    switch (code) {
    case PROTO_E_UNAUTHORIZED: return 401;
    case PROTO_E_PERMISSION: return 403;
    case PROTO_E_NOT_AVAILABLE: return 503;
    case PROTO_E_RATE_LIMITED: return 429;
    case PROTO_E_TOO_LARGE: return 413;
    case PROTO_E_INTERNAL: return 500;
    default: return 400;      /* 102, 106, 107: the request itself */
    }
}

static const char *media_type(const http1_request *req)
{
    if (!req->content_type.ptr)
        return "";
    return req->content_type.ptr;
}

/* "application/json", with or without parameters. */
static int is_json(const http1_request *req)
{
    const char *t = media_type(req);
    size_t n = strcspn(t, "; ");
    return n == 16 && strncasecmp(t, "application/json", 16) == 0;
}

/* POST /api/v1/publish {"channel": "...", "data": ...}: the publication a
 * client's publish makes (offsets, history, the durable store, cluster). */
static int route_publish(server *srv, const http1_request *req,
                         const route *reply_to, api_answer *ans)
{
    if (!is_json(req)) {
        api_error(ans, 415, PROTO_E_BAD_REQUEST,
                  "Content-Type must be application/json");
        return 0;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(req->body.ptr, req->body.len,
                             JSON_REJECT_DUPLICATES, &jerr);
    if (!doc || !json_is_object(doc)) {
        json_decref(doc);
        api_error(ans, 400, PROTO_E_BAD_REQUEST,
                  "the body must be a JSON object {\"channel\", \"data\"}");
        return 0;
    }
    const char *key;
    json_t *v, *jchan = NULL, *data = NULL;
    json_object_foreach(doc, key, v) {
        if (strcmp(key, "channel") == 0)
            jchan = v;
        else if (strcmp(key, "data") == 0)
            data = v;
        else {
            json_decref(doc);
            api_error(ans, 400, PROTO_E_BAD_REQUEST,
                      "unknown field (a publication has channel and data)");
            return 0;
        }
    }
    if (!json_is_string(jchan) || !data) {
        json_decref(doc);
        api_error(ans, 400, PROTO_E_BAD_REQUEST,
                  "channel (a string) and data are required");
        return 0;
    }
    const char *chan = json_string_value(jchan);
    size_t clen = json_string_length(jchan);
    const config_ns *ns = NULL;
    rules_who who = { .anonymous = 0, .client = 0 };
    int code = proto_channel_valid(chan, clen)
                   ? rules_check(srv->cfg, RULES_PUBLISH, chan, clen, &who, 0,
                                 srv->store != NULL, &ns)
                   : PROTO_E_BAD_CHANNEL;
    if (code) {
        json_decref(doc);
        api_error(ans, status_of(code), code,
                  code == PROTO_E_BAD_CHANNEL
                      ? "bad channel name or unknown namespace"
                      : "not allowed in this channel's namespace");
        return 0;
    }
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        abort();
    proto_data d;
    void *owned = NULL;
    proto_error perr;
    if (proto_data_from_json(text, strlen(text), &d, &owned, &perr)) {
        free(text);
        json_decref(doc);
        api_error(ans, 400, PROTO_E_BAD_REQUEST, perr.message);
        return 0;
    }
    pub_req *r = chan_req_new(sizeof(pub_req), OWN_PUBLISH, chan, clen, "", 0);
    r->h.route = *reply_to;
    r->h.ns = ns;
    r->p = pub_draft((proto_slice){ chan, clen }, &d, NULL);
    free(owned);
    free(text);
    json_decref(doc);
    server_post(srv, server_owner(srv, r->h.chan, r->h.chan_len), &r->h.hdr);
    return 1;
}

void api_reply(const msg *m, api_answer *ans)
{
    const chan_req *r = (const chan_req *)m;
    ans->extra[0] = '\0';
    if (r->code) {
        api_error(ans, status_of(r->code), r->code,
                  r->errmsg ? r->errmsg : "refused by the channel's owner");
        return;
    }
    if (m->type == CON_PUBLISHED) {
        const pub_req *p = (const pub_req *)m;
        answer_json(ans, 200,
                    json_pack("{s:I,s:s%}", "offset", (json_int_t)p->offset,
                              "epoch", p->epoch, (size_t)IDS_LEN));
        return;
    }
    api_error(ans, 500, PROTO_E_INTERNAL, "unexpected reply");
}

/* The routes and their methods; a known path with another method is 405
 * (with Allow), an unknown one 404. */
static const struct {
    const char *path;
    enum http_method method;
    const char *allow;
    int (*fn)(server *srv, const http1_request *req, const route *reply_to,
              api_answer *ans);
} routes[] = {
    { API_PREFIX "info", HTTP_GET, "GET", route_info },
    { API_PREFIX "publish", HTTP_POST, "POST", route_publish },
};

int api_route(server *srv, const http1_request *req, uint64_t now_ms,
              const route *reply_to, api_answer *ans)
{
    ans->extra[0] = '\0';
    api_keys *keys = srv->api_keys;
    if (!keys || api_keys_count(keys) == 0) {
        api_error(ans, 503, PROTO_E_NOT_AVAILABLE,
                  "no API keys configured (api_keys, HERALD_API_KEY)");
        return 0;
    }
    int key = api_keys_match(keys, req->authorization.ptr,
                             req->authorization.len);
    if (key < 0) {
        snprintf(ans->extra, sizeof(ans->extra),
                 "WWW-Authenticate: apikey\r\n");
        api_error(ans, 401, PROTO_E_UNAUTHORIZED,
                  req->authorization.ptr ? "unknown API key"
                                         : "missing Authorization: apikey KEY");
        return 0;
    }
    uint64_t wait = api_keys_take(keys, key, now_ms);
    if (wait) {
        snprintf(ans->extra, sizeof(ans->extra), "Retry-After: %llu\r\n",
                 (unsigned long long)((wait + 999) / 1000));
        api_error(ans, 429, PROTO_E_RATE_LIMITED, "rate limit of this API key");
        return 0;
    }
    const char *allow = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(req->path.ptr, routes[i].path) != 0)
            continue;
        allow = routes[i].allow;
        if (req->method != routes[i].method)
            continue;
        return routes[i].fn(srv, req, reply_to, ans);
    }
    if (allow) {
        snprintf(ans->extra, sizeof(ans->extra), "Allow: %s\r\n", allow);
        api_error(ans, 405, PROTO_E_BAD_REQUEST, "method not allowed");
        return 0;
    }
    api_error(ans, 404, PROTO_E_BAD_REQUEST, "no such API route");
    return 0;
}
