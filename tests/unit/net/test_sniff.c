/*
 * net/sniff.c: telling an API request line from anything else by its
 * first bytes, including when only some of them have arrived.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "net/sniff.h"

static int cls(const char *s)
{
    return sniff_classify(s, strlen(s), 0);
}

Test(sniff, api_request_lines)
{
    cr_assert_eq(cls("GET /api/v1/info HTTP/1.1\r\n"), 1);
    cr_assert_eq(cls("POST /api/v1/publish HTTP/1.1"), 1);
    cr_assert_eq(cls("OPTIONS /api/v1/"), 1);
    cr_assert_eq(cls("GET /api/v1?x HTTP/1.1"), 1);
    cr_assert_eq(cls("GET /metrics HTTP/1.1"), 1);
    cr_assert_eq(cls("GET /metrics?name[]=x HTTP/1.1"), 1);
}

Test(sniff, everything_else_is_lws)
{
    cr_assert_eq(cls("GET /ws HTTP/1.1\r\n"), 0);
    cr_assert_eq(cls("GET /healthz HTTP/1.1"), 0);
    cr_assert_eq(cls("GET /api/v2/info HTTP/1.1"), 0);
    cr_assert_eq(cls("GET /metricsx HTTP/1.1"), 0);
    cr_assert_eq(cls("GET /apI/v1/ "), 0);
    cr_assert_eq(cls("get /api/v1/info"), 0);          /* methods are upper case */
    cr_assert_eq(cls("GETTINGS /api/v1/"), 0);          /* 8 letters: no method */
    cr_assert_eq(cls("\x16\x03\x01\x02\x00"), 0);       /* a TLS ClientHello */
    cr_assert_eq(cls("GET\t/api/v1/"), 0);
}

Test(sniff, prefixes_wait_for_more)
{
    const char *line = "POST /api/v1/publish";
    for (size_t n = 1; n < strlen("POST /api/v1/"); n++)
        cr_assert_eq(sniff_classify(line, n, 0), -1, "%zu bytes", n);
    cr_assert_eq(sniff_classify(line, strlen("POST /api/v1/"), 0), 1);
    cr_assert_eq(cls("GET /met"), -1);
    cr_assert_eq(cls("GET /metrics"), -1);              /* or /metricsx */
    cr_assert_eq(cls("GET /h"), 0);                     /* no API path */
    cr_assert_eq(sniff_classify("", 0, 0), 0);
}

static int site(const char *s)
{
    return sniff_classify(s, strlen(s), 1);
}

Test(sniff, with_the_site_only_ws_is_lws)
{
    cr_assert_eq(site("GET /ws HTTP/1.1\r\n"), 0);
    cr_assert_eq(site("GET /ws?token=x HTTP/1.1"), 0);
    cr_assert_eq(site("\x16\x03\x01\x02\x00"), 0);      /* TLS: lws's */
    cr_assert_eq(site("GET / HTTP/1.1\r\n"), 1);
    cr_assert_eq(site("GET /index.html HTTP/1.1"), 1);
    cr_assert_eq(site("GET /wss HTTP/1.1"), 1);
    cr_assert_eq(site("GET /ws/x HTTP/1.1"), 1);
    cr_assert_eq(site("GET /healthz HTTP/1.1"), 1);
    cr_assert_eq(site("POST /api/v1/publish HTTP/1.1"), 1);
    cr_assert_eq(site("HEAD /app.js HTTP/1.1"), 1);
}

Test(sniff, with_the_site_a_prefix_of_ws_waits)
{
    cr_assert_eq(site("GET /"), -1);
    cr_assert_eq(site("GET /w"), -1);
    cr_assert_eq(site("GET /ws"), -1);
    cr_assert_eq(site("GET"), -1);
}
