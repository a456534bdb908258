/*
 * Unit tests of the pure part of server/store_retention.c: which stored
 * channels a retention pass acts on (namespace rule, durable, age/count
 * set, invalid names never), and the exact find options and deleteMany
 * filters it sends (the tests against a real server are in
 * tests/integration/test_durable_retention.py).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "store/retention.h"
#include "testkit.h"

static config cfg;

static void setup(void)
{
    config_defaults(&cfg);
    cfg.namespaces[0].durable = 1;
    cfg.namespaces[0].retention_count = 3;
    config_ns *c = testkit_add_ns(&cfg, "c");
    c->retention_count = 5;
    c->retention_age = 60;
    config_ns *k = testkit_add_ns(&cfg, "k");
    k->retention_count = 0;
    config_ns *m = testkit_add_ns(&cfg, "m");
    m->durable = 0;
    m->retention_count = 1;
    config_ns *dot = testkit_add_ns(&cfg, "a.b");
    dot->retention_count = 0;
    dot->retention_age = 7;
}

TestSuite(store_retention, .init = setup);

static int of(const char *chan, uint32_t *age, uint32_t *count)
{
    *age = *count = 12345;
    return store_retention_of(&cfg, chan, strlen(chan), age, count);
}

Test(store_retention, wanted_only_with_a_durable_namespace_with_retention)
{
    cr_assert(store_retention_wanted(&cfg));
    config c2;
    config_defaults(&c2);
    cr_assert_not(store_retention_wanted(&c2));
    c2.namespaces[0].retention_age = 10;         /* not durable */
    cr_assert_not(store_retention_wanted(&c2));
    c2.namespaces[0].durable = 1;
    cr_assert(store_retention_wanted(&c2));
    c2.namespaces[0].retention_age = 0;          /* durable, no retention */
    cr_assert_not(store_retention_wanted(&c2));
}

Test(store_retention, channel_to_namespace)
{
    uint32_t age, count;
    cr_assert(of("room", &age, &count));         /* default namespace */
    cr_assert_eq(age, 0);
    cr_assert_eq(count, 3);
    cr_assert(of("c:x", &age, &count));
    cr_assert_eq(age, 60);
    cr_assert_eq(count, 5);
    cr_assert(of("c:x:y", &age, &count), "namespace up to the first ':'");
    cr_assert_eq(count, 5);
    cr_assert(of("a.b:1", &age, &count));
    cr_assert_eq(age, 7);
    cr_assert_eq(count, 0);
    cr_assert_not(of("k:x", &age, &count), "durable without retention");
    cr_assert_not(of("m:x", &age, &count), "not durable");
    cr_assert_not(of("zz:x", &age, &count), "namespace not configured");
    cr_assert_not(of("ab:1", &age, &count), "not a.b");
    cr_assert_not(of("c", &age, &count) && count == 5,
                  "\"c\" alone is in the default namespace");
    cr_assert_not(of("", &age, &count), "empty name");
    cr_assert_not(of("c:bad name", &age, &count), "invalid characters");
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    cr_assert_not(of(long_name, &age, &count), "longer than 255 bytes");
}

static void assert_json(const bson_t *b, const char *want)
{
    char *got = bson_as_canonical_extended_json(b, NULL);
    cr_assert_str_eq(got, want);
    bson_free(got);
}

Test(store_retention, cut_opts)
{
    bson_t o;
    store_retention_cut_opts(&o, 5);
    assert_json(&o, "{ \"sort\" : { \"time\" : { \"$numberInt\" : \"-1\" }, "
                "\"offset\" : { \"$numberInt\" : \"-1\" }, "
                "\"epoch\" : { \"$numberInt\" : \"-1\" } }, "
                "\"projection\" : { \"_id\" : { \"$numberInt\" : \"0\" }, "
                "\"time\" : { \"$numberInt\" : \"1\" }, "
                "\"offset\" : { \"$numberInt\" : \"1\" }, "
                "\"epoch\" : { \"$numberInt\" : \"1\" } }, "
                "\"skip\" : { \"$numberLong\" : \"5\" }, "
                "\"limit\" : { \"$numberLong\" : \"1\" } }");
    bson_destroy(&o);
}

Test(store_retention, filter_nothing_to_delete)
{
    bson_t f;
    cr_assert_eq(store_retention_filter(&f, "c:x", 3, 0, NULL), 0);
    cr_assert_eq(bson_count_keys(&f), 0);
    bson_destroy(&f);
}

Test(store_retention, filter_age_only)
{
    bson_t f;
    cr_assert_eq(store_retention_filter(&f, "c:xy", 3, 1700000000123LL, NULL), 1);
    assert_json(&f, "{ \"channel\" : \"c:x\", \"$or\" : [ { \"time\" : { "
                "\"$lt\" : { \"$date\" : { \"$numberLong\" : \"1700000000123\" "
                "} } } } ] }");
    bson_destroy(&f);
}

Test(store_retention, filter_count_cut_is_lexicographic)
{
    store_retention_cut cut = { 1700000000500LL, 42, "EPOCHxyz", 5 };
    bson_t f;
    cr_assert_eq(store_retention_filter(&f, "room", 4, 0, &cut), 1);
    assert_json(&f,
        "{ \"channel\" : \"room\", \"$or\" : [ "
        "{ \"time\" : { \"$lt\" : { \"$date\" : { \"$numberLong\" : "
        "\"1700000000500\" } } } }, "
        "{ \"time\" : { \"$date\" : { \"$numberLong\" : \"1700000000500\" } }, "
        "\"offset\" : { \"$lt\" : { \"$numberLong\" : \"42\" } } }, "
        "{ \"time\" : { \"$date\" : { \"$numberLong\" : \"1700000000500\" } }, "
        "\"offset\" : { \"$numberLong\" : \"42\" }, "
        "\"epoch\" : { \"$lte\" : \"EPOCH\" } } ] }");
    bson_destroy(&f);
}

Test(store_retention, filter_age_and_count)
{
    store_retention_cut cut = { 2000, 7, "E", 1 };
    bson_t f;
    cr_assert_eq(store_retention_filter(&f, "c:x", 3, 1000, &cut), 1);
    bson_iter_t it, arr;
    cr_assert(bson_iter_init_find(&it, &f, "$or"));
    cr_assert(bson_iter_recurse(&it, &arr));
    int n = 0;
    while (bson_iter_next(&arr))
        n++;
    cr_assert_eq(n, 4, "age, then the three parts of the cut");
    bson_destroy(&f);
}

/* The channel names come from an aggregation read through a cursor (the
 * `distinct` command's single reply document is capped at 16 MiB, which
 * a store with a few hundred thousand channels exceeds on MongoDB). */
Test(store_retention, names_pipeline_from_the_start_and_after_a_name)
{
    bson_t p;
    store_retention_names_pipeline(&p, NULL, 0);
    assert_json(&p, "{ \"0\" : { \"$sort\" : { \"channel\" : "
                "{ \"$numberInt\" : \"1\" } } }, "
                "\"1\" : { \"$group\" : { \"_id\" : \"$channel\" } }, "
                "\"2\" : { \"$sort\" : { \"_id\" : { \"$numberInt\" : \"1\" } } } }");
    bson_destroy(&p);
    store_retention_names_pipeline(&p, "c:x9", 3);
    assert_json(&p, "{ \"0\" : { \"$match\" : { \"channel\" : { \"$gt\" : \"c:x\" } } }, "
                "\"1\" : { \"$sort\" : { \"channel\" : "
                "{ \"$numberInt\" : \"1\" } } }, "
                "\"2\" : { \"$group\" : { \"_id\" : \"$channel\" } }, "
                "\"3\" : { \"$sort\" : { \"_id\" : { \"$numberInt\" : \"1\" } } } }");
    bson_destroy(&p);
    bson_t o;
    store_retention_names_opts(&o);
    assert_json(&o, "{ \"allowDiskUse\" : true, \"batchSize\" : "
                "{ \"$numberInt\" : \"1000\" } }");
    bson_destroy(&o);
}
