/*
 * The webhook queue and its sender thread (hooks.h).
 *
 * h->mu guards the incoming list, `queued` and `stop`; everything else
 * that changes (the endpoints' lanes, the curl handles) belongs to the
 * sender thread. The counters are atomics any thread reads.
 */
#define _GNU_SOURCE     /* pthread_setname_np: the thread's name in top, gdb */
#include "hooks/hooks.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "base/clock.h"
#include "base/httpc.h"
#include "base/log.h"
#include "base/mem.h"
#include "hooks/lane.h"

typedef struct hook_endpoint {
    const config_webhook *cfg;
    char url_log[256];          /* without credentials or query */
    hook_lane lanes[HOOK_LANES];
    CURL *easy[HOOK_LANES];     /* made on first use, reused (its
                                   connection stays in the multi's cache) */
    struct curl_slist *headers[HOOK_LANES];
} hook_endpoint;

struct hooks {
    const config *cfg;
    char node[64];
    uint32_t wants;             /* union of the endpoints' event bits */

    pthread_mutex_t mu;
    hook_body *in_head, *in_tail; /* emitted, not yet in lanes (mu) */
    uint32_t queued;            /* events alive: incoming or in lanes (mu) */
    int stop;                   /* (mu) */
    log_gate full_gate;         /* (mu) */

    atomic_ullong sent, failed, dropped[HOOKS_DROP_REASONS];
    atomic_uint queued_now;     /* `queued` for readers without mu */

    /* sender thread */
    CURLM *multi;
    uint32_t n_ep;
    hook_endpoint ep[CONFIG_WEBHOOKS_MAX];
    log_gate fail_gate, drop_gate;
    uint64_t rnd;
    pthread_t thread;
};

static const char *const drop_labels[HOOKS_DROP_REASONS] = {
    "queue_full", "attempts", "shutdown",
};

const char *hooks_drop_label(int reason)
{
    return reason >= 0 && reason < HOOKS_DROP_REASONS ? drop_labels[reason]
                                                      : "other";
}

/* xorshift64: jitter needs no quality, only spread. */
static uint64_t hooks_rand(hooks *h)
{
    uint64_t x = h->rnd;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return h->rnd = x;
}

/* scheme://host[:port]/path for logs: no user:password@, no query. */
static void hooks_url_for_log(const char *url, char *out, size_t n)
{
    const char *s = strstr(url, "://");
    const char *host = s ? s + 3 : url;
    const char *end = host + strcspn(host, "/?#");
    const char *at = memchr(host, '@', (size_t)(end - host));
    if (at)
        host = at + 1;
    size_t path = strcspn(end, "?#");
    int scheme = s ? (int)(s + 3 - url) : 0;
    snprintf(out, n, "%.*s%.*s%.*s", scheme, url, (int)(end - host), host,
             (int)path, end);
}

static void hooks_count(atomic_ullong *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* --- emitting (any thread) ------------------------------------------------ */

int hooks_wants(const hooks *h, int type)
{
    return h && type >= 0 && type < CONFIG_HOOK_EVENTS &&
           (h->wants & (1u << type));
}

void hooks_emit(hooks *h, const hook_event *ev)
{
    if (!hooks_wants(h, ev->type))
        return;
    /* Built before the lock (a dropped one was built for nothing, which
     * only happens while the backend is not keeping up): the lock covers
     * a count and two pointers. */
    char id[HOOK_ID_LEN + 1];
    hook_event_id(id);
    proto_buf b;
    proto_buf_init(&b, 0);
    hook_event_json(&b, ev, id, clock_wall_ms(), h->node);
    proto_slice key = hook_event_key(ev);
    hook_body *body = mem_alloc(sizeof(*body) + b.len + 1);
    body->refs = 0;
    body->type = ev->type;
    body->key_hash = hook_key_hash(key.ptr ? key.ptr : "", key.len);
    body->next = NULL;
    memcpy(body->id, id, sizeof(body->id));
    body->len = b.len;
    memcpy(body->json, proto_buf_data(&b), b.len);
    body->json[b.len] = '\0';
    proto_buf_free(&b);

    pthread_mutex_lock(&h->mu);
    if (h->queued >= h->cfg->webhook_queue_max || h->stop) {
        int log = log_gate_pass(&h->full_gate,
                                (uint64_t)(clock_mono_ms() / 1000), 1,
                                "webhook queue full: event dropped");
        pthread_mutex_unlock(&h->mu);
        free(body);
        hooks_count(&h->dropped[HOOKS_DROP_QUEUE_FULL], 1);
        if (log)
            log_warn("webhook queue full: event dropped",
                     LOG_STR("event", config_hook_event_name(ev->type)),
                     LOG_INT("webhook_queue_max",
                             h->cfg->webhook_queue_max));
        return;
    }
    h->queued++;
    atomic_store_explicit(&h->queued_now, h->queued, memory_order_relaxed);
    int was_empty = h->in_head == NULL;
    if (h->in_tail)
        h->in_tail->next = body;
    else
        h->in_head = body;
    h->in_tail = body;
    pthread_mutex_unlock(&h->mu);
    /* One wake-up per batch: the sender takes the whole list at once. */
    if (was_empty)
        curl_multi_wakeup(h->multi);
}

void hooks_emit_channel(hooks *h, int type, const char *chan, size_t len)
{
    if (!hooks_wants(h, type))
        return;
    hook_event ev = { .type = type, .channel = { chan, len } };
    hooks_emit(h, &ev);
}

/* --- the sender thread ---------------------------------------------------- */

/* A body no delivery holds any more leaves the queue. */
static void hooks_body_release(hooks *h, hook_body *b)
{
    if (b->refs > 0 && --b->refs > 0)
        return;
    free(b);
    pthread_mutex_lock(&h->mu);
    h->queued--;
    atomic_store_explicit(&h->queued_now, h->queued, memory_order_relaxed);
    pthread_mutex_unlock(&h->mu);
}

/* Moves the emitted events into the lanes of every endpoint that wants
 * them; returns 1 when stopping was asked. */
static int hooks_take_incoming(hooks *h)
{
    pthread_mutex_lock(&h->mu);
    hook_body *b = h->in_head;
    h->in_head = h->in_tail = NULL;
    int stop = h->stop;
    pthread_mutex_unlock(&h->mu);
    while (b) {
        hook_body *next = b->next;
        b->next = NULL;
        b->refs = 0;
        for (uint32_t e = 0; e < h->n_ep; e++)
            if (h->ep[e].cfg->events & (1u << b->type))
                b->refs++;
        if (b->refs == 0) {
            hooks_body_release(h, b);
        } else {
            uint32_t refs = b->refs;
            for (uint32_t e = 0; e < h->n_ep && refs; e++) {
                if (!(h->ep[e].cfg->events & (1u << b->type)))
                    continue;
                hook_item *it = mem_calloc(1, sizeof(*it));
                it->body = b;
                hook_lane_push(&h->ep[e].lanes[hook_lane_index(b->key_hash)],
                               it);
                refs--;
            }
        }
        b = next;
    }
    return stop;
}

static size_t hooks_discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;    /* the answer's body is not used */
}

/* Starts the POST of a lane's head. */
static void hooks_start_post(hooks *h, hook_endpoint *ep, uint32_t lane,
                             hook_item *it)
{
    CURL *c = ep->easy[lane];
    if (!c) {
        c = ep->easy[lane] = curl_easy_init();
        if (!c)
            abort();
        httpc_setup(c, ep->cfg->url, h->cfg->webhook_timeout_ms);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, hooks_discard);
        curl_easy_setopt(c, CURLOPT_PRIVATE, (void *)(uintptr_t)
                         ((uintptr_t)(ep - h->ep) * HOOK_LANES + lane));
    }
    /* The signature's time is the attempt's: a retry is signed anew, so
     * a receiver that rejects old timestamps accepts it. */
    char sig[HOOK_SIG_HEX + 128], idh[HOOK_ID_LEN + 32];
    hook_signature_header(sig, sizeof(sig), h->cfg->webhook_secret,
                          clock_wall_ms() / 1000, it->body->json,
                          it->body->len);
    snprintf(idh, sizeof(idh), "Herald-Event-Id: %s", it->body->id);
    struct curl_slist *hl = NULL;
    hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, idh);
    hl = curl_slist_append(hl, sig);
    hl = curl_slist_append(hl, "Expect:");
    if (!hl)
        abort();
    curl_slist_free_all(ep->headers[lane]);
    ep->headers[lane] = hl;
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)it->body->json);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)it->body->len);
    curl_multi_add_handle(h->multi, c);
}

/* Starts every lane whose head may go now; returns the earliest time a
 * lane waiting for its backoff is due (INT64_MAX: none). */
static int64_t hooks_start_ready(hooks *h, int64_t now)
{
    int64_t next = INT64_MAX;
    for (uint32_t e = 0; e < h->n_ep; e++) {
        hook_endpoint *ep = &h->ep[e];
        for (uint32_t l = 0; l < HOOK_LANES; l++) {
            hook_item *it = hook_lane_take(&ep->lanes[l], now);
            if (it) {
                hooks_start_post(h, ep, l, it);
                continue;
            }
            int64_t due = hook_lane_due(&ep->lanes[l]);
            if (due < next)
                next = due;
        }
    }
    return next;
}

static void hooks_on_done(hooks *h, CURL *c, CURLcode rc)
{
    void *priv = NULL;
    curl_easy_getinfo(c, CURLINFO_PRIVATE, &priv);
    uintptr_t k = (uintptr_t)priv;
    hook_endpoint *ep = &h->ep[k / HOOK_LANES];
    hook_lane *lane = &ep->lanes[k % HOOK_LANES];
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(h->multi, c);
    int ok = rc == CURLE_OK && status >= 200 && status < 300;
    int64_t now = clock_mono_ms();
    const char *event_id = lane->head ? lane->head->body->id : "";
    char id[HOOK_ID_LEN + 1];
    snprintf(id, sizeof(id), "%s", event_id);
    hook_item *done = NULL;
    enum hook_outcome out = hook_lane_result(lane, ok,
                                             h->cfg->webhook_max_attempts,
                                             now, hooks_rand(h), &done);
    uint64_t s = (uint64_t)(now / 1000);
    if (!ok) {
        hooks_count(&h->failed, 1);
        if (log_gate_pass(&h->fail_gate, s, 5, "webhook attempt failed"))
            log_info("webhook attempt failed", LOG_STR("url", ep->url_log),
                     LOG_STR("id", id), LOG_INT("status", status),
                     LOG_STR("error", rc == CURLE_OK ? "status"
                                                     : curl_easy_strerror(rc)),
                     LOG_INT("will_retry", out == HOOK_RETRY));
    }
    if (out == HOOK_DELIVERED) {
        hooks_count(&h->sent, 1);
    } else if (out == HOOK_GAVE_UP) {
        hooks_count(&h->dropped[HOOKS_DROP_ATTEMPTS], 1);
        if (log_gate_pass(&h->drop_gate, s, 5, "webhook event dropped"))
            log_warn("webhook event dropped", LOG_STR("url", ep->url_log),
                     LOG_STR("id", id),
                     LOG_INT("attempts", h->cfg->webhook_max_attempts));
    }
    if (done) {
        hooks_body_release(h, done->body);
        free(done);
    }
}

/* Handles finished POSTs; returns how many. */
static int hooks_collect(hooks *h)
{
    int n = 0, left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        hooks_on_done(h, m->easy_handle, m->data.result);
        n++;
    }
    return n;
}

static int hooks_pending(const hooks *h)
{
    for (uint32_t e = 0; e < h->n_ep; e++)
        for (uint32_t l = 0; l < HOOK_LANES; l++)
            if (h->ep[e].lanes[l].head)
                return 1;
    return 0;
}

/* Shutdown: whatever is still queued is dropped, counted and logged. */
static void hooks_drop_rest(hooks *h)
{
    uint64_t n = 0;
    for (uint32_t e = 0; e < h->n_ep; e++) {
        hook_endpoint *ep = &h->ep[e];
        for (uint32_t l = 0; l < HOOK_LANES; l++) {
            if (ep->lanes[l].busy && ep->easy[l])
                curl_multi_remove_handle(h->multi, ep->easy[l]);
            hook_item *it;
            while ((it = hook_lane_pop(&ep->lanes[l]))) {
                hooks_body_release(h, it->body);
                free(it);
                n++;
            }
        }
    }
    if (n) {
        hooks_count(&h->dropped[HOOKS_DROP_SHUTDOWN], n);
        log_warn("webhook events dropped at shutdown",
                 LOG_INT("deliveries", (long long)n),
                 LOG_INT("webhook_drain_ms", h->cfg->webhook_drain_ms));
    }
}

static void *hooks_thread(void *arg)
{
    hooks *h = arg;
    int64_t deadline = 0;
    pthread_setname_np(pthread_self(), "herald-hooks");
    for (;;) {
        int stop = hooks_take_incoming(h);
        int64_t now = clock_mono_ms();
        if (stop && !deadline)
            deadline = now + h->cfg->webhook_drain_ms;
        if (stop && (now >= deadline || !hooks_pending(h)))
            break;
        int64_t next = hooks_start_ready(h, now);
        int running = 0;
        curl_multi_perform(h->multi, &running);
        if (hooks_collect(h) > 0)
            continue;       /* a lane may send its next event at once */
        long cto = -1;
        curl_multi_timeout(h->multi, &cto);
        int64_t wait = 1000;
        if (cto >= 0 && cto < wait)
            wait = cto;
        if (next != INT64_MAX && next - now < wait)
            wait = next - now > 0 ? next - now : 0;
        if (stop && deadline - now < wait)
            wait = deadline - now;
        curl_multi_poll(h->multi, NULL, 0, (int)wait, NULL);
    }
    hooks_drop_rest(h);
    return NULL;
}

/* --- start and stop ------------------------------------------------------- */

hooks *hooks_start(const config *cfg, const char *node, char *err,
                   size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    if (cfg->n_webhooks == 0)
        return NULL;
    hooks *h = mem_calloc(1, sizeof(*h));
    h->cfg = cfg;
    snprintf(h->node, sizeof(h->node), "%s", node);
    h->n_ep = cfg->n_webhooks;
    for (uint32_t e = 0; e < h->n_ep; e++) {
        h->ep[e].cfg = &cfg->webhooks[e];
        h->wants |= cfg->webhooks[e].events;
        hooks_url_for_log(cfg->webhooks[e].url, h->ep[e].url_log,
                          sizeof(h->ep[e].url_log));
    }
    if (RAND_bytes((unsigned char *)&h->rnd, sizeof(h->rnd)) != 1 || !h->rnd)
        h->rnd = 0x9e3779b97f4a7c15ull;
    pthread_mutex_init(&h->mu, NULL);
    h->multi = curl_multi_init();
    if (!h->multi) {
        snprintf(err, errlen, "webhooks: libcurl cannot make a multi handle");
        pthread_mutex_destroy(&h->mu);
        free(h);
        return NULL;
    }
    if (pthread_create(&h->thread, NULL, hooks_thread, h) != 0) {
        snprintf(err, errlen, "webhooks: cannot start the sender thread");
        curl_multi_cleanup(h->multi);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return NULL;
    }
    log_info("webhooks on", LOG_INT("endpoints", h->n_ep),
             LOG_INT("webhook_queue_max", cfg->webhook_queue_max));
    return h;
}

void hooks_stop(hooks *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_mutex_unlock(&h->mu);
    curl_multi_wakeup(h->multi);
    pthread_join(h->thread, NULL);
    /* Emitted after the thread took its last look (none should be). */
    hook_body *b = h->in_head;
    while (b) {
        hook_body *next = b->next;
        free(b);
        b = next;
    }
    for (uint32_t e = 0; e < h->n_ep; e++)
        for (uint32_t l = 0; l < HOOK_LANES; l++) {
            if (h->ep[e].easy[l])
                curl_easy_cleanup(h->ep[e].easy[l]);
            curl_slist_free_all(h->ep[e].headers[l]);
        }
    curl_multi_cleanup(h->multi);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

void hooks_get_stats(const hooks *h, hooks_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!h)
        return;
    hooks *m = (hooks *)h;
    out->sent = atomic_load_explicit(&m->sent, memory_order_relaxed);
    out->failed = atomic_load_explicit(&m->failed, memory_order_relaxed);
    for (int i = 0; i < HOOKS_DROP_REASONS; i++)
        out->dropped[i] = atomic_load_explicit(&m->dropped[i],
                                               memory_order_relaxed);
    out->queued = atomic_load_explicit(&m->queued_now, memory_order_relaxed);
}
