/*
 * The typed messages between a client's worker and a channel's owner
 * worker (and from the store's threads back to an owner): one struct per
 * family, each starting with the mailbox header (base/mailbox.h). A
 * request is answered in place: the owner fills the reply fields of the
 * same struct and posts it back to the requester's connections, so a
 * subscribe or publish costs one allocation and one message each way.
 * No field has two meanings; the owner's progress through a request (read
 * rounds, where a window read stopped) has fields of its own.
 *
 * Receivers and their types:
 *   MSG_TO_OWNER  OWN_*  handled by owner_receive (core/owner.h)
 *   MSG_TO_CONNS  CON_*  handled by conns_receive (net/conn.h)
 *   MSG_TO_WORKER WRK_*  handled by the worker itself (net/worker.h)
 */
#ifndef HERALD_CORE_REQUESTS_H
#define HERALD_CORE_REQUESTS_H

#include <stddef.h>
#include <stdint.h>

#include <herald/proto.h>

#include "base/config.h"
#include "base/ids.h"
#include "base/mailbox.h"
#include "core/pub.h"

enum owner_msg_type {
    OWN_SUBSCRIBE = 1,  /* sub_req */
    OWN_UNSUBSCRIBE,    /* chan_req: a subscription ended (no reply) */
    OWN_PUBLISH,        /* pub_req */
    OWN_HISTORY,        /* hist_req */
    OWN_PRESENCE,       /* pres_req */
    OWN_SUB_READ,       /* sub_req back from a store read */
    OWN_HIST_READ,      /* hist_req back from a store read */
    OWN_STORE_TOP,      /* store_top_msg: a durable stream's last position */
    OWN_IDEM_FOUND,     /* idem_found_msg: a durable store's answer for an
                           idempotency key */
};

enum conn_msg_type {
    CON_SUBSCRIBED = 1, /* sub_req answered */
    CON_PUBLISHED,      /* pub_req answered */
    CON_HISTORY,        /* hist_req answered */
    CON_PRESENCE,       /* pres_req answered */
    CON_DELIVER,        /* deliver_msg: fan out to local subscribers */
    CON_JOIN,           /* join_msg: a join or leave push */
    CON_RESET,          /* reset_msg: close the channel's subscribers with
                           4003 (cluster: a gap that cannot be filled) */
    CON_CHANNELS,       /* chans_ask: list this worker's channels */
    CON_CHANNELS_DONE,  /* chans_ask answered, back to the asker */
    CON_DISCONNECT,     /* disc_ask: close matching connections */
    CON_DISCONNECT_DONE,/* disc_ask answered, back to the asker */
    CON_PROXY,          /* proxy_answer (auth/proxy.h): a backend's verdict */
};

enum worker_msg_type {
    WRK_SHUTDOWN = 1,   /* main -> worker: drain connections (4000) */
    WRK_STOP,           /* main -> worker: every worker drained; exit */
};

/* Where a reply goes: a connection (slot + generation) of a worker, the
 * command id to answer and the reply's reserved send-queue entry. */
typedef struct route {
    uint16_t worker;
    uint8_t api;             /* an API call (api/listen.c), not a connection */
    uint32_t slot;
    uint32_t gen;
    uint32_t cmd_id;         /* API: the call's number on its connection */
    uint64_t seq;
} route;

/* A position in a stream as a client gave it. */
typedef struct stream_pos {
    char epoch[IDS_LEN + 1];
    uint8_t epoch_len;       /* what the client sent, at most IDS_LEN */
    uint64_t offset;
} stream_pos;

/* The head of every request about a channel, and of its reply. */
typedef struct chan_req {
    msg hdr;
    route route;
    const config_ns *ns;     /* the channel's namespace (rules_check) */
    char client[IDS_LEN + 1];
    const char *chan;        /* in the message's own allocation */
    const char *user;        /* "" when anonymous */
    uint16_t chan_len, user_len;
    int code;                /* reply: 0 or an error code */
    const char *errmsg;      /* reply: static text for code, or NULL */
} chan_req;

typedef struct sub_req {
    chan_req h;
    uint64_t token;          /* matches the reply to the subscription */
    uint8_t has_since;
    stream_pos since;
    uint8_t waits;           /* cluster: times the owner waited for its
                                node to catch up with since (kept when the
                                request is handled again) */
    /* reply */
    int8_t recovered;        /* -1 no since, 0, 1 */
    char epoch[IDS_LEN + 1];
    uint64_t top;
    publist pubs;            /* recovered publications, oldest first */
    struct {                 /* the owner's progress through a recovery */
        uint8_t rounds;      /* store reads made */
        uint64_t wfirst;     /* the broker window's first retained offset
                                at the last read (0: not read since the
                                last store read) */
        int16_t read_status; /* the last store read: 0 or an error code */
        uint8_t ahead;       /* reading the window because since is beyond
                                this node's top (cluster) */
    } prog;
} sub_req;

typedef struct pub_req {
    chan_req h;
    pub *p;                  /* the draft; sealed by the broker */
    uint8_t store_where;     /* store reservation (store.h STORE_TO_*), or 0 */
    uint8_t need_draft;      /* the owner wants the sealed draft back */
    /* Idempotent publish (core/idem.h; ikey_len 0: no key). */
    uint8_t ikey_len;
    uint8_t idem_lead;       /* the owner: this request publishes for its
                                key, others with it wait */
    uint8_t idem_found;      /* the broker: the key had been published
                                (Redis's memory, cluster); offset, epoch
                                and idem_first_hash are that publication's,
                                nothing was published */
    uint8_t duplicate;       /* reply: an idempotent repeat (offset and
                                epoch are the first publication's) */
    uint64_t ihash;          /* idem_hash of the data */
    uint64_t idem_first_hash;
    char ikey[PROTO_IDEM_KEY_MAX + 1];
    /* reply */
    uint64_t offset;
    char epoch[IDS_LEN + 1];
} pub_req;

typedef struct hist_req {
    chan_req h;
    uint8_t has_since;
    uint8_t reverse;
    stream_pos since;
    uint32_t limit;
    /* reply */
    char epoch[IDS_LEN + 1];
    uint64_t top;
    publist pubs;
    struct {                 /* the owner's progress through a page */
        uint8_t cont;        /* a forward pass continues after `from` (in
                                the reply's epoch) */
        uint8_t store_done;  /* the store had nothing older: window only */
        uint64_t from;       /* where the store part starts or ends */
        uint64_t snap_top;   /* the window's top when the store was asked */
        int16_t read_status; /* the last store read: 0 or an error code */
    } prog;
} hist_req;

typedef struct pres_req {
    chan_req h;
    /* reply: one block, entries then strings (core/presence.h) */
    proto_presence_entry *entries;
    size_t n_entries;
} pres_req;

/* A publication for this worker's subscribers of its channel. */
typedef struct deliver_msg {
    msg hdr;
    pub *p;
} deliver_msg;

/* A message about a channel: its name in the message's own allocation. */
typedef struct chan_msg {
    msg hdr;
    const char *chan;
    uint16_t chan_len;
} chan_msg;

typedef struct join_msg {
    chan_msg h;
    uint8_t join;            /* 1 join, 0 leave */
    char client[IDS_LEN + 1];
    const char *user;        /* after the channel, in the same allocation */
    uint16_t user_len;
} join_msg;

typedef chan_msg reset_msg;

enum { STORE_TOP_NONE = 0, STORE_TOP_FOUND = 1, STORE_TOP_FAILED = 2 };

typedef struct store_top_msg {
    chan_msg h;
    uint8_t found;           /* STORE_TOP_* */
    char epoch[IDS_LEN + 1];
    uint64_t offset;
} store_top_msg;

/* Questions the server API asks every worker's connections (net/admin.h):
 * answered in place and posted back to the asker's route. */
typedef struct chan_count {
    char *name;              /* owned by the message */
    uint32_t subs;           /* subscriptions on the worker, pending ones
                                included */
} chan_count;

typedef struct chans_ask {
    msg hdr;
    route route;
    char prefix[256];        /* channels starting with it ("" = all) */
    char after[256];         /* and sorting after it ("" = from the first) */
    uint32_t limit;
    /* reply: matching channels, by name, at most limit */
    chan_count *v;
    size_t n;
    uint8_t truncated;       /* more matched */
} chans_ask;

typedef struct disc_ask {
    msg hdr;
    route route;
    char user[256];          /* connections of this user, or "" */
    char client[IDS_LEN + 1];/* or this connection, or "" */
    uint16_t code;           /* close code */
    uint8_t reconnect;       /* told in the disconnect push */
    /* reply */
    uint32_t closed;
} disc_ask;

chans_ask *chans_ask_new(void);
disc_ask *disc_ask_new(void);

/* A durable store's answer for an idempotency key: the newest stored
 * publication of the channel with it (found STORE_TOP_*). */
typedef struct idem_found_msg {
    chan_msg h;
    uint8_t found;
    uint8_t key_len;
    char key[PROTO_IDEM_KEY_MAX + 1];
    char epoch[IDS_LEN + 1];
    uint64_t offset;
    uint64_t hash;
    int64_t time_ms;
} idem_found_msg;

/* A request of `size` bytes (sizeof a family above) for the owner, with
 * type, channel and user copied into the same allocation; zeroed. */
void *chan_req_new(size_t size, uint8_t type, const char *chan,
                   size_t chan_len, const char *user, size_t user_len);

deliver_msg *deliver_msg_new(pub *p);   /* takes a reference of p */
join_msg *join_msg_new(int join, const char *chan, size_t chan_len,
                       const char *client, const char *user,
                       size_t user_len);
reset_msg *reset_msg_new(const char *chan, size_t chan_len);
store_top_msg *store_top_msg_new(const char *chan, size_t chan_len);
idem_found_msg *idem_found_msg_new(const char *chan, size_t chan_len,
                                   const char *key, size_t key_len);

/* Sets a publish request's draft (r->p) for data d, with its
 * idempotency key (len 0: none; valid, proto_idem_key_valid) scoped to
 * its publisher (idem_scoped_key) and the data's hash. */
void pub_req_draft(pub_req *r, const proto_data *d,
                   const proto_client_info *info, proto_slice ikey,
                   proto_slice scope);
msg *worker_msg_new(uint8_t type);

/* 1 when m is a reply for an API call rather than a connection. */
int requests_for_api(const msg *m);
/* Where a reply goes (any request or ask). */
const route *requests_route(const msg *m);

/* The reply type of an owner request type (CON_*). */
uint8_t requests_reply_type(uint8_t own_type);

/* Frees any message and what it holds (publications, snapshots). */
void requests_free(msg *m);

#endif
