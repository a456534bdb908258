/*
 * This node's state as the server API shows it (node.h).
 */
#include "core/node.h"

#include "store/store.h"

json_t *node_info(const server *srv)
{
    int cluster = srv->cfg->n_redis > 0;
    int down = cluster && atomic_load(&srv->broker_down) > 0;
    json_t *o = json_pack(
        "{s:s,s:s,s:I,s:i,s:i,s:i,s:s}", "node", srv->node, "version",
        HERALD_VERSION, "uptime_s",
        (json_int_t)((server_now_ms(srv) - srv->started_ms) / 1000),
        "connections", (int)atomic_load(&srv->connections), "workers",
        (int)srv->n_workers, "channels", (int)atomic_load(&srv->channels),
        "broker", !cluster ? "memory" : down ? "down" : "up");
    const store *st = srv->store;
    json_object_set_new(o, "store",
                        !st ? json_string("none")
                        : store_failing(st) ? json_string("failing")
                                            : json_string("ok"));
    return o;
}
