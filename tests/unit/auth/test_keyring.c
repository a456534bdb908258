/*
 * Unit tests of server/auth/keyring.c without a JWKS server (the URL's
 * fetch, refresh and rotation are in tests/integration/test_auth_jwks_url.py):
 * the configuration's keys in force, references that outlive a stop, the
 * key named in configuration errors, and a URL nobody answers, which must
 * neither stop the start (beyond its timeout) nor the thread's stop.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/keyring.h"
#include "base/config.h"

static config cfg;

static void setup(void)
{
    config_defaults(&cfg);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
    curl_global_cleanup();
}

TestSuite(keyring, .init = setup, .fini = teardown);

Test(keyring, configuration_keys_are_in_force)
{
    char err[256] = "";
    snprintf(cfg.token_secret, sizeof(cfg.token_secret), "s3cret-s3cret");
    keyring *kr = keyring_start(&cfg, err, sizeof(err));
    cr_assert_not_null(kr, "%s", err);
    jwt_keys *ks = keyring_get(kr);
    cr_assert_eq(jwt_keys_count(ks), 1);
    keyring_stale(kr);                 /* no URL: nothing to fetch */
    keyring_stats st;
    keyring_stats_get(kr, &st);
    cr_assert_eq(st.keys, 1);
    cr_assert_eq(st.fetches, 0);
    keyring_stop(kr);
    /* the reference taken before the stop is still good */
    cr_assert_eq(jwt_keys_count(ks), 1);
    jwt_keys_free(ks);
}

Test(keyring, configuration_errors_name_the_key)
{
    char err[512] = "";
    snprintf(cfg.token_public_key, sizeof(cfg.token_public_key),
             "/nonexistent/key.pem");
    cr_assert_eq(keyring_check(&cfg, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "token_public_key"), "%s", err);
    cr_assert_null(keyring_start(&cfg, err, sizeof(err)));
}

Test(keyring, an_unanswered_url_neither_stops_the_start_nor_the_stop)
{
    char err[256] = "";
    /* port 1 on loopback: refused at once; the timeout bounds the rest */
    snprintf(cfg.token_jwks, sizeof(cfg.token_jwks),
             "http://127.0.0.1:1/jwks.json");
    snprintf(cfg.token_secret, sizeof(cfg.token_secret), "fallback-secret");
    cfg.token_jwks_timeout_ms = 300;
    cr_assert_eq(keyring_check(&cfg, err, sizeof(err)), 0, "%s", err);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    keyring *kr = keyring_start(&cfg, err, sizeof(err));
    cr_assert_not_null(kr, "%s", err);
    keyring_stats st;
    keyring_stats_get(kr, &st);
    cr_assert_geq(st.failures, 1);
    cr_assert_eq(st.keys, 1, "the secret stays in force");
    keyring_stale(kr);
    keyring_stop(kr);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    cr_assert_lt(s, 10.0, "start and stop took %.1f s", s);
}
