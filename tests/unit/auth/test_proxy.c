/*
 * Unit tests of proxy_parse (server/auth/proxy.c): what a backend's answer
 * becomes. The calls themselves are in tests/integration/test_proxy.py.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "auth/proxy.h"

static proxy_answer *parse(enum proxy_op op, const char *body)
{
    proxy_answer *a = proxy_parse(op, body, strlen(body));
    cr_assert_not_null(a);
    return a;
}

Test(proxy, connect_result_sets_user_expiry_info_grants)
{
    proxy_answer *a = parse(PROXY_CONNECT,
        "{\"result\":{\"user\":\"42\",\"expire_at\":1700000000,"
        "\"info\":{\"b\":[1,2],\"a\":\"x\"},\"channels\":[\"c:1\",\"c:*\"]}}");
    cr_assert_eq(a->outcome, PROXY_ALLOW);
    cr_assert_str_eq(a->user, "42");
    cr_assert_eq(a->expire_at, 1700000000);
    cr_assert_not_null(strstr(a->info, "\"b\":[1,2]"));
    cr_assert_eq(a->n_channels, 2);
    cr_assert_str_eq(a->channels[0], "c:1");
    cr_assert_str_eq(a->channels[1], "c:*");
    free(a);
    a = parse(PROXY_CONNECT, "{\"result\":{}}");
    cr_assert_eq(a->outcome, PROXY_ALLOW);
    cr_assert_null(a->user);
    cr_assert_null(a->info);
    cr_assert_eq(a->n_channels, 0);
    free(a);
    a = parse(PROXY_CONNECT, "{\"result\":{\"user\":\"\"}}");
    cr_assert_null(a->user, "an empty user is anonymous");
    free(a);
}

Test(proxy, errors_carry_a_protocol_code)
{
    proxy_answer *a = parse(PROXY_SUBSCRIBE,
                            "{\"error\":{\"code\":106,\"message\":\"full\"}}");
    cr_assert_eq(a->outcome, PROXY_DENY);
    cr_assert_eq(a->code, 106);
    cr_assert_str_eq(a->message, "full");
    free(a);
    static const char *const other[] = {
        "{\"error\":{\"code\":4100}}", "{\"error\":{\"code\":\"x\"}}",
        "{\"error\":{}}", "{\"error\":{\"code\":99}}",
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        a = parse(PROXY_PUBLISH, other[i]);
        cr_assert_eq(a->outcome, PROXY_DENY, "%s", other[i]);
        cr_assert_eq(a->code, 103, "%s", other[i]);
        free(a);
    }
}

Test(proxy, anything_else_is_a_failure)
{
    static const struct { enum proxy_op op; const char *body; } bad[] = {
        { PROXY_CONNECT, "" },
        { PROXY_CONNECT, "[1]" },
        { PROXY_CONNECT, "{\"resolt\":{}}" },
        { PROXY_CONNECT, "{\"result\":{},\"error\":{}}" },
        { PROXY_CONNECT, "{\"result\":{\"user\":5}}" },
        { PROXY_CONNECT, "{\"result\":{\"user\":\"a\\nb\"}}" },
        { PROXY_CONNECT, "{\"result\":{\"expire_at\":\"soon\"}}" },
        { PROXY_CONNECT, "{\"result\":{\"expire_at\":-1}}" },
        { PROXY_CONNECT, "{\"result\":{\"info\":[1]}}" },
        { PROXY_CONNECT, "{\"result\":{\"channels\":\"c\"}}" },
        { PROXY_CONNECT, "{\"result\":{\"channels\":[\"\"]}}" },
        { PROXY_CONNECT, "{\"result\":{\"channels\":[1]}}" },
        { PROXY_SUBSCRIBE, "{\"result\":{\"user\":\"x\"}}" },
        { PROXY_PUBLISH, "{\"result\":{\"channels\":[]}}" },
        { PROXY_CONNECT, "{\"result\":{},\"result\":{}}" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        proxy_answer *a = parse(bad[i].op, bad[i].body);
        cr_assert_eq(a->outcome, PROXY_FAILED, "%s", bad[i].body);
        cr_assert_neq(a->message[0], '\0');
        free(a);
    }
    /* 64 channels are fine, 65 are not; info over 4 KiB is not */
    char doc[8192];
    size_t o = (size_t)snprintf(doc, sizeof(doc), "{\"result\":{\"channels\":[");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(doc + o, sizeof(doc) - o, "%s\"c%d\"", i ? "," : "", i);
    snprintf(doc + o, sizeof(doc) - o, "]}}");
    proxy_answer *a = parse(PROXY_CONNECT, doc);
    cr_assert_eq(a->outcome, PROXY_FAILED);
    free(a);
    o = (size_t)snprintf(doc, sizeof(doc), "{\"result\":{\"info\":{\"k\":\"");
    memset(doc + o, 'x', 4200);
    snprintf(doc + o + 4200, sizeof(doc) - o - 4200, "\"}}}");
    a = parse(PROXY_CONNECT, doc);
    cr_assert_eq(a->outcome, PROXY_FAILED);
    free(a);
}
