/*
 * fastsub: herald-bench's lean subscriber. One plain-TCP WebSocket
 * connection (ws:// to a numeric IPv4 address) that sends `connect` and one
 * `subscribe`, then only reads: frames are parsed in bulk and the pushes
 * decoded with the protocol library's client decoder (proto_client.h).
 *
 * Why it exists: the C client library rides on libwebsockets 4.1, whose
 * client role parses received frames one byte at a time; in a fan-out run
 * that parser was about 38 % of the bench's CPU, so the bench, not the
 * server, set the measured rate. Subscribers of the fanout scenario use
 * fastsub wherever it can go (herald_bench.c, choose_sub_kind); the library
 * is still used for publishers, for wss:// and host names, and for every
 * scenario that needs its reconnect and recovery logic. fastsub does no reconnecting: a closed connection is
 * reported and stays closed.
 *
 * Threading: a fastsub belongs to the uv loop it was opened on; every call
 * and callback happens on that loop's thread.
 */
#ifndef HERALD_BENCH_FASTSUB_H
#define HERALD_BENCH_FASTSUB_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fastsub fastsub;

typedef struct fastsub_cb {
    /* The subscribe reply: the stream position the subscription starts
     * after. */
    void (*subscribed)(fastsub *s, uint64_t offset, void *user);
    /* A publication of the channel (data: the JSON text or msgpack bytes
     * of the value, as sent). */
    void (*pub)(fastsub *s, uint64_t offset, const char *data, size_t len,
                void *user);
    /* The connection failed, was refused, or closed; called once, not
     * after fastsub_close(). The fastsub is freed afterwards. */
    void (*closed)(fastsub *s, const char *why, void *user);
} fastsub_cb;

/* Parses a ws://IPv4:port/path URL; 0 or -1 (not usable by fastsub). */
int fastsub_url_ok(const char *url);

/* Starts connecting; NULL when the URL is not usable (see above) or the
 * socket cannot be created. msgpack: the herald.v1.msgpack subprotocol. */
fastsub *fastsub_open(uv_loop_t *loop, const char *url, const char *local_addr,
                      int msgpack, const char *channel, const fastsub_cb *cb,
                      void *user);

/* Closes without a callback (a close frame is sent when open). */
void fastsub_close(fastsub *s);

#endif
