/*
 * The request side of an HTTP/1.1 server connection, without I/O: bytes
 * go in, one whole request at a time comes out (method, path, query, the
 * headers the API reads, the body de-chunked), every bound checked; and
 * the bytes of an answer. The api_listen transport feeds it from its
 * socket and writes what it makes, so keep-alive, pipelining (one request
 * at a time: the parser stops at the end of each), chunked bodies and the
 * limits are decided here, where a unit test reaches them. Parsing is
 * http-parser's (Debian libhttp-parser-dev). One per connection, owned by
 * its worker thread.
 */
#ifndef HERALD_API_HTTP1_H
#define HERALD_API_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#include <herald/proto.h>

typedef struct http1_limits {
    size_t max_head;          /* request line and headers, bytes */
    size_t max_body;          /* body after de-chunking, bytes */
} http1_limits;

typedef enum http1_status {
    HTTP1_AGAIN = 0,          /* everything fed was taken: feed more */
    HTTP1_REQUEST,            /* a whole request: http1_request() */
    HTTP1_CONTINUE,           /* headers say "Expect: 100-continue" and a
                                 body follows: write http1_continue_bytes,
                                 then feed on */
    HTTP1_ERROR,              /* answer http1_error_status() and close */
} http1_status;

/* A header the API reads; absent: ptr NULL. */
typedef struct http1_str {
    char *ptr;                /* NUL-terminated, owned by the connection */
    size_t len;
} http1_str;

typedef struct http1_request {
    enum http_method method;
    http1_str path;           /* as sent, before '?' (not decoded) */
    http1_str query;          /* after '?', without it; ptr NULL if none */
    http1_str authorization;
    http1_str content_type;
    http1_str if_none_match;  /* for the static site (web/site.h); lines
                                 given twice are joined with ", " */
    http1_str if_modified_since;
    http1_str body;           /* de-chunked; ptr non-NULL, may be empty */
    int keep_alive;           /* the client may send another request */
} http1_request;

/* Buffers larger than this are freed after each request. */
#define HTTP1_KEEP_BYTES 16384

typedef struct http1_conn {
    http_parser _parser;
    http1_limits _lim;
    http1_request _req;
    proto_buf _url, _field, _value, _body;
    size_t _head_bytes;
    int _field_done;          /* the last callback was a header value */
    int _trailers;            /* past the head: fields are chunked
                                 trailers, never merged into the headers */
    int _want_continue;       /* Expect: 100-continue seen */
    int _continue_told;
    int _complete;
    int _error;               /* HTTP status of the refusal, or 0 */
} http1_conn;

void http1_init(http1_conn *c, const http1_limits *lim);
void http1_free(http1_conn *c);

/* Parses from data; *used gets how many bytes were taken. Stops after a
 * whole request (HTTP1_REQUEST: the rest, a pipelined request, is fed
 * again after http1_next), after the headers of a request that expects
 * 100-continue (HTTP1_CONTINUE, once), or at an error (HTTP1_ERROR: no
 * more input is taken). A client that closes mid-request is the caller's
 * to notice (the socket's end). */
http1_status http1_feed(http1_conn *c, const char *data, size_t len,
                        size_t *used);

/* The request of the last HTTP1_REQUEST, valid until http1_next. */
const http1_request *http1_request_get(const http1_conn *c);
/* After HTTP1_CONTINUE: the request's head (method, path, query,
 * headers; no body yet). */
const http1_request *http1_head_get(const http1_conn *c);

/* After the answer: ready for the connection's next request. */
void http1_next(http1_conn *c);

/* The status to answer after HTTP1_ERROR: 400 malformed, 413 body over
 * max_body, 431 head over max_head, 501 a method or transfer coding the
 * API does not take, 505 not HTTP/1.x. */
int http1_error_status(const http1_conn *c);

/* The value of query parameter `name` ("a=1&b=x%3Ay"), percent-decoded
 * ('+' stays '+') into out (cap bytes, NUL-terminated): 1 with *len, 0
 * when absent, -1 when it is malformed (a bad %-escape, a decoded NUL, a
 * value longer than cap - 1, or the name given twice). */
int http1_query_get(const http1_str *query, const char *name, char *out,
                    size_t cap, size_t *len);

extern const char http1_continue_bytes[];   /* "HTTP/1.1 100 Continue..." */

/* Appends an answer: status line, Content-Type, Content-Length (none for
 * 304, which has no body and must not give a length other than the
 * file's), Cache-Control (cache_control, or no-store when NULL),
 * Connection: close unless keep_alive, extra (whole header lines, each
 * ending in CRLF, or NULL), blank line, body. */
void http1_answer(proto_buf *out, int status, const char *content_type,
                  const char *cache_control, const char *extra,
                  const void *body, size_t body_len, int keep_alive);

/* The reason phrase of a status ("Too Many Requests"); "" if unknown. */
const char *http1_reason(int status);

#endif
