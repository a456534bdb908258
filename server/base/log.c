/*
 * Structured logging. Each call of log_emit() renders one JSON object
 * ({"time":...,"level":...,"msg":...,fields...}) into a buffer on the stack
 * and hands it to stderr with a single write(2), so lines from different
 * threads never interleave (writes of up to PIPE_BUF bytes to a pipe are
 * atomic, and the kernel serialises writes to a file opened O_APPEND or a
 * terminal per call). There is no lock and no allocation: logging works from
 * any thread, including signal-adjacent shutdown paths and out-of-memory
 * situations. Strings are escaped to valid JSON whatever bytes they hold:
 * invalid UTF-8 becomes U+FFFD, so a client-supplied channel name can never
 * break a log line or forge a field.
 */
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Longest string field value kept, in input bytes (the header promises
 * truncation; 256 keeps a line well under PIPE_BUF). The message and the
 * keys come from code, not clients, but are bounded too so that a line can
 * never outgrow LOG_LINE_MAX. */
#define LOG_VALUE_MAX 256
#define LOG_MSG_MAX 1024
#define LOG_KEY_MAX 64

/* Worst case: every input byte escapes to 6 output bytes ("\u00XX" or
 * "\ufffd"). time+level+punctuation fit in 96 bytes. */
#define LOG_LINE_MAX                                                           \
    (96 + 6 * LOG_MSG_MAX +                                                    \
     LOG_MAX_FIELDS * (6 * LOG_KEY_MAX + 6 * LOG_VALUE_MAX + 32))

/* The threshold is read on every log_enabled() call, which guards hot paths
 * (per-message debug logs), so it is a relaxed atomic: a plain load on
 * x86-64 and arm64, and no ordering is needed because a level change taking
 * effect a few instructions late is harmless. */
static _Atomic int log_threshold = LOG_INFO;

static const char *const log_level_names[] = { "debug", "info", "warn",
                                               "error" };

int log_level_parse(const char *s)
{
    if (s == NULL)
        return -1;
    /* Case-insensitive so that HERALD_LOG_LEVEL=DEBUG works as expected. */
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++)
        if (strcasecmp(s, log_level_names[i]) == 0)
            return i;
    return -1;
}

/* A level within debug..error. */
static int log_clamp(int level)
{
    return level < LOG_DEBUG ? LOG_DEBUG : level > LOG_ERROR ? LOG_ERROR
                                                              : level;
}

const char *log_level_name(int level)
{
    return log_level_names[log_clamp(level)];
}

void log_set_level(int level)
{
    atomic_store_explicit(&log_threshold, log_clamp(level),
                          memory_order_relaxed);
}

int log_enabled(int level)
{
    return level >= atomic_load_explicit(&log_threshold, memory_order_relaxed);
}

/* A bounded output buffer. Appends past the end are dropped (and counted as
 * truncation) rather than overflowing; LOG_LINE_MAX is sized so that this
 * never happens with the input limits above, but the check costs nothing. */
typedef struct log_buf {
    char *p;
    size_t len;
    size_t cap;
} log_buf;

static void buf_put(log_buf *b, const char *s, size_t n)
{
    if (n > b->cap - b->len)
        n = b->cap - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void buf_putc(log_buf *b, char ch)
{
    if (b->len < b->cap)
        b->p[b->len++] = ch;
}

static void buf_puts(log_buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when s[0] does not
 * start one. Rejects overlong forms, UTF-16 surrogates and code points above
 * U+10FFFF (RFC 3629), so the output is always valid UTF-8. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    /* The second byte's range: narrower after E0 and F0 (overlong), ED
     * (UTF-16 surrogates) and F4 (above U+10FFFF). */
    unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* Cuts n to at most max bytes without splitting a UTF-8 sequence, so a
 * truncated value does not end in a spurious U+FFFD. */
static size_t utf8_truncate(const char *s, size_t n, size_t max)
{
    size_t cut, back = 0;

    if (n <= max)
        return n;
    cut = max;
    while (cut > 0 && back < 3 && ((unsigned char)s[cut] & 0xC0) == 0x80) {
        cut--;
        back++;
    }
    /* Not inside a sequence after 3 steps: the bytes are invalid anyway and
     * will be replaced, so cut at the limit. */
    if (((unsigned char)s[cut] & 0xC0) == 0x80)
        cut = max;
    return cut;
}

/* Writes s[0..n) as a JSON string, quotes included. */
static void buf_put_json_str(log_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    buf_putc(b, '"');
    while (i < n) {
        size_t run = i;

        /* Copy plain printable ASCII in runs: the common case. */
        while (run < n && u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' &&
               u[run] != '\\')
            run++;
        if (run > i) {
            buf_put(b, s + i, run - i);
            i = run;
            continue;
        }
        if (u[i] == '"' || u[i] == '\\') {
            char esc[2] = { '\\', (char)u[i] };
            buf_put(b, esc, 2);
            i++;
        } else if (u[i] < 0x20 || u[i] == 0x7f) {
            /* DEL is legal JSON but escaping it keeps lines terminal-safe. */
            char esc[6] = { '\\', 'u', '0', '0', hex[u[i] >> 4],
                            hex[u[i] & 15] };
            buf_put(b, esc, 6);
            i++;
        } else {
            size_t len = utf8_seq_len(u + i, n - i);
            if (len == 0) {
                buf_put(b, "\\ufffd", 6);
                i++;
            } else {
                buf_put(b, s + i, len);
                i += len;
            }
        }
    }
    buf_putc(b, '"');
}

static void buf_put_time(log_buf *b)
{
    struct timespec ts;
    struct tm tm;
    char tmp[96]; /* room for any int, to keep -Wformat-truncation quiet */

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
    buf_puts(b, tmp);
}

/* One write(2) per line; the loop only continues after a signal or a
 * partial write (possible for lines above PIPE_BUF on a full pipe), and
 * gives up on real errors: there is nowhere else to report them. */
static void log_write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void log_emit(int level, const char *msg, const log_field *f, int nf)
{
    /* Sized for the worst case (about 24 KiB); every thread that logs has
     * at least the 8 MiB default stack or libuv's threadpool stack. */
    char line[LOG_LINE_MAX + 2];
    log_buf b = { line, 0, LOG_LINE_MAX };
    int saved_errno = errno; /* callers often log right before using errno */

    level = log_clamp(level);
    if (msg == NULL)
        msg = "";
    if (nf > LOG_MAX_FIELDS)
        nf = LOG_MAX_FIELDS;

    buf_puts(&b, "{\"time\":\"");
    buf_put_time(&b);
    buf_puts(&b, "\",\"level\":\"");
    buf_puts(&b, log_level_names[level]);
    buf_puts(&b, "\",\"msg\":");
    buf_put_json_str(&b, msg, utf8_truncate(msg, strnlen(msg, LOG_MSG_MAX + 1),
                                            LOG_MSG_MAX));

    for (int i = 0; f != NULL && i < nf; i++) {
        size_t klen, vlen;

        if (f[i].key == NULL || (!f[i].is_int && f[i].str == NULL))
            continue;
        klen = strnlen(f[i].key, LOG_KEY_MAX + 1);
        buf_putc(&b, ',');
        buf_put_json_str(&b, f[i].key,
                         utf8_truncate(f[i].key, klen, LOG_KEY_MAX));
        buf_putc(&b, ':');
        if (f[i].is_int) {
            char num[24];
            int n = snprintf(num, sizeof num, "%" PRId64, f[i].num);
            buf_put(&b, num, (size_t)n);
            continue;
        }
        /* Only the first LOG_VALUE_MAX + 1 bytes of a NUL-terminated value
         * are looked at: enough to know whether to truncate, and a huge
         * value costs no more than a short one. */
        if (f[i].len == (size_t)-1)
            vlen = strnlen(f[i].str, (size_t)LOG_VALUE_MAX + 1);
        else
            vlen = f[i].len;
        buf_put_json_str(&b, f[i].str,
                         utf8_truncate(f[i].str, vlen, LOG_VALUE_MAX));
    }

    /* The closing brace and newline always fit: cap excludes them. */
    line[b.len++] = '}';
    line[b.len++] = '\n';
    log_write_all(line, b.len);
    errno = saved_errno;
}

int log_gate_pass(log_gate *g, uint64_t now_s, uint32_t per_s,
                  const char *msg)
{
    if (now_s != g->second) {
        g->second = now_s;
        g->lines = 0;
    }
    if (g->lines >= per_s) {
        g->held++;
        return 0;
    }
    g->lines++;
    if (g->held) {
        log_info("log lines suppressed", LOG_STR("line", msg),
                 LOG_INT("count", g->held));
        g->held = 0;
    }
    return 1;
}
