/*
 * The Lua scripts of cluster mode (scripts.h). Each runs atomically in
 * Redis, which is what makes one offset order for every node: the publish
 * script numbers a publication, appends it to the hot window and
 * publishes it in one step.
 */
#include "broker/redis/scripts.h"

#define SCRIPT_STR_(x) #x
#define SCRIPT_STR(x) SCRIPT_STR_(x)

/* The stream's epoch (KEYS[1] field e), created with the candidate epoch
 * ARGV[1] and an empty window (KEYS[2]) when the stream does not exist. */
#define LUA_STREAM \
    "local e = redis.call('HGET', KEYS[1], 'e')\n" \
    "if not e then\n" \
    "  e = ARGV[1]\n" \
    "  redis.call('DEL', KEYS[2])\n" \
    "  redis.call('HSET', KEYS[1], 'e', e, 't', 0)\n" \
    "end\n"

/* KEYS: stream hash, window, and for an idempotent publish the key's
 * record. ARGV: candidate epoch, record body, window size, stream ttl (s),
 * pub/sub channel, then with a key: its window (ms) and the data's hash.
 * Returns {offset, epoch}, or {offset, epoch, hash} of the publication
 * the key already made (nothing is published: two nodes racing with one
 * key publish once, the script being atomic). */
static const char SCRIPT_PUB[] =
    "if #KEYS == 3 then\n"
    "  local v = redis.call('GET', KEYS[3])\n"
    "  if v then\n"
    "    local o, ep, h = string.match(v, '^(%d+):([^:]+):(.*)$')\n"
    "    if o then return {tonumber(o), ep, h} end\n"
    "  end\n"
    "end\n"
    LUA_STREAM
    "local off = redis.call('HINCRBY', KEYS[1], 't', 1)\n"
    "local rec = string.format('%d', off) .. ':' .. e .. ':' .. ARGV[2]\n"
    "redis.call('ZADD', KEYS[2], off, rec)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', off - tonumber(ARGV[3]))\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "redis.call('PUBLISH', ARGV[5], rec)\n"
    "if #KEYS == 3 then\n"
    "  redis.call('SET', KEYS[3], string.format('%d', off) .. ':' .. e .. ':' "
    ".. ARGV[7], 'NX', 'PX', ARGV[6])\n"
    "end\n"
    "return {off, e}\n";

/* KEYS: stream hash, window. ARGV: candidate epoch, stream ttl, first
 * offset wanted, limit, reverse (0/1), keep (the newest `keep` records
 * count as retained; 0 = none, -1 = the whole window). Creates the stream
 * when missing. Returns {epoch, top, first offset in the window (0 =
 * empty), records}. */
static const char SCRIPT_RANGE[] =
    LUA_STREAM
    "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
    "local t = tonumber(redis.call('HGET', KEYS[1], 't'))\n"
    "local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')\n"
    "local f = 0\n"
    "if first[2] then f = tonumber(first[2]) end\n"
    "local keep = tonumber(ARGV[6])\n"
    "local lo = tonumber(ARGV[3])\n"
    "if keep == 0 or ARGV[4] == '0' then return {e, t, f, {}} end\n"
    "if keep > 0 and t - keep + 1 > lo then lo = t - keep + 1 end\n"
    "local r\n"
    "if ARGV[5] == '1' then\n"
    "  r = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', lo, 'LIMIT', 0, ARGV[4])\n"
    "else\n"
    "  r = redis.call('ZRANGEBYSCORE', KEYS[2], lo, '+inf', 'LIMIT', 0, ARGV[4])\n"
    "end\n"
    "return {e, t, f, r}\n";

/* Presence. KEYS: expiry zset, user hash. Redis's clock for expiry, so
 * nodes' clocks do not matter. */
#define LUA_NOW \
    "local tm = redis.call('TIME')\n" \
    "local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)\n"

/* ARGV: client, user, ttl ms, pub/sub channel, announce (0/1). */
static const char SCRIPT_JOIN[] =
    LUA_NOW
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)\n"
    "redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]) * 2)\n"
    "if ARGV[5] == '1' then\n"
    "  redis.call('PUBLISH', ARGV[4], 'J:' .. ARGV[1] .. ':' .. ARGV[2])\n"
    "end\n"
    "return 1\n";

/* ARGV: client, pub/sub channel, announce. */
static const char SCRIPT_LEAVE[] =
    "local u = redis.call('HGET', KEYS[2], ARGV[1])\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "if u and ARGV[3] == '1' then\n"
    "  redis.call('PUBLISH', ARGV[2], 'L:' .. ARGV[1] .. ':' .. u)\n"
    "end\n"
    "return 1\n";

/* ARGV: ttl ms, pub/sub channel, announce, then client, user pairs of
 * this node (a batch of them: a node sends its entries in several calls).
 * Renews them (an entry that had gone, after a partition or a Redis
 * restart without data, is announced as joining again), then removes
 * (and announces) up to SCRIPT_REFRESH_SWEEP expired entries, which are
 * those of nodes that stopped refreshing, and returns how many (that many:
 * the node sweeps on with calls of no pairs). */
static const char SCRIPT_REFRESH[] =
    LUA_NOW
    "local ttl = tonumber(ARGV[1])\n"
    "for i = 4, #ARGV, 2 do\n"
    "  local new = redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])\n"
    "  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])\n"
    "  if new == 1 and ARGV[3] == '1' then\n"
    "    redis.call('PUBLISH', ARGV[2], 'J:' .. ARGV[i] .. ':' .. ARGV[i + 1])\n"
    "  end\n"
    "end\n"
    "local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, "
    SCRIPT_STR(SCRIPT_REFRESH_SWEEP) ")\n"
    "for _, c in ipairs(dead) do\n"
    "  local u = redis.call('HGET', KEYS[2], c)\n"
    "  redis.call('ZREM', KEYS[1], c)\n"
    "  redis.call('HDEL', KEYS[2], c)\n"
    "  if ARGV[3] == '1' then\n"
    "    redis.call('PUBLISH', ARGV[2], 'L:' .. c .. ':' .. (u or ''))\n"
    "  end\n"
    "end\n"
    "if #ARGV >= 4 then\n"
    "  redis.call('PEXPIRE', KEYS[1], ttl * 2)\n"
    "  redis.call('PEXPIRE', KEYS[2], ttl * 2)\n"
    "end\n"
    "return #dead\n";

/* Returns client, user pairs of the live entries. */
static const char SCRIPT_QUERY[] =
    LUA_NOW
    "local c = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')\n"
    "local out = {}\n"
    "for _, id in ipairs(c) do\n"
    "  out[#out + 1] = id\n"
    "  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''\n"
    "end\n"
    "return out\n";

/* Webhooks (occupancy.c). KEYS: the channel's member set, the member's
 * channel set. ARGV: member, channel, add (1) or remove (0). Returns 1
 * when this call made the channel's set non-empty (add) or empty
 * (remove): only then is occupied or vacated made. */
static const char SCRIPT_OCC[] =
    "if ARGV[3] == '1' then\n"
    "  local n = redis.call('SADD', KEYS[1], ARGV[1])\n"
    "  redis.call('SADD', KEYS[2], ARGV[2])\n"
    "  if n == 1 and redis.call('SCARD', KEYS[1]) == 1 then return 1 end\n"
    "  return 0\n"
    "end\n"
    "local n = redis.call('SREM', KEYS[1], ARGV[1])\n"
    "redis.call('SREM', KEYS[2], ARGV[2])\n"
    "if n == 1 and redis.call('SCARD', KEYS[1]) == 0 then return 1 end\n"
    "return 0\n";

/* KEYS: the member's lease, the members set. ARGV: member, ttl ms.
 * Returns whether the lease still existed. */
static const char SCRIPT_LEASE[] =
    "local had = redis.call('EXISTS', KEYS[1])\n"
    "redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])\n"
    "redis.call('SADD', KEYS[2], ARGV[1])\n"
    "return had\n";

/* KEYS: the members set. ARGV: prefix, the calling member, budget. For
 * members without a lease: pops up to budget of their channels (removing
 * them from each channel's set) and clients, and returns triples: 'V',
 * channel, '' for a channel whose set became empty; 'D', client, user for
 * a client; a last triple 'M', '', '' when the budget ran out (there may
 * be more). A member with nothing left leaves the members set. The keys
 * of dead members are derived here (a dead member's names cannot be
 * known by the caller before the call). Atomic: what one call popped no
 * other call reports. */
static const char SCRIPT_REAP[] =
    "local p = ARGV[1]\n"
    "local budget = tonumber(ARGV[3])\n"
    "local out = {}\n"
    "for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  if budget <= 0 then break end\n"
    "  if m ~= ARGV[2] and "
    "redis.call('EXISTS', p .. ':!hk:' .. m .. ':lease') == 0 then\n"
    "    local ck = p .. ':!hk:' .. m .. ':chans'\n"
    "    local hk = p .. ':!hk:' .. m .. ':clients'\n"
    "    local chans = redis.call('SPOP', ck, budget)\n"
    "    for _, ch in ipairs(chans) do\n"
    "      local sk = p .. ':{' .. ch .. '}:nodes'\n"
    "      if redis.call('SREM', sk, m) == 1 and "
    "redis.call('SCARD', sk) == 0 then\n"
    "        out[#out + 1] = 'V'\n"
    "        out[#out + 1] = ch\n"
    "        out[#out + 1] = ''\n"
    "      end\n"
    "    end\n"
    "    budget = budget - #chans\n"
    "    if budget > 0 then\n"
    "      local kv = redis.call('HRANDFIELD', hk, budget, 'WITHVALUES')\n"
    "      for i = 1, #kv, 2 do\n"
    "        redis.call('HDEL', hk, kv[i])\n"
    "        out[#out + 1] = 'D'\n"
    "        out[#out + 1] = kv[i]\n"
    "        out[#out + 1] = kv[i + 1]\n"
    "      end\n"
    "      budget = budget - #kv / 2\n"
    "    end\n"
    "    if redis.call('EXISTS', ck) == 0 and "
    "redis.call('EXISTS', hk) == 0 then\n"
    "      redis.call('SREM', KEYS[1], m)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if budget <= 0 then\n"
    "  out[#out + 1] = 'M'\n"
    "  out[#out + 1] = ''\n"
    "  out[#out + 1] = ''\n"
    "end\n"
    "return out\n";

const char *const redis_scripts[SC_N] = {
    SCRIPT_PUB, SCRIPT_RANGE, SCRIPT_JOIN, SCRIPT_LEAVE, SCRIPT_REFRESH,
    SCRIPT_QUERY, SCRIPT_OCC, SCRIPT_LEASE, SCRIPT_REAP,
};
