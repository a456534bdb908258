/*
 * Unit tests of server/spill.c: records appended come back byte-exact in
 * order and in batches; a torn tail (a crash in the middle of an append)
 * and a checksum mismatch are dropped at open, the good records before
 * them kept; the bound refuses appends and counts the header; consuming
 * everything truncates the file (and an empty file is removed at close);
 * reopening keeps the records and the per-channel newest publication; a
 * second open of a locked file fails naming the path.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bson/bson.h>

#include "store/spill.h"

static char path[256];

static void setup(void)
{
    snprintf(path, sizeof path, "/tmp/herald-test-spill-%d-XXXXXX", (int)getpid());
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    unlink(path);
}

static void teardown(void)
{
    unlink(path);
}

/* A document shaped like the store's. */
static bson_t *mkdoc(const char *chan, const char *epoch, int64_t off,
                     int64_t time_ms, size_t pad)
{
    bson_t *d = bson_new();
    BSON_APPEND_UTF8(d, "channel", chan);
    BSON_APPEND_UTF8(d, "epoch", epoch);
    BSON_APPEND_INT64(d, "offset", off);
    BSON_APPEND_DATE_TIME(d, "time", time_ms);
    char *s = malloc(pad + 1);
    memset(s, 'x', pad);
    s[pad] = '\0';
    BSON_APPEND_UTF8(d, "json", s);
    free(s);
    return d;
}

static void append(spill *sp, const char *chan, const char *epoch, int64_t off,
                   int64_t time_ms)
{
    bson_t *d = mkdoc(chan, epoch, off, time_ms, 10);
    cr_assert_eq(spill_append(sp, bson_get_data(d), d->len), SPILL_OK);
    bson_destroy(d);
}

static spill *open_ok(uint64_t max)
{
    char err[600] = "";
    spill *sp = spill_open(path, max, err, sizeof err);
    cr_assert(sp, "spill_open: %s", err);
    return sp;
}

static off_t file_size(void)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return st.st_size;
}

/* Reads every record [rpos, size) and checks their offsets. */
static void expect_offsets(spill *sp, const int64_t *want, uint32_t n)
{
    spill_batch b = { 0 };
    uint64_t at = spill_read_pos(sp);
    uint32_t got = 0;
    while (at < spill_size(sp)) {
        cr_assert_eq(spill_read(sp, at, spill_size(sp), 3, &b), SPILL_OK);
        cr_assert(b.n > 0 && b.n <= 3);
        for (uint32_t i = 0; i < b.n; i++) {
            bson_t d;
            bson_iter_t it;
            cr_assert(bson_init_static(&d, b.buf + b.off[i], b.len[i]));
            cr_assert(bson_iter_init_find(&it, &d, "offset"));
            cr_assert(got < n);
            cr_assert_eq(bson_iter_as_int64(&it), want[got], "record %u", got);
            got++;
        }
        at = b.end;
    }
    cr_assert_eq(got, n);
    spill_batch_free(&b);
}

TestSuite(spill, .init = setup, .fini = teardown);

Test(spill, append_and_read_back)
{
    spill *sp = open_ok(1 << 20);
    cr_assert_eq(spill_records(sp), 0);
    for (int i = 1; i <= 7; i++)
        append(sp, "a", "0123456789abcdef", i, 1000 + i);
    cr_assert_eq(spill_records(sp), 7);
    cr_assert_eq((off_t)spill_size(sp), file_size());
    int64_t want[] = { 1, 2, 3, 4, 5, 6, 7 };
    expect_offsets(sp, want, 7);

    /* byte-exact payload */
    bson_t *d = mkdoc("b", "0123456789abcdef", 9, 5, 100);
    uint64_t at = spill_size(sp);
    cr_assert_eq(spill_append(sp, bson_get_data(d), d->len), SPILL_OK);
    spill_batch b = { 0 };
    cr_assert_eq(spill_read(sp, at, spill_size(sp), 10, &b), SPILL_OK);
    cr_assert_eq(b.n, 1);
    cr_assert_eq(b.len[0], d->len);
    cr_assert_eq(memcmp(b.buf + b.off[0], bson_get_data(d), d->len), 0);
    cr_assert_eq(b.end, spill_size(sp));
    spill_batch_free(&b);
    bson_destroy(d);
    spill_close(sp);
}

/* The store writes a record without its lock (spill_write at the
 * committed end) and commits it afterwards; a replay that consumes every
 * committed record meanwhile must not cut the file under that write. */
Test(spill, write_then_commit_and_no_cut_under_a_write)
{
    spill *sp = open_ok(1 << 20);
    append(sp, "a", "0123456789abcdef", 1, 1001);
    bson_t *d = mkdoc("a", "0123456789abcdef", 2, 1002, 10);
    uint64_t at = spill_size(sp);
    cr_assert_eq(spill_write(sp, at, bson_get_data(d), d->len), SPILL_OK);
    cr_assert_eq(spill_size(sp), at, "not part of the file before the commit");
    cr_assert_eq(spill_records(sp), 1);
    /* the replay consumes record 1 while record 2 is being written */
    spill_batch b = { 0 };
    cr_assert_eq(spill_read(sp, 0, at, 10, &b), SPILL_OK);
    cr_assert_eq(b.n, 1);
    cr_assert_eq(spill_consume(sp, b.end, b.n, 0), 0);
    cr_assert_eq(spill_size(sp), at, "not truncated under the write");
    spill_commit(sp, bson_get_data(d), d->len);
    cr_assert_eq(spill_records(sp), 1);
    cr_assert_eq((off_t)spill_size(sp), file_size());
    char e[IDS_LEN + 1];
    uint64_t o;
    int64_t t;
    cr_assert_eq(spill_last(sp, "a", 1, e, &o, &t), 1);
    cr_assert_eq(o, 2);
    int64_t rest[] = { 2 };
    expect_offsets(sp, rest, 1);
    cr_assert_eq(spill_truncate_consumed(sp), 0, "a record is left");
    cr_assert_eq(spill_read(sp, spill_read_pos(sp), spill_size(sp), 10, &b),
                 SPILL_OK);
    cr_assert_eq(spill_consume(sp, b.end, b.n, 0), 0);
    cr_assert_eq(spill_truncate_consumed(sp), 1);
    cr_assert_eq(spill_size(sp), 0);
    cr_assert_eq(file_size(), 0);
    /* a write over the bound is refused before any byte is written */
    spill_batch_free(&b);
    spill_close(sp);
    sp = open_ok(64);
    cr_assert_eq(spill_write(sp, 0, bson_get_data(d), d->len), SPILL_FULL);
    cr_assert_eq(file_size(), 0);
    bson_destroy(d);
    spill_close(sp);
}

Test(spill, consume_truncates_and_close_removes_empty)
{
    spill *sp = open_ok(1 << 20);
    for (int i = 1; i <= 4; i++)
        append(sp, "a", "0123456789abcdef", i, 1000 + i);
    spill_batch b = { 0 };
    cr_assert_eq(spill_read(sp, 0, spill_size(sp), 2, &b), SPILL_OK);
    cr_assert_eq(spill_consume(sp, b.end, b.n, 1), 0);
    cr_assert_eq(spill_records(sp), 2);
    int64_t rest[] = { 3, 4 };
    expect_offsets(sp, rest, 2);
    cr_assert_eq(spill_read(sp, spill_read_pos(sp), spill_size(sp), 10, &b),
                 SPILL_OK);
    cr_assert_eq(spill_consume(sp, b.end, b.n, 1), 1);
    cr_assert_eq(spill_records(sp), 0);
    cr_assert_eq(spill_size(sp), 0);
    cr_assert_eq(file_size(), 0);
    char e[IDS_LEN + 1];
    uint64_t o;
    int64_t t;
    cr_assert_eq(spill_last(sp, "a", 1, e, &o, &t), 0, "map emptied");
    spill_batch_free(&b);
    spill_close(sp);
    cr_assert(access(path, F_OK) != 0, "an empty spill file is removed");
}

Test(spill, torn_tail_dropped_at_open)
{
    spill *sp = open_ok(1 << 20);
    for (int i = 1; i <= 3; i++)
        append(sp, "a", "0123456789abcdef", i, 1000 + i);
    off_t good = file_size();
    spill_close(sp);
    /* half a record: a header and part of its payload */
    bson_t *d = mkdoc("a", "0123456789abcdef", 4, 1004, 10);
    int fd = open(path, O_WRONLY | O_APPEND);
    uint8_t h[8] = { (uint8_t)d->len, (uint8_t)(d->len >> 8), 0, 0, 1, 2, 3, 4 };
    cr_assert_eq(write(fd, h, 8), 8);
    cr_assert_eq(write(fd, bson_get_data(d), d->len / 2), (ssize_t)(d->len / 2));
    close(fd);
    bson_destroy(d);

    sp = open_ok(1 << 20);
    cr_assert_eq(spill_records(sp), 3);
    cr_assert_eq(file_size(), good, "the torn tail is truncated");
    int64_t want[] = { 1, 2, 3 };
    expect_offsets(sp, want, 3);
    append(sp, "a", "0123456789abcdef", 4, 1004);
    int64_t want4[] = { 1, 2, 3, 4 };
    expect_offsets(sp, want4, 4);
    spill_close(sp);
}

Test(spill, checksum_mismatch_drops_the_rest)
{
    spill *sp = open_ok(1 << 20);
    for (int i = 1; i <= 4; i++)
        append(sp, "a", "0123456789abcdef", i, 1000 + i);
    uint64_t rec = spill_size(sp) / 4;
    spill_close(sp);
    /* flip one payload byte of the third record */
    int fd = open(path, O_RDWR);
    uint8_t c;
    off_t at = (off_t)(2 * rec + SPILL_HEADER + 20);
    cr_assert_eq(pread(fd, &c, 1, at), 1);
    c ^= 0x40;
    cr_assert_eq(pwrite(fd, &c, 1, at), 1);
    close(fd);

    sp = open_ok(1 << 20);
    cr_assert_eq(spill_records(sp), 2);
    cr_assert_eq((uint64_t)file_size(), 2 * rec);
    int64_t want[] = { 1, 2 };
    expect_offsets(sp, want, 2);
    char e[IDS_LEN + 1];
    uint64_t o;
    int64_t t;
    cr_assert_eq(spill_last(sp, "a", 1, e, &o, &t), 1);
    cr_assert_eq(o, 2, "the map holds only the records kept");
    spill_close(sp);
}

Test(spill, bound_reached)
{
    bson_t *d = mkdoc("a", "0123456789abcdef", 1, 1, 100);
    uint64_t rec = SPILL_HEADER + d->len;
    spill *sp = open_ok(3 * rec + rec / 2);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(spill_append(sp, bson_get_data(d), d->len), SPILL_OK);
    cr_assert(!spill_fits(sp, rec));
    cr_assert(spill_fits(sp, rec / 2));
    cr_assert_eq(spill_append(sp, bson_get_data(d), d->len), SPILL_FULL);
    cr_assert_eq(spill_records(sp), 3);
    cr_assert_eq((uint64_t)file_size(), 3 * rec);
    /* drained: room again */
    spill_batch b = { 0 };
    cr_assert_eq(spill_read(sp, 0, spill_size(sp), 10, &b), SPILL_OK);
    cr_assert_eq(spill_consume(sp, b.end, b.n, 1), 1);
    cr_assert_eq(spill_append(sp, bson_get_data(d), d->len), SPILL_OK);
    spill_batch_free(&b);
    bson_destroy(d);
    spill_close(sp);
}

Test(spill, reopen_keeps_records_and_channel_tops)
{
    spill *sp = open_ok(1 << 20);
    append(sp, "a", "0123456789abcdef", 5, 1000);
    append(sp, "b", "1111111111111111", 9, 1000);
    append(sp, "a", "0123456789abcdef", 7, 1001);
    append(sp, "a", "0123456789abcdef", 6, 1002);   /* moved late: older */
    append(sp, "b", "2222222222222222", 1, 2000);   /* a newer epoch */
    spill_close(sp);

    sp = open_ok(1 << 20);
    cr_assert_eq(spill_records(sp), 5);
    char e[IDS_LEN + 1];
    uint64_t o;
    int64_t t;
    cr_assert_eq(spill_last(sp, "a", 1, e, &o, &t), 1);
    cr_assert_str_eq(e, "0123456789abcdef");
    cr_assert_eq(o, 7);
    cr_assert_eq(spill_last(sp, "b", 1, e, &o, &t), 1);
    cr_assert_str_eq(e, "2222222222222222");
    cr_assert_eq(o, 1);
    cr_assert_eq(t, 2000);
    cr_assert_eq(spill_last(sp, "c", 1, e, &o, &t), 0);
    int64_t want[] = { 5, 9, 7, 6, 1 };
    expect_offsets(sp, want, 5);
    spill_close(sp);
    cr_assert(access(path, F_OK) == 0, "a spill with records is kept");
}

Test(spill, second_open_is_refused)
{
    spill *sp = open_ok(1 << 20);
    char err[600] = "";
    spill *again = spill_open(path, 1 << 20, err, sizeof err);
    cr_assert_null(again);
    cr_assert(strstr(err, "mongodb_spill_path") && strstr(err, path) &&
              strstr(err, "locked"), "%s", err);
    spill_close(sp);
    again = spill_open(path, 1 << 20, err, sizeof err);
    cr_assert(again, "free again after close: %s", err);
    spill_close(again);
}
