/*
 * Cluster mode through Redis: see cluster.h for the model and
 * docs/cluster.md for operations.
 *
 * hiredis 0.14 has no timeouts and no reconnect: every command on the
 * command connection is counted, and a link whose oldest unanswered
 * command (or connect) is older than redis_timeout_ms is torn down with
 * redisAsyncFree (which fails every pending callback with a NULL reply)
 * and reconnected after a random delay in [0, min(5 s, 100 ms * 2^n)].
 * The pub/sub connection gets no PINGs (in subscribed mode hiredis would
 * hand a pong to the wrong callback): it lives and dies with its command
 * connection, which is pinged every second when idle. It holds a
 * subscription to a private control channel all the time, because hiredis
 * 0.14 leaves subscribed mode when the subscription count drops to 0 and
 * would then abort on a confirmation still in flight.
 */
#include "broker/redis/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <msgpack.h>

#include "core/channel.h"
#include "base/log.h"
#include "core/owner.h"
#include "store/store.h"
#include "net/worker.h"

#define CL_TICK_MS 100
#define CL_PING_IDLE_MS 1000
#define CL_BACKOFF_BASE_MS 100
#define CL_BACKOFF_CAP_MS 5000
#define CL_WINDOW_MIN 64       /* hot window and local ring, at least */
#define CL_HOLD_MAX 65536      /* records held ahead of a gap */
#define CL_RECOVER_TRIES 3
/* Commands awaiting Redis per link: beyond this, client requests are
 * refused (110) instead of growing hiredis's output buffer without bound. */
#define CL_PENDING_MAX 65536
#define CL_KEY_MAX 340

static const char *const BROKER_DOWN = "broker unavailable";
/* The link broke with the publish script sent: it may have run. */
static const char *const BROKER_LOST =
    "broker unavailable (in flight: may have been published)";

/* ---- Lua scripts -------------------------------------------------------- */

/* KEYS: stream hash, window. ARGV: candidate epoch, record body, window
 * size, stream ttl (s), pub/sub channel. Returns {offset, epoch}. */
static const char SCRIPT_PUB[] =
    "local e = redis.call('HGET', KEYS[1], 'e')\n"
    "if not e then\n"
    "  e = ARGV[1]\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('HSET', KEYS[1], 'e', e, 't', 0)\n"
    "end\n"
    "local off = redis.call('HINCRBY', KEYS[1], 't', 1)\n"
    "local rec = string.format('%d', off) .. ':' .. e .. ':' .. ARGV[2]\n"
    "redis.call('ZADD', KEYS[2], off, rec)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', off - tonumber(ARGV[3]))\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "redis.call('PUBLISH', ARGV[5], rec)\n"
    "return {off, e}\n";

/* KEYS: stream hash, window. ARGV: candidate epoch, stream ttl, first
 * offset wanted, limit, reverse (0/1), keep (the newest `keep` records
 * count as retained; 0 = none, -1 = the whole window). Creates the stream
 * when missing. Returns {epoch, top, first offset in the window (0 =
 * empty), records}. */
static const char SCRIPT_RANGE[] =
    "local e = redis.call('HGET', KEYS[1], 'e')\n"
    "if not e then\n"
    "  e = ARGV[1]\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('HSET', KEYS[1], 'e', e, 't', 0)\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
    "local t = tonumber(redis.call('HGET', KEYS[1], 't'))\n"
    "local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')\n"
    "local f = 0\n"
    "if first[2] then f = tonumber(first[2]) end\n"
    "local keep = tonumber(ARGV[6])\n"
    "local lo = tonumber(ARGV[3])\n"
    "if keep == 0 or ARGV[4] == '0' then return {e, t, f, {}} end\n"
    "if keep > 0 and t - keep + 1 > lo then lo = t - keep + 1 end\n"
    "local r\n"
    "if ARGV[5] == '1' then\n"
    "  r = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', lo, 'LIMIT', 0, ARGV[4])\n"
    "else\n"
    "  r = redis.call('ZRANGEBYSCORE', KEYS[2], lo, '+inf', 'LIMIT', 0, ARGV[4])\n"
    "end\n"
    "return {e, t, f, r}\n";

/* Presence. KEYS: expiry zset, user hash. Redis's clock for expiry, so
 * nodes' clocks do not matter. */
#define LUA_NOW \
    "local tm = redis.call('TIME')\n" \
    "local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)\n"

/* ARGV: client, user, ttl ms, pub/sub channel, announce (0/1). */
static const char SCRIPT_JOIN[] =
    LUA_NOW
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)\n"
    "redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]) * 2)\n"
    "if ARGV[5] == '1' then\n"
    "  redis.call('PUBLISH', ARGV[4], 'J:' .. ARGV[1] .. ':' .. ARGV[2])\n"
    "end\n"
    "return 1\n";

/* ARGV: client, pub/sub channel, announce. */
static const char SCRIPT_LEAVE[] =
    "local u = redis.call('HGET', KEYS[2], ARGV[1])\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "if u and ARGV[3] == '1' then\n"
    "  redis.call('PUBLISH', ARGV[2], 'L:' .. ARGV[1] .. ':' .. u)\n"
    "end\n"
    "return 1\n";

/* ARGV: ttl ms, pub/sub channel, announce, then client, user pairs of
 * this node. Renews them (an entry that had gone, after a partition or a
 * Redis restart without data, is announced as joining again), then
 * removes (and announces) expired entries, which are those of nodes that
 * stopped refreshing. */
static const char SCRIPT_REFRESH[] =
    LUA_NOW
    "local ttl = tonumber(ARGV[1])\n"
    "for i = 4, #ARGV, 2 do\n"
    "  local new = redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])\n"
    "  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])\n"
    "  if new == 1 and ARGV[3] == '1' then\n"
    "    redis.call('PUBLISH', ARGV[2], 'J:' .. ARGV[i] .. ':' .. ARGV[i + 1])\n"
    "  end\n"
    "end\n"
    "local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "for _, c in ipairs(dead) do\n"
    "  local u = redis.call('HGET', KEYS[2], c)\n"
    "  redis.call('ZREM', KEYS[1], c)\n"
    "  redis.call('HDEL', KEYS[2], c)\n"
    "  if ARGV[3] == '1' then\n"
    "    redis.call('PUBLISH', ARGV[2], 'L:' .. c .. ':' .. (u or ''))\n"
    "  end\n"
    "end\n"
    "if #ARGV >= 4 then\n"
    "  redis.call('PEXPIRE', KEYS[1], ttl * 2)\n"
    "  redis.call('PEXPIRE', KEYS[2], ttl * 2)\n"
    "end\n"
    "return #dead\n";

/* Returns client, user pairs of the live entries. */
static const char SCRIPT_QUERY[] =
    LUA_NOW
    "local c = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')\n"
    "local out = {}\n"
    "for _, id in ipairs(c) do\n"
    "  out[#out + 1] = id\n"
    "  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''\n"
    "end\n"
    "return out\n";

enum { SC_PUB, SC_RANGE, SC_JOIN, SC_LEAVE, SC_REFRESH, SC_QUERY, SC_N };
static const char *const scripts[SC_N] = {
    SCRIPT_PUB, SCRIPT_RANGE, SCRIPT_JOIN, SCRIPT_LEAVE, SCRIPT_REFRESH,
    SCRIPT_QUERY,
};

/* ---- state -------------------------------------------------------------- */

typedef struct cluster cluster;

typedef struct cl_link {
    cluster *cl;
    uint32_t idx;
    const config_redis *rc;
    redisAsyncContext *cmd, *sub;
    int up;                  /* counted as up (srv->broker_down) */
    int connecting;
    int scripts_left;        /* SCRIPT LOAD replies still expected */
    int sub_ready;           /* control channel subscribed */
    uint32_t pending;        /* commands awaiting replies on cmd */
    uint64_t progress_ms;    /* last reply, or when pending became > 0 */
    uint64_t connect_ms;
    uint64_t retry_at_ms;    /* reconnect due (0: not scheduled) */
    uint32_t attempt;
    uint64_t last_send_ms;
    int down_logged;
} cl_link;

struct cluster {
    worker *w;
    uint32_t n;
    cl_link *links;
    uv_timer_t timer;
    int stopping;
    uint64_t next_refresh_ms;
    uint64_t next_keep_ms;   /* stream keys of subscribed channels */
    char sha[SC_N][41];
    char ctl[CL_KEY_MAX];    /* the control channel */
};

enum rq_kind {
    RQ_IGNORE, RQ_SCRIPT, RQ_PUB, RQ_ENSURE, RQ_FILL, RQ_RECOVER, RQ_HIST,
    RQ_PRES,
};

typedef struct cl_req {
    cl_link *l;
    uint8_t kind;
    uint8_t tries;
    uint8_t script;          /* RQ_SCRIPT: which */
    msg *m;
    uint16_t len;
    char name[];             /* channel, NUL-terminated */
} cl_req;

static uint64_t cl_now(cluster *cl)
{
    return uv_now(&cl->w->loop);
}

uint32_t cluster_shard(const char *chan, size_t len, uint32_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)chan[i];
        h *= 16777619u;
    }
    return n ? h % n : 0;
}

static cl_link *cl_link_of(cluster *cl, const char *chan, size_t len)
{
    return &cl->links[cluster_shard(chan, len, cl->n)];
}

/* prefix:{channel}suffix; the braces are a Redis Cluster hash tag, so all
 * keys of a channel hash to one slot. */
static size_t cl_key(const cluster *cl, char *out, const char *chan,
                     size_t len, const char *suffix)
{
    int n = snprintf(out, CL_KEY_MAX, "%s:{%.*s}%s",
                     cl->w->srv->cfg->redis_prefix, (int)len, chan, suffix);
    return n < 0 ? 0 : (size_t)n;
}

static cl_req *cl_req_new(cl_link *l, uint8_t kind, msg *m, const char *chan,
                          size_t len)
{
    cl_req *rq = calloc(1, sizeof(*rq) + len + 1);
    if (!rq)
        abort();
    rq->l = l;
    rq->kind = kind;
    rq->m = m;
    rq->len = (uint16_t)len;
    if (len)
        memcpy(rq->name, chan, len);
    return rq;
}

static void cl_on_reply(redisAsyncContext *ac, void *r, void *priv);
static void cl_link_down(cl_link *l, const char *why);

/* Sends a command on the link's command connection. On failure the request
 * is not consumed: the caller answers it. */
static int cl_send(cl_link *l, cl_req *rq, int argc, const char **argv,
                   const size_t *lens)
{
    /* Before the scripts are loaded only the loading itself may go. */
    if (!l->cmd || (!l->up && rq->kind != RQ_SCRIPT))
        return -1;
    if (redisAsyncCommandArgv(l->cmd, cl_on_reply, rq, argc, argv, lens) !=
        REDIS_OK)
        return -1;
    uint64_t now = cl_now(l->cl);
    if (l->pending++ == 0)
        l->progress_ms = now;
    l->last_send_ms = now;
    return 0;
}

/* EVALSHA of one of the scripts with nk keys then the args. */
static int cl_eval(cl_link *l, cl_req *rq, int script, int nk,
                   const char **kv, const size_t *kl, int nargs)
{
    const char *argv[64];
    size_t lens[64];
    char nkeys[8];
    int total = 3 + nargs;
    if (total > 64)
        return -1;
    snprintf(nkeys, sizeof(nkeys), "%d", nk);
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = l->cl->sha[script];
    lens[1] = strlen(argv[1]);
    argv[2] = nkeys;
    lens[2] = strlen(nkeys);
    for (int i = 0; i < nargs; i++) {
        argv[3 + i] = kv[i];
        lens[3 + i] = kl[i];
    }
    return cl_send(l, rq, total, argv, lens);
}

/* A reply to a client's request: error 108 "broker unavailable". */
static void cl_fail_with(worker *w, msg *m, uint8_t type, const char *why)
{
    m->type = type;
    m->code = PROTO_E_NOT_AVAILABLE;
    m->errmsg = why;
    worker_post(w->srv, m->route.worker, m);
}

static void cl_fail(worker *w, msg *m, uint8_t type)
{
    cl_fail_with(w, m, type, BROKER_DOWN);
}

static void cl_reply(worker *w, msg *m, uint8_t type, int code)
{
    m->type = type;
    m->code = code;
    worker_post(w->srv, m->route.worker, m);
}

/* ---- records ----------------------------------------------------------- */

/* Body of a record: msgpack [time_ms, binary, json, msgpack, client, user],
 * the data byte-exact in both encodings, so no node converts it again. */
static void cl_body(msgpack_sbuffer *sb, const pub *p, int64_t now_ms)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_int64(&pk, now_ms);
    if (p->view.data.binary)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    msgpack_pack_bin(&pk, p->view.data.json.len);
    msgpack_pack_bin_body(&pk, p->view.data.json.ptr, p->view.data.json.len);
    msgpack_pack_bin(&pk, p->view.data.mp.len);
    msgpack_pack_bin_body(&pk, p->view.data.mp.ptr, p->view.data.mp.len);
    proto_slice cl = { "", 0 }, us = { "", 0 };
    if (p->view.info) {
        cl = p->view.info->client;
        us = p->view.info->user;
    }
    msgpack_pack_str(&pk, cl.len);
    msgpack_pack_str_body(&pk, cl.ptr, cl.len);
    msgpack_pack_str(&pk, us.len);
    msgpack_pack_str_body(&pk, us.ptr, us.len);
}

/* "<offset>:<epoch>:<body>" into a new publication of chan, or NULL
 * (logged) when malformed. */
static pub *cl_record(const char *chan, size_t clen, const char *rec,
                      size_t len)
{
    uint64_t off = 0;
    size_t i = 0;
    while (i < len && rec[i] >= '0' && rec[i] <= '9' && i < 20)
        off = off * 10 + (uint64_t)(rec[i++] - '0');
    if (i == 0 || off == 0 || i + 2 + IDS_LEN > len || rec[i] != ':' ||
        rec[i + 1 + IDS_LEN] != ':')
        goto bad;
    proto_slice epoch = { rec + i + 1, IDS_LEN };
    const char *body = rec + i + 2 + IDS_LEN;
    size_t blen = len - (i + 2 + IDS_LEN), pos = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    pub *p = NULL;
    if (msgpack_unpack_next(&u, body, blen, &pos) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 6) {
        msgpack_object *o = u.data.via.array.ptr;
        if ((o[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
             o[0].type == MSGPACK_OBJECT_NEGATIVE_INTEGER) &&
            o[1].type == MSGPACK_OBJECT_BOOLEAN &&
            o[2].type == MSGPACK_OBJECT_BIN && o[3].type == MSGPACK_OBJECT_BIN &&
            o[4].type == MSGPACK_OBJECT_STR && o[5].type == MSGPACK_OBJECT_STR) {
            proto_data d = {
                .json = { o[2].via.bin.ptr, o[2].via.bin.size },
                .mp = { o[3].via.bin.ptr, o[3].via.bin.size },
                .binary = o[1].via.boolean,
            };
            proto_client_info info = {
                .client = { o[4].via.str.ptr, o[4].via.str.size },
                .user = { o[5].via.str.ptr, o[5].via.str.size },
            };
            p = pub_new((proto_slice){ chan, clen }, off, epoch, &d,
                        info.client.len ? &info : NULL, o[0].via.i64);
        }
    }
    msgpack_unpacked_destroy(&u);
    if (p)
        return p;
bad:
    log_warn("malformed record in Redis: ignored", LOG_STRN("channel", chan,
                                                            clen));
    return NULL;
}

/* ---- delivery in offset order ------------------------------------------ */

static void cl_fanout(worker *w, chan_state *c, pub *p)
{
    history_push(&c->hist, p);
    c->top = p->offset;
    for (uint32_t i = 0; i < w->srv->n_workers; i++) {
        if (!c->wcount[i])
            continue;
        msg *d = msg_new(MSG_DELIVER, NULL, 0, NULL, 0);
        d->p = pub_ref(p);
        worker_post(w->srv, (uint16_t)i, d);
    }
}

static void cl_hold_clear(chan_state *c)
{
    for (uint32_t i = 0; i < c->cl_n_hold; i++)
        pub_unref(c->cl_hold[i]);
    c->cl_n_hold = 0;
}

/* The stream has a gap this node cannot fill, or Redis lost it (a new
 * epoch): the local subscribers are closed with 4003 and recover with
 * since, which tells them what is still there. */
static void cl_reset(worker *w, chan_state *c, const char *epoch,
                     uint64_t top, const char *why)
{
    log_warn("channel stream reset: closing its subscribers with 4003",
             LOG_STRN("channel", c->name, c->len), LOG_STR("reason", why),
             LOG_INT("delivered", c->top), LOG_INT("top", top));
    for (uint32_t i = 0; i < w->srv->n_workers; i++) {
        if (!c->wcount[i])
            continue;
        worker_post(w->srv, (uint16_t)i,
                    msg_new(MSG_CL_RESET, c->name, c->len, NULL, 0));
    }
    uint32_t cap = c->hist.capacity;
    history_free(&c->hist);
    history_init(&c->hist, cap);
    memcpy(c->epoch, epoch, IDS_LEN);
    c->epoch[IDS_LEN] = '\0';
    c->top = top;
}

static void cl_hold_add(chan_state *c, pub *p)
{
    /* Sorted by offset, no duplicates; records mostly arrive in order. */
    uint32_t i = c->cl_n_hold;
    while (i > 0 && c->cl_hold[i - 1]->offset > p->offset)
        i--;
    if (i > 0 && c->cl_hold[i - 1]->offset == p->offset) {
        pub_unref(p);
        return;
    }
    if (c->cl_n_hold == c->cl_cap_hold) {
        c->cl_cap_hold = c->cl_cap_hold ? c->cl_cap_hold * 2 : 16;
        c->cl_hold = realloc(c->cl_hold, sizeof(pub *) * c->cl_cap_hold);
        if (!c->cl_hold)
            abort();
    }
    if (i < c->cl_n_hold)
        memmove(c->cl_hold + i + 1, c->cl_hold + i,
                sizeof(pub *) * (c->cl_n_hold - i));
    c->cl_hold[i] = p;
    c->cl_n_hold++;
}

static void cl_fill(worker *w, chan_state *c);

/* Delivers held records while they continue the stream. With `final`
 * (a fill read just came back), a gap still left cannot be filled. */
static void cl_drain_hold(worker *w, chan_state *c, int final)
{
    uint32_t i = 0;
    for (; i < c->cl_n_hold; i++) {
        pub *p = c->cl_hold[i];
        if (memcmp(p->view.epoch.ptr, c->epoch, IDS_LEN) != 0) {
            cl_reset(w, c, p->view.epoch.ptr, p->offset - 1,
                     "epoch changed in Redis");
        } else if (p->offset <= c->top) {
            pub_unref(p);
            continue;
        } else if (p->offset != c->top + 1) {
            if (!final)
                break;
            cl_reset(w, c, c->epoch, p->offset - 1,
                     "missed records are no longer in the hot window");
        }
        cl_fanout(w, c, p);
        pub_unref(p);
    }
    if (i) {
        memmove(c->cl_hold, c->cl_hold + i,
                sizeof(pub *) * (c->cl_n_hold - i));
        c->cl_n_hold -= i;
    }
    if (c->cl_n_hold && !c->cl_filling)
        cl_fill(w, c);
}

/* Sends the RANGE script for chan: epoch, top, first offset of the
 * window, and up to `limit` records from offset `lo` (newest first when
 * reverse) among the newest `keep` (-1: the whole window). Creates the
 * stream when missing. */
static int cl_read_range(worker *w, cl_link *l, cl_req *rq, const char *chan,
                    size_t len, uint64_t lo, uint32_t limit, int reverse,
                    int64_t keep)
{
    cluster *cl = w->cl;
    char ks[CL_KEY_MAX], kw[CL_KEY_MAX], ttl[16], slo[24], lim[16], kp[24],
        cand[IDS_LEN + 1];
    ids_hex(ids_next(&w->rng), cand);
    snprintf(ttl, sizeof(ttl), "%u", w->srv->cfg->stream_ttl);
    snprintf(slo, sizeof(slo), "%llu", (unsigned long long)lo);
    snprintf(lim, sizeof(lim), "%u", limit);
    snprintf(kp, sizeof(kp), "%lld", (long long)keep);
    const char *kv[] = { ks, kw, cand, ttl, slo, lim, reverse ? "1" : "0",
                         kp };
    size_t kl[] = { cl_key(cl, ks, chan, len, ":s"),
                    cl_key(cl, kw, chan, len, ":w"), IDS_LEN, strlen(ttl),
                    strlen(slo), strlen(lim), 1, strlen(kp) };
    return cl_eval(l, rq, SC_RANGE, 2, kv, kl, 8);
}

/* Reads what follows c->top from the hot window. */
static void cl_fill(worker *w, chan_state *c)
{
    cl_link *l = &w->cl->links[c->cl_shard];
    cl_req *rq = cl_req_new(l, RQ_FILL, NULL, c->name, c->len);
    if (cl_read_range(w, l, rq, c->name, c->len, c->top + 1, 1000000, 0, -1) < 0) {
        free(rq);   /* the link is going down; repaired when it is back */
        return;
    }
    c->cl_filling = 1;
}

/* A record from pub/sub (or from a fill). */
static void cl_on_record(worker *w, chan_state *c, pub *p)
{
    if (c->cl_state != CL_LIVE || c->cl_filling || c->cl_n_hold) {
        if (c->cl_n_hold >= CL_HOLD_MAX) {
            /* Redis keeps sending while the window read does not come
             * back: give up on this stretch rather than grow. */
            cl_hold_clear(c);
            cl_reset(w, c, c->epoch, p->offset - 1, "hold buffer full");
        }
        cl_hold_add(c, p);
        if (c->cl_state == CL_LIVE && !c->cl_filling)
            cl_drain_hold(w, c, 0);
        return;
    }
    if (memcmp(p->view.epoch.ptr, c->epoch, IDS_LEN) != 0) {
        cl_reset(w, c, p->view.epoch.ptr, p->offset - 1,
                 "epoch changed in Redis");
    } else if (p->offset <= c->top) {
        pub_unref(p);   /* already delivered (a fill got it first) */
        return;
    } else if (p->offset != c->top + 1) {
        cl_hold_add(c, p);
        cl_fill(w, c);
        return;
    }
    cl_fanout(w, c, p);
    pub_unref(p);
}

/* ---- subscribe --------------------------------------------------------- */

static void cl_presence_script(worker *w, chan_state *c, int join,
                               const char *client, const char *user);

static void cl_sub_done(worker *w, chan_state *c, msg *m, int recovered,
                        pub **pubs, size_t n)
{
    m->recovered = (int8_t)recovered;
    if (m->pubs != pubs) {
        /* A store part of a recovery that did not complete. */
        for (size_t i = 0; i < m->n_pubs; i++)
            pub_unref(m->pubs[i]);
        free(m->pubs);
    }
    m->pubs = pubs;
    m->n_pubs = n;
    chan_sub_add(c, m->route.worker);
    const config_ns *ns = c->ns;
    if ((ns->presence || ns->join_leave) &&
        chan_presence_add(c, m->client, msg_user(m), m->route.worker))
        cl_presence_script(w, c, 1, m->client, msg_user(m));
    memcpy(m->epoch, c->epoch, IDS_LEN + 1);
    m->epoch_len = IDS_LEN;
    m->offset = c->top;
    cl_reply(w, m, MSG_SUB_REP, 0);
}

static void cl_recover_read(worker *w, chan_state *c, msg *m, int tries);

/* HIST_REQ flag bit: the store was read, the window alone answers now. */
#define CL_HIST_STORE_DONE 4

/* The durable store of a namespace, or NULL. */
static store *cl_store(worker *w, const config_ns *ns)
{
    return ns && ns->durable ? w->srv->store : NULL;
}

/* Reads (lo, hi) of the stream from the store; m comes back as
 * MSG_STORE_READ (cl_on_store_read). Other nodes write too, so a short
 * answer is waited on as "behind". */
static void cl_read_store(worker *w, msg *m, const char *epoch, uint64_t lo,
                          uint64_t hi, uint32_t n, int reverse, int strict)
{
    store_read_range(w->srv->store, w->index, m, epoch, lo, hi, n,
                     (reverse ? STORE_READ_REVERSE : 0) |
                     (strict ? STORE_READ_STRICT : 0) | STORE_READ_OTHERS);
}

/* Answers a subscribe request on a live stream: at once, from the local
 * ring, or after reading the hot window. */
static void cl_answer_sub(worker *w, chan_state *c, msg *m)
{
    if (m->flag == 0) {
        cl_sub_done(w, c, m, -1, NULL, 0);
        return;
    }
    uint32_t keep = c->ns->history_size;
    if (cl_store(w, c->ns))
        keep = w->srv->cfg->recovery_max;   /* the store reaches further */
    int same = m->epoch_len == IDS_LEN &&
               memcmp(m->epoch, c->epoch, IDS_LEN) == 0;
    if (!same || m->offset > c->top || c->top - m->offset > keep) {
        cl_sub_done(w, c, m, 0, NULL, 0);
        return;
    }
    pub **v;
    size_t n;
    history_expire(&c->hist, owner_now_ms(),
                   (int64_t)c->ns->history_ttl * 1000);
    if (chan_recover(c, m->epoch, m->epoch_len, m->offset, keep, &v, &n)) {
        cl_sub_done(w, c, m, 1, v, n);
        return;
    }
    cl_recover_read(w, c, m, 0);
}

static msg *cl_pop_waiting(chan_state *c)
{
    msg *m = c->cl_wait;
    if (m) {
        c->cl_wait = m->next;
        m->next = NULL;
    }
    return m;
}

static void cl_answer_waiting(worker *w, chan_state *c)
{
    msg *m;
    while ((m = cl_pop_waiting(c)))
        cl_answer_sub(w, c, m);
}

static void cl_fail_waiting(worker *w, chan_state *c)
{
    msg *m;
    while ((m = cl_pop_waiting(c)))
        cl_fail(w, m, MSG_SUB_REP);
}

static int cl_sub_cmd(cl_link *l, const char *verb, const char *key,
                      size_t klen);

static void cl_redis_subscribe(worker *w, chan_state *c)
{
    cl_link *l = &w->cl->links[c->cl_shard];
    char k[CL_KEY_MAX];
    size_t kl = cl_key(w->cl, k, c->name, c->len, "");
    if (cl_sub_cmd(l, "SUBSCRIBE", k, kl) < 0) {
        c->cl_state = CL_DOWN;
        cl_fail_waiting(w, c);
        return;
    }
    c->cl_state = CL_SUBSCRIBING;
}

/* Reads epoch and top after the subscription is confirmed (records that
 * arrive meanwhile are held). */
static void cl_ensure(worker *w, chan_state *c)
{
    cl_link *l = &w->cl->links[c->cl_shard];
    cl_req *rq = cl_req_new(l, RQ_ENSURE, NULL, c->name, c->len);
    if (cl_read_range(w, l, rq, c->name, c->len, 1, 0, 0, 0) < 0) {
        free(rq);
        return;   /* the link is going down */
    }
    c->cl_state = CL_SYNC;
}

/* The last local subscriber left. */
static void cl_release(worker *w, chan_state *c)
{
    if (c->total || c->cl_wait || c->cl_busy)
        return;
    cl_link *l = &w->cl->links[c->cl_shard];
    cl_hold_clear(c);
    c->cl_filling = 0;
    if (c->cl_state == CL_IDLE || !l->up) {
        chanreg_drop(&w->reg, c);
        return;
    }
    if (c->cl_state == CL_UNSUBSCRIBING)
        return;
    char k[CL_KEY_MAX];
    size_t kl = cl_key(w->cl, k, c->name, c->len, "");
    if (cl_sub_cmd(l, "UNSUBSCRIBE", k, kl) < 0) {
        chanreg_drop(&w->reg, c);
        return;
    }
    c->cl_state = CL_UNSUBSCRIBING;
}

static void cluster_subscribe(worker *w, msg *m)
{
    const config_ns *ns =
        config_ns_of_channel(w->srv->cfg, msg_chan(m), m->chan_len);
    if (!ns) {
        cl_reply(w, m, MSG_SUB_REP, PROTO_E_BAD_CHANNEL);
        return;
    }
    cl_link *l = cl_link_of(w->cl, msg_chan(m), m->chan_len);
    if (!l->up) {
        cl_fail(w, m, MSG_SUB_REP);
        return;
    }
    chan_state *c = chanreg_get(&w->reg, msg_chan(m), m->chan_len, ns);
    c->cl_shard = (uint8_t)l->idx;
    if (ns->max_subscribers && c->total >= ns->max_subscribers) {
        cl_reply(w, m, MSG_SUB_REP, PROTO_E_LIMIT);
        cl_release(w, c);
        return;
    }
    if (c->cl_state == CL_LIVE && !c->cl_filling) {
        cl_answer_sub(w, c, m);
        return;
    }
    /* FIFO of waiting requests. */
    m->next = NULL;
    msg **tail = &c->cl_wait;
    while (*tail)
        tail = &(*tail)->next;
    *tail = m;
    if (c->cl_state == CL_IDLE || c->cl_state == CL_DOWN)
        cl_redis_subscribe(w, c);
}

static void cluster_unsubscribe(worker *w, msg *m)
{
    chan_state *c = chanreg_find(&w->reg, msg_chan(m), m->chan_len);
    if (c) {
        chan_sub_del(c, m->route.worker);
        char *user = NULL;
        if ((c->ns->presence || c->ns->join_leave) &&
            chan_presence_del(c, m->client, &user))
            cl_presence_script(w, c, 0, m->client, user ? user : "");
        free(user);
        cl_release(w, c);
    }
    msg_free(m);
}

/* ---- publish ------------------------------------------------------------ */

static void cluster_publish(worker *w, msg *m)
{
    const config *cfg = w->srv->cfg;
    if (cl_link_of(w->cl, msg_chan(m), m->chan_len)->pending >=
        CL_PENDING_MAX) {
        cl_reply(w, m, MSG_PUB_REP, PROTO_E_RATE_LIMITED);
        return;
    }
    const config_ns *ns = config_ns_of_channel(cfg, msg_chan(m), m->chan_len);
    if (!ns) {
        cl_reply(w, m, MSG_PUB_REP, PROTO_E_BAD_CHANNEL);
        return;
    }
    chan_state *c = chanreg_find(&w->reg, msg_chan(m), m->chan_len);
    if (c) {
        /* Back-pressure, as on a single node. */
        for (uint32_t i = 0; i < w->srv->n_workers; i++) {
            if (c->wcount[i] &&
                atomic_load_explicit(&w->srv->workers[i]->mb.delivers,
                                     memory_order_relaxed) >=
                    cfg->worker_queue_max) {
                cl_reply(w, m, MSG_PUB_REP, PROTO_E_RATE_LIMITED);
                return;
            }
        }
    }
    /* Durable namespaces: room in the writer queue first (as on a single
     * node); the draft stays with the request until Redis has numbered
     * it, then the publishing node writes it to the store. */
    store *st = ns->durable ? w->srv->store : NULL;
    if (st && !store_fits(m->p)) {
        m->errmsg = "too large for the durable store";
        cl_reply(w, m, MSG_PUB_REP, PROTO_E_TOO_LARGE);
        return;
    }
    if (st) {
        int where = store_reserve(st, m->p, ns->ack_durable);
        if (where == STORE_REFUSED) {
            m->errmsg = "durable store backlog full";
            cl_reply(w, m, MSG_PUB_REP, PROTO_E_NOT_AVAILABLE);
            return;
        }
        m->limit = (uint32_t)where;   /* unused by publish otherwise */
    }
    cl_link *l = cl_link_of(w->cl, msg_chan(m), m->chan_len);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    m->p->time_ms = owner_now_ms();
    cl_body(&sb, m->p, m->p->time_ms);
    if (!st) {
        pub_unref(m->p);
        m->p = NULL;
    }
    char ks[CL_KEY_MAX], kw[CL_KEY_MAX], kc[CL_KEY_MAX], win[16], ttl[16],
        cand[IDS_LEN + 1];
    ids_hex(ids_next(&w->rng), cand);
    uint32_t window = ns->history_size > CL_WINDOW_MIN ? ns->history_size
                                                       : CL_WINDOW_MIN;
    snprintf(win, sizeof(win), "%u", window);
    snprintf(ttl, sizeof(ttl), "%u",
             cfg->stream_ttl > ns->history_ttl ? cfg->stream_ttl
                                               : ns->history_ttl);
    const char *kv[] = { ks, kw, cand, sb.data, win, ttl, kc };
    size_t kl[] = { cl_key(w->cl, ks, msg_chan(m), m->chan_len, ":s"),
                    cl_key(w->cl, kw, msg_chan(m), m->chan_len, ":w"),
                    IDS_LEN, sb.size, strlen(win), strlen(ttl),
                    cl_key(w->cl, kc, msg_chan(m), m->chan_len, "") };
    cl_req *rq = cl_req_new(l, RQ_PUB, m, NULL, 0);
    int rc = cl_eval(l, rq, SC_PUB, 2, kv, kl, 7);
    msgpack_sbuffer_destroy(&sb);
    if (rc < 0) {
        free(rq);
        if (st)
            store_unreserve(st, (int)m->limit, m->p);
        cl_fail(w, m, MSG_PUB_REP);
    }
}

static void cl_on_pub(worker *w, cl_req *rq, redisReply *r)
{
    msg *m = rq->m;
    store *st = m->p ? w->srv->store : NULL;
    if (st && (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
               r->element[0]->type != REDIS_REPLY_INTEGER ||
               r->element[1]->type != REDIS_REPLY_STRING ||
               r->element[1]->len != IDS_LEN))
        store_unreserve(st, (int)m->limit, m->p);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[1]->len != IDS_LEN) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_warn("publish script failed", LOG_STRN("error", r->str,
                                                       r->len));
        /* The link broke with the script in flight: it may or may not
         * have run, and the client is told so (retry is its call). */
        cl_fail_with(w, m, MSG_PUB_REP, r ? BROKER_DOWN : BROKER_LOST);
        return;
    }
    m->offset = (uint64_t)r->element[0]->integer;
    memcpy(m->epoch, r->element[1]->str, IDS_LEN);
    m->epoch[IDS_LEN] = '\0';
    m->epoch_len = IDS_LEN;
    if (st) {
        const pub *d = m->p;
        pub *p = pub_new(d->view.channel, m->offset,
                         (proto_slice){ m->epoch, IDS_LEN }, &d->view.data,
                         d->view.info, d->time_ms);
        pub_unref(m->p);
        m->p = NULL;
        const config_ns *ns = config_ns_of_channel(w->srv->cfg, msg_chan(m),
                                                   m->chan_len);
        if (ns && ns->ack_durable) {
            /* ack "durable": the store replies once MongoDB has it. */
            m->type = MSG_PUB_REP;
            m->code = 0;
            store_push(st, (int)m->limit, p, m);
            pub_unref(p);
            return;
        }
        store_push(st, (int)m->limit, p, NULL);
        pub_unref(p);
    }
    cl_reply(w, m, MSG_PUB_REP, 0);
}

/* ---- reads of the hot window ------------------------------------------- */

typedef struct cl_range {
    const char *epoch;       /* IDS_LEN bytes */
    uint64_t top, first;
    redisReply *recs;        /* array of records */
} cl_range;

static int cl_range_parse(redisReply *r, cl_range *out)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[0]->len != IDS_LEN ||
        r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_INTEGER ||
        r->element[3]->type != REDIS_REPLY_ARRAY)
        return -1;
    out->epoch = r->element[0]->str;
    out->top = (uint64_t)r->element[1]->integer;
    out->first = (uint64_t)r->element[2]->integer;
    out->recs = r->element[3];
    return 0;
}

static void cl_on_ensure(worker *w, cl_req *rq, redisReply *r)
{
    chan_state *c = chanreg_find(&w->reg, rq->name, rq->len);
    cl_range g;
    if (!c || c->cl_state != CL_SYNC)
        return;
    if (cl_range_parse(r, &g) < 0) {
        if (!r)
            return;   /* the link went down: repaired when it is back */
        /* Redis answered with an error (out of memory, a key of another
         * type): the waiting subscribers are told, a later subscribe
         * tries again. */
        log_warn("stream read failed", LOG_STRN("error", r->type ==
                 REDIS_REPLY_ERROR ? r->str : "", r->type ==
                 REDIS_REPLY_ERROR ? r->len : 0));
        c->cl_state = CL_DOWN;
        cl_fail_waiting(w, c);
        cl_release(w, c);
        return;
    }
    c->cl_state = CL_LIVE;
    if (!c->cl_has_epoch) {
        c->cl_has_epoch = 1;
        memcpy(c->epoch, g.epoch, IDS_LEN);
        c->top = g.top;
    } else if (memcmp(c->epoch, g.epoch, IDS_LEN) != 0 || g.top < c->top) {
        cl_reset(w, c, g.epoch, g.top, "Redis lost the stream");
    } else if (g.top > c->top) {
        cl_fill(w, c);   /* missed while the link was down */
    }
    if (!c->cl_filling)
        cl_drain_hold(w, c, 0);
    if (c->cl_state == CL_LIVE && !c->cl_filling)
        cl_answer_waiting(w, c);
    cl_release(w, c);
}

static void cl_on_fill(worker *w, cl_req *rq, redisReply *r)
{
    chan_state *c = chanreg_find(&w->reg, rq->name, rq->len);
    cl_range g;
    if (!c || !c->cl_filling)
        return;
    c->cl_filling = 0;
    if (c->cl_state != CL_LIVE)
        return;
    if (cl_range_parse(r, &g) < 0) {
        /* NULL: the link went down, repaired when it is back. An error
         * reply: the held records wait for the next record to retry. */
        if (r) {
            log_warn("window read failed", LOG_STRN("channel", c->name,
                                                    c->len));
            cl_answer_waiting(w, c);
        }
        return;
    }
    if (memcmp(g.epoch, c->epoch, IDS_LEN) != 0) {
        cl_hold_clear(c);
        cl_reset(w, c, g.epoch, g.top, "Redis lost the stream");
    } else {
        for (size_t i = 0; i < g.recs->elements; i++) {
            redisReply *e = g.recs->element[i];
            if (e->type != REDIS_REPLY_STRING)
                continue;
            pub *p = cl_record(c->name, c->len, e->str, e->len);
            if (p)
                cl_hold_add(c, p);
        }
    }
    /* Everything up to g.top was in the window when it was read, and what
     * came later through pub/sub continues it: a gap left now is lost. */
    cl_drain_hold(w, c, 1);
    if (c->top < g.top && memcmp(g.epoch, c->epoch, IDS_LEN) == 0)
        cl_reset(w, c, c->epoch, g.top,
                 "missed records are no longer in the hot window");
    if (!c->cl_filling)
        cl_answer_waiting(w, c);
    cl_release(w, c);
}

static void cl_recover_read(worker *w, chan_state *c, msg *m, int tries)
{
    cl_link *l = &w->cl->links[c->cl_shard];
    cl_req *rq = cl_req_new(l, RQ_RECOVER, m, c->name, c->len);
    rq->tries = (uint8_t)tries;
    if (cl_read_range(w, l, rq, c->name, c->len, m->offset + 1,
                 c->ns->history_size + CL_WINDOW_MIN, 0,
                 c->ns->history_size) < 0) {
        free(rq);
        cl_fail(w, m, MSG_SUB_REP);
        return;
    }
    c->cl_busy++;
}

/* Publications since+1 .. c->top from the window read and the local ring
 * (what arrived after the read), contiguous and within history_ttl. */
static void cl_on_recover(worker *w, cl_req *rq, redisReply *r)
{
    msg *m = rq->m;
    chan_state *c = chanreg_find(&w->reg, rq->name, rq->len);
    if (!c) {
        cl_fail(w, m, MSG_SUB_REP);
        return;
    }
    c->cl_busy--;
    cl_range g;
    if (c->cl_state != CL_LIVE || cl_range_parse(r, &g) < 0) {
        cl_fail(w, m, MSG_SUB_REP);
        cl_release(w, c);
        return;
    }
    int same = memcmp(m->epoch, c->epoch, IDS_LEN) == 0 &&
               memcmp(g.epoch, c->epoch, IDS_LEN) == 0;
    uint64_t since = m->offset;
    if (!same || since > c->top) {
        cl_sub_done(w, c, m, 0, NULL, 0);
        return;
    }
    /* A store part read before (cl_on_store_read) comes first. */
    size_t n0 = m->n_pubs;
    size_t want = (size_t)(c->top - since), n = n0;
    pub **v = want + n0 ? malloc(sizeof(pub *) * (want + n0)) : NULL;
    if (want + n0 && !v)
        abort();
    if (n0)
        memcpy(v, m->pubs, sizeof(pub *) * n0);
    free(m->pubs);
    m->pubs = NULL;
    m->n_pubs = 0;
    /* history_ttl bounds the window, not durable history (retention). */
    int64_t ttl_ms = cl_store(w, c->ns) ? 0
                                         : (int64_t)c->ns->history_ttl * 1000;
    int64_t oldest = ttl_ms ? owner_now_ms() - ttl_ms : INT64_MIN;
    int ok = 1;
    uint64_t next = since + 1;
    for (size_t i = 0; ok && i < g.recs->elements && next <= c->top; i++) {
        redisReply *e = g.recs->element[i];
        pub *p = e->type == REDIS_REPLY_STRING
                     ? cl_record(c->name, c->len, e->str, e->len) : NULL;
        if (!p || p->offset != next || p->time_ms < oldest) {
            ok = 0;
            pub_unref(p);
            break;
        }
        v[n++] = p;
        next++;
    }
    if (ok && next <= c->top) {
        /* Published after the read: from the local ring. */
        uint32_t more = (uint32_t)(c->top - next + 1);
        size_t got = history_select(&c->hist, next - 1, more, 0, v + n);
        if (got != more || v[n]->offset != next)
            ok = 0;
        n += got;
    }
    if (!ok) {
        for (size_t i = n0; i < n; i++)
            pub_unref(v[i]);
        m->pubs = v;     /* the store part stays for another try */
        m->n_pubs = n0;
        /* Where the window's answer starts: the read is bounded to the
         * newest history_size (none when 0). */
        uint32_t keep = c->ns->history_size;
        uint64_t wfirst = keep ? g.first : 0;
        if (keep && g.top >= keep && g.top - keep + 1 > wfirst)
            wfirst = g.top - keep + 1;
        if (rq->tries + 1 < CL_RECOVER_TRIES && wfirst && wfirst <= next) {
            cl_recover_read(w, c, m, rq->tries + 1);
            return;
        }
        /* Older than the hot window: the durable store has the rest. */
        uint64_t hi = wfirst ? wfirst : c->top + 1;
        if (cl_store(w, c->ns) && hi > since + 1) {
            c->cl_busy++;
            cl_read_store(w, m, c->epoch, since, hi,
                          (uint32_t)(hi - since - 1), 0, 1);
            return;
        }
        cl_sub_done(w, c, m, 0, NULL, 0);
        return;
    }
    cl_sub_done(w, c, m, 1, v, n);
}

static void cluster_history(worker *w, msg *m)
{
    const config_ns *ns =
        config_ns_of_channel(w->srv->cfg, msg_chan(m), m->chan_len);
    if (!ns) {
        cl_reply(w, m, MSG_HIST_REP, PROTO_E_BAD_CHANNEL);
        return;
    }
    cl_link *l = cl_link_of(w->cl, msg_chan(m), m->chan_len);
    int has_since = m->flag & 1, reverse = (m->flag >> 1) & 1;
    cl_req *rq = cl_req_new(l, RQ_HIST, m, msg_chan(m), m->chan_len);
    /* m->pubs may hold a store part already (cl_on_store_read). */
    if (cl_read_range(w, l, rq, msg_chan(m), m->chan_len,
                 has_since ? m->offset + 1 : 1,
                 m->limit - (uint32_t)m->n_pubs, reverse,
                 ns->history_size) < 0) {
        free(rq);
        cl_fail(w, m, MSG_HIST_REP);
    }
}

static void cl_on_hist(worker *w, cl_req *rq, redisReply *r)
{
    msg *m = rq->m;
    cl_range g;
    if (cl_range_parse(r, &g) < 0) {
        cl_fail(w, m, MSG_HIST_REP);
        return;
    }
    const config_ns *ns = config_ns_of_channel(w->srv->cfg, rq->name, rq->len);
    int has_since = m->flag & 1, reverse = (m->flag >> 1) & 1;
    int64_t ttl_ms = ns && !cl_store(w, ns) ? (int64_t)ns->history_ttl * 1000
                                            : 0;
    int64_t oldest = ttl_ms ? owner_now_ms() - ttl_ms : INT64_MIN;
    uint32_t keep = ns ? ns->history_size : 0;
    uint64_t first = g.first;
    if (keep && g.top >= keep && g.top - keep + 1 > first)
        first = g.top - keep + 1;
    if (!keep)
        first = g.top + 1;
    /* Durable: what lies before the window comes from the store. Forward,
     * the store part is read first and the window after it in another
     * pass (a prefix in m->pubs); reverse, the window's newest first, the
     * store's older ones appended. */
    store *st = cl_store(w, ns);
    uint64_t wstart = first ? first : g.top + 1;
    uint64_t lo = has_since ? m->offset : 0;
    int from_store = st && !(m->flag & CL_HIST_STORE_DONE) &&
                     lo < g.top && wstart > lo + 1 &&
                     (!has_since || (m->epoch_len == IDS_LEN &&
                                     memcmp(m->epoch, g.epoch, IDS_LEN) == 0));
    if (from_store) {
        memcpy(m->epoch, g.epoch, IDS_LEN);
        m->epoch[IDS_LEN] = '\0';
        m->epoch_len = IDS_LEN;
        m->snap_top = g.top;
        if (!reverse) {
            uint32_t room = m->limit - (uint32_t)m->n_pubs;
            m->offset = lo;
            cl_read_store(w, m, g.epoch, lo, wstart, room, 0, has_since);
            return;
        }
    }
    size_t n0 = m->n_pubs;
    pub **pre = m->pubs;
    m->pubs = NULL;
    m->n_pubs = 0;
    int code = 0;
    if (has_since && !from_store) {
        int same = m->epoch_len == IDS_LEN &&
                   memcmp(m->epoch, g.epoch, IDS_LEN) == 0;
        if (!same || m->offset > g.top ||
            (m->offset < g.top && (g.first == 0 || first > m->offset + 1)))
            code = PROTO_E_UNRECOVERABLE;
    }
    size_t n = 0;
    if (!code && g.recs->elements) {
        m->pubs = malloc(sizeof(pub *) * g.recs->elements);
        if (!m->pubs)
            abort();
        for (size_t i = 0; i < g.recs->elements; i++) {
            redisReply *e = g.recs->element[i];
            if (e->type != REDIS_REPLY_STRING)
                continue;
            pub *p = cl_record(rq->name, rq->len, e->str, e->len);
            if (!p)
                continue;
            if (p->time_ms < oldest) {
                /* Older than history_ttl: not retained. */
                if (has_since && !reverse && n == 0 &&
                    p->offset == m->offset + 1)
                    code = PROTO_E_UNRECOVERABLE;
                pub_unref(p);
                continue;
            }
            m->pubs[n++] = p;
        }
        if (code) {
            for (size_t i = 0; i < n; i++)
                pub_unref(m->pubs[i]);
            n = 0;
        }
    }
    m->n_pubs = n;
    if (from_store && !code && n < m->limit) {
        /* reverse: older ones from the store, after the window's */
        cl_read_store(w, m, g.epoch, lo, wstart, m->limit - (uint32_t)n, 1,
                      0);
        return;
    }
    if (n0) {
        /* A store part read before: it comes first. */
        if (code) {
            for (size_t i = 0; i < n0; i++)
                pub_unref(pre[i]);
            free(pre);
        } else {
            pre = realloc(pre, sizeof(pub *) * (n0 + n));
            if (!pre)
                abort();
            if (n)
                memcpy(pre + n0, m->pubs, sizeof(pub *) * n);
            free(m->pubs);
            m->pubs = pre;
            m->n_pubs = n0 + n;
        }
    } else {
        free(pre);
    }
    memcpy(m->epoch, g.epoch, IDS_LEN);
    m->epoch[IDS_LEN] = '\0';
    m->epoch_len = IDS_LEN;
    m->offset = g.top;
    cl_reply(w, m, MSG_HIST_REP, code);
}

/* ---- presence ---------------------------------------------------------- */

static void cl_presence_script(worker *w, chan_state *c, int join,
                               const char *client, const char *user)
{
    cluster *cl = w->cl;
    cl_link *l = &cl->links[c->cl_shard];
    char kt[CL_KEY_MAX], ku[CL_KEY_MAX], kc[CL_KEY_MAX], ttl[24];
    snprintf(ttl, sizeof(ttl), "%llu",
             (unsigned long long)w->srv->cfg->presence_ttl * 1000);
    const char *announce = c->ns->join_leave ? "1" : "0";
    size_t lt = cl_key(cl, kt, c->name, c->len, ":pt");
    size_t lu = cl_key(cl, ku, c->name, c->len, ":pu");
    size_t lc = cl_key(cl, kc, c->name, c->len, "");
    cl_req *rq = cl_req_new(l, RQ_IGNORE, NULL, NULL, 0);
    int rc;
    if (join) {
        const char *kv[] = { kt, ku, client, user, ttl, kc, announce };
        size_t kl[] = { lt, lu, IDS_LEN, strlen(user), strlen(ttl), lc, 1 };
        rc = cl_eval(l, rq, SC_JOIN, 2, kv, kl, 7);
    } else {
        const char *kv[] = { kt, ku, client, kc, announce };
        size_t kl[] = { lt, lu, IDS_LEN, lc, 1 };
        rc = cl_eval(l, rq, SC_LEAVE, 2, kv, kl, 5);
    }
    if (rc < 0)
        free(rq);   /* the refresh after reconnecting puts it right */
}

/* Renews this node's entries of every channel it has subscribers of, and
 * expires (and announces) the entries of nodes that stopped. */
static void cl_presence_refresh(worker *w)
{
    cluster *cl = w->cl;
    chan_state *c, *tmp;
    HASH_ITER(hh, w->reg.chans, c, tmp) {
        if (!(c->ns->presence || c->ns->join_leave) ||
            (!c->total && !c->n_presence))
            continue;
        cl_link *l = &cl->links[c->cl_shard];
        if (!l->up)
            continue;
        size_t n = 7 + 2 * (size_t)c->n_presence;
        const char **kv = malloc(sizeof(char *) * n);
        size_t *kl = malloc(sizeof(size_t) * n);
        char kt[CL_KEY_MAX], ku[CL_KEY_MAX], kc[CL_KEY_MAX], ttl[24];
        if (!kv || !kl)
            abort();
        snprintf(ttl, sizeof(ttl), "%llu",
                 (unsigned long long)w->srv->cfg->presence_ttl * 1000);
        kv[0] = kt;
        kl[0] = cl_key(cl, kt, c->name, c->len, ":pt");
        kv[1] = ku;
        kl[1] = cl_key(cl, ku, c->name, c->len, ":pu");
        kv[2] = ttl;
        kl[2] = strlen(ttl);
        kv[3] = kc;
        kl[3] = cl_key(cl, kc, c->name, c->len, "");
        kv[4] = c->ns->join_leave ? "1" : "0";
        kl[4] = 1;
        size_t k = 5;
        presence_entry *e, *et;
        HASH_ITER(hh, c->presence, e, et) {
            kv[k] = e->client;
            kl[k++] = IDS_LEN;
            kv[k] = e->user;
            kl[k++] = strlen(e->user);
        }
        /* cl_eval takes at most 61 arguments: larger sets go directly. */
        const char **argv = malloc(sizeof(char *) * (k + 3));
        size_t *lens = malloc(sizeof(size_t) * (k + 3));
        if (!argv || !lens)
            abort();
        argv[0] = "EVALSHA";
        lens[0] = 7;
        argv[1] = cl->sha[SC_REFRESH];
        lens[1] = 40;
        argv[2] = "2";
        lens[2] = 1;
        memcpy(argv + 3, kv, sizeof(char *) * k);
        memcpy(lens + 3, kl, sizeof(size_t) * k);
        cl_req *rq = cl_req_new(l, RQ_IGNORE, NULL, NULL, 0);
        if (cl_send(l, rq, (int)(k + 3), argv, lens) < 0)
            free(rq);
        free(argv);
        free(lens);
        free(kv);
        free(kl);
    }
}

/* A channel with subscribers but no publications for stream_ttl would
 * lose its stream in Redis and start a new epoch under them: keep the keys
 * of followed streams alive. */
static void cl_keep_streams(worker *w)
{
    cluster *cl = w->cl;
    chan_state *c, *tmp;
    HASH_ITER(hh, w->reg.chans, c, tmp) {
        cl_link *l = &cl->links[c->cl_shard];
        if (c->cl_state != CL_LIVE || !c->total || !l->up)
            continue;
        char ttl[16];
        uint32_t t = w->srv->cfg->stream_ttl > c->ns->history_ttl
                         ? w->srv->cfg->stream_ttl : c->ns->history_ttl;
        snprintf(ttl, sizeof(ttl), "%u", t);
        for (int k = 0; k < 2; k++) {
            char key[CL_KEY_MAX];
            size_t kl = cl_key(cl, key, c->name, c->len, k ? ":w" : ":s");
            const char *argv[] = { "EXPIRE", key, ttl };
            size_t lens[] = { 6, kl, strlen(ttl) };
            cl_req *rq = cl_req_new(l, RQ_IGNORE, NULL, NULL, 0);
            if (cl_send(l, rq, 3, argv, lens) < 0)
                free(rq);
        }
    }
}

static void cluster_presence(worker *w, msg *m)
{
    cluster *cl = w->cl;
    cl_link *l = cl_link_of(cl, msg_chan(m), m->chan_len);
    char kt[CL_KEY_MAX], ku[CL_KEY_MAX];
    const char *kv[] = { kt, ku };
    size_t kl[] = { cl_key(cl, kt, msg_chan(m), m->chan_len, ":pt"),
                    cl_key(cl, ku, msg_chan(m), m->chan_len, ":pu") };
    cl_req *rq = cl_req_new(l, RQ_PRES, m, NULL, 0);
    if (cl_eval(l, rq, SC_QUERY, 2, kv, kl, 2) < 0) {
        free(rq);
        cl_fail(w, m, MSG_PRES_REP);
    }
}

static void cl_on_pres(worker *w, cl_req *rq, redisReply *r)
{
    msg *m = rq->m;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
        cl_fail(w, m, MSG_PRES_REP);
        return;
    }
    size_t n = r->elements / 2, bytes = sizeof(proto_presence_entry) * n;
    for (size_t i = 0; i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING) {
            cl_fail(w, m, MSG_PRES_REP);
            return;
        }
        bytes += r->element[i]->len;
    }
    if (n) {
        proto_presence_entry *v = malloc(bytes);
        if (!v)
            abort();
        char *s = (char *)(v + n);
        for (size_t i = 0; i < n; i++) {
            redisReply *cr = r->element[2 * i], *ur = r->element[2 * i + 1];
            memcpy(s, cr->str, cr->len);
            v[i].client = (proto_slice){ s, cr->len };
            s += cr->len;
            memcpy(s, ur->str, ur->len);
            v[i].user = (proto_slice){ s, ur->len };
            s += ur->len;
        }
        m->extra = v;
        m->n_extra = n;
    }
    cl_reply(w, m, MSG_PRES_REP, 0);
}

/* A join/leave record "J:client:user" from pub/sub. */
static void cl_on_joinleave(worker *w, chan_state *c, const char *rec,
                            size_t len)
{
    if (len < 2 + IDS_LEN + 1 || rec[2 + IDS_LEN] != ':')
        return;
    const char *client = rec + 2, *user = rec + 3 + IDS_LEN;
    size_t ulen = len - (3 + IDS_LEN);
    for (uint32_t i = 0; i < w->srv->n_workers; i++) {
        if (!c->wcount[i])
            continue;
        msg *j = msg_new(MSG_JOIN, c->name, c->len, user, ulen);
        j->flag = rec[0] == 'J';
        memcpy(j->client, client, IDS_LEN);
        j->client[IDS_LEN] = '\0';
        worker_post(w->srv, (uint16_t)i, j);
    }
}

/* ---- replies ------------------------------------------------------------ */

static void cl_link_check_up(cl_link *l);

static void cl_on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    cl_req *rq = priv;
    cl_link *l = rq->l;
    worker *w = l->cl->w;
    redisReply *rep = r;
    (void)ac;
    if (l->pending)
        l->pending--;
    l->progress_ms = cl_now(l->cl);
    switch (rq->kind) {
    case RQ_SCRIPT:
        if (rep && rep->type == REDIS_REPLY_STRING && rep->len == 40) {
            memcpy(l->cl->sha[rq->script], rep->str, 40);
            l->cl->sha[rq->script][40] = '\0';
            if (--l->scripts_left == 0)
                cl_link_check_up(l);
        } else if (rep) {
            /* Wrong password, a read-only replica, ...: the reason goes
             * into the one "broker down" line of this outage. */
            cl_link_down(l, rep->type == REDIS_REPLY_ERROR
                                ? rep->str : "script load failed");
        }
        break;
    case RQ_PUB: cl_on_pub(w, rq, rep); break;
    case RQ_ENSURE: cl_on_ensure(w, rq, rep); break;
    case RQ_FILL: cl_on_fill(w, rq, rep); break;
    case RQ_RECOVER: cl_on_recover(w, rq, rep); break;
    case RQ_HIST: cl_on_hist(w, rq, rep); break;
    case RQ_PRES: cl_on_pres(w, rq, rep); break;
    default:
        /* Once per outage: a link that keeps failing its AUTH would
         * otherwise log the same line at every reconnect. */
        if (rep && rep->type == REDIS_REPLY_ERROR &&
            (l->up || !l->down_logged))
            log_warn("Redis command failed",
                     LOG_STRN("error", rep->str, rep->len));
        break;
    }
    if (rep && rep->type == REDIS_REPLY_ERROR && l->up &&
        strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        /* SCRIPT FLUSH, or a failover to a replica without them: the
         * reconnect loads them again. */
        cl_link_down(l, "scripts missing in Redis");
    }
    free(rq);
}

/* Everything that arrives on the pub/sub connection. */
static void cl_on_sub(redisAsyncContext *ac, void *r, void *priv)
{
    cl_link *l = priv;
    cluster *cl = l->cl;
    worker *w = cl->w;
    redisReply *rep = r;
    (void)ac;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = rep->element[0]->str, *name = rep->element[1]->str;
    size_t nlen = rep->element[1]->len;
    if (nlen == strlen(cl->ctl) && memcmp(name, cl->ctl, nlen) == 0) {
        if (strcmp(kind, "subscribe") == 0) {
            l->sub_ready = 1;
            cl_link_check_up(l);
        }
        return;
    }
    /* "prefix:{channel}" */
    size_t plen = strlen(w->srv->cfg->redis_prefix);
    if (nlen < plen + 4 || name[plen] != ':' || name[plen + 1] != '{' ||
        name[nlen - 1] != '}')
        return;
    const char *chan = name + plen + 2;
    size_t clen = nlen - plen - 3;
    chan_state *c = chanreg_find(&w->reg, chan, clen);
    if (!c)
        return;
    if (strcmp(kind, "message") == 0) {
        redisReply *e = rep->element[2];
        if (e->type != REDIS_REPLY_STRING || e->len == 0)
            return;
        if (c->cl_state == CL_UNSUBSCRIBING || c->cl_state == CL_IDLE ||
            c->cl_state == CL_SUBSCRIBING)
            return;
        if (e->str[0] == 'J' || e->str[0] == 'L') {
            if (c->cl_state == CL_LIVE)
                cl_on_joinleave(w, c, e->str, e->len);
            return;
        }
        pub *p = cl_record(c->name, c->len, e->str, e->len);
        if (p)
            cl_on_record(w, c, p);
    } else if (strcmp(kind, "subscribe") == 0) {
        if (c->cl_state == CL_SUBSCRIBING)
            cl_ensure(w, c);
    } else if (strcmp(kind, "unsubscribe") == 0) {
        if (c->cl_state != CL_UNSUBSCRIBING)
            return;
        c->cl_state = CL_IDLE;
        /* Not followed while unsubscribed: start again from Redis's top. */
        c->cl_has_epoch = 0;
        if (c->cl_wait)
            cl_redis_subscribe(w, c);
        else if (!c->total && !c->cl_busy)
            chanreg_drop(&w->reg, c);
    }
}

static int cl_sub_cmd(cl_link *l, const char *verb, const char *key,
                      size_t klen)
{
    if (!l->sub || !l->up)
        return -1;
    const char *argv[] = { verb, key };
    size_t lens[] = { strlen(verb), klen };
    return redisAsyncCommandArgv(l->sub, cl_on_sub, l, 2, argv, lens) ==
                   REDIS_OK ? 0 : -1;
}

/* ---- links -------------------------------------------------------------- */

static void cl_link_check_up(cl_link *l)
{
    if (l->up || !l->connecting || l->scripts_left || !l->sub_ready)
        return;
    worker *w = l->cl->w;
    l->up = 1;
    l->connecting = 0;
    l->attempt = 0;
    atomic_fetch_sub(&w->srv->broker_down, 1);
    log_info("broker up", LOG_INT("worker", w->index),
             LOG_STR("redis", l->rc->host), LOG_INT("port", l->rc->port));
    l->down_logged = 0;
    /* Resubscribe and repair every channel that has subscribers here. */
    chan_state *c, *tmp;
    HASH_ITER(hh, w->reg.chans, c, tmp) {
        if (c->cl_shard != l->idx)
            continue;
        if (c->cl_state == CL_DOWN && (c->total || c->cl_wait))
            cl_redis_subscribe(w, c);
    }
    /* Presence entries of this node went missing if Redis restarted. */
    l->cl->next_refresh_ms = 0;
}

/* The link failed (or timed out): fail what waits on it, keep the
 * subscribers, reconnect later. */
static void cl_link_down(cl_link *l, const char *why)
{
    cluster *cl = l->cl;
    worker *w = cl->w;
    int was_up = l->up;
    if (l->up) {
        l->up = 0;
        atomic_fetch_add(&w->srv->broker_down, 1);
    }
    l->connecting = 0;
    l->sub_ready = 0;
    l->scripts_left = 0;
    if ((was_up || !l->down_logged) && !cl->stopping) {
        log_warn("broker down", LOG_INT("worker", w->index),
                 LOG_STR("redis", l->rc->host), LOG_INT("port", l->rc->port),
                 LOG_STR("reason", why));
        l->down_logged = 1;
    }
    /* Contexts: freeing runs their pending callbacks with NULL replies. */
    redisAsyncContext *cmd = l->cmd, *sub = l->sub;
    l->cmd = l->sub = NULL;
    if (cmd)
        redisAsyncFree(cmd);
    if (sub)
        redisAsyncFree(sub);
    l->pending = 0;
    chan_state *c, *tmp;
    HASH_ITER(hh, w->reg.chans, c, tmp) {
        if (c->cl_shard != l->idx || c->cl_state == CL_IDLE)
            continue;
        cl_fail_waiting(w, c);
        cl_hold_clear(c);
        c->cl_filling = 0;
        c->cl_state = CL_DOWN;
        if (!c->total && !c->cl_busy)
            chanreg_drop(&w->reg, c);
    }
    if (!cl->stopping) {
        uint32_t a = l->attempt < 6 ? l->attempt : 6;
        uint64_t cap = (uint64_t)CL_BACKOFF_BASE_MS << a;
        if (cap > CL_BACKOFF_CAP_MS)
            cap = CL_BACKOFF_CAP_MS;
        l->attempt++;
        l->retry_at_ms = cl_now(cl) + ids_next(&w->rng) % (cap + 1);
    }
}

static void cl_on_disconnect(const redisAsyncContext *ac, int status)
{
    cl_link *l = ac->data;
    (void)status;
    if (!l)
        return;
    /* Called from hiredis: the context is going away by itself. */
    if (l->cmd == ac)
        l->cmd = NULL;
    if (l->sub == ac)
        l->sub = NULL;
    if (l->cmd || l->sub || l->up || l->connecting)
        cl_link_down(l, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void cl_on_connect(const redisAsyncContext *ac, int status)
{
    cl_link *l = ac->data;
    if (status == REDIS_OK || !l)
        return;
    /* hiredis frees the context after this callback. */
    if (l->cmd == ac)
        l->cmd = NULL;
    if (l->sub == ac)
        l->sub = NULL;
    cl_link_down(l, ac->errstr[0] ? ac->errstr : "connect failed");
}

static redisAsyncContext *cl_connect_one(cl_link *l)
{
    redisAsyncContext *ac = redisAsyncConnect(l->rc->host, l->rc->port);
    if (!ac)
        return NULL;
    if (ac->err) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = l;
    redisLibuvAttach(ac, &l->cl->w->loop);
    redisAsyncSetConnectCallback(ac, cl_on_connect);
    redisAsyncSetDisconnectCallback(ac, cl_on_disconnect);
    return ac;
}

/* AUTH and SELECT first on each connection; their replies count against
 * the timeout like any command. */
static void cl_prelude(cl_link *l, redisAsyncContext *ac)
{
    char db[16];
    if (l->rc->password[0]) {
        const char *argv[] = { "AUTH", l->rc->password };
        size_t lens[] = { 4, strlen(l->rc->password) };
        cl_req *rq = cl_req_new(l, RQ_IGNORE, NULL, NULL, 0);
        if (redisAsyncCommandArgv(ac, cl_on_reply, rq, 2, argv, lens) ==
            REDIS_OK)
            l->pending++;
        else
            free(rq);
    }
    if (l->rc->db) {
        snprintf(db, sizeof(db), "%u", l->rc->db);
        const char *argv[] = { "SELECT", db };
        size_t lens[] = { 6, strlen(db) };
        cl_req *rq = cl_req_new(l, RQ_IGNORE, NULL, NULL, 0);
        if (redisAsyncCommandArgv(ac, cl_on_reply, rq, 2, argv, lens) ==
            REDIS_OK)
            l->pending++;
        else
            free(rq);
    }
}

static void cl_link_connect(cl_link *l)
{
    l->retry_at_ms = 0;
    l->connecting = 1;
    l->connect_ms = cl_now(l->cl);
    l->progress_ms = l->connect_ms;
    l->cmd = cl_connect_one(l);
    l->sub = l->cmd ? cl_connect_one(l) : NULL;
    if (!l->cmd || !l->sub) {
        cl_link_down(l, "cannot create a connection");
        return;
    }
    l->pending = 0;
    cl_prelude(l, l->cmd);
    cl_prelude(l, l->sub);
    l->scripts_left = SC_N;
    for (int i = 0; i < SC_N; i++) {
        const char *argv[] = { "SCRIPT", "LOAD", scripts[i] };
        size_t lens[] = { 6, 4, strlen(scripts[i]) };
        cl_req *rq = cl_req_new(l, RQ_SCRIPT, NULL, NULL, 0);
        rq->script = (uint8_t)i;
        if (cl_send(l, rq, 3, argv, lens) < 0) {
            free(rq);
            cl_link_down(l, "cannot send");
            return;
        }
    }
    const char *argv[] = { "SUBSCRIBE", l->cl->ctl };
    size_t lens[] = { 9, strlen(l->cl->ctl) };
    redisAsyncCommandArgv(l->sub, cl_on_sub, l, 2, argv, lens);
}

static void cl_on_timer(uv_timer_t *t)
{
    cluster *cl = t->data;
    worker *w = cl->w;
    uint64_t now = cl_now(cl);
    uint64_t timeout = w->srv->cfg->redis_timeout_ms;
    for (uint32_t i = 0; i < cl->n; i++) {
        cl_link *l = &cl->links[i];
        if (l->cmd && l->pending && now - l->progress_ms > timeout) {
            cl_link_down(l, l->connecting ? "connect timeout"
                                          : "no answer in time");
        } else if (l->connecting && now - l->connect_ms > timeout) {
            cl_link_down(l, "connect timeout");
        } else if (l->up && !l->pending &&
                   now - l->last_send_ms >= CL_PING_IDLE_MS) {
            const char *argv[] = { "PING" };
            size_t lens[] = { 4 };
            cl_req *rq = cl_req_new(l, RQ_IGNORE, NULL, NULL, 0);
            if (cl_send(l, rq, 1, argv, lens) < 0)
                free(rq);
        }
        if (!l->cmd && !l->sub && !l->connecting && l->retry_at_ms &&
            now >= l->retry_at_ms)
            cl_link_connect(l);
    }
    if (now >= cl->next_refresh_ms) {
        cl->next_refresh_ms =
            now + (uint64_t)w->srv->cfg->presence_ttl * 1000 / 3;
        cl_presence_refresh(w);
    }
    if (now >= cl->next_keep_ms) {
        uint64_t every = (uint64_t)w->srv->cfg->stream_ttl * 1000 / 4;
        if (cl->next_keep_ms)
            cl_keep_streams(w);
        cl->next_keep_ms = now + every;
    }
}

/* ---- public ------------------------------------------------------------- */

int cluster_start(worker *w)
{
    const config *cfg = w->srv->cfg;
    cluster *cl = calloc(1, sizeof(*cl));
    if (!cl)
        abort();
    cl->w = w;
    cl->n = cfg->n_redis;
    cl->links = calloc(cl->n, sizeof(cl_link));
    if (!cl->links)
        abort();
    snprintf(cl->ctl, sizeof(cl->ctl), "%s:!node", cfg->redis_prefix);
    w->cl = cl;
    w->reg.min_ring = CL_WINDOW_MIN;
    uv_timer_init(&w->loop, &cl->timer);
    cl->timer.data = cl;
    uv_timer_start(&cl->timer, cl_on_timer, CL_TICK_MS, CL_TICK_MS);
    for (uint32_t i = 0; i < cl->n; i++) {
        cl_link *l = &cl->links[i];
        l->cl = cl;
        l->idx = i;
        l->rc = &cfg->redis[i];
        /* down_logged = 0: a first connect that fails says "broker
         * down" once, with the reason, then stays quiet while retrying. */
        cl_link_connect(l);
    }
    return 0;
}

static void cl_timer_closed(uv_handle_t *h)
{
    (void)h;
}

void cluster_stop(worker *w)
{
    cluster *cl = w->cl;
    if (!cl)
        return;
    cl->stopping = 1;
    uv_timer_stop(&cl->timer);
    uv_close((uv_handle_t *)&cl->timer, cl_timer_closed);
    for (uint32_t i = 0; i < cl->n; i++) {
        cl_link *l = &cl->links[i];
        redisAsyncContext *cmd = l->cmd, *sub = l->sub;
        l->cmd = l->sub = NULL;
        l->up = 0;
        l->connecting = 0;
        if (cmd)
            redisAsyncFree(cmd);
        if (sub)
            redisAsyncFree(sub);
    }
}

void cluster_free(worker *w)
{
    if (!w->cl)
        return;
    free(w->cl->links);
    free(w->cl);
    w->cl = NULL;
}

static void cluster_history(worker *w, msg *m);

/* A store read is back (cl_read_store). */
static void cl_on_store_read(worker *w, msg *m)
{
    m->type = m->req;
    int code = m->code;
    m->code = 0;
    if (m->req == MSG_SUB_REQ) {
        chan_state *c = chanreg_find(&w->reg, msg_chan(m), m->chan_len);
        if (!c) {
            cl_fail(w, m, MSG_SUB_REP);
            return;
        }
        c->cl_busy--;
        if (code == PROTO_E_NOT_AVAILABLE) {
            m->errmsg = "durable store unavailable";
            cl_reply(w, m, MSG_SUB_REP, PROTO_E_NOT_AVAILABLE);
            cl_release(w, c);
        } else if (code) {
            cl_sub_done(w, c, m, 0, NULL, 0);
        } else if (c->cl_state != CL_LIVE) {
            cl_fail(w, m, MSG_SUB_REP);
            cl_release(w, c);
        } else {
            /* The window and the ring continue after the store part. */
            if (m->n_pubs)
                m->offset = m->pubs[m->n_pubs - 1]->offset;
            cl_recover_read(w, c, m, 0);
        }
        return;
    }
    if (code) {
        for (size_t i = 0; i < m->n_pubs; i++)
            pub_unref(m->pubs[i]);
        m->n_pubs = 0;
        if (code == PROTO_E_NOT_AVAILABLE)
            m->errmsg = "durable store unavailable";
        cl_reply(w, m, MSG_HIST_REP, code);
        return;
    }
    int reverse = (m->flag >> 1) & 1;
    uint64_t got = m->n_pubs ? m->pubs[m->n_pubs - 1]->offset : m->offset;
    if (reverse || m->n_pubs >= m->limit || got >= m->snap_top) {
        m->offset = m->snap_top;
        cl_reply(w, m, MSG_HIST_REP, 0);
        return;
    }
    /* Forward: the window continues after the store part; with nothing
     * stored before it, the window's oldest are the oldest retained. */
    if (m->n_pubs || (m->flag & 1)) {
        m->flag |= 1;
        m->offset = got;
    } else {
        m->flag |= CL_HIST_STORE_DONE;
    }
    cluster_history(w, m);
}

void cluster_handle(worker *w, msg *m)
{
    switch (m->type) {
    case MSG_STORE_READ: cl_on_store_read(w, m); break;
    case MSG_SUB_REQ: cluster_subscribe(w, m); break;
    case MSG_UNSUB: cluster_unsubscribe(w, m); break;
    case MSG_PUB_REQ: cluster_publish(w, m); break;
    case MSG_HIST_REQ: cluster_history(w, m); break;
    case MSG_PRES_REQ: cluster_presence(w, m); break;
    default:
        log_error("unexpected message for channel owner",
                  LOG_INT("type", m->type));
        msg_free(m);
    }
}

void cluster_expire(worker *w)
{
    int64_t now = owner_now_ms();
    chan_state *c, *tmp;
    HASH_ITER(hh, w->reg.chans, c, tmp)
        history_expire(&c->hist, now, (int64_t)c->ns->history_ttl * 1000);
}
