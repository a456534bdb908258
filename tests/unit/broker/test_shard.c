/*
 * The shard of a channel in cluster mode (broker/redis/redis.c) is
 * FNV-1a-32 of its name modulo the number of servers, which every node and
 * every version must compute alike (docs/configuration.md, `redis`).
 * Everything that talks to Redis is tested against a real redis-server in
 * tests/integration/test_cluster*.py.
 */
#include "broker/redis/redis.h"

#include <criterion/criterion.h>
#include <string.h>

Test(shard, shard_is_fnv1a_32_of_the_name)
{
    /* Published FNV-1a 32-bit test vectors. */
    cr_assert_eq(redis_shard("", 0, UINT32_MAX), 0x811c9dc5u % UINT32_MAX);
    cr_assert_eq(redis_shard("a", 1, UINT32_MAX), 0xe40c292cu);
    cr_assert_eq(redis_shard("foobar", 6, UINT32_MAX), 0xbf9cf968u);
    cr_assert_eq(redis_shard("foobar", 6, 7), 0xbf9cf968u % 7);
}

Test(shard, one_server_takes_every_channel)
{
    static const char *const names[] = { "a", "chat:lobby", "news", "x.y" };
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(redis_shard(names[i], strlen(names[i]), 1), 0);
}

Test(shard, channels_spread_over_servers)
{
    unsigned hits[4] = { 0 };
    char name[32];
    for (int i = 0; i < 4000; i++) {
        int n = snprintf(name, sizeof name, "chan.%d", i);
        hits[redis_shard(name, (size_t)n, 4)]++;
    }
    for (int s = 0; s < 4; s++)
        cr_assert(hits[s] > 800 && hits[s] < 1200, "server %d got %u", s,
                  hits[s]);
}
