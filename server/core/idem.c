/*
 * A stream's idempotency keys (idem.h): a hash by key, and the sealed
 * entries in a list oldest first, which is both the expiry order (one
 * window for every key) and the order the bound drops them in.
 */
#include "core/idem.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/mem.h"

#undef uthash_fatal
#define uthash_fatal(msg) abort()

const char idem_conflict[] =
    "idempotency_key already used with other data";

void idem_scoped_key(proto_slice scope, proto_slice key, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(ctx, scope.ptr, scope.len) ||
        !EVP_DigestUpdate(ctx, "", 1) ||
        !EVP_DigestUpdate(ctx, key.ptr, key.len) ||
        !EVP_DigestFinal_ex(ctx, md, &mdlen))
        abort();             /* SHA-256 cannot fail short of no memory */
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < IDEM_SCOPED_LEN / 2; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[IDEM_SCOPED_LEN] = '\0';
}

uint64_t idem_hash(const proto_data *d)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < d->mp.len; i++) {
        h ^= (unsigned char)d->mp.ptr[i];
        h *= 1099511628211ull;
    }
    return h;
}

void idem_init(idem_map *m)
{
    memset(m, 0, sizeof(*m));
}

static void idem_unlink(idem_map *m, idem_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        m->oldest = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        m->newest = e->prev;
    e->prev = e->next = NULL;
}

void idem_drop(idem_map *m, idem_entry *e)
{
    HASH_DEL(m->by_key, e);
    if (e->state == IDEM_SEALED) {
        idem_unlink(m, e);
        m->n_sealed--;
    } else {
        m->n_open--;
    }
    free(e);
}

/* The FIFOs of requests (waiting on a key, held behind lookups), linked
 * through msg.next. */
static void fifo_push(msg **head, msg **tail, msg *m)
{
    m->next = NULL;
    if (*tail)
        (*tail)->next = m;
    else
        *head = m;
    *tail = m;
}

static msg *fifo_take(msg **head, msg **tail)
{
    msg *h = *head;
    *head = *tail = NULL;
    return h;
}

static void fifo_free(msg *w, msg_free_fn free_msg)
{
    while (w) {
        msg *next = w->next;
        w->next = NULL;
        free_msg(w);
        w = next;
    }
}

void idem_free(idem_map *m, msg_free_fn free_msg)
{
    idem_entry *e, *tmp;
    HASH_ITER(hh, m->by_key, e, tmp) {
        fifo_free(idem_take_waiters(e), free_msg);
        idem_drop(m, e);
    }
    fifo_free(idem_take_held(m), free_msg);
    idem_init(m);
}

void idem_hold(idem_map *m, msg *r)
{
    fifo_push(&m->held, &m->held_tail, r);
}

msg *idem_take_held(idem_map *m)
{
    return fifo_take(&m->held, &m->held_tail);
}

idem_entry *idem_find(idem_map *m, const char *key, size_t len)
{
    idem_entry *e = NULL;
    HASH_FIND(hh, m->by_key, key, len, e);
    return e;
}

void idem_expire(idem_map *m, int64_t now_ms)
{
    while (m->oldest && m->oldest->expires_ms <= now_ms)
        idem_drop(m, m->oldest);
}

idem_entry *idem_open(idem_map *m, const char *key, size_t len, int state)
{
    idem_entry *e = mem_calloc(1, sizeof(*e));
    memcpy(e->key, key, len);
    e->len = (uint8_t)len;
    e->state = (uint8_t)state;
    HASH_ADD(hh, m->by_key, key[0], len, e);
    m->n_open++;
    return e;
}

void idem_seal(idem_map *m, idem_entry *e, uint64_t offset,
               const char *epoch, uint64_t hash, int64_t expires_ms,
               uint32_t max)
{
    e->state = IDEM_SEALED;
    e->offset = offset;
    memcpy(e->epoch, epoch, IDS_LEN);
    e->epoch[IDS_LEN] = '\0';
    e->hash = hash;
    e->expires_ms = expires_ms;
    m->n_open--;
    /* Appended: a store lookup's entry may expire before newer ones, so
     * expiry stops at the first unexpired entry; it may keep an expired
     * one behind it a little longer (idem_find's callers check). */
    e->prev = m->newest;
    if (m->newest)
        m->newest->next = e;
    else
        m->oldest = e;
    m->newest = e;
    m->n_sealed++;
    while (m->n_sealed > max && m->oldest)
        idem_drop(m, m->oldest);
}

void idem_wait(idem_entry *e, msg *m)
{
    fifo_push(&e->waiters, &e->waiters_tail, m);
}

msg *idem_take_waiters(idem_entry *e)
{
    return fifo_take(&e->waiters, &e->waiters_tail);
}
