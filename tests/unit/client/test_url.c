/*
 * Tests of hc_url_parse (clients/c): the ws:// and wss:// URLs the client
 * library, herald-bench's peer transport and its lean subscriber accept,
 * and the ones they refuse with a message.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <herald/client.h>

Test(client_url, parts_and_defaults)
{
    hc_url u;
    char err[128];
    cr_assert_eq(hc_url_parse("ws://127.0.0.1:8080/ws", &u, err, sizeof(err)), 0);
    cr_expect_eq(u.tls, 0);
    cr_expect_str_eq(u.host, "127.0.0.1");
    cr_expect_eq(u.port, 8080);
    cr_expect_str_eq(u.path, "/ws");

    cr_assert_eq(hc_url_parse("wss://example.org", &u, err, sizeof(err)), 0);
    cr_expect_eq(u.tls, 1);
    cr_expect_eq(u.port, 443);
    cr_expect_str_eq(u.path, "");

    cr_assert_eq(hc_url_parse("ws://h/socket.io/?EIO=4&transport=websocket",
                              &u, err, sizeof(err)), 0);
    cr_expect_eq(u.port, 80);
    cr_expect_str_eq(u.path, "/socket.io/?EIO=4&transport=websocket");

    cr_assert_eq(hc_url_parse("ws://[::1]:9000?q=1", &u, err, sizeof(err)), 0);
    cr_expect_str_eq(u.host, "::1");
    cr_expect_eq(u.port, 9000);
    cr_expect_str_eq(u.path, "?q=1");
}

Test(client_url, authority_for_host_and_origin_headers)
{
    hc_url u;
    char err[128], a[300];
    cr_assert_eq(hc_url_parse("ws://127.0.0.1:8080/ws", &u, err, sizeof(err)), 0);
    hc_url_authority(&u, a, sizeof(a));
    cr_expect_str_eq(a, "127.0.0.1:8080");
    cr_assert_eq(hc_url_parse("wss://example.org/ws", &u, err, sizeof(err)), 0);
    hc_url_authority(&u, a, sizeof(a));
    cr_expect_str_eq(a, "example.org:443");
    cr_assert_eq(hc_url_parse("ws://[2001:db8::1]:9000/ws", &u, err, sizeof(err)), 0);
    hc_url_authority(&u, a, sizeof(a));
    cr_expect_str_eq(a, "[2001:db8::1]:9000", "an IPv6 address in brackets");
}

Test(client_url, refusals_name_the_part)
{
    static const struct { const char *url, *why; } bad[] = {
        { "http://h/ws", "ws:// or wss://" },
        { "ws://", "bad host" },
        { "ws://:80/ws", "bad host" },
        { "ws://[::1/ws", "bad IPv6" },
        { "ws://h:0/ws", "bad port" },
        { "ws://h:65536/ws", "bad port" },
        { "ws://h:80x/ws", "bad port" },
        { "ws://h/ws#frag", "bad path" },
    };
    hc_url u;
    char err[128];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_expect_eq(hc_url_parse(bad[i].url, &u, err, sizeof(err)), -1,
                     "%s accepted", bad[i].url);
        cr_expect(strstr(err, bad[i].why), "%s: %s", bad[i].url, err);
    }
    char longhost[400];
    memset(longhost, 'a', sizeof(longhost));
    memcpy(longhost, "ws://", 5);
    longhost[sizeof(longhost) - 1] = '\0';
    cr_expect_eq(hc_url_parse(longhost, &u, err, sizeof(err)), -1);
}
