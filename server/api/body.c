/*
 * Request bodies (body.h).
 */
#include "api/body.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <msgpack.h>

/* The media type without parameters, compared case-insensitively. */
static int media_is(const http1_request *req, const char *type)
{
    const char *t = req->content_type.ptr ? req->content_type.ptr : "";
    size_t n = strcspn(t, "; \t"), want = strlen(type);
    return n == want && strncasecmp(t, type, n) == 0;
}

static int bad(api_answer *ans, const char *message)
{
    api_error(ans, 400, PROTO_E_BAD_REQUEST, message);
    return -1;
}

/* A msgpack body: one map, converted for its fields with the protocol's
 * data rules (proto_data_from_msgpack checks frame, keys and values). */
static int parse_msgpack(api_body *b, api_answer *ans)
{
    const http1_request *req = b->req;
    const unsigned char *p = (const unsigned char *)req->body.ptr;
    size_t n = req->body.len;
    /* fixmap, map16, map32: anything else is not one map */
    if (!n || !((p[0] & 0xf0) == 0x80 || p[0] == 0xde || p[0] == 0xdf))
        return bad(ans, "the body must be one msgpack map");
    proto_data d;
    void *owned = NULL;
    proto_error perr;
    size_t objlen;
    if (proto_mp_frame(p, n, &objlen) < 0 || objlen != n)
        return bad(ans, "the body must be one msgpack map");
    if (proto_data_from_msgpack(p, n, &d, &owned, &perr)) {
        char text[160];
        snprintf(text, sizeof(text), "msgpack body: %s", perr.message);
        return bad(ans, text);
    }
    json_error_t jerr;
    b->doc = json_loadb(d.json.ptr, d.json.len, JSON_REJECT_DUPLICATES, &jerr);
    free(owned);
    if (!b->doc)
        return bad(ans, "the body must be one msgpack map");
    return 0;
}

int api_body_parse(const http1_request *req, api_body *b, api_answer *ans)
{
    memset(b, 0, sizeof(*b));
    b->req = req;
    if (media_is(req, "application/msgpack")) {
        b->msgpack = 1;
        return parse_msgpack(b, ans);
    }
    if (!media_is(req, "application/json")) {
        api_error(ans, 415, PROTO_E_BAD_REQUEST,
                  "Content-Type must be application/json or "
                  "application/msgpack");
        return -1;
    }
    /* jansson skips a raw NUL between tokens; it is never JSON */
    if (req->body.len && memchr(req->body.ptr, '\0', req->body.len))
        return bad(ans, "the body must be one JSON object: NUL byte");
    json_error_t jerr;
    b->doc = json_loadb(req->body.ptr, req->body.len, JSON_REJECT_DUPLICATES,
                        &jerr);
    if (!b->doc || !json_is_object(b->doc)) {
        int parsed = b->doc != NULL;
        json_decref(b->doc);
        b->doc = NULL;
        char text[200];
        snprintf(text, sizeof(text), "the body must be one JSON object%s%s",
                 parsed ? "" : ": ", parsed ? "" : jerr.text);
        return bad(ans, text);
    }
    return 0;
}

int api_body_only(const api_body *b, const char *const *fields,
                  api_answer *ans)
{
    const char *key;
    json_t *v;
    json_object_foreach(b->doc, key, v) {
        size_t i = 0;
        while (fields[i] && strcmp(fields[i], key) != 0)
            i++;
        if (!fields[i]) {
            char text[128];
            snprintf(text, sizeof(text), "unknown field \"%.60s\"", key);
            return bad(ans, text);
        }
    }
    return 0;
}

int api_body_string(const api_body *b, const char *name, char *out,
                    size_t cap, api_answer *ans)
{
    json_t *v = json_object_get(b->doc, name);
    if (!v)
        return 0;
    size_t len = json_string_length(v);
    if (!json_is_string(v) || len == 0 || len >= cap ||
        memchr(json_string_value(v), '\0', len)) {
        char text[128];
        snprintf(text, sizeof(text),
                 "field %s: expected a string of 1 to %zu bytes", name,
                 cap - 1);
        return bad(ans, text);
    }
    memcpy(out, json_string_value(v), len + 1);
    return 1;
}

/* The msgpack bytes of the map member "data", packed again from the
 * decoded object into sb. 0, or -1 when there is none. */
static int msgpack_data(const http1_request *req, msgpack_sbuffer *sb)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = -1;
    if (msgpack_unpack_next(&u, req->body.ptr, req->body.len, &off) ==
            MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *m = &u.data.via.map;
        for (uint32_t i = 0; i < m->size; i++) {
            const msgpack_object *k = &m->ptr[i].key;
            if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 4 &&
                memcmp(k->via.str.ptr, "data", 4) == 0) {
                msgpack_packer pk;
                msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
                msgpack_pack_object(&pk, m->ptr[i].val);
                rc = 0;
                break;
            }
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

int api_body_data(const api_body *b, proto_data *d, void **owned,
                  api_answer *ans)
{
    proto_error perr;
    int rc;
    if (!json_object_get(b->doc, "data"))
        return bad(ans, "field data is required");
    if (b->msgpack) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        rc = msgpack_data(b->req, &sb) < 0
                 ? -1
                 : proto_data_from_msgpack(sb.data, sb.size, d, owned, &perr);
        msgpack_sbuffer_destroy(&sb);
    } else {
        proto_slice raw;
        rc = proto_json_member(b->req->body.ptr, b->req->body.len, "data",
                               &raw) < 0
                 ? -1
                 : proto_data_from_json(raw.ptr, raw.len, d, owned, &perr);
    }
    if (rc == -1)
        return bad(ans, "field data is required");
    if (rc)
        return bad(ans, perr.message);
    return 0;
}

void api_body_free(api_body *b)
{
    json_decref(b->doc);
    b->doc = NULL;
}
