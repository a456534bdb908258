/*
 * Telling API requests from WebSocket ones on the main port (sniff.h).
 */
#include "net/sniff.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/admit.h"
#include "base/mem.h"

#define SNIFF_PEEK 24            /* "OPTIONS /api/v1/" and more */
#define SNIFF_RETRY_MS 20

struct sniffing {
    uv_poll_t poll;               /* first: the handle's data is this */
    sniff *s;
    int fd;
    void *ticket;
    uint64_t since_ms;
    int8_t verdict;               /* -1 waiting, 0 lws, 1 API, 2 drop */
    uint8_t polling;
    uint8_t closing;
    sniffing *prev, *next;
};

/* Whether path (left bytes) starts with one of targets: 1 when one
 * matched whole, -1 when it may still (a prefix of one), 0 when none. */
static int sniff_match(const char *path, size_t left,
                       const char *const *targets, size_t n_targets)
{
    int maybe = 0;
    for (size_t k = 0; k < n_targets; k++) {
        size_t tl = strlen(targets[k]);
        size_t m = left < tl ? left : tl;
        if (memcmp(path, targets[k], m) != 0)
            continue;
        if (m == tl)
            return 1;
        maybe = 1;
    }
    return maybe ? -1 : 0;
}

int sniff_classify(const char *p, size_t n, int site)
{
    static const char *const api[] = { "/api/v1/", "/api/v1?", "/api/v1 ",
                                       "/metrics ", "/metrics?" };
    /* with the site, lws keeps only the WebSocket endpoint */
    static const char *const ws[] = { "/ws ", "/ws?" };
    size_t i = 0;
    /* the method: an upper-case token of at most 7 letters */
    while (i < n && i < 8 && p[i] >= 'A' && p[i] <= 'Z')
        i++;
    if (i == 0 || i == 8)
        return 0;
    if (i == n)
        return -1;
    if (p[i] != ' ')
        return 0;
    const char *path = p + i + 1;
    size_t left = n - i - 1;
    if (site) {
        int m = sniff_match(path, left, ws, sizeof(ws) / sizeof(ws[0]));
        return m < 0 ? -1 : !m;
    }
    return sniff_match(path, left, api, sizeof(api) / sizeof(api[0]));
}

static void sniff_unlink(sniffing *x)
{
    sniff *s = x->s;
    if (x->prev)
        x->prev->next = x->next;
    else
        s->list = x->next;
    if (x->next)
        x->next->prev = x->prev;
    s->count--;
}

/* The poll handle is closed: only now may another handle watch fd. */
static void sniff_closed(uv_handle_t *h)
{
    sniffing *x = h->data;
    sniff *s = x->s;
    int rc = 0;
    if (x->verdict == 1)
        rc = s->api(s->api_arg, x->fd, x->ticket);
    else if (x->verdict == 0)
        rc = s->ws(s->ws_arg, x->fd, x->ticket);
    else
        close(x->fd);
    if (rc < 0 || x->verdict == 2)
        admit_release(s->srv->admit, x->ticket);
    free(x);
}

static void sniff_decide(sniffing *x, int verdict)
{
    if (x->closing)
        return;
    x->closing = 1;
    x->verdict = (int8_t)verdict;
    sniff_unlink(x);
    uv_close((uv_handle_t *)&x->poll, sniff_closed);
}

static void sniff_readable(uv_poll_t *p, int status, int events);

static void sniff_on_retry(uv_timer_t *t)
{
    sniff *s = t->data;
    for (sniffing *x = s->list; x; x = x->next)
        if (!x->polling && !x->closing) {
            x->polling = 1;
            uv_poll_start(&x->poll, UV_READABLE, sniff_readable);
        }
}

static void sniff_readable(uv_poll_t *p, int status, int events)
{
    sniffing *x = p->data;
    (void)events;
    if (status < 0) {
        sniff_decide(x, 2);
        return;
    }
    char buf[SNIFF_PEEK];
    ssize_t n = recv(x->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        sniff_decide(x, 2);        /* closed before a byte: nothing to do */
        return;
    }
    int v = sniff_classify(buf, (size_t)n, x->s->site);
    if (v >= 0 || n == (ssize_t)sizeof(buf)) {
        sniff_decide(x, v == 1);
        return;
    }
    /* a prefix of a request line not told apart yet: the poll is level-triggered, so
     * wait a little before looking again instead of spinning */
    uv_poll_stop(&x->poll);
    x->polling = 0;
    if (!uv_is_active((uv_handle_t *)&x->s->retry))
        uv_timer_start(&x->s->retry, sniff_on_retry, SNIFF_RETRY_MS, 0);
}

void sniff_init(sniff *s, server *srv, uv_loop_t *loop, listener_adopt_fn ws,
                void *ws_arg, listener_adopt_fn api, void *api_arg)
{
    memset(s, 0, sizeof(*s));
    s->srv = srv;
    s->loop = loop;
    s->ws = ws;
    s->ws_arg = ws_arg;
    s->api = api;
    s->api_arg = api_arg;
    s->site = srv->site != NULL;
    uv_timer_init(loop, &s->retry);
    s->retry.data = s;
}

int sniff_adopt(void *arg, int fd, void *ticket)
{
    sniff *s = arg;
    if (s->draining) {
        close(fd);
        return -1;
    }
    if (s->count >= SNIFF_MAX)
        return s->ws(s->ws_arg, fd, ticket);
    sniffing *x = mem_calloc(1, sizeof(*x));
    x->s = s;
    x->fd = fd;
    x->ticket = ticket;
    x->since_ms = uv_now(s->loop);
    x->verdict = -1;
    if (uv_poll_init_socket(s->loop, &x->poll, fd) < 0) {
        free(x);
        close(fd);
        return -1;
    }
    x->poll.data = x;
    x->next = s->list;
    if (s->list)
        s->list->prev = x;
    s->list = x;
    s->count++;
    x->polling = 1;
    uv_poll_start(&x->poll, UV_READABLE, sniff_readable);
    return 0;
}

void sniff_tick(sniff *s, uint64_t now_ms)
{
    uint64_t limit = (uint64_t)s->srv->cfg->handshake_timeout * 1000;
    for (sniffing *x = s->list, *next; x; x = next) {
        next = x->next;
        if (now_ms - x->since_ms > limit)
            sniff_decide(x, 2);
    }
}

void sniff_drain(sniff *s)
{
    s->draining = 1;
    while (s->list)
        sniff_decide(s->list, 2);
}

uint32_t sniff_count(const sniff *s)
{
    return s->count;
}

void sniff_stop(sniff *s)
{
    sniff_drain(s);
    uv_timer_stop(&s->retry);
    uv_close((uv_handle_t *)&s->retry, NULL);
}
