/*
 * Address choice for the Redis links (resolve.h).
 */
#include "broker/redis/resolve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int resolve_is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

/* The nth usable address of one family (counting from 0), or NULL; *n is
 * set to how many that family has. */
static const struct addrinfo *resolve_nth(const struct addrinfo *res,
                                          int family, uint32_t nth,
                                          uint32_t *n)
{
    const struct addrinfo *hit = NULL;
    *n = 0;
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family != family || !a->ai_addr ||
            (a->ai_socktype && a->ai_socktype != SOCK_STREAM))
            continue;
        if (*n == nth)
            hit = a;
        (*n)++;
    }
    return hit;
}

int resolve_pick(const struct addrinfo *res, uint32_t nth, char *out,
                 size_t cap)
{
    uint32_t n4, n6;
    resolve_nth(res, AF_INET, UINT32_MAX, &n4);
    resolve_nth(res, AF_INET6, UINT32_MAX, &n6);
    if (n4 + n6 == 0 || cap < RESOLVE_ADDR_MAX)
        return -1;
    uint32_t i = nth % (n4 + n6);
    const struct addrinfo *a =
        i < n4 ? resolve_nth(res, AF_INET, i, &n4)
               : resolve_nth(res, AF_INET6, i - n4, &n6);
    const void *src = a->ai_family == AF_INET
        ? (const void *)&((const struct sockaddr_in *)a->ai_addr)->sin_addr
        : (const void *)&((const struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
    return inet_ntop(a->ai_family, src, out, (socklen_t)cap) ? 0 : -1;
}
