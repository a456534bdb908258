"""Durable history, read side (issue 5): `history` and `subscribe` with
`since` serve the memory ring first and read older positions from MongoDB
(a real FerretDB) on reader threads; one offset space across both, with
pagination (`limit`, `reverse`) across the boundary, across restarts, and
honest answers when the store cannot say (108) or the data is gone
(recovered:false / 111).
"""

import asyncio

import msgpack

import herald_harness as hh
from ferret_harness import ferretdb  # noqa: F401 (fixture)
from herald_harness import t

RING = 10   # history_size of the durable namespace: the hot cache


def config(fd, **extra):
    cfg = {
        "mongodb": fd.uri("", serverSelectionTimeoutMS=1000,
                          connectTimeoutMS=1000, socketTimeoutMS=2000),
        "history_max_limit": 500,
        "namespaces": [{"name": "d", "history_size": RING, "durable": True},
                       {"name": "z", "history_size": 0, "durable": True}],
    }
    cfg.update(extra)
    return cfg


def stored(fd, channel):
    return fd.client().herald.publications.count_documents({"channel": channel})


async def publish_n(c, channel, n, first=0):
    replies = []
    for lo in range(first, first + n, 100):
        hi = min(first + n, lo + 100)
        replies += await c.batch([("publish", {"channel": channel, "data": {"i": i}})
                                  for i in range(lo, hi)])
    assert all("ok" in r for r in replies), [r for r in replies if "ok" not in r][:3]
    return replies


def offsets(pubs):
    return [p["offset"] for p in pubs]


def datas(pubs):
    return [p["data"]["i"] for p in pubs]


async def test_history_after_restart_returns_everything_stored(server_factory, ferretdb):
    """Publish N, restart herald: history pages through all N with the same
    epoch and offsets, byte-exact, forward and reverse, in both encodings."""
    n = 250
    cfg = config(ferretdb)
    s = server_factory(cfg)
    ch = hh.chan("d:")
    pub = await s.client()
    replies = await publish_n(pub, ch, n)
    epoch = replies[0]["ok"]["epoch"]
    hh.wait_for(lambda: stored(ferretdb, ch) == n, t(15), what="all stored")
    await pub.close()
    s.stop()

    s2 = server_factory(cfg)
    c = await s2.client()
    first = await c.ok("history", channel=ch, limit=100)
    assert first["epoch"] == epoch and first["offset"] == n
    got = first["publications"]
    got += await hh.history_from(c, ch, epoch, got[-1]["offset"], 100)
    assert offsets(got) == list(range(1, n + 1))
    assert datas(got) == list(range(n))
    assert {p["epoch"] for p in got} == {epoch}
    rev = await c.ok("history", channel=ch, limit=30, reverse=True)
    assert offsets(rev["publications"]) == list(range(n, n - 30, -1))
    mp = await s2.client(enc="msgpack")
    page = await mp.ok("history", channel=ch, limit=5,
                       since={"offset": 100, "epoch": epoch})
    assert offsets(page["publications"]) == [101, 102, 103, 104, 105]
    assert [msgpack.unpackb(msgpack.packb(p["data"])) for p in page["publications"]] == \
        [{"i": i} for i in range(100, 105)]
    # and the stream goes on where it was
    r = await c.call("publish", channel=ch, data={"i": n})
    assert r["ok"] == {"offset": n + 1, "epoch": epoch}


async def test_recovery_beyond_the_hot_cache_comes_from_the_store(server_factory, ferretdb):
    """A subscriber misses far more than the ring holds and gets every one
    back, in order, recovered:true, then live publications after them."""
    s = server_factory(config(ferretdb))
    ch = hh.chan("d:")
    sub = await s.client()
    ok = await sub.ok("subscribe", channel=ch)
    epoch = ok["epoch"]
    pub = await s.client()
    await publish_n(pub, ch, 5)
    assert offsets(await sub.pubs(5)) == [1, 2, 3, 4, 5]
    await sub.close()

    await publish_n(pub, ch, 300, first=5)          # missed: 6..305
    hh.wait_for(lambda: stored(ferretdb, ch) == 305, t(15), what="all stored")
    back = await s.client(enc="msgpack")
    ok = await back.ok("subscribe", channel=ch, since={"offset": 5, "epoch": epoch})
    assert ok["recovered"] is True and ok["offset"] == 305 and ok["epoch"] == epoch
    assert offsets(ok["publications"]) == list(range(6, 306))
    assert datas(ok["publications"]) == list(range(5, 305))
    await pub.call("publish", channel=ch, data={"i": 305})
    assert offsets(await back.pubs(1)) == [306]


async def test_recovery_while_publishing_has_no_gap_or_duplicate(server_factory, ferretdb):
    """Recovery reads run while the stream moves on: the reply and the
    live pushes after it are exactly the offsets after since, once each."""
    s = server_factory(config(ferretdb))
    ch = hh.chan("d:")
    pub = await s.client()
    replies = await publish_n(pub, ch, 200)
    epoch = replies[0]["ok"]["epoch"]
    hh.wait_for(lambda: stored(ferretdb, ch) == 200, t(15), what="all stored")

    async def keep_publishing():
        for i in range(200, 400):
            r = await pub.call("publish", channel=ch, data={"i": i})
            assert "ok" in r, r

    task = asyncio.ensure_future(keep_publishing())
    subs = []
    for since in (3, 50, 120):
        c = await s.client()
        ok = await c.ok("subscribe", channel=ch, since={"offset": since, "epoch": epoch})
        assert ok["recovered"] is True, ok
        assert offsets(ok["publications"]) == list(range(since + 1, ok["offset"] + 1))
        subs.append((c, ok["offset"]))
    await task
    for c, top in subs:
        live = await c.pubs(400 - top)
        assert offsets(live) == list(range(top + 1, 401))


async def test_pagination_across_the_ring_boundary(server_factory, ferretdb):
    """Pages of 7, forward from any position and in reverse, cross the
    boundary between the store and the ring without a gap or repeat."""
    s = server_factory(config(ferretdb))
    ch = hh.chan("d:")
    c = await s.client()
    replies = await publish_n(c, ch, 40)      # ring holds 31..40
    epoch = replies[0]["ok"]["epoch"]
    hh.wait_for(lambda: stored(ferretdb, ch) == 40, t(15), what="all stored")
    for start in (0, 20, 27, 29, 30, 35):
        got = await hh.history_from(c, ch, epoch, start, 7)
        assert offsets(got) == list(range(start + 1, 41)), start
    # reverse: newest first, pages going down across the ring's start
    page = await c.ok("history", channel=ch, limit=15, reverse=True)
    assert offsets(page["publications"]) == list(range(40, 25, -1))
    page = await c.ok("history", channel=ch, limit=15, reverse=True,
                      since={"offset": 28, "epoch": epoch})
    assert offsets(page["publications"]) == list(range(40, 28, -1))
    # without since: the oldest stored first, not the ring's oldest
    page = await c.ok("history", channel=ch, limit=12)
    assert offsets(page["publications"]) == list(range(1, 13))
    # limit 0: just the position, nothing read
    page = await c.ok("history", channel=ch, limit=0, since={"offset": 3, "epoch": epoch})
    assert page["publications"] == [] and page["offset"] == 40


async def test_durable_namespace_without_memory_ring(server_factory, ferretdb):
    """history_size 0 on a durable namespace: history and recovery come
    from the store alone."""
    s = server_factory(config(ferretdb))
    ch = hh.chan("z:")
    c = await s.client()
    replies = await publish_n(c, ch, 30)
    epoch = replies[0]["ok"]["epoch"]
    hh.wait_for(lambda: stored(ferretdb, ch) == 30, t(15), what="all stored")
    page = await c.ok("history", channel=ch, limit=10, since={"offset": 12, "epoch": epoch})
    assert offsets(page["publications"]) == list(range(13, 23))
    ok = await c.ok("subscribe", channel=ch, since={"offset": 25, "epoch": epoch})
    assert ok["recovered"] is True and offsets(ok["publications"]) == [26, 27, 28, 29, 30]


async def test_trimmed_start_is_not_recovered(server_factory, ferretdb):
    """When the oldest documents are gone (retention), a position before
    them answers recovered:false (subscribe) and 111 (history): never a
    silent gap."""
    s = server_factory(config(ferretdb))
    ch = hh.chan("d:")
    c = await s.client()
    replies = await publish_n(c, ch, 60)
    epoch = replies[0]["ok"]["epoch"]
    hh.wait_for(lambda: stored(ferretdb, ch) == 60, t(15), what="all stored")
    ferretdb.client().herald.publications.delete_many(
        {"channel": ch, "offset": {"$lte": 20}})
    sub = await s.client()
    ok = await sub.ok("subscribe", channel=ch, since={"offset": 10, "epoch": epoch})
    assert ok["recovered"] is False and ok["publications"] == [] and ok["offset"] == 60
    err = await c.error("history", channel=ch, since={"offset": 10, "epoch": epoch})
    assert err["code"] == 111, err
    ok = await c.ok("subscribe", channel=ch, since={"offset": 20, "epoch": epoch})
    assert ok["recovered"] is True and offsets(ok["publications"]) == list(range(21, 61))
    page = await c.ok("history", channel=ch, limit=5)
    assert offsets(page["publications"]) == [21, 22, 23, 24, 25]
    # nothing stored before the ring (51..60) any more: the ring's oldest
    ferretdb.client().herald.publications.delete_many(
        {"channel": ch, "offset": {"$lte": 54}})
    page = await c.ok("history", channel=ch, limit=5)
    assert offsets(page["publications"]) == [51, 52, 53, 54, 55]
    page = await c.ok("history", channel=ch, limit=15, reverse=True)
    assert offsets(page["publications"]) == list(range(60, 50, -1))
    # further behind than one reply carries: recovered false, history pages
    small = server_factory(config(ferretdb, recovery_max=30))
    c2 = await small.client()
    ok = await c2.ok("subscribe", channel=ch, since={"offset": 25, "epoch": epoch})
    assert ok["recovered"] is False and ok["publications"] == []


async def test_store_away_during_a_read_answers_108(server_factory, ferretdb):
    """A recovery or history read the store cannot answer is error 108, not
    recovered:false; the hot cache and live fan-out keep working, and the
    same requests succeed once the store is back."""
    s = server_factory(config(ferretdb))
    ch = hh.chan("d:")
    c = await s.client()
    replies = await publish_n(c, ch, 50)
    epoch = replies[0]["ok"]["epoch"]
    hh.wait_for(lambda: stored(ferretdb, ch) == 50, t(15), what="all stored")
    live = await s.client()
    await live.ok("subscribe", channel=ch)
    ferretdb.pause()
    try:
        err = await c.call("subscribe", channel=ch, since={"offset": 5, "epoch": epoch},
                           timeout=t(20))
        assert err["error"]["code"] == 108, err
        assert "durable store" in err["error"].get("message", ""), err
        err = await c.call("history", channel=ch, limit=5, timeout=t(20),
                           since={"offset": 5, "epoch": epoch})
        assert err["error"]["code"] == 108, err
        # the ring still answers, and live delivery goes on
        page = await c.ok("history", channel=ch, limit=5,
                          since={"offset": 45, "epoch": epoch})
        assert offsets(page["publications"]) == [46, 47, 48, 49, 50]
        r = await c.call("publish", channel=ch, data={"i": 50})
        assert r["ok"]["offset"] == 51
        assert offsets(await live.pubs(1)) == [51]
    finally:
        ferretdb.resume()
    ok = await c.ok("subscribe", channel=ch, since={"offset": 5, "epoch": epoch})
    assert ok["recovered"] is True and offsets(ok["publications"]) == list(range(6, 52))
