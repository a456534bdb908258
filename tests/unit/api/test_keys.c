/*
 * Unit tests of server/api/keys.c: which key an Authorization value
 * carries (scheme, length bounds, several keys), and the per-key token
 * bucket on an explicit clock (burst of one second, refill, the wait a
 * refused request is told, no limit at 0).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "api/keys.h"

#define KEY_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define KEY_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static api_keys *two_keys(uint32_t rate_b)
{
    static config c;
    config_defaults(&c);
    c.n_api_keys = 2;
    strcpy(c.api_keys[0].name, "backend");
    config_api_key_digest(KEY_A, strlen(KEY_A), c.api_keys[0].digest);
    strcpy(c.api_keys[1].name, "jobs");
    config_api_key_digest(KEY_B, strlen(KEY_B), c.api_keys[1].digest);
    c.api_keys[1].rate_limit = rate_b;
    return api_keys_new(&c);
}

static int match(const api_keys *k, const char *auth)
{
    return api_keys_match(k, auth, auth ? strlen(auth) : 0);
}

Test(keys, which_key_an_authorization_carries)
{
    api_keys *k = two_keys(0);
    cr_assert_eq(api_keys_count(k), 2);
    cr_assert_eq(match(k, "apikey " KEY_A), 0);
    cr_assert_eq(match(k, "ApiKey " KEY_B), 1);
    cr_assert_str_eq(api_keys_name(k, 1), "jobs");
    cr_assert_eq(match(k, NULL), -1);
    cr_assert_eq(match(k, ""), -1);
    cr_assert_eq(match(k, "apikey "), -1);
    cr_assert_eq(match(k, "apikey " KEY_A "x"), -1);
    cr_assert_eq(match(k, "apikey " KEY_A " "), -1);
    cr_assert_eq(match(k, "apikey  " KEY_A), -1);
    cr_assert_eq(match(k, "Bearer " KEY_A), -1);
    cr_assert_eq(match(k, KEY_A), -1);
    /* a prefix of a key is not the key */
    cr_assert_eq(match(k, "apikey aaaaaaaaaaaaaaaa"), -1);
    /* longer than any key can be: refused before hashing */
    char big[400] = "apikey ";
    memset(big + 7, 'a', 300);
    big[307] = '\0';
    cr_assert_eq(match(k, big), -1);
    api_keys_free(k);
}

Test(keys, rate_limit_is_a_bucket_of_one_second)
{
    api_keys *k = two_keys(10);
    uint64_t t = 1000000;
    /* no limit on key 0 */
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(api_keys_take(k, 0, t), 0);
    /* ten at once, then the eleventh waits about 100 ms */
    for (int i = 0; i < 10; i++)
        cr_assert_eq(api_keys_take(k, 1, t), 0, "request %d", i);
    uint64_t wait = api_keys_take(k, 1, t);
    cr_assert(wait >= 100 && wait <= 101, "wait %lu", (unsigned long)wait);
    /* 50 ms later: still half a token short */
    wait = api_keys_take(k, 1, t + 50);
    cr_assert(wait >= 50 && wait <= 51, "wait %lu", (unsigned long)wait);
    /* after the wait it was told, one passes, the next waits again */
    cr_assert_eq(api_keys_take(k, 1, t + 50 + wait), 0);
    cr_assert_neq(api_keys_take(k, 1, t + 50 + wait), 0);
    /* a long pause refills to one second's worth, not more */
    t += 60000;
    for (int i = 0; i < 10; i++)
        cr_assert_eq(api_keys_take(k, 1, t), 0, "request %d", i);
    cr_assert_neq(api_keys_take(k, 1, t), 0);
    /* a clock that goes back does not add tokens */
    cr_assert_neq(api_keys_take(k, 1, t - 5000), 0);
    api_keys_free(k);
}
