/*
 * Worker threads (worker.h): the event loop and what runs on it. Each
 * iteration of the loop: events (accepts, reads, Redis replies, timers,
 * the mailbox), then, before the loop waits, the output queued meanwhile
 * is written (conns_flush). Once a second the tick runs heartbeats, a
 * bounded part of the owner's history expiry, and at shutdown the drain
 * deadline.
 */
#include "net/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "api/keys.h"
#include "api/listen.h"
#include "base/admit.h"
#include "base/log.h"
#include "base/mem.h"
#include "broker/memory.h"
#include "broker/redis/redis.h"
#include "core/requests.h"
#include "net/admin.h"

/* Flush passes per loop iteration before the rest waits for the next
 * iteration (worker_on_prepare). */
#define WORKER_FLUSH_ROUNDS 8

void worker_post_all(server *srv, uint8_t type)
{
    for (uint32_t i = 0; i < srv->n_workers; i++)
        server_post(srv, (uint16_t)i, worker_msg_new(type));
}

/* --- shutdown ----------------------------------------------------------- */

static void worker_report_drained(worker *w)
{
    if (w->drained_reported)
        return;
    w->drained_reported = 1;
    atomic_fetch_sub(&w->srv->draining, 1);
    uv_async_send(w->srv->drained);
}

static void worker_close_cb(uv_handle_t *h)
{
    (void)h;
}

/* Connections still open: WebSocket and, with api_listen, API ones. */
static uint32_t worker_open_conns(const worker *w)
{
    return w->net.count + (w->api ? api_listen_count(w->api) : 0) +
           (w->sniffing ? sniff_count(&w->sniff) : 0);
}

static void worker_begin_drain(worker *w)
{
    if (w->draining)
        return;
    w->draining = 1;
    w->drain_deadline_s = w->net.now_s + w->srv->cfg->shutdown_timeout;
    listener_close(&w->lis);
    if (w->sniffing)
        sniff_drain(&w->sniff);
    if (w->api_port)
        listener_close(&w->api_lis);
    if (w->tls_port)
        listener_close(&w->tls_lis);
    if (w->api)
        api_listen_drain(w->api);
    conns_drain(&w->net);
    if (worker_open_conns(w) == 0)
        worker_report_drained(w);
}

static void worker_stop(worker *w)
{
    mailbox_close(&w->mb);
    uv_timer_stop(&w->tick);
    uv_close((uv_handle_t *)&w->tick, worker_close_cb);
    uv_prepare_stop(&w->flush_prep);
    uv_close((uv_handle_t *)&w->flush_prep, worker_close_cb);
    uv_idle_stop(&w->flush_idle);
    uv_close((uv_handle_t *)&w->flush_idle, worker_close_cb);
    uv_check_stop(&w->judge_check);
    uv_close((uv_handle_t *)&w->judge_check, worker_close_cb);
    uv_close((uv_handle_t *)&w->wake, worker_close_cb);
    listener_stop(&w->lis);
    if (w->sniffing)
        sniff_stop(&w->sniff);
    if (w->api_port)
        listener_stop(&w->api_lis);
    if (w->tls_port)
        listener_stop(&w->tls_lis);
    if (w->api)
        api_listen_stop(w->api);
    w->broker->ops->stop(w->broker);
    /* With a foreign loop lws finishes destroying the context from the
     * loop (closing its handles) and clears w->ctx through pcontext. */
    lws_context_destroy(w->ctx);
}

/* --- cluster control (broker.h broker_ctl) ------------------------------ */

/* Every worker answers other nodes' API asks about its connections, with
 * or without an API listener of its own. */
static void worker_ctl_asked(void *ctx, const char *reply_to, size_t rlen,
                             const char *body, size_t len)
{
    worker *w = ctx;
    proto_buf out;
    proto_buf_init(&out, 0);
    if (admin_remote(&w->net, body, len, &out) == 0)
        w->broker->ops->answer(w->broker, reply_to, rlen,
                               proto_buf_data(&out), out.len);
    proto_buf_free(&out);
}

static void worker_ctl_answered(void *ctx, const char *body, size_t len)
{
    worker *w = ctx;
    if (w->api)
        api_listen_answered(w->api, body, len);
}

static void worker_ctl_clients_lost(void *ctx)
{
    worker *w = ctx;
    conns_track_all(&w->net);
}

static void worker_ctl_sent(void *ctx, const route *to, long receivers)
{
    worker *w = ctx;
    if (w->api)
        api_listen_sent(w->api, to, receivers);
}

/* --- mailbox and tick ---------------------------------------------------- */

static void worker_on_wake(uv_async_t *a)
{
    worker *w = a->data;
    msg *m = mailbox_take(&w->mb);
    while (m) {
        msg *next = m->next;
        switch (m->to) {
        case MSG_TO_OWNER:
            owner_receive(&w->own, m);
            break;
        case MSG_TO_CONNS:
            mailbox_done(&w->mb, m);
            if (w->api && requests_for_api(m))
                api_listen_receive(w->api, m);
            else if (m->type == CON_CHANNELS || m->type == CON_DISCONNECT)
                admin_receive(&w->net, m);
            else
                conns_receive(&w->net, m);
            break;
        case MSG_TO_WORKER:
            if (m->type == WRK_SHUTDOWN) {
                worker_begin_drain(w);
                requests_free(m);
                break;
            }
            requests_free(m);
            /* WRK_STOP. Later messages are dropped: every connection is
             * gone. */
            while (next) {
                msg *n2 = next->next;
                mailbox_done(&w->mb, next);
                requests_free(next);
                next = n2;
            }
            worker_stop(w);
            return;
        default:
            log_error("message for no receiver", LOG_INT("to", m->to));
            requests_free(m);
        }
        m = next;
    }
}

static void worker_flush_idle(uv_idle_t *i)
{
    (void)i;   /* its being active is what counts (see below) */
}

/* Before the loop waits for events: write the output that this iteration
 * queued (see conns_flush). */
static void worker_on_prepare(uv_prepare_t *p)
{
    worker *w = p->data;
    /* A connection with more ready than one frame queues itself again.
     * A few rounds here; if some still have more, the idle handle keeps
     * the loop from waiting (libuv polls with a zero timeout while an idle
     * handle is active), so the rest goes out on the next iterations
     * instead of whenever the next event happens to wake the loop. */
    int more = w->net.flush != NULL;
    for (int round = 0; more && round < WORKER_FLUSH_ROUNDS; round++)
        more = conns_flush(&w->net);
    if (more)
        uv_idle_start(&w->flush_idle, worker_flush_idle);
    else
        uv_idle_stop(&w->flush_idle);
    conns_lws_wake(&w->net);
}

static void worker_on_check(uv_check_t *ck)
{
    worker *w = ck->data;
    conns_judge(&w->net);
}

static void worker_on_tick(uv_timer_t *t)
{
    worker *w = t->data;
    uint64_t now_s = uv_now(&w->loop) / 1000;
    conns_tick(&w->net, now_s);
    if (w->api)
        api_listen_tick(w->api, uv_now(&w->loop));
    if (w->sniffing)
        sniff_tick(&w->sniff, uv_now(&w->loop));
    if (w->index == 0)
        admit_sweep(w->srv->admit, uv_now(&w->loop));
    owner_tick(&w->own);
    if (w->draining && !w->drained_reported &&
        (worker_open_conns(w) == 0 || now_s >= w->drain_deadline_s)) {
        if (worker_open_conns(w))
            log_warn("shutdown timeout: dropping connections",
                     LOG_INT("worker", w->index),
                     LOG_INT("connections", worker_open_conns(w)));
        worker_report_drained(w);
    }
}

/* --- thread ------------------------------------------------------------ */

static void worker_lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    log_at(level == LLL_ERR ? LOG_WARN : LOG_DEBUG, "libwebsockets",
           LOG_STRN("detail", line, n));
}

/* No lws "validity" timers on server connections: liveness is Herald's
 * own heartbeat wheel (net/heartbeat.h), O(1) per connection. lws 4.1
 * keeps every timer of a context in one list sorted by deadline and
 * inserts by walking it from the head, so a validity timer per
 * connection, pushed to the end of the list on every message received,
 * made each received message and each new connection cost
 * O(connections): a reconnect storm of 10,000 clients stalled the worker
 * for seconds. */
static const lws_retry_bo_t worker_no_validity = {
    .secs_since_valid_ping = 0,
    .secs_since_valid_hangup = 0,
};

/* One vhost per main listener: `listen`'s, and tls_listen's beside it.
 * Both serve the same protocols and HTTP endpoints; tls: over TLS with
 * tls_cert/tls_key and, with tls_client_ca, only to clients whose
 * certificate verifies against it (lws refuses the handshake otherwise:
 * nothing reaches the WebSocket layer). */
static struct lws_vhost *worker_vhost(worker *w, const char *name, int tls)
{
    const config *cfg = w->srv->cfg;
    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof(vi));
    /* lws 4.1 moves a connection to the vhost whose name a prefix of its
     * Host header matches, among the vhosts of its own port, and every
     * NO_LISTEN_SERVER vhost has the same one (docs/lws-http.md, 7): a
     * TLS client sending "Host: herald" would end up on the plain vhost
     * (and lws's counts of the vhosts' connections go wrong). Beside a
     * TLS vhost, the plain one is therefore NO_LISTEN, which lws never
     * picks for another's connections and never gives TLS. */
    vi.port = !tls && w->tls_port ? CONTEXT_PORT_NO_LISTEN
                                  : CONTEXT_PORT_NO_LISTEN_SERVER;
    vi.protocols = conn_protocols;
    vi.vhost_name = name;
    vi.retry_and_idle_policy = &worker_no_validity;
    /* These two are per vhost in lws 4.1: how long an accepted socket may
     * take to send its request headers, and HTTP keep-alive idle time. */
    vi.timeout_secs_ah_idle = cfg->handshake_timeout;
    vi.keepalive_timeout = 5;
    if (tls) {
        /* lws offers "h2,http/1.1" by default; Herald serves HTTP/1.1
         * (its endpoints, and the WebSocket upgrade, are HTTP/1.1). */
        vi.alpn = "http/1.1";
        vi.ssl_cert_filepath = cfg->tls_cert;
        vi.ssl_private_key_filepath = cfg->tls_key;
        vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        if (cfg->tls_client_ca[0]) {
            /* verification and SSL_VERIFY_FAIL_IF_NO_PEER_CERT; the
             * verdict is conn.c's (tls_lws_verify_verdict) */
            vi.ssl_ca_filepath = cfg->tls_client_ca;
            vi.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
        }
    }
    vi.user = &w->net;
    return lws_create_vhost(w->ctx, &vi);
}

static int worker_create_lws(worker *w)
{
    const config *cfg = w->srv->cfg;
    struct rlimit rl;
    unsigned fds = 20000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        fds = (unsigned)rl.rlim_cur;

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *loops[1] = { &w->loop };
    /* VALIDATE_UTF8: a text frame that is not UTF-8 fails the connection
     * with close 1007 (RFC 6455 8.1), checked by lws across fragments.
     * (lws 4.1 does not check that client frames are masked, and does not
     * tell the callback: see docs/architecture.md.) */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (cfg->tls_cert[0] && w->index == 0)   /* see worker_create_in_order */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.foreign_loops = loops;
    info.count_threads = 1;
    /* lws indexes connections by descriptor number, which is process-wide,
     * so each context must cover the whole descriptor range. */
    info.fd_limit_per_thread = fds;
    info.timeout_secs = cfg->handshake_timeout;
    /* An adopted socket waits for its request headers under this one. */
    info.timeout_secs_ah_idle = cfg->handshake_timeout;
    info.keepalive_timeout = 5;
    /* Every connection still in its HTTP handshake holds one of lws's
     * header tables; with all of a worker's in use, new connections wait
     * for one to be freed (1,024 half-open handshakes on a worker kept
     * newcomers waiting up to handshake_timeout: a slowloris). lws
     * allocates a table (about 4.3 KB) when a handshake starts and frees
     * it when it ends, so the pool is as large as the descriptors allow
     * (lws counts it in 16 bits): no connection waits for a table, and
     * their memory stays bounded by the open-file limit. */
    info.max_http_header_pool = (unsigned short)(fds < 65535 ? fds : 65535);
    info.pt_serv_buf_size = 4096;
    info.user = &w->net;      /* the protocol callback's lws_context_user */
    info.pcontext = &w->ctx;
    w->ctx = lws_create_context(&info);
    if (!w->ctx)
        return -1;

    w->vh = worker_vhost(w, "herald", w->srv->tls_on_listen);
    if (!w->vh)
        return -1;
    if (w->tls_port) {
        w->vh_tls = worker_vhost(w, "herald-tls", 1);
        if (!w->vh_tls)
            return -1;
    }
    return 0;
}

/* lws 4.1 does the library's global TLS set-up (OpenSSL's ex_data
 * indexes, kept in process-wide statics) for every context created with
 * LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT. With that on every worker's
 * context, a TLS server leaked a vhost's whole SSL_CTX at exit now and then
 * (LSan, two workers). So only worker 0's context does it, and the other
 * workers create theirs after it (their vhosts still serve TLS: that is
 * the vhost's option). */
static pthread_mutex_t worker_first_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t worker_first_cond = PTHREAD_COND_INITIALIZER;
static int worker_first_created;

static int worker_create_in_order(worker *w)
{
    if (w->index != 0) {
        pthread_mutex_lock(&worker_first_lock);
        while (!worker_first_created)
            pthread_cond_wait(&worker_first_cond, &worker_first_lock);
        pthread_mutex_unlock(&worker_first_lock);
        return worker_create_lws(w);
    }
    int rc = worker_create_lws(w);
    pthread_mutex_lock(&worker_first_lock);
    worker_first_created = 1;
    pthread_cond_broadcast(&worker_first_cond);
    pthread_mutex_unlock(&worker_first_lock);
    return rc;
}

/* The main listeners' sockets become lws connections; the admission
 * ticket is given back when lws destroys the connection (conn.c). */
static int worker_adopt_in(struct lws_vhost *vh, int fd, void *ticket)
{
    struct lws *wsi = lws_adopt_socket_vhost(vh, fd);
    if (!wsi)
        return -1;           /* lws closed the descriptor */
    lws_set_opaque_user_data(wsi, ticket);
    return 0;
}

static int worker_adopt_ws(void *arg, int fd, void *ticket)
{
    worker *w = arg;
    return worker_adopt_in(w->vh, fd, ticket);
}

/* tls_listen's. */
static int worker_adopt_wss(void *arg, int fd, void *ticket)
{
    worker *w = arg;
    return worker_adopt_in(w->vh_tls, fd, ticket);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    /* "herald-w<index>": which thread is which worker in top -H, gdb, and
     * the tests that stop one worker (test_cluster_fanout_bound.py). */
    char name[16];
    snprintf(name, sizeof(name), "herald-w%u", (unsigned)w->index);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    w->net.now_s = uv_now(&w->loop) / 1000;
    hb_init(&w->net.wheel, w->net.now_s);
    if (worker_create_in_order(w) < 0) {
        log_error("cannot create the libwebsockets context",
                  LOG_INT("worker", w->index));
        w->startup_error = 1;
        worker_report_drained(w);
        return NULL;
    }
    w->broker->ops->start(w->broker);
    if (w->sniffing) {
        sniff_init(&w->sniff, w->srv, &w->loop, worker_adopt_ws, w,
                   api_listen_adopt, w->api);
        listener_start(&w->lis, &w->loop, sniff_adopt, &w->sniff,
                       &w->net.count, &w->net.now_s);
    } else {
        listener_start(&w->lis, &w->loop, worker_adopt_ws, w, &w->net.count,
                       &w->net.now_s);
    }
    if (w->api_port)
        listener_start(&w->api_lis, &w->loop, api_listen_adopt_tls, w->api,
                       &w->net.count, &w->net.now_s);
    if (w->tls_port)
        listener_start(&w->tls_lis, &w->loop, worker_adopt_wss, w,
                       &w->net.count, &w->net.now_s);
    uv_timer_start(&w->tick, worker_on_tick, 1000, 1000);
    uv_prepare_start(&w->flush_prep, worker_on_prepare);
    uv_check_start(&w->judge_check, worker_on_check);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->ctx) {
        /* Second pass, as lws requires for foreign loops, once the loop
         * has run out of other handles. */
        lws_context_destroy(w->ctx);
        uv_run(&w->loop, UV_RUN_DEFAULT);
    }
    return NULL;
}

worker *worker_new(server *srv, uint16_t index, char *err, size_t errlen)
{
    worker *w = mem_calloc(1, sizeof(*w));
    w->srv = srv;
    w->index = index;
    if (listener_open(&w->lis, srv, index, &srv->cfg->listen, "listen",
                      &srv->listen_port, err, errlen) < 0) {
        free(w);
        return NULL;
    }
    if (srv->cfg->api_listen.host[0]) {
        if (listener_open(&w->api_lis, srv, index, &srv->cfg->api_listen,
                          "api_listen", &srv->api_port, err, errlen) < 0) {
            listener_free(&w->lis);
            free(w);
            return NULL;
        }
        w->api_port = 1;
        w->api_lis.tls = srv->cfg->api_tls;
    }
    w->lis.tls = srv->tls_on_listen;
    if (srv->cfg->tls_listen.host[0]) {
        if (listener_open(&w->tls_lis, srv, index, &srv->cfg->tls_listen,
                          "tls_listen", &srv->tls_port, err, errlen) < 0) {
            listener_free(&w->lis);
            if (w->api_port)
                listener_free(&w->api_lis);
            free(w);
            return NULL;
        }
        w->tls_port = 1;
        w->tls_lis.tls = 1;
    }
    uv_loop_init(&w->loop);
    uv_async_init(&w->loop, &w->wake, worker_on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_prepare_init(&w->loop, &w->flush_prep);
    w->flush_prep.data = w;
    uv_idle_init(&w->loop, &w->flush_idle);
    w->flush_idle.data = w;
    uv_check_init(&w->loop, &w->judge_check);
    w->judge_check.data = w;
    mailbox_init(&w->mb, &w->wake, requests_free);
    srv->inbox[index] = &w->mb;
    conns_init(&w->net, srv, index, &w->loop);
    w->broker = srv->cfg->n_redis ? broker_redis_new(srv, index, &w->loop)
                                  : broker_memory_new(srv, index);
    w->net.broker = w->broker;
    w->broker->ctl = (broker_ctl){ w, worker_ctl_asked, worker_ctl_answered,
                                   worker_ctl_sent, worker_ctl_clients_lost };
    owner_init(&w->own, srv, index, w->broker);
    /* The API on its own port, or sharing the main port (main.c), and the
     * static site, on the main port only. */
    w->sniffing = srv->sniff_main;
    if (w->api_port || w->sniffing)
        w->api = api_listen_new(srv, index, &w->loop, w->broker);
    return w;
}

int worker_start(worker *w)
{
    lws_set_log_level(LLL_ERR, worker_lws_log);
    return pthread_create(&w->thread, NULL, worker_main, w);
}

void worker_join(worker *w)
{
    pthread_join(w->thread, NULL);
}

void worker_free(worker *w)
{
    if (!w)
        return;
    if (w->ctx) {
        /* The thread never reached its loop (start-up error). */
        lws_context_destroy(w->ctx);
    }
    uv_loop_close(&w->loop);
    owner_free(&w->own);
    w->broker->ops->destroy(w->broker);
    mailbox_destroy(&w->mb);
    conns_free(&w->net);
    listener_free(&w->lis);
    if (w->api_port)
        listener_free(&w->api_lis);
    if (w->tls_port)
        listener_free(&w->tls_lis);
    api_listen_free(w->api);
    free(w);
}
