/*
 * The peer drivers herald-bench knows (--target NAME). A driver adds its
 * line here, and its source to bench/CMakeLists.txt, once it compiles.
 */
#include "peers.h"

#include <string.h>

const peer_driver *const peer_drivers[] = {
    &peer_nchan,
    &peer_centrifugo,
    &peer_socketio,
    NULL
};

const peer_driver *peer_find(const char *name)
{
    for (size_t i = 0; peer_drivers[i]; i++)
        if (!strcmp(peer_drivers[i]->name, name))
            return peer_drivers[i];
    return NULL;
}
