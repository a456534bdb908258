"""The server API's own listener (api_listen): keys, every route with good
and bad input, HTTP/1.1 keep-alive and pipelining, and every bound of the
transport (head, body, slow requests, clients that never read) with real
HTTP clients against a real herald (docs/api.md)."""

import asyncio
import http.client
import json
import socket
import time

import pytest

import herald_harness as hh
from herald_harness import t

KEY = "k" * 32
AUTH = {"Authorization": "apikey " + KEY}


def api_port(s):
    line = hh.wait_for(lambda: next((l for l in s.log_lines()
                                     if l.get("msg") == "API listening"), None),
                       t(5), what="the API listening line")
    return line["port"]


@pytest.fixture
def api(server_factory):
    """A herald with api_listen on a free port and one key; (server, port)."""
    def make(config=None, env=None, **kw):
        cfg = {"api_listen": "127.0.0.1:0"}
        cfg.update(config or {})
        e = {"HERALD_API_KEY": KEY}
        if hh.SANITIZE:
            e["ASAN_OPTIONS"] = hh.ASAN_SMALL_QUARANTINE   # a memory bound is measured
        e.update(env or {})
        s = server_factory(cfg, env=e, **kw)
        return s, api_port(s)
    return make


def call(port, method, path, headers=None, body=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=t(5))
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r, json.loads(data) if data else None


def test_keys(api):
    s, port = api()
    r, doc = call(port, "GET", "/api/v1/info", AUTH)
    assert r.status == 200, doc
    assert doc["workers"] == 2 and doc["broker"] == "memory" and doc["version"]
    assert doc["uptime_s"] >= 0 and doc["connections"] == 0
    for headers, msg in (({}, "missing Authorization: apikey KEY"),
                         ({"Authorization": "apikey " + "x" * 32}, "unknown API key"),
                         ({"Authorization": "Bearer " + KEY}, "unknown API key"),
                         ({"Authorization": "apikey " + KEY[:-1]}, "unknown API key")):
        r, doc = call(port, "GET", "/api/v1/info", headers)
        assert r.status == 401 and r.getheader("WWW-Authenticate") == "apikey", doc
        assert doc == {"error": {"code": 101, "message": msg}}
    # the key never reaches the log
    assert KEY not in s.stderr()


def test_no_key_configured_means_no_api(server_factory):
    s = server_factory({"api_listen": "127.0.0.1:0"})
    r, doc = call(api_port(s), "GET", "/api/v1/info", AUTH)
    assert r.status == 503, doc
    assert doc["error"] == {"code": 108, "message": "no API keys configured "
                            "(api_keys, HERALD_API_KEY)"}


def test_routes_and_methods(api):
    s, port = api()
    r, doc = call(port, "POST", "/api/v1/info", dict(AUTH, **{"Content-Type": "application/json"}), b"{}")
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD", doc
    r, doc = call(port, "GET", "/api/v1/nope", AUTH)
    assert r.status == 404 and doc["error"]["code"] == 107, doc
    r, doc = call(port, "GET", "/ws", AUTH)
    assert r.status == 404, doc


def test_head_is_get_without_the_body(api):
    s, port = api()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=t(5))
    c.request("GET", "/api/v1/info", headers=AUTH)
    r = c.getresponse()
    body = r.read()
    c.request("HEAD", "/api/v1/info", headers=AUTH)
    h = c.getresponse()
    assert h.status == 200 and h.read() == b""
    assert int(h.getheader("Content-Length")) == len(body)
    c.request("GET", "/api/v1/info", headers=AUTH)     # the connection is in step
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read())["node"]
    c.close()


def test_keep_alive_and_pipelining(api):
    s, port = api()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=t(5))
    for _ in range(20):
        r, doc = call(port, "GET", "/api/v1/info", AUTH, conn=c)
        assert r.status == 200 and not r.will_close
    c.close()
    one = ("GET /api/v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: apikey %s\r\n\r\n" % KEY).encode()
    last = ("GET /api/v1/nope HTTP/1.1\r\nHost: x\r\nAuthorization: apikey %s\r\n"
            "Connection: close\r\n\r\n" % KEY).encode()
    out = hh.exchange(port, one * 50 + last, t(5))
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 50
    assert out.rindex(b"HTTP/1.1 404 Not Found\r\n") > out.rindex(b"HTTP/1.1 200 OK\r\n")


def test_limits(api):
    s, port = api({"api_max_body": 1024, "handshake_timeout": 1})
    # a body announced over api_max_body: 413 before any of it is sent
    out = hh.exchange(port, b"POST /api/v1/info HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n", t(5))
    assert out.startswith(b"HTTP/1.1 413 "), out
    # a chunked body that grows past it
    chunk = b"200\r\n" + b"x" * 512 + b"\r\n"
    out = hh.exchange(port, b"POST /api/v1/info HTTP/1.1\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 3, t(5))
    assert out.startswith(b"HTTP/1.1 413 "), out
    # a head over 8 KiB
    out = hh.exchange(port, b"GET /api/v1/info HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", t(5))
    assert out.startswith(b"HTTP/1.1 431 "), out
    # smuggling shapes and garbage
    for bad in (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
                b"GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
        out = hh.exchange(port, bad, t(5))
        assert out.startswith(b"HTTP/1.1 400 "), (bad, out)
    # a request that never finishes: 408 after handshake_timeout, closed
    t0 = time.monotonic()
    out = hh.exchange(port, b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\n", t(6))
    assert out.startswith(b"HTTP/1.1 408 "), out
    assert time.monotonic() - t0 >= 0.9
    # the server still answers
    r, doc = call(port, "GET", "/api/v1/info", AUTH)
    assert r.status == 200


def test_rate_limit_per_key(server_factory):
    conf = {"api_listen": "127.0.0.1:0",
            "api_keys": [{"name": "slow", "key": "s" * 32, "rate_limit": 5}]}
    s = server_factory(conf)
    port = api_port(s)
    auth = {"Authorization": "apikey " + "s" * 32}
    statuses = [call(port, "GET", "/api/v1/info", auth)[0] for _ in range(8)]
    assert [r.status for r in statuses[:5]] == [200] * 5
    refused = [r for r in statuses[5:] if r.status == 429]
    assert refused and refused[0].getheader("Retry-After") == "1"
    hh.wait_for(lambda: call(port, "GET", "/api/v1/info", auth)[0].status == 200,
                t(2), what="the rate limit to let a call through again")


def rss(s):
    with open("/proc/%d/status" % s.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.timeout(60)
def test_pipelining_clients_that_never_read_stay_bounded(api):
    """50 connections pipeline requests as fast as they can and never read
    the answers: one request at a time is answered, the next only once
    the answer before it was written, so each holds a socket's worth of
    answers and at most one read of input. RSS grows by well under 64 MiB
    and another client is answered within a second throughout."""
    s, port = api()
    base = rss(s)
    req = ("GET /api/v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: apikey %s\r\n\r\n"
           % KEY).encode() * 200
    socks = []
    for _ in range(50):
        so = socket.create_connection(("127.0.0.1", port))
        so.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        so.setblocking(False)
        socks.append(so)
    # until every connection's sends are refused (its answers unread, the
    # server stopped reading it), and a few rounds more
    worst, peak, end = 0.0, base, time.monotonic() + t(30)
    stalled, extra = set(), 5
    while extra and time.monotonic() < end:
        for so in socks:
            try:
                so.send(req)
            except BlockingIOError:
                stalled.add(so)
        if len(stalled) == len(socks):
            extra -= 1
        t0 = time.monotonic()
        r, _ = call(port, "GET", "/api/v1/info", AUTH)
        assert r.status == 200
        worst = max(worst, time.monotonic() - t0)
        peak = max(peak, rss(s))
    for so in socks:
        so.close()
    grew = (peak - base) / 2**20
    print("RSS grew %.1f MiB, worst round trip %.3f s, %d of %d connections "
          "refused sends" % (grew, worst, len(stalled), len(socks)))
    assert len(stalled) == len(socks), "the server read everything: nothing was bounded"
    assert grew < 64, grew
    assert worst < t(1.0), worst


def test_idle_kept_alive_connections_hold_no_big_buffers(api):
    """Each of 100 kept-alive connections sends one large body (refused
    with 413 after it was read: data over max_message_size) and stays
    open: the connections then hold no read buffer and no buffer of that
    size, so RSS grows by far less than 100 x the body (60 MiB)."""
    s, port = api()
    base = rss(s)
    big = json.dumps({"channel": "api-x", "data": "x" * 600000})
    conns = []
    for _ in range(100):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=t(10))
        r, doc = call(port, "POST", "/api/v1/publish", JSON_AUTH, big, conn=c)
        assert r.status == 413 and not r.will_close, doc
        conns.append(c)
    grew = (rss(s) - base) / 2**20
    print("RSS grew %.1f MiB with 100 idle connections after 600 KB bodies" % grew)
    for c in conns:                        # all still served
        r, _ = call(port, "GET", "/api/v1/info", AUTH, conn=c)
        assert r.status == 200
        c.close()
    assert grew < 24, grew


def test_sigterm_closes_idle_api_connections_and_exits(api):
    """SIGTERM with a kept-alive idle API connection and one mid-request:
    the idle one is closed at once, the other gets its 408 after
    handshake_timeout (or its answer, had it finished), and the process
    exits 0 long before shutdown_timeout."""
    import signal
    # the partial request's deadline must not pass before the idle
    # connection is seen closed: scaled with the build (ASan is slower)
    hs = max(3, round(t(3)))
    s, port = api({"shutdown_timeout": 60, "handshake_timeout": hs}, workers=1)
    partial = socket.create_connection(("127.0.0.1", port))
    partial.sendall(b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\n")
    # One worker, and the partial connection made first: it is accepted
    # before the idle one (the accept queue is in order), and its bytes
    # are readable by the time the idle one's first request is, so they
    # are read at the latest in the poll that reads that request; after
    # the second answer the partial request has surely been seen
    # (otherwise the drain would rightly close an idle-looking connection).
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=t(5))
    for _ in range(2):
        r, _ = call(port, "GET", "/api/v1/info", AUTH, conn=idle)
        assert r.status == 200
    t0 = time.monotonic()
    s.send_signal(signal.SIGTERM)
    # the idle connection is closed at once: before the partial one's 408
    idle.sock.settimeout(t(5))
    assert idle.sock.recv(1) == b""
    with pytest.raises(BlockingIOError):
        partial.recv(100, socket.MSG_DONTWAIT)
    assert s.wait_exit(hs + t(7)) == 0, s.stderr_tail()
    assert time.monotonic() - t0 < hs + t(5)
    partial.settimeout(t(2))
    assert partial.recv(100).startswith(b"HTTP/1.1 408 ")
    partial.close()
    idle.close()


JSON_AUTH = dict(AUTH, **{"Content-Type": "application/json"})


async def test_publish_reaches_websocket_subscribers(api):
    """POST /api/v1/publish makes the publication a client's publish makes:
    subscribers in both encodings get it with the offset and epoch the API
    answered, and history has it."""
    s, port = api({"namespace_defaults": {"history_size": 10}})
    ch = hh.chan("api-")
    subs = [await s.client(enc) for enc in ("json", "msgpack")]
    for c in subs:
        await c.ok("subscribe", channel=ch)
    offsets = []
    for i in range(3):
        r, doc = await asyncio.to_thread(call, port, "POST", "/api/v1/publish", JSON_AUTH,
                                         json.dumps({"channel": ch, "data": {"i": i, "s": "é"}}))
        assert r.status == 200, doc
        assert set(doc) == {"offset", "epoch"}
        offsets.append(doc["offset"])
    assert offsets == [1, 2, 3]
    for c in subs:
        got = await c.pubs(3, timeout=t(5))
        assert [p["offset"] for p in got] == [1, 2, 3]
        assert [p["data"] for p in got] == [{"i": i, "s": "é"} for i in range(3)]
        assert all(p["epoch"] == doc["epoch"] for p in got)
        assert all("info" not in p for p in got)     # no client published it
    hist = await subs[0].ok("history", channel=ch)
    assert [p["offset"] for p in hist["publications"]] == [1, 2, 3]


def test_publish_refusals(api):
    s, port = api({"namespaces": [{"name": "ro", "allow_publish": False}]})
    ch = hh.chan("api-")
    cases = [
        ({"Content-Type": "text/plain"}, json.dumps({"channel": ch, "data": 1}), 415, 107),
        ({}, json.dumps({"channel": ch, "data": 1}), 415, 107),
        ({"Content-Type": "application/json"}, "{not json", 400, 107),
        ({"Content-Type": "application/json"}, "[1, 2]", 400, 107),
        ({"Content-Type": "application/json"}, json.dumps({"channel": ch}), 400, 107),
        ({"Content-Type": "application/json"}, json.dumps({"data": 1}), 400, 107),
        ({"Content-Type": "application/json"}, json.dumps({"channel": 5, "data": 1}), 400, 107),
        ({"Content-Type": "application/json"},
         json.dumps({"channel": ch, "data": 1, "extra": 2}), 400, 107),
        ({"Content-Type": "application/json"}, '{"channel": "a", "channel": "b", "data": 1}',
         400, 107),
        ({"Content-Type": "application/json"}, json.dumps({"channel": "bad channel", "data": 1}),
         400, 102),
        ({"Content-Type": "application/json"}, json.dumps({"channel": "nons:x", "data": 1}),
         400, 102),
    ]
    for headers, body, status, code in cases:
        r, doc = call(port, "POST", "/api/v1/publish", dict(AUTH, **headers), body)
        assert (r.status, doc["error"]["code"]) == (status, code), (headers, body, doc)
    # data larger than a client may publish (max_message_size, 64 KiB by
    # default) would close every subscriber it overflows: 413 / 112
    r, doc = call(port, "POST", "/api/v1/publish", JSON_AUTH,
                  json.dumps({"channel": ch, "data": "x" * 70000}))
    assert (r.status, doc["error"]["code"]) == (413, 112), doc
    # allow_publish restricts clients, not backends
    r, doc = call(port, "POST", "/api/v1/publish", JSON_AUTH,
                  json.dumps({"channel": "ro:x", "data": "from the backend"}))
    assert r.status == 200 and doc["offset"] == 1, doc
    # GET is not publish
    r, doc = call(port, "GET", "/api/v1/publish", AUTH)
    assert r.status == 405 and r.getheader("Allow") == "POST"


async def test_history_and_presence(api):
    """GET /api/v1/history and /api/v1/presence answer what the client
    commands answer (the same encoding of publications and clients), with
    limit, reverse and since; refusals name the parameter."""
    s, port = api({"namespaces": [{"name": "room", "history_size": 100, "presence": True},
                                  {"name": "bare", "history_size": 0}]})
    ch = hh.chan("room:")
    member = await s.client()
    me = (await member.ok("connect"))["client"]
    await member.ok("subscribe", channel=ch)
    for i in range(5):
        await member.ok("publish", channel=ch, data={"i": i})
    get = lambda q: asyncio.to_thread(call, port, "GET", q, AUTH)   # noqa: E731
    r, doc = await get("/api/v1/history?channel=" + ch.replace(":", "%3A"))
    assert r.status == 200, doc
    assert [p["offset"] for p in doc["publications"]] == [1, 2, 3, 4, 5]
    assert [p["data"] for p in doc["publications"]] == [{"i": i} for i in range(5)]
    assert doc["offset"] == 5
    ws = await member.ok("history", channel=ch)
    assert doc == ws, "the API and the client command disagree"
    r, doc = await get("/api/v1/history?channel=%s&limit=2&reverse=true" % ch)
    assert [p["offset"] for p in doc["publications"]] == [5, 4]
    r, doc = await get("/api/v1/history?channel=%s&since_offset=3&since_epoch=%s" % (ch, doc["epoch"]))
    assert [p["offset"] for p in doc["publications"]] == [4, 5]
    r, doc = await get("/api/v1/presence?channel=" + ch)
    assert r.status == 200 and me in doc["clients"], doc
    for q, status, code, text in (
            ("/api/v1/history", 400, 107, "channel is required"),
            ("/api/v1/history?channel=%s&limit=x" % ch, 400, 107, "limit"),
            ("/api/v1/history?channel=%s&limit=1&limit=2" % ch, 400, 107, "limit"),
            ("/api/v1/history?channel=%s&since_offset=1" % ch, 400, 107, "go together"),
            ("/api/v1/history?channel=%s&reverse=yes" % ch, 400, 107, "reverse"),
            ("/api/v1/history?channel=%s&limit=100000000" % ch, 400, 106, ""),
            ("/api/v1/history?channel=bare:x", 503, 108, "not available"),
            ("/api/v1/history?channel=nons:x", 400, 102, "unknown namespace"),
            ("/api/v1/history?channel=a%00b", 400, 107, "channel"),
            ("/api/v1/presence?channel=bare:x", 503, 108, "not available")):
        r, doc = await get(q)
        assert (r.status, doc["error"]["code"]) == (status, code), (q, doc)
        assert text in doc["error"]["message"], (q, doc)


async def test_publish_with_a_msgpack_body(api):
    """Content-Type application/msgpack: the same publication; binary data
    reaches a msgpack subscriber as bytes; malformed maps get 400."""
    s, port = api()
    ch = hh.chan("api-")
    sub = await s.client("msgpack")
    await sub.ok("subscribe", channel=ch)
    mp = {"Content-Type": "application/msgpack"}
    body = hh.mp_pack({"channel": ch, "data": {"k": [1, 2.5, None, True, "x"]}})
    r, doc = await asyncio.to_thread(call, port, "POST", "/api/v1/publish", dict(AUTH, **mp), body)
    assert r.status == 200 and doc["offset"] == 1, doc
    body = hh.mp_pack({"data": b"\x00\x01bytes", "channel": ch})
    r, doc = await asyncio.to_thread(call, port, "POST", "/api/v1/publish", dict(AUTH, **mp), body)
    assert r.status == 200 and doc["offset"] == 2, doc
    got = await sub.pubs(2, timeout=t(5))
    assert got[0]["data"] == {"k": [1, 2.5, None, True, "x"]}
    assert got[1]["data"] == b"\x00\x01bytes"
    for bad in (b"\x93\x01\x02\x03",                                   # an array
                hh.mp_pack({"channel": ch}),
                hh.mp_pack({"channel": ch, "data": 1, "x": 2}),
                hh.mp_pack({"channel": ch + "\x00b", "data": 1}),
                hh.mp_pack({1: ch, "data": 1}),
                hh.mp_pack({"channel": ch, "data": 1}) + b"\x01",          # trailing
                b"\xdf\xff\xff\xff\xff"):                                 # 4 G entries
        r, doc = await asyncio.to_thread(call, port, "POST", "/api/v1/publish",
                                         dict(AUTH, **mp), bad)
        assert r.status == 400 and doc["error"]["code"] in (102, 107), (bad, doc)


async def test_api_connections_count_against_max_connections(api):
    """WebSocket and API connections share max_connections (both hold a
    descriptor): with 2 WebSocket clients and max_connections = 2 an API
    connection gets 503 with Retry-After and is closed; once a WebSocket
    client left, the API answers again."""
    s, port = api({"max_connections": 2})
    clients = [await s.client() for _ in range(2)]
    for c in clients:
        await c.ok("connect")
    out = await asyncio.to_thread(hh.exchange, port, b"GET /api/v1/info HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in out, out
    assert out.endswith(b'{"error":{"code":108,"message":"connection limit reached"}}'), out
    await clients.pop().close()

    def answered():
        try:
            return call(port, "GET", "/api/v1/info", AUTH)[0].status == 200
        except (ConnectionError, http.client.HTTPException):
            return False
    await asyncio.to_thread(hh.wait_for, answered, t(5), what="the API to answer again")


def raw_call(port, method, path, headers, body=None):
    """The status and the body's bytes, unparsed."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=t(5))
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def test_publish_keeps_the_data_bytes_as_written(api):
    """JSON data reaches subscribers and history as the backend wrote it:
    numbers are not re-printed (0.1 stays 0.1, 1e2 stays 1e2), key order
    and escapes too. (An integer beyond 64 bits is refused, as from a
    client: msgpack subscribers could not get it.)"""
    s, port = api({"namespace_defaults": {"history_size": 10}})
    ch = hh.chan("api-")
    data = '{"n":0.1,"e":1e2,"z":1,"a":"\\u00e9"}'
    body = '{"data": %s, "channel": "%s"}' % (data, ch)
    status, out = raw_call(port, "POST", "/api/v1/publish", JSON_AUTH, body)
    assert status == 200, out
    status, out = raw_call(port, "GET", "/api/v1/history?channel=" + ch, AUTH)
    assert status == 200, out
    assert ('"data":' + data).encode() in out, out
    status, out = raw_call(port, "POST", "/api/v1/publish", JSON_AUTH,
                           '{"channel": "%s", "data": 123456789012345678901234567890}' % ch)
    assert status == 400 and b"too big integer" in out, out
    status, out = raw_call(port, "POST", "/api/v1/publish", JSON_AUTH,
                           '{"channel": "%s",\0 "data": 1}' % ch)
    assert status == 400 and b"NUL" in out, out


async def test_broadcast(api):
    """POST /api/v1/broadcast: one publication per channel, a result per
    channel in request order; a refused channel has its error in its
    result and does not stop the others."""
    s, port = api({"namespaces": [{"name": "room"}]})
    chans = [hh.chan("api-"), hh.chan("room:"), hh.chan("api-")]
    subs = []
    for ch in chans:
        c = await s.client()
        await c.ok("subscribe", channel=ch)
        subs.append(c)
    r, doc = await asyncio.to_thread(call, port, "POST", "/api/v1/publish", JSON_AUTH,
                                     json.dumps({"channel": chans[2], "data": "first"}))
    assert r.status == 200 and doc["offset"] == 1
    body = {"channels": [chans[0], "nons:x", chans[1], chans[2]], "data": {"v": 7}}
    r, doc = await asyncio.to_thread(call, port, "POST", "/api/v1/broadcast", JSON_AUTH,
                                     json.dumps(body))
    assert r.status == 200, doc
    res = doc["results"]
    assert [x["channel"] for x in res] == body["channels"]
    assert res[1] == {"channel": "nons:x", "error": {
        "code": 102, "message": "bad channel name or unknown namespace"}}
    assert [res[i]["offset"] for i in (0, 2, 3)] == [1, 1, 2]
    assert all(len(res[i]["epoch"]) > 0 for i in (0, 2, 3))
    for c, want in zip(subs, (1, 1, 2)):
        got = await c.pubs(2 if want == 2 else 1, timeout=t(5))
        assert got[-1]["offset"] == want and got[-1]["data"] == {"v": 7}
    # msgpack body, the same shape
    mp = dict(AUTH, **{"Content-Type": "application/msgpack"})
    r, doc = await asyncio.to_thread(call, port, "POST", "/api/v1/broadcast", mp,
                                     hh.mp_pack({"channels": chans[:1], "data": b"\x01"}))
    assert r.status == 200 and doc["results"][0]["offset"] == 2, doc
    # every channel refused: still 200, a result each
    r, doc = await asyncio.to_thread(call, port, "POST", "/api/v1/broadcast", JSON_AUTH,
                                     json.dumps({"channels": ["nons:a", "bad ch"], "data": 1}))
    assert r.status == 200 and [x["error"]["code"] for x in doc["results"]] == [102, 102]


def test_broadcast_refusals(api):
    s, port = api()
    many = ["api-%d" % i for i in range(1001)]
    cases = [
        ({"channels": "api-x", "data": 1}, 400, "channels"),
        ({"channels": [], "data": 1}, 400, "channels"),
        ({"channels": many, "data": 1}, 400, "channels"),
        ({"channels": ["a", 5], "data": 1}, 400, "channels"),
        ({"channels": ["a", ""], "data": 1}, 400, "channels"),
        ({"channels": ["a", "b", "a"], "data": 1}, 400, "named twice"),
        ({"channels": ["a"]}, 400, "data"),
        ({"channels": ["a"], "data": 1, "channel": "b"}, 400, "unknown field"),
        ({"channels": many[:1000], "data": "x" * 20000}, 413, "broadcast limit"),
    ]
    for body, status, text in cases:
        r, doc = call(port, "POST", "/api/v1/broadcast", JSON_AUTH, json.dumps(body))
        assert r.status == status and text in doc["error"]["message"], (body if len(
            json.dumps(body)) < 200 else "...", doc)
    r, doc = call(port, "GET", "/api/v1/broadcast", AUTH)
    assert r.status == 405 and r.getheader("Allow") == "POST"


async def test_channels(api):
    """GET /api/v1/channels: the channels with subscribers on this node,
    counted over every worker, by name; prefix, and pages with after and
    limit (truncated says there are more)."""
    s, port = api({"log_level": "debug"})
    base = hh.chan("lst-")
    clients = await hh.spread_clients(s, 4)
    names = [base + x for x in ("a", "b", "c")]
    for c in clients:                                   # every worker has a, b
        for ch in names[:2]:
            await c.ok("subscribe", channel=ch)
    await clients[0].ok("subscribe", channel=names[2])
    get = lambda q: asyncio.to_thread(call, port, "GET", q, AUTH)   # noqa: E731
    r, doc = await get("/api/v1/channels?prefix=" + base)
    assert r.status == 200, doc
    n = len(clients)
    assert doc == {"channels": [{"channel": names[0], "subscribers": n},
                                {"channel": names[1], "subscribers": n},
                                {"channel": names[2], "subscribers": 1}],
                   "truncated": False}
    r, doc = await get("/api/v1/channels?prefix=%s&limit=2" % base)
    assert [x["channel"] for x in doc["channels"]] == names[:2] and doc["truncated"]
    r, doc = await get("/api/v1/channels?prefix=%s&limit=2&after=%s" % (base, names[1]))
    assert doc == {"channels": [{"channel": names[2], "subscribers": 1}], "truncated": False}
    await clients[0].close()
    r, doc = await get("/api/v1/channels?prefix=" + base)
    assert [x["subscribers"] for x in doc["channels"]] == [n - 1, n - 1], doc
    for q in ("limit=0", "limit=10001", "limit=x", "prefix=a&prefix=b"):
        r, doc = await get("/api/v1/channels?" + q)
        assert r.status == 400 and doc["error"]["code"] == 107, (q, doc)


async def test_disconnect(api):
    """POST /api/v1/disconnect closes a user's connections on every worker
    (or one client), with a disconnect push and close code 4102 (or the
    code asked), and answers how many; others stay."""
    secret = "s" * 32
    s, port = api({"token_secret": secret, "allow_anonymous": True, "log_level": "debug"})
    alice = []
    while {c.worker for c in alice} != {0, 1}:
        assert len(alice) < 32
        c = await s.client()
        await c.ok("connect", token=hh.make_jwt(secret, sub="alice"))
        c.worker = await c.worker()
        alice.append(c)
    bob = await s.client()
    await bob.ok("connect", token=hh.make_jwt(secret, sub="bob"))
    post = lambda body: asyncio.to_thread(call, port, "POST", "/api/v1/disconnect",  # noqa: E731
                                          JSON_AUTH, json.dumps(body))
    r, doc = await post({"user": "alice"})
    assert r.status == 200 and doc == {"disconnected": len(alice)}, doc
    for c in alice:
        p = await c.push("disconnect", timeout=t(5))
        assert (p["code"], p["reconnect"]) == (4102, False), p
        await c.wait_closed(timeout=t(5))
        assert c.close_code == 4102
    assert (await bob.ok("publish", channel=hh.chan("x-"), data=1))["offset"] == 1
    r, doc = await post({"user": "nobody"})
    assert doc == {"disconnected": 0}
    anon = await s.client()
    me = (await anon.ok("connect"))["client"]
    r, doc = await post({"client": me, "code": 4321, "reconnect": True})
    assert doc == {"disconnected": 1}, doc
    p = await anon.push("disconnect", timeout=t(5))
    assert (p["code"], p["reconnect"]) == (4321, True), p
    for body in ({}, {"user": "a", "client": "b"}, {"user": ""}, {"user": 5},
                 {"user": "a", "code": 1000}, {"user": "a", "code": "4102"},
                 {"user": "a", "reconnect": 1}, {"user": "a", "why": 1}):
        r, doc = await post(body)
        assert r.status == 400 and doc["error"]["code"] == 107, (body, doc)


def test_expect_100_continue(api):
    """Expect: 100-continue: a good key gets "100 Continue" and then the
    answer to the body; a bad key gets 401 at once and the close, so the
    body is never sent."""
    s, port = api({"namespace_defaults": {"history_size": 10}})
    body = json.dumps({"channel": hh.chan("api-"), "data": 1}).encode()
    head = ("POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: apikey %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n"
            "Expect: 100-continue\r\n\r\n")
    so = socket.create_connection(("127.0.0.1", port), timeout=t(5))
    so.sendall((head % (KEY, len(body))).encode())
    got = b""
    while b"\r\n\r\n" not in got:
        got += so.recv(4096)
    assert got == b"HTTP/1.1 100 Continue\r\n\r\n", got
    so.sendall(body)
    got = so.recv(4096)
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and b'"offset":1' in got, got
    so.close()
    out = hh.exchange(port, (head % ("x" * 32, len(body))).encode(), t(5))
    assert out.startswith(b"HTTP/1.1 401 ") and b"100 Continue" not in out, out


def tcp_state(so):
    """The socket's TCP state (Linux TCP_INFO): 1 is ESTABLISHED."""
    return so.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def test_a_client_that_never_reads_its_answers_is_closed(api):
    """A client pipelines requests (openapi.json needs no key) and never
    reads: once its answers stop going out for handshake_timeout the
    connection is closed (a reset: requests are left unread), instead of
    being held for ever; others are served meanwhile."""
    s, port = api({"handshake_timeout": 1})
    so = socket.create_connection(("127.0.0.1", port))
    so.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    req = b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 200
    so.setblocking(False)
    try:
        while True:
            so.send(req)
    except BlockingIOError:
        pass                               # the server stopped reading it
    r, _ = call(port, "GET", "/api/v1/info", AUTH)
    assert r.status == 200
    hh.wait_for(lambda: tcp_state(so) != 1, t(10), what="the server to close it")
    so.close()


def test_a_client_that_ends_its_side_still_gets_its_answers(api):
    """Requests, then the client's FIN (shutdown of its sending side):
    every request is answered, then the connection closes."""
    s, port = api({"namespace_defaults": {"history_size": 10}})
    ch = hh.chan("api-")
    body = json.dumps({"channel": ch, "data": 1})
    one = ("POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: apikey %s\r\n"
           "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (KEY, len(body), body)).encode()
    for n in (1, 3):
        out = hh.exchange(port, one * n, t(5), shut_wr=True)
        assert out.count(b"HTTP/1.1 200 OK\r\n") == n, out
