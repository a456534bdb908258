/*
 * Construction and release of the typed messages (requests.h).
 */
#include "core/requests.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "core/idem.h"

/* A zeroed message of `size` bytes for receiver `to`, then chan, NUL,
 * user, NUL in the same allocation; *s: where the strings are. */
static void *requests_alloc(size_t size, uint8_t to, uint8_t type,
                            const char *chan, size_t chan_len,
                            const char *user, size_t user_len, char **s)
{
    char *m = mem_calloc(1, size + chan_len + user_len + 2);
    ((msg *)m)->to = to;
    ((msg *)m)->type = type;
    *s = m + size;
    if (chan_len)
        memcpy(*s, chan, chan_len);
    if (user_len)
        memcpy(*s + chan_len + 1, user, user_len);
    return m;
}

void *chan_req_new(size_t size, uint8_t type, const char *chan,
                   size_t chan_len, const char *user, size_t user_len)
{
    char *s;
    chan_req *r = requests_alloc(size, MSG_TO_OWNER, type, chan, chan_len,
                                 user, user_len, &s);
    r->chan = s;
    r->chan_len = (uint16_t)chan_len;
    r->user = s + chan_len + 1;
    r->user_len = (uint16_t)user_len;
    return r;
}

deliver_msg *deliver_msg_new(pub *p)
{
    char *s;
    deliver_msg *d = requests_alloc(sizeof(*d), MSG_TO_CONNS, CON_DELIVER,
                                    NULL, 0, NULL, 0, &s);
    d->hdr.counted = 1;
    d->p = pub_ref(p);
    return d;
}

join_msg *join_msg_new(int join, const char *chan, size_t chan_len,
                       const char *client, const char *user,
                       size_t user_len)
{
    char *s;
    join_msg *j = requests_alloc(sizeof(*j), MSG_TO_CONNS, CON_JOIN, chan,
                                 chan_len, user, user_len, &s);
    j->h.hdr.counted = 1;    /* fan-out, like a delivery */
    j->h.chan = s;
    j->h.chan_len = (uint16_t)chan_len;
    j->join = (uint8_t)join;
    memcpy(j->client, client, IDS_LEN);
    j->user = s + chan_len + 1;
    j->user_len = (uint16_t)user_len;
    return j;
}

static chan_msg *chan_msg_new(size_t size, uint8_t to, uint8_t type,
                              const char *chan, size_t chan_len)
{
    char *s;
    chan_msg *m = requests_alloc(size, to, type, chan, chan_len, NULL, 0, &s);
    m->chan = s;
    m->chan_len = (uint16_t)chan_len;
    return m;
}

reset_msg *reset_msg_new(const char *chan, size_t chan_len)
{
    return chan_msg_new(sizeof(reset_msg), MSG_TO_CONNS, CON_RESET, chan,
                        chan_len);
}

store_top_msg *store_top_msg_new(const char *chan, size_t chan_len)
{
    return (store_top_msg *)chan_msg_new(sizeof(store_top_msg), MSG_TO_OWNER,
                                         OWN_STORE_TOP, chan, chan_len);
}

chans_ask *chans_ask_new(void)
{
    char *s;
    return requests_alloc(sizeof(chans_ask), MSG_TO_CONNS, CON_CHANNELS, NULL,
                          0, NULL, 0, &s);
}

disc_ask *disc_ask_new(void)
{
    char *s;
    return requests_alloc(sizeof(disc_ask), MSG_TO_CONNS, CON_DISCONNECT, NULL,
                          0, NULL, 0, &s);
}

idem_found_msg *idem_found_msg_new(const char *chan, size_t chan_len,
                                   const char *key, size_t key_len)
{
    idem_found_msg *f = (idem_found_msg *)chan_msg_new(
        sizeof(idem_found_msg), MSG_TO_OWNER, OWN_IDEM_FOUND, chan, chan_len);
    memcpy(f->key, key, key_len);
    f->key_len = (uint8_t)key_len;
    return f;
}

void pub_req_draft(pub_req *r, const proto_data *d,
                   const proto_client_info *info, proto_slice ikey,
                   proto_slice scope)
{
    if (ikey.len) {
        idem_scoped_key(scope, ikey, r->ikey);
        r->ikey_len = IDEM_SCOPED_LEN;
        r->ihash = idem_hash(d);
    }
    r->p = pub_draft_keyed((proto_slice){ r->h.chan, r->h.chan_len }, d, info,
                           (proto_slice){ r->ikey, r->ikey_len }, r->ihash);
}

msg *worker_msg_new(uint8_t type)
{
    char *s;
    return requests_alloc(sizeof(msg), MSG_TO_WORKER, type, NULL, 0, NULL, 0,
                          &s);
}

uint8_t requests_reply_type(uint8_t own_type)
{
    switch (own_type) {
    case OWN_SUBSCRIBE:
    case OWN_SUB_READ: return CON_SUBSCRIBED;
    case OWN_PUBLISH: return CON_PUBLISHED;
    case OWN_HISTORY:
    case OWN_HIST_READ: return CON_HISTORY;
    case OWN_PRESENCE: return CON_PRESENCE;
    default: return 0;
    }
}

/* The family of a message, whichever way it is travelling. */
enum fam { FAM_PLAIN, FAM_SUB, FAM_PUB, FAM_HIST, FAM_PRES, FAM_DELIVER,
           FAM_CHANS };

static enum fam requests_family(const msg *m)
{
    if (m->to == MSG_TO_OWNER) {
        switch (m->type) {
        case OWN_SUBSCRIBE:
        case OWN_SUB_READ: return FAM_SUB;
        case OWN_PUBLISH: return FAM_PUB;
        case OWN_HISTORY:
        case OWN_HIST_READ: return FAM_HIST;
        case OWN_PRESENCE: return FAM_PRES;
        default: return FAM_PLAIN;
        }
    }
    if (m->to == MSG_TO_CONNS) {
        switch (m->type) {
        case CON_SUBSCRIBED: return FAM_SUB;
        case CON_PUBLISHED: return FAM_PUB;
        case CON_HISTORY: return FAM_HIST;
        case CON_PRESENCE: return FAM_PRES;
        case CON_DELIVER: return FAM_DELIVER;
        case CON_CHANNELS:
        case CON_CHANNELS_DONE: return FAM_CHANS;
        default: return FAM_PLAIN;
        }
    }
    return FAM_PLAIN;
}

void requests_free(msg *m)
{
    if (!m)
        return;
    switch (requests_family(m)) {
    case FAM_SUB: publist_free(&((sub_req *)m)->pubs); break;
    case FAM_PUB: pub_unref(((pub_req *)m)->p); break;
    case FAM_HIST: publist_free(&((hist_req *)m)->pubs); break;
    case FAM_PRES: free(((pres_req *)m)->entries); break;
    case FAM_DELIVER: pub_unref(((deliver_msg *)m)->p); break;
    case FAM_CHANS: {
        chans_ask *a = (chans_ask *)m;
        for (size_t i = 0; i < a->n; i++)
            free(a->v[i].name);
        free(a->v);
        break;
    }
    case FAM_PLAIN: break;
    }
    free(m);
}

const route *requests_route(const msg *m)
{
    if (m->to == MSG_TO_CONNS) {
        switch (m->type) {
        case CON_CHANNELS:
        case CON_CHANNELS_DONE: return &((const chans_ask *)m)->route;
        case CON_DISCONNECT:
        case CON_DISCONNECT_DONE: return &((const disc_ask *)m)->route;
        default: break;
        }
    }
    return &((const chan_req *)m)->route;
}

int requests_for_api(const msg *m)
{
    if (m->to != MSG_TO_CONNS)
        return 0;
    switch (m->type) {
    case CON_PUBLISHED:
    case CON_HISTORY:
    case CON_PRESENCE:
    case CON_CHANNELS_DONE:
    case CON_DISCONNECT_DONE: return requests_route(m)->api;
    default: return 0;
    }
}
