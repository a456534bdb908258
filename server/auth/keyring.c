/*
 * The token keys in force and the JWKS fetch thread (keyring.h).
 *
 * One mutex guards the pointer to the current set and the fetch thread's
 * schedule; a worker holds it only to take a reference. The fetch itself
 * (libcurl easy interface, bounded in time and size) runs without it.
 */
#include "auth/keyring.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "base/clock.h"
#include "base/httpc.h"
#include "base/log.h"
#include "base/mem.h"

struct keyring {
    const config *cfg;
    int url;                     /* token_jwks is a URL */
    char url_log[256];           /* the URL without credentials or query */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    jwt_keys *cur;
    int stop;
    int stale;                   /* a token named an unknown kid */
    int64_t last_try_ms;         /* monotonic */
    keyring_stats st;

    pthread_t thread;
    int thread_on;
};

/* scheme://host[:port]/path of a URL, for logs: no user:password@, no
 * query or fragment (either may carry a secret). The parts come from
 * libcurl's own URL parser, so what is logged is what curl fetches. */
static void kr_url_for_log(const char *url, char *out, size_t n)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        curl_url_get(u, CURLUPART_PATH, &path, 0);
        snprintf(out, n, "%s://%s%s%s%s", scheme, host, port ? ":" : "",
                 port ? port : "", path ? path : "");
    } else {
        snprintf(out, n, "(a URL libcurl cannot parse)");
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
}

/* A set from the configuration's keys and, when given, a JWKS document
 * (a URL's): 0, or -1 with the offending key named in err. */
static int kr_build(const config *cfg, const char *jwks, size_t jwks_len,
                    jwt_keys **out, char *err, size_t errlen)
{
    jwt_keys *ks = jwt_keys_new();
    char why[512];
    const char *key = NULL;
    size_t skipped = 0;
    int url = config_is_url(cfg->token_jwks);
    if (cfg->token_secret[0] &&
        jwt_keys_add_secret(ks, cfg->token_secret, strlen(cfg->token_secret),
                            why, sizeof(why)) < 0)
        key = "token_secret";
    else if (cfg->token_public_key[0] &&
             jwt_keys_add_pem(ks, cfg->token_public_key, why,
                              sizeof(why)) < 0)
        key = "token_public_key";
    else if (cfg->token_jwks[0] && !url &&
             jwt_keys_add_jwks(ks, cfg->token_jwks, &skipped, why,
                               sizeof(why)) < 0)
        key = "token_jwks";
    else if (jwks &&
             jwt_keys_add_jwks_text(ks, jwks, jwks_len, &skipped, why,
                                    sizeof(why)) < 0)
        key = "token_jwks";
    if (key) {
        snprintf(err, errlen, "herald: %s: %s\n", key, why);
        jwt_keys_free(ks);
        return -1;
    }
    if (skipped)
        log_info("token JWKS: keys not for verifying tokens left out "
                 "(encryption keys, other algorithms or curves)",
                 LOG_INT("skipped", (int64_t)skipped),
                 LOG_INT("keys", (int64_t)jwt_keys_count(ks)));
    *out = ks;
    return 0;
}

typedef struct kr_body {
    char *buf;
    size_t len, cap;
    int over;
} kr_body;

static size_t kr_write(char *p, size_t size, size_t nmemb, void *arg)
{
    kr_body *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > KEYRING_MAX_DOC) {
        b->over = 1;
        return 0;                /* libcurl ends the transfer */
    }
    if (b->len + n + 1 > b->cap) {
        b->cap = b->len + n + 1 > 2 * b->cap ? b->len + n + 1 : 2 * b->cap;
        b->buf = mem_realloc(b->buf, b->cap);
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return n;
}

/* GETs the JWKS: 0 with the document in *b, or -1 with why in err. */
static int kr_get(const keyring *kr, kr_body *b, char *err, size_t errlen)
{
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, errlen, "libcurl: cannot make a handle");
        return -1;
    }
    char cerr[CURL_ERROR_SIZE] = "";
    httpc_setup(h, kr->cfg->token_jwks, kr->cfg->token_jwks_timeout_ms);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE,
                     (curl_off_t)KEYRING_MAX_DOC);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, kr_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (b->over || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(err, errlen, "document larger than %d bytes",
                 KEYRING_MAX_DOC);
        return -1;
    }
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
        return -1;
    }
    if (status != 200) {
        snprintf(err, errlen, "HTTP status %ld", status);
        return -1;
    }
    return 0;
}

/* One fetch: the new set swapped in, or the old one kept. */
static int kr_fetch(keyring *kr)
{
    kr_body b = { 0 };
    char err[512];
    jwt_keys *ks = NULL;
    int rc = kr_get(kr, &b, err, sizeof(err));
    if (rc == 0)
        rc = kr_build(kr->cfg, b.buf ? b.buf : "", b.len, &ks, err,
                      sizeof(err));
    free(b.buf);
    pthread_mutex_lock(&kr->mu);
    if (rc == 0) {
        jwt_keys *old = kr->cur;
        kr->cur = ks;
        kr->st.fetches++;
        kr->st.keys = (uint32_t)jwt_keys_count(ks);
        kr->st.fetched_ms = clock_wall_ms();
        pthread_mutex_unlock(&kr->mu);
        jwt_keys_free(old);
        log_debug("token JWKS fetched", LOG_STR("url", kr->url_log),
                  LOG_INT("keys", jwt_keys_count(ks)));
        return 0;
    }
    kr->st.failures++;
    pthread_mutex_unlock(&kr->mu);
    /* err names the problem, never key material: the JWKS parser's
     * messages name members, and the URL is the logged form. */
    char *nl = strchr(err, '\n');
    if (nl)
        *nl = '\0';
    log_warn("token JWKS not fetched: keeping the keys in force",
             LOG_STR("url", kr->url_log), LOG_STR("error", err));
    return -1;
}

static void *kr_thread(void *arg)
{
    keyring *kr = arg;
    int64_t retry_ms = 1000;
    int64_t next = clock_mono_ms() + (int64_t)kr->cfg->token_jwks_refresh * 1000;
    int failed = kr->st.fetches == 0;
    if (failed)
        next = clock_mono_ms() + retry_ms;
    pthread_mutex_lock(&kr->mu);
    for (;;) {
        while (!kr->stop) {
            int64_t now = clock_mono_ms();
            if (now >= next)
                break;
            if (kr->stale &&
                now >= kr->last_try_ms + KEYRING_MIN_REFETCH_S * 1000)
                break;
            int64_t until = next;
            if (kr->stale && kr->last_try_ms + KEYRING_MIN_REFETCH_S * 1000 < until)
                until = kr->last_try_ms + KEYRING_MIN_REFETCH_S * 1000;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait = until - now;
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&kr->cv, &kr->mu, &ts);
        }
        if (kr->stop)
            break;
        kr->stale = 0;
        kr->last_try_ms = clock_mono_ms();
        pthread_mutex_unlock(&kr->mu);
        failed = kr_fetch(kr) < 0;
        int64_t refresh = (int64_t)kr->cfg->token_jwks_refresh * 1000;
        if (failed) {
            next = clock_mono_ms() + (retry_ms < refresh ? retry_ms : refresh);
            retry_ms = retry_ms * 2 > 60000 ? 60000 : retry_ms * 2;
        } else {
            next = clock_mono_ms() + refresh;
            retry_ms = 1000;
        }
        pthread_mutex_lock(&kr->mu);
    }
    pthread_mutex_unlock(&kr->mu);
    return NULL;
}

keyring *keyring_start(const config *cfg, char *err, size_t errlen)
{
    keyring *kr = mem_calloc(1, sizeof(*kr));
    kr->cfg = cfg;
    kr->url = cfg->token_jwks[0] && config_is_url(cfg->token_jwks);
    pthread_mutex_init(&kr->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&kr->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (kr_build(cfg, NULL, 0, &kr->cur, err, errlen) < 0) {
        keyring_stop(kr);
        return NULL;
    }
    kr->st.keys = (uint32_t)jwt_keys_count(kr->cur);
    if (!kr->url)
        return kr;
    kr_url_for_log(cfg->token_jwks, kr->url_log, sizeof(kr->url_log));
    kr->last_try_ms = clock_mono_ms();
    if (kr_fetch(kr) < 0)
        log_error("token JWKS unavailable at start: tokens its keys sign "
                  "are refused until a fetch succeeds",
                  LOG_STR("url", kr->url_log));
    int rc = pthread_create(&kr->thread, NULL, kr_thread, kr);
    if (rc != 0) {
        snprintf(err, errlen, "herald: token_jwks: cannot start a thread: %s\n",
                 strerror(rc));
        keyring_stop(kr);
        return NULL;
    }
    kr->thread_on = 1;
    return kr;
}

int keyring_check(const config *cfg, char *err, size_t errlen)
{
    jwt_keys *ks;
    if (kr_build(cfg, NULL, 0, &ks, err, errlen) < 0)
        return -1;
    jwt_keys_free(ks);
    return 0;
}

void keyring_stop(keyring *kr)
{
    if (!kr)
        return;
    if (kr->thread_on) {
        pthread_mutex_lock(&kr->mu);
        kr->stop = 1;
        pthread_cond_signal(&kr->cv);
        pthread_mutex_unlock(&kr->mu);
        pthread_join(kr->thread, NULL);
    }
    jwt_keys_free(kr->cur);
    pthread_cond_destroy(&kr->cv);
    pthread_mutex_destroy(&kr->mu);
    free(kr);
}

jwt_keys *keyring_get(keyring *kr)
{
    pthread_mutex_lock(&kr->mu);
    jwt_keys *ks = jwt_keys_ref(kr->cur);
    pthread_mutex_unlock(&kr->mu);
    return ks;
}

void keyring_stale(keyring *kr)
{
    if (!kr->url)
        return;
    pthread_mutex_lock(&kr->mu);
    if (!kr->stale) {
        kr->stale = 1;
        pthread_cond_signal(&kr->cv);
    }
    pthread_mutex_unlock(&kr->mu);
}

void keyring_stats_get(keyring *kr, keyring_stats *out)
{
    pthread_mutex_lock(&kr->mu);
    *out = kr->st;
    pthread_mutex_unlock(&kr->mu);
}
