/* Streaming JSON writer for reports: see report.h. */
#include "report.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(jw *w, const char *s, size_t n)
{
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 1024;
        while (cap < w->len + n + 1)
            cap *= 2;
        w->buf = realloc(w->buf, cap);
        if (!w->buf)
            abort();   /* out of memory: the project's one policy */
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void puts_(jw *w, const char *s)
{
    put(w, s, strlen(s));
}

/* Before any value: a comma unless first at this level or after a key. */
static void sep(jw *w)
{
    if (w->after_key) {
        w->after_key = 0;
        return;
    }
    if (w->depth > 0) {
        if (!w->first[w->depth - 1])
            put(w, ",", 1);
        w->first[w->depth - 1] = 0;
    }
}

void jw_init(jw *w)
{
    memset(w, 0, sizeof(*w));
    put(w, "", 0);
}

void jw_free(jw *w)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
}

static void open_(jw *w, const char *c)
{
    sep(w);
    puts_(w, c);
    if (w->depth < JW_MAX_DEPTH)
        w->first[w->depth] = 1;
    w->depth++;
}

static void close_(jw *w, const char *c)
{
    if (w->depth > 0)
        w->depth--;
    puts_(w, c);
}

void jw_obj_begin(jw *w) { open_(w, "{"); }
void jw_obj_end(jw *w) { close_(w, "}"); }
void jw_arr_begin(jw *w) { open_(w, "["); }
void jw_arr_end(jw *w) { close_(w, "]"); }

static void str_(jw *w, const char *s)
{
    char u[8];
    put(w, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': puts_(w, "\\\""); break;
        case '\\': puts_(w, "\\\\"); break;
        case '\n': puts_(w, "\\n"); break;
        case '\r': puts_(w, "\\r"); break;
        case '\t': puts_(w, "\\t"); break;
        default:
            if (*p < 0x20) {
                snprintf(u, sizeof(u), "\\u%04x", *p);
                puts_(w, u);
            } else {
                put(w, (const char *)p, 1);
            }
        }
    }
    put(w, "\"", 1);
}

void jw_key(jw *w, const char *k)
{
    sep(w);
    str_(w, k);
    put(w, ":", 1);
    w->after_key = 1;
}

void jw_str(jw *w, const char *s)
{
    sep(w);
    if (!s)
        puts_(w, "null");
    else
        str_(w, s);
}

void jw_u64(jw *w, uint64_t v)
{
    char b[32];
    sep(w);
    snprintf(b, sizeof(b), "%" PRIu64, v);
    puts_(w, b);
}

void jw_i64(jw *w, int64_t v)
{
    char b[32];
    sep(w);
    snprintf(b, sizeof(b), "%" PRId64, v);
    puts_(w, b);
}

void jw_dbl(jw *w, double v)
{
    char b[64];
    sep(w);
    if (!isfinite(v)) {
        puts_(w, "null");
        return;
    }
    snprintf(b, sizeof(b), "%.6g", v);
    /* %g may print a bare exponent like 1e+06, which JSON allows. */
    puts_(w, b);
}

void jw_bool(jw *w, int v)
{
    sep(w);
    puts_(w, v ? "true" : "false");
}

void jw_null(jw *w)
{
    sep(w);
    puts_(w, "null");
}

void jw_kstr(jw *w, const char *k, const char *s) { jw_key(w, k); jw_str(w, s); }
void jw_ku64(jw *w, const char *k, uint64_t v) { jw_key(w, k); jw_u64(w, v); }
void jw_ki64(jw *w, const char *k, int64_t v) { jw_key(w, k); jw_i64(w, v); }
void jw_kdbl(jw *w, const char *k, double v) { jw_key(w, k); jw_dbl(w, v); }
void jw_kbool(jw *w, const char *k, int v) { jw_key(w, k); jw_bool(w, v); }

int jw_save(const jw *w, const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
    int rc = 0;
    if (!f)
        return -1;
    if (fwrite(w->buf, 1, w->len, f) != w->len || fputc('\n', f) == EOF)
        rc = -1;
    if (f != stdout) {
        if (fclose(f))
            rc = -1;
    } else {
        fflush(f);
    }
    return rc;
}
