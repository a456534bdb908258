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
import re
import select
import socket
import struct
import sys
import threading
import time

import pytest

import herald_harness as hh
from herald_harness import chan, t

MiB = 1024 * 1024
HOSTILE_RSS_MAX = 64 * MiB
PROBE_MAX_S = 1.0           # a well-behaved client's round trip, at most


@pytest.fixture
def server_factory(server_factory):
    """The conftest factory, with a small ASan quarantine."""
    def make(config=None, **kw):
        env = dict(kw.pop("env", {}) or {})
        if hh.SANITIZE:
            env.setdefault("ASAN_OPTIONS", hh.ASAN_SMALL_QUARANTINE)
        return server_factory(config, env=env, **kw)
    return make


def rss(s):
    with open("/proc/%d/status" % s.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % s.proc.pid)


class Watch:
    """A probe round trip every 50 ms and an RSS sample every 20 ms, from
    start() to stop()."""

    def __init__(self, s, token=None):
        self.s = s
        self.token = token
        self.base = rss(s)
        self.peak = self.base
        self.trips = []
        self.worst = 0.0
        self._stop = asyncio.Event()

    async def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.s))
            await asyncio.sleep(0.02)

    async def _open_probe(self):
        c = await self.s.client()
        if self.token:
            await c.ok("connect", token=self.token)
        ch = chan("probe-")
        await c.ok("subscribe", channel=ch)
        return c, ch

    async def _probe(self, c, ch):
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

    async def run_async(self, coro):
        """Runs an attack coroutine while probing; returns its result."""
        c, ch = await self._open_probe()
        tasks = [asyncio.ensure_future(self._sample()),
                 asyncio.ensure_future(self._probe(c, ch))]
        try:
            result = await coro
            # Served after the attack too: two more round trips.
            after = max(3, len(self.trips) + 2)
            await hh.async_wait_for(lambda: len(self.trips) >= after or tasks[1].done(),
                                    t(5), what="probe round trips after the attack")
        finally:
            self._stop.set()
        await asyncio.gather(*tasks)
        self.peak = max(self.peak, rss(self.s))
        return result

    async def run(self, attack, *args):
        """Runs attack(*args) in a thread while probing; returns its result."""
        return await self.run_async(asyncio.to_thread(attack, *args))

    def check(self, hostile=1):
        grew = self.peak - self.base
        # Shown with pytest -s (the figures of the closing reports).
        print("\nRSS %.1f -> %.1f MiB (grew %.1f), probe worst %.3f s over %d round trips"
              % (self.base / MiB, self.peak / MiB, grew / MiB, self.worst, len(self.trips)))
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
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ev = raw.recv_event(timeout=max(0.01, deadline - time.monotonic()))
            if ev[0] == "close":
                return ev[1]
            if ev[0] == "eof":
                return None
    except socket.timeout:
        pass
    raise AssertionError("server neither closed nor ended the stream in %.0f s" % timeout)


def batched(cmd_fn, n, enc="json"):
    """n commands in one message, which must fit the default
    max_message_size (a larger one would only earn error 112)."""
    cmds = [cmd_fn(i) for i in range(n)]
    if enc == "json":
        msg = "\n".join(json.dumps(c) for c in cmds).encode()
    else:
        msg = b"".join(hh.mp_pack(c) for c in cmds)
    assert len(msg) <= 65536, len(msg)
    return msg


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


HOT_NS = {"namespaces": [{"name": "h", "history_size": 100, "presence": True}]}


async def fill_history(s, ch, n, size):
    """n publications of about size bytes on ch."""
    p = await s.client()
    await p.batch([("publish", {"channel": ch, "data": "x" * size}) for _ in range(n)])
    await p.close()


async def flood_until_4001(s, w, raw, frame):
    """Sends frame again and again on raw without reading, while w probes:
    the server must stop reading it, then close it 4001 (slow consumer)
    with memory bounded and the probe served."""
    def attack():
        assert flood_until_stalled(raw, frame, t(30)), "never stopped reading"
        wait_log(s, "slow consumer closed", t(10), code=4001)
        return read_close(raw, t(10))
    assert await w.run(attack) == 4001
    raw.close()
    w.check()


@pytest.mark.timeout(90)
async def test_never_reading_history_flood(server_factory):
    """History replies of ~100 KiB each, asked 200 at a time by a client
    that reads nothing."""
    s = server_factory(dict(CMD_FLOOD_CFG, **HOT_NS))
    ch = chan("h:")
    await fill_history(s, ch, 100, 1000)
    raw = open_never_reading(s)
    w = Watch(s)
    frame = frame_bytes(batched(
        lambda i: {"id": i + 2, "op": "history", "channel": ch, "limit": 100}, 200))

    await flood_until_4001(s, w, raw, frame)


@pytest.mark.timeout(90)
async def test_never_reading_presence_flood(server_factory):
    """Presence replies listing 50 members, asked 500 at a time."""
    s = server_factory(dict(CMD_FLOOD_CFG, **HOT_NS))
    ch = chan("h:")
    members = [await s.client() for _ in range(50)]
    for m in members:
        await m.ok("subscribe", channel=ch)
    raw = open_never_reading(s)
    w = Watch(s)
    frame = frame_bytes(batched(
        lambda i: {"id": i + 2, "op": "presence", "channel": ch}, 500))

    await flood_until_4001(s, w, raw, frame)


@pytest.mark.timeout(90)
async def test_never_reading_subscribe_flood(server_factory):
    """Subscribe-with-recovery and unsubscribe, 250 pairs a frame: each
    subscribe answers with up to 100 stored publications."""
    s = server_factory(dict(CMD_FLOOD_CFG, **HOT_NS))
    ch = chan("h:")
    await fill_history(s, ch, 100, 500)
    first = await s.client()
    epoch = (await first.ok("subscribe", channel=ch))["epoch"]
    await first.close()
    raw = open_never_reading(s)
    w = Watch(s)

    def pair(i):
        if i % 2 == 0:
            return {"id": i + 2, "op": "subscribe", "channel": ch, "since": 0, "epoch": epoch}
        return {"id": i + 2, "op": "unsubscribe", "channel": ch}
    frame = frame_bytes(batched(pair, 500))

    await flood_until_4001(s, w, raw, frame)


@pytest.mark.timeout(90)
async def test_never_reading_subscriber_on_hot_channel(server_factory):
    """A subscriber that reads nothing while 4 KiB publications pour into
    its channel is closed with 4001 at send_queue_max; publishing goes on."""
    s = server_factory(dict(CMD_FLOOD_CFG, **HOT_NS))
    ch = chan("h:")
    raw = s.raw(rcvbuf=4096)
    reply, _ = raw.call({"id": 1, "op": "subscribe", "channel": ch})
    assert "ok" in reply, reply
    pub = await s.client()
    w = Watch(s)
    stop = threading.Event()

    def attack():
        try:
            wait_log(s, "slow consumer closed", t(30), code=4001)
        finally:
            stop.set()
        return read_close(raw, t(10))

    async def publish():
        sent = 0
        while not stop.is_set():
            await pub.batch([("publish", {"channel": ch, "data": "p" * 4096})
                             for _ in range(32)])
            sent += 32
        return sent
    ptask = asyncio.ensure_future(publish())
    code = await w.run(attack)
    sent = await ptask
    assert code == 4001, code
    assert sent * 4096 > CMD_FLOOD_CFG["send_queue_max"], sent
    raw.close()
    w.check()


# --------------------------------------------------------------------------
# many sockets

def open_sockets(port, n, first=b""):
    """n TCP connections to port, each having sent first."""
    socks = []
    for _ in range(n):
        so = socket.create_connection(("127.0.0.1", port), timeout=t(5))
        if first:
            so.sendall(first)
        socks.append(so)
    return socks


def _peek(sock):
    """b"" when the peer closed, one byte when data waits, None when
    nothing happened; never blocks (a zero-timeout select, then a peek)."""
    p = select.poll()
    p.register(sock, select.POLLIN)
    if not p.poll(0):
        return None
    try:
        return sock.recv(1, socket.MSG_PEEK)
    except OSError:
        return b""   # reset


def closed_by_peer(sock):
    """True once the peer closed or reset the connection (reads nothing:
    only peeks, then looks at the TCP state when data is waiting)."""
    data = _peek(sock)
    if data is None:
        return False
    if data == b"":
        return True
    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    return state in (7, 8)   # TCP_CLOSE, TCP_CLOSE_WAIT


def all_closed_by_peer(socks):
    for so in socks:
        if not closed_by_peer(so):
            return False
    return True


def close_all(socks):
    for so in socks:
        try:
            so.close()
        except OSError:
            pass


async def connect_timed(s):
    """A new well-behaved client: seconds from TCP connect to its connect
    reply."""
    t0 = time.monotonic()
    c = await s.client()
    await c.ok("connect")
    dt = time.monotonic() - t0
    await c.close()
    return dt


SLOW_HANDSHAKE_CFG = {"handshake_timeout": 3}


def slowloris(port, n):
    """n connections that send part of an upgrade request, then a header
    byte a second each until the server has closed them all: the seconds
    that took from the last one's opening, or None past handshake_timeout
    and 10 s."""
    start = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow: "
    socks = open_sockets(port, n, start)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < t(3 + 10):
            for so in socks:
                try:
                    so.send(b"a")
                except OSError:
                    pass
            if all_closed_by_peer(socks):
                return time.monotonic() - t0
            time.sleep(1)
        return None
    finally:
        close_all(socks)


async def in_own_process(fn, *args):
    """fn(*args) of this module in a Python process of its own (an attacker
    is another program: in a thread of the test's process it would share
    the interpreter lock with the clients that measure the server)."""
    code = ("import json, sys, test_hostile as m; "
            "print(json.dumps(getattr(m, sys.argv[1])(*json.loads(sys.argv[2]))))")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, fn.__name__, json.dumps(args),
        stdout=asyncio.subprocess.PIPE, cwd=os.path.dirname(os.path.abspath(__file__)))
    out, _ = await proc.communicate()
    assert proc.returncode == 0, "the attacker process failed (%d)" % proc.returncode
    return json.loads(out.decode().strip().splitlines()[-1])


@pytest.mark.timeout(120)
async def test_slowloris_half_open_handshakes(server_factory):
    """3,000 connections that send part of an upgrade request and then a
    header byte every second are all closed after handshake_timeout, and a
    new client can connect meanwhile (more than 1,024 on each worker: lws's
    header table pool was 1,024 a worker, and a newcomer waited for a table
    until the attack's handshakes timed out)."""
    s = server_factory(SLOW_HANDSHAKE_CFG)
    w = Watch(s)

    async def newcomers():
        worst = 0.0
        while not w._stop.is_set():
            worst = max(worst, await connect_timed(s))
            await asyncio.sleep(0.2)
        return worst
    ntask = asyncio.ensure_future(newcomers())
    took = await w.run_async(in_own_process(slowloris, s.port, 3000))
    worst_connect = await ntask
    assert took is not None, "half-open handshakes outlived handshake_timeout"
    assert worst_connect <= t(PROBE_MAX_S), \
        "a new client waited %.2f s to connect during the attack" % worst_connect
    w.check()


@pytest.mark.timeout(90)
async def test_idle_unauthenticated_sockets_closed(server_factory):
    """With tokens required, 500 WebSockets that never send `connect` are
    closed with 4100 after handshake_timeout; a connected client stays."""
    secret = "hostile-secret"
    s = server_factory({"handshake_timeout": 2, "allow_anonymous": False,
                        "token_secret": secret})
    c = await s.client()
    await c.ok("connect", token=hh.make_jwt(secret, sub="u1"))
    raws = []

    def attack():
        for _ in range(500):
            raws.append(s.raw())
        codes = [read_close(r, t(10)) for r in raws]
        return codes
    w = Watch(s, token=hh.make_jwt(secret, sub="probe"))
    codes = await w.run(attack)
    for r in raws:
        r.close()
    assert codes == [4100] * 500, sorted(set(map(str, codes)))
    await c.ok("ping")
    w.check()


@pytest.mark.timeout(120)
async def test_reconnect_storm_against_max_connections(server_factory):
    """Four threads connecting and dropping as fast as they can, against
    max_connections = 50: the ones over the limit are closed with 4103,
    the server's count comes back down, and the probe stays served."""
    s = server_factory({"max_connections": 50})
    w = Watch(s)
    refused = []

    def storm():
        t_end = time.monotonic() + t(8)
        n = 0
        while time.monotonic() < t_end:
            socks = []
            for _ in range(40):
                try:
                    socks.append(s.raw())
                except (OSError, hh.HandshakeRefused):
                    pass
            for r in socks:
                # Refused ones get a disconnect push and the close at once;
                # admitted ones get nothing (they have sent nothing).
                try:
                    for _ in range(3):
                        ev = r.recv_event(timeout=0.05)
                        if ev[0] in ("close", "eof"):
                            refused.append(ev[1] if ev[0] == "close" else "eof")
                            break
                except (socket.timeout, OSError):
                    pass
                r.close()
            n += len(socks)
        return n

    def attack():
        ths = [threading.Thread(target=storm) for _ in range(4)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
    await w.run(attack)
    assert refused and set(refused) == {4103}, set(refused)
    await hh.async_wait_for(lambda: s.healthz()[1]["connections"] == 0, t(10),
                            what="connections back to 0")
    w.check()


# --------------------------------------------------------------------------
# frames

# No heartbeat pings: the server's first word to these clients is its verdict.
FRAME_CFG = {"max_message_size": 65536, "ping_interval": 3600}

def answered(sock):
    """True once the server sent something or ended the connection."""
    return _peek(sock) is not None


def stream_until_answered(raw, chunks, limit_s):
    """Sends the chunks (an iterator of bytes) until the server answers
    (these clients sent no command: anything it sends is its verdict) or
    ends the connection; then returns the close code it sent (None when the
    stream ended without one). Fails when limit_s passes first."""
    raw.sock.settimeout(0.2)
    deadline = time.monotonic() + limit_s
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise AssertionError("the server took the stream for %.0f s" % limit_s)
        try:
            raw.sock.sendall(chunk)
        except socket.timeout:
            pass
        except (BrokenPipeError, ConnectionResetError):
            break
        if answered(raw.sock):
            break
    return read_close(raw, t(5))


def repeat(b):
    while True:
        yield b


@pytest.mark.timeout(60)
async def test_frame_header_announcing_2_to_62_bytes(server_factory):
    """A text frame announcing 2^62 bytes, then data: nothing that size is
    allocated, the message is discarded and the connection closed with
    1009 once it passes the discard bound."""
    s = server_factory(FRAME_CFG)
    raw = s.raw()
    w = Watch(s)
    mask = b"\x01\x02\x03\x04"
    head = struct.pack("!BBQ", 0x81, 0x80 | 127, 1 << 62) + mask

    def attack():
        return stream_until_answered(raw, (head if i == 0 else b"\0" * 65536
                                         for i in range(1 << 30)), t(30))
    code = await w.run(attack)
    assert code == 1009, code
    raw.close()
    w.check()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("piece", [16384, 1])
async def test_continuation_flood_past_max_message_size(server_factory, piece):
    """A message that never ends, in continuation frames of 16 KiB or of one
    byte: closed with 1009 once past the discard bound; memory bounded."""
    s = server_factory(FRAME_CFG)
    raw = s.raw()
    w = Watch(s)
    first = frame_bytes(b"[" * piece, fin=False)
    cont = frame_bytes(b" " * piece, opcode=hh.OP_CONT, fin=False)
    # Frames grouped so that one-byte frames still go out quickly.
    group = cont * max(1, 65536 // len(cont))

    def attack():
        return stream_until_answered(raw, (first if i == 0 else group
                                         for i in range(1 << 30)), t(40))
    code = await w.run(attack)
    assert code == 1009, code
    raw.close()
    w.check()


@pytest.mark.timeout(90)
async def test_invalid_utf8_text_frames_close_1007(server_factory):
    """200 clients each sending a text frame that is not UTF-8 (a lone
    continuation byte, an overlong encoding, a surrogate, a code point
    past U+10FFFF, and one cut across fragments): every one is closed with
    1007, none gets an answer, memory stays bounded, the probe is served."""
    s = server_factory()
    w = Watch(s)
    bad = [b'{"id":1,"op":"ping","x":"\x80"}',
           b'{"id":1,"op":"ping","x":"\xc0\xaf"}',
           b'{"id":1,"op":"ping","x":"\xed\xa0\x80"}',
           b'{"id":1,"op":"ping","x":"\xf4\x90\x80\x80"}']

    def attack():
        codes = []
        for i in range(200):
            raw = s.raw()
            if i % 5 == 4:   # a valid start, then a continuation that breaks it
                raw.sock.sendall(frame_bytes(b'{"id":1,"op":"ping","x":"\xe2\x82', fin=False)
                                 + frame_bytes(b'\x41"}', opcode=hh.OP_CONT))
            else:
                raw.sock.sendall(frame_bytes(bad[i % 5]))
            ev = raw.recv_event(timeout=t(5))   # the first thing back
            codes.append(ev[1] if ev[0] == "close" else ev)
            raw.close()
        return codes
    codes = await w.run(attack)
    assert codes == [1007] * 200, sorted(set(map(str, codes)))
    w.check()


@pytest.mark.timeout(60)
async def test_oversized_control_frame_closes_1002(server_factory):
    """A ping with 200 bytes of payload breaks RFC 6455 (5.5): the
    connection is failed (libwebsockets drops it, with or without a 1002
    close frame first) and others stay served."""
    s = server_factory()
    raw = s.raw()
    mask = b"\x01\x02\x03\x04"
    raw.sock.sendall(struct.pack("!BBH", 0x89, 0x80 | 126, 200) + mask + b"\0" * 200)
    assert read_close(raw, t(5)) in (1002, None)
    raw.close()
    c = await s.client()
    await c.ok("ping")


@pytest.mark.timeout(60)
async def test_control_frame_flood_from_a_client_that_never_reads(server_factory):
    """Pings of 125 bytes as fast as the socket takes them, never reading
    the pongs: memory stays bounded and other clients are served."""
    s = server_factory()
    raw = open_never_reading(s)
    w = Watch(s)
    ping = frame_bytes(b"p" * 125, opcode=hh.OP_PING)
    burst = ping * 400

    def attack():
        raw.sock.settimeout(0.2)
        t_end = time.monotonic() + t(8)
        sent = 0
        while time.monotonic() < t_end:
            try:
                sent += raw.sock.send(burst)
            except socket.timeout:
                pass
            except OSError:
                break
        return sent
    sent = await w.run(attack)
    assert sent > 0
    raw.close()
    w.check()


# --------------------------------------------------------------------------
# subscriptions and channels

@pytest.mark.timeout(180)
async def test_many_subscriptions_on_one_connection(server_factory):
    """max_channels_per_conn above 65,535 holds (the count does not wrap):
    70,000 subscriptions are taken, the next one gets 106, and the memory
    they cost stays under the per-client bound. (Each subscribe used to walk
    all of the connection's subscriptions: quadratic, 55 s for the first
    36,000.)"""
    limit = 70000
    # no history: the probe's channel (Watch) would otherwise keep its
    # stream after the connection, for the default history_ttl
    s = server_factory({"max_channels_per_conn": limit,
                        "namespace_defaults": {"history_size": 0}})
    c = await s.client()
    w = Watch(s)
    prefix = chan("m")

    async def subscribe_all():
        for start in range(0, limit, 1000):
            replies = await c.batch([("subscribe", {"channel": "%s-%d" % (prefix, i)})
                                     for i in range(start, start + 1000)], one_frame=False)
            bad = [r for r in replies if "ok" not in r]
            assert not bad, bad[:3]
        r = await c.call("subscribe", channel=prefix + "-over")
        return r

    # The attack here is asyncio, so it runs beside the probe directly.
    over = await w.run_async(subscribe_all())
    assert over["error"]["code"] == 106, over
    w.check()
    # Unsubscribing one makes room for exactly one; the streams go with the
    # connection.
    await c.ok("unsubscribe", channel=prefix + "-123")
    await c.ok("subscribe", channel=prefix + "-again")
    assert (await c.error("subscribe", channel=prefix + "-over"))["code"] == 106
    await c.close()
    hh.wait_for(lambda: s.healthz()[1]["channels"] == 0, t(10),
                what=lambda: "streams gone with the connection: %r" % (s.healthz(),))


# --------------------------------------------------------------------------
# per-address limits (off by default)

def refusal(port, source):
    """(status, body) of a handshake from source: 101 and no body when it
    was admitted (the socket is closed), else the refusal and its body."""
    so = socket.socket()
    so.bind((source, 0))
    so.settimeout(t(5))
    so.connect(("127.0.0.1", port))
    so.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    data = b""
    try:
        while True:
            chunk = so.recv(4096)
            if not chunk:
                break
            data += chunk
            if data.startswith(b"HTTP/1.1 101") and b"\r\n\r\n" in data:
                break
    except ConnectionResetError:
        pass
    so.close()
    head, _, body = data.decode("latin-1").partition("\r\n\r\n")
    return int(head.split()[1]) if head else None, body


@pytest.mark.timeout(60)
async def test_max_connections_per_ip(server_factory):
    """With max_connections_per_ip = 5: half-open sockets count, the sixth
    connection from one address gets 429 with a JSON message, another
    address is unaffected, and a closed connection frees its place.
    One worker: with two, each accepts from its own listening socket in
    its own time, so the half-open sockets could be counted after the
    sixth (and one of them refused instead); one listening socket accepts
    in connection order. test_per_ip_cap_holds_a_flood_from_one_address
    shows the cap is shared by the workers."""
    s = server_factory({"max_connections_per_ip": 5}, workers=1)
    held = [hh.RawWS(s.port, source="127.0.0.3") for _ in range(3)]
    half = open_sockets_from("127.0.0.3", s.port, 2)
    status, body = refusal(s.port, "127.0.0.3")
    assert status == 429, (status, body)
    assert json.loads(body) == {"error": "too many connections from this address"}
    other = [hh.RawWS(s.port, source="127.0.0.4") for _ in range(5)]
    reply, _ = other[0].call({"id": 1, "op": "ping"})
    assert "ok" in reply, reply
    # A closed connection gives its place back (when the server has seen
    # the close: wait for it).
    held.pop().close()

    def admitted():
        try:
            held.append(hh.RawWS(s.port, source="127.0.0.3"))
            return True
        except hh.HandshakeRefused:
            return False
    hh.wait_for(admitted, t(5), what="a place freed by a close")
    for r in held + other:
        r.close()
    close_all(half)


@pytest.mark.timeout(60)
async def test_connection_rate_per_ip(server_factory):
    """With connection_rate_per_ip = 5: five connections at once pass, the
    next ones get 429 until the allowance refills; another address is
    unaffected."""
    s = server_factory({"connection_rate_per_ip": 5})
    statuses = []
    for _ in range(5):
        r = hh.RawWS(s.port, source="127.0.0.5")
        r.close()
    status, body = refusal(s.port, "127.0.0.5")
    assert status == 429, (status, body)
    assert json.loads(body) == {"error": "too many new connections from this address"}
    hh.RawWS(s.port, source="127.0.0.6").close()

    def admitted():
        try:
            hh.RawWS(s.port, source="127.0.0.5").close()
            return True
        except hh.HandshakeRefused as e:
            statuses.append(e.status)
            return False
    hh.wait_for(admitted, t(5), interval=0.1, what="the allowance to refill")
    assert set(statuses) <= {429}, statuses


def open_sockets_from(source, port, n):
    socks = []
    for _ in range(n):
        so = socket.socket()
        so.bind((source, 0))
        so.connect(("127.0.0.1", port))
        socks.append(so)
    return socks


@pytest.mark.timeout(120)
async def test_per_ip_cap_holds_a_flood_from_one_address(server_factory):
    """A slowloris from one address against max_connections_per_ip = 50:
    it holds at most 50 sockets (the others are refused at once), its
    memory stays bounded and the probe is served."""
    s = server_factory({"max_connections_per_ip": 50, "handshake_timeout": 30})
    w = Watch(s)
    got = {}

    def attack():
        socks, refused = [], 0
        for _ in range(1000):
            so = socket.socket()
            so.bind(("127.0.0.7", 0))
            so.settimeout(t(5))
            so.connect(("127.0.0.1", s.port))
            so.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            socks.append(so)
        hh.wait_for(lambda: sum(closed_by_peer(x) for x in socks) >= 950, t(10),
                    what="the sockets over the cap refused")
        got["open"] = sum(not closed_by_peer(x) for x in socks)
        close_all(socks)
    await w.run(attack)
    assert got["open"] == 50, got
    w.check()


# --------------------------------------------------------------------------
# hostile HTTP requests (the plain HTTP side of the WebSocket port)

def statuses(out):
    """The status codes of the answers in what the server sent."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", out)]


PIPELINED_BODY = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1")
H2C = (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
       b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")


@pytest.mark.timeout(60)
async def test_pipelined_request_with_a_body_does_not_stall_a_worker(server_factory):
    """lws 4.1.6 sends a request that was pipelined after another one and
    carries a body round a loop that never ends: one such packet stalled
    its worker for good. A request with a body is answered before lws reads
    it, and its connection closed: 200 such packets each get the GET's 200
    (its connection kept), the POST's 405 and the end of the stream, and
    the probe, on the same (only) worker, stays served."""
    s = server_factory(workers=1)
    w = Watch(s)

    def attack():
        return [hh.exchange(s.port, PIPELINED_BODY, t(5)) for _ in range(200)]
    outs = await w.run(attack)
    for out in outs:
        assert statuses(out) == [200, 405], out[:400]
        assert out.lower().count(b"\r\nconnection: close\r\n") == 1, out[:400]
    w.check()


# what each request gets before its connection is closed
NOT_HELD = [
    ("CONNECT", b"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n", None, b""),
    ("h2c", H2C, 400, b'{"error":"only WebSocket upgrades are served"}'),
    ("POST without Content-Length", b"POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
     405, b'{"error":"method not allowed"}'),
    ("POST announcing 1000 bytes, none sent",
     b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
     405, b'{"error":"method not allowed"}'),
    ("GET announcing 5 bytes, none sent",
     b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
     400, b'{"error":"a GET request has no body"}'),
    ("GET with a chunked body",
     b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
     400, b'{"error":"a GET request has no body"}'),
]


@pytest.mark.timeout(60)
async def test_requests_lws_would_hold_are_answered_and_closed(server_factory):
    """CONNECT (lws made it a raw socket with no timeout, holding its
    address's place until the peer left), an HTTP/2 upgrade (h2c: lws
    switched to HTTP/2), and requests announcing a body that never comes
    (lws waited for it, its idle timeout re-armed by every byte) are
    answered at once and their connections closed: after 50 of each from
    one address, that address's five places (max_connections_per_ip) are
    free."""
    src = "127.0.0.9"
    s = server_factory({"max_connections_per_ip": 5, "handshake_timeout": 30})
    w = Watch(s)

    def attack():
        return {name: [hh.exchange(s.port, req, t(5), src) for _ in range(50)]
                for name, req, _, _ in NOT_HELD}
    got = await w.run(attack)
    for name, _, status, body in NOT_HELD:
        for out in got[name]:
            assert statuses(out) == ([status] if status else []), (name, out[:300])
            assert out.endswith(body), (name, out[:300])
    held = []

    def five_admitted():
        try:
            while len(held) < 5:
                held.append(hh.RawWS(s.port, source=src))
            return True
        except hh.HandshakeRefused:
            return False
    hh.wait_for(five_admitted, t(5), what="the address's five places free")
    close_all(r.sock for r in held)
    w.check()
