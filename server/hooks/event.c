/*
 * Event bodies, ids and signatures (event.h).
 */
#include "hooks/event.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "base/mem.h"

static const char hexd[] = "0123456789abcdef";

void hook_event_id(char out[HOOK_ID_LEN + 1])
{
    unsigned char r[HOOK_ID_LEN / 2];
    /* RAND_bytes is thread-safe; an id that cannot be random enough is
     * not worth sending (the backend de-duplicates on it). */
    if (RAND_bytes(r, (int)sizeof(r)) != 1)
        abort();
    for (size_t i = 0; i < sizeof(r); i++) {
        out[2 * i] = hexd[r[i] >> 4];
        out[2 * i + 1] = hexd[r[i] & 15];
    }
    out[HOOK_ID_LEN] = '\0';
}

static void put(proto_buf *b, const char *s)
{
    proto_buf_append(b, s, strlen(s));
}

/* A JSON string: quotes, backslashes and control characters escaped
 * (names, user ids and close reasons are UTF-8 already). */
static void put_str(proto_buf *b, const char *s, size_t n)
{
    proto_buf_append(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        proto_buf_append(b, s + run, i - run);
        run = i + 1;
        char esc[8];
        if (ch == '"' || ch == '\\')
            snprintf(esc, sizeof(esc), "\\%c", ch);
        else
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
        put(b, esc);
    }
    proto_buf_append(b, s + run, n - run);
    proto_buf_append(b, "\"", 1);
}

static void put_field(proto_buf *b, const char *name, proto_slice v)
{
    proto_buf_append(b, ",\"", 2);
    put(b, name);
    proto_buf_append(b, "\":", 2);
    put_str(b, v.ptr ? v.ptr : "", v.ptr ? v.len : 0);
}

static void put_int(proto_buf *b, const char *name, int64_t v)
{
    char num[48];
    snprintf(num, sizeof(num), ",\"%s\":%" PRId64, name, v);
    put(b, num);
}

static void put_pub(proto_buf *b, const proto_pub *p)
{
    put_field(b, "channel", p->channel);
    char num[48];
    snprintf(num, sizeof(num), ",\"offset\":%" PRIu64, p->offset);
    put(b, num);
    put_field(b, "epoch", p->epoch);
    /* The data as the publisher sent it (JSON text; msgpack bin data is
     * a base64 string, as JSON subscribers get it). */
    put(b, ",\"data\":");
    if (p->data.json.len)
        proto_buf_append(b, p->data.json.ptr, p->data.json.len);
    else
        put(b, "null");
    if (p->data.binary)
        put(b, ",\"binary\":true");
    if (p->info && (p->info->client.len || p->info->user.len)) {
        put(b, ",\"info\":{\"client\":");
        put_str(b, p->info->client.ptr ? p->info->client.ptr : "",
                p->info->client.len);
        put(b, ",\"user\":");
        put_str(b, p->info->user.ptr ? p->info->user.ptr : "",
                p->info->user.len);
        put(b, "}");
    }
}

void hook_event_json(proto_buf *b, const hook_event *ev, const char *id,
                     int64_t time_ms, const char *node)
{
    put(b, "{\"id\":");
    put_str(b, id, strlen(id));
    put(b, ",\"event\":");
    const char *name = config_hook_event_name(ev->type);
    put_str(b, name ? name : "", name ? strlen(name) : 0);
    put_int(b, "time", time_ms);
    put_field(b, "node", (proto_slice){ node, strlen(node) });
    switch (ev->type) {
    case CONFIG_HOOK_CONNECT:
    case CONFIG_HOOK_DISCONNECT:
        put_field(b, "client", ev->client);
        put_field(b, "user", ev->user);
        if (ev->type == CONFIG_HOOK_DISCONNECT)
            put_int(b, "code", ev->code);
        else if (ev->info.len) {
            put(b, ",\"info\":");
            proto_buf_append(b, ev->info.ptr, ev->info.len);
        }
        break;
    case CONFIG_HOOK_SUBSCRIBE:
    case CONFIG_HOOK_UNSUBSCRIBE:
        put_field(b, "client", ev->client);
        put_field(b, "user", ev->user);
        put_field(b, "channel", ev->channel);
        if (ev->type == CONFIG_HOOK_UNSUBSCRIBE)
            put_field(b, "reason", (proto_slice){
                ev->reason ? ev->reason : "client",
                strlen(ev->reason ? ev->reason : "client") });
        break;
    case CONFIG_HOOK_OCCUPIED:
    case CONFIG_HOOK_VACATED:
        put_field(b, "channel", ev->channel);
        break;
    case CONFIG_HOOK_PUBLICATION:
        if (ev->pub)
            put_pub(b, ev->pub);
        break;
    default:
        break;
    }
    put(b, "}");
}

proto_slice hook_event_key(const hook_event *ev)
{
    if (ev->type == CONFIG_HOOK_CONNECT || ev->type == CONFIG_HOOK_DISCONNECT)
        return ev->client;
    if (ev->type == CONFIG_HOOK_PUBLICATION && ev->pub)
        return ev->pub->channel;
    return ev->channel;
}

void hook_sign(const char *secret, size_t secret_len, int64_t t,
               const char *body, size_t len, char out[HOOK_SIG_HEX + 1])
{
    char ts[32];
    int tn = snprintf(ts, sizeof(ts), "%" PRId64 ".", t);
    char *msg = mem_alloc((size_t)tn + len);
    memcpy(msg, ts, (size_t)tn);
    memcpy(msg + tn, body, len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, (unsigned char *)msg,
              (size_t)tn + len, md, &mdlen) || mdlen != HOOK_SIG_HEX / 2)
        abort();
    free(msg);
    for (unsigned i = 0; i < mdlen; i++) {
        out[2 * i] = hexd[md[i] >> 4];
        out[2 * i + 1] = hexd[md[i] & 15];
    }
    out[HOOK_SIG_HEX] = '\0';
}

size_t hook_signature_header(char *out, size_t cap, const char *secret,
                             int64_t t, const char *body, size_t len)
{
    char sig[HOOK_SIG_HEX + 1];
    hook_sign(secret, strlen(secret), t, body, len, sig);
    int n = snprintf(out, cap, "Herald-Signature: t=%" PRId64 ",v1=%s", t,
                     sig);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}
