"""Slow consumers: a subscriber that stops reading is closed with 4001 once
its send queue passes send_queue_max; everybody else keeps receiving."""

import asyncio
import json
import threading
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


def slow_consumer_closed(s, client):
    return any(l.get("msg") == "slow consumer closed" and l.get("client") == client
               for l in s.log_lines())


@pytest.mark.timeout(90)
async def test_slow_consumer_closed_4001_others_unaffected(server_factory):
    """The slow subscriber stops reading; once the server has decided to
    close it (its log line), it reads everything the server still sends,
    within the server's close grace (CONN_CLOSE_GRACE_S, 3 s: after it the
    socket is dropped and the kernel discards what was not read): the
    publications it was sent, gap-free from 1, then the disconnect push 4001
    and the close frame 4001."""
    s = server_factory({"send_queue_max": QUEUE_MAX})
    ch = chan()
    normal = await s.client()
    await normal.ok("subscribe", channel=ch)
    pub = await s.client()
    await pub.ok("connect")

    slow = s.raw(rcvbuf=4096)
    reply, _ = slow.call({"id": 1, "op": "connect"})
    slow_id = reply["ok"]["client"]
    reply, _ = slow.call({"id": 2, "op": "subscribe", "channel": ch})
    assert "ok" in reply, reply
    # from now on `slow` reads nothing until the server has closed it
    await hh.async_wait_for(lambda: connections(s) >= 3, t(5), what="3 connections")
    base = connections(s)

    decided = threading.Event()

    def wait_then_drain():
        hh.wait_for(lambda: slow_consumer_closed(s, slow_id), t(60), interval=0.01,
                    what="the slow consumer's close to be logged")
        decided.set()
        return drain_raw(slow, t(15))

    drained = asyncio.get_running_loop().run_in_executor(None, wait_then_drain)
    received = []
    sent = 0
    batch = 4
    while not decided.is_set() and not drained.done():
        assert sent * len(PAYLOAD) < MAX_BYTES, \
            "no slow consumer close after %d bytes" % (sent * len(PAYLOAD))
        replies = await pub.batch([("publish", {"channel": ch, "data": {"i": sent + k, "p": PAYLOAD}})
                                   for k in range(batch)])
        assert all("ok" in r for r in replies), [r for r in replies if "ok" not in r][:1]
        sent += batch
        # pace on the normal subscriber so it is never the slow one
        received += await normal.pubs(batch, timeout=t(10))
    events = await drained
    slow.close()

    # the normal subscriber got everything, in order, without gaps
    assert [p["offset"] for p in received] == list(range(1, sent + 1))
    assert [p["data"]["i"] for p in received] == list(range(sent))
    assert not normal.closed.is_set()
    assert not pub.closed.is_set()

    # the slow one: data without gaps, then the disconnect push 4001 and
    # the close frame 4001, nothing else
    assert events[-1][:2] == ("close", 4001), "no close frame 4001: %r" % (events[-3:],)
    msgs = []
    for ev in events[:-1]:
        assert ev[0] == "text", ev
        msgs += hh.decode_frame(ev[1], "json")
    assert msgs, "nothing before the close frame"
    assert msgs[-1] == {"push": "disconnect", "code": 4001, "reason": msgs[-1].get("reason"),
                        "reconnect": True}, msgs[-1]
    pubs = msgs[:-1]
    assert all(m.get("push") == "pub" for m in pubs), [m for m in pubs if m.get("push") != "pub"][:1]
    offs = [p["offset"] for p in pubs]
    assert offs == list(range(1, len(offs) + 1)), "gap in what the slow consumer got"
    assert len(offs) < sent
    await hh.async_wait_for(lambda: connections(s) < base, t(10),
                            what="the slow consumer's connection to be gone")

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
