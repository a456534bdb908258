/* Unit tests of bench/src/stamp.c: payload stamps round-trip in both
 * encodings at every size, are valid data of their encoding, and garbage
 * is refused. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <msgpack.h>
#include <string.h>

#include "stamp.h"

static char buf[70000];

Test(bench_stamp, json_round_trip_at_every_size)
{
    stamp in = { 0x0123456789abcdefull, 42, 7 }, out;
    for (size_t size = 0; size < 600; size++) {
        size_t n = stamp_encode(STAMP_JSON, &in, size, buf, sizeof(buf));
        cr_assert_eq(n, size < STAMP_MIN_SIZE ? STAMP_MIN_SIZE : size);
        memset(&out, 0, sizeof(out));
        cr_assert_eq(stamp_decode(STAMP_JSON, buf, n, &out), 0);
        cr_assert_eq(out.t_ns, in.t_ns);
        cr_assert_eq(out.seq, in.seq);
        cr_assert_eq(out.pub, in.pub);
        /* Valid JSON: one string. */
        json_error_t err;
        json_t *j = json_loadb(buf, n, JSON_DECODE_ANY, &err);
        cr_assert(j && json_is_string(j), "size %zu: %s", size, err.text);
        json_decref(j);
    }
}

Test(bench_stamp, msgpack_round_trip_and_valid_str)
{
    stamp in = { UINT64_MAX, UINT64_MAX - 1, UINT32_MAX }, out;
    size_t sizes[] = { 0, 10, 47, 48, 49, 50, 100, 256, 257, 258, 1000,
                       65535, 65536, 65538 };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = stamp_encode(STAMP_MSGPACK, &in, sizes[i], buf,
                                sizeof(buf));
        cr_assert_gt(n, 0);
        if (sizes[i] > 60)
            cr_assert_eq(n, sizes[i], "size %zu gave %zu", sizes[i], n);
        cr_assert_eq(stamp_decode(STAMP_MSGPACK, buf, n, &out), 0);
        cr_assert_eq(out.t_ns, in.t_ns);
        cr_assert_eq(out.seq, in.seq);
        cr_assert_eq(out.pub, in.pub);
        msgpack_unpacked u;
        size_t off = 0;
        msgpack_unpacked_init(&u);
        cr_assert_eq(msgpack_unpack_next(&u, buf, n, &off),
                     MSGPACK_UNPACK_SUCCESS);
        cr_assert_eq(off, n, "one object spanning the payload");
        cr_assert_eq(u.data.type, MSGPACK_OBJECT_STR);
        msgpack_unpacked_destroy(&u);
    }
}

Test(bench_stamp, msgpack_decodes_any_str_header_width)
{
    /* The server may re-encode a str with a wider header. */
    stamp in = { 5, 6, 7 }, out;
    char small[64], wide[70];
    size_t n = stamp_encode(STAMP_MSGPACK, &in, 49, small, sizeof(small));
    cr_assert_eq(n, 49);
    cr_assert_eq((unsigned char)small[0], 0xd9);
    cr_assert_eq(small[1], 47);
    wide[0] = (char)0xda;
    wide[1] = 0;
    wide[2] = 47;
    memcpy(wide + 3, small + 2, 47);
    cr_assert_eq(stamp_decode(STAMP_MSGPACK, wide, 50, &out), 0);
    cr_assert_eq(out.seq, 6);
}

Test(bench_stamp, garbage_is_refused)
{
    stamp out;
    const char *bad[] = { "", "\"", "{\"a\":1}", "123",
        "\"HB1:0123456789abcdeX:0000000000000001:00000001:xx\"",
        "\"HB2:0123456789abcdef:0000000000000001:00000001:xx\"",
        "\"HB1:0123456789abcdef-0000000000000001:00000001:xx\"" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(stamp_decode(STAMP_JSON, bad[i], strlen(bad[i]), &out),
                     -1, "%s", bad[i]);
    cr_assert_eq(stamp_decode(STAMP_MSGPACK, "\x01", 1, &out), -1);
    cr_assert_eq(stamp_decode(STAMP_MSGPACK, "\xa3" "HB1", 4, &out), -1);
    /* Truncated payloads. */
    stamp in = { 1, 2, 3 };
    size_t n = stamp_encode(STAMP_JSON, &in, 100, buf, sizeof(buf));
    for (size_t k = 0; k < STAMP_MIN_SIZE; k++)
        cr_assert_eq(stamp_decode(STAMP_JSON, buf, k, &out), -1);
    cr_assert_eq(stamp_encode(STAMP_JSON, &in, 100, buf, 99), 0);
    (void)n;
}

Test(bench_stamp, clock_is_monotonic)
{
    uint64_t a = stamp_now_ns(), b = stamp_now_ns();
    cr_assert_geq(b, a);
    cr_assert_gt(a, 0);
}
