/*
 * Admission per source address: an optional cap on the connections one
 * address holds open and on the new connections it makes per second
 * (max_connections_per_ip, connection_rate_per_ip; both off by default).
 * Checked when a socket is accepted, before any memory is spent on it, so
 * half-open handshakes count too. IPv4 addresses count one by one
 * (IPv4-mapped IPv6 ones as IPv4); IPv6 addresses count per /64, the block
 * one host is usually given. Shared by the workers' listeners: a mutex
 * guards the table, whose idle entries are swept once a second.
 */
#ifndef HERALD_BASE_ADMIT_H
#define HERALD_BASE_ADMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct admit admit;

enum admit_verdict { ADMIT_OK = 0, ADMIT_TOO_MANY = 1, ADMIT_TOO_FAST = 2 };

/* NULL when both limits are 0 (off). max_addrs bounds the table: past it
 * new addresses are admitted untracked (ticket NULL). */
admit *admit_new(uint32_t max_per_addr, uint32_t rate_per_s,
                 size_t max_addrs);
void admit_free(admit *a);

/* A new connection from sa: ADMIT_OK with *ticket to give back to
 * admit_release() when it closes (NULL: untracked, nothing to give back),
 * or the reason it is refused. now_ms: a monotonic clock. */
int admit_take(admit *a, const struct sockaddr *sa, uint64_t now_ms,
               void **ticket);
void admit_release(admit *a, void *ticket);

/* Forgets addresses with no connection whose rate allowance is whole
 * again. */
void admit_sweep(admit *a, uint64_t now_ms);

/* Addresses in the table. */
size_t admit_addrs(admit *a);

#endif
