/*
 * Herald protocol v1, client side: decoding of server messages (replies and
 * pushes) in both encodings, for the C client library, the bench and tests.
 * Commands are built with proto_enc_cmd() in herald/proto.h.
 *
 * The decoder does no I/O and allocates almost nothing: every field is a
 * slice into the received frame. Publication `data` is handed out as the
 * raw bytes of the value in the frame's encoding (JSON text, or one msgpack
 * object), so a client can pass it on without re-encoding. Only JSON strings
 * that contain escapes are unescaped into memory owned by the reader.
 * Slices stay valid until the next proto_snext() on the same reader (and
 * while the frame itself lives). Like the rest of the codec it keeps no
 * global state; a reader belongs to one thread.
 *
 * Framing follows protocol/README.md: a JSON frame holds one message per
 * '\n'-separated line ('\r' before '\n' and a trailing '\n' tolerated); a
 * msgpack frame is a concatenation of objects. Decoding is strict about
 * syntax (the JSON is validated, msgpack framing is checked before it is
 * trusted) but tolerant of content: unknown keys are ignored and unknown
 * push kinds are reported as PROTO_SMSG_OTHER so later protocol versions do
 * not break old clients.
 */
#ifndef HERALD_PROTO_CLIENT_H
#define HERALD_PROTO_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "herald/proto.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum proto_smsg_kind {
    PROTO_SMSG_OK = 1,       /* {"id":N,"ok":{...}} */
    PROTO_SMSG_ERROR,        /* {"id":N,"error":{code,message}}; id may be 0 */
    PROTO_SMSG_PUB,          /* push "pub" */
    PROTO_SMSG_JOIN,         /* push "join" */
    PROTO_SMSG_LEAVE,        /* push "leave" */
    PROTO_SMSG_DISCONNECT,   /* push "disconnect" */
    PROTO_SMSG_UNSUBSCRIBE,  /* push "unsubscribe" (v1 addition) */
    PROTO_SMSG_OTHER         /* a push kind this decoder does not know */
} proto_smsg_kind;

/* One publication, from a pub push or from a subscribe/history reply. */
typedef struct proto_spub {
    proto_slice channel;
    uint64_t offset;
    proto_slice epoch;
    proto_slice data;        /* raw value in the message's encoding */
    int binary;              /* JSON only: data is base64 of msgpack bin */
    int has_info;
    proto_client_info info;  /* publisher (empty slices when absent) */
    int64_t time_ms;         /* 0 when absent */
} proto_spub;

/* One decoded server message. Fields not carried by the message are zero
 * (slices with ptr == NULL), except `recovered`, which is -1 when absent. */
typedef struct proto_smsg {
    proto_smsg_kind kind;
    proto_slice raw;         /* the whole message */
    uint32_t id;             /* replies; 0 when the error carries no id */

    /* PROTO_SMSG_ERROR: code and message. PROTO_SMSG_DISCONNECT: code,
     * reason in `message`, and `reconnect`. PROTO_SMSG_UNSUBSCRIBE: code,
     * reason in `message`, the channel in pub.channel. */
    int code;
    proto_slice message;
    int reconnect;

    /* PROTO_SMSG_OK: the raw ok map and the fields Herald replies carry. */
    proto_slice ok;
    proto_slice client, node;          /* connect */
    uint32_t ping;                     /* connect (seconds) */
    int64_t expires;                   /* connect, refresh, sub_refresh
                                          (0: absent) */
    int has_offset;
    uint64_t offset;                   /* subscribe, publish, history */
    int has_epoch;
    proto_slice epoch;
    int recovered;                     /* subscribe: -1 absent, 0, 1 */
    int has_pubs;
    proto_slice pubs;                  /* raw array: proto_siter_pubs() */
    int has_clients;
    proto_slice clients;               /* raw map: proto_siter_clients() */

    /* PROTO_SMSG_PUB: the publication. JOIN/LEAVE: pub.channel and
     * pub.info. OTHER: the push kind in `push`. */
    proto_slice push;
    proto_spub pub;
} proto_smsg;

/* Walks the messages of received frames. Reuse one reader per connection:
 * it keeps the memory used for unescaped strings between frames. */
typedef struct proto_sreader {
    proto_enc enc;
    const char *buf;
    size_t len;
    size_t pos;
    void *_chunks;           /* internal: unescaped strings */
} proto_sreader;

void proto_sreader_init(proto_sreader *r, proto_enc enc);
/* Starts on a new frame (the previous frame's slices become invalid). */
void proto_sreader_frame(proto_sreader *r, const void *buf, size_t len);
void proto_sreader_free(proto_sreader *r);

/* Decodes the next message of the frame. Returns 1 with *m filled, 0 at the
 * end of the frame, or -1 for a message that is malformed (err->message
 * says why; err->code is PROTO_E_BAD_REQUEST). After -1 the reader moves on
 * to the next line (JSON) or drops the rest of the frame (msgpack that
 * cannot be framed), like the server's command reader. */
int proto_snext(proto_sreader *r, proto_smsg *m, proto_error *err);

/* Iterates over a reply's `publications` array or `clients` map. */
typedef struct proto_siter {
    proto_sreader *r;
    const char *p;
    size_t n, pos;
    uint64_t left;           /* msgpack: elements left */
    int kind;                /* internal */
} proto_siter;

/* Start iterating; return the number of elements (-1 if `src` is not an
 * array / map). */
long proto_siter_pubs(proto_siter *it, proto_sreader *r, proto_slice array);
long proto_siter_clients(proto_siter *it, proto_sreader *r, proto_slice map);
/* 1 with the next element, 0 at the end, -1 on a malformed element. */
int proto_siter_next_pub(proto_siter *it, proto_spub *pub, proto_error *err);
int proto_siter_next_client(proto_siter *it, proto_presence_entry *e,
                            proto_error *err);

/* Appends data (as carried in a message of encoding enc) to out as JSON
 * text: JSON is copied as is; msgpack is converted like the server converts
 * it for JSON subscribers (bin becomes a base64 string). Returns PROTO_OK or
 * PROTO_E_BAD_REQUEST with err filled (msgpack JSON cannot represent). */
int proto_data_to_json(proto_enc enc, proto_slice data, proto_buf *out,
                       proto_error *err);

#ifdef __cplusplus
}
#endif
#endif
