/*
 * API keys (keys.h).
 */
#include "api/keys.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "base/mem.h"

typedef struct key_state {
    char name[CONFIG_API_NAME_MAX];
    unsigned char digest[CONFIG_API_DIGEST_LEN];
    uint32_t rate;            /* requests per second; 0 = no limit */
    pthread_mutex_t lock;     /* tokens, at_ms */
    double tokens;
    uint64_t at_ms;           /* when tokens was last brought up to date */
} key_state;

struct api_keys {
    size_t n;
    key_state *keys;
};

api_keys *api_keys_new(const config *cfg)
{
    api_keys *k = mem_calloc(1, sizeof(*k));
    k->n = cfg->n_api_keys;
    k->keys = k->n ? mem_calloc(k->n, sizeof(*k->keys)) : NULL;
    for (size_t i = 0; i < k->n; i++) {
        key_state *s = &k->keys[i];
        memcpy(s->name, cfg->api_keys[i].name, sizeof(s->name));
        memcpy(s->digest, cfg->api_keys[i].digest, sizeof(s->digest));
        s->rate = cfg->api_keys[i].rate_limit;
        s->tokens = s->rate;
        pthread_mutex_init(&s->lock, NULL);
    }
    return k;
}

void api_keys_free(api_keys *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->n; i++)
        pthread_mutex_destroy(&k->keys[i].lock);
    free(k->keys);
    free(k);
}

size_t api_keys_count(const api_keys *k)
{
    return k->n;
}

int api_keys_match(const api_keys *k, const char *auth, size_t len)
{
    static const char scheme[] = "apikey ";
    size_t slen = sizeof(scheme) - 1;
    if (!auth || len <= slen || len > slen + CONFIG_API_KEY_MAX ||
        strncasecmp(auth, scheme, slen) != 0)
        return -1;
    unsigned char d[CONFIG_API_DIGEST_LEN];
    config_api_key_digest(auth + slen, len - slen, d);
    int found = -1;
    for (size_t i = 0; i < k->n; i++) {
        /* every key is compared, whatever matched before */
        int same = CRYPTO_memcmp(d, k->keys[i].digest, sizeof(d)) == 0;
        if (same && found < 0)
            found = (int)i;
    }
    return found;
}

const char *api_keys_name(const api_keys *k, int i)
{
    return k->keys[i].name;
}

uint64_t api_keys_take(api_keys *k, int i, uint64_t now_ms)
{
    key_state *s = &k->keys[i];
    if (!s->rate)
        return 0;
    uint64_t wait = 0;
    pthread_mutex_lock(&s->lock);
    /* a bucket of one second's requests, refilled continuously */
    if (s->at_ms && now_ms > s->at_ms) {
        s->tokens += (double)(now_ms - s->at_ms) * s->rate / 1000.0;
        if (s->tokens > s->rate)
            s->tokens = s->rate;
    }
    if (now_ms > s->at_ms)
        s->at_ms = now_ms;
    if (s->tokens >= 1.0)
        s->tokens -= 1.0;
    else
        wait = (uint64_t)((1.0 - s->tokens) * 1000.0 / s->rate) + 1;
    pthread_mutex_unlock(&s->lock);
    return wait;
}
