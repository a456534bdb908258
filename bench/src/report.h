/*
 * A small streaming JSON writer for herald-bench reports: objects, arrays,
 * strings (escaped), integers, doubles (non-finite written as null) and
 * booleans, with commas and nesting handled by the writer. It writes into a
 * growing buffer, so a report is built completely before it is saved.
 */
#ifndef HERALD_BENCH_REPORT_H
#define HERALD_BENCH_REPORT_H

#include <stddef.h>
#include <stdint.h>

#define JW_MAX_DEPTH 16

typedef struct jw {
    char *buf;
    size_t len, cap;
    int depth;
    int first[JW_MAX_DEPTH];   /* no member written yet at this level */
    int after_key;             /* a key was written, its value is next */
} jw;

void jw_init(jw *w);
void jw_free(jw *w);
void jw_obj_begin(jw *w);
void jw_obj_end(jw *w);
void jw_arr_begin(jw *w);
void jw_arr_end(jw *w);
void jw_key(jw *w, const char *k);
void jw_str(jw *w, const char *s);
void jw_u64(jw *w, uint64_t v);
void jw_i64(jw *w, int64_t v);
void jw_dbl(jw *w, double v);
void jw_bool(jw *w, int v);
void jw_null(jw *w);

/* key + value shorthands */
void jw_kstr(jw *w, const char *k, const char *s);
void jw_ku64(jw *w, const char *k, uint64_t v);
void jw_ki64(jw *w, const char *k, int64_t v);
void jw_kdbl(jw *w, const char *k, double v);
void jw_kbool(jw *w, const char *k, int v);

/* Writes the buffer (plus a newline) to path ("-" = stdout). 0 or -1. */
int jw_save(const jw *w, const char *path);

#endif
