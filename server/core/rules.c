/*
 * Channel rules (rules.h). The order of the checks is the order of the
 * error codes a client sees when several apply.
 */
#include "core/rules.h"

#include <herald/proto.h>

int rules_check(const config *cfg, enum rules_op op, const char *chan,
                size_t len, const rules_who *who, uint32_t limit,
                int have_store, const config_ns **ns_out)
{
    const config_ns *ns = config_ns_of_channel(cfg, chan, len);
    *ns_out = ns;
    if (!ns)
        return PROTO_E_BAD_CHANNEL;
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
