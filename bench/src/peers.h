/*
 * The table of peer drivers for herald-bench --target (peers.c): every
 * driver that is built, NULL-terminated. `herald` is not in it (the bench
 * drives Herald through the C client library directly).
 */
#ifndef HERALD_BENCH_PEERS_H
#define HERALD_BENCH_PEERS_H

#include "peer.h"

extern const peer_driver *const peer_drivers[];

/* The driver named `name`, or NULL. */
const peer_driver *peer_find(const char *name);

#endif
