"""Durable history, write side (issue 5, first part): publications of a
`durable` namespace are written to a real MongoDB-protocol server (FerretDB
on SQLite, scripts/ferretdb/) by herald's writer threads, one document
each, byte-exact, exactly once, with the unique index created at start;
live fan-out never waits for the store; when the store stalls, writes wait
in the bounded queue and land afterwards; when the queue is full, publishes
are refused with 108 instead of being acknowledged and lost.
"""

import asyncio
import os

import msgpack

import herald_harness as hh
from ferret_harness import ferretdb  # noqa: F401 (fixture)
from herald_harness import t


def config(fd, **extra):
    cfg = {
        "mongodb": fd.uri("", serverSelectionTimeoutMS=1000,
                          connectTimeoutMS=1000, socketTimeoutMS=2000),
        # the test's own directory (the default is relative to the cwd)
        "mongodb_spill_path": os.path.join(os.path.dirname(fd.dir), "herald.spill"),
        "namespaces": [{"name": "d", "history_size": 100, "durable": True},
                       {"name": "z", "history_size": 0, "durable": True},
                       {"name": "m", "history_size": 100}],
    }
    cfg.update(extra)
    return cfg


def docs(fd, channel):
    coll = fd.client().herald.publications
    return sorted(coll.find({"channel": channel}, {"_id": 0}),
                  key=lambda d: d["offset"])


def wait_docs(fd, channel, n, timeout):
    hh.wait_for(lambda: len(docs(fd, channel)) >= n, timeout,
                what="%d documents of %s in the store" % (n, channel))
    return docs(fd, channel)


async def publish_text(c, channel, data_text):
    """Publishes data given as exact JSON text; returns the reply."""
    i = c.next_id()
    fut = asyncio.get_running_loop().create_future()
    c.pending[i] = fut
    await c.send_raw('{"id":%d,"op":"publish","channel":"%s","data":%s}'
                     % (i, channel, data_text))
    return await asyncio.wait_for(fut, t(5))


async def publish_all(c, channel, datas):
    """Publishes every data in one go; returns the replies in order."""
    return await c.batch([("publish", {"channel": channel, "data": d}) for d in datas])


async def test_publications_are_written_byte_exact_once(server_factory, ferretdb):
    s = server_factory(config(ferretdb))
    ch = hh.chan("d:")
    js = await s.client()
    await js.ok("connect")
    mp = await s.client(enc="msgpack")
    raw_json = ['{"i":%d, "s":"\\u00e9" }' % i for i in range(10)]
    replies = []
    for r in raw_json:   # exact JSON text, spaces and escapes kept
        replies.append(await publish_text(js, ch, r))
    bins = [bytes([i, 0, 255]) for i in range(5)]
    for b in bins:
        replies.append(await mp.call("publish", channel=ch, data=b))
    assert all("ok" in r for r in replies), replies
    got = wait_docs(ferretdb, ch, 15, t(10))
    assert [d["offset"] for d in got] == list(range(1, 16))
    epoch = replies[0]["ok"]["epoch"]
    assert {d["epoch"] for d in got} == {epoch}
    for d, r in zip(got[:10], raw_json):
        assert d["json"] == r and d["binary"] is False
        assert msgpack.unpackb(d["mp"]) == {"i": int(r.split(":")[1].split(",")[0]), "s": "é"}
        assert d["client"] == js.client_id
    for d, b in zip(got[10:], bins):
        assert d["binary"] is True and msgpack.unpackb(d["mp"]) == b
    # a namespace that is not durable writes nothing
    other = hh.chan("m:")
    assert "ok" in await js.call("publish", channel=other, data=1)
    hh.wait_for(lambda: s.healthz()[1]["store"]["written"] >= 15, t(5), what="written count")
    assert docs(ferretdb, other) == []
    names = ferretdb.client().herald.publications.index_information()
    unique = [v for v in names.values() if v.get("unique")]
    assert any(dict(v["key"]) == {"channel": 1, "epoch": 1, "offset": 1} for v in unique), names
    assert any(dict(v["key"]) == {"channel": 1, "time": 1} for v in names.values()), names


async def test_store_stall_does_not_stop_live_fanout(server_factory, ferretdb):
    s = server_factory(config(ferretdb))
    ch = hh.chan("d:")
    sub = await s.client()
    await sub.ok("subscribe", channel=ch)
    pub = await s.client()
    for r in await publish_all(pub, ch, list(range(10))):
        assert "ok" in r, r
    wait_docs(ferretdb, ch, 10, t(10))

    ferretdb.pause()
    try:
        replies = await publish_all(pub, ch, list(range(10, 60)))
        assert all("ok" in r for r in replies), replies
        # delivered live while the store stays paused: delivery does not
        # wait for it (it would never come)
        got = await sub.pubs(60, timeout=t(5))
        assert [p["offset"] for p in got] == list(range(1, 61))
        hh.wait_for(lambda: s.healthz()[1]["store"]["backlog"] >= 50 and
                    s.healthz()[1]["store"]["status"] == "failing", t(10),
                    what="/healthz shows the backlog and the failing store")
    finally:
        ferretdb.resume()
    got = wait_docs(ferretdb, ch, 60, t(20))
    assert [d["offset"] for d in got] == list(range(1, 61)), "missing or duplicated"
    hh.wait_for(lambda: {k: v for k, v in s.healthz()[1]["store"].items()
                         if k in ("status", "backlog", "written")} ==
                {"status": "ok", "backlog": 0, "written": 60}, t(10),
                what="backlog drained")
    assert any("writes failing" in str(l.get("msg")) for l in s.log_lines())


async def test_full_queue_refuses_publishes_never_loses_acknowledged(server_factory, ferretdb):
    # without a spill file (test_durable_spill.py covers the spill's bound)
    s = server_factory(config(ferretdb, mongodb_queue_max=64, mongodb_batch=16,
                              mongodb_spill_mb=0))
    ch = hh.chan("d:")
    pub = await s.client()
    assert "ok" in await pub.call("publish", channel=ch, data=0)
    wait_docs(ferretdb, ch, 1, t(10))
    ferretdb.pause()
    try:
        replies = await publish_all(pub, ch, list(range(1, 201)))
    finally:
        ferretdb.resume()
    ok = [r["ok"]["offset"] for r in replies if "ok" in r]
    refused = [r["error"] for r in replies if "error" in r]
    assert refused, "no publish refused with a full queue"
    assert all(e["code"] == 108 and e["message"] == "durable store backlog full"
               for e in refused), refused[:3]
    assert len(ok) <= 64 + 16
    got = wait_docs(ferretdb, ch, 1 + len(ok), t(20))
    # exactly the acknowledged ones (offsets 1.. in order), nothing else
    assert [d["offset"] for d in got] == [1] + ok
    assert ok == list(range(2, 2 + len(ok)))


async def test_shutdown_writes_what_is_queued(server_factory, ferretdb):
    s = server_factory(config(ferretdb, shutdown_timeout=5))
    ch = hh.chan("d:")
    pub = await s.client()
    # the stream's first use asks the store where it stopped (answered)
    assert "ok" in await pub.call("publish", channel=ch, data=-1)
    ferretdb.pause()
    try:
        replies = await publish_all(pub, ch, list(range(30)))
        assert all("ok" in r for r in replies)
        s.send_signal(__import__("signal").SIGTERM)
        await asyncio.sleep(0.5)    # the deliberate stall, shorter than the budget
    finally:
        ferretdb.resume()
    assert s.wait_exit(t(15)) == 0, s.stderr_tail()
    got = docs(ferretdb, ch)
    assert [d["offset"] for d in got] == list(range(1, 32))


async def test_stream_continues_after_restart(server_factory, ferretdb):
    """After a restart a durable channel keeps its epoch and goes on from
    its last offset (from the store); a position at the top recovers."""
    cfg = config(ferretdb)
    s = server_factory(cfg)
    ch = hh.chan("d:")
    pub = await s.client()
    replies = await publish_all(pub, ch, list(range(5)))
    epoch = replies[0]["ok"]["epoch"]
    wait_docs(ferretdb, ch, 5, t(10))
    await pub.close()
    s.stop()

    s2 = server_factory(cfg)
    sub = await s2.client()
    ok = await sub.ok("subscribe", channel=ch, since={"offset": 5, "epoch": epoch})
    assert ok["epoch"] == epoch and ok["offset"] == 5 and ok["recovered"] is True, ok
    pub2 = await s2.client(enc="msgpack")
    r = await pub2.call("publish", channel=ch, data="after")
    assert r["ok"]["offset"] == 6 and r["ok"]["epoch"] == epoch, r
    assert (await sub.pubs(1))[0]["offset"] == 6
    got = wait_docs(ferretdb, ch, 6, t(10))
    assert [(d["epoch"], d["offset"]) for d in got] == [(epoch, i) for i in range(1, 7)]
    # a durable channel that never had a publication starts fresh
    fresh = await pub2.ok("subscribe", channel=hh.chan("d:"))
    assert fresh["offset"] == 0 and fresh["epoch"] != epoch


async def test_store_unreachable_at_first_use_refuses_instead_of_forking(server_factory, ferretdb):
    """Without the store's answer the node cannot know where a durable
    stream stopped: publishing would hand out offsets twice, so the first
    use is refused (108) until the store answers; other namespaces work."""
    s = server_factory(config(ferretdb))
    ch = hh.chan("d:")
    c = await s.client()
    ferretdb.pause()
    try:
        e = await c.call("publish", channel=ch, data=1, timeout=t(15))
        assert e["error"]["code"] == 108, e
        assert e["error"]["message"] == "durable store unavailable", e
        assert "ok" in await c.call("publish", channel=hh.chan("m:"), data=1)
    finally:
        ferretdb.resume()
    r = await c.call("publish", channel=ch, data=2, timeout=t(15))
    assert r["ok"]["offset"] == 1, r


async def test_stream_kept_in_memory_while_writes_are_pending(server_factory, ferretdb):
    """A durable channel without subscribers or memory history would be
    dropped from memory after each publish; while its publications are not
    all in the store yet it must stay (reloaded from a store that lags, it
    would reuse an offset). With the store stalled, publishing goes on with
    the next offsets."""
    s = server_factory(config(ferretdb))
    ch = hh.chan("z:")
    c = await s.client()
    assert (await c.call("publish", channel=ch, data=0))["ok"]["offset"] == 1
    wait_docs(ferretdb, ch, 1, t(10))
    ferretdb.pause()
    try:
        for i in (2, 3, 4):
            r = await c.call("publish", channel=ch, data=i, timeout=t(2))
            assert "ok" in r and r["ok"]["offset"] == i, r
    finally:
        ferretdb.resume()
    got = wait_docs(ferretdb, ch, 4, t(20))
    assert [d["offset"] for d in got] == [1, 2, 3, 4]
    assert len({d["epoch"] for d in got}) == 1


async def test_publication_too_large_for_a_document_is_refused(server_factory, ferretdb):
    """A publication is stored with its data twice (JSON and msgpack): one
    over MongoDB's 16 MiB document limit is refused with 112 up front,
    instead of a write that could never succeed and would stall the queue;
    smaller ones and other namespaces go on."""
    s = server_factory(config(ferretdb, max_message_size=12 * 1024 * 1024))
    ch, mem = hh.chan("d:"), hh.chan("m:")
    c = await s.client()
    big = "a" * (8 * 1024 * 1024 + 512 * 1024)         # 8.5 MiB, twice > 16 MiB
    r = await c.call("publish", channel=ch, data=big, timeout=t(30))
    assert r["error"]["code"] == 112, r
    assert "durable store" in r["error"].get("message", ""), r
    r = await c.call("publish", channel=mem, data=big, timeout=t(30))
    assert "ok" in r, r
    r = await c.call("publish", channel=ch, data="small")
    assert r["ok"]["offset"] == 1, r
    assert [d["offset"] for d in wait_docs(ferretdb, ch, 1, t(10))] == [1]
