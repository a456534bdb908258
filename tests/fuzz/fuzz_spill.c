/*
 * Fuzzing harness of the spill file reader (server/store/spill.c): the
 * input becomes the spill file left by an earlier run (written to a
 * scratch file), which spill_open scans and spill_read reads back, the
 * way a restarting server replays it into MongoDB. Records are checksummed,
 * so random bytes would rarely get past the first header; the first byte
 * of the input picks how the rest becomes the file:
 *   bit 0 clear  the bytes as they are (headers, torn tails, bad sums);
 *   bit 0 set    records: the rest is cut into pieces, each a 2-byte
 *                little-endian length and that many payload bytes, and
 *                each piece is written as a record with a correct header
 *                and checksum (bit 1 set: the payload's first 4 bytes are
 *                also made its BSON length), so the BSON scan of every
 *                record gets the mutations.
 * Bits 2-4 pick the batch size of the reads. Beyond not crashing, leaking
 * or tripping a sanitizer:
 *  - spill_open fails only with a message; when it opens, the file has
 *    been cut to the whole records it counted;
 *  - reading from 0 to the end gives exactly that many records, each with
 *    its length and checksum intact, in batches of at most the size asked;
 *  - consuming them all empties the file, and an append afterwards works.
 */
#include <sys/stat.h>
#include <zlib.h>

#include "base/log.h"
#include "store/spill.h"

#include "fuzzkit.h"

static void put_u32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
}

/* The "records" form of the input, in a buffer of the caller's. */
static size_t frame_records(const uint8_t *in, size_t n, int bson_len,
                            uint8_t *out)
{
    size_t at = 0, o = 0;
    while (n - at >= 2) {
        size_t len = (size_t)in[at] | (size_t)in[at + 1] << 8;
        at += 2;
        if (len > n - at)
            len = n - at;
        uint8_t *payload = out + o + SPILL_HEADER;
        memcpy(payload, in + at, len);
        if (bson_len && len >= 4)
            put_u32(payload, (uint32_t)len);
        put_u32(out + o, (uint32_t)len);
        put_u32(out + o + 4, (uint32_t)crc32(crc32(0L, Z_NULL, 0), payload,
                                             (uInt)len));
        o += SPILL_HEADER + len;
        at += len;
    }
    return o;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);   /* "torn tail dropped" is the usual case */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path("spill");
    char err[600] = "";
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    const uint8_t *in = data + 1;
    size_t n = size - 1;

    if (mode & 1) {
        /* Each piece's 2 length bytes become an 8-byte header. */
        uint8_t *buf = malloc(n * 4 + 1);
        FUZZ_CHECK(buf);
        fuzz_write_file(path, buf, frame_records(in, n, mode & 2, buf));
        free(buf);
    } else {
        fuzz_write_file(path, in, n);
    }

    spill *sp = spill_open(path, 1u << 20, err, sizeof err);
    if (!sp) {
        FUZZ_CHECK(err[0] != '\0');
        unlink(path);
        return 0;
    }
    struct stat st;
    FUZZ_CHECK(stat(path, &st) == 0);
    FUZZ_CHECK((uint64_t)st.st_size == spill_size(sp));
    FUZZ_CHECK(spill_size(sp) <= n || (mode & 1));
    FUZZ_CHECK(spill_read_pos(sp) == 0);

    spill_batch b;
    memset(&b, 0, sizeof b);
    uint32_t max_n = 1 + (mode >> 2 & 7);
    uint64_t pos = 0, records = 0, end = spill_size(sp);
    while (pos < end) {
        FUZZ_CHECK(spill_read(sp, pos, end, max_n, &b) == SPILL_OK);
        FUZZ_CHECK(b.n >= 1 && b.n <= max_n && b.end > pos && b.end <= end);
        for (uint32_t i = 0; i < b.n; i++) {
            const uint8_t *p = b.buf + b.off[i];
            fuzz_touch(p, b.len[i]);
            FUZZ_CHECK(b.len[i] >= 5 && get_u32(p) == b.len[i]);
        }
        records += b.n;
        pos = b.end;
    }
    FUZZ_CHECK(records == spill_records(sp));

    char epoch[IDS_LEN + 1];
    uint64_t offset;
    int64_t time_ms;
    (void)spill_last(sp, "chat:x", 6, epoch, &offset, &time_ms);

    /* Everything written: the file empties, and takes appends again. */
    FUZZ_CHECK(spill_consume(sp, end, records, 1) == 1);
    FUZZ_CHECK(spill_size(sp) == 0 && spill_records(sp) == 0);
    static const uint8_t doc[5] = { 5, 0, 0, 0, 0 };   /* {} in BSON */
    FUZZ_CHECK(spill_append(sp, doc, sizeof doc) == SPILL_OK);
    FUZZ_CHECK(spill_read(sp, 0, spill_size(sp), 4, &b) == SPILL_OK);
    FUZZ_CHECK(b.n == 1 && b.len[0] == sizeof doc);
    /* Empty again, so closing removes the file instead of syncing it. */
    FUZZ_CHECK(spill_consume(sp, b.end, 1, 1) == 1);
    spill_batch_free(&b);
    spill_close(sp);
    unlink(path);
    return 0;
}
