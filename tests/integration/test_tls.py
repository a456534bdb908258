"""wss:// and https:// with tls_cert/tls_key: the same protocol over TLS.

A self-signed certificate is made with the openssl command line for each
run; clients verify it as their only trust anchor.
"""

import asyncio
import http.client
import json
import os
import shutil
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


def test_plain_client_on_tls_port_is_refused(tls_server):
    with pytest.raises((hh.HandshakeRefused, OSError)):
        hh.RawWS(tls_server.port, timeout=hh.t(3))
    # and the server keeps serving TLS clients
    assert tls_server.https_get("/healthz", timeout=hh.t(5))[0] == 200
