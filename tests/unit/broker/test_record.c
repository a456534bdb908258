/*
 * Unit tests of server/broker/redis/record.c, the records every node reads
 * from Redis: a publication's record carries offset, epoch, time, the data
 * byte-exact in both encodings and the publisher, and parses back to the
 * same publication; malformed records are refused (NULL), never half
 * read (offsets beyond 2^64-1, bodies whose counts would make msgpack-c
 * allocate gigabytes, bytes after the body); join and leave records parse
 * into their parts.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "broker/redis/record.h"

static const char *E = "0123456789abcdef";

/* "<offset>:<epoch>:<body of p>" */
static size_t make(char *out, size_t cap, uint64_t offset, const pub *p)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    record_body(&sb, p);
    int n = snprintf(out, cap, "%llu:%s:", (unsigned long long)offset, E);
    cr_assert(n > 0 && (size_t)n + sb.size <= cap);
    memcpy(out + n, sb.data, sb.size);
    size_t len = (size_t)n + sb.size;
    msgpack_sbuffer_destroy(&sb);
    return len;
}

static pub *source(int binary, const char *client, const char *user)
{
    proto_data d = { { "{\"a\":[1,2]}", 11 }, { "\x81\xa1" "a\x92\x01\x02", 7 },
                     binary };
    proto_client_info info = { .client = { client, client ? strlen(client) : 0 },
                               .user = { user, user ? strlen(user) : 0 } };
    pub *p = pub_draft((proto_slice){ "chat:x", 6 }, &d,
                       client ? &info : NULL);
    p->time_ms = 1700000000123;
    return p;
}

Test(record, round_trip)
{
    for (int variant = 0; variant < 3; variant++) {
        pub *p = variant == 0 ? source(0, NULL, NULL)
                 : variant == 1 ? source(1, "fedcba9876543210", "alice")
                                : source(0, "fedcba9876543210", "");
        char buf[512];
        size_t len = make(buf, sizeof(buf), 42, p);
        pub *q = record_parse("chat:x", 6, buf, len);
        cr_assert_not_null(q, "variant %d", variant);
        cr_assert_eq(q->offset, 42);
        cr_assert_eq(q->view.offset, 42);
        cr_assert_eq(q->time_ms, 1700000000123);
        cr_assert_eq(q->view.epoch.len, 16);
        cr_assert_eq(memcmp(q->view.epoch.ptr, E, 16), 0);
        cr_assert_eq(q->view.channel.len, 6);
        cr_assert_eq(memcmp(q->view.channel.ptr, "chat:x", 6), 0);
        cr_assert_eq(q->view.data.json.len, p->view.data.json.len);
        cr_assert_eq(memcmp(q->view.data.json.ptr, p->view.data.json.ptr,
                            p->view.data.json.len), 0, "byte-exact JSON");
        cr_assert_eq(q->view.data.mp.len, p->view.data.mp.len);
        cr_assert_eq(memcmp(q->view.data.mp.ptr, p->view.data.mp.ptr,
                            p->view.data.mp.len), 0, "byte-exact msgpack");
        cr_assert_eq(q->view.data.binary, variant == 1);
        if (variant == 0) {
            cr_assert_null(q->view.info, "no publisher");
        } else {
            cr_assert_not_null(q->view.info);
            cr_assert_eq(q->view.info->client.len, 16);
            cr_assert_eq(q->view.info->user.len, variant == 1 ? 5 : 0);
        }
        pub_unref(p);
        pub_unref(q);
    }
}

Test(record, malformed_records_are_refused)
{
    pub *p = source(0, NULL, NULL);
    char good[512];
    size_t len = make(good, sizeof(good), 7, p);
    pub_unref(p);
    char bad[512];
    struct { const char *what; size_t cut; const char *prefix; } cases[] = {
        { "empty", 0, "" },
        { "no offset", 0, ":0123456789abcdef:" },
        { "offset 0", 0, "0:0123456789abcdef:" },
        { "short epoch", 0, "7:0123456789abcde:" },
        { "no colon after the epoch", 0, "7:0123456789abcdefX" },
        { "offset only", 0, "7" },
        { "body cut short", len - 3, NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n;
        if (cases[i].prefix) {
            n = strlen(cases[i].prefix);
            memcpy(bad, cases[i].prefix, n);
        } else {
            n = cases[i].cut;
            memcpy(bad, good, n);
        }
        cr_assert_null(record_parse("c", 1, bad, n), "%s", cases[i].what);
    }
    /* A body that is msgpack but not the record's array. */
    int n = snprintf(bad, sizeof(bad), "7:%s:", E);
    bad[n] = (char)0x93;   /* an array of 3 */
    bad[n + 1] = 1;
    bad[n + 2] = 2;
    bad[n + 3] = 3;
    cr_assert_null(record_parse("c", 1, bad, (size_t)n + 4), "wrong shape");
    cr_assert_not_null(p = record_parse("c", 1, good, len), "the good one");
    pub_unref(p);
}

/* Twenty digits can spell more than 2^64-1; such an offset is refused,
 * never wrapped into a small one (found by tests/fuzz/fuzz_record). */
Test(record, offsets_beyond_64_bits_are_refused)
{
    pub *p = source(0, NULL, NULL);
    char good[512];
    size_t len = make(good, sizeof(good), 7, p);
    pub_unref(p);
    const char *body = memchr(good + 2, ':', len - 2) + 1;
    size_t blen = len - (size_t)(body - good);
    struct { const char *offset; uint64_t want; } cases[] = {
        { "18446744073709551615", UINT64_MAX },
        { "00000000000000000009", 9 },
        { "18446744073709551616", 0 },   /* 2^64: wrapped to 0 before */
        { "18446744307709551615", 0 },   /* wrapped to 233999999999 */
        { "99999999999999999999", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char rec[512];
        int n = snprintf(rec, sizeof(rec), "%s:%s:", cases[i].offset, E);
        memcpy(rec + n, body, blen);
        pub *q = record_parse("c", 1, rec, (size_t)n + blen);
        if (!cases[i].want) {
            cr_assert_null(q, "%s", cases[i].offset);
            continue;
        }
        cr_assert_not_null(q, "%s", cases[i].offset);
        cr_assert_eq(q->offset, cases[i].want, "%s", cases[i].offset);
        pub_unref(q);
    }
}

/* A damaged body whose container counts ask for gigabytes is refused
 * before msgpack-c allocates them (under ASan the allocation itself would
 * fail the test), and a body with bytes after it is not one of ours
 * (found by tests/fuzz/fuzz_record). */
Test(record, bodies_are_framed_before_unpacking)
{
    static const char *const bodies[] = {
        "\x96\xdd\x7f\xff\xff\xff",          /* an element of 2^31-1 items */
        "\xdf\x7f\xff\xff\xff\x01",          /* a map of 2^31-1 pairs */
        "\x96\x01\xc2\xc4\x01" "1\xc4\x01\x01\xa0\xa0" "x", /* trailing */
    };
    static const size_t blen[] = { 6, 6, 12 };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char rec[64];
        int n = snprintf(rec, sizeof(rec), "7:%s:", E);
        memcpy(rec + n, bodies[i], blen[i]);
        cr_assert_null(record_parse("c", 1, rec, (size_t)n + blen[i]),
                       "body %zu", i);
        /* The third without its trailing byte is a good record. */
        if (i == 2) {
            pub *p = record_parse("c", 1, rec, (size_t)n + blen[i] - 1);
            cr_assert_not_null(p);
            pub_unref(p);
        }
    }
}

Test(record, join_and_leave_records)
{
    record_presence jl;
    const char *j = "J:0123456789abcdef:alice";
    cr_assert(record_presence_parse(j, strlen(j), &jl));
    cr_assert_eq(jl.join, 1);
    cr_assert_eq(memcmp(jl.client, "0123456789abcdef", 16), 0);
    cr_assert_eq(jl.user_len, 5);
    cr_assert_eq(memcmp(jl.user, "alice", 5), 0);
    const char *l = "L:0123456789abcdef:";
    cr_assert(record_presence_parse(l, strlen(l), &jl));
    cr_assert_eq(jl.join, 0);
    cr_assert_eq(jl.user_len, 0, "anonymous");
    cr_assert_not(record_presence_parse("J:0123:u", 8, &jl), "short client");
    cr_assert_not(record_presence_parse("7:0123456789abcdef:", 19, &jl),
                  "a publication's record");
}
