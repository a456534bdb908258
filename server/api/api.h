/*
 * The server API's routes (docs/api.md), for both transports: a parsed
 * request in, an answer out. Every call carries "Authorization: apikey
 * KEY" (api/keys.h); errors are JSON {"error":{"code":N,"message":"..."}}
 * with the protocol's error codes (protocol-v1.md) and an HTTP status that
 * says whose fault it is (4xx: the caller's, never 5xx for a caller's
 * mistake). Built so far: keys, rate limits, GET /api/v1/info; the
 * channel routes come with the owner plumbing (docs/http-api-plan.md).
 */
#ifndef HERALD_API_API_H
#define HERALD_API_API_H

#include <herald/proto.h>

#include "api/http1.h"
#include "base/server.h"

typedef struct api_answer {
    int status;
    char extra[128];          /* whole header lines (CRLF each), or "" */
    proto_buf body;           /* JSON */
} api_answer;

/* Answers req (now: every route built so far answers at once). now_ms:
 * the worker loop's clock, for rate limits. */
void api_route(server *srv, const http1_request *req, uint64_t now_ms,
               api_answer *ans);

/* Fills ans with an error: status, protocol code and message. */
void api_error(api_answer *ans, int status, int code, const char *message);

#endif
