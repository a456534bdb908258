"""Malformed input never crashes or stalls the server: random garbage,
huge numbers, deep nesting, broken WebSocket framing; a parallel subscriber
keeps receiving every publication meanwhile."""

import asyncio
import json
import os
import random
import socket
import struct

import pytest

import herald_harness as hh
from herald_harness import chan, t

server = hh.server_fixture({"max_message_size": 65536,
                            "namespaces": [{"name": "h", "history_size": 10}]})

SEED = int(os.environ.get("HERALD_FUZZ_SEED", "1234"))


def json_nasties():
    deep_arr = "[" * 100000 + "]" * 100000
    deep_obj = '{"a":' * 20000 + "1" + "}" * 20000
    return [
        '{"id": 1e400, "op": "ping"}',
        '{"id": 18446744073709551616, "op": "ping"}',
        '{"id": 99999999999999999999999999999999999999, "op": "ping"}',
        '{"id": -0, "op": "ping"}',
        '{"id": 1, "op": "history", "channel": "h:x", "limit": 1e300}',
        '{"id": 2, "op": "history", "channel": "h:x", "limit": 18446744073709551617}',
        '{"id": 3, "op": "subscribe", "channel": "h:x", "since": {"offset": 1e30, "epoch": "e"}}',
        '{"id": 4, "op": "subscribe", "channel": "h:y", "since": {"offset": 18446744073709551615, "epoch": "e"}}',
        '{"id": 5, "op": "subscribe", "channel": "h:z", "since": {"offset": 1, "epoch": ' + json.dumps("e" * 5000) + "}}",
        '{"id": 6, "op": "publish", "channel": "x", "data": ' + deep_arr[:60000] + "}",
        deep_arr[:60000],
        deep_obj[:60000],
        '{"id": 7, "op": "publish", "channel": "x", "data": "\\ud800"}',   # lone surrogate
        '{"id": 8, "op": "publish", "channel": "x", "data": "\\u0000"}',
        '{"id": 9, "op": "ping", "id": 10}',                               # duplicate key
        '{"id": 11, "op": "connect", "token": ' + json.dumps("a." * 20000) + "}",
        '{"id": 12, "op": "ping", "extra": {"nested": [1, 2, {"x": null}]}}',
        '{"id": 13, "op": "ping"}\n\n\n{"id": 14, "op": "ping"}',
        "\n",
        "\n\n\n",
        '{"id":15,"op":"publish","channel":"x","data":1}' + "\n" + "garbage",
        "\x00\x01\x02",
        "\ufeff{\"id\": 16, \"op\": \"ping\"}",
        '{"id": 17, "op": "' + "o" * 10000 + '"}',
        '{"id": 18, "op": "subscribe", "channel": "' + "c" * 60000 + '"}',
    ]


_flush_ids = iter(range(3_000_000_000, 4_000_000_000))


async def flush(c):
    """Sends a ping with an id no hand-made frame uses and waits for its
    reply, so all earlier frames were processed (replies are in order)."""
    r = await c.call("ping", id=next(_flush_ids), timeout=t(10))
    return "ok" in r


async def fresh(server, enc="json"):
    return await server.client(enc=enc)


@pytest.mark.timeout(120)
async def test_garbage_never_crashes_and_others_keep_receiving(server):
    ch = chan()
    watcher = await server.client()
    await watcher.ok("subscribe", channel=ch)
    pub = await server.client()
    published = 0

    async def tick():
        nonlocal published
        await pub.ok("publish", channel=ch, data=published)
        published += 1

    rng = random.Random(SEED)
    # 1. hand-made nasties on JSON connections
    c = await fresh(server)
    for i, frame in enumerate(json_nasties()):
        if c.closed.is_set():
            c = await fresh(server)
        try:
            await c.send_raw(frame)
        except Exception:  # noqa: BLE001 - the server may close us; fine
            c = await fresh(server)
        if i % 3 == 0:
            await tick()
    assert await flush(await fresh(server))

    # 2. random text and binary frames on both encodings
    for enc in ("json", "msgpack"):
        c = await fresh(server, enc)
        for i in range(300):
            n = rng.choice([0, 1, 2, 5, 17, 100, 1000, 5000])
            blob = bytes(rng.getrandbits(8) for _ in range(n))
            try:
                if rng.random() < 0.5:
                    await c.send_raw(blob)
                else:
                    await c.send_raw(blob.decode("latin-1"))
            except Exception:  # noqa: BLE001
                pass
            if c.closed.is_set():   # 4101 after 10 bad frames: reconnect
                c = await fresh(server, enc)
            if i % 25 == 0:
                await tick()
        assert await flush(await fresh(server, enc))

    # 3. random msgpack structures (valid msgpack, random shapes)
    c = await fresh(server, "msgpack")

    def rand_obj(depth=0):
        k = rng.randrange(9 if depth < 4 else 6)
        if k == 0:
            return rng.choice([0, -1, 2**31, 2**32, 2**63 - 1, -2**63, 2**64 - 1])
        if k == 1:
            return rng.random() * 1e300
        if k == 2:
            return "".join(rng.choice("abc:/@=-_. \x00é") for _ in range(rng.randrange(20)))
        if k == 3:
            return bytes(rng.getrandbits(8) for _ in range(rng.randrange(20)))
        if k == 4:
            return None
        if k == 5:
            return rng.choice([True, False])
        if k == 6:
            return [rand_obj(depth + 1) for _ in range(rng.randrange(5))]
        if k == 7:
            return {rng.choice(["id", "op", "channel", "data", "since", "limit", "x"]):
                    rand_obj(depth + 1) for _ in range(rng.randrange(5))}
        return {"id": rand_obj(depth + 1), "op": rng.choice(
            ["ping", "subscribe", "publish", "history", "presence", "connect", "unsubscribe", 7]),
            "channel": rand_obj(depth + 1), "data": rand_obj(depth + 1)}

    for i in range(300):
        frame = hh.mp_pack(rand_obj())
        try:
            await c.send_raw(frame)
        except Exception:  # noqa: BLE001
            pass
        if c.closed.is_set():
            c = await fresh(server, "msgpack")
        if i % 25 == 0:
            await tick()

    # the watcher got every publication, in order, without a gap
    got = await watcher.pubs(published, timeout=t(20))
    assert [p["data"] for p in got] == list(range(published))
    assert [p["offset"] for p in got] == list(range(1, published + 1))
    status, body = server.healthz()
    assert status == 200 and body["status"] == "ok"


@pytest.mark.parametrize("depth", [1000, 100000])
async def test_deep_nesting_in_data(server, depth):
    c = await server.client()
    ch = chan()
    frame = '{"id":1,"op":"publish","channel":"%s","data":%s}' % (ch, "[" * depth + "]" * depth)
    if len(frame) > 65536:
        frame = frame[:65000]
    await c.send_raw(frame)
    r = await c.stray(timeout=t(10))
    assert "error" in r or "ok" in r
    assert await flush(c)


# The replies the first hand-made nasties get: (id or None, code). Ids that
# are not integers in 1..2^32-1 (or numbers the JSON reader cannot hold)
# make the command unreadable: 107 without an id.
HUGE_NUMBER_REPLIES = [
    (None, 107),   # id 1e400
    (None, 107),   # id 2^64
    (None, 107),   # id 10^38
    (None, 107),   # id -0 (0 is not a usable id)
    (1, 107),      # limit 1e300
    (2, 107),      # limit 2^64 + 1
    (3, 107),      # since.offset 1e30
    (4, 107),      # since.offset 2^64 - 1: above what the JSON reader holds
    (5, 107),      # since.epoch of 5000 bytes
    (6, 107),      # nesting deeper than the reader allows
]


async def test_huge_numbers_get_errors_not_crashes(server):
    c = await server.client()
    frames = json_nasties()[:len(HUGE_NUMBER_REPLIES)]
    for frame, (cid, code) in zip(frames, HUGE_NUMBER_REPLIES):
        await c.send_raw(frame)
        # (the ping also keeps the run of malformed commands short of 4101)
        assert await flush(c)
        got = c.pending_strays()
        assert len(got) == 1, (frame[:80], got)
        r = got[0]
        assert r.get("id") == cid and r.get("error", {}).get("code") == code, (frame[:80], r)
        assert isinstance(r["error"].get("message"), str) and r["error"]["message"], r
    assert not c.closed.is_set()
    assert server.alive()


def read_until_closed(raw, timeout):
    """Everything the server sends until its close frame or the end of the
    stream: (data events, last event)."""
    data = []
    while True:
        ev = raw.recv_event(timeout=timeout)
        if ev[0] in ("close", "eof"):
            return data, ev
        if ev[0] not in ("ping", "pong"):   # heartbeats are not answers
            data.append(ev)


# Frames that fail the WebSocket connection (RFC 6455 5.2, 5.4, 5.5, 8.1):
# (name, how to send it, close codes accepted; None = the end of the
# stream without a close frame, which lws 4.1 chooses for the two length
# violations). Nothing is ever answered on such a connection.
FRAMING_FAILURES = [
    ("reserved_opcode", lambda r: r.send_frame(0x3, b"reserved opcode"), {1002}),
    ("continuation_without_start",
     lambda r: r.send_frame(hh.OP_CONT, b"continuation without start"), {1002}),
    ("fragmented_control", lambda r: r.send_frame(hh.OP_PING, b"x", fin=False), {1002}),
    ("reserved_bits", lambda r: r.send_frame(0x40 | hh.OP_TEXT, b'{"id":1,"op":"ping"}'), {1002}),
    ("control_over_125_bytes", lambda r: r.send_frame(hh.OP_PING, b"x" * 200), {1002, None}),
    ("length_2_63", lambda r: r.sock.sendall(b"\x81\xff" + struct.pack("!Q", 2**63) + b"mask"),
     {1002, None}),
    ("invalid_utf8", lambda r: r.send_frame(hh.OP_TEXT, b"\xff\xfe invalid utf-8"), {1007}),
    ("invalid_utf8_across_fragments",
     lambda r: (r.send_frame(hh.OP_TEXT, b'{"id":1,"op":"ping","x":"\xe2\x82', fin=False),
                r.send_frame(hh.OP_CONT, b'("}')), {1007}),
    ("utf8_cut_at_the_end", lambda r: r.send_frame(hh.OP_TEXT, b'{"id":1,"op":"ping"}\xe2\x82'),
     {1007}),
    ("new_message_inside_a_fragmented_one",
     lambda r: (r.send_frame(hh.OP_TEXT, b'{"id":1,', fin=False),
                r.send_frame(hh.OP_TEXT, b'{"id":2,"op":"ping"}')), {1002}),
]


@pytest.mark.parametrize("name,send,codes", FRAMING_FAILURES, ids=[f[0] for f in FRAMING_FAILURES])
def test_broken_websocket_framing_fails_the_connection(server, name, send, codes):
    """A framing error closes that connection (with the RFC's close code
    where lws sends one), unanswered; the server serves others meanwhile."""
    raw = server.raw()
    try:
        send(raw)
        data, last = read_until_closed(raw, t(5))
    finally:
        raw.close()
    assert data == [], "answered a broken frame: %r" % (data,)
    code = last[1] if last[0] == "close" else None
    assert code in codes, "%s: closed with %r, expected one of %r" % (name, last, codes)
    other = server.raw()
    assert other.call({"id": 1, "op": "ping"})[0] == {"id": 1, "ok": {}}
    other.close()


@pytest.mark.xfail(strict=True, reason=(
    "libwebsockets 4.1.6 (Debian 12) accepts unmasked client frames and does "
    "not tell the protocol callback whether a frame was masked; upstream "
    "checks it only since commit cae06c63a (\"client unmasked\", 1002)"))
def test_unmasked_client_frame_is_closed_1002(server):
    """RFC 6455 5.1: a server must close the connection on an unmasked
    client frame (1002), not answer it."""
    raw = server.raw()
    try:
        raw.send_frame(hh.OP_TEXT, b'{"id":1,"op":"ping"}', mask=False)
        data, last = read_until_closed(raw, t(5))
    finally:
        raw.close()
    assert data == [] and last == ("close", 1002, last[2]), (data, last)


def test_frame_header_split_across_segments_is_read(server):
    """A frame whose header arrives one byte at a time is read once whole."""
    raw = server.raw()
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = b'{"id":7,"op":"ping"}'
    key = b"\x01\x02\x03\x04"
    frame = bytes([0x81, 0x80 | len(payload)]) + key + \
        bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    for i in range(0, 6):
        raw.sock.sendall(frame[i:i + 1])
        if i == 0:
            # nothing can be answered before the frame is complete
            with pytest.raises(socket.timeout):
                raw.recv_frame(timeout=0.3)
    raw.sock.sendall(frame[6:])
    assert raw.recv_msgs() == [{"id": 7, "ok": {}}]
    raw.close()


def test_unfinished_fragment_waits_for_its_continuation(server):
    raw = server.raw()
    raw.send_frame(hh.OP_TEXT, b'{"id":1,', fin=False)
    with pytest.raises(socket.timeout):
        raw.recv_frame(timeout=0.3)
    raw.send_frame(hh.OP_CONT, b'"op":"ping"}')
    assert raw.recv_msgs() == [{"id": 1, "ok": {}}]
    raw.close()


def test_multibyte_utf8_split_across_fragments_and_buffers(server):
    """Valid UTF-8 cut inside a character, by the client's fragments or by
    the server's 1 KiB receive buffer, is accepted."""
    raw = server.raw()
    ch = chan()
    text = "\u20ac" * 1500 + "\u00e9x"          # 3-byte characters over many buffers
    msg = json.dumps({"id": 5, "op": "publish", "channel": ch, "data": text},
                     ensure_ascii=False).encode()
    cut = msg.index("\u20ac".encode()) + 1          # inside the first euro sign
    raw.send_frame(hh.OP_TEXT, msg[:cut], fin=False)
    raw.send_frame(hh.OP_CONT, msg[cut:])
    (reply,) = raw.recv_msgs()
    assert reply["id"] == 5 and reply["ok"]["offset"] == 1, reply
    raw.close()


def test_fragmented_command_is_reassembled(server):
    raw = server.raw()
    msg = json.dumps({"id": 3, "op": "publish", "channel": chan(), "data": "x" * 3000}).encode()
    parts = [msg[i:i + 700] for i in range(0, len(msg), 700)]
    for i, part in enumerate(parts):
        raw.send_frame(hh.OP_TEXT if i == 0 else hh.OP_CONT, part, fin=(i == len(parts) - 1))
    msgs = raw.recv_msgs()
    assert msgs[0]["id"] == 3 and msgs[0]["ok"]["offset"] == 1, msgs
    raw.close()


def test_abrupt_disconnects(server):
    """Clients vanishing mid-handshake or mid-frame do not hurt the server."""
    import socket
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        s.close()
    for _ in range(20):
        raw = server.raw()
        raw.sock.sendall(b"\x81\xfe\x10\x00mask" + b"partial")
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()   # RST
    hh.wait_for(lambda: server.healthz()[0] == 200, t(5), what="healthz")
    raw = server.raw()
    assert raw.call({"id": 1, "op": "ping"})[0] == {"id": 1, "ok": {}}
    raw.close()
