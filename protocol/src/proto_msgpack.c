/*
 * Decoding of herald.v1.msgpack commands. A binary frame is a concatenation
 * of msgpack objects, one command each. Before msgpack-c builds an object we
 * walk its bytes once (proto__mp_scan): that finds where the object ends
 * without trusting the unpacker's error paths, and refuses containers that
 * declare more elements than there are bytes, which msgpack-c would
 * otherwise try to allocate up front (a 5-byte frame could ask for 100 GB).
 * When an object cannot be framed the rest of the frame is dropped, since
 * there is no way to find where the next command starts.
 */
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

/* msgpack-c's parser stack (MSGPACK_EMBED_STACK_SIZE in its private
 * unpack_define.h, compiled into the library): it cannot unpack more
 * nested non-empty containers than this. */
#define MP_PARSER_STACK 32

/* Reads an n-byte big-endian length at s[*i], bounds-checked. */
static int read_be(const unsigned char *s, size_t len, size_t *i, int n,
                   uint64_t *out)
{
    uint64_t v = 0;

    if (len - *i < (size_t)n)
        return -1;
    for (int k = 0; k < n; k++)
        v = v << 8 | s[*i + (size_t)k];
    *i += (size_t)n;
    *out = v;
    return 0;
}

int proto__mp_scan(const char *p, size_t n, size_t *objlen)
{
    const unsigned char *s = (const unsigned char *)p;
    /* Elements still expected by each open non-empty container. */
    uint64_t left[MP_PARSER_STACK];
    int top = 0;
    size_t i = 0;

    for (;;) {
        uint64_t skip = 0, items = 0, len;
        int container = 0, lenbytes = 0;
        unsigned char c;

        if (i >= n)
            return PROTO__MP_TRUNCATED;
        c = s[i++];
        if (c <= 0x7f || c >= 0xe0) {
            /* positive/negative fixint */
        } else if (c <= 0x8f) {
            container = 1;
            items = 2u * (c & 0x0f);
        } else if (c <= 0x9f) {
            container = 1;
            items = c & 0x0f;
        } else if (c <= 0xbf) {
            skip = c & 0x1f;
        } else {
            switch (c) {
            case 0xc0: case 0xc2: case 0xc3:
                break;
            case 0xc1:
                return PROTO__MP_INVALID;
            case 0xc4: case 0xd9: lenbytes = 1; break;         /* bin8, str8 */
            case 0xc5: case 0xda: lenbytes = 2; break;
            case 0xc6: case 0xdb: lenbytes = 4; break;
            case 0xc7: lenbytes = 1; skip = 1; break;          /* ext8 + type */
            case 0xc8: lenbytes = 2; skip = 1; break;
            case 0xc9: lenbytes = 4; skip = 1; break;
            case 0xca: skip = 4; break;
            case 0xcb: skip = 8; break;
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: skip = 4; break;
            case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;                        /* fixext */
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: container = 1; lenbytes = 2; break;     /* array */
            case 0xdd: container = 1; lenbytes = 4; break;
            case 0xde: container = 2; lenbytes = 2; break;     /* map */
            case 0xdf: container = 2; lenbytes = 4; break;
            }
            if (lenbytes) {
                if (read_be(s, n, &i, lenbytes, &len) < 0)
                    return PROTO__MP_TRUNCATED;
                if (container)
                    items = len * (uint64_t)container;
                else
                    skip += len;
            }
        }
        if (skip > n - i)
            return PROTO__MP_TRUNCATED;
        i += skip;
        if (container && items > 0) {
            /* Every element takes at least one byte. */
            if (items > n - i)
                return PROTO__MP_TOO_BIG;
            if (top == MP_PARSER_STACK)
                return PROTO__MP_TOO_DEEP;
            left[top++] = items;
            continue;
        }
        /* One element is complete; close every container it completes. */
        while (top > 0 && --left[top - 1] == 0)
            top--;
        if (top == 0) {
            *objlen = i;
            return PROTO__MP_OK;
        }
    }
}

int proto_mp_frame(const void *p, size_t n, size_t *objlen)
{
    return p && proto__mp_scan(p, n, objlen) == PROTO__MP_OK ? 0 : -1;
}

const char *proto__mp_scan_text(int rc)
{
    switch (rc) {
    case PROTO__MP_TRUNCATED: return "truncated msgpack";
    case PROTO__MP_INVALID: return "invalid msgpack";
    case PROTO__MP_TOO_DEEP: return "msgpack nested too deep";
    case PROTO__MP_TOO_BIG: return "msgpack count larger than the frame";
    }
    return "msgpack ok";
}

static int key_cmp(const void *a, const void *b)
{
    const msgpack_object_str *x = *(const msgpack_object_str *const *)a;
    const msgpack_object_str *y = *(const msgpack_object_str *const *)b;
    size_t n = x->size < y->size ? x->size : y->size;
    int c = n ? memcmp(x->ptr, y->ptr, n) : 0;

    if (c)
        return c;
    return x->size < y->size ? -1 : x->size > y->size;
}

const char *proto__mp_keys_bad(const msgpack_object_map *m)
{
    uint32_t n = m->size;
    int dup = 0;

    for (uint32_t i = 0; i < n; i++)
        if (m->ptr[i].key.type != MSGPACK_OBJECT_STR)
            return "map keys must be strings";
    if (n < 2)
        return NULL;
    /* Small maps (every command) are compared pairwise; big ones are sorted
     * so a hostile map of thousands of keys costs n log n, not n^2. */
    if (n <= 16) {
        for (uint32_t i = 0; i < n; i++) {
            const msgpack_object_str *x = &m->ptr[i].key.via.str;
            for (uint32_t j = i + 1; j < n; j++) {
                const msgpack_object_str *y = &m->ptr[j].key.via.str;
                if (x->size == y->size &&
                    (x->size == 0 || !memcmp(x->ptr, y->ptr, x->size)))
                    return "duplicate map key";
            }
        }
        return NULL;
    }
    const msgpack_object_str **keys = proto__malloc(n * sizeof(*keys));
    for (uint32_t i = 0; i < n; i++)
        keys[i] = &m->ptr[i].key.via.str;
    qsort(keys, n, sizeof(*keys), key_cmp);
    for (uint32_t i = 1; i < n && !dup; i++)
        dup = !key_cmp(&keys[i - 1], &keys[i]);
    free(keys);
    return dup ? "duplicate map key" : NULL;
}

/* --- proto__map_ops for msgpack ------------------------------------------ */

static void mp_get(const void *node, const char *key, proto__val *out)
{
    const msgpack_object *m = node;
    size_t klen = strlen(key);

    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        const msgpack_object *v = &m->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != klen ||
            memcmp(k->via.str.ptr, key, klen) != 0)
            continue;
        out->node = v;
        switch (v->type) {
        case MSGPACK_OBJECT_NIL: out->t = PROTO__V_NULL; break;
        case MSGPACK_OBJECT_BOOLEAN:
            out->t = PROTO__V_BOOL;
            out->b = v->via.boolean;
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            out->t = PROTO__V_UINT;
            out->u = v->via.u64;
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            out->t = PROTO__V_NEGINT;
            out->i = v->via.i64;
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: out->t = PROTO__V_FLOAT; break;
        case MSGPACK_OBJECT_STR:
            out->t = PROTO__V_STR;
            out->s = v->via.str.ptr;
            out->n = v->via.str.size;
            break;
        case MSGPACK_OBJECT_BIN: out->t = PROTO__V_BIN; break;
        case MSGPACK_OBJECT_ARRAY: out->t = PROTO__V_ARRAY; break;
        case MSGPACK_OBJECT_MAP: out->t = PROTO__V_MAP; break;
        default: out->t = PROTO__V_OTHER; break;
        }
        return;
    }
}

static const char *mp_keys_bad(const void *node)
{
    return proto__mp_keys_bad(&((const msgpack_object *)node)->via.map);
}

static int mp_data(void *ctx, const proto__val *v, proto_cmd *cmd,
                   void **owned, proto_error *err)
{
    (void)ctx;
    return proto__data_from_mp_object(v->node, &cmd->data, owned, cmd->id,
                                      err) == PROTO_OK ? 0 : -1;
}

static const proto__map_ops mp_ops = { mp_get, mp_keys_bad, mp_data };

int proto__mp_next(proto_reader *r, proto_cmd *cmd, proto_error *err)
{
    const char *p = r->buf + r->pos;
    size_t n = r->len - r->pos, objlen = 0, off = 0;
    msgpack_unpacked u;
    int rc;

    rc = proto__mp_scan(p, n, &objlen);
    if (rc != PROTO__MP_OK) {
        r->pos = r->len;
        proto__err(err, 0, PROTO_E_BAD_REQUEST, "%s", proto__mp_scan_text(rc));
        return -1;
    }
    r->pos += objlen;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, p, objlen, &off) != MSGPACK_UNPACK_SUCCESS) {
        /* The scan accepted it, so this is msgpack-c running out of
         * memory; the command is refused like any undecodable one. */
        msgpack_unpacked_destroy(&u);
        proto__err(err, 0, PROTO_E_BAD_REQUEST, "msgpack could not be decoded");
        return -1;
    }
    if (u.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy(&u);
        proto__err(err, 0, PROTO_E_BAD_REQUEST, "command must be a map");
        return -1;
    }
    rc = proto__cmd_from_map(&mp_ops, NULL, &u.data, cmd, err);
    /* The command owns copies of everything it keeps, so the zone can go. */
    msgpack_unpacked_destroy(&u);
    return rc;
}
