/*
 * Admission per source address (admit.h): a uthash table of addresses,
 * each with its open connections and a token bucket of new connections
 * (milli-tokens, refilled at rate_per_s per second up to rate_per_s whole
 * tokens).
 */
#include "base/admit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <string.h>

#include <uthash.h>

#include "base/mem.h"

typedef struct admit_addr {
    uint8_t key[16];
    uint32_t conns;
    uint64_t milli;          /* bucket, in thousandths of a connection */
    uint64_t at_ms;          /* when milli was last refilled */
    UT_hash_handle hh;
} admit_addr;

struct admit {
    pthread_mutex_t lock;
    admit_addr *addrs;       /* uthash head; guarded by lock */
    size_t n;
    size_t max_addrs;
    uint32_t max_per_addr;   /* 0 = no cap */
    uint32_t rate;           /* per second; 0 = no rate limit */
};

admit *admit_new(uint32_t max_per_addr, uint32_t rate_per_s,
                 size_t max_addrs)
{
    if (!max_per_addr && !rate_per_s)
        return NULL;
    admit *a = mem_calloc(1, sizeof(*a));
    pthread_mutex_init(&a->lock, NULL);
    a->max_addrs = max_addrs;
    a->max_per_addr = max_per_addr;
    a->rate = rate_per_s;
    return a;
}

void admit_free(admit *a)
{
    if (!a)
        return;
    admit_addr *e, *tmp;
    HASH_ITER(hh, a->addrs, e, tmp) {
        HASH_DEL(a->addrs, e);
        free(e);
    }
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* The key an address counts under: IPv4 (mapped or not) as ::ffff:a.b.c.d,
 * IPv6 by its first 64 bits. -1 for other families. */
static int admit_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                            0xff, 0xff };
        if (memcmp(b, mapped, 12) == 0)
            memcpy(key, b, 16);
        else
            memcpy(key, b, 8);
        return 0;
    }
    return -1;
}

static void admit_refill(const admit *a, admit_addr *e, uint64_t now_ms)
{
    uint64_t full = (uint64_t)a->rate * 1000;
    if (now_ms > e->at_ms) {
        e->milli += (now_ms - e->at_ms) * a->rate;
        e->at_ms = now_ms;
    }
    if (e->milli > full)
        e->milli = full;
}

int admit_take(admit *a, const struct sockaddr *sa, uint64_t now_ms,
               void **ticket)
{
    uint8_t key[16];
    *ticket = NULL;
    if (!a || admit_key(sa, key) < 0)
        return ADMIT_OK;
    int verdict = ADMIT_OK;
    pthread_mutex_lock(&a->lock);
    admit_addr *e;
    HASH_FIND(hh, a->addrs, key, sizeof(key), e);
    if (!e) {
        if (a->n >= a->max_addrs)
            goto out;   /* table full: admitted, not tracked */
        e = mem_calloc(1, sizeof(*e));
        memcpy(e->key, key, sizeof(key));
        e->milli = (uint64_t)a->rate * 1000;
        e->at_ms = now_ms;
        HASH_ADD(hh, a->addrs, key, sizeof(e->key), e);
        a->n++;
    }
    if (a->max_per_addr && e->conns >= a->max_per_addr) {
        verdict = ADMIT_TOO_MANY;
        goto out;
    }
    if (a->rate) {
        admit_refill(a, e, now_ms);
        if (e->milli < 1000) {
            verdict = ADMIT_TOO_FAST;
            goto out;
        }
        e->milli -= 1000;
    }
    e->conns++;
    *ticket = e;
out:
    pthread_mutex_unlock(&a->lock);
    return verdict;
}

void admit_release(admit *a, void *ticket)
{
    if (!a || !ticket)
        return;
    admit_addr *e = ticket;
    pthread_mutex_lock(&a->lock);
    if (e->conns)
        e->conns--;
    pthread_mutex_unlock(&a->lock);
}

void admit_sweep(admit *a, uint64_t now_ms)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    admit_addr *e, *tmp;
    HASH_ITER(hh, a->addrs, e, tmp) {
        if (e->conns)
            continue;
        if (a->rate) {
            admit_refill(a, e, now_ms);
            if (e->milli < (uint64_t)a->rate * 1000)
                continue;
        }
        HASH_DEL(a->addrs, e);
        free(e);
        a->n--;
    }
    pthread_mutex_unlock(&a->lock);
}

size_t admit_addrs(admit *a)
{
    if (!a)
        return 0;
    pthread_mutex_lock(&a->lock);
    size_t n = a->n;
    pthread_mutex_unlock(&a->lock);
    return n;
}
