/*
 * herald-bench: Herald's load generator. Scenarios (subcommands):
 *
 *   fanout       C channels x S subscribers, P publishers at a fixed rate or
 *                as fast as acknowledged (bounded window); publish-to-delivery
 *                latency from a timestamp inside every payload
 *   connections  ramp N idle connections over 127.0.0.0/8 source addresses,
 *                hold them, report connect rate and server memory; --procs K
 *                forks K processes (the per-process fd limit)
 *   reconnect    N subscribers drop at once while a publisher continues;
 *                time until all resubscribed, gaps (must be 0), recovered
 *   request      publish-acknowledgement round trips
 *   api          publish round trips through the server's HTTP API
 *                (HTTP/1.1 keep-alive, libcurl: apipub.h), optionally with
 *                WebSocket subscribers checking every delivery
 *   churn        clients that keep connecting, subscribing with recovery,
 *                unsubscribing and going away while publishers publish at a
 *                fixed rate; every position is checked across connections
 *                and nodes (gaps, duplicates, misreported recoveries), and
 *                witness subscribers check that every acknowledged
 *                publication arrives (bench/soak.sh runs it for 10 minutes
 *                with faults)
 *
 * Targets: Herald (the default) is driven through the C client library,
 * except the fanout scenario's subscribers, which read through the lean
 * reader (fastsub.h; see choose_sub_kind); `--target NAME` drives a peer
 * server (Nchan, Socket.IO, Centrifugo) through its own protocol with a
 * peer driver (peer.h, peers.c) instead, with the same scenarios (not
 * reconnect: recovery is Herald's) and the same accounting (one set of
 * functions every kind of client reports to), except that gaps and
 * duplicates come from the stamps' per-publisher sequence numbers, not
 * from offsets.
 *
 * Several servers: `--url` may be given several times (a cluster of Herald
 * nodes). Subscriber j of channel c uses URL (c + j) mod n, publisher p URL
 * p mod n, idle connection g URL g mod n, so that every channel has
 * subscribers on every node and, with one publisher, most deliveries cross
 * the broker between the nodes. Offsets are the same on every node of a
 * cluster, so gaps and duplicates are counted as on one node. The report
 * adds `parameters.urls` and `per_url` (subscribers, deliveries, latency of
 * each URL's clients) when there is more than one.
 *
 * Threads: each bench thread owns one uv loop and one hc_ctx (or peer
 * context) with its share of the clients (clients/c: everything of a
 * client runs on its loop). The
 * main thread only coordinates: it moves the global phase forward, reads
 * the threads' counters (each written only by its own thread, read with
 * relaxed atomics) once a second for the progress line, and merges the
 * threads' histograms after they have stopped. See bench/README.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <herald/client.h>

#include "apipub.h"
#include "hist.h"
#include "fastsub.h"
#include "peers.h"
#include "procstat.h"
#include "report.h"
#include "stamp.h"
#include "track.h"

#define MAX_SERVERS 16
#define MAX_URLS 16
#define MAX_PREFIXES 8
#define LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define ST(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
/* Increment of a counter written by one thread only and read by main. */
#define INC(x, n) ST(x, (x) + (n))

enum scenario { SC_FANOUT, SC_CONNECTIONS, SC_RECONNECT, SC_REQUEST,
                SC_CHURN, SC_API, SC_COUNT };
static const char *scenario_names[] = { "fanout", "connections",
                                        "reconnect", "request", "churn",
                                        "api" };

enum phase { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_STOP };

/* How subscribers read (choose_sub_kind). */
enum sub_kind { SUB_LIB, SUB_FAST, SUB_PEER };
static const char *sub_kind_names[] = { "client", "fast", NULL };

typedef struct config {
    enum scenario sc;
    const char *target;          /* "herald" or a peer driver's name */
    enum sub_kind sub_kind;
    int force_client;            /* --sub-transport client */
    long run_id;                 /* --run-id: -1 = random (bench_run_id) */
    const peer_driver *drv;      /* NULL for herald */
    const char *url;             /* urls[0] */
    const char *urls[MAX_URLS];  /* every --url, in the order given */
    int n_urls;
    hc_encoding enc;
    double duration, warmup;
    const char *json;
    int threads;
    /* --server-pid [LABEL=]PID, --server-pidfile [LABEL=]FILE: a pidfile
     * is read again at every sample (a process the caller restarts). */
    pid_t servers[MAX_SERVERS];
    const char *server_labels[MAX_SERVERS];    /* NULL: none given */
    const char *server_pidfiles[MAX_SERVERS];  /* NULL: servers[i] */
    int n_servers;
    unsigned channels, subs, pubs;
    double rate;                 /* pubs/s per publisher; connections: conn/s */
    unsigned size;
    unsigned window;
    unsigned in_flight;          /* fanout: unanswered per publisher
                                    (--in-flight, default window); api: 1 */
    unsigned count;              /* connections / reconnect / request clients */
    unsigned procs;
    double connect_rate;         /* ramp of fanout/reconnect/request clients */
    unsigned conns_per_addr;     /* 0: no source address spreading */
    const char *channel_prefix;  /* prefixes[0] */
    const char *prefixes[MAX_PREFIXES];  /* channel i: prefixes[i % n] */
    int n_prefixes;
    double drop_after;           /* reconnect: seconds into the measurement */
    unsigned backoff_ms;
    double setup_timeout;
    int quiet;
    /* churn */
    unsigned per_client;         /* channels per churning client */
    double lifetime;             /* mean connection lifetime, s */
    double resub_every;          /* mean s between unsubscribe/resubscribe */
    double offline;              /* s away before a replacement, at most */
    double long_offline;         /* ... or this long (0: never) */
    double long_share;           /* ... for this share of replacements */
    double drain_timeout;        /* s for the witnesses to catch up */
    const char *samples;         /* per-second CSV */
    /* api: the publish endpoint and the key's header line */
    const char *api_url;
    char api_auth[512];
} config;

static config cfg;
static int g_phase;              /* enum phase, written by main */
static unsigned g_drop_gen;      /* reconnect: bumped by main */
static char g_cmdline[4096];

typedef struct chan_state {
    char name[128];
    uint64_t sent;               /* atomic: publications not failed */
    /* atomic: seen by the channel's sentinel on URL u (the last subscriber
     * of the channel on each URL; one URL: the channel's last subscriber) */
    uint64_t seen[MAX_URLS];
    unsigned n_pubs;
    uint32_t sentinel_urls;      /* bit u: the channel has a sentinel on u */
    /* churn: the highest acknowledged offset and its epoch (FNV-1a 32 of
     * the string), written by the publishers' threads (atomics), read by
     * the witnesses' threads. */
    uint64_t top_acked;
    uint32_t ack_epoch;
} chan_state;
static chan_state *g_chans;

struct bthread;
struct bchurn;

/* Per-subscriber state: a few integers (bounded memory at 100k). */
typedef struct bsub {
    union {
        hc_client *c;            /* herald */
        peer_client *pc;         /* a peer target; NULL once closed */
        fastsub *fs;             /* herald, fanout (SUB_FAST) */
    };
    struct bthread *th;
    uint32_t chan;
    uint8_t sentinel, subscribed, awaiting;
    uint8_t url;                 /* index in cfg.urls */
    track tr;
    /* Peer targets with several publishers on the channel: one track per
     * publisher of the channel (index = publisher / channels), else NULL
     * and `tr` tracks the one publisher's sequence numbers. */
    track *trs;
} bsub;

typedef struct bpub {
    union {
        hc_client *c;            /* herald */
        peer_client *pc;         /* a peer target; NULL once closed */
        apipub *ap;              /* api: an HTTP publisher, any target */
    };
    struct bthread *th;
    uint32_t id, chan;
    uint32_t url;                /* index in cfg.urls */
    uint64_t seq, inflight, sent;
    uint64_t start_ns;
    int connected, started;
} bpub;

typedef struct bthread {
    int idx;
    pthread_t tid;
    uv_loop_t loop;
    hc_ctx *ctx;                 /* herald */
    peer_ctx *pctx;              /* a peer target */
    apipub_ctx *actx;            /* api: the HTTP publishers */
    uv_timer_t tick;
    uint64_t ramp_start_ns;
    double ramp_rate;            /* clients/s created by this thread */
    bsub *subs;
    size_t n_subs, created_subs;
    bpub *pubs;
    size_t n_pubs, created_pubs;
    struct bchurn *churn;        /* churn: witnesses first */
    size_t n_churn, created_churn;
    uint64_t rng;                /* churn: this thread's random numbers */
    uint64_t next_churn_ns;
    uint64_t witness_checked_ns; /* atomic: the last churn_witness_check */
    hc_client **conns;           /* connections scenario */
    uint64_t *conn_t0;
    size_t n_conns, created_conns, conn_base;
    unsigned drop_gen;
    int stopping;
    uint64_t last_p99_ns;
    hist lat;                    /* delivery latency, or ack latency */
    hist ack;                    /* publish ack latency (fanout) */
    /* Counters: written by this thread, read by main (relaxed). */
    uint64_t deliveries, deliveries_total;
    uint64_t acked, acked_total, failed_pubs, uncertain, inflight;
    uint64_t errors, disconnects, connected, connect_failures;
    uint64_t subscribed, sub_failed;
    uint64_t gaps, dups, lost;
    uint64_t resubscribed, recovered_true, recovered_false, last_recover_ns;
    uint64_t p99_ns;
    /* churn (see the churn section) */
    uint64_t opens, closes, cuts, drops, unsubs, resubs_since, switches;
    uint64_t sub_refused, sub_refused_108, live, active_slots, ready;
    uint64_t resets_4003, resets_4001, closes_4000, closes_other;
    uint64_t client_dups, false_recoveries, regressions, epoch_changes;
    uint64_t unexpected;         /* churn: events for no slot held */
    uint64_t witness_deliveries, witness_behind, witness_undelivered,
        witness_epoch_mismatch;
    uint64_t stalled, stalled_max_ms;   /* gauges, churn_stalls() */
    uint64_t next_stall_ns;
    track_counts tc;
    /* Several URLs only (else NULL): per URL, the deliveries to its
     * subscribers in the window and in all, and their latency (request:
     * its publishers' round trips). Written by this thread, read by main
     * after the thread has stopped. */
    uint64_t *url_deliveries, *url_deliveries_total;
    hist *url_lat;
    char payload[70000];
} bthread;

static bthread *g_th;

/* ---------------------------------------------------------------------- */

static double now_s(void)
{
    return (double)stamp_now_ns() / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts;
    if (s <= 0)
        return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* --- Clients: what every kind reports ---------------------------------- */

/* A client is a subscriber, a publisher or (connections) an idle
 * connection, of one of three kinds: Herald through the C client library,
 * Herald through the lean reader (fastsub.h: fanout subscribers, see
 * choose_sub_kind), or a peer through its driver (peer.h). The kinds'
 * callbacks below only translate into these calls, so that every kind is
 * counted the same way. */

/* The thread running this loop (callbacks without a user pointer). */
static __thread bthread *tl_th;

static void sub_ready(bsub *s)
{
    s->subscribed = 1;
    INC(s->th->subscribed, 1);
}

/* One delivery on thread th to a subscriber of URL url, at position pos of
 * track t (a Herald offset, or a peer publisher's sequence number): gaps
 * and duplicates, and in the measured window the latency of the payload's
 * stamp (st, or decoded from data when st is NULL). */
static void count_delivery(bthread *th, unsigned url, track *t, uint64_t pos,
                           const stamp *st, const char *data, size_t len,
                           int live)
{
    uint64_t gaps0 = th->tc.gaps, dups0 = th->tc.duplicates, now, lat;
    stamp dec;

    track_pub(t, pos, &th->tc);
    if (th->tc.gaps != gaps0)
        ST(th->gaps, th->tc.gaps);
    if (th->tc.duplicates != dups0)
        ST(th->dups, th->tc.duplicates);
    INC(th->deliveries_total, 1);
    if (th->url_lat)
        th->url_deliveries_total[url]++;
    if (LD(g_phase) != PH_MEASURE)
        return;
    INC(th->deliveries, 1);
    if (!live)
        return;              /* recovered: its latency is the absence's */
    if (!st) {
        if (stamp_decode(cfg.enc == HC_MSGPACK, data, len, &dec) != 0) {
            INC(th->errors, 1);
            return;
        }
        st = &dec;
    }
    now = stamp_now_ns();
    lat = now > st->t_ns ? now - st->t_ns : 0;
    hist_record(&th->lat, lat);
    if (th->url_lat) {
        th->url_deliveries[url]++;
        hist_record(&th->url_lat[url], lat);
    }
}

/* One delivery to subscriber s (count_delivery), and the channel's
 * sentinel count. */
static void sub_delivered(bsub *s, track *t, uint64_t pos, const stamp *st,
                          const char *data, size_t len)
{
    if (s->sentinel)
        __atomic_fetch_add(&g_chans[s->chan].seen[s->url], 1,
                           __ATOMIC_RELAXED);
    count_delivery(s->th, s->url, t, pos, st, data, len, 1);
}

/* A client's connection failed before it was ready (a setup failure,
 * counted as a failed subscribe: the run stops with exit 2), or was lost
 * afterwards (a disconnect, while publishing lasts). why is printed for
 * the first few; NULL for the library's disconnects (it reconnects by
 * itself and a reconnect run has thousands). */
static void client_lost(bthread *th, int ready_before, const char *what,
                        const char *why)
{
    if (!ready_before) {
        INC(th->sub_failed, 1);
        INC(th->errors, 1);
        if (!cfg.quiet && th->sub_failed <= 3)
            fprintf(stderr, "%s %s failed: %s\n", cfg.target, what,
                    why ? why : "?");
    } else if (LD(g_phase) < PH_DRAIN) {
        INC(th->disconnects, 1);
        if (why && !cfg.quiet && th->disconnects <= 3)
            fprintf(stderr, "%s %s lost: %s\n", cfg.target, what, why);
    }
}

/* A connection of the library's ended with close code `code` (1006: none,
 * or not open): the server's resets and closes, for the churn report. */
static void count_close(bthread *th, int code)
{
    switch (code) {
    case 4003: INC(th->resets_4003, 1); break;
    case 4001: INC(th->resets_4001, 1); break;
    case 4000: INC(th->closes_4000, 1); break;
    default: INC(th->closes_other, 1); break;
    }
}

static void pub_pump(bpub *p);

static void pub_ready(bpub *p)
{
    if (!p->connected) {
        p->connected = 1;
        INC(p->th->connected, 1);
    }
    pub_pump(p);
}

enum pub_outcome {
    PUB_ACKED,
    PUB_REFUSED,      /* the server said no (peers: or the connection ended) */
    PUB_UNCERTAIN,    /* Herald: the connection was lost before the answer */
    PUB_CLOSED        /* the bench closed the client (shutdown) */
};

/* The answer to one publication of p sent at t0. In the closed loop the
 * next goes out at once after an acknowledgement; after a failure the
 * tick pumps again (the connection may be going away). */
static void pub_answered(bpub *p, uint64_t t0, enum pub_outcome o,
                         const char *why)
{
    bthread *th = p->th;

    p->inflight--;
    INC(th->inflight, -1);
    if (o == PUB_ACKED) {
        INC(th->acked_total, 1);
        if (LD(g_phase) == PH_MEASURE) {
            uint64_t now = stamp_now_ns();
            uint64_t d = now > t0 ? now - t0 : 0;
            INC(th->acked, 1);
            /* request: `lat` holds the round trips; fanout and api keep
             * them in `ack` (their `lat` is publish-to-delivery). */
            if (cfg.sc == SC_REQUEST) {
                hist_record(&th->lat, d);
                if (th->url_lat)
                    hist_record(&th->url_lat[p->url], d);
            } else {
                hist_record(&th->ack, d);
            }
        }
        if (cfg.rate == 0)
            pub_pump(p);
        return;
    }
    /* Not published, or not known to be: the channel's count goes back. */
    __atomic_fetch_sub(&g_chans[p->chan].sent, 1, __ATOMIC_RELAXED);
    INC(th->failed_pubs, 1);
    if (o == PUB_UNCERTAIN) {
        INC(th->uncertain, 1);
    } else if (o == PUB_REFUSED) {
        INC(th->errors, 1);
        if (!cfg.quiet && th->failed_pubs <= 3)
            fprintf(stderr, "%s publish failed: %s\n", cfg.target,
                    why ? why : "?");
    }
}

/* Idle connections (connections scenario): the user pointer is the
 * thread's index (high 32 bits) and the connection's (low 32). */
static void conn_ready(void *user)
{
    bthread *th = g_th + ((uintptr_t)user >> 32);
    size_t i = (size_t)((uintptr_t)user & 0xffffffffu);
    if (th->conn_t0[i]) {
        hist_record(&th->lat, stamp_now_ns() - th->conn_t0[i]);
        th->conn_t0[i] = 0;
        INC(th->connected, 1);
    }
}

static void conn_closed(void *user, const char *why)
{
    bthread *th = g_th + ((uintptr_t)user >> 32);
    size_t i = (size_t)((uintptr_t)user & 0xffffffffu);
    if (LD(g_phase) >= PH_DRAIN)
        return;
    if (th->conn_t0[i]) {
        th->conn_t0[i] = 0;
        INC(th->connect_failures, 1);
        if (!cfg.quiet && th->connect_failures <= 3)
            fprintf(stderr, "connect failed: %s\n", why);
    } else {
        INC(th->disconnects, 1);
    }
}

/* --- Herald through the C client library ----------------------------------- */

static void base_options(hc_options *o, const char *url, const char *src,
                         void *user)
{
    hc_options_init(o);
    o->url = url;
    o->local_addr = src;
    o->encoding = cfg.enc;
    o->user = user;
    o->name = "herald-bench";
    o->backoff_base_ms = cfg.backoff_ms;
    if (o->backoff_max_ms < o->backoff_base_ms)
        o->backoff_max_ms = o->backoff_base_ms;
    /* A closed-loop publisher keeps at most `window` in flight, but a
     * fixed-rate one may queue more. */
    o->max_pending = 1u << 16;
    o->max_queue_bytes = 64u << 20;
}

static void lib_on_error(hc_client *c, int code, hc_str msg, void *user)
{
    INC(tl_th->errors, 1);
    if (!cfg.quiet && tl_th->errors <= 3)
        fprintf(stderr, "error %d: %.*s\n", code, (int)msg.len, msg.ptr);
    (void)c;
    (void)user;
}

static void lib_sub_pub(hc_client *c, const hc_pub *p, void *user)
{
    bsub *s = user;
    sub_delivered(s, &s->tr, p->offset, NULL, p->data, p->data_len);
    (void)c;
}

/* Subscription events: the library's recovery, counted for reconnect. */
static void lib_sub_event(hc_client *c, const hc_sub_event *ev, void *user)
{
    bsub *s = user;
    bthread *th = s->th;
    switch (ev->kind) {
    case HC_SUB_SUBSCRIBED:
        track_start(&s->tr, ev->offset);
        break;
    case HC_SUB_RESUBSCRIBED:
        track_resubscribed(&s->tr, ev->recovered, ev->offset, &th->tc);
        ST(th->lost, th->tc.lost);
        INC(th->resubscribed, 1);
        if (ev->recovered == 1)
            INC(th->recovered_true, 1);
        else
            INC(th->recovered_false, 1);
        if (s->awaiting) {
            s->awaiting = 0;
            ST(th->last_recover_ns, stamp_now_ns());
        }
        break;
    case HC_SUB_GAP:
        track_gap_event(&s->tr, &th->tc);
        ST(th->gaps, th->tc.gaps);
        break;
    case HC_SUB_FAILED:
    case HC_SUB_UNSUBSCRIBED:   /* the bench uses no channel tokens */
        INC(th->sub_failed, 1);
        INC(th->errors, 1);
        break;
    }
    (void)c;
}

static void lib_sub_reply(hc_client *c, const hc_reply *r, void *arg)
{
    bsub *s = arg;
    char why[256];
    if (r->code == 0) {
        sub_ready(s);
        return;
    }
    snprintf(why, sizeof(why), "subscribe %s: %d %.*s",
             g_chans[s->chan].name, r->code, (int)r->message.len,
             r->message.ptr);
    client_lost(s->th, 0, "subscriber", why);
    (void)c;
}

static void lib_sub_disconnected(hc_client *c, const hc_disconnected *ev,
                                 void *user)
{
    client_lost(((bsub *)user)->th, 1, "subscriber", NULL);
    count_close(((bsub *)user)->th, ev->code);
    (void)c;
}

static void lib_pub_connected(hc_client *c, const hc_connected *ev,
                              void *user)
{
    pub_ready(user);
    (void)c;
    (void)ev;
}

static void lib_pub_disconnected(hc_client *c, const hc_disconnected *ev,
                                 void *user)
{
    client_lost(((bpub *)user)->th, 1, "publisher", NULL);
    count_close(((bpub *)user)->th, ev->code);
    (void)c;
}

static void churn_acked(chan_state *ch, hc_str epoch, uint64_t offset);

static void lib_pub_ack(hc_client *c, const hc_reply *r, void *arg)
{
    char why[160] = "";
    enum pub_outcome o = r->code == 0                        ? PUB_ACKED
                         : r->code == HC_ERR_CONNECTION_LOST ? PUB_UNCERTAIN
                         : r->code == HC_ERR_CLOSED          ? PUB_CLOSED
                                                             : PUB_REFUSED;
    bpub *p = hc_client_user(c);
    if (o == PUB_REFUSED)
        snprintf(why, sizeof(why), "%d %.*s", r->code, (int)r->message.len,
                 r->message.ptr);
    if (o == PUB_ACKED && cfg.sc == SC_CHURN)
        churn_acked(&g_chans[p->chan], r->epoch, r->offset);
    pub_answered(p, (uint64_t)(uintptr_t)arg, o, why);
}

static void lib_conn_connected(hc_client *c, const hc_connected *ev,
                               void *user)
{
    conn_ready(user);
    (void)c;
    (void)ev;
}

static void lib_conn_disconnected(hc_client *c, const hc_disconnected *ev,
                                  void *user)
{
    char why[160];
    snprintf(why, sizeof(why), "close %d %.*s", ev->code,
             (int)ev->reason.len, ev->reason.ptr);
    conn_closed(user, why);
    (void)c;
}

/* --- Herald fanout subscribers on the lean reader ----------------------------- */

static void fast_subscribed(fastsub *f, uint64_t offset, void *user)
{
    bsub *s = user;
    track_start(&s->tr, offset);
    sub_ready(s);
    (void)f;
}

static void fast_pub(fastsub *f, uint64_t offset, const char *data,
                     size_t len, void *user)
{
    bsub *s = user;
    sub_delivered(s, &s->tr, offset, NULL, data, len);
    (void)f;
}

static void fast_closed(fastsub *f, const char *why, void *user)
{
    bsub *s = user;
    s->fs = NULL;
    client_lost(s->th, s->subscribed, "subscriber", why);
    (void)f;
}

static const fastsub_cb fast_cb = { fast_subscribed, fast_pub, fast_closed };

/* --- Peer targets ------------------------------------------------------------- */

/* Gaps and duplicates for peers: every stamp carries its publisher's
 * number and sequence number (1, 2, ... per publisher); a subscriber tracks
 * each publisher of its channel on those (track.h), so a skipped sequence
 * number is a gap and a repeated or older one a duplicate. Subscribers are
 * all ready before the first publication, so every stream starts at 1. A
 * publish that failed leaves its number unused: it counts as a failed
 * publish and shows as a gap too (both are 0 in a clean run). */

/* Publish acknowledgement argument: the publisher's index in its thread
 * (16 bits) and the send time relative to the thread's start (48 bits,
 * 78 hours), since peer_ack_cb has no client user pointer. */
#define PEER_ARG_SHIFT 48
#define PEER_ARG_TMASK ((UINT64_C(1) << PEER_ARG_SHIFT) - 1)
#define PEER_MAX_PUBS_PER_THREAD 65535u

static void peer_sub_ready(peer_client *c, void *user)
{
    bsub *s = user;
    track_start(&s->tr, 0);
    for (unsigned i = 0; s->trs && i < g_chans[s->chan].n_pubs; i++)
        track_start(&s->trs[i], 0);
    sub_ready(s);
    (void)c;
}

static void peer_sub_message(peer_client *c, const char *data, size_t len,
                             void *user)
{
    bsub *s = user;
    stamp st;
    track *t = &s->tr;

    if (stamp_decode(STAMP_JSON, data, len, &st) != 0 ||
        st.pub % cfg.channels != s->chan) {
        INC(s->th->errors, 1);
        return;
    }
    if (s->trs) {
        uint32_t k = st.pub / cfg.channels;
        if (k >= g_chans[s->chan].n_pubs) {
            INC(s->th->errors, 1);
            return;
        }
        t = &s->trs[k];
    }
    sub_delivered(s, t, st.seq, &st, data, len);
    (void)c;
}

static void peer_sub_closed(peer_client *c, int ready_before, const char *why,
                            void *user)
{
    bsub *s = user;
    s->pc = NULL;
    client_lost(s->th, ready_before, "subscriber", why);
    (void)c;
}

static void peer_pub_ready(peer_client *c, void *user)
{
    pub_ready(user);
    (void)c;
}

static void peer_pub_closed(peer_client *c, int ready_before, const char *why,
                            void *user)
{
    bpub *p = user;
    p->pc = NULL;
    p->connected = 0;
    client_lost(p->th, ready_before, "publisher", why);
    (void)c;
}

static void peer_pub_ack(peer_client *c, int ok, const char *why, void *arg)
{
    bthread *th = tl_th;
    uint64_t a = (uint64_t)(uintptr_t)arg;
    pub_answered(&th->pubs[a >> PEER_ARG_SHIFT],
                 th->ramp_start_ns + (a & PEER_ARG_TMASK),
                 ok ? PUB_ACKED : PUB_REFUSED, why);
    (void)c;
}

static void peer_conn_ready(peer_client *c, void *user)
{
    conn_ready(user);
    (void)c;
}

static void peer_conn_closed(peer_client *c, int ready_before,
                             const char *why, void *user)
{
    conn_closed(user, why ? why : "?");
    (void)c;
    (void)ready_before;
}

static const peer_callbacks peer_sub_cb = { peer_sub_ready, peer_sub_message,
                                            peer_sub_closed };
static const peer_callbacks peer_pub_cb = { peer_pub_ready, NULL,
                                            peer_pub_closed };
static const peer_callbacks peer_conn_cb = { peer_conn_ready, NULL,
                                             peer_conn_closed };

/* --- HTTP API publishers (api) --------------------------------------------------- */

/* The answer to one HTTP publish: arg is its send time. The server said
 * no, or the request failed (connection, timeout): refused either way,
 * since a POST is not retried and its publication may or may not exist. */
static void api_pub_ack(apipub *a, int ok, const char *why, void *arg)
{
    pub_answered(apipub_user(a), (uint64_t)(uintptr_t)arg,
                 ok ? PUB_ACKED : PUB_REFUSED, why);
}

/* --- Publishing ----------------------------------------------------------------- */

/* How far the channel's slowest sentinel is behind its publishers (0 when
 * it has no subscriber). With several URLs each has its own sentinel, so
 * that the subscribers of one node cannot fall behind without bound while
 * those of another keep up. */
static uint64_t chan_lag(const chan_state *ch)
{
    uint64_t sent = LD(ch->sent), lag = 0;
    for (int u = 0; u < cfg.n_urls; u++) {
        uint64_t seen = LD(ch->seen[u]);
        if ((ch->sentinel_urls >> u & 1u) && sent > seen && sent - seen > lag)
            lag = sent - seen;
    }
    return lag;
}

static int pub_one(bpub *p)
{
    bthread *th = p->th;
    const char *chan = g_chans[p->chan].name;
    stamp st;
    size_t n;
    uint64_t now = stamp_now_ns();
    int rc;

    st.t_ns = now;
    st.seq = p->seq + 1;
    st.pub = p->id;
    n = stamp_encode(cfg.enc == HC_MSGPACK, &st, cfg.size, th->payload,
                     sizeof(th->payload));
    if (cfg.sc == SC_API) {
        rc = apipub_publish(p->ap, chan, th->payload, n, api_pub_ack,
                            (void *)(uintptr_t)now);
    } else if (cfg.drv) {
        uint64_t a = (uint64_t)(p - th->pubs) << PEER_ARG_SHIFT |
                     ((now - th->ramp_start_ns) & PEER_ARG_TMASK);
        rc = p->pc ? cfg.drv->publish(p->pc, chan, th->payload, n,
                                      peer_pub_ack, (void *)(uintptr_t)a)
                   : -1;
    } else {
        rc = hc_publish(p->c, chan, th->payload, n, lib_pub_ack,
                        (void *)(uintptr_t)now);
    }
    if (rc != 0) {
        INC(th->errors, 1);
        return -1;
    }
    p->seq++;
    p->sent++;
    p->inflight++;
    INC(th->inflight, 1);
    __atomic_fetch_add(&g_chans[p->chan].sent, 1, __ATOMIC_RELAXED);
    return 0;
}

/* Sends what the publisher may send now. Closed loop (rate 0): at most
 * `in_flight` unacknowledged (the window, unless fanout's --in-flight says
 * less), and at most window x publishers of the channel ahead of the
 * channel's sentinel subscriber, so that deliveries cannot pile up in the
 * server's send queues beyond a bound. An HTTP publisher (api) has one
 * request in flight at most, at any rate (HTTP/1.1 without pipelining). */
static void pub_pump(bpub *p)
{
    int ph = LD(g_phase);
    unsigned in_flight = cfg.in_flight;
    if (!p->connected || (ph != PH_WARMUP && ph != PH_MEASURE))
        return;
    if (!p->started) {
        p->started = 1;
        p->start_ns = stamp_now_ns();
        p->sent = 0;
    }
    if (cfg.rate > 0) {
        uint64_t el = stamp_now_ns() - p->start_ns;
        uint64_t due = (uint64_t)((double)el * cfg.rate / 1e9) + 1;
        unsigned max_inflight = cfg.sc == SC_API ? 1 : 1u << 15;
        /* Far behind (the server or the bench cannot keep up): do not
         * burst to catch up more than one second's worth. */
        if (due > p->sent + (uint64_t)cfg.rate + 1)
            p->sent = due - (uint64_t)cfg.rate - 1;
        while (p->sent < due && p->inflight < max_inflight)
            if (pub_one(p))
                break;
        return;
    }
    chan_state *ch = &g_chans[p->chan];
    uint64_t lim = (uint64_t)cfg.window * ch->n_pubs;
    while (p->inflight < in_flight) {
        if (chan_lag(ch) >= lim)
            break;
        if (pub_one(p))
            break;
    }
}

/* --- churn ------------------------------------------------------------------ */

/* Churning clients (the churn scenario; bench/soak.sh). Each is one
 * logical subscriber that outlives its connections: it holds `per_client`
 * channel slots, and for each slot the position it has delivered (track,
 * plus the epoch), kept by the bench across connections. A client:
 *
 *   - opens a connection (hc_client) to a random URL (with two nodes, one
 *     replacement in two lands on the other node) and subscribes every
 *     slot, with `since` = the slot's position when it has one;
 *   - every ~resub_every s (exponential) unsubscribes one slot, then after
 *     0-2 s subscribes again: three times in four the same channel with
 *     `since`, else another channel afresh;
 *   - after a lifetime (exponential, mean `lifetime`) ends the connection
 *     one of three ways: a close frame (hc_client_close), a cut without a
 *     close frame (hc_client_drop, then close), each followed by a new
 *     connection after 0..offline s (or, for a `long_share` of them,
 *     `long_offline` s: a recovery older than the hot window) that
 *     recovers with `since`; or a drop that the library recovers from
 *     itself (reconnect, resubscribe with its own position).
 *
 * Witnesses are clients that never churn: one per channel per URL,
 * subscribed from the start. When publishing stops, every witness must
 * reach its channel's highest acknowledged offset: acknowledged
 * publications that never arrived are counted (undelivered), as are
 * witnesses that cannot be compared (another epoch, not subscribed).
 *
 * What is counted against the server: gaps (an offset skipped without
 * notice, as the library announces them or the track sees them),
 * duplicates (an offset delivered twice or out of order in a slot's epoch,
 * as the track sees them, plus those the library dropped:
 * hc_client_faults_get), misreported recoveries (recovered:true that did
 * not continue the position), regressions (recovered:false at an offset
 * below the delivered position in the same epoch: the offsets in between
 * come again and count as duplicates too), unexpected events (a
 * publication or subscription event for a channel the client does not
 * hold, or a publication outside the epoch the library announced). Each
 * fails the run. Allowed and reported separately, never folded into the
 * above: recovered:false (the publications between the position and the
 * reply's offset are counted as lost, announced; in another epoch, as an
 * epoch change, since the loss cannot be counted), subscribes refused (108
 * while Redis or the store is away: retried after 0.2-1 s), publishes
 * refused.
 */
static void setup_failed(const char *what, const char *url, const char *err);

#define CHURN_SLOTS 8
#define CHURN_EPOCH_MAX 64
#define CHURN_TICK_NS 10000000u      /* the churn actions' check, 10 ms */

enum { CS_IDLE, CS_PENDING, CS_ACTIVE };

typedef struct cslot {
    track tr;                    /* the delivered position, across conns */
    uint64_t retry_ns;           /* CS_IDLE: subscribe at (0: at open) */
    uint64_t recover_top;        /* the bench's subscribe's reply offset:
                                    publications up to it were recovered */
    uint64_t pending_ns;         /* CS_PENDING: since when */
    uint32_t chan;
    uint8_t state;
    uint8_t epoch_len;           /* 0: no epoch known (no since) */
    char epoch[CHURN_EPOCH_MAX + 1];
} cslot;

typedef struct bchurn {
    hc_client *c;                /* NULL while away */
    struct bthread *th;
    uint64_t end_ns, resub_ns;   /* lifetime end, next unsubscribe */
    uint64_t reopen_ns;          /* away: when the replacement connects */
    uint8_t url, witness, n_slots;
    uint8_t connected, ending, dead, ready;
    cslot slots[CHURN_SLOTS];
} bchurn;

/* xorshift64*: the thread's random numbers. */
static uint64_t churn_rand(bthread *th)
{
    th->rng ^= th->rng >> 12;
    th->rng ^= th->rng << 25;
    th->rng ^= th->rng >> 27;
    return th->rng * 2685821657736338717ull;
}

/* Uniform in [0, 1). */
static double churn_unit(bthread *th)
{
    return (double)(churn_rand(th) >> 11) / 9007199254740992.0;
}

/* Exponential with mean `mean` seconds, in ns. */
static uint64_t churn_exp_ns(bthread *th, double mean)
{
    return (uint64_t)(-log(1.0 - churn_unit(th)) * mean * 1e9);
}

static uint32_t epoch_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

/* A publisher's publish was acknowledged at `offset` of `epoch`: the
 * channel's highest acknowledged offset (a new epoch starts it again). */
static void churn_acked(chan_state *ch, hc_str epoch, uint64_t offset)
{
    uint32_t h = epoch_hash(epoch.ptr, epoch.len);
    uint64_t top;
    if (__atomic_load_n(&ch->ack_epoch, __ATOMIC_ACQUIRE) != h) {
        /* With one publisher per channel (the default), acks come in
         * order, so the new epoch's first ack lands here once. */
        __atomic_store_n(&ch->top_acked, offset, __ATOMIC_RELAXED);
        __atomic_store_n(&ch->ack_epoch, h, __ATOMIC_RELEASE);
        return;
    }
    top = __atomic_load_n(&ch->top_acked, __ATOMIC_RELAXED);
    while (offset > top &&
           !__atomic_compare_exchange_n(&ch->top_acked, &top, offset, 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static void slot_state(bthread *th, cslot *s, int state)
{
    if (s->state == CS_ACTIVE && state != CS_ACTIVE)
        INC(th->active_slots, -1);
    else if (s->state != CS_ACTIVE && state == CS_ACTIVE)
        INC(th->active_slots, 1);
    s->state = (uint8_t)state;
}

static int slot_epoch_is(const cslot *s, hc_str e)
{
    return s->epoch_len && e.len == s->epoch_len &&
           !memcmp(s->epoch, e.ptr, e.len);
}

static void slot_set_epoch(cslot *s, hc_str e)
{
    if (e.len > CHURN_EPOCH_MAX) {
        s->epoch_len = 0;            /* not Herald's: no since from it */
        return;
    }
    memcpy(s->epoch, e.ptr, e.len);
    s->epoch[e.len] = '\0';
    s->epoch_len = (uint8_t)e.len;
}

/* The slot of client ch subscribed (or subscribing) to `channel`. */
static cslot *churn_slot(bchurn *ch, hc_str channel)
{
    for (unsigned i = 0; i < ch->n_slots; i++) {
        const char *n = g_chans[ch->slots[i].chan].name;
        if (ch->slots[i].state != CS_IDLE && strlen(n) == channel.len &&
            !memcmp(n, channel.ptr, channel.len))
            return &ch->slots[i];
    }
    return NULL;
}

/* Adds what the library absorbed on ch's connection (before it closes). */
static void churn_collect_faults(bchurn *ch)
{
    hc_client_faults f;
    hc_client_faults_get(ch->c, &f);
    INC(ch->th->client_dups, f.duplicates);
    INC(ch->th->false_recoveries, f.false_recoveries);
}

static void churn_sub_reply(hc_client *c, const hc_reply *r, void *arg);

/* Subscribes slot s on ch's connection: with `since` when the slot has a
 * position. Refused locally (the client's queue): retried later. */
static void slot_subscribe(bchurn *ch, cslot *s)
{
    bthread *th = ch->th;
    hc_since since = { s->tr.last, s->epoch };
    int with = (s->tr.flags & TRACK_ACTIVE) && s->epoch_len;
    int rc = hc_subscribe(ch->c, g_chans[s->chan].name, with ? &since : NULL,
                          churn_sub_reply, s);
    if (rc != HC_OK) {
        INC(th->errors, 1);
        s->retry_ns = stamp_now_ns() + 1000000000u;
        return;
    }
    if (with)
        INC(th->resubs_since, 1);
    slot_state(th, s, CS_PENDING);
    s->pending_ns = stamp_now_ns();
}

/* A subscribe was refused by the server (code > 0): the slot waits
 * 0.2-1 s and subscribes again (with since). */
static void slot_refused(bthread *th, cslot *s, int code)
{
    slot_state(th, s, CS_IDLE);
    s->retry_ns = stamp_now_ns() + 200000000u +
                  (uint64_t)(churn_unit(th) * 800000000.0);
    INC(th->sub_refused, 1);
    if (code == 108)
        INC(th->sub_refused_108, 1);
}

static void churn_sub_reply(hc_client *c, const hc_reply *r, void *arg)
{
    bchurn *ch = hc_client_user(c);
    cslot *s = arg;
    /* Called before the recovered publications are delivered. */
    if (r->code == 0)
        s->recover_top = r->offset;
    /* Negative: the client closed or the slot unsubscribed before the
     * answer; the bench has already moved the slot on. */
    if (r->code > 0 && c == ch->c && s->state == CS_PENDING)
        slot_refused(ch->th, s, r->code);
}

static void churn_on_sub(hc_client *c, const hc_sub_event *ev, void *user)
{
    bchurn *ch = user;
    bthread *th = ch->th;
    cslot *s = churn_slot(ch, ev->channel);
    int same;
    (void)c;

    if (!s) {
        INC(th->unexpected, 1);      /* a channel this client does not hold */
        return;
    }
    switch (ev->kind) {
    case HC_SUB_SUBSCRIBED:
    case HC_SUB_RESUBSCRIBED:
        s->recover_top = 0;          /* the bench's reply, if any, follows */
        same = slot_epoch_is(s, ev->epoch);
        if (ev->recovered == -1 || !(s->tr.flags & TRACK_ACTIVE)) {
            track_start(&s->tr, ev->offset);
        } else if (ev->recovered == 0) {
            INC(th->recovered_false, 1);
            if (!same) {
                INC(th->epoch_changes, 1);
                track_start(&s->tr, ev->offset);
            } else if (ev->offset < s->tr.last) {
                /* Behind what this client already has: keep the position,
                 * so that what comes again counts as duplicates. */
                INC(th->regressions, 1);
            } else {
                track_resubscribed(&s->tr, 0, ev->offset, &th->tc);
                ST(th->lost, th->tc.lost);
            }
        } else {
            INC(th->recovered_true, 1);
            /* The library compares epochs only for positions it has
             * itself; the server's recovery of the bench's `since` must
             * be in the same epoch too. */
            if (!same && s->epoch_len)
                INC(th->false_recoveries, 1);
        }
        if (ev->kind == HC_SUB_RESUBSCRIBED)
            INC(th->resubscribed, 1);
        slot_set_epoch(s, ev->epoch);
        slot_state(th, s, CS_ACTIVE);
        if (ch->witness && !ch->ready) {
            ch->ready = 1;
            INC(th->ready, 1);
        }
        break;
    case HC_SUB_GAP:
        track_gap_event(&s->tr, &th->tc);
        ST(th->gaps, th->tc.gaps);
        slot_set_epoch(s, ev->epoch);
        break;
    case HC_SUB_FAILED:
    case HC_SUB_UNSUBSCRIBED:
        slot_refused(th, s, ev->code);
        break;
    }
}

static void churn_on_pub(hc_client *c, const hc_pub *p, void *user)
{
    bchurn *ch = user;
    bthread *th = ch->th;
    cslot *s = churn_slot(ch, p->channel);
    (void)c;
    if (!s || s->state != CS_ACTIVE || !slot_epoch_is(s, p->epoch)) {
        /* Not subscribed, or not in the epoch the library announced: a
         * delivery the client did not ask for. */
        INC(th->unexpected, 1);
        return;
    }
    /* Latency of live publications only (the library's own recoveries,
     * after a drop or a server's reset, are not told apart). */
    count_delivery(th, ch->url, &s->tr, p->offset, NULL, p->data,
                   p->data_len, p->offset > s->recover_top);
    if (ch->witness)
        INC(th->witness_deliveries, 1);
}

static void churn_on_connected(hc_client *c, const hc_connected *ev,
                               void *user)
{
    bchurn *ch = user;
    (void)c;
    (void)ev;
    if (!ch->connected) {
        ch->connected = 1;
        INC(ch->th->live, 1);
    }
}

static void churn_on_disconnected(hc_client *c, const hc_disconnected *ev,
                                  void *user)
{
    bchurn *ch = user;
    (void)c;
    if (ch->connected) {
        ch->connected = 0;
        INC(ch->th->live, -1);
    }
    if (ch->ending)
        return;                      /* the bench's own close, cut or drop */
    count_close(ch->th, ev->code);
    if (LD(g_phase) < PH_DRAIN)
        INC(ch->th->disconnects, 1);
    if (!ev->reconnect)
        ch->dead = 1;                /* the library gave up: replace it */
}

/* Opens ch's next connection and subscribes its slots. */
static void churn_open(bchurn *ch)
{
    bthread *th = ch->th;
    uint64_t now = stamp_now_ns();
    char err[256] = "";
    hc_options o;

    if (!ch->witness)
        ch->url = (uint8_t)(churn_rand(th) % (uint64_t)cfg.n_urls);
    base_options(&o, cfg.urls[ch->url], NULL, ch);
    o.max_pending = 4096;
    o.max_queue_bytes = 1u << 20;
    o.cb.connected = churn_on_connected;
    o.cb.disconnected = churn_on_disconnected;
    o.cb.pub = churn_on_pub;
    o.cb.subscription = churn_on_sub;
    o.cb.error = lib_on_error;
    ch->c = hc_client_new(th->ctx, &o, err, sizeof(err));
    if (!ch->c)
        setup_failed("churning client", cfg.urls[ch->url], err);
    ch->dead = 0;
    INC(th->opens, 1);
    ch->end_ns = now + churn_exp_ns(th, cfg.lifetime);
    ch->resub_ns = now + churn_exp_ns(th, cfg.resub_every);
    for (unsigned i = 0; i < ch->n_slots; i++) {
        cslot *s = &ch->slots[i];
        if (s->state == CS_IDLE && s->retry_ns <= now)
            slot_subscribe(ch, s);
    }
}

/* Ends ch's connection for good (a close frame, or cut without one); its
 * slots keep their positions for the replacement. */
static void churn_close(bchurn *ch, int cut)
{
    bthread *th = ch->th;
    ch->ending = 1;
    churn_collect_faults(ch);
    if (cut)
        hc_client_drop(ch->c);
    hc_client_close(ch->c);
    ch->ending = 0;
    ch->c = NULL;
    if (ch->connected) {
        ch->connected = 0;
        INC(th->live, -1);
    }
    for (unsigned i = 0; i < ch->n_slots; i++) {
        slot_state(th, &ch->slots[i], CS_IDLE);
        ch->slots[i].retry_ns = 0;
    }
    ch->reopen_ns = stamp_now_ns() +
                    (uint64_t)((cfg.long_offline > 0 &&
                                churn_unit(th) < cfg.long_share
                                    ? cfg.long_offline
                                    : churn_unit(th) * cfg.offline) * 1e9);
}

/* The end of a lifetime: close, cut, or drop (the library recovers). */
static void churn_end(bchurn *ch)
{
    bthread *th = ch->th;
    switch (churn_rand(th) % 3) {
    case 0:
        INC(th->closes, 1);
        churn_close(ch, 0);
        break;
    case 1:
        INC(th->cuts, 1);
        churn_close(ch, 1);
        break;
    default:
        INC(th->drops, 1);
        ch->ending = 1;
        hc_client_drop(ch->c);
        ch->ending = 0;
        ch->end_ns = stamp_now_ns() + churn_exp_ns(th, cfg.lifetime);
        break;
    }
}

/* Unsubscribes one slot; it subscribes again 0-2 s later: the same
 * channel with since (3 in 4), or another channel afresh. */
static void churn_resub(bchurn *ch)
{
    bthread *th = ch->th;
    uint64_t now = stamp_now_ns();
    cslot *s = &ch->slots[churn_rand(th) % ch->n_slots];

    ch->resub_ns = now + churn_exp_ns(th, cfg.resub_every);
    if (s->state == CS_IDLE)
        return;
    if (hc_unsubscribe(ch->c, g_chans[s->chan].name, NULL, NULL) != HC_OK) {
        INC(th->errors, 1);
        return;
    }
    INC(th->unsubs, 1);
    slot_state(th, s, CS_IDLE);
    s->retry_ns = now + (uint64_t)(churn_unit(th) * 2e9);
    if (cfg.channels > ch->n_slots && churn_rand(th) % 4 == 0) {
        uint32_t c;
        unsigned i;
        do {
            c = (uint32_t)(churn_rand(th) % cfg.channels);
            for (i = 0; i < ch->n_slots && ch->slots[i].chan != c; i++)
                ;
        } while (i < ch->n_slots);
        s->chan = c;
        memset(&s->tr, 0, sizeof(s->tr));
        s->epoch_len = 0;
        INC(th->switches, 1);
    }
}

/* Drain: how far this thread's witnesses are from their channels' highest
 * acknowledged offsets. */
static void churn_witness_check(bthread *th)
{
    uint64_t behind = 0, undelivered = 0, mismatch = 0;
    for (size_t i = 0; i < th->created_churn; i++) {
        bchurn *ch = &th->churn[i];
        cslot *s = &ch->slots[0];
        chan_state *cs = &g_chans[s->chan];
        uint32_t h = __atomic_load_n(&cs->ack_epoch, __ATOMIC_ACQUIRE);
        uint64_t top = __atomic_load_n(&cs->top_acked, __ATOMIC_RELAXED);
        if (!ch->witness)
            break;                   /* witnesses come first */
        if (!top)
            continue;                /* nothing acknowledged */
        if (s->state != CS_ACTIVE || !s->epoch_len ||
            epoch_hash(s->epoch, s->epoch_len) != h) {
            behind++;
            mismatch++;
        } else if (s->tr.last < top) {
            behind++;
            undelivered += top - s->tr.last;
        }
    }
    ST(th->witness_behind, behind);
    ST(th->witness_undelivered, undelivered);
    ST(th->witness_epoch_mismatch, mismatch);
    __atomic_store_n(&th->witness_checked_ns, stamp_now_ns(),
                     __ATOMIC_RELEASE);
}

/* Once a second: subscribes sent on an open connection and unanswered
 * for CHURN_STALL_S or more (the server owes an answer: ok, or 108 when
 * Redis or the store is away), and the oldest such wait. With `dump`, each
 * is printed (at the end of the run). */
#define CHURN_STALL_S 30
static void churn_stalls(bthread *th, uint64_t now, int dump)
{
    uint64_t n = 0, oldest = 0;
    for (size_t i = 0; i < th->created_churn; i++) {
        bchurn *ch = &th->churn[i];
        for (unsigned k = 0; ch->c && k < ch->n_slots; k++) {
            cslot *s = &ch->slots[k];
            uint64_t age;
            if (s->state != CS_PENDING ||
                hc_client_state(ch->c) != HC_STATE_CONNECTED)
                continue;
            age = now > s->pending_ns ? now - s->pending_ns : 0;
            if (age > oldest)
                oldest = age;
            if (age < (uint64_t)CHURN_STALL_S * 1000000000u)
                continue;
            n++;
            if (dump && n <= 20)
                fprintf(stderr, "herald-bench: subscribe unanswered for %.1f s:"
                        " %s on %s, since %s %" PRIu64 "%s\n",
                        (double)age / 1e9, g_chans[s->chan].name,
                        cfg.urls[ch->url],
                        s->epoch_len ? s->epoch : "-", s->tr.last,
                        ch->witness ? " (witness)" : "");
        }
    }
    ST(th->stalled, n);
    ST(th->stalled_max_ms, oldest / 1000000u);
}

/* Every CHURN_TICK_NS: replacements, lifetimes, resubscribes, retries. */
static void churn_tick(bthread *th)
{
    uint64_t now = stamp_now_ns();
    int ph = LD(g_phase), churning = ph < PH_DRAIN;

    if (now < th->next_churn_ns)
        return;
    th->next_churn_ns = now + CHURN_TICK_NS;
    for (size_t i = 0; i < th->created_churn; i++) {
        bchurn *ch = &th->churn[i];
        if (!ch->c) {
            if (now >= ch->reopen_ns)
                churn_open(ch);
            continue;
        }
        if (ch->dead) {
            churn_close(ch, 0);
            continue;
        }
        if (churning && !ch->witness && now >= ch->end_ns) {
            churn_end(ch);
            if (!ch->c)
                continue;
        } else if (churning && !ch->witness && now >= ch->resub_ns) {
            churn_resub(ch);
        }
        for (unsigned k = 0; k < ch->n_slots; k++) {
            cslot *s = &ch->slots[k];
            if (s->state == CS_IDLE && now >= s->retry_ns)
                slot_subscribe(ch, s);
        }
    }
    if (ph >= PH_DRAIN)
        churn_witness_check(th);
    if (now >= th->next_stall_ns) {
        th->next_stall_ns = now + 1000000000u;
        churn_stalls(th, now, 0);
    }
}

/* Before the context closes: what the live clients' library absorbed. */
static void churn_stop(bthread *th)
{
    churn_witness_check(th);
    churn_stalls(th, stamp_now_ns(), 1);
    for (size_t i = 0; i < th->created_churn; i++)
        if (th->churn[i].c)
            churn_collect_faults(&th->churn[i]);
}

/* --- Thread ------------------------------------------------------------------------ */

/* The source address of client number g (--conns-per-addr): 127.x.y.z
 * with z in 1..254, N clients each; NULL when not spreading. */
static const char *client_addr(size_t g, char *out, size_t n)
{
    size_t a, hi;
    if (!cfg.conns_per_addr)
        return NULL;
    a = g / cfg.conns_per_addr;
    hi = a / 254;
    snprintf(out, n, "127.%zu.%zu.%zu", (hi / 256) % 256, hi % 256,
             a % 254 + 1);
    return out;
}

static void setup_failed(const char *what, const char *url, const char *err)
{
    fprintf(stderr, "herald-bench: cannot create a %s %s at %s%s%s\n",
            cfg.target, what, url, err[0] ? ": " : "", err);
    exit(2);
}

/* Subscriber s of the thread, client number g of the process. */
static void open_sub(bthread *th, bsub *s, size_t g)
{
    const char *url = cfg.urls[s->url], *chan = g_chans[s->chan].name;
    char addr[32], err[256] = "";
    const char *src = client_addr(g, addr, sizeof(addr));
    hc_options o;
    int ok;

    switch (cfg.sub_kind) {
    case SUB_PEER: {
        peer_options po = { url, src, &peer_sub_cb, s };
        unsigned np = g_chans[s->chan].n_pubs;
        if (np > 1 && !(s->trs = calloc(np, sizeof(*s->trs))))
            abort();
        ok = (s->pc = cfg.drv->open(th->pctx, &po, PEER_SUBSCRIBER,
                                    chan)) != NULL;
        break;
    }
    case SUB_FAST:
        s->fs = fastsub_open(&th->loop, url, src, cfg.enc == HC_MSGPACK, chan,
                             &fast_cb, s);
        ok = s->fs != NULL;
        break;
    default:
        base_options(&o, url, src, s);
        o.cb.disconnected = lib_sub_disconnected;
        o.cb.pub = lib_sub_pub;
        o.cb.subscription = lib_sub_event;
        o.cb.error = lib_on_error;
        ok = (s->c = hc_client_new(th->ctx, &o, err, sizeof(err))) != NULL;
        if (ok && hc_subscribe(s->c, chan, NULL, lib_sub_reply, s) != HC_OK)
            INC(th->errors, 1);
        break;
    }
    if (!ok)
        setup_failed("subscriber", url, err);
}

static void open_pub(bthread *th, bpub *p)
{
    const char *url = cfg.urls[p->url];
    char err[256] = "";
    hc_options o;
    int ok;

    if (cfg.sc == SC_API) {
        /* Its connection opens with the first request (in the warm-up). */
        url = cfg.api_url;
        if ((ok = (p->ap = apipub_new(th->actx, p)) != NULL))
            pub_ready(p);
    } else if (cfg.drv) {
        peer_options po = { url, NULL, &peer_pub_cb, p };
        ok = (p->pc = cfg.drv->open(th->pctx, &po, PEER_PUBLISHER,
                                    NULL)) != NULL;
    } else {
        base_options(&o, url, NULL, p);
        o.cb.connected = lib_pub_connected;
        o.cb.disconnected = lib_pub_disconnected;
        o.cb.error = lib_on_error;
        ok = (p->c = hc_client_new(th->ctx, &o, err, sizeof(err))) != NULL;
    }
    if (!ok)
        setup_failed("publisher", url, err);
}

/* Idle connection i of the thread (connections scenario). */
static void open_conn(bthread *th, size_t i)
{
    size_t g = th->conn_base + i;
    const char *url = cfg.urls[g % (size_t)cfg.n_urls];
    void *user = (void *)(((uintptr_t)th->idx << 32) | (uintptr_t)i);
    char addr[32], err[256] = "";
    const char *src = client_addr(g, addr, sizeof(addr));
    hc_options o;
    int ok;

    th->conn_t0[i] = stamp_now_ns();
    if (!th->conn_t0[i])
        th->conn_t0[i] = 1;
    if (cfg.drv) {
        peer_options po = { url, src, &peer_conn_cb, user };
        ok = cfg.drv->open(th->pctx, &po, PEER_IDLE, NULL) != NULL;
    } else {
        base_options(&o, url, src, user);
        o.reconnect = 0;
        o.cb.connected = lib_conn_connected;
        o.cb.disconnected = lib_conn_disconnected;
        o.cb.error = lib_on_error;
        ok = (th->conns[i] = hc_client_new(th->ctx, &o, err,
                                           sizeof(err))) != NULL;
    }
    if (!ok)
        setup_failed("connection", url, err);
}

/* Creates the clients due by now at the thread's share of the connect
 * rate: subscribers first, then publishers, then idle connections. */
static void create_clients(bthread *th)
{
    size_t total = th->n_subs + th->n_pubs + th->n_conns + th->n_churn;
    size_t made = th->created_subs + th->created_pubs + th->created_conns +
                  th->created_churn;
    double el = (double)(stamp_now_ns() - th->ramp_start_ns) / 1e9;
    size_t due = th->ramp_rate > 0 ? (size_t)(el * th->ramp_rate) + 1 : total;

    for (; made < due && made < total; made++) {
        if (th->created_subs < th->n_subs) {
            open_sub(th, &th->subs[th->created_subs],
                     th->conn_base + th->created_subs);
            th->created_subs++;
        } else if (th->created_pubs < th->n_pubs) {
            open_pub(th, &th->pubs[th->created_pubs++]);
        } else if (th->created_churn < th->n_churn) {
            churn_open(&th->churn[th->created_churn++]);
        } else {
            open_conn(th, th->created_conns++);
        }
    }
}

static void tick_cb(uv_timer_t *t)
{
    bthread *th = t->data;
    int ph = LD(g_phase);
    uint64_t now;

    if (ph == PH_STOP) {
        if (!th->stopping) {
            th->stopping = 1;
            uv_timer_stop(&th->tick);
            uv_close((uv_handle_t *)&th->tick, NULL);
            for (size_t i = 0; cfg.sub_kind == SUB_FAST &&
                               i < th->created_subs; i++)
                if (th->subs[i].fs) {
                    fastsub_close(th->subs[i].fs);
                    th->subs[i].fs = NULL;
                }
            if (cfg.sc == SC_CHURN)
                churn_stop(th);
            if (th->actx)
                apipub_ctx_close(th->actx);
            if (cfg.drv)
                cfg.drv->ctx_close(th->pctx);
            else
                hc_ctx_close(th->ctx);
        }
        return;
    }
    create_clients(th);
    if (cfg.sc == SC_CHURN)
        churn_tick(th);
    if (LD(g_drop_gen) != th->drop_gen) {
        /* reconnect: every subscriber (the library's) loses its connection. */
        th->drop_gen = LD(g_drop_gen);
        for (size_t i = 0; cfg.sub_kind == SUB_LIB && i < th->created_subs;
             i++) {
            th->subs[i].awaiting = 1;
            hc_client_drop(th->subs[i].c);
        }
    }
    for (size_t i = 0; i < th->created_pubs; i++)
        pub_pump(&th->pubs[i]);
    now = stamp_now_ns();
    if (now - th->last_p99_ns >= 1000000000u) {
        th->last_p99_ns = now;
        /* api: the progress line's p99 is the round trip's */
        ST(th->p99_ns, hist_percentile(cfg.sc == SC_API ? &th->ack : &th->lat,
                                       99));
    }
}

static void *thread_main(void *arg)
{
    bthread *th = arg;
    char err[256] = "";
    tl_th = th;
    uv_loop_init(&th->loop);
    if (cfg.drv)
        th->pctx = cfg.drv->ctx_new(&th->loop, err, sizeof(err));
    else
        th->ctx = hc_ctx_new(&th->loop, NULL);
    if (!th->pctx && !th->ctx) {
        fprintf(stderr, "herald-bench: %s: cannot create a client context%s%s\n",
                cfg.target, err[0] ? ": " : "", err);
        exit(2);
    }
    if (cfg.sc == SC_API &&
        !(th->actx = apipub_ctx_new(&th->loop, cfg.api_url, cfg.api_auth,
                                    cfg.pubs / (unsigned)cfg.threads + 1, err,
                                    sizeof(err)))) {
        fprintf(stderr, "herald-bench: cannot create an HTTP client: %s\n",
                err);
        exit(2);
    }
    uv_timer_init(&th->loop, &th->tick);
    th->tick.data = th;
    th->ramp_start_ns = stamp_now_ns();
    th->last_p99_ns = th->ramp_start_ns;
    uv_timer_start(&th->tick, tick_cb, 0, 1);
    uv_run(&th->loop, UV_RUN_DEFAULT);
    if (th->actx)
        apipub_ctx_free(th->actx);
    if (cfg.drv)
        cfg.drv->ctx_free(th->pctx);
    else
        hc_ctx_free(th->ctx);
    uv_loop_close(&th->loop);
    return NULL;
}

/* --- Sums -------------------------------------------------------------- */

typedef struct sums {
    uint64_t deliveries, deliveries_total, acked, acked_total, failed_pubs,
        uncertain, inflight, errors, disconnects, connected, connect_failures,
        subscribed, sub_failed, gaps, dups, lost, resubscribed,
        recovered_true, recovered_false, last_recover_ns, p99_ns;
    uint64_t opens, closes, cuts, drops, unsubs, resubs_since, switches,
        sub_refused, sub_refused_108, live, active_slots, ready, resets_4003,
        resets_4001, closes_4000, closes_other, client_dups,
        false_recoveries, regressions, epoch_changes, unexpected,
        witness_deliveries,
        witness_behind, witness_undelivered, witness_epoch_mismatch,
        stalled, stalled_max_ms;
} sums;

static void sum_threads(sums *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < cfg.threads; i++) {
        bthread *th = &g_th[i];
#define S_(f) s->f += LD(th->f)
        S_(deliveries); S_(deliveries_total); S_(acked); S_(acked_total);
        S_(failed_pubs); S_(uncertain); S_(inflight); S_(errors); S_(disconnects);
        S_(connected); S_(connect_failures); S_(subscribed); S_(sub_failed);
        S_(gaps); S_(dups); S_(lost); S_(resubscribed); S_(recovered_true);
        S_(recovered_false);
        S_(opens); S_(closes); S_(cuts); S_(drops); S_(unsubs);
        S_(resubs_since); S_(switches); S_(sub_refused); S_(sub_refused_108);
        S_(live); S_(active_slots); S_(ready); S_(resets_4003);
        S_(resets_4001); S_(closes_4000); S_(closes_other); S_(client_dups);
        S_(false_recoveries); S_(regressions); S_(epoch_changes);
        S_(unexpected);
        S_(witness_deliveries); S_(witness_behind); S_(witness_undelivered);
        S_(witness_epoch_mismatch); S_(stalled);
#undef S_
        if (LD(th->stalled_max_ms) > s->stalled_max_ms)
            s->stalled_max_ms = LD(th->stalled_max_ms);
        if (LD(th->last_recover_ns) > s->last_recover_ns)
            s->last_recover_ns = LD(th->last_recover_ns);
        if (LD(th->p99_ns) > s->p99_ns)
            s->p99_ns = LD(th->p99_ns);
    }
}

/* One progress line, kept for the report's "timeline" (throughput over
 * time): bounded, a run longer than TIMELINE_MAX seconds keeps its first
 * TIMELINE_MAX samples. */
#define TIMELINE_MAX 3600
typedef struct tl_sample {
    double t, rate, p99_us;
    uint64_t conns, errors;
    const char *phase;
} tl_sample;
static tl_sample g_timeline[TIMELINE_MAX];
static size_t g_n_timeline;

static void samples_row(const sums *s, double t, const char *phase,
                        double dt);

static void progress(double t0, uint64_t *prev, double *prev_t,
                     const char *what)
{
    sums s;
    double now = now_s();
    uint64_t cur;
    sum_threads(&s);
    cur = cfg.sc == SC_CONNECTIONS                     ? s.connected
          : cfg.sc == SC_REQUEST || cfg.sc == SC_API ? s.acked_total
                                                     : s.deliveries_total;
    if (g_n_timeline < TIMELINE_MAX)
        g_timeline[g_n_timeline++] = (tl_sample){
            .t = now - t0,
            .rate = (double)(cur - *prev) / (now - *prev_t),
            .p99_us = (double)s.p99_ns / 1e3,
            .conns = s.connected + s.subscribed,
            .errors = s.errors,
            .phase = what,
        };
    if (cfg.samples)
        samples_row(&s, now - t0, what, now - *prev_t);
    if (!cfg.quiet && cfg.sc == SC_CHURN)
        fprintf(stderr,
                "[%6.1fs] %-8s deliveries/s=%-8.0f clients=%" PRIu64
                " subs=%" PRIu64 " errors=%" PRIu64 " gaps=%" PRIu64
                " dups=%" PRIu64 " lost=%" PRIu64 " 4003=%" PRIu64
                " 4001=%" PRIu64 " refused=%" PRIu64 " failed_pubs=%" PRIu64
                "\n", now - t0, what,
                (double)(cur - *prev) / (now - *prev_t), s.live,
                s.active_slots, s.errors, s.gaps,
                s.dups + s.client_dups, s.lost, s.resets_4003,
                s.resets_4001, s.sub_refused, s.failed_pubs);
    else if (!cfg.quiet)
        fprintf(stderr,
                "[%6.1fs] %-8s %s/s=%-10.0f conns=%" PRIu64
                " p99=%.0fus errors=%" PRIu64 " gaps=%" PRIu64
                " dups=%" PRIu64 " disconnects=%" PRIu64 "\n",
                now - t0, what,
                cfg.sc == SC_CONNECTIONS                     ? "connects"
                : cfg.sc == SC_REQUEST || cfg.sc == SC_API ? "acks"
                                                           : "deliveries",
                (double)(cur - *prev) / (now - *prev_t),
                s.connected + s.subscribed, (double)s.p99_ns / 1e3, s.errors,
                s.gaps, s.dups, s.disconnects);
    *prev = cur;
    *prev_t = now;
}

/* Sleeps `secs`, printing progress every second; stops early when done()
 * returns true. */
static int run_for(double secs, double t0, uint64_t *prev, double *prev_t,
                   const char *what, int (*done)(void))
{
    double end = now_s() + secs, next = *prev_t + 1.0;
    for (;;) {
        double n = now_s();
        if (done && done())
            return 1;
        if (n >= end)
            return 0;
        if (n >= next) {
            progress(t0, prev, prev_t, what);
            next = *prev_t + 1.0;
        }
        sleep_s(0.01);
    }
}

static int setup_done(void)
{
    sums s;
    unsigned want_subs = 0, want_pubs = 0;
    sum_threads(&s);
    for (int i = 0; i < cfg.threads; i++) {
        want_subs += (unsigned)g_th[i].n_subs;
        want_pubs += (unsigned)g_th[i].n_pubs;
    }
    return s.subscribed + s.sub_failed >= want_subs &&
           s.connected >= want_pubs;
}

/* Publishing has stopped: every publication is answered and every
 * acknowledged one has reached all subscribers of its channel. */
static int drained(void)
{
    sums s;
    sum_threads(&s);
    return s.inflight == 0 &&
           s.deliveries_total + s.lost >= s.acked_total * cfg.subs;
}

static unsigned g_awaiting;
static int all_recovered(void)
{
    sums s;
    sum_threads(&s);
    return s.resubscribed >= g_awaiting;
}

/* --- Reports ----------------------------------------------------------- */

typedef struct srv_sample {
    procstat a, b;
    int ok_a, ok_b;
    pid_t pid_a, pid_b;          /* the process sampled */
} srv_sample;

/* Server i's pid now: its --server-pid, or what its --server-pidfile
 * says (0 when unreadable). */
static pid_t server_pid(int i)
{
    FILE *f;
    long pid = 0;
    if (!cfg.server_pidfiles[i])
        return cfg.servers[i];
    if ((f = fopen(cfg.server_pidfiles[i], "r")) != NULL) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)pid;
}

/* Server i's name in reports: its label, else "server<i>". */
static const char *server_label(int i, char *buf, size_t n)
{
    if (cfg.server_labels[i])
        return cfg.server_labels[i];
    snprintf(buf, n, "server%d", i);
    return buf;
}

static void lat_table(const char *name, const hist *h)
{
    printf("  %-22s p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f us"
           " (n=%" PRIu64 ")\n",
           name, hist_percentile(h, 50) / 1e3, hist_percentile(h, 90) / 1e3,
           hist_percentile(h, 99) / 1e3, hist_percentile(h, 99.9) / 1e3,
           (double)h->max / 1e3, h->count);
}

static void lat_json(jw *w, const char *key, const hist *h)
{
    jw_key(w, key);
    jw_obj_begin(w);
    jw_ku64(w, "count", h->count);
    jw_kdbl(w, "p50_us", hist_percentile(h, 50) / 1e3);
    jw_kdbl(w, "p90_us", hist_percentile(h, 90) / 1e3);
    jw_kdbl(w, "p99_us", hist_percentile(h, 99) / 1e3);
    jw_kdbl(w, "p999_us", hist_percentile(h, 99.9) / 1e3);
    jw_kdbl(w, "max_us", (double)h->max / 1e3);
    jw_kdbl(w, "min_us", h->count ? (double)h->min / 1e3 : 0);
    jw_kdbl(w, "mean_us", hist_mean(h) / 1e3);
    /* The distribution: [upper bound in us, count] of every non-empty
     * bucket, in increasing order (plots of the latency distribution). */
    jw_key(w, "buckets");
    jw_arr_begin(w);
    for (uint32_t i = 0; i < HIST_BUCKETS && h->count; i++) {
        if (!h->b[i])
            continue;
        jw_arr_begin(w);
        jw_dbl(w, (double)hist_bucket_high(i) / 1e3);
        jw_u64(w, h->b[i]);
        jw_arr_end(w);
    }
    jw_arr_end(w);
    jw_obj_end(w);
}

/* The progress lines of the run: throughput over time. */
static void timeline_json(jw *w)
{
    jw_key(w, "timeline");
    jw_arr_begin(w);
    for (size_t i = 0; i < g_n_timeline; i++) {
        const tl_sample *t = &g_timeline[i];
        jw_obj_begin(w);
        jw_kdbl(w, "t_s", t->t);
        jw_kstr(w, "phase", t->phase);
        jw_kdbl(w, "rate", t->rate);
        jw_kdbl(w, "p99_us", t->p99_us);
        jw_ku64(w, "conns", t->conns);
        jw_ku64(w, "errors", t->errors);
        jw_obj_end(w);
    }
    jw_arr_end(w);
}

/* The scenario options of the report's `parameters`: which scenarios
 * (bits of enum scenario) have the key, and the value (unsigned or
 * double). */
#define P_F (1u << SC_FANOUT)
#define P_C (1u << SC_CONNECTIONS)
#define P_R (1u << SC_RECONNECT)
#define P_Q (1u << SC_REQUEST)
#define P_H (1u << SC_CHURN)
#define P_A (1u << SC_API)
static const struct scenario_param {
    unsigned scenarios;
    const char *key;
    const unsigned *u;
    const double *d;
} scenario_params[] = {
    { P_F | P_R | P_H | P_A, "channels", &cfg.channels, NULL },
    { P_F | P_A, "subs_per_channel", &cfg.subs, NULL },
    { P_F | P_H, "publishers", &cfg.pubs, NULL },
    { P_Q, "clients", &cfg.pubs, NULL },
    { P_A, "api_conns", &cfg.pubs, NULL },
    { P_C | P_R | P_H, "count", &cfg.count, NULL },
    { P_F | P_C | P_R | P_Q | P_H | P_A, "rate", NULL, &cfg.rate },
    { P_F | P_R | P_Q | P_H | P_A, "size", &cfg.size, NULL },
    { P_F | P_Q | P_A, "window", &cfg.window, NULL },
    { P_F | P_A, "in_flight", &cfg.in_flight, NULL },
    { P_C, "procs", &cfg.procs, NULL },
    { P_C, "conns_per_addr", &cfg.conns_per_addr, NULL },
    { P_R, "drop_after_s", NULL, &cfg.drop_after },
    { P_R | P_H, "backoff_ms", &cfg.backoff_ms, NULL },
    { P_H, "per_client", &cfg.per_client, NULL },
    { P_H, "lifetime_s", NULL, &cfg.lifetime },
    { P_H, "resub_s", NULL, &cfg.resub_every },
    { P_H, "offline_s", NULL, &cfg.offline },
    { P_H, "long_offline_s", NULL, &cfg.long_offline },
    { P_H, "long_share", NULL, &cfg.long_share },
    { P_H, "drain_timeout_s", NULL, &cfg.drain_timeout },
};

static void params_json(jw *w)
{
    jw_key(w, "parameters");
    jw_obj_begin(w);
    jw_kstr(w, "target", cfg.target);
    jw_kstr(w, "url", cfg.url);
    if (cfg.n_urls > 1) {
        jw_key(w, "urls");
        jw_arr_begin(w);
        for (int u = 0; u < cfg.n_urls; u++)
            jw_str(w, cfg.urls[u]);
        jw_arr_end(w);
    }
    jw_kstr(w, "encoding", cfg.enc == HC_MSGPACK ? "msgpack" : "json");
    jw_kdbl(w, "duration_s", cfg.duration);
    jw_kdbl(w, "warmup_s", cfg.warmup);
    jw_ku64(w, "threads", (uint64_t)cfg.threads);
    if (cfg.sc == SC_FANOUT || (cfg.sc == SC_API && cfg.subs))
        jw_kstr(w, "sub_transport", cfg.drv ? cfg.drv->name
                                            : sub_kind_names[cfg.sub_kind]);
    if (cfg.sc == SC_API) {
        jw_kstr(w, "api_url", cfg.api_url);
        jw_kstr(w, "http_client", apipub_client_version());
    }
    for (size_t i = 0; i < sizeof(scenario_params) / sizeof(*scenario_params);
         i++) {
        const struct scenario_param *sp = &scenario_params[i];
        if (!(sp->scenarios >> cfg.sc & 1u))
            continue;
        if (sp->u)
            jw_ku64(w, sp->key, *sp->u);
        else
            jw_kdbl(w, sp->key, *sp->d);
    }
    jw_kstr(w, "channel_prefix", cfg.channel_prefix);
    if (cfg.n_prefixes > 1) {
        jw_key(w, "channel_prefixes");
        jw_arr_begin(w);
        for (int i = 0; i < cfg.n_prefixes; i++)
            jw_str(w, cfg.prefixes[i]);
        jw_arr_end(w);
    }
    jw_obj_end(w);
}

/* Bench's own CPU and per-server figures. `per` is the count the server
 * CPU is divided by (deliveries, requests or connections). */
static void resources(jw *w, const procstat *self_a, const procstat *self_b,
                      uint64_t self_cpu_extra, double wall,
                      const srv_sample *srv, uint64_t per,
                      const char *per_name, uint64_t conns,
                      const procstat *srv_base)
{
    uint64_t cpu = self_b->cpu_ns - self_a->cpu_ns + self_cpu_extra;
    printf("  bench cpu              %.2f s (%.0f%% of one core)\n",
           (double)cpu / 1e9, wall > 0 ? 100.0 * (double)cpu / 1e9 / wall : 0);
    jw_key(w, "bench");
    jw_obj_begin(w);
    jw_kdbl(w, "cpu_s", (double)cpu / 1e9);
    jw_kdbl(w, "cpu_util", wall > 0 ? (double)cpu / 1e9 / wall : 0);
    jw_ku64(w, "rss_bytes", self_b->rss_bytes);
    jw_obj_end(w);
    jw_key(w, "servers");
    jw_arr_begin(w);
    for (int i = 0; i < cfg.n_servers; i++) {
        const srv_sample *s = &srv[i];
        pid_t pid = s->pid_b ? s->pid_b : cfg.servers[i];
        jw_obj_begin(w);
        jw_ki64(w, "pid", (int64_t)pid);
        if (cfg.server_labels[i])
            jw_kstr(w, "label", cfg.server_labels[i]);
        if (!s->ok_a || !s->ok_b) {
            jw_kbool(w, "ok", 0);
            jw_obj_end(w);
            printf("  server %-6d          (could not be sampled%s)\n",
                   (int)pid, s->pid_a != s->pid_b ? ": restarted" : "");
            continue;
        }
        uint64_t scpu = s->b.cpu_ns - s->a.cpu_ns;
        jw_kbool(w, "ok", 1);
        jw_kdbl(w, "cpu_s", (double)scpu / 1e9);
        jw_kdbl(w, "cpu_util", wall > 0 ? (double)scpu / 1e9 / wall : 0);
        jw_key(w, per_name);
        if (per)
            jw_dbl(w, (double)scpu / (double)per);
        else
            jw_null(w);
        jw_ku64(w, "rss_bytes", s->b.rss_bytes);
        jw_ku64(w, "pss_bytes", s->b.pss_bytes);
        jw_ku64(w, "threads", s->b.threads);
        printf("  server %-6d          cpu %.2f s (%.0f%%), %s %.0f, rss %.1f MiB,"
               " pss %.1f MiB\n",
               (int)pid, (double)scpu / 1e9,
               wall > 0 ? 100.0 * (double)scpu / 1e9 / wall : 0, per_name,
               per ? (double)scpu / (double)per : 0.0,
               (double)s->b.rss_bytes / 1048576.0,
               (double)s->b.pss_bytes / 1048576.0);
        if (srv_base) {
            jw_ku64(w, "rss_before_bytes", srv_base[i].rss_bytes);
            jw_ku64(w, "pss_before_bytes", srv_base[i].pss_bytes);
        }
        jw_obj_end(w);
    }
    jw_arr_end(w);
    if (srv_base && conns) {
        uint64_t rss = 0, pss = 0, rss0 = 0, pss0 = 0;
        for (int i = 0; i < cfg.n_servers; i++) {
            rss += srv[i].b.rss_bytes;
            pss += srv[i].b.pss_bytes;
            rss0 += srv_base[i].rss_bytes;
            pss0 += srv_base[i].pss_bytes;
        }
        if (cfg.n_servers) {
            double rpc = rss > rss0 ? (double)(rss - rss0) / (double)conns : 0;
            double ppc = pss > pss0 ? (double)(pss - pss0) / (double)conns : 0;
            jw_kdbl(w, "server_rss_per_conn_bytes", rpc);
            jw_kdbl(w, "server_pss_per_conn_bytes", ppc);
            jw_kdbl(w, "server_rss_total_per_conn_bytes",
                    (double)rss / (double)conns);
            printf("  server memory / conn   rss %.0f B, pss %.0f B"
                   " (growth over the idle server)\n", rpc, ppc);
        }
    }
}

static void header_json(jw *w, double wall)
{
    jw_obj_begin(w);
    jw_kstr(w, "scenario", scenario_names[cfg.sc]);
    jw_kstr(w, "target", cfg.target);
    jw_kstr(w, "command", g_cmdline);
    jw_ki64(w, "time", (int64_t)time(NULL));
    params_json(w);
    jw_kdbl(w, "duration_s", wall);
    timeline_json(w);
}

/* Ends the report begun by header_json and writes it to --json, if
 * given. 0, or 2 when it cannot be written. */
static int report_end(jw *w)
{
    int rc = 0;
    jw_obj_end(w);
    if (cfg.json && jw_save(w, cfg.json) < 0) {
        fprintf(stderr, "herald-bench: cannot write %s\n", cfg.json);
        rc = 2;
    }
    jw_free(w);
    return rc;
}

static void sample_servers(srv_sample *srv, int second)
{
    for (int i = 0; i < cfg.n_servers; i++) {
        pid_t pid = server_pid(i);
        if (second) {
            srv[i].pid_b = pid;
            /* A restarted process (pidfile): its CPU is not comparable. */
            srv[i].ok_b = pid > 0 && procstat_read(pid, &srv[i].b) == 0 &&
                          pid == srv[i].pid_a;
        } else {
            srv[i].pid_a = pid;
            srv[i].ok_a = pid > 0 && procstat_read(pid, &srv[i].a) == 0;
        }
    }
}

/* The measured window's two ends: the bench's own CPU and every server's
 * sampled at each (resources()). Returns the time of that end. */
static double window_edge(srv_sample *srv, procstat *self, int second)
{
    procstat_read(0, self);
    sample_servers(srv, second);
    return now_s();
}

/* Several URLs: each URL's share (its clients, their deliveries and
 * latency), on the human table and as the report's `per_url`. Called after
 * the threads have stopped. */
static void per_url_report(jw *w, double wall)
{
    jw_key(w, "per_url");
    jw_arr_begin(w);
    for (int u = 0; u < cfg.n_urls; u++) {
        uint64_t subs = 0, pubs = 0, d = 0, dt = 0;
        hist *h = malloc(sizeof(*h));
        if (!h)
            abort();
        hist_reset(h);
        for (int i = 0; i < cfg.threads; i++) {
            bthread *th = &g_th[i];
            for (size_t k = 0; k < th->n_subs; k++)
                subs += th->subs[k].url == u;
            for (size_t k = 0; k < th->n_pubs; k++)
                pubs += th->pubs[k].url == (uint32_t)u;
            d += th->url_deliveries[u];
            dt += th->url_deliveries_total[u];
            hist_merge(h, &th->url_lat[u]);
        }
        printf("  url %-2d %s: %" PRIu64 " subscribers, %" PRIu64
               " publishers, %.0f deliveries/s\n",
               u, cfg.urls[u], subs, pubs, wall > 0 ? (double)d / wall : 0);
        lat_table(cfg.sc == SC_REQUEST ? "  publish round trip"
                                       : "  publish-to-delivery", h);
        jw_obj_begin(w);
        jw_kstr(w, "url", cfg.urls[u]);
        jw_ku64(w, "subscribers", subs);
        jw_ku64(w, "publishers", pubs);
        jw_ku64(w, "deliveries", d);
        jw_ku64(w, "deliveries_total", dt);
        jw_kdbl(w, "deliveries_per_s", wall > 0 ? (double)d / wall : 0);
        lat_json(w, "latency", h);
        jw_obj_end(w);
        free(h);
    }
    jw_arr_end(w);
}

/* --- fanout / reconnect / request --------------------------------------- */

/* The run's part of the channel names (P<run>.<i>): random, so that runs
 * against one server do not share channels, unless --run-id fixes it for
 * subscribers outside the bench (bench/sdk.sh: the JavaScript SDK's
 * clients on the channels the bench publishes to). */
static unsigned bench_run_id(void)
{
    if (cfg.run_id >= 0)
        return (unsigned)cfg.run_id;
    return (unsigned)(getpid() ^ (unsigned)time(NULL)) & 0xffffff;
}

static int run_streams(void)
{
    unsigned n_subs, n_pubs, chans = cfg.channels;
    unsigned run_id = bench_run_id();
    double t0 = now_s(), prev_t = t0, t_meas, wall, recovery_s = -1;
    uint64_t prev = 0, drop_ns = 0;
    procstat self_a, self_b;
    srv_sample srv[MAX_SERVERS];
    hist lat, ack;
    sums s;
    int rc = 0;

    memset(srv, 0, sizeof(srv));
    if (cfg.sc == SC_REQUEST) {
        chans = cfg.pubs;            /* one channel per client */
        cfg.subs = 0;
    }
    n_subs = chans * cfg.subs;
    n_pubs = cfg.pubs;
    g_chans = calloc(chans, sizeof(*g_chans));
    for (unsigned i = 0; i < chans; i++)
        snprintf(g_chans[i].name, sizeof(g_chans[i].name), "%s%06x.%u",
                 cfg.prefixes[i % (unsigned)cfg.n_prefixes], run_id, i);
    /* Per thread at most n / threads + 1 from each URL (see below). */
    size_t cap_subs = n_subs / (unsigned)cfg.threads + (unsigned)cfg.n_urls;
    size_t cap_pubs = n_pubs / (unsigned)cfg.threads + (unsigned)cfg.n_urls;
    unsigned url_subs[MAX_URLS] = { 0 }, url_pubs[MAX_URLS] = { 0 };
    g_th = calloc((size_t)cfg.threads, sizeof(*g_th));
    for (int i = 0; i < cfg.threads; i++) {
        bthread *th = &g_th[i];
        th->idx = i;
        th->subs = calloc(cap_subs, sizeof(bsub));
        th->pubs = calloc(cap_pubs, sizeof(bpub));
        th->ramp_rate = cfg.connect_rate / cfg.threads;
        th->conn_base = (size_t)i * cap_subs;
        hist_reset(&th->lat);
        hist_reset(&th->ack);
        if (cfg.n_urls > 1) {
            size_t n = (size_t)cfg.n_urls;
            th->url_deliveries = calloc(n, sizeof(uint64_t));
            th->url_deliveries_total = calloc(n, sizeof(uint64_t));
            th->url_lat = calloc(n, sizeof(hist));
            if (!th->url_deliveries || !th->url_deliveries_total ||
                !th->url_lat)
                abort();
            for (size_t u = 0; u < n; u++)
                hist_reset(&th->url_lat[u]);
        }
    }
    /* Subscriber k is subscriber j = k / C of channel c = k % C and goes to
     * URL u = (c + j) % urls: every channel has subscribers on every URL
     * (round-robin), whatever C. The i-th subscriber of URL u goes to thread
     * (i + u) % threads, so that each URL's subscribers are spread over
     * every thread and the per-URL figures are not one thread's (one URL:
     * thread k % threads). The last subscriber of a channel on each URL
     * (the last `urls` of the channel) is a sentinel: a closed-loop
     * publisher waits for the slowest. Publisher p: URL p % urls, thread
     * likewise round-robin per URL. */
    for (unsigned k = 0; k < n_subs; k++) {
        unsigned j = k / chans, c = k % chans;
        unsigned u = (c + j) % (unsigned)cfg.n_urls;
        bthread *th = &g_th[(url_subs[u]++ + u) % (unsigned)cfg.threads];
        bsub *sb = &th->subs[th->n_subs++];
        sb->th = th;
        sb->chan = c;
        sb->url = (uint8_t)u;
        sb->sentinel = j + (unsigned)cfg.n_urls >= cfg.subs;
        if (sb->sentinel)
            g_chans[sb->chan].sentinel_urls |= 1u << sb->url;
    }
    for (unsigned p = 0; p < n_pubs; p++) {
        unsigned u = p % (unsigned)cfg.n_urls;
        bthread *th = &g_th[(url_pubs[u]++ + u) % (unsigned)cfg.threads];
        bpub *pb = &th->pubs[th->n_pubs++];
        pb->th = th;
        pb->id = p;
        pb->chan = p % chans;
        pb->url = u;
        g_chans[pb->chan].n_pubs++;
    }

    ST(g_phase, PH_SETUP);
    for (int i = 0; i < cfg.threads; i++)
        pthread_create(&g_th[i].tid, NULL, thread_main, &g_th[i]);

    if (!run_for(cfg.setup_timeout, t0, &prev, &prev_t, "setup",
                 setup_done)) {
        fprintf(stderr, "herald-bench: setup did not complete in %.0f s\n",
                cfg.setup_timeout);
        rc = 2;
    }
    sum_threads(&s);
    if (s.sub_failed) {
        fprintf(stderr, "herald-bench: %" PRIu64 " subscribes failed\n",
                s.sub_failed);
        rc = 2;
    }
    if (rc == 0) {
        ST(g_phase, PH_WARMUP);
        run_for(cfg.warmup, t0, &prev, &prev_t, "warmup", NULL);
        t_meas = window_edge(srv, &self_a, 0);
        ST(g_phase, PH_MEASURE);
        if (cfg.sc == SC_RECONNECT) {
            run_for(cfg.drop_after, t0, &prev, &prev_t, "measure", NULL);
            sum_threads(&s);
            g_awaiting = (unsigned)(s.resubscribed + n_subs);
            drop_ns = stamp_now_ns();
            ST(g_drop_gen, 1);
            if (run_for(cfg.duration - cfg.drop_after, t0, &prev, &prev_t,
                        "recover", all_recovered)) {
                sum_threads(&s);
                recovery_s = (double)(s.last_recover_ns - drop_ns) / 1e9;
                if (!cfg.quiet)
                    fprintf(stderr, "all %u recovered in %.3f s\n", n_subs,
                            recovery_s);
            }
            double left = cfg.duration - (now_s() - t_meas);
            run_for(left, t0, &prev, &prev_t, "measure", NULL);
        } else {
            run_for(cfg.duration, t0, &prev, &prev_t, "measure", NULL);
        }
        ST(g_phase, PH_DRAIN);
        wall = window_edge(srv, &self_b, 1) - t_meas;
        /* Recovery slower than the run: keep waiting (publishing has
         * stopped), so that the report still says how long it took. */
        if (cfg.sc == SC_RECONNECT && recovery_s < 0 &&
            run_for(cfg.setup_timeout, t0, &prev, &prev_t, "recover",
                    all_recovered)) {
            sum_threads(&s);
            recovery_s = (double)(s.last_recover_ns - drop_ns) / 1e9;
        }
        /* Every scenario waits for the publications in flight, request
         * too: closing the clients fails what is still in flight with
         * "client closed", which the report would count as failed
         * publishes (seen in request runs across two cluster nodes). */
        run_for(5.0, t0, &prev, &prev_t, "drain", drained);
    } else {
        wall = 0;
        procstat_read(0, &self_a);
        self_b = self_a;
    }
    ST(g_phase, PH_STOP);
    for (int i = 0; i < cfg.threads; i++)
        pthread_join(g_th[i].tid, NULL);

    sum_threads(&s);
    uint64_t expected = s.acked_total * cfg.subs;
    hist_reset(&lat);
    hist_reset(&ack);
    for (int i = 0; i < cfg.threads; i++) {
        hist_merge(&lat, &g_th[i].lat);
        hist_merge(&ack, &g_th[i].ack);
    }

    /* Human table. */
    double dps = wall > 0 ? (double)s.deliveries / wall : 0;
    double aps = wall > 0 ? (double)s.acked / wall : 0;
    printf("herald-bench %s: %s\n", scenario_names[cfg.sc], g_cmdline);
    printf("  target                 %s\n", cfg.target);
    printf("  measured               %.2f s\n", wall);
    if (cfg.sc != SC_REQUEST && cfg.sc != SC_API) {
        printf("  subscribers            %u (%u channels x %u)\n", n_subs,
               chans, cfg.subs);
        printf("  publications/s         %.0f (acked %" PRIu64 " in window,"
               " %" PRIu64 " in all)\n", aps, s.acked, s.acked_total);
        printf("  deliveries/s           %.0f (%" PRIu64 " in window, %" PRIu64
               " in all, expected %" PRIu64 ")\n",
               dps, s.deliveries, s.deliveries_total, expected);
        lat_table("publish-to-delivery", &lat);
        lat_table("publish ack", &ack);
    } else if (cfg.sc == SC_API) {
        printf("  api                    %u connections to %s\n", cfg.pubs,
               cfg.api_url);
        printf("  requests/s             %.0f (%" PRIu64 ")\n", aps, s.acked);
        lat_table("publish round trip", &ack);
        if (cfg.subs) {
            printf("  subscribers            %u (%u channels x %u)\n", n_subs,
                   chans, cfg.subs);
            printf("  deliveries/s           %.0f (%" PRIu64 " in window, %"
                   PRIu64 " in all, expected %" PRIu64 ")\n", dps,
                   s.deliveries, s.deliveries_total, expected);
            lat_table("publish-to-delivery", &lat);
        }
    } else {
        printf("  requests/s             %.0f (%" PRIu64 ")\n", aps, s.acked);
        lat_table("publish round trip", &lat);
    }
    printf("  gaps %" PRIu64 ", duplicates %" PRIu64 ", lost (recovered:false) %"
           PRIu64 ", errors %" PRIu64 ", failed publishes %" PRIu64
           ", disconnects %" PRIu64 "\n",
           s.gaps, s.dups, s.lost, s.errors, s.failed_pubs, s.disconnects);
    if (cfg.sc == SC_RECONNECT)
        printf("  reconnect              %u dropped, %" PRIu64 " resubscribed"
               " (recovered true %" PRIu64 ", false %" PRIu64 "), all in %s%.3f s\n",
               n_subs, s.resubscribed, s.recovered_true, s.recovered_false,
               recovery_s < 0 ? "(not all) " : "",
               recovery_s < 0 ? cfg.duration - cfg.drop_after : recovery_s);

    jw w;
    jw_init(&w);
    header_json(&w, wall);
    if (cfg.sc == SC_API) {
        /* request's keys (latency = the round trip), and the deliveries
         * when there are subscribers */
        jw_ku64(&w, "requests", s.acked);
        jw_ku64(&w, "requests_total", s.acked_total);
        jw_kdbl(&w, "requests_per_s", aps);
        lat_json(&w, "latency", &ack);
        jw_ku64(&w, "subscribers", n_subs);
        jw_ku64(&w, "deliveries", s.deliveries);
        jw_ku64(&w, "deliveries_total", s.deliveries_total);
        jw_ku64(&w, "expected_deliveries", expected);
        jw_kdbl(&w, "deliveries_per_s", dps);
        lat_json(&w, "delivery_latency", &lat);
    } else if (cfg.sc != SC_REQUEST) {
        jw_ku64(&w, "subscribers", n_subs);
        jw_ku64(&w, "publications", s.acked);
        jw_ku64(&w, "publications_total", s.acked_total);
        jw_kdbl(&w, "publications_per_s", aps);
        jw_ku64(&w, "deliveries", s.deliveries);
        jw_ku64(&w, "deliveries_total", s.deliveries_total);
        jw_ku64(&w, "expected_deliveries", expected);
        jw_kdbl(&w, "deliveries_per_s", dps);
        lat_json(&w, "latency", &lat);
        lat_json(&w, "ack_latency", &ack);
    } else {
        jw_ku64(&w, "requests", s.acked);
        jw_ku64(&w, "requests_total", s.acked_total);
        jw_kdbl(&w, "requests_per_s", aps);
        lat_json(&w, "latency", &lat);
    }
    jw_ku64(&w, "gaps", s.gaps);
    jw_ku64(&w, "duplicates", s.dups);
    jw_ku64(&w, "lost", s.lost);
    jw_ku64(&w, "errors", s.errors);
    jw_ku64(&w, "failed_publishes", s.failed_pubs);
    jw_ku64(&w, "uncertain_publishes", s.uncertain);
    jw_ku64(&w, "disconnects", s.disconnects);
    if (cfg.n_urls > 1)
        per_url_report(&w, wall);
    if (cfg.sc == SC_RECONNECT) {
        jw_key(&w, "reconnect");
        jw_obj_begin(&w);
        jw_ku64(&w, "dropped", n_subs);
        jw_ku64(&w, "resubscribed", s.resubscribed);
        jw_ku64(&w, "recovered_true", s.recovered_true);
        jw_ku64(&w, "recovered_false", s.recovered_false);
        jw_kbool(&w, "all_recovered", recovery_s >= 0);
        jw_key(&w, "recovery_s");
        if (recovery_s >= 0)
            jw_dbl(&w, recovery_s);
        else
            jw_null(&w);
        jw_obj_end(&w);
    }
    int per_req = cfg.sc == SC_REQUEST || cfg.sc == SC_API;
    resources(&w, &self_a, &self_b, 0, wall, srv,
              per_req ? s.acked : s.deliveries,
              per_req ? "ns_per_request" : "ns_per_delivery", 0, NULL);
    if (report_end(&w))
        rc = 2;

    if (rc == 0 && (s.gaps || s.dups)) {
        fprintf(stderr, "herald-bench: FAILED: %" PRIu64 " gaps, %" PRIu64
                " duplicates\n", s.gaps, s.dups);
        rc = 1;
    }
    if (rc == 0 && cfg.subs && s.deliveries == 0) {
        fprintf(stderr, "herald-bench: FAILED: no deliveries\n");
        rc = 1;
    }
    if (rc == 0 && per_req && s.acked == 0) {
        fprintf(stderr, "herald-bench: FAILED: no acknowledged requests\n");
        rc = 1;
    }
    if (rc == 0 && cfg.sc == SC_RECONNECT && recovery_s < 0) {
        fprintf(stderr, "herald-bench: FAILED: not every client resubscribed\n");
        rc = 1;
    }
    for (int i = 0; i < cfg.threads; i++) {
        for (size_t k = 0; k < g_th[i].n_subs; k++)
            free(g_th[i].subs[k].trs);
        free(g_th[i].subs);
        free(g_th[i].pubs);
        free(g_th[i].url_deliveries);
        free(g_th[i].url_deliveries_total);
        free(g_th[i].url_lat);
    }
    free(g_th);
    free(g_chans);
    return rc;
}

/* --- churn ------------------------------------------------------------------ */

static FILE *g_samples;

/* The --samples CSV's header: the run's figures, then per server its pid,
 * RSS and CPU time (columns named by the server's label). */
static void samples_header(void)
{
    char b[32];
    fprintf(g_samples, "unix_s,t_s,phase,clients,subscriptions,"
            "deliveries_per_s,acks_per_s,gaps,duplicates,false_recoveries,"
            "lost,recovered_false,resets_4003,resets_4001,closes_4000,"
            "closes_other,sub_refused,failed_pubs,uncertain_pubs,inflight,"
            "errors,stalled_subscribes,oldest_pending_s");
    for (int i = 0; i < cfg.n_servers; i++) {
        const char *l = server_label(i, b, sizeof(b));
        fprintf(g_samples, ",%s_pid,%s_rss_mib,%s_cpu_s", l, l, l);
    }
    fputc('\n', g_samples);
    fflush(g_samples);
}

/* One row a second (from progress()): rates over the last dt seconds,
 * counters so far, and each server's RSS and CPU time read now. */
static void samples_row(const sums *s, double t, const char *phase,
                        double dt)
{
    static uint64_t prev_d, prev_a;
    struct timespec ts;
    procstat ps;

    if (!g_samples)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(g_samples, "%.3f,%.1f,%s,%" PRIu64 ",%" PRIu64 ",%.0f,%.0f,%"
            PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%"
            PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%"
            PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.1f",
            (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, t, phase, s->live,
            s->active_slots,
            dt > 0 ? (double)(s->deliveries_total - prev_d) / dt : 0,
            dt > 0 ? (double)(s->acked_total - prev_a) / dt : 0, s->gaps,
            s->dups + s->client_dups, s->false_recoveries, s->lost,
            s->recovered_false, s->resets_4003, s->resets_4001,
            s->closes_4000, s->closes_other, s->sub_refused, s->failed_pubs,
            s->uncertain, s->inflight, s->errors, s->stalled,
            (double)s->stalled_max_ms / 1e3);
    prev_d = s->deliveries_total;
    prev_a = s->acked_total;
    for (int i = 0; i < cfg.n_servers; i++) {
        pid_t pid = server_pid(i);
        if (pid > 0 && procstat_read(pid, &ps) == 0)
            fprintf(g_samples, ",%d,%.2f,%.2f", (int)pid,
                    (double)ps.rss_bytes / 1048576.0,
                    (double)ps.cpu_ns / 1e9);
        else
            fprintf(g_samples, ",%d,,", (int)pid);
    }
    fputc('\n', g_samples);
    fflush(g_samples);
}

static unsigned g_witnesses;
static uint64_t g_drain_ns;

static int churn_setup_done(void)
{
    sums s;
    sum_threads(&s);
    return s.ready >= g_witnesses && s.connected >= cfg.pubs;
}

/* Publishing has stopped: every publication is answered, and every
 * thread has checked its witnesses since (so against the final
 * acknowledged offsets), finding none behind. */
static int churn_drained(void)
{
    static uint64_t quiet_ns;    /* since when nothing is in flight */
    sums s;
    sum_threads(&s);
    if (s.inflight) {
        quiet_ns = 0;
        return 0;
    }
    if (!quiet_ns)
        quiet_ns = stamp_now_ns();
    for (int i = 0; i < cfg.threads; i++)
        if (__atomic_load_n(&g_th[i].witness_checked_ns, __ATOMIC_ACQUIRE) <
            quiet_ns)
            return 0;
    sum_threads(&s);
    return s.witness_behind == 0;
}

static int run_churn(void)
{
    unsigned chans = cfg.channels, n_urls = (unsigned)cfg.n_urls;
    unsigned run_id = bench_run_id();
    unsigned n_churn, per_th, k = 0;
    double t0 = now_s(), prev_t = t0, t_meas, wall = 0, drain_s = -1;
    uint64_t prev = 0, rng = stamp_now_ns() | 1;
    procstat self_a, self_b;
    srv_sample srv[MAX_SERVERS];
    hist lat, ack;
    sums s;
    int rc = 0, drained = 0;

    memset(srv, 0, sizeof(srv));
    if (cfg.samples) {
        if (!(g_samples = fopen(cfg.samples, "w"))) {
            fprintf(stderr, "herald-bench: cannot write %s\n", cfg.samples);
            return 2;
        }
        samples_header();
    }
    g_chans = calloc(chans, sizeof(*g_chans));
    for (unsigned i = 0; i < chans; i++)
        snprintf(g_chans[i].name, sizeof(g_chans[i].name), "%s%06x.%u",
                 cfg.prefixes[i % (unsigned)cfg.n_prefixes], run_id, i);
    g_witnesses = chans * n_urls;
    n_churn = g_witnesses + cfg.count;
    per_th = n_churn / (unsigned)cfg.threads + 1;
    g_th = calloc((size_t)cfg.threads, sizeof(*g_th));
    for (int i = 0; i < cfg.threads; i++) {
        bthread *th = &g_th[i];
        th->idx = i;
        th->churn = calloc(per_th, sizeof(bchurn));
        th->pubs = calloc(cfg.pubs / (unsigned)cfg.threads + 1, sizeof(bpub));
        th->ramp_rate = cfg.connect_rate / cfg.threads;
        th->rng = (stamp_now_ns() ^ (0x9e3779b97f4a7c15ull * (uint64_t)(i + 1)))
                  | 1;
        hist_reset(&th->lat);
        hist_reset(&th->ack);
    }
    /* Witnesses first (in every thread's array), round-robin over the
     * threads: channel c's witness on URL u; then the churning clients,
     * each with per_client distinct channels drawn at random. */
    for (unsigned i = 0; i < n_churn; i++) {
        bthread *th = &g_th[i % (unsigned)cfg.threads];
        bchurn *ch = &th->churn[th->n_churn++];
        ch->th = th;
        if (i < g_witnesses) {
            ch->witness = 1;
            ch->n_slots = 1;
            ch->slots[0].chan = i / n_urls;
            ch->url = (uint8_t)(i % n_urls);
            continue;
        }
        ch->n_slots = (uint8_t)cfg.per_client;
        for (unsigned j = 0; j < cfg.per_client; j++) {
            uint32_t c;
            unsigned x;
            do {
                rng ^= rng >> 12;
                rng ^= rng << 25;
                rng ^= rng >> 27;
                c = (uint32_t)((rng * 2685821657736338717ull >> 16) % chans);
                for (x = 0; x < j && ch->slots[x].chan != c; x++)
                    ;
            } while (x < j);
            ch->slots[j].chan = c;
        }
    }
    /* Publisher p: channel p % C, URL p % urls, thread round-robin. */
    for (unsigned p = 0; p < cfg.pubs; p++) {
        bthread *th = &g_th[k++ % (unsigned)cfg.threads];
        bpub *pb = &th->pubs[th->n_pubs++];
        pb->th = th;
        pb->id = p;
        pb->chan = p % chans;
        pb->url = p % n_urls;
        g_chans[pb->chan].n_pubs++;
    }

    ST(g_phase, PH_SETUP);
    for (int i = 0; i < cfg.threads; i++)
        pthread_create(&g_th[i].tid, NULL, thread_main, &g_th[i]);
    if (!run_for(cfg.setup_timeout, t0, &prev, &prev_t, "setup",
                 churn_setup_done)) {
        fprintf(stderr, "herald-bench: setup did not complete in %.0f s "
                "(witnesses subscribed, publishers connected)\n",
                cfg.setup_timeout);
        rc = 2;
    }
    if (rc == 0) {
        ST(g_phase, PH_WARMUP);
        run_for(cfg.warmup, t0, &prev, &prev_t, "warmup", NULL);
        t_meas = window_edge(srv, &self_a, 0);
        ST(g_phase, PH_MEASURE);
        run_for(cfg.duration, t0, &prev, &prev_t, "measure", NULL);
        wall = window_edge(srv, &self_b, 1) - t_meas;
        g_drain_ns = stamp_now_ns();
        ST(g_phase, PH_DRAIN);
        drained = run_for(cfg.drain_timeout, t0, &prev, &prev_t, "drain",
                          churn_drained);
        drain_s = (double)(stamp_now_ns() - g_drain_ns) / 1e9;
        if (!drained)
            fprintf(stderr, "herald-bench: the witnesses did not reach every "
                    "acknowledged publication within %.0f s\n",
                    cfg.drain_timeout);
    } else {
        procstat_read(0, &self_a);
        self_b = self_a;
    }
    ST(g_phase, PH_STOP);
    for (int i = 0; i < cfg.threads; i++)
        pthread_join(g_th[i].tid, NULL);
    if (g_samples)
        fclose(g_samples);
    g_samples = NULL;

    sum_threads(&s);
    hist_reset(&lat);
    hist_reset(&ack);
    for (int i = 0; i < cfg.threads; i++) {
        hist_merge(&lat, &g_th[i].lat);
        hist_merge(&ack, &g_th[i].ack);
    }
    uint64_t dups = s.dups + s.client_dups;
    double dps = wall > 0 ? (double)s.deliveries / wall : 0;
    double aps = wall > 0 ? (double)s.acked / wall : 0;

    printf("herald-bench churn: %s\n", g_cmdline);
    printf("  measured               %.2f s (after %.0f s of warm-up)\n",
           wall, cfg.warmup);
    printf("  clients                %u churning (%u channels each) + %u"
           " witnesses, %u channels, %u publishers x %.0f/s\n", cfg.count,
           cfg.per_client, g_witnesses, chans, cfg.pubs, cfg.rate);
    printf("  churn                  %" PRIu64 " connections opened; ends: %"
           PRIu64 " closed, %" PRIu64 " cut, %" PRIu64 " dropped (library"
           " reconnect)\n", s.opens, s.closes, s.cuts, s.drops);
    printf("  subscriptions          %" PRIu64 " unsubscribes, %" PRIu64
           " subscribes with since, %" PRIu64 " channel switches, %" PRIu64
           " refused (%" PRIu64 " with 108)\n", s.unsubs, s.resubs_since,
           s.switches, s.sub_refused, s.sub_refused_108);
    printf("  publications           %" PRIu64 " acknowledged (%.0f/s in the"
           " window), %" PRIu64 " refused or unanswered (%" PRIu64
           " connection lost)\n", s.acked_total, aps, s.failed_pubs,
           s.uncertain);
    printf("  deliveries             %" PRIu64 " (%.0f/s in the window), %"
           PRIu64 " to witnesses\n", s.deliveries_total, dps,
           s.witness_deliveries);
    lat_table("publish-to-delivery", &lat);
    lat_table("publish ack", &ack);
    printf("  recovery               recovered true %" PRIu64 ", false %"
           PRIu64 " (lost, announced: %" PRIu64 "; new epoch %" PRIu64 ")\n",
           s.recovered_true, s.recovered_false, s.lost, s.epoch_changes);
    printf("  server closes          4003 %" PRIu64 ", 4001 %" PRIu64
           ", 4000 %" PRIu64 ", other %" PRIu64 "\n", s.resets_4003,
           s.resets_4001, s.closes_4000, s.closes_other);
    printf("  witnesses              %s in %.1f s; acknowledged not delivered %"
           PRIu64 ", behind %" PRIu64 " (other epoch or unsubscribed %"
           PRIu64 ")\n", drained ? "caught up" : "NOT caught up", drain_s,
           s.witness_undelivered, s.witness_behind,
           s.witness_epoch_mismatch);
    printf("  subscribes             %" PRIu64 " unanswered for %d s or more"
           " at the end (on open connections); longest wait %.1f s\n",
           s.stalled, CHURN_STALL_S, (double)s.stalled_max_ms / 1e3);
    printf("  gaps %" PRIu64 ", duplicates %" PRIu64 " (dropped by the"
           " client library %" PRIu64 "), misreported recoveries %" PRIu64
           ", regressions %" PRIu64 ", unexpected events %" PRIu64
           ", errors %" PRIu64 "\n", s.gaps, dups, s.client_dups,
           s.false_recoveries, s.regressions, s.unexpected, s.errors);

    jw w;
    jw_init(&w);
    header_json(&w, wall);
    jw_ku64(&w, "clients", cfg.count);
    jw_ku64(&w, "witnesses", g_witnesses);
    jw_ku64(&w, "publications", s.acked);
    jw_ku64(&w, "publications_total", s.acked_total);
    jw_kdbl(&w, "publications_per_s", aps);
    jw_ku64(&w, "failed_publishes", s.failed_pubs);
    jw_ku64(&w, "uncertain_publishes", s.uncertain);
    jw_ku64(&w, "deliveries", s.deliveries);
    jw_ku64(&w, "deliveries_total", s.deliveries_total);
    jw_ku64(&w, "witness_deliveries", s.witness_deliveries);
    jw_kdbl(&w, "deliveries_per_s", dps);
    lat_json(&w, "latency", &lat);
    lat_json(&w, "ack_latency", &ack);
    jw_ku64(&w, "gaps", s.gaps);
    jw_ku64(&w, "duplicates", dups);
    jw_ku64(&w, "duplicates_dropped_by_client", s.client_dups);
    jw_ku64(&w, "false_recoveries", s.false_recoveries);
    jw_ku64(&w, "regressions", s.regressions);
    jw_ku64(&w, "unexpected_events", s.unexpected);
    jw_ku64(&w, "lost", s.lost);
    jw_ku64(&w, "errors", s.errors);
    jw_ku64(&w, "disconnects", s.disconnects);
    jw_key(&w, "recovery");
    jw_obj_begin(&w);
    jw_ku64(&w, "recovered_true", s.recovered_true);
    jw_ku64(&w, "recovered_false", s.recovered_false);
    jw_ku64(&w, "epoch_changes", s.epoch_changes);
    jw_ku64(&w, "library_resubscribes", s.resubscribed);
    jw_obj_end(&w);
    jw_key(&w, "churn");
    jw_obj_begin(&w);
    jw_ku64(&w, "opens", s.opens);
    jw_ku64(&w, "closes", s.closes);
    jw_ku64(&w, "cuts", s.cuts);
    jw_ku64(&w, "drops", s.drops);
    jw_ku64(&w, "unsubscribes", s.unsubs);
    jw_ku64(&w, "subscribes_with_since", s.resubs_since);
    jw_ku64(&w, "switches", s.switches);
    jw_ku64(&w, "subscribes_refused", s.sub_refused);
    jw_ku64(&w, "subscribes_refused_108", s.sub_refused_108);
    jw_ku64(&w, "subscribes_stalled", s.stalled);
    jw_kdbl(&w, "subscribe_longest_wait_s", (double)s.stalled_max_ms / 1e3);
    jw_obj_end(&w);
    jw_key(&w, "server_closes");
    jw_obj_begin(&w);
    jw_ku64(&w, "4003", s.resets_4003);
    jw_ku64(&w, "4001", s.resets_4001);
    jw_ku64(&w, "4000", s.closes_4000);
    jw_ku64(&w, "other", s.closes_other);
    jw_obj_end(&w);
    jw_key(&w, "witness");
    jw_obj_begin(&w);
    jw_kbool(&w, "drained", drained);
    jw_kdbl(&w, "drain_s", drain_s);
    jw_ku64(&w, "undelivered_acked", s.witness_undelivered);
    jw_ku64(&w, "behind", s.witness_behind);
    jw_ku64(&w, "other_epoch_or_unsubscribed", s.witness_epoch_mismatch);
    jw_obj_end(&w);
    resources(&w, &self_a, &self_b, 0, wall, srv, s.deliveries,
              "ns_per_delivery", 0, NULL);
    if (report_end(&w))
        rc = 2;

    if (rc == 0 && (s.gaps || dups || s.false_recoveries || s.regressions ||
                    s.unexpected)) {
        fprintf(stderr, "herald-bench: FAILED: %" PRIu64 " gaps, %" PRIu64
                " duplicates, %" PRIu64 " misreported recoveries, %" PRIu64
                " regressions, %" PRIu64 " unexpected events\n", s.gaps,
                dups, s.false_recoveries, s.regressions, s.unexpected);
        rc = 1;
    }
    if (rc == 0 && !drained) {
        fprintf(stderr, "herald-bench: FAILED: %" PRIu64 " witnesses behind"
                " (%" PRIu64 " acknowledged publications not delivered)\n",
                s.witness_behind, s.witness_undelivered);
        rc = 1;
    }
    if (rc == 0 && s.deliveries == 0) {
        fprintf(stderr, "herald-bench: FAILED: no deliveries\n");
        rc = 1;
    }
    for (int i = 0; i < cfg.threads; i++) {
        free(g_th[i].churn);
        free(g_th[i].pubs);
    }
    free(g_th);
    free(g_chans);
    return rc;
}

/* --- connections --------------------------------------------------------- */

/* What a child process sends to the parent through its pipe: once when its
 * ramp is over (final = 0), once at the end (final = 1). */
typedef struct conn_msg {
    int final;
    uint64_t connected, failures, disconnects, errors;
    double ramp_s;
    uint64_t cpu_ns;
    hist lat;
} conn_msg;

/* Writes (wr) or reads all of p through the pipe: 0, or -1 (closed). */
static int pipe_all(int fd, void *p, size_t n, int wr)
{
    char *c = p;
    while (n) {
        ssize_t k = wr ? write(fd, c, n) : read(fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static unsigned g_conn_want;
static int conns_done(void)
{
    sums s;
    sum_threads(&s);
    return s.connected + s.connect_failures >= g_conn_want;
}

/* One process's share: n connections starting at global index base. */
static int conn_child(int proc, unsigned n, size_t base, int fd)
{
    double t0 = now_s(), prev_t = t0, ramp_s;
    uint64_t prev = 0;
    procstat a, b;
    sums s;
    char what[16];
    conn_msg *m = calloc(1, sizeof(*m));

    procstat_read(0, &a);
    snprintf(what, sizeof(what), "p%d ramp", proc);
    g_th = calloc((size_t)cfg.threads, sizeof(*g_th));
    g_conn_want = n;
    size_t at = base;
    for (int i = 0; i < cfg.threads; i++) {
        bthread *th = &g_th[i];
        size_t k = n / (unsigned)cfg.threads +
                   ((unsigned)i < n % (unsigned)cfg.threads);
        th->idx = i;
        th->n_conns = k;
        th->conns = calloc(k + 1, sizeof(*th->conns));
        th->conn_t0 = calloc(k + 1, sizeof(*th->conn_t0));
        th->conn_base = at;
        at += k;
        th->ramp_rate = cfg.rate / cfg.procs / cfg.threads;
        hist_reset(&th->lat);
    }
    ST(g_phase, PH_MEASURE);
    for (int i = 0; i < cfg.threads; i++)
        pthread_create(&g_th[i].tid, NULL, thread_main, &g_th[i]);
    run_for(cfg.setup_timeout, t0, &prev, &prev_t, what, conns_done);
    ramp_s = now_s() - t0;
    sum_threads(&s);
    m->final = 0;
    m->connected = s.connected;
    m->failures = s.connect_failures;
    m->ramp_s = ramp_s;
    pipe_all(fd, m, sizeof(*m), 1);
    snprintf(what, sizeof(what), "p%d hold", proc);
    run_for(cfg.duration, t0, &prev, &prev_t, what, NULL);
    ST(g_phase, PH_DRAIN);
    sum_threads(&s);
    procstat_read(0, &b);
    ST(g_phase, PH_STOP);
    for (int i = 0; i < cfg.threads; i++)
        pthread_join(g_th[i].tid, NULL);
    m->final = 1;
    m->connected = s.connected;
    m->failures = s.connect_failures;
    m->disconnects = s.disconnects;
    m->errors = s.errors;
    m->ramp_s = ramp_s;
    m->cpu_ns = b.cpu_ns - a.cpu_ns;
    hist_reset(&m->lat);
    for (int i = 0; i < cfg.threads; i++) {
        hist_merge(&m->lat, &g_th[i].lat);
        free(g_th[i].conns);
        free(g_th[i].conn_t0);
    }
    pipe_all(fd, m, sizeof(*m), 1);
    free(g_th);
    free(m);
    return 0;
}

static int run_connections(void)
{
    int fds[64];
    pid_t pids[64];
    unsigned K = cfg.procs;
    procstat base[MAX_SERVERS], self_a, self_b;
    srv_sample srv[MAX_SERVERS];
    conn_msg *m = calloc(1, sizeof(*m));
    uint64_t connected = 0, failures = 0, disconnects = 0, errors = 0,
             child_cpu = 0;
    double ramp_s = 0, t0 = now_s(), wall;
    hist lat;
    int rc = 0;

    memset(srv, 0, sizeof(srv));
    memset(base, 0, sizeof(base));
    for (int i = 0; i < cfg.n_servers; i++) {
        srv[i].pid_a = server_pid(i);
        srv[i].ok_a = procstat_read(srv[i].pid_a, &base[i]) == 0;
    }
    procstat_read(0, &self_a);
    fflush(stdout);
    fflush(stderr);
    size_t at = 0;
    for (unsigned k = 0; k < K; k++) {
        int p[2];
        unsigned n = cfg.count / K + (k < cfg.count % K);
        if (pipe(p) < 0) {
            perror("pipe");
            return 2;
        }
        pids[k] = fork();
        if (pids[k] < 0) {
            perror("fork");
            return 2;
        }
        if (pids[k] == 0) {
            close(p[0]);
            for (unsigned j = 0; j < k; j++)
                close(fds[j]);
            int r = conn_child((int)k, n, at, p[1]);
            close(p[1]);
            fflush(stderr);
            _exit(r);
        }
        close(p[1]);
        fds[k] = p[0];
        at += n;
    }
    /* Ramp results: every child reports when its ramp is over. */
    for (unsigned k = 0; k < K; k++) {
        if (pipe_all(fds[k], m, sizeof(*m), 0) < 0) {
            fprintf(stderr, "herald-bench: process %u died during the ramp\n",
                    k);
            rc = 2;
            continue;
        }
        if (m->ramp_s > ramp_s)
            ramp_s = m->ramp_s;
    }
    /* Every connection is up: sample the servers half-way into the hold. */
    sleep_s(cfg.duration / 2);
    sample_servers(srv, 1);
    for (int i = 0; i < cfg.n_servers; i++)
        srv[i].a = base[i];
    hist_reset(&lat);
    for (unsigned k = 0; k < K; k++) {
        int st;
        if (pipe_all(fds[k], m, sizeof(*m), 0) == 0 && m->final) {
            connected += m->connected;
            failures += m->failures;
            disconnects += m->disconnects;
            errors += m->errors;
            child_cpu += m->cpu_ns;
            hist_merge(&lat, &m->lat);
        } else {
            rc = 2;
        }
        close(fds[k]);
        waitpid(pids[k], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = 2;
    }
    procstat_read(0, &self_b);
    wall = now_s() - t0;

    double cps = ramp_s > 0 ? (double)connected / ramp_s : 0;
    printf("herald-bench connections: %s\n", g_cmdline);
    printf("  target                 %s\n", cfg.target);
    for (int u = 0; cfg.n_urls > 1 && u < cfg.n_urls; u++)
        printf("  url %-2d %s: %u clients\n", u, cfg.urls[u],
               cfg.count / (unsigned)cfg.n_urls +
                   ((unsigned)u < cfg.count % (unsigned)cfg.n_urls));
    printf("  connections            %" PRIu64 " of %u (failures %" PRIu64
           ", dropped while held %" PRIu64 ") in %u process(es)\n",
           connected, cfg.count, failures, disconnects, K);
    printf("  ramp                   %.2f s, %.0f connects/s\n", ramp_s, cps);
    lat_table("connect (ws + connect)", &lat);

    jw w;
    jw_init(&w);
    header_json(&w, wall);
    jw_ku64(&w, "connections", connected);
    jw_ku64(&w, "failures", failures);
    jw_ku64(&w, "disconnects", disconnects);
    jw_ku64(&w, "errors", errors);
    jw_kdbl(&w, "ramp_s", ramp_s);
    jw_kdbl(&w, "connects_per_s", cps);
    jw_ku64(&w, "procs", K);
    jw_ku64(&w, "gaps", 0);
    jw_ku64(&w, "duplicates", 0);
    lat_json(&w, "connect_latency", &lat);
    resources(&w, &self_a, &self_b, child_cpu, wall, srv, connected,
              "ns_per_connection", connected, base);
    if (report_end(&w))
        rc = 2;
    free(m);
    if (rc == 0 && connected == 0) {
        fprintf(stderr, "herald-bench: FAILED: no connection\n");
        rc = 1;
    }
    return rc;
}

/* --- Command line -------------------------------------------------------- */

/* "nchan | socketio | " for the usage text. */
static const char *peer_names(void)
{
    static char names[256];
    size_t at = 0;
    for (size_t i = 0; peer_drivers[i] && at < sizeof(names); i++)
        at += (size_t)snprintf(names + at, sizeof(names) - at, "%s | ",
                               peer_drivers[i]->name);
    return names;
}

static void usage(FILE *f)
{
    fprintf(f,
"usage: herald-bench SCENARIO [options]\n"
"scenarios: fanout | connections | reconnect | request | churn | api\n"
"           (see bench/README.md)\n"
"common:\n"
"  --target T           herald | a peer: %s(herald)\n"
"  --url URL            ws://127.0.0.1:8080/ws (peers: the driver's); repeat\n"
"                       it for several servers (a cluster): clients are\n"
"                       spread over them round-robin\n"
"  --encoding E         json | msgpack (json)\n"
"  --duration S         measured seconds (10)\n"
"  --warmup S           seconds before measuring (1)\n"
"  --json FILE          write the JSON report (- for stdout)\n"
"  --threads N          client threads, one uv loop each (1)\n"
"  --server-pid [L=]PID sample a server's CPU and memory (repeatable; L\n"
"                       names it in reports)\n"
"  --server-pidfile [L=]FILE  the same, the pid read from FILE at every\n"
"                       sample (a server that is restarted)\n"
"  --connect-rate R     client connects per second during setup (5000)\n"
"  --conns-per-addr N   spread source addresses over 127.0.0.0/8, N per\n"
"                       address (connections: 1000; others: 0 = off)\n"
"  --channel-prefix P   channel names P<run>.<i> (bench.); repeat it and\n"
"                       channel i takes the (i mod n)-th\n"
"  --run-id HEX         the <run> of the channel names, 0..ffffff (random)\n"
"  --setup-timeout S    give up setting up after S seconds (60)\n"
"  --quiet              no progress line\n"
"fanout:      --channels C (1) --subs S (100) --pubs P (1) --rate R (0 = as\n"
"             fast as acknowledged) --size B (100) --window W (16)\n"
"             --in-flight N unanswered per publisher (W; the window\n"
"             still bounds the lead over the subscribers)\n"
"             --sub-transport auto | client (auto: the lean reader where\n"
"             it can go, ws:// to an IPv4 address; client: the library)\n"
"connections: --count N (1000) --rate R connects/s (5000) --procs K (1)\n"
"reconnect:   --count N (1000) --channels C (1) --rate R (1000)\n"
"             --size B (100) --drop-after S (duration/4) --backoff-ms MS (250)\n"
"request:     --clients N (1) --rate R per client (0 = closed loop)\n"
"             --window W (1) --size B (100)\n"
"churn:       --count N churning clients (100) --channels C (16)\n"
"             --per-client K channels each (3) --pubs P (C) --rate R per\n"
"             publisher (5) --size B (100) --lifetime S mean (20) --resub S\n"
"             mean (10) --offline S at most (5) --long-offline S (0 = never)\n"
"             --long-share F of the replacements (0.02) --drain-timeout S\n"
"             (30)\n"
"             --samples FILE (a CSV row a second: counters, server RSS)\n"
"api:         --api-conns N HTTP/1.1 keep-alive connections, one request\n"
"             in flight each (1) --channels C (N: one each) --subs S\n"
"             WebSocket subscribers per channel (0) --rate R per connection\n"
"             (0 = closed loop) --size B (100) --window W (16: lead over\n"
"             the subscribers) --api-url URL (herald:\n"
"             http://127.0.0.1:8090/api/v1/publish; peers: theirs)\n"
"             --api-key KEY (herald: else HERALD_API_KEY; peers: theirs)\n"
"exit status: 0 ok, 1 gaps/duplicates (churn: also misreported\n"
"             recoveries, acknowledged publications a witness never got)\n"
"             or nothing measured, 2 usage/setup\n",
        peer_names());
}

/* How Herald's subscribers read. fanout: the lean reader (fastsub.h):
 * through the library, whose lws 4.1 client role parses received frames a
 * byte at a time, the bench and not the server set the rate (3.0 vs 1.05
 * us of bench CPU per delivery, bench/README.md); the library only where
 * the reader cannot go (wss://, host names). reconnect: the library, whose
 * reconnect and recovery it measures. Peers: their driver. */
static enum sub_kind choose_sub_kind(void)
{
    if (cfg.drv)
        return SUB_PEER;
    if ((cfg.sc != SC_FANOUT && cfg.sc != SC_API) || cfg.force_client)
        return SUB_LIB;
    for (int u = 0; u < cfg.n_urls; u++)
        if (fastsub_url_ok(cfg.urls[u]) != 0)
            return SUB_LIB;
    return SUB_FAST;
}

/* api: the publish endpoint (--api-url, default the target's; one without
 * a path gets the target's path) and the key's header line (--api-key, or
 * HERALD_API_KEY for herald, or the peer's own key). 0, or -1 (said). */
static int api_setup(const char *key)
{
    static char url[512];
    const char *def = cfg.drv ? cfg.drv->api_url
                              : "http://127.0.0.1:8090/api/v1/publish";
    const char *path = cfg.drv ? cfg.drv->api_path : "/api/v1/publish";
    const char *u = cfg.api_url, *hp;

    if (!def) {
        fprintf(stderr, "herald-bench: --target %s has no server HTTP API"
                " the bench knows\n", cfg.target);
        return -1;
    }
    if (!u) {
        u = def;
    } else if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) {
        fprintf(stderr, "herald-bench: --api-url must be http:// or"
                " https://\n");
        return -1;
    } else {
        hp = strstr(u, "://") + 3;
        hp = strchr(hp, '/');
        if (!hp || !strcmp(hp, "/")) {
            snprintf(url, sizeof(url), "%.*s%s",
                     hp ? (int)(hp - u) : (int)strlen(u), u, path);
            u = url;
        }
    }
    cfg.api_url = u;
    if (!key && !cfg.drv)
        key = getenv("HERALD_API_KEY");
    if (key)
        snprintf(cfg.api_auth, sizeof(cfg.api_auth), "Authorization: apikey %s",
                 key);
    else if (cfg.drv)
        snprintf(cfg.api_auth, sizeof(cfg.api_auth), "%s", cfg.drv->api_auth);
    else {
        fprintf(stderr, "herald-bench: api needs the server's key: --api-key"
                " KEY or HERALD_API_KEY\n");
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv)
{
    enum {
        O_URL = 256, O_ENC, O_DUR, O_WARM, O_JSON, O_THREADS, O_PID, O_CH,
        O_SUBS, O_PUBS, O_RATE, O_SIZE, O_WIN, O_COUNT, O_PROCS, O_CRATE,
        O_CPA, O_PREFIX, O_DROP, O_BACKOFF, O_SETUP, O_QUIET, O_HELP,
        O_TARGET, O_PIDFILE, O_PER_CLIENT, O_LIFETIME, O_RESUB, O_OFFLINE,
        O_DRAIN, O_SAMPLES, O_LONG_OFF, O_LONG_SHARE, O_SUBTR, O_API_URL,
        O_API_KEY, O_API_CONNS, O_IN_FLIGHT, O_RUN_ID
    };
    static const struct option opts[] = {
        { "url", 1, 0, O_URL }, { "encoding", 1, 0, O_ENC },
        { "duration", 1, 0, O_DUR }, { "warmup", 1, 0, O_WARM },
        { "json", 1, 0, O_JSON }, { "threads", 1, 0, O_THREADS },
        { "server-pid", 1, 0, O_PID }, { "channels", 1, 0, O_CH },
        { "subs", 1, 0, O_SUBS }, { "pubs", 1, 0, O_PUBS },
        { "rate", 1, 0, O_RATE }, { "size", 1, 0, O_SIZE },
        { "window", 1, 0, O_WIN }, { "count", 1, 0, O_COUNT },
        { "clients", 1, 0, O_COUNT }, { "procs", 1, 0, O_PROCS },
        { "connect-rate", 1, 0, O_CRATE }, { "conns-per-addr", 1, 0, O_CPA },
        { "channel-prefix", 1, 0, O_PREFIX }, { "drop-after", 1, 0, O_DROP },
        { "backoff-ms", 1, 0, O_BACKOFF }, { "setup-timeout", 1, 0, O_SETUP },
        { "quiet", 0, 0, O_QUIET }, { "help", 0, 0, O_HELP },
        { "target", 1, 0, O_TARGET }, { "server-pidfile", 1, 0, O_PIDFILE },
        { "per-client", 1, 0, O_PER_CLIENT }, { "lifetime", 1, 0, O_LIFETIME },
        { "resub", 1, 0, O_RESUB }, { "offline", 1, 0, O_OFFLINE },
        { "drain-timeout", 1, 0, O_DRAIN }, { "samples", 1, 0, O_SAMPLES },
        { "long-offline", 1, 0, O_LONG_OFF },
        { "long-share", 1, 0, O_LONG_SHARE },
        { "sub-transport", 1, 0, O_SUBTR },
        { "api-url", 1, 0, O_API_URL }, { "api-key", 1, 0, O_API_KEY },
        { "api-conns", 1, 0, O_API_CONNS },
        { "in-flight", 1, 0, O_IN_FLIGHT },
        { "run-id", 1, 0, O_RUN_ID },
        { 0, 0, 0, 0 }
    };
    int c, have_rate = 0, have_cpa = 0, have_count = 0, have_win = 0;
    int have_url = 0, have_pubs = 0, have_ch = 0, have_subs = 0;
    const char *api_key = NULL;
    char *eq;
    double drop = -1;
    char *end;

    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : -1;
    }
    for (c = 0; c < SC_COUNT; c++)
        if (!strcmp(argv[1], scenario_names[c]))
            break;
    if (c == SC_COUNT) {
        fprintf(stderr, "herald-bench: unknown scenario '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    /* The defaults (usage()); scenarios adjust some below. */
    cfg = (config){ .sc = (enum scenario)c, .target = "herald",
                    .url = "ws://127.0.0.1:8080/ws", .enc = HC_JSON,
                    .duration = 10, .warmup = 1, .threads = 1, .channels = 1,
                    .subs = 100, .pubs = 1, .size = 100, .window = 16,
                    .count = 1000, .procs = 1, .connect_rate = 5000,
                    .channel_prefix = "bench.", .backoff_ms = 250,
                    .setup_timeout = 60, .per_client = 3, .lifetime = 20,
                    .resub_every = 10, .offline = 5, .drain_timeout = 30,
                    .long_share = 0.02, .run_id = -1 };

    optind = 2;
    while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        end = NULL;
        switch (c) {
        case O_URL:
            if (cfg.n_urls == MAX_URLS)
                goto bad;
            cfg.urls[cfg.n_urls++] = optarg;
            have_url = 1;
            break;
        case O_TARGET: cfg.target = optarg; break;
        case O_ENC:
            if (!strcmp(optarg, "json"))
                cfg.enc = HC_JSON;
            else if (!strcmp(optarg, "msgpack"))
                cfg.enc = HC_MSGPACK;
            else
                goto bad;
            break;
        case O_DUR: cfg.duration = strtod(optarg, &end); break;
        case O_WARM: cfg.warmup = strtod(optarg, &end); break;
        case O_JSON: cfg.json = optarg; break;
        case O_THREADS: cfg.threads = (int)strtol(optarg, &end, 10); break;
        case O_PID:
        case O_PIDFILE:
            /* [LABEL=]PID or [LABEL=]FILE: the label names the server in
             * reports (argv is ours to cut). */
            if (cfg.n_servers == MAX_SERVERS)
                goto bad;
            if ((eq = strchr(optarg, '=')) != NULL) {
                *eq = '\0';
                cfg.server_labels[cfg.n_servers] = optarg;
                optarg = eq + 1;
            }
            if (c == O_PIDFILE)
                cfg.server_pidfiles[cfg.n_servers++] = optarg;
            else
                cfg.servers[cfg.n_servers++] =
                    (pid_t)strtol(optarg, &end, 10);
            break;
        case O_CH:
            cfg.channels = (unsigned)strtoul(optarg, &end, 10);
            have_ch = 1;
            break;
        case O_SUBS:
            cfg.subs = (unsigned)strtoul(optarg, &end, 10);
            have_subs = 1;
            break;
        case O_PUBS:
            cfg.pubs = (unsigned)strtoul(optarg, &end, 10);
            have_pubs = 1;
            break;
        case O_RATE: cfg.rate = strtod(optarg, &end); have_rate = 1; break;
        case O_SIZE: cfg.size = (unsigned)strtoul(optarg, &end, 10); break;
        case O_WIN:
            cfg.window = (unsigned)strtoul(optarg, &end, 10);
            have_win = 1;
            break;
        case 'n':
        case O_COUNT:
            cfg.count = (unsigned)strtoul(optarg, &end, 10);
            have_count = 1;
            break;
        case O_PROCS: cfg.procs = (unsigned)strtoul(optarg, &end, 10); break;
        case O_CRATE: cfg.connect_rate = strtod(optarg, &end); break;
        case O_CPA:
            cfg.conns_per_addr = (unsigned)strtoul(optarg, &end, 10);
            have_cpa = 1;
            break;
        case O_PREFIX:
            if (cfg.n_prefixes == MAX_PREFIXES)
                goto bad;
            cfg.prefixes[cfg.n_prefixes++] = optarg;
            break;
        case O_PER_CLIENT:
            cfg.per_client = (unsigned)strtoul(optarg, &end, 10);
            break;
        case O_LIFETIME: cfg.lifetime = strtod(optarg, &end); break;
        case O_RESUB: cfg.resub_every = strtod(optarg, &end); break;
        case O_OFFLINE: cfg.offline = strtod(optarg, &end); break;
        case O_DRAIN: cfg.drain_timeout = strtod(optarg, &end); break;
        case O_LONG_OFF: cfg.long_offline = strtod(optarg, &end); break;
        case O_LONG_SHARE: cfg.long_share = strtod(optarg, &end); break;
        case O_SAMPLES: cfg.samples = optarg; break;
        case O_API_URL: cfg.api_url = optarg; break;
        case O_API_KEY: api_key = optarg; break;
        case O_IN_FLIGHT:
            cfg.in_flight = (unsigned)strtoul(optarg, &end, 10);
            break;
        case O_API_CONNS:
            cfg.pubs = (unsigned)strtoul(optarg, &end, 10);
            have_pubs = 1;
            break;
        case O_SUBTR:
            if (!strcmp(optarg, "client"))
                cfg.force_client = 1;
            else if (strcmp(optarg, "auto"))
                goto bad;
            break;
        case O_RUN_ID:
            cfg.run_id = strtol(optarg, &end, 16);
            if (cfg.run_id < 0 || cfg.run_id > 0xffffff)
                goto bad;
            break;
        case O_DROP: drop = strtod(optarg, &end); break;
        case O_BACKOFF:
            cfg.backoff_ms = (unsigned)strtoul(optarg, &end, 10);
            break;
        case O_SETUP: cfg.setup_timeout = strtod(optarg, &end); break;
        case O_QUIET: cfg.quiet = 1; break;
        case O_HELP: usage(stdout); return -1;
        default: usage(stderr); return 2;
        }
        if (end && *end)
            goto bad;
    }
    if (optind != argc) {
        fprintf(stderr, "herald-bench: unexpected argument '%s'\n",
                argv[optind]);
        return 2;
    }
    if (strcmp(cfg.target, "herald")) {
        cfg.drv = peer_find(cfg.target);
        if (!cfg.drv) {
            fprintf(stderr, "herald-bench: unknown --target '%s' (herald | "
                    "%sbuilt in)\n", cfg.target, peer_names());
            return 2;
        }
        cfg.target = cfg.drv->name;
        if (cfg.enc != HC_JSON) {
            fprintf(stderr, "herald-bench: --encoding msgpack is Herald's;"
                    " peer targets carry JSON-string stamps (--encoding json)\n");
            return 2;
        }
        if (cfg.sc == SC_RECONNECT || cfg.sc == SC_CHURN) {
            fprintf(stderr, "herald-bench: the %s scenario measures "
                    "Herald's recovery (resubscribe with since); it has no "
                    "equivalent on --target %s\n", scenario_names[cfg.sc],
                    cfg.target);
            return 2;
        }
        if (!have_url)
            cfg.url = cfg.drv->default_url;
    }
    if (have_url)
        cfg.url = cfg.urls[0];
    else
        cfg.urls[cfg.n_urls++] = cfg.url;
    if (!cfg.n_prefixes)
        cfg.prefixes[cfg.n_prefixes++] = "bench.";
    cfg.channel_prefix = cfg.prefixes[0];
    cfg.sub_kind = choose_sub_kind();
    if (cfg.sc == SC_CHURN) {
        if (!have_ch)
            cfg.channels = 16;
        if (!have_count)
            cfg.count = 100;
        if (!have_pubs)
            cfg.pubs = cfg.channels;
        if (!have_rate)
            cfg.rate = 5;
        if (cfg.rate <= 0 || cfg.per_client < 1 ||
            cfg.per_client > CHURN_SLOTS || cfg.per_client > cfg.channels ||
            cfg.lifetime <= 0 || cfg.resub_every <= 0 || cfg.offline < 0 ||
            cfg.long_offline < 0 || cfg.long_share < 0 ||
            cfg.long_share > 1 || cfg.drain_timeout <= 0) {
            fprintf(stderr, "herald-bench: churn needs --rate > 0, --per-client"
                    " 1..%d (at most --channels), --lifetime and --resub > 0,"
                    " --offline and --long-offline >= 0, --long-share 0..1,"
                    " --drain-timeout > 0\n", CHURN_SLOTS);
            return 2;
        }
    }
    if (cfg.sc == SC_CONNECTIONS) {
        if (!have_rate)
            cfg.rate = 5000;
        if (!have_cpa)
            cfg.conns_per_addr = 1000;
    }
    if (cfg.sc == SC_RECONNECT) {
        cfg.subs = cfg.count;
        cfg.pubs = 1;
        if (!have_rate)
            cfg.rate = 1000;
        cfg.drop_after = drop >= 0 ? drop : cfg.duration / 4;
        if (cfg.drop_after >= cfg.duration)
            cfg.drop_after = cfg.duration / 4;
        cfg.subs = (cfg.count + cfg.channels - 1) / (cfg.channels ? cfg.channels : 1);
    }
    if (cfg.sc == SC_REQUEST) {
        cfg.pubs = have_count ? cfg.count : 1;
        if (!have_win)
            cfg.window = 1;
    }
    /* At most the window; api: one request per connection at a time. */
    if (!cfg.in_flight || cfg.in_flight > cfg.window)
        cfg.in_flight = cfg.window;
    if (cfg.sc == SC_API)
        cfg.in_flight = 1;
    if (cfg.sc == SC_API) {
        if (!have_pubs)
            cfg.pubs = 1;
        if (!have_ch)
            cfg.channels = cfg.pubs ? cfg.pubs : 1;   /* one each */
        if (!have_subs)
            cfg.subs = 0;
        if (api_setup(api_key) != 0)
            return 2;
    }
    if (cfg.threads < 1 || cfg.threads > 64 || cfg.duration <= 0 ||
        cfg.warmup < 0 || cfg.channels < 1 || cfg.window < 1 ||
        cfg.procs < 1 || cfg.procs > 64 || cfg.rate < 0 ||
        cfg.size > 65536 || cfg.connect_rate < 0 ||
        (cfg.sc != SC_CONNECTIONS && cfg.pubs < 1) || cfg.count < 1 ||
        (cfg.drv && cfg.pubs / (unsigned)cfg.threads + (unsigned)cfg.n_urls >
                        PEER_MAX_PUBS_PER_THREAD)) {
        fprintf(stderr, "herald-bench: option out of range\n");
        return 2;
    }
    return 0;
bad:
    fprintf(stderr, "herald-bench: bad value '%s'\n", optarg);
    return 2;
}

int main(int argc, char **argv)
{
    size_t at = 0;
    int rc;

    for (int i = 0; i < argc && at + 2 < sizeof(g_cmdline); i++)
        at += (size_t)snprintf(g_cmdline + at, sizeof(g_cmdline) - at,
                               "%s%s", i ? " " : "", argv[i]);
    if (at >= sizeof(g_cmdline))
        g_cmdline[sizeof(g_cmdline) - 1] = '\0';
    rc = parse_args(argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (cfg.sc == SC_API && apipub_global_init() != 0)
        return 2;
    if (cfg.sc == SC_CONNECTIONS)
        return run_connections();
    if (cfg.sc == SC_CHURN)
        return run_churn();
    rc = run_streams();
    if (cfg.sc == SC_API)
        apipub_global_cleanup();
    return rc;
}
