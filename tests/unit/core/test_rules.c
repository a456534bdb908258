/*
 * Unit tests of server/core/rules.c, the channel rules a requester checks
 * before a request travels: unknown namespaces (102), anonymous clients
 * (103), client publishing (103, not for the server API), history and
 * presence availability (108), the history limit (106), the channel
 * authorization of private namespaces and personal channels (103), and
 * the order in which they apply.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <herald/proto.h>

#include "core/rules.h"
#include "testkit.h"

static config cfg;

static void setup(void)
{
    config_defaults(&cfg);
    /* Written around a default namespace that keeps no history (the
     * built-in default keeps 100 for 120 s): the namespaces below are
     * copies of it. */
    cfg.namespaces[0].history_size = 0;
    cfg.namespaces[0].history_ttl = 0;
    cfg.history_max_limit = 50;
    config_ns *c = testkit_add_ns(&cfg, "chat");
    c->history_size = 10;
    c->presence = 1;
    config_ns *s = testkit_add_ns(&cfg, "secure");
    s->allow_anonymous = 0;
    s->history_size = 10;
    s->presence = 1;
    testkit_add_ns(&cfg, "ro")->allow_publish = 0;
    config_ns *d = testkit_add_ns(&cfg, "d");
    d->durable = 1;   /* no memory history */
    config_ns *p = testkit_add_ns(&cfg, "priv");
    p->private = 1;
    p->history_size = 10;
    p->presence = 1;
    testkit_add_ns(&cfg, "board")->private = 1;
    cfg.namespaces[cfg.n_namespaces - 1].publish_open = 1;
    testkit_add_ns(&cfg, "me")->user_channels = 1;
    config_ns *ib = testkit_add_ns(&cfg, "inbox");
    ib->user_channels = 1;
    ib->private = 1;
}

TestSuite(rules, .init = setup);

static const rules_who anon = { .anonymous = 1, .client = 1 };
static const rules_who user = { .anonymous = 0, .client = 1 };
static const rules_who api = { .anonymous = 0, .client = 0 };

static int check(enum rules_op op, const char *chan, const rules_who *who,
                 uint32_t limit, int have_store)
{
    const config_ns *ns = (const config_ns *)1;
    int rc = rules_check(&cfg, op, chan, strlen(chan), who, limit,
                         have_store, &ns);
    if (rc == PROTO_E_BAD_CHANNEL)
        cr_assert_null(ns, "no namespace for %s", chan);
    else
        cr_assert_not_null(ns, "the namespace of %s", chan);
    return rc;
}

Test(rules, namespaces)
{
    cr_assert_eq(check(RULES_SUBSCRIBE, "news", &anon, 0, 0), 0, "default");
    cr_assert_eq(check(RULES_SUBSCRIBE, "chat:lobby", &anon, 0, 0), 0);
    cr_assert_eq(check(RULES_SUBSCRIBE, "nope:x", &user, 0, 0),
                 PROTO_E_BAD_CHANNEL);
    cr_assert_eq(check(RULES_PUBLISH, "nope:x", &api, 0, 0),
                 PROTO_E_BAD_CHANNEL);
    const config_ns *ns = NULL;
    cr_assert_eq(rules_check(&cfg, RULES_SUBSCRIBE, "chat:a", 6, &anon, 0, 0,
                             &ns), 0);
    cr_assert_str_eq(ns->name, "chat");
}

Test(rules, anonymous_clients)
{
    for (int op = RULES_SUBSCRIBE; op <= RULES_PRESENCE; op++) {
        cr_assert_eq(check(op, "secure:x", &anon, 0, 0), PROTO_E_PERMISSION,
                     "op %d", op);
        cr_assert_eq(check(op, "secure:x", &user, 0, 0), 0, "op %d", op);
    }
}

Test(rules, publishing)
{
    cr_assert_eq(check(RULES_PUBLISH, "ro:x", &user, 0, 0),
                 PROTO_E_PERMISSION, "clients may not publish there");
    cr_assert_eq(check(RULES_PUBLISH, "ro:x", &api, 0, 0), 0,
                 "allow_publish restricts clients, not the server API");
    cr_assert_eq(check(RULES_PUBLISH, "chat:x", &anon, 0, 0), 0);
}

Test(rules, history)
{
    cr_assert_eq(check(RULES_HISTORY, "chat:x", &anon, 50, 0), 0);
    cr_assert_eq(check(RULES_HISTORY, "chat:x", &anon, 51, 0), PROTO_E_LIMIT);
    cr_assert_eq(check(RULES_HISTORY, "news", &anon, 10, 0),
                 PROTO_E_NOT_AVAILABLE, "no history in the default namespace");
    cr_assert_eq(check(RULES_HISTORY, "d:x", &anon, 10, 0),
                 PROTO_E_NOT_AVAILABLE, "durable without a store");
    cr_assert_eq(check(RULES_HISTORY, "d:x", &anon, 10, 1), 0,
                 "durable with a store: history without a ring");
    cr_assert_eq(check(RULES_HISTORY, "news", &anon, 51, 0),
                 PROTO_E_NOT_AVAILABLE, "108 before 106");
    cr_assert_eq(check(RULES_HISTORY, "secure:x", &anon, 51, 0),
                 PROTO_E_PERMISSION, "103 before 106");
    cr_assert_eq(rules_history_default_limit(&cfg), 50,
                 "the default limit is at most history_max_limit");
    cfg.history_max_limit = 1000;
    cr_assert_eq(rules_history_default_limit(&cfg), 100);
}

Test(rules, presence)
{
    cr_assert_eq(check(RULES_PRESENCE, "chat:x", &anon, 0, 0), 0);
    cr_assert_eq(check(RULES_PRESENCE, "news", &anon, 0, 0),
                 PROTO_E_NOT_AVAILABLE);
}

Test(rules, grants_and_personal_channel_names)
{
    cr_assert(rules_grant_covers("priv:a", "priv:a", 6));
    cr_assert(!rules_grant_covers("priv:a", "priv:ab", 7));
    cr_assert(!rules_grant_covers("priv:ab", "priv:a", 6));
    cr_assert(rules_grant_covers("priv:*", "priv:", 5));
    cr_assert(rules_grant_covers("priv:*", "priv:xyz", 8));
    cr_assert(!rules_grant_covers("priv:*", "priv", 4));
    cr_assert(rules_grant_covers("*", "anything", 8));
    cr_assert(!rules_grant_covers("a*b", "axb", 3), "only a trailing *");
    size_t n;
    const char *u = rules_channel_user("me:x#42", 7, &n);
    cr_assert(u && n == 2 && !memcmp(u, "42", 2));
    u = rules_channel_user("me:a#b#c", 8, &n);
    cr_assert(u && n == 1 && *u == 'c', "the last #");
    u = rules_channel_user("me:x#", 5, &n);
    cr_assert(u && n == 0, "an empty user");
    cr_assert_null(rules_channel_user("me:x", 4, &n));
    cr_assert_eq(n, 0);
}

static int who_check(enum rules_op op, const char *chan, const char *uid,
                     char *const *grants, uint32_t n, int tok, int subd)
{
    rules_who w = { .anonymous = uid == NULL, .client = 1, .user = uid,
                    .grants = grants, .n_grants = n, .channel_token = tok,
                    .subscribed = subd };
    return check(op, chan, &w, 0, 0);
}

Test(rules, private_namespaces)
{
    char *g[] = { "priv:a", "priv:team-*" };
    enum rules_op ops[] = { RULES_SUBSCRIBE, RULES_PUBLISH, RULES_HISTORY,
                            RULES_PRESENCE };
    for (int i = 0; i < 4; i++) {
        enum rules_op op = ops[i];
        cr_assert_eq(who_check(op, "priv:a", "u", NULL, 0, 0, 0), 103);
        cr_assert_eq(who_check(op, "priv:a", NULL, NULL, 0, 0, 0), 103);
        cr_assert_eq(who_check(op, "priv:a", "u", g, 2, 0, 0), 0);
        cr_assert_eq(who_check(op, "priv:team-1", "u", g, 2, 0, 0), 0);
        cr_assert_eq(who_check(op, "priv:b", "u", g, 2, 0, 0), 103);
        cr_assert_eq(who_check(op, "priv:b", "u", NULL, 0, 1, 0), 0, "channel token");
        /* a subscription opens everything but another subscribe */
        cr_assert_eq(who_check(op, "priv:b", "u", NULL, 0, 0, 1),
                     op == RULES_SUBSCRIBE ? 103 : 0);
        /* the server API is not bound by it */
        cr_assert_eq(check(op, "priv:b", &api, 0, 0), 0);
    }
    /* publish_open: publishing needs nothing, reading still does */
    cr_assert_eq(who_check(RULES_PUBLISH, "board:x", "u", NULL, 0, 0, 0), 0);
    cr_assert_eq(who_check(RULES_PUBLISH, "board:x", NULL, NULL, 0, 0, 0), 0);
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "board:x", "u", NULL, 0, 0, 0), 103);
    /* other namespaces are open */
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "chat:x", "u", NULL, 0, 0, 0), 0);
}

Test(rules, user_channels)
{
    char *g[] = { "me:*" };
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "me:n#alice", "alice", NULL, 0, 0, 0), 0);
    cr_assert_eq(who_check(RULES_PUBLISH, "me:n#alice", "alice", NULL, 0, 0, 0), 0);
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "me:n#alice", "bob", NULL, 0, 0, 0), 103);
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "me:n#alice", "alic", NULL, 0, 0, 0), 103);
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "me:n#alice", "alice2", NULL, 0, 0, 0), 103);
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "me:n#alice", NULL, NULL, 0, 0, 0), 103);
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "me:n#", NULL, NULL, 0, 0, 0), 103,
                 "an empty user is nobody's, not the anonymous one's");
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "me:n#alice", "bob", g, 1, 0, 0), 0);
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "me:n#alice", "bob", NULL, 0, 1, 0), 0);
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "me:open", "bob", NULL, 0, 0, 0), 0);
    /* private and personal */
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "inbox:#alice", "alice", NULL, 0, 0, 0), 0);
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "inbox:shared", "alice", NULL, 0, 0, 0), 103);
    /* '#' means nothing where user_channels is off */
    cr_assert_eq(who_check(RULES_SUBSCRIBE, "chat:x#alice", "bob", NULL, 0, 0, 0), 0);
}
