"""Slow consumers: a subscriber that stops reading is closed with 4001 once
its send queue passes send_queue_max; everybody else keeps receiving."""

import asyncio
import json
import time

import pytest

import herald_harness as hh
from herald_harness import chan, t

QUEUE_MAX = 65536
PAYLOAD = "p" * 8192          # ~8 KiB publications
MAX_BYTES = 24 * 1024 * 1024  # give up publishing after this much


def connections(s):
    return s.healthz()[1]["connections"]


def drain_raw(raw, timeout):
    """Reads everything the server still sends: returns the events up to
    and including the close frame or end of stream."""
    events = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            events.append(("timeout",))
            return events
        try:
            ev = raw.recv_event(timeout=remaining, auto_pong=True)
        except OSError:
            ev = ("eof",)
        events.append(ev)
        if ev[0] in ("close", "eof"):
            return events


@pytest.mark.timeout(90)
async def test_slow_consumer_closed_4001_others_unaffected(server_factory):
    s = server_factory({"send_queue_max": QUEUE_MAX})
    ch = chan()
    normal = await s.client()
    await normal.ok("subscribe", channel=ch)
    pub = await s.client()
    await pub.ok("connect")

    slow = s.raw(rcvbuf=4096)
    reply, _ = slow.call({"id": 1, "op": "subscribe", "channel": ch})
    assert "ok" in reply, reply
    # from now on `slow` reads nothing
    await hh.async_wait_for(lambda: connections(s) >= 3, t(5), what="3 connections")
    base = connections(s)

    received = []
    sent = 0
    dropped_at = None
    batch = 4
    while sent * len(PAYLOAD) < MAX_BYTES:
        replies = await pub.batch([("publish", {"channel": ch, "data": {"i": sent + k, "p": PAYLOAD}})
                                   for k in range(batch)])
        assert all("ok" in r for r in replies), [r for r in replies if "ok" not in r][:1]
        sent += batch
        # pace on the normal subscriber so it is never the slow one
        received += await normal.pubs(batch, timeout=t(10))
        if sent % 32 == 0 and connections(s) < base:
            dropped_at = sent
            break
    if dropped_at is None:
        # the server may need a moment to give up on the blocked socket
        await hh.async_wait_for(lambda: connections(s) < base, t(15),
                                what="the slow consumer to be dropped after %d bytes"
                                % (sent * len(PAYLOAD)))

    # the normal subscriber got everything, in order, without gaps
    assert [p["offset"] for p in received] == list(range(1, sent + 1))
    assert [p["data"]["i"] for p in received] == list(range(sent))
    assert not normal.closed.is_set()
    assert not pub.closed.is_set()

    # the slow one now reads: data without gaps, then (if the server could
    # still send it) the disconnect push 4001 and close frame 4001
    events = await asyncio.get_running_loop().run_in_executor(None, drain_raw, slow, t(15))
    slow.close()
    assert events[-1][0] in ("close", "eof"), "slow consumer still open: %r" % (events[-1],)
    msgs = []
    for ev in events:
        if ev[0] == "text":
            msgs += hh.decode_frame(ev[1], "json")
    pubs = [m for m in msgs if m.get("push") == "pub"]
    offs = [p["offset"] for p in pubs]
    assert offs == list(range(1, len(offs) + 1)), "gap in what the slow consumer got"
    assert len(offs) < sent
    if events[-1][0] == "close":
        assert events[-1][1] == 4001, events[-1]
        assert msgs and msgs[-1].get("push") == "disconnect", msgs[-1:]
        assert msgs[-1]["code"] == 4001 and msgs[-1]["reconnect"] is True, msgs[-1]
    else:
        discon = [m for m in msgs if m.get("push") == "disconnect"]
        assert all(d["code"] == 4001 for d in discon), discon

    # and the channel still works for the others
    r = await pub.ok("publish", channel=ch, data="after")
    p = await normal.push("pub")
    assert p["data"] == "after" and p["offset"] == r["offset"] == sent + 1


@pytest.mark.timeout(60)
async def test_many_small_publications_to_a_reading_subscriber_are_not_dropped(server_factory):
    """A subscriber that does read is never mistaken for a slow one, even
    when publications arrive in bursts (the server batches them)."""
    s = server_factory({"send_queue_max": QUEUE_MAX})
    ch = chan()
    subs = [await s.client() for _ in range(3)] + [await s.client(enc="msgpack")]
    for c in subs:
        await c.ok("subscribe", channel=ch)
    pub = await s.client()
    n = 2000
    for start in range(0, n, 200):
        await pub.batch([("publish", {"channel": ch, "data": i}) for i in range(start, start + 200)])
        for c in subs:
            got = await c.pubs(200, timeout=t(10))
            assert [p["data"] for p in got] == list(range(start, start + 200))
    assert not any(c.closed.is_set() for c in subs)
