/*
 * Decoding of herald.v1.json commands. A text frame holds one command per
 * line ('\n'-separated, a trailing '\n' and a '\r' before '\n' tolerated).
 * jansson validates each line strictly (duplicate keys rejected), and then
 * a small scanner finds the raw bytes of the top-level "data" member so a
 * publication reaches JSON subscribers exactly as its publisher wrote it.
 * The scanner is bounds-checked and needs no recursion, because it also
 * reads lines that jansson refused: if such a line starts like an object
 * whose "id" member is readable, the error still carries that id, so the
 * client can fail the right request instead of waiting for a timeout.
 */
#include <stdio.h>
#include <string.h>

#include "proto_internal.h"

/* s[*i] is '"': moves *i past the closing quote. */
static int skip_string(const char *s, size_t n, size_t *i)
{
    for (size_t k = *i + 1; k < n; k++) {
        if (s[k] == '\\')
            k++;
        else if (s[k] == '"') {
            *i = k + 1;
            return 0;
        }
    }
    return -1;
}

/* Moves *i past the value starting there. Containers are skipped by
 * counting brackets outside strings, which is exact for valid JSON and
 * merely bounded for anything else. */
static int skip_value(const char *s, size_t n, size_t *i)
{
    size_t k = *i, depth = 0;

    if (k >= n)
        return -1;
    if (s[k] == '"')
        return skip_string(s, n, i);
    if (s[k] == '{' || s[k] == '[') {
        while (k < n) {
            char c = s[k];
            if (c == '"') {
                if (skip_string(s, n, &k) < 0)
                    return -1;
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) {
                    *i = k + 1;
                    return 0;
                }
            }
            k++;
        }
        return -1;
    }
    while (k < n && s[k] != ',' && s[k] != '}' && s[k] != ']' && !proto__json_ws(s[k]))
        k++;
    /* Only something that can be a number or a literal counts as a scalar,
     * so a damaged line is not read further than it makes sense. */
    if (k == *i || !((s[*i] >= '0' && s[*i] <= '9') || s[*i] == '-' ||
                     (k - *i == 4 && !memcmp(s + *i, "true", 4)) ||
                     (k - *i == 5 && !memcmp(s + *i, "false", 5)) ||
                     (k - *i == 4 && !memcmp(s + *i, "null", 4))))
        return -1;
    *i = k;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Whether the raw key text (between the quotes) spells the ASCII `want`
 * once unescaped: "d\u0061ta" is "data" too. */
static int key_is(const char *raw, size_t n, const char *want)
{
    size_t w = 0, wl = strlen(want), i = 0;

    while (i < n) {
        int c;
        if (raw[i] != '\\') {
            c = (unsigned char)raw[i++];
        } else {
            if (i + 1 >= n)
                return 0;
            switch (raw[i + 1]) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u':
                if (n - i < 6)
                    return 0;
                c = 0;
                for (int k = 2; k < 6; k++) {
                    int h = hexval(raw[i + (size_t)k]);
                    if (h < 0)
                        return 0;
                    c = c << 4 | h;
                }
                if (c >= 0x80)
                    return 0;   /* want is ASCII */
                i += 4;
                break;
            default:
                return 0;
            }
            i += 2;
        }
        if (w >= wl || (unsigned char)want[w] != c)
            return 0;
        w++;
    }
    return w == wl;
}

/* Finds the top-level member `key` of the object text s and gives its value
 * span [*vs, *ve). Stops at the first thing that is not well-formed. */
static int find_member(const char *s, size_t n, const char *key, size_t *vs,
                       size_t *ve)
{
    size_t i = proto__json_skip_ws(s, n, 0);

    if (i >= n || s[i] != '{')
        return -1;
    i++;
    for (;;) {
        size_t ks, v;
        int match;

        i = proto__json_skip_ws(s, n, i);
        if (i >= n || s[i] != '"')
            return -1;
        ks = i;
        if (skip_string(s, n, &i) < 0)
            return -1;
        match = key_is(s + ks + 1, i - ks - 2, key);
        i = proto__json_skip_ws(s, n, i);
        if (i >= n || s[i] != ':')
            return -1;
        i = proto__json_skip_ws(s, n, i + 1);
        v = i;
        if (skip_value(s, n, &i) < 0)
            return -1;
        if (match) {
            *vs = v;
            *ve = i;
            return 0;
        }
        i = proto__json_skip_ws(s, n, i);
        if (i >= n || s[i] != ',')
            return -1;
        i++;
    }
}

int proto_json_member(const void *obj, size_t len, const char *key,
                      proto_slice *value)
{
    size_t vs, ve;
    if (!obj || find_member(obj, len, key, &vs, &ve) < 0)
        return -1;
    value->ptr = (const char *)obj + vs;
    value->len = ve - vs;
    return 0;
}

/* The id of a line jansson refused, when it is plainly readable: a
 * top-level "id" member before the damage, written as a decimal integer in
 * 1..2^32-1. Otherwise 0. */
static uint32_t salvage_id(const char *s, size_t n)
{
    size_t vs, ve;
    uint64_t v = 0;

    if (find_member(s, n, "id", &vs, &ve) < 0 || ve - vs > 10 ||
        s[vs] == '0')
        return 0;
    for (size_t i = vs; i < ve; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v <= UINT32_MAX ? (uint32_t)v : 0;
}

/* --- proto__map_ops for JSON --------------------------------------------- */

typedef struct json_ctx {
    const char *line;
    size_t len;
} json_ctx;

static void json_get(const void *node, const char *key, proto__val *out)
{
    json_t *v = json_object_get(node, key);

    memset(out, 0, sizeof(*out));
    if (!v)
        return;
    out->node = v;
    switch (json_typeof(v)) {
    case JSON_OBJECT: out->t = PROTO__V_MAP; break;
    case JSON_ARRAY: out->t = PROTO__V_ARRAY; break;
    case JSON_STRING:
        out->t = PROTO__V_STR;
        out->s = json_string_value(v);
        out->n = json_string_length(v);
        break;
    case JSON_INTEGER:
        if (json_integer_value(v) < 0) {
            out->t = PROTO__V_NEGINT;
            out->i = (int64_t)json_integer_value(v);
        } else {
            out->t = PROTO__V_UINT;
            out->u = (uint64_t)json_integer_value(v);
        }
        break;
    case JSON_REAL: out->t = PROTO__V_FLOAT; break;
    case JSON_TRUE: out->t = PROTO__V_BOOL; out->b = 1; break;
    case JSON_FALSE: out->t = PROTO__V_BOOL; out->b = 0; break;
    case JSON_NULL: out->t = PROTO__V_NULL; break;
    }
}

static const char *json_keys_bad(const void *node)
{
    (void)node;
    return NULL;
}

static int json_data(void *ctx, const proto__val *v, proto_cmd *cmd,
                     void **owned, proto_error *err)
{
    json_ctx *c = ctx;
    size_t vs, ve;

    /* jansson accepted the line, so the member is there and well-formed. */
    if (find_member(c->line, c->len, "data", &vs, &ve) < 0) {
        proto__err(err, cmd->id, PROTO_E_INTERNAL, "data not found");
        return -1;
    }
    return proto__data_from_json_value(c->line + vs, ve - vs, v->node,
                                       &cmd->data, owned, cmd->id,
                                       err) == PROTO_OK ? 0 : -1;
}

static const proto__map_ops json_ops = { json_get, json_keys_bad, json_data };

int proto__json_next(proto_reader *r, proto_cmd *cmd, proto_error *err)
{
    const char *line = r->buf + r->pos;
    size_t rest = r->len - r->pos;
    const char *nl = memchr(line, '\n', rest);
    size_t n = nl ? (size_t)(nl - line) : rest;
    json_error_t je;
    json_t *root;
    json_ctx ctx;
    int rc;

    /* A final empty piece after the last '\n' is never looked at: pos is
     * then at the end. Any other empty line is a (bad) command. */
    r->pos += nl ? n + 1 : n;
    if (n && line[n - 1] == '\r')
        n--;
    if (n == 0) {
        proto__err(err, 0, PROTO_E_BAD_REQUEST, "empty command");
        return -1;
    }
    root = proto__json_loadb(line, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                             &je);
    if (!root) {
        proto__err(err, salvage_id(line, n), PROTO_E_BAD_REQUEST,
                   "invalid JSON: %s (column %d)", je.text, je.column);
        return -1;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        proto__err(err, 0, PROTO_E_BAD_REQUEST, "command must be an object");
        return -1;
    }
    ctx.line = line;
    ctx.len = n;
    rc = proto__cmd_from_map(&json_ops, &ctx, root, cmd, err);
    json_decref(root);
    return rc;
}
