/*
 * Unit tests of server/base/admit.c: the cap on open connections per
 * address, the token bucket of new connections (refill over time, never
 * above the burst), how addresses are keyed (IPv4 and IPv4-mapped IPv6
 * alike, IPv6 per /64), the sweep of idle addresses, and the table bound
 * (past it, admitted untracked).
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "base/admit.h"

static struct sockaddr_storage v4(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    cr_assert_eq(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    cr_assert_eq(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    return ss;
}

#define SA(x) ((struct sockaddr *)&(x))

Test(admit, off_when_both_limits_are_zero)
{
    cr_assert_null(admit_new(0, 0, 100));
    void *t = (void *)1;
    struct sockaddr_storage a = v4("10.0.0.1");
    cr_assert_eq(admit_take(NULL, SA(a), 0, &t), ADMIT_OK);
    cr_assert_null(t);
    admit_release(NULL, NULL);
}

Test(admit, cap_on_open_connections_per_address)
{
    admit *ad = admit_new(3, 0, 100);
    struct sockaddr_storage a = v4("10.0.0.1"), b = v4("10.0.0.2");
    void *t[4];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(admit_take(ad, SA(a), 0, &t[i]), ADMIT_OK);
        cr_assert_not_null(t[i]);
    }
    cr_assert_eq(admit_take(ad, SA(a), 0, &t[3]), ADMIT_TOO_MANY);
    cr_assert_null(t[3]);
    void *tb;
    cr_assert_eq(admit_take(ad, SA(b), 0, &tb), ADMIT_OK, "others unaffected");
    admit_release(ad, t[1]);
    cr_assert_eq(admit_take(ad, SA(a), 0, &t[1]), ADMIT_OK, "a slot came back");
    cr_assert_eq(admit_take(ad, SA(a), 0, &t[3]), ADMIT_TOO_MANY);
    admit_free(ad);
}

Test(admit, rate_is_a_token_bucket)
{
    admit *ad = admit_new(0, 5, 100);
    struct sockaddr_storage a = v4("192.0.2.7");
    void *t;
    for (int i = 0; i < 5; i++)
        cr_assert_eq(admit_take(ad, SA(a), 1000, &t), ADMIT_OK, "burst %d", i);
    cr_assert_eq(admit_take(ad, SA(a), 1000, &t), ADMIT_TOO_FAST);
    /* 5 a second: one more every 200 ms. */
    cr_assert_eq(admit_take(ad, SA(a), 1199, &t), ADMIT_TOO_FAST);
    cr_assert_eq(admit_take(ad, SA(a), 1200, &t), ADMIT_OK);
    cr_assert_eq(admit_take(ad, SA(a), 1200, &t), ADMIT_TOO_FAST);
    /* A long pause refills to the burst, not beyond. */
    int ok = 0;
    for (int i = 0; i < 20; i++)
        ok += admit_take(ad, SA(a), 100000, &t) == ADMIT_OK;
    cr_assert_eq(ok, 5);
    admit_free(ad);
}

Test(admit, keys_ipv4_mapped_alike_and_ipv6_per_64)
{
    admit *ad = admit_new(1, 0, 100);
    struct sockaddr_storage a = v4("198.51.100.1");
    struct sockaddr_storage am = v6("::ffff:198.51.100.1");
    struct sockaddr_storage p1 = v6("2001:db8:1:2::1");
    struct sockaddr_storage p2 = v6("2001:db8:1:2:ffff::9");
    struct sockaddr_storage q = v6("2001:db8:1:3::1");
    void *t;
    cr_assert_eq(admit_take(ad, SA(a), 0, &t), ADMIT_OK);
    cr_assert_eq(admit_take(ad, SA(am), 0, &t), ADMIT_TOO_MANY,
                 "the mapped form is the same address");
    cr_assert_eq(admit_take(ad, SA(p1), 0, &t), ADMIT_OK);
    cr_assert_eq(admit_take(ad, SA(p2), 0, &t), ADMIT_TOO_MANY, "same /64");
    cr_assert_eq(admit_take(ad, SA(q), 0, &t), ADMIT_OK, "another /64");
    cr_assert_eq(admit_addrs(ad), 3);
    admit_free(ad);
}

Test(admit, sweep_forgets_idle_addresses_once_refilled)
{
    admit *ad = admit_new(10, 2, 100);
    struct sockaddr_storage a = v4("10.1.1.1"), b = v4("10.1.1.2");
    void *ta, *tb;
    cr_assert_eq(admit_take(ad, SA(a), 0, &ta), ADMIT_OK);
    cr_assert_eq(admit_take(ad, SA(b), 0, &tb), ADMIT_OK);
    admit_release(ad, tb);
    admit_sweep(ad, 100);
    cr_assert_eq(admit_addrs(ad), 2, "b's allowance is still refilling");
    admit_sweep(ad, 500);
    cr_assert_eq(admit_addrs(ad), 1, "b refilled and idle: forgotten");
    admit_sweep(ad, 100000);
    cr_assert_eq(admit_addrs(ad), 1, "a holds a connection");
    admit_release(ad, ta);
    admit_sweep(ad, 100001);
    cr_assert_eq(admit_addrs(ad), 0);
    admit_free(ad);
}

Test(admit, full_table_admits_untracked)
{
    admit *ad = admit_new(1, 0, 2);
    struct sockaddr_storage a = v4("10.2.0.1"), b = v4("10.2.0.2"),
                            c = v4("10.2.0.3");
    void *t;
    cr_assert_eq(admit_take(ad, SA(a), 0, &t), ADMIT_OK);
    cr_assert_eq(admit_take(ad, SA(b), 0, &t), ADMIT_OK);
    cr_assert_eq(admit_take(ad, SA(c), 0, &t), ADMIT_OK);
    cr_assert_null(t, "no room: not tracked");
    cr_assert_eq(admit_take(ad, SA(c), 0, &t), ADMIT_OK, "nor limited");
    cr_assert_eq(admit_addrs(ad), 2);
    cr_assert_eq(admit_take(ad, SA(a), 0, &t), ADMIT_TOO_MANY,
                 "tracked ones still are");
    admit_free(ad);
}
