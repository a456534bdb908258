/*
 * HTTP/1.1 request parsing and answers (http1.h), on http-parser.
 *
 * http-parser calls back with pieces of the URL, header names and values
 * as they arrive (a piece may end at any byte of a feed); they are
 * gathered in buffers, and a header is complete when the next name starts
 * or the headers end. The parser is paused at the end of each request, so
 * a pipelined request stays in the caller's buffer until the answer is
 * written; and after the headers when the client waits for 100-continue.
 */
#include "api/http1.h"

#include "base/hex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char http1_continue_bytes[] = "HTTP/1.1 100 Continue\r\n\r\n";

static http1_conn *conn_of(http_parser *p)
{
    return p->data;
}

/* Refuses the request with status (the first refusal wins); -1 makes
 * http-parser stop. */
static int refuse(http1_conn *c, int status)
{
    if (!c->_error)
        c->_error = status;
    return -1;
}

/* Counts head bytes against max_head. */
static int head_bytes(http1_conn *c, size_t n)
{
    c->_head_bytes += n;
    return c->_head_bytes > c->_lim.max_head ? refuse(c, 431) : 0;
}

static int on_message_begin(http_parser *p)
{
    (void)p;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    http1_conn *c = conn_of(p);
    if (head_bytes(c, n))
        return -1;
    proto_buf_append(&c->_url, at, n);
    return 0;
}

static void str_set(http1_str *s, const char *p, size_t n)
{
    s->ptr = malloc(n + 1);
    if (!s->ptr)
        abort();
    memcpy(s->ptr, p, n);
    s->ptr[n] = '\0';
    s->len = n;
}

static void str_clear(http1_str *s)
{
    free(s->ptr);
    s->ptr = NULL;
    s->len = 0;
}

/* A whole header (name in _field, value in _value): keeps the ones the API
 * reads. A second Authorization or Content-Type is ambiguous: 400. */
static int header_done(http1_conn *c)
{
    if (c->_trailers) {
        /* a chunked body's trailer fields: dropped (RFC 9110 6.5.1: not
         * to be merged into the header section) */
        proto_buf_reset(&c->_field);
        proto_buf_reset(&c->_value);
        return 0;
    }
    const char *name = proto_buf_data(&c->_field);
    size_t nlen = c->_field.len;
    const char *val = c->_value.len ? proto_buf_data(&c->_value) : "";
    size_t vlen = c->_value.len;
    http1_str *dst = NULL;
    if (nlen == 13 && strncasecmp(name, "authorization", 13) == 0)
        dst = &c->_req.authorization;
    else if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0)
        dst = &c->_req.content_type;
    else if (nlen == 17 && strncasecmp(name, "if-modified-since", 17) == 0)
        dst = &c->_req.if_modified_since;
    else if (nlen == 13 && strncasecmp(name, "if-none-match", 13) == 0) {
        if (c->_req.if_none_match.ptr) {
            /* a list may come in several lines: one list */
            http1_str *l = &c->_req.if_none_match;
            char *j = realloc(l->ptr, l->len + 2 + vlen + 1);
            if (!j)
                abort();
            memcpy(j + l->len, ", ", 2);
            memcpy(j + l->len + 2, val, vlen);
            l->len += 2 + vlen;
            j[l->len] = '\0';
            l->ptr = j;
        } else {
            dst = &c->_req.if_none_match;
        }
    } else if (nlen == 6 && strncasecmp(name, "expect", 6) == 0) {
        if (vlen != 12 || strncasecmp(val, "100-continue", 12) != 0)
            return refuse(c, 417);
        c->_want_continue = 1;
    }
    if (dst) {
        if (dst->ptr)
            return refuse(c, 400);
        str_set(dst, val, vlen);
    }
    proto_buf_reset(&c->_field);
    proto_buf_reset(&c->_value);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    http1_conn *c = conn_of(p);
    if (head_bytes(c, n))
        return -1;
    if (c->_field_done) {
        c->_field_done = 0;
        if (header_done(c))
            return -1;
    }
    proto_buf_append(&c->_field, at, n);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    http1_conn *c = conn_of(p);
    if (head_bytes(c, n))
        return -1;
    c->_field_done = 1;
    proto_buf_append(&c->_value, at, n);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    http1_conn *c = conn_of(p);
    if (c->_field_done) {
        c->_field_done = 0;
        if (header_done(c))
            return -1;
    }
    c->_trailers = 1;
    if (p->http_major != 1)
        return refuse(c, 505);
    if (p->method == HTTP_CONNECT || p->upgrade)
        return refuse(c, 501);
    /* The request target in origin form: "/path?query". */
    const char *url = proto_buf_data(&c->_url);
    size_t ulen = c->_url.len;
    if (!ulen || url[0] != '/')
        return refuse(c, 400);
    const char *q = memchr(url, '?', ulen);
    size_t plen = q ? (size_t)(q - url) : ulen;
    str_set(&c->_req.path, url, plen);
    if (q)
        str_set(&c->_req.query, q + 1, ulen - plen - 1);
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->_lim.max_body)
        return refuse(c, 413);
    c->_req.method = (enum http_method)p->method;
    int body = (p->flags & F_CHUNKED) ||
               ((p->flags & F_CONTENTLENGTH) && p->content_length > 0);
    if (c->_want_continue && body && !c->_continue_told) {
        c->_continue_told = 1;
        http_parser_pause(p, 1);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    http1_conn *c = conn_of(p);
    if (c->_body.len + n > c->_lim.max_body)
        return refuse(c, 413);
    proto_buf_append(&c->_body, at, n);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http1_conn *c = conn_of(p);
    c->_req.keep_alive = http_should_keep_alive(p);
    c->_complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http1_init(http1_conn *c, const http1_limits *lim)
{
    memset(c, 0, sizeof(*c));
    c->_lim = *lim;
    http_parser_init(&c->_parser, HTTP_REQUEST);
    c->_parser.data = c;
    proto_buf_init(&c->_url, 0);
    proto_buf_init(&c->_field, 0);
    proto_buf_init(&c->_value, 0);
    proto_buf_init(&c->_body, 0);
}

/* Empties b; a buffer grown past what most requests need is given back,
 * so an idle kept-alive connection holds little whatever it sent
 * before. */
static void buf_trim(proto_buf *b)
{
    if (b->cap > HTTP1_KEEP_BYTES) {
        proto_buf_free(b);
        proto_buf_init(b, 0);
    } else {
        proto_buf_reset(b);
    }
}

static void request_clear(http1_conn *c)
{
    str_clear(&c->_req.path);
    str_clear(&c->_req.query);
    str_clear(&c->_req.authorization);
    str_clear(&c->_req.content_type);
    str_clear(&c->_req.if_none_match);
    str_clear(&c->_req.if_modified_since);
    memset(&c->_req, 0, sizeof(c->_req));
    buf_trim(&c->_url);
    buf_trim(&c->_field);
    buf_trim(&c->_value);
    buf_trim(&c->_body);
    c->_head_bytes = 0;
    c->_field_done = 0;
    c->_trailers = 0;
    c->_want_continue = 0;
    c->_continue_told = 0;
    c->_complete = 0;
}

void http1_free(http1_conn *c)
{
    request_clear(c);
    proto_buf_free(&c->_url);
    proto_buf_free(&c->_field);
    proto_buf_free(&c->_value);
    proto_buf_free(&c->_body);
}

/* The status for an http-parser error that no callback chose. */
static int status_of(enum http_errno e)
{
    switch (e) {
    case HPE_HEADER_OVERFLOW: return 431;
    case HPE_INVALID_VERSION: return 505;
    case HPE_INVALID_TRANSFER_ENCODING: return 501;
    default: return 400;
    }
}

http1_status http1_feed(http1_conn *c, const char *data, size_t len,
                        size_t *used)
{
    *used = 0;
    if (c->_error)
        return HTTP1_ERROR;
    if (c->_complete)
        return HTTP1_REQUEST;       /* not taken yet: see http1_next */
    if (HTTP_PARSER_ERRNO(&c->_parser) == HPE_PAUSED)
        http_parser_pause(&c->_parser, 0);   /* after 100-continue */
    if (!len)
        return HTTP1_AGAIN;
    size_t n = http_parser_execute(&c->_parser, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->_parser);
    *used = n;
    if (c->_error)
        return HTTP1_ERROR;
    if (e != HPE_OK && e != HPE_PAUSED) {
        c->_error = status_of(e);
        return HTTP1_ERROR;
    }
    if (c->_complete) {
        static char empty[1];
        c->_req.body.ptr = c->_body.len ? proto_buf_data(&c->_body) : empty;
        c->_req.body.len = c->_body.len;
        return HTTP1_REQUEST;
    }
    if (e == HPE_PAUSED)
        return HTTP1_CONTINUE;
    return HTTP1_AGAIN;
}

const http1_request *http1_request_get(const http1_conn *c)
{
    return c->_complete ? &c->_req : NULL;
}

const http1_request *http1_head_get(const http1_conn *c)
{
    return &c->_req;
}

void http1_next(http1_conn *c)
{
    /* the body buffer is not the request's own allocation */
    c->_req.body.ptr = NULL;
    request_clear(c);
    http_parser_pause(&c->_parser, 0);
}

int http1_error_status(const http1_conn *c)
{
    return c->_error;
}

const char *http1_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

void http1_answer(proto_buf *out, int status, const char *content_type,
                  const char *cache_control, const char *extra,
                  const void *body, size_t body_len, int keep_alive)
{
    char head[320], length[48] = "";
    if (status != 304)
        snprintf(length, sizeof(length), "Content-Length: %zu\r\n",
                 body_len);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                     "%sCache-Control: %s\r\n%s",
                     status, http1_reason(status), content_type, length,
                     cache_control ? cache_control : "no-store",
                     keep_alive ? "" : "Connection: close\r\n");
    if (n < 0 || (size_t)n >= sizeof(head))
        abort();                 /* content_type is the caller's constant */
    proto_buf_append(out, head, (size_t)n);
    if (extra)
        proto_buf_append(out, extra, strlen(extra));
    proto_buf_append(out, "\r\n", 2);
    proto_buf_append(out, body, body_len);
}

/* Decodes s (n bytes) into out; -1 on a bad escape, a NUL or no room. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap,
                      size_t *len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            int b = base_pct_byte(s + i, n - i);
            if (b < 0)
                return -1;
            ch = (char)b;
            i += 2;
        }
        if (ch == '\0' || o + 1 >= cap)
            return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    *len = o;
    return 0;
}

int http1_query_get(const http1_str *query, const char *name, char *out,
                    size_t cap, size_t *len)
{
    if (!query->ptr || !cap)
        return 0;
    size_t nlen = strlen(name);
    int found = 0;
    const char *p = query->ptr, *end = query->ptr + query->len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        char key[64];
        size_t klen;
        if (pct_decode(p, (size_t)(ke - p), key, sizeof(key), &klen) == 0 &&
            klen == nlen && memcmp(key, name, nlen) == 0) {
            if (found)
                return -1;            /* given twice: which one? */
            found = 1;
            const char *v = eq ? eq + 1 : pe;
            if (pct_decode(v, (size_t)(pe - v), out, cap, len) < 0)
                return -1;
        }
        p = amp ? amp + 1 : end;
    }
    return found;
}
