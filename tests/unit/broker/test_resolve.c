/*
 * The address a Redis link connects to (broker/redis/resolve.c): the name
 * is resolved off the worker's loop and hiredis is handed a numeric
 * address, so its own getaddrinfo never asks a resolver. That the loop is
 * not blocked while a resolver is slow is tested end to end in
 * tests/integration/test_cluster_resolve.py.
 */
#include "broker/redis/resolve.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* A getaddrinfo-like list of the given numeric addresses, in order. */
typedef struct fake_list {
    struct addrinfo ai[8];
    struct sockaddr_storage ss[8];
} fake_list;

static struct addrinfo *fake(fake_list *f, const char *const *addrs, size_t n,
                             int socktype)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        struct addrinfo *a = &f->ai[i];
        a->ai_socktype = socktype;
        a->ai_addr = (struct sockaddr *)&f->ss[i];
        if (strchr(addrs[i], ':')) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&f->ss[i];
            s6->sin6_family = AF_INET6;
            cr_assert_eq(inet_pton(AF_INET6, addrs[i], &s6->sin6_addr), 1);
            a->ai_family = AF_INET6;
            a->ai_addrlen = sizeof(*s6);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&f->ss[i];
            s4->sin_family = AF_INET;
            cr_assert_eq(inet_pton(AF_INET, addrs[i], &s4->sin_addr), 1);
            a->ai_family = AF_INET;
            a->ai_addrlen = sizeof(*s4);
        }
        a->ai_next = i + 1 < n ? &f->ai[i + 1] : NULL;
    }
    return n ? &f->ai[0] : NULL;
}

Test(resolve, numeric_hosts_need_no_resolution)
{
    cr_assert(resolve_is_numeric("127.0.0.1"));
    cr_assert(resolve_is_numeric("10.0.0.5"));
    cr_assert(resolve_is_numeric("::1"));
    cr_assert(resolve_is_numeric("fe80::1:2"));
    cr_assert(!resolve_is_numeric("localhost"));
    cr_assert(!resolve_is_numeric("redis.internal"));
    cr_assert(!resolve_is_numeric("10.0.0"));   /* getaddrinfo would look it up */
    cr_assert(!resolve_is_numeric(""));
}

Test(resolve, ipv4_first_then_ipv6_in_turn)
{
    static const char *const addrs[] = { "2001:db8::7", "10.0.0.5",
                                         "10.0.0.6" };
    fake_list f;
    struct addrinfo *res = fake(&f, addrs, 3, SOCK_STREAM);
    char out[RESOLVE_ADDR_MAX];
    static const char *const want[] = { "10.0.0.5", "10.0.0.6",
                                        "2001:db8::7", "10.0.0.5" };
    for (uint32_t nth = 0; nth < 4; nth++) {
        cr_assert_eq(resolve_pick(res, nth, out, sizeof(out)), 0);
        cr_assert_str_eq(out, want[nth], "attempt %u", nth);
        cr_assert(resolve_is_numeric(out));
    }
}

Test(resolve, nothing_usable_is_an_error)
{
    char out[RESOLVE_ADDR_MAX];
    cr_assert_eq(resolve_pick(NULL, 0, out, sizeof(out)), -1);
    static const char *const addrs[] = { "10.0.0.5" };
    fake_list f;
    cr_assert_eq(resolve_pick(fake(&f, addrs, 1, SOCK_DGRAM), 0, out,
                              sizeof(out)), -1);
    /* any socket type (0) counts as usable */
    cr_assert_eq(resolve_pick(fake(&f, addrs, 1, 0), 0, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "10.0.0.5");
    cr_assert_eq(resolve_pick(fake(&f, addrs, 1, 0), 0, out, 8), -1);
}
