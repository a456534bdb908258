/*
 * Configuration loading: built-in defaults, then a libconfig file, then
 * HERALD_* environment variables, then command-line overrides, each later
 * source winning. Every key is described once, in a table (name, type,
 * range, field offset), and the three sources only differ in how they turn
 * their text into a typed value; checking and storing are shared, so a range
 * is enforced identically wherever a value comes from. Loading never stops
 * at the first problem: it collects one line per problem ("WHERE: key 'K':
 * problem") so an operator fixes a broken file in one pass. The result is
 * written to the caller's struct only when everything is valid.
 *
 * Namespaces: namespaces[0] (name "") holds `namespace_defaults`, used by
 * channels without ':' and inherited by every named namespace for the keys
 * that namespace does not set itself. Inheritance is resolved once, after
 * the file and the environment have both been applied, so that an
 * environment override of a default reaches every namespace that did not
 * set that key, whichever source defined the namespace.
 */
#include "base/config.h"
#include "base/log.h"

#include <herald/proto.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libconfig.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- key table ---------------------------------------------------------- */

enum key_type {
    KT_UINT,    /* uint32_t within [min, max] */
    KT_BOOL,    /* int, 0 or 1 */
    KT_STR,     /* char[size], NUL-terminated, optional charset check */
    KT_LEVEL,   /* int, a log level name in the file/env/CLI */
    KT_ACK,     /* int, "broker" (0) or "durable" (1) */
    KT_LISTEN,  /* "HOST:PORT" into a config_listen; min 1: "" = off */
    KT_REDIS,   /* redis:// URIs (comma-separated, or a list in the file) */
    KT_DIR,     /* a readable directory, stored as its absolute real path;
                   "" = off; relative: to the file's folder, else to the
                   working directory */
};

typedef struct key_def {
    const char *name;
    enum key_type type;
    size_t off;         /* offset of the field in config or config_ns */
    size_t size;        /* sizeof the field (capacity for strings) */
    uint32_t min, max;  /* KT_UINT only */
    /* KT_STR only: NULL when the value is fine, else the problem. Plain
     * strings are never quoted back in messages: token_secret is one. */
    const char *(*check)(const char *s);
} key_def;

#define FIELD(T, f) offsetof(T, f), sizeof(((T *)0)->f)
#define UINT_KEY(T, f, lo, hi) { #f, KT_UINT, FIELD(T, f), lo, hi, NULL }
#define BOOL_KEY(T, f) { #f, KT_BOOL, FIELD(T, f), 0, 1, NULL }

static const char *check_node_name(const char *s);
static const char *check_metrics_key(const char *k);
static const char *check_prefix(const char *s);
static const char *check_mongo_name(const char *s);
static const char *check_mongo_uri(const char *s);
static const char *check_key_file(const char *s);
static const char *check_jwks(const char *s);
static const char *check_url(const char *s);

/* Ranges: wide enough for any real deployment, narrow enough to catch unit
 * mistakes (milliseconds where seconds are expected, bytes where KiB were
 * meant) and values that would make the server misbehave (a 0-byte send
 * queue, a 0-second ping interval). */
static const key_def top_keys[] = {
    { "listen", KT_LISTEN, FIELD(config, listen), 0, 0, NULL },
    UINT_KEY(config, workers, 0, 256),
    { "log_level", KT_LEVEL, FIELD(config, log_level), 0, 0, NULL },
    { "node_name", KT_STR, FIELD(config, node_name), 0, 0, check_node_name },
    UINT_KEY(config, max_connections, 0, 10000000),
    UINT_KEY(config, max_connections_per_ip, 0, 10000000),
    UINT_KEY(config, connection_rate_per_ip, 0, 1000000),
    UINT_KEY(config, max_message_size, 256, 16777216),
    UINT_KEY(config, max_channels_per_conn, 1, 100000),
    UINT_KEY(config, max_channels, 1, 1000000000),
    UINT_KEY(config, history_memory_mb, 1, 1048576),
    UINT_KEY(config, send_queue_max, 4096, 1073741824),
    UINT_KEY(config, max_batch_bytes, 1024, 16777216),
    UINT_KEY(config, history_max_limit, 1, 1000000),
    UINT_KEY(config, recovery_max, 1, 1000000),
    UINT_KEY(config, ping_interval, 1, 3600),
    UINT_KEY(config, pong_timeout, 1, 3600),
    UINT_KEY(config, shutdown_timeout, 0, 3600),
    UINT_KEY(config, handshake_timeout, 1, 3600),
    UINT_KEY(config, rate_limit, 0, 1000000),
    UINT_KEY(config, rate_burst, 1, 1000000),
    UINT_KEY(config, worker_queue_max, 64, 67108864),
    UINT_KEY(config, idempotency_window, 0, 86400),
    UINT_KEY(config, idempotency_max, 1, 10000000),
    { "token_secret", KT_STR, FIELD(config, token_secret), 0, 0, NULL },
    { "token_public_key", KT_STR, FIELD(config, token_public_key), 0, 0,
      check_key_file },
    { "token_jwks", KT_STR, FIELD(config, token_jwks), 0, 0, check_jwks },
    UINT_KEY(config, token_jwks_refresh, 1, 86400),
    UINT_KEY(config, token_jwks_timeout_ms, 100, 60000),
    { "proxy_connect_url", KT_STR, FIELD(config, proxy_connect_url), 0, 0,
      check_url },
    { "proxy_refresh_url", KT_STR, FIELD(config, proxy_refresh_url), 0, 0,
      check_url },
    { "proxy_subscribe_url", KT_STR, FIELD(config, proxy_subscribe_url), 0, 0,
      check_url },
    { "proxy_publish_url", KT_STR, FIELD(config, proxy_publish_url), 0, 0,
      check_url },
    UINT_KEY(config, proxy_timeout_ms, 100, 60000),
    UINT_KEY(config, proxy_max_pending, 1, 1000000),
    { "token_audience", KT_STR, FIELD(config, token_audience), 0, 0, NULL },
    { "token_issuer", KT_STR, FIELD(config, token_issuer), 0, 0, NULL },
    UINT_KEY(config, token_leeway, 0, 300),
    BOOL_KEY(config, allow_anonymous),
    { "tls_cert", KT_STR, FIELD(config, tls_cert), 0, 0, NULL },
    { "tls_key", KT_STR, FIELD(config, tls_key), 0, 0, NULL },
    { "tls_listen", KT_LISTEN, FIELD(config, tls_listen), 1, 0, NULL },
    { "tls_client_ca", KT_STR, FIELD(config, tls_client_ca), 0, 0, NULL },
    { "redis", KT_REDIS, FIELD(config, redis), 0, 0, NULL },
    { "redis_prefix", KT_STR, FIELD(config, redis_prefix), 0, 0,
      check_prefix },
    UINT_KEY(config, redis_timeout_ms, 50, 600000),
    UINT_KEY(config, presence_ttl, 2, 86400),
    UINT_KEY(config, stream_ttl, 60, 315360000),
    { "mongodb", KT_STR, FIELD(config, mongodb), 0, 0, check_mongo_uri },
    { "mongodb_database", KT_STR, FIELD(config, mongodb_database), 0, 0,
      check_mongo_name },
    { "mongodb_collection", KT_STR, FIELD(config, mongodb_collection), 0, 0,
      check_mongo_name },
    UINT_KEY(config, mongodb_writers, 1, 64),
    UINT_KEY(config, mongodb_queue_max, 64, 16777216),
    UINT_KEY(config, mongodb_batch, 1, 10000),
    UINT_KEY(config, mongodb_readers, 1, 64),
    { "mongodb_spill_path", KT_STR, FIELD(config, mongodb_spill_path), 0, 0,
      NULL },
    UINT_KEY(config, mongodb_spill_mb, 0, 1048576),
    UINT_KEY(config, durable_ack_timeout_ms, 100, 600000),
    UINT_KEY(config, retention_interval, 1, 86400),
    { "api_listen", KT_LISTEN, FIELD(config, api_listen), 1, 0, NULL },
    UINT_KEY(config, api_max_body, 1024, 67108864),
    UINT_KEY(config, api_timeout_ms, 100, 600000),
    BOOL_KEY(config, api_tls),
    { "api_client_ca", KT_STR, FIELD(config, api_client_ca), 0, 0, NULL },
    BOOL_KEY(config, metrics),
    { "metrics_key", KT_STR, FIELD(config, metrics_key), 0, 0,
      check_metrics_key },
    { "webhook_secret", KT_STR, FIELD(config, webhook_secret), 0, 0, NULL },
    UINT_KEY(config, webhook_timeout_ms, 100, 600000),
    UINT_KEY(config, webhook_queue_max, 1, 10000000),
    UINT_KEY(config, webhook_max_attempts, 1, 100),
    UINT_KEY(config, webhook_drain_ms, 0, 600000),
    { "static_dir", KT_DIR, FIELD(config, static_dir), 0, 0, NULL },
    /* 1 KiB to 16 MiB: a file is read on the worker loop (web/site.c) */
    UINT_KEY(config, static_max_file, 1024, 16777216),
};
#define N_TOP_KEYS (sizeof top_keys / sizeof top_keys[0])

/* The index of a key in this table is its bit in loader.ns_set. */
static const key_def ns_keys[] = {
    UINT_KEY(config_ns, history_size, 0, 1000000),
    UINT_KEY(config_ns, history_ttl, 0, 315360000), /* ten years */
    BOOL_KEY(config_ns, presence),
    BOOL_KEY(config_ns, join_leave),
    BOOL_KEY(config_ns, allow_publish),
    BOOL_KEY(config_ns, allow_anonymous),
    UINT_KEY(config_ns, max_subscribers, 0, 10000000),
    BOOL_KEY(config_ns, durable),
    { "ack", KT_ACK, FIELD(config_ns, ack_durable), 0, 0, NULL },
    UINT_KEY(config_ns, retention_age, 0, 315360000),
    UINT_KEY(config_ns, retention_count, 0, 1000000000),
    BOOL_KEY(config_ns, private),
    BOOL_KEY(config_ns, publish_open),
    BOOL_KEY(config_ns, user_channels),
    BOOL_KEY(config_ns, proxy_subscribe),
    BOOL_KEY(config_ns, proxy_publish),
    BOOL_KEY(config_ns, proxy_fail_open),
    BOOL_KEY(config_ns, publication_webhook),
};
#define N_NS_KEYS (sizeof ns_keys / sizeof ns_keys[0])

/* Variables that start with HERALD_ but are not configuration keys. */
static const char *const env_ignored[] = { "HERALD_CONFIG", "HERALD_BIN",
                                           "HERALD_SANITIZE" };

/* ---- error collection --------------------------------------------------- */

/* Problems accumulate in the caller's buffer, one per line, each ending in
 * '\n' (so `fputs(errbuf, stderr)` prints them as they are). A line that
 * does not fit is cut but keeps its '\n'; the buffer is always
 * NUL-terminated. `count`, not the text, decides success, so a small buffer
 * never hides a failure. */
typedef struct errs {
    char *buf;
    size_t cap;
    size_t used;   /* always <= cap - 1, so the NUL fits */
    int count;
} errs;

static void errs_init(errs *e, char *buf, size_t cap)
{
    e->buf = (buf != NULL && cap > 0) ? buf : NULL;
    e->cap = cap;
    e->used = 0;
    e->count = 0;
    if (e->buf != NULL)
        e->buf[0] = '\0';
}

static void errs_line(errs *e, const char *line)
{
    size_t n, room;

    e->count++;
    if (e->buf == NULL || e->cap - e->used < 2)
        return;
    room = e->cap - e->used - 2; /* keep space for '\n' and NUL */
    n = strlen(line);
    if (n > room)
        n = room;
    memcpy(e->buf + e->used, line, n);
    e->used += n;
    e->buf[e->used++] = '\n';
    e->buf[e->used] = '\0';
}

/* Adds "WHERE: key 'KEY': PROBLEM", or "WHERE: PROBLEM" when key is NULL. */
static void __attribute__((format(printf, 4, 5)))
err_key(errs *e, const char *where, const char *key, const char *fmt, ...)
{
    char problem[768], line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    if (key != NULL)
        snprintf(line, sizeof line, "%s: key '%s': %s", where, key, problem);
    else
        snprintf(line, sizeof line, "%s: %s", where, problem);
    errs_line(e, line);
}

/* A value quoted back in a message: at most 48 bytes, control and
 * non-ASCII bytes shown as '?', so an error line stays one printable line
 * whatever the operator typed. Secrets never get here (see key_def). */
static const char *show_value(const char *v, char *out, size_t cap)
{
    size_t i, n = 0, max = cap - 4 < 48 ? cap - 4 : 48;

    for (i = 0; v[i] != '\0' && n < max; i++)
        out[n++] = (v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : '?';
    if (v[i] != '\0') {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

static const char *setting_type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a floating-point number";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    default: return "nothing";
    }
}

/* ---- key lookup and suggestions ----------------------------------------- */

static const key_def *key_find(const key_def *keys, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* Matches an environment spelling: the key upper-cased, exactly. */
static const key_def *key_find_env(const key_def *keys, size_t n,
                                   const char *s, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        const char *k = keys[i].name;
        size_t j;

        if (strlen(k) != len)
            continue;
        for (j = 0; j < len; j++)
            if (toupper((unsigned char)k[j]) != s[j])
                break;
        if (j == len)
            return &keys[i];
    }
    return NULL;
}

/* Levenshtein distance, for "did you mean" hints; words over 63 bytes are
 * never close to a key. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];

    if (la > 63 || lb > 63)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest key name (or extra word) within two edits, or NULL. */
static const char *suggest(const char *word, const key_def *keys, size_t n,
                           const char *const *extra, size_t n_extra)
{
    const char *best = NULL;
    size_t best_d = 3, len = strlen(word);

    if (len < 3)
        return NULL;
    for (size_t i = 0; i < n + n_extra; i++) {
        const char *cand = i < n ? keys[i].name : extra[i - n];
        size_t clen = strlen(cand);
        /* The distance is at least the difference in length: a candidate
         * that cannot beat best_d needs no table. */
        if ((len > clen ? len - clen : clen - len) >= best_d)
            continue;
        size_t d = edit_distance(word, cand);
        if (d < best_d && d < len / 2) {
            best_d = d;
            best = cand;
        }
    }
    return best;
}

static const char *const top_groups[] = { "namespace_defaults", "namespaces",
                                          "api_keys", "webhooks" };
#define N_TOP_GROUPS (sizeof top_groups / sizeof top_groups[0])

/* Reports an unknown key with a hint; `env_prefix` non-NULL means the hint
 * is spelt as a variable (prefix + KEY upper-cased). */
static void err_unknown(errs *e, const char *where, const char *label,
                        const char *word, const key_def *keys, size_t n,
                        const char *const *extra, size_t n_extra,
                        const char *env_prefix)
{
    const char *hint = suggest(word, keys, n, extra, n_extra);
    char up[80];

    if (hint == NULL) {
        err_key(e, where, label, "unknown key");
    } else if (env_prefix != NULL) {
        size_t i;
        for (i = 0; hint[i] != '\0' && i < sizeof up - 1; i++)
            up[i] = (char)toupper((unsigned char)hint[i]);
        up[i] = '\0';
        err_key(e, where, label, "unknown key (did you mean %s%s?)",
                env_prefix, up);
    } else {
        err_key(e, where, label, "unknown key (did you mean '%s'?)", hint);
    }
}

/* ---- value checks ------------------------------------------------------- */

/* 1 when each of the n bytes of s is a letter, a digit or one of extra. */
static int chars_ok(const char *s, size_t n, const char *extra)
{
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) &&
            (s[i] == '\0' || !strchr(extra, s[i])))
            return 0;
    return 1;
}

/* A name of letters, digits and `extra`; empty when allow_empty. */
static const char *check_name(const char *s, const char *extra,
                              int allow_empty, const char *msg)
{
    if (*s == '\0' && !allow_empty)
        return "must not be empty";
    return chars_ok(s, strlen(s), extra) ? NULL : msg;
}

static const char *check_node_name(const char *s)
{
    return check_name(s, "_-.", 1,
                      "may only contain letters, digits, '_', '-' and '.'");
}

/* The characters of a host name (addresses are checked apart). */
#define HOST_CHARS ".-_"

/* Namespace names follow the channel charset minus ':' (protocol-v1.md),
 * since a namespace is the part of a channel name before the first ':'. */
#define NS_NAME_CHARS "_.@/=-"

static int ns_name_check(const char *name, size_t len, char *prob,
                         size_t cap)
{
    if (len == 0) {
        snprintf(prob, cap, "empty namespace name");
        return -1;
    }
    if (len >= CONFIG_NS_NAME_MAX) {
        snprintf(prob, cap, "namespace name too long (%zu bytes, at most %d)",
                 len, CONFIG_NS_NAME_MAX - 1);
        return -1;
    }
    if (!chars_ok(name, len, NS_NAME_CHARS)) {
        snprintf(prob, cap,
                 "invalid character in namespace name (allowed: letters, "
                 "digits and _ . @ / = -)");
        return -1;
    }
    return 0;
}

/* Fully numeric: one or more ASCII digits and nothing else (no sign, no
 * spaces, no hex), so "10s" or "1e3" in the environment is an error instead
 * of a surprise. Returns 0, -1 when not numeric, 1 when above UINT64_MAX. */
static int parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    int overflow = 0;

    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        unsigned d;
        if (*s < '0' || *s > '9')
            return -1;
        d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = 1;
        else
            v = v * 10 + d;
    }
    *out = v;
    return overflow;
}

static int parse_bool(const char *s)
{
    static const char *const yes[] = { "true", "1", "yes", "on" };
    static const char *const no[] = { "false", "0", "no", "off" };

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

static int all_digits_dots(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]) && s[i] != '.')
            return 0;
    return 1;
}

/* "HOST:PORT" or "[IPV6]:PORT". The host is stored without brackets, ready
 * for getaddrinfo(). Host names are only checked for their charset: whether
 * they resolve is the listener's business, at bind time. */
static int parse_listen(const char *v, char *host, size_t hostcap,
                        uint16_t *port, char *prob, size_t cap)
{
    const char *h, *hend, *p;
    size_t hlen;
    uint64_t pnum;

    if (*v == '\0') {
        snprintf(prob, cap, "empty; expected HOST:PORT (e.g. 0.0.0.0:8080)");
        return -1;
    }
    if (*v == '[') {
        char addr[64];
        char *zone;

        h = v + 1;
        hend = strchr(h, ']');
        if (hend == NULL) {
            snprintf(prob, cap, "missing ']' after the IPv6 address");
            return -1;
        }
        hlen = (size_t)(hend - h);
        if (hend[1] != ':') {
            snprintf(prob, cap, "expected ':PORT' after ']'");
            return -1;
        }
        p = hend + 2;
        if (hlen == 0 || hlen >= sizeof addr) {
            snprintf(prob, cap, "invalid IPv6 address");
            return -1;
        }
        memcpy(addr, h, hlen);
        addr[hlen] = '\0';
        /* A zone ("fe80::1%eth0") is allowed; inet_pton does not take it. */
        zone = strchr(addr, '%');
        if (zone != NULL) {
            *zone++ = '\0';
            if (*zone == '\0' || check_node_name(zone) != NULL) {
                snprintf(prob, cap, "invalid IPv6 zone");
                return -1;
            }
        }
        {
            unsigned char bin[16];
            if (inet_pton(AF_INET6, addr, bin) != 1) {
                snprintf(prob, cap, "invalid IPv6 address");
                return -1;
            }
        }
    } else {
        const char *colon = strrchr(v, ':');

        if (colon == NULL) {
            snprintf(prob, cap,
                     "missing ':PORT' (expected HOST:PORT, e.g. 0.0.0.0:8080)");
            return -1;
        }
        h = v;
        hend = colon;
        hlen = (size_t)(hend - h);
        p = colon + 1;
        if (memchr(h, ':', hlen) != NULL) {
            snprintf(prob, cap,
                     "IPv6 addresses must be in brackets (e.g. [::1]:8080)");
            return -1;
        }
        if (hlen == 0) {
            snprintf(prob, cap, "missing host (use 0.0.0.0 for every IPv4 "
                                "interface, [::] for every interface)");
            return -1;
        }
        if (hlen > 253) {
            snprintf(prob, cap, "host name too long (at most 253 bytes)");
            return -1;
        }
        if (!chars_ok(h, hlen, HOST_CHARS)) {
            snprintf(prob, cap, "invalid character in host name");
            return -1;
        }
        if (all_digits_dots(h, hlen)) {
            char addr[256];
            unsigned char bin[4];
            memcpy(addr, h, hlen);
            addr[hlen] = '\0';
            if (inet_pton(AF_INET, addr, bin) != 1) {
                snprintf(prob, cap, "invalid IPv4 address");
                return -1;
            }
        }
    }
    if (*p == '\0') {
        snprintf(prob, cap, "missing port after ':'");
        return -1;
    }
    if (parse_uint(p, &pnum) != 0 || pnum > 65535) {
        snprintf(prob, cap,
                 "port must be a number 0..65535 (0 = any free port)");
        return -1;
    }
    if (hlen >= hostcap) {
        snprintf(prob, cap, "host name too long");
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)pnum;
    return 0;
}

/* Key files are read once at start (auth/jwt.h checks their content);
 * here only that they can be read, so the error names the line. */
static const char *check_key_file(const char *s)
{
    struct stat st;
    if (!s[0])
        return NULL;
    if (stat(s, &st) != 0 || !S_ISREG(st.st_mode))
        return "not a readable file";
    FILE *f = fopen(s, "r");
    if (!f)
        return "not a readable file";
    fclose(f);
    return NULL;
}

int config_is_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* A JWKS file, or a URL fetched at run time (auth/keyring.h). */
static const char *check_jwks(const char *s)
{
    if (!config_is_url(s))
        return check_key_file(s);
    if (strlen(s) < 10 || strpbrk(s, " \t\r\n"))
        return "not a URL";
    return NULL;
}

/* An http(s) URL, or "" (off). */
static const char *check_url(const char *s)
{
    if (!s[0])
        return NULL;
    if (!config_is_url(s) || strlen(s) < 10 || strpbrk(s, " \t\r\n"))
        return "not an http:// or https:// URL";
    return NULL;
}

static const char *check_prefix(const char *s)
{
    return check_name(s, "_-.:", 0,
                      "only letters, digits and _ - . : are allowed");
}

static const char *check_mongo_name(const char *s)
{
    return check_name(s, "_-", 0, "only letters, digits, _ and - are allowed");
}

/* The number in the n bytes at p (parse_uint's rules). */
static int parse_uint_span(const char *p, size_t n, uint64_t *out)
{
    char num[24];
    if (n == 0 || n >= sizeof(num))
        return -1;
    memcpy(num, p, n);
    num[n] = '\0';
    return parse_uint(num, out);
}

/* The driver parses the URI itself at start-up; this catches the obvious
 * slips early, without quoting the value (it may hold a password). */
static const char *check_mongo_uri(const char *s)
{
    if (*s == '\0')
        return NULL;
    if (strncmp(s, "mongodb://", 10) != 0 &&
        strncmp(s, "mongodb+srv://", 14) != 0)
        return "expected mongodb://[user:password@]host[:port][/?options]";
    return NULL;
}

/* One redis://[:password@]host[:port][/db] (len bytes of v). The password
 * is never quoted back in messages. */
static int parse_redis_uri(const char *v, size_t len, config_redis *out,
                           char *prob, size_t cap)
{
    static const char scheme[] = "redis://";
    const char *p = v, *end = v + len, *at, *hs, *he, *colon, *slash;
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (len < sizeof(scheme) - 1 || memcmp(v, scheme, sizeof(scheme) - 1)) {
        snprintf(prob, cap, "expected redis://[:password@]host[:port][/db]");
        return -1;
    }
    p += sizeof(scheme) - 1;
    at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        /* [user]:password@ ; only the password is used (AUTH). */
        const char *pc = memchr(p, ':', (size_t)(at - p));
        const char *pw = pc ? pc + 1 : p;
        if ((size_t)(at - pw) >= sizeof(out->password) || at == pw) {
            snprintf(prob, cap, "password empty or too long");
            return -1;
        }
        memcpy(out->password, pw, (size_t)(at - pw));
        p = at + 1;
    }
    slash = memchr(p, '/', (size_t)(end - p));
    he = slash ? slash : end;
    colon = memchr(p, ':', (size_t)(he - p));
    hs = p;
    if (colon) {
        uint64_t port = 0;
        if (parse_uint_span(colon + 1, (size_t)(he - colon - 1), &port) != 0 ||
            port == 0 || port > 65535) {
            snprintf(prob, cap, "port must be a number 1..65535");
            return -1;
        }
        out->port = (uint16_t)port;
        he = colon;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof(out->host)) {
        snprintf(prob, cap, "missing or too long host");
        return -1;
    }
    if (!chars_ok(hs, (size_t)(he - hs), HOST_CHARS)) {
        snprintf(prob, cap, "invalid character in host name");
        return -1;
    }
    memcpy(out->host, hs, (size_t)(he - hs));
    if (slash && slash + 1 < end) {
        uint64_t db;
        if (parse_uint_span(slash + 1, (size_t)(end - slash - 1), &db) != 0 ||
            db > 1000) {
            snprintf(prob, cap, "database must be a number 0..1000");
            return -1;
        }
        out->db = (uint32_t)db;
    }
    return 0;
}

/* A comma-separated list of URIs; replaces the configured list. */
static int parse_redis_list(const char *v, config *c, char *prob, size_t cap)
{
    config_redis list[CONFIG_REDIS_MAX];
    uint32_t n = 0;
    const char *p = v;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && (*p == ' ')) {
            p++;
            len--;
        }
        while (len && p[len - 1] == ' ')
            len--;
        if (n == CONFIG_REDIS_MAX) {
            snprintf(prob, cap, "at most %d Redis servers", CONFIG_REDIS_MAX);
            return -1;
        }
        if (len == 0 || parse_redis_uri(p, len, &list[n], prob, cap) < 0) {
            if (len == 0)
                snprintf(prob, cap, "empty URI in the list");
            return -1;
        }
        n++;
        p = comma ? comma + 1 : p + len;
        if (comma && !*p) {
            snprintf(prob, cap, "empty URI in the list");
            return -1;
        }
    }
    memcpy(c->redis, list, sizeof(list[0]) * n);
    c->n_redis = n;
    return 0;
}

/* ---- storing values ----------------------------------------------------- */

/* Every store_* checks first and writes only a valid value, so a failed
 * config_set() leaves the struct as it was. `base` is a config or a
 * config_ns, matching the table the key comes from. */

static int store_uint(const key_def *k, void *base, int64_t v,
                      const char *where, const char *label, errs *e)
{
    if (v < (int64_t)k->min || v > (int64_t)k->max) {
        err_key(e, where, label, "%" PRId64 " is out of range (%" PRIu32
                "..%" PRIu32 ")", v, k->min, k->max);
        return -1;
    }
    *(uint32_t *)((char *)base + k->off) = (uint32_t)v;
    return 0;
}

static void store_bool(const key_def *k, void *base, int v)
{
    *(int *)((char *)base + k->off) = v != 0;
}

/* The string-valued kinds: plain strings, the log level and the address. */
static int store_string(const key_def *k, void *base, const char *s,
                        const char *where, const char *label, errs *e)
{
    char shown[64], prob[160];
    size_t len = strlen(s);

    switch (k->type) {
    case KT_LEVEL: {
        int lvl = log_level_parse(s);
        if (lvl < 0) {
            err_key(e, where, label, "unknown log level '%s' (expected "
                    "debug, info, warn or error)",
                    show_value(s, shown, sizeof shown));
            return -1;
        }
        *(int *)((char *)base + k->off) = lvl;
        return 0;
    }
    case KT_ACK:
        if (strcmp(s, "broker") != 0 && strcmp(s, "durable") != 0) {
            err_key(e, where, label, "unknown ack mode '%s' (expected "
                    "broker or durable)", show_value(s, shown, sizeof shown));
            return -1;
        }
        *(int *)((char *)base + k->off) = s[0] == 'd';
        return 0;
    case KT_LISTEN: {
        config_listen *l = (config_listen *)((char *)base + k->off);
        char host[sizeof l->host];
        uint16_t port;
        if (len == 0 && k->min == 1) {
            l->host[0] = '\0';
            l->port = 0;
            return 0;
        }
        if (parse_listen(s, host, sizeof host, &port, prob, sizeof prob) < 0) {
            err_key(e, where, label, "invalid address '%s': %s",
                    show_value(s, shown, sizeof shown), prob);
            return -1;
        }
        memcpy(l->host, host, strlen(host) + 1);
        l->port = port;
        return 0;
    }
    case KT_REDIS:
        if (parse_redis_list(s, base, prob, sizeof prob) < 0) {
            /* The value may hold a password: only the problem is shown. */
            err_key(e, where, label, "invalid Redis URI: %s", prob);
            return -1;
        }
        return 0;
    default: {
        const char *problem;
        if (len >= k->size) {
            err_key(e, where, label, "too long (%zu bytes, at most %zu)", len,
                    k->size - 1);
            return -1;
        }
        problem = k->check != NULL ? k->check(s) : NULL;
        if (problem != NULL) {
            err_key(e, where, label, "%s", problem);
            return -1;
        }
        memcpy((char *)base + k->off, s, len + 1);
        return 0;
    }
    }
}

/* A value from the file: libconfig has typed it, and the type must match
 * exactly (no "25" for an integer, no 1 for a boolean). */
/* KT_DIR: v relative to base_dir (NULL: the working directory) must be a
 * directory Herald can open and list; its real path (no symlinks, no
 * "..") is stored, so the server never depends on its working directory
 * and the log says which directory is served. */
static int store_dir(const key_def *k, void *base, const char *v,
                     const char *base_dir, const char *where,
                     const char *label, errs *e)
{
    char joined[PATH_MAX], real[PATH_MAX];
    char *dst = (char *)base + k->off;

    if (v[0] == '\0') {
        dst[0] = '\0';
        return 0;
    }
    int n = v[0] == '/' || base_dir == NULL
                ? snprintf(joined, sizeof joined, "%s", v)
                : snprintf(joined, sizeof joined, "%s/%s", base_dir, v);
    if (n < 0 || (size_t)n >= sizeof joined) {
        err_key(e, where, label, "path too long");
        return -1;
    }
    int fd = open(joined, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || realpath(joined, real) == NULL) {
        err_key(e, where, label, "cannot open directory '%s': %s", joined,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    if (strlen(real) >= k->size) {
        err_key(e, where, label, "path too long (at most %zu bytes)",
                k->size - 1);
        return -1;
    }
    memcpy(dst, real, strlen(real) + 1);
    return 0;
}

/* The folder of the file a setting was read from (an @include's, if it
 * came from one), for KT_DIR; "." for a file given without one. */
static void setting_dir(const config_setting_t *s, char *out, size_t cap)
{
    const char *file = config_setting_source_file(s);
    const char *slash = file != NULL ? strrchr(file, '/') : NULL;
    if (slash == NULL)
        snprintf(out, cap, ".");
    else if (slash == file)
        snprintf(out, cap, "/");
    else
        snprintf(out, cap, "%.*s", (int)(slash - file), file);
}

static int apply_setting(const key_def *k, void *base,
                         const config_setting_t *s, const char *where,
                         const char *label, errs *e)
{
    int type = config_setting_type(s);

    switch (k->type) {
    case KT_UINT:
        if (type == CONFIG_TYPE_INT)
            return store_uint(k, base, config_setting_get_int(s), where,
                              label, e);
        if (type == CONFIG_TYPE_INT64)
            return store_uint(k, base, config_setting_get_int64(s), where,
                              label, e);
        err_key(e, where, label, "expected an integer, got %s",
                setting_type_name(type));
        return -1;
    case KT_BOOL:
        if (type == CONFIG_TYPE_BOOL) {
            store_bool(k, base, config_setting_get_bool(s));
            return 0;
        }
        err_key(e, where, label, "expected true or false, got %s",
                setting_type_name(type));
        return -1;
    case KT_REDIS:
        if (type == CONFIG_TYPE_LIST || type == CONFIG_TYPE_ARRAY) {
            /* ["redis://a", "redis://b"]: joined, then parsed as one. */
            char joined[CONFIG_REDIS_MAX * 600];
            size_t used = 0;
            int n = config_setting_length(s);
            joined[0] = '\0';
            for (int i = 0; i < n; i++) {
                const config_setting_t *el =
                    config_setting_get_elem(s, (unsigned)i);
                const char *v = config_setting_get_string(el);
                if (v == NULL || strchr(v, ',')) {
                    err_key(e, where, label, "expected a list of strings "
                            "\"redis://host:port\"");
                    return -1;
                }
                int w = snprintf(joined + used, sizeof joined - used, "%s%s",
                                 i ? "," : "", v);
                if (w < 0 || (size_t)w >= sizeof joined - used) {
                    err_key(e, where, label, "list too long");
                    return -1;
                }
                used += (size_t)w;
            }
            if (n == 0) {
                ((config *)base)->n_redis = 0;
                return 0;
            }
            return store_string(k, base, joined, where, label, e);
        }
        if (type == CONFIG_TYPE_STRING)
            return store_string(k, base, config_setting_get_string(s), where,
                                label, e);
        err_key(e, where, label, "expected a string or a list of strings, "
                "got %s", setting_type_name(type));
        return -1;
    case KT_DIR:
        if (type == CONFIG_TYPE_STRING) {
            char dir[PATH_MAX];
            setting_dir(s, dir, sizeof dir);
            return store_dir(k, base, config_setting_get_string(s), dir,
                             where, label, e);
        }
        err_key(e, where, label, "expected a string (a directory), got %s",
                setting_type_name(type));
        return -1;
    default:
        if (type == CONFIG_TYPE_STRING)
            return store_string(k, base, config_setting_get_string(s), where,
                                label, e);
        err_key(e, where, label, "expected a string, got %s",
                setting_type_name(type));
        return -1;
    }
}

/* A value from the environment or the command line: text to be parsed. */
static int apply_text(const key_def *k, void *base, const char *v,
                      const char *where, const char *label, errs *e)
{
    char shown[64];

    switch (k->type) {
    case KT_UINT: {
        uint64_t n;
        int r = parse_uint(v, &n);
        if (r < 0) {
            err_key(e, where, label, "expected a non-negative integer, got "
                    "'%s'", show_value(v, shown, sizeof shown));
            return -1;
        }
        if (r > 0 || n > k->max) {
            err_key(e, where, label, "%s is out of range (%" PRIu32
                    "..%" PRIu32 ")", show_value(v, shown, sizeof shown),
                    k->min, k->max);
            return -1;
        }
        return store_uint(k, base, (int64_t)n, where, label, e);
    }
    case KT_BOOL: {
        int b = parse_bool(v);
        if (b < 0) {
            err_key(e, where, label, "expected a boolean (true/false, 1/0, "
                    "yes/no, on/off), got '%s'",
                    show_value(v, shown, sizeof shown));
            return -1;
        }
        store_bool(k, base, b);
        return 0;
    }
    case KT_DIR:
        return store_dir(k, base, v, NULL, where, label, e);
    default:
        return store_string(k, base, v, where, label, e);
    }
}

/* ---- loading ------------------------------------------------------------ */

/* Room for "FILE:LINE" or "env NAME"; longer paths are cut in messages. */
#define WHERE_MAX 1024

/* The keys whose combinations check_combined checks, by index. */
enum { TLS_CERT, TLS_KEY, TLS_LISTEN, TLS_CLIENT_CA, TLS_API, TLS_API_CA,
       TLS_KEYS_N };
static const char *const tls_keys[TLS_KEYS_N] = {
    "tls_cert", "tls_key", "tls_listen", "tls_client_ca", "api_tls",
    "api_client_ca"
};

typedef struct loader {
    config c;   /* the working copy; the caller's struct is set on success */
    /* ns_set[j]: bit i set when ns_keys[i] was given for namespaces[j]
     * itself (file or env); the other keys are inherited at the end. */
    uint32_t ns_set[CONFIG_MAX_NAMESPACES];
    unsigned ns_line[CONFIG_MAX_NAMESPACES]; /* file line, for duplicates */
    /* where each key of tls_keys was last set, for check_combined */
    char tls_where[TLS_KEYS_N][WHERE_MAX];
    char hooks_where[WHERE_MAX];  /* where the webhooks list is */
    char static_where[WHERE_MAX]; /* where static_dir was last set */
    errs *e;
} loader;

static void note_top_key(loader *L, const key_def *k, const char *where)
{
    if (strcmp(k->name, "static_dir") == 0)
        snprintf(L->static_where, sizeof L->static_where, "%s", where);
    for (int i = 0; i < TLS_KEYS_N; i++)
        if (strcmp(k->name, tls_keys[i]) == 0)
            snprintf(L->tls_where[i], sizeof L->tls_where[i], "%s", where);
}

static int ns_index(const loader *L, const char *name, size_t len)
{
    for (size_t j = 1; j < L->c.n_namespaces; j++)
        if (strlen(L->c.namespaces[j].name) == len &&
            memcmp(L->c.namespaces[j].name, name, len) == 0)
            return (int)j;
    return -1;
}

/* Appends a named namespace (name already checked); -1 when full. */
static int ns_create(loader *L, const char *name, size_t len,
                     const char *where, const char *label)
{
    size_t j = L->c.n_namespaces;
    config_ns *ns;

    if (j >= CONFIG_MAX_NAMESPACES) {
        err_key(L->e, where, label, "too many namespaces (at most %d besides "
                "namespace_defaults)", CONFIG_MAX_NAMESPACES - 1);
        return -1;
    }
    ns = &L->c.namespaces[j];
    *ns = L->c.namespaces[0];
    memcpy(ns->name, name, len);
    ns->name[len] = '\0';
    L->ns_set[j] = 0;
    L->ns_line[j] = 0;
    L->c.n_namespaces++;
    return (int)j;
}

static void where_of(char *buf, size_t cap, const config_setting_t *s,
                     const char *path)
{
    const char *file = config_setting_source_file(s);

    snprintf(buf, cap, "%s:%u", file != NULL ? file : path,
             (unsigned)config_setting_source_line(s));
}

/* The members of namespace_defaults (set_mask NULL) or of one element of
 * the namespaces list (its "name" is handled by the caller). */
static void load_ns_members(loader *L, const config_setting_t *grp,
                            config_ns *ns, uint32_t *set_mask,
                            const char *path, const char *prefix)
{
    int n = config_setting_length(grp);

    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(grp, (unsigned)i);
        const char *name = config_setting_name(s);
        const key_def *k;
        char where[WHERE_MAX], label[256];

        if (set_mask != NULL && strcmp(name, "name") == 0)
            continue;
        where_of(where, sizeof where, s, path);
        snprintf(label, sizeof label, "%s.%s", prefix, name);
        k = key_find(ns_keys, N_NS_KEYS, name);
        if (k == NULL) {
            err_unknown(L->e, where, label, name, ns_keys, N_NS_KEYS, NULL, 0,
                        NULL);
            continue;
        }
        if (apply_setting(k, ns, s, where, label, L->e) == 0 &&
            set_mask != NULL)
            *set_mask |= 1u << (k - ns_keys);
    }
}

static void load_ns_list(loader *L, const config_setting_t *list,
                         const char *path)
{
    char where[WHERE_MAX];
    int n;

    if (!config_setting_is_list(list)) {
        where_of(where, sizeof where, list, path);
        err_key(L->e, where, "namespaces", "expected a list of groups "
                "( { name = \"chat\"; ... }, ... ), got %s",
                setting_type_name(config_setting_type(list)));
        return;
    }
    n = config_setting_length(list);
    for (int i = 0; i < n; i++) {
        const config_setting_t *el = config_setting_get_elem(list,
                                                             (unsigned)i);
        const config_setting_t *nm;
        /* prefix names the element in member keys: "namespaces.chat" once
         * the name is known and valid, else "namespaces[i]". */
        char prefix[96], label[128], prob[160];
        config_ns scratch;
        uint32_t scratch_mask = 0, *mask = &scratch_mask;
        config_ns *ns = &scratch;

        where_of(where, sizeof where, el, path);
        snprintf(prefix, sizeof prefix, "namespaces[%d]", i);
        snprintf(label, sizeof label, "namespaces[%d].name", i);
        if (!config_setting_is_group(el)) {
            err_key(L->e, where, prefix, "expected a group { name = ...; }, "
                    "got %s", setting_type_name(config_setting_type(el)));
            continue;
        }
        nm = config_setting_get_member(el, "name");
        if (nm == NULL) {
            err_key(L->e, where, prefix, "missing 'name'");
        } else if (config_setting_type(nm) != CONFIG_TYPE_STRING) {
            where_of(where, sizeof where, nm, path);
            err_key(L->e, where, label, "expected a string, got %s",
                    setting_type_name(config_setting_type(nm)));
        } else {
            const char *name = config_setting_get_string(nm);
            size_t len = strlen(name);
            int j;

            where_of(where, sizeof where, nm, path);
            if (ns_name_check(name, len, prob, sizeof prob) < 0) {
                err_key(L->e, where, label, "%s", prob);
            } else if ((j = ns_index(L, name, len)) >= 0) {
                snprintf(prefix, sizeof prefix, "namespaces.%s", name);
                err_key(L->e, where, prefix, "duplicate namespace (first "
                        "defined at line %u)", L->ns_line[j]);
            } else {
                snprintf(prefix, sizeof prefix, "namespaces.%s", name);
                j = ns_create(L, name, len, where, prefix);
                if (j >= 0) {
                    L->ns_line[j] = config_setting_source_line(nm);
                    ns = &L->c.namespaces[j];
                    mask = &L->ns_set[j];
                }
            }
        }
        /* Members of a rejected element are still checked (into scratch),
         * so that every problem is reported in one pass. */
        if (ns == &scratch)
            scratch = L->c.namespaces[0];
        load_ns_members(L, el, ns, mask, path, prefix);
    }
}

/* ---- files libconfig will read ------------------------------------------ */

/* libconfig 1.5 ends the whole process (exit 2 after "input in flex scanner
 * failed", with no file or line) when the configuration file or a file it
 * includes is a directory or fails to read, and waits forever on a FIFO or
 * a terminal. So before libconfig reads anything, every file it would
 * open is checked to be a regular file that reads to its end, and a
 * configuration naming anything else is refused with the line of its
 * @include. */

/* libconfig's MAX_INCLUDE_DEPTH: it refuses to open an include deeper. */
#define INCLUDE_DEPTH_MAX 10

/* 1: a regular file; 0: missing (libconfig says so itself); -1: anything
 * else. */
static int file_kind(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    return S_ISREG(st.st_mode) ? 1 : -1;
}

/* The whole of a regular file, NUL-terminated (malloc'd). NULL with *err
 * 0 when it cannot be opened (libconfig reports that itself), or with *err
 * the errno of a failed read (libconfig would end the process on it). */
static char *read_whole(const char *path, size_t *len, int *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    *err = 0;
    if (f == NULL)
        return NULL;
    for (;;) {
        if (cap - n < 4096) {
            char *nb = realloc(buf, cap = cap ? cap * 2 : 8192);
            if (nb == NULL)
                abort();   /* the out-of-memory policy (base/mem.h) */
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        *err = errno ? errno : EIO;
        free(buf);
        buf = NULL;
    } else {
        buf[n] = '\0';
        *len = n;
    }
    fclose(f);
    return buf;
}

/* The @include names of text t (n bytes) as libconfig 1.5's scanner sees
 * them: `^[ \t]*@include[ \t]+"NAME"` where a line starts outside comments
 * and strings, NAME taking \\ and \" as escapes (and dropping any other
 * backslash). Calls found(name, line) for each; stops early when it
 * returns non-zero. */
static void scan_includes(const char *t, size_t n,
                          int (*found)(void *ctx, const char *name,
                                       unsigned line),
                          void *ctx)
{
    unsigned line = 1;
    size_t i = 0;

    while (i < n) {
        if (i == 0 || t[i - 1] == '\n') {
            size_t k = i;
            while (k < n && (t[k] == ' ' || t[k] == '\t'))
                k++;
            if (n - k > 8 && memcmp(t + k, "@include", 8) == 0 &&
                (t[k + 8] == ' ' || t[k + 8] == '\t')) {
                k += 8;
                while (k < n && (t[k] == ' ' || t[k] == '\t'))
                    k++;
                if (k < n && t[k] == '"') {
                    char name[1024];
                    size_t w = 0;
                    unsigned at = line;
                    for (k++; k < n && t[k] != '"'; k++) {
                        char c = t[k];
                        if (c == '\\') {
                            if (k + 1 < n && (t[k + 1] == '\\' || t[k + 1] == '"'))
                                c = t[++k];
                            else
                                continue;   /* libconfig drops it */
                        }
                        if (c == '\n')
                            line++;
                        if (w < sizeof name - 1)
                            name[w++] = c;
                    }
                    if (k >= n)
                        return;   /* unterminated: libconfig's syntax error */
                    name[w] = '\0';
                    if (found(ctx, name, at))
                        return;
                    i = k + 1;
                    continue;
                }
            }
        }
        char c = t[i];
        if (c == '\n') {
            line++;
            i++;
        } else if (c == '#' || (c == '/' && i + 1 < n && t[i + 1] == '/')) {
            while (i < n && t[i] != '\n')
                i++;
        } else if (c == '/' && i + 1 < n && t[i + 1] == '*') {
            for (i += 2; i < n && !(t[i] == '*' && i + 1 < n && t[i + 1] == '/');
                 i++)
                line += t[i] == '\n';
            i += 2;
        } else if (c == '"') {
            for (i++; i < n && t[i] != '"'; i++) {
                if (t[i] == '\\' && i + 1 < n && t[i + 1] != '\n')
                    i++;   /* \" \\ \n ...; \xHH needs no care */
                line += t[i] == '\n';
            }
            i++;
        } else {
            i++;
        }
    }
}

typedef struct include_walk {
    loader *L;
    const char *dir;     /* libconfig's include directory, or NULL */
    const char *shown;   /* the file as messages name it */
    const char *from;    /* the file that includes it (NULL: main file) */
    int depth;           /* of the file being scanned; 0: the main one */
    int bad;             /* problems found */
} include_walk;

static void check_file_includes(include_walk *w, const char *path,
                                unsigned line);

static int include_found(void *ctx, const char *name, unsigned line)
{
    include_walk *w = ctx;
    char full[2048], where[WHERE_MAX], shown[64];

    if (w->depth >= INCLUDE_DEPTH_MAX)
        return 1;   /* libconfig refuses it as too deep */
    /* libconfig 1.5 puts the include directory before every name, even an
     * absolute one. */
    if (w->dir != NULL)
        snprintf(full, sizeof full, "%s/%s", w->dir, name);
    else
        snprintf(full, sizeof full, "%s", name);
    switch (file_kind(full)) {
    case 0:
        return 0;
    case -1:
        snprintf(where, sizeof where, "%s:%u", w->shown, line);
        err_key(w->L->e, where, NULL, "@include \"%s\": not a regular file",
                show_value(name, shown, sizeof shown));
        w->bad++;
        return 0;
    }
    include_walk inner = *w;
    inner.shown = name;
    inner.depth = w->depth + 1;
    inner.bad = 0;
    inner.from = w->shown;
    check_file_includes(&inner, full, line);
    w->bad += inner.bad;
    return 0;
}

/* Scans the file at path (included at `line` of w->from; the main file
 * when w->depth is 0). */
static void check_file_includes(include_walk *w, const char *path,
                                unsigned line)
{
    size_t len = 0;
    int err;
    char *text = read_whole(path, &len, &err);
    if (text == NULL) {
        if (err != 0) {
            char where[WHERE_MAX], shown[64];
            if (w->depth == 0)
                snprintf(where, sizeof where, "%s", path);
            else
                snprintf(where, sizeof where, "%s:%u", w->from, line);
            err_key(w->L->e, where, NULL, "cannot read %s: %s",
                    w->depth == 0 ? "configuration file"
                                  : show_value(w->shown, shown, sizeof shown),
                    strerror(err));
            w->bad++;
        }
        return;
    }
    scan_includes(text, len, include_found, w);
    free(text);
}

/* 0 when libconfig may read path: it is missing or unreadable (libconfig
 * says so) or a regular file whose includes are all regular files. */
static int check_files(loader *L, const char *path, const char *dir)
{
    if (file_kind(path) < 0) {
        err_key(L->e, path, NULL, "cannot read configuration file: not a "
                "regular file");
        return -1;
    }
    include_walk w = { L, dir, path, NULL, 0, 0 };
    check_file_includes(&w, path, 0);
    return w.bad ? -1 : 0;
}

/* ---- API keys ------------------------------------------------------------ */

void config_api_key_digest(const char *key, size_t len,
                           unsigned char out[CONFIG_API_DIGEST_LEN])
{
    unsigned int n = 0;
    if (!EVP_Digest(key, len, out, &n, EVP_sha256(), NULL) ||
        n != CONFIG_API_DIGEST_LEN)
        abort();
}

/* A key is a token of the Authorization header: visible ASCII, no spaces.
 * Keys are never quoted back in messages. */
static const char *check_api_key(const char *k)
{
    size_t n = strlen(k);
    if (n < CONFIG_API_KEY_MIN)
        return "too short (at least 16 bytes; make one with `openssl rand "
               "-hex 32`)";
    if (n > CONFIG_API_KEY_MAX)
        return "too long (at most 256 bytes)";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f)
            return "may only contain visible ASCII characters (no spaces)";
    return NULL;
}

/* metrics_key: like an API key, or "" for none. */
static const char *check_metrics_key(const char *k)
{
    return k[0] ? check_api_key(k) : NULL;
}

/* Sets key `name` (added, or its key replaced: HERALD_API_KEY over a
 * file's "default", whose rate_limit stays; rate -1). A key given twice
 * under two names is refused: which name would a request carry? */
static void api_key_set(loader *L, const char *name, const char *key,
                        int64_t rate, const char *where, const char *label)
{
    const char *prob = check_api_key(key);
    if (prob != NULL) {
        err_key(L->e, where, label, "%s", prob);
        return;
    }
    unsigned char d[CONFIG_API_DIGEST_LEN];
    config_api_key_digest(key, strlen(key), d);
    config_api_key *slot = NULL;
    for (uint32_t i = 0; i < L->c.n_api_keys; i++) {
        config_api_key *k = &L->c.api_keys[i];
        if (strcmp(k->name, name) == 0)
            slot = k;
        else if (memcmp(k->digest, d, sizeof d) == 0) {
            err_key(L->e, where, label, "the same key as api_keys '%s'",
                    k->name);
            return;
        }
    }
    if (slot == NULL) {
        if (L->c.n_api_keys == CONFIG_API_KEYS_MAX) {
            err_key(L->e, where, label, "too many API keys (at most %d)",
                    CONFIG_API_KEYS_MAX);
            return;
        }
        slot = &L->c.api_keys[L->c.n_api_keys++];
        snprintf(slot->name, sizeof slot->name, "%s", name);
    }
    memcpy(slot->digest, d, sizeof d);
    if (rate >= 0)
        slot->rate_limit = (uint32_t)rate;   /* -1: keep the file's */
}

/* api_keys = ( { name = "backend"; key = "..."; rate_limit = 100; }, ... ) */
static void load_api_keys(loader *L, const config_setting_t *list,
                          const char *path)
{
    char where[WHERE_MAX];
    if (!config_setting_is_list(list)) {
        where_of(where, sizeof where, list, path);
        err_key(L->e, where, "api_keys", "expected a list of groups "
                "( { name = \"backend\"; key = \"...\"; }, ... ), got %s",
                setting_type_name(config_setting_type(list)));
        return;
    }
    int n = config_setting_length(list);
    for (int i = 0; i < n; i++) {
        const config_setting_t *el =
            config_setting_get_elem(list, (unsigned)i);
        char label[128];
        where_of(where, sizeof where, el, path);
        snprintf(label, sizeof label, "api_keys[%d]", i);
        if (!config_setting_is_group(el)) {
            err_key(L->e, where, label, "expected a group { name = ...; "
                    "key = ...; }, got %s",
                    setting_type_name(config_setting_type(el)));
            continue;
        }
        const char *name = NULL, *key = NULL;
        int64_t rate = 0;
        int bad = 0, m = config_setting_length(el);
        for (int j = 0; j < m; j++) {
            const config_setting_t *s =
                config_setting_get_elem(el, (unsigned)j);
            const char *mn = config_setting_name(s);
            char mw[WHERE_MAX], ml[192];
            where_of(mw, sizeof mw, s, path);
            snprintf(ml, sizeof ml, "%s.%s", label, mn);
            int type = config_setting_type(s);
            if (strcmp(mn, "name") == 0 || strcmp(mn, "key") == 0) {
                if (type != CONFIG_TYPE_STRING) {
                    err_key(L->e, mw, ml, "expected a string, got %s",
                            setting_type_name(type));
                    bad = 1;
                } else if (mn[0] == 'n') {
                    name = config_setting_get_string(s);
                } else {
                    key = config_setting_get_string(s);
                }
            } else if (strcmp(mn, "rate_limit") == 0) {
                if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
                    err_key(L->e, mw, ml, "expected an integer, got %s",
                            setting_type_name(type));
                    bad = 1;
                } else {
                    rate = config_setting_get_int64(s);
                    if (type == CONFIG_TYPE_INT)
                        rate = config_setting_get_int(s);
                    if (rate < 0 || rate > 1000000) {
                        err_key(L->e, mw, ml, "%" PRId64 " is out of range "
                                "(0..1000000)", rate);
                        bad = 1;
                    }
                }
            } else {
                err_key(L->e, mw, ml, "unknown key (an API key has name, "
                        "key and rate_limit)");
                bad = 1;
            }
        }
        if (bad)
            continue;
        if (name == NULL || key == NULL) {
            err_key(L->e, where, label, "needs a name and a key");
            continue;
        }
        const char *prob = check_name(name, "_-", 0, "may only contain "
                                      "letters, digits, '_' and '-'");
        if (prob == NULL && strlen(name) >= CONFIG_API_NAME_MAX)
            prob = "too long (at most 63 bytes)";
        snprintf(label, sizeof label, "api_keys[%d].name", i);
        if (prob != NULL) {
            err_key(L->e, where, label, "%s", prob);
            continue;
        }
        int dup = 0;
        for (uint32_t k = 0; k < L->c.n_api_keys; k++)
            dup |= strcmp(L->c.api_keys[k].name, name) == 0;
        if (dup) {
            err_key(L->e, where, label, "API key '%s' is defined twice", name);
            continue;
        }
        snprintf(label, sizeof label, "api_keys.%s.key", name);
        api_key_set(L, name, key, rate, where, label);
    }
}

/* ---- webhooks ------------------------------------------------------------ */

static const char *const hook_event_names[CONFIG_HOOK_EVENTS] = {
    "connect", "disconnect", "subscribe", "unsubscribe", "occupied",
    "vacated", "publication",
};

const char *config_hook_event_name(int ev)
{
    return ev >= 0 && ev < CONFIG_HOOK_EVENTS ? hook_event_names[ev] : NULL;
}

/* events = ["connect", ...]: the bits of the names, or -1 after an error
 * naming the element. */
static int64_t load_hook_events(loader *L, const config_setting_t *s,
                                const char *path, const char *label)
{
    char where[WHERE_MAX];
    where_of(where, sizeof where, s, path);
    if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
        err_key(L->e, where, label, "expected a list of event names "
                "[\"connect\", \"subscribe\", ...], got %s",
                setting_type_name(config_setting_type(s)));
        return -1;
    }
    uint32_t bits = 0;
    int n = config_setting_length(s), bad = 0;
    for (int i = 0; i < n; i++) {
        const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);
        char el_label[192];
        snprintf(el_label, sizeof el_label, "%s[%d]", label, i);
        where_of(where, sizeof where, el, path);
        const char *name = config_setting_get_string(el);
        int ev = -1;
        for (int k = 0; name && k < CONFIG_HOOK_EVENTS; k++)
            if (strcmp(name, hook_event_names[k]) == 0)
                ev = k;
        if (ev < 0) {
            err_key(L->e, where, el_label, "unknown event%s%s%s (events: "
                    "connect, disconnect, subscribe, unsubscribe, occupied, "
                    "vacated, publication)", name ? " '" : "",
                    name ? name : "", name ? "'" : "");
            bad = 1;
            continue;
        }
        bits |= 1u << ev;
    }
    if (!bad && bits == 0) {
        where_of(where, sizeof where, s, path);
        err_key(L->e, where, label, "no events (leave the key out for all)");
        return -1;
    }
    return bad ? -1 : (int64_t)bits;
}

/* webhooks = ( { url = "https://..."; events = [ ... ]; }, ... ) */
static void load_webhooks(loader *L, const config_setting_t *list,
                          const char *path)
{
    char where[WHERE_MAX];
    where_of(where, sizeof where, list, path);
    if (!config_setting_is_list(list)) {
        err_key(L->e, where, "webhooks", "expected a list of groups "
                "( { url = \"https://...\"; events = [ ... ]; }, ... ), "
                "got %s", setting_type_name(config_setting_type(list)));
        return;
    }
    int n = config_setting_length(list);
    if (n > CONFIG_WEBHOOKS_MAX) {
        err_key(L->e, where, "webhooks", "too many endpoints (%d, at most %d)",
                n, CONFIG_WEBHOOKS_MAX);
        return;
    }
    L->c.n_webhooks = 0;
    for (int i = 0; i < n; i++) {
        const config_setting_t *el =
            config_setting_get_elem(list, (unsigned)i);
        char label[64];
        snprintf(label, sizeof label, "webhooks[%d]", i);
        where_of(where, sizeof where, el, path);
        if (!config_setting_is_group(el)) {
            err_key(L->e, where, label, "expected a group { url = ...; "
                    "events = [...]; }, got %s",
                    setting_type_name(config_setting_type(el)));
            continue;
        }
        config_webhook w = { .events = (1u << CONFIG_HOOK_EVENTS) - 1 };
        int bad = 0, has_url = 0, m = config_setting_length(el);
        for (int j = 0; j < m; j++) {
            const config_setting_t *s =
                config_setting_get_elem(el, (unsigned)j);
            const char *mn = config_setting_name(s);
            char mw[WHERE_MAX], ml[128];
            where_of(mw, sizeof mw, s, path);
            snprintf(ml, sizeof ml, "%s.%s", label, mn);
            if (strcmp(mn, "url") == 0) {
                const char *u = config_setting_get_string(s);
                if (!u || !config_is_url(u)) {
                    err_key(L->e, mw, ml, "expected an http:// or https:// "
                            "URL");
                    bad = 1;
                } else if (strlen(u) >= sizeof w.url) {
                    err_key(L->e, mw, ml, "too long (at most %zu bytes)",
                            sizeof w.url - 1);
                    bad = 1;
                } else {
                    snprintf(w.url, sizeof w.url, "%s", u);
                    has_url = 1;
                }
            } else if (strcmp(mn, "events") == 0) {
                int64_t bits = load_hook_events(L, s, path, ml);
                if (bits < 0)
                    bad = 1;
                else
                    w.events = (uint32_t)bits;
            } else {
                err_key(L->e, mw, ml, "unknown key (a webhook has url and "
                        "events)");
                bad = 1;
            }
        }
        if (!bad && !has_url) {
            err_key(L->e, where, label, "needs a url");
            bad = 1;
        }
        if (!bad) {
            L->c.webhooks[L->c.n_webhooks++] = w;
            snprintf(L->hooks_where, sizeof L->hooks_where, "%s", where);
        }
    }
}

static void load_file(loader *L, const char *path)
{
    config_t lc;
    config_setting_t *root;
    char dir[1024], where[WHERE_MAX];
    const char *slash = strrchr(path, '/');
    int n;

    config_init(&lc);
    /* @include paths are relative to the including file, not to the
     * server's working directory (which is "/" under systemd). */
    if (slash != NULL && (size_t)(slash - path) < sizeof dir) {
        size_t dlen = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, dlen);
        dir[dlen] = '\0';
        config_set_include_dir(&lc, dir);
    }
    if (check_files(L, path, config_get_include_dir(&lc)) < 0) {
        config_destroy(&lc);
        return;
    }
    if (!config_read_file(&lc, path)) {
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO) {
            /* libconfig does not keep errno; ask again to say why. */
            FILE *f = fopen(path, "r");
            int err = f == NULL ? errno : 0;
            if (f != NULL)
                fclose(f);
            err_key(L->e, path, NULL, "cannot read configuration file: %s",
                    err != 0 ? strerror(err) : config_error_text(&lc));
        } else {
            const char *file = config_error_file(&lc);
            snprintf(where, sizeof where, "%s:%d", file != NULL ? file : path,
                     config_error_line(&lc));
            err_key(L->e, where, NULL, "%s", config_error_text(&lc));
        }
        config_destroy(&lc);
        return;
    }

    root = config_root_setting(&lc);
    n = config_setting_length(root);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(root,
                                                            (unsigned)i);
        const char *name = config_setting_name(s);
        const key_def *k;

        where_of(where, sizeof where, s, path);
        if (strcmp(name, "namespace_defaults") == 0) {
            if (!config_setting_is_group(s))
                err_key(L->e, where, name, "expected a group "
                        "{ history_size = ...; ... }, got %s",
                        setting_type_name(config_setting_type(s)));
            else
                load_ns_members(L, s, &L->c.namespaces[0], NULL, path, name);
            continue;
        }
        if (strcmp(name, "namespaces") == 0) {
            load_ns_list(L, s, path);
            continue;
        }
        if (strcmp(name, "api_keys") == 0) {
            load_api_keys(L, s, path);
            continue;
        }
        if (strcmp(name, "webhooks") == 0) {
            load_webhooks(L, s, path);
            continue;
        }
        k = key_find(top_keys, N_TOP_KEYS, name);
        if (k == NULL && key_find(ns_keys, N_NS_KEYS, name) != NULL) {
            /* A common slip: a namespace option written at the top. */
            err_key(L->e, where, name, "unknown key (namespace options go "
                    "in namespace_defaults or in a namespaces entry)");
            continue;
        }
        if (k == NULL) {
            err_unknown(L->e, where, name, name, top_keys, N_TOP_KEYS,
                        top_groups, N_TOP_GROUPS, NULL);
            continue;
        }
        if (apply_setting(k, &L->c, s, where, name, L->e) == 0)
            note_top_key(L, k, where);
    }
    config_destroy(&lc);
}

static int env_ignored_name(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof env_ignored / sizeof env_ignored[0]; i++)
        if (strlen(env_ignored[i]) == len &&
            memcmp(env_ignored[i], name, len) == 0)
            return 1;
    return 0;
}

/* "NAME" lower-cased into out, for the key shown in messages. */
static void lower_copy(char *out, size_t cap, const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len && i < cap - 1; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[i] = '\0';
}

#define ENV_PREFIX "HERALD_"
#define ENV_NS_DEFAULTS "NAMESPACE_DEFAULTS__"
#define ENV_NS "NAMESPACES__"

/* HERALD_NAMESPACES__<name>__<KEY>: the name is everything between the
 * prefix and the LAST "__", so names may contain '_' and even "__" (keys
 * never do). The name is case-sensitive, as namespace names are; the KEY
 * is upper case, as in every other variable. */
static void load_env_named_ns(loader *L, const char *rest, size_t rlen,
                              const char *val, const char *where)
{
    const char *name = rest, *key;
    size_t nlen, klen, p;
    char lkey[64], label[256], prob[160];
    const key_def *k;
    int j;

    for (p = rlen >= 2 ? rlen - 2 : 0; p > 0; p--)
        if (rest[p] == '_' && rest[p + 1] == '_')
            break;
    if (p == 0) {
        err_key(L->e, where, NULL, "expected HERALD_NAMESPACES__<name>__<KEY>");
        return;
    }
    nlen = p;
    key = rest + p + 2;
    klen = rlen - p - 2;
    lower_copy(lkey, sizeof lkey, key, klen);
    snprintf(label, sizeof label, "namespaces.%.*s.%s", (int)nlen, name, lkey);
    k = key_find_env(ns_keys, N_NS_KEYS, key, klen);
    if (k == NULL) {
        err_unknown(L->e, where, label, lkey, ns_keys, N_NS_KEYS, NULL, 0,
                    NULL);
        return;
    }
    if (ns_name_check(name, nlen, prob, sizeof prob) < 0) {
        snprintf(label, sizeof label, "namespaces.%.*s", (int)nlen, name);
        err_key(L->e, where, label, "%s", prob);
        return;
    }
    j = ns_index(L, name, nlen);
    if (j < 0)
        j = ns_create(L, name, nlen, where, label);
    if (j < 0)
        return;
    if (apply_text(k, &L->c.namespaces[j], val, where, label, L->e) == 0)
        L->ns_set[j] |= 1u << (k - ns_keys);
}

static void load_env(loader *L, char *const *envp)
{
    const size_t plen = strlen(ENV_PREFIX);

    for (; envp != NULL && *envp != NULL; envp++) {
        const char *kv = *envp, *eq, *rest, *val;
        size_t nlen, rlen;
        char where[WHERE_MAX], lkey[128], label[160];
        const key_def *k;

        if (strncmp(kv, ENV_PREFIX, plen) != 0)
            continue;
        eq = strchr(kv, '=');
        if (eq == NULL)
            continue;
        nlen = (size_t)(eq - kv);
        val = eq + 1;
        if (env_ignored_name(kv, nlen))
            continue;
        snprintf(where, sizeof where, "env %.*s",
                 (int)(nlen < WHERE_MAX - 8 ? nlen : WHERE_MAX - 8), kv);
        rest = kv + plen;
        rlen = nlen - plen;

        if (rlen > strlen(ENV_NS_DEFAULTS) &&
            strncmp(rest, ENV_NS_DEFAULTS, strlen(ENV_NS_DEFAULTS)) == 0) {
            const char *key = rest + strlen(ENV_NS_DEFAULTS);
            size_t klen = rlen - strlen(ENV_NS_DEFAULTS);

            lower_copy(lkey, sizeof lkey, key, klen);
            snprintf(label, sizeof label, "namespace_defaults.%s", lkey);
            k = key_find_env(ns_keys, N_NS_KEYS, key, klen);
            if (k == NULL)
                err_unknown(L->e, where, label, lkey, ns_keys, N_NS_KEYS, NULL,
                            0, ENV_PREFIX ENV_NS_DEFAULTS);
            else
                apply_text(k, &L->c.namespaces[0], val, where, label, L->e);
            continue;
        }
        if (rlen > strlen(ENV_NS) &&
            strncmp(rest, ENV_NS, strlen(ENV_NS)) == 0) {
            load_env_named_ns(L, rest + strlen(ENV_NS),
                              rlen - strlen(ENV_NS), val, where);
            continue;
        }
        if (rlen == 7 && strncmp(rest, "API_KEY", 7) == 0) {
            /* one key named "default" (docs/api.md) */
            api_key_set(L, "default", val, -1, where, "api_keys.default.key");
            continue;
        }
        lower_copy(lkey, sizeof lkey, rest, rlen);
        k = key_find_env(top_keys, N_TOP_KEYS, rest, rlen);
        if (k == NULL && key_find_env(ns_keys, N_NS_KEYS, rest, rlen)) {
            err_key(L->e, where, lkey, "unknown key (did you mean "
                    ENV_PREFIX ENV_NS_DEFAULTS "%.*s?)", (int)rlen, rest);
            continue;
        }
        if (k == NULL) {
            err_unknown(L->e, where, lkey, lkey, top_keys, N_TOP_KEYS, NULL,
                        0, ENV_PREFIX);
            continue;
        }
        if (apply_text(k, &L->c, val, where, lkey, L->e) == 0)
            note_top_key(L, k, where);
    }
}

/* Inheritance happens here, once, after every source: a named namespace
 * takes the final namespace_defaults value of each key it did not set. */
static void resolve_namespaces(loader *L)
{
    const config_ns *def = &L->c.namespaces[0];

    for (size_t j = 1; j < L->c.n_namespaces; j++) {
        config_ns *ns = &L->c.namespaces[j];
        for (size_t i = 0; i < N_NS_KEYS; i++)
            if (!(L->ns_set[j] & (1u << i)))
                memcpy((char *)ns + ns_keys[i].off,
                       (const char *)def + ns_keys[i].off, ns_keys[i].size);
    }
}

/* The TLS keys that only mean something with others: a key that would be
 * silently ignored is an error, so that a deployment never believes it
 * requires client certificates while it does not. */
static void check_tls_combined(loader *L)
{
    const config *c = &L->c;
    int tls = c->tls_cert[0] != '\0';

    if (c->tls_listen.host[0] != '\0' && !tls)
        err_key(L->e, L->tls_where[TLS_LISTEN], "tls_listen",
                "needs tls_cert and tls_key");
    if (c->tls_listen.host[0] != '\0' && c->tls_listen.port != 0 &&
        c->tls_listen.port == c->listen.port &&
        strcmp(c->tls_listen.host, c->listen.host) == 0)
        err_key(L->e, L->tls_where[TLS_LISTEN], "tls_listen",
                "is the address of listen (give the TLS listener a port of "
                "its own)");
    if (c->tls_client_ca[0] != '\0' && !tls)
        err_key(L->e, L->tls_where[TLS_CLIENT_CA], "tls_client_ca",
                "needs tls_cert and tls_key (client certificates are asked "
                "for by a TLS listener)");
    if (c->api_tls && !tls)
        err_key(L->e, L->tls_where[TLS_API], "api_tls",
                "needs tls_cert and tls_key");
    if (c->api_tls && c->api_listen.host[0] == '\0')
        err_key(L->e, L->tls_where[TLS_API], "api_tls",
                "needs api_listen (the API on the main port is served on "
                "its plain listener only)");
    if (c->api_client_ca[0] != '\0' && !c->api_tls)
        err_key(L->e, L->tls_where[TLS_API_CA], "api_client_ca",
                "needs api_tls = true");
}

/* Rules that involve more than one key. */
static void check_combined(loader *L)
{
    const config *c = &L->c;

    if (c->tls_cert[0] != '\0' && c->tls_key[0] == '\0')
        err_key(L->e, L->tls_where[TLS_CERT], "tls_cert",
                "set without tls_key (give both or neither)");
    if (c->tls_key[0] != '\0' && c->tls_cert[0] == '\0')
        err_key(L->e, L->tls_where[TLS_KEY], "tls_key",
                "set without tls_cert (give both or neither)");
    check_tls_combined(L);
    /* The site is told apart from WebSocket handshakes by its request
     * lines (net/sniff.c), which a TLS `listen` hides. */
    if (c->static_dir[0] != '\0' && c->tls_cert[0] != '\0' &&
        c->tls_listen.host[0] == '\0')
        err_key(L->e, L->static_where, "static_dir", "is served on a plain "
                "`listen` only: with tls_cert, set tls_listen for TLS beside "
                "it (or end TLS in a proxy in front)");
    /* Unsigned events could be forged by anyone who can reach the
     * backend: a webhook needs the secret. */
    if (c->n_webhooks > 0 && c->webhook_secret[0] == '\0')
        err_key(L->e, L->hooks_where, "webhooks", "needs webhook_secret "
                "(or HERALD_WEBHOOK_SECRET): events are signed with it");
    /* ack = durable waits for the store: without durable it would wait for
     * nothing. */
    for (size_t j = 0; j < c->n_namespaces; j++) {
        const config_ns *ns = &c->namespaces[j];
        if (ns->ack_durable && !ns->durable) {
            char label[CONFIG_NS_NAME_MAX + 32];
            snprintf(label, sizeof label, "namespace '%s': ack",
                     j ? ns->name : "default");
            err_key(L->e, "config", label, "durable needs durable = true");
        }
        /* A namespace that asks the backend needs somewhere to ask. */
        static const struct { size_t on, url; const char *key, *need; } px[] = {
            { offsetof(config_ns, proxy_subscribe),
              offsetof(config, proxy_subscribe_url), "proxy_subscribe",
              "needs proxy_subscribe_url" },
            { offsetof(config_ns, proxy_publish),
              offsetof(config, proxy_publish_url), "proxy_publish",
              "needs proxy_publish_url" },
        };
        for (size_t k = 0; k < sizeof px / sizeof px[0]; k++) {
            if (*(const int *)((const char *)ns + px[k].on) &&
                !((const char *)c + px[k].url)[0]) {
                char label[CONFIG_NS_NAME_MAX + 32];
                snprintf(label, sizeof label, "namespace '%s': %s",
                         j ? ns->name : "default", px[k].key);
                err_key(L->e, "config", label, "%s", px[k].need);
            }
        }
    }
}

/* ---- public API --------------------------------------------------------- */

void config_defaults(config *c)
{
    config_ns *def;

    memset(c, 0, sizeof *c);
    snprintf(c->listen.host, sizeof c->listen.host, "0.0.0.0");
    c->listen.port = 8080;
    c->api_max_body = 1048576;
    c->api_timeout_ms = 5000;
    c->metrics = 1;
    c->workers = 0;
    c->log_level = LOG_INFO;
    c->max_connections = 0;
    c->max_message_size = 65536;
    c->max_channels_per_conn = 128;
    c->max_channels = 1000000;
    c->history_memory_mb = 2048;
    c->send_queue_max = 1048576;
    c->max_batch_bytes = 65536;
    c->history_max_limit = 1000;
    c->recovery_max = 10000;
    c->ping_interval = 25;
    c->pong_timeout = 10;
    c->shutdown_timeout = 5;
    c->handshake_timeout = 10;
    c->rate_limit = 0;
    c->rate_burst = 100;
    c->worker_queue_max = 65536;
    c->idempotency_window = 300;
    c->idempotency_max = 10000;
    c->allow_anonymous = 1;
    snprintf(c->redis_prefix, sizeof c->redis_prefix, "herald");
    c->redis_timeout_ms = 2000;
    c->presence_ttl = 10;
    c->stream_ttl = 86400;
    snprintf(c->mongodb_database, sizeof c->mongodb_database, "herald");
    snprintf(c->mongodb_collection, sizeof c->mongodb_collection,
             "publications");
    c->mongodb_writers = 2;
    c->mongodb_queue_max = 65536;
    c->mongodb_batch = 256;
    c->mongodb_readers = 2;
    snprintf(c->mongodb_spill_path, sizeof c->mongodb_spill_path,
             "herald.spill");
    c->mongodb_spill_mb = 1024;
    c->durable_ack_timeout_ms = 5000;
    c->retention_interval = 60;
    c->token_jwks_refresh = 300;
    c->token_jwks_timeout_ms = 5000;
    c->proxy_timeout_ms = 3000;
    c->proxy_max_pending = 1024;
    c->webhook_timeout_ms = 5000;
    c->webhook_queue_max = 10000;
    c->webhook_max_attempts = 8;
    c->webhook_drain_ms = 2000;
    c->static_max_file = 1048576;

    c->n_namespaces = 1;
    def = &c->namespaces[0];
    def->name[0] = '\0';
    /* A short history out of the box, so that a client away for a moment
     * (a network change, a phone waking up) recovers what it missed with
     * no configuration: 100 publications or 2 minutes per channel,
     * whichever ends first. Bounded overall by history_memory_mb. */
    def->history_size = 100;
    def->history_ttl = 120;
    def->presence = 0;
    def->join_leave = 0;
    def->allow_publish = 1;
    def->allow_anonymous = 1;
    def->max_subscribers = 0;
}

/* Starts from the defaults (whatever *c held), so the result depends only
 * on the file and the environment; *c is written only on success. */
int config_load(config *c, const char *path, char *const *envp,
                char *errbuf, size_t errlen)
{
    loader L;
    errs e;

    memset(&L, 0, sizeof L);
    errs_init(&e, errbuf, errlen);
    L.e = &e;
    config_defaults(&L.c);
    if (path != NULL)
        load_file(&L, path);
    load_env(&L, envp);
    resolve_namespaces(&L);
    check_combined(&L);
    if (e.count > 0)
        return -1;
    *c = L.c;
    return 0;
}

/* Only top-level keys: a command-line change of a namespace_defaults key
 * could not reach the namespaces that inherited it, because which keys a
 * namespace set itself is known only while loading. '-' is accepted for
 * '_' so main may pass an option name ("log-level") as it is. */
int config_set(config *c, const char *key, const char *value,
               const char *source, char *errbuf, size_t errlen)
{
    errs e;
    char name[64];
    const char *where = source != NULL ? source : "command line";
    const key_def *k;
    size_t i;

    errs_init(&e, errbuf, errlen);
    if (key == NULL)
        key = "";
    for (i = 0; key[i] != '\0' && i < sizeof name - 1; i++)
        name[i] = key[i] == '-' ? '_' : key[i];
    name[i] = '\0';
    k = key[i] == '\0' ? key_find(top_keys, N_TOP_KEYS, name) : NULL;
    if (k == NULL) {
        if (strncmp(name, "namespace", 9) == 0)
            err_key(&e, where, name, "namespace options can only be set in "
                    "the configuration file or with HERALD_NAMESPACE_DEFAULTS__"
                    "<KEY> and HERALD_NAMESPACES__<name>__<KEY>");
        else
            err_unknown(&e, where, name, name, top_keys, N_TOP_KEYS, NULL, 0,
                        NULL);
        return -1;
    }
    if (value == NULL) {
        err_key(&e, where, name, "missing value");
        return -1;
    }
    return apply_text(k, c, value, where, name, &e) == 0 ? 0 : -1;
}

/* A linear scan: at most 63 short names, compared by length first, is as
 * fast as hashing for the namespace part of a channel name. */
const config_ns *config_ns_find(const config *c, const char *ns, size_t len)
{
    if (len == 0)
        return &c->namespaces[0];
    if (len >= CONFIG_NS_NAME_MAX)
        return NULL;
    for (size_t j = 1; j < c->n_namespaces; j++)
        if (c->namespaces[j].name[len] == '\0' &&
            strnlen(c->namespaces[j].name, len) == len &&
            memcmp(c->namespaces[j].name, ns, len) == 0)
            return &c->namespaces[j];
    return NULL;
}

const config_ns *config_ns_of_channel(const config *c, const char *chan,
                                      size_t len)
{
    proto_slice ns = proto_channel_namespace((proto_slice){ chan, len });
    return config_ns_find(c, ns.ptr, ns.len);
}
