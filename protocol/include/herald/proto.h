/*
 * Herald protocol v1 codec: parses client commands and builds replies and
 * pushes in both encodings (herald.v1.json and herald.v1.msgpack), with all
 * validation and error-code mapping of ../shared/protocol-v1.md. It does no
 * I/O and keeps no global state, so the server, the C client and the bench
 * share it. Thread-safe: every function works only on what it is given.
 *
 * Publication data is carried in both encodings at once (proto_data): the
 * server converts it once at publish time and every later encode copies the
 * ready bytes, so a push is never re-encoded per subscriber.
 */
#ifndef HERALD_PROTO_H
#define HERALD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum proto_enc {
    PROTO_JSON = 0,    /* herald.v1.json: text frames, '\n' batching */
    PROTO_MSGPACK = 1  /* herald.v1.msgpack: binary frames, concatenation */
} proto_enc;

#define PROTO_SUBPROTO_JSON    "herald.v1.json"
#define PROTO_SUBPROTO_MSGPACK "herald.v1.msgpack"

/* Error codes carried in error.code (protocol-v1.md). */
enum proto_code {
    PROTO_OK = 0,
    PROTO_E_INTERNAL = 100,
    PROTO_E_UNAUTHORIZED = 101,
    PROTO_E_BAD_CHANNEL = 102,
    PROTO_E_PERMISSION = 103,
    PROTO_E_UNKNOWN_OP = 104,
    PROTO_E_ALREADY_SUBSCRIBED = 105,
    PROTO_E_LIMIT = 106,
    PROTO_E_BAD_REQUEST = 107,
    PROTO_E_NOT_AVAILABLE = 108,
    PROTO_E_TOKEN_EXPIRED = 109,
    PROTO_E_RATE_LIMITED = 110,
    PROTO_E_UNRECOVERABLE = 111,
    PROTO_E_TOO_LARGE = 112
};

/* WebSocket close codes (protocol-v1.md). */
enum proto_close {
    PROTO_CLOSE_NORMAL = 1000,
    PROTO_CLOSE_SHUTDOWN = 4000,
    PROTO_CLOSE_SLOW = 4001,
    PROTO_CLOSE_STALE = 4002,
    PROTO_CLOSE_NODE_FAULT = 4003,
    PROTO_CLOSE_BAD_TOKEN = 4100,
    PROTO_CLOSE_PROTOCOL = 4101,
    PROTO_CLOSE_KICKED = 4102,
    PROTO_CLOSE_CONN_LIMIT = 4103
};

typedef enum proto_op {
    PROTO_OP_CONNECT = 1,
    PROTO_OP_SUBSCRIBE,
    PROTO_OP_UNSUBSCRIBE,
    PROTO_OP_PUBLISH,
    PROTO_OP_HISTORY,
    PROTO_OP_PRESENCE,
    PROTO_OP_PING,
    PROTO_OP_REFRESH,            /* v1 addition: replace the connection token */
    PROTO_OP_SUB_REFRESH         /* v1 addition: replace a channel token */
} proto_op;
#define PROTO_OP_LAST PROTO_OP_SUB_REFRESH

/* A byte range; never NUL-terminated unless said so. */
typedef struct proto_slice {
    const char *ptr;
    size_t len;
} proto_slice;

#define PROTO_CHANNEL_MAX 255
#define PROTO_EPOCH_MAX 64
/* Added limits (protocol/README.md, "Limits"). Longer fields are error 107. */
#define PROTO_TOKEN_MAX 8192      /* connect/subscribe `token`, bytes */
#define PROTO_NAME_MAX 256        /* connect `name` and `version`, bytes */
#define PROTO_IDEM_KEY_MAX 64     /* publish `idempotency_key`, bytes */
/* Publication data may nest at most this many arrays/maps (a scalar is 0,
 * [1] is 1). Deeper data is error 107 in both encodings: a pub inside a
 * history reply sits 4 levels down and msgpack-c parsers stop at 32. */
#define PROTO_DATA_DEPTH_MAX 24

/* Publication data in both encodings. `json` is JSON text (byte-exact as
 * the publisher sent it when it published in JSON); `mp` is one msgpack
 * object. `binary` is set when the data is msgpack bin: JSON readers then
 * get a base64 string plus "binary":true beside "data". */
typedef struct proto_data {
    proto_slice json;
    proto_slice mp;
    int binary;
} proto_data;

/* Publisher info of a client publication (`info` in pub pushes) and of a
 * presence/join/leave entry. Empty slices are omitted. */
typedef struct proto_client_info {
    proto_slice client;
    proto_slice user;
    proto_slice conn_info;       /* the connection token's `info`: compact
                                    JSON text of an object, written as
                                    `conn_info` (join/leave, presence; v1
                                    addition); empty: omitted */
} proto_client_info;

/* A decoded command. Slices point into the input frame or into memory
 * owned by the command; both live until proto_cmd_free(). (Currently every
 * slice is owned by the command and NUL-terminated, so the frame may be
 * freed right after proto_next(); unset fields have ptr == NULL.) */
typedef struct proto_cmd {
    uint32_t id;
    proto_op op;
    proto_slice channel;         /* subscribe..presence; validated syntax */
    proto_slice token;           /* connect, subscribe (channel token),
                                    refresh, sub_refresh (required there) */
    proto_slice name;            /* connect */
    proto_slice version;         /* connect */
    int has_since;               /* subscribe, history */
    uint64_t since_offset;
    proto_slice since_epoch;
    int has_limit;               /* history */
    uint32_t limit;
    int reverse;                 /* history */
    proto_data data;             /* publish: both encodings, owned by cmd */
    proto_slice idempotency_key; /* publish, optional: 1..PROTO_IDEM_KEY_MAX
                                    bytes 0x21..0x7e (proto_idem_key_valid) */
    void *_owned;                /* internal: allocations freed with the cmd */
} proto_cmd;

/* Why one command could not be decoded. `id` is 0 when it was not found. */
typedef struct proto_error {
    uint32_t id;
    int code;                    /* enum proto_code */
    char message[128];
} proto_error;

/* Iterates over the commands of one received frame (batched or not). */
typedef struct proto_reader {
    proto_enc enc;
    const char *buf;
    size_t len;
    size_t pos;
} proto_reader;

void proto_reader_init(proto_reader *r, proto_enc enc, const void *buf,
                       size_t len);

/* Decodes the next command. Returns 1 and fills *cmd (release it with
 * proto_cmd_free), 0 at the end of the frame, or -1 with *err filled for a
 * command that is malformed; the reader then moves on to the next command
 * when the framing allows it (JSON: next line) or to the end (msgpack
 * data that cannot be framed). */
int proto_next(proto_reader *r, proto_cmd *cmd, proto_error *err);
void proto_cmd_free(proto_cmd *cmd);

/* Channel names: 1..255 bytes of [A-Za-z0-9_.:@/=#-]. Returns 1 if valid.
 * proto_channel_namespace() gives the part before the first ':' (empty
 * slice when there is none). */
int proto_channel_valid(const char *s, size_t len);
proto_slice proto_channel_namespace(proto_slice channel);

/* Idempotency keys (publish `idempotency_key`): 1..PROTO_IDEM_KEY_MAX
 * printable ASCII bytes without space (0x21..0x7e). Returns 1 if valid. */
int proto_idem_key_valid(const char *s, size_t len);

/* Converts data given in one encoding into both (d->json and d->mp point
 * into *owned, which the caller frees with free()). Returns PROTO_OK or
 * PROTO_E_BAD_REQUEST with a message in err (non-JSON-representable msgpack:
 * non-string map keys, ext, NaN/Inf, invalid UTF-8; invalid JSON). */
int proto_data_from_json(const void *json, size_t len, proto_data *d,
                         void **owned, proto_error *err);
int proto_data_from_msgpack(const void *mp, size_t len, proto_data *d,
                            void **owned, proto_error *err);

/* The raw bytes of the top-level member `key` (its name may be written
 * with escapes) of the JSON object text obj, which the caller has
 * validated (jansson, duplicates refused): 0 with *value, or -1 when
 * there is no such member. The server API takes publication data this
 * way, so subscribers get it exactly as the backend wrote it. */
int proto_json_member(const void *obj, size_t len, const char *key,
                      proto_slice *value);

/* Finds where the one msgpack object at the start of p (n bytes) ends,
 * without building it, and refuses what msgpack-c would turn into a huge
 * allocation before reading a byte of the elements: a container that
 * declares more elements than bytes remain (a 5-byte input can ask for
 * 100 GB), or more than 32 nested containers (msgpack-c's own limit).
 * Returns 0 with *objlen, or -1 (also when truncated or invalid). Call it
 * on msgpack from outside the process before msgpack_unpack_next(). */
int proto_mp_frame(const void *p, size_t n, size_t *objlen);

/* --- Encoding ------------------------------------------------------------
 * Everything is appended to a proto_buf. A buffer may reserve `headroom`
 * bytes in front of the payload (the server uses LWS_PRE) so the payload can
 * be handed to the socket layer without a copy. On allocation failure the
 * process aborts (house rule: one out-of-memory policy). */
typedef struct proto_buf {
    char *base;        /* allocation start */
    size_t headroom;   /* bytes reserved before the payload */
    size_t len;        /* payload length */
    size_t cap;        /* payload capacity */
} proto_buf;

void proto_buf_init(proto_buf *b, size_t headroom);
void proto_buf_reset(proto_buf *b);            /* len = 0, keeps memory */
void proto_buf_free(proto_buf *b);
static inline char *proto_buf_data(const proto_buf *b)
{
    return b->base ? b->base + b->headroom : NULL;
}
void proto_buf_append(proto_buf *b, const void *p, size_t n);
/* Appends the batch separator for enc when len > 0 (JSON: '\n'). */
void proto_buf_sep(proto_buf *b, proto_enc enc);

/* One publication as it appears in pushes, subscribe and history replies. */
typedef struct proto_pub {
    proto_slice channel;
    uint64_t offset;
    proto_slice epoch;
    proto_data data;
    const proto_client_info *info;   /* NULL: no publisher info */
    int64_t time_ms;                 /* 0: omitted */
} proto_pub;

/* Presence entry: client id, user and conn_info (empty ones omitted). */
typedef struct proto_presence_entry {
    proto_slice client;
    proto_slice user;
    proto_slice conn_info;       /* as in proto_client_info */
} proto_presence_entry;

/* Replies. Each appends exactly one message. */
void proto_enc_error(proto_buf *b, proto_enc enc, uint32_t id, int code,
                     const char *message);         /* id 0: no "id" key */
void proto_enc_ok_empty(proto_buf *b, proto_enc enc, uint32_t id);
void proto_enc_ok_connect(proto_buf *b, proto_enc enc, uint32_t id,
                          proto_slice client, proto_slice node,
                          uint32_t ping_s, int64_t expires /* 0: absent */);
/* subscribe: recovered < 0 means "no since given" (key omitted);
 * pubs may be NULL when n == 0 (publications: [] is still written when
 * since was given). */
void proto_enc_ok_subscribe(proto_buf *b, proto_enc enc, uint32_t id,
                            proto_slice epoch, uint64_t offset,
                            int recovered, const proto_pub *pubs, size_t n);
/* refresh and sub_refresh: {"expires": E}, or {} when expires is 0. */
void proto_enc_ok_expires(proto_buf *b, proto_enc enc, uint32_t id,
                          int64_t expires);
void proto_enc_ok_publish(proto_buf *b, proto_enc enc, uint32_t id,
                          uint64_t offset, proto_slice epoch);
/* The same, with "duplicate": true when `duplicate` (an idempotent
 * repeat: offset and epoch are the first publication's). */
void proto_enc_ok_publish_dup(proto_buf *b, proto_enc enc, uint32_t id,
                              uint64_t offset, proto_slice epoch,
                              int duplicate);
void proto_enc_ok_history(proto_buf *b, proto_enc enc, uint32_t id,
                          proto_slice epoch, uint64_t offset,
                          const proto_pub *pubs, size_t n);
void proto_enc_ok_presence(proto_buf *b, proto_enc enc, uint32_t id,
                           const proto_presence_entry *e, size_t n);
/* The result objects of history and presence alone (the "ok" value of the
 * replies above), for the server API's answers. */
void proto_enc_history_result(proto_buf *b, proto_enc enc, proto_slice epoch,
                              uint64_t offset, const proto_pub *pubs,
                              size_t n);
void proto_enc_presence_result(proto_buf *b, proto_enc enc,
                               const proto_presence_entry *e, size_t n);

/* Pushes. */
void proto_enc_push_pub(proto_buf *b, proto_enc enc, const proto_pub *p);
void proto_enc_push_join(proto_buf *b, proto_enc enc, int join,
                         proto_slice channel, const proto_client_info *info);
void proto_enc_push_disconnect(proto_buf *b, proto_enc enc, int code,
                               const char *reason, int reconnect);
/* v1 addition: the server ended one subscription (code 109: its channel
 * token expired without a sub_refresh); the connection stays open. */
void proto_enc_push_unsubscribe(proto_buf *b, proto_enc enc,
                                proto_slice channel, int code,
                                const char *reason);

/* Client side (C client, bench, tests): build commands. Not needed by the
 * server. `data` is given in the command's encoding (JSON text for JSON,
 * one msgpack object for msgpack). Slices with ptr == NULL are not written;
 * since/limit only with has_since/has_limit, reverse only when true. */
typedef struct proto_cmd_out {
    uint32_t id;
    proto_op op;
    proto_slice channel, token, name, version;
    int has_since;
    uint64_t since_offset;
    proto_slice since_epoch;
    int has_limit;
    uint32_t limit;
    int reverse;
    proto_slice data;
} proto_cmd_out;
void proto_enc_cmd(proto_buf *b, proto_enc enc, const proto_cmd_out *c);

const char *proto_op_name(proto_op op);
const char *proto_code_text(int code);   /* short default message */

#ifdef __cplusplus
}
#endif
#endif
