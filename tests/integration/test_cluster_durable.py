"""Durable history in cluster mode (issue 5): two herald nodes on one Redis
(offsets from Redis) and one MongoDB-protocol store (FerretDB). The node
that publishes writes the publication to the store, exactly once; history
and recovery older than the Redis hot window come from the store on any
node, in one offset space with the window; ack=durable replies after the
store has it.
"""

import cluster_harness as ch
import herald_harness as hh
from ferret_harness import ferretdb  # noqa: F401 (fixture)
from herald_harness import t

make_cluster = ch.cluster_factory_fixture()

RING = 10   # history_size; the Redis window holds max(RING, 64)


def config(fd):
    return {
        "mongodb": fd.uri("", serverSelectionTimeoutMS=1000,
                          connectTimeoutMS=1000, socketTimeoutMS=2000),
        "history_max_limit": 500,
        "namespaces": [{"name": "d", "history_size": RING, "durable": True},
                       {"name": "a", "history_size": RING, "durable": True,
                        "ack": "durable"}],
    }


def docs(fd, channel):
    coll = fd.client().herald.publications
    return sorted(coll.find({"channel": channel}, {"_id": 0, "offset": 1, "epoch": 1}),
                  key=lambda d: d["offset"])


def offsets(pubs):
    return [p["offset"] for p in pubs]


async def publish_n(c, channel, lo, hi):
    replies = await c.batch([("publish", {"channel": channel, "data": {"i": i}})
                             for i in range(lo, hi)])
    assert all("ok" in r for r in replies), [r for r in replies if "ok" not in r][:3]
    return replies


async def test_cluster_durable_history_and_recovery(make_cluster, ferretdb):
    cl = make_cluster(config(ferretdb), n=2)
    a, b = cl.nodes
    ch_ = hh.chan("d:")
    ca, cb = await a.client(), await b.client()
    sub = await b.client()
    ok = await sub.ok("subscribe", channel=ch_)
    epoch = ok["epoch"]
    await publish_n(ca, ch_, 0, 5)
    assert offsets(await sub.pubs(5)) == [1, 2, 3, 4, 5]
    await sub.close()
    # 300 more, from both nodes: far beyond the window and the ring
    for lo in range(5, 305, 50):
        await publish_n(ca if lo % 100 else cb, ch_, lo, lo + 50)
    hh.wait_for(lambda: len(docs(ferretdb, ch_)) == 305, t(20), what="all stored")
    got = docs(ferretdb, ch_)
    assert [d["offset"] for d in got] == list(range(1, 306))      # exactly once
    assert {d["epoch"] for d in got} == {epoch}

    back = await b.client(enc="msgpack")
    ok = await back.ok("subscribe", channel=ch_, since={"offset": 5, "epoch": epoch})
    assert ok["recovered"] is True and ok["offset"] == 305, {k: ok[k] for k in ("recovered", "offset")}
    assert offsets(ok["publications"]) == list(range(6, 306))
    assert [p["data"]["i"] for p in ok["publications"]] == list(range(5, 305))
    await ca.call("publish", channel=ch_, data={"i": 305})
    assert offsets(await back.pubs(1)) == [306]

    # history from either node pages across store and window
    for node_client in (ca, cb):
        out = await hh.history_from(node_client, ch_, epoch, 0, 70)
        assert offsets(out) == list(range(1, 307))
    page = await cb.ok("history", channel=ch_, limit=100, reverse=True)
    assert offsets(page["publications"]) == list(range(306, 206, -1))
    page = await ca.ok("history", channel=ch_, limit=8)
    assert offsets(page["publications"]) == list(range(1, 9))
    page = await ca.ok("history", channel=ch_, limit=0)
    assert page["publications"] == [] and page["offset"] == 306
    # nothing stored before the window (the newest RING): its oldest
    ferretdb.client().herald.publications.delete_many(
        {"channel": ch_, "offset": {"$lte": 296}})
    page = await cb.ok("history", channel=ch_, limit=8)
    assert offsets(page["publications"]) == list(range(297, 305))


async def test_cluster_ack_durable(make_cluster, ferretdb):
    cl = make_cluster(config(ferretdb), n=2)
    a, b = cl.nodes
    ch_ = hh.chan("a:")
    ca = await a.client()
    for i in range(20):
        r = await ca.call("publish", channel=ch_, data={"i": i})
        assert r["ok"]["offset"] == i + 1, r
        # acknowledged means stored
        assert [d["offset"] for d in docs(ferretdb, ch_)][-1] == i + 1
    cb = await b.client()
    page = await cb.ok("history", channel=ch_, limit=20)
    assert offsets(page["publications"]) == list(range(1, 21))
