/*
 * web/cache.c: validators (ETag, Last-Modified) and when a conditional
 * request is answered 304.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "web/cache.h"

Test(web_cache, http_dates_round_trip)
{
    char d[WEB_DATE_MAX];
    web_http_date(d, 784111777);
    cr_assert_str_eq(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    int64_t t = 0;
    cr_assert_eq(web_http_date_parse(d, &t), 0);
    cr_assert_eq(t, 784111777);
    web_http_date(d, 1796584448);
    cr_assert_eq(web_http_date_parse(d, &t), 0);
    cr_assert_eq(t, 1796584448);
}

Test(web_cache, other_date_forms_are_not_parsed)
{
    int64_t t;
    cr_assert_eq(web_http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", &t), -1);
    cr_assert_eq(web_http_date_parse("Sun Nov  6 08:49:37 1994", &t), -1);
    cr_assert_eq(web_http_date_parse("Sun, 06 Nov 1994 08:49:37 UTC", &t), -1);
    cr_assert_eq(web_http_date_parse("Sun, 06 Xyz 1994 08:49:37 GMT", &t), -1);
    cr_assert_eq(web_http_date_parse("Sun, 06 Nov 1994 25:49:37 GMT", &t), -1);
    cr_assert_eq(web_http_date_parse("", &t), -1);
    cr_assert_eq(web_http_date_parse("Sat, 31 Feb 2026 08:49:37 GMT", &t), -1);
    cr_assert_eq(web_http_date_parse("Sat, 06 Nov 1994 08:49:60 GMT", &t), -1);
}

Test(web_cache, etag_changes_with_each_part)
{
    char a[WEB_ETAG_MAX], b[WEB_ETAG_MAX];
    web_etag(a, 1, 2, 3);
    cr_assert_eq(a[0], '"');
    cr_assert_eq(a[strlen(a) - 1], '"');
    web_etag(b, 1, 2, 4);
    cr_assert_str_neq(a, b);
    web_etag(b, 1, 3, 3);
    cr_assert_str_neq(a, b);
    web_etag(b, 2, 2, 3);
    cr_assert_str_neq(a, b);
    web_etag(b, UINT64_MAX, UINT64_MAX, INT64_MAX);
    cr_assert_lt(strlen(b), WEB_ETAG_MAX);
}

Test(web_cache, if_none_match)
{
    const char *e = "\"1-2-3\"";
    cr_assert_eq(web_not_modified("\"1-2-3\"", NULL, e, 10), 1);
    cr_assert_eq(web_not_modified("W/\"1-2-3\"", NULL, e, 10), 1);
    cr_assert_eq(web_not_modified("\"x\", \"1-2-3\"", NULL, e, 10), 1);
    cr_assert_eq(web_not_modified("*", NULL, e, 10), 1);
    cr_assert_eq(web_not_modified("\"1-2-4\"", NULL, e, 10), 0);
    cr_assert_eq(web_not_modified("\"1-2-3", NULL, e, 10), 0);
    cr_assert_eq(web_not_modified("1-2-3", NULL, e, 10), 0);
    cr_assert_eq(web_not_modified("", NULL, e, 10), 0);
    /* with If-None-Match, If-Modified-Since is not looked at */
    cr_assert_eq(web_not_modified("\"other\"",
                                  "Sun, 06 Nov 1994 08:49:37 GMT", e, 10), 0);
}

Test(web_cache, if_modified_since)
{
    const char *e = "\"1-2-3\"";
    const char *d = "Sun, 06 Nov 1994 08:49:37 GMT";    /* 784111777 */
    cr_assert_eq(web_not_modified(NULL, d, e, 784111777), 1);
    cr_assert_eq(web_not_modified(NULL, d, e, 784111776), 1);
    cr_assert_eq(web_not_modified(NULL, d, e, 784111778), 0);
    cr_assert_eq(web_not_modified(NULL, "yesterday", e, 1), 0);
    cr_assert_eq(web_not_modified(NULL, NULL, e, 1), 0);
}
