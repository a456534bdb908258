/*
 * The encoding-neutral half of command decoding: the reader that walks a
 * frame, the one validator that checks a command map for both encodings
 * (so JSON and msgpack clients get the same error for the same mistake),
 * ownership of decoded commands, and the op and error-code tables.
 *
 * Validation order, which decides the code when a command has several
 * problems: id (107, reported with id 0), key sanity (107), op (107 when
 * missing or not a string, 104 when unknown), then the op's fields in the
 * order of protocol-v1.md's table: channel (107 missing or not a string,
 * 102 bad name), token, name, version, since, limit, reverse, data,
 * idempotency_key. Keys an
 * op does not use are ignored, whatever their type, so clients may add
 * fields (forward compatibility). An optional field set to null counts as
 * absent; a required one (id, op, channel) set to null is missing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

/* What a decoded command owns: the publish data block and copies of its
 * strings, each NUL-terminated so they can also be used as C strings. */
typedef struct cmd_owned {
    void *data;
    char strs[];
} cmd_owned;

void proto__err(proto_error *err, uint32_t id, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    err->id = id;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    /* Messages quote client input (jansson's "near '...'") and may be cut
     * mid-character; keep them printable ASCII so the error reply is always
     * valid UTF-8 (browsers drop a connection over a bad text frame). */
    for (char *p = err->message; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

void proto_reader_init(proto_reader *r, proto_enc enc, const void *buf,
                       size_t len)
{
    r->enc = enc;
    r->buf = buf;
    r->len = buf ? len : 0;
    r->pos = 0;
}

int proto_next(proto_reader *r, proto_cmd *cmd, proto_error *err)
{
    memset(cmd, 0, sizeof(*cmd));
    if (err) {
        err->id = 0;
        err->code = PROTO_OK;
        err->message[0] = '\0';
    }
    if (r->pos >= r->len)
        return 0;
    return r->enc == PROTO_MSGPACK ? proto__mp_next(r, cmd, err)
                                   : proto__json_next(r, cmd, err);
}

void proto_cmd_free(proto_cmd *cmd)
{
    cmd_owned *o = cmd->_owned;

    if (o) {
        free(o->data);
        free(o);
    }
    memset(cmd, 0, sizeof(*cmd));
}

static const char *const op_names[] = {
    [PROTO_OP_CONNECT] = "connect",
    [PROTO_OP_SUBSCRIBE] = "subscribe",
    [PROTO_OP_UNSUBSCRIBE] = "unsubscribe",
    [PROTO_OP_PUBLISH] = "publish",
    [PROTO_OP_HISTORY] = "history",
    [PROTO_OP_PRESENCE] = "presence",
    [PROTO_OP_PING] = "ping",
    [PROTO_OP_REFRESH] = "refresh",
    [PROTO_OP_SUB_REFRESH] = "sub_refresh",
};

const char *proto_op_name(proto_op op)
{
    if ((int)op < PROTO_OP_CONNECT || op > PROTO_OP_LAST)
        return "unknown";
    return op_names[op];
}

const char *proto_code_text(int code)
{
    switch (code) {
    case PROTO_OK: return "ok";
    case PROTO_E_INTERNAL: return "internal error";
    case PROTO_E_UNAUTHORIZED: return "unauthorized";
    case PROTO_E_BAD_CHANNEL: return "bad channel name or unknown namespace";
    case PROTO_E_PERMISSION: return "permission denied";
    case PROTO_E_UNKNOWN_OP: return "unknown op";
    case PROTO_E_ALREADY_SUBSCRIBED: return "already subscribed";
    case PROTO_E_LIMIT: return "limit exceeded";
    case PROTO_E_BAD_REQUEST: return "bad request";
    case PROTO_E_NOT_AVAILABLE: return "not available";
    case PROTO_E_TOKEN_EXPIRED: return "token expired";
    case PROTO_E_RATE_LIMITED: return "too many requests";
    case PROTO_E_UNRECOVERABLE: return "unrecoverable position";
    case PROTO_E_TOO_LARGE: return "message too large";
    }
    return "error";
}

/* --- Field validation ---------------------------------------------------- */

/* Optional fields treat null as absent. */
static int absent(const proto__val *v)
{
    return v->t == PROTO__V_NONE || v->t == PROTO__V_NULL;
}

/* A string field `key` (called `label` in messages): a string of at most
 * max bytes, valid UTF-8 (msgpack str is not checked by the unpacker) and
 * free of NUL bytes (the server hands tokens to C APIs). Returns 0, or -1
 * with *err set. */
static int str_field_as(const proto__map_ops *ops, const void *node,
                        const char *key, const char *label, int required,
                        size_t max, proto_slice *out, uint32_t id,
                        proto_error *err)
{
    proto__val v;

    ops->get(node, key, &v);
    if (absent(&v)) {
        if (!required)
            return 0;
        proto__err(err, id, PROTO_E_BAD_REQUEST, "missing %s", label);
        return -1;
    }
    if (v.t != PROTO__V_STR) {
        proto__err(err, id, PROTO_E_BAD_REQUEST, "%s must be a string", label);
        return -1;
    }
    if (v.n > max) {
        proto__err(err, id, PROTO_E_BAD_REQUEST,
                   "%s longer than %zu bytes", label, max);
        return -1;
    }
    if (memchr(v.s, '\0', v.n) || !proto__utf8_valid(v.s, v.n)) {
        proto__err(err, id, PROTO_E_BAD_REQUEST,
                   "%s must be UTF-8 without NUL", label);
        return -1;
    }
    out->ptr = v.s ? v.s : "";
    out->len = v.n;
    return 0;
}

static int str_field(const proto__map_ops *ops, const void *node,
                     const char *key, int required, size_t max,
                     proto_slice *out, uint32_t id, proto_error *err)
{
    return str_field_as(ops, node, key, key, required, max, out, id, err);
}

static int since_field(const proto__map_ops *ops, const void *node,
                       proto_cmd *cmd, proto_error *err)
{
    proto__val v, off;

    ops->get(node, "since", &v);
    if (absent(&v))
        return 0;
    if (v.t != PROTO__V_MAP || ops->keys_bad(v.node)) {
        proto__err(err, cmd->id, PROTO_E_BAD_REQUEST,
                   "since must be a map {offset, epoch}");
        return -1;
    }
    ops->get(v.node, "offset", &off);
    if (off.t != PROTO__V_UINT) {
        proto__err(err, cmd->id, PROTO_E_BAD_REQUEST,
                   "since.offset must be a non-negative integer");
        return -1;
    }
    if (str_field_as(ops, v.node, "epoch", "since.epoch", 1, PROTO_EPOCH_MAX,
                     &cmd->since_epoch, cmd->id, err) < 0)
        return -1;
    cmd->has_since = 1;
    cmd->since_offset = off.u;
    return 0;
}

static int limit_field(const proto__map_ops *ops, const void *node,
                       proto_cmd *cmd, proto_error *err)
{
    proto__val v;

    ops->get(node, "limit", &v);
    if (absent(&v))
        return 0;
    if (v.t != PROTO__V_UINT || v.u > UINT32_MAX) {
        proto__err(err, cmd->id, PROTO_E_BAD_REQUEST,
                   "limit must be an integer in 0..4294967295");
        return -1;
    }
    cmd->has_limit = 1;
    cmd->limit = (uint32_t)v.u;
    return 0;
}

static int reverse_field(const proto__map_ops *ops, const void *node,
                         proto_cmd *cmd, proto_error *err)
{
    proto__val v;

    ops->get(node, "reverse", &v);
    if (absent(&v))
        return 0;
    if (v.t != PROTO__V_BOOL) {
        proto__err(err, cmd->id, PROTO_E_BAD_REQUEST,
                   "reverse must be a boolean");
        return -1;
    }
    cmd->reverse = v.b;
    return 0;
}

/* publish's optional idempotency_key (protocol/README.md): a string of
 * 1..64 printable ASCII bytes. */
static int idem_key_field(const proto__map_ops *ops, const void *node,
                          proto_cmd *cmd, proto_error *err)
{
    proto__val v;

    ops->get(node, "idempotency_key", &v);
    if (absent(&v))
        return 0;
    if (v.t != PROTO__V_STR || !proto_idem_key_valid(v.s, v.n)) {
        proto__err(err, cmd->id, PROTO_E_BAD_REQUEST,
                   "idempotency_key must be a string of 1..%d printable "
                   "ASCII characters (no space)", PROTO_IDEM_KEY_MAX);
        return -1;
    }
    cmd->idempotency_key.ptr = v.s;
    cmd->idempotency_key.len = v.n;
    return 0;
}

static int channel_field(const proto__map_ops *ops, const void *node,
                         proto_cmd *cmd, proto_error *err)
{
    proto__val v;

    ops->get(node, "channel", &v);
    if (v.t != PROTO__V_STR) {
        proto__err(err, cmd->id, PROTO_E_BAD_REQUEST,
                   absent(&v) ? "missing channel"
                              : "channel must be a string");
        return -1;
    }
    /* Length, NUL and non-ASCII bytes are all a bad name (102), not 107. */
    if (!proto_channel_valid(v.s, v.n)) {
        proto__err(err, cmd->id, PROTO_E_BAD_CHANNEL,
                   "invalid channel name");
        return -1;
    }
    cmd->channel.ptr = v.s;
    cmd->channel.len = v.n;
    return 0;
}

static int parse_op(const proto__val *v, proto_op *op)
{
    for (int i = PROTO_OP_CONNECT; i <= PROTO_OP_LAST; i++) {
        size_t n = strlen(op_names[i]);
        if (v->n == n && memcmp(v->s, op_names[i], n) == 0) {
            *op = (proto_op)i;
            return 0;
        }
    }
    return -1;
}

/* Moves every string slice of cmd into one block owned by the command, so
 * the command outlives the frame and the parser's memory. */
static void cmd_own(proto_cmd *cmd, void *data_owned)
{
    proto_slice *f[] = { &cmd->channel, &cmd->token, &cmd->name,
                         &cmd->version, &cmd->since_epoch,
                         &cmd->idempotency_key };
    size_t total = 0, at = 0;
    cmd_owned *o;

    for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++)
        if (f[k]->ptr)
            total += f[k]->len + 1;
    o = proto__malloc(sizeof(*o) + total);
    o->data = data_owned;
    for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++) {
        if (!f[k]->ptr)
            continue;
        memcpy(o->strs + at, f[k]->ptr, f[k]->len);
        o->strs[at + f[k]->len] = '\0';
        f[k]->ptr = o->strs + at;
        at += f[k]->len + 1;
    }
    cmd->_owned = o;
}

int proto__cmd_from_map(const proto__map_ops *ops, void *ctx,
                        const void *root, proto_cmd *cmd, proto_error *err)
{
    proto__val v;
    const char *bad;
    void *data_owned = NULL;

    memset(cmd, 0, sizeof(*cmd));
    ops->get(root, "id", &v);
    if (v.t != PROTO__V_UINT || v.u == 0 || v.u > UINT32_MAX) {
        proto__err(err, 0, PROTO_E_BAD_REQUEST,
                   v.t == PROTO__V_NONE ? "missing id"
                   : "id must be an integer in 1..4294967295");
        return -1;
    }
    cmd->id = (uint32_t)v.u;
    if ((bad = ops->keys_bad(root)) != NULL) {
        proto__err(err, cmd->id, PROTO_E_BAD_REQUEST, "%s", bad);
        goto fail;
    }
    ops->get(root, "op", &v);
    if (v.t != PROTO__V_STR) {
        proto__err(err, cmd->id, PROTO_E_BAD_REQUEST,
                   absent(&v) ? "missing op" : "op must be a string");
        goto fail;
    }
    if (parse_op(&v, &cmd->op) < 0) {
        proto__err(err, cmd->id, PROTO_E_UNKNOWN_OP, "unknown op");
        goto fail;
    }

    switch (cmd->op) {
    case PROTO_OP_CONNECT:
        if (str_field(ops, root, "token", 0, PROTO_TOKEN_MAX, &cmd->token,
                      cmd->id, err) < 0 ||
            str_field(ops, root, "name", 0, PROTO_NAME_MAX, &cmd->name,
                      cmd->id, err) < 0 ||
            str_field(ops, root, "version", 0, PROTO_NAME_MAX, &cmd->version,
                      cmd->id, err) < 0)
            goto fail;
        break;
    case PROTO_OP_SUBSCRIBE:
        if (channel_field(ops, root, cmd, err) < 0 ||
            str_field(ops, root, "token", 0, PROTO_TOKEN_MAX, &cmd->token,
                      cmd->id, err) < 0 ||
            since_field(ops, root, cmd, err) < 0)
            goto fail;
        break;
    case PROTO_OP_UNSUBSCRIBE:
    case PROTO_OP_PRESENCE:
        if (channel_field(ops, root, cmd, err) < 0)
            goto fail;
        break;
    case PROTO_OP_PUBLISH:
        if (channel_field(ops, root, cmd, err) < 0)
            goto fail;
        ops->get(root, "data", &v);
        if (v.t == PROTO__V_NONE) {
            /* null is data like any other value; only absence is wrong. */
            proto__err(err, cmd->id, PROTO_E_BAD_REQUEST, "missing data");
            goto fail;
        }
        if (ops->data(ctx, &v, cmd, &data_owned, err) < 0 ||
            idem_key_field(ops, root, cmd, err) < 0)
            goto fail;
        break;
    case PROTO_OP_HISTORY:
        if (channel_field(ops, root, cmd, err) < 0 ||
            since_field(ops, root, cmd, err) < 0 ||
            limit_field(ops, root, cmd, err) < 0 ||
            reverse_field(ops, root, cmd, err) < 0)
            goto fail;
        break;
    case PROTO_OP_PING:
        break;
    case PROTO_OP_REFRESH:
        if (str_field(ops, root, "token", 1, PROTO_TOKEN_MAX, &cmd->token,
                      cmd->id, err) < 0)
            goto fail;
        break;
    case PROTO_OP_SUB_REFRESH:
        if (channel_field(ops, root, cmd, err) < 0 ||
            str_field(ops, root, "token", 1, PROTO_TOKEN_MAX, &cmd->token,
                      cmd->id, err) < 0)
            goto fail;
        break;
    }
    cmd_own(cmd, data_owned);
    return 1;

fail:
    free(data_owned);
    memset(cmd, 0, sizeof(*cmd));
    return -1;
}
