/*
 * Unit tests of server/api/http1.c: requests fed whole and byte by byte,
 * bodies by length and chunked, pipelined requests taken one at a time,
 * 100-continue, keep-alive rules, every limit and refusal, and the bytes
 * of an answer.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "api/http1.h"

static const http1_limits lim = { .max_head = 1024, .max_body = 64 };

/* Feeds all of s (in pieces of `step` bytes, 0: at once) until a request,
 * an error or the end; *rest gets the bytes not taken. */
static http1_status feed_all(http1_conn *c, const char *s, size_t step,
                             size_t *rest)
{
    size_t len = strlen(s), off = 0;
    http1_status st = HTTP1_AGAIN;
    while (off < len) {
        size_t n = step && len - off > step ? step : len - off, used;
        st = http1_feed(c, s + off, n, &used);
        off += used;
        if (st == HTTP1_CONTINUE)
            continue;
        if (st != HTTP1_AGAIN)
            break;
        cr_assert_eq(used, n, "AGAIN must take everything fed");
    }
    *rest = len - off;
    return st;
}

static void expect_request(const char *raw, size_t step)
{
    http1_conn c;
    http1_init(&c, &lim);
    size_t rest;
    cr_assert_eq(feed_all(&c, raw, step, &rest), HTTP1_REQUEST);
    cr_assert_eq(rest, 0);
    const http1_request *r = http1_request_get(&c);
    cr_assert_eq(r->method, HTTP_POST);
    cr_assert_str_eq(r->path.ptr, "/api/v1/publish");
    cr_assert_str_eq(r->query.ptr, "a=1&b=%20");
    cr_assert_str_eq(r->authorization.ptr, "apikey secret");
    cr_assert_str_eq(r->content_type.ptr, "application/json");
    cr_assert_eq(r->body.len, 11);
    cr_assert_eq(memcmp(r->body.ptr, "{\"a\":\"bcd\"}", 11), 0);
    cr_assert(r->keep_alive);
    http1_free(&c);
}

static const char *POST_CL =
    "POST /api/v1/publish?a=1&b=%20 HTTP/1.1\r\nHost: x\r\n"
    "Authorization: apikey secret\r\nContent-Type: application/json\r\n"
    "Content-Length: 11\r\n\r\n{\"a\":\"bcd\"}";

Test(http1, post_with_length_at_once_and_byte_by_byte)
{
    expect_request(POST_CL, 0);
    expect_request(POST_CL, 1);
    expect_request(POST_CL, 7);
}

Test(http1, chunked_body_is_dechunked)
{
    const char *raw =
        "POST /api/v1/publish?a=1&b=%20 HTTP/1.1\r\nHost: x\r\n"
        "Authorization: apikey secret\r\ncontent-type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        "4\r\n{\"a\"\r\n7\r\n:\"bcd\"}\r\n0\r\n\r\n";
    expect_request(raw, 0);
    expect_request(raw, 1);
}

Test(http1, pipelined_requests_one_at_a_time)
{
    const char *raw = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /b?x HTTP/1.1\r\nHost: x\r\n\r\n"
                      "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    http1_conn c;
    http1_init(&c, &lim);
    size_t off = 0, used, len = strlen(raw);
    const char *want[] = { "/a", "/b", "/c" };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(http1_feed(&c, raw + off, len - off, &used), HTTP1_REQUEST);
        off += used;
        const http1_request *r = http1_request_get(&c);
        cr_assert_str_eq(r->path.ptr, want[i]);
        cr_assert_eq(r->query.ptr == NULL, i != 1);
        cr_assert_eq(r->body.len, i == 2 ? 2u : 0u);
        cr_assert_not_null(r->body.ptr);
        /* not taken yet: feeding again does not move on */
        size_t again;
        cr_assert_eq(http1_feed(&c, raw + off, len - off, &again), HTTP1_REQUEST);
        cr_assert_eq(again, 0);
        http1_next(&c);
    }
    cr_assert_eq(off, len);
    http1_free(&c);
}

Test(http1, expect_100_continue_is_told_once_before_the_body)
{
    const char *head = "POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                       "Content-Length: 3\r\n\r\n";
    http1_conn c;
    http1_init(&c, &lim);
    size_t used;
    cr_assert_eq(http1_feed(&c, head, strlen(head), &used), HTTP1_CONTINUE);
    /* the rest of the head (if any was left) and then the body */
    size_t left = strlen(head) - used;
    if (left)
        cr_assert_eq(http1_feed(&c, head + used, left, &used), HTTP1_AGAIN);
    cr_assert_eq(http1_feed(&c, "abc", 3, &used), HTTP1_REQUEST);
    cr_assert_eq(http1_request_get(&c)->body.len, 3);
    http1_free(&c);
    cr_assert_str_eq(http1_continue_bytes, "HTTP/1.1 100 Continue\r\n\r\n");
}

Test(http1, keep_alive_rules)
{
    struct { const char *raw; int keep; } cases[] = {
        { "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1 },
        { "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0 },
        { "GET / HTTP/1.0\r\n\r\n", 0 },
        { "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        http1_conn c;
        http1_init(&c, &lim);
        size_t rest;
        cr_assert_eq(feed_all(&c, cases[i].raw, 0, &rest), HTTP1_REQUEST, "%zu", i);
        cr_assert_eq(http1_request_get(&c)->keep_alive, cases[i].keep, "%zu", i);
        http1_free(&c);
    }
}

static void expect_refusal(const char *raw, int status)
{
    for (size_t step = 0; step <= 1; step++) {
        http1_conn c;
        http1_init(&c, &lim);
        size_t rest;
        cr_assert_eq(feed_all(&c, raw, step, &rest), HTTP1_ERROR, "%s", raw);
        cr_assert_eq(http1_error_status(&c), status, "%s: %d", raw,
                     http1_error_status(&c));
        /* nothing more is taken */
        size_t used;
        cr_assert_eq(http1_feed(&c, "GET / HTTP/1.1\r\n\r\n", 18, &used), HTTP1_ERROR);
        cr_assert_eq(used, 0);
        http1_free(&c);
    }
}

Test(http1, refusals)
{
    /* body over max_body: by its length before any byte, or chunked */
    expect_refusal("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n", 413);
    expect_refusal("POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n", 400);
    expect_refusal("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n"
                   "1\r\nx\r\n0\r\n\r\n", 413);
    /* smuggling shapes */
    expect_refusal("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    expect_refusal("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 400);
    expect_refusal("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
    /* not for this server */
    expect_refusal("CONNECT x:1 HTTP/1.1\r\n\r\n", 501);
    expect_refusal("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 501);
    expect_refusal("GET http://x/ HTTP/1.1\r\n\r\n", 400);
    expect_refusal("GET / HTTP/2.0\r\n\r\n", 505);
    expect_refusal("GET / HTTP/1.1\r\nExpect: something\r\n\r\n", 417);
    expect_refusal("GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 400);
    expect_refusal("GARBAGE\r\n\r\n", 400);
    expect_refusal("GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400);
}

Test(http1, head_over_max_head_is_431)
{
    char raw[2048];
    int n = snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nX-Big: ");
    memset(raw + n, 'a', 1100);
    strcpy(raw + n + 1100, "\r\n\r\n");
    expect_refusal(raw, 431);
}

Test(http1, answer_bytes)
{
    proto_buf b;
    proto_buf_init(&b, 0);
    http1_answer(&b, 429, "application/json", NULL, "Retry-After: 1\r\n", "{}", 2, 1);
    const char *want = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                       "Content-Length: 2\r\nCache-Control: no-store\r\n"
                       "Retry-After: 1\r\n\r\n{}";
    cr_assert_eq(b.len, strlen(want));
    cr_assert_eq(memcmp(proto_buf_data(&b), want, b.len), 0);
    proto_buf_reset(&b);
    http1_answer(&b, 200, "application/json", NULL, NULL, "", 0, 0);
    want = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
           "Content-Length: 0\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
    cr_assert_eq(b.len, strlen(want));
    cr_assert_eq(memcmp(proto_buf_data(&b), want, b.len), 0);
    proto_buf_free(&b);
}

static int q(const char *query, const char *name, char *out, size_t cap)
{
    http1_str s = { (char *)query, strlen(query) };
    size_t len = 0;
    int r = http1_query_get(&s, name, out, cap, &len);
    if (r == 1)
        cr_assert_eq(len, strlen(out));
    return r;
}

Test(http1, query_parameters)
{
    char v[16];
    cr_assert_eq(q("channel=chat%3Aroom&limit=10", "channel", v, sizeof v), 1);
    cr_assert_str_eq(v, "chat:room");
    cr_assert_eq(q("channel=chat%3Aroom&limit=10", "limit", v, sizeof v), 1);
    cr_assert_str_eq(v, "10");
    cr_assert_eq(q("channel=a&limit=10", "since", v, sizeof v), 0);
    cr_assert_eq(q("reverse&x=1", "reverse", v, sizeof v), 1);
    cr_assert_str_eq(v, "");
    cr_assert_eq(q("a=1+2", "a", v, sizeof v), 1);
    cr_assert_str_eq(v, "1+2");
    cr_assert_eq(q("%61=x", "a", v, sizeof v), 1);    /* an encoded name */
    cr_assert_str_eq(v, "x");
    cr_assert_eq(q("a=1&a=2", "a", v, sizeof v), -1); /* twice */
    cr_assert_eq(q("a=%4", "a", v, sizeof v), -1);
    cr_assert_eq(q("a=%zz", "a", v, sizeof v), -1);
    cr_assert_eq(q("a=%00", "a", v, sizeof v), -1);
    cr_assert_eq(q("a=0123456789abcdef", "a", v, sizeof v), -1); /* too long */
    cr_assert_eq(q("a=0123456789abcde", "a", v, sizeof v), 1);
    cr_assert_eq(q("ab=1", "a", v, sizeof v), 0);
    cr_assert_eq(q("", "a", v, sizeof v), 0);
    http1_str none = { NULL, 0 };
    size_t len;
    cr_assert_eq(http1_query_get(&none, "a", v, sizeof v, &len), 0);
}

Test(http1, chunked_trailers_are_not_headers)
{
    const char *raw =
        "POST /p HTTP/1.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        "2\r\n{}\r\n0\r\nAuthorization: apikey trailer-key\r\n"
        "Content-Type: application/msgpack\r\nX-A: 1\r\n\r\n";
    for (size_t step = 0; step <= 3; step += 3) {
        http1_conn c;
        http1_init(&c, &lim);
        size_t rest;
        cr_assert_eq(feed_all(&c, raw, step, &rest), HTTP1_REQUEST);
        const http1_request *r = http1_request_get(&c);
        cr_assert_null(r->authorization.ptr);
        cr_assert_str_eq(r->content_type.ptr, "application/json");
        cr_assert_eq(r->body.len, 2);
        http1_free(&c);
    }
}
