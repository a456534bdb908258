/*
 * Fuzzing harness of the Redis record decoder (server/broker/redis/
 * record.c): the input is one record as it comes back from Redis, through
 * pub/sub or a read of the hot window, and goes to record_parse (a
 * publication of channel "chat:x") and record_presence_parse (a join or
 * leave). Beyond not crashing, leaking or tripping a sanitizer:
 *  - a publication that parses has the offset its decimal prefix spells
 *    (no digit lost, no wrap-around past 2^64-1, never 0), the 16 bytes
 *    after it as epoch, and the channel it was asked for;
 *  - written again with record_body, it parses to the same publication;
 *  - a join or leave points inside the record, at the bytes after "J:" or
 *    "L:", with the user after the client id.
 */
#include "base/ids.h"
#include "base/log.h"
#include "broker/redis/record.h"

#include "fuzzkit.h"

static const char chan[] = "chat:x";

/* The value of the decimal digits before the first ':' of rec: 1 with
 * *v, 0 when there are none, a non-digit comes first, or they do not fit
 * in 64 bits. Written apart from record_parse, to be checked against it. */
static int decimal_prefix(const char *rec, size_t len, uint64_t *v)
{
    size_t i = 0;
    *v = 0;
    for (; i < len && rec[i] != ':'; i++) {
        unsigned d = (unsigned)(rec[i] - '0');
        if (d > 9 || *v > (UINT64_MAX - d) / 10)
            return 0;
        *v = *v * 10 + d;
    }
    return i > 0 && i < len;
}

static int same_pub(const pub *a, const pub *b)
{
    const proto_pub *x = &a->view, *y = &b->view;
    return a->offset == b->offset && a->time_ms == b->time_ms &&
           x->offset == y->offset && x->time_ms == y->time_ms &&
           fuzz_same(x->channel.ptr, x->channel.len, y->channel.ptr,
                     y->channel.len) &&
           fuzz_same(x->epoch.ptr, x->epoch.len, y->epoch.ptr, y->epoch.len) &&
           fuzz_same(x->data.json.ptr, x->data.json.len, y->data.json.ptr,
                     y->data.json.len) &&
           fuzz_same(x->data.mp.ptr, x->data.mp.len, y->data.mp.ptr,
                     y->data.mp.len) &&
           x->data.binary == y->data.binary &&
           (x->info == NULL) == (y->info == NULL) &&
           (!x->info ||
            (fuzz_same(x->info->client.ptr, x->info->client.len,
                       y->info->client.ptr, y->info->client.len) &&
             fuzz_same(x->info->user.ptr, x->info->user.len,
                       y->info->user.ptr, y->info->user.len)));
}

static void check_pub(const pub *p, const char *rec, size_t len)
{
    uint64_t off;
    FUZZ_CHECK(decimal_prefix(rec, len, &off));
    FUZZ_CHECK(off != 0 && p->offset == off && p->view.offset == off);
    const char *colon = memchr(rec, ':', len);
    FUZZ_CHECK(fuzz_same(p->view.epoch.ptr, p->view.epoch.len, colon + 1,
                         IDS_LEN));
    FUZZ_CHECK(fuzz_same(p->view.channel.ptr, p->view.channel.len, chan,
                         sizeof chan - 1));
    fuzz_touch(p->view.data.json.ptr, p->view.data.json.len);
    fuzz_touch(p->view.data.mp.ptr, p->view.data.mp.len);

    /* The record written again from the publication. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    size_t head = (size_t)(colon - rec) + 2 + IDS_LEN;
    msgpack_sbuffer_write(&sb, rec, head);
    record_body(&sb, p);
    pub *q = record_parse(chan, sizeof chan - 1, sb.data, sb.size);
    FUZZ_CHECK(q != NULL && same_pub(p, q));
    pub_unref(q);
    msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);   /* "malformed record" is the usual case */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *rec = (const char *)data;
    pub *p = record_parse(chan, sizeof chan - 1, rec, size);
    if (p) {
        check_pub(p, rec, size);
        pub_unref(p);
    }

    record_presence rp;
    if (record_presence_parse(rec, size, &rp)) {
        FUZZ_CHECK(size >= 3 + IDS_LEN && rec[1] == ':');
        FUZZ_CHECK(rp.join == (rec[0] == 'J') && (rec[0] == 'J' ||
                                                  rec[0] == 'L'));
        FUZZ_CHECK(rp.client == rec + 2 && rp.client[IDS_LEN] == ':');
        FUZZ_CHECK(rp.user == rec + 3 + IDS_LEN &&
                   rp.user + rp.user_len == rec + size);
    }
    return 0;
}
