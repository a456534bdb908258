/*
 * Choosing the address a link connects to (pure; link.c resolves the name
 * on the loop's thread pool and connects to the numeric address, because
 * hiredis 0.14's redisAsyncConnect would run a blocking getaddrinfo on the
 * worker's loop at every reconnect).
 */
#ifndef HERALD_BROKER_REDIS_RESOLVE_H
#define HERALD_BROKER_REDIS_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

#include <netdb.h>

/* Room for any numeric address, NUL included. */
#define RESOLVE_ADDR_MAX 46

/* 1 when host is a numeric IPv4 or IPv6 address: nothing to resolve, and
 * hiredis's own getaddrinfo on it returns without asking a resolver. */
int resolve_is_numeric(const char *host);

/* The address to connect to among what getaddrinfo returned: the IPv4
 * addresses first (the order in which hiredis tries families), then IPv6,
 * the nth of them modulo their number (so that successive reconnects try
 * each in turn). Writes it numeric into out. -1 when res holds no TCP
 * address of either family. */
int resolve_pick(const struct addrinfo *res, uint32_t nth, char *out,
                 size_t cap);

#endif
