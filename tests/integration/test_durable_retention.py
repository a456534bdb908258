"""Durable history, retention (issue 5): herald itself deletes from the
store (FerretDB on SQLite, which has no TTL indexes) what a namespace's
`retention_count` (newest publications kept per channel) and
`retention_age` (seconds) no longer keep, in a background pass every
`retention_interval` seconds; other namespaces' documents are never
touched, and publishing and live fan-out go on during the passes.

Passes are observed through their log line ("MongoDB: retention pass",
debug level when nothing was deleted), so the tests wait for complete
passes instead of sleeping.
"""

import asyncio
import datetime
import time

import herald_harness as hh
from ferret_harness import ferretdb  # noqa: F401 (fixture)
from herald_harness import t

PASS_MSG = "MongoDB: retention pass"


def config(fd, **extra):
    cfg = {
        "log_level": "debug",
        "retention_interval": 1,
        "mongodb": fd.uri("", serverSelectionTimeoutMS=1000,
                          connectTimeoutMS=1000, socketTimeoutMS=2000),
        # Channels without ':' keep their newest 3; named namespaces inherit
        # these keys unless they set them.
        "namespace_defaults": {"history_size": 100, "durable": True,
                               "retention_count": 3},
        "namespaces": [
            {"name": "c", "retention_count": 5},
            {"name": "a", "retention_count": 0, "retention_age": 4},
            {"name": "k", "retention_count": 0},
            {"name": "m", "durable": False, "retention_count": 1},
        ],
    }
    cfg.update(extra)
    return cfg


def coll(fd):
    return fd.client().herald.publications


def offsets(col, channel):
    return sorted((d["epoch"], d["offset"]) for d in col.find({"channel": channel}))


def passes(s):
    """Complete passes so far (their log lines)."""
    return sum(1 for l in s.log_lines()
               if l.get("msg") == PASS_MSG and l.get("complete") == 1)


async def wait_passes(s, n, timeout):
    """Waits until n more complete passes have run than now."""
    target = passes(s) + n
    await hh.async_wait_for(lambda: passes(s) >= target, timeout,
                            what=lambda: "%d complete retention passes (%d)"
                            % (target, passes(s)))


async def wait_count(col, channel, pred, timeout, what):
    return await hh.async_wait_for(lambda: pred(offsets(col, channel)), timeout,
                                   what=lambda: "%s: %r" % (what, offsets(col, channel)))


def burst(channel, n, start=0):
    return [("publish", {"channel": channel, "data": {"i": i}})
            for i in range(start, start + n)]


async def test_count_keeps_each_channels_newest(server_factory, ferretdb):
    """retention_count keeps exactly the newest N of every channel of the
    namespace (also for channels without ':', in the default namespace),
    bursts published in one frame (within the same millisecond) included,
    and again after more publications."""
    s = server_factory(config(ferretdb))
    col = coll(ferretdb)
    c1, c2, d1 = hh.chan("c:"), hh.chan("c:"), hh.chan()
    pub = await s.client()
    replies = await pub.batch(burst(c1, 20) + burst(c2, 9) + burst(d1, 12),
                              one_frame=True)
    assert all("ok" in r for r in replies), replies
    epoch1 = replies[0]["ok"]["epoch"]
    epoch_d = replies[-1]["ok"]["epoch"]
    await wait_count(col, c1, lambda o: o == [(epoch1, i) for i in range(16, 21)],
                     t(15), "c1 trimmed to its newest 5")
    await wait_count(col, c2, lambda o: len(o) == 5 and o[0][1] == 5, t(15),
                     "c2 trimmed to its newest 5")
    await wait_count(col, d1, lambda o: o == [(epoch_d, i) for i in range(10, 13)],
                     t(15), "default-namespace channel trimmed to its newest 3")
    # The burst shared milliseconds: the cut went through a tie.
    times = [d["time"] for d in col.find({"channel": c1})]
    assert len(set(times)) < len(times), "no two publications in one millisecond"

    # More publications: still exactly the newest 5.
    replies = await pub.batch(burst(c1, 7, 20), one_frame=True)
    assert [r["ok"]["offset"] for r in replies] == list(range(21, 28))
    await wait_count(col, c1, lambda o: o == [(epoch1, i) for i in range(23, 28)],
                     t(15), "c1 trimmed to offsets 23..27")
    await wait_passes(s, 2, t(15))
    assert offsets(col, c1) == [(epoch1, i) for i in range(23, 28)]
    # /healthz counts the passes and what they deleted: 15 + 4 + 9, then 7
    store = s.healthz()[1]["store"]
    assert store["retention_passes"] >= 2 and store["retention_deleted"] == 35, store
    assert any(l.get("msg") == PASS_MSG and l.get("deleted", 0) > 0 and
               l.get("level") == "info" for l in s.log_lines())

    # The newest document stays, so the stream keeps its epoch after a
    # restart and the top position still recovers.
    await pub.close()
    s.stop()
    s2 = server_factory(config(ferretdb))
    sub = await s2.client()
    ok = await sub.ok("subscribe", channel=c1, since={"offset": 27, "epoch": epoch1})
    assert ok["recovered"] is True and ok["epoch"] == epoch1 and ok["offset"] == 27, ok


async def test_count_cut_is_exact_within_one_millisecond(server_factory, ferretdb):
    """Documents written with identical times (one older epoch, then ten
    publications of a newer epoch in the same millisecond): the newest 5
    by (time, offset) stay, whatever the ties."""
    col = coll(ferretdb)
    ch = hh.chan("c:")
    t_old = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) \
        - datetime.timedelta(seconds=10)
    t_new = t_old + datetime.timedelta(seconds=5)
    doc = dict(json="1", mp=b"\x01", binary=False)
    col.insert_many([dict(doc, channel=ch, epoch="old-epoch", offset=i, time=t_old)
                     for i in range(1, 8)] +
                    [dict(doc, channel=ch, epoch="new-epoch", offset=i, time=t_new)
                     for i in range(1, 11)])
    s = server_factory(config(ferretdb))
    await wait_passes(s, 1, t(15))
    assert offsets(col, ch) == [("new-epoch", i) for i in range(6, 11)]
    await wait_passes(s, 1, t(15))
    assert offsets(col, ch) == [("new-epoch", i) for i in range(6, 11)]


async def test_age_deletes_only_what_is_older(server_factory, ferretdb):
    """retention_age = 4 s: a first group goes once it is 4 s old while a
    second group published 2 s later stays until it is 4 s old too. When
    every document of a channel is gone, the next start of its stream
    begins a new epoch (the old position answers recovered: false)."""
    s = server_factory(config(ferretdb))
    col = coll(ferretdb)
    ch = hh.chan("a:")
    pub = await s.client()
    first = await pub.batch(burst(ch, 5), one_frame=True)
    epoch = first[0]["ok"]["epoch"]
    t_first = time.time()
    await wait_count(col, ch, lambda o: len(o) == 5, t(10), "first group stored")
    # Real time has to pass for an age to be reached.
    await hh.async_wait_for(lambda: time.time() >= t_first + 2, 5, what="2 s")
    await wait_passes(s, 1, t(10))
    assert len(offsets(col, ch)) == 5, "deleted before its age"
    second = await pub.batch(burst(ch, 5, 5), one_frame=True)
    assert [r["ok"]["offset"] for r in second] == list(range(6, 11))
    await wait_count(col, ch, lambda o: len(o) == 10, t(10), "second group stored")
    # (The group's publications may span a few milliseconds: a pass can
    # take part of it; wait for all of it.)
    await wait_count(col, ch, lambda o: all(off > 5 for _, off in o), t(15),
                     "first group deleted")
    assert offsets(col, ch) == [(epoch, i) for i in range(6, 11)]
    assert time.time() >= t_first + 4
    await wait_count(col, ch, lambda o: o == [], t(15), "second group deleted")

    await pub.close()
    s.stop()
    s2 = server_factory(config(ferretdb))
    sub = await s2.client()
    ok = await sub.ok("subscribe", channel=ch, since={"offset": 10, "epoch": epoch})
    assert ok["recovered"] is False and ok["epoch"] != epoch and ok["offset"] == 0, ok


async def test_other_namespaces_untouched(server_factory, ferretdb):
    """A durable namespace without retention, a non-durable namespace with
    retention_count (documents of when it was durable) and channels of a
    namespace that is not configured keep every document."""
    col = coll(ferretdb)
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)
    m, z = hh.chan("m:"), hh.chan("zz:")
    doc = dict(json="1", mp=b"\x01", binary=False, epoch="e", time=old)
    col.insert_many([dict(doc, channel=m, offset=i) for i in range(1, 6)] +
                    [dict(doc, channel=z, offset=i) for i in range(1, 6)])
    s = server_factory(config(ferretdb))
    k, c = hh.chan("k:"), hh.chan("c:")
    pub = await s.client()
    replies = await pub.batch(burst(k, 12) + burst(c, 12) + burst(m, 3), one_frame=True)
    assert all("ok" in r for r in replies), replies
    await wait_count(col, c, lambda o: len(o) == 5, t(15), "c trimmed")
    await wait_passes(s, 2, t(15))
    assert len(offsets(col, k)) == 12
    assert offsets(col, m) == [("e", i) for i in range(1, 6)]
    assert offsets(col, z) == [("e", i) for i in range(1, 6)]
    assert len(offsets(col, c)) == 5


async def test_publishing_and_fanout_go_on_during_passes(server_factory, ferretdb):
    """Publishing for several passes: every publish is acknowledged at once,
    a subscriber gets every publication live in order, and the store ends
    with exactly the newest 5."""
    s = server_factory(config(ferretdb))
    col = coll(ferretdb)
    ch = hh.chan("c:")
    sub = await s.client(enc="msgpack")
    await sub.ok("subscribe", channel=ch)
    pub = await s.client()
    start_passes = passes(s)
    n = 0
    slowest = 0.0
    deadline = time.monotonic() + t(20)
    while passes(s) < start_passes + 3:
        assert time.monotonic() < deadline, "no retention passes"
        t0 = time.monotonic()
        replies = await pub.batch(burst(ch, 10, n), one_frame=True)
        slowest = max(slowest, time.monotonic() - t0)
        assert [r["ok"]["offset"] for r in replies] == list(range(n + 1, n + 11))
        n += 10
        got = await sub.pubs(10)
        assert [p["offset"] for p in got] == list(range(n - 9, n + 1))
        await asyncio.sleep(0.05)   # pacing, not a wait for a result
    # (every batch was acknowledged within pub.batch's wait; how fast is a
    # timing claim for bench/durable.sh, not a bound here)
    print("slowest batch acknowledged in %.3fs" % slowest)
    epoch = replies[0]["ok"]["epoch"]
    await wait_count(col, ch, lambda o: o == [(epoch, i) for i in range(n - 4, n + 1)],
                     t(15), "the newest 5 of %d" % n)


async def test_store_failure_logged_once_per_streak(server_factory, ferretdb):
    """FerretDB paused: the passes fail, the first failure of the streak is
    logged once at warn with the driver's message (never the URI), the
    later ones only at debug; publishing and fan-out go on; after the
    resume the passes work again and trim what came meanwhile."""
    s = server_factory(config(ferretdb))
    col = coll(ferretdb)
    ch = hh.chan("c:")
    sub = await s.client()
    await sub.ok("subscribe", channel=ch)
    pub = await s.client()
    await wait_passes(s, 1, t(10))

    def failed():
        return [l for l in s.log_lines() if l.get("msg") == PASS_MSG and l.get("failed") == 1]

    def warned():
        return [l for l in s.log_lines() if "retention pass failed" in str(l.get("msg"))]

    ferretdb.pause()
    try:
        replies = await pub.batch(burst(ch, 12), one_frame=True)
        assert all("ok" in r for r in replies), replies
        assert [p["offset"] for p in await sub.pubs(12)] == list(range(1, 13))
        await hh.async_wait_for(lambda: len(failed()) >= 3, t(20),
                                what=lambda: "3 failed passes (%d)" % len(failed()))
    finally:
        ferretdb.resume()
    w = warned()
    assert len(w) == 1, w
    assert w[0]["level"] == "warn" and w[0]["error"], w[0]
    assert "mongodb://" not in str(w[0]), w[0]
    await hh.async_wait_for(lambda: any(l.get("msg") == "MongoDB: retention passes work again"
                                        for l in s.log_lines()), t(20),
                            what="the passes to work again")
    epoch = replies[0]["ok"]["epoch"]
    await wait_count(col, ch, lambda o: o == [(epoch, i) for i in range(8, 13)], t(20),
                     "trimmed to the newest 5 after the resume")
    assert len(warned()) == 1


async def test_stop_does_not_wait_for_the_interval(server_factory, ferretdb):
    """With a day between passes, SIGTERM still ends herald at once (the
    thread waits on a condition variable, not in a sleep)."""
    s = server_factory(config(ferretdb, retention_interval=86400))
    assert any(l.get("msg") == "MongoDB: retention passes on" for l in s.log_lines())
    s.send_signal(__import__("signal").SIGTERM)
    # (waiting for the interval would take a day: exiting at all is the proof)
    assert s.wait_exit(t(10)) == 0, s.stderr_tail()


async def test_no_thread_without_retention(server_factory, ferretdb):
    """No namespace with retention: no retention thread, no pass."""
    cfg = config(ferretdb)
    cfg["namespace_defaults"] = {"history_size": 100, "durable": True}
    cfg["namespaces"] = [{"name": "c"}]
    s = server_factory(cfg)
    pub = await s.client()
    assert "ok" in await pub.call("publish", channel=hh.chan("c:"), data=1)
    hh.wait_for(lambda: s.healthz()[1]["store"]["written"] == 1, t(10), what="written")
    assert not any("retention" in str(l.get("msg")) for l in s.log_lines())
