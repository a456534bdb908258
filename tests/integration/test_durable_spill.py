"""Durable history when MongoDB stalls or goes away (issue 5): the spill
file and the acknowledgement modes, against a real FerretDB
(ferret_harness.py) and real herald processes.

- FerretDB stopped for 5 s during a steady publish stream (a small queue,
  so the spill file is used): live subscribers get everything in order
  without a stall, and afterwards the store holds every acknowledged
  publication exactly once, offsets 1..N per channel;
- herald SIGKILLed during an outage with publications spilled: restarted on
  the same spill file, it replays it, and the stream goes on in the same
  epoch with the next offset;
- ack = "durable": no reply while FerretDB is paused, the reply once the
  publication is stored; acknowledged publications survive a SIGKILL;
  unacknowledged ones are spilled at SIGTERM and written at the next start;
- the spill file's bound: 108 once the queue and the spill are full, and
  nothing acknowledged is missing;
- a second herald on the same spill file refuses to start.

The only deliberate fixed waits are the outage itself (5 s) and the
check that an ack=durable publish gets no reply while the store is paused.
"""

import asyncio
import os
import time

import herald_harness as hh
from ferret_harness import ferretdb  # noqa: F401 (fixture)
from herald_harness import t


def config(fd, tmp_path, **extra):
    cfg = {
        "mongodb": fd.uri("", serverSelectionTimeoutMS=1000,
                          connectTimeoutMS=1000, socketTimeoutMS=2000),
        "mongodb_spill_path": str(tmp_path / "herald.spill"),
        "mongodb_queue_max": 64,
        "mongodb_batch": 16,
        # ack=durable replies wait for the store here (the deadline's 108
        # is tested in test_durable_ack.py)
        "durable_ack_timeout_ms": 600000,
        "namespaces": [{"name": "d", "history_size": 100, "durable": True},
                       {"name": "a", "history_size": 100, "durable": True,
                        "ack": "durable"}],
    }
    cfg.update(extra)
    return cfg


def docs(fd, channel):
    coll = fd.client().herald.publications
    return sorted(coll.find({"channel": channel}, {"_id": 0, "mp": 0}),
                  key=lambda d: d["offset"])


def store_of(s):
    return s.healthz()[1]["store"]


def check_exactly(fd, channel, epoch, n, timeout):
    """Waits until the store holds offsets 1..n of channel, exactly once,
    all in `epoch`."""
    hh.wait_for(lambda: len(docs(fd, channel)) >= n, timeout,
                what=lambda: "%d documents of %s (have %d)" % (
                    n, channel, len(docs(fd, channel))))
    got = docs(fd, channel)
    assert [d["offset"] for d in got] == list(range(1, n + 1)), \
        "missing or duplicated: %r" % [d["offset"] for d in got]
    assert {d["epoch"] for d in got} == {epoch}
    return got


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def test_store_stopped_during_publishing_spills_and_replays(
        server_factory, ferretdb, tmp_path):
    s = server_factory(config(ferretdb, tmp_path))
    chans = [hh.chan("d:") for _ in range(3)]
    subs, arrivals = [], []
    for ch in chans:
        c = await s.client()
        await c.ok("subscribe", channel=ch)
        subs.append(c)
        arrivals.append([])
    pub = await s.client()
    acked = {ch: [] for ch in chans}
    epochs = {}
    stop = asyncio.Event()

    async def publisher():
        i = 0
        next_at = time.monotonic()
        while not stop.is_set():
            ch = chans[i % len(chans)]
            r = await pub.call("publish", channel=ch, data={"i": i})
            assert "ok" in r, r    # the spill keeps room: nothing refused
            acked[ch].append(r["ok"]["offset"])
            epochs[ch] = r["ok"]["epoch"]
            i += 1
            next_at += 0.02          # 50 publications per second
            await asyncio.sleep(max(0, next_at - time.monotonic()))

    async def receiver(k):
        while True:
            p = await subs[k].push("pub", timeout=t(30))
            arrivals[k].append((time.monotonic(), p["offset"]))

    readers = [asyncio.ensure_future(receiver(k)) for k in range(3)]
    producing = asyncio.ensure_future(publisher())
    await hh.async_wait_for(lambda: store_of(s)["written"] >= 30, t(10),
                            what="the first publications written")
    await in_thread(ferretdb.stop)
    try:
        outage = time.monotonic()
        await hh.async_wait_for(lambda: store_of(s)["spilled"] > 0, t(5),
                                what="publications in the spill file")
        await asyncio.sleep(max(0, 5 - (time.monotonic() - outage)))  # the outage
        st = store_of(s)
        assert st["status"] == "failing" and st["spilled"] > 64, st
        assert st["spill_bytes"] > 0, st
        # publishing goes on: the file and the counter are read one after
        # the other, so a record may fall between the two reads; they must
        # agree at a moment between records
        await hh.async_wait_for(
            lambda: os.path.getsize(tmp_path / "herald.spill") ==
            store_of(s)["spill_bytes"], t(5),
            what="the spill file's size to be the spill_bytes reported")
    finally:
        outage_end = time.monotonic()
        await in_thread(ferretdb.start)
    n_outage = sum(len(v) for v in acked.values())
    await hh.async_wait_for(lambda: sum(len(v) for v in acked.values()) >= n_outage + 25,
                            t(10), what="publishing after the outage")
    stop.set()
    await asyncio.wait_for(producing, t(10))
    total = sum(len(v) for v in acked.values())
    assert total >= 250, total
    print("published %d (%d until FerretDB was back), %d spilled at the outage's end"
          % (total, n_outage, st["spilled"]))

    # live subscribers: everything, in order, no stall during the outage
    await hh.async_wait_for(lambda: all(len(arrivals[k]) == len(acked[ch])
                                        for k, ch in enumerate(chans)), t(10),
                            what="every publication delivered live")
    for r in readers:
        r.cancel()
    for k, ch in enumerate(chans):
        offs = [o for _, o in arrivals[k]]
        assert offs == list(range(1, len(offs) + 1)) == acked[ch]
        times = [a for a, _ in arrivals[k]]
        gap = max(b - a for a, b in zip(times, times[1:]))
        # live delivery went on while FerretDB was down (a count, not a
        # timing bound: the largest gap is printed, timing is bench/'s)
        during = sum(1 for a in times if outage < a < outage_end)
        assert during >= 10, "%d publications delivered on %s during the outage" % (during, ch)
        print("%s: %d publications, largest gap between pushes %.3fs" % (ch, len(offs), gap))

    # the store: every acknowledged publication exactly once
    for ch in chans:
        check_exactly(ferretdb, ch, epochs[ch], len(acked[ch]), t(20))
    want = {"status": "ok", "backlog": 0, "written": total, "spilled": 0,
            "spill_bytes": 0}
    await hh.async_wait_for(lambda: {k: store_of(s)[k] for k in want} == want,
                            t(10), what=lambda: "drained: %r" % store_of(s))
    assert os.path.getsize(tmp_path / "herald.spill") == 0
    msgs = [str(line.get("msg")) for line in s.log_lines()]
    assert "MongoDB: spilling to file" in msgs and "MongoDB: spill drained" in msgs, msgs
    spilling = [line for line in s.log_lines() if line.get("msg") == "MongoDB: spilling to file"]
    assert spilling[0]["path"] == str(tmp_path / "herald.spill")
    assert ferretdb.uri("") not in s.stderr()
    # a clean stop removes the empty spill file
    await pub.close()
    assert s.stop() == 0
    assert not os.path.exists(tmp_path / "herald.spill")


async def test_sigkill_during_outage_replays_spill_at_restart(
        server_factory, ferretdb, tmp_path):
    cfg = config(ferretdb, tmp_path)
    s = server_factory(cfg)
    ch = hh.chan("d:")
    pub = await s.client()
    replies = await pub.batch([("publish", {"channel": ch, "data": i}) for i in range(5)])
    epoch = replies[0]["ok"]["epoch"]
    await hh.async_wait_for(lambda: store_of(s)["written"] == 5, t(10), what="5 written")
    await in_thread(ferretdb.stop)
    replies = []
    for k in range(4):
        replies += await pub.batch([("publish", {"channel": ch, "data": 100 * k + i})
                                    for i in range(50)])
    assert [r["ok"]["offset"] for r in replies] == list(range(6, 206)), replies[:3]
    # everything unwritten ends up in the spill (the failed batches too)
    await hh.async_wait_for(lambda: store_of(s)["spilled"] == 200, t(15),
                            what=lambda: "200 spilled: %r" % store_of(s))
    s.kill()
    assert os.path.getsize(tmp_path / "herald.spill") > 0
    # and a torn record at the end, as a SIGKILL in the middle of an append
    with open(tmp_path / "herald.spill", "ab") as f:
        f.write(b"\x00\x01\x00\x00" + b"\x07" * 30)

    # restarted with the store still down: the spill is kept, and the stream
    # is not restarted from nothing (its top is unknown without MongoDB)
    s2 = server_factory(cfg)
    assert store_of(s2)["spilled"] == 200
    c = await s2.client()
    e = await c.call("publish", channel=ch, data="too early", timeout=t(15))
    assert e["error"]["code"] == 108, e
    await in_thread(ferretdb.start)
    check_exactly(ferretdb, ch, epoch, 205, t(20))
    r = await c.call("publish", channel=ch, data="after", timeout=t(15))
    assert r["ok"]["offset"] == 206 and r["ok"]["epoch"] == epoch, r
    check_exactly(ferretdb, ch, epoch, 206, t(10))
    await hh.async_wait_for(lambda: store_of(s2)["spilled"] == 0 and
                            store_of(s2)["backlog"] == 0, t(10), what="drained")
    msgs = [line.get("msg") for line in s2.log_lines()]
    assert "MongoDB: replaying the spill file of an earlier run" in msgs, msgs
    torn = [line for line in s2.log_lines()
            if line.get("msg") == "spill file: torn or corrupt tail dropped"]
    assert torn and torn[0]["bytes"] == 34, s2.stderr_tail()


async def test_restart_right_after_crash_continues_after_spilled_top(server_factory, ferretdb, tmp_path):
    """Restarted right after a crash with FerretDB up, MongoDB holding
    offset 1 and the spill 2..101: whether the first publish comes before
    the replay (the top from the spill's map) or after it (from MongoDB),
    the stream goes on at 102 (the map itself: tests/unit/test_spill.c)."""
    cfg = config(ferretdb, tmp_path)
    s = server_factory(cfg)
    ch = hh.chan("d:")
    pub = await s.client()
    r = await pub.call("publish", channel=ch, data=0)
    epoch = r["ok"]["epoch"]
    await hh.async_wait_for(lambda: store_of(s)["written"] == 1, t(10), what="written")
    await in_thread(ferretdb.pause)
    try:
        replies = await pub.batch([("publish", {"channel": ch, "data": i})
                                   for i in range(1, 101)])
        assert replies[-1]["ok"]["offset"] == 101
        await hh.async_wait_for(lambda: store_of(s)["spilled"] == 100, t(15),
                                what=lambda: "100 spilled: %r" % store_of(s))
        s.kill()
    finally:
        await in_thread(ferretdb.resume)
    # MongoDB has offset 1 only; the spill has 2..101
    s2 = server_factory(cfg)
    c = await s2.client()
    r = await c.call("publish", channel=ch, data="next", timeout=t(15))
    assert r["ok"]["offset"] == 102 and r["ok"]["epoch"] == epoch, r
    check_exactly(ferretdb, ch, epoch, 102, t(20))


async def test_ack_durable_waits_for_the_store(server_factory, ferretdb, tmp_path):
    cfg = config(ferretdb, tmp_path, shutdown_timeout=1)
    s = server_factory(cfg)
    ch = hh.chan("a:")
    sub = await s.client()
    await sub.ok("subscribe", channel=ch)
    pub = await s.client()
    r = await pub.call("publish", channel=ch, data=0)
    epoch = r["ok"]["epoch"]
    assert r["ok"]["offset"] == 1
    assert len(docs(ferretdb, ch)) == 1, "acknowledged before it was stored"
    assert (await sub.pubs(1))[0]["offset"] == 1

    await in_thread(ferretdb.pause)
    try:
        cid, cmd, fut = pub.start("publish", channel=ch, data=1)
        await pub.send(cmd)
        # delivered live at once, acknowledged only once stored
        assert (await sub.pubs(1))[0]["offset"] == 2
        done, _ = await asyncio.wait([fut], timeout=1.5)
        assert not done, "ack=durable publish acknowledged while the store is paused"
        assert store_of(s)["spilled"] == 0, "ack=durable publications never spill"
    finally:
        await in_thread(ferretdb.resume)
    r = await asyncio.wait_for(fut, t(15))
    assert r["ok"]["offset"] == 2 and r["ok"]["epoch"] == epoch, r
    assert [d["offset"] for d in docs(ferretdb, ch)] == [1, 2]

    # every acknowledged one survives a SIGKILL right after its reply
    replies = await pub.batch([("publish", {"channel": ch, "data": i}) for i in range(40)])
    assert [x["ok"]["offset"] for x in replies] == list(range(3, 43))
    s.kill()
    assert [d["offset"] for d in docs(ferretdb, ch)] == list(range(1, 43))

    # unacknowledged at SIGTERM: spilled (no reply), written at the next start
    s2 = server_factory(cfg)
    c = await s2.client()
    assert (await c.call("publish", channel=ch, data="x", timeout=t(10)))["ok"]["offset"] == 43
    await in_thread(ferretdb.pause)
    try:
        for i in range(5):
            _, cmd, _ = c.start("publish", channel=ch, data=i)
            await c.send(cmd)
        await hh.async_wait_for(lambda: store_of(s2)["backlog"] == 5, t(5), what="5 queued")
        assert s2.stop() == 0, s2.stderr_tail()
    finally:
        await in_thread(ferretdb.resume)
    assert os.path.getsize(tmp_path / "herald.spill") > 0
    kept = [line for line in s2.log_lines()
            if str(line.get("msg")).startswith("MongoDB: publications not written at shutdown are in")]
    assert kept and kept[0]["count"] == 5, s2.stderr_tail()
    s3 = server_factory(cfg)
    check_exactly(ferretdb, ch, epoch, 48, t(20))
    await hh.async_wait_for(lambda: store_of(s3)["spilled"] == 0, t(10), what="drained")


async def test_ack_durable_full_queue_refuses(server_factory, ferretdb, tmp_path):
    s = server_factory(config(ferretdb, tmp_path))
    ch = hh.chan("a:")
    pub = await s.client()
    assert "ok" in await pub.call("publish", channel=ch, data=0)
    # two connections: one connection has at most 64 commands in flight
    pubs = [pub, await s.client()]
    await in_thread(ferretdb.pause)
    try:
        started = []
        for i in range(100):
            _, cmd, fut = pubs[i % 2].start("publish", channel=ch, data=i)
            await pubs[i % 2].send(cmd)
            started.append(fut)
        # replies go out in command order, so the refusals wait behind the
        # unacknowledged ones: the backlog shows the queue full
        await hh.async_wait_for(lambda: store_of(s)["backlog"] == 64, t(10),
                                what=lambda: "a full queue: %r" % store_of(s))
        assert store_of(s)["spilled"] == 0
    finally:
        await in_thread(ferretdb.resume)
    replies = await asyncio.wait_for(asyncio.gather(*started), t(20))
    refused = [x["error"] for x in replies if "error" in x]
    assert len(refused) == 100 - 64
    assert all(e["code"] == 108 and e["message"] == "durable store backlog full"
               for e in refused), refused[:3]
    ok = sorted(x["ok"]["offset"] for x in replies if "ok" in x)
    assert ok == list(range(2, 2 + 64))
    assert [d["offset"] for d in docs(ferretdb, ch)] == [1] + ok


async def test_spill_bound_refuses_and_loses_nothing(server_factory, ferretdb, tmp_path):
    s = server_factory(config(ferretdb, tmp_path, mongodb_spill_mb=1))
    ch = hh.chan("d:")
    pub = await s.client()
    r = await pub.call("publish", channel=ch, data="first")
    epoch = r["ok"]["epoch"]
    await hh.async_wait_for(lambda: store_of(s)["written"] == 1, t(10), what="written")
    await in_thread(ferretdb.stop)
    blob = "x" * 4000      # ~8 KB a record (JSON and msgpack)
    replies = []
    try:
        for k in range(5):
            replies += await pub.batch([("publish", {"channel": ch, "data": [k, i, blob]})
                                        for i in range(60)])
        st = store_of(s)
        assert st["spill_bytes"] <= 1 << 20, st
    finally:
        await in_thread(ferretdb.start)
    ok = [x["ok"]["offset"] for x in replies if "ok" in x]
    refused = [x["error"] for x in replies if "error" in x]
    assert refused, "nothing refused with the spill at its bound"
    assert all(e["code"] == 108 and e["message"] == "durable store backlog full"
               for e in refused), refused[:3]
    assert ok == list(range(2, 2 + len(ok))), "an offset skipped or reused"
    assert len(ok) > 64, "the spill took nothing"
    check_exactly(ferretdb, ch, epoch, 1 + len(ok), t(30))
    # drained: room again
    await hh.async_wait_for(lambda: store_of(s)["spilled"] == 0, t(10), what="drained")
    r = await pub.call("publish", channel=ch, data="again")
    assert r["ok"]["offset"] == 2 + len(ok), r


def test_second_herald_on_the_same_spill_file_refuses(server_factory, ferretdb, tmp_path):
    cfg = config(ferretdb, tmp_path)
    server_factory(cfg)
    other = server_factory(cfg, start=False)
    try:
        other.start()
        raise AssertionError("a second herald started on a locked spill file")
    except hh.ServerStartError:
        pass
    assert other.returncode == 2, other.stderr_tail()
    err = other.stderr()
    assert "mongodb_spill_path" in err and str(tmp_path / "herald.spill") in err, err
    assert "locked" in err, err
