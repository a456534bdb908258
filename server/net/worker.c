/*
 * Worker threads: the event loop, the lws context on it, accepting
 * connections, the mailbox and the one-second tick (heartbeats, history
 * expiry, shutdown deadline).
 *
 * Accepting: each worker owns a listening socket bound with SO_REUSEPORT
 * and hands accepted sockets to lws with lws_adopt_socket_vhost() (lws's
 * own listener cannot be shared between contexts in this build). When the
 * process runs out of descriptors, the spare descriptor kept open for that
 * purpose is closed to accept and immediately drop the pending connection,
 * and accepting pauses briefly, so the loop neither spins nor crashes.
 */
#define _GNU_SOURCE
#include "net/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/redis/cluster.h"
#include "net/conn.h"
#include "base/log.h"
#include "core/owner.h"

#define ACCEPT_BATCH 128
/* Flush passes per loop iteration before the rest waits for the next
 * iteration (worker_on_prepare). */
#define WORKER_FLUSH_ROUNDS 8
#define ACCEPT_PAUSE_MS 100
#define EXPIRE_EVERY_S 5
#define EMFILE_LOG_EVERY_S 10

uint16_t server_owner(const server *s, const char *chan, size_t len)
{
    unsigned hv;
    HASH_VALUE(chan, len, hv);
    return (uint16_t)(hv % s->n_workers);
}

void worker_post(server *srv, uint16_t to, msg *m)
{
    mailbox_post(&srv->workers[to]->mb, m);
}

/* --- connection table --------------------------------------------------- */

uint32_t worker_slot_alloc(worker *w, struct conn *c, uint32_t *gen)
{
    uint32_t i;
    if (w->n_free) {
        i = w->free_slots[--w->n_free];
    } else {
        if ((w->n_slots & (w->n_slots - 1)) == 0) {
            uint32_t cap = w->n_slots ? w->n_slots * 2 : 64;
            w->slots = realloc(w->slots, sizeof(*w->slots) * cap);
            w->free_slots = realloc(w->free_slots, sizeof(uint32_t) * cap);
            if (!w->slots || !w->free_slots)
                abort();
        }
        i = w->n_slots++;
        w->slots[i].gen = 0;
    }
    w->slots[i].c = c;
    w->slots[i].gen++;
    *gen = w->slots[i].gen;
    w->n_conns++;
    return i;
}

void worker_slot_free(worker *w, uint32_t slot)
{
    w->slots[slot].c = NULL;
    w->free_slots[w->n_free++] = slot;
    w->n_conns--;
}

struct conn *worker_slot_get(worker *w, uint32_t slot, uint32_t gen)
{
    if (slot >= w->n_slots || w->slots[slot].gen != gen)
        return NULL;
    return w->slots[slot].c;
}

/* --- listening socket --------------------------------------------------- */

static int worker_listen(worker *w, char *err, size_t errlen)
{
    const config *cfg = w->srv->cfg;
    char port[16];
    snprintf(port, sizeof(port), "%d",
             w->srv->listen_port ? w->srv->listen_port : cfg->listen_port);
    struct addrinfo hints = { 0 }, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const char *host = cfg->listen_host[0] ? cfg->listen_host : NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "listen address %s: %s", cfg->listen_host,
                 gai_strerror(rc));
        return -1;
    }
    int one = 1, fd;
    if (w->index == 0 && strcmp(port, "0") != 0) {
        /* SO_REUSEPORT would let this process share the port with another
         * herald (or anything else) of the same user, each getting part of
         * the connections. A first bind without it fails when the port is
         * taken at all: then refuse to start. */
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            goto fail;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
            goto fail;
        close(fd);
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
        goto fail;
    if (listen(fd, 4096) < 0)
        goto fail;
    if (!w->srv->listen_port) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        w->srv->listen_port = ntohs(ss.ss_family == AF_INET6
            ? ((struct sockaddr_in6 *)&ss)->sin6_port
            : ((struct sockaddr_in *)&ss)->sin_port);
    }
    freeaddrinfo(res);
    w->listen_fd = fd;
    return 0;
fail:
    snprintf(err, errlen, "listen on %s:%s: %s", cfg->listen_host, port,
             strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return -1;
}

static void worker_on_accept(uv_poll_t *p, int status, int events);

static void worker_accept_resume(uv_timer_t *t)
{
    worker *w = t->data;
    if (w->spare_fd < 0)
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!w->draining)
        uv_poll_start(&w->listen_poll, UV_READABLE, worker_on_accept);
}

static void worker_accept_pause(worker *w)
{
    uv_poll_stop(&w->listen_poll);
    uv_timer_start(&w->accept_resume, worker_accept_resume, ACCEPT_PAUSE_MS, 0);
}

static void worker_on_accept(uv_poll_t *p, int status, int events)
{
    worker *w = p->data;
    if (status < 0 || w->draining)
        return;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: drop the pending connection so the
                 * kernel stops reporting it, then back off. */
                if (w->spare_fd >= 0) {
                    close(w->spare_fd);
                    w->spare_fd = -1;
                    int drop = accept4(w->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                    if (drop >= 0)
                        close(drop);
                }
                w->emfile_drops++;
                if (!w->emfile_logged_s ||
                    w->now_s >= w->emfile_logged_s + EMFILE_LOG_EVERY_S) {
                    log_warn("out of file descriptors: refusing connections",
                             LOG_INT("worker", w->index),
                             LOG_INT("connections", w->n_conns),
                             LOG_INT("refused", w->emfile_drops));
                    w->emfile_logged_s = w->now_s ? w->now_s : 1;
                    w->emfile_drops = 0;
                }
                worker_accept_pause(w);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (!lws_adopt_socket_vhost(w->vh, fd)) {
            /* lws closes the descriptor when adoption fails. */
            log_warn("could not adopt connection", LOG_INT("worker", w->index));
        }
    }
    (void)events;
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

static void worker_begin_drain(worker *w)
{
    if (w->draining)
        return;
    w->draining = 1;
    w->drain_deadline_s = w->now_s + w->srv->cfg->shutdown_timeout;
    /* Closed, not just ignored: new connections are refused at once (a
     * load balancer fails over to another node) instead of waiting in the
     * backlog until the process exits. The poll handle goes first, while
     * the descriptor is still ours (libuv removes it from epoll by
     * number). */
    uv_poll_stop(&w->listen_poll);
    uv_close((uv_handle_t *)&w->listen_poll, worker_close_cb);
    if (w->listen_fd >= 0) {
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    uv_timer_stop(&w->accept_resume);
    for (uint32_t i = 0; i < w->n_slots; i++) {
        conn *c = w->slots[i].c;
        if (c)
            conn_close(c, PROTO_CLOSE_SHUTDOWN, "server shutting down", 1);
    }
    if (w->n_conns == 0)
        worker_report_drained(w);
}

static void worker_stop(worker *w)
{
    mailbox_close(&w->mb);
    uv_timer_stop(&w->tick);
    uv_timer_stop(&w->accept_resume);
    uv_close((uv_handle_t *)&w->tick, worker_close_cb);
    uv_prepare_stop(&w->flush_prep);
    uv_close((uv_handle_t *)&w->flush_prep, worker_close_cb);
    uv_idle_stop(&w->flush_idle);
    uv_close((uv_handle_t *)&w->flush_idle, worker_close_cb);
    uv_close((uv_handle_t *)&w->accept_resume, worker_close_cb);
    uv_close((uv_handle_t *)&w->wake, worker_close_cb);
    if (!uv_is_closing((uv_handle_t *)&w->listen_poll))
        uv_close((uv_handle_t *)&w->listen_poll, worker_close_cb);
    cluster_stop(w);
    /* With a foreign loop lws finishes destroying the context from the
     * loop (closing its handles) and clears w->ctx through pcontext. */
    lws_context_destroy(w->ctx);
}

/* --- mailbox and tick ---------------------------------------------------- */

static void worker_on_wake(uv_async_t *a)
{
    worker *w = a->data;
    msg *m = mailbox_take(&w->mb);
    while (m) {
        msg *next = m->next;
        switch (m->type) {
        case MSG_SUB_REQ:
        case MSG_UNSUB:
        case MSG_PUB_REQ:
        case MSG_HIST_REQ:
        case MSG_PRES_REQ:
        case MSG_STORE_LAST:
        case MSG_STORE_READ:
            owner_handle(w, m);
            break;
        case MSG_SHUTDOWN:
            worker_begin_drain(w);
            msg_free(m);
            break;
        case MSG_STOP:
            msg_free(m);
            /* Later messages are dropped: every connection is gone. */
            while (next) {
                msg *n2 = next->next;
                if (next->type == MSG_DELIVER)
                    atomic_fetch_sub(&w->mb.delivers, 1);
                msg_free(next);
                next = n2;
            }
            worker_stop(w);
            return;
        default:
            if (m->type == MSG_DELIVER)
                atomic_fetch_sub_explicit(&w->mb.delivers, 1,
                                          memory_order_relaxed);
            conn_on_msg(w, m);
            break;
        }
        m = next;
    }
}

/* Before the loop waits for events: write the output that this iteration
 * queued (see conn_flush). */
static void worker_flush_idle(uv_idle_t *i)
{
    (void)i;   /* its being active is what counts (see below) */
}

static void worker_on_prepare(uv_prepare_t *p)
{
    worker *w = p->data;
    /* A connection with more ready than one frame queues itself again.
     * A few rounds here; if some still have more, the idle handle keeps
     * the loop from waiting (libuv polls with a zero timeout while an idle
     * handle is active), so the rest goes out on the next iterations
     * instead of whenever the next event happens to wake the loop. */
    for (int round = 0; w->flush && round < WORKER_FLUSH_ROUNDS; round++)
        conn_flush(w);
    if (w->flush)
        uv_idle_start(&w->flush_idle, worker_flush_idle);
    else
        uv_idle_stop(&w->flush_idle);
}

static void worker_on_tick(uv_timer_t *t)
{
    worker *w = t->data;
    w->now_s = uv_now(&w->loop) / 1000;

    /* Heartbeats: visit the slot of this second; conn_heartbeat moves each
     * connection to the slot of its next check. */
    conn **slot = &w->wheel[w->now_s % WHEEL_SLOTS];
    conn *c = *slot;
    *slot = NULL;
    while (c) {
        conn *next = c->wnext;
        c->wprev = c->wnext = NULL;
        conn_heartbeat(c, w->now_s);
        c = next;
    }

    if (w->now_s % EXPIRE_EVERY_S == 0)
        owner_expire(w);

    if (w->draining && !w->drained_reported &&
        (w->n_conns == 0 || w->now_s >= w->drain_deadline_s)) {
        if (w->n_conns)
            log_warn("shutdown timeout: dropping connections",
                     LOG_INT("worker", w->index),
                     LOG_INT("connections", w->n_conns));
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
 * own heartbeat wheel (conn_heartbeat), O(1) per connection. lws 4.1 keeps
 * every timer of a context in one list sorted by deadline and inserts by
 * walking it from the head, so a validity timer per connection, pushed to
 * the end of the list on every message received, made each received
 * message and each new connection cost O(connections): a reconnect storm
 * of 10,000 clients stalled the worker for seconds. */
static const lws_retry_bo_t worker_no_validity = {
    .secs_since_valid_ping = 0,
    .secs_since_valid_hangup = 0,
};

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
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (cfg->tls_cert[0])
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
    info.max_http_header_pool = 1024;
    info.pt_serv_buf_size = 4096;
    info.user = w;
    info.pcontext = &w->ctx;
    w->ctx = lws_create_context(&info);
    if (!w->ctx)
        return -1;

    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof(vi));
    vi.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    vi.protocols = conn_protocols;
    vi.vhost_name = "herald";
    vi.retry_and_idle_policy = &worker_no_validity;
    /* These two are per vhost in lws 4.1: how long an accepted socket may
     * take to send its request headers, and HTTP keep-alive idle time. */
    vi.timeout_secs_ah_idle = cfg->handshake_timeout;
    vi.keepalive_timeout = 5;
    if (cfg->tls_cert[0]) {
        vi.ssl_cert_filepath = cfg->tls_cert;
        vi.ssl_private_key_filepath = cfg->tls_key;
        vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    }
    vi.user = w;
    w->vh = lws_create_vhost(w->ctx, &vi);
    if (!w->vh)
        return -1;
    return 0;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    w->now_s = uv_now(&w->loop) / 1000;
    if (worker_create_lws(w) < 0) {
        log_error("cannot create the libwebsockets context",
                  LOG_INT("worker", w->index));
        w->startup_error = 1;
        worker_report_drained(w);
        return NULL;
    }
    if (w->srv->cfg->n_redis)
        cluster_start(w);
    uv_poll_start(&w->listen_poll, UV_READABLE, worker_on_accept);
    uv_timer_start(&w->tick, worker_on_tick, 1000, 1000);
    uv_prepare_start(&w->flush_prep, worker_on_prepare);
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
    worker *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->srv = srv;
    w->index = index;
    w->listen_fd = -1;
    if (worker_listen(w, err, errlen) < 0) {
        free(w);
        return NULL;
    }
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    uv_loop_init(&w->loop);
    uv_async_init(&w->loop, &w->wake, worker_on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_prepare_init(&w->loop, &w->flush_prep);
    w->flush_prep.data = w;
    uv_idle_init(&w->loop, &w->flush_idle);
    w->flush_idle.data = w;
    uv_timer_init(&w->loop, &w->accept_resume);
    w->accept_resume.data = w;
    uv_poll_init(&w->loop, &w->listen_poll, w->listen_fd);
    w->listen_poll.data = w;
    mailbox_init(&w->mb, &w->wake);
    hub_init(&w->hub);
    chanreg_init(&w->reg, srv->n_workers);
    owner_init(w);
    ids_rng_seed(&w->rng);
    proto_buf_init(&w->scratch, LWS_PRE);
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
    cluster_free(w);
    mailbox_destroy(&w->mb);
    hub_free(&w->hub);
    chanreg_free(&w->reg);
    proto_buf_free(&w->scratch);
    proto_buf_free(&w->enc);
    free(w->slots);
    free(w->free_slots);
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    if (w->spare_fd >= 0)
        close(w->spare_fd);
    free(w);
}
