/*
 * The api_listen server (listen.h).
 *
 * Every connection of a worker reads into the worker's one read buffer
 * and feeds http1 from it (http1 copies what a request needs); on a whole
 * request it routes it, writes the answer and, once the write completed,
 * either closes (no keep-alive, an error, draining) or goes on with what
 * is left (a pipelined request, copied out of the shared buffer) and reads
 * on. Bytes that arrive while a request is in progress are kept (one read)
 * and reading stops until its answer is written: so one connection never
 * has more than one request in progress nor more than two reads of input
 * kept, while a client that waits for each answer (most do) costs no
 * read stop and restart (two epoll_ctl calls) per request. An idle
 * kept-alive connection holds no read buffer and no buffer larger than
 * HTTP1_KEEP_BYTES.
 *
 * With api_tls, a connection's bytes go through its api_tls (tls.h) on
 * the way in and out: a read's ciphertext is decrypted into the worker's
 * second buffer, one piece at a time, and each piece is handled as a
 * plain read's bytes would be; an answer is encrypted into `tls_out` and
 * sent in its place; what the TLS layer sends by itself (the handshake,
 * alerts) is queued for writing as it comes, and a client that does not
 * read it is closed once API_TLS_QUEUE_MAX bytes wait. The handshake
 * must be done within handshake_timeout of the accept.
 */
#include "api/listen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api.h"
#include "api/http1.h"
#include "api/tls.h"
#include "base/admit.h"
#include "base/log.h"
#include "base/mem.h"
#include "metrics/health.h"
#include "metrics/metrics.h"
#include "web/site.h"

#define API_READ_SIZE 65536
#define API_IDLE_MS 60000
/* Bytes the TLS layer's own messages may keep waiting in a connection's
 * write queue (a handshake flight is a few KB). */
#define API_TLS_QUEUE_MAX (256 * 1024)

typedef struct api_conn {
    uv_tcp_t tcp;             /* first: the handle's data is the conn */
    api_listen *owner;
    struct api_conn *prev, *next;
    void *ticket;             /* admission (admit.h) */
    uint32_t slot, gen;       /* where an owner's reply finds it */
    uint32_t call;            /* the number of the request in progress */
    uint64_t waiting_since_ms;/* waiting for owners' replies, or 0 */
    api_call *pending;        /* the call those replies are for */
    http1_conn http;
    const char *in;           /* bytes read and not yet parsed: the
                                 worker's read buffer during a read, else
                                 `left` */
    size_t in_len;
    size_t in_off;            /* parsed up to here */
    char *left;               /* a pipelined remainder, owned */
    proto_buf out;            /* the answer being written */
    uv_write_t wr;
    int reading, writing, closing, close_after;
    int busy;                 /* a request in progress (until its answer
                                 is written) */
    int peer_done;            /* the client ended its side meanwhile */
    size_t write_left;        /* bytes of the answer not yet sent */
    uint64_t write_moved_ms;  /* when that last went down */
    uint64_t request_since_ms;/* first byte of the request in progress, 0 */
    uint64_t idle_since_ms;   /* last answer written (keep-alive idle) */
    api_tls *tls;             /* api_tls: the connection's TLS, or NULL */
    proto_buf tls_out;        /* ciphertext not yet queued for writing */
    uint64_t opened_ms;       /* accepted (the TLS handshake's deadline) */
    uint8_t main_port;        /* taken from the main port (net/sniff.c),
                                 not api_listen's */
    uint8_t site_req;         /* the request in progress is the static
                                 site's (not counted as an API call) */
} api_conn;

struct api_listen {
    server *srv;
    struct broker *broker;
    uint16_t worker;
    uv_loop_t *loop;
    api_conn *conns;          /* every open connection */
    uint32_t count;
    struct api_slot {
        api_conn *c;
        uint32_t gen;
    } *slots;                 /* by slot: owner replies find their call */
    uint32_t n_slots, *free_slots, n_free;
    int draining;
    struct metrics_worker *m; /* this worker's counters; NULL: off */
    http1_limits lim;
    api_answer ans;           /* scratch: the answer being made */
    char rbuf[API_READ_SIZE]; /* every connection's reads */
    char *pbuf;               /* api_tls: what they decrypt to, piece by
                                 piece (API_READ_SIZE) */
};

static void conn_closed(uv_handle_t *h)
{
    api_conn *c = h->data;
    api_listen *a = c->owner;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->count--;
    atomic_fetch_sub(&a->srv->api_connections, 1);
    a->slots[c->slot].c = NULL;
    a->slots[c->slot].gen++;
    a->free_slots[a->n_free++] = c->slot;
    admit_release(a->srv->admit, c->ticket);
    api_call_free(c->pending);
    http1_free(&c->http);
    free(c->left);
    proto_buf_free(&c->out);
    api_tls_free(c->tls);
    proto_buf_free(&c->tls_out);
    free(c);
}

static void conn_close(api_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void conn_read_start(api_conn *c);
static void conn_process(api_conn *c);

/* A buffer back to empty, without keeping a large allocation. */
static void conn_buf_empty(proto_buf *b)
{
    if (b->cap > HTTP1_KEEP_BYTES) {
        proto_buf_free(b);
        proto_buf_init(b, 0);
    } else {
        proto_buf_reset(b);
    }
}

/* A write of the TLS layer's own bytes (handshake, alerts), in the write
 * queue after what was queued before it. */
typedef struct tls_write {
    uv_write_t req;
    api_conn *c;
    char data[];
} tls_write;

static void conn_tls_wrote(uv_write_t *w, int status)
{
    tls_write *tw = w->data;
    api_conn *c = tw->c;
    free(tw);
    /* (write callbacks run before the handle's close callback: c is
     * still there) */
    if (status < 0)
        conn_close(c);
}

/* Queues what the TLS layer has to send. */
static void conn_tls_flush(api_conn *c)
{
    size_t n = c->tls_out.len;
    if (!n || c->closing)
        return;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + n >
        API_TLS_QUEUE_MAX) {
        conn_close(c);        /* a client that does not read */
        return;
    }
    tls_write *tw = mem_alloc(sizeof(*tw) + n);
    tw->c = c;
    tw->req.data = tw;
    memcpy(tw->data, proto_buf_data(&c->tls_out), n);
    conn_buf_empty(&c->tls_out);
    uv_buf_t b = uv_buf_init(tw->data, (unsigned)n);
    if (uv_write(&tw->req, (uv_stream_t *)&c->tcp, &b, 1,
                 conn_tls_wrote) < 0) {
        free(tw);
        conn_close(c);
    }
}

/* An answer (c->out, plaintext) becomes its ciphertext, after whatever
 * the TLS layer queued before it, and close_notify when the connection
 * closes after it. */
static int conn_tls_seal(api_conn *c)
{
    if (api_tls_write(c->tls, proto_buf_data(&c->out), c->out.len) < 0)
        return -1;
    if (c->close_after)
        api_tls_shutdown(c->tls);
    proto_buf t = c->out;
    c->out = c->tls_out;
    c->tls_out = t;
    conn_buf_empty(&c->tls_out);
    return 0;
}

static void conn_wrote(uv_write_t *w, int status)
{
    api_conn *c = w->data;
    c->writing = 0;
    conn_buf_empty(&c->out);
    if (status < 0 || c->close_after || c->owner->draining) {
        conn_close(c);
        return;
    }
    c->busy = 0;
    c->idle_since_ms = uv_now(c->owner->loop);
    http1_next(&c->http);
    conn_process(c);       /* a pipelined request, or read on */
}

/* Writes an answer (type NULL: JSON), counted by route and status; the
 * connection closes after it when it must. */
static void conn_answer_cached(api_conn *c, int status, const char *type,
                               const char *cache_control, const char *extra,
                               const proto_buf *body, int keep_alive)
{
    const http1_request *req = http1_request_get(&c->http);
    if (!c->site_req)
        metrics_api_request(c->owner->m, req ? req->path.ptr : NULL, status);
    c->site_req = 0;
    c->close_after = !keep_alive;
    http1_answer(&c->out, status, type ? type : "application/json",
                 cache_control, extra, proto_buf_data(body), body->len,
                 keep_alive);
    if (req && req->method == HTTP_HEAD)
        c->out.len -= body->len;     /* the head says how long it would be */
    if (c->tls && conn_tls_seal(c) < 0) {
        conn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init(proto_buf_data(&c->out), (unsigned)c->out.len);
    c->writing = 1;
    c->write_left = c->out.len;
    c->write_moved_ms = uv_now(c->owner->loop);
    c->request_since_ms = 0;
    c->waiting_since_ms = 0;
    api_call_free(c->pending);
    c->pending = NULL;
    c->call++;                /* a late reply for this call is dropped */
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, conn_wrote) < 0) {
        c->writing = 0;
        conn_close(c);
    }
}

/* An answer that no cache may keep (Cache-Control: no-store). */
static void conn_answer(api_conn *c, int status, const char *type,
                        const char *extra, const proto_buf *body,
                        int keep_alive)
{
    conn_answer_cached(c, status, type, NULL, extra, body, keep_alive);
}

static void conn_refuse(api_conn *c, int status, const char *message)
{
    api_answer *ans = &c->owner->ans;
    /* a body over api_max_body is "too large" (112), as data over
     * max_message_size is; the rest are malformed requests (107) */
    api_error(ans, status,
              status == 413 ? PROTO_E_TOO_LARGE : PROTO_E_BAD_REQUEST, message);
    conn_answer(c, status, NULL, NULL, &ans->body, 0);
}

/* What is not parsed yet must outlive the worker's read buffer. */
static void conn_keep_rest(api_conn *c)
{
    if (c->in == c->left)
        return;
    size_t n = c->in_len - c->in_off;
    char *rest = n ? mem_alloc(n) : NULL;
    if (n)
        memcpy(rest, c->in + c->in_off, n);
    free(c->left);
    c->left = rest;
    c->in = rest;
    c->in_len = n;
    c->in_off = 0;
}

/* "100 Continue": 0, or -1 after closing the connection. */
static int conn_continue(api_conn *c)
{
    size_t n = strlen(http1_continue_bytes);
    if (c->tls) {
        if (api_tls_write(c->tls, http1_continue_bytes, n) < 0) {
            conn_close(c);
            return -1;
        }
        conn_tls_flush(c);
        return c->closing ? -1 : 0;
    }
    uv_buf_t b = uv_buf_init((char *)http1_continue_bytes, (unsigned)n);
    if (uv_try_write((uv_stream_t *)&c->tcp, &b, 1) != (int)b.len) {
        conn_close(c);   /* 25 bytes a socket cannot take: gone */
        return -1;
    }
    return 0;
}

/* A path of the server API on the main port: /api/v1 and what is under
 * it, and /metrics. */
static int api_path(const char *path)
{
    return strcmp(path, "/metrics") == 0 || strcmp(path, "/api/v1") == 0 ||
           strncmp(path, "/api/v1/", 8) == 0;
}

/* req: a whole request, or the head of one whose body is not read
 * (keep_alive 0 then). */
static void conn_serve_site(api_conn *c, const http1_request *req,
                            int keep_alive)
{
    api_listen *a = c->owner;
    web_request wr = {
        .method = req->method == HTTP_GET    ? WEB_GET
                  : req->method == HTTP_HEAD ? WEB_HEAD
                                             : WEB_OTHER,
        .path = req->path.ptr,
        .path_len = req->path.len,
        .if_none_match = req->if_none_match.ptr,
        .if_modified_since = req->if_modified_since.ptr,
    };
    web_answer wa = { .body = &a->ans.body };
    web_site_serve(a->srv->site, &wr, &wa);
    c->site_req = 1;
    conn_answer_cached(c, wa.status, wa.content_type, wa.cache_control,
                       wa.headers[0] ? wa.headers : NULL, &a->ans.body,
                       keep_alive && !a->draining);
    /* the worker's scratch answer does not keep a large file's memory */
    conn_buf_empty(&a->ans.body);
}

/* With the static site, the main port's connections come here for every
 * request but a WebSocket handshake (net/sniff.c), and a browser keeps
 * them alive for the next requests: /healthz and /ws are answered as lws
 * answers them on a connection of its own, the API's paths go to the API
 * when it is on this port (0: api_route answers), everything else is the
 * site's. 1 when the request was answered here. */
static int conn_main_port(api_conn *c, const http1_request *req)
{
    api_listen *a = c->owner;
    const char *path = req->path.ptr;
    if (api_path(path)) {
        if (!a->srv->cfg->api_listen.host[0])
            return 0;
        api_error(&a->ans, 404, PROTO_E_BAD_REQUEST,
                  "the server API is served on api_listen");
        conn_answer(c, 404, NULL, NULL, &a->ans.body,
                    req->keep_alive && !a->draining);
        return 1;
    }
    if (strcmp(path, "/healthz") == 0) {
        char body[HEALTH_BODY_MAX];
        int status = health_render(a->srv, a->draining, body);
        proto_buf_reset(&a->ans.body);
        proto_buf_append(&a->ans.body, body, strlen(body));
        c->site_req = 1;
        conn_answer(c, status, NULL, NULL, &a->ans.body,
                    req->keep_alive && !a->draining);
        return 1;
    }
    if (strcmp(path, "/ws") == 0) {
        api_error(&a->ans, 426, PROTO_E_BAD_REQUEST,
                  "WebSocket upgrade required");
        c->site_req = 1;
        conn_answer(c, 426, NULL, "Upgrade: websocket\r\n", &a->ans.body, 0);
        return 1;
    }
    conn_serve_site(c, req, req->keep_alive);
    return 1;
}

/* Parses what is buffered: answers a whole request, tells 100-continue,
 * refuses malformed input; reads on when it needs more. */
static void conn_process(api_conn *c)
{
    api_listen *a = c->owner;
    for (;;) {
        size_t avail = c->in_len - c->in_off, used = 0;
        if (avail && !c->request_since_ms)
            c->request_since_ms = uv_now(a->loop);
        http1_status st = http1_feed(&c->http, c->in + c->in_off, avail,
                                     &used);
        c->in_off += used;
        if (st == HTTP1_CONTINUE) {
            const http1_request *head = http1_head_get(&c->http);
            if (c->main_port && a->srv->site && !api_path(head->path.ptr)) {
                /* a body for the site (any method but GET and HEAD): the
                 * answer is 405, without it */
                uv_read_stop((uv_stream_t *)&c->tcp);
                c->reading = 0;
                c->in_len = c->in_off = 0;
                c->busy = 1;
                conn_serve_site(c, head, 0);
                return;
            }
            if (api_expect(a->srv, http1_head_get(&c->http), &a->ans) < 0) {
                /* the client has not sent the body: answer and close */
                uv_read_stop((uv_stream_t *)&c->tcp);
                c->reading = 0;
                c->in_len = c->in_off = 0;
                conn_answer(c, a->ans.status, NULL,
                            a->ans.extra[0] ? a->ans.extra : NULL,
                            &a->ans.body, 0);
                return;
            }
            if (conn_continue(c) < 0)
                return;
            continue;
        }
        if (st == HTTP1_ERROR) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
            c->in_len = c->in_off = 0;     /* nothing more is taken */
            conn_refuse(c, http1_error_status(&c->http),
                        http1_reason(http1_error_status(&c->http)));
            return;
        }
        if (st == HTTP1_REQUEST) {
            /* one at a time: what follows waits (conn_read) */
            c->busy = 1;
            conn_keep_rest(c);
            const http1_request *req = http1_request_get(&c->http);
            if (c->main_port && a->srv->site && conn_main_port(c, req))
                return;
            route to = { .worker = a->worker, .api = 1, .slot = c->slot,
                         .gen = c->gen, .cmd_id = c->call };
            if (api_route(a->srv, a->broker, req, uv_now(a->loop), &to,
                          &a->ans, &c->pending)) {
                c->waiting_since_ms = uv_now(a->loop);
                return;       /* api_listen_receive answers */
            }
            conn_answer(c, a->ans.status, a->ans.content_type,
                        a->ans.extra[0] ? a->ans.extra : NULL, &a->ans.body,
                        req->keep_alive && !a->draining);
            return;
        }
        break;                   /* HTTP1_AGAIN: everything taken */
    }
    /* all buffered input parsed (http1 keeps what it needs): drop it */
    c->in = NULL;
    c->in_len = c->in_off = 0;
    free(c->left);
    c->left = NULL;
    if (c->peer_done) {
        conn_close(c);        /* nothing more will come */
        return;
    }
    conn_read_start(c);
}

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    api_conn *c = h->data;
    (void)hint;
    /* reading only resumes once everything read before was parsed, so the
     * worker's one buffer serves every connection */
    *buf = uv_buf_init(c->owner->rbuf, sizeof(c->owner->rbuf));
}

/* Bytes that came while a request is in progress: kept after what is
 * left, and reading stops until its answer is written. */
static void conn_read_busy(api_conn *c, const char *p, size_t n)
{
    size_t rest = c->in ? c->in_len - c->in_off : 0;
    char *m = mem_alloc(rest + n);
    if (rest)
        memcpy(m, c->in + c->in_off, rest);
    memcpy(m + rest, p, n);
    free(c->left);
    c->left = m;
    c->in = m;
    c->in_len = rest + n;
    c->in_off = 0;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

/* Bytes the client sent (p: a worker buffer, valid during the call). */
static void conn_input(api_conn *c, const char *p, size_t n)
{
    if (c->busy) {
        conn_read_busy(c, p, n);
        return;
    }
    c->in = p;
    c->in_len = n;
    c->in_off = 0;
    conn_process(c);
    /* a write that failed at once, or the close, may leave the shared
     * buffer's bytes behind: never keep a pointer to it */
    if (c->in && c->in != c->left) {
        c->in = NULL;
        c->in_len = c->in_off = 0;
    }
}

/* The client ended its side: with a request in progress it still gets
 * the answer; otherwise the connection closes. */
static void conn_peer_done(api_conn *c)
{
    if (c->busy) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
        c->peer_done = 1;
        return;
    }
    conn_close(c);
}

/* A read's ciphertext: all of it is decrypted now (nothing is left in
 * the read buffer for later), each piece handled as a plain read. */
static void conn_read_tls(api_conn *c, const char *p, size_t n)
{
    api_listen *a = c->owner;
    api_tls_input(c->tls, p, n);
    for (;;) {
        int got = api_tls_read(c->tls, a->pbuf, API_READ_SIZE);
        if (got > 0) {
            conn_input(c, a->pbuf, (size_t)got);
            if (c->closing)
                break;
            continue;
        }
        conn_tls_flush(c);    /* the handshake's answer, or an alert */
        if (got == API_TLS_CLOSED)
            conn_peer_done(c);
        else if (got == API_TLS_ERROR)
            conn_close(c);
        break;
    }
    api_tls_input(c->tls, NULL, 0);
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    api_conn *c = s->data;
    if (n < 0) {
        if (n == UV_EOF)
            conn_peer_done(c);   /* a request in progress is answered */
        else
            conn_close(c);       /* an error: nothing to answer */
        return;
    }
    if (n == 0)
        return;
    if (c->tls)
        conn_read_tls(c, buf->base, (size_t)n);
    else
        conn_input(c, buf->base, (size_t)n);
}

static void conn_read_start(api_conn *c)
{
    if (c->reading || c->closing || c->writing)
        return;
    c->reading = 1;
    if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) < 0)
        conn_close(c);
}

api_listen *api_listen_new(server *srv, uint16_t worker, uv_loop_t *loop,
                           struct broker *b)
{
    api_listen *a = mem_calloc(1, sizeof(*a));
    a->srv = srv;
    a->broker = b;
    a->worker = worker;
    a->loop = loop;
    a->m = metrics_of(srv->metrics, worker);
    a->lim.max_head = 8192;
    a->lim.max_body = srv->cfg->api_max_body;
    proto_buf_init(&a->ans.body, 0);
    if (srv->api_tls)
        a->pbuf = mem_alloc(API_READ_SIZE);
    return a;
}

/* Over max_connections (WebSocket and API together): 503 and the close,
 * before anything is allocated for the connection. */
static void api_listen_refuse(int fd)
{
    static const char body[] =
        "{\"error\":{\"code\":108,\"message\":\"connection limit reached\"}}";
    char answer[256];
    int len = snprintf(answer, sizeof(answer),
                       "HTTP/1.1 503 Service Unavailable\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: %zu\r\nRetry-After: 1\r\n"
                       "Connection: close\r\n\r\n%s",
                       sizeof(body) - 1, body);
    ssize_t w = send(fd, answer, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w;
    close(fd);
}

static int api_listen_take(api_listen *a, int fd, void *ticket, int tls,
                           int main_port)
{
    if (a->draining) {
        close(fd);
        return -1;
    }
    unsigned total = atomic_fetch_add(&a->srv->api_connections, 1) + 1 +
                     atomic_load(&a->srv->connections);
    if (total > a->srv->max_connections) {
        atomic_fetch_sub(&a->srv->api_connections, 1);
        metrics_api_request(a->m, NULL, 503);
        if (tls)
            close(fd);        /* no plaintext answer to a TLS client */
        else
            api_listen_refuse(fd);
        admit_release(a->srv->admit, ticket);
        return 0;
    }
    api_conn *c = mem_calloc(1, sizeof(*c));
    c->owner = a;
    c->ticket = ticket;
    c->main_port = (uint8_t)main_port;
    uv_tcp_init(a->loop, &c->tcp);
    c->tcp.data = c;
    if (!a->n_free) {
        uint32_t n = a->n_slots ? 2 * a->n_slots : 64;
        a->slots = mem_realloc_array(a->slots, n, sizeof(*a->slots));
        a->free_slots = mem_realloc_array(a->free_slots, n,
                                          sizeof(*a->free_slots));
        for (uint32_t i = n; i-- > a->n_slots;) {
            a->slots[i].c = NULL;
            a->slots[i].gen = 0;
            a->free_slots[a->n_free++] = i;
        }
        a->n_slots = n;
    }
    c->slot = a->free_slots[--a->n_free];
    c->gen = a->slots[c->slot].gen;
    a->slots[c->slot].c = c;
    http1_init(&c->http, &a->lim);
    proto_buf_init(&c->out, 0);
    proto_buf_init(&c->tls_out, 0);
    if (tls)
        c->tls = api_tls_new(a->srv->api_tls, &c->tls_out);
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    a->count++;
    if (uv_tcp_open(&c->tcp, fd) < 0) {
        close(fd);
        c->ticket = NULL;        /* the listener gives it back */
        conn_close(c);           /* counts the connection out */
        return -1;
    }
    c->idle_since_ms = c->opened_ms = uv_now(a->loop);
    conn_read_start(c);
    return 0;
}

int api_listen_adopt(void *arg, int fd, void *ticket)
{
    return api_listen_take(arg, fd, ticket, 0, 1);
}

int api_listen_adopt_tls(void *arg, int fd, void *ticket)
{
    api_listen *a = arg;
    return api_listen_take(a, fd, ticket, a->srv->api_tls != NULL, 0);
}

/* The connection whose call a reply is for, or NULL (closed, timed out,
 * answered). */
static api_conn *call_of(api_listen *a, const route *r)
{
    api_conn *c = r->slot < a->n_slots && a->slots[r->slot].gen == r->gen
                      ? a->slots[r->slot].c
                      : NULL;
    if (c && !c->closing && c->waiting_since_ms && r->cmd_id == c->call)
        return c;
    return NULL;
}

static void call_done(api_listen *a, api_conn *c)
{
    api_call_answer(c->pending, &a->ans, 0);
    const http1_request *req = http1_request_get(&c->http);
    conn_answer(c, a->ans.status, a->ans.content_type,
                a->ans.extra[0] ? a->ans.extra : NULL, &a->ans.body,
                req && req->keep_alive && !a->draining);
}

void api_listen_receive(api_listen *a, msg *m)
{
    api_conn *c = call_of(a, requests_route(m));
    if (c && api_call_take(c->pending, m))
        call_done(a, c);
    requests_free(m);
}

void api_listen_answered(api_listen *a, const char *body, size_t len)
{
    route r;
    json_t *doc = api_call_answer_parse(body, len, a->worker, &r);
    if (!doc)
        return;
    api_conn *c = call_of(a, &r);
    if (c && api_call_take_answer(c->pending, doc))
        call_done(a, c);
    json_decref(doc);
}

void api_listen_sent(api_listen *a, const route *to, long receivers)
{
    api_conn *c = call_of(a, to);
    if (c && api_call_sent(c->pending, receivers))
        call_done(a, c);
}

void api_listen_tick(api_listen *a, uint64_t now_ms)
{
    uint64_t deadline = (uint64_t)a->srv->cfg->handshake_timeout * 1000;
    uint64_t answer_ms = a->srv->cfg->api_timeout_ms;
    for (api_conn *c = a->conns, *next; c; c = next) {
        next = c->next;
        if (c->closing)
            continue;
        if (c->tls && !api_tls_ready(c->tls)) {
            /* a handshake that takes too long (slowloris, or a client
             * waiting for a certificate it will not get) */
            if (now_ms - c->opened_ms > deadline)
                conn_close(c);
            continue;
        }
        if (c->writing) {
            /* a client that does not read its answers (a pipelining
             * one, say) would hold the connection for ever */
            size_t left = uv_stream_get_write_queue_size(
                (uv_stream_t *)&c->tcp);
            if (left < c->write_left) {
                c->write_left = left;
                c->write_moved_ms = now_ms;
            } else if (now_ms - c->write_moved_ms > deadline) {
                conn_close(c);
            }
            continue;
        }
        if (c->waiting_since_ms) {
            if (now_ms - c->waiting_since_ms > answer_ms) {
                api_call_answer(c->pending, &a->ans, 1);
                conn_answer(c, a->ans.status, NULL, NULL, &a->ans.body, 0);
            }
            continue;
        }
        if (c->request_since_ms && now_ms - c->request_since_ms > deadline) {
            /* a head or body that takes too long (slowloris) */
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
            conn_refuse(c, 408, "request not received in time");
        } else if (!c->request_since_ms &&
                   now_ms - c->idle_since_ms > API_IDLE_MS) {
            conn_close(c);
        }
    }
}

void api_listen_drain(api_listen *a)
{
    a->draining = 1;
    for (api_conn *c = a->conns, *next; c; c = next) {
        next = c->next;
        if (!c->writing && !c->request_since_ms && !c->waiting_since_ms)
            conn_close(c);
    }
}

uint32_t api_listen_count(const api_listen *a)
{
    return a->count;
}

void api_listen_stop(api_listen *a)
{
    for (api_conn *c = a->conns; c; c = c->next)
        conn_close(c);
}

void api_listen_free(api_listen *a)
{
    if (!a)
        return;
    proto_buf_free(&a->ans.body);
    free(a->pbuf);
    free(a->slots);
    free(a->free_slots);
    free(a);
}
