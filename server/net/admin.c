/*
 * The server API's questions to a worker's connections (admin.h).
 */
#include "net/admin.h"

#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "base/mem.h"
#include "net/conn.h"
#include "core/node.h"

static int count_cmp(const void *x, const void *y)
{
    return strcmp(((const chan_count *)x)->name, ((const chan_count *)y)->name);
}

/* The worker's channels matching a, by name, at most a->limit; the names
 * point into the hub (valid until the loop runs again). */
static void collect(conns *n, chans_ask *a)
{
    size_t plen = strlen(a->prefix), cap = 0;
    hub_chan *ch, *tmp;
    HASH_ITER(hh, n->hub.chans, ch, tmp) {
        if (strncmp(ch->name, a->prefix, plen) != 0 ||
            (a->after[0] && strcmp(ch->name, a->after) <= 0))
            continue;
        if (a->n == cap) {
            cap = cap ? 2 * cap : 64;
            a->v = mem_realloc_array(a->v, cap, sizeof(*a->v));
        }
        a->v[a->n].name = ch->name;
        a->v[a->n].subs = ch->n;
        a->n++;
    }
    if (a->n)
        qsort(a->v, a->n, sizeof(*a->v), count_cmp);
    if (a->n > a->limit) {
        a->truncated = 1;
        a->n = a->limit;
    }
}

void admin_channels(conns *n, chans_ask *a)
{
    collect(n, a);
    for (size_t i = 0; i < a->n; i++)
        a->v[i].name = mem_strdup(a->v[i].name);
    a->hdr.type = CON_CHANNELS_DONE;
    server_post(n->srv, a->route.worker, &a->hdr);
}

/* Closes the connections a asks for; returns how many. */
static uint32_t close_matching(conns *n, const disc_ask *a)
{
    uint32_t closed = 0;
    for (uint32_t i = 0; i < n->n_slots; i++) {
        conn *c = n->slots[i].c;
        if (!c || !c->live || c->closing)
            continue;
        int match = a->client[0] ? strcmp(c->id, a->client) == 0
                                 : c->user && strcmp(c->user, a->user) == 0;
        if (!match)
            continue;
        conn_close(c, a->code, "disconnected by the server API", a->reconnect);
        closed++;
    }
    return closed;
}

void admin_disconnect(conns *n, disc_ask *a)
{
    a->closed = close_matching(n, a);
    a->hdr.type = CON_DISCONNECT_DONE;
    server_post(n->srv, a->route.worker, &a->hdr);
}

void admin_receive(conns *n, msg *m)
{
    if (m->type == CON_CHANNELS)
        admin_channels(n, (chans_ask *)m);
    else
        admin_disconnect(n, (disc_ask *)m);
}

/* A bounded string member of an ask into out ("" when absent). */
static int ask_string(json_t *ask, const char *name, char *out, size_t cap)
{
    json_t *v = json_object_get(ask, name);
    out[0] = '\0';
    if (!v)
        return 0;
    if (!json_is_string(v) || json_string_length(v) >= cap ||
        strlen(json_string_value(v)) != json_string_length(v))
        return -1;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static json_t *remote_channels(conns *n, json_t *ask)
{
    chans_ask a = { .limit = 0 };
    json_int_t limit = json_integer_value(json_object_get(ask, "limit"));
    if (ask_string(ask, "prefix", a.prefix, sizeof(a.prefix)) < 0 ||
        ask_string(ask, "after", a.after, sizeof(a.after)) < 0 ||
        limit < 1 || limit > 100000)
        return NULL;
    a.limit = (uint32_t)limit;
    collect(n, &a);
    json_t *list = json_array();
    for (size_t i = 0; i < a.n; i++)
        json_array_append_new(list, json_pack("[s,i]", a.v[i].name,
                                              (int)a.v[i].subs));
    free(a.v);
    return json_pack("{s:o,s:b}", "channels", list, "truncated", a.truncated);
}

static json_t *remote_disconnect(conns *n, json_t *ask)
{
    disc_ask a = { .code = 0 };
    json_int_t code = json_integer_value(json_object_get(ask, "code"));
    if (ask_string(ask, "user", a.user, sizeof(a.user)) < 0 ||
        ask_string(ask, "client", a.client, sizeof(a.client)) < 0 ||
        !a.user[0] == !a.client[0] || code < 4000 || code > 4999)
        return NULL;
    a.code = (uint16_t)code;
    a.reconnect = json_is_true(json_object_get(ask, "reconnect"));
    a.closed = close_matching(n, &a);
    return json_pack("{s:i}", "closed", (int)a.closed);
}

int admin_remote(conns *n, const char *body, size_t len, proto_buf *out)
{
    json_error_t jerr;
    json_t *ask = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *op = json_string_value(json_object_get(ask, "op"));
    json_t *to = json_object_get(ask, "to"), *result = NULL;
    if (op && json_is_object(to)) {
        if (strcmp(op, "channels") == 0)
            result = remote_channels(n, ask);
        else if (strcmp(op, "disconnect") == 0)
            result = remote_disconnect(n, ask);
        else if (strcmp(op, "info") == 0)
            result = node_info(n->srv);
    }
    if (!result) {
        json_decref(ask);
        return -1;
    }
    json_t *ans = json_pack("{s:O,s:s,s:i,s:o}", "to", to, "node",
                            n->srv->node, "worker", (int)n->worker, "result",
                            result);
    char *text = json_dumps(ans, JSON_COMPACT);
    json_decref(ans);
    json_decref(ask);
    if (!text)
        abort();
    proto_buf_reset(out);
    proto_buf_append(out, text, strlen(text));
    free(text);
    return 0;
}
