/*
 * Presence sets and snapshots (presence.h).
 */
#include "core/presence.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

#undef uthash_fatal
#define uthash_fatal(msg) abort()

int presence_add(presence_set *s, const char *client, const char *user,
                 uint16_t worker)
{
    presence_entry *e = NULL;
    HASH_FIND_STR(s->h, client, e);
    if (e) {
        e->refs++;
        return 0;
    }
    e = mem_calloc(1, sizeof(*e));
    memcpy(e->client, client, IDS_LEN);
    e->worker = worker;
    e->refs = 1;
    e->user = mem_strdup(user ? user : "");
    HASH_ADD_STR(s->h, client, e);
    s->n++;
    return 1;
}

int presence_del(presence_set *s, const char *client, char **user_out)
{
    presence_entry *e = NULL;
    HASH_FIND_STR(s->h, client, e);
    if (!e || --e->refs > 0)
        return 0;
    HASH_DEL(s->h, e);
    s->n--;
    if (user_out)
        *user_out = e->user;
    else
        free(e->user);
    free(e);
    return 1;
}

void presence_free(presence_set *s)
{
    presence_entry *e, *tmp;
    HASH_ITER(hh, s->h, e, tmp) {
        HASH_DEL(s->h, e);
        free(e->user);
        free(e);
    }
    s->n = 0;
}

void presence_ident_split(const char *ident, size_t len, proto_slice *user,
                          proto_slice *conn_info)
{
    const char *sep = len ? memchr(ident, PRESENCE_INFO_SEP, len) : NULL;
    if (!sep) {
        *user = (proto_slice){ ident, len };
        *conn_info = (proto_slice){ NULL, 0 };
        return;
    }
    *user = (proto_slice){ ident, (size_t)(sep - ident) };
    *conn_info = (proto_slice){ sep + 1, len - (size_t)(sep + 1 - ident) };
}

void presence_pack_init(presence_pack *pk, size_t n, size_t str_bytes)
{
    pk->n = 0;
    pk->v = n ? mem_alloc(sizeof(proto_presence_entry) * n + str_bytes)
              : NULL;
    pk->s = n ? (char *)(pk->v + n) : NULL;
}

void presence_pack_add(presence_pack *pk, const char *client, size_t clen,
                       const char *user, size_t ulen)
{
    proto_presence_entry *e = &pk->v[pk->n++];
    memcpy(pk->s, client, clen);
    e->client = (proto_slice){ pk->s, clen };
    pk->s += clen;
    memcpy(pk->s, user, ulen);
    presence_ident_split(pk->s, ulen, &e->user, &e->conn_info);
    pk->s += ulen;
}

void presence_pack_set(presence_pack *pk, const presence_set *s)
{
    size_t bytes = 0;
    presence_entry *e, *tmp;
    HASH_ITER(hh, s->h, e, tmp)
        bytes += IDS_LEN + strlen(e->user);
    presence_pack_init(pk, s->n, bytes);
    HASH_ITER(hh, s->h, e, tmp)
        presence_pack_add(pk, e->client, IDS_LEN, e->user, strlen(e->user));
}
