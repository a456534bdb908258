/*
 * The memory broker (broker.h): a single node; see memory.c.
 */
#ifndef HERALD_BROKER_MEMORY_H
#define HERALD_BROKER_MEMORY_H

#include <stdint.h>

#include "base/server.h"
#include "broker/broker.h"

/* A memory broker for the owner of worker `worker` (durable streams
 * continue from srv->store when there is one). */
broker *broker_memory_new(server *srv, uint16_t worker);

#endif
