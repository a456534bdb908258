/*
 * Unit tests of server/hooks/event.c: the signature against a value
 * computed independently (Python's hmac over "<t>.<body>"), the header
 * line, event ids, the JSON body of every event type (parsed back with
 * jansson, with names that need escaping) and the ordering key.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <string.h>

#include <jansson.h>

#include "hooks/event.h"

#define S(x) ((proto_slice){ (x), sizeof(x) - 1 })

Test(hooks_event, signature_is_hmac_sha256_of_t_dot_body)
{
    char sig[HOOK_SIG_HEX + 1];
    const char body[] = "{\"a\":1}";
    hook_sign("whsec-test", 10, 1700000000, body, sizeof(body) - 1, sig);
    cr_assert_str_eq(sig, "fed7a1a6c799a6367d73724d76bc70c16678908a32a879cd"
                          "1ded6565ac05cece");
    /* one byte more of the body, another time or key: another value */
    char other[HOOK_SIG_HEX + 1];
    hook_sign("whsec-test", 10, 1700000001, body, sizeof(body) - 1, other);
    cr_assert_str_neq(sig, other);
    hook_sign("whsec-tesT", 10, 1700000000, body, sizeof(body) - 1, other);
    cr_assert_str_neq(sig, other);
    hook_sign("whsec-test", 10, 1700000000, "{\"a\":2}", 7, other);
    cr_assert_str_neq(sig, other);
}

Test(hooks_event, signature_header)
{
    char h[256];
    size_t n = hook_signature_header(h, sizeof(h), "whsec-test", 1700000000,
                                     "{\"a\":1}", 7);
    cr_assert_eq(n, strlen(h));
    cr_assert_str_eq(h, "Herald-Signature: t=1700000000,v1=fed7a1a6c799a636"
                        "7d73724d76bc70c16678908a32a879cd1ded6565ac05cece");
}

Test(hooks_event, ids_are_random_hex)
{
    char a[HOOK_ID_LEN + 1], b[HOOK_ID_LEN + 1];
    hook_event_id(a);
    hook_event_id(b);
    cr_assert_eq(strlen(a), HOOK_ID_LEN);
    cr_assert_eq(strspn(a, "0123456789abcdef"), HOOK_ID_LEN);
    cr_assert_str_neq(a, b);
}

static json_t *body_of(const hook_event *ev)
{
    proto_buf b;
    proto_buf_init(&b, 0);
    hook_event_json(&b, ev, "0123456789abcdef0123456789abcdef", 1700000000123,
                    "node-\"1\"");
    json_error_t e;
    json_t *j = json_loadb(proto_buf_data(&b), b.len, 0, &e);
    cr_assert_not_null(j, "not JSON (%s): %.*s", e.text, (int)b.len,
                       proto_buf_data(&b));
    proto_buf_free(&b);
    cr_assert_str_eq(json_string_value(json_object_get(j, "id")),
                     "0123456789abcdef0123456789abcdef");
    cr_assert_eq(json_integer_value(json_object_get(j, "time")),
                 1700000000123);
    cr_assert_str_eq(json_string_value(json_object_get(j, "node")),
                     "node-\"1\"");
    return j;
}

static const char *str(json_t *j, const char *k)
{
    json_t *v = json_object_get(j, k);
    cr_assert(json_is_string(v), "%s is not a string", k);
    return json_string_value(v);
}

Test(hooks_event, connect_and_disconnect)
{
    hook_event ev = { .type = CONFIG_HOOK_CONNECT, .client = S("c1"),
                      .user = S("u\\1\n"), .info = S("{\"x\":[1]}") };
    json_t *j = body_of(&ev);
    cr_assert_str_eq(str(j, "event"), "connect");
    cr_assert_str_eq(str(j, "client"), "c1");
    cr_assert_str_eq(str(j, "user"), "u\\1\n");
    cr_assert_eq(json_integer_value(json_array_get(
        json_object_get(json_object_get(j, "info"), "x"), 0)), 1);
    cr_assert_eq(json_object_size(j), 7);
    json_decref(j);

    ev = (hook_event){ .type = CONFIG_HOOK_DISCONNECT, .client = S("c1"),
                       .code = 4001 };
    j = body_of(&ev);
    cr_assert_str_eq(str(j, "event"), "disconnect");
    cr_assert_str_eq(str(j, "user"), "");
    cr_assert_eq(json_integer_value(json_object_get(j, "code")), 4001);
    cr_assert_eq(json_object_size(j), 7);
    json_decref(j);
}

Test(hooks_event, subscriptions_and_occupancy)
{
    hook_event ev = { .type = CONFIG_HOOK_UNSUBSCRIBE, .client = S("c1"),
                      .user = S("bob"), .channel = S("chat:\"x\"\x01"),
                      .reason = "server" };
    json_t *j = body_of(&ev);
    cr_assert_str_eq(str(j, "event"), "unsubscribe");
    cr_assert_str_eq(str(j, "channel"), "chat:\"x\"\x01");
    cr_assert_str_eq(str(j, "reason"), "server");
    json_decref(j);

    ev = (hook_event){ .type = CONFIG_HOOK_VACATED, .channel = S("a") };
    j = body_of(&ev);
    cr_assert_str_eq(str(j, "event"), "vacated");
    cr_assert_str_eq(str(j, "channel"), "a");
    cr_assert_eq(json_object_size(j), 5);
    json_decref(j);
}

Test(hooks_event, publication_keeps_the_data_as_sent)
{
    proto_client_info info = { .client = S("c9"), .user = S("carol") };
    proto_pub p = { .channel = S("news"), .offset = 42, .epoch = S("e1"),
                    .data = { .json = S("{\"t\" : [1, 2.50]}") },
                    .info = &info };
    hook_event ev = { .type = CONFIG_HOOK_PUBLICATION, .pub = &p };
    proto_buf b;
    proto_buf_init(&b, 0);
    hook_event_json(&b, &ev, "id", 1, "n");
    cr_assert(memmem(proto_buf_data(&b), b.len, "\"data\":{\"t\" : [1, 2.50]}",
                     24) != NULL);
    proto_buf_free(&b);
    json_t *j = body_of(&ev);
    cr_assert_eq(json_integer_value(json_object_get(j, "offset")), 42);
    cr_assert_str_eq(str(j, "epoch"), "e1");
    cr_assert_str_eq(str(json_object_get(j, "info"), "user"), "carol");
    cr_assert_null(json_object_get(j, "binary"));
    json_decref(j);
}

Test(hooks_event, binary_data_is_a_base64_string_with_binary_true)
{
    proto_pub p = { .channel = S("b"), .offset = 1, .epoch = S("e"),
                    .data = { .json = S("\"AQID\""), .binary = 1 } };
    hook_event ev = { .type = CONFIG_HOOK_PUBLICATION, .pub = &p };
    json_t *j = body_of(&ev);
    cr_assert_str_eq(str(j, "data"), "AQID");
    cr_assert(json_is_true(json_object_get(j, "binary")));
    cr_assert_null(json_object_get(j, "info"));   /* the server API's */
    json_decref(j);
}

Test(hooks_event, order_key)
{
    hook_event ev = { .type = CONFIG_HOOK_DISCONNECT, .client = S("c1"),
                      .channel = S("x") };
    cr_assert_eq(hook_event_key(&ev).ptr, ev.client.ptr);
    ev.type = CONFIG_HOOK_SUBSCRIBE;
    cr_assert_eq(hook_event_key(&ev).ptr, ev.channel.ptr);
    proto_pub p = { .channel = S("news") };
    ev = (hook_event){ .type = CONFIG_HOOK_PUBLICATION, .pub = &p };
    cr_assert_eq(hook_event_key(&ev).ptr, p.channel.ptr);
}
