/*
 * Fuzzing harness of the API's HTTP/1.1 request parser (server/api/
 * http1.c): the input's first byte chooses a piece size, the rest is what
 * one client sends on one connection. It is parsed twice, all at once and
 * in pieces of that size, as a transport would feed it. Beyond not
 * crashing, leaking or tripping a sanitizer:
 *  - a feed that asks for more took everything it was given, and a feed
 *    never takes more than it was given;
 *  - every request has a NUL-terminated path starting with '/', headers
 *    NUL-terminated, a body within max_body;
 *  - an error is one of the documented statuses, and nothing is taken
 *    after it;
 *  - both ways of feeding see the same requests (method, path, query,
 *    Authorization, Content-Type, body, keep-alive), and both end in an
 *    error or neither.
 */
#include <stdlib.h>
#include <string.h>

#include "api/http1.h"

#include "fuzzkit.h"

static const http1_limits lim = { .max_head = 1024, .max_body = 2048 };

#define MAX_SEEN 64

typedef struct seen {
    int n;
    unsigned hash[MAX_SEEN];  /* one per request */
    int error;                /* the final error status, or 0 */
    int continues;
} seen;

static unsigned mix(unsigned h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h ^ (unsigned)n;
}

static unsigned str_hash(unsigned h, const http1_str *s)
{
    if (!s->ptr)
        return mix(h, "-", 1) + 7;
    FUZZ_CHECK(s->ptr[s->len] == '\0');
    return mix(h, s->ptr, s->len);
}

static void check_request(const http1_request *r, seen *out)
{
    FUZZ_CHECK(r->path.ptr && r->path.len >= 1 && r->path.ptr[0] == '/');
    FUZZ_CHECK(r->path.ptr[r->path.len] == '\0');
    FUZZ_CHECK(r->body.ptr != NULL && r->body.len <= lim.max_body);
    fuzz_touch(r->body.ptr, r->body.len);
    unsigned h = 2166136261u;
    h = mix(h, &r->method, sizeof(r->method));
    h = str_hash(h, &r->path);
    h = str_hash(h, &r->query);
    h = str_hash(h, &r->authorization);
    h = str_hash(h, &r->content_type);
    h = mix(h, r->body.ptr, r->body.len);
    h = mix(h, &r->keep_alive, sizeof(r->keep_alive));
    if (out->n < MAX_SEEN)
        out->hash[out->n] = h;
    out->n++;
}

static void parse(const char *data, size_t size, size_t step, seen *out)
{
    http1_conn c;
    http1_init(&c, &lim);
    memset(out, 0, sizeof(*out));
    size_t off = 0, fed = 0;          /* taken, made available */
    /* at most size + a few rounds: each one takes bytes, or ends a request
     * that took bytes before it */
    for (size_t round = 0; round < 4 * size + 16; round++) {
        if (off == fed && fed < size)     /* the next piece arrives */
            fed = step && size - fed > step ? fed + step : size;
        size_t avail = fed - off, used = 0;
        http1_status st = http1_feed(&c, data + off, avail, &used);
        FUZZ_CHECK(used <= avail);
        off += used;
        if (st == HTTP1_ERROR) {
            int e = http1_error_status(&c);
            FUZZ_CHECK(e == 400 || e == 413 || e == 417 || e == 431 ||
                       e == 501 || e == 505);
            size_t again;
            FUZZ_CHECK(http1_feed(&c, data + off, size - off, &again) ==
                           HTTP1_ERROR && again == 0);
            out->error = e;
            break;
        }
        if (st == HTTP1_REQUEST) {
            check_request(http1_request_get(&c), out);
            http1_next(&c);
            continue;
        }
        if (st == HTTP1_CONTINUE) {
            out->continues++;
            continue;
        }
        FUZZ_CHECK(used == avail);        /* AGAIN takes everything */
        if (fed == size)
            break;                        /* all fed: the client stops */
    }
    http1_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = data[0] % 17;           /* 0: all at once */
    const char *in = (const char *)data + 1;
    size--;
    seen whole, pieces;
    parse(in, size, 0, &whole);
    parse(in, size, step ? step : 1, &pieces);
    FUZZ_CHECK(whole.n == pieces.n);
    for (int i = 0; i < whole.n && i < MAX_SEEN; i++)
        FUZZ_CHECK(whole.hash[i] == pieces.hash[i]);
    /* Both end in an error or neither; which status depends on which of
     * two problems in one head was noticed first, and that can depend on
     * where the reads split it ("Expect: 1" then a line without a colon:
     * 417 when the next piece starts a header name, 400 when the parser
     * sees the whole line first). Either is a 4xx and the close. */
    FUZZ_CHECK((whole.error != 0) == (pieces.error != 0));
    return 0;
}
