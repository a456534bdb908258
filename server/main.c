/*
 * herald: command line, configuration, start-up and shutdown. The main
 * thread only starts the workers and waits for signals on its own loop:
 * SIGTERM/SIGINT drain every worker (disconnect push 4000, close 4000)
 * within shutdown_timeout, then the workers stop, the durable store writes
 * what is queued (or spills it) and the process exits 0. A second signal
 * stops at once: the workers without draining, the store without waiting
 * for MongoDB (but still spilling what is not written); the signal
 * handlers stay installed until the store has stopped, so that no signal
 * kills the process while unwritten publications are only in memory.
 * SIGHUP reads the configuration again (file, environment, command line)
 * and applies log_level, the one key that can change safely while
 * running; other changes are logged as needing a restart, and a
 * configuration that does not load is logged and ignored.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <curl/curl.h>
#include <uv.h>

#include <mongoc/mongoc.h>

#include "api/keys.h"
#include "base/admit.h"
#include "base/config.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/server.h"
#include "core/requests.h"
#include "hooks/hooks.h"
#include "metrics/metrics.h"
#include "auth/keyring.h"
#include "auth/proxy.h"
#include "base/tls.h"
#include "net/worker.h"
#include "store/store.h"
#include "web/site.h"

extern char **environ;

/* Descriptors kept for everything that is not a client connection:
 * listening sockets, spares, loops, logs, outgoing connections. */
#define MAIN_FD_RESERVE 64
/* Command-line options that set configuration keys (main()). */
#define MAIN_CLI_N 6

typedef struct main_state {
    server srv;
    worker **workers;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sighup;
    const char *path;               /* --config or HERALD_CONFIG, or NULL */
    const char *const *cli_keys, *const *cli_src, *const *cli_vals;
    uv_async_t drained;
    uv_timer_t deadline;
    uv_async_t store_done;   /* the store's stopper thread is done */
    int stopping;
    int stop_sent;
} main_state;

static void main_usage(FILE *f)
{
    fprintf(f,
        "Usage: herald [options]\n"
        "Real-time WebSocket messaging server (protocol herald.v1).\n\n"
        "  -c, --config FILE     configuration file (libconfig syntax);\n"
        "                        also HERALD_CONFIG\n"
        "  -l, --listen H:P      listen address (default 0.0.0.0:8080)\n"
        "  -w, --workers N       worker threads (default: number of cores)\n"
        "      --log-level L     debug, info, warn or error\n"
        "      --redis URI       cluster mode through Redis\n"
        "                        (redis://[:password@]host[:port][/db]);\n"
        "                        repeat to shard channels over servers\n"
        "      --mongodb URI     durable history in MongoDB\n"
        "                        (mongodb://[user:password@]host[:port]/?opts)\n"
        "      --static-dir DIR  serve the files of DIR at / on the main port\n"
        "      --check-config    validate the configuration and exit\n"
        "  -h, --help            this help\n"
        "  -V, --version         print the version\n\n"
        "Every configuration key can also be set with HERALD_<KEY>; the\n"
        "command line wins over the environment, which wins over the file.\n"
        "See conf/herald.conf and docs/configuration.md.\n");
}

static void main_send_stop(main_state *ms)
{
    if (ms->stop_sent)
        return;
    ms->stop_sent = 1;
    worker_post_all(&ms->srv, WRK_STOP);
    /* Still handled (main_stop_store), but no longer keeping the loop. */
    uv_unref((uv_handle_t *)&ms->sigterm);
    uv_unref((uv_handle_t *)&ms->sigint);
    uv_close((uv_handle_t *)&ms->sighup, NULL);
    uv_close((uv_handle_t *)&ms->drained, NULL);
    uv_timer_stop(&ms->deadline);
    uv_close((uv_handle_t *)&ms->deadline, NULL);
}

static void main_on_drained(uv_async_t *a)
{
    main_state *ms = a->data;
    for (uint32_t i = 0; i < ms->srv.n_workers; i++) {
        if (ms->workers[i]->startup_error) {
            main_send_stop(ms);
            return;
        }
    }
    if (atomic_load(&ms->srv.draining) == 0)
        main_send_stop(ms);
}

static void main_on_deadline(uv_timer_t *t)
{
    main_state *ms = t->data;
    log_warn("workers did not drain in time: stopping");
    main_send_stop(ms);
}

static void main_on_signal(uv_signal_t *s, int signum)
{
    main_state *ms = s->data;
    if (ms->stopping || ms->stop_sent) {
        log_warn("second signal: stopping now", LOG_INT("signal", signum));
        main_send_stop(ms);
        /* The store (still there until the loop ends) spills at once. */
        store_hurry(ms->srv.store);
        return;
    }
    ms->stopping = 1;
    log_info("shutting down", LOG_INT("signal", signum),
             LOG_INT("connections", atomic_load(&ms->srv.connections)));
    worker_post_all(&ms->srv, WRK_SHUTDOWN);
    /* The workers enforce shutdown_timeout themselves; this is the
     * backstop if one of them is wedged. */
    uv_timer_start(&ms->deadline, main_on_deadline,
                   (uint64_t)(ms->srv.cfg->shutdown_timeout + 3) * 1000, 0);
}

static void *main_store_stopper(void *arg)
{
    main_state *ms = arg;
    store_stop(ms->srv.store, (ms->srv.cfg->shutdown_timeout + 1) * 1000);
    uv_async_send(&ms->store_done);
    return NULL;
}

static void main_on_store_done(uv_async_t *a)
{
    main_state *ms = a->data;
    uv_close((uv_handle_t *)&ms->sigterm, NULL);
    uv_close((uv_handle_t *)&ms->sigint, NULL);
    uv_close((uv_handle_t *)&ms->store_done, NULL);
}

/* Stops the durable store on a thread of its own while this loop goes on
 * handling signals (a second one hurries it), then closes the signal
 * handlers. What the workers queued is written now, within the shutdown
 * budget; the rest goes to the spill file (store.h). Before the workers
 * are freed: the reader may still post to a mailbox (which only queues
 * now, and is emptied by worker_free). */
static void main_stop_store(main_state *ms)
{
    server *srv = &ms->srv;
    if (!srv->store) {
        uv_close((uv_handle_t *)&ms->sigterm, NULL);
        uv_close((uv_handle_t *)&ms->sigint, NULL);
        uv_run(&ms->loop, UV_RUN_DEFAULT);
        return;
    }
    uv_async_init(&ms->loop, &ms->store_done, main_on_store_done);
    ms->store_done.data = ms;
    pthread_t th;
    if (pthread_create(&th, NULL, main_store_stopper, ms) != 0)
        abort();
    uv_run(&ms->loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    store_free(srv->store);
    srv->store = NULL;
    mongoc_cleanup();
}

/* The configuration from its sources, each later one winning: defaults,
 * the file, the environment, the command line (the n options of cli_keys
 * given in cli_vals). Returns -1 with one line per problem in err. */
static int main_load_config(config *cfg, const char *path,
                            const char *const *cli_keys,
                            const char *const *cli_src,
                            const char *const *cli_vals, int n, char *err,
                            size_t errlen)
{
    char one[4096];
    size_t used = 0;
    int bad = 0;
    err[0] = '\0';
    config_defaults(cfg);
    if (config_load(cfg, path, environ, one, sizeof(one)) < 0) {
        used += (size_t)snprintf(err + used, errlen - used, "%s", one);
        bad = 1;
    }
    for (int i = 0; i < n && used < errlen; i++) {
        if (cli_vals[i] && config_set(cfg, cli_keys[i], cli_vals[i],
                                      cli_src[i], one, sizeof(one)) < 0) {
            used += (size_t)snprintf(err + used, errlen - used, "%s", one);
            bad = 1;
        }
    }
    return bad ? -1 : 0;
}

/* SIGHUP: see the top of the file. The workers read the configuration
 * without locks, so it is never changed in place; the log threshold is an
 * atomic of its own (base/log.h). */
static void main_on_hup(uv_signal_t *s, int signum)
{
    main_state *ms = s->data;
    static config fresh;    /* large; only this thread reloads */
    char err[4096];
    (void)signum;
    if (main_load_config(&fresh, ms->path, ms->cli_keys, ms->cli_src,
                         ms->cli_vals, MAIN_CLI_N, err, sizeof(err)) < 0) {
        size_t n = strlen(err);
        while (n && err[n - 1] == '\n')
            err[--n] = '\0';
        log_warn("SIGHUP: configuration not reloaded, the running one stays",
                 LOG_STR("error", err));
        return;
    }
    int level = fresh.log_level;
    fresh.log_level = ms->srv.cfg->log_level;
    int others = memcmp(&fresh, ms->srv.cfg, sizeof(fresh)) != 0;
    log_set_level(level);
    log_info("SIGHUP: configuration reloaded",
             LOG_STR("log_level", log_level_name(level)),
             LOG_INT("restart_needed", others));
    if (others)
        log_warn("SIGHUP: configuration changes other than log_level take "
                 "effect at the next start");
}

/* The TLS files, each with its key in the message; -1 at the first
 * problem. */
static int main_check_tls(const config *cfg, char *err, size_t errlen)
{
    if (cfg->tls_cert[0] &&
        tls_check_files(cfg->tls_cert, cfg->tls_key, err, errlen) < 0)
        return -1;
    if (cfg->tls_client_ca[0] &&
        tls_check_ca("tls_client_ca", cfg->tls_client_ca, err, errlen) < 0)
        return -1;
    if (cfg->api_client_ca[0] &&
        tls_check_ca("api_client_ca", cfg->api_client_ca, err, errlen) < 0)
        return -1;
    return 0;
}

static uint32_t main_max_connections(const config *cfg, uint32_t workers)
{
    struct rlimit rl;
    uint64_t fds = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        fds = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : rl.rlim_cur;
    uint64_t reserve = MAIN_FD_RESERVE + 8u * workers;
    uint64_t usable = fds > reserve ? fds - reserve : 1;
    if (cfg->max_connections == 0)
        return (uint32_t)usable;
    if (cfg->max_connections > usable)
        log_warn("max_connections exceeds the open-file limit; the limit "
                 "will refuse connections first",
                 LOG_INT("max_connections", cfg->max_connections),
                 LOG_INT("nofile", (int64_t)fds));
    return cfg->max_connections;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "listen", required_argument, NULL, 'l' },
        { "workers", required_argument, NULL, 'w' },
        { "log-level", required_argument, NULL, 'L' },
        { "check-config", no_argument, NULL, 'C' },
        { "redis", required_argument, NULL, 'R' },
        { "mongodb", required_argument, NULL, 'M' },
        { "static-dir", required_argument, NULL, 'S' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };
    const char *path = getenv("HERALD_CONFIG");
    /* One slot per option; a repeated option keeps its last value. */
    enum { CLI_LISTEN, CLI_WORKERS, CLI_LOG_LEVEL, CLI_REDIS, CLI_MONGODB,
           CLI_STATIC_DIR, CLI_N };
    _Static_assert(CLI_N == MAIN_CLI_N, "MAIN_CLI_N");
    static const char *const cli_keys[CLI_N] = { "listen", "workers",
                                                 "log_level", "redis",
                                                 "mongodb", "static_dir" };
    static const char *const cli_src[CLI_N] = { "--listen", "--workers",
                                                "--log-level", "--redis",
                                                "--mongodb", "--static-dir" };
    static const char *cli_vals[CLI_N] = { NULL, NULL, NULL, NULL, NULL,
                                           NULL };
    /* --redis may be repeated: the URIs add up to one list. */
    static char redis_list[CONFIG_REDIS_MAX * 600];
    size_t redis_used = 0;
    int check_only = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:l:w:hV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 'l': cli_vals[CLI_LISTEN] = optarg; break;
        case 'w': cli_vals[CLI_WORKERS] = optarg; break;
        case 'L': cli_vals[CLI_LOG_LEVEL] = optarg; break;
        case 'C': check_only = 1; break;
        case 'M': cli_vals[CLI_MONGODB] = optarg; break;
        case 'S': cli_vals[CLI_STATIC_DIR] = optarg; break;
        case 'R': {
            int n = snprintf(redis_list + redis_used,
                             sizeof(redis_list) - redis_used, "%s%s",
                             redis_used ? "," : "", optarg);
            if (n < 0 || (size_t)n >= sizeof(redis_list) - redis_used) {
                fprintf(stderr, "herald: --redis: too many URIs\n");
                return 2;
            }
            redis_used += (size_t)n;
            cli_vals[CLI_REDIS] = redis_list;
            break;
        }
        case 'h': main_usage(stdout); return 0;
        case 'V': printf("herald %s\n", HERALD_VERSION); return 0;
        default: main_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "herald: unexpected argument '%s'\n", argv[optind]);
        main_usage(stderr);
        return 2;
    }

    static config cfg;
    char err[4096];
    int bad = main_load_config(&cfg, path, cli_keys, cli_src, cli_vals, CLI_N,
                               err, sizeof(err)) < 0;
    if (bad)
        fputs(err, stderr);
    if (!bad && main_check_tls(&cfg, err, sizeof(err)) < 0) {
        fputs(err, stderr);
        bad = 1;
    }
    if (!bad && keyring_check(&cfg, err, sizeof(err)) < 0) {
        fputs(err, stderr);
        bad = 1;
    }
    if (bad) {
        fprintf(stderr, "herald: invalid configuration\n");
        return 2;
    }
    if (check_only) {
        printf("configuration OK%s%s\n", path ? ": " : "", path ? path : "");
        return 0;
    }
    log_set_level(cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);   /* before any thread */

    static main_state ms;
    server *srv = &ms.srv;
    srv->cfg = &cfg;
    srv->n_workers = cfg.workers ? cfg.workers
                                 : (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
    if (srv->n_workers == 0)
        srv->n_workers = 1;
    if (cfg.node_name[0]) {
        snprintf(srv->node, sizeof(srv->node), "%s", cfg.node_name);
    } else {
        char host[48] = "herald";
        gethostname(host, sizeof(host) - 1);
        snprintf(srv->node, sizeof(srv->node), "%s-%d", host, (int)getpid());
    }
    srv->max_connections = main_max_connections(&cfg, srv->n_workers);
    /* Addresses tracked: one per connection at most, plus room for those
     * whose rate allowance is still refilling. */
    srv->admit = admit_new(cfg.max_connections_per_ip,
                           cfg.connection_rate_per_ip,
                           (size_t)srv->max_connections + 65536);
    srv->api_keys = api_keys_new(&cfg);
    /* A JWKS URL is fetched here, before the workers (bounded by
     * token_jwks_timeout_ms), and then by the keyring's thread. */
    srv->keyring = keyring_start(&cfg, err, sizeof(err));
    if (!srv->keyring) {
        fputs(err, stderr);
        return 2;
    }
    /* Answers go to the workers' mailboxes; calls come only once they run. */
    srv->proxy = proxy_start(&cfg, srv, CON_PROXY, err, sizeof(err));
    if (!srv->proxy && err[0]) {
        fputs(err, stderr);
        return 2;
    }
    /* `listen` is TLS when there is a certificate and no tls_listen to
     * serve it beside a plain `listen`. */
    srv->tls_on_listen = cfg.tls_cert[0] && !cfg.tls_listen.host[0];
    /* Webhooks: a sender thread of their own, before any worker emits. */
    srv->hooks = hooks_start(&cfg, srv->node, err, sizeof(err));
    if (!srv->hooks && err[0]) {
        fputs(err, stderr);
        return 1;
    }
    /* The API on its own port, or on the main port when it has keys and
     * `listen` is plain (without keys there is no API to serve; with TLS
     * the first bytes cannot be read): otherwise the main port stays
     * lws's alone (net/sniff.c). Never on tls_listen. */
    srv->api_on_main = !cfg.api_listen.host[0] && !srv->tls_on_listen &&
                       api_keys_count(srv->api_keys) > 0;
    /* The static site, on the plain main port (the configuration refuses
     * it with a TLS `listen`, whose request lines cannot be read). */
    if (cfg.static_dir[0]) {
        if (srv->tls_on_listen) {
            fputs("static_dir: served on a plain `listen` only: with "
                  "tls_cert, set tls_listen for TLS beside it\n", stderr);
            return 2;
        }
        srv->site = web_site_open(cfg.static_dir, cfg.static_max_file, err,
                                  sizeof(err));
        if (!srv->site) {
            fputs(err, stderr);
            return 2;
        }
    }
    srv->sniff_main = srv->api_on_main || srv->site != NULL;
    if (cfg.api_tls) {
        /* one context for every worker's API connections (api/tls.h) */
        srv->api_tls = tls_server_ctx(cfg.tls_cert, cfg.tls_key,
                                      cfg.api_client_ca, "api_client_ca",
                                      err, sizeof(err));
        if (!srv->api_tls) {
            fputs(err, stderr);
            return 2;
        }
    }
    if (cfg.metrics)
        srv->metrics = metrics_new(srv->n_workers, cfg.metrics_key);
    srv->started_ms = server_now_ms(srv);
    atomic_init(&srv->connections, 0);
    atomic_init(&srv->api_connections, 0);
    atomic_init(&srv->draining, srv->n_workers);
    /* Every worker's link to every Redis server starts down. */
    atomic_init(&srv->broker_down, srv->n_workers * cfg.n_redis);

    uv_loop_init(&ms.loop);
    uv_async_init(&ms.loop, &ms.drained, main_on_drained);
    ms.drained.data = &ms;
    srv->drained = &ms.drained;
    uv_signal_init(&ms.loop, &ms.sigterm);
    uv_signal_init(&ms.loop, &ms.sigint);
    uv_signal_init(&ms.loop, &ms.sighup);
    ms.sigterm.data = ms.sigint.data = ms.sighup.data = &ms;
    ms.path = path;
    ms.cli_keys = cli_keys;
    ms.cli_src = cli_src;
    ms.cli_vals = cli_vals;
    uv_signal_start(&ms.sigterm, main_on_signal, SIGTERM);
    uv_signal_start(&ms.sigint, main_on_signal, SIGINT);
    uv_signal_start(&ms.sighup, main_on_hup, SIGHUP);
    uv_timer_init(&ms.loop, &ms.deadline);
    ms.deadline.data = &ms;

    if (cfg.mongodb[0]) {
        mongoc_init();
        srv->store = store_start(&cfg, srv, err, sizeof(err));
        if (!srv->store) {
            log_error("cannot start", LOG_STR("error", err));
            mongoc_cleanup();
            return 2;
        }
    }

    ms.workers = mem_calloc(srv->n_workers, sizeof(*ms.workers));
    srv->inbox = mem_calloc(srv->n_workers, sizeof(*srv->inbox));
    for (uint32_t i = 0; i < srv->n_workers; i++) {
        ms.workers[i] = worker_new(srv, (uint16_t)i, err, sizeof(err));
        if (!ms.workers[i]) {
            log_error("cannot start", LOG_STR("error", err));
            return 1;
        }
    }
    for (uint32_t i = 0; i < srv->n_workers; i++)
        worker_start(ms.workers[i]);
    log_info("listening", LOG_STR("host", cfg.listen.host),
             LOG_INT("port", srv->listen_port),
             LOG_INT("tls", srv->tls_on_listen),
             LOG_INT("client_certs", srv->tls_on_listen &&
                                         cfg.tls_client_ca[0]),
             LOG_INT("workers", srv->n_workers), LOG_STR("node", srv->node),
             LOG_INT("max_connections", srv->max_connections),
             LOG_STR("version", HERALD_VERSION));
    if (srv->tls_port)
        log_info("TLS listening", LOG_STR("host", cfg.tls_listen.host),
                 LOG_INT("port", srv->tls_port),
                 LOG_INT("client_certs", cfg.tls_client_ca[0] != '\0'));
    if (srv->api_port)
        log_info("API listening", LOG_STR("host", cfg.api_listen.host),
                 LOG_INT("port", srv->api_port),
                 LOG_INT("tls", cfg.api_tls),
                 LOG_INT("client_certs", cfg.api_client_ca[0] != '\0'),
                 LOG_INT("api_keys", (long long)cfg.n_api_keys));
    else if (srv->api_on_main)
        log_info("API on the main port", LOG_INT("port", srv->listen_port),
                 LOG_INT("api_keys",
                         (long long)api_keys_count(srv->api_keys)));
    if (srv->site)
        log_info("static files at /", LOG_STR("static_dir", cfg.static_dir),
                 LOG_INT("port", srv->listen_port),
                 LOG_INT("static_max_file", cfg.static_max_file),
                 LOG_STR("resolver", web_site_resolver(srv->site)));

    uv_run(&ms.loop, UV_RUN_DEFAULT);

    int failed = 0;
    for (uint32_t i = 0; i < srv->n_workers; i++) {
        worker_join(ms.workers[i]);
        failed |= ms.workers[i]->startup_error;
    }
    main_stop_store(&ms);
    proxy_stop(srv->proxy);     /* posts nothing after this */
    /* After the workers: the disconnects of the drain are queued by now,
     * and get webhook_drain_ms. */
    hooks_stop(srv->hooks);
    srv->hooks = NULL;
    for (uint32_t i = 0; i < srv->n_workers; i++)
        worker_free(ms.workers[i]);
    free(ms.workers);
    free(srv->inbox);
    admit_free(srv->admit);
    api_keys_free(srv->api_keys);
    keyring_stop(srv->keyring);
    metrics_free(srv->metrics);
    SSL_CTX_free(srv->api_tls);
    web_site_close(srv->site);
    uv_loop_close(&ms.loop);
    curl_global_cleanup();
    log_info("stopped");
    return failed ? 1 : 0;
}
