/*
 * Fuzzing harness of the configuration loader (server/base/config.c). The
 * same input is used three ways: as the configuration file given to
 * config_load (libconfig syntax, written to a scratch file), and its first
 * 16 lines: those starting with HERALD_ as the environment of a second
 * config_load, and every one as a command-line override "key=value" for
 * config_set. The first byte also picks the size of the error buffer, so
 * messages cut to fit are exercised too. Beyond not crashing, leaking or
 * tripping a sanitizer:
 *  - a load succeeds (0) or fails (-1) with at least one message, and the
 *    error text is NUL-terminated within the buffer, one '\n' per line;
 *  - a configuration that loads keeps every documented range and has
 *    valid, NUL-terminated, distinct namespace names that config_ns_find
 *    finds again;
 *  - a config_set that fails leaves the configuration as it was.
 */
#include <ctype.h>

#include "base/config.h"
#include "base/log.h"

#include "fuzzkit.h"

/* The text at p (n bytes) as a C string in buf (NULs end it early). */
static char *fuzz_cstr(char *buf, size_t cap, const uint8_t *p, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

static void check_errbuf(int rc, const char *err, size_t errlen)
{
    FUZZ_CHECK(rc == 0 || rc == -1);
    size_t n = strnlen(err, errlen);
    FUZZ_CHECK(n < errlen);
    if (rc == 0)
        FUZZ_CHECK(n == 0);
    else if (errlen > 1)
        FUZZ_CHECK(n > 0 && err[n - 1] == '\n');
}

#define NUL_WITHIN(field) FUZZ_CHECK(memchr((field), '\0', sizeof(field)))

/* `loaded`: the cross-key rules config_load adds to config_set's. */
static void check_config(const config *c, int loaded)
{
    NUL_WITHIN(c->listen.host);
    NUL_WITHIN(c->node_name);
    NUL_WITHIN(c->token_secret);
    NUL_WITHIN(c->redis_prefix);
    NUL_WITHIN(c->mongodb);
    NUL_WITHIN(c->mongodb_database);
    NUL_WITHIN(c->mongodb_collection);
    NUL_WITHIN(c->mongodb_spill_path);
    NUL_WITHIN(c->tls_cert);
    NUL_WITHIN(c->tls_key);
    FUZZ_CHECK(c->listen.host[0] != '\0');
    FUZZ_CHECK(c->log_level >= LOG_DEBUG && c->log_level <= LOG_ERROR);
    FUZZ_CHECK(c->workers <= 256);
    FUZZ_CHECK(c->max_message_size >= 256 && c->max_message_size <= 16777216);
    FUZZ_CHECK(c->send_queue_max >= 4096);
    FUZZ_CHECK(c->max_batch_bytes >= 1024);
    FUZZ_CHECK(c->ping_interval >= 1 && c->pong_timeout >= 1);
    FUZZ_CHECK(c->rate_burst >= 1 && c->worker_queue_max >= 64);
    FUZZ_CHECK(c->redis_prefix[0] != '\0');
    if (loaded)
        FUZZ_CHECK((c->tls_cert[0] != '\0') == (c->tls_key[0] != '\0'));
    FUZZ_CHECK(c->n_redis <= CONFIG_REDIS_MAX);
    for (uint32_t i = 0; i < c->n_redis; i++) {
        NUL_WITHIN(c->redis[i].host);
        NUL_WITHIN(c->redis[i].password);
        FUZZ_CHECK(c->redis[i].host[0] != '\0' && c->redis[i].port != 0);
        FUZZ_CHECK(c->redis[i].db <= 1000);
    }
    FUZZ_CHECK(c->n_namespaces >= 1 &&
               c->n_namespaces <= CONFIG_MAX_NAMESPACES);
    FUZZ_CHECK(c->namespaces[0].name[0] == '\0');
    FUZZ_CHECK(config_ns_find(c, "", 0) == &c->namespaces[0]);
    for (size_t j = 0; j < c->n_namespaces; j++) {
        const config_ns *ns = &c->namespaces[j];
        NUL_WITHIN(ns->name);
        size_t len = strlen(ns->name);
        FUZZ_CHECK((j == 0) == (len == 0));
        for (size_t i = 0; i < len; i++)
            FUZZ_CHECK(isalnum((unsigned char)ns->name[i]) ||
                       strchr("_.@/=-", ns->name[i]));
        if (j > 0)   /* names are distinct, so the lookup finds this one */
            FUZZ_CHECK(config_ns_find(c, ns->name, len) == ns);
        FUZZ_CHECK(ns->presence <= 1 && ns->join_leave <= 1 &&
                   ns->allow_publish <= 1 && ns->allow_anonymous <= 1 &&
                   ns->durable <= 1 && ns->ack_durable <= 1);
        FUZZ_CHECK(!loaded || !ns->ack_durable || ns->durable);
        FUZZ_CHECK(ns->history_size <= 1000000);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);   /* warnings about the input are not news */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char err[8192];
    size_t errlen = size && data[0] % 4 == 0 ? 1 + data[0] % 97 : sizeof err;
    const char *path = fuzz_path("config");
    config c;
    int rc;

    /* The whole input as the file. */
    fuzz_write_file(path, data, size);
    memset(err, 0x55, sizeof err);
    rc = config_load(&c, path, NULL, err, errlen);
    check_errbuf(rc, err, errlen);
    if (rc == 0)
        check_config(&c, 1);
    unlink(path);

    /* The first lines: HERALD_* ones as the environment, all as
     * overrides. (Every line is handled on its own, so a few per input
     * reach as much and keep the runs fast.) */
    enum { MAX_LINES = 16 };
    char *env[MAX_LINES + 1], line[1024];
    size_t n_env = 0, at = 0, n_lines = 0;
    static config base, before;
    config_defaults(&base);
    while (at < size && n_lines++ < MAX_LINES) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t len = nl ? (size_t)(nl - (data + at)) : size - at;
        fuzz_cstr(line, sizeof line, data + at, len);
        at += len + (nl != NULL);
        if (!strncmp(line, "HERALD_", 7)) {
            env[n_env] = strdup(line);
            FUZZ_CHECK(env[n_env]);
            n_env++;
        }
        char *eq = strchr(line, '=');
        if (eq)
            *eq = '\0';
        memcpy(&before, &base, sizeof base);   /* padding included */
        rc = config_set(&base, line, eq ? eq + 1 : NULL, "fuzz", err, errlen);
        check_errbuf(rc, err, errlen);
        if (rc != 0)
            FUZZ_CHECK(memcmp(&before, &base, sizeof base) == 0);
    }
    check_config(&base, 0);
    env[n_env] = NULL;
    rc = config_load(&c, NULL, env, err, errlen);
    check_errbuf(rc, err, errlen);
    if (rc == 0)
        check_config(&c, 1);
    for (size_t i = 0; i < n_env; i++)
        free(env[i]);
    return 0;
}
