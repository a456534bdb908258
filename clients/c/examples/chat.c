/*
 * herald-chat: the smallest useful program on the C client library.
 * It subscribes to one channel and prints every publication, and publishes
 * each line typed on stdin as {"text": LINE}. It shows the library's shape:
 * one uv loop, one hc_ctx on it, one client, callbacks on the loop thread,
 * and the two-step shutdown (hc_ctx_close in the loop, hc_ctx_free after).
 *
 *   build/bin/herald-chat ws://127.0.0.1:8080/ws chat:lobby
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/client.h"

typedef struct chat {
    uv_loop_t loop;
    hc_ctx *ctx;
    hc_client *client;
    uv_pipe_t in;
    const char *channel;
    char line[4096];
    size_t len;
} chat;

static void on_pub(hc_client *c, const hc_pub *p, void *user)
{
    char *json = hc_data_to_json(hc_client_encoding(c), p->data, p->data_len);
    printf("[%.*s #%llu] %s\n", (int)p->channel.len, p->channel.ptr,
           (unsigned long long)p->offset, json ? json : "?");
    free(json);
    fflush(stdout);
}

static void on_subscription(hc_client *c, const hc_sub_event *ev, void *user)
{
    if (ev->recovered == 0)
        printf("(some messages were missed while disconnected)\n");
}

static void on_disconnected(hc_client *c, const hc_disconnected *ev, void *u)
{
    fprintf(stderr, "disconnected (%d)%s\n", ev->code,
            ev->reconnect ? ", reconnecting" : "");
}

static void on_published(hc_client *c, const hc_reply *r, void *arg)
{
    if (r->code)
        fprintf(stderr, "publish failed: %d %.*s\n", r->code,
                (int)r->message.len, r->message.ptr);
}

/* Publishes one line as {"text": LINE}, escaping it as a JSON string. */
static void send_line(chat *ch, const char *s, size_t n)
{
    char buf[2 * sizeof(ch->line) + 32];
    size_t k = 0;
    k += (size_t)sprintf(buf, "{\"text\":\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        if (b == '"' || b == '\\') {
            buf[k++] = '\\';
            buf[k++] = (char)b;
        } else if (b < 0x20) {
            k += (size_t)sprintf(buf + k, "\\u%04x", b);
        } else {
            buf[k++] = (char)b;
        }
    }
    k += (size_t)sprintf(buf + k, "\"}");
    if (hc_publish(ch->client, ch->channel, buf, k, on_published, ch) != HC_OK)
        fprintf(stderr, "publish refused (queue full or closed)\n");
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    static char buf[4096];
    b->base = buf;
    b->len = sizeof(buf);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    chat *ch = s->data;
    if (n < 0) {   /* EOF: leave */
        uv_close((uv_handle_t *)&ch->in, NULL);
        hc_ctx_close(ch->ctx);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        char c = b->base[i];
        if (c == '\n') {
            if (ch->len)
                send_line(ch, ch->line, ch->len);
            ch->len = 0;
        } else if (ch->len < sizeof(ch->line)) {
            ch->line[ch->len++] = c;
        }
    }
}

int main(int argc, char **argv)
{
    chat ch;
    hc_options o;
    char err[256];

    if (argc != 3) {
        fprintf(stderr, "usage: %s URL CHANNEL\n", argv[0]);
        return 2;
    }
    memset(&ch, 0, sizeof(ch));
    ch.channel = argv[2];
    uv_loop_init(&ch.loop);
    ch.ctx = hc_ctx_new(&ch.loop, NULL);
    hc_options_init(&o);
    o.url = argv[1];
    o.cb.pub = on_pub;
    o.cb.subscription = on_subscription;
    o.cb.disconnected = on_disconnected;
    o.user = &ch;
    ch.client = hc_client_new(ch.ctx, &o, err, sizeof(err));
    if (!ch.client || hc_subscribe(ch.client, ch.channel, NULL, NULL, NULL)) {
        fprintf(stderr, "%s\n", ch.client ? "bad channel name" : err);
        hc_ctx_free(ch.ctx);
        return 2;
    }
    uv_pipe_init(&ch.loop, &ch.in, 0);
    uv_pipe_open(&ch.in, 0);
    ch.in.data = &ch;
    uv_read_start((uv_stream_t *)&ch.in, alloc_cb, read_cb);
    uv_run(&ch.loop, UV_RUN_DEFAULT);
    hc_ctx_free(ch.ctx);
    uv_loop_close(&ch.loop);
    return 0;
}
