/* Unit tests of bench/src/report.c: the JSON report writer produces valid
 * JSON (checked with jansson) with commas, nesting, escapes, large
 * integers and non-finite doubles handled, and saves to a file. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

static json_t *parse(const jw *w)
{
    json_error_t err;
    json_t *j = json_loads(w->buf, 0, &err);
    cr_assert(j, "invalid JSON (%s) in: %s", err.text, w->buf);
    return j;
}

Test(bench_report, nested_report_is_valid_json)
{
    jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_kstr(&w, "scenario", "fanout");
    jw_ku64(&w, "deliveries", (uint64_t)INT64_MAX);
    jw_ki64(&w, "neg", -5);
    jw_kdbl(&w, "rate", 1234.5);
    jw_kdbl(&w, "nan", NAN);
    jw_kdbl(&w, "inf", INFINITY);
    jw_kbool(&w, "ok", 1);
    jw_key(&w, "empty");
    jw_obj_begin(&w);
    jw_obj_end(&w);
    jw_key(&w, "servers");
    jw_arr_begin(&w);
    for (int i = 0; i < 3; i++) {
        jw_obj_begin(&w);
        jw_ki64(&w, "pid", 100 + i);
        jw_key(&w, "list");
        jw_arr_begin(&w);
        jw_u64(&w, 1);
        jw_null(&w);
        jw_str(&w, "x");
        jw_arr_end(&w);
        jw_obj_end(&w);
    }
    jw_arr_end(&w);
    jw_key(&w, "after");
    jw_u64(&w, 0);
    jw_obj_end(&w);

    json_t *j = parse(&w);
    cr_assert_str_eq(json_string_value(json_object_get(j, "scenario")),
                     "fanout");
    cr_assert_eq(json_integer_value(json_object_get(j, "neg")), -5);
    cr_assert_float_eq(json_real_value(json_object_get(j, "rate")), 1234.5,
                       1e-9);
    cr_assert(json_is_null(json_object_get(j, "nan")));
    cr_assert(json_is_null(json_object_get(j, "inf")));
    cr_assert(json_is_true(json_object_get(j, "ok")));
    cr_assert_eq(json_array_size(json_object_get(j, "servers")), 3);
    cr_assert_eq(json_integer_value(json_object_get(
                     json_array_get(json_object_get(j, "servers"), 2), "pid")),
                 102);
    cr_assert_eq(json_integer_value(json_object_get(j, "after")), 0);
    cr_assert_eq(json_integer_value(json_object_get(j, "deliveries")),
                 INT64_MAX);
    json_decref(j);
    jw_free(&w);
    /* Beyond jansson's integers, uint64 is still written in full. */
    jw_init(&w);
    jw_u64(&w, UINT64_MAX);
    cr_assert_str_eq(w.buf, "18446744073709551615");
    jw_free(&w);
}

Test(bench_report, strings_are_escaped)
{
    const char *s = "a\"b\\c\nd\te\x01" "f/g \xc3\xa9";
    jw w;
    jw_init(&w);
    jw_obj_begin(&w);
    jw_kstr(&w, "k\"ey", s);
    jw_kstr(&w, "null", NULL);
    jw_obj_end(&w);
    json_t *j = parse(&w);
    cr_assert_str_eq(json_string_value(json_object_get(j, "k\"ey")), s);
    cr_assert(json_is_null(json_object_get(j, "null")));
    json_decref(j);
    jw_free(&w);
}

Test(bench_report, large_reports_grow_and_save)
{
    char path[] = "/tmp/test_bench_report_XXXXXX";
    int fd = mkstemp(path);
    jw w;
    cr_assert_geq(fd, 0);
    close(fd);
    jw_init(&w);
    jw_obj_begin(&w);
    jw_key(&w, "values");
    jw_arr_begin(&w);
    for (int i = 0; i < 20000; i++)
        jw_dbl(&w, i * 0.5);
    jw_arr_end(&w);
    jw_obj_end(&w);
    cr_assert_eq(jw_save(&w, path), 0);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    cr_assert(j, "%s", err.text);
    cr_assert_eq(json_array_size(json_object_get(j, "values")), 20000);
    json_decref(j);
    jw_free(&w);
    unlink(path);
    cr_assert_eq(jw_save(&w, "/nonexistent/dir/x.json"), -1);
}
