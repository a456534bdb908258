"""Cluster mode: publications arriving from Redis must not queue without
bound for a worker that does not drain its mailbox.

A node's channel owner delivers what comes through pub/sub to every
worker with subscribers of the channel, one message per publication in
that worker's mailbox. Publications made through other nodes cannot be
refused (they are already numbered in Redis), so the bound is on the
fan-out: past twice worker_queue_max waiting messages, the owner stops
queueing for that worker and closes its subscribers of the channel with
4003 (they reconnect and recover with `since`).

The test stops one worker thread of node B (ptrace: only that thread
stops; the rest of the process, the channel's owner worker included,
runs on), sends a burst of publications through node A, and checks that
node B's memory did not grow with the burst, and that B's subscribers on
the stopped worker get, once it runs again, the publications queued
before the bound in order and then 4003.
"""

import asyncio
import time

import pytest

import cluster_harness as ch
import herald_harness as hh
from stopped_thread import StoppedThread, worker_tids
from herald_harness import t

QUEUE_MAX = 64           # the minimum worker_queue_max
BURST = 6000
PAYLOAD = "x" * 16384    # ~32 KiB per publication in memory (JSON + msgpack)
GROWTH_MAX = 64 << 20    # the hostile-client suite's bound

CONFIG = {
    "allow_anonymous": True,
    "worker_queue_max": QUEUE_MAX,
    # the subscribers on the stopped worker receive up to 2 x QUEUE_MAX
    # publications at once when it runs again: room for them (not 4001)
    "send_queue_max": 16 << 20,
    "redis_timeout_ms": 2000,
    "namespace_defaults": {"history_size": 0},
}

make_cluster = ch.cluster_factory_fixture()
_native_tracebacks = ch.native_tracebacks_fixture()

def rss(node):
    with open("/proc/%d/status" % node.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def clients_on_running_worker(node, n):
    """n connected clients of `node`, all on its running worker: with the
    other worker stopped, a connection it accepted cannot complete its
    handshake, so those that complete are on the running one. Attempts go
    in parallel batches (one that gives up takes its close timeout too);
    the extra ones are closed."""
    async def attempt():
        try:
            c = await node.client(timeout=t(0.5))
        except (asyncio.TimeoutError, OSError):
            return None
        await c.ok("connect")
        return c
    got = []
    for _ in range(5):
        batch = await asyncio.gather(*(attempt() for _ in range(2 * n + 4)))
        got += [c for c in batch if c is not None]
        if len(got) >= n:
            break
    assert len(got) >= n, "only %d connections reached the running worker" % len(got)
    for c in got[n:]:
        await c.close()
    return got[:n]


@pytest.mark.timeout(120)
async def test_fanout_to_a_stopped_worker_is_bounded(make_cluster):
    # Under AddressSanitizer freed memory sits in its quarantine (256 MiB
    # by default) instead of being reused: RSS would grow with the
    # publications the owner let go. A small quarantine keeps the
    # measurement about what is held.
    env = {"ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:quarantine_size_mb=4"} \
        if hh.SANITIZE else None
    cl = make_cluster(CONFIG, n=2, env=env)
    a, b = cl
    tids = worker_tids(b)
    assert sorted(tids) == [0, 1], tids
    x, y = (StoppedThread(b.proc.pid, tids[i]) for i in (0, 1))
    try:
        # 16 clients on worker Y (X stopped) subscribe to a channel each:
        # those answered while X is stopped are owned by Y. (One client
        # each: a connection's replies leave in command order.)
        x.stop()
        probes = await clients_on_running_worker(b, 16)
        names = [hh.chan("fan") for _ in probes]
        waits = [asyncio.ensure_future(c.call("subscribe", channel=nm, timeout=t(60)))
                 for c, nm in zip(probes, names)]
        await hh.async_wait_for(lambda: sum(1 for f in waits if f.done()) >= 2,
                                t(10), what="two channels owned by the running worker")
        owned_by_y = [i for i, f in enumerate(waits) if f.done()]
        chname, marker = names[owned_by_y[0]], names[owned_by_y[1]]
        k = probes[owned_by_y[1]]          # the marker's subscriber, on Y
        x.resume()
        await asyncio.gather(*waits)
        for i, c in enumerate(probes):
            if c is not k:
                await c.close()
        # three subscribers of chname on worker X (Y stopped meanwhile)
        y.stop()
        subs = await clients_on_running_worker(b, 3)
        y.resume()
        starts = [(await s.ok("subscribe", channel=chname))["offset"] for s in subs]

        # X stops; a burst through node A
        x.stop()
        before = rss(b)
        pub = await a.client()
        await pub.ok("connect")
        sent = []
        for i in range(BURST):
            _, cmd, fut = pub.start("publish", channel=chname, data={"i": i, "p": PAYLOAD})
            await pub.send(cmd)
            sent.append(fut)
        replies = await asyncio.gather(*sent)
        assert all("ok" in r for r in replies), [r for r in replies if "ok" not in r][:3]
        top = max(r["ok"]["offset"] for r in replies)
        # the marker comes through B's pub/sub after every record of the
        # burst, to the same owner (Y): once k has it, Y has fanned out all
        m = await pub.ok("publish", channel=marker, data="marker")
        p = await k.push("pub", timeout=t(30))
        assert p["channel"] == marker and p["offset"] == m["offset"], p
        grown = rss(b) - before
        print("node B grew %.1f MiB during a burst of %d x %d bytes"
              % (grown / 2**20, BURST, len(PAYLOAD)))
        assert grown < GROWTH_MAX, \
            "node B grew by %.0f MiB while a worker did not drain (bound %d MiB)" % (
                grown / 2**20, GROWTH_MAX >> 20)
    finally:
        x.resume()
        y.resume()

    # X runs again: what was queued before the bound, in order, then 4003
    for s, start in zip(subs, starts):
        await s.wait_closed(t(30))
        got = s.pending_pushes()
        offsets = [q["offset"] for q in got if q.get("push") == "pub"]
        disc = [q for q in got if q.get("push") == "disconnect"]
        assert offsets == list(range(start + 1, start + 1 + len(offsets))), offsets[:10]
        assert len(offsets) < top - start, "got all %d: no bound" % len(offsets)
        assert s.close_code == 4003, (s.close_code, disc, len(offsets))
        assert disc and disc[0]["code"] == 4003 and disc[0]["reconnect"] is True, disc
    # and one recovers with since, honestly (the window is 64)
    again = await b.client()
    await again.ok("connect")
    last = start + len(offsets)
    r = await again.ok("subscribe", channel=chname,
                       since={"offset": last, "epoch": replies[0]["ok"]["epoch"]})
    assert r["recovered"] is False and r["offset"] >= top, r
    log = [l for l in b.log_lines() if "fan-out" in str(l.get("msg"))]
    assert log, "the bound was not logged"
