"""Cluster mode when Redis's operator (or a failover) does something the
nodes did not ask for, during a steady stream of publications:

* SCRIPT FLUSH: the nodes' Lua scripts are gone. The next script call gets
  NOSCRIPT; the node drops the link and reconnects (which loads the scripts
  again) instead of answering 108 forever.
* CLIENT KILL TYPE pubsub: Redis closes every pub/sub connection. The
  nodes reconnect and fill their subscribers' gaps from the hot window: no
  subscriber is disconnected and every acknowledged publication arrives.

Publishers, subscribers and checks are those of test_cluster_faults.py.
"""

import asyncio

import pytest

import cluster_harness as ch
import herald_harness as hh
import test_cluster_faults as cf
from herald_harness import t

make_cluster = ch.cluster_factory_fixture()


async def _steady(cl):
    chname = hh.chan("h:")
    subs = [await cf.ResilientSub([cl[0]], chname, "json", "sub-A").start(),
            await cf.ResilientSub([cl[1]], chname, "msgpack", "sub-B").start()]
    pubs = [await cf.Publisher(cl[1], chname, "B", 100).start()]
    await hh.async_wait_for(lambda: len(pubs[0].oks()) >= 30, t(5),
                            what="30 publishes ok")
    return subs, pubs


@pytest.mark.timeout(60)
async def test_script_flush_reloads_scripts(make_cluster):
    cl = make_cluster(cf.config(500), n=2)
    subs, pubs = await _steady(cl)
    cl.redis[0].command("SCRIPT", "FLUSH")
    flushed = cf.now()
    # publishing goes on: the link comes back with the scripts loaded
    await hh.async_wait_for(lambda: pubs[0].oks_sent_after(flushed + t(0.5)) >= 30,
                            t(10), what="30 publishes ok after SCRIPT FLUSH")
    await cf.finish(cl, subs, pubs, window_covers=True)
    reasons = [str(l.get("reason", "")) for n in cl for l in n.log_lines()]
    assert any("scripts missing" in r for r in reasons), \
        "no node logged the missing scripts: %r" % reasons


@pytest.mark.timeout(60)
async def test_pubsub_connections_killed_by_redis(make_cluster):
    cl = make_cluster(cf.config(500), n=2)
    subs, pubs = await _steady(cl)
    killed = cl.redis[0].command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed >= 2, "expected the nodes' pub/sub connections, killed %r" % killed
    after = cf.now()
    await hh.async_wait_for(lambda: pubs[0].oks_sent_after(after + t(0.5)) >= 30,
                            t(10), what="30 publishes ok after the kill")
    # the gap while each node resubscribed came from the window
    await cf.finish(cl, subs, pubs, window_covers=True)


PRESENCE_BATCH = 256     # client/user pairs per refresh script call


@pytest.mark.timeout(90)
async def test_presence_refresh_of_a_large_channel_is_chunked(make_cluster):
    """A node renews its presence entries of a channel every presence_ttl/3
    with a script. With every local member in one EVALSHA, a channel of
    100,000 present clients would be one 200,000-argument command and one
    script holding Redis for its whole run; the refresh goes in batches of
    at most 256 members instead. Redis's SLOWLOG (threshold 0: every
    command) shows the argument counts; every member is still renewed.
    When that node dies, another node with a subscriber sweeps all its
    expired entries (at most 256 per script call)."""
    cfg = dict(cf.config(2000), presence_ttl=2)
    cfg["namespaces"] = cfg["namespaces"] + [{"name": "pres", "presence": True}]
    cl = make_cluster(cfg, n=2)
    redis = cl.redis[0]
    node = cl[0]
    chname = hh.chan("pres:")
    n = PRESENCE_BATCH + 44

    async def member(i):
        c = await node.client()
        await c.ok("connect", token=hh.make_jwt(cf.SECRET, sub="u%d" % i))
        await c.ok("subscribe", channel=chname)
        return c
    members = []
    for start in range(0, n, 50):
        members += await asyncio.gather(*(member(i) for i in range(start, min(n, start + 50))))
    redis.command("CONFIG", "SET", "slowlog-max-len", "100000")
    redis.command("SLOWLOG", "RESET")
    redis.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    ptkey = ch.stream_key(chname, "herald", "pt")

    def refresh_calls():
        calls = []
        for e in redis.command("SLOWLOG", "GET", "100000"):
            args = e[3]
            if args[0].upper() != b"EVALSHA" or len(args) < 6 or args[3] != ptkey.encode() \
                    or args[5] != b"2000":
                continue   # not the refresh of this channel (join: a client id there)
            more = 0
            if args[-1].startswith(b"... (") and args[-1].endswith(b" more arguments)"):
                more = int(args[-1].split()[1].lstrip(b"("))
                args = args[:-1]
            calls.append(len(args) + more)
        return calls

    def renewed():
        return sum(argc - 8 for argc in refresh_calls()) // 2
    # two refresh periods' worth of renewals
    await hh.async_wait_for(lambda: renewed() >= 2 * n, t(10), interval=0.2,
                            what=lambda: "two presence refreshes in the slow log (%d renewals)"
                            % renewed())
    redis.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
    sizes = refresh_calls()
    print("refresh calls (argument counts):", sizes)
    assert max(sizes) <= 3 + 5 + 2 * PRESENCE_BATCH, \
        "a refresh call carried %d arguments (%d members)" % (max(sizes), (max(sizes) - 8) // 2)
    present = await members[0].ok("presence", channel=chname)
    assert len(present["clients"]) == n, len(present["clients"])

    # node A dies; B, which has a subscriber, sweeps A's n expired entries
    obs = await cl[1].client()
    await obs.ok("connect", token=hh.make_jwt(cf.SECRET, sub="obs"))
    await obs.ok("subscribe", channel=chname)
    assert redis.command("ZCARD", ptkey) == n + 1
    node.kill()
    await hh.async_wait_for(lambda: redis.command("ZCARD", ptkey) == 1, t(15), interval=0.2,
                            what=lambda: "B to sweep A's expired entries (left %d)"
                            % redis.command("ZCARD", ptkey))
    assert (await obs.ok("presence", channel=chname))["clients"].keys() == {obs.client_id}
