/*
 * Internals shared by the codec's source files and by nothing else: the
 * allocation wrappers (one out-of-memory policy: abort), the low-level
 * appenders that the JSON and msgpack writers are built on, the
 * encoding-neutral view of a decoded command map that lets one validator
 * serve both encodings, and the data conversion entry points used while
 * decoding. Symbols here use the `proto__` prefix and are not part of the
 * library's contract.
 */
#ifndef HERALD_PROTO_INTERNAL_H
#define HERALD_PROTO_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <msgpack.h>

#include "herald/proto.h"

/* --- Memory: every allocation of the codec goes through these. ---------- */
void *proto__malloc(size_t n);
void *proto__realloc(void *p, size_t n);
_Noreturn void proto__oom(void);

/* --- proto_buf helpers. -------------------------------------------------- */
/* Makes room for n more payload bytes and returns where they go; the caller
 * then bumps b->len by what it actually wrote. */
char *proto__buf_reserve(proto_buf *b, size_t n);
static inline void proto__buf_byte(proto_buf *b, char c)
{
    if (b->len == b->cap || !b->base)
        proto__buf_reserve(b, 1);
    b->base[b->headroom + b->len++] = c;
}
#define proto__buf_lit(b, s) proto_buf_append((b), (s), sizeof(s) - 1)
void proto__buf_u64(proto_buf *b, uint64_t v);
void proto__buf_i64(proto_buf *b, int64_t v);
/* msgpack_packer write callback appending to the proto_buf in `data`. */
int proto__mp_write(void *data, const char *buf, size_t len);

/* --- JSON text helpers (proto_data.c). ----------------------------------- */
/* Appends s as a quoted JSON string, escaping '"', '\\' and control bytes.
 * The bytes are expected to be UTF-8 already; they are not re-validated. */
void proto__json_str(proto_buf *b, const char *s, size_t n);
/* Appends a double in the shortest of %.15g/%.16g/%.17g that reads back
 * exactly, with ".0" added when it would otherwise look like an integer.
 * `single` selects float32 precision. The value must be finite. */
void proto__json_double(proto_buf *b, double v, int single);
/* Returns 1 if s is well-formed UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF), the same rule jansson applies to JSON text. */
int proto__utf8_valid(const char *s, size_t n);
/* Appends the RFC 4648 base64 (standard alphabet, padded) of p. */
void proto__base64(proto_buf *b, const unsigned char *p, size_t n);
/* json_loadb for text received from a client: the same, except that text
 * holding a NUL byte is refused (jansson 2.14 skips a raw NUL between
 * tokens, so "[1\0,2]" would load as [1,2] and its bytes, passed on as they
 * are, reach subscribers that no other JSON parser reads). */
json_t *proto__json_loadb(const char *s, size_t n, size_t flags,
                          json_error_t *je);

/* --- Errors. ------------------------------------------------------------- */
void proto__err(proto_error *err, uint32_t id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* --- msgpack framing (proto_msgpack.c). ---------------------------------- */
enum {
    PROTO__MP_OK = 0,
    PROTO__MP_TRUNCATED = -1,   /* the object continues past the end */
    PROTO__MP_INVALID = -2,     /* a reserved byte (0xc1) */
    PROTO__MP_TOO_DEEP = -3,    /* more open containers than msgpack-c takes */
    PROTO__MP_TOO_BIG = -4      /* a container count larger than the input */
};
/* Finds the end of the one msgpack object starting at p without building
 * it, checking what msgpack-c would otherwise turn into huge allocations:
 * every container must declare no more elements than bytes remain. */
int proto__mp_scan(const char *p, size_t n, size_t *objlen);
/* Text for a proto__mp_scan() failure. */
const char *proto__mp_scan_text(int rc);
/* NULL if every key of m is a str and no key repeats, else the reason. */
const char *proto__mp_keys_bad(const msgpack_object_map *m);

/* --- Data conversion used by the decoders (proto_data.c). ---------------- */
/* `raw` is the publisher's JSON text of v (already validated by jansson);
 * `id` only goes into *err. Both return PROTO_OK or an error code. */
int proto__data_from_json_value(const char *raw, size_t rawlen,
                                const json_t *v, proto_data *d, void **owned,
                                uint32_t id, proto_error *err);
int proto__data_from_mp_object(const msgpack_object *o, proto_data *d,
                               void **owned, uint32_t id, proto_error *err);

/* --- Encoding-neutral command view (proto_common.c). --------------------- */
typedef enum proto__vtype {
    PROTO__V_NONE = 0,   /* key absent */
    PROTO__V_NULL,
    PROTO__V_BOOL,
    PROTO__V_UINT,       /* non-negative integer in u */
    PROTO__V_NEGINT,     /* negative integer in i */
    PROTO__V_FLOAT,
    PROTO__V_STR,        /* s, n: the string bytes */
    PROTO__V_BIN,
    PROTO__V_ARRAY,
    PROTO__V_MAP,        /* node: the native map, for nested lookups */
    PROTO__V_OTHER
} proto__vtype;

typedef struct proto__val {
    proto__vtype t;
    int b;
    uint64_t u;
    int64_t i;
    const char *s;
    size_t n;
    const void *node;    /* json_t * or msgpack_object * of this value */
} proto__val;

/* What the shared validator needs from one encoding. */
typedef struct proto__map_ops {
    /* Fills *out with the member `key` of the map `node` (PROTO__V_NONE
     * when absent). Maps reaching here have unique string keys. */
    void (*get)(const void *node, const char *key, proto__val *out);
    /* Returns 0 if the map's keys are unique strings, else a reason. JSON
     * maps always pass: jansson already rejected duplicates. */
    const char *(*keys_bad)(const void *node);
    /* Converts the publish `data` member (v) into cmd->data. */
    int (*data)(void *ctx, const proto__val *v, proto_cmd *cmd,
                void **owned, proto_error *err);
} proto__map_ops;

/* Validates the command map `root` and fills *cmd, whose string slices then
 * point into memory owned by the command. Returns 1, or -1 with *err. */
int proto__cmd_from_map(const proto__map_ops *ops, void *ctx,
                        const void *root, proto_cmd *cmd, proto_error *err);

/* JSON whitespace (RFC 8259: space, tab, LF, CR), shared by the command
 * decoder and the client-side message decoder. */
static inline int proto__json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline size_t proto__json_skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && proto__json_ws(s[i]))
        i++;
    return i;
}

/* Per-encoding halves of proto_next(). */
int proto__json_next(proto_reader *r, proto_cmd *cmd, proto_error *err);
int proto__mp_next(proto_reader *r, proto_cmd *cmd, proto_error *err);

#endif
