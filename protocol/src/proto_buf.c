/*
 * Output buffers of the codec and its one out-of-memory policy. A proto_buf
 * keeps `headroom` spare bytes in front of the payload so the server can
 * hand the payload to lws_write() (which needs LWS_PRE bytes before it)
 * without copying; everything the encoders write is appended here. Any
 * allocation failure in the codec aborts the process, like h2o and redis:
 * a messaging node that cannot allocate a few bytes has no sane way to
 * degrade, and one policy keeps every caller free of NULL checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

_Noreturn void proto__oom(void)
{
    fputs("herald: out of memory in protocol codec\n", stderr);
    abort();
}

void *proto__malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        proto__oom();
    return p;
}

void *proto__realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        proto__oom();
    return q;
}

void proto_buf_init(proto_buf *b, size_t headroom)
{
    b->base = NULL;
    b->headroom = headroom;
    b->len = 0;
    b->cap = 0;
}

void proto_buf_reset(proto_buf *b)
{
    b->len = 0;
}

void proto_buf_free(proto_buf *b)
{
    free(b->base);
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
}

char *proto__buf_reserve(proto_buf *b, size_t n)
{
    if (!b->base || b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2)
                proto__oom();
            cap *= 2;
        }
        if (b->headroom > SIZE_MAX - cap)
            proto__oom();
        b->base = proto__realloc(b->base, b->headroom + cap);
        b->cap = cap;
    }
    return b->base + b->headroom + b->len;
}

void proto_buf_append(proto_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(proto__buf_reserve(b, n), p, n);
    b->len += n;
}

void proto_buf_sep(proto_buf *b, proto_enc enc)
{
    if (enc == PROTO_JSON && b->len > 0)
        proto__buf_byte(b, '\n');
}

void proto__buf_u64(proto_buf *b, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    proto_buf_append(b, tmp + i, sizeof(tmp) - i);
}

void proto__buf_i64(proto_buf *b, int64_t v)
{
    if (v < 0) {
        proto__buf_byte(b, '-');
        /* Negate in unsigned arithmetic so INT64_MIN does not overflow. */
        proto__buf_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        proto__buf_u64(b, (uint64_t)v);
    }
}

int proto__mp_write(void *data, const char *buf, size_t len)
{
    proto_buf_append(data, buf, len);
    return 0;
}
