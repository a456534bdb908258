"""Recovery (subscribe with since), history (since/limit/reverse), history
TTL, epochs (stream dropped, server restart)."""

import asyncio

import pytest

import herald_harness as hh
from herald_harness import chan, t

CONFIG = {
    "namespace_defaults": {"history_size": 0},
    "namespaces": [
        {"name": "h", "history_size": 5},        # small ring
        {"name": "big", "history_size": 200},
        {"name": "ttl", "history_size": 100, "history_ttl": 1},
        {"name": "huge", "history_size": 5000},
    ],
}

server = hh.server_fixture(CONFIG)


async def publish_n(c, ch, n, start=0):
    replies = await c.batch([("publish", {"channel": ch, "data": {"n": i}})
                             for i in range(start, start + n)])
    return [r["ok"] for r in replies]


def offsets(pubs):
    return [p["offset"] for p in pubs]


# -- recovery --------------------------------------------------------------------

async def test_recover_missed_publications_after_reconnect(server):
    ch = chan("h:")
    pub = await server.client()
    sub = await server.client()
    s = await sub.ok("subscribe", channel=ch)
    await publish_n(pub, ch, 2)
    seen = await sub.pubs(2)
    last = seen[-1]["offset"]
    await sub.close()
    await publish_n(pub, ch, 3, start=2)          # missed while away
    sub2 = await server.client()
    ok = await sub2.ok("subscribe", channel=ch, since={"offset": last, "epoch": s["epoch"]})
    assert ok["recovered"] is True
    assert ok["epoch"] == s["epoch"]
    assert ok["offset"] == 5
    assert offsets(ok["publications"]) == [3, 4, 5]
    assert [p["data"] for p in ok["publications"]] == [{"n": 2}, {"n": 3}, {"n": 4}]
    # live publications continue right after the recovered ones
    await pub.ok("publish", channel=ch, data="live")
    p = await sub2.push("pub")
    assert p["offset"] == 6 and p["data"] == "live"


async def test_recover_with_nothing_missed(server):
    ch = chan("h:")
    c = await server.client()
    s = await c.ok("subscribe", channel=ch)
    await publish_n(c, ch, 2)
    await c.pubs(2)
    await c.ok("unsubscribe", channel=ch)
    ok = await c.ok("subscribe", channel=ch, since={"offset": 2, "epoch": s["epoch"]})
    assert ok["recovered"] is True
    assert ok["publications"] == []
    assert ok["offset"] == 2


async def test_recover_from_zero_when_all_retained(server):
    ch = chan("h:")
    keep = await server.client()           # keeps the stream alive
    s = await keep.ok("subscribe", channel=ch)
    await publish_n(keep, ch, 5)           # exactly the ring size
    c = await server.client()
    ok = await c.ok("subscribe", channel=ch, since={"offset": 0, "epoch": s["epoch"]})
    assert ok["recovered"] is True
    assert offsets(ok["publications"]) == [1, 2, 3, 4, 5]


async def test_recover_too_old_is_not_recovered(server):
    ch = chan("h:")
    keep = await server.client()
    s = await keep.ok("subscribe", channel=ch)
    await publish_n(keep, ch, 8)           # ring keeps 4..8
    c = await server.client()
    ok = await c.ok("subscribe", channel=ch, since={"offset": 1, "epoch": s["epoch"]})
    assert ok["recovered"] is False
    assert ok["epoch"] == s["epoch"]
    assert ok["offset"] == 8
    # the boundary: from 3 the ring has everything (4..8)
    c2 = await server.client()
    ok = await c2.ok("subscribe", channel=ch, since={"offset": 3, "epoch": s["epoch"]})
    assert ok["recovered"] is True
    assert offsets(ok["publications"]) == [4, 5, 6, 7, 8]


async def test_recover_wrong_epoch_is_not_recovered(server):
    ch = chan("h:")
    keep = await server.client()
    s = await keep.ok("subscribe", channel=ch)
    await publish_n(keep, ch, 2)
    c = await server.client()
    ok = await c.ok("subscribe", channel=ch, since={"offset": 1, "epoch": s["epoch"] + "x"})
    assert ok["recovered"] is False
    assert ok["epoch"] == s["epoch"]
    assert ok["offset"] == 2
    assert not ok.get("publications")


async def test_recover_offset_beyond_top_is_not_recovered(server):
    ch = chan("h:")
    keep = await server.client()
    s = await keep.ok("subscribe", channel=ch)
    await publish_n(keep, ch, 2)
    c = await server.client()
    ok = await c.ok("subscribe", channel=ch, since={"offset": 99, "epoch": s["epoch"]})
    assert ok["recovered"] is False
    assert ok["offset"] == 2


async def test_since_without_history_never_gives_a_silent_gap(server):
    """Default namespace keeps no history: a client that missed a publication
    must not be told recovered:true without it."""
    ch = chan()
    a, b = await server.client(), await server.client()
    s = await a.ok("subscribe", channel=ch)
    await b.ok("subscribe", channel=ch)    # the stream stays alive through b
    await a.ok("publish", channel=ch, data=1)
    await a.pubs(1)
    await a.ok("unsubscribe", channel=ch)
    await b.ok("publish", channel=ch, data=2)   # a misses this one
    ok = await a.ok("subscribe", channel=ch, since={"offset": 1, "epoch": s["epoch"]})
    # the stream lived on through b (same epoch, top 2), but nothing of it
    # was kept: publication 2 cannot be given back
    assert ok["recovered"] is False and ok["publications"] == [], ok
    assert ok["epoch"] == s["epoch"] and ok["offset"] == 2, ok


async def test_dropped_stream_starts_new_epoch(server):
    """No subscribers and no retained history: the stream is dropped and the
    next subscriber sees a new epoch starting from offset 0."""
    ch = chan()
    a = await server.client()
    s = await a.ok("subscribe", channel=ch)
    await a.ok("publish", channel=ch, data=1)
    await a.pubs(1)
    await a.ok("unsubscribe", channel=ch)
    ok = await a.ok("subscribe", channel=ch)
    assert ok["epoch"] != s["epoch"], ok
    assert ok["offset"] == 0, ok


async def test_history_keeps_stream_and_epoch_without_subscribers(server):
    ch = chan("h:")
    a = await server.client()
    s = await a.ok("subscribe", channel=ch)
    await publish_n(a, ch, 2)
    await a.close()
    b = await server.client()
    ok = await b.ok("subscribe", channel=ch, since={"offset": 0, "epoch": s["epoch"]})
    assert ok["epoch"] == s["epoch"]
    assert ok["recovered"] is True and offsets(ok["publications"]) == [1, 2]


@pytest.mark.timeout(60)
async def test_reconnect_with_since_during_live_publishing_has_no_gap(server):
    """Recovery while publications keep coming: recovered publications plus
    the pushes after the subscribe reply continue exactly where the client
    left off, without gap or duplicate, across several reconnects."""
    ch = chan("huge:")
    pub = await server.client()
    await pub.ok("publish", channel=ch, data=0)
    total = 600
    done = asyncio.Event()

    async def publisher():
        for start in range(1, total, 20):
            await pub.batch([("publish", {"channel": ch, "data": i})
                             for i in range(start, min(start + 20, total))])
            await asyncio.sleep(0.005)
        done.set()

    task = asyncio.get_running_loop().create_task(publisher())
    seen = []
    sub = await server.client()
    ok = await sub.ok("subscribe", channel=ch, since={"offset": 0, "epoch": ""})
    epoch = ok["epoch"]
    seen += [p["offset"] for p in ok.get("publications", [])]
    for _round in range(6):
        for p in await sub.pubs(15, timeout=t(10)):
            seen.append(p["offset"])
        await sub.close()
        sub = await server.client(enc="msgpack" if _round % 2 else "json")
        ok = await sub.ok("subscribe", channel=ch, since={"offset": seen[-1], "epoch": epoch})
        assert ok["recovered"] is True, ok
        assert ok["epoch"] == epoch
        seen += [p["offset"] for p in ok["publications"]]
        assert seen[-1] == ok["offset"] or not ok["publications"], (seen[-3:], ok["offset"])
    await task
    top = (await pub.ok("history", channel=ch, limit=1, reverse=True))["offset"]
    while seen[-1] < top:
        seen.append((await sub.push("pub", timeout=t(10)))["offset"])
    first = seen[0]
    assert seen == list(range(first, top + 1)), "gap or duplicate in %r" % seen
    assert top == total


# -- history ---------------------------------------------------------------------

async def test_history_without_subscription(server):
    ch = chan("big:")
    c = await server.client()
    pubs = await publish_n(c, ch, 7)
    h = await c.ok("history", channel=ch)
    assert h["epoch"] == pubs[0]["epoch"]
    assert h["offset"] == 7
    assert offsets(h["publications"]) == [1, 2, 3, 4, 5, 6, 7]
    assert [p["data"] for p in h["publications"]] == [{"n": i} for i in range(7)]


async def test_history_of_unknown_channel_is_empty(server):
    c = await server.client()
    h = await c.ok("history", channel=chan("big:"))
    assert h["publications"] == []
    assert h["offset"] == 0
    assert isinstance(h["epoch"], str)


async def test_history_ring_keeps_latest(server):
    ch = chan("h:")
    c = await server.client()
    await publish_n(c, ch, 12)
    h = await c.ok("history", channel=ch)
    assert offsets(h["publications"]) == [8, 9, 10, 11, 12]
    assert h["offset"] == 12


async def test_history_limit_reverse_since(server):
    ch = chan("big:")
    c = await server.client()
    pubs = await publish_n(c, ch, 10)
    epoch = pubs[0]["epoch"]
    h = await c.ok("history", channel=ch, limit=3)
    assert offsets(h["publications"]) == [1, 2, 3]
    assert h["offset"] == 10
    h = await c.ok("history", channel=ch, limit=3, reverse=True)
    assert offsets(h["publications"]) == [10, 9, 8]
    h = await c.ok("history", channel=ch, reverse=True)
    assert offsets(h["publications"]) == list(range(10, 0, -1))
    h = await c.ok("history", channel=ch, since={"offset": 6, "epoch": epoch})
    assert offsets(h["publications"]) == [7, 8, 9, 10]
    h = await c.ok("history", channel=ch, since={"offset": 6, "epoch": epoch}, limit=2)
    assert offsets(h["publications"]) == [7, 8]
    h = await c.ok("history", channel=ch, since={"offset": 10, "epoch": epoch})
    assert h["publications"] == []


async def test_history_default_limit_is_100(server):
    ch = chan("big:")
    c = await server.client()
    for start in range(0, 120, 40):
        await publish_n(c, ch, 40, start=start)
    h = await c.ok("history", channel=ch)
    assert len(h["publications"]) == 100
    assert h["publications"][0]["offset"] == 1
    assert h["offset"] == 120


async def test_history_limit_over_default_max_is_106(server):
    ch = chan("big:")
    c = await server.client()
    await c.ok("publish", channel=ch, data=1)
    assert (await c.error("history", channel=ch, limit=1001))["code"] == 106
    assert (await c.ok("history", channel=ch, limit=1000))["offset"] == 1


async def test_history_max_limit_configured(server_factory):
    s = server_factory({"history_max_limit": 50,
                        "namespaces": [{"name": "big", "history_size": 200}]})
    ch = chan("big:")
    c = await s.client()
    await publish_n(c, ch, 60)
    assert (await c.error("history", channel=ch, limit=51))["code"] == 106
    h = await c.ok("history", channel=ch, limit=50)
    assert offsets(h["publications"]) == list(range(1, 51))
    # no limit given: the default (100) is capped by the server's maximum
    h = await c.ok("history", channel=ch)
    assert offsets(h["publications"]) == list(range(1, 51))


async def test_history_unrecoverable_since_is_111(server):
    ch = chan("h:")
    c = await server.client()
    pubs = await publish_n(c, ch, 9)          # ring keeps 5..9
    epoch = pubs[0]["epoch"]
    e = await c.error("history", channel=ch, since={"offset": 9, "epoch": epoch + "x"})
    assert e["code"] == 111
    e = await c.error("history", channel=ch, since={"offset": 2, "epoch": epoch})
    assert e["code"] == 111
    h = await c.ok("history", channel=ch, since={"offset": 4, "epoch": epoch})
    assert offsets(h["publications"]) == [5, 6, 7, 8, 9]


async def test_history_off_is_108(server):
    c = await server.client()
    assert (await c.error("history", channel=chan()))["code"] == 108


async def test_history_unknown_namespace_is_102(server):
    c = await server.client()
    assert (await c.error("history", channel=chan("nope:")))["code"] == 102


async def test_history_publications_carry_info(server):
    ch = chan("big:")
    c = await server.client()
    cid = (await c.ok("connect"))["client"]
    await c.ok("publish", channel=ch, data="x")
    h = await c.ok("history", channel=ch)
    p = h["publications"][0]
    assert p["data"] == "x" and p["offset"] == 1
    assert p.get("info", {}).get("client") == cid


@pytest.mark.timeout(30)
async def test_history_ttl_expires_publications(server):
    ch = chan("ttl:")
    c = await server.client()
    pubs = await publish_n(c, ch, 3)
    h = await c.ok("history", channel=ch)
    assert offsets(h["publications"]) == [1, 2, 3]

    async def expired():
        return (await c.ok("history", channel=ch))["publications"] == []
    await hh.async_wait_for(expired, t(6), interval=0.2, what="history to expire (ttl 1s)")
    # a new publication is kept again, and the old ones are not recoverable
    r = await c.ok("publish", channel=ch, data="fresh")
    h = await c.ok("history", channel=ch)
    assert [(p["offset"], p["data"]) for p in h["publications"]] == [(r["offset"], "fresh")]
    # publications 2 and 3 expired: a client at offset 1 missed them, in
    # the old epoch or across a new one
    sub = await server.client()
    ok = await sub.ok("subscribe", channel=ch, since={"offset": 1, "epoch": pubs[0]["epoch"]})
    assert ok["recovered"] is False and ok["publications"] == [], ok
    assert ok["epoch"] == r["epoch"] and ok["offset"] == r["offset"], (ok, r)
    # and the stream's next position is recovered exactly
    ok = await (await server.client()).ok("subscribe", channel=ch,
                                          since={"offset": r["offset"], "epoch": r["epoch"]})
    assert ok["recovered"] is True and ok["publications"] == [], ok


# -- restart ----------------------------------------------------------------------

async def test_restart_changes_epoch(server_factory):
    s1 = server_factory(CONFIG)
    c = await s1.client()
    ch = chan("big:")
    sub = await c.ok("subscribe", channel=ch)
    await publish_n(c, ch, 3)
    await c.pubs(3)
    await c.close()
    s1.stop()
    s2 = server_factory(CONFIG)
    c2 = await s2.client()
    ok = await c2.ok("subscribe", channel=ch, since={"offset": 3, "epoch": sub["epoch"]})
    assert ok["recovered"] is False
    assert ok["epoch"] != sub["epoch"]
    assert ok["offset"] == 0


# -- recovery out of the box -------------------------------------------------------

async def test_recovery_with_no_configuration(server_factory):
    """herald with no configuration file at all keeps a short history in
    the default namespace (100 publications, 120 s): a client that drops
    off while publications continue gets every one it missed back with
    recovered: true; one that missed more than 100 gets recovered: false
    and the newest 100 are still there for history."""
    s = server_factory(None)
    assert s.config_path is None
    ch, ch2 = chan("oob-"), chan("oob-")
    pub = await s.client()
    sub = await s.client()
    a = await sub.ok("subscribe", channel=ch)
    b = await sub.ok("subscribe", channel=ch2)
    await publish_n(pub, ch, 3)
    await publish_n(pub, ch2, 3)
    seen = await sub.pubs(6)
    assert {p["offset"] for p in seen} == {1, 2, 3}
    await sub.close()                                # the client drops off
    await publish_n(pub, ch, 100, start=3)          # 100 missed: all kept
    await publish_n(pub, ch2, 101, start=3)         # 101 missed: one too many
    back = await s.client()
    ok = await back.ok("subscribe", channel=ch, since={"offset": 3, "epoch": a["epoch"]})
    assert ok["recovered"] is True, ok
    assert offsets(ok["publications"]) == list(range(4, 104))
    assert [p["data"] for p in ok["publications"]] == [{"n": i} for i in range(3, 103)]
    ok2 = await back.ok("subscribe", channel=ch2, since={"offset": 3, "epoch": b["epoch"]})
    assert ok2["recovered"] is False, ok2
    assert ok2["epoch"] == b["epoch"] and ok2["offset"] == 104
    hist = await back.ok("history", channel=ch2, limit=1000)
    assert offsets(hist["publications"]) == list(range(5, 105))
