/*
 * Unit tests of server/config.c: the built-in defaults, parsing of every key
 * from a libconfig file, the HERALD_* environment and config_set(), the
 * precedence file < env < command line, namespace inheritance, and the
 * error messages an operator sees (source, line and key). Files are written
 * with mkstemp under /tmp; the environment is passed as an explicit array,
 * never through setenv, so parallel tests cannot disturb each other.
 */
#include "base/config.h"
#include "base/log.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ERRLEN 8192

/* Every key, as written in the file; the documentation checks below use
 * this list so that a key added to config.c but not documented fails. */
static const char *const top_key_names[] = {
    "listen", "workers", "log_level", "node_name", "max_connections",
    "max_message_size", "max_channels_per_conn", "send_queue_max",
    "max_batch_bytes", "history_max_limit", "recovery_max", "ping_interval", "pong_timeout",
    "shutdown_timeout", "handshake_timeout", "rate_limit", "rate_burst",
    "worker_queue_max", "token_secret", "allow_anonymous", "tls_cert",
    "tls_key", "redis", "redis_prefix", "redis_timeout_ms", "presence_ttl",
    "stream_ttl", "mongodb", "mongodb_database", "mongodb_collection",
    "mongodb_writers", "mongodb_queue_max", "mongodb_batch",
    "mongodb_readers", "mongodb_spill_path", "mongodb_spill_mb",
    "durable_ack_timeout_ms", "retention_interval", "api_listen",
    "api_max_body", "api_timeout_ms", "tls_listen", "tls_client_ca",
    "api_tls", "api_client_ca",
    "api_max_body", "api_timeout_ms", "webhook_secret", "webhook_timeout_ms",
    "webhook_queue_max", "webhook_max_attempts", "webhook_drain_ms",
    "static_dir", "static_max_file",
};
static const char *const ns_key_names[] = {
    "history_size", "history_ttl", "presence", "join_leave", "allow_publish",
    "allow_anonymous", "max_subscribers", "durable", "ack", "retention_age",
    "retention_count", "publication_webhook",
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static char *const no_env[] = { NULL };

/* Writes `text` to a fresh temporary file; the caller frees the path. The
 * file is left for the OS to clean from /tmp only if a test crashes. */
static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/herald-test-config-XXXXXX");
    int fd = mkstemp(path);
    size_t len = strlen(text);

    cr_assert(fd >= 0, "mkstemp failed");
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

/* Loads `text` as a configuration file with `env`; returns the result of
 * config_load and leaves the path in *pathp (freed by the caller) when
 * non-NULL. */
static int load_text(const char *text, char *const *env, config *c,
                     char *err, char **pathp)
{
    char *path = write_tmp(text);
    int r = config_load(c, path, env, err, ERRLEN);

    unlink(path);
    if (pathp != NULL)
        *pathp = path;
    else
        free(path);
    return r;
}

/* Asserts that err contains the formatted text. */
static void __attribute__((format(printf, 2, 3)))
assert_has(const char *err, const char *fmt, ...)
{
    char want[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    cr_assert(strstr(err, want) != NULL, "expected \"%s\" in:\n%s", want,
              err);
}

/* Problems are lines, each ending in '\n'. */
static int count_lines(const char *s)
{
    int n = 0;

    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* The top-level fields of two configs are equal (namespaces ignored). */
static void assert_top_equal(const config *a, const config *b)
{
    cr_assert_str_eq(a->listen.host, b->listen.host);
    cr_assert_eq(a->listen.port, b->listen.port);
    cr_assert_eq(a->workers, b->workers);
    cr_assert_eq(a->log_level, b->log_level);
    cr_assert_str_eq(a->node_name, b->node_name);
    cr_assert_eq(a->max_connections, b->max_connections);
    cr_assert_eq(a->max_message_size, b->max_message_size);
    cr_assert_eq(a->max_channels_per_conn, b->max_channels_per_conn);
    cr_assert_eq(a->send_queue_max, b->send_queue_max);
    cr_assert_eq(a->max_batch_bytes, b->max_batch_bytes);
    cr_assert_eq(a->history_max_limit, b->history_max_limit);
    cr_assert_eq(a->ping_interval, b->ping_interval);
    cr_assert_eq(a->pong_timeout, b->pong_timeout);
    cr_assert_eq(a->shutdown_timeout, b->shutdown_timeout);
    cr_assert_eq(a->handshake_timeout, b->handshake_timeout);
    cr_assert_eq(a->rate_limit, b->rate_limit);
    cr_assert_eq(a->rate_burst, b->rate_burst);
    cr_assert_eq(a->worker_queue_max, b->worker_queue_max);
    cr_assert_str_eq(a->token_secret, b->token_secret);
    cr_assert_eq(a->allow_anonymous, b->allow_anonymous);
    cr_assert_str_eq(a->tls_cert, b->tls_cert);
    cr_assert_str_eq(a->tls_key, b->tls_key);
    cr_assert_eq(a->n_redis, b->n_redis);
    for (uint32_t i = 0; i < a->n_redis; i++) {
        cr_assert_str_eq(a->redis[i].host, b->redis[i].host);
        cr_assert_eq(a->redis[i].port, b->redis[i].port);
    }
    cr_assert_str_eq(a->redis_prefix, b->redis_prefix);
    cr_assert_eq(a->redis_timeout_ms, b->redis_timeout_ms);
    cr_assert_eq(a->presence_ttl, b->presence_ttl);
    cr_assert_eq(a->stream_ttl, b->stream_ttl);
}

static void assert_ns(const config_ns *ns, uint32_t hsize, uint32_t httl,
                      int presence, int join_leave, int allow_publish,
                      int allow_anon, uint32_t max_subs)
{
    cr_assert_not_null(ns);
    cr_assert_eq(ns->history_size, hsize, "%s: history_size %u", ns->name,
                 ns->history_size);
    cr_assert_eq(ns->history_ttl, httl, "%s: history_ttl %u", ns->name,
                 ns->history_ttl);
    cr_assert_eq(ns->presence, presence, "%s: presence", ns->name);
    cr_assert_eq(ns->join_leave, join_leave, "%s: join_leave", ns->name);
    cr_assert_eq(ns->allow_publish, allow_publish, "%s: allow_publish",
                 ns->name);
    cr_assert_eq(ns->allow_anonymous, allow_anon, "%s: allow_anonymous",
                 ns->name);
    cr_assert_eq(ns->max_subscribers, max_subs, "%s: max_subscribers %u",
                 ns->name, ns->max_subscribers);
}

static const config_ns *ns_named(const config *c, const char *name)
{
    return config_ns_find(c, name, strlen(name));
}

/* ---- defaults ----------------------------------------------------------- */

Test(config, defaults)
{
    config c;

    memset(&c, 0xab, sizeof c);
    config_defaults(&c);
    cr_assert_str_eq(c.listen.host, "0.0.0.0");
    cr_assert_eq(c.listen.port, 8080);
    cr_assert_eq(c.workers, 0);
    cr_assert_eq(c.log_level, LOG_INFO);
    cr_assert_str_eq(c.node_name, "");
    cr_assert_eq(c.max_connections, 0);
    cr_assert_eq(c.max_message_size, 65536);
    cr_assert_eq(c.max_channels_per_conn, 128);
    cr_assert_eq(c.send_queue_max, 1048576);
    cr_assert_eq(c.max_batch_bytes, 65536);
    cr_assert_eq(c.history_max_limit, 1000);
    cr_assert_eq(c.ping_interval, 25);
    cr_assert_eq(c.pong_timeout, 10);
    cr_assert_eq(c.shutdown_timeout, 5);
    cr_assert_eq(c.handshake_timeout, 10);
    cr_assert_eq(c.rate_limit, 0);
    cr_assert_eq(c.rate_burst, 100);
    cr_assert_eq(c.worker_queue_max, 65536);
    cr_assert_str_eq(c.token_secret, "");
    cr_assert_eq(c.allow_anonymous, 1);
    cr_assert_str_eq(c.tls_cert, "");
    cr_assert_str_eq(c.tls_key, "");
    cr_assert_eq(c.n_namespaces, 1);
    cr_assert_str_eq(c.namespaces[0].name, "");
    /* a short history out of the box: recovery without configuration */
    assert_ns(&c.namespaces[0], 100, 120, 0, 0, 1, 1, 0);
}

Test(config, load_without_file_or_env_gives_defaults)
{
    config c, d;
    char err[ERRLEN];
    char *const env[] = { "PATH=/usr/bin", "HOME=/root", NULL };

    memset(&c, 0x5a, sizeof c); /* config_load starts from the defaults */
    config_defaults(&d);
    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(err, "");
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0);
    cr_assert_eq(config_load(&c, NULL, NULL, err, sizeof err), 0);
}

/* ---- the file ----------------------------------------------------------- */

Test(config, file_sets_every_key)
{
    config c;
    char err[ERRLEN];
    const char *text =
        "listen = \"127.0.0.1:9001\";\n"
        "workers = 3;\n"
        "log_level = \"debug\";\n"
        "node_name = \"node-a.1\";\n"
        "max_connections = 5000;\n"
        "max_message_size = 1024;\n"
        "max_channels_per_conn = 7;\n"
        "send_queue_max = 8192;\n"
        "max_batch_bytes = 2048;\n"
        "history_max_limit = 50;\n"
        "ping_interval = 30;\n"
        "pong_timeout = 11;\n"
        "shutdown_timeout = 0;\n"
        "handshake_timeout = 3;\n"
        "rate_limit = 20;\n"
        "rate_burst = 40;\n"
        "worker_queue_max = 1000;\n"
        "token_secret = \"s3cr3t\";\n"
        "allow_anonymous = false;\n"
        "tls_cert = \"/etc/herald/cert.pem\";\n"
        "tls_key = \"/etc/herald/key.pem\";\n"
        "namespace_defaults = { history_size = 10; history_ttl = 60;\n"
        "  presence = true; join_leave = true; allow_publish = false;\n"
        "  allow_anonymous = false; max_subscribers = 99; };\n";

    cr_assert_eq(load_text(text, no_env, &c, err, NULL), 0, "%s", err);
    cr_assert_str_eq(c.listen.host, "127.0.0.1");
    cr_assert_eq(c.listen.port, 9001);
    cr_assert_eq(c.workers, 3);
    cr_assert_eq(c.log_level, LOG_DEBUG);
    cr_assert_str_eq(c.node_name, "node-a.1");
    cr_assert_eq(c.max_connections, 5000);
    cr_assert_eq(c.max_message_size, 1024);
    cr_assert_eq(c.max_channels_per_conn, 7);
    cr_assert_eq(c.send_queue_max, 8192);
    cr_assert_eq(c.max_batch_bytes, 2048);
    cr_assert_eq(c.history_max_limit, 50);
    cr_assert_eq(c.ping_interval, 30);
    cr_assert_eq(c.pong_timeout, 11);
    cr_assert_eq(c.shutdown_timeout, 0);
    cr_assert_eq(c.handshake_timeout, 3);
    cr_assert_eq(c.rate_limit, 20);
    cr_assert_eq(c.rate_burst, 40);
    cr_assert_eq(c.worker_queue_max, 1000);
    cr_assert_str_eq(c.token_secret, "s3cr3t");
    cr_assert_eq(c.allow_anonymous, 0);
    cr_assert_str_eq(c.tls_cert, "/etc/herald/cert.pem");
    cr_assert_str_eq(c.tls_key, "/etc/herald/key.pem");
    cr_assert_eq(c.n_namespaces, 1);
    assert_ns(&c.namespaces[0], 10, 60, 1, 1, 0, 0, 99);
}

Test(config, file_range_limits_are_inclusive)
{
    config c;
    char err[ERRLEN];
    const char *text = "workers = 256;\n"
                       "max_message_size = 16777216;\n"
                       "ping_interval = 3600;\n"
                       "pong_timeout = 1;\n"
                       "send_queue_max = 4096;\n"
                       "max_batch_bytes = 1024;\n"
                       "listen = \"[::]:0\";\n"
                       "namespace_defaults = { history_size = 1000000; };\n";

    cr_assert_eq(load_text(text, no_env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(c.workers, 256);
    cr_assert_eq(c.max_message_size, 16777216);
    cr_assert_eq(c.ping_interval, 3600);
    cr_assert_eq(c.pong_timeout, 1);
    cr_assert_eq(c.send_queue_max, 4096);
    cr_assert_eq(c.max_batch_bytes, 1024);
    cr_assert_str_eq(c.listen.host, "::");
    cr_assert_eq(c.listen.port, 0);
    cr_assert_eq(c.namespaces[0].history_size, 1000000);
}

Test(config, file_named_namespaces_inherit_defaults)
{
    config c;
    char err[ERRLEN];
    const char *text =
        "namespace_defaults = { history_size = 5; history_ttl = 300;\n"
        "                       max_subscribers = 1000; };\n"
        "namespaces = (\n"
        "  { name = \"chat\"; history_size = 100; presence = true;\n"
        "    join_leave = true; },\n"
        "  { name = \"news\"; allow_publish = false; },\n"
        "  { name = \"a_b.c@d/e=f-g\"; history_ttl = 0; }\n"
        ");\n";

    cr_assert_eq(load_text(text, no_env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(c.n_namespaces, 4);
    cr_assert_str_eq(c.namespaces[0].name, "");
    assert_ns(&c.namespaces[0], 5, 300, 0, 0, 1, 1, 1000);
    assert_ns(ns_named(&c, "chat"), 100, 300, 1, 1, 1, 1, 1000);
    assert_ns(ns_named(&c, "news"), 5, 300, 0, 0, 0, 1, 1000);
    assert_ns(ns_named(&c, "a_b.c@d/e=f-g"), 5, 0, 0, 0, 1, 1, 1000);
}

Test(config, include_is_relative_to_the_file)
{
    config c;
    char err[ERRLEN], text[256];
    char *inc = write_tmp("ping_interval = 42;\n");
    const char *base = strrchr(inc, '/') + 1;
    int r;

    snprintf(text, sizeof text, "@include \"%s\"\nworkers = 2;\n", base);
    cr_assert_eq(chdir("/"), 0); /* not where the files are */
    r = load_text(text, no_env, &c, err, NULL);
    unlink(inc);
    free(inc);
    cr_assert_eq(r, 0, "%s", err);
    cr_assert_eq(c.ping_interval, 42);
    cr_assert_eq(c.workers, 2);
}

/* libconfig 1.5 exits the process ("input in flex scanner failed") on a
 * directory or a read error and blocks on a FIFO; every file it would read
 * is checked first (found by tests/fuzz/fuzz_config). */
Test(config, include_of_a_directory_or_fifo_is_refused)
{
    config c;
    char err[ERRLEN], text[512];

    cr_assert_eq(load_text("workers = 2;\n@include \".\"\n", no_env, &c, err,
                           NULL), -1);
    assert_has(err, ":2: @include \".\": not a regular file");
    cr_assert_eq(count_lines(err), 1, "%s", err);

    /* One level down: the message names the including file as written. */
    char *inc = write_tmp("\n  @include \"\"\n");
    const char *base = strrchr(inc, '/') + 1;
    snprintf(text, sizeof text, "@include \"%s\"\n", base);
    cr_assert_eq(load_text(text, no_env, &c, err, NULL), -1);
    assert_has(err, "%s:2: @include \"\": not a regular file", base);
    unlink(inc);
    free(inc);

    char fifo[] = "/tmp/herald-test-config-fifo-XXXXXX";
    int fd = mkstemp(fifo);
    cr_assert(fd >= 0);
    close(fd);
    unlink(fifo);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    snprintf(text, sizeof text, "@include \"%s\"\n", strrchr(fifo, '/') + 1);
    cr_assert_eq(load_text(text, no_env, &c, err, NULL), -1);
    assert_has(err, "not a regular file");
    unlink(fifo);

    /* A regular file that fails to read (EIO): libconfig exits on it too.
     * The files are in /tmp, which is the include directory. */
    cr_assert_eq(load_text("@include \"../proc/self/mem\"\n", no_env, &c, err,
                           NULL), -1);
    assert_has(err, ":1: cannot read ../proc/self/mem: ");

    cr_assert_eq(config_load(&c, "/tmp", no_env, err, ERRLEN), -1);
    assert_has(err, "/tmp: cannot read configuration file: not a regular file");
}

/* Only what libconfig would open is checked: @include text in comments and
 * strings, or not at the start of a line, is left alone. */
Test(config, include_text_in_comments_and_strings_is_not_an_include)
{
    config c;
    char err[ERRLEN];
    const char *text =
        "/* a comment\n@include \".\"\n*/\n"
        "# @include \".\"\n"
        "// @include \".\"\n"
        "token_secret = \"a \\\" b\n@include \\\".\\\"\n\";\n"
        "node_name = \"x\"; workers = 3;\n";

    cr_assert_eq(load_text(text, no_env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(c.workers, 3);
    cr_assert_str_eq(c.token_secret, "a \" b\n@include \".\"\n");
}

/* ---- namespace lookup --------------------------------------------------- */

Test(config, ns_find)
{
    config c;
    char err[ERRLEN];
    const char *text = "namespaces = ( { name = \"chat\"; history_size = 9; },"
                       " { name = \"chatter\"; } );\n";
    const char *chan = "chat:room1";

    cr_assert_eq(load_text(text, no_env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(config_ns_find(&c, "", 0), &c.namespaces[0]);
    cr_assert_eq(config_ns_find(&c, NULL, 0), &c.namespaces[0]);
    /* A channel name is not NUL-terminated after its namespace. */
    cr_assert_eq(config_ns_find(&c, chan, 4)->history_size, 9);
    cr_assert_str_eq(config_ns_find(&c, chan, 4)->name, "chat");
    cr_assert_str_eq(config_ns_find(&c, "chatter", 7)->name, "chatter");
    cr_assert_null(config_ns_find(&c, "cha", 3));
    cr_assert_null(config_ns_find(&c, "chatt", 5));
    cr_assert_null(config_ns_find(&c, "Chat", 4));
    cr_assert_null(config_ns_find(&c, "other", 5));
    cr_assert_null(config_ns_find(&c, "chat\0", 5));
    {
        char huge[300];
        memset(huge, 'c', sizeof huge);
        cr_assert_null(config_ns_find(&c, huge, sizeof huge));
    }
}

/* ---- precedence and the environment ------------------------------------- */

Test(config, precedence_file_env_cli)
{
    config c;
    char err[ERRLEN];
    char *const env[] = { "HERALD_PING_INTERVAL=40", "HERALD_WORKERS=4",
                          NULL };
    const char *text = "ping_interval = 30;\n"
                       "workers = 2;\n"
                       "pong_timeout = 12;\n"
                       "listen = \"10.0.0.1:1000\";\n";

    cr_assert_eq(load_text(text, env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(c.pong_timeout, 12);   /* file only */
    cr_assert_eq(c.ping_interval, 40);  /* env beats file */
    cr_assert_eq(c.workers, 4);
    cr_assert_eq(config_set(&c, "workers", "8", "--workers", err,
                            sizeof err), 0, "%s", err);
    cr_assert_eq(c.workers, 8);         /* command line beats env */
    cr_assert_eq(config_set(&c, "listen", "127.0.0.1:9000", "--listen", err,
                            sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.listen.host, "127.0.0.1");
    cr_assert_eq(c.listen.port, 9000);
    cr_assert_eq(config_set(&c, "log_level", "warn", "--log-level", err,
                            sizeof err), 0, "%s", err);
    cr_assert_eq(c.log_level, LOG_WARN);
}

/* An environment override of a default must reach every namespace that
 * did not set that key itself, and only those. */
Test(config, ns_of_channel)
{
    config c;
    char err[ERRLEN];
    const char *text = "namespaces = ( { name = \"chat\"; history_size = 9; } );\n";
    cr_assert_eq(load_text(text, no_env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(config_ns_of_channel(&c, "lobby", 5), &c.namespaces[0],
                 "no ':' -> default namespace");
    cr_assert_eq(config_ns_of_channel(&c, ":x", 2), &c.namespaces[0],
                 "empty namespace -> default");
    cr_assert_eq(config_ns_of_channel(&c, "chat:a:b", 8)->history_size, 9,
                 "namespace ends at the first ':'");
    cr_assert_null(config_ns_of_channel(&c, "news:x", 6), "not configured");
    cr_assert_eq(config_ns_of_channel(&c, "chat:room1XXX", 10)->history_size, 9,
                 "reads only len bytes");
}

Test(config, env_default_override_reaches_inheriting_namespaces)
{
    config c;
    char err[ERRLEN];
    char *const env[] = { "HERALD_NAMESPACE_DEFAULTS__HISTORY_SIZE=20",
                          "HERALD_NAMESPACES__a__HISTORY_TTL=7",
                          "HERALD_NAMESPACE_DEFAULTS__PRESENCE=true", NULL };
    const char *text =
        "namespace_defaults = { history_size = 10; history_ttl = 60; };\n"
        "namespaces = ( { name = \"a\"; history_size = 5; },\n"
        "               { name = \"b\"; presence = false; } );\n";

    cr_assert_eq(load_text(text, env, &c, err, NULL), 0, "%s", err);
    assert_ns(&c.namespaces[0], 20, 60, 1, 0, 1, 1, 0);
    assert_ns(ns_named(&c, "a"), 5, 7, 1, 0, 1, 1, 0);
    assert_ns(ns_named(&c, "b"), 20, 60, 0, 0, 1, 1, 0);
}

Test(config, env_creates_namespaces)
{
    config c;
    char err[ERRLEN];
    char *const env[] = {
        "HERALD_NAMESPACES__new.ns__PRESENCE=on",
        "HERALD_NAMESPACES__my_ns__JOIN_LEAVE=yes",
        "HERALD_NAMESPACES__a___MAX_SUBSCRIBERS=3", /* name "a_" */
        "HERALD_NAMESPACES__x__y__ALLOW_PUBLISH=off", /* name "x__y" */
        "HERALD_NAMESPACE_DEFAULTS__HISTORY_SIZE=50",
        NULL,
    };

    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.n_namespaces, 5);
    assert_ns(&c.namespaces[0], 50, 120, 0, 0, 1, 1, 0);
    assert_ns(ns_named(&c, "new.ns"), 50, 120, 1, 0, 1, 1, 0);
    assert_ns(ns_named(&c, "my_ns"), 50, 120, 0, 1, 1, 1, 0);
    assert_ns(ns_named(&c, "a_"), 50, 120, 0, 0, 1, 1, 3);
    assert_ns(ns_named(&c, "x__y"), 50, 120, 0, 0, 0, 1, 0);
}

Test(config, env_namespace_names_are_case_sensitive)
{
    config c;
    char err[ERRLEN];
    char *const env[] = { "HERALD_NAMESPACES__Chat__HISTORY_SIZE=9",
                          "HERALD_NAMESPACES__chat__HISTORY_SIZE=4", NULL };
    const char *text =
        "namespaces = ( { name = \"Chat\"; presence = true; } );\n";

    cr_assert_eq(load_text(text, env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(c.n_namespaces, 3);
    assert_ns(ns_named(&c, "Chat"), 9, 120, 1, 0, 1, 1, 0);
    assert_ns(ns_named(&c, "chat"), 4, 120, 0, 0, 1, 1, 0);
}

Test(config, env_sets_every_top_level_key)
{
    config c;
    char err[ERRLEN];
    char *const env[] = {
        "HERALD_LISTEN=[::1]:7000",
        "HERALD_WORKERS=5",
        "HERALD_LOG_LEVEL=ERROR",
        "HERALD_NODE_NAME=n1",
        "HERALD_MAX_CONNECTIONS=123",
        "HERALD_MAX_MESSAGE_SIZE=256",
        "HERALD_MAX_CHANNELS_PER_CONN=1",
        "HERALD_SEND_QUEUE_MAX=1073741824",
        "HERALD_MAX_BATCH_BYTES=16777216",
        "HERALD_HISTORY_MAX_LIMIT=1000000",
        "HERALD_PING_INTERVAL=1",
        "HERALD_PONG_TIMEOUT=3600",
        "HERALD_SHUTDOWN_TIMEOUT=9",
        "HERALD_HANDSHAKE_TIMEOUT=2",
        "HERALD_RATE_LIMIT=10",
        "HERALD_RATE_BURST=1",
        "HERALD_WORKER_QUEUE_MAX=64",
        "HERALD_TOKEN_SECRET=k=v=w", /* only the first '=' separates */
        "HERALD_ALLOW_ANONYMOUS=no",
        "HERALD_TLS_CERT=c.pem",
        "HERALD_TLS_KEY=k.pem",
        "HERALD_NAMESPACE_DEFAULTS__HISTORY_SIZE=1",
        "HERALD_NAMESPACE_DEFAULTS__HISTORY_TTL=2",
        "HERALD_NAMESPACE_DEFAULTS__PRESENCE=1",
        "HERALD_NAMESPACE_DEFAULTS__JOIN_LEAVE=TRUE",
        "HERALD_NAMESPACE_DEFAULTS__ALLOW_PUBLISH=0",
        "HERALD_NAMESPACE_DEFAULTS__ALLOW_ANONYMOUS=Off",
        "HERALD_NAMESPACE_DEFAULTS__MAX_SUBSCRIBERS=3",
        NULL,
    };

    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.listen.host, "::1");
    cr_assert_eq(c.listen.port, 7000);
    cr_assert_eq(c.workers, 5);
    cr_assert_eq(c.log_level, LOG_ERROR);
    cr_assert_str_eq(c.node_name, "n1");
    cr_assert_eq(c.max_connections, 123);
    cr_assert_eq(c.max_message_size, 256);
    cr_assert_eq(c.max_channels_per_conn, 1);
    cr_assert_eq(c.send_queue_max, 1073741824);
    cr_assert_eq(c.max_batch_bytes, 16777216);
    cr_assert_eq(c.history_max_limit, 1000000);
    cr_assert_eq(c.ping_interval, 1);
    cr_assert_eq(c.pong_timeout, 3600);
    cr_assert_eq(c.shutdown_timeout, 9);
    cr_assert_eq(c.handshake_timeout, 2);
    cr_assert_eq(c.rate_limit, 10);
    cr_assert_eq(c.rate_burst, 1);
    cr_assert_eq(c.worker_queue_max, 64);
    cr_assert_str_eq(c.token_secret, "k=v=w");
    cr_assert_eq(c.allow_anonymous, 0);
    cr_assert_str_eq(c.tls_cert, "c.pem");
    cr_assert_str_eq(c.tls_key, "k.pem");
    assert_ns(&c.namespaces[0], 1, 2, 1, 1, 0, 0, 3);
}

Test(config, env_boolean_spellings)
{
    static const char *const yes[] = { "true", "1", "yes", "on", "TRUE",
                                       "Yes", "ON" };
    static const char *const no[] = { "false", "0", "no", "off", "False",
                                      "NO", "Off" };
    config c;
    char err[ERRLEN], var[64];
    char *env[] = { var, NULL };

    for (size_t i = 0; i < COUNT(yes); i++) {
        snprintf(var, sizeof var, "HERALD_NAMESPACE_DEFAULTS__PRESENCE=%s",
                 yes[i]);
        cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), 0, "%s",
                     err);
        cr_assert_eq(c.namespaces[0].presence, 1, "%s", var);
    }
    for (size_t i = 0; i < COUNT(no); i++) {
        snprintf(var, sizeof var, "HERALD_ALLOW_ANONYMOUS=%s", no[i]);
        cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), 0, "%s",
                     err);
        cr_assert_eq(c.allow_anonymous, 0, "%s", var);
    }
    snprintf(var, sizeof var, "HERALD_ALLOW_ANONYMOUS=maybe");
    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), -1);
    assert_has(err, "env HERALD_ALLOW_ANONYMOUS: key 'allow_anonymous': "
                    "expected a boolean");
    assert_has(err, "'maybe'");
}

Test(config, env_integers_must_be_fully_numeric)
{
    static const char *const bad[] = { "", "12abc", " 5", "5 ", "+5", "-1",
                                       "0x10", "1e3", "3.0" };
    config c;
    char err[ERRLEN], var[64];
    char *env[] = { var, NULL };

    for (size_t i = 0; i < COUNT(bad); i++) {
        snprintf(var, sizeof var, "HERALD_PING_INTERVAL=%s", bad[i]);
        cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), -1, "%s",
                     var);
        assert_has(err, "env HERALD_PING_INTERVAL: key 'ping_interval': "
                        "expected a non-negative integer, got '%s'", bad[i]);
    }
    snprintf(var, sizeof var, "HERALD_PING_INTERVAL=99999999999999999999");
    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), -1);
    assert_has(err, "env HERALD_PING_INTERVAL: key 'ping_interval': "
                    "99999999999999999999 is out of range (1..3600)");
    snprintf(var, sizeof var, "HERALD_PING_INTERVAL=0");
    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), -1);
    assert_has(err, "0 is out of range (1..3600)");
    snprintf(var, sizeof var, "HERALD_PING_INTERVAL=0025");
    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.ping_interval, 25);
}

Test(config, env_unknown_variables_are_errors)
{
    config c;
    char err[ERRLEN];
    char *const env[] = {
        "HERALD_FOO=1",
        "HERALD_PING_INTERVALL=3",
        "HERALD_ping_interval=3",
        "HERALD_NAMESPACE_DEFAULTS__NAME=x",
        "HERALD_NAMESPACES__chat__BOGUS=1",
        "HERALD_NAMESPACES__chat=1",
        "HERALD_NAMESPACES__bad:name__PRESENCE=1",
        "HERALD_PRESENCE=1",
        NULL,
    };

    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), -1);
    cr_assert_eq(count_lines(err), 8, "%s", err);
    assert_has(err, "env HERALD_PRESENCE: key 'presence': unknown key (did "
                    "you mean HERALD_NAMESPACE_DEFAULTS__PRESENCE?)");
    assert_has(err, "env HERALD_FOO: key 'foo': unknown key");
    assert_has(err, "env HERALD_PING_INTERVALL: key 'ping_intervall': "
                    "unknown key (did you mean HERALD_PING_INTERVAL?)");
    assert_has(err, "env HERALD_ping_interval: key 'ping_interval': "
                    "unknown key");
    assert_has(err, "env HERALD_NAMESPACE_DEFAULTS__NAME: key "
                    "'namespace_defaults.name': unknown key");
    assert_has(err, "env HERALD_NAMESPACES__chat__BOGUS: key "
                    "'namespaces.chat.bogus': unknown key");
    assert_has(err, "env HERALD_NAMESPACES__chat: expected "
                    "HERALD_NAMESPACES__<name>__<KEY>");
    assert_has(err, "env HERALD_NAMESPACES__bad:name__PRESENCE: key "
                    "'namespaces.bad:name': invalid character");
}

Test(config, env_ignores_other_variables)
{
    config c, d;
    char err[ERRLEN];
    char *const env[] = { "HERALD_CONFIG=/etc/herald.conf", "HERALD_BIN=/x",
                          "HERALD_SANITIZE=1", "HERALDX=1", "HERALD=1",
                          "PATH=/bin", "NOEQUALS", NULL };

    config_defaults(&d);
    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0);
}

Test(config, env_value_errors_name_the_variable)
{
    config c;
    char err[ERRLEN];
    char *const env[] = { "HERALD_LISTEN=nowhere",
                          "HERALD_LOG_LEVEL=loud",
                          "HERALD_NAMESPACES__chat__HISTORY_SIZE=2000000",
                          "HERALD_NODE_NAME=has space", NULL };

    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), -1);
    cr_assert_eq(count_lines(err), 4, "%s", err);
    assert_has(err, "env HERALD_LISTEN: key 'listen': invalid address "
                    "'nowhere': missing ':PORT'");
    assert_has(err, "env HERALD_LOG_LEVEL: key 'log_level': unknown log "
                    "level 'loud'");
    assert_has(err, "env HERALD_NAMESPACES__chat__HISTORY_SIZE: key "
                    "'namespaces.chat.history_size': 2000000 is out of "
                    "range (0..1000000)");
    assert_has(err, "env HERALD_NODE_NAME: key 'node_name': may only "
                    "contain");
}

/* ---- errors from the file ----------------------------------------------- */

Test(config, file_unknown_key_has_file_line_and_key)
{
    config c;
    char err[ERRLEN], *path;
    const char *text = "workers = 1;\n"
                       "\n"
                       "ping_intervall = 3;\n"
                       "zzz = 1;\n"
                       "history_size = 5;\n";

    cr_assert_eq(load_text(text, no_env, &c, err, &path), -1);
    assert_has(err, "%s:3: key 'ping_intervall': unknown key (did you mean "
                    "'ping_interval'?)", path);
    assert_has(err, "%s:4: key 'zzz': unknown key", path);
    assert_has(err, "%s:5: key 'history_size': unknown key (namespace "
                    "options go in namespace_defaults", path);
    cr_assert_eq(count_lines(err), 3, "%s", err);
    free(path);
}

Test(config, file_wrong_types)
{
    config c;
    char err[ERRLEN], *path;
    const char *text = "ping_interval = \"25\";\n"          /* 1 */
                       "allow_anonymous = 1;\n"             /* 2 */
                       "listen = 8080;\n"                   /* 3 */
                       "workers = 1.5;\n"                   /* 4 */
                       "namespace_defaults = ( 1 );\n"      /* 5 */
                       "namespaces = { name = \"x\"; };\n"  /* 6 */
                       "log_level = [ \"info\" ];\n";       /* 7 */

    cr_assert_eq(load_text(text, no_env, &c, err, &path), -1);
    assert_has(err, "%s:1: key 'ping_interval': expected an integer, got a "
                    "string", path);
    assert_has(err, "%s:2: key 'allow_anonymous': expected true or false, "
                    "got an integer", path);
    assert_has(err, "%s:3: key 'listen': expected a string, got an integer",
               path);
    assert_has(err, "%s:4: key 'workers': expected an integer, got a "
                    "floating-point number", path);
    assert_has(err, "%s:5: key 'namespace_defaults': expected a group", path);
    assert_has(err, "%s:6: key 'namespaces': expected a list", path);
    assert_has(err, "%s:7: key 'log_level': expected a string, got an array",
               path);
    cr_assert_eq(count_lines(err), 7, "%s", err);
    free(path);
}

Test(config, file_out_of_range)
{
    config c;
    char err[ERRLEN], *path;
    const char *text =
        "ping_interval = 0;\n"                                  /* 1 */
        "workers = -1;\n"                                       /* 2 */
        "max_message_size = 16777217;\n"                        /* 3 */
        "send_queue_max = 3000000000L;\n"                       /* 4 */
        "namespaces = (\n"                                      /* 5 */
        "  { name = \"chat\";\n"                                /* 6 */
        "    history_size = 1000001; }\n"                       /* 7 */
        ");\n"
        "namespace_defaults = {\n"                              /* 9 */
        "  max_subscribers = 10000001; };\n";                   /* 10 */

    cr_assert_eq(load_text(text, no_env, &c, err, &path), -1);
    assert_has(err, "%s:1: key 'ping_interval': 0 is out of range (1..3600)",
               path);
    assert_has(err, "%s:2: key 'workers': -1 is out of range (0..256)", path);
    assert_has(err, "%s:3: key 'max_message_size': 16777217 is out of range "
                    "(256..16777216)", path);
    assert_has(err, "%s:4: key 'send_queue_max': 3000000000 is out of range",
               path);
    assert_has(err, "%s:7: key 'namespaces.chat.history_size': 1000001 is "
                    "out of range (0..1000000)", path);
    assert_has(err, "%s:10: key 'namespace_defaults.max_subscribers': "
                    "10000001 is out of range", path);
    cr_assert_eq(count_lines(err), 6, "%s", err);
    free(path);
}

Test(config, file_bad_strings)
{
    config c;
    char err[ERRLEN], *path, text[1024];
    char longname[100];

    memset(longname, 'n', 64);
    longname[64] = '\0';
    snprintf(text, sizeof text,
             "log_level = \"verbose\";\n"
             "node_name = \"%s\";\n"
             "listen = \"[::1]8080\";\n",
             longname);
    cr_assert_eq(load_text(text, no_env, &c, err, &path), -1);
    assert_has(err, "%s:1: key 'log_level': unknown log level 'verbose' "
                    "(expected debug, info, warn or error)", path);
    assert_has(err, "%s:2: key 'node_name': too long (64 bytes, at most 63)",
               path);
    assert_has(err, "%s:3: key 'listen': invalid address '[::1]8080': "
                    "expected ':PORT' after ']'", path);
    free(path);
}

Test(config, file_secret_never_echoed)
{
    config c;
    char err[ERRLEN], text[1024], secret[300];

    memset(secret, 'S', sizeof secret - 1);
    secret[sizeof secret - 1] = '\0';
    snprintf(text, sizeof text, "token_secret = \"%s\";\n", secret);
    cr_assert_eq(load_text(text, no_env, &c, err, NULL), -1);
    assert_has(err, "key 'token_secret': too long (299 bytes, at most 255)");
    cr_assert_null(strstr(err, "SSSS"), "%s", err);
}

Test(config, file_syntax_error_has_file_and_line)
{
    config c;
    char err[ERRLEN], *path;
    const char *text = "workers = 1;\n"
                       "ping_interval = ;\n"
                       "pong_timeout = 3;\n";

    cr_assert_eq(load_text(text, no_env, &c, err, &path), -1);
    assert_has(err, "%s:2: syntax error", path);
    free(path);
}

Test(config, file_duplicate_key_is_an_error)
{
    config c;
    char err[ERRLEN], *path;

    cr_assert_eq(load_text("workers = 1;\nworkers = 2;\n", no_env, &c, err,
                           &path), -1);
    assert_has(err, "%s:2: duplicate setting name", path);
    free(path);
}

Test(config, file_missing)
{
    config c;
    char err[ERRLEN];

    cr_assert_eq(config_load(&c, "/nonexistent/herald.conf", no_env, err,
                             sizeof err), -1);
    assert_has(err, "/nonexistent/herald.conf: cannot read configuration "
                    "file: No such file or directory");
}

Test(config, file_namespace_list_errors)
{
    config c;
    char err[ERRLEN], *path;
    const char *text =
        "namespaces = (\n"                                          /* 1 */
        "  { name = \"chat\"; },\n"                                 /* 2 */
        "  { history_size = 3; },\n"                                /* 3 */
        "  { name = \"chat\"; },\n"                                 /* 4 */
        "  { name = \"a:b\"; },\n"                                  /* 5 */
        "  { name = \"\"; },\n"                                     /* 6 */
        "  { name = 7; history_size = -1; },\n"                     /* 7 */
        "  { name = \"ok\"; presense = true; },\n"                  /* 8 */
        "  \"str\",\n"                                              /* 9 */
        "  { name = \"x\"; history_size = \"big\"; }\n"             /* 10 */
        ");\n"
        "namespace_defaults = { name = \"d\"; };\n";                /* 12 */

    cr_assert_eq(load_text(text, no_env, &c, err, &path), -1);
    assert_has(err, "%s:3: key 'namespaces[1]': missing 'name'", path);
    assert_has(err, "%s:4: key 'namespaces.chat': duplicate namespace (first "
                    "defined at line 2)", path);
    assert_has(err, "%s:5: key 'namespaces[3].name': invalid character",
               path);
    assert_has(err, "%s:6: key 'namespaces[4].name': empty namespace name",
               path);
    assert_has(err, "%s:7: key 'namespaces[5].name': expected a string, got "
                    "an integer", path);
    assert_has(err, "%s:7: key 'namespaces[5].history_size': -1 is out of "
                    "range", path);
    assert_has(err, "%s:8: key 'namespaces.ok.presense': unknown key (did "
                    "you mean 'presence'?)", path);
    assert_has(err, "%s:9: key 'namespaces[7]': expected a group", path);
    assert_has(err, "%s:10: key 'namespaces.x.history_size': expected an "
                    "integer, got a string", path);
    assert_has(err, "%s:12: key 'namespace_defaults.name': unknown key",
               path);
    cr_assert_eq(count_lines(err), 10, "%s", err);
    free(path);
}

Test(config, namespace_name_length_and_count_limits)
{
    config c;
    char err[ERRLEN];
    char *text = malloc(1 << 16), *p;
    size_t n = 0;

    /* 63 named namespaces fit (namespaces[0] is the default) ... */
    n += (size_t)sprintf(text + n, "namespaces = (\n");
    for (int i = 0; i < CONFIG_MAX_NAMESPACES - 1; i++)
        n += (size_t)sprintf(text + n, "%s{ name = \"n%d\"; }\n",
                             i ? "," : "", i);
    p = text + n;
    sprintf(p, ");\n");
    cr_assert_eq(load_text(text, no_env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(c.n_namespaces, CONFIG_MAX_NAMESPACES);
    /* ... and one more from the file or the environment does not. */
    {
        char *const env[] = { "HERALD_NAMESPACES__extra__PRESENCE=1", NULL };
        cr_assert_eq(load_text(text, env, &c, err, NULL), -1);
        assert_has(err, "env HERALD_NAMESPACES__extra__PRESENCE: key "
                        "'namespaces.extra.presence': too many namespaces "
                        "(at most 63");
    }
    sprintf(p, ",{ name = \"n99\"; });\n");
    cr_assert_eq(load_text(text, no_env, &c, err, NULL), -1);
    assert_has(err, "key 'namespaces.n99': too many namespaces");

    /* Names: 63 bytes are fine, 64 are not. */
    memset(text, 0, 1 << 16);
    strcpy(text, "namespaces = ( { name = \"");
    memset(text + strlen(text), 'x', 63);
    strcat(text, "\"; } );\n");
    cr_assert_eq(load_text(text, no_env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(strlen(c.namespaces[1].name), 63);
    p = strstr(text, "\"; }");
    memmove(p + 1, p, strlen(p) + 1);
    *p = 'x';
    cr_assert_eq(load_text(text, no_env, &c, err, NULL), -1);
    assert_has(err, "namespace name too long (64 bytes, at most 63)");
    free(text);
}

Test(config, all_problems_reported_and_target_untouched)
{
    config c, before;
    char err[ERRLEN], *path;
    char *const env[] = { "HERALD_WORKERS=x", NULL };
    const char *text = "ping_interval = 0;\n"
                       "pong_timeout = 0;\n"
                       "nope = 1;\n"
                       "allow_anonymous = \"yes\";\n"
                       "tls_cert = \"/c.pem\";\n";

    memset(&c, 0x11, sizeof c);
    before = c;
    cr_assert_eq(load_text(text, env, &c, err, &path), -1);
    cr_assert_eq(count_lines(err), 6, "%s", err);
    assert_has(err, "%s:1: key 'ping_interval'", path);
    assert_has(err, "%s:2: key 'pong_timeout'", path);
    assert_has(err, "%s:3: key 'nope'", path);
    assert_has(err, "%s:4: key 'allow_anonymous'", path);
    assert_has(err, "%s:5: key 'tls_cert': set without tls_key", path);
    assert_has(err, "env HERALD_WORKERS: key 'workers'");
    cr_assert_eq(memcmp(&c, &before, sizeof c), 0);
    free(path);
}

Test(config, tls_needs_both_files)
{
    config c;
    char err[ERRLEN];
    char *const env[] = { "HERALD_TLS_KEY=/k.pem", NULL };

    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), -1);
    assert_has(err, "env HERALD_TLS_KEY: key 'tls_key': set without "
                    "tls_cert");
}

/* A TLS key that would be ignored without another is an error where it
 * was set: a deployment must never believe it asks for client
 * certificates while it does not. */
Test(config, tls_keys_that_need_others)
{
    config c;
    char err[ERRLEN], *path;
    const char *text = "tls_listen = \"127.0.0.1:8443\";\n"
                       "tls_client_ca = \"/ca.pem\";\n"
                       "api_tls = true;\n"
                       "api_client_ca = \"/ca.pem\";\n";

    cr_assert_eq(load_text(text, no_env, &c, err, &path), -1);
    assert_has(err, "%s:1: key 'tls_listen': needs tls_cert and tls_key",
               path);
    assert_has(err, "%s:2: key 'tls_client_ca': needs tls_cert and tls_key",
               path);
    assert_has(err, "%s:3: key 'api_tls': needs tls_cert and tls_key", path);
    assert_has(err, "%s:3: key 'api_tls': needs api_listen", path);
    cr_assert_eq(count_lines(err), 4, "%s", err);
    free(path);

    char *const env[] = { "HERALD_TLS_CERT=/c.pem", "HERALD_TLS_KEY=/k.pem",
                          "HERALD_API_LISTEN=127.0.0.1:9000",
                          "HERALD_API_CLIENT_CA=/ca.pem", NULL };
    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), -1);
    assert_has(err, "env HERALD_API_CLIENT_CA: key 'api_client_ca': needs "
                    "api_tls = true");
    cr_assert_eq(count_lines(err), 1, "%s", err);
}

Test(config, tls_keys_together)
{
    config c;
    char err[ERRLEN], *path;
    const char *text = "listen = \"0.0.0.0:8080\";\n"
                       "tls_cert = \"/c.pem\";\n"
                       "tls_key = \"/k.pem\";\n"
                       "tls_listen = \"0.0.0.0:8443\";\n"
                       "tls_client_ca = \"/clients.pem\";\n"
                       "api_listen = \"127.0.0.1:9000\";\n"
                       "api_tls = true;\n"
                       "api_client_ca = \"/backends.pem\";\n";

    cr_assert_eq(load_text(text, no_env, &c, err, &path), 0, "%s", err);
    cr_assert_str_eq(c.tls_listen.host, "0.0.0.0");
    cr_assert_eq(c.tls_listen.port, 8443);
    cr_assert_str_eq(c.tls_client_ca, "/clients.pem");
    cr_assert_eq(c.api_tls, 1);
    cr_assert_str_eq(c.api_client_ca, "/backends.pem");
    free(path);

    char *const same[] = { "HERALD_TLS_LISTEN=0.0.0.0:8080", NULL };
    cr_assert_eq(load_text(text, same, &c, err, &path), -1);
    assert_has(err, "env HERALD_TLS_LISTEN: key 'tls_listen': is the address "
                    "of listen");
    free(path);

    config_defaults(&c);
    cr_assert_str_eq(c.tls_listen.host, "");
    cr_assert_str_eq(c.tls_client_ca, "");
    cr_assert_eq(c.api_tls, 0);
    cr_assert_str_eq(c.api_client_ca, "");
}

Test(config, error_buffer_is_truncated_safely)
{
    config c;
    char err[16];
    char *const env[] = { "HERALD_A=1", "HERALD_B=2", "HERALD_C=3", NULL };

    memset(err, 'z', sizeof err);
    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), -1);
    cr_assert_str_eq(err, "env HERALD_A: \n"); /* cut, still a line */
    cr_assert_eq(config_load(&c, NULL, env, NULL, 0), -1);
    cr_assert_eq(config_load(&c, NULL, env, err, 1), -1);
    cr_assert_str_eq(err, "");
}

/* ---- config_set --------------------------------------------------------- */

Test(config, set_listen_forms)
{
    static const struct {
        const char *in, *host;
        uint16_t port;
    } good[] = {
        { "127.0.0.1:9000", "127.0.0.1", 9000 },
        { "0.0.0.0:0", "0.0.0.0", 0 },
        { "[::1]:8080", "::1", 8080 },
        { "[::]:65535", "::", 65535 },
        { "[fe80::1%eth0]:80", "fe80::1%eth0", 80 },
        { "[::ffff:10.0.0.1]:1", "::ffff:10.0.0.1", 1 },
        { "localhost:8080", "localhost", 8080 },
        { "herald-1.example.com:443", "herald-1.example.com", 443 },
    };
    config c;
    char err[ERRLEN];

    config_defaults(&c);
    for (size_t i = 0; i < COUNT(good); i++) {
        cr_assert_eq(config_set(&c, "listen", good[i].in, "--listen", err,
                                sizeof err), 0, "%s: %s", good[i].in, err);
        cr_assert_str_eq(c.listen.host, good[i].host);
        cr_assert_eq(c.listen.port, good[i].port);
    }
}

Test(config, set_bad_listen_strings)
{
    static const struct {
        const char *in, *problem;
    } bad[] = {
        { "", "empty" },
        { "8080", "missing ':PORT'" },
        { "localhost", "missing ':PORT'" },
        { ":8080", "missing host" },
        { "1.2.3.4:", "missing port" },
        { "1.2.3.4:65536", "port must be a number 0..65535" },
        { "1.2.3.4:-1", "port must be a number" },
        { "1.2.3.4:80x", "port must be a number" },
        { "1.2.3.4: 80", "port must be a number" },
        { "::1:8080", "IPv6 addresses must be in brackets" },
        { "[::1:8080", "missing ']'" },
        { "[::1]", "expected ':PORT' after ']'" },
        { "[::1]8080", "expected ':PORT' after ']'" },
        { "[]:80", "invalid IPv6 address" },
        { "[::g]:80", "invalid IPv6 address" },
        { "[1.2.3.4]:80", "invalid IPv6 address" },
        { "[fe80::1%]:80", "invalid IPv6 zone" },
        { "300.1.1.1:80", "invalid IPv4 address" },
        { "1.2.3:80", "invalid IPv4 address" },
        { "bad host:80", "invalid character in host name" },
        { "ho/st:80", "invalid character in host name" },
    };
    config c, before;
    char err[ERRLEN];

    config_defaults(&c);
    before = c;
    for (size_t i = 0; i < COUNT(bad); i++) {
        cr_assert_eq(config_set(&c, "listen", bad[i].in, "--listen", err,
                                sizeof err), -1, "%s accepted", bad[i].in);
        assert_has(err, "--listen: key 'listen': invalid address '%s': %s",
                   bad[i].in, bad[i].problem);
        cr_assert_eq(memcmp(&c, &before, sizeof c), 0);
    }
}

Test(config, set_checks_and_spellings)
{
    config c, before;
    char err[ERRLEN];

    config_defaults(&c);
    cr_assert_eq(config_set(&c, "log-level", "DEBUG", "--log-level", err,
                            sizeof err), 0, "%s", err);
    cr_assert_eq(c.log_level, LOG_DEBUG);
    cr_assert_eq(config_set(&c, "allow_anonymous", "off", NULL, err,
                            sizeof err), 0, "%s", err);
    cr_assert_eq(c.allow_anonymous, 0);

    before = c;
    cr_assert_eq(config_set(&c, "workers", "300", "--workers", err,
                            sizeof err), -1);
    cr_assert_str_eq(err, "--workers: key 'workers': 300 is out of range "
                          "(0..256)\n");
    cr_assert_eq(config_set(&c, "workers", "two", "--workers", err,
                            sizeof err), -1);
    assert_has(err, "--workers: key 'workers': expected a non-negative "
                    "integer, got 'two'");
    cr_assert_eq(config_set(&c, "wokers", "2", "--set", err, sizeof err), -1);
    cr_assert_str_eq(err, "--set: key 'wokers': unknown key (did you mean "
                          "'workers'?)\n");
    cr_assert_eq(config_set(&c, "namespace_defaults.presence", "1", "--set",
                            err, sizeof err), -1);
    assert_has(err, "namespace options can only be set in the configuration "
                    "file or with HERALD_NAMESPACE_DEFAULTS__");
    cr_assert_eq(config_set(&c, "workers", NULL, NULL, err, sizeof err), -1);
    cr_assert_str_eq(err, "command line: key 'workers': missing value\n");
    cr_assert_eq(config_set(&c, NULL, "1", NULL, err, sizeof err), -1);
    cr_assert_eq(memcmp(&c, &before, sizeof c), 0);
}

/* ---- the example file and the reference ------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    long n;

    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

Test(config, example_file_loads_and_shows_the_defaults)
{
    config c, d;
    char err[ERRLEN];

    cr_assert_eq(config_load(&c, HERALD_SOURCE_DIR "/conf/herald.conf",
                             no_env, err, sizeof err), 0, "%s", err);
    /* The example states every default; if one drifts, this fails. */
    config_defaults(&d);
    assert_top_equal(&c, &d);
    assert_ns(&c.namespaces[0], 100, 120, 0, 0, 1, 1, 0);
    cr_assert_not_null(ns_named(&c, "chat"));
    cr_assert_gt(ns_named(&c, "chat")->history_size, 0);
    cr_assert_eq(ns_named(&c, "chat")->presence, 1);
    cr_assert_eq(ns_named(&c, "chat")->join_leave, 1);
    cr_assert_not_null(ns_named(&c, "news"));
    cr_assert_eq(ns_named(&c, "news")->allow_publish, 0);
}

Test(config, every_key_is_documented)
{
    char *conf = slurp(HERALD_SOURCE_DIR "/conf/herald.conf");
    char *doc = slurp(HERALD_SOURCE_DIR "/docs/configuration.md");
    char want[128];

    for (size_t i = 0; i < COUNT(top_key_names); i++) {
        const char *k = top_key_names[i];
        size_t j;

        snprintf(want, sizeof want, "\n%s = ", k);
        cr_assert(strstr(conf, want) != NULL, "herald.conf lacks '%s'", k);
        snprintf(want, sizeof want, "`%s`", k);
        cr_assert(strstr(doc, want) != NULL, "configuration.md lacks %s",
                  want);
        strcpy(want, "HERALD_");
        for (j = 0; k[j] != '\0'; j++)
            want[7 + j] = (char)(k[j] >= 'a' && k[j] <= 'z' ? k[j] - 32
                                                              : k[j]);
        want[7 + j] = '\0';
        cr_assert(strstr(doc, want) != NULL, "configuration.md lacks %s",
                  want);
    }
    for (size_t i = 0; i < COUNT(ns_key_names); i++) {
        snprintf(want, sizeof want, " %s = ", ns_key_names[i]);
        cr_assert(strstr(conf, want) != NULL, "herald.conf lacks '%s'",
                  ns_key_names[i]);
        snprintf(want, sizeof want, "`%s`", ns_key_names[i]);
        cr_assert(strstr(doc, want) != NULL, "configuration.md lacks %s",
                  want);
    }
    free(conf);
    free(doc);
}

/* ---- the static site ---------------------------------------------------- */

Test(config, static_dir_is_relative_to_the_file)
{
    config c;
    char err[ERRLEN], dir[] = "/tmp/herald-test-site-XXXXXX", p[512],
                      real[PATH_MAX];

    cr_assert_not_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/www", dir);
    cr_assert_eq(mkdir(p, 0755), 0);
    cr_assert_not_null(realpath(p, real));
    snprintf(p, sizeof p, "%s/h.conf", dir);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("# the site\nstatic_dir = \"www\";\nstatic_max_file = 2048;\n", f);
    fclose(f);
    cr_assert_eq(config_load(&c, p, no_env, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.static_dir, real);
    cr_assert_eq(c.static_max_file, 2048);

    /* a folder that is not there: the key and the line, and the path */
    f = fopen(p, "w");
    fputs("\nstatic_dir = \"../nope\";\n", f);
    fclose(f);
    cr_assert_eq(config_load(&c, p, no_env, err, sizeof err), -1);
    assert_has(err, "%s:2: key 'static_dir': cannot open directory '%s/../nope'",
               p, dir);

    /* a file is not a folder */
    f = fopen(p, "w");
    fputs("static_dir = \"h.conf\";\n", f);
    fclose(f);
    cr_assert_eq(config_load(&c, p, no_env, err, sizeof err), -1);
    assert_has(err, "key 'static_dir': cannot open directory");
    unlink(p);
    snprintf(p, sizeof p, "%s/www", dir);
    rmdir(p);
    rmdir(dir);
}

Test(config, static_dir_from_env_cli_and_its_rules)
{
    config c;
    char err[ERRLEN];
    char *const env[] = { "HERALD_STATIC_DIR=/tmp/", NULL };

    config_defaults(&c);
    cr_assert_str_eq(c.static_dir, "");
    cr_assert_eq(c.static_max_file, 1048576);
    cr_assert_eq(config_load(&c, NULL, env, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.static_dir, "/tmp");    /* its real path */
    cr_assert_eq(config_set(&c, "static-dir", "", "--static-dir", err,
                            sizeof err), 0);
    cr_assert_str_eq(c.static_dir, "");
    cr_assert_eq(config_set(&c, "static_dir", "/nonexistent/x",
                            "--static-dir", err, sizeof err), -1);
    assert_has(err, "--static-dir: key 'static_dir': cannot open directory "
               "'/nonexistent/x'");
    cr_assert_eq(load_text("static_max_file = 100;\n", no_env, &c, err, NULL),
                 -1);
    assert_has(err, "key 'static_max_file'");
    /* request lines cannot be read on a TLS `listen` */
    cr_assert_eq(load_text("static_dir = \"/tmp\";\ntls_cert = \"c.pem\";\n"
                           "tls_key = \"k.pem\";\n", no_env, &c, err, NULL),
                 -1);
    assert_has(err, ":1: key 'static_dir': is served on a plain `listen` only");
    cr_assert_eq(load_text("static_dir = \"/tmp\";\ntls_cert = \"c.pem\";\n"
                           "tls_key = \"k.pem\";\n"
                           "tls_listen = \"0.0.0.0:8443\";\n", no_env, &c,
                           err, NULL), 0, "%s", err);
}

/* ---- webhooks -------------------------------------------------------------- */

Test(config, webhooks_list_events_and_secret)
{
    config c;
    char err[ERRLEN];
    char *const env[] = { "HERALD_WEBHOOK_SECRET=from-env", NULL };

    cr_assert_eq(load_text("webhooks = (\n"
                           "  { url = \"https://a.example/h\"; events = "
                           "[\"occupied\", \"vacated\"]; },\n"
                           "  { url = \"http://b.example:81/\"; }\n);\n"
                           "webhook_timeout_ms = 700;\n"
                           "namespaces = ( { name = \"p\"; "
                           "publication_webhook = true; } );\n",
                           env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(c.n_webhooks, 2);
    cr_assert_str_eq(c.webhooks[0].url, "https://a.example/h");
    cr_assert_eq(c.webhooks[0].events, (1u << CONFIG_HOOK_OCCUPIED) |
                                       (1u << CONFIG_HOOK_VACATED));
    cr_assert_eq(c.webhooks[1].events, (1u << CONFIG_HOOK_EVENTS) - 1);
    cr_assert_str_eq(c.webhook_secret, "from-env");
    cr_assert_eq(c.webhook_timeout_ms, 700);
    cr_assert_eq(c.webhook_queue_max, 10000);
    cr_assert_eq(c.webhook_max_attempts, 8);
    cr_assert_eq(c.webhook_drain_ms, 2000);
    cr_assert_eq(ns_named(&c, "p")->publication_webhook, 1);
    cr_assert_eq(c.namespaces[0].publication_webhook, 0);
    cr_assert_str_eq(config_hook_event_name(CONFIG_HOOK_PUBLICATION),
                     "publication");
    cr_assert_null(config_hook_event_name(CONFIG_HOOK_EVENTS));
}

Test(config, webhook_errors_name_key_and_line)
{
    config c;
    char err[ERRLEN];

    cr_assert_eq(load_text("webhook_secret = \"topsecret\";\nwebhooks = (\n"
                           "  { url = \"https://a/\";\n"
                           "    events = [\"connect\", \"joined\"]; }\n);\n",
                           no_env, &c, err, NULL), -1);
    assert_has(err, ":4: key 'webhooks[0].events[1]': unknown event 'joined'");
    cr_assert_null(strstr(err, "topsecret"));
    cr_assert_eq(load_text("webhooks = ( { url = \"https://a/\"; } );\n",
                           no_env, &c, err, NULL), -1);
    assert_has(err, "key 'webhooks': needs webhook_secret");
    cr_assert_eq(load_text("webhook_secret = \"s\";\n"
                           "webhooks = ( { url = \"file:///x\"; } );\n",
                           no_env, &c, err, NULL), -1);
    assert_has(err, "key 'webhooks[0].url': expected an http:// or https:// URL");
    cr_assert_eq(load_text("webhook_secret = \"s\";\n"
                           "webhooks = ( { events = []; } );\n",
                           no_env, &c, err, NULL), -1);
    assert_has(err, "key 'webhooks[0].events': no events");
    cr_assert_eq(load_text("webhook_secret = \"s\";\n"
                           "webhooks = ( { url = \"http://a/\"; uri = 1; } );\n",
                           no_env, &c, err, NULL), -1);
    assert_has(err, "key 'webhooks[0].uri': unknown key");
    cr_assert_eq(load_text("webhook_queue_max = 0;\n", no_env, &c, err, NULL),
                 -1);
    assert_has(err, "webhook_queue_max");
}

/* ---- cluster keys --------------------------------------------------------- */

Test(config, redis_list_from_file_env_and_cli)
{
    config c;
    char err[ERRLEN];

    cr_assert_eq(load_text("redis = [ \"redis://10.0.0.1\", "
                           "\"redis://:s3cret@db.example:6380/2\" ];\n"
                           "redis_timeout_ms = 500;\npresence_ttl = 3;\n",
                           no_env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(c.n_redis, 2);
    cr_assert_str_eq(c.redis[0].host, "10.0.0.1");
    cr_assert_eq(c.redis[0].port, 6379);
    cr_assert_eq(c.redis[0].db, 0);
    cr_assert_str_eq(c.redis[0].password, "");
    cr_assert_str_eq(c.redis[1].host, "db.example");
    cr_assert_eq(c.redis[1].port, 6380);
    cr_assert_eq(c.redis[1].db, 2);
    cr_assert_str_eq(c.redis[1].password, "s3cret");
    cr_assert_eq(c.redis_timeout_ms, 500);
    cr_assert_eq(c.presence_ttl, 3);

    /* The environment replaces the file's list; the command line wins. */
    char *env[] = { "HERALD_REDIS=redis://a:1, redis://b:2,redis://c", NULL };
    cr_assert_eq(load_text("redis = \"redis://x\";\n", env, &c, err, NULL),
                 0, "%s", err);
    cr_assert_eq(c.n_redis, 3);
    cr_assert_str_eq(c.redis[1].host, "b");
    cr_assert_eq(c.redis[1].port, 2);
    cr_assert_eq(config_set(&c, "redis", "redis://127.0.0.1:7000", "--redis",
                            err, ERRLEN), 0, "%s", err);
    cr_assert_eq(c.n_redis, 1);
    cr_assert_eq(c.redis[0].port, 7000);

    /* An empty list is single-node mode. */
    cr_assert_eq(load_text("redis = [];\n", no_env, &c, err, NULL), 0);
    cr_assert_eq(c.n_redis, 0);
}

Test(config, redis_bad_uris_name_key_and_line_without_the_password)
{
    static const struct { const char *text, *problem; } bad[] = {
        { "redis = \"10.0.0.1:6379\";", "expected redis://" },
        { "redis = \"redis://h:0\";", "port must be a number 1..65535" },
        { "redis = \"redis://h:99999\";", "port must be a number 1..65535" },
        { "redis = \"redis://h/x\";", "database must be a number" },
        { "redis = \"redis://h,\";", "empty URI in the list" },
        { "redis = \"redis://:hunter2@\";", "missing or too long host" },
        { "redis = \"redis://a b\";", "invalid character in host name" },
        { "redis = 5;", "expected a string or a list of strings" },
        { "redis = ( \"redis://a\", 5 );", "expected a list of strings" },
        { "redis_prefix = \"a{b\";", "only letters, digits" },
        { "redis_timeout_ms = 10;", "out of range" },
    };
    config c;
    char err[ERRLEN], *path;

    for (size_t i = 0; i < COUNT(bad); i++) {
        char text[256];
        snprintf(text, sizeof text, "\n%s\n", bad[i].text);
        cr_assert_eq(load_text(text, no_env, &c, err, &path), -1,
                     "accepted: %s", bad[i].text);
        assert_has(err, "%s:2: key '", path);
        assert_has(err, "%s", bad[i].problem);
        cr_assert(strstr(err, "hunter2") == NULL, "password shown: %s", err);
        free(path);
    }
    char big[CONFIG_REDIS_MAX * 16 + 64] = "";
    for (int i = 0; i <= CONFIG_REDIS_MAX; i++)
        strcat(big, i ? ",redis://h" : "redis://h");
    cr_assert_eq(config_set(&c, "redis", big, "--redis", err, ERRLEN), -1);
    assert_has(err, "at most 16 Redis servers");
}

/* The digest a test key should be kept as. */
static int has_key(const config *c, const char *name, const char *key,
                   uint32_t rate)
{
    unsigned char d[CONFIG_API_DIGEST_LEN];
    config_api_key_digest(key, strlen(key), d);
    for (uint32_t i = 0; i < c->n_api_keys; i++)
        if (strcmp(c->api_keys[i].name, name) == 0)
            return memcmp(c->api_keys[i].digest, d, sizeof d) == 0 &&
                   c->api_keys[i].rate_limit == rate;
    return 0;
}

#define KEY_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define KEY_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define KEY_E "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

Test(config, api_keys_and_listener_from_file_and_env)
{
    config c;
    char err[ERRLEN];
    const char *text =
        "api_listen = \"127.0.0.1:9090\";\n"
        "api_max_body = 4096;\n"
        "api_timeout_ms = 250;\n"
        "api_keys = ( { name = \"backend\"; key = \"" KEY_A "\"; rate_limit = 100; },\n"
        "             { name = \"default\"; key = \"" KEY_B "\"; rate_limit = 7; } );\n";
    cr_assert_eq(load_text(text, no_env, &c, err, NULL), 0, "%s", err);
    cr_assert_str_eq(c.api_listen.host, "127.0.0.1");
    cr_assert_eq(c.api_listen.port, 9090);
    cr_assert_eq(c.api_max_body, 4096);
    cr_assert_eq(c.api_timeout_ms, 250);
    cr_assert_eq(c.n_api_keys, 2);
    cr_assert(has_key(&c, "backend", KEY_A, 100));
    cr_assert(has_key(&c, "default", KEY_B, 7));
    /* HERALD_API_KEY replaces the key named "default", its limit stays */
    char *const env[] = { "HERALD_API_KEY=" KEY_E, NULL };
    cr_assert_eq(load_text(text, env, &c, err, NULL), 0, "%s", err);
    cr_assert_eq(c.n_api_keys, 2);
    cr_assert(has_key(&c, "default", KEY_E, 7));
    /* alone, it is the only key, without a limit */
    cr_assert_eq(config_load(&c, NULL, env, err, ERRLEN), 0, "%s", err);
    cr_assert_eq(c.n_api_keys, 1);
    cr_assert(has_key(&c, "default", KEY_E, 0));
    /* defaults: no API listener, no key */
    cr_assert_eq(config_load(&c, NULL, no_env, err, ERRLEN), 0, "%s", err);
    cr_assert_eq(c.n_api_keys, 0);
    cr_assert_str_eq(c.api_listen.host, "");
    cr_assert_eq(c.api_max_body, 1048576);
    cr_assert_eq(c.api_timeout_ms, 5000);
}

Test(config, api_key_errors_name_key_and_line_and_never_show_the_key)
{
    static const struct { const char *text, *problem; } bad[] = {
        { "api_keys = ( { name = \"a\"; key = \"short-KEYSECRET\"; } );",
          "key 'api_keys.a.key': too short" },
        { "api_keys = ( { name = \"a\"; key = \"KEYSECRET KEYSECRET\"; } );",
          "key 'api_keys.a.key': may only contain visible ASCII" },
        { "api_keys = ( { name = \"a\"; key = \"KEYSECRET" KEY_A "\"; },"
          " { name = \"a\"; key = \"KEYSECRET" KEY_B "\"; } );",
          "key 'api_keys[1].name': API key 'a' is defined twice" },
        { "api_keys = ( { name = \"a\"; key = \"KEYSECRET" KEY_A "\"; },"
          " { name = \"b\"; key = \"KEYSECRET" KEY_A "\"; } );",
          "key 'api_keys.b.key': the same key as api_keys 'a'" },
        { "api_keys = ( { name = \"a\"; key = \"KEYSECRET" KEY_A "\"; rate = 1; } );",
          "key 'api_keys[0].rate': unknown key (an API key has name, key and rate_limit)" },
        { "api_keys = ( { name = \"a\"; } );", "key 'api_keys[0]': needs a name and a key" },
        { "api_keys = ( { name = \"a b\"; key = \"KEYSECRET" KEY_A "\"; } );",
          "key 'api_keys[0].name': may only contain letters, digits" },
        { "api_keys = ( { name = \"a\"; key = \"KEYSECRET" KEY_A "\"; rate_limit = 1000001; } );",
          "key 'api_keys[0].rate_limit': 1000001 is out of range (0..1000000)" },
        { "api_keys = ( { name = \"a\"; key = 5; } );",
          "key 'api_keys[0].key': expected a string, got an integer" },
        { "api_keys = \"KEYSECRET" KEY_A "\";", "key 'api_keys': expected a list of groups" },
        { "api_listen = \"nowhere\";", "key 'api_listen': invalid address" },
        { "api_max_body = 10;", "key 'api_max_body': 10 is out of range" },
    };
    config c;
    char err[ERRLEN], *path;

    for (size_t i = 0; i < COUNT(bad); i++) {
        char text[512];
        snprintf(text, sizeof text, "\n%s\n", bad[i].text);
        cr_assert_eq(load_text(text, no_env, &c, err, &path), -1,
                     "accepted: %s", bad[i].text);
        assert_has(err, "%s:2: ", path);
        assert_has(err, "%s", bad[i].problem);
        cr_assert(strstr(err, "KEYSECRET") == NULL, "key shown: %s", err);
        free(path);
    }
    char *const env[] = { "HERALD_API_KEY=KEYSECRET", NULL };
    cr_assert_eq(config_load(&c, NULL, env, err, ERRLEN), -1);
    assert_has(err, "env HERALD_API_KEY: key 'api_keys.default.key': too short");
    cr_assert(strstr(err, "KEYSECRET") == NULL, "key shown: %s", err);
}
