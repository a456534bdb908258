/*
 * The Herald client: connection state machine on the WebSocket transport
 * (herald/ws.h, hc_ws.c: one transport connection per attempt), command
 * queue and reply matching, the subscription set with recovery on
 * reconnect and de-duplication, and the context that owns the transport
 * context. Everything runs on the loop's thread.
 *
 * Lifetimes: a client is freed only when the application closed it, its
 * timer handle is closed, and no entry point of it is on the stack (house
 * rule: never free what a running callback uses). Its transport connection
 * is closed or dropped before that and calls nothing back afterwards.
 * Every entry point (transport callback, timer callback, public function
 * that may call back) brackets its work with enter()/leave().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <utlist.h>

#include "hc_internal.h"

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();   /* one out-of-memory policy, like the codec */
    return p;
}

static void *xcalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p)
        abort();
    return p;
}

const char *hc_strerror(int code)
{
    switch (code) {
    case HC_OK: return "ok";
    case HC_ERR_INVALID: return "invalid argument";
    case HC_ERR_QUEUE_FULL: return "too many pending commands";
    case HC_ERR_CONNECTION_LOST: return "connection lost before the reply";
    case HC_ERR_CLOSED: return "client closed";
    case HC_ERR_EXISTS: return "already subscribed";
    case HC_ERR_PROTOCOL: return "undecodable server message";
    }
    return proto_code_text(code);
}

static hc_str hs(proto_slice s)
{
    return (hc_str){ s.ptr ? s.ptr : "", s.len };
}

static hc_str hcs(const char *s)
{
    return (hc_str){ s ? s : "", s ? strlen(s) : 0 };
}

static uint64_t now_ms(hc_client *c)
{
    return uv_now(c->ctx->loop);
}

/* --- Lifetime ------------------------------------------------------------- */

static void client_free(hc_client *c)
{
    hc_sub *s, *tmp;
    hc_cmd *cmd, *ct;
    DL_DELETE(c->ctx->clients, c);
    HASH_ITER(hh, c->subs, s, tmp) {
        HASH_DEL(c->subs, s);
        free(s);
    }
    DL_FOREACH_SAFE(c->cmds, cmd, ct) {
        DL_DELETE(c->cmds, cmd);
        free(cmd);
    }
    proto_sreader_free(&c->rd);
    proto_buf_free(&c->out);
    free(c->strs);
    free(c->token);
    free(c);
}

static void maybe_free(hc_client *c)
{
    if (c->app_closed && c->depth == 0 && c->timer_closed)
        client_free(c);
}

static void enter(hc_client *c)
{
    c->depth++;
}

/* Returns 1 when c was freed (the caller must not touch it). */
static int leave(hc_client *c)
{
    c->depth--;
    if (c->app_closed && c->depth == 0 && c->timer_closed) {
        client_free(c);
        return 1;
    }
    return 0;
}

static void timer_closed_cb(uv_handle_t *h)
{
    hc_client *c = h->data;
    c->timer_closed = 1;
    maybe_free(c);
}

/* --- Commands ------------------------------------------------------------- */

/* Whether a command's callback runs: the application's only while it has
 * not closed the client; the library's own (which frees its state) always. */
static int cb_runs(const hc_client *c, const hc_cmd *cmd)
{
    return cmd->cb && (!c->app_closed || cmd->lib_cb);
}

static void reply_local(hc_client *c, hc_cmd *cmd, int code)
{
    hc_reply r;
    if (!cmd->cb || (c->app_closed && code != HC_ERR_CLOSED && !cmd->lib_cb))
        return;
    memset(&r, 0, sizeof(r));
    r.code = code;
    r.message = hcs(hc_strerror(code));
    r.encoding = (hc_encoding)c->enc;
    r.recovered = -1;
    cmd->cb(c, &r, cmd->arg);
}

static uint32_t next_id(hc_client *c)
{
    if (c->next_id == 0 || c->next_id == UINT32_MAX)
        c->next_id = 1;
    return c->next_id++;
}

static int ws_open(const hc_client *c)
{
    return c->ws && (c->state == HC_STATE_HANDSHAKE ||
                      c->state == HC_STATE_CONNECTED);
}

/* Encodes a command at the end of out and appends it to the list. */
static hc_cmd *cmd_add(hc_client *c, proto_cmd_out *co, int internal)
{
    hc_cmd *cmd = xcalloc(sizeof(*cmd));
    size_t before = c->out.len;
    co->id = next_id(c);
    proto_enc_cmd(&c->out, c->enc, co);
    if (c->enc == PROTO_JSON)
        proto_buf_append(&c->out, "\n", 1);
    cmd->id = co->id;
    cmd->op = (uint8_t)co->op;
    cmd->internal = (uint8_t)internal;
    cmd->since_sent = (uint8_t)(co->has_since != 0);
    cmd->len = (uint32_t)(c->out.len - before);
    DL_APPEND(c->cmds, cmd);
    if (!internal)
        c->n_pending++;
    if (ws_open(c))
        hc_ws_want_write(c->ws);
    return cmd;
}

static void cmd_done(hc_client *c, hc_cmd *cmd)
{
    DL_DELETE(c->cmds, cmd);
    if (!cmd->internal)
        c->n_pending--;
    if (cmd->sub && cmd->sub->cmd == cmd)
        cmd->sub->cmd = NULL;
    free(cmd);
}

static int check_room(hc_client *c, size_t extra)
{
    if (c->app_closed || c->state == HC_STATE_CLOSED)
        return HC_ERR_CLOSED;
    if (c->n_pending >= c->opt.max_pending ||
        c->out.len - c->out_off + extra > c->opt.max_queue_bytes)
        return HC_ERR_QUEUE_FULL;
    return HC_OK;
}

static void sub_cmd(hc_client *c, hc_sub *s, int internal)
{
    proto_cmd_out co;
    memset(&co, 0, sizeof(co));
    co.op = PROTO_OP_SUBSCRIBE;
    co.channel = (proto_slice){ s->channel, s->len };
    if (s->st.has_pos) {
        co.has_since = 1;
        co.since_offset = s->st.offset;
        co.since_epoch = (proto_slice){ s->st.epoch, s->st.epoch_len };
    } else if (s->has_since) {
        co.has_since = 1;
        co.since_offset = s->since_offset;
        co.since_epoch = (proto_slice){ s->since_epoch, s->since_epoch_len };
    }
    s->cmd = cmd_add(c, &co, internal);
    s->cmd->sub = s;
}

/* --- Connection ----------------------------------------------------------- */

static void timer_cb(uv_timer_t *t);

static const hc_ws_callbacks hc__ws_callbacks;

/* Starts a connection attempt; -1 with the reason in err when the
 * transport refused it at once. */
static int connect_attempt(hc_client *c, char *err, size_t errlen)
{
    hc_ws_options o;

    memset(&o, 0, sizeof(o));
    o.url = c->opt.url;
    o.default_path = "/ws";             /* Herald's, when the URL has none */
    o.local_addr = c->opt.local_addr;
    o.subprotocol = c->enc == PROTO_MSGPACK ? PROTO_SUBPROTO_MSGPACK
                                            : PROTO_SUBPROTO_JSON;
    o.origin = c->origin;
    o.tls_insecure = c->opt.tls_insecure;
    o.max_message = c->opt.max_message_bytes;
    o.cb = &hc__ws_callbacks;
    o.user = c;
    c->state = HC_STATE_CONNECTING;
    c->got_close = c->got_push = c->conn_failed = 0;
    c->push_reconnect = 1;
    c->ws = hc_ws_open(c->ctx->ws, &o, err, errlen);
    return c->ws ? 0 : -1;
}

static void fail_queue(hc_client *c, int code);

/* The connection (or attempt) ended: settle the commands, report, and
 * schedule the next attempt. Idempotent per attempt. */
static void conn_lost(hc_client *c, int code, const char *reason)
{
    hc_cmd *cmd, *ct, *failed = NULL, *unsubs = NULL;
    hc_sub *s, *st;
    proto_buf keep;
    size_t at = c->out_off;
    hc_disconnected ev;
    int reconnect;

    if (c->state == HC_STATE_WAITING || c->state == HC_STATE_CLOSED)
        return;
    c->ws = NULL;
    HASH_ITER(hh, c->subs, s, st) {
        s->active = 0;
    }
    /* Sent commands: the ones with an unknown outcome fail; unsent ones
     * stay queued, except connect and subscribes, which are made again. */
    proto_buf_init(&keep, HC_WS_PRE);
    DL_FOREACH_SAFE(c->cmds, cmd, ct) {
        size_t start = at;
        if (!cmd->sent)
            at += cmd->len;
        if (cmd->internal || cmd->op == PROTO_OP_SUBSCRIBE) {
            cmd_done(c, cmd);
            continue;
        }
        if (cmd->op == PROTO_OP_UNSUBSCRIBE) {
            DL_DELETE(c->cmds, cmd);
            DL_APPEND(unsubs, cmd);
            continue;
        }
        if (cmd->sent) {
            DL_DELETE(c->cmds, cmd);
            DL_APPEND(failed, cmd);
            continue;
        }
        proto_buf_append(&keep, proto_buf_data(&c->out) + start, cmd->len);
    }
    proto_buf_free(&c->out);
    c->out = keep;
    c->out_off = 0;

    if (!c->got_close && c->got_push && code == 1006)
        code = c->push_code;
    reconnect = c->opt.reconnect && !c->app_closed &&
                hc__close_allows_reconnect(code, c->push_reconnect);
    memset(&ev, 0, sizeof(ev));
    ev.code = code;
    ev.reason = hcs(reason);
    ev.reconnect = reconnect;
    if (reconnect) {
        uint64_t d = hc__backoff_delay(c->opt.backoff_base_ms,
                                       c->opt.backoff_max_ms, c->attempt,
                                       hc__rand_next(&c->ctx->rng));
        if (hc__close_needs_backoff(code) && d < c->opt.backoff_base_ms)
            d = c->opt.backoff_base_ms;
        c->attempt++;
        ev.delay_ms = d;
        c->state = HC_STATE_WAITING;
        uv_timer_start(&c->timer, timer_cb, d, 0);
    } else {
        c->state = HC_STATE_CLOSED;
        uv_timer_stop(&c->timer);
    }

    DL_FOREACH_SAFE(unsubs, cmd, ct) {
        hc_reply r;
        DL_DELETE(unsubs, cmd);
        c->n_pending--;
        if (cmd->cb && !c->app_closed) {
            memset(&r, 0, sizeof(r));
            r.encoding = (hc_encoding)c->enc;
            r.recovered = -1;
            cmd->cb(c, &r, cmd->arg);
        }
        free(cmd);
    }
    DL_FOREACH_SAFE(failed, cmd, ct) {
        DL_DELETE(failed, cmd);
        c->n_pending--;
        reply_local(c, cmd, HC_ERR_CONNECTION_LOST);
        free(cmd);
    }
    if (!c->app_closed && c->opt.cb.disconnected)
        c->opt.cb.disconnected(c, &ev, c->opt.user);
    if (!reconnect && !c->app_closed)
        fail_queue(c, HC_ERR_CLOSED);
}

/* Fails every queued command (the client will not connect again). */
static void fail_queue(hc_client *c, int code)
{
    hc_cmd *cmd, *ct, *all = NULL;
    hc_sub *s, *st;
    DL_FOREACH_SAFE(c->cmds, cmd, ct) {
        DL_DELETE(c->cmds, cmd);
        DL_APPEND(all, cmd);
    }
    proto_buf_reset(&c->out);
    c->out_off = 0;
    /* Subscribes still waiting for their first answer fail too. */
    HASH_ITER(hh, c->subs, s, st) {
        s->cmd = NULL;
        if (!s->answered && s->cb) {
            hc_reply_cb cb = s->cb;
            void *arg = s->arg;
            hc_cmd tmp;
            memset(&tmp, 0, sizeof(tmp));
            tmp.cb = cb;
            tmp.arg = arg;
            s->cb = NULL;
            s->answered = 1;
            reply_local(c, &tmp, code);
        }
    }
    DL_FOREACH_SAFE(all, cmd, ct) {
        DL_DELETE(all, cmd);
        if (!cmd->internal)
            c->n_pending--;
        if (cmd->op != PROTO_OP_SUBSCRIBE)
            reply_local(c, cmd, code);
        free(cmd);
    }
}

static void on_established(hc_client *c)
{
    proto_buf old = c->out;
    size_t old_off = c->out_off;
    hc_cmd *queued = c->cmds, *cmd;
    hc_sub *s, *st;
    proto_cmd_out co;

    c->state = HC_STATE_HANDSHAKE;
    /* connect and the resubscribes go before everything queued. */
    c->cmds = NULL;
    proto_buf_init(&c->out, HC_WS_PRE);
    c->out_off = 0;
    memset(&co, 0, sizeof(co));
    co.op = PROTO_OP_CONNECT;
    if (c->opt.token)
        co.token = (proto_slice){ c->opt.token, strlen(c->opt.token) };
    if (c->opt.name)
        co.name = (proto_slice){ c->opt.name, strlen(c->opt.name) };
    if (c->opt.version)
        co.version = (proto_slice){ c->opt.version, strlen(c->opt.version) };
    cmd_add(c, &co, 1);
    HASH_ITER(hh, c->subs, s, st) {
        sub_cmd(c, s, 1);
    }
    proto_buf_append(&c->out, proto_buf_data(&old) + old_off,
                     old.len - old_off);
    while (queued) {
        cmd = queued;
        DL_DELETE(queued, cmd);
        DL_APPEND(c->cmds, cmd);
    }
    proto_buf_free(&old);
    hc_ws_want_write(c->ws);
}

/* --- Incoming messages ---------------------------------------------------- */

static hc_cmd *match_reply(hc_client *c, uint32_t id)
{
    hc_cmd *cmd;
    DL_FOREACH(c->cmds, cmd) {
        if (!cmd->sent)
            return NULL;
        if (id == 0 || cmd->id == id)
            return cmd;   /* an error without id is the oldest command's */
    }
    return NULL;
}

static void pub_from(hc_pub *p, const proto_spub *s)
{
    memset(p, 0, sizeof(*p));
    p->channel = hs(s->channel);
    p->offset = s->offset;
    p->epoch = hs(s->epoch);
    p->data = s->data.ptr;
    p->data_len = s->data.len;
    p->binary = s->binary;
    p->client = hs(s->info.client);
    p->user = hs(s->info.user);
    p->time_ms = s->time_ms;
}

/* Fills r from an ok/error message, decoding publications and presence
 * into arrays the caller frees. Returns -1 if they were malformed. */
static int reply_from(hc_client *c, const proto_smsg *m, hc_reply *r,
                      hc_pub **pubs, hc_presence_entry **pres)
{
    proto_siter it;
    proto_error err;
    long n;
    int rc = 0;
    memset(r, 0, sizeof(*r));
    *pubs = NULL;
    *pres = NULL;
    r->encoding = (hc_encoding)c->enc;
    r->recovered = -1;
    if (m->kind == PROTO_SMSG_ERROR) {
        r->code = m->code ? m->code : PROTO_E_INTERNAL;
        r->message = hs(m->message);
        return 0;
    }
    r->ok = hs(m->ok);
    r->expires = m->expires;
    r->offset = m->offset;
    r->epoch = hs(m->epoch);
    r->recovered = m->recovered;
    if (m->has_pubs && (n = proto_siter_pubs(&it, &c->rd, m->pubs)) > 0) {
        proto_spub sp;
        size_t i = 0;
        *pubs = xmalloc((size_t)n * sizeof(hc_pub));
        while (i < (size_t)n && (rc = proto_siter_next_pub(&it, &sp, &err)) == 1)
            pub_from(&(*pubs)[i++], &sp);
        r->pubs = *pubs;
        r->n_pubs = i;
        if (rc < 0)
            return -1;
    }
    if (m->has_clients && (n = proto_siter_clients(&it, &c->rd, m->clients)) > 0) {
        proto_presence_entry e;
        size_t i = 0;
        *pres = xmalloc((size_t)n * sizeof(hc_presence_entry));
        while (i < (size_t)n && (rc = proto_siter_next_client(&it, &e, &err)) == 1) {
            (*pres)[i].client = hs(e.client);
            (*pres)[i].user = hs(e.user);
            i++;
        }
        r->presence = *pres;
        r->n_presence = i;
        if (rc < 0)
            return -1;
    }
    return 0;
}

static void sub_event(hc_client *c, hc_sub *s, hc_sub_kind kind,
                      int recovered, int code, hc_str msg)
{
    hc_sub_event ev;
    if (!c->opt.cb.subscription || c->app_closed)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.kind = kind;
    ev.channel = (hc_str){ s->channel, s->len };
    ev.epoch = (hc_str){ s->st.epoch, s->st.epoch_len };
    ev.offset = s->st.offset;
    ev.recovered = recovered;
    ev.code = code;
    ev.message = msg;
    c->opt.cb.subscription(c, &ev, c->opt.user);
}

static void deliver(hc_client *c, hc_sub *s, const hc_pub *p)
{
    hc__verdict v = hc__stream_pub(&s->st, p->epoch.ptr, p->epoch.len,
                                   p->offset);
    if (v == HC__DUPLICATE) {
        c->faults.duplicates++;
        return;
    }
    if (v == HC__GAP)
        sub_event(c, s, HC_SUB_GAP, 0, 0, hcs(NULL));
    if (c->app_closed || !s->active)
        return;
    if (c->opt.cb.pub)
        c->opt.cb.pub(c, p, c->opt.user);
}

static void remove_sub(hc_client *c, hc_sub *s)
{
    HASH_DEL(c->subs, s);
    free(s);
}

/* Subscribe reply: position, recovery outcome, missed publications. */
static void on_sub_reply(hc_client *c, hc_cmd *cmd, const hc_reply *r)
{
    hc_sub *s = cmd->sub;
    int first = !s->answered, recovered = -1;
    hc_reply_cb cb = s->cb;
    void *arg = s->arg;

    s->cmd = NULL;
    if (r->code) {
        if (c->conn_failed)
            return;   /* refused because connect was; not the channel */
        s->answered = 1;
        s->cb = NULL;
        if (!first)
            sub_event(c, s, HC_SUB_FAILED, -1, r->code, r->message);
        remove_sub(c, s);
        if (first && cb && !c->app_closed)
            cb(c, r, arg);
        return;
    }
    if (cmd->since_sent) {
        /* Recovered only if the server says so and the publications really
         * continue our position up to the reply's top. */
        uint64_t pos = s->st.has_pos ? s->st.offset : s->since_offset;
        recovered = r->recovered == 1;
        if (recovered && s->st.has_pos &&
            !hc__stream_epoch_is(&s->st, r->epoch.ptr, r->epoch.len))
            recovered = 0;
        for (size_t i = 0; recovered && i < r->n_pubs; i++) {
            if (r->pubs[i].offset <= pos)
                continue;
            if (r->pubs[i].offset != pos + 1)
                recovered = 0;
            pos = r->pubs[i].offset;
        }
        if (recovered && pos < r->offset)
            recovered = 0;
        if (r->recovered == 1 && !recovered)
            c->faults.false_recoveries++;
    }
    if (recovered != 1) {
        hc__stream_set(&s->st, r->epoch.ptr, r->epoch.len, r->offset);
    } else if (!s->st.has_pos) {
        hc__stream_set(&s->st, r->epoch.ptr, r->epoch.len, s->since_offset);
    }
    s->active = 1;
    s->answered = 1;
    s->cb = NULL;
    sub_event(c, s, first ? HC_SUB_SUBSCRIBED : HC_SUB_RESUBSCRIBED,
              recovered, 0, hcs(NULL));
    if (first && cb && !c->app_closed)
        cb(c, r, arg);
    if (recovered == 1) {
        for (size_t i = 0; i < r->n_pubs && !c->app_closed; i++) {
            hc_sub *again;
            HASH_FIND(hh, c->subs, cmd->sub->channel, cmd->sub->len, again);
            if (again != s || !s->active)
                break;   /* unsubscribed from a callback */
            deliver(c, s, &r->pubs[i]);
        }
        if (!c->app_closed && s->st.offset < r->offset)
            hc__stream_set(&s->st, r->epoch.ptr, r->epoch.len, r->offset);
    }
}

static void on_connect_reply(hc_client *c, const proto_smsg *m)
{
    hc_connected ev;
    if (m->kind == PROTO_SMSG_ERROR) {
        c->conn_failed = 1;
        if (c->opt.cb.error && !c->app_closed)
            c->opt.cb.error(c, m->code, hs(m->message), c->opt.user);
        return;
    }
    c->state = HC_STATE_CONNECTED;
    c->attempt = 0;
    c->ping_s = m->ping;
    if (c->ever_connected)
        c->reconnects++;
    c->ever_connected = 1;
    if (c->opt.pong_timeout_ms && c->ping_s)
        uv_timer_start(&c->timer, timer_cb, (uint64_t)c->ping_s * 500,
                       (uint64_t)c->ping_s * 500);
    memset(&ev, 0, sizeof(ev));
    ev.client = hs(m->client);
    ev.node = hs(m->node);
    ev.ping = m->ping;
    ev.expires = m->expires;
    ev.reconnects = c->reconnects;
    if (c->opt.cb.connected && !c->app_closed)
        c->opt.cb.connected(c, &ev, c->opt.user);
}

static void on_reply(hc_client *c, const proto_smsg *m)
{
    hc_cmd *cmd = match_reply(c, m->id);
    hc_reply r;
    hc_pub *pubs;
    hc_presence_entry *pres;

    if (!cmd) {
        if (c->opt.cb.error && m->kind == PROTO_SMSG_ERROR)
            c->opt.cb.error(c, m->code, hs(m->message), c->opt.user);
        return;
    }
    DL_DELETE(c->cmds, cmd);
    if (!cmd->internal)
        c->n_pending--;
    if (cmd->op == PROTO_OP_CONNECT) {
        on_connect_reply(c, m);
        free(cmd);
        return;
    }
    if (reply_from(c, m, &r, &pubs, &pres) < 0) {
        r.code = HC_ERR_PROTOCOL;
        r.message = hcs("malformed publications or clients in the reply");
    }
    if (cmd->op == PROTO_OP_SUBSCRIBE && cmd->sub)
        on_sub_reply(c, cmd, &r);
    else if (cb_runs(c, cmd))
        cmd->cb(c, &r, cmd->arg);
    free(pubs);
    free(pres);
    free(cmd);
}

static void on_message(hc_client *c, const proto_smsg *m)
{
    hc_sub *s;
    hc_pub p;
    switch (m->kind) {
    case PROTO_SMSG_OK:
    case PROTO_SMSG_ERROR:
        on_reply(c, m);
        break;
    case PROTO_SMSG_PUB:
        HASH_FIND(hh, c->subs, m->pub.channel.ptr, m->pub.channel.len, s);
        if (!s || !s->active)
            break;   /* unsubscribed, or not answered yet */
        pub_from(&p, &m->pub);
        deliver(c, s, &p);
        break;
    case PROTO_SMSG_JOIN:
    case PROTO_SMSG_LEAVE:
        if (c->opt.cb.join)
            c->opt.cb.join(c, m->kind == PROTO_SMSG_JOIN, hs(m->pub.channel),
                           hs(m->pub.info.client), hs(m->pub.info.user),
                           c->opt.user);
        break;
    case PROTO_SMSG_DISCONNECT:
        c->got_push = 1;
        c->push_code = m->code;
        c->push_reconnect = m->reconnect;
        if (c->opt.cb.disconnect_push)
            c->opt.cb.disconnect_push(c, m->code, hs(m->message), m->reconnect,
                                      c->opt.user);
        break;
    case PROTO_SMSG_UNSUBSCRIBE:
        HASH_FIND(hh, c->subs, m->pub.channel.ptr, m->pub.channel.len, s);
        if (s && s->answered && !s->cmd) {
            sub_event(c, s, HC_SUB_UNSUBSCRIBED, -1, m->code, hs(m->message));
            remove_sub(c, s);
        }
        break;
    case PROTO_SMSG_OTHER:
        break;
    }
}

static void process_frame(hc_client *c, const void *buf, size_t len)
{
    proto_smsg m;
    proto_error err;
    int rc;
    proto_sreader_frame(&c->rd, buf, len);
    while (!c->app_closed && (rc = proto_snext(&c->rd, &m, &err)) != 0) {
        if (rc < 0) {
            if (c->opt.cb.error)
                c->opt.cb.error(c, HC_ERR_PROTOCOL, hcs(err.message),
                                c->opt.user);
            continue;
        }
        on_message(c, &m);
    }
    proto_sreader_frame(&c->rd, NULL, 0);
}

/* Ends the connection without a close frame (a pong timeout, or
 * hc_client_drop): reported as lost, then the transport drops the socket. */
static void kill_conn(hc_client *c, int code, const char *reason)
{
    hc_ws *ws = c->ws;
    conn_lost(c, code, reason);
    hc_ws_drop(ws);
}

/* One frame of unsent commands (several batched up to HC_BATCH_MAX) per
 * writeable callback, written straight from `out`. The batch counts as sent
 * once it is handed to the transport, even when the write fails: lws masks
 * a client frame in place, so the bytes cannot go out again, and whether
 * the server got them is unknown; a failed write ends them with
 * HC_ERR_CONNECTION_LOST like every sent command of a lost connection. */
static void write_commands(hc_client *c)
{
    hc_cmd *cmd, *first = NULL;
    size_t n = 0;
    int more = 0;

    DL_FOREACH(c->cmds, cmd) {
        if (cmd->sent)
            continue;
        if (!first) {
            first = cmd;
        } else if (n + cmd->len > HC_BATCH_MAX) {
            more = 1;
            break;
        }
        n += cmd->len;
    }
    if (!n)
        return;
    int rc = hc_ws_write(c->ws, c->enc == PROTO_MSGPACK,
                         proto_buf_data(&c->out) + c->out_off, n);
    for (cmd = first; cmd && n; cmd = cmd->next) {
        cmd->sent = 1;
        n -= cmd->len;
        c->out_off += cmd->len;
    }
    if (c->out_off == c->out.len) {
        c->out_off = 0;
        proto_buf_reset(&c->out);
        if (c->out.cap > 256 * 1024) {
            proto_buf_free(&c->out);
            proto_buf_init(&c->out, HC_WS_PRE);
        }
    } else if (c->out_off > 64 * 1024 && c->out_off * 2 > c->out.len) {
        memmove(proto_buf_data(&c->out), proto_buf_data(&c->out) + c->out_off,
                c->out.len - c->out_off);
        c->out.len -= c->out_off;
        c->out_off = 0;
    }
    if (more && rc == 0)
        hc_ws_want_write(c->ws);
}

static void timer_cb(uv_timer_t *t)
{
    hc_client *c = t->data;
    char err[256];
    enter(c);
    if (c->state == HC_STATE_WAITING) {
        if (connect_attempt(c, err, sizeof(err)) < 0)
            conn_lost(c, 1006, err);
    } else if (c->state == HC_STATE_CONNECTED && c->ws && c->ping_s) {
        uint64_t idle = now_ms(c) - hc_ws_last_rx_ms(c->ws);
        if (idle > (uint64_t)c->ping_s * 1000 + c->opt.pong_timeout_ms)
            kill_conn(c, 1006, "no traffic from the server (pong timeout)");
        else if (idle >= (uint64_t)c->ping_s * 1000)
            hc_ws_ping(c->ws);
    }
    leave(c);
}

/* --- Transport callbacks ------------------------------------------------------ */

/* Each checks that the connection is the client's current one; a
 * transport connection that was replaced has been closed or dropped and
 * calls nothing back, so the check only guards that promise. */

static void ws_on_open(hc_ws *ws, void *user)
{
    hc_client *c = user;
    enter(c);
    if (c->ws == ws && !c->app_closed)
        on_established(c);
    leave(c);
}

static void ws_on_message(hc_ws *ws, int binary, const char *data,
                          size_t len, void *user)
{
    hc_client *c = user;
    (void)binary;
    enter(c);
    if (c->ws == ws && !c->app_closed)
        process_frame(c, data, len);
    leave(c);
}

static void ws_on_writeable(hc_ws *ws, void *user)
{
    hc_client *c = user;
    enter(c);
    if (c->ws == ws && !c->app_closed && ws_open(c))
        write_commands(c);
    leave(c);
}

static void ws_on_closed(hc_ws *ws, const hc_ws_closed *ev, void *user)
{
    hc_client *c = user;
    enter(c);
    if (c->ws == ws) {
        /* The server's close frame decides the code; a disconnect push
         * stands in for a missing one (conn_lost). */
        c->got_close = ev->remote;
        conn_lost(c, ev->code,
                  !ev->remote && ev->code == 1009
                      ? "server message larger than max_message_bytes"
                      : ev->reason);
    }
    leave(c);
}

static const hc_ws_callbacks hc__ws_callbacks = {
    .open = ws_on_open,
    .message = ws_on_message,
    .writeable = ws_on_writeable,
    .closed = ws_on_closed,
};

/* --- Context -------------------------------------------------------------- */

hc_ctx *hc_ctx_new(uv_loop_t *loop, const hc_ctx_options *opt)
{
    hc_ws_ctx_options wo;
    hc_ctx *ctx = xcalloc(sizeof(*ctx));

    memset(&wo, 0, sizeof(wo));
    if (opt) {
        wo.ca_file = opt->ca_file;
        wo.lws_log_level = opt->lws_log_level;
    }
    ctx->loop = loop;
    ctx->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)ctx;
    /* A bad CA file or TLS setup fails here. */
    ctx->ws = hc_ws_ctx_new(loop, &wo, NULL, 0);
    if (!ctx->ws) {
        free(ctx);
        return NULL;
    }
    return ctx;
}

void hc_ctx_close(hc_ctx *ctx)
{
    hc_client *c, *tmp;
    if (ctx->closing)
        return;
    ctx->closing = 1;
    DL_FOREACH_SAFE(ctx->clients, c, tmp) {
        if (!c->app_closed)
            hc_client_close(c);
    }
    /* Waits for the close handshakes the clients started. */
    hc_ws_ctx_close(ctx->ws);
}

void hc_ctx_free(hc_ctx *ctx)
{
    hc_client *c, *tmp;
    if (!ctx)
        return;
    if (!ctx->closing)
        hc_ctx_close(ctx);
    /* Runs the loop dry: the clients' timers close (and the clients are
     * freed), lws lets go of every connection. */
    hc_ws_ctx_free(ctx->ws);
    /* Clients the loop did not get to free. */
    DL_FOREACH_SAFE(ctx->clients, c, tmp) {
        client_free(c);
    }
    free(ctx);
}

/* --- Client ----------------------------------------------------------------- */

void hc_options_init(hc_options *o)
{
    memset(o, 0, sizeof(*o));
    o->url = "ws://127.0.0.1:8080/ws";
    o->encoding = HC_JSON;
    o->reconnect = 1;
    o->backoff_base_ms = 250;
    o->backoff_max_ms = 10000;
    o->max_pending = 4096;
    o->max_queue_bytes = 1024 * 1024;
    o->max_message_bytes = 16 * 1024 * 1024;
    o->pong_timeout_ms = 10000;
}

/* Checks the URL at hc_client_new (each attempt hands it to the transport
 * again) and keeps the Origin header it implies. */
static int parse_url(hc_client *c, const char *url, char *err, size_t errlen)
{
    hc_url u;
    if (hc_url_parse(url, &u, err, errlen) < 0)
        return -1;
    if (u.path[0] != '/' && u.path[0] != '\0') {
        snprintf(err, errlen, "bad path in %s", url);  /* "?q" without a path */
        return -1;
    }
    hc_url_authority(&u, c->origin, sizeof(c->origin));
    return 0;
}

/* Copies the options' strings into one block owned by the client. */
static void own_strings(hc_client *c, const hc_options *o)
{
    const char *src[5] = { o->url, o->token, o->name, o->version,
                           o->local_addr };
    const char **dst[5] = { &c->opt.url, &c->opt.token, &c->opt.name,
                            &c->opt.version, &c->opt.local_addr };
    size_t total = 0, at = 0;
    for (int i = 0; i < 5; i++)
        if (src[i])
            total += strlen(src[i]) + 1;
    c->strs = xmalloc(total);
    for (int i = 0; i < 5; i++) {
        if (!src[i]) {
            *dst[i] = NULL;
            continue;
        }
        size_t n = strlen(src[i]) + 1;
        memcpy(c->strs + at, src[i], n);
        *dst[i] = c->strs + at;
        at += n;
    }
}

hc_client *hc_client_new(hc_ctx *ctx, const hc_options *o, char *err,
                         size_t errlen)
{
    hc_client *c;
    char dummy[8];
    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (!ctx || !o || !o->url || ctx->closing) {
        snprintf(err, errlen, "no context, options or URL");
        return NULL;
    }
    if (o->token && strlen(o->token) > PROTO_TOKEN_MAX) {
        snprintf(err, errlen, "token longer than %d bytes", PROTO_TOKEN_MAX);
        return NULL;
    }
    c = xcalloc(sizeof(*c));
    c->ctx = ctx;
    if (parse_url(c, o->url, err, errlen) < 0) {
        free(c);
        return NULL;
    }
    c->opt = *o;
    own_strings(c, o);
    if (c->opt.backoff_max_ms < c->opt.backoff_base_ms)
        c->opt.backoff_max_ms = c->opt.backoff_base_ms;
    if (!c->opt.max_pending)
        c->opt.max_pending = 1;
    if (!c->opt.max_message_bytes)
        c->opt.max_message_bytes = 16 * 1024 * 1024;
    c->enc = o->encoding == HC_MSGPACK ? PROTO_MSGPACK : PROTO_JSON;
    proto_sreader_init(&c->rd, c->enc);
    proto_buf_init(&c->out, HC_WS_PRE);
    c->next_id = 1;
    c->push_reconnect = 1;
    uv_timer_init(ctx->loop, &c->timer);
    c->timer.data = c;
    DL_APPEND(ctx->clients, c);
    /* Connect from the loop, so no callback runs before this returns. */
    c->state = HC_STATE_WAITING;
    uv_timer_start(&c->timer, timer_cb, 0, 0);
    return c;
}

void hc_client_close(hc_client *c)
{
    hc_sub *s, *st;
    if (!c || c->app_closed)
        return;
    enter(c);
    fail_queue(c, HC_ERR_CLOSED);
    c->app_closed = 1;
    HASH_ITER(hh, c->subs, s, st) {
        remove_sub(c, s);
    }
    /* A close frame when the WebSocket is open, else the attempt is
     * dropped; either way the connection calls nothing back. */
    hc_ws_close(c->ws);
    c->ws = NULL;
    c->state = HC_STATE_CLOSED;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, timer_closed_cb);
    leave(c);
}

void hc_client_drop(hc_client *c)
{
    if (!c || c->app_closed || !c->ws)
        return;
    if (c->state != HC_STATE_CONNECTING && c->state != HC_STATE_HANDSHAKE &&
        c->state != HC_STATE_CONNECTED)
        return;
    enter(c);
    kill_conn(c, 1006, "dropped by the application");
    leave(c);
}

void hc_client_faults_get(const hc_client *c, hc_client_faults *out)
{
    *out = c->faults;
}

hc_state hc_client_state(const hc_client *c)
{
    return c->state;
}

void *hc_client_user(const hc_client *c)
{
    return c->opt.user;
}

hc_encoding hc_client_encoding(const hc_client *c)
{
    return (hc_encoding)c->enc;
}

/* --- Commands ---------------------------------------------------------------- */

static int channel_ok(const char *ch)
{
    return ch && proto_channel_valid(ch, strlen(ch));
}

static int since_ok(const hc_since *s)
{
    return !s || (s->epoch && strlen(s->epoch) <= PROTO_EPOCH_MAX);
}

static int simple_cmd(hc_client *c, proto_cmd_out *co, size_t extra,
                      hc_reply_cb cb, void *arg)
{
    int rc = check_room(c, extra + 64);
    hc_cmd *cmd;
    if (rc)
        return rc;
    cmd = cmd_add(c, co, 0);
    cmd->cb = cb;
    cmd->arg = arg;
    return HC_OK;
}

int hc_subscribe(hc_client *c, const char *channel, const hc_since *since,
                 hc_reply_cb cb, void *arg)
{
    size_t len;
    hc_sub *s;
    int rc;
    if (!channel_ok(channel) || !since_ok(since))
        return HC_ERR_INVALID;
    len = strlen(channel);
    HASH_FIND(hh, c->subs, channel, len, s);
    if (s)
        return HC_ERR_EXISTS;
    if ((rc = check_room(c, len + 128)) != HC_OK)
        return rc;
    s = xcalloc(sizeof(*s) + len + 1);
    memcpy(s->channel, channel, len + 1);
    s->len = len;
    s->cb = cb;
    s->arg = arg;
    if (since) {
        s->has_since = 1;
        s->since_offset = since->offset;
        s->since_epoch_len = strlen(since->epoch);
        memcpy(s->since_epoch, since->epoch, s->since_epoch_len + 1);
    }
    HASH_ADD(hh, c->subs, channel, len, s);
    /* Sent now on an open connection, otherwise with the resubscribes
     * after the next connect. */
    if (ws_open(c))
        sub_cmd(c, s, 0);
    return HC_OK;
}

int hc_unsubscribe(hc_client *c, const char *channel, hc_reply_cb cb,
                   void *arg)
{
    proto_cmd_out co;
    hc_sub *s;
    int rc;
    if (!channel_ok(channel))
        return HC_ERR_INVALID;
    if ((rc = check_room(c, strlen(channel) + 64)) != HC_OK)
        return rc;
    HASH_FIND(hh, c->subs, channel, strlen(channel), s);
    if (s) {
        if (s->cmd) {
            /* Its reply will find no subscription. */
            s->cmd->sub = NULL;
            s->cmd = NULL;
        }
        if (!s->answered && s->cb) {
            /* The first subscribe is overtaken: it never gets an answer
             * of its own; report it as closed. */
            hc_cmd tmp;
            memset(&tmp, 0, sizeof(tmp));
            tmp.cb = s->cb;
            tmp.arg = s->arg;
            s->cb = NULL;
            remove_sub(c, s);
            enter(c);
            reply_local(c, &tmp, HC_ERR_CLOSED);
            if (leave(c))
                return HC_OK;
        } else {
            remove_sub(c, s);
        }
    }
    memset(&co, 0, sizeof(co));
    co.op = PROTO_OP_UNSUBSCRIBE;
    co.channel = (proto_slice){ channel, strlen(channel) };
    return simple_cmd(c, &co, 0, cb, arg);
}

int hc_publish(hc_client *c, const char *channel, const void *data,
               size_t len, hc_reply_cb cb, void *arg)
{
    proto_cmd_out co;
    char *copy = NULL;
    int rc;
    if (!channel_ok(channel) || !data || !len)
        return HC_ERR_INVALID;
    memset(&co, 0, sizeof(co));
    co.op = PROTO_OP_PUBLISH;
    co.channel = (proto_slice){ channel, strlen(channel) };
    co.data = (proto_slice){ data, len };
    if (c->enc == PROTO_JSON && (memchr(data, '\n', len) ||
                                 memchr(data, '\r', len))) {
        copy = xmalloc(len);
        memcpy(copy, data, len);
        for (size_t i = 0; i < len; i++)
            if (copy[i] == '\n' || copy[i] == '\r')
                copy[i] = ' ';
        co.data.ptr = copy;
    }
    rc = simple_cmd(c, &co, len, cb, arg);
    free(copy);
    return rc;
}

int hc_history(hc_client *c, const char *channel,
               const hc_history_options *opt, hc_reply_cb cb, void *arg)
{
    proto_cmd_out co;
    if (!channel_ok(channel) || (opt && !since_ok(opt->since)))
        return HC_ERR_INVALID;
    memset(&co, 0, sizeof(co));
    co.op = PROTO_OP_HISTORY;
    co.channel = (proto_slice){ channel, strlen(channel) };
    if (opt) {
        if (opt->since) {
            co.has_since = 1;
            co.since_offset = opt->since->offset;
            co.since_epoch = (proto_slice){ opt->since->epoch,
                                            strlen(opt->since->epoch) };
        }
        co.has_limit = opt->has_limit;
        co.limit = opt->limit;
        co.reverse = opt->reverse;
    }
    return simple_cmd(c, &co, 0, cb, arg);
}

int hc_presence(hc_client *c, const char *channel, hc_reply_cb cb, void *arg)
{
    proto_cmd_out co;
    if (!channel_ok(channel))
        return HC_ERR_INVALID;
    memset(&co, 0, sizeof(co));
    co.op = PROTO_OP_PRESENCE;
    co.channel = (proto_slice){ channel, strlen(channel) };
    return simple_cmd(c, &co, 0, cb, arg);
}

int hc_ping(hc_client *c, hc_reply_cb cb, void *arg)
{
    proto_cmd_out co;
    memset(&co, 0, sizeof(co));
    co.op = PROTO_OP_PING;
    return simple_cmd(c, &co, 0, cb, arg);
}

/* A refresh in flight: the token becomes the client's only when the
 * server accepts it (a refused one, e.g. another user's, must not be what
 * the next reconnect sends). */
typedef struct hc_refresh_op {
    hc_reply_cb cb;
    void *arg;
    char token[];
} hc_refresh_op;

static void on_refresh_reply(hc_client *c, const hc_reply *r, void *arg)
{
    hc_refresh_op *op = arg;
    if (r->code == 0) {
        size_t len = strlen(op->token);
        char *t = xmalloc(len + 1);
        memcpy(t, op->token, len + 1);
        free(c->token);
        c->token = t;
        c->opt.token = t;
    }
    if (op->cb && !c->app_closed)
        op->cb(c, r, op->arg);
    free(op);
}

int hc_refresh(hc_client *c, const char *token, hc_reply_cb cb, void *arg)
{
    proto_cmd_out co;
    size_t len = token ? strlen(token) : 0;
    if (!len || len > PROTO_TOKEN_MAX)
        return HC_ERR_INVALID;
    memset(&co, 0, sizeof(co));
    co.op = PROTO_OP_REFRESH;
    co.token = (proto_slice){ token, len };
    int rc = check_room(c, len + 64);
    if (rc)
        return rc;
    hc_refresh_op *op = xmalloc(sizeof(*op) + len + 1);
    op->cb = cb;
    op->arg = arg;
    memcpy(op->token, token, len + 1);
    hc_cmd *cmd = cmd_add(c, &co, 0);
    cmd->cb = on_refresh_reply;
    cmd->arg = op;
    cmd->lib_cb = 1;
    return HC_OK;
}

char *hc_data_to_json(hc_encoding enc, const void *data, size_t len)
{
    proto_buf b;
    proto_error err;
    char *out;
    proto_buf_init(&b, 0);
    if (proto_data_to_json(enc == HC_MSGPACK ? PROTO_MSGPACK : PROTO_JSON,
                           (proto_slice){ data, len }, &b, &err) != PROTO_OK) {
        proto_buf_free(&b);
        return NULL;
    }
    out = xmalloc(b.len + 1);
    if (b.len)
        memcpy(out, proto_buf_data(&b), b.len);
    out[b.len] = '\0';
    proto_buf_free(&b);
    return out;
}
