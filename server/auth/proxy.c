/*
 * Proxy calls (proxy.h): one thread, one libcurl multi handle, a bounded
 * queue under a mutex. Workers only queue and wake the thread.
 */
#include "auth/proxy.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <utlist.h>

#include "base/httpc.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/server.h"

/* The largest answer body read from a backend. */
#define PROXY_MAX_ANSWER (64 * 1024)
#define PROXY_MAX_USER 255
#define PROXY_MAX_INFO 4096
#define PROXY_MAX_CHANNELS 64
#define PROXY_MAX_CHANNEL 255

typedef struct pcall {
    struct pcall *next;          /* in the queue */
    struct pcall *prev, *fnext;  /* in flight (utlist DL, fnext/prev) */
    uint8_t op;
    uint16_t worker;
    uint32_t slot, gen, cmd_id;
    char *body;
    CURL *h;
    struct curl_slist *hdrs;
    char *resp;
    size_t resp_len;
    int over;
} pcall;

struct proxy {
    const config *cfg;
    struct server *srv;
    uint8_t msg_type;
    const char *url[PROXY_N_OPS];

    pthread_mutex_t mu;
    pcall *head, *tail;          /* queued, not yet handed to curl */
    pcall *flight;               /* handed to curl (the thread's own) */
    uint32_t pending;            /* queued + in flight */
    int stop;

    CURLM *multi;
    pthread_t thread;
    int thread_on;
};

static const char *const op_names[PROXY_N_OPS] = {
    "connect", "subscribe", "publish", "refresh",
};

int proxy_has(const proxy *p, enum proxy_op op)
{
    return p && p->url[op] && p->url[op][0];
}

/* --- answers --------------------------------------------------------------- */

static proxy_answer *answer_new(size_t extra)
{
    proxy_answer *a = mem_calloc(1, sizeof(*a) + extra);
    a->hdr.to = MSG_TO_CONNS;
    return a;
}

static proxy_answer *answer_failed(enum proxy_op op, const char *why)
{
    proxy_answer *a = answer_new(0);
    a->op = (uint8_t)op;
    a->outcome = PROXY_FAILED;
    snprintf(a->message, sizeof(a->message), "%s", why);
    return a;
}

static int str_ok(json_t *v, size_t max, int allow_empty)
{
    if (!json_is_string(v))
        return 0;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > max || strlen(s) != n || (!allow_empty && n == 0))
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* result {"user", "expire_at", "info", "channels"} (connect), or
 * {"expire_at"} (subscribe, refresh), or {} (publish). */
static proxy_answer *answer_result(enum proxy_op op, json_t *r)
{
    json_t *user = json_object_get(r, "user");
    json_t *exp = json_object_get(r, "expire_at");
    json_t *info = json_object_get(r, "info");
    json_t *chans = json_object_get(r, "channels");
    if (user && (op != PROXY_CONNECT || !str_ok(user, PROXY_MAX_USER, 1)))
        return answer_failed(op, "result.user is not a user id");
    if (exp && (!json_is_integer(exp) || json_integer_value(exp) < 0))
        return answer_failed(op, "result.expire_at is not unix seconds");
    if (info && (op != PROXY_CONNECT || !json_is_object(info)))
        return answer_failed(op, "result.info is not an object");
    if (chans && (op != PROXY_CONNECT || !json_is_array(chans) ||
                  json_array_size(chans) > PROXY_MAX_CHANNELS))
        return answer_failed(op, "result.channels is not a list of channels");
    char *info_s = info ? json_dumps(info, JSON_COMPACT) : NULL;
    if (info && (!info_s || strlen(info_s) > PROXY_MAX_INFO)) {
        free(info_s);
        return answer_failed(op, "result.info is over 4096 bytes");
    }
    size_t n = chans ? json_array_size(chans) : 0, extra = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(chans, i);
        if (!str_ok(c, PROXY_MAX_CHANNEL, 0)) {
            free(info_s);
            return answer_failed(op, "result.channels is not a list of channels");
        }
        extra += json_string_length(c) + 1;
    }
    extra += n * sizeof(char *) + sizeof(char *);
    if (user)
        extra += json_string_length(user) + 1;
    if (info_s)
        extra += strlen(info_s) + 1;
    proxy_answer *a = answer_new(extra);
    a->op = (uint8_t)op;
    a->outcome = PROXY_ALLOW;
    a->expire_at = exp ? json_integer_value(exp) : 0;
    /* pointers first (aligned), then the strings */
    const char **v = (const char **)(void *)a->data;
    char *s = a->data + (n + 1) * sizeof(char *);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(chans, i);
        size_t l = json_string_length(c);
        memcpy(s, json_string_value(c), l + 1);
        v[i] = s;
        s += l + 1;
    }
    a->channels = n ? v : NULL;
    a->n_channels = (uint32_t)n;
    if (user && json_string_length(user)) {
        size_t l = json_string_length(user);
        memcpy(s, json_string_value(user), l + 1);
        a->user = s;
        s += l + 1;
    }
    if (info_s) {
        size_t l = strlen(info_s);
        memcpy(s, info_s, l + 1);
        a->info = s;
        free(info_s);
    }
    return a;
}

proxy_answer *proxy_parse(enum proxy_op op, const char *body, size_t len)
{
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return answer_failed(op, "answer is not a JSON object");
    }
    proxy_answer *a;
    json_t *r = json_object_get(doc, "result");
    json_t *e = json_object_get(doc, "error");
    if (json_is_object(r) && !e) {
        a = answer_result(op, r);
    } else if (json_is_object(e) && !r) {
        json_t *code = json_object_get(e, "code");
        json_t *m = json_object_get(e, "message");
        a = answer_new(0);
        a->op = (uint8_t)op;
        a->outcome = PROXY_DENY;
        /* The client sees one of the protocol's codes: anything else a
         * backend says is "permission denied". */
        int c = json_is_integer(code) ? (int)json_integer_value(code) : 0;
        a->code = c >= 100 && c <= 112 ? c : 103;
        snprintf(a->message, sizeof(a->message), "%s",
                 json_is_string(m) ? json_string_value(m) : "denied");
    } else {
        a = answer_failed(op, "answer has neither result nor error");
    }
    json_decref(doc);
    return a;
}

/* --- the thread ------------------------------------------------------------- */

static size_t pcall_write(char *d, size_t size, size_t nmemb, void *arg)
{
    pcall *c = arg;
    size_t n = size * nmemb;
    if (c->resp_len + n > PROXY_MAX_ANSWER) {
        c->over = 1;
        return 0;
    }
    c->resp = mem_realloc(c->resp, c->resp_len + n + 1);
    memcpy(c->resp + c->resp_len, d, n);
    c->resp_len += n;
    c->resp[c->resp_len] = '\0';
    return n;
}

static void pcall_free(pcall *c)
{
    curl_slist_free_all(c->hdrs);
    if (c->h)
        curl_easy_cleanup(c->h);
    free(c->body);
    free(c->resp);
    free(c);
}

static void pcall_start(proxy *p, pcall *c)
{
    c->h = curl_easy_init();
    if (!c->h)
        return;
    c->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    httpc_setup(c->h, p->url[c->op], p->cfg->proxy_timeout_ms);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, pcall_write);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
    curl_multi_add_handle(p->multi, c->h);
    DL_APPEND2(p->flight, c, prev, fnext);
}

static void pcall_done(proxy *p, pcall *c, CURLcode rc)
{
    long status = 0;
    if (c->h)
        curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    proxy_answer *a;
    char why[128];
    if (!c->h) {
        a = answer_failed(c->op, "libcurl: no handle");
    } else if (c->over) {
        a = answer_failed(c->op, "answer over 64 KiB");
    } else if (rc != CURLE_OK) {
        snprintf(why, sizeof(why), "%s", curl_easy_strerror(rc));
        a = answer_failed(c->op, why);
    } else if (status < 200 || status > 299) {
        snprintf(why, sizeof(why), "HTTP status %ld", status);
        a = answer_failed(c->op, why);
    } else {
        a = proxy_parse(c->op, c->resp ? c->resp : "", c->resp_len);
    }
    if (a->outcome == PROXY_FAILED)
        log_warn("proxy call failed", LOG_STR("op", op_names[c->op]),
                 LOG_STR("error", a->message));
    a->hdr.type = p->msg_type;
    a->worker = c->worker;
    a->slot = c->slot;
    a->gen = c->gen;
    a->cmd_id = c->cmd_id;
    server_post(p->srv, c->worker, &a->hdr);
    if (c->h) {
        curl_multi_remove_handle(p->multi, c->h);
        DL_DELETE2(p->flight, c, prev, fnext);
    }
    pcall_free(c);
    pthread_mutex_lock(&p->mu);
    p->pending--;
    pthread_mutex_unlock(&p->mu);
}

static void *proxy_thread(void *arg)
{
    proxy *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        pcall *q = p->head;
        p->head = p->tail = NULL;
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        while (q) {
            pcall *next = q->next;
            q->next = NULL;
            if (stop) {
                pcall_free(q);
            } else {
                pcall_start(p, q);
                if (!q->h)
                    pcall_done(p, q, CURLE_FAILED_INIT);
            }
            q = next;
        }
        if (stop)
            break;
        int running = 0, left;
        curl_multi_perform(p->multi, &running);
        CURLMsg *m;
        while ((m = curl_multi_info_read(p->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            pcall *c = NULL;
            CURLcode rc = m->data.result;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            pcall_done(p, c, rc);
        }
        curl_multi_poll(p->multi, NULL, 0, 1000, NULL);
    }
    /* In flight at the stop: their connections are closing with the
     * server; nothing is answered. */
    pcall *c, *tmp;
    DL_FOREACH_SAFE2(p->flight, c, tmp, fnext) {
        DL_DELETE2(p->flight, c, prev, fnext);
        curl_multi_remove_handle(p->multi, c->h);
        pcall_free(c);
    }
    return NULL;
}

proxy *proxy_start(const config *cfg, struct server *srv, uint8_t msg_type,
                   char *err, size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    const char *urls[PROXY_N_OPS] = {
        cfg->proxy_connect_url, cfg->proxy_subscribe_url,
        cfg->proxy_publish_url, cfg->proxy_refresh_url,
    };
    int any = 0;
    for (int i = 0; i < PROXY_N_OPS; i++)
        any |= urls[i][0] != '\0';
    if (!any)
        return NULL;
    proxy *p = mem_calloc(1, sizeof(*p));
    p->cfg = cfg;
    p->srv = srv;
    p->msg_type = msg_type;
    for (int i = 0; i < PROXY_N_OPS; i++)
        p->url[i] = urls[i][0] ? urls[i] : NULL;
    pthread_mutex_init(&p->mu, NULL);
    p->multi = curl_multi_init();
    int rc = p->multi ? pthread_create(&p->thread, NULL, proxy_thread, p) : -1;
    if (rc != 0) {
        snprintf(err, errlen, "herald: proxy: cannot start its thread\n");
        if (p->multi)
            curl_multi_cleanup(p->multi);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    p->thread_on = 1;
    return p;
}

void proxy_stop(proxy *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    curl_multi_wakeup(p->multi);
    pthread_join(p->thread, NULL);
    for (pcall *c = p->head, *n; c; c = n) {
        n = c->next;
        pcall_free(c);
    }
    curl_multi_cleanup(p->multi);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int proxy_call(proxy *p, enum proxy_op op, uint16_t worker, uint32_t slot,
               uint32_t gen, uint32_t cmd_id, const char *body, size_t len)
{
    pthread_mutex_lock(&p->mu);
    if (p->stop || p->pending >= p->cfg->proxy_max_pending) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    p->pending++;
    pthread_mutex_unlock(&p->mu);
    pcall *c = mem_calloc(1, sizeof(*c));
    c->op = (uint8_t)op;
    c->worker = worker;
    c->slot = slot;
    c->gen = gen;
    c->cmd_id = cmd_id;
    c->body = mem_alloc(len + 1);
    memcpy(c->body, body, len);
    c->body[len] = '\0';
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    pthread_mutex_unlock(&p->mu);
    curl_multi_wakeup(p->multi);
    return 0;
}
