/*
 * The server API's routes (docs/api.md), for both transports: a parsed
 * request in, an answer out. Every call carries "Authorization: apikey
 * KEY" (api/keys.h); errors are JSON {"error":{"code":N,"message":"..."}}
 * with the protocol's error codes (protocol-v1.md) and an HTTP status that
 * says whose fault it is (4xx: the caller's, never 5xx for a caller's
 * mistake). A channel route becomes the same typed request a client's
 * command makes (core/requests.h), checked by the same rules
 * (core/rules.h, as a backend: client-only rules do not apply), its reply
 * routed back to the API call. Built so far: keys, rate limits, GET
 * /api/v1/info, POST /api/v1/publish (docs/http-api-plan.md). GET
 * /metrics (metrics/expo.h) is answered here too, outside /api/v1 and its
 * keys (metrics_key, when set, is its own).
 */
#ifndef HERALD_API_API_H
#define HERALD_API_API_H

#include <herald/proto.h>

#include "api/http1.h"
#include "base/server.h"
#include "core/requests.h"

typedef struct api_answer {
    int status;
    char extra[128];          /* whole header lines (CRLF each), or "" */
    const char *content_type; /* NULL: application/json */
    proto_buf body;           /* JSON, or what content_type says */
} api_answer;

/* Answers req now (returns 0, ans filled), or sends a request to a
 * channel's owner whose reply comes back to reply_to (returns 1; the
 * transport answers it with api_reply). now_ms: the worker loop's clock,
 * for rate limits. */
int api_route(server *srv, const http1_request *req, uint64_t now_ms,
              const route *reply_to, api_answer *ans);

/* The answer to an owner's reply (requests_for_api). */
void api_reply(const msg *m, api_answer *ans);

/* Fills ans with an error: status, protocol code and message. */
void api_error(api_answer *ans, int status, int code, const char *message);

#endif
