"""wss:// and https:// with tls_cert/tls_key: the same protocol over TLS.

A self-signed certificate is made with the openssl command line for each
run; clients verify it as their only trust anchor.
"""

import asyncio
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest
import websockets

import herald_harness as hh

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def make_cert(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


class TLSServer(hh.HeraldServer):
    def __init__(self, cert, key, **kw):
        super().__init__({"tls_cert": cert, "tls_key": key}, **kw)
        self.ctx = ssl.create_default_context(cafile=cert)

    def https_get(self, path, timeout=1):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                           context=self.ctx)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise hh.ServerStartError("herald exited:\n" + self.stderr_tail())
            try:
                if self.https_get("/healthz")[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise hh.ServerStartError("herald (TLS) not ready:\n" + self.stderr_tail())
            time.sleep(0.05)


@pytest.fixture
def tls_server(tmp_path):
    cert, key = make_cert(str(tmp_path))
    s = TLSServer(cert, key, tmpdir=str(tmp_path))
    s.start()
    yield s
    assert s.stop() == 0
    assert s.sanitizer_report() is None


def test_https_healthz(tls_server):
    status, body = tls_server.https_get("/healthz", timeout=hh.t(5))
    assert status == 200
    assert json.loads(body)["status"] == "ok"


async def recv_msgs(ws, n, timeout):
    out = []
    while len(out) < n:
        frame = await asyncio.wait_for(ws.recv(), timeout)
        out += [json.loads(line) for line in frame.split("\n")]
    return out


async def test_wss_pubsub_large_and_small(tls_server):
    url = "wss://127.0.0.1:%d/ws" % tls_server.port
    async with websockets.connect(url, ssl=tls_server.ctx) as sub, \
            websockets.connect(url, ssl=tls_server.ctx) as pub:
        await sub.send(json.dumps({"id": 1, "op": "subscribe", "channel": "tls"}))
        (reply,) = await recv_msgs(sub, 1, hh.t(5))
        assert reply["id"] == 1 and reply["ok"]["offset"] == 0
        sizes = [10, 3000, 60000]
        for i, n in enumerate(sizes):
            await pub.send(json.dumps({"id": 10 + i, "op": "publish", "channel": "tls",
                                       "data": "x" * n}))
        pushes = await recv_msgs(sub, len(sizes), hh.t(5))
        assert [p["offset"] for p in pushes] == [1, 2, 3]
        assert [len(p["data"]) for p in pushes] == sizes


async def test_wss_served_by_every_worker(tmp_path):
    """Every worker's vhost serves TLS (only worker 0's context does the
    library's global TLS set-up)."""
    cert, key = make_cert(str(tmp_path))
    s = TLSServer(cert, key, tmpdir=str(tmp_path))
    s.config = dict(s.config, log_level="debug")
    s.start()
    try:
        url = "wss://127.0.0.1:%d/ws" % s.port
        seen, conns = set(), []
        while seen != {0, 1}:
            assert len(conns) < 40, "wss connections only on worker %r" % seen
            ws = await websockets.connect(url, ssl=s.ctx)
            conns.append(ws)
            await ws.send(json.dumps({"id": 1, "op": "connect"}))
            (reply,) = await recv_msgs(ws, 1, hh.t(5))
            cid = reply["ok"]["client"]
            await hh.async_wait_for(lambda: s.worker_of(cid) is not None, hh.t(5),
                                    what="its worker logged")
            seen.add(s.worker_of(cid))
        for ws in conns:
            await ws.send(json.dumps({"id": 2, "op": "ping"}))
            assert await recv_msgs(ws, 1, hh.t(5)) == [{"id": 2, "ok": {}}]
            await ws.close()
    finally:
        assert s.stop() == 0
        assert s.sanitizer_report() is None


def test_plain_client_on_tls_port_is_refused(tls_server):
    """A plain ws:// handshake on the TLS port is not answered as HTTP: the
    TLS layer ends the connection (at once, not by a timeout)."""
    got = hh.exchange(tls_server.port, b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert b"HTTP/1.1 101" not in got, got
    # and the server keeps serving TLS clients
    assert tls_server.https_get("/healthz", timeout=hh.t(5))[0] == 200


# -- failure paths ------------------------------------------------------------------

@pytest.mark.parametrize("case", ["key_of_another_cert", "missing_cert", "missing_key",
                                  "garbage_cert", "garbage_key", "cert_and_key_swapped"])
def test_bad_certificate_or_key_fails_start_clearly(tmp_path, case):
    """A TLS configuration that cannot work stops the start with exit 2
    (a configuration error, also from --check-config) and says which key
    and file, before anything listens."""
    d = str(tmp_path)
    cert, key = make_cert(d)
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = make_cert(str(other))
    garbage = os.path.join(d, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("not a PEM file\n")
    missing = os.path.join(d, "missing.pem")
    pair, key_name, path = {
        "key_of_another_cert": ((cert, other_key), "tls_key", other_key),
        "missing_cert": ((missing, key), "tls_cert", missing),
        "missing_key": ((cert, missing), "tls_key", missing),
        "garbage_cert": ((garbage, key), "tls_cert", garbage),
        "garbage_key": ((cert, garbage), "tls_key", garbage),
        "cert_and_key_swapped": ((key, cert), "tls_cert", key),
    }[case]
    cfg = os.path.join(d, "herald.conf")
    with open(cfg, "w") as f:
        f.write(hh.render_config({"tls_cert": pair[0], "tls_key": pair[1]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    for extra in (["--check-config"], ["--listen", "127.0.0.1:%d" % hh.free_port(), "--workers", "2"]):
        p = subprocess.run([hh.HERALD_BIN, "--config", cfg] + extra, capture_output=True,
                           text=True, timeout=hh.t(10), env=env, stdin=subprocess.DEVNULL)
        out = p.stdout + p.stderr
        assert p.returncode == 2, (case, extra, p.returncode, out)
        assert key_name in p.stderr and path in p.stderr, (case, out)
        assert '"listening"' not in out, (case, out)


def test_client_rejecting_the_certificate_does_not_disturb_others(tls_server, tmp_path):
    """A client that does not trust the certificate aborts the handshake;
    the server goes on serving, and the aborted connection is not left
    behind."""
    other = tmp_path / "other-ca"
    other.mkdir()
    other_cert, _ = make_cert(str(other))
    distrust = ssl.create_default_context(cafile=other_cert)
    for _ in range(5):
        with pytest.raises(ssl.SSLCertVerificationError):
            http_get_with(tls_server.port, distrust)
    assert tls_server.https_get("/healthz", timeout=hh.t(5))[0] == 200
    hh.wait_for(lambda: json.loads(tls_server.https_get("/healthz", timeout=hh.t(5))[1])
                ["connections"] == 0, hh.t(5), what="no connection left over")


def http_get_with(port, ctx):
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=hh.t(5), context=ctx)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


async def test_garbage_client_hello_does_not_disturb_others(tls_server):
    """Connections sending garbage instead of a ClientHello are ended at
    once, while a wss:// subscriber keeps receiving."""
    url = "wss://127.0.0.1:%d/ws" % tls_server.port
    async with websockets.connect(url, ssl=tls_server.ctx) as sub, \
            websockets.connect(url, ssl=tls_server.ctx) as pub:
        await sub.send(json.dumps({"id": 1, "op": "subscribe", "channel": "g"}))
        await recv_msgs(sub, 1, hh.t(5))
        # (a record announcing more than is sent waits for the rest: that
        # one is ended by handshake_timeout, see below)
        garbage = [b"\x00" * 5 + os.urandom(512),                          # no TLS record
                   b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",   # ClientHello cut short
                   b"\x16\x03\x03\x00\x30" + b"\x01" + b"\xff" * 47]  # nonsense handshake
        for i, g in enumerate(garbage):
            hh.exchange(tls_server.port, g)
            await pub.send(json.dumps({"id": 10 + i, "op": "publish", "channel": "g", "data": i}))
            (push,) = [m for m in await recv_msgs(sub, 1, hh.t(5)) if m.get("push") == "pub"]
            assert push["data"] == i
    assert tls_server.https_get("/healthz", timeout=hh.t(5))[0] == 200


@pytest.fixture
def tls_server_short_handshake(tmp_path):
    cert, key = make_cert(str(tmp_path))
    s = TLSServer(cert, key, tmpdir=str(tmp_path))
    s.config = dict(s.config, handshake_timeout=1)
    s.start()
    yield s
    assert s.stop() == 0
    assert s.sanitizer_report() is None


@pytest.mark.parametrize("stage", ["silent_tcp", "partial_client_hello", "tls_without_request"])
def test_handshake_timeout_over_tls(tls_server_short_handshake, stage):
    """handshake_timeout (1 s here) ends a connection that stops before the
    TLS handshake, inside it, or after it without an HTTP request."""
    s = tls_server_short_handshake
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=hh.t(6))
    sock = raw
    if stage == "partial_client_hello":
        raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    elif stage == "tls_without_request":
        sock = s.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    start = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    except socket.timeout:
        raise AssertionError("%s: connection still open after %.0fs (handshake_timeout = 1)"
                             % (stage, hh.t(6))) from None
    finally:
        sock.close()
    assert time.monotonic() - start >= 0.5, "ended before the timeout"
    assert s.https_get("/healthz", timeout=hh.t(5))[0] == 200
