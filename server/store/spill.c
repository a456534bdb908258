/*
 * The spill file (spill.h): records appended with one pwritev each,
 * scanned once at open, read back in batches by the replaying writer and
 * truncated when all of them are in MongoDB. The per-channel map of the
 * newest spilled publication is a uthash keyed by channel name.
 */
#include "store/spill.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <bson/bson.h>
#include <uthash.h>
#include <zlib.h>

#include "base/log.h"

typedef struct spill_top {
    UT_hash_handle hh;
    char epoch[IDS_LEN + 1];
    uint64_t offset;
    int64_t time_ms;
    size_t len;
    char chan[];
} spill_top;

struct spill {
    int fd;
    uint64_t max;        /* bound for appends, bytes */
    uint64_t size;       /* file size: the end of the last whole record */
    uint64_t rpos;       /* records before it are written to MongoDB */
    uint64_t records;    /* records at or after rpos */
    spill_top *tops;     /* channel -> newest publication in the file */
    char path[512];
};

static void spill_put_u32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}

static uint32_t spill_get_u32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
}

static uint32_t spill_crc(const uint8_t *p, uint32_t len)
{
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, len);
}

/* pread all of it; 0 ok, -1 error or end of file. */
static int spill_pread(int fd, void *buf, size_t len, uint64_t at)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        len -= (size_t)r;
        at += (uint64_t)r;
    }
    return 0;
}

static void spill_tops_clear(spill *sp)
{
    spill_top *t, *tmp;
    HASH_ITER(hh, sp->tops, t, tmp) {
        HASH_DEL(sp->tops, t);
        free(t);
    }
}

/* Remembers the document's (epoch, offset, time) for its channel when it
 * is newer than what the map holds. Documents without these fields (not
 * ours) are kept in the file but not remembered. */
static void spill_note(spill *sp, const uint8_t *doc, uint32_t len)
{
    bson_t b;
    bson_iter_t it;
    const char *chan = NULL, *epoch = NULL;
    uint32_t clen = 0, elen = 0;
    int64_t offset = -1, time_ms = 0;
    if (!bson_init_static(&b, doc, len) || !bson_iter_init(&it, &b))
        return;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "channel") && BSON_ITER_HOLDS_UTF8(&it))
            chan = bson_iter_utf8(&it, &clen);
        else if (!strcmp(k, "epoch") && BSON_ITER_HOLDS_UTF8(&it))
            epoch = bson_iter_utf8(&it, &elen);
        else if (!strcmp(k, "offset") && BSON_ITER_HOLDS_INT(&it))
            offset = bson_iter_as_int64(&it);
        else if (!strcmp(k, "time") && BSON_ITER_HOLDS_DATE_TIME(&it))
            time_ms = bson_iter_date_time(&it);
    }
    if (!chan || !epoch || elen != IDS_LEN || offset < 0)
        return;
    spill_top *t;
    HASH_FIND(hh, sp->tops, chan, clen, t);
    if (!t) {
        t = malloc(sizeof(*t) + clen);
        if (!t)
            abort();
        t->len = clen;
        memcpy(t->chan, chan, clen);
        HASH_ADD(hh, sp->tops, chan[0], clen, t);
    } else if (memcmp(epoch, t->epoch, IDS_LEN) == 0
                   ? (uint64_t)offset <= t->offset
                   : time_ms <= t->time_ms) {
        return;   /* same epoch: by offset; another epoch: by time */
    }
    memcpy(t->epoch, epoch, IDS_LEN);
    t->epoch[IDS_LEN] = '\0';
    t->offset = (uint64_t)offset;
    t->time_ms = time_ms;
}

/* Reads and checks the record at `at` (payload into *buf); returns its
 * total size, or 0 when there is no whole valid record there. */
static uint64_t spill_record_at(int fd, uint64_t at, uint64_t end,
                                uint8_t **buf, size_t *cap)
{
    uint8_t h[SPILL_HEADER];
    if (end - at < SPILL_HEADER || spill_pread(fd, h, sizeof h, at) < 0)
        return 0;
    uint32_t len = spill_get_u32(h), crc = spill_get_u32(h + 4);
    if (len < 5 || len > SPILL_MAX_RECORD || end - at - SPILL_HEADER < len)
        return 0;
    if (*cap < len) {
        uint8_t *nb = realloc(*buf, len);
        if (!nb)
            abort();
        *buf = nb;
        *cap = len;
    }
    if (spill_pread(fd, *buf, len, at + SPILL_HEADER) < 0 ||
        spill_crc(*buf, len) != crc || spill_get_u32(*buf) != len)
        return 0;
    return SPILL_HEADER + (uint64_t)len;
}

/* Counts the whole records, fills the map, cuts a torn or corrupt tail. */
static int spill_scan(spill *sp, uint64_t file_size, char *err, size_t errlen)
{
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint64_t at = 0, n;
    while ((n = spill_record_at(sp->fd, at, file_size, &buf, &cap)) > 0) {
        spill_note(sp, buf, (uint32_t)(n - SPILL_HEADER));
        sp->records++;
        at += n;
    }
    free(buf);
    sp->size = at;
    if (at < file_size) {
        log_warn("spill file: torn or corrupt tail dropped",
                 LOG_STR("path", sp->path),
                 LOG_INT("bytes", (int64_t)(file_size - at)),
                 LOG_INT("records_kept", (int64_t)sp->records));
        if (ftruncate(sp->fd, (off_t)at) < 0) {
            snprintf(err, errlen, "mongodb_spill_path \"%s\": cannot truncate "
                     "its corrupt tail: %s", sp->path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

spill *spill_open(const char *path, uint64_t max_bytes, char *err,
                  size_t errlen)
{
    spill *sp = calloc(1, sizeof(*sp));
    if (!sp)
        abort();
    snprintf(sp->path, sizeof sp->path, "%s", path);
    sp->max = max_bytes;
    sp->fd = -1;
    struct stat st, pst;
    /* A previous holder removes an empty file as it closes: the file we
     * locked must still be the one at `path`. */
    for (int attempt = 0; attempt < 5; attempt++) {
        sp->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (sp->fd < 0) {
            snprintf(err, errlen, "mongodb_spill_path \"%s\": cannot open: %s",
                     path, strerror(errno));
            goto err;
        }
        if (flock(sp->fd, LOCK_EX | LOCK_NB) < 0) {
            if (errno == EWOULDBLOCK)
                snprintf(err, errlen, "mongodb_spill_path \"%s\" is locked by "
                         "another process (another herald with the same spill "
                         "file?)", path);
            else
                snprintf(err, errlen, "mongodb_spill_path \"%s\": cannot "
                         "lock: %s", path, strerror(errno));
            goto err;
        }
        if (fstat(sp->fd, &st) < 0) {
            snprintf(err, errlen, "mongodb_spill_path \"%s\": %s", path,
                     strerror(errno));
            goto err;
        }
        if (stat(path, &pst) == 0 && pst.st_ino == st.st_ino &&
            pst.st_dev == st.st_dev)
            break;
        close(sp->fd);
        sp->fd = -1;
    }
    if (sp->fd < 0) {
        snprintf(err, errlen, "mongodb_spill_path \"%s\": replaced while "
                 "opening it", path);
        goto err;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "mongodb_spill_path \"%s\" is not a regular "
                 "file", path);
        goto err;
    }
    if (spill_scan(sp, (uint64_t)st.st_size, err, errlen) < 0)
        goto err;
    return sp;
err:
    if (sp->fd >= 0)
        close(sp->fd);
    spill_tops_clear(sp);
    free(sp);
    return NULL;
}

void spill_close(spill *sp)
{
    if (!sp)
        return;
    if (sp->size == 0)
        unlink(sp->path);   /* while still locked */
    else if (fdatasync(sp->fd) < 0)
        log_warn("spill file: fdatasync failed", LOG_STR("path", sp->path),
                 LOG_STR("error", strerror(errno)));
    close(sp->fd);
    spill_tops_clear(sp);
    free(sp);
}

int spill_fits(const spill *sp, uint64_t bytes)
{
    return sp->size + bytes <= sp->max;
}

int spill_append(spill *sp, const uint8_t *doc, uint32_t len)
{
    int rc = spill_write(sp, sp->size, doc, len);
    if (rc == SPILL_OK)
        spill_commit(sp, doc, len);
    return rc;
}

int spill_write(spill *sp, uint64_t at, const uint8_t *doc, uint32_t len)
{
    if (len > SPILL_MAX_RECORD)
        return SPILL_ERROR;
    if (at + SPILL_HEADER + (uint64_t)len > sp->max)
        return SPILL_FULL;
    uint8_t h[SPILL_HEADER];
    spill_put_u32(h, len);
    spill_put_u32(h + 4, spill_crc(doc, len));
    struct iovec iov[2] = { { h, sizeof h }, { (void *)doc, len } };
    size_t want = sizeof h + len, done = 0;
    while (done < want) {
        /* Skip what an earlier partial write already put there. */
        struct iovec v[2];
        int nv = 0;
        size_t skip = done;
        for (int i = 0; i < 2; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            v[nv].iov_base = (uint8_t *)iov[i].iov_base + skip;
            v[nv].iov_len = iov[i].iov_len - skip;
            skip = 0;
            nv++;
        }
        ssize_t w = pwritev(sp->fd, v, nv, (off_t)(at + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            if (ftruncate(sp->fd, (off_t)at) < 0)
                (void)0;   /* the next scan drops the torn record */
            errno = e;
            return SPILL_ERROR;
        }
        done += (size_t)w;
    }
    return SPILL_OK;
}

void spill_commit(spill *sp, const uint8_t *doc, uint32_t len)
{
    sp->size += SPILL_HEADER + (uint64_t)len;
    sp->records++;
    spill_note(sp, doc, len);
}

uint64_t spill_records(const spill *sp)
{
    return sp->records;
}

uint64_t spill_size(const spill *sp)
{
    return sp->size;
}

uint64_t spill_read_pos(const spill *sp)
{
    return sp->rpos;
}

const char *spill_path(const spill *sp)
{
    return sp->path;
}

int spill_read(spill *sp, uint64_t from, uint64_t to, uint32_t max_n,
               spill_batch *b)
{
    if (b->max < max_n) {
        b->off = realloc(b->off, sizeof(uint32_t) * max_n);
        b->len = realloc(b->len, sizeof(uint32_t) * max_n);
        if (!b->off || !b->len)
            abort();
        b->max = max_n;
    }
    b->n = 0;
    b->end = from;
    size_t used = 0;
    uint8_t h[SPILL_HEADER];
    while (b->n < max_n && b->end < to) {
        if (to - b->end < SPILL_HEADER ||
            spill_pread(sp->fd, h, sizeof h, b->end) < 0)
            return SPILL_ERROR;
        uint32_t len = spill_get_u32(h);
        if (len < 5 || len > SPILL_MAX_RECORD ||
            to - b->end - SPILL_HEADER < len)
            return SPILL_ERROR;
        /* A batch stays under 16 MiB, but holds at least one record. */
        if (b->n && used + len > (16u << 20))
            break;
        if (b->cap < used + len) {
            size_t ncap = b->cap ? b->cap : 65536;
            while (ncap < used + len)
                ncap *= 2;
            uint8_t *nb = realloc(b->buf, ncap);
            if (!nb)
                abort();
            b->buf = nb;
            b->cap = ncap;
        }
        if (spill_pread(sp->fd, b->buf + used, len, b->end + SPILL_HEADER) < 0 ||
            spill_crc(b->buf + used, len) != spill_get_u32(h + 4) ||
            spill_get_u32(b->buf + used) != len)
            return SPILL_ERROR;
        b->off[b->n] = (uint32_t)used;
        b->len[b->n] = len;
        b->n++;
        used += len;
        b->end += SPILL_HEADER + len;
    }
    return SPILL_OK;
}

void spill_batch_free(spill_batch *b)
{
    free(b->buf);
    free(b->off);
    free(b->len);
    memset(b, 0, sizeof(*b));
}

int spill_consume(spill *sp, uint64_t pos, uint64_t n, int may_truncate)
{
    sp->rpos = pos;
    sp->records = n > sp->records ? 0 : sp->records - n;
    if (sp->rpos < sp->size || !may_truncate)
        return 0;
    return spill_truncate_consumed(sp) < 0 ? -1 : 1;
}

int spill_truncate_consumed(spill *sp)
{
    if (sp->rpos < sp->size)
        return 0;
    sp->rpos = 0;
    sp->size = 0;
    sp->records = 0;
    spill_tops_clear(sp);
    if (ftruncate(sp->fd, 0) < 0) {
        log_error("spill file: cannot truncate", LOG_STR("path", sp->path),
                  LOG_STR("error", strerror(errno)));
        return -1;
    }
    return 1;
}

int spill_drop_rest(spill *sp, int may_truncate)
{
    if (sp->rpos >= sp->size)
        return 0;
    log_error("spill file: unreadable record, the rest of the file is lost",
              LOG_STR("path", sp->path),
              LOG_INT("bytes", (int64_t)(sp->size - sp->rpos)));
    return spill_consume(sp, sp->size, sp->records, may_truncate) < 0 ? -1
                                                                     : 0;
}

int spill_last(const spill *sp, const char *chan, size_t len,
               char epoch[IDS_LEN + 1], uint64_t *offset, int64_t *time_ms)
{
    spill_top *t;
    HASH_FIND(hh, sp->tops, chan, len, t);
    if (!t)
        return 0;
    memcpy(epoch, t->epoch, IDS_LEN + 1);
    *offset = t->offset;
    *time_ms = t->time_ms;
    return 1;
}
