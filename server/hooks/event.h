/*
 * Webhook events as the backend sees them (docs/webhooks.md): the JSON
 * body of one event, its id, and the signature of a POST. Pure logic on
 * OpenSSL, no I/O, so the unit tests reach it without a server.
 */
#ifndef HERALD_HOOKS_EVENT_H
#define HERALD_HOOKS_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include <herald/proto.h>

#include "base/config.h"

/* What happened, as the emitter knows it. Slices need only live for the
 * call that takes the event (the body is built there). */
typedef struct hook_event {
    int type;                   /* enum config_hook_event */
    proto_slice client, user;   /* connect, disconnect, (un)subscribe */
    proto_slice channel;        /* every event but connect/disconnect */
    int code;                   /* disconnect: the close code (0: none) */
    const char *reason;         /* unsubscribe: "client", "server",
                                   "disconnect" */
    proto_slice info;           /* connect: the token's info (JSON) */
    const proto_pub *pub;       /* publication */
} hook_event;

/* Characters of an event id: 32 hex digits (128 random bits). */
#define HOOK_ID_LEN 32
/* Characters of a Herald-Signature value's v1: hex HMAC-SHA256. */
#define HOOK_SIG_HEX 64

/* A new random event id (NUL-terminated). */
void hook_event_id(char out[HOOK_ID_LEN + 1]);

/* Appends the event's JSON body to b: {"id":..,"event":..,"time":..,
 * "node":.., and the event's own fields}. */
void hook_event_json(proto_buf *b, const hook_event *ev, const char *id,
                     int64_t time_ms, const char *node);

/* The key that orders ev among the others (docs/webhooks.md, ordering):
 * the client id for connect/disconnect, else the channel. */
proto_slice hook_event_key(const hook_event *ev);

/* hex HMAC-SHA256 of "<t>.<body>" with the secret (NUL-terminated). */
void hook_sign(const char *secret, size_t secret_len, int64_t t,
               const char *body, size_t len, char out[HOOK_SIG_HEX + 1]);

/* The Herald-Signature header line ("Herald-Signature: t=..,v1=..")
 * for a POST of body at time t (Unix seconds); returns its length. */
size_t hook_signature_header(char *out, size_t cap, const char *secret,
                             int64_t t, const char *body, size_t len);

#endif
