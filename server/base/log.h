/*
 * Structured logging: one JSON object per line on stderr with "time" (RFC
 * 3339, UTC, milliseconds), "level", "msg" and optional fields (client,
 * channel, code, and free-form ones). Lines are written with one write(2) so
 * threads never interleave. Callers never pass secrets (tokens, keys) as
 * fields; log_field_str() truncates long values.
 */
#ifndef HERALD_LOG_H
#define HERALD_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Parses "debug", "info", "warn", "error"; returns -1 when unknown. */
int log_level_parse(const char *s);
/* The name of a level: "debug", "info", "warn" or "error". */
const char *log_level_name(int level);
void log_set_level(int level);
int log_enabled(int level);

/* A field list: up to LOG_MAX_FIELDS key/value pairs. */
#define LOG_MAX_FIELDS 8
typedef struct log_field {
    const char *key;
    int is_int;
    const char *str;    /* when !is_int; may be NULL (field skipped) */
    size_t len;         /* length of str; (size_t)-1 = NUL-terminated */
    int64_t num;        /* when is_int */
} log_field;

#define LOG_STR(k, v) ((log_field){ (k), 0, (v), (size_t)-1, 0 })
#define LOG_STRN(k, v, n) ((log_field){ (k), 0, (v), (n), 0 })
#define LOG_INT(k, v) ((log_field){ (k), 1, NULL, 0, (int64_t)(v) })

void log_emit(int level, const char *msg, const log_field *f, int nf);

#define log_at(lvl, msg, ...)                                                  \
    do {                                                                       \
        if (log_enabled(lvl)) {                                                \
            log_field f_[] = { LOG_STR(NULL, NULL), ##__VA_ARGS__ };           \
            log_emit((lvl), (msg), f_ + 1,                                     \
                     (int)(sizeof(f_) / sizeof(f_[0])) - 1);                   \
        }                                                                      \
    } while (0)
#define log_debug(msg, ...) log_at(LOG_DEBUG, msg, ##__VA_ARGS__)
#define log_info(msg, ...) log_at(LOG_INFO, msg, ##__VA_ARGS__)
#define log_warn(msg, ...) log_at(LOG_WARN, msg, ##__VA_ARGS__)
#define log_error(msg, ...) log_at(LOG_ERROR, msg, ##__VA_ARGS__)

/* A gate for lines a client can cause (refused tokens, slow consumers,
 * connection limits): at most per_s of them a second pass; the number held
 * back is logged ("log lines suppressed", with the message and count) with
 * the first line that passes afterwards. One gate per thread and message:
 * not locked. */
typedef struct log_gate {
    uint64_t second;
    uint32_t lines;
    uint32_t held;
} log_gate;

int log_gate_pass(log_gate *g, uint64_t now_s, uint32_t per_s,
                  const char *msg);

#endif
