/*
 * Channel rules (rules.h). The order of the checks is the order of the
 * error codes a client sees when several apply.
 */
#include "core/rules.h"

#include <string.h>

#include <herald/proto.h>

int rules_grant_covers(const char *grant, const char *chan, size_t len)
{
    size_t g = strlen(grant);
    if (g && grant[g - 1] == '*')
        return len >= g - 1 && memcmp(grant, chan, g - 1) == 0;
    return g == len && memcmp(grant, chan, len) == 0;
}

const char *rules_channel_user(const char *chan, size_t len, size_t *ulen)
{
    const char *hash = NULL;
    for (size_t i = len; i > 0; i--)
        if (chan[i - 1] == '#') {
            hash = chan + i - 1;
            break;
        }
    if (!hash) {
        *ulen = 0;
        return NULL;
    }
    *ulen = len - (size_t)(hash + 1 - chan);
    return hash + 1;
}

/* The channel authorization of a client: 0 or PROTO_E_PERMISSION. A
 * personal channel ("...#U" in a user_channels namespace) is open to user
 * U; any other channel of a private namespace, or another user's personal
 * channel, needs a grant of the connection token, a channel token with the
 * command, or (everything but subscribe) a subscription made that way. */
static int rules_access(const config_ns *ns, enum rules_op op,
                        const char *chan, size_t len, const rules_who *who)
{
    /* Where the backend decides (proxy mode), it is asked instead. */
    if ((op == RULES_SUBSCRIBE && ns->proxy_subscribe) ||
        (op == RULES_PUBLISH && ns->proxy_publish))
        return 0;
    int closed = ns->private && !(op == RULES_PUBLISH && ns->publish_open);
    if (ns->user_channels) {
        size_t ulen;
        const char *u = rules_channel_user(chan, len, &ulen);
        if (u) {
            if (who->user && strlen(who->user) == ulen &&
                memcmp(who->user, u, ulen) == 0)
                return 0;
            closed = 1;
        }
    }
    if (!closed || who->channel_token ||
        (op != RULES_SUBSCRIBE && who->subscribed))
        return 0;
    for (uint32_t i = 0; i < who->n_grants; i++)
        if (rules_grant_covers(who->grants[i], chan, len))
            return 0;
    return PROTO_E_PERMISSION;
}

int rules_check(const config *cfg, enum rules_op op, const char *chan,
                size_t len, const rules_who *who, uint32_t limit,
                int have_store, const config_ns **ns_out)
{
    const config_ns *ns = config_ns_of_channel(cfg, chan, len);
    *ns_out = ns;
    if (!ns)
        return PROTO_E_BAD_CHANNEL;
    return rules_check_ns(cfg, ns, op, chan, len, who, limit, have_store);
}

int rules_check_ns(const config *cfg, const config_ns *ns, enum rules_op op,
                   const char *chan, size_t len, const rules_who *who,
                   uint32_t limit, int have_store)
{
    if (who->client && (ns->private || ns->user_channels)) {
        int code = rules_access(ns, op, chan, len, who);
        if (code)
            return code;
    }
    switch (op) {
    case RULES_PUBLISH:
        if ((who->client && !ns->allow_publish) ||
            (who->anonymous && !ns->allow_anonymous))
            return PROTO_E_PERMISSION;
        return 0;
    case RULES_SUBSCRIBE:
        return who->anonymous && !ns->allow_anonymous ? PROTO_E_PERMISSION
                                                      : 0;
    case RULES_HISTORY:
        if (who->anonymous && !ns->allow_anonymous)
            return PROTO_E_PERMISSION;
        if (ns->history_size == 0 && !(ns->durable && have_store))
            return PROTO_E_NOT_AVAILABLE;
        if (limit > cfg->history_max_limit)
            return PROTO_E_LIMIT;
        return 0;
    case RULES_PRESENCE:
        if (who->anonymous && !ns->allow_anonymous)
            return PROTO_E_PERMISSION;
        return ns->presence ? 0 : PROTO_E_NOT_AVAILABLE;
    }
    return PROTO_E_BAD_REQUEST;
}

uint32_t rules_history_default_limit(const config *cfg)
{
    return cfg->history_max_limit < 100 ? cfg->history_max_limit : 100;
}
