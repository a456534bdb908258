/*
 * Client connections (conn.h): the libwebsockets protocol callback (the
 * WebSocket at /ws; plain HTTP goes to http.h), message reassembly,
 * command handling, the ordered send path with protocol batching, closing
 * with protocol close codes, and heartbeats.
 *
 * Threading: everything here runs on the connection's worker thread. A
 * command that concerns a channel (owned by any worker, this one
 * included) reserves its reply's place in the send queue and sends a
 * request to the channel's owner (core/requests.h); the reply fills the
 * place when it comes back, so replies leave in command order without the
 * connection ever blocking. The channel rules that need only the
 * configuration are checked here, before the request goes (core/rules.h).
 */
#include "net/conn.h"


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <utlist.h>

#include "base/admit.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/tls.h"
#include "core/presence.h"
#include "broker/broker.h"
#include "core/requests.h"
#include "core/rules.h"
#include "hooks/hooks.h"
#include "metrics/metrics.h"
#include "auth/jwt.h"
#include "auth/keyring.h"
#include "auth/proxy.h"
#include "net/http.h"

#define CONN_MAX_MALFORMED 10
#define CONN_CLOSE_GRACE_S 3
/* A message over max_message_size is discarded (error 112 when it ends);
 * one still going at this many times the limit fails the connection with
 * 1009. */
#define CONN_DISCARD_MAX 16
/* A command waiting for the backend's verdict (proxy mode): connect waits
 * as it is; subscribe and publish keep their bytes as received and run
 * again once allowed (then `approved` lets them through). The
 * connection's later input waits meanwhile, so replies keep their order. */
typedef struct conn_px {
    uint8_t op;              /* enum proxy_op */
    uint8_t approved;
    uint8_t fail_open;       /* the namespace's proxy_fail_open */
    uint8_t binary;
    uint32_t cmd_id;
    int64_t expire_at;       /* subscribe: the verdict's */
    size_t len;
    char cmd[];
} conn_px;

/* lws 4.1 keeps LWS_WRITE_CLOSE (4) out of its public header but its
 * WebSocket writer maps it to the close opcode. */
#define CONN_WRITE_CLOSE ((enum lws_write_protocol)4)

enum { PROTO_ID_JSON = 0, PROTO_ID_MSGPACK = 1 };

static void conn_message(conn *c, const char *buf, size_t len, int binary);

/* Arms an lws timeout of the connection. lws 4.1 on libuv re-reads its
 * timer list only after one of its own events (its idle handler re-arms
 * its timer), so a timeout armed from a libuv timer, the mailbox or the
 * flush point never fired on a worker where nothing else happened: the
 * worker wakes lws before its loop waits (conns_lws_wake). */
static void conn_set_timeout(conn *c, enum pending_timeout reason, int secs)
{
    lws_set_timeout(c->wsi, reason, secs);
    c->n->lws_wake = lws_get_context(c->wsi);
}

/* --- connection table ---------------------------------------------------- */

static uint32_t conns_slot_alloc(conns *n, conn *c, uint32_t *gen)
{
    uint32_t i;
    if (n->n_free) {
        i = n->free_slots[--n->n_free];
    } else {
        if ((n->n_slots & (n->n_slots - 1)) == 0) {
            uint32_t cap = n->n_slots ? n->n_slots * 2 : 64;
            n->slots = mem_realloc_array(n->slots, cap, sizeof(*n->slots));
            n->free_slots = mem_realloc_array(n->free_slots, cap,
                                              sizeof(uint32_t));
        }
        i = n->n_slots++;
        n->slots[i].gen = 0;
    }
    n->slots[i].c = c;
    n->slots[i].gen++;
    *gen = n->slots[i].gen;
    n->count++;
    return i;
}

static void conns_slot_free(conns *n, uint32_t slot)
{
    n->slots[slot].c = NULL;
    n->free_slots[n->n_free++] = slot;
    n->count--;
}

/* The connection in slot as it was at generation gen, or NULL when it is
 * gone (closed, the slot reused). */
static conn *conns_find(conns *n, uint32_t slot, uint32_t gen)
{
    if (slot >= n->n_slots || n->slots[slot].gen != gen)
        return NULL;
    return n->slots[slot].c;
}

/* The connection a reply is for, or NULL when it is gone. */
static conn *conns_route(conns *n, const route *r)
{
    return conns_find(n, r->slot, r->gen);
}

/* Data frames are written directly from the worker's flush point
 * (conns_flush, before the loop waits) rather than by asking lws for a
 * WRITEABLE callback: with the libuv event lib every change of a POLLOUT
 * interest is a uv_poll_start, which libuv turns into epoll_ctl DEL + ADD,
 * so asking for writability costs four epoll_ctl calls per write, and a
 * loopback or LAN socket almost always has room. lws 4.1 accepts lws_write
 * outside the WRITEABLE callback: what the kernel does not take is kept on
 * the wsi's buflist_out and lws asks for POLLOUT itself; while anything is
 * buffered there, the connection waits for WRITEABLE as before
 * (writable_req), and so do control frames (see conns_flush). Batching is
 * unchanged: everything queued during one loop iteration goes out as one
 * frame. */
static void conn_want_write(conn *c)
{
    if (c->writable_req || c->flush_queued)
        return;
    c->flush_queued = 1;
    DL_APPEND2(c->n->flush, c, fprev, fnext);
}

/* --- output ------------------------------------------------------------ */

static proto_buf *conn_encbuf(conn *c)
{
    proto_buf *b = &c->n->enc;
    if (!b->base && b->headroom == 0)
        frame_buf_init(b);
    proto_buf_reset(b);
    return b;
}

/* The message just encoded into the worker's encode buffer, as a frame. */
static frame *conns_take_frame(conns *n)
{
    frame *f = frame_from_buf(&n->enc);
    frame_buf_init(&n->enc);
    return f;
}

static void conn_output_check(conn *c);

/* Client-caused lines: at most this many a second each, per worker. */
#define CONN_LOG_PER_S 10
#define conn_log(n, line, lvl, msg, ...)                                      \
    do {                                                                      \
        if (log_enabled(lvl) &&                                               \
            log_gate_pass(&(n)->gates[line], (n)->now_s, CONN_LOG_PER_S, msg))\
            log_at(lvl, msg, ##__VA_ARGS__);                                  \
    } while (0)

/* Queues the message just encoded into the worker's encode buffer, into
 * a reserved entry (seq) or at the end (seq == UINT64_MAX). */
static void conn_send_encoded(conn *c, uint64_t seq)
{
    frame *f = conns_take_frame(c->n);
    if (seq == UINT64_MAX)
        sendq_push(&c->q, f);
    else if (sendq_fill(&c->q, seq, f) < 0)
        return;
    conn_want_write(c);
    conn_output_check(c);
}

static void conn_reply_error(conn *c, uint32_t id, int code, const char *m,
                             uint64_t seq)
{
    metrics_error_sent(c->n->m, code);
    proto_enc_error(conn_encbuf(c), c->enc, id, code,
                    m ? m : proto_code_text(code));
    conn_send_encoded(c, seq);
}

/* The client does not keep up with what it is sent: 4001. */
static void conn_close_slow(conn *c)
{
    conn_log(c->n, CONN_LOG_SLOW, LOG_INFO, "slow consumer closed",
             LOG_STR("client", c->id),
             LOG_INT("queued", (int64_t)sendq_bytes(&c->q)),
             LOG_INT("code", PROTO_CLOSE_SLOW));
    if (c->n->m)
        metrics_add(&c->n->m->overflows, 1);
    conn_close(c, PROTO_CLOSE_SLOW, "slow consumer", 1);
}

/* Pushes a shared frame (a publication or join/leave) and applies the
 * send queue limit; 1 when the frame stays queued. */
static int conn_push(conn *c, frame *f)
{
    if (c->closing)
        return 0;
    sendq_push(&c->q, frame_ref(f));
    if (sendq_bytes(&c->q) > c->n->srv->cfg->send_queue_max) {
        conn_close_slow(c);
        return 0;
    }
    conn_want_write(c);
    return 1;
}

static void conn_rx(conn *c, int on);

void conn_close(conn *c, int code, const char *reason, int reconnect)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_code = (uint16_t)code;
    if (code == PROTO_CLOSE_SLOW || code == PROTO_CLOSE_STALE) {
        /* The client is not reading: what is queued will never arrive in
         * time, and holding it is what the limit prevents. */
        if (c->n->m)
            metrics_add(&c->n->m->dropped_bytes, sendq_bytes(&c->q));
        sendq_clear(&c->q);
    }
    /* Commands still waiting are dropped, and the socket is read again if
     * their wait had stopped reading it: the peer's answer to the close
     * frame, or the end of its stream, must be seen (what else it sends is
     * ignored now). At shutdown nothing else ended such a connection
     * before the drain deadline. */
    free(c->held);
    c->held = NULL;
    c->held_len = 0;
    conn_rx(c, 1);
    proto_enc_push_disconnect(conn_encbuf(c), c->enc, code, reason, reconnect);
    conn_send_encoded(c, UINT64_MAX);
    if (code != PROTO_CLOSE_SHUTDOWN) {
        /* Hard stop if the client does not take the close in time. (At
         * shutdown the worker's own deadline does this for everyone.) */
        conn_set_timeout(c, PENDING_TIMEOUT_USER_OK, CONN_CLOSE_GRACE_S);
    }
}

/* Fails the WebSocket connection (RFC 6455 7.1.7) with a close frame and
 * no disconnect push: the client broke the framing layer, and what it sends
 * after is not read. */
static void conn_fail(conn *c, int code)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_code = (uint16_t)code;
    sendq_clear(&c->q);
    conn_rx(c, 0);
    conn_want_write(c);
    conn_set_timeout(c, PENDING_TIMEOUT_USER_OK, CONN_CLOSE_GRACE_S);
}

/* One lws_write per WRITEABLE callback: a ping, or one frame, or several
 * ready frames coalesced into one (protocol batching). */
static int conn_writeable(conn *c)
{
    conns *n = c->n;
    c->writable_req = 0;
    if (c->ping_due) {
        /* lws 4.1 does not report a zero-length pong to the protocol
         * callback, so the ping carries one byte for the pong to echo. */
        unsigned char ping[LWS_PRE + 1];
        ping[LWS_PRE] = 'h';
        c->ping_due = 0;
        if (lws_write(c->wsi, ping + LWS_PRE, 1, LWS_WRITE_PING) < 0)
            return -1;
        if (sendq_peek(&c->q, 0) || (c->closing && !sendq_count(&c->q)))
            conn_want_write(c);
        return 0;
    }
    frame *f = sendq_peek(&c->q, 0);
    if (!f) {
        if (c->closing && sendq_count(&c->q) == 0 && !c->close_sent) {
            /* The close frame is written here: lws_close_reason() plus
             * returning -1 (or a timeout) makes lws 4.1 drop the socket
             * without one. lws completes the handshake when the peer
             * answers; the timeout covers a peer that never does. */
            unsigned char cl[LWS_PRE + 2];
            cl[LWS_PRE] = (unsigned char)(c->close_code >> 8);
            cl[LWS_PRE + 1] = (unsigned char)(c->close_code & 0xff);
            c->close_sent = 1;
            if (lws_write(c->wsi, cl + LWS_PRE, 2, CONN_WRITE_CLOSE) < 0)
                return -1;
            /* lws keeps timeouts in a sorted list (O(n) insert), so at
             * shutdown, when every connection closes at once, the worker's
             * drain deadline stands in for this timeout. */
            if (!n->draining)
                conn_set_timeout(c, PENDING_TIMEOUT_CLOSE_ACK,
                                 CONN_CLOSE_GRACE_S);
        }
        return 0;
    }
    enum lws_write_protocol wp =
        c->enc == PROTO_MSGPACK ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
    size_t maxb = n->srv->cfg->max_batch_bytes;
    uint32_t used = 1;
    frame *g = sendq_peek(&c->q, 1);   /* NULL: none, or not filled yet */
    if (!g || f->len >= maxb) {
        if (lws_write(c->wsi, (unsigned char *)frame_payload(f), f->len, wp) <
            (int)f->len)
            return -1;
        if (n->m)
            metrics_add(&n->m->bytes_out, f->len);
    } else {
        proto_buf *b = &n->scratch;
        proto_buf_reset(b);
        proto_buf_append(b, frame_payload(f), f->len);
        /* Only ready frames, in order, up to max_batch_bytes. */
        for (; g && b->len + 1 + g->len <= maxb;
             g = sendq_peek(&c->q, ++used)) {
            proto_buf_sep(b, c->enc);
            proto_buf_append(b, frame_payload(g), g->len);
        }
        if (lws_write(c->wsi, (unsigned char *)proto_buf_data(b), b->len, wp) <
            (int)b->len)
            return -1;
        if (n->m)
            metrics_add(&n->m->bytes_out, b->len);
    }
    sendq_drop(&c->q, used);
    if (sendq_peek(&c->q, 0) || (c->closing && sendq_count(&c->q) == 0))
        conn_want_write(c);
    conn_output_check(c);
    return 0;
}

int conns_flush(conns *n)
{
    conn *list = n->flush, *c;
    /* Detached first: a connection with more to write than one frame
     * queues itself again, for the next pass. Nothing here frees a
     * connection (a failed write closes it asynchronously). */
    n->flush = NULL;
    while ((c = list)) {
        DL_DELETE2(list, c, fprev, fnext);
        c->flush_queued = 0;
        if (!c->live || c->writable_req)
            continue;
        /* Control frames (a ping; the close frame once the queue is empty)
         * go out from the WRITEABLE callback, where lws expects them
         * (lws_write of a close frame arms lws's own close timeout; one
         * armed here, outside its callbacks, needs conns_lws_wake to
         * fire). Rare: one ping per interval, one close per connection. */
        if (lws_partial_buffered(c->wsi) || c->ping_due ||
            (c->closing && !sendq_count(&c->q))) {
            c->writable_req = 1;
            lws_callback_on_writable(c->wsi);
            continue;
        }
        if (conn_writeable(c) < 0)
            conn_set_timeout(c, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
    return n->flush != NULL;
}

void conns_lws_wake(conns *n)
{
    if (!n->lws_wake)
        return;
    /* lws_cancel_service signals the context's event pipe: lws services
     * it, runs its idle handler, which handles what is due and re-arms
     * its timer for the next deadline. */
    lws_cancel_service(n->lws_wake);
    n->lws_wake = NULL;
}

/* --- heartbeats ---------------------------------------------------------- */

/* Tokens are honoured until token_leeway seconds after their exp (the
 * clock skew the verification allows). */
static int conn_expired(const conn *c, int64_t exp, int64_t now)
{
    return exp && now >= exp + (int64_t)c->n->srv->cfg->token_leeway;
}

/* The heartbeat also closes a connection whose token expired (4100) and
 * ends subscriptions whose channel token expired: its next check comes no
 * later than the second after the earliest expiry, not at the next ping. */
static uint64_t conn_hb_due(const conn *c, uint64_t due)
{
    int64_t exp = c->expires;
    if (c->sub_expires && (!exp || (int64_t)c->sub_expires < exp))
        exp = c->sub_expires;
    if (!exp)
        return due;
    int64_t left = exp + (int64_t)c->n->srv->cfg->token_leeway -
                   (int64_t)time(NULL);
    uint64_t at = c->n->now_s + (left > 0 ? (uint64_t)left : 0) + 1;
    return at < due ? at : due;
}

/* After an expiry moved (connect, refresh, a channel token): the next
 * heartbeat comes in time for it. A connection on the suspects list is
 * out of the wheel; conns_judge puts it back. */
static void conn_hb_resched(conn *c)
{
    if (c->hb_suspect)
        return;
    uint64_t due = conn_hb_due(c, c->hb.due_s);
    if (due < c->hb.due_s) {
        hb_remove(&c->n->wheel, &c->hb);
        c->hb.due_s = due;
        hb_insert(&c->n->wheel, &c->hb);
    }
}

/* A connection to judge after the next poll; out of the wheel meanwhile
 * (a close in between is found by its slot's generation). */
static void conns_suspect(conn *c)
{
    conns *n = c->n;
    if (n->n_suspects == n->cap_suspects) {
        n->cap_suspects = n->cap_suspects ? 2 * n->cap_suspects : 16;
        n->suspects = mem_realloc_array(n->suspects, n->cap_suspects,
                                        sizeof(*n->suspects));
    }
    n->suspects[n->n_suspects++] =
        (struct conn_ref){ .slot = c->slot, .gen = c->gen };
    c->hb_suspect = 1;
}

void conns_judge(conns *n)
{
    uint32_t k = n->n_suspects;
    if (!k)
        return;              /* every poll but the one after a verdict */
    n->n_suspects = 0;
    for (uint32_t i = 0; i < k; i++) {
        conn *c = conns_find(n, n->suspects[i].slot, n->suspects[i].gen);
        if (!c || c->closing)
            continue;
        c->hb_suspect = 0;
        if (!c->flow_off && c->last_rx_s < c->ping_sent_s) {
            log_debug("stale connection closed", LOG_STR("client", c->id),
                      LOG_INT("code", PROTO_CLOSE_STALE));
            conn_close(c, PROTO_CLOSE_STALE, "no pong", 1);
        } else {
            /* answered after all: the next tick goes on as for any
             * connection that answered (conn_heartbeat) */
            c->hb.due_s = n->now_s + 1;
            hb_insert(&n->wheel, &c->hb);
        }
    }
    if (n->cap_suspects > 4096 && k < n->cap_suspects / 4) {
        free(n->suspects);   /* a burst of suspects is not kept */
        n->suspects = NULL;
        n->cap_suspects = 0;
    }
}

static void conn_sub_end(conn *c, hub_sub *s, const char *why);
static int conn_px_refresh(conn *c);

/* Ends the subscriptions whose channel token expired without a
 * sub_refresh, each with an unsubscribe push (code 109); the connection
 * stays. */
static void conn_subs_expire(conn *c, int64_t now)
{
    uint32_t next = 0;
    hub_sub *s, *tmp;
    for (s = c->subs; s; s = tmp) {
        tmp = s->cnext;
        if (!s->expires)
            continue;
        if (!conn_expired(c, s->expires, now)) {
            if (!next || s->expires < next)
                next = s->expires;
            continue;
        }
        log_debug("channel token expired: unsubscribed",
                  LOG_STR("client", c->id),
                  LOG_STRN("channel", s->chan->name, s->chan->len));
        proto_enc_push_unsubscribe(conn_encbuf(c), c->enc,
                                   (proto_slice){ s->chan->name,
                                                  s->chan->len },
                                   PROTO_E_TOKEN_EXPIRED,
                                   "channel token expired");
        conn_send_encoded(c, UINT64_MAX);
        conn_sub_end(c, s, "server");
        if (c->closing)
            return;
    }
    c->sub_expires = next;
}

static void conn_heartbeat(conn *c, uint64_t now_s)
{
    const config *cfg = c->n->srv->cfg;
    if (c->closing)
        return;
    if (c->hb.due_s > now_s) {
        hb_insert(&c->n->wheel, &c->hb);   /* more than a wheel turn away */
        return;
    }
    if (!c->connected && !cfg->allow_anonymous &&
        now_s >= c->opened_s + cfg->handshake_timeout) {
        /* Tokens are required and none came: the socket is not a client
         * yet, and holding it is what handshake_timeout bounds. */
        log_debug("no connect in time", LOG_STR("client", c->id),
                  LOG_INT("code", PROTO_CLOSE_BAD_TOKEN));
        conn_close(c, PROTO_CLOSE_BAD_TOKEN, "no connect command in time", 0);
        return;
    }
    if (c->out_blocked && now_s >= c->over_since_s + cfg->pong_timeout) {
        /* Replies piled up for pong_timeout while the client sent and did
         * not read: it is not keeping up (as a subscriber that does not
         * read is, see conn_push). */
        conn_close_slow(c);
        return;
    }
    int64_t now = (int64_t)time(NULL);
    if (conn_expired(c, c->expires, now) && !conn_px_refresh(c)) {
        conn_close(c, PROTO_CLOSE_BAD_TOKEN, "token expired", 0);
        return;
    }
    if (conn_expired(c, c->sub_expires, now))
        conn_subs_expire(c, now);
    if (c->awaiting_pong) {
        /* Nothing read since the ping went out, for longer than
         * pong_timeout, as far as this tick can tell. libuv runs due timers
         * before it polls, so after a stall of the loop the pong may wait
         * unread in the socket: the verdict comes after the next poll
         * (conns_judge). A pong read after the ping counts even when this
         * check comes late. While the socket is not read (flow control) a
         * pong cannot be seen: output over the limit is judged above,
         * waiting replies are not the client's fault. */
        if (!c->flow_off && c->last_rx_s < c->ping_sent_s &&
            c->last_rx_s + cfg->pong_timeout < now_s) {
            conns_suspect(c);
            return;
        }
        c->awaiting_pong = 0;
        /* Alive: the next ping is due ping_interval after the last one. */
        if (c->ping_sent_s + cfg->ping_interval > now_s) {
            c->hb.due_s = conn_hb_due(c, c->ping_sent_s + cfg->ping_interval);
            hb_insert(&c->n->wheel, &c->hb);
            return;
        }
    }
    c->ping_due = 1;
    c->awaiting_pong = 1;
    c->ping_sent_s = now_s;
    conn_want_write(c);
    c->hb.due_s = conn_hb_due(c, now_s + (cfg->pong_timeout < cfg->ping_interval
                                              ? cfg->pong_timeout
                                              : cfg->ping_interval));
    hb_insert(&c->n->wheel, &c->hb);
}

void conns_tick(conns *n, uint64_t now_s)
{
    n->now_s = now_s;
    /* conn_heartbeat moves each connection to the slot of its next
     * check. */
    hb_node *h = hb_take(&n->wheel, now_s);
    while (h) {
        hb_node *next = hb_next(h);
        conn_heartbeat((conn *)((char *)h - offsetof(conn, hb)), now_s);
        h = next;
    }
}

/* --- subscriptions ----------------------------------------------------- */

static void conn_post(conn *c, chan_req *r)
{
    server_post(c->n->srv, server_owner(c->n->srv, r->chan, r->chan_len),
                &r->hdr);
}

/* Tells the channel's owner that a subscription of client (on this
 * worker) ended. */
static void conns_post_unsub(conns *n, const char *chan, size_t len,
                             const char *client)
{
    chan_req *r = chan_req_new(sizeof(chan_req), OWN_UNSUBSCRIBE, chan, len,
                               NULL, 0);
    r->route.worker = n->worker;
    memcpy(r->client, client, IDS_LEN + 1);
    server_post(n->srv, server_owner(n->srv, chan, len), &r->hdr);
}

/* A webhook event of this connection (hooks/hooks.h); chan may be NULL.
 * Only built when an endpoint wants it. */
static void conn_hook(conn *c, int type, const char *chan, size_t len,
                      const char *reason)
{
    hooks *h = c->n->srv->hooks;
    if (!hooks_wants(h, type))
        return;
    hook_event ev = {
        .type = type,
        .client = { c->id, IDS_LEN },
        .user = { c->user ? c->user : "", c->user ? strlen(c->user) : 0 },
        .channel = { chan, len },
        .code = c->close_code ? c->close_code : c->peer_code,
        .reason = reason,
        .info = { c->info, c->info ? strlen(c->info) : 0 },
    };
    hooks_emit(h, &ev);
}

/* Cluster: the node's clients are kept in Redis so that another node can
 * make their disconnect events if this one dies (only when disconnect
 * events are wanted). */
static void conn_track(conn *c, int connected)
{
    if (c->n->broker &&
        hooks_wants(c->n->srv->hooks, CONFIG_HOOK_DISCONNECT))
        c->n->broker->ops->client_change(c->n->broker, c->id,
                                         c->user ? c->user : "", connected);
}

/* Ends a subscription: an active one is removed and the owner told; a
 * pending one becomes an orphan that the owner's reply will clean up
 * (it had no subscribe event, so it gets no unsubscribe event). why: the
 * unsubscribe event's reason. */
static void conn_sub_end(conn *c, hub_sub *s, const char *why)
{
    if (s->active) {
        conn_hook(c, CONFIG_HOOK_UNSUBSCRIBE, s->chan->name, s->chan->len,
                  why);
        conns_post_unsub(c->n, s->chan->name, s->chan->len, c->id);
        hub_sub_remove(&c->n->hub, &c->subs, s);
    } else {
        hub_sub_orphan(&c->subs, s);
    }
    c->n_subs--;
    if (c->n->m)
        metrics_sub(&c->n->m->subscriptions, 1);
}

/* --- commands ----------------------------------------------------------- */

/* A request about cmd's channel from this connection, its reply's place
 * reserved in the send queue; size is the family's (core/requests.h). */
static void *conn_request_as(conn *c, size_t size, uint8_t type,
                             const proto_cmd *cmd, const config_ns *ns,
                             const char *user, size_t ulen)
{
    chan_req *r = chan_req_new(size, type, cmd->channel.ptr,
                               cmd->channel.len, user, ulen);
    r->route.worker = c->n->worker;
    r->route.slot = c->slot;
    r->route.gen = c->gen;
    r->route.cmd_id = cmd->id;
    r->route.seq = sendq_reserve(&c->q);
    r->ns = ns;
    memcpy(r->client, c->id, IDS_LEN + 1);
    c->inflight++;
    return r;
}

static void *conn_request(conn *c, size_t size, uint8_t type,
                          const proto_cmd *cmd, const config_ns *ns)
{
    const char *user = c->user ? c->user : "";
    return conn_request_as(c, size, type, cmd, ns, user, strlen(user));
}

/* A subscribe carries the presence identity (core/presence.h): the user,
 * and the token's info when there is one. */
static sub_req *conn_sub_request(conn *c, const proto_cmd *cmd,
                                 const config_ns *ns)
{
    const char *user = c->user ? c->user : "";
    size_t ulen = strlen(user);
    if (!c->info || !(ns->presence || ns->join_leave))
        return conn_request_as(c, sizeof(sub_req), OWN_SUBSCRIBE, cmd, ns,
                               user, ulen);
    size_t ilen = strlen(c->info);
    char *ident = mem_alloc(ulen + 1 + ilen);
    memcpy(ident, user, ulen);
    ident[ulen] = PRESENCE_INFO_SEP;
    memcpy(ident + ulen + 1, c->info, ilen);
    sub_req *r = conn_request_as(c, sizeof(sub_req), OWN_SUBSCRIBE, cmd, ns,
                                 ident, ulen + 1 + ilen);
    free(ident);
    return r;
}

static void conn_since(stream_pos *pos, const proto_cmd *cmd)
{
    pos->offset = cmd->since_offset;
    if (cmd->since_epoch.len <= IDS_LEN) {
        memcpy(pos->epoch, cmd->since_epoch.ptr, cmd->since_epoch.len);
        pos->epoch_len = (uint8_t)cmd->since_epoch.len;
    } else {
        pos->epoch_len = UINT8_MAX;   /* longer than any epoch: no match */
    }
}

/* cmd's token verified against the keys in force (auth/keyring.h); a
 * token naming a kid they lack makes the keyring fetch its JWKS soon. */
static int conn_verify(conn *c, const proto_cmd *cmd, jwt_claims *out)
{
    const config *cfg = c->n->srv->cfg;
    int unknown = 0;
    jwt_check chk = {
        .now = (int64_t)time(NULL),
        .leeway = cfg->token_leeway,
        .audience = cfg->token_audience,
        .issuer = cfg->token_issuer,
        .unknown_kid = &unknown,
    };
    jwt_keys *ks = keyring_get(c->n->srv->keyring);
    int rc = jwt_verify(ks, &chk, cmd->token.ptr, cmd->token.len, out);
    jwt_keys_free(ks);
    if (unknown)
        keyring_stale(c->n->srv->keyring);
    return rc;
}

static int conn_same_user(const char *a, const char *b)
{
    return a ? b && strcmp(a, b) == 0 : b == NULL;
}

/* A channel token (subscribe, sub_refresh): 0 with *exp (0: none), or 109
 * when it expired, or 103 for anything else (forged, for another key,
 * channel or user). Nothing of the token is logged. */
static int conn_channel_token(conn *c, const proto_cmd *cmd, int64_t *exp)
{
    jwt_claims tc;
    int rc = conn_verify(c, cmd, &tc);
    if (!rc && (!tc.channel || strlen(tc.channel) != cmd->channel.len ||
                memcmp(tc.channel, cmd->channel.ptr, cmd->channel.len) ||
                !conn_same_user(tc.sub, c->user)))
        rc = PROTO_E_PERMISSION;
    *exp = rc ? 0 : tc.exp;
    jwt_claims_free(&tc);
    if (rc && rc != PROTO_E_TOKEN_EXPIRED)
        rc = PROTO_E_PERMISSION;
    if (rc)
        conn_log(c->n, CONN_LOG_TOKEN, LOG_INFO, "channel token refused",
                 LOG_STR("client", c->id),
                 LOG_STRN("channel", cmd->channel.ptr, cmd->channel.len),
                 LOG_INT("code", rc));
    return rc;
}

/* The channel rules of rules.h for a command of this connection; on a
 * refusal the error is sent and NULL returned. chan_token: the command
 * carried a verified channel token. */
static const config_ns *conn_rules_tok(conn *c, enum rules_op op,
                                       const proto_cmd *cmd, uint32_t limit,
                                       int chan_token)
{
    const config *cfg = c->n->srv->cfg;
    const config_ns *ns = config_ns_of_channel(cfg, cmd->channel.ptr,
                                               cmd->channel.len);
    rules_who who = {
        .anonymous = c->user == NULL,
        .client = 1,
        .user = c->user,
        .grants = c->grants,
        .n_grants = c->n_grants,
        .channel_token = chan_token,
    };
    /* Only where channels are closed does a subscription open them (and
     * only while its channel token, if any, holds). */
    if (ns && op != RULES_SUBSCRIBE && (ns->private || ns->user_channels)) {
        hub_sub *s = hub_sub_find(&c->n->hub, c->subs, cmd->channel.ptr,
                                  cmd->channel.len);
        who.subscribed = s && !conn_expired(c, s->expires,
                                            (int64_t)time(NULL));
    }
    int code = !ns ? PROTO_E_BAD_CHANNEL
                   : rules_check_ns(cfg, ns, op, cmd->channel.ptr,
                                    cmd->channel.len, &who, limit,
                                    c->n->srv->store != NULL);
    if (code) {
        conn_reply_error(c, cmd->id, code, NULL, UINT64_MAX);
        return NULL;
    }
    return ns;
}

static const config_ns *conn_rules(conn *c, enum rules_op op,
                                   const proto_cmd *cmd, uint32_t limit)
{
    return conn_rules_tok(c, op, cmd, limit, 0);
}

/* A channel token's exp as kept on a subscription: beyond 2106 (or
 * absent) it does not expire. */
static uint32_t conn_sub_exp(int64_t exp)
{
    return exp > 0 && exp <= (int64_t)UINT32_MAX ? (uint32_t)exp : 0;
}

static void conn_sub_expiry(conn *c, hub_sub *s, int64_t exp)
{
    s->expires = conn_sub_exp(exp);
    if (s->expires && (!c->sub_expires || s->expires < c->sub_expires)) {
        c->sub_expires = s->expires;
        conn_hb_resched(c);
    }
}

/* --- proxy mode (auth/proxy.h, docs/proxy.md) --------------------------- */

static void conn_resume(conn *c);
static void conn_run(conn *c, const char *buf, size_t len, int binary);

static void conn_px_free(conn *c)
{
    free(c->px);
    c->px = NULL;
}

/* The JSON body of a call: the connection's identity and the fields
 * given; data (publish) is spliced in as the client sent it. */
static char *conn_px_body(const conn *c, json_t *fields, const proto_data *data)
{
    json_object_set_new(fields, "client", json_stringn(c->id, IDS_LEN));
    if (c->user)
        json_object_set_new(fields, "user", json_string(c->user));
    char *s = json_dumps(fields, JSON_COMPACT);
    json_decref(fields);
    if (!s || !data)
        return s;
    size_t n = strlen(s), dl = data->json.len;
    char *out = mem_alloc(n + 8 + dl + 1);
    memcpy(out, s, n - 1);                    /* without the final '}' */
    memcpy(out + n - 1, ",\"data\":", 8);
    memcpy(out + n + 7, data->json.ptr, dl);
    memcpy(out + n + 7 + dl, "}", 2);
    free(s);
    return out;
}

/* Sends a call and makes cmd wait for its verdict (with its bytes, to run
 * again, unless it is a connect). 0, or -1 when the proxy's queue is full
 * (nothing waits then). */
static int conn_px_park(conn *c, enum proxy_op op, const proto_cmd *cmd,
                        char *body, int fail_open)
{
    if (!body)
        return -1;
    conns *n = c->n;
    int rc = proxy_call(n->srv->proxy, op, n->worker, c->slot, c->gen,
                        cmd->id, body, strlen(body));
    free(body);
    if (rc < 0)
        return -1;
    size_t len = op == PROXY_CONNECT || !n->cur_cmd ? 0 : n->cur_len;
    c->px = mem_calloc(1, sizeof(conn_px) + len);
    c->px->op = (uint8_t)op;
    c->px->cmd_id = cmd->id;
    c->px->fail_open = (uint8_t)fail_open;
    c->px->binary = (uint8_t)n->cur_binary;
    c->px->len = len;
    if (len)
        memcpy(c->px->cmd, n->cur_cmd, len);
    return 0;
}

/* Whether cmd is the command the backend allowed (its verdict is taken:
 * *exp gets the verdict's expiry). */
static int conn_px_allowed(conn *c, enum proxy_op op, const proto_cmd *cmd,
                           int64_t *exp)
{
    if (!c->px || !c->px->approved || c->px->op != op ||
        c->px->cmd_id != cmd->id)
        return 0;
    if (exp)
        *exp = c->px->expire_at;
    conn_px_free(c);
    return 1;
}

static void conn_px_unavailable(conn *c, uint32_t id)
{
    conn_reply_error(c, id, PROTO_E_INTERNAL,
                     "authorization backend unavailable", UINT64_MAX);
}

static int conn_px_connect(conn *c, const proto_cmd *cmd)
{
    json_t *f = json_object();
    json_object_set_new(f, "encoding",
                        json_string(c->enc == PROTO_MSGPACK ? "msgpack" : "json"));
    if (cmd->token.len)
        json_object_set_new(f, "token", json_stringn(cmd->token.ptr,
                                                      cmd->token.len));
    if (cmd->name.len)
        json_object_set_new(f, "name", json_stringn(cmd->name.ptr, cmd->name.len));
    if (cmd->version.len)
        json_object_set_new(f, "version", json_stringn(cmd->version.ptr,
                                                        cmd->version.len));
    if (conn_px_park(c, PROXY_CONNECT, cmd, conn_px_body(c, f, NULL), 0) < 0) {
        conn_px_unavailable(c, cmd->id);
        conn_close(c, PROTO_CLOSE_NODE_FAULT, "authorization backend busy", 1);
        return -1;
    }
    return 0;
}

static void conn_connected(conn *c, uint32_t id);

/* The connect proxy's verdict. */
static void conn_px_connect_done(conn *c, const proxy_answer *a)
{
    const config *cfg = c->n->srv->cfg;
    uint32_t id = c->px->cmd_id;
    conn_px_free(c);
    int code = 0;
    if (a->outcome == PROXY_DENY)
        code = a->code;
    else if (a->outcome == PROXY_ALLOW && !a->user && !cfg->allow_anonymous)
        code = PROTO_E_UNAUTHORIZED;
    else if (a->outcome == PROXY_ALLOW && a->expire_at &&
             a->expire_at <= (int64_t)time(NULL))
        code = PROTO_E_TOKEN_EXPIRED;
    if (a->outcome == PROXY_FAILED) {
        conn_px_unavailable(c, id);
        conn_close(c, PROTO_CLOSE_NODE_FAULT, "authorization backend unavailable", 1);
        return;
    }
    if (code) {
        conn_log(c->n, CONN_LOG_TOKEN, LOG_INFO, "connect refused by the proxy",
                 LOG_STR("client", c->id), LOG_INT("code", code));
        conn_reply_error(c, id, code, a->outcome == PROXY_DENY ? a->message : NULL,
                         UINT64_MAX);
        conn_close(c, PROTO_CLOSE_BAD_TOKEN, "refused", 0);
        return;
    }
    c->user = a->user ? mem_strdup(a->user) : NULL;
    c->info = a->info ? mem_strdup(a->info) : NULL;
    c->expires = a->expire_at;
    c->proxied = 1;
    if (a->n_channels) {
        c->grants = mem_calloc(a->n_channels, sizeof(char *));
        for (uint32_t i = 0; i < a->n_channels; i++)
            c->grants[i] = mem_strdup(a->channels[i]);
        c->n_grants = a->n_channels;
    }
    conn_hb_resched(c);
    conn_connected(c, id);
}

/* The refresh proxy's verdict on a connection whose expiry came. */
static void conn_px_refresh_done(conn *c, const proxy_answer *a)
{
    c->refreshing = 0;
    int64_t now = (int64_t)time(NULL);
    if (a->outcome != PROXY_ALLOW || (a->expire_at && a->expire_at <= now)) {
        conn_log(c->n, CONN_LOG_TOKEN, LOG_INFO, "refresh refused by the proxy",
                 LOG_STR("client", c->id),
                 LOG_STR("outcome", a->outcome == PROXY_FAILED ? "failed"
                                                               : "denied"));
        conn_close(c, PROTO_CLOSE_BAD_TOKEN, "token expired", 0);
        return;
    }
    c->expires = a->expire_at;
    conn_hb_resched(c);
}

/* Asks the refresh proxy about a proxied connection whose expiry came;
 * 1 when asked (the connection goes on meanwhile), else 0. */
static int conn_px_refresh(conn *c)
{
    if (!c->proxied || !proxy_has(c->n->srv->proxy, PROXY_REFRESH))
        return 0;
    if (c->refreshing)
        return 1;
    char *body = conn_px_body(c, json_object(), NULL);
    int rc = body ? proxy_call(c->n->srv->proxy, PROXY_REFRESH, c->n->worker,
                               c->slot, c->gen, 0, body, strlen(body)) : -1;
    free(body);
    if (rc < 0)
        return 0;
    c->refreshing = 1;
    return 1;
}

static void conns_on_proxy(conns *n, const proxy_answer *a)
{
    conn *c = conns_find(n, a->slot, a->gen);
    if (!c || c->closing)
        return;                          /* gone meanwhile */
    if (a->op == PROXY_REFRESH) {
        if (c->refreshing)
            conn_px_refresh_done(c, a);
        return;
    }
    if (!c->px || c->px->approved || c->px->op != a->op ||
        c->px->cmd_id != a->cmd_id)
        return;
    if (a->op == PROXY_CONNECT) {
        conn_px_connect_done(c, a);
    } else if (a->outcome == PROXY_ALLOW ||
               (a->outcome == PROXY_FAILED && c->px->fail_open)) {
        /* Runs again, now allowed; it takes its verdict (conn_px_allowed)
         * unless it is refused for another reason first. */
        c->px->approved = 1;
        c->px->expire_at = a->outcome == PROXY_ALLOW ? a->expire_at : 0;
        conn_px *px = c->px;
        conn_run(c, px->cmd, px->len, px->binary);
        /* Refused before it took its verdict: done with it. (Held behind
         * the connection's other waits, it takes it when it runs.) */
        if (c->px == px && !c->held)
            conn_px_free(c);
    } else {
        uint32_t id = c->px->cmd_id;
        conn_px_free(c);
        if (a->outcome == PROXY_DENY)
            conn_reply_error(c, id, a->code, a->message, UINT64_MAX);
        else
            conn_px_unavailable(c, id);
    }
    if (!c->closing)
        conn_resume(c);
}

static int conn_do_connect(conn *c, const proto_cmd *cmd)
{
    const config *cfg = c->n->srv->cfg;
    if (c->connected) {
        conn_reply_error(c, cmd->id, PROTO_E_BAD_REQUEST, "already connected",
                         UINT64_MAX);
        return 0;
    }
    if (proxy_has(c->n->srv->proxy, PROXY_CONNECT))
        return conn_px_connect(c, cmd);
    if (cmd->token.len) {
        jwt_claims tc;
        int rc = conn_verify(c, cmd, &tc);
        /* A channel token opens one channel; it is not a connection
         * token (it often lives longer than the session). A token without
         * a user is an anonymous connection: only where anonymous ones are
         * allowed. */
        if (!rc && tc.channel) {
            jwt_claims_free(&tc);
            rc = PROTO_E_UNAUTHORIZED;
        } else if (!rc && !tc.sub && !cfg->allow_anonymous) {
            jwt_claims_free(&tc);
            rc = PROTO_E_UNAUTHORIZED;
        }
        if (rc) {
            conn_log(c->n, CONN_LOG_TOKEN, LOG_INFO,
                     "connection token refused", LOG_STR("client", c->id),
                     LOG_INT("code", rc));
            conn_reply_error(c, cmd->id, rc, NULL, UINT64_MAX);
            conn_close(c, PROTO_CLOSE_BAD_TOKEN,
                       rc == PROTO_E_TOKEN_EXPIRED ? "token expired"
                                                   : "invalid token", 0);
            return -1;
        }
        c->user = tc.sub;
        c->expires = tc.exp;
        c->grants = tc.channels;
        c->n_grants = tc.n_channels;
        c->info = tc.info;
        /* The claims now belong to the connection. */
        free(tc.channel);
        conn_hb_resched(c);
    } else if (!cfg->allow_anonymous) {
        conn_reply_error(c, cmd->id, PROTO_E_UNAUTHORIZED, "token required",
                         UINT64_MAX);
        conn_close(c, PROTO_CLOSE_BAD_TOKEN, "token required", 0);
        return -1;
    }
    conn_connected(c, cmd->id);
    return 0;
}

/* The connection is a client now (its token, or the connect proxy's
 * verdict, accepted): the reply and the connect event. */
static void conn_connected(conn *c, uint32_t id)
{
    const config *cfg = c->n->srv->cfg;
    c->connected = 1;
    conn_hook(c, CONFIG_HOOK_CONNECT, NULL, 0, NULL);
    conn_track(c, 1);
    proto_enc_ok_connect(conn_encbuf(c), c->enc, id,
                         (proto_slice){ c->id, IDS_LEN },
                         (proto_slice){ c->n->srv->node,
                                        strlen(c->n->srv->node) },
                         cfg->ping_interval, c->expires);
    conn_send_encoded(c, UINT64_MAX);
}

/* The namespace of a subscribe the backend decides, or NULL. (Looked up
 * before the channel rules: a token given there is the backend's to
 * judge, not a channel token to verify.) */
static const config_ns *conn_px_sub_ns(const conn *c, const proto_cmd *cmd)
{
    if (!c->n->srv->proxy)
        return NULL;
    const config_ns *ns = config_ns_of_channel(c->n->srv->cfg,
                                               cmd->channel.ptr,
                                               cmd->channel.len);
    return ns && ns->proxy_subscribe ? ns : NULL;
}

/* A subscribe or publish the backend decides: 1 when it must wait for the
 * verdict (or was answered), 0 when it goes on (allowed, or the backend
 * failed and the namespace fails open). */
static int conn_px_ask(conn *c, const proto_cmd *cmd, enum proxy_op op,
                       const config_ns *ns, int64_t *exp)
{
    if (conn_px_allowed(c, op, cmd, exp))
        return 0;
    json_t *f = json_object();
    json_object_set_new(f, "channel", json_stringn(cmd->channel.ptr,
                                                    cmd->channel.len));
    if (op == PROXY_SUBSCRIBE && cmd->token.len)
        json_object_set_new(f, "token", json_stringn(cmd->token.ptr,
                                                      cmd->token.len));
    if (op == PROXY_SUBSCRIBE && c->info) {
        json_t *info = json_loads(c->info, 0, NULL);
        if (info)
            json_object_set_new(f, "info", info);
    }
    char *body = conn_px_body(c, f, op == PROXY_PUBLISH ? &cmd->data : NULL);
    if (conn_px_park(c, op, cmd, body, ns->proxy_fail_open) == 0)
        return 1;
    if (ns->proxy_fail_open)
        return 0;
    conn_px_unavailable(c, cmd->id);
    return 1;
}

static void conn_do_subscribe(conn *c, const proto_cmd *cmd)
{
    int64_t exp = 0;
    int code = 0;
    /* Where the backend decides, a token is its to judge. */
    const config_ns *pns = conn_px_sub_ns(c, cmd);
    if (cmd->token.len && !pns) {
        /* A channel token given is checked wherever it is given: its
         * expiry ends the subscription. */
        code = conn_channel_token(c, cmd, &exp);
        if (code) {
            conn_reply_error(c, cmd->id, code, NULL, UINT64_MAX);
            return;
        }
    }
    const config_ns *ns = conn_rules_tok(c, RULES_SUBSCRIBE, cmd, 0,
                                         cmd->token.len != 0);
    if (!ns)
        return;
    if (hub_sub_find(&c->n->hub, c->subs, cmd->channel.ptr,
                     cmd->channel.len))
        code = PROTO_E_ALREADY_SUBSCRIBED;
    else if (c->n_subs >= c->n->srv->cfg->max_channels_per_conn)
        code = PROTO_E_LIMIT;
    if (code) {
        conn_reply_error(c, cmd->id, code, NULL, UINT64_MAX);
        return;
    }
    if (pns && conn_px_ask(c, cmd, PROXY_SUBSCRIBE, pns, &exp))
        return;
    sub_req *r = conn_sub_request(c, cmd, ns);
    r->has_since = (uint8_t)cmd->has_since;
    if (cmd->has_since)
        conn_since(&r->since, cmd);
    r->token = ids_next(&c->n->rng);
    hub_sub *s = hub_sub_add(&c->n->hub, &c->subs, c, cmd->channel.ptr,
                             cmd->channel.len, r->token);
    if (exp)
        conn_sub_expiry(c, s, exp);
    c->n_subs++;
    if (c->n->m)
        metrics_add(&c->n->m->subscriptions, 1);
    conn_post(c, &r->h);
}

static void conn_do_unsubscribe(conn *c, const proto_cmd *cmd)
{
    hub_sub *s = hub_sub_find(&c->n->hub, c->subs, cmd->channel.ptr,
                              cmd->channel.len);
    if (s)
        conn_sub_end(c, s, "client");
    proto_enc_ok_empty(conn_encbuf(c), c->enc, cmd->id);
    conn_send_encoded(c, UINT64_MAX);
}

static void conn_do_publish(conn *c, const proto_cmd *cmd)
{
    const config_ns *ns = conn_rules(c, RULES_PUBLISH, cmd, 0);
    if (!ns)
        return;
    if (ns->proxy_publish && c->n->srv->proxy &&
        conn_px_ask(c, cmd, PROXY_PUBLISH, ns, NULL))
        return;
    proto_client_info info = {
        .client = { c->id, IDS_LEN },
        .user = { c->user ? c->user : "", c->user ? strlen(c->user) : 0 },
    };
    pub_req *r = conn_request(c, sizeof(pub_req), OWN_PUBLISH, cmd, ns);
    char scope[5 + 256];        /* "user:" + the user (255 bytes at most) */
    int slen = snprintf(scope, sizeof(scope), "user:%s", c->user ? c->user : "");
    if (slen < 0 || (size_t)slen >= sizeof(scope))
        slen = (int)sizeof(scope) - 1;
    pub_req_draft(r, &cmd->data, &info, cmd->idempotency_key,
                  (proto_slice){ scope, (size_t)slen });
    if (c->n->m)
        metrics_add(&c->n->m->received[METRICS_SRC_CLIENT], 1);
    conn_post(c, &r->h);
}

static void conn_do_history(conn *c, const proto_cmd *cmd)
{
    uint32_t limit = cmd->has_limit
                         ? cmd->limit
                         : rules_history_default_limit(c->n->srv->cfg);
    const config_ns *ns = conn_rules(c, RULES_HISTORY, cmd, limit);
    if (!ns)
        return;
    hist_req *r = conn_request(c, sizeof(hist_req), OWN_HISTORY, cmd, ns);
    r->has_since = (uint8_t)cmd->has_since;
    if (cmd->has_since)
        conn_since(&r->since, cmd);
    r->reverse = (uint8_t)cmd->reverse;
    r->limit = limit;
    conn_post(c, &r->h);
}

static void conn_do_presence(conn *c, const proto_cmd *cmd)
{
    const config_ns *ns = conn_rules(c, RULES_PRESENCE, cmd, 0);
    if (!ns)
        return;
    conn_post(c, conn_request(c, sizeof(pres_req), OWN_PRESENCE, cmd, ns));
}

/* Token bucket; returns 0 when the command may run. */
static int conn_rate_limited(conn *c)
{
    const config *cfg = c->n->srv->cfg;
    if (!cfg->rate_limit)
        return 0;
    uint64_t now = uv_now(c->n->loop);
    if (c->tokens_ms == 0) {
        c->tokens = cfg->rate_burst;
    } else {
        c->tokens += (double)(now - c->tokens_ms) * cfg->rate_limit / 1000.0;
        if (c->tokens > cfg->rate_burst)
            c->tokens = cfg->rate_burst;
    }
    c->tokens_ms = now;
    if (c->tokens < 1.0)
        return 1;
    c->tokens -= 1.0;
    return 0;
}

/* refresh: a new connection token for the same user replaces the one the
 * connection has (its exp, grants and info). A refused one is answered
 * with its code and changes nothing: the connection stays until the
 * token it has expires. */
static void conn_do_refresh(conn *c, const proto_cmd *cmd)
{
    jwt_claims tc;
    int rc = conn_verify(c, cmd, &tc);
    if (!rc && tc.channel)
        rc = PROTO_E_UNAUTHORIZED;  /* a channel token, as on connect */
    else if (!rc && !conn_same_user(tc.sub, c->user))
        rc = PROTO_E_PERMISSION;    /* a refresh cannot change the user */
    else if (!rc && !tc.sub && !c->n->srv->cfg->allow_anonymous)
        rc = PROTO_E_UNAUTHORIZED;  /* as on connect */
    if (rc) {
        jwt_claims_free(&tc);
        conn_log(c->n, CONN_LOG_TOKEN, LOG_INFO, "refresh token refused",
                 LOG_STR("client", c->id), LOG_INT("code", rc));
        conn_reply_error(c, cmd->id, rc,
                         rc == PROTO_E_PERMISSION ? "token for another user"
                                                  : NULL, UINT64_MAX);
        return;
    }
    for (uint32_t i = 0; i < c->n_grants; i++)
        free(c->grants[i]);
    free(c->grants);
    free(c->info);
    free(tc.sub);
    free(tc.channel);
    c->grants = tc.channels;
    c->n_grants = tc.n_channels;
    c->info = tc.info;
    c->expires = tc.exp;
    conn_hb_resched(c);
    proto_enc_ok_expires(conn_encbuf(c), c->enc, cmd->id, c->expires);
    conn_send_encoded(c, UINT64_MAX);
}

/* sub_refresh: a new channel token for a subscription of the connection
 * moves its expiry. */
static void conn_do_sub_refresh(conn *c, const proto_cmd *cmd)
{
    hub_sub *s = hub_sub_find(&c->n->hub, c->subs, cmd->channel.ptr,
                              cmd->channel.len);
    if (!s) {
        conn_reply_error(c, cmd->id, PROTO_E_BAD_REQUEST, "not subscribed",
                         UINT64_MAX);
        return;
    }
    int64_t exp;
    int rc = conn_channel_token(c, cmd, &exp);
    if (rc) {
        conn_reply_error(c, cmd->id, rc, NULL, UINT64_MAX);
        return;
    }
    /* The earliest expiry is recomputed when it comes (conn_subs_expire);
     * a later one only makes that check find nothing. */
    conn_sub_expiry(c, s, exp);
    proto_enc_ok_expires(conn_encbuf(c), c->enc, cmd->id, exp);
    conn_send_encoded(c, UINT64_MAX);
}

/* Returns -1 when the connection is closing and input must stop. */
static int conn_command(conn *c, const proto_cmd *cmd)
{
    if (c->expires && conn_expired(c, c->expires, (int64_t)time(NULL)) &&
        !conn_px_refresh(c)) {
        /* Expired between two heartbeat checks: nothing more runs, not
         * even a refresh (that comes before the expiry). A proxied
         * connection's expiry asks the refresh proxy and goes on. */
        conn_close(c, PROTO_CLOSE_BAD_TOKEN, "token expired", 0);
        return -1;
    }
    /* A command the backend allowed runs again: it was counted once. */
    if (!(c->px && c->px->approved) && conn_rate_limited(c)) {
        conn_reply_error(c, cmd->id, PROTO_E_RATE_LIMITED, NULL, UINT64_MAX);
        return 0;
    }
    if (cmd->op == PROTO_OP_CONNECT)
        return conn_do_connect(c, cmd);
    if (!c->connected) {
        if (!c->n->srv->cfg->allow_anonymous) {
            conn_reply_error(c, cmd->id, PROTO_E_UNAUTHORIZED,
                             "connect first", UINT64_MAX);
            return 0;
        }
        c->connected = 1;   /* implied anonymous connect */
        conn_hook(c, CONFIG_HOOK_CONNECT, NULL, 0, NULL);
        conn_track(c, 1);
    }
    switch (cmd->op) {
    case PROTO_OP_SUBSCRIBE: conn_do_subscribe(c, cmd); break;
    case PROTO_OP_UNSUBSCRIBE: conn_do_unsubscribe(c, cmd); break;
    case PROTO_OP_PUBLISH: conn_do_publish(c, cmd); break;
    case PROTO_OP_HISTORY: conn_do_history(c, cmd); break;
    case PROTO_OP_PRESENCE: conn_do_presence(c, cmd); break;
    case PROTO_OP_PING:
        proto_enc_ok_empty(conn_encbuf(c), c->enc, cmd->id);
        conn_send_encoded(c, UINT64_MAX);
        break;
    case PROTO_OP_REFRESH: conn_do_refresh(c, cmd); break;
    case PROTO_OP_SUB_REFRESH: conn_do_sub_refresh(c, cmd); break;
    default:
        conn_reply_error(c, cmd->id, PROTO_E_UNKNOWN_OP, NULL, UINT64_MAX);
    }
    return 0;
}

/* Counts a malformed command; too many in a row close the connection. */
static int conn_malformed(conn *c)
{
    if (++c->malformed >= CONN_MAX_MALFORMED) {
        conn_log(c->n, CONN_LOG_PROTOCOL, LOG_INFO,
                 "protocol violations: closing", LOG_STR("client", c->id),
                 LOG_INT("code", PROTO_CLOSE_PROTOCOL));
        conn_close(c, PROTO_CLOSE_PROTOCOL, "protocol violation", 0);
        return -1;
    }
    return 0;
}

/* --- input flow ----------------------------------------------------------- */

/* Commands wait while the connection has CONN_MAX_INFLIGHT of them out or
 * its output is over send_queue_max. */
static int conn_must_wait(const conn *c)
{
    return c->out_blocked || c->inflight >= CONN_MAX_INFLIGHT ||
           (c->px && !c->px->approved);
}

/* Reads the socket or stops reading it (lws rx flow control). */
static void conn_rx(conn *c, int on)
{
    if (c->flow_off == !on)
        return;
    c->flow_off = (uint8_t)!on;
    lws_rx_flow_control(c->wsi, on);
}

/* Keeps a message's commands for later, behind what is held already, and
 * stops reading the socket meanwhile. The held input is a run of records
 * (u32 length, u8 binary, bytes), one per message, so two messages are
 * never read as one. It is at most one message's rest plus what lws had
 * already read: the socket is not read while anything is held. */
static void conn_hold(conn *c, const char *buf, size_t len, int binary)
{
    conn_rx(c, 0);
    if (!len)
        return;
    uint32_t n = (uint32_t)len;
    size_t at = c->held_len;
    c->held = mem_realloc(c->held, at + 5 + len);
    memcpy(c->held + at, &n, 4);
    c->held[at + 4] = (char)(binary != 0);
    memcpy(c->held + at + 5, buf, len);
    c->held_len = (uint32_t)(at + 5 + len);
}

static void conn_run(conn *c, const char *buf, size_t len, int binary);

/* Runs one message, or holds it if earlier input is still held. */
static void conn_dispatch(conn *c, const char *buf, size_t len, int binary)
{
    if (c->held)
        conn_hold(c, buf, len, binary);
    else
        conn_run(c, buf, len, binary);
}

/* Commands may go on again (under half of CONN_MAX_INFLIGHT out, output
 * back under the limit): what was held runs, and the socket is read again
 * when nothing is left waiting. */
static void conn_resume(conn *c)
{
    if (c->out_blocked || c->inflight >= CONN_MAX_INFLIGHT / 2)
        return;
    if (c->held && !c->closing) {
        char *h = c->held;
        uint32_t hl = c->held_len;
        c->held = NULL;
        c->held_len = 0;
        for (uint32_t at = 0; at + 5 <= hl && !c->closing;) {
            uint32_t n;
            memcpy(&n, h + at, 4);
            conn_dispatch(c, h + at + 5, n, h[at + 4]);
            at += 5 + n;
        }
        free(h);
    }
    if (c->closing) {
        free(c->held);
        c->held = NULL;
        c->held_len = 0;
        return;
    }
    if (!c->held && !conn_must_wait(c))
        conn_rx(c, 1);
}

/* The output's bound: over send_queue_max the connection's commands wait
 * (its replies are what fills it); back under half, they go on. Staying
 * over for pong_timeout closes it with 4001 (conn_heartbeat). */
static void conn_output_check(conn *c)
{
    if (c->closing)
        return;
    size_t q = sendq_bytes(&c->q), max = c->n->srv->cfg->send_queue_max;
    if (!c->out_blocked && q > max) {
        c->out_blocked = 1;
        c->over_since_s = c->n->now_s;
        conn_rx(c, 0);
        /* Checked then, not at the next ping. */
        uint64_t due = c->n->now_s + c->n->srv->cfg->pong_timeout;
        if (c->hb.due_s > due) {
            hb_remove(&c->n->wheel, &c->hb);
            c->hb.due_s = due;
            hb_insert(&c->n->wheel, &c->hb);
        }
    } else if (c->out_blocked && q <= max / 2) {
        c->out_blocked = 0;
        conn_resume(c);
    }
}

/* Runs the commands of one received message, until they must wait. */
static void conn_run(conn *c, const char *buf, size_t len, int binary)
{
    proto_reader r;
    proto_cmd cmd;
    proto_error err;
    proto_reader_init(&r, (proto_enc)c->enc, buf, len);
    for (;;) {
        if (conn_must_wait(c)) {
            conn_hold(c, buf + r.pos, len - r.pos, binary);
            return;
        }
        size_t at = r.pos;
        int rc = proto_next(&r, &cmd, &err);
        if (rc == 0)
            break;
        if (rc < 0) {
            conn_reply_error(c, err.id, err.code, err.message, UINT64_MAX);
            if (err.code == PROTO_E_BAD_REQUEST && conn_malformed(c) < 0)
                return;
            continue;
        }
        c->malformed = 0;
        c->n->cur_cmd = buf + at;
        c->n->cur_len = r.pos - at;
        c->n->cur_binary = binary;
        rc = conn_command(c, &cmd);
        c->n->cur_cmd = NULL;
        proto_cmd_free(&cmd);
        if (rc < 0 || c->closing)
            return;
    }
}

static void conn_message(conn *c, const char *buf, size_t len, int binary)
{
    if ((c->enc == PROTO_MSGPACK) != (binary != 0)) {
        conn_reply_error(c, 0, PROTO_E_BAD_REQUEST,
                         binary ? "binary frame on a JSON connection"
                                : "text frame on a msgpack connection",
                         UINT64_MAX);
        conn_malformed(c);
        return;
    }
    /* lws may have read it before the socket was paused: it runs after
     * what waits. */
    conn_dispatch(c, buf, len, binary);
}

/* Reassembles fragmented messages (lws hands over at most rx_buffer_size
 * bytes at a time) up to max_message_size; a larger message is skipped
 * and answered with error 112. */
static void conn_receive(conn *c, const char *in, size_t len)
{
    const config *cfg = c->n->srv->cfg;
    int final = lws_is_final_fragment(c->wsi);
    c->last_rx_s = c->n->now_s;
    if (c->n->m)
        metrics_add(&c->n->m->bytes_in, len);
    if (c->closing)
        return;
    if (!c->rx_active) {
        c->rx_active = 1;
        c->rx_binary = (uint8_t)lws_frame_is_binary(c->wsi);
        c->rx_overflow = 0;
        c->rx_len = 0;
        if (final) {
            c->rx_active = 0;
            if (len > cfg->max_message_size)
                conn_reply_error(c, 0, PROTO_E_TOO_LARGE, NULL, UINT64_MAX);
            else
                conn_message(c, in, len, c->rx_binary);
            return;
        }
    }
    if (c->rx_overflow) {
        /* Discarded, and counted: a message still going at
         * CONN_DISCARD_MAX times the limit is not a mistake. */
        c->rx_len += (uint32_t)len;
        if (c->rx_len / CONN_DISCARD_MAX > cfg->max_message_size)
            conn_fail(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
    } else {
        if ((size_t)c->rx_len + len > cfg->max_message_size) {
            c->rx_overflow = 1;
            free(c->rx);
            c->rx = NULL;
            c->rx_cap = 0;
            c->rx_len += (uint32_t)len;
        } else {
            if (c->rx_len + len > c->rx_cap) {
                uint32_t cap = c->rx_cap ? c->rx_cap : 1024;
                while (cap < c->rx_len + len)
                    cap *= 2;
                c->rx = mem_realloc(c->rx, cap);
                c->rx_cap = cap;
            }
            memcpy(c->rx + c->rx_len, in, len);
            c->rx_len += (uint32_t)len;
        }
    }
    if (!final)
        return;
    c->rx_active = 0;
    if (c->rx_overflow)
        conn_reply_error(c, 0, PROTO_E_TOO_LARGE, NULL, UINT64_MAX);
    else
        conn_message(c, c->rx, c->rx_len, c->rx_binary);
    c->rx_len = 0;
    if (c->rx_cap > 4096) {
        /* Keep idle connections small after a burst of big messages. */
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
}

/* --- replies and pushes from the mailbox ------------------------------- */

static void conn_reply_done(conn *c)
{
    if (c->inflight)
        c->inflight--;
    conn_resume(c);
}

/* The views of a reply's publications, for the encoder. */
static proto_pub *conn_pub_views(const publist *l)
{
    if (!l->n)
        return NULL;
    proto_pub *v = mem_alloc(sizeof(*v) * l->n);
    for (size_t i = 0; i < l->n; i++)
        v[i] = l->v[i]->view;
    return v;
}

/* Encodes the ok reply of r into the worker's encode buffer. */
static void conn_encode_reply(conn *c, chan_req *r)
{
    proto_buf *b = conn_encbuf(c);
    uint32_t id = r->route.cmd_id;
    proto_pub *v = NULL;
    switch (r->hdr.type) {
    case CON_SUBSCRIBED: {
        sub_req *s = (sub_req *)r;
        v = conn_pub_views(&s->pubs);
        proto_enc_ok_subscribe(b, c->enc, id, (proto_slice){ s->epoch, IDS_LEN },
                               s->top, s->recovered, v, s->pubs.n);
        break;
    }
    case CON_PUBLISHED: {
        pub_req *p = (pub_req *)r;
        proto_enc_ok_publish_dup(b, c->enc, id, p->offset,
                                 (proto_slice){ p->epoch, IDS_LEN },
                                 p->duplicate);
        break;
    }
    case CON_HISTORY: {
        hist_req *h = (hist_req *)r;
        v = conn_pub_views(&h->pubs);
        proto_enc_ok_history(b, c->enc, id, (proto_slice){ h->epoch, IDS_LEN },
                             h->top, v, h->pubs.n);
        break;
    }
    case CON_PRESENCE: {
        pres_req *p = (pres_req *)r;
        proto_enc_ok_presence(b, c->enc, id, p->entries, p->n_entries);
        break;
    }
    }
    free(v);
}

/* Fills a reply's reserved place: the error or the answer. */
static void conn_answer(conn *c, chan_req *r)
{
    if (r->code) {
        conn_reply_error(c, r->route.cmd_id, r->code, r->errmsg,
                         r->route.seq);
    } else {
        conn_encode_reply(c, r);
        conn_send_encoded(c, r->route.seq);
    }
    conn_reply_done(c);
}

static void conns_on_subscribed(conns *n, sub_req *r)
{
    conn *c = conns_route(n, &r->h.route);
    hub_sub *s = c ? hub_sub_find(&n->hub, c->subs, r->h.chan,
                                  r->h.chan_len)
                   : NULL;
    if (s && s->token != r->token)
        s = NULL;   /* a later subscription to the same channel */
    if (!s) {
        /* Unsubscribed or disconnected meanwhile. */
        hub_sub *o = hub_orphan_find(&n->hub, r->h.chan, r->h.chan_len,
                                     r->token);
        if (o) {
            if (r->h.code == 0)
                conns_post_unsub(n, r->h.chan, r->h.chan_len, r->h.client);
            hub_sub_remove(&n->hub, NULL, o);
        }
        if (c)
            conn_answer(c, &r->h);   /* unsubscribed meanwhile: still answer */
        return;
    }
    if (r->h.code) {
        hub_sub_remove(&n->hub, &c->subs, s);
        c->n_subs--;
        if (n->m)
            metrics_sub(&n->m->subscriptions, 1);
    } else {
        s->active = 1;
        conn_hook(c, CONFIG_HOOK_SUBSCRIBE, r->h.chan, r->h.chan_len, NULL);
    }
    conn_answer(c, &r->h);
}

/* Pushes one message to every active local subscriber of a channel but
 * `skip` (a client id, or NULL): encoded once per encoding in use, then
 * one reference per subscriber. Returns how many were queued (counted
 * here, added to the metrics once by the caller: nothing shared is
 * written per subscriber). */
typedef void (*conns_encode_fn)(proto_buf *b, proto_enc enc, const void *arg);

static uint64_t conns_fanout(conns *n, const char *chan, size_t len,
                             const char *skip, conns_encode_fn encode,
                             const void *arg)
{
    hub_chan *ch = hub_chan_find(&n->hub, chan, len);
    if (!ch)
        return 0;
    uint64_t queued = 0;
    frame *fr[2] = { NULL, NULL };
    for (hub_sub *s = ch->subs; s; s = s->next) {
        conn *c = s->conn;
        if (!s->active || (skip && memcmp(c->id, skip, IDS_LEN) == 0))
            continue;
        if (!fr[c->enc]) {
            encode(conn_encbuf(c), (proto_enc)c->enc, arg);
            fr[c->enc] = conns_take_frame(n);
        }
        queued += (uint64_t)conn_push(c, fr[c->enc]);
    }
    frame_unref(fr[0]);
    frame_unref(fr[1]);
    return queued;
}

static void conns_encode_pub(proto_buf *b, proto_enc enc, const void *arg)
{
    const pub *p = arg;
    proto_enc_push_pub(b, enc, &p->view);
}

static void conns_encode_join(proto_buf *b, proto_enc enc, const void *arg)
{
    const join_msg *j = arg;
    proto_client_info info = { .client = { j->client, IDS_LEN } };
    presence_ident_split(j->user, j->user_len, &info.user, &info.conn_info);
    proto_enc_push_join(b, enc, j->join,
                        (proto_slice){ j->h.chan, j->h.chan_len }, &info);
}

/* Cluster: the channel's stream has a gap this node could not fill (or
 * Redis lost it): its subscribers here reconnect and recover with since,
 * which tells them honestly what is still there. */
static void conns_on_reset(conns *n, reset_msg *r)
{
    hub_chan *ch = hub_chan_find(&n->hub, r->chan, r->chan_len);
    if (!ch)
        return;
    /* conn_close only queues the disconnect push and the close frame; the
     * subscriptions end when the socket closes, so the list stays put. */
    for (hub_sub *s = ch->subs; s; s = s->next)
        if (s->conn)   /* NULL: an orphan, its connection is gone */
            conn_close(s->conn, PROTO_CLOSE_NODE_FAULT,
                       "broker gap: resubscribe with since", 1);
}

void conns_receive(conns *n, msg *m)
{
    switch (m->type) {
    case CON_SUBSCRIBED: conns_on_subscribed(n, (sub_req *)m); break;
    case CON_PUBLISHED:
    case CON_HISTORY:
    case CON_PRESENCE: {
        conn *c = conns_route(n, &((chan_req *)m)->route);
        if (c)
            conn_answer(c, (chan_req *)m);
        break;
    }
    case CON_DELIVER: {
        const pub *p = ((deliver_msg *)m)->p;
        uint64_t queued = conns_fanout(n, p->view.channel.ptr,
                                       p->view.channel.len, NULL,
                                       conns_encode_pub, p);
        if (n->m)
            metrics_add(&n->m->delivered, queued);
        break;
    }
    case CON_JOIN: {
        const join_msg *j = (join_msg *)m;
        conns_fanout(n, j->h.chan, j->h.chan_len, j->client, conns_encode_join,
                     j);
        break;
    }
    case CON_RESET: conns_on_reset(n, (reset_msg *)m); break;
    case CON_PROXY: conns_on_proxy(n, (const proxy_answer *)m); break;
    default:
        log_error("unexpected message for a worker's connections",
                  LOG_INT("type", m->type));
    }
    requests_free(m);
}

/* --- lifecycle ---------------------------------------------------------- */

static void conn_established(conn *c, struct lws *wsi)
{
    conns *n = lws_context_user(lws_get_context(wsi));
    memset(c, 0, sizeof(*c));
    c->wsi = wsi;
    c->n = n;
    c->enc = lws_get_protocol(wsi)->id == PROTO_ID_MSGPACK ? PROTO_MSGPACK
                                                          : PROTO_JSON;
    sendq_init(&c->q);
    ids_hex(ids_next(&n->rng), c->id);
    c->slot = conns_slot_alloc(n, c, &c->gen);
    c->live = 1;
    /* Which worker serves which client (tests check the spread with it). */
    log_debug("connection open", LOG_STR("client", c->id),
              LOG_INT("worker", n->worker));
    c->last_rx_s = n->now_s;
    /* Spread the first ping over the interval so that connections made
     * together do not ping together. */
    const config *cfg = n->srv->cfg;
    c->opened_s = n->now_s;
    c->hb.due_s = n->now_s + 1 + ids_next(&n->rng) % cfg->ping_interval;
    if (!cfg->allow_anonymous && c->hb.due_s > n->now_s + cfg->handshake_timeout)
        c->hb.due_s = n->now_s + cfg->handshake_timeout;  /* connect due */
    hb_insert(&n->wheel, &c->hb);
    metrics_conn_opened(n->m);
    unsigned count = atomic_fetch_add(&n->srv->connections, 1) + 1;
    if (n->draining) {
        conn_close(c, PROTO_CLOSE_SHUTDOWN, "server shutting down", 1);
    } else if (count + atomic_load(&n->srv->api_connections) >
               n->srv->max_connections) {
        conn_log(n, CONN_LOG_LIMIT, LOG_WARN, "connection limit reached",
                 LOG_INT("limit", n->srv->max_connections),
                 LOG_INT("code", PROTO_CLOSE_CONN_LIMIT),
                 LOG_INT("worker", n->worker));
        conn_close(c, PROTO_CLOSE_CONN_LIMIT, "connection limit reached", 1);
    }
}

static void conn_closed(conn *c)
{
    conns *n = c->n;
    if (!c->live)
        return;
    c->live = 0;
    if (c->flush_queued) {
        DL_DELETE2(n->flush, c, fprev, fnext);
        c->flush_queued = 0;
    }
    conn_px_free(c);
    while (c->subs)
        conn_sub_end(c, c->subs, "disconnect");
    if (c->connected) {
        conn_hook(c, CONFIG_HOOK_DISCONNECT, NULL, 0, NULL);
        conn_track(c, 0);
    }
    hb_remove(&n->wheel, &c->hb);
    sendq_free(&c->q);
    free(c->rx);
    free(c->held);
    free(c->user);
    for (uint32_t i = 0; i < c->n_grants; i++)
        free(c->grants[i]);
    free(c->grants);
    free(c->info);
    c->rx = NULL;
    c->held = NULL;
    c->user = NULL;
    c->grants = NULL;
    c->n_grants = 0;
    c->info = NULL;
    conns_slot_free(n, c->slot);
    atomic_fetch_sub(&n->srv->connections, 1);
    metrics_conn_closed(n->m, c->close_code ? c->close_code : c->peer_code);
    log_debug("connection closed", LOG_STR("client", c->id),
              LOG_INT("worker", n->worker), LOG_INT("code", c->close_code),
              LOG_INT("close_sent", c->close_sent),
              LOG_INT("connections", n->count));
}

void conns_track_all(conns *n)
{
    for (uint32_t i = 0; i < n->n_slots; i++) {
        conn *c = n->slots[i].c;
        if (c && c->live && c->connected)
            conn_track(c, 1);
    }
}

void conns_drain(conns *n)
{
    n->draining = 1;
    for (uint32_t i = 0; i < n->n_slots; i++)
        if (n->slots[i].c)
            conn_close(n->slots[i].c, PROTO_CLOSE_SHUTDOWN,
                       "server shutting down", 1);
}

void conns_init(conns *n, server *srv, uint16_t worker, uv_loop_t *loop)
{
    memset(n, 0, sizeof(*n));
    n->srv = srv;
    n->worker = worker;
    n->loop = loop;
    n->m = metrics_of(srv->metrics, worker);
    hub_init(&n->hub);
    ids_rng_seed(&n->rng);
    proto_buf_init(&n->scratch, LWS_PRE);
}

void conns_free(conns *n)
{
    hub_free(&n->hub);
    proto_buf_free(&n->scratch);
    proto_buf_free(&n->enc);
    free(n->slots);
    free(n->free_slots);
    free(n->suspects);
}

/* --- the lws protocol callback --------------------------------------------- */

static int conn_callback(struct lws *wsi, enum lws_callback_reasons reason,
                         void *user, void *in, size_t len)
{
    conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        conns *n = lws_context_user(lws_get_context(wsi));
        return http_serve(wsi, in ? (const char *)in : "", n->srv,
                          n->draining);
    }
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* WebSocket only: lws would otherwise switch a plaintext
         * connection to HTTP/2 on "Upgrade: h2c". */
        return http_confirm_upgrade(wsi, in);
    case LWS_CALLBACK_RAW_ADOPT:
        /* lws turns a CONNECT request into a raw socket with no timeout,
         * which would hold its descriptor and its address's place until
         * the peer leaves: Herald tunnels nothing. */
        return -1;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[16];
        if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
            strcmp(uri, "/ws") != 0)
            return -1;
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        conn_established(c, wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (c && c->live)
            conn_receive(c, in, len);
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* The client closes first: its code (the first two bytes of the
         * close payload) is what the connection ended with. */
        if (c && c->live && !c->closing)
            c->peer_code = len >= 2 ? (uint16_t)(((const unsigned char *)in)[0]
                                                     << 8 |
                                                 ((const unsigned char *)in)[1])
                                    : 1005;   /* RFC 6455: no code sent */
        break;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c && c->live)
            c->last_rx_s = c->n->now_s;
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (c && c->live)
            return conn_writeable(c);
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (c)
            conn_closed(c);
        return 0;
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS: {
        /* The TLS vhost's server context (user), before it serves anyone;
         * wsi is a stand-in that only knows the context. */
        conns *n = lws_context_user(lws_get_context(wsi));
        return tls_lws_vhost_setup(user, n->srv->cfg->tls_client_ca) < 0;
    }
    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
        /* tls_client_ca: lws asks whether OpenSSL's verdict on a client
         * certificate stands (user: the X509_STORE_CTX, len: the
         * verdict). Its default answer accepts every certificate, even
         * one from another CA. */
        return tls_lws_verify_verdict(user, (int)len);
    case LWS_CALLBACK_WSI_DESTROY: {
        /* Every accepted socket ends here (lws calls protocols[0], this
         * callback), upgraded or not: its address's count goes down. */
        conns *n = lws_context_user(lws_get_context(wsi));
        admit_release(n->srv->admit, lws_get_opaque_user_data(wsi));
        lws_set_opaque_user_data(wsi, NULL);
        break;
    }
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* rx_buffer_size is what lws allocates per connection for received data;
 * kept small for idle-heavy deployments: messages larger than this arrive
 * in pieces and are reassembled above. */
#define CONN_RX_BUFFER 1024
#define CONN_TX_PACKET (256 * 1024)

const struct lws_protocols conn_protocols[] = {
    { PROTO_SUBPROTO_JSON, conn_callback, sizeof(conn), CONN_RX_BUFFER,
      PROTO_ID_JSON, NULL, CONN_TX_PACKET },
    { PROTO_SUBPROTO_MSGPACK, conn_callback, sizeof(conn), CONN_RX_BUFFER,
      PROTO_ID_MSGPACK, NULL, CONN_TX_PACKET },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};
