/*
 * Client connections: the libwebsockets protocol callback (HTTP routes and
 * the WebSocket at /ws), message reassembly, command handling, the ordered
 * send path with protocol batching, closing with protocol close codes, and
 * heartbeats.
 *
 * Threading: everything here runs on the connection's worker thread. A
 * command that concerns a channel owned by another worker reserves its
 * reply's place in the send queue and sends a request; the reply fills the
 * place when it comes back, so replies leave in command order without the
 * connection ever blocking.
 */
#include "net/conn.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utlist.h>

#include "net/auth.h"
#include "base/log.h"
#include "core/owner.h"
#include "net/worker.h"

#define CONN_MAX_MALFORMED 10
#define CONN_CLOSE_GRACE_S 3
/* lws 4.1 keeps LWS_WRITE_CLOSE (4) out of its public header but its
 * WebSocket writer maps it to the close opcode. */
#define CONN_WRITE_CLOSE ((enum lws_write_protocol)4)

enum { PROTO_ID_JSON = 0, PROTO_ID_MSGPACK = 1 };

/* Data frames are written directly from the worker's flush point
 * (conn_flush, before the loop waits) rather than by asking lws for a
 * WRITEABLE callback: with the libuv event lib every change of a POLLOUT
 * interest is a uv_poll_start, which libuv turns into epoll_ctl DEL + ADD,
 * so asking for writability costs four epoll_ctl calls per write, and a
 * loopback or LAN socket almost always has room. lws 4.1 accepts lws_write
 * outside the WRITEABLE callback: what the kernel does not take is kept on
 * the wsi's buflist_out and lws asks for POLLOUT itself; while anything is
 * buffered there, the connection waits for WRITEABLE as before
 * (writable_req), and so do control frames (see conn_flush). Batching is
 * unchanged: everything queued during one loop iteration goes out as one
 * frame. */
static void conn_want_write(conn *c)
{
    if (c->writable_req || c->flush_queued)
        return;
    c->flush_queued = 1;
    DL_APPEND2(c->w->flush, c, fprev, fnext);
}

/* --- output ------------------------------------------------------------ */

static proto_buf *conn_encbuf(conn *c)
{
    proto_buf *b = &c->w->enc;
    if (!b->base && b->headroom == 0)
        frame_buf_init(b);
    proto_buf_reset(b);
    return b;
}

/* Queues the message just encoded into the worker's encode buffer, into
 * a reserved entry (seq) or at the end (seq == UINT64_MAX). */
static void conn_send_encoded(conn *c, uint64_t seq)
{
    frame *f = frame_from_buf(&c->w->enc);
    frame_buf_init(&c->w->enc);
    if (seq == UINT64_MAX)
        sendq_push(&c->q, f);
    else if (sendq_fill(&c->q, seq, f) < 0)
        return;
    conn_want_write(c);
}

static void conn_reply_error(conn *c, uint32_t id, int code, const char *m,
                             uint64_t seq)
{
    proto_enc_error(conn_encbuf(c), c->enc, id, code,
                    m ? m : proto_code_text(code));
    conn_send_encoded(c, seq);
}

/* Pushes a shared frame (a publication or join/leave) and applies the
 * send queue limit. */
static void conn_push(conn *c, frame *f)
{
    if (c->closing)
        return;
    sendq_push(&c->q, frame_ref(f));
    if (sendq_bytes(&c->q) > c->w->srv->cfg->send_queue_max) {
        log_info("slow consumer closed", LOG_STR("client", c->id),
                 LOG_INT("queued", (int64_t)sendq_bytes(&c->q)),
                 LOG_INT("code", PROTO_CLOSE_SLOW));
        conn_close(c, PROTO_CLOSE_SLOW, "slow consumer", 1);
        return;
    }
    conn_want_write(c);
}

void conn_close(conn *c, int code, const char *reason, int reconnect)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_code = (uint16_t)code;
    if (code == PROTO_CLOSE_SLOW || code == PROTO_CLOSE_STALE) {
        /* The client is not reading: what is queued will never arrive in
         * time, and holding it is what the limit prevents. */
        sendq_clear(&c->q);
    }
    proto_enc_push_disconnect(conn_encbuf(c), c->enc, code, reason, reconnect);
    conn_send_encoded(c, UINT64_MAX);
    if (code != PROTO_CLOSE_SHUTDOWN) {
        /* Hard stop if the client does not take the close in time. (At
         * shutdown the worker's own deadline does this for everyone.) */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, CONN_CLOSE_GRACE_S);
    }
}

/* One lws_write per WRITEABLE callback: a ping, or one frame, or several
 * ready frames coalesced into one (protocol batching). */
static int conn_writeable(conn *c)
{
    worker *w = c->w;
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
            if (!c->w->draining)
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK,
                                CONN_CLOSE_GRACE_S);
        }
        return 0;
    }
    enum lws_write_protocol wp =
        c->enc == PROTO_MSGPACK ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
    size_t maxb = w->srv->cfg->max_batch_bytes;
    uint32_t used = 1;
    frame *g = sendq_peek(&c->q, 1);   /* NULL: none, or not filled yet */
    if (!g || f->len >= maxb) {
        if (lws_write(c->wsi, (unsigned char *)frame_payload(f), f->len, wp) <
            (int)f->len)
            return -1;
    } else {
        proto_buf *b = &w->scratch;
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
    }
    sendq_drop(&c->q, used);
    if (sendq_peek(&c->q, 0) || (c->closing && sendq_count(&c->q) == 0))
        conn_want_write(c);
    return 0;
}

void conn_flush(worker *w)
{
    conn *list = w->flush, *c;
    /* Detached first: a connection with more to write than one frame
     * queues itself again, for the next pass (worker_on_prepare). Nothing
     * here frees a connection (a failed write closes it asynchronously). */
    w->flush = NULL;
    while ((c = list)) {
        DL_DELETE2(list, c, fprev, fnext);
        c->flush_queued = 0;
        if (!c->live || c->writable_req)
            continue;
        /* Control frames (a ping; the close frame once the queue is empty)
         * go out from the WRITEABLE callback, as before the flush point:
         * the close frame arms lws's close timeout, and armed from here
         * (outside any lws callback) that timeout did not fire, so a
         * client that stopped reading was never dropped and its channels
         * never saw its leave (seen with lws 4.1 on libuv). Rare: one ping
         * per interval, one close per connection. */
        if (lws_partial_buffered(c->wsi) || c->ping_due ||
            (c->closing && !sendq_count(&c->q))) {
            c->writable_req = 1;
            lws_callback_on_writable(c->wsi);
            continue;
        }
        if (conn_writeable(c) < 0)
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
                            LWS_TO_KILL_ASYNC);
    }
}

/* --- heartbeat wheel --------------------------------------------------- */

static void conn_wheel_insert(conn *c)
{
    conn **head = &c->w->wheel[c->due_s % WHEEL_SLOTS];
    c->wprev = NULL;
    c->wnext = *head;
    if (*head)
        (*head)->wprev = c;
    *head = c;
}

static void conn_wheel_remove(conn *c)
{
    conn **head = &c->w->wheel[c->due_s % WHEEL_SLOTS];
    if (c->wprev)
        c->wprev->wnext = c->wnext;
    else if (*head == c)
        *head = c->wnext;
    if (c->wnext)
        c->wnext->wprev = c->wprev;
    c->wprev = c->wnext = NULL;
}

void conn_heartbeat(conn *c, uint64_t now_s)
{
    const config *cfg = c->w->srv->cfg;
    if (c->closing)
        return;
    if (c->due_s > now_s) {
        conn_wheel_insert(c);       /* more than a wheel turn away */
        return;
    }
    if (c->expires && (int64_t)time(NULL) >= c->expires) {
        conn_close(c, PROTO_CLOSE_BAD_TOKEN, "token expired", 0);
        return;
    }
    if (c->awaiting_pong) {
        if (c->last_rx_s + cfg->pong_timeout < now_s) {
            log_debug("stale connection closed", LOG_STR("client", c->id),
                      LOG_INT("code", PROTO_CLOSE_STALE));
            conn_close(c, PROTO_CLOSE_STALE, "no pong", 1);
            return;
        }
        c->awaiting_pong = 0;
        /* Alive: the next ping is due ping_interval after the last one. */
        if (c->ping_sent_s + cfg->ping_interval > now_s) {
            c->due_s = c->ping_sent_s + cfg->ping_interval;
            conn_wheel_insert(c);
            return;
        }
    }
    c->ping_due = 1;
    c->awaiting_pong = 1;
    c->ping_sent_s = now_s;
    conn_want_write(c);
    c->due_s = now_s + (cfg->pong_timeout < cfg->ping_interval
                            ? cfg->pong_timeout : cfg->ping_interval);
    conn_wheel_insert(c);
}

/* --- subscriptions ----------------------------------------------------- */

static void conn_post_unsub(conn *c, hub_chan *ch)
{
    msg *m = msg_new(MSG_UNSUB, ch->name, ch->len, NULL, 0);
    m->route.worker = c->w->index;
    memcpy(m->client, c->id, IDS_LEN + 1);
    worker_post(c->w->srv, server_owner(c->w->srv, ch->name, ch->len), m);
}

/* Ends a subscription: an active one is removed and the owner told; a
 * pending one becomes an orphan that the owner's reply will clean up. */
static void conn_sub_end(conn *c, hub_sub *s)
{
    if (s->active) {
        conn_post_unsub(c, s->chan);
        hub_sub_remove(&c->w->hub, &c->subs, s);
    } else {
        hub_sub_orphan(&c->subs, s);
    }
    c->n_subs--;
}

/* --- commands ----------------------------------------------------------- */

static msg *conn_request(conn *c, uint8_t type, const proto_cmd *cmd)
{
    const char *user = c->user ? c->user : "";
    msg *m = msg_new(type, cmd->channel.ptr, cmd->channel.len, user,
                     strlen(user));
    m->route.worker = c->w->index;
    m->route.slot = c->slot;
    m->route.gen = c->gen;
    m->route.cmd_id = cmd->id;
    m->route.seq = sendq_reserve(&c->q);
    memcpy(m->client, c->id, IDS_LEN + 1);
    if (cmd->has_since) {
        m->offset = cmd->since_offset;
        if (cmd->since_epoch.len <= IDS_LEN) {
            memcpy(m->epoch, cmd->since_epoch.ptr, cmd->since_epoch.len);
            m->epoch_len = (uint8_t)cmd->since_epoch.len;
        } else {
            m->epoch_len = UINT8_MAX;   /* longer than any epoch: no match */
        }
    }
    c->inflight++;
    return m;
}

static void conn_send_request(conn *c, msg *m)
{
    worker_post(c->w->srv, server_owner(c->w->srv, msg_chan(m), m->chan_len),
                m);
}

static int conn_do_connect(conn *c, const proto_cmd *cmd)
{
    const config *cfg = c->w->srv->cfg;
    if (c->connected) {
        conn_reply_error(c, cmd->id, PROTO_E_BAD_REQUEST, "already connected",
                         UINT64_MAX);
        return 0;
    }
    if (cmd->token.len) {
        char *user = NULL;
        int64_t exp = 0;
        int rc = auth_verify(cfg->token_secret, cmd->token.ptr, cmd->token.len,
                             (int64_t)time(NULL), &user, &exp);
        if (rc) {
            log_info("connection token refused", LOG_STR("client", c->id),
                     LOG_INT("code", rc));
            conn_reply_error(c, cmd->id, rc, NULL, UINT64_MAX);
            conn_close(c, PROTO_CLOSE_BAD_TOKEN,
                       rc == PROTO_E_TOKEN_EXPIRED ? "token expired"
                                                   : "invalid token", 0);
            return -1;
        }
        c->user = user;
        c->expires = exp;
    } else if (!cfg->allow_anonymous) {
        conn_reply_error(c, cmd->id, PROTO_E_UNAUTHORIZED, "token required",
                         UINT64_MAX);
        conn_close(c, PROTO_CLOSE_BAD_TOKEN, "token required", 0);
        return -1;
    }
    c->connected = 1;
    proto_enc_ok_connect(conn_encbuf(c), c->enc, cmd->id,
                         (proto_slice){ c->id, IDS_LEN },
                         (proto_slice){ c->w->srv->node,
                                        strlen(c->w->srv->node) },
                         cfg->ping_interval, c->expires);
    conn_send_encoded(c, UINT64_MAX);
    return 0;
}

static void conn_do_subscribe(conn *c, const proto_cmd *cmd)
{
    const config *cfg = c->w->srv->cfg;
    const config_ns *ns = config_ns_of_channel(c->w->srv->cfg,
                                               cmd->channel.ptr,
                                               cmd->channel.len);
    int code = 0;
    if (!ns)
        code = PROTO_E_BAD_CHANNEL;
    else if (!c->user && !ns->allow_anonymous)
        code = PROTO_E_PERMISSION;
    else if (hub_sub_find(c->subs, cmd->channel.ptr, cmd->channel.len))
        code = PROTO_E_ALREADY_SUBSCRIBED;
    else if (c->n_subs >= cfg->max_channels_per_conn)
        code = PROTO_E_LIMIT;
    if (code) {
        conn_reply_error(c, cmd->id, code, NULL, UINT64_MAX);
        return;
    }
    msg *m = conn_request(c, MSG_SUB_REQ, cmd);
    m->flag = (uint8_t)cmd->has_since;
    m->token = ids_next(&c->w->rng);
    hub_sub_add(&c->w->hub, &c->subs, c, cmd->channel.ptr, cmd->channel.len,
                m->token);
    c->n_subs++;
    conn_send_request(c, m);
}

static void conn_do_unsubscribe(conn *c, const proto_cmd *cmd)
{
    hub_sub *s = hub_sub_find(c->subs, cmd->channel.ptr, cmd->channel.len);
    if (s)
        conn_sub_end(c, s);
    proto_enc_ok_empty(conn_encbuf(c), c->enc, cmd->id);
    conn_send_encoded(c, UINT64_MAX);
}

static void conn_do_publish(conn *c, const proto_cmd *cmd)
{
    const config_ns *ns = config_ns_of_channel(c->w->srv->cfg,
                                               cmd->channel.ptr,
                                               cmd->channel.len);
    int code = 0;
    if (!ns)
        code = PROTO_E_BAD_CHANNEL;
    else if (!ns->allow_publish || (!c->user && !ns->allow_anonymous))
        code = PROTO_E_PERMISSION;
    if (code) {
        conn_reply_error(c, cmd->id, code, NULL, UINT64_MAX);
        return;
    }
    proto_client_info info = {
        .client = { c->id, IDS_LEN },
        .user = { c->user ? c->user : "", c->user ? strlen(c->user) : 0 },
    };
    /* The owner seals offset and epoch into this draft. */
    char epoch0[IDS_LEN];
    memset(epoch0, '0', sizeof(epoch0));
    msg *m = conn_request(c, MSG_PUB_REQ, cmd);
    m->p = pub_new(cmd->channel, 0, (proto_slice){ epoch0, IDS_LEN },
                   &cmd->data, &info, 0);
    conn_send_request(c, m);
}

static void conn_do_history(conn *c, const proto_cmd *cmd)
{
    const config *cfg = c->w->srv->cfg;
    const config_ns *ns = config_ns_of_channel(c->w->srv->cfg,
                                               cmd->channel.ptr,
                                               cmd->channel.len);
    int code = 0;
    uint32_t limit = cmd->has_limit ? cmd->limit
                     : (cfg->history_max_limit < 100 ? cfg->history_max_limit
                                                     : 100);
    if (!ns)
        code = PROTO_E_BAD_CHANNEL;
    else if (!c->user && !ns->allow_anonymous)
        code = PROTO_E_PERMISSION;
    else if (ns->history_size == 0 && !(ns->durable && c->w->srv->store))
        code = PROTO_E_NOT_AVAILABLE;
    else if (limit > cfg->history_max_limit)
        code = PROTO_E_LIMIT;
    if (code) {
        conn_reply_error(c, cmd->id, code, NULL, UINT64_MAX);
        return;
    }
    msg *m = conn_request(c, MSG_HIST_REQ, cmd);
    m->flag = (uint8_t)((cmd->has_since ? 1 : 0) | (cmd->reverse ? 2 : 0));
    m->limit = limit;
    conn_send_request(c, m);
}

static void conn_do_presence(conn *c, const proto_cmd *cmd)
{
    const config_ns *ns = config_ns_of_channel(c->w->srv->cfg,
                                               cmd->channel.ptr,
                                               cmd->channel.len);
    int code = 0;
    if (!ns)
        code = PROTO_E_BAD_CHANNEL;
    else if (!c->user && !ns->allow_anonymous)
        code = PROTO_E_PERMISSION;
    else if (!ns->presence)
        code = PROTO_E_NOT_AVAILABLE;
    if (code) {
        conn_reply_error(c, cmd->id, code, NULL, UINT64_MAX);
        return;
    }
    conn_send_request(c, conn_request(c, MSG_PRES_REQ, cmd));
}

/* Token bucket; returns 0 when the command may run. */
static int conn_rate_limited(conn *c)
{
    const config *cfg = c->w->srv->cfg;
    if (!cfg->rate_limit)
        return 0;
    uint64_t now = uv_now(&c->w->loop);
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

/* Returns -1 when the connection is closing and input must stop. */
static int conn_command(conn *c, const proto_cmd *cmd)
{
    if (conn_rate_limited(c)) {
        conn_reply_error(c, cmd->id, PROTO_E_RATE_LIMITED, NULL, UINT64_MAX);
        return 0;
    }
    if (cmd->op == PROTO_OP_CONNECT)
        return conn_do_connect(c, cmd);
    if (!c->connected) {
        if (!c->w->srv->cfg->allow_anonymous) {
            conn_reply_error(c, cmd->id, PROTO_E_UNAUTHORIZED,
                             "connect first", UINT64_MAX);
            return 0;
        }
        c->connected = 1;   /* implied anonymous connect */
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
    default:
        conn_reply_error(c, cmd->id, PROTO_E_UNKNOWN_OP, NULL, UINT64_MAX);
    }
    return 0;
}

/* Counts a malformed command; too many in a row close the connection. */
static int conn_malformed(conn *c)
{
    if (++c->malformed >= CONN_MAX_MALFORMED) {
        log_info("protocol violations: closing", LOG_STR("client", c->id),
                 LOG_INT("code", PROTO_CLOSE_PROTOCOL));
        conn_close(c, PROTO_CLOSE_PROTOCOL, "protocol violation", 0);
        return -1;
    }
    return 0;
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
    proto_reader r;
    proto_cmd cmd;
    proto_error err;
    proto_reader_init(&r, (proto_enc)c->enc, buf, len);
    for (;;) {
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
        rc = conn_command(c, &cmd);
        proto_cmd_free(&cmd);
        if (rc < 0 || c->closing)
            return;
    }
    if (c->inflight >= CONN_MAX_INFLIGHT && !c->flow_off) {
        c->flow_off = 1;
        lws_rx_flow_control(c->wsi, 0);
    }
}

/* Reassembles fragmented messages (lws hands over at most rx_buffer_size
 * bytes at a time) up to max_message_size; a larger message is skipped
 * and answered with error 112. */
static void conn_receive(conn *c, const char *in, size_t len)
{
    const config *cfg = c->w->srv->cfg;
    int final = lws_is_final_fragment(c->wsi);
    c->last_rx_s = c->w->now_s;
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
    if (!c->rx_overflow) {
        if ((size_t)c->rx_len + len > cfg->max_message_size) {
            c->rx_overflow = 1;
            free(c->rx);
            c->rx = NULL;
            c->rx_cap = c->rx_len = 0;
        } else {
            if (c->rx_len + len > c->rx_cap) {
                uint32_t cap = c->rx_cap ? c->rx_cap : 1024;
                while (cap < c->rx_len + len)
                    cap *= 2;
                c->rx = realloc(c->rx, cap);
                if (!c->rx)
                    abort();
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

/* --- replies and deliveries from the mailbox --------------------------- */

static void conn_reply_done(conn *c)
{
    if (c->inflight)
        c->inflight--;
    if (c->flow_off && c->inflight < CONN_MAX_INFLIGHT / 2) {
        c->flow_off = 0;
        lws_rx_flow_control(c->wsi, 1);
    }
}

static size_t conn_pub_views(msg *m, proto_pub **out)
{
    *out = NULL;
    if (!m->n_pubs)
        return 0;
    proto_pub *v = malloc(sizeof(*v) * m->n_pubs);
    if (!v)
        abort();
    for (size_t i = 0; i < m->n_pubs; i++)
        v[i] = m->pubs[i]->view;
    *out = v;
    return m->n_pubs;
}

/* Fills the subscribe command's reserved reply. */
static void conn_answer_sub(conn *c, msg *m)
{
    if (m->code) {
        conn_reply_error(c, m->route.cmd_id, m->code, m->errmsg,
                         m->route.seq);
    } else {
        proto_pub *v;
        size_t n = conn_pub_views(m, &v);
        proto_enc_ok_subscribe(conn_encbuf(c), c->enc, m->route.cmd_id,
                               (proto_slice){ m->epoch, IDS_LEN }, m->offset,
                               m->recovered, v, n);
        free(v);
        conn_send_encoded(c, m->route.seq);
    }
    conn_reply_done(c);
}

static void conn_on_sub_rep(worker *w, msg *m)
{
    conn *c = worker_slot_get(w, m->route.slot, m->route.gen);
    hub_sub *s = NULL;
    if (c)
        for (hub_sub *it = c->subs; it; it = it->cnext)
            if (it->token == m->token) {
                s = it;
                break;
            }
    if (!s) {
        /* Unsubscribed or disconnected meanwhile. */
        hub_sub *o = hub_orphan_find(&w->hub, msg_chan(m), m->chan_len,
                                     m->token);
        if (o) {
            if (m->code == 0) {
                msg *u = msg_new(MSG_UNSUB, msg_chan(m), m->chan_len, NULL, 0);
                u->route.worker = w->index;
                memcpy(u->client, m->client, IDS_LEN + 1);
                worker_post(w->srv, server_owner(w->srv, msg_chan(m),
                                                 m->chan_len), u);
            }
            hub_sub_remove(&w->hub, NULL, o);
        }
        if (c)
            conn_answer_sub(c, m);   /* unsubscribed meanwhile: still answer */
        return;
    }
    if (m->code) {
        hub_sub_remove(&w->hub, &c->subs, s);
        c->n_subs--;
    } else {
        s->active = 1;
    }
    conn_answer_sub(c, m);
}

static void conn_on_reply(worker *w, msg *m)
{
    conn *c = worker_slot_get(w, m->route.slot, m->route.gen);
    if (!c)
        return;
    uint32_t id = m->route.cmd_id;
    if (m->code) {
        conn_reply_error(c, id, m->code, m->errmsg, m->route.seq);
    } else if (m->type == MSG_PUB_REP) {
        proto_enc_ok_publish(conn_encbuf(c), c->enc, id, m->offset,
                             (proto_slice){ m->epoch, IDS_LEN });
        conn_send_encoded(c, m->route.seq);
    } else if (m->type == MSG_HIST_REP) {
        proto_pub *v;
        size_t n = conn_pub_views(m, &v);
        proto_enc_ok_history(conn_encbuf(c), c->enc, id,
                             (proto_slice){ m->epoch, IDS_LEN }, m->offset,
                             v, n);
        free(v);
        conn_send_encoded(c, m->route.seq);
    } else if (m->type == MSG_PRES_REP) {
        proto_enc_ok_presence(conn_encbuf(c), c->enc, id, m->extra,
                              m->n_extra);
        conn_send_encoded(c, m->route.seq);
    }
    conn_reply_done(c);
}

/* Fan-out to this worker's subscribers: one encode per encoding in use,
 * then one reference per subscriber. */
static void conn_on_deliver(worker *w, msg *m)
{
    pub *p = m->p;
    hub_chan *ch = hub_chan_find(&w->hub, p->view.channel.ptr,
                                 p->view.channel.len);
    if (!ch)
        return;
    frame *fr[2] = { NULL, NULL };
    for (hub_sub *s = ch->subs; s; s = s->next) {
        if (!s->active)
            continue;
        conn *c = s->conn;
        if (!fr[c->enc]) {
            proto_enc_push_pub(conn_encbuf(c), (proto_enc)c->enc, &p->view);
            fr[c->enc] = frame_from_buf(&w->enc);
            frame_buf_init(&w->enc);
        }
        conn_push(c, fr[c->enc]);
    }
    frame_unref(fr[0]);
    frame_unref(fr[1]);
}

static void conn_on_join(worker *w, msg *m)
{
    hub_chan *ch = hub_chan_find(&w->hub, msg_chan(m), m->chan_len);
    if (!ch)
        return;
    proto_client_info info = {
        .client = { m->client, IDS_LEN },
        .user = { msg_user(m), m->user_len },
    };
    proto_slice chan = { msg_chan(m), m->chan_len };
    frame *fr[2] = { NULL, NULL };
    for (hub_sub *s = ch->subs; s; s = s->next) {
        conn *c = s->conn;
        if (!s->active || memcmp(c->id, m->client, IDS_LEN) == 0)
            continue;
        if (!fr[c->enc]) {
            proto_enc_push_join(conn_encbuf(c), (proto_enc)c->enc, m->flag,
                                chan, &info);
            fr[c->enc] = frame_from_buf(&w->enc);
            frame_buf_init(&w->enc);
        }
        conn_push(c, fr[c->enc]);
    }
    frame_unref(fr[0]);
    frame_unref(fr[1]);
}

/* Cluster: the channel's stream has a gap this node could not fill (or
 * Redis lost it): its subscribers here reconnect and recover with since,
 * which tells them honestly what is still there. */
static void conn_on_reset(worker *w, msg *m)
{
    hub_chan *ch = hub_chan_find(&w->hub, msg_chan(m), m->chan_len);
    if (!ch)
        return;
    /* conn_close only queues the disconnect push and the close frame; the
     * subscriptions end when the socket closes, so the list stays put. */
    for (hub_sub *s = ch->subs; s; s = s->next)
        if (s->conn)   /* NULL: an orphan, its connection is gone */
            conn_close(s->conn, PROTO_CLOSE_NODE_FAULT,
                       "broker gap: resubscribe with since", 1);
}

void conn_on_msg(worker *w, msg *m)
{
    switch (m->type) {
    case MSG_SUB_REP: conn_on_sub_rep(w, m); break;
    case MSG_PUB_REP:
    case MSG_HIST_REP:
    case MSG_PRES_REP: conn_on_reply(w, m); break;
    case MSG_DELIVER: conn_on_deliver(w, m); break;
    case MSG_JOIN: conn_on_join(w, m); break;
    case MSG_CL_RESET: conn_on_reset(w, m); break;
    default:
        log_error("unexpected message for a worker", LOG_INT("type", m->type));
    }
    msg_free(m);
}

/* --- lifecycle ---------------------------------------------------------- */

static void conn_established(conn *c, struct lws *wsi)
{
    worker *w = lws_context_user(lws_get_context(wsi));
    memset(c, 0, sizeof(*c));
    c->wsi = wsi;
    c->w = w;
    c->enc = lws_get_protocol(wsi)->id == PROTO_ID_MSGPACK ? PROTO_MSGPACK
                                                          : PROTO_JSON;
    sendq_init(&c->q);
    ids_hex(ids_next(&w->rng), c->id);
    c->slot = worker_slot_alloc(w, c, &c->gen);
    c->live = 1;
    c->last_rx_s = w->now_s;
    /* Spread the first ping over the interval so that connections made
     * together do not ping together. */
    const config *cfg = w->srv->cfg;
    c->due_s = w->now_s + 1 + ids_next(&w->rng) % cfg->ping_interval;
    conn_wheel_insert(c);
    unsigned n = atomic_fetch_add(&w->srv->connections, 1) + 1;
    if (w->draining) {
        conn_close(c, PROTO_CLOSE_SHUTDOWN, "server shutting down", 1);
    } else if (n > w->srv->max_connections) {
        log_warn("connection limit reached",
                 LOG_INT("limit", w->srv->max_connections),
                 LOG_INT("code", PROTO_CLOSE_CONN_LIMIT));
        conn_close(c, PROTO_CLOSE_CONN_LIMIT, "connection limit reached", 1);
    }
}

static void conn_closed(conn *c)
{
    worker *w = c->w;
    if (!c->live)
        return;
    c->live = 0;
    if (c->flush_queued) {
        DL_DELETE2(w->flush, c, fprev, fnext);
        c->flush_queued = 0;
    }
    while (c->subs)
        conn_sub_end(c, c->subs);
    conn_wheel_remove(c);
    sendq_free(&c->q);
    free(c->rx);
    free(c->user);
    c->rx = NULL;
    c->user = NULL;
    worker_slot_free(w, c->slot);
    atomic_fetch_sub(&w->srv->connections, 1);
}

/* --- HTTP --------------------------------------------------------------- */

static int conn_http_reply(struct lws *wsi, unsigned status, const char *body)
{
    unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *p = start,
                                      *end = hdr + sizeof(hdr) - 1;
    size_t len = strlen(body);
    if (lws_add_http_common_headers(wsi, status, "application/json", len, &p,
                                    end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p,
                                     end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    unsigned char buf[LWS_PRE + 1024];
    if (len > sizeof(buf) - LWS_PRE)
        return -1;
    memcpy(buf + LWS_PRE, body, len);
    if (lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) != (int)len)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int conn_http(struct lws *wsi, const char *uri)
{
    worker *w = lws_context_user(lws_get_context(wsi));
    char body[512];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return conn_http_reply(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED,
                               "{\"error\":\"method not allowed\"}");
    if (strcmp(uri, "/healthz") == 0) {
        /* Cluster: "down" while any worker's link to any Redis server is
         * (503, so a balancer sends new clients elsewhere; connected
         * clients stay). */
        int cluster = w->srv->cfg->n_redis > 0;
        int down = cluster && atomic_load(&w->srv->broker_down) > 0;
        const char *status = w->draining ? "draining"
                             : down      ? "degraded" : "ok";
        int n = snprintf(body, sizeof(body),
                 "{\"status\":\"%s\",\"node\":\"%s\",\"connections\":%u,"
                 "\"workers\":%u,\"broker\":\"%s\"",
                 status, w->srv->node, atomic_load(&w->srv->connections),
                 w->srv->n_workers,
                 !cluster ? "memory" : down ? "down" : "up");
        const store *st = w->srv->store;
        if (st && n > 0 && (size_t)n < sizeof(body))
            n += snprintf(body + n, sizeof(body) - (size_t)n,
                          ",\"store\":{\"status\":\"%s\",\"backlog\":%llu,"
                          "\"written\":%llu,\"spilled\":%llu,"
                          "\"spill_bytes\":%llu,\"retention_passes\":%llu,"
                          "\"retention_deleted\":%llu}",
                          store_failing(st) ? "failing" : "ok",
                          (unsigned long long)store_backlog(st),
                          (unsigned long long)store_written(st),
                          (unsigned long long)store_spilled(st),
                          (unsigned long long)store_spill_bytes(st),
                          (unsigned long long)store_retention_passes(st),
                          (unsigned long long)store_retention_deleted(st));
        if (n > 0 && (size_t)n < sizeof(body) - 1)
            snprintf(body + n, sizeof(body) - (size_t)n, "}");
        return conn_http_reply(wsi, w->draining || down ? 503
                                                        : HTTP_STATUS_OK,
                               body);
    }
    if (strcmp(uri, "/ws") == 0)
        return conn_http_reply(wsi, 426,
                               "{\"error\":\"WebSocket upgrade required\"}");
    return conn_http_reply(wsi, HTTP_STATUS_NOT_FOUND,
                           "{\"error\":\"not found\"}");
}

static int conn_callback(struct lws *wsi, enum lws_callback_reasons reason,
                         void *user, void *in, size_t len)
{
    conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return conn_http(wsi, in ? (const char *)in : "");
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
    case LWS_CALLBACK_RECEIVE_PONG:
        if (c && c->live)
            c->last_rx_s = c->w->now_s;
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (c && c->live)
            return conn_writeable(c);
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (c)
            conn_closed(c);
        return 0;
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
