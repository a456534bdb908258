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

#include "base/log.h"

#define ACCEPT_BATCH 128
#define ACCEPT_PAUSE_MS 100
#define EMFILE_LOG_EVERY_S 10

int listener_open(listener *l, server *srv, uint16_t worker, char *err,
                  size_t errlen)
{
    const config *cfg = srv->cfg;
    memset(l, 0, sizeof(*l));
    l->srv = srv;
    l->worker = worker;
    l->fd = -1;
    l->spare_fd = -1;
    char port[16];
    snprintf(port, sizeof(port), "%d",
             srv->listen_port ? srv->listen_port : cfg->listen_port);
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
    if (!srv->listen_port) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        srv->listen_port = ntohs(ss.ss_family == AF_INET6
            ? ((struct sockaddr_in6 *)&ss)->sin6_port
            : ((struct sockaddr_in *)&ss)->sin_port);
    }
    freeaddrinfo(res);
    l->fd = fd;
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return 0;
fail:
    snprintf(err, errlen, "listen on %s:%s: %s", cfg->listen_host, port,
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

static void listener_on_accept(uv_poll_t *p, int status, int events)
{
    listener *l = p->data;
    (void)events;
    if (status < 0 || l->fd < 0)
        return;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                listener_emfile(l);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (!lws_adopt_socket_vhost(l->vh, fd)) {
            /* lws closes the descriptor when adoption fails. */
            log_warn("could not adopt connection",
                     LOG_INT("worker", l->worker));
        }
    }
}

void listener_start(listener *l, uv_loop_t *loop, struct lws_vhost *vh,
                    const uint32_t *conns, const uint64_t *now_s)
{
    l->vh = vh;
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
    if (l->fd < 0 || !l->vh)
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
    if (!l->vh)
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
