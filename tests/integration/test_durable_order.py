"""Durable history when publications reach the store out of offset order
(issue 11, defect 3): with two writers, two nodes, or a spill file replayed
while newer publications are written, a channel's later documents can be
in MongoDB before its earlier ones. A recovery that reads such a range
while the earlier ones are still on their way must not be told that they
are gone (recovered:false / 111): the store is behind, which is 108 "not
available" (retry), and once the writes have landed the same recovery
returns every publication with recovered:true.

Two herald nodes on one Redis and one FerretDB; node A reaches FerretDB
through a TCP proxy (cluster_harness.TcpProxy) that the test cuts, so A's
publications go to A's spill file while B's are written; healing the proxy
lets A replay them behind B's.
"""

import asyncio

import cluster_harness as ch
import herald_harness as hh
from ferret_harness import ferretdb  # noqa: F401 (fixture)
from herald_harness import t

make_redis = ch.redis_factory_fixture()

RING = 10          # history_size; the Redis window is max(RING, 64)
FIRST = 20         # published on A while A cannot reach the store
LATER = 100        # published on B afterwards (the store has these first)


def node_config(uri, **extra):
    cfg = {
        "mongodb": uri,
        "history_max_limit": 500,
        "namespaces": [{"name": "d", "history_size": RING, "durable": True}],
    }
    cfg.update(extra)
    return cfg


def mongo_uri(port):
    return ("mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=1000"
            "&connectTimeoutMS=1000&socketTimeoutMS=2000" % port)


def stored_offsets(fd, channel):
    coll = fd.client().herald.publications
    return sorted(d["offset"] for d in coll.find({"channel": channel}, {"offset": 1}))


async def publish_range(c, channel, lo, hi):
    replies = await c.batch([("publish", {"channel": channel, "data": {"i": i}})
                             for i in range(lo, hi)])
    assert all("ok" in r for r in replies), [r for r in replies if "ok" not in r][:3]
    return replies


async def test_recovery_while_earlier_publications_land_late(
        server_factory, make_redis, ferretdb):
    redis = make_redis()
    proxy = ch.TcpProxy(ferretdb.port)
    try:
        a = server_factory(node_config(mongo_uri(proxy.port), node_name="node-a"),
                           args=["--redis", redis.url], name="node-a")
        b = server_factory(node_config(mongo_uri(ferretdb.port), node_name="node-b"),
                           args=["--redis", redis.url], name="node-b")
        chan = hh.chan("d:")
        ca, cb = await a.client(), await b.client()

        proxy.cut()
        first = await publish_range(ca, chan, 0, FIRST)
        epoch = first[0]["ok"]["epoch"]
        assert [r["ok"]["offset"] for r in first] == list(range(1, FIRST + 1))
        await hh.async_wait_for(lambda: a.healthz()[1]["store"]["spilled"] == FIRST,
                                t(10), what=lambda: "A's publications spilled: %r"
                                % a.healthz()[1]["store"])
        await publish_range(cb, chan, FIRST, FIRST + LATER)
        top = FIRST + LATER
        await hh.async_wait_for(
            lambda: len(stored_offsets(ferretdb, chan)) == LATER, t(10),
            what="B's publications stored")
        assert stored_offsets(ferretdb, chan) == list(range(FIRST + 1, top + 1))

        # The store has 21..120, A still holds 1..20: a recovery from 0 or
        # from 5 reads a range whose start has not landed yet. Not gone.
        for since in (0, 5):
            c = await b.client()
            r = await c.call("subscribe", channel=chan, timeout=t(15),
                             since={"offset": since, "epoch": epoch})
            assert "error" in r or r["ok"]["recovered"] is True, \
                "since %d answered as lost while the store was behind: %r" % (
                    since, {k: v for k, v in r.get("ok", {}).items()
                            if k != "publications"})
            if "error" in r:
                assert r["error"]["code"] == 108, r
            await c.close()

        proxy.heal()
        await hh.async_wait_for(
            lambda: len(stored_offsets(ferretdb, chan)) == top, t(20),
            what=lambda: "A's spill replayed (%d stored)" % len(stored_offsets(ferretdb, chan)))
        assert stored_offsets(ferretdb, chan) == list(range(1, top + 1))
        for node in (a, b):
            for since in (0, 5):
                c = await node.client()
                ok = await c.ok("subscribe", channel=chan,
                                since={"offset": since, "epoch": epoch})
                assert ok["recovered"] is True and ok["offset"] == top, \
                    (node.name, since, ok["recovered"], ok["offset"])
                assert [p["offset"] for p in ok["publications"]] == \
                    list(range(since + 1, top + 1))
                assert [p["data"]["i"] for p in ok["publications"]] == \
                    list(range(since, top))
                await c.close()
    finally:
        proxy.close()


async def test_a_waiting_read_does_not_hold_up_other_channels(
        server_factory, make_redis, ferretdb):
    """One reader thread; a recovery across a hole in the store (cluster
    mode: other nodes' writers may still fill it, so the read waits up to
    3 s before it answers 108) must not delay another channel's recovery,
    which the store can answer at once."""
    redis = make_redis()
    s = server_factory(node_config(mongo_uri(ferretdb.port), mongodb_readers=1,
                                   log_level="debug"),
                       args=["--redis", redis.url])
    hole, fine = hh.chan("d:"), hh.chan("d:")
    c = await s.client()
    epochs = {}
    for chan in (hole, fine):
        replies = await publish_range(c, chan, 0, 120)
        epochs[chan] = replies[0]["ok"]["epoch"]
    await hh.async_wait_for(
        lambda: len(stored_offsets(ferretdb, hole)) == 120 and
        len(stored_offsets(ferretdb, fine)) == 120, t(10), what="all stored")
    ferretdb.client().herald.publications.delete_many(
        {"channel": hole, "offset": {"$gte": 30, "$lte": 40}})

    waiting = await s.client()
    _, cmd, hole_reply = waiting.start("subscribe", channel=hole,
                                       since={"offset": 5, "epoch": epochs[hole]})
    await waiting.send(cmd)

    def hole_read_waits():
        return any(line.get("msg", "").startswith("MongoDB: a read waits") and
                   line.get("channel") == hole for line in s.log_lines())
    await hh.async_wait_for(hole_read_waits, t(5), what="the hole's read waiting")

    other = await s.client()
    _, cmd, fine_reply = other.start("subscribe", channel=fine,
                                     since={"offset": 5, "epoch": epochs[fine]})
    await other.send(cmd)
    done, _ = await asyncio.wait([hole_reply, fine_reply], timeout=t(15),
                                 return_when=asyncio.FIRST_COMPLETED)
    assert fine_reply in done and hole_reply not in done, \
        "the other channel's recovery waited behind the waiting read"
    ok = fine_reply.result()["ok"]
    assert ok["recovered"] is True
    assert [p["offset"] for p in ok["publications"]] == list(range(6, 121))
    r = await asyncio.wait_for(hole_reply, t(15))
    assert r["error"]["code"] == 108, r
