/*
 * herald-cli: the terminal client of Herald, like redis-cli. One command
 * per run: `sub` streams publications (across reconnects, with recovery),
 * `pub`, `history` and `presence` make one request and exit. Built on the
 * C client library (clients/c), one client on one libuv loop.
 *
 * Output: publications are one line each on stdout, "CHANNEL OFFSET DATA"
 * with DATA as JSON; metadata lines on stdout start with '#'. Connection
 * events go to stderr. Exit status: 0 ok, 1 server error or connection
 * failure, 2 usage error.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/client.h"
#include "herald/proto.h"

enum { EXIT_OK = 0, EXIT_SERVER = 1, EXIT_USAGE = 2 };

typedef struct cli {
    uv_loop_t loop;
    hc_ctx *ctx;
    hc_client *client;
    uv_signal_t sigint, sigterm;
    uv_timer_t deadline;
    int status;
    int stopping;
    int quiet;
    long count;               /* sub: exit after this many (-1: never) */
    long seen;
    int subscribed_left;      /* sub: channels not answered yet */
    hc_encoding enc;
} cli;

static void usage(FILE *f)
{
    fprintf(f,
"Usage: herald-cli [options] COMMAND [args]\n"
"\n"
"Commands:\n"
"  sub CHANNEL...                 print publications as they arrive, one line\n"
"                                 each: CHANNEL OFFSET DATA (DATA as JSON);\n"
"                                 reconnects and recovers; a line\n"
"                                 \"# CHANNEL recovered=false ...\" reports\n"
"                                 missed publications\n"
"  pub CHANNEL DATA               publish DATA (JSON text); prints offset/epoch\n"
"  history CHANNEL [--limit N] [--reverse]\n"
"                                 print retained publications, then\n"
"                                 \"# epoch=E offset=N\"\n"
"  presence CHANNEL               print subscribers: CLIENT [USER]\n"
"\n"
"Options:\n"
"  --url URL              server (default ws://127.0.0.1:8080/ws; wss:// ok)\n"
"  --encoding json|msgpack  wire encoding (default json)\n"
"  --token T              connection JWT\n"
"  --insecure             wss: accept self-signed certificates\n"
"  --timeout S            pub/history/presence: give up after S seconds\n"
"                         (default 10)\n"
"  --count N              sub: exit after N publications\n"
"  --quiet                sub: no connection events on stderr\n"
"  -h, --help             this help\n"
"\n"
"Exit status: 0 ok, 1 server error (code and message printed) or no\n"
"connection, 2 usage error.\n");
}

static void stop(cli *k, int status)
{
    if (k->stopping)
        return;
    k->stopping = 1;
    k->status = status;
    uv_close((uv_handle_t *)&k->sigint, NULL);
    uv_close((uv_handle_t *)&k->sigterm, NULL);
    uv_close((uv_handle_t *)&k->deadline, NULL);
    hc_ctx_close(k->ctx);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    stop(s->data, EXIT_OK);
}

static void on_deadline(uv_timer_t *t)
{
    fprintf(stderr, "herald-cli: timed out\n");
    stop(t->data, EXIT_SERVER);
}

static int server_error(cli *k, const hc_reply *r)
{
    if (r->code == 0)
        return 0;
    if (k->stopping)
        return 1;
    fprintf(stderr, "error %d: %.*s\n", r->code, (int)r->message.len,
            r->message.ptr);
    stop(k, EXIT_SERVER);
    return 1;
}

static void print_pub(cli *k, const hc_pub *p)
{
    char *json = hc_data_to_json(k->enc, p->data, p->data_len);
    printf("%.*s %llu %s\n", (int)p->channel.len, p->channel.ptr,
           (unsigned long long)p->offset, json ? json : "<not JSON>");
    free(json);
}

/* --- client callbacks ----------------------------------------------------- */

static void on_connected(hc_client *c, const hc_connected *ev, void *user)
{
    cli *k = user;
    if (!k->quiet)
        fprintf(stderr, "herald-cli: connected (client %.*s, node %.*s)\n",
                (int)ev->client.len, ev->client.ptr, (int)ev->node.len,
                ev->node.ptr);
}

static void on_disconnected(hc_client *c, const hc_disconnected *ev,
                            void *user)
{
    cli *k = user;
    if (!k->quiet || !ev->reconnect)
        fprintf(stderr, "herald-cli: disconnected (code %d%s%.*s)%s",
                ev->code, ev->reason.len ? ": " : "", (int)ev->reason.len,
                ev->reason.ptr, ev->reconnect ? "" : ", giving up\n");
    if (ev->reconnect) {
        if (!k->quiet)
            fprintf(stderr, ", reconnecting in %llu ms\n",
                    (unsigned long long)ev->delay_ms);
    } else {
        stop(k, EXIT_SERVER);
    }
}

static void on_error(hc_client *c, int code, hc_str msg, void *user)
{
    fprintf(stderr, "error %d: %.*s\n", code, (int)msg.len, msg.ptr);
}

static void on_sub_pub(hc_client *c, const hc_pub *p, void *user)
{
    cli *k = user;
    if (k->stopping)
        return;
    print_pub(k, p);
    if (k->count >= 0 && ++k->seen >= k->count)
        stop(k, EXIT_OK);
}

static void on_subscription(hc_client *c, const hc_sub_event *ev, void *user)
{
    cli *k = user;
    const char *what = ev->kind == HC_SUB_SUBSCRIBED ? "subscribed"
                     : ev->kind == HC_SUB_RESUBSCRIBED ? "resubscribed"
                     : ev->kind == HC_SUB_GAP ? "gap"
                     : "subscription lost";
    if (ev->recovered == 0)
        printf("# %.*s recovered=false epoch=%.*s offset=%llu\n",
               (int)ev->channel.len, ev->channel.ptr, (int)ev->epoch.len,
               ev->epoch.ptr, (unsigned long long)ev->offset);
    int lost = ev->kind == HC_SUB_FAILED || ev->kind == HC_SUB_UNSUBSCRIBED;
    if (!k->quiet || lost)
        fprintf(stderr, "herald-cli: %.*s %s%s (epoch %.*s offset %llu)\n",
                (int)ev->channel.len, ev->channel.ptr, what,
                ev->recovered == 1 ? ", recovered"
                : ev->recovered == 0 ? ", NOT recovered" : "",
                (int)ev->epoch.len, ev->epoch.ptr,
                (unsigned long long)ev->offset);
    if (lost) {
        fprintf(stderr, "error %d: %.*s\n", ev->code, (int)ev->message.len,
                ev->message.ptr);
        stop(k, EXIT_SERVER);
    }
}

static void on_sub_reply(hc_client *c, const hc_reply *r, void *arg)
{
    server_error(arg, r);
}

static void on_pub_reply(hc_client *c, const hc_reply *r, void *arg)
{
    cli *k = arg;
    if (server_error(k, r))
        return;
    printf("offset=%llu epoch=%.*s\n", (unsigned long long)r->offset,
           (int)r->epoch.len, r->epoch.ptr);
    stop(k, EXIT_OK);
}

static void on_history_reply(hc_client *c, const hc_reply *r, void *arg)
{
    cli *k = arg;
    if (server_error(k, r))
        return;
    for (size_t i = 0; i < r->n_pubs; i++)
        print_pub(k, &r->pubs[i]);
    printf("# epoch=%.*s offset=%llu\n", (int)r->epoch.len, r->epoch.ptr,
           (unsigned long long)r->offset);
    stop(k, EXIT_OK);
}

static void on_presence_reply(hc_client *c, const hc_reply *r, void *arg)
{
    cli *k = arg;
    if (server_error(k, r))
        return;
    for (size_t i = 0; i < r->n_presence; i++) {
        const hc_presence_entry *e = &r->presence[i];
        printf("%.*s%s%.*s\n", (int)e->client.len, e->client.ptr,
               e->user.len ? " " : "", (int)e->user.len, e->user.ptr);
    }
    stop(k, EXIT_OK);
}

/* --- main ------------------------------------------------------------------- */

static long parse_long(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 0) {
        fprintf(stderr, "herald-cli: bad %s: %s\n", what, s);
        exit(EXIT_USAGE);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "url", required_argument, NULL, 'u' },
        { "encoding", required_argument, NULL, 'e' },
        { "token", required_argument, NULL, 't' },
        { "insecure", no_argument, NULL, 'k' },
        { "timeout", required_argument, NULL, 'T' },
        { "count", required_argument, NULL, 'c' },
        { "limit", required_argument, NULL, 'l' },
        { "reverse", no_argument, NULL, 'r' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    cli k;
    hc_options o;
    hc_history_options ho;
    const char *cmd;
    char err[256];
    long timeout_s = 10, limit = -1;
    int reverse = 0, opt, rc = HC_OK;
    void *owned = NULL;

    memset(&k, 0, sizeof(k));
    k.count = -1;
    hc_options_init(&o);
    /* Options before the command; "+" stops at the command. */
    while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'u': o.url = optarg; break;
        case 'e':
            if (!strcmp(optarg, "json"))
                o.encoding = HC_JSON;
            else if (!strcmp(optarg, "msgpack"))
                o.encoding = HC_MSGPACK;
            else {
                fprintf(stderr, "herald-cli: --encoding must be json or msgpack\n");
                return EXIT_USAGE;
            }
            break;
        case 't': o.token = optarg; break;
        case 'k': o.tls_insecure = 1; break;
        case 'T': timeout_s = parse_long(optarg, "--timeout"); break;
        case 'c': k.count = parse_long(optarg, "--count"); break;
        case 'l': limit = parse_long(optarg, "--limit"); break;
        case 'r': reverse = 1; break;
        case 'q': k.quiet = 1; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    cmd = argv[optind++];
    /* Options after the command's first argument (history --limit N). */
    {
        int rest = argc - optind;
        char **args = argv + optind;
        int n = 0;
        for (int i = 0; i < rest; i++) {
            if (!strcmp(args[i], "--reverse")) {
                reverse = 1;
            } else if (!strcmp(args[i], "--limit") && i + 1 < rest) {
                limit = parse_long(args[++i], "--limit");
            } else if (!strcmp(args[i], "--count") && i + 1 < rest) {
                k.count = parse_long(args[++i], "--count");
            } else if (!strcmp(args[i], "--help") || !strcmp(args[i], "-h")) {
                usage(stdout);
                return EXIT_OK;
            } else if (args[i][0] == '-' && args[i][1] == '-') {
                fprintf(stderr, "herald-cli: unknown option %s\n", args[i]);
                return EXIT_USAGE;
            } else {
                args[n++] = args[i];
            }
        }
        argc = optind + n;
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (!strcmp(cmd, "sub")) {
        if (nargs < 1)
            goto bad_args;
    } else if (!strcmp(cmd, "pub")) {
        if (nargs != 2)
            goto bad_args;
    } else if (!strcmp(cmd, "history") || !strcmp(cmd, "presence")) {
        if (nargs != 1)
            goto bad_args;
    } else {
        fprintf(stderr, "herald-cli: unknown command %s\n", cmd);
        usage(stderr);
        return EXIT_USAGE;
    }
    for (int i = 0; i < (strcmp(cmd, "pub") ? nargs : 1); i++)
        if (!proto_channel_valid(args[i], strlen(args[i]))) {
            fprintf(stderr, "herald-cli: invalid channel name: %s\n", args[i]);
            return EXIT_USAGE;
        }

    /* pub: DATA is JSON text, sent as is (JSON) or converted (msgpack). */
    const char *data = NULL;
    size_t data_len = 0;
    if (!strcmp(cmd, "pub")) {
        proto_data d;
        proto_error perr;
        if (proto_data_from_json(args[1], strlen(args[1]), &d, &owned,
                                 &perr) != PROTO_OK) {
            fprintf(stderr, "herald-cli: DATA is not valid JSON: %s\n",
                    perr.message);
            return EXIT_USAGE;
        }
        data = o.encoding == HC_MSGPACK ? d.mp.ptr : d.json.ptr;
        data_len = o.encoding == HC_MSGPACK ? d.mp.len : d.json.len;
    }

    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&k.loop);
    k.ctx = hc_ctx_new(&k.loop, NULL);
    if (!k.ctx) {
        fprintf(stderr, "herald-cli: cannot create the client context\n");
        free(owned);
        return EXIT_SERVER;
    }
    k.enc = o.encoding;
    o.cb.connected = on_connected;
    o.cb.disconnected = on_disconnected;
    o.cb.error = on_error;
    o.cb.pub = on_sub_pub;
    o.cb.subscription = on_subscription;
    o.user = &k;
    if (strcmp(cmd, "sub"))
        k.quiet = 1;
    k.client = hc_client_new(k.ctx, &o, err, sizeof(err));
    if (!k.client) {
        fprintf(stderr, "herald-cli: %s\n", err);
        hc_ctx_free(k.ctx);
        uv_loop_close(&k.loop);
        free(owned);
        return EXIT_USAGE;
    }
    uv_signal_init(&k.loop, &k.sigint);
    uv_signal_init(&k.loop, &k.sigterm);
    k.sigint.data = k.sigterm.data = &k;
    uv_signal_start(&k.sigint, on_signal, SIGINT);
    uv_signal_start(&k.sigterm, on_signal, SIGTERM);
    uv_timer_init(&k.loop, &k.deadline);
    k.deadline.data = &k;

    if (!strcmp(cmd, "sub")) {
        for (int i = 0; i < nargs && rc == HC_OK; i++)
            rc = hc_subscribe(k.client, args[i], NULL, on_sub_reply, &k);
    } else {
        uv_timer_start(&k.deadline, on_deadline, (uint64_t)timeout_s * 1000, 0);
        if (!strcmp(cmd, "pub")) {
            rc = hc_publish(k.client, args[0], data, data_len, on_pub_reply,
                            &k);
        } else if (!strcmp(cmd, "history")) {
            memset(&ho, 0, sizeof(ho));
            ho.has_limit = limit >= 0;
            ho.limit = limit >= 0 ? (uint32_t)limit : 0;
            ho.reverse = reverse;
            rc = hc_history(k.client, args[0], &ho, on_history_reply, &k);
        } else {
            rc = hc_presence(k.client, args[0], on_presence_reply, &k);
        }
    }
    if (rc != HC_OK) {
        fprintf(stderr, "herald-cli: %s\n", hc_strerror(rc));
        stop(&k, EXIT_USAGE);
    }
    uv_run(&k.loop, UV_RUN_DEFAULT);
    hc_ctx_free(k.ctx);
    uv_loop_close(&k.loop);
    free(owned);
    return k.status;

bad_args:
    fprintf(stderr, "herald-cli: wrong number of arguments for %s\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
