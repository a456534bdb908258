"""ack = "durable" while MongoDB stalls (issue 11, defect 6), against a real
FerretDB paused with SIGSTOP (ferret_harness.py):

- the publish reply has a deadline (durable_ack_timeout_ms): when MongoDB
  has not confirmed the write by then, the publisher gets error 108, and
  the publication stays queued: it is stored once FerretDB resumes;
- the publisher's other output (a ping reply, pushes of a channel it is
  subscribed to), which waits behind the pending reply, flows again after
  it, in order, and the connection stays open;
- what queues behind a pending reply counts against send_queue_max: a
  publisher whose reply is pending while pushes pile up past the bound is
  closed with 4001 (bounded memory), and its publication is still stored.
"""

import asyncio

import herald_harness as hh
from ferret_harness import ferretdb  # noqa: F401 (fixture)
from herald_harness import t

DEADLINE_MS = 1000


def config(fd, **extra):
    cfg = {
        "mongodb": fd.uri("", serverSelectionTimeoutMS=1000,
                          connectTimeoutMS=1000, socketTimeoutMS=2000),
        "durable_ack_timeout_ms": DEADLINE_MS,
        "namespaces": [{"name": "a", "history_size": 10, "durable": True,
                        "ack": "durable"},
                       {"name": "n", "history_size": 0}],
    }
    cfg.update(extra)
    return cfg


def stored(fd, channel):
    coll = fd.client().herald.publications
    return sorted(d["offset"] for d in coll.find({"channel": channel}, {"offset": 1}))


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def reply(fut, timeout, what):
    done, _ = await asyncio.wait([fut], timeout=timeout)
    assert done, "no reply within %.0fs: %s" % (timeout, what)
    return fut.result()


async def test_durable_ack_deadline_gives_108_and_output_flows(server_factory, ferretdb):
    s = server_factory(config(ferretdb))
    ach, nch = hh.chan("a:"), hh.chan("n:")
    pub, other = await s.client(), await s.client()
    await pub.ok("subscribe", channel=nch)
    first = await pub.ok("publish", channel=ach, data=0)
    assert first["offset"] == 1

    await in_thread(ferretdb.pause)
    try:
        pid, cmd, pending = pub.start("publish", channel=ach, data=1)
        await pub.send(cmd)
        ping_id, cmd, ping = pub.start("ping")
        await pub.send(cmd)
        for i in range(3):
            await other.ok("publish", channel=nch, data="x%d" % i)
        # The deadline answers while the store is still paused.
        r = await reply(pending, t(10), "the ack=durable publish while the store is paused")
        assert r["error"]["code"] == 108, r
        assert "not confirmed" in r["error"]["message"], r
        assert await reply(ping, t(5), "the ping behind it") == {"id": ping_id, "ok": {}}
        assert [p["data"] for p in await pub.pubs(3)] == ["x0", "x1", "x2"]
        order = pub.reply_order
        assert order.index(pid) < order.index(ping_id), order
        # A second one meets the same deadline; the connection stays open.
        r = await pub.call("publish", channel=ach, data=2, timeout=t(10))
        assert r["error"]["code"] == 108, r
        assert not pub.closed.is_set()
        assert s.healthz()[1]["store"]["backlog"] == 2
    finally:
        await in_thread(ferretdb.resume)
    # Not confirmed is not lost: both are written once the store is back.
    await hh.async_wait_for(lambda: stored(ferretdb, ach) == [1, 2, 3], t(15),
                            what=lambda: "offsets 1..3 stored (have %r)" % stored(ferretdb, ach))
    r = await pub.ok("publish", channel=ach, data=3)
    assert r["offset"] == 4
    assert stored(ferretdb, ach) == [1, 2, 3, 4]


async def test_pushes_behind_a_pending_reply_count_against_send_queue_max(
        server_factory, ferretdb):
    s = server_factory(config(ferretdb, durable_ack_timeout_ms=60000,
                              send_queue_max=8192))
    ach, nch = hh.chan("a:"), hh.chan("n:")
    pub, other = await s.client(), await s.client()
    await pub.ok("subscribe", channel=nch)
    assert (await pub.ok("publish", channel=ach, data=0))["offset"] == 1
    await in_thread(ferretdb.pause)
    try:
        _, cmd, pending = pub.start("publish", channel=ach, data=1)
        await pub.send(cmd)
        blob = "y" * 1000
        for i in range(20):      # ~20 KB of pushes queue behind the reply
            await other.ok("publish", channel=nch, data=blob)
            if pub.closed.is_set():
                break
        assert await pub.wait_closed(t(5)) == 4001
        assert not pending.done() or pending.exception() is not None
    finally:
        await in_thread(ferretdb.resume)
    await hh.async_wait_for(lambda: stored(ferretdb, ach) == [1, 2], t(15),
                            what=lambda: "offsets 1, 2 stored (have %r)" % stored(ferretdb, ach))
