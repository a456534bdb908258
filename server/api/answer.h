/*
 * The answer to a server API call as the routes make it: a status, extra
 * header lines and a JSON body; errors are {"error":{"code":N,"message":
 * "..."}} with the protocol's error codes (protocol-v1.md).
 */
#ifndef HERALD_API_ANSWER_H
#define HERALD_API_ANSWER_H

#include <jansson.h>

#include <herald/proto.h>

typedef struct api_answer {
    int status;
    char extra[128];          /* whole header lines (CRLF each), or "" */
    const char *content_type; /* NULL: application/json */
    proto_buf body;           /* JSON, or what content_type says */
} api_answer;

/* Fills ans with an error: status, protocol code and message. */
void api_error(api_answer *ans, int status, int code, const char *message);

/* Fills ans with status and doc (taken) as compact JSON. */
void api_answer_json(api_answer *ans, int status, json_t *doc);

#endif
