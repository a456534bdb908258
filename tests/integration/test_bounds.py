"""Bounds on what one node keeps, and deadlines that must hold on a quiet
worker.

* Channel streams: an owner keeps at most max_channels / workers of them;
  idle ones (no subscribers) are evicted, least recently used first, and
  when none is idle a new channel gets 106. A client publishing once to
  each of many new channel names leaves the count at the bound and memory
  flat; a client recovering on an evicted channel gets recovered:false
  with the new epoch, never a silent gap.
* Subscriptions per connection: max_channels_per_conn holds above 65,535.
* A closing connection whose peer stopped reading is dropped within the
  close grace period even when nothing else happens on its worker: lws 4.1
  (libuv event lib) re-reads its timer list only when one of its own events
  runs, so a timeout armed from a libuv timer or the mailbox never fired
  until some other traffic woke lws.
"""

import asyncio
import json
import socket
import time

import pytest

import herald_harness as hh
from ferret_harness import ferretdb  # noqa: F401 (fixture)
from herald_harness import chan, t

# server/net/conn.c CONN_CLOSE_GRACE_S: how long a closing connection may
# take to take its close frame.
CLOSE_GRACE_S = 3


def server_side_open(server_port, peer_port):
    """1 while the server holds its end of the connection from peer_port in
    a descriptor: /proc/net/tcp lists the socket with a non-zero inode; a
    socket the server closed is gone or orphaned (inode 0). Reading this
    does not touch the server, unlike /healthz (a request on the same
    worker would wake lws and hide the bug)."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            f = open(path)
        except OSError:
            continue
        with f:
            next(f)
            for line in f:
                p = line.split()
                lport = int(p[1].rsplit(":", 1)[1], 16)
                rport = int(p[2].rsplit(":", 1)[1], 16)
                if lport == server_port and rport == peer_port:
                    if int(p[9]) != 0:
                        return 1
    return 0


MiB = 1024 * 1024


def rss(s):
    with open("/proc/%d/status" % s.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % s.proc.pid)


async def publish_many(c, names, data, per_frame=16):
    """Publishes data once to each channel, per_frame commands a frame;
    returns the ok replies' (offset, epoch) by channel."""
    out = {}
    for i in range(0, len(names), per_frame):
        part = names[i:i + per_frame]
        replies = await c.batch([("publish", {"channel": n, "data": data}) for n in part],
                                one_frame=True)
        for n, r in zip(part, replies):
            assert "ok" in r, (n, r)
            out[n] = (r["ok"]["offset"], r["ok"]["epoch"])
    return out


# -- channel streams: max_channels -------------------------------------------------

BOUND_CFG = {
    "max_channels": 1000,
    "namespaces": [{"name": "h", "history_size": 10}],
}


@pytest.mark.timeout(180)
async def test_publishing_to_ever_new_channels_stays_at_the_bound(server_factory):
    """One client publishes once to each of 30,000 new channel names (each
    stream keeps its publication as history, so without a bound every one
    of them stays): the number of streams stays at max_channels, RSS
    stays flat, a second client is served throughout, and a client
    recovering on an evicted channel is told it missed data."""
    # ASan holds freed memory in quarantine (256 MiB): RSS would grow
    # with evictions even when nothing is kept.
    env = {"ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:quarantine_size_mb=4"} \
        if hh.SANITIZE else None
    s = server_factory(BOUND_CFG, workers=2, env=env)
    pub = await s.client()
    other = await s.client()
    mine = chan("h:probe-")
    await other.ok("subscribe", channel=mine)
    data = {"text": "y" * 1000}
    # Warm up (allocator, buffers) on as many channels as the bound.
    await publish_many(pub, ["h:w%d" % i for i in range(1000)], data)
    base = rss(s)
    first = await publish_many(pub, ["h:a%d" % i for i in range(1000)], data)
    served = 0
    for k in range(29):
        await publish_many(pub, ["h:b%d-%d" % (k, i) for i in range(1000)], data)
        # The other client is served between the floods.
        r = await other.ok("publish", channel=mine, data=k)
        (p,) = await other.pubs(1)
        assert p["offset"] == r["offset"], (p, r)
        served += 1
    grew = rss(s) - base
    st = s.healthz()[1]
    # Unbounded, 30,000 streams of ~2.5 KiB each would hold about 75 MiB.
    assert grew < 24 * MiB, "RSS grew %.1f MiB; healthz %r" % (grew / MiB, st)
    assert st["channels"] <= 1000, st
    assert st["channels"] >= 900, st
    assert st["channels_evicted"] >= 30000, st
    assert served == 29

    # Recovery on an evicted channel: recovered false, the new epoch.
    ch = "h:a0"
    off, epoch = first[ch]
    c = await s.client()
    r = await c.ok("subscribe", channel=ch, since={"offset": 0, "epoch": epoch})
    assert r["recovered"] is False, r
    assert r["epoch"] != epoch, r
    assert r.get("publications", []) == [], r
    # A recent channel is still there: recovered from its history.
    last = "h:b28-999"
    r2 = await c.ok("history", channel=last, limit=10)
    assert [p["data"] for p in r2["publications"]] == [data], r2
    await c.close()
    await pub.close()
    await other.close()


async def test_full_with_nothing_idle_new_channels_get_106(server_factory):
    """Every stream has a subscriber: nothing can be evicted, so a publish
    or subscribe to a new channel gets 106 (and a warning is logged); the
    existing channels keep working; once a subscriber leaves, its channel
    can be evicted and the new one fits."""
    s = server_factory({"max_channels": 10,
                        "namespaces": [{"name": "h", "history_size": 10}]},
                       workers=1)
    c = await s.client()
    names = [chan("h:") for _ in range(10)]
    for n in names:
        await c.ok("subscribe", channel=n)
    assert s.healthz()[1]["channels"] == 10
    e = await c.error("publish", channel=chan(), data=1)
    assert e["code"] == 106, e
    e = await c.error("subscribe", channel=chan())
    assert e["code"] == 106, e
    e = await c.error("history", channel=chan("h:"))
    assert e["code"] == 106, e
    r = await c.ok("publish", channel=names[3], data=1)
    assert r["offset"] == 1
    (p,) = await c.pubs(1)
    assert p["channel"] == names[3]
    hh.wait_for(lambda: any(line.get("msg", "").startswith("channel limit reached")
                            for line in s.log_lines()), t(5), what="the warning")
    await c.ok("unsubscribe", channel=names[0])
    fresh = chan()
    r = await c.ok("publish", channel=fresh, data=2)
    assert r["offset"] == 1
    await c.ok("subscribe", channel=chan())
    st = s.healthz()[1]
    assert st["channels"] <= 10, st
    await c.close()


async def test_durable_channel_evicted_recovers_from_the_store(server_factory, ferretdb):
    """A durable channel's stream is evicted only once the store has
    written everything queued; used again, it continues from the store
    (same epoch, next offset) and a recovery on it reads the store:
    recovered true, nothing missed."""
    s = server_factory({
        "max_channels": 4,
        "mongodb": ferretdb.uri("", serverSelectionTimeoutMS=1000,
                                connectTimeoutMS=1000, socketTimeoutMS=2000),
        "namespaces": [{"name": "d", "history_size": 10, "durable": True}],
    }, workers=1)
    c = await s.client()
    target = chan("d:")
    replies = [await c.ok("publish", channel=target, data={"i": i}) for i in range(5)]
    epoch = replies[0]["epoch"]
    assert [r["offset"] for r in replies] == [1, 2, 3, 4, 5]
    others = [chan("d:") for _ in range(8)]

    async def published(n):
        r = await c.call("publish", channel=n, data={"i": 0})
        if "error" in r:
            # The store has not written everything yet: nothing is
            # evictable until it has.
            assert r["error"]["code"] == 106, r
            return False
        return True
    for n in others:
        await hh.async_wait_for(lambda n=n: published(n), t(15),
                                what="a publish to %s" % n)
    st = s.healthz()[1]
    assert st["channels"] <= 4 and st["channels_evicted"] >= 5, st
    got = []

    async def subscribed():
        r = await c.call("subscribe", channel=target,
                         since={"offset": 2, "epoch": epoch})
        if "error" in r:
            assert r["error"]["code"] == 106, r   # as above
            return False
        got.append(r["ok"])
        return True
    await hh.async_wait_for(subscribed, t(15), what="the subscribe")
    r = got[0]
    assert r["recovered"] is True, r
    assert r["epoch"] == epoch, r
    assert [p["offset"] for p in r["publications"]] == [3, 4, 5], r
    assert [p["data"] for p in r["publications"]] == [{"i": 2}, {"i": 3}, {"i": 4}]
    r = await c.ok("publish", channel=target, data={"i": 5})
    assert (r["offset"], r["epoch"]) == (6, epoch), r
    await c.close()


# -- close deadlines on a quiet worker --------------------------------------------

def test_closing_client_that_stopped_reading_is_dropped_on_a_quiet_worker(server_factory):
    """One worker. A subscriber stops reading; a publisher fills its queue
    until the server closes it as a slow consumer (4001, decided when a
    delivery comes through the worker's mailbox, outside any lws
    callback), then stays quiet (no pings either: ping_interval is long).
    The close frame cannot be written (the subscriber's socket is full),
    so only the close grace timeout ends the connection: it must, within
    the grace period, with no other traffic on the worker."""
    s = server_factory({"send_queue_max": 65536, "ping_interval": 3600,
                        "pong_timeout": 3600}, workers=1)
    ch = chan()
    v = s.raw(rcvbuf=4096)
    reply, _ = v.call({"id": 1, "op": "subscribe", "channel": ch})
    assert "ok" in reply, reply
    peer = v.sock.getsockname()[1]
    assert server_side_open(s.port, peer)
    p = s.raw()
    data = "x" * 60000
    cmd_id = 1
    deadline = time.monotonic() + t(30)
    while "slow consumer closed" not in s.stderr():
        assert time.monotonic() < deadline, "no slow-consumer close:\n" + s.stderr_tail(20)
        reply, _ = p.call({"id": cmd_id, "op": "publish", "channel": ch, "data": data})
        assert "ok" in reply, reply
        cmd_id += 1
    closed_at = time.monotonic()
    hh.wait_for(lambda: not server_side_open(s.port, peer),
                CLOSE_GRACE_S + t(3),
                what=lambda: "the server to drop the connection (%.1fs after "
                "the close, grace %ds)" % (time.monotonic() - closed_at, CLOSE_GRACE_S))
    took = time.monotonic() - closed_at
    v.close()
    assert took >= CLOSE_GRACE_S - 1, "dropped before the grace period: %.1fs" % took
    reply, _ = p.call({"id": cmd_id, "op": "ping"})
    assert reply == {"id": cmd_id, "ok": {}}, reply
    hh.wait_for(lambda: s.healthz()[1]["connections"] == 1, t(5),
                what=lambda: "only the publisher left: %r" % (s.healthz(),))
    p.close()
