"""The server API on the main port (no api_listen, API keys configured):
a connection whose request line is for /api/v1 or /metrics goes to the
API's HTTP/1.1 server, anything else to libwebsockets (net/sniff.c). Both
keep their own behaviour on the shared port."""

import asyncio
import http.client
import json
import socket

import herald_harness as hh
from herald_harness import t
from test_api_listen import AUTH, JSON_AUTH, KEY, call


def main_api(server_factory, config=None, **kw):
    s = server_factory(dict(config or {}), env={"HERALD_API_KEY": KEY}, **kw)
    hh.wait_for(lambda: any(l.get("msg") == "API on the main port" for l in s.log_lines()),
                t(5), what="the API on the main port line")
    return s


async def test_api_and_websockets_share_the_main_port(server_factory):
    s = main_api(server_factory)
    ch = hh.chan("mp-")
    sub = await s.client()
    await sub.ok("subscribe", channel=ch)
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=t(5))
    for i in range(3):              # keep-alive, bodies included
        r, doc = await asyncio.to_thread(call, s.port, "POST", "/api/v1/publish", JSON_AUTH,
                                         json.dumps({"channel": ch, "data": i}), c)
        assert r.status == 200 and doc["offset"] == i + 1 and not r.will_close, doc
    c.close()
    got = await sub.pubs(3, timeout=t(5))
    assert [p["data"] for p in got] == [0, 1, 2]
    r, doc = await asyncio.to_thread(call, s.port, "GET", "/api/v1/info", AUTH)
    assert r.status == 200 and doc["connections"] == 1, doc
    # lws still answers everything else on the port
    status, health = s.healthz()
    assert status == 200 and health["status"] == "ok"
    r, _ = await asyncio.to_thread(call, s.port, "GET", "/api/v1/info", {})
    assert r.status == 401


def test_pipelined_publishes_on_the_main_port(server_factory):
    """The request shape lws 4.1.6 loops forever on (a body pipelined after
    another request) is the API's own server's to take here."""
    s = main_api(server_factory, {"namespace_defaults": {"history_size": 10}})
    body = json.dumps({"channel": hh.chan("mp-"), "data": 1})
    one = ("POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: apikey %s\r\n"
           "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (KEY, len(body), body)).encode()
    last = ("GET /api/v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: apikey %s\r\n"
            "Connection: close\r\n\r\n" % KEY).encode()
    out = hh.exchange(s.port, b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: apikey "
                      + KEY.encode() + b"\r\n\r\n" + one * 5 + last, t(5))
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 7, out[:400]
    for i in range(1, 6):
        assert b'"offset":%d' % i in out


def test_a_request_line_in_pieces(server_factory):
    """A client that sends its request line a few bytes at a time is told
    apart once enough has come, whichever way it goes."""
    s = main_api(server_factory)
    for first, rest, want in ((b"GE", b"T /api/v1/info HTTP/1.1\r\nAuthorization: apikey "
                               + KEY.encode() + b"\r\nConnection: close\r\n\r\n", b'"node"'),
                              (b"GET /api/", b"v1/info HTTP/1.1\r\nConnection: close\r\n\r\n",
                               b"apikey"),
                              (b"GET /hea", b"lthz HTTP/1.1\r\nConnection: close\r\n\r\n",
                               b'"status"')):
        out = hh.exchange(s.port, [first, rest], t(5))
        assert want in out, (first, out[:300])


def test_silent_connections_are_closed_and_bounded(server_factory):
    """A connection that sends nothing is closed after handshake_timeout
    and others are served meanwhile."""
    s = main_api(server_factory, {"handshake_timeout": 1})
    silent = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(50)]
    r, doc = call(s.port, "GET", "/api/v1/info", AUTH)
    assert r.status == 200
    for so in silent:
        so.settimeout(t(5))
        assert so.recv(1) == b""
        so.close()


async def test_without_keys_the_main_port_is_lws_alone(server_factory):
    s = server_factory({})
    r, doc = await asyncio.to_thread(call, s.port, "GET", "/api/v1/info", AUTH)
    assert r.status == 404
    assert not any(l.get("msg") == "API on the main port" for l in s.log_lines())


def test_a_kept_alive_healthz_connection_cannot_carry_api_calls(server_factory):
    """The first bytes decide who serves a connection, so lws's answers
    close theirs while the API shares the port: a pooled client's next
    call (an API one) comes on a new connection, to the API."""
    s = main_api(server_factory)
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=t(5))
    c.request("GET", "/healthz")
    r = c.getresponse()
    r.read()
    assert r.status == 200 and r.will_close
    c.close()
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=t(5))
    c.request("GET", "/healthz")
    r = c.getresponse()
    r.read()
    c.request("POST", "/api/v1/publish", body=json.dumps({"channel": "mp-x", "data": 1}),
              headers=JSON_AUTH)      # http.client reconnects after the close
    r = c.getresponse()
    assert r.status == 200, r.read()
    c.close()
