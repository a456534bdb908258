/*
 * Listening and accepting (listener.h).
 */
#define _GNU_SOURCE
#include "net/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/admit.h"
#include "base/log.h"

#define ACCEPT_BATCH 128
#define ACCEPT_PAUSE_MS 100
#define EMFILE_LOG_EVERY_S 10

int listener_open(listener *l, server *srv, uint16_t worker,
                  const config_listen *addr, const char *what,
                  uint16_t *bound, char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    l->srv = srv;
    l->worker = worker;
    l->what = what;
    l->fd = -1;
    l->spare_fd = -1;
    char port[16];
    snprintf(port, sizeof(port), "%d", *bound ? *bound : addr->port);
    struct addrinfo hints = { 0 }, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const char *host = addr->host[0] ? addr->host : NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s address %s: %s", what, addr->host,
                 gai_strerror(rc));
        return -1;
    }
    int one = 1, fd = -1;
    if (worker == 0 && strcmp(port, "0") != 0) {
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
    if (!*bound) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        *bound = ntohs(ss.ss_family == AF_INET6
            ? ((struct sockaddr_in6 *)&ss)->sin6_port
            : ((struct sockaddr_in *)&ss)->sin_port);
    }
    freeaddrinfo(res);
    l->fd = fd;
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return 0;
fail:
    snprintf(err, errlen, "%s on %s:%s: %s", what, addr->host, port,
             strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return -1;
}

static void listener_on_accept(uv_poll_t *p, int status, int events);

static void listener_resume(uv_timer_t *t)
{
    listener *l = t->data;
    if (l->spare_fd < 0)
        l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (l->fd >= 0)
        uv_poll_start(&l->poll, UV_READABLE, listener_on_accept);
}

/* Out of descriptors: drop the pending connection so the kernel stops
 * reporting it, then back off. */
static void listener_emfile(listener *l)
{
    if (l->spare_fd >= 0) {
        close(l->spare_fd);
        l->spare_fd = -1;
        int drop = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (drop >= 0)
            close(drop);
    }
    l->emfile_drops++;
    uint64_t now = *l->now_s;
    if (!l->emfile_logged_s || now >= l->emfile_logged_s + EMFILE_LOG_EVERY_S) {
        log_warn("out of file descriptors: refusing connections",
                 LOG_INT("worker", l->worker),
                 LOG_INT("connections", *l->conns),
                 LOG_INT("refused", l->emfile_drops));
        l->emfile_logged_s = now ? now : 1;
        l->emfile_drops = 0;
    }
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->resume, listener_resume, ACCEPT_PAUSE_MS, 0);
}

/* Refuses a connection over its address's limits: what it sent is read
 * (closing with unread input would reset the connection and could discard
 * the answer), a 429 with a JSON message is written (not on a TLS
 * listener, whose client would take it for a broken handshake), and the
 * socket is closed. Nothing waits: a client that sends its request later
 * sees the 429 and then a reset. */
static void listener_refuse(listener *l, int fd, int verdict)
{
    static const char body_many[] =
        "{\"error\":\"too many connections from this address\"}";
    static const char body_fast[] =
        "{\"error\":\"too many new connections from this address\"}";
    const char *body = verdict == ADMIT_TOO_MANY ? body_many : body_fast;
    char buf[512];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 429 Too Many Requests\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\nRetry-After: 1\r\n"
                     "Connection: close\r\n\r\n%s",
                     strlen(body), body);
    if (!l->tls) {
        ssize_t w = send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)w;
    }
    close(fd);
    l->refused++;
    uint64_t now = *l->now_s;
    if (!l->refused_logged_s || now >= l->refused_logged_s + EMFILE_LOG_EVERY_S) {
        log_info("connections refused by the per-address limits",
                 LOG_INT("worker", l->worker), LOG_INT("refused", l->refused),
                 LOG_STR("reason", verdict == ADMIT_TOO_MANY
                                       ? "max_connections_per_ip"
                                       : "connection_rate_per_ip"));
        l->refused_logged_s = now ? now : 1;
        l->refused = 0;
    }
}

static void listener_on_accept(uv_poll_t *p, int status, int events)
{
    listener *l = p->data;
    (void)events;
    if (status < 0 || l->fd < 0)
        return;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        int fd = accept4(l->fd, (struct sockaddr *)&sa, &sl,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                listener_emfile(l);
            return;
        }
        void *ticket = NULL;
        int verdict = admit_take(l->srv->admit, (struct sockaddr *)&sa,
                                 uv_now(l->poll.loop), &ticket);
        if (verdict != ADMIT_OK) {
            listener_refuse(l, fd, verdict);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (l->adopt(l->adopt_arg, fd, ticket) < 0) {
            admit_release(l->srv->admit, ticket);
            log_warn("could not adopt connection",
                     LOG_INT("worker", l->worker), LOG_STR("listener", l->what));
        }
    }
}

void listener_start(listener *l, uv_loop_t *loop, listener_adopt_fn adopt,
                    void *adopt_arg, const uint32_t *conns,
                    const uint64_t *now_s)
{
    l->adopt = adopt;
    l->adopt_arg = adopt_arg;
    l->conns = conns;
    l->now_s = now_s;
    uv_poll_init(loop, &l->poll, l->fd);
    l->poll.data = l;
    uv_timer_init(loop, &l->resume);
    l->resume.data = l;
    uv_poll_start(&l->poll, UV_READABLE, listener_on_accept);
}

static void listener_closed(uv_handle_t *h)
{
    (void)h;
}

void listener_close(listener *l)
{
    if (l->fd < 0 || !l->adopt)
        return;
    /* The poll handle goes first, while the descriptor is still ours
     * (libuv removes it from epoll by number). */
    uv_poll_stop(&l->poll);
    uv_close((uv_handle_t *)&l->poll, listener_closed);
    uv_timer_stop(&l->resume);
    close(l->fd);
    l->fd = -1;
}

void listener_stop(listener *l)
{
    if (!l->adopt)
        return;   /* never started */
    listener_close(l);
    uv_timer_stop(&l->resume);
    if (!uv_is_closing((uv_handle_t *)&l->resume))
        uv_close((uv_handle_t *)&l->resume, listener_closed);
}

void listener_free(listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    l->fd = l->spare_fd = -1;
}
