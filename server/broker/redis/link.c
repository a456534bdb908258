/*
 * Links to the Redis servers (redis_priv.h): per worker and server a
 * command connection and a pub/sub connection, hiredis async on the
 * worker's libuv loop.
 *
 * hiredis 0.14 has no timeouts and no reconnect: every command on the
 * command connection is counted, and a link whose oldest unanswered
 * command (or connect) is older than redis_timeout_ms is torn down with
 * redisAsyncFree (which fails every pending callback with a NULL reply)
 * and reconnected after a random delay in [0, min(5 s, 100 ms * 2^n)].
 *
 * The pub/sub connection answers no commands that could be timed (in
 * subscribed mode hiredis would hand a pong to the wrong callback), and
 * a flow that silently stops (a firewall or NAT that lost it) would leave
 * the node delivering nothing while its command connection works. So the
 * worker's heartbeat goes through it: every min(1 s, redis_timeout_ms / 2)
 * the command connection PUBLISHes a sequence number to the worker's
 * private heartbeat channel, which the pub/sub connection subscribes to;
 * a heartbeat not back within redis_timeout_ms takes the link down (both
 * connections; the reconnect repairs the streams as after any outage).
 * The PUBLISH is also the command connection's keep-alive probe. Both
 * sockets have TCP keepalive too, for peers that vanished without a word.
 *
 * hiredis resolves a host name with a blocking getaddrinfo on the calling
 * thread, which would stop the worker's loop (every connection of it) for
 * as long as a resolver takes, at every reconnect. A name is therefore
 * resolved with uv_getaddrinfo on libuv's thread pool and hiredis is given
 * the numeric address (logs keep the name); a resolution counts against
 * the connect timeout like the connect itself.
 *
 * A link is up when both connections are open, AUTH and SELECT are done,
 * the scripts are loaded and the heartbeat channel is subscribed. "broker
 * down" is logged once per outage with Redis's reason (a wrong password
 * would otherwise repeat at every reconnect), "broker up" at every
 * transition.
 */
#include "broker/redis/redis_priv.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <hiredis/adapters/libuv.h>

#include "base/log.h"
#include "base/mem.h"

#define LINK_HEARTBEAT_MS 1000   /* at most; redis_timeout_ms / 2 if less */
#define LINK_BACKOFF_BASE_MS 100
#define LINK_BACKOFF_CAP_MS 5000
#define LINK_ARGS_ON_STACK 64

rreq *rreq_new(rlink *l, rreq_fn done, const char *chan, size_t len)
{
    rreq *rq = mem_calloc(1, sizeof(*rq) + len + 1);
    rq->l = l;
    rq->done = done;
    rq->len = (uint16_t)len;
    if (len)
        memcpy(rq->name, chan, len);
    return rq;
}

static void rlink_on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    rreq *rq = priv;
    rlink *l = rq->l;
    redisReply *rep = r;
    (void)ac;
    if (l->pending)
        l->pending--;
    l->progress_ms = redis_now(l->rb);
    if (rq->done) {
        rq->done(rq, rep);
    } else if (rep && rep->type == REDIS_REPLY_ERROR &&
               (l->up || !l->down_logged)) {
        /* Once per outage: a link that keeps failing its AUTH would
         * otherwise log the same line at every reconnect. */
        log_warn("Redis command failed",
                 LOG_STRN("error", rep->str, rep->len));
    }
    if (rep && rep->type == REDIS_REPLY_ERROR && l->up &&
        strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        /* SCRIPT FLUSH, or a failover to a replica without them: the
         * reconnect loads them again. */
        rlink_down(l, "scripts missing in Redis");
    }
    free(rq);
}

static int rlink_command(rlink *l, redisAsyncContext *ac, rreq *rq,
                         int argc, const char **argv, const size_t *lens)
{
    if (redisAsyncCommandArgv(ac, rlink_on_reply, rq, argc, argv, lens) !=
        REDIS_OK)
        return -1;
    if (l->pending++ == 0)
        l->progress_ms = redis_now(l->rb);
    return 0;
}

int rlink_send(rlink *l, rreq *rq, int argc, const char **argv,
               const size_t *lens)
{
    /* Before the scripts are loaded only the connect sequence may go. */
    if (!l->cmd || !l->up)
        return -1;
    return rlink_command(l, l->cmd, rq, argc, argv, lens);
}

int rlink_eval(rlink *l, rreq *rq, int script, int nkeys, const char **kv,
               const size_t *kl, int nargs)
{
    const char *argv_s[LINK_ARGS_ON_STACK];
    size_t lens_s[LINK_ARGS_ON_STACK];
    int total = 3 + nargs;
    const char **argv = argv_s;
    size_t *lens = lens_s;
    if (total > LINK_ARGS_ON_STACK) {
        /* Presence refresh of a large channel. */
        argv = mem_alloc(sizeof(*argv) * (size_t)total);
        lens = mem_alloc(sizeof(*lens) * (size_t)total);
    }
    char nk[8];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = l->rb->sha[script];
    lens[1] = strlen(argv[1]);
    argv[2] = nk;
    lens[2] = strlen(nk);
    memcpy(argv + 3, kv, sizeof(*argv) * (size_t)nargs);
    memcpy(lens + 3, kl, sizeof(*lens) * (size_t)nargs);
    int rc = rlink_send(l, rq, total, argv, lens);
    if (argv != argv_s) {
        free(argv);
        free(lens);
    }
    return rc;
}

static void rlink_check_up(rlink *l)
{
    if (l->up || !l->connecting || l->scripts_left || !l->sub_ready)
        return;
    server *srv = l->rb->srv;
    l->up = 1;
    l->connecting = 0;
    l->attempt = 0;
    atomic_fetch_sub(&srv->broker_down, 1);
    log_info("broker up", LOG_INT("worker", l->rb->worker),
             LOG_STR("redis", l->rc->host), LOG_INT("port", l->rc->port));
    l->down_logged = 0;
    redis_link_up(l);
}

/* Everything that arrives on the pub/sub connection. */
static void rlink_on_sub(redisAsyncContext *ac, void *r, void *priv)
{
    rlink *l = priv;
    redisReply *rep = r;
    (void)ac;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *name = rep->element[1]->str;
    size_t nlen = rep->element[1]->len;
    if (nlen == strlen(l->rb->hb) && memcmp(name, l->rb->hb, nlen) == 0) {
        const char *kind = rep->element[0]->str;
        if (strcmp(kind, "subscribe") == 0) {
            l->sub_ready = 1;
            rlink_check_up(l);
        } else if (strcmp(kind, "message") == 0 &&
                   rep->element[2]->type == REDIS_REPLY_STRING &&
                   strtoull(rep->element[2]->str, NULL, 10) == l->hb_seq) {
            l->hb_sent_ms = 0;   /* back: the pub/sub flow is alive */
        }
        return;
    }
    if (l->idx == 0 && redis_control_on_sub(l, rep))
        return;
    redis_on_sub(l, rep);
}

int rlink_pubsub(rlink *l, const char *verb, const char *key, size_t klen)
{
    if (!l->sub || !l->up)
        return -1;
    const char *argv[] = { verb, key };
    size_t lens[] = { strlen(verb), klen };
    return redisAsyncCommandArgv(l->sub, rlink_on_sub, l, 2, argv, lens) ==
                   REDIS_OK ? 0 : -1;
}

/* Frees both connections; freeing runs their pending callbacks with NULL
 * replies (the link's pointers are cleared first, so those callbacks see
 * it without them). */
static void rlink_free_contexts(rlink *l)
{
    redisAsyncContext *cmd = l->cmd, *sub = l->sub;
    l->cmd = l->sub = NULL;
    if (cmd)
        redisAsyncFree(cmd);
    if (sub)
        redisAsyncFree(sub);
}

/* A name resolution in flight. Detached (l NULL) when the link gave up on
 * it meanwhile (timeout, stop): its callback then only frees it. */
struct rresolve {
    uv_getaddrinfo_t req;
    rlink *l;
};

static void rlink_resolve_detach(rlink *l)
{
    if (!l->resolving)
        return;
    l->resolving->l = NULL;
    /* Cancelled if it has not started; otherwise it finishes on the pool
     * and its callback frees it. */
    uv_cancel((uv_req_t *)&l->resolving->req);
    l->resolving = NULL;
}

void rlink_down(rlink *l, const char *why)
{
    redis_broker *rb = l->rb;
    int was_up = l->up;
    if (l->up) {
        l->up = 0;
        atomic_fetch_add(&rb->srv->broker_down, 1);
    }
    l->connecting = 0;
    l->sub_ready = 0;
    l->scripts_left = 0;
    l->hb_sent_ms = 0;
    l->hb_next_ms = 0;
    rlink_resolve_detach(l);
    if ((was_up || !l->down_logged) && !rb->stopping) {
        log_warn("broker down", LOG_INT("worker", rb->worker),
                 LOG_STR("redis", l->rc->host), LOG_INT("port", l->rc->port),
                 LOG_STR("reason", why));
        l->down_logged = 1;
    }
    rlink_free_contexts(l);
    l->pending = 0;
    redis_link_lost(l);
    if (!rb->stopping) {
        uint32_t a = l->attempt < 6 ? l->attempt : 6;
        uint64_t cap = (uint64_t)LINK_BACKOFF_BASE_MS << a;
        if (cap > LINK_BACKOFF_CAP_MS)
            cap = LINK_BACKOFF_CAP_MS;
        l->attempt++;
        l->retry_at_ms = redis_now(rb) + ids_next(&rb->rng) % (cap + 1);
    }
}

/* hiredis calls these when a context goes away by itself (it frees the
 * context after the callback). */
static void rlink_lost_context(const redisAsyncContext *ac, const char *why)
{
    rlink *l = ac->data;
    if (!l)
        return;
    if (l->cmd == ac)
        l->cmd = NULL;
    if (l->sub == ac)
        l->sub = NULL;
    if (l->cmd || l->sub || l->up || l->connecting)
        rlink_down(l, ac->errstr[0] ? ac->errstr : why);
}

static void rlink_on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    rlink_lost_context(ac, "connection closed");
}

static void rlink_on_connect(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK)
        rlink_lost_context(ac, "connect failed");
}

/* TCP keepalive: a Redis machine that vanished (power, a lost route)
 * closes the socket within about 4 x max(1 s, redis_timeout_ms) even when
 * nothing is being sent. Best effort: a failure only loses the probe. */
static void rlink_keepalive(const rlink *l, int fd)
{
    int on = 1, cnt = 3;
    int secs = (int)(l->rb->srv->cfg->redis_timeout_ms / 1000);
    if (secs < 1)
        secs = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof(secs));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof(secs));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static redisAsyncContext *rlink_open(rlink *l)
{
    /* Numeric: hiredis's getaddrinfo returns at once. */
    redisAsyncContext *ac = redisAsyncConnect(l->addr, l->rc->port);
    if (!ac)
        return NULL;
    if (ac->err) {
        redisAsyncFree(ac);
        return NULL;
    }
    rlink_keepalive(l, ac->c.fd);
    ac->data = l;
    redisLibuvAttach(ac, l->rb->loop);
    redisAsyncSetConnectCallback(ac, rlink_on_connect);
    redisAsyncSetDisconnectCallback(ac, rlink_on_disconnect);
    return ac;
}

/* AUTH and SELECT first on each connection; their replies count against
 * the timeout like any command. */
static void rlink_prelude(rlink *l, redisAsyncContext *ac)
{
    char db[16];
    snprintf(db, sizeof(db), "%u", l->rc->db);
    const char *auth[] = { "AUTH", l->rc->password };
    size_t auth_lens[] = { 4, strlen(l->rc->password) };
    const char *sel[] = { "SELECT", db };
    size_t sel_lens[] = { 6, strlen(db) };
    struct { int on; const char **argv; size_t *lens; } steps[] = {
        { l->rc->password[0] != '\0', auth, auth_lens },
        { l->rc->db != 0, sel, sel_lens },
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        if (!steps[i].on)
            continue;
        rreq *rq = rreq_new(l, NULL, NULL, 0);
        if (rlink_command(l, ac, rq, 2, steps[i].argv, steps[i].lens) < 0)
            free(rq);
    }
}

static void rlink_on_script(rreq *rq, redisReply *rep)
{
    rlink *l = rq->l;
    if (rep && rep->type == REDIS_REPLY_STRING && rep->len == 40) {
        memcpy(l->rb->sha[rq->script], rep->str, 40);
        l->rb->sha[rq->script][40] = '\0';
        if (--l->scripts_left == 0)
            rlink_check_up(l);
    } else if (rep) {
        /* Wrong password, a read-only replica, ...: the reason goes into
         * the one "broker down" line of this outage. */
        rlink_down(l, rep->type == REDIS_REPLY_ERROR ? rep->str
                                                     : "script load failed");
    }
}

/* Opens both connections to the numeric address l->addr and starts the
 * connect sequence. */
static void rlink_connect_addr(rlink *l)
{
    l->cmd = rlink_open(l);
    l->sub = l->cmd ? rlink_open(l) : NULL;
    if (!l->cmd || !l->sub) {
        rlink_down(l, "cannot create a connection");
        return;
    }
    l->pending = 0;
    rlink_prelude(l, l->cmd);
    rlink_prelude(l, l->sub);
    l->scripts_left = SC_N;
    for (int i = 0; i < SC_N; i++) {
        const char *argv[] = { "SCRIPT", "LOAD", redis_scripts[i] };
        size_t lens[] = { 6, 4, strlen(redis_scripts[i]) };
        rreq *rq = rreq_new(l, rlink_on_script, NULL, 0);
        rq->script = (uint8_t)i;
        if (rlink_command(l, l->cmd, rq, 3, argv, lens) < 0) {
            free(rq);
            rlink_down(l, "cannot send");
            return;
        }
    }
    /* The first link also carries cluster control (control.c); the
     * heartbeat channel last, so that its confirmation (the link is up)
     * comes after theirs. */
    redis_broker *rb = l->rb;
    const char *argv[] = { "SUBSCRIBE", rb->ctl, rb->reply, rb->hb };
    size_t lens[] = { 9, strlen(rb->ctl), strlen(rb->reply), strlen(rb->hb) };
    if (l->idx == 0)
        redisAsyncCommandArgv(l->sub, rlink_on_sub, l, 4, argv, lens);
    else
        redisAsyncCommandArgv(l->sub, rlink_on_sub, l, 2,
                              (const char *[]){ "SUBSCRIBE", rb->hb },
                              (size_t[]){ 9, strlen(rb->hb) });
}

static void rlink_on_resolved(uv_getaddrinfo_t *req, int status,
                              struct addrinfo *res)
{
    rresolve *rr = req->data;
    rlink *l = rr->l;
    if (l) {
        l->resolving = NULL;
        char why[128];
        if (status < 0) {
            snprintf(why, sizeof(why), "cannot resolve the host: %s",
                     uv_strerror(status));
            rlink_down(l, why);
        } else if (resolve_pick(res, l->attempt, l->addr,
                                sizeof(l->addr)) < 0) {
            rlink_down(l, "cannot resolve the host: no IPv4 or IPv6 address");
        } else {
            rlink_connect_addr(l);
        }
    }
    uv_freeaddrinfo(res);
    free(rr);
}

void rlink_connect(rlink *l)
{
    l->retry_at_ms = 0;
    l->connecting = 1;
    l->connect_ms = redis_now(l->rb);
    l->progress_ms = l->connect_ms;
    if (resolve_is_numeric(l->rc->host)) {
        /* (a numeric address has at most 45 characters) */
        snprintf(l->addr, sizeof(l->addr), "%.45s", l->rc->host);
        rlink_connect_addr(l);
        return;
    }
    rresolve *rr = mem_calloc(1, sizeof(*rr));
    rr->l = l;
    rr->req.data = rr;
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM };
    int rc = uv_getaddrinfo(l->rb->loop, &rr->req, rlink_on_resolved,
                            l->rc->host, NULL, &hints);
    if (rc < 0) {
        free(rr);
        char why[128];
        snprintf(why, sizeof(why), "cannot resolve the host: %s",
                 uv_strerror(rc));
        rlink_down(l, why);
        return;
    }
    l->resolving = rr;
}

/* Redis's answer to a heartbeat's PUBLISH: how many connections got it.
 * None means Redis no longer has this link's pub/sub connection
 * subscribed (closed by Redis, the close not seen here yet). */
static void rlink_on_hb_published(rreq *rq, redisReply *rep)
{
    rlink *l = rq->l;
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0 &&
        l->up && l->hb_sent_ms)
        rlink_down(l, "pub/sub connection not subscribed in Redis");
}

static void rlink_heartbeat(rlink *l, uint64_t now)
{
    uint64_t every = l->rb->srv->cfg->redis_timeout_ms / 2;
    if (every > LINK_HEARTBEAT_MS)
        every = LINK_HEARTBEAT_MS;
    char seq[24];
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)(l->hb_seq + 1));
    const char *argv[] = { "PUBLISH", l->rb->hb, seq };
    size_t lens[] = { 7, strlen(l->rb->hb), strlen(seq) };
    rreq *rq = rreq_new(l, rlink_on_hb_published, NULL, 0);
    if (rlink_send(l, rq, 3, argv, lens) < 0) {
        free(rq);
        return;
    }
    l->hb_seq++;
    l->hb_sent_ms = now;
    l->hb_next_ms = now + every;
}

void rlink_tick(rlink *l, uint64_t now, int late)
{
    uint64_t timeout = l->rb->srv->cfg->redis_timeout_ms;
    if (late) {
        /* no verdicts: see redis_on_timer */
    } else if (l->cmd && l->pending && now - l->progress_ms > timeout) {
        rlink_down(l, l->connecting ? "connect timeout" : "no answer in time");
    } else if (l->connecting && now - l->connect_ms > timeout) {
        rlink_down(l, l->resolving ? "host name not resolved in time"
                                   : "connect timeout");
    } else if (l->up && l->hb_sent_ms && now - l->hb_sent_ms > timeout) {
        rlink_down(l, "pub/sub connection silent: heartbeat not back in time");
    } else if (l->up && !l->hb_sent_ms && now >= l->hb_next_ms) {
        rlink_heartbeat(l, now);
    }
    if (!l->cmd && !l->sub && !l->connecting && l->retry_at_ms &&
        now >= l->retry_at_ms)
        rlink_connect(l);
}

void rlink_close(rlink *l)
{
    l->up = 0;
    l->connecting = 0;
    rlink_resolve_detach(l);
    rlink_free_contexts(l);
}
