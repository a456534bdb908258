/*
 * Configuration: defaults, then the libconfig file, then HERALD_* environment
 * variables, then the command line (each later source wins). Every problem
 * is reported with its source (file and line, variable name or option) and
 * the key, so an operator can fix it without reading code. The resulting
 * struct is immutable after start-up and shared read-only by every thread.
 */
#ifndef HERALD_CONFIG_H
#define HERALD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_NS_NAME_MAX 64
#define CONFIG_MAX_NAMESPACES 64
#define CONFIG_REDIS_MAX 16

/* One Redis server of cluster mode, from redis://[:password@]host[:port][/db]. */
typedef struct config_redis {
    char host[256];
    uint16_t port;                  /* 6379 */
    uint32_t db;                    /* SELECT db when not 0 */
    char password[256];             /* AUTH when set; never logged */
} config_redis;

/* Options of one channel namespace (the part of a channel name before the
 * first ':'; channels without ':' use the namespace named "default"). */
typedef struct config_ns {
    char name[CONFIG_NS_NAME_MAX];  /* "" for the default namespace */
    uint32_t history_size;          /* publications kept per channel; 0 = off */
    uint32_t history_ttl;           /* seconds a publication is kept; 0 = forever */
    int presence;                   /* presence op and presence tracking */
    int join_leave;                 /* join/leave pushes */
    int allow_publish;              /* clients may publish */
    int allow_anonymous;            /* anonymous connections may subscribe */
    uint32_t max_subscribers;       /* per channel on this node; 0 = unlimited */
    int durable;                    /* publications also go to MongoDB */
    int ack_durable;                /* ack: 0 "broker" (after fan-out),
                                       1 "durable" (after the store write) */
    uint32_t retention_age;         /* seconds kept in MongoDB; 0 = forever */
    uint32_t retention_count;       /* newest kept per channel; 0 = all */
    int private;                    /* subscribe, history, presence and
                                       publish need a grant or channel token */
    int publish_open;               /* private: publishing needs neither */
    int user_channels;              /* "...#U" is user U's channel */
    int proxy_subscribe;            /* subscribe asks proxy_subscribe_url */
    int proxy_publish;              /* publish asks proxy_publish_url */
    int proxy_fail_open;            /* a failed proxy call allows */
    int publication_webhook;        /* publications go to the webhooks
                                       as "publication" events */
} config_ns;

/* A listening address ("HOST:PORT"; port 0 = any free one). */
typedef struct config_listen {
    char host[256];
    uint16_t port;
} config_listen;

/* One key of the server API. The key itself is not kept: its SHA-256
 * digest is, so it cannot be logged (api/keys.h). */
#define CONFIG_API_KEYS_MAX 64
#define CONFIG_API_NAME_MAX 64
#define CONFIG_API_KEY_MIN 16       /* bytes of a key */
#define CONFIG_API_KEY_MAX 256
#define CONFIG_API_DIGEST_LEN 32
typedef struct config_api_key {
    char name[CONFIG_API_NAME_MAX]; /* in logs and metrics */
    unsigned char digest[CONFIG_API_DIGEST_LEN];
    uint32_t rate_limit;            /* requests per second on a node; 0 = any */
} config_api_key;

/* Webhook events (docs/webhooks.md), in the order of their bits in
 * config_webhook.events and of server/hooks/'s event types. */
enum config_hook_event {
    CONFIG_HOOK_CONNECT,
    CONFIG_HOOK_DISCONNECT,
    CONFIG_HOOK_SUBSCRIBE,
    CONFIG_HOOK_UNSUBSCRIBE,
    CONFIG_HOOK_OCCUPIED,
    CONFIG_HOOK_VACATED,
    CONFIG_HOOK_PUBLICATION,
    CONFIG_HOOK_EVENTS
};

/* The name of a webhook event ("connect", ...), or NULL. */
const char *config_hook_event_name(int ev);

/* One webhook endpoint: where events are POSTed and which ones. */
#define CONFIG_WEBHOOKS_MAX 8
typedef struct config_webhook {
    char url[1024];                 /* http:// or https:// */
    uint32_t events;                /* bit (1u << config_hook_event) */
} config_webhook;

typedef struct config {
    config_listen listen;           /* "0.0.0.0:8080" */
    uint32_t workers;               /* 0 in the file = number of cores */
    int log_level;                  /* enum log_level */
    char node_name[64];             /* "" = hostname-pid */

    uint32_t max_connections;       /* per node; 0 = sized from RLIMIT_NOFILE */
    uint32_t max_connections_per_ip;/* open per source address; 0 = off */
    uint32_t connection_rate_per_ip;/* new per second per address; 0 = off */
    uint32_t max_message_size;      /* bytes of one received message: 65536 */
    uint32_t max_channels_per_conn; /* 128 */
    uint32_t max_channels;          /* channel streams per node: 1000000 */
    uint32_t history_memory_mb;     /* MiB of history rings per node above
                                       which idle channels are evicted */
    uint32_t send_queue_max;        /* bytes queued per connection: 1 MiB */
    uint32_t max_batch_bytes;       /* coalesced frame size cap: 65536 */
    uint32_t history_max_limit;     /* cap on history limit: 1000 */
    uint32_t recovery_max;          /* publications one recovery returns */
    uint32_t ping_interval;         /* seconds: 25 */
    uint32_t pong_timeout;          /* seconds: 10 */
    uint32_t shutdown_timeout;      /* seconds: 5 */
    uint32_t handshake_timeout;     /* seconds: 10 */
    uint32_t rate_limit;            /* commands per second per conn; 0 = off */
    uint32_t rate_burst;            /* bucket size: 100 */
    uint32_t worker_queue_max;      /* inter-worker publications queued: 65536 */
    uint32_t idempotency_window;    /* s a publish's idempotency_key is
                                       remembered: 300; 0 = keys ignored */
    uint32_t idempotency_max;       /* keys remembered per channel: 10000 */

    /* Connection tokens (auth/jwt.h): keys from any of the three; none
     * set = tokens not accepted. */
    char token_secret[256];         /* HMAC secret (HS256/384/512) */
    char token_public_key[1024];    /* PEM public key file: RSA, EC, Ed25519 */
    char token_jwks[1024];          /* JWKS file, or http(s) URL */
    uint32_t token_jwks_refresh;    /* s between fetches of a URL: 300 */
    uint32_t token_jwks_timeout_ms; /* bound of one fetch: 5000 */
    /* Proxy mode (auth/proxy.h): "" = that op is not proxied. */
    char proxy_connect_url[1024];
    char proxy_refresh_url[1024];
    char proxy_subscribe_url[1024];
    char proxy_publish_url[1024];
    uint32_t proxy_timeout_ms;      /* 3000 */
    uint32_t proxy_max_pending;     /* calls waiting on a node: 1024 */
    char token_audience[256];       /* "" = aud not checked */
    char token_issuer[256];         /* "" = iss not checked */
    uint32_t token_leeway;          /* s of clock skew on exp/nbf: 0 */
    int allow_anonymous;            /* connect without token: 1 */

    /* Cluster mode (docs/cluster.md): channels are sharded over the Redis
     * servers by a stable hash of the name; none = single node. */
    uint32_t n_redis;
    config_redis redis[CONFIG_REDIS_MAX];
    char redis_prefix[64];          /* key and pub/sub prefix: "herald" */
    uint32_t redis_timeout_ms;      /* no answer this long: link down: 2000 */
    uint32_t presence_ttl;          /* seconds a node's entries outlive it: 10 */
    uint32_t stream_ttl;            /* seconds a quiet stream stays in Redis */

    /* Durable history (server/store.c): "" = in memory only. */
    char mongodb[1024];             /* mongodb:// URI with its options */
    char mongodb_database[64];      /* "herald" */
    char mongodb_collection[64];    /* "publications" */
    uint32_t mongodb_writers;       /* writer threads: 2 */
    uint32_t mongodb_queue_max;     /* publications waiting to be written */
    uint32_t mongodb_batch;         /* documents per insert: 256 */
    uint32_t mongodb_readers;       /* history/recovery reader threads: 2 */
    char mongodb_spill_path[512];   /* append-only spill file: "herald.spill" */
    uint32_t mongodb_spill_mb;      /* spill file bound, MiB; 0 = no spill */
    uint32_t durable_ack_timeout_ms; /* ack "durable": 108 when MongoDB has
                                       not confirmed by then: 5000 */
    uint32_t retention_interval;    /* seconds between retention passes: 60 */

    /* Server API (docs/api.md). */
    config_listen api_listen;       /* host "" = on the main listener only */
    uint32_t api_max_body;          /* bytes of a request body: 1 MiB */
    uint32_t api_timeout_ms;        /* an answer not ready by then: 504 */
    int api_tls;                    /* api_listen over TLS (tls_cert) */
    char api_client_ca[512];        /* PEM CA bundle: api_listen requires
                                       client certificates from it */
    uint32_t n_api_keys;
    config_api_key api_keys[CONFIG_API_KEYS_MAX];

    /* Prometheus metrics (docs/metrics.md). */
    int metrics;                    /* counters and GET /metrics: 1 */
    char metrics_key[CONFIG_API_KEY_MAX + 1]; /* "" = /metrics needs no key */

    /* TLS (docs/configuration.md "TLS"). */
    /* Webhooks (docs/webhooks.md); none = no events are made. */
    uint32_t n_webhooks;
    config_webhook webhooks[CONFIG_WEBHOOKS_MAX];
    char webhook_secret[256];       /* HMAC-SHA256 key; never logged */
    uint32_t webhook_timeout_ms;    /* one POST at most: 5000 */
    uint32_t webhook_queue_max;     /* events waiting per node: 10000 */
    uint32_t webhook_max_attempts;  /* POSTs of one event at most: 8 */
    uint32_t webhook_drain_ms;      /* at shutdown, for queued events: 2000 */

    /* The static site (docs/configuration.md "Static files"). */
    char static_dir[1024];          /* served at / on `listen`; "" = off;
                                       a relative path in a file is
                                       resolved against the file's folder */
    uint32_t static_max_file;       /* bytes; larger files are not served:
                                       1 MiB */

    char tls_cert[512];             /* PEM path; "" = plain ws:// */
    char tls_key[512];
    config_listen tls_listen;       /* a TLS listener beside a plain
                                       `listen`; host "" = none: with
                                       tls_cert, `listen` is TLS */
    char tls_client_ca[512];        /* PEM CA bundle: the TLS main listener
                                       requires client certificates from
                                       it; "" = none asked for */

    size_t n_namespaces;            /* namespaces[0] is "default" */
    config_ns namespaces[CONFIG_MAX_NAMESPACES];
} config;

/* The digest an API key is kept as (SHA-256). */
void config_api_key_digest(const char *key, size_t len,
                           unsigned char out[CONFIG_API_DIGEST_LEN]);

/* Fills *c with built-in defaults. */
void config_defaults(config *c);

/* Loads `path` (may be NULL: no file), then the environment (envp: NULL
 * terminated "K=V" strings, normally `environ`). Returns 0, or -1 after
 * writing one line per problem to errbuf (NUL-terminated, truncated to
 * errlen) in the form "FILE:LINE: key 'K': problem". */
int config_load(config *c, const char *path, char *const *envp,
                char *errbuf, size_t errlen);

/* Applies one "key=value" override from the command line (e.g. key
 * "listen" value "127.0.0.1:9000"), with the same checks. */
int config_set(config *c, const char *key, const char *value,
               const char *source, char *errbuf, size_t errlen);

/* Finds the options of a channel namespace; NULL if it is not configured. */
const config_ns *config_ns_find(const config *c, const char *ns, size_t len);

/* The options of the namespace of a channel name (the part before the
 * first ':'); NULL when that namespace is not configured. */
const config_ns *config_ns_of_channel(const config *c, const char *chan,
                                      size_t len);

/* Whether a value (token_jwks) is an http:// or https:// URL. */
int config_is_url(const char *s);

#endif
