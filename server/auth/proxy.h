/*
 * Proxy mode: connect, subscribe and publish decided by the backend over
 * HTTP (docs/proxy.md). A worker posts a call (the JSON body it built) and
 * goes on; a thread of the proxy's own sends it with libcurl's multi
 * interface (never on a loop thread), bounded by proxy_timeout_ms, and
 * posts the answer back to the worker's mailbox as a proxy_answer. Calls
 * are bounded (proxy_max_pending): over it a call fails at once. Nothing
 * is cached: every command asks again.
 */
#ifndef HERALD_AUTH_PROXY_H
#define HERALD_AUTH_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/mailbox.h"

struct server;

enum proxy_op { PROXY_CONNECT, PROXY_SUBSCRIBE, PROXY_PUBLISH, PROXY_REFRESH,
                PROXY_N_OPS };

enum proxy_outcome {
    PROXY_ALLOW = 1,         /* {"result": {...}} */
    PROXY_DENY,              /* {"error": {"code", "message"}} */
    PROXY_FAILED,            /* no usable answer: timeout, status, body */
};

/* Where an answer goes and what it says. One allocation: the strings
 * follow the struct. */
typedef struct proxy_answer {
    msg hdr;
    uint16_t worker;
    uint32_t slot, gen;      /* the connection */
    uint32_t cmd_id;
    uint8_t op;              /* enum proxy_op */
    uint8_t outcome;         /* enum proxy_outcome */
    int code;                /* DENY: the client's error code (100..112) */
    char message[128];       /* DENY: its message; FAILED: why (for logs) */
    /* ALLOW: */
    const char *user;        /* connect: NUL-terminated; NULL = absent */
    int64_t expire_at;       /* connect, subscribe, refresh: 0 = none */
    const char *info;        /* connect: compact JSON object, or NULL */
    uint32_t n_channels;     /* connect: grants */
    const char **channels;
    _Alignas(8) char data[];
} proxy_answer;

typedef struct proxy proxy;

/* NULL when no proxy URL is configured (err empty), or on failure (err
 * set). msg_type: the receiving worker's message type for answers. */
proxy *proxy_start(const config *cfg, struct server *srv, uint8_t msg_type,
                   char *err, size_t errlen);
void proxy_stop(proxy *p);
/* Whether op has a URL. */
int proxy_has(const proxy *p, enum proxy_op op);
/* Queues a call with body (JSON, copied). 0, or -1 when proxy_max_pending
 * calls are waiting (nothing is queued then). */
int proxy_call(proxy *p, enum proxy_op op, uint16_t worker, uint32_t slot,
               uint32_t gen, uint32_t cmd_id, const char *body, size_t len);

/* Parses a backend's answer body (HTTP 2xx) into a proxy_answer for op
 * (allocated; free with free()); pure, for the unit tests too. */
proxy_answer *proxy_parse(enum proxy_op op, const char *body, size_t len);

#endif
