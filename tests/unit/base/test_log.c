/*
 * Unit tests of server/log.c: every line is one JSON object that jansson
 * parses back to exactly what was logged (escaping of quotes, backslashes,
 * control characters, replacement of invalid UTF-8, truncation of long
 * values), the level filter, and that lines written concurrently by several
 * threads never interleave. stderr is captured through a pipe with dup2;
 * each Criterion test runs in its own process, so this is safe.
 */
#define _GNU_SOURCE /* strptime, timegm */
#include "base/log.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct capture {
    int saved_stderr;
    int rd;
} capture;

static void capture_start(capture *c)
{
    int p[2];

    cr_assert_eq(pipe(p), 0);
    c->saved_stderr = dup(STDERR_FILENO);
    cr_assert(c->saved_stderr >= 0);
    cr_assert(dup2(p[1], STDERR_FILENO) >= 0);
    close(p[1]);
    c->rd = p[0];
}

/* Reads until EOF on the pipe; returns a malloc'ed NUL-terminated string. */
static char *read_all(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);

    for (;;) {
        ssize_t n;
        if (cap - len < 2048) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* Restores stderr (which closes the pipe's last writer) and returns what
 * was written; small outputs fit the pipe buffer, so no reader thread. */
static char *capture_end(capture *c)
{
    char *out;

    dup2(c->saved_stderr, STDERR_FILENO);
    close(c->saved_stderr);
    out = read_all(c->rd);
    close(c->rd);
    return out;
}

/* Parses a captured output that must be exactly one line. */
static json_t *parse_one_line(const char *out, size_t flags)
{
    json_error_t jerr;
    size_t len = strlen(out);
    json_t *j;

    cr_assert(len > 0, "nothing was logged");
    cr_assert_eq(out[len - 1], '\n', "line not terminated: %s", out);
    cr_assert_eq(strchr(out, '\n'), out + len - 1, "more than one line: %s",
                 out);
    j = json_loadb(out, len - 1, flags, &jerr);
    cr_assert_not_null(j, "not JSON (%s): %s", jerr.text, out);
    cr_assert(json_is_object(j));
    return j;
}

static const char *str_field(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);

    cr_assert(json_is_string(v), "field %s missing or not a string", key);
    return json_string_value(v);
}

/* Logs one message with one string field and returns that field parsed. */
static char *roundtrip_field(log_field f)
{
    capture cap;
    char *out, *val;
    json_t *j;
    size_t len;

    log_set_level(LOG_INFO);
    capture_start(&cap);
    log_info("m", f);
    out = capture_end(&cap);
    j = parse_one_line(out, JSON_ALLOW_NUL);
    /* Copied with its length: the value may hold NUL bytes. */
    str_field(j, f.key);
    len = json_string_length(json_object_get(j, f.key));
    val = malloc(len + 1);
    memcpy(val, json_string_value(json_object_get(j, f.key)), len + 1);
    json_decref(j);
    free(out);
    return val;
}

Test(log, line_shape_and_fields)
{
    capture cap;
    char *out;
    json_t *j;
    const char *t;
    struct tm tm;
    time_t now = time(NULL), then;

    log_set_level(LOG_INFO);
    capture_start(&cap);
    log_info("client connected", LOG_STR("client", "c-1"),
             LOG_INT("code", 4001), LOG_INT("neg", -5),
             LOG_INT("big", INT64_MAX), LOG_INT("small", INT64_MIN),
             LOG_STRN("channel", "chat:room1xxx", 10));
    out = capture_end(&cap);

    cr_assert_eq(strncmp(out, "{\"time\":\"", 9), 0, "%s", out);
    j = parse_one_line(out, 0);
    cr_assert_eq(json_object_size(j), 9, "%s", out);
    cr_assert_str_eq(str_field(j, "level"), "info");
    cr_assert_str_eq(str_field(j, "msg"), "client connected");
    cr_assert_str_eq(str_field(j, "client"), "c-1");
    cr_assert_str_eq(str_field(j, "channel"), "chat:room1");
    cr_assert(json_is_integer(json_object_get(j, "code")));
    cr_assert_eq(json_integer_value(json_object_get(j, "code")), 4001);
    cr_assert_eq(json_integer_value(json_object_get(j, "neg")), -5);
    cr_assert_eq(json_integer_value(json_object_get(j, "big")), INT64_MAX);
    cr_assert_eq(json_integer_value(json_object_get(j, "small")), INT64_MIN);

    /* RFC 3339, UTC, milliseconds: 2026-11-25T06:30:00.123Z */
    t = str_field(j, "time");
    cr_assert_eq(strlen(t), 24, "%s", t);
    cr_assert_eq(t[10], 'T');
    cr_assert_eq(t[19], '.');
    cr_assert_eq(t[23], 'Z');
    for (int i = 20; i < 23; i++)
        cr_assert(t[i] >= '0' && t[i] <= '9', "%s", t);
    memset(&tm, 0, sizeof tm);
    cr_assert_not_null(strptime(t, "%Y-%m-%dT%H:%M:%S", &tm), "%s", t);
    then = timegm(&tm);
    cr_assert(then >= now - 5 && then <= now + 5, "%s is not now", t);
    json_decref(j);
    free(out);
}

Test(log, fixed_keys_come_first_in_order)
{
    capture cap;
    char *out;

    log_set_level(LOG_DEBUG);
    capture_start(&cap);
    log_warn("w", LOG_INT("n", 1));
    out = capture_end(&cap);
    cr_assert_not_null(strstr(out, "Z\",\"level\":\"warn\",\"msg\":\"w\","
                                   "\"n\":1}\n"), "%s", out);
    free(out);
}

Test(log, escaping)
{
    capture cap;
    char *out;
    json_t *j;
    const char *msg = "say \"hi\"\\ now\nnext\tline\r\x01\x1f\x7f end";

    log_set_level(LOG_INFO);
    capture_start(&cap);
    log_error(msg, LOG_STR("k\"ey", "v\\al\n"));
    out = capture_end(&cap);
    /* Raw form: quote and backslash escaped, control characters \u00XX. */
    cr_assert_not_null(strstr(out, "say \\\"hi\\\"\\\\ now\\u000anext"
                                   "\\u0009line\\u000d\\u0001\\u001f"
                                   "\\u007f end"), "%s", out);
    j = parse_one_line(out, 0);
    cr_assert_str_eq(str_field(j, "msg"), msg);
    cr_assert_str_eq(str_field(j, "k\"ey"), "v\\al\n");
    cr_assert_str_eq(str_field(j, "level"), "error");
    json_decref(j);
    free(out);
}

Test(log, embedded_nul_with_explicit_length)
{
    char *v = roundtrip_field(LOG_STRN("data", "a\0b", 3));

    cr_assert_eq(memcmp(v, "a\0b", 4), 0);
    free(v);
}

Test(log, valid_utf8_kept)
{
    const char *s =
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
    char *v = roundtrip_field(LOG_STR("s", s));

    cr_assert_str_eq(v, s);
    free(v);
}

Test(log, invalid_utf8_replaced)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        { "a\xff" "b", "a\xef\xbf\xbd" "b" },             /* never valid */
        { "end\xc3", "end\xef\xbf\xbd" },                  /* cut sequence */
        { "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },        /* overlong */
        { "\xe0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
        { "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* surr. */
        { "\xf4\x90\x80\x80",                              /* > U+10FFFF */
          "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
        { "\x80x", "\xef\xbf\xbdx" },                      /* lone cont. */
        { "\xe2\x82x", "\xef\xbf\xbd\xef\xbf\xbdx" },
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *v = roundtrip_field(LOG_STR("s", cases[i].in));
        cr_assert_str_eq(v, cases[i].want, "case %zu", i);
        free(v);
    }
}

Test(log, long_values_truncated_to_256_bytes)
{
    char big[1000], *v;

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    v = roundtrip_field(LOG_STR("v", big));
    cr_assert_eq(strlen(v), 256);
    free(v);

    /* Exactly 256 is kept whole. */
    big[256] = '\0';
    v = roundtrip_field(LOG_STR("v", big));
    cr_assert_eq(strlen(v), 256);
    free(v);

    /* A two-byte character across the limit is dropped, not split. */
    memset(big, 'x', 255);
    memcpy(big + 255, "\xc3\xa9yyyy", 7);
    v = roundtrip_field(LOG_STR("v", big));
    cr_assert_eq(strlen(v), 255);
    cr_assert_null(strstr(v, "\xef\xbf\xbd"));
    free(v);

    /* Explicit lengths are truncated the same way. */
    memset(big, 'z', 900);
    v = roundtrip_field(LOG_STRN("v", big, 900));
    cr_assert_eq(strlen(v), 256);
    free(v);
}

Test(log, null_fields_skipped_and_field_count_capped)
{
    capture cap;
    char *out;
    json_t *j;
    log_field f[LOG_MAX_FIELDS + 2];

    for (int i = 0; i < LOG_MAX_FIELDS + 2; i++) {
        static char names[LOG_MAX_FIELDS + 2][8];
        snprintf(names[i], sizeof names[i], "f%d", i);
        f[i] = LOG_INT(names[i], i);
    }
    f[1] = LOG_STR("user", NULL);
    f[2] = LOG_STR(NULL, "orphan");

    log_set_level(LOG_INFO);
    capture_start(&cap);
    log_emit(LOG_INFO, "capped", f, LOG_MAX_FIELDS + 2);
    out = capture_end(&cap);
    j = parse_one_line(out, 0);
    cr_assert_null(json_object_get(j, "user"));
    cr_assert_null(strstr(out, "orphan"));
    cr_assert_not_null(json_object_get(j, "f7"));
    cr_assert_null(json_object_get(j, "f8"), "%s", out);
    /* time, level, msg + fields 0, 3..7 */
    cr_assert_eq(json_object_size(j), 3 + LOG_MAX_FIELDS - 2, "%s", out);
    json_decref(j);
    free(out);
}

Test(log, level_filter)
{
    capture cap;
    char *out;

    cr_assert_eq(log_enabled(LOG_DEBUG), 0, "default level is info");
    cr_assert_neq(log_enabled(LOG_INFO), 0);

    log_set_level(LOG_WARN);
    cr_assert_eq(log_enabled(LOG_INFO), 0);
    cr_assert_neq(log_enabled(LOG_WARN), 0);
    cr_assert_neq(log_enabled(LOG_ERROR), 0);
    capture_start(&cap);
    log_debug("no");
    log_info("no", LOG_STR("a", "b"));
    log_warn("yes-warn");
    log_error("yes-error");
    out = capture_end(&cap);
    cr_assert_null(strstr(out, "\"no\""), "%s", out);
    cr_assert_not_null(strstr(out, "\"level\":\"warn\",\"msg\":\"yes-warn\""));
    cr_assert_not_null(
        strstr(out, "\"level\":\"error\",\"msg\":\"yes-error\""));
    free(out);

    log_set_level(LOG_DEBUG);
    capture_start(&cap);
    log_debug("dbg");
    out = capture_end(&cap);
    cr_assert_not_null(strstr(out, "\"level\":\"debug\",\"msg\":\"dbg\""));
    free(out);

    /* Out-of-range levels are clamped, never used as an index. */
    log_set_level(99);
    cr_assert_eq(log_enabled(LOG_WARN), 0);
    cr_assert_neq(log_enabled(LOG_ERROR), 0);
    log_set_level(-3);
    cr_assert_neq(log_enabled(LOG_DEBUG), 0);
    capture_start(&cap);
    log_emit(42, "clamped", NULL, 0);
    out = capture_end(&cap);
    cr_assert_not_null(strstr(out, "\"level\":\"error\",\"msg\":\"clamped\""),
                       "%s", out);
    free(out);
}

Test(log, level_parse)
{
    cr_assert_eq(log_level_parse("debug"), LOG_DEBUG);
    cr_assert_eq(log_level_parse("info"), LOG_INFO);
    cr_assert_eq(log_level_parse("warn"), LOG_WARN);
    cr_assert_eq(log_level_parse("error"), LOG_ERROR);
    cr_assert_eq(log_level_parse("WARN"), LOG_WARN);
    cr_assert_eq(log_level_parse("warning"), -1);
    cr_assert_eq(log_level_parse(""), -1);
    cr_assert_eq(log_level_parse(NULL), -1);
}

Test(log, errno_preserved)
{
    capture cap;
    char *out;

    log_set_level(LOG_INFO);
    capture_start(&cap);
    errno = ENOSPC;
    log_info("x");
    cr_assert_eq(errno, ENOSPC);
    out = capture_end(&cap);
    free(out);
}

Test(log, long_message_stays_one_valid_line)
{
    capture cap;
    char *out, *msg = malloc(5000);
    json_t *j;

    memset(msg, '"', 4999);
    msg[4999] = '\0';
    log_set_level(LOG_INFO);
    capture_start(&cap);
    log_info(msg, LOG_STR("k", msg), LOG_STR("k2", msg));
    out = capture_end(&cap);
    j = parse_one_line(out, 0);
    cr_assert_eq(strlen(str_field(j, "msg")), 1024);
    cr_assert_eq(strlen(str_field(j, "k")), 256);
    json_decref(j);
    free(out);
    free(msg);
}

/* ---- concurrency -------------------------------------------------------- */

#define THREADS 8
#define LINES 300

static void *logger_thread(void *arg)
{
    char val[200];
    long id = (long)arg;

    memset(val, 'a' + (int)id, sizeof val - 1);
    val[sizeof val - 1] = '\0';
    for (int i = 0; i < LINES; i++)
        log_info("concurrent", LOG_INT("thread", id), LOG_INT("i", i),
                 LOG_STR("pad", val));
    return NULL;
}

static void *reader_thread(void *arg)
{
    return read_all(*(int *)arg);
}

Test(log, threads_never_interleave)
{
    capture cap;
    pthread_t th[THREADS], rd;
    char *out, *line, *save = NULL;
    void *res;
    int seen[THREADS] = { 0 }, n = 0;

    log_set_level(LOG_INFO);
    capture_start(&cap);
    /* The output exceeds the pipe buffer, so read while writing. */
    pthread_create(&rd, NULL, reader_thread, &cap.rd);
    for (long t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, logger_thread, (void *)t);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    dup2(cap.saved_stderr, STDERR_FILENO);
    close(cap.saved_stderr);
    pthread_join(rd, &res);
    close(cap.rd);
    out = res;

    for (line = strtok_r(out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        json_int_t t;
        const char *pad;

        cr_assert_not_null(j, "interleaved or broken line: %s", line);
        t = json_integer_value(json_object_get(j, "thread"));
        cr_assert(t >= 0 && t < THREADS);
        pad = json_string_value(json_object_get(j, "pad"));
        cr_assert_eq(strlen(pad), 199);
        cr_assert_eq(pad[0], 'a' + t);
        cr_assert_eq(pad[198], 'a' + t);
        seen[t]++;
        n++;
        json_decref(j);
    }
    cr_assert_eq(n, THREADS * LINES);
    for (int t = 0; t < THREADS; t++)
        cr_assert_eq(seen[t], LINES);
    free(out);
}

/* A gate lets per_s lines a second through, holds back the rest and
 * reports how many with the first line it lets through afterwards. */
Test(log, gate_bounds_lines_and_counts_the_rest)
{
    log_gate g = { 0 };
    capture cap;
    char *out;
    json_t *j;
    int passed = 0;

    log_set_level(LOG_INFO);
    for (int i = 0; i < 25; i++)
        passed += log_gate_pass(&g, 100, 10, "flood");
    cr_assert_eq(passed, 10);
    cr_assert_eq(g.held, 15);

    capture_start(&cap);
    cr_assert(log_gate_pass(&g, 101, 10, "flood"));
    out = capture_end(&cap);
    j = parse_one_line(out, 0);
    cr_assert_str_eq(str_field(j, "msg"), "log lines suppressed");
    cr_assert_str_eq(str_field(j, "line"), "flood");
    cr_assert_eq(json_integer_value(json_object_get(j, "count")), 15);
    cr_assert_eq(g.held, 0);
    json_decref(j);
    free(out);

    /* The new second has its own allowance (one used above). */
    passed = 0;
    for (int i = 0; i < 20; i++)
        passed += log_gate_pass(&g, 101, 10, "flood");
    cr_assert_eq(passed, 9);
}
