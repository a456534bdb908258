/*
 * The server API's routes (docs/api.md), for both transports: a parsed
 * request in, an answer out. Every call carries "Authorization: apikey
 * KEY" (api/keys.h); errors are JSON {"error":{"code":N,"message":"..."}}
 * with the protocol's error codes (protocol-v1.md) and an HTTP status that
 * says whose fault it is (4xx: the caller's, never 5xx for a caller's
 * mistake). A channel route becomes the same typed request a client's
 * command makes (core/requests.h), checked by the same rules
 * (core/rules.h, as a backend: client-only rules do not apply), its reply
 * routed back to the API call (docs/api-design.md). GET /metrics (metrics/expo.h) is answered here too, outside /api/v1 and its
 * keys (metrics_key, when set, is its own).
 */
#ifndef HERALD_API_API_H
#define HERALD_API_API_H

#include <jansson.h>

#include <herald/proto.h>

#include "api/answer.h"
#include "api/http1.h"
#include "base/server.h"
#include "core/requests.h"


/* A call waiting for owners' replies (one, or one per channel of a
 * broadcast). */
typedef struct api_call api_call;

/* Answers req now (returns 0, ans filled), or sends requests to channels'
 * owners whose replies come back to reply_to (route.seq tells the parts of
 * a call apart) and returns how many to wait for, with *call: the
 * transport gives each reply to api_call_take, then has the answer made
 * by api_call_answer. In cluster mode channels, disconnect and info ask
 * every worker of every node through b (the worker's broker): the answers
 * go to api_call_take_answer, and api_call_sent tells how many to wait
 * for. now_ms: the worker loop's clock, for rate limits. */
struct broker;

int api_route(server *srv, struct broker *b, const http1_request *req,
              uint64_t now_ms, const route *reply_to, api_answer *ans,
              api_call **call);

/* Before a body the client waits to send (Expect: 100-continue): 0 when
 * the key is good, else -1 with the answer (401, or 503 without keys),
 * so a bad key never costs the body. */
int api_expect(server *srv, const http1_request *head, api_answer *ans);

/* One reply of the call (m stays the caller's, though what it holds may
 * be taken): 1 when it was the last. */
int api_call_take(api_call *call, msg *m);
/* The call's answer; timed_out: api_timeout_ms passed first (a single
 * request answers 504, a broadcast what it has, the rest as 108). */
void api_call_answer(api_call *call, api_answer *ans, int timed_out);
void api_call_free(api_call *call);

/* Cluster mode: an answer to an ask, parsed, with the call it is for
 * (its route, on worker `worker`); NULL when it is not readable. */
json_t *api_call_answer_parse(const char *body, size_t len, uint16_t worker,
                              route *to);
/* Takes a parsed answer: 1 when the call has every answer. */
int api_call_take_answer(api_call *call, json_t *answer);
/* The ask reached `receivers` workers (-1: not sent): 1 when the call
 * has every answer (or failed) and can be answered. */
int api_call_sent(api_call *call, long receivers);

#endif
