"""Hostile clients: whatever one client does, the server's memory stays
bounded, a well-behaved client keeps being served within a second, and the
server survives.

Each case runs an attack (blocking sockets, in a thread) while a probe
client publishes to itself and times every round trip, and a sampler
reads the server's RSS from /proc. The bound is HOSTILE_RSS_MAX of growth
over the RSS measured before the attack, per hostile client."""

import asyncio
import json
import os
import socket
import struct
import threading
import time

import pytest

import herald_harness as hh
from herald_harness import chan, t

MiB = 1024 * 1024
HOSTILE_RSS_MAX = 64 * MiB
PROBE_MAX_S = 1.0           # a well-behaved client's round trip, at most


def rss(s):
    with open("/proc/%d/status" % s.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % s.proc.pid)


class Watch:
    """A probe round trip every 50 ms and an RSS sample every 20 ms, from
    start() to stop()."""

    def __init__(self, s):
        self.s = s
        self.base = rss(s)
        self.peak = self.base
        self.trips = []
        self.worst = 0.0
        self._stop = asyncio.Event()

    async def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.s))
            await asyncio.sleep(0.02)

    async def _probe(self):
        c = await self.s.client()
        ch = chan("probe-")
        await c.ok("subscribe", channel=ch)
        i = 0
        while not self._stop.is_set():
            i += 1
            t0 = time.monotonic()
            await c.call("publish", channel=ch, data={"i": i}, timeout=t(5))
            (p,) = await c.pubs(1, timeout=t(5))
            assert p["data"] == {"i": i}, p
            dt = time.monotonic() - t0
            self.trips.append(dt)
            self.worst = max(self.worst, dt)
            await asyncio.sleep(0.05)
        await c.close()

    async def run(self, attack, *args):
        """Runs attack(*args) in a thread while probing; returns its result."""
        tasks = [asyncio.ensure_future(self._sample()), asyncio.ensure_future(self._probe())]
        try:
            result = await asyncio.to_thread(attack, *args)
        finally:
            self._stop.set()
        await asyncio.gather(*tasks)
        self.peak = max(self.peak, rss(self.s))
        return result

    def check(self, hostile=1):
        grew = self.peak - self.base
        assert grew <= HOSTILE_RSS_MAX * hostile, \
            "RSS grew %.1f MiB (from %.1f MiB) under %d hostile client(s)" % (
                grew / MiB, self.base / MiB, hostile)
        assert len(self.trips) >= 3, "the probe completed only %d round trips" % len(self.trips)
        assert self.worst <= t(PROBE_MAX_S), \
            "a well-behaved client waited %.2f s (round trips: %d)" % (self.worst, len(self.trips))
        assert self.s.alive()


def frame_bytes(payload, binary=False, opcode=None, fin=True):
    """One masked client frame carrying payload."""
    op = opcode if opcode is not None else (hh.OP_BIN if binary else hh.OP_TEXT)
    mask = os.urandom(4)
    n = len(payload)
    b0 = (0x80 if fin else 0) | op
    if n >= 65536:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    elif n >= 126:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    return hdr + mask + hh._mask_fast(payload, mask)


def flood_until_stalled(raw, frame, limit_s, stalled_s=1.0):
    """Sends frame again and again without ever reading, until the server
    has not taken a byte for stalled_s (it stopped reading: True), the
    connection ends (True) or limit_s passes (False)."""
    raw.sock.settimeout(0.1)
    deadline = time.monotonic() + limit_s
    last_progress = time.monotonic()
    pending = b""
    while time.monotonic() < deadline:
        if not pending:
            pending = frame
        try:
            sent = raw.sock.send(pending)
        except socket.timeout:
            if time.monotonic() - last_progress >= stalled_s:
                return True
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
        pending = pending[sent:]
        last_progress = time.monotonic()
    return False


def wait_log(s, msg, timeout, **fields):
    """Waits for a log line with this msg (and fields); returns it."""
    found = []

    def seen():
        for line in s.log_lines():
            if line.get("msg") == msg and all(line.get(k) == v for k, v in fields.items()):
                found.append(line)
                return True
        return False
    hh.wait_for(seen, timeout, what="log line %r %r" % (msg, fields))
    return found[0]


def read_close(raw, timeout):
    """Reads what the server sent until its close frame or the end of the
    stream: returns the close code (None if the stream ended without one)."""
    raw.sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = raw.recv_event(timeout=max(0.01, deadline - time.monotonic()))
        if ev[0] == "close":
            return ev[1]
        if ev[0] == "eof":
            return None
    raise AssertionError("server neither closed nor ended the stream")


def batched(cmd_fn, n, enc="json"):
    cmds = [cmd_fn(i) for i in range(n)]
    if enc == "json":
        return "\n".join(json.dumps(c) for c in cmds).encode()
    return b"".join(hh.mp_pack(c) for c in cmds)


# --------------------------------------------------------------------------
# never-reading clients flooding commands

CMD_FLOOD_CFG = {"send_queue_max": 1048576, "ping_interval": 2, "pong_timeout": 2}


def open_never_reading(s, enc="json"):
    raw = s.raw(rcvbuf=4096, subprotocol=hh.MSGPACK_SUB if enc == "msgpack" else hh.JSON_SUB)
    reply, _ = raw.call({"id": 1, "op": "connect"}, enc=enc)
    assert "ok" in reply, reply
    return raw


@pytest.mark.timeout(90)
@pytest.mark.parametrize("enc", ["json", "msgpack"])
async def test_never_reading_ping_flood(server_factory, enc):
    """Frames of 2,000 batched pings from a client that never reads: its
    replies stop at send_queue_max, it is no longer read, and it is closed
    with 4001 after pong_timeout."""
    s = server_factory(CMD_FLOOD_CFG)
    raw = open_never_reading(s, enc)
    w = Watch(s)
    frame = frame_bytes(batched(lambda i: {"id": i + 2, "op": "ping"}, 2000, enc),
                        binary=enc == "msgpack")

    def attack():
        assert flood_until_stalled(raw, frame, t(30)), \
            "the server kept reading a client that reads nothing"
        wait_log(s, "slow consumer closed", t(10), code=4001)
        # Reading now, it gets what was queued before the limit, then the
        # slow-consumer close (within the close grace).
        return read_close(raw, t(10))
    code = await w.run(attack)
    assert code == 4001, code
    raw.close()
    w.check()
