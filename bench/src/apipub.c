/*
 * HTTP API publishers (apipub.h): libcurl's multi interface on a libuv
 * loop. curl asks, through its socket callback, for each socket to be
 * watched for reading and/or writing (a uv_poll_t per socket, attached to
 * the socket with curl_multi_assign) and, through its timer callback, to
 * be called back after a delay (one uv_timer_t); each event is handed to
 * curl_multi_socket_action, and finished transfers are collected with
 * curl_multi_info_read. An easy handle is removed from the multi handle
 * when its transfer is done and added again for the next request: its
 * connection stays in the multi handle's pool (keep-alive) and the next
 * request of any publisher takes an idle one.
 *
 * Why libcurl and not a hand-written client: it is the HTTP client a
 * backend in C would use, and bench/README.md gives its cost (the bench's
 * CPU per request is in every report).
 */
#include "apipub.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <utlist.h>

/* The start of an answer kept for the failure reason and the "error"
 * check; the rest is read and dropped. */
#define APIPUB_RESP_KEEP 512

typedef struct apipoll {
    uv_poll_t poll;
    curl_socket_t fd;
    apipub_ctx *ctx;
    struct apipoll *prev, *next;   /* ctx->polls (utlist) */
} apipoll;

struct apipub {
    apipub_ctx *ctx;
    CURL *easy;
    void *user;
    apipub_cb cb;                  /* the request in flight's, else NULL */
    void *arg;
    char *body;                    /* request body (curl does not copy it) */
    size_t body_cap;
    char resp[APIPUB_RESP_KEEP];
    size_t resp_len;
    char err[CURL_ERROR_SIZE];
};

struct apipub_ctx {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct curl_slist *headers;
    char *url;
    apipoll *polls;
    apipub **pubs;                 /* every publisher, for close and free */
    size_t n_pubs, cap_pubs;
    int closing;
};

/* Out of memory aborts, as everywhere in the bench. */
static void *ap_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "herald-bench: out of memory\n");
        abort();
    }
    return q;
}

int apipub_global_init(void)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        fprintf(stderr, "herald-bench: curl_global_init: %s\n",
                curl_easy_strerror(rc));
        return -1;
    }
    return 0;
}

void apipub_global_cleanup(void)
{
    curl_global_cleanup();
}

const char *apipub_client_version(void)
{
    return curl_version();
}

/* ---- the loop side: sockets and the timer ---- */

static void ap_poll_free(uv_handle_t *h)
{
    free(h->data);
}

static void ap_poll_close(apipoll *sp)
{
    uv_poll_stop(&sp->poll);
    DL_DELETE(sp->ctx->polls, sp);
    uv_close((uv_handle_t *)&sp->poll, ap_poll_free);
}

/* Transfers curl has finished: each publisher's answer. The easy handle
 * leaves the multi handle before its callback, so that the callback may
 * publish again at once. */
static void ap_check_done(apipub_ctx *ctx)
{
    CURLMsg *m;
    int left;
    while (!ctx->closing && (m = curl_multi_info_read(ctx->multi, &left))) {
        CURL *e;
        CURLcode result;
        char *priv = NULL, why[256];
        long status = 0;
        apipub *p;
        apipub_cb cb;
        int ok = 0;

        if (m->msg != CURLMSG_DONE)
            continue;
        /* m does not survive curl_multi_remove_handle. */
        e = m->easy_handle;
        result = m->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        p = (apipub *)priv;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(ctx->multi, e);
        p->resp[p->resp_len] = '\0';
        if (result != CURLE_OK)
            snprintf(why, sizeof why, "%s", p->err[0] ? p->err
                                            : curl_easy_strerror(result));
        else if (status != 200)
            snprintf(why, sizeof why, "HTTP %ld: %.200s", status, p->resp);
        else if (strstr(p->resp, "\"error\""))
            snprintf(why, sizeof why, "%.240s", p->resp);
        else
            ok = 1;
        cb = p->cb;
        p->cb = NULL;
        if (cb)
            cb(p, ok, ok ? NULL : why, p->arg);
    }
}

static void ap_on_poll(uv_poll_t *h, int status, int events)
{
    apipoll *sp = h->data;
    apipub_ctx *ctx = sp->ctx;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else
        flags = (events & UV_READABLE ? CURL_CSELECT_IN : 0) |
                (events & UV_WRITABLE ? CURL_CSELECT_OUT : 0);
    /* May close sp (CURL_POLL_REMOVE): its memory lives until the close
     * callback, but nothing of it is used after this. */
    curl_multi_socket_action(ctx->multi, sp->fd, flags, &running);
    ap_check_done(ctx);
}

static void ap_on_timeout(uv_timer_t *t)
{
    apipub_ctx *ctx = t->data;
    int running;
    curl_multi_socket_action(ctx->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    ap_check_done(ctx);
}

/* curl's socket callback: what to watch on socket s. */
static int ap_on_socket(CURL *e, curl_socket_t s, int what, void *userp,
                        void *socketp)
{
    apipub_ctx *ctx = userp;
    apipoll *sp = socketp;
    int events;
    (void)e;

    if (what == CURL_POLL_REMOVE || ctx->closing) {
        if (sp) {
            curl_multi_assign(ctx->multi, s, NULL);
            ap_poll_close(sp);
        }
        return 0;
    }
    if (!sp) {
        sp = ap_xrealloc(NULL, sizeof(*sp));
        memset(sp, 0, sizeof(*sp));
        sp->fd = s;
        sp->ctx = ctx;
        if (uv_poll_init_socket(ctx->loop, &sp->poll, s) != 0) {
            free(sp);
            return -1;
        }
        sp->poll.data = sp;
        DL_APPEND(ctx->polls, sp);
        curl_multi_assign(ctx->multi, s, sp);
    }
    events = (what & CURL_POLL_IN ? UV_READABLE : 0) |
             (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&sp->poll, events, ap_on_poll);
    return 0;
}

/* curl's timer callback: call socket_action(TIMEOUT) after timeout_ms (-1:
 * never). Not from here: curl forbids it inside its own callbacks, so a
 * 0 ms timer runs it on the next loop iteration. */
static int ap_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    apipub_ctx *ctx = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&ctx->timer);
    else if (!ctx->closing)
        uv_timer_start(&ctx->timer, ap_on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- the context ---- */

apipub_ctx *apipub_ctx_new(uv_loop_t *loop, const char *url, const char *auth,
                           unsigned max_conns, char *err, size_t errlen)
{
    apipub_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx || !(ctx->url = strdup(url)) || !(ctx->multi = curl_multi_init())) {
        snprintf(err, errlen, "cannot create a curl multi handle");
        if (ctx)
            free(ctx->url);
        free(ctx);
        return NULL;
    }
    ctx->loop = loop;
    /* No 100-continue round trip for bodies over 1 KiB, no Accept. */
    ctx->headers = curl_slist_append(NULL, "Content-Type: application/json");
    ctx->headers = curl_slist_append(ctx->headers, "Expect:");
    ctx->headers = curl_slist_append(ctx->headers, "Accept:");
    if (auth)
        ctx->headers = curl_slist_append(ctx->headers, auth);
    if (!ctx->headers)
        abort();
    uv_timer_init(loop, &ctx->timer);
    ctx->timer.data = ctx;
    curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETFUNCTION, ap_on_socket);
    curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETDATA, ctx);
    curl_multi_setopt(ctx->multi, CURLMOPT_TIMERFUNCTION, ap_on_timer);
    curl_multi_setopt(ctx->multi, CURLMOPT_TIMERDATA, ctx);
    /* Every publisher's idle connection stays in the pool (the default,
     * 4 x the handles added, shrinks while handles are out between two
     * requests). */
    curl_multi_setopt(ctx->multi, CURLMOPT_MAXCONNECTS,
                      (long)(max_conns ? max_conns : 1));
    return ctx;
}

void apipub_ctx_close(apipub_ctx *ctx)
{
    apipoll *sp, *tmp;
    ctx->closing = 1;
    for (size_t i = 0; i < ctx->n_pubs; i++) {
        apipub *p = ctx->pubs[i];
        if (p->cb)
            curl_multi_remove_handle(ctx->multi, p->easy);
        p->cb = NULL;
        curl_easy_cleanup(p->easy);
        p->easy = NULL;
    }
    /* The watches first: curl closes the sockets in curl_multi_cleanup. */
    DL_FOREACH_SAFE(ctx->polls, sp, tmp) {
        curl_multi_assign(ctx->multi, sp->fd, NULL);
        ap_poll_close(sp);
    }
    curl_multi_cleanup(ctx->multi);
    ctx->multi = NULL;
    uv_timer_stop(&ctx->timer);
    uv_close((uv_handle_t *)&ctx->timer, NULL);
}

void apipub_ctx_free(apipub_ctx *ctx)
{
    for (size_t i = 0; i < ctx->n_pubs; i++) {
        free(ctx->pubs[i]->body);
        free(ctx->pubs[i]);
    }
    free(ctx->pubs);
    curl_slist_free_all(ctx->headers);
    free(ctx->url);
    free(ctx);
}

/* ---- publishers ---- */

static size_t ap_on_write(char *data, size_t size, size_t n, void *userp)
{
    apipub *p = userp;
    size_t len = size * n, room = sizeof(p->resp) - 1 - p->resp_len;
    if (len < room)
        room = len;
    memcpy(p->resp + p->resp_len, data, room);
    p->resp_len += room;
    return len;
}

apipub *apipub_new(apipub_ctx *ctx, void *user)
{
    apipub *p;
    if (ctx->closing)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->easy = curl_easy_init())) {
        free(p);
        return NULL;
    }
    p->ctx = ctx;
    p->user = user;
    curl_easy_setopt(p->easy, CURLOPT_URL, ctx->url);
    curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, ctx->headers);
    curl_easy_setopt(p->easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(p->easy, CURLOPT_PRIVATE, (char *)p);
    curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, ap_on_write);
    curl_easy_setopt(p->easy, CURLOPT_WRITEDATA, p);
    curl_easy_setopt(p->easy, CURLOPT_ERRORBUFFER, p->err);
    curl_easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(p->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(p->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, 30000L);
    if (ctx->n_pubs == ctx->cap_pubs) {
        ctx->cap_pubs = ctx->cap_pubs ? 2 * ctx->cap_pubs : 16;
        ctx->pubs = ap_xrealloc(ctx->pubs, ctx->cap_pubs * sizeof(*ctx->pubs));
    }
    ctx->pubs[ctx->n_pubs++] = p;
    return p;
}

void *apipub_user(const apipub *p)
{
    return p->user;
}

/* Appends the JSON string literal of s at *o (room checked by the caller:
 * at most 6 bytes per byte of s, plus 2). */
static char *ap_json_string(char *o, const char *s)
{
    static const char hex[16] = "0123456789abcdef";
    *o++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *o++ = '\\';
            *o++ = (char)*c;
        } else if (*c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[*c >> 4];
            o[5] = hex[*c & 15];
            o += 6;
        } else {
            *o++ = (char)*c;
        }
    }
    *o++ = '"';
    return o;
}

int apipub_publish(apipub *p, const char *channel, const char *data,
                   size_t len, apipub_cb cb, void *arg)
{
    static const char k1[] = "{\"channel\":", k2[] = ",\"data\":";
    size_t need = sizeof(k1) + 6 * strlen(channel) + 2 + sizeof(k2) + len + 1;
    char *o;

    if (p->ctx->closing || p->cb || !cb || len > (1u << 24))
        return -1;
    if (need > p->body_cap) {
        p->body_cap = need;
        p->body = ap_xrealloc(p->body, need);
    }
    o = p->body;
    memcpy(o, k1, sizeof(k1) - 1);
    o = ap_json_string(o + sizeof(k1) - 1, channel);
    memcpy(o, k2, sizeof(k2) - 1);
    o += sizeof(k2) - 1;
    memcpy(o, data, len);
    o += len;
    *o++ = '}';
    curl_easy_setopt(p->easy, CURLOPT_POSTFIELDSIZE, (long)(o - p->body));
    curl_easy_setopt(p->easy, CURLOPT_POSTFIELDS, p->body);
    p->resp_len = 0;
    p->err[0] = '\0';
    p->cb = cb;
    p->arg = arg;
    if (curl_multi_add_handle(p->ctx->multi, p->easy) != CURLM_OK) {
        p->cb = NULL;
        return -1;
    }
    return 0;
}
