"""Client certificates (mTLS), a TLS listener beside the plain one, and the
server API over TLS (docs/configuration.md "TLS").

Each run makes its own PKI with the openssl command line: a CA, a server
certificate and a client certificate signed by it, and another CA with a
client certificate of its own (the one that must be refused).
"""

import asyncio
import http.client
import json
import os
import shutil
import ssl
import socket
import subprocess
import time

import pytest
import websockets

import herald_harness as hh
from herald_harness import t

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

KEY = "k" * 32
AUTH = {"Authorization": "apikey " + KEY}


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def _ec_key(path):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", path)


def _ca(d, name):
    key, cert = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    _ec_key(key)
    _openssl("req", "-x509", "-new", "-key", key, "-out", cert, "-days", "2",
             "-subj", "/CN=" + name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def _leaf(d, name, ca, ext):
    key, csr, cert = (os.path.join(d, name + s) for s in (".key", ".csr", ".pem"))
    extfile = os.path.join(d, name + ".ext")
    with open(extfile, "w") as f:
        f.write(ext)
    _ec_key(key)
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + name)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", extfile)
    return cert, key


class PKI:
    def __init__(self, d):
        self.dir = d
        self.ca = _ca(d, "herald-test-ca")
        self.server = _leaf(d, "localhost", self.ca,
                            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                            "extendedKeyUsage=serverAuth\n")
        self.client = _leaf(d, "backend-1", self.ca, "extendedKeyUsage=clientAuth\n")
        self.other_ca = _ca(d, "other-ca")
        self.stranger = _leaf(d, "stranger", self.other_ca, "extendedKeyUsage=clientAuth\n")

    def ctx(self, cert=None):
        """A client context trusting the test CA, presenting cert (a
        (cert, key) pair) when given."""
        c = ssl.create_default_context(cafile=self.ca[0])
        if cert:
            c.load_cert_chain(*cert)
        return c


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(str(tmp_path_factory.mktemp("pki")))


def tls_base(pki, **extra):
    cfg = {"tls_cert": pki.server[0], "tls_key": pki.server[1]}
    cfg.update(extra)
    return cfg


def https(port, ctx, method="GET", path="/healthz", headers=None, body=None):
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=t(5), context=ctx)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None
    finally:
        conn.close()


def log_line(s, msg):
    return hh.wait_for(lambda: next((l for l in s.log_lines() if l.get("msg") == msg), None),
                       t(5), what="the %r log line" % msg)


def refused(port, ctx):
    """True when the TLS handshake (or the first read after it: TLS 1.3
    clients learn of a refused certificate there) fails."""
    try:
        status, _ = https(port, ctx)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
        return True
    raise AssertionError("answered %s without a valid client certificate" % status)


async def wss(port, ctx, enc="json"):
    ws = await websockets.connect("wss://127.0.0.1:%d/ws" % port, ssl=ctx, ping_interval=None,
                                  open_timeout=t(5), close_timeout=t(2), max_size=None,
                                  subprotocols=[hh.MSGPACK_SUB] if enc == "msgpack" else None)
    return hh.Client(None, ws, enc)


# -- plain and TLS side by side ------------------------------------------------------

@pytest.fixture
def side_by_side(server_factory, pki):
    """`listen` plain (the harness's port) and tls_listen beside it."""
    def make(**extra):
        cfg = tls_base(pki, tls_listen="127.0.0.1:0", **extra)
        s = server_factory(cfg, env={"HERALD_API_KEY": KEY})
        return s, log_line(s, "TLS listening")["port"]
    return make


async def test_plain_and_tls_listeners_share_channels(side_by_side, pki):
    """A subscriber on the TLS listener gets what a plain client publishes,
    and the other way round; both serve /healthz."""
    s, tls_port = side_by_side()
    assert hh.http_get(s.port, "/healthz")[0] == 200
    assert https(tls_port, pki.ctx())[0] == 200
    ch = hh.chan("both-")
    plain = await s.client()
    secure = await wss(tls_port, pki.ctx(), enc="msgpack")
    await plain.ok("subscribe", channel=ch)
    await secure.ok("subscribe", channel=ch)
    await plain.ok("publish", channel=ch, data="from plain")
    await secure.ok("publish", channel=ch, data="from tls")
    for c in (plain, secure):
        got = await c.pubs(2, timeout=t(5))
        assert [p["data"] for p in got] == ["from plain", "from tls"]
    # the plain listener is plain, the TLS one TLS
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        https(s.port, pki.ctx())
    got = hh.exchange(tls_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"HTTP/1.1" not in got, got


@pytest.mark.parametrize("name", ["herald", "h", "herald-tls", "localhost"])
async def test_host_and_sni_names_never_move_a_connection(side_by_side, pki, name):
    """lws 4.1 moves a connection to the vhost whose name its Host header
    (or TLS SNI) matches: whatever name clients use, a TLS client stays on
    the TLS listener's vhost and a plain one on the plain one, both are
    served, and the server still stops cleanly."""
    s, tls_port = side_by_side()
    ctx = pki.ctx()
    ctx.check_hostname = False          # the certificate names localhost
    ws = await websockets.connect("wss://%s:%d/ws" % (name, tls_port), host="127.0.0.1",
                                  port=tls_port, ssl=ctx, server_hostname=name,
                                  open_timeout=t(5), ping_interval=None)
    secure = hh.Client(None, ws, "json")
    ws = await websockets.connect("ws://%s:%d/ws" % (name, s.port), host="127.0.0.1",
                                  port=s.port, open_timeout=t(5), ping_interval=None)
    plain = hh.Client(None, ws, "json")
    ch = hh.chan("names-")
    await secure.ok("subscribe", channel=ch)
    await plain.ok("subscribe", channel=ch)
    await plain.ok("publish", channel=ch, data=1)
    await secure.ok("publish", channel=ch, data=2)
    for c in (secure, plain):
        assert [p["data"] for p in await c.pubs(2, timeout=t(5))] == [1, 2]
    await secure.ws.close()
    await plain.ws.close()
    assert s.stop() == 0
    assert s.sanitizer_report() is None


def test_api_on_main_port_stays_on_the_plain_listener(side_by_side, pki):
    """With keys and no api_listen the API shares the main port: the plain
    one only; on tls_listen /api/ is not there."""
    s, tls_port = side_by_side()
    status, doc = _plain_api(s.port)
    assert status == 200, doc
    status, _ = https(tls_port, pki.ctx(), path="/api/v1/info", headers=AUTH)
    assert status == 404


def _plain_api(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=t(5))
    try:
        conn.request("GET", "/api/v1/info", headers=AUTH)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


async def test_tls_listener_counts_against_max_connections(side_by_side, pki):
    """Connections on both listeners count against one max_connections."""
    s, tls_port = side_by_side(max_connections=2)
    a = await s.client()
    b = await wss(tls_port, pki.ctx())
    await a.ok("ping")
    await b.ok("ping")
    c = await wss(tls_port, pki.ctx())
    await asyncio.wait_for(c.closed.wait(), t(5))
    assert c.close_code == 4103
    await b.ok("ping")


def test_tls_listener_per_address_limit_refuses_without_plaintext(side_by_side, pki):
    """Over max_connections_per_ip a TLS client is closed, not sent a
    plaintext 429 it would take for a broken handshake."""
    s, tls_port = side_by_side(max_connections_per_ip=1)

    def take_the_place():
        # a finished handshake: the server has taken this one in (once the
        # harness's readiness checks have given the address's place back)
        try:
            return pki.ctx().wrap_socket(socket.create_connection(("127.0.0.1", tls_port),
                                                                  timeout=t(5)),
                                         server_hostname="127.0.0.1")
        except (ssl.SSLError, OSError):
            return None

    hold = hh.wait_for(take_the_place, t(5), what="the address's one connection")
    try:
        got = hh.exchange(tls_port, b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")
        assert got == b"", got
    finally:
        hold.close()


@pytest.mark.parametrize("stage", ["silent_tcp", "tls_without_request"])
def test_tls_listener_handshake_timeout(side_by_side, pki, stage):
    """handshake_timeout (1 s here) holds on tls_listen too."""
    s, tls_port = side_by_side(handshake_timeout=1)
    sock = socket.create_connection(("127.0.0.1", tls_port), timeout=t(6))
    if stage == "tls_without_request":
        sock = pki.ctx().wrap_socket(sock, server_hostname="127.0.0.1")
    start = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    except socket.timeout:
        raise AssertionError("%s: still open after %.0fs" % (stage, t(6))) from None
    finally:
        sock.close()
    assert time.monotonic() - start >= 0.5, "closed before the timeout"


# -- client certificates on the main port -----------------------------------------

@pytest.fixture
def mtls(side_by_side, pki):
    return side_by_side(tls_client_ca=pki.ca[0])


async def test_mtls_websocket_with_a_client_certificate(mtls, pki):
    """A client with a certificate from tls_client_ca is served: subscribe
    and publish round trip, and a plain client on the plain listener
    shares the channel."""
    s, tls_port = mtls
    ch = hh.chan("mtls-")
    sub = await wss(tls_port, pki.ctx(pki.client))
    await sub.ok("subscribe", channel=ch)
    pub = await wss(tls_port, pki.ctx(pki.client))
    await pub.ok("publish", channel=ch, data={"n": 1})
    plain = await s.client()
    await plain.ok("publish", channel=ch, data={"n": 2})
    got = await sub.pubs(2, timeout=t(5))
    assert [p["data"] for p in got] == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize("who", ["no_certificate", "another_ca"])
async def test_mtls_refuses_without_a_valid_certificate(mtls, pki, who):
    """No certificate, or one from another CA: the TLS handshake fails;
    no WebSocket connection is made, and the server goes on serving."""
    s, tls_port = mtls
    ctx = pki.ctx(None if who == "no_certificate" else pki.stranger)
    for _ in range(3):
        with pytest.raises((ssl.SSLError, ConnectionResetError, websockets.InvalidHandshake,
                            EOFError, OSError)):
            c = await wss(tls_port, ctx)
            await c.ok("ping")        # TLS 1.3: the refusal arrives after the handshake
        assert refused(tls_port, ctx)
    health = json.loads(hh.http_get(s.port, "/healthz")[1])
    assert health["status"] == "ok"
    hh.wait_for(lambda: json.loads(hh.http_get(s.port, "/healthz")[1])["connections"] == 0,
                t(5), what="no connection left from the refused handshakes")
    ok = await wss(tls_port, pki.ctx(pki.client))
    await ok.ok("ping")


def test_mtls_on_the_only_listener(server_factory, pki):
    """Without tls_listen, tls_client_ca applies to `listen` itself."""
    s = server_factory(tls_base(pki, tls_client_ca=pki.ca[0]), start=False)
    s.wait_ready = lambda timeout: hh.wait_for(
        lambda: https(s.port, pki.ctx(pki.client))[0] == 200, timeout,
        what="herald (mTLS) ready")
    s.start()
    assert https(s.port, pki.ctx(pki.client))[0] == 200
    assert refused(s.port, pki.ctx())
    assert refused(s.port, pki.ctx(pki.stranger))
    line = log_line(s, "listening")
    assert line["tls"] == 1 and line["client_certs"] == 1


# -- the API over TLS ----------------------------------------------------------------

@pytest.fixture
def api_tls(server_factory, pki):
    def make(**extra):
        # (tls_listen: `listen` stays plain for the harness)
        cfg = tls_base(pki, tls_listen="127.0.0.1:0", api_listen="127.0.0.1:0", api_tls=True,
                       **extra)
        s = server_factory(cfg, env={"HERALD_API_KEY": KEY})
        return s, log_line(s, "API listening")["port"]
    return make


async def test_api_over_tls_publish_reaches_subscribers(api_tls, pki):
    """api_tls without api_client_ca: any client that trusts the server's
    certificate; keep-alive requests on one TLS connection; a plain
    request is not answered."""
    s, port = api_tls()
    ch = hh.chan("api-tls-")
    sub = await s.client()
    await sub.ok("subscribe", channel=ch)

    def publish_three():
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=t(5), context=pki.ctx())
        out = []
        try:
            for i in range(3):
                conn.request("POST", "/api/v1/publish",
                             body=json.dumps({"channel": ch, "data": i}),
                             headers=dict(AUTH, **{"Content-Type": "application/json"}))
                r = conn.getresponse()
                out.append((r.status, json.loads(r.read())))
        finally:
            conn.close()
        return out

    answers = await asyncio.to_thread(publish_three)
    assert [a[0] for a in answers] == [200] * 3, answers
    assert [a[1]["offset"] for a in answers] == [1, 2, 3]
    got = await sub.pubs(3, timeout=t(5))
    assert [p["data"] for p in got] == [0, 1, 2]
    got = hh.exchange(port, b"GET /api/v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"HTTP/1.1" not in got, got
    line = log_line(s, "API listening")
    assert line["tls"] == 1 and line["client_certs"] == 0


def test_api_over_tls_large_body_and_expect_continue(api_tls, pki):
    """A body larger than one TLS record and one read, sent after
    100-continue, arrives whole."""
    s, port = api_tls(max_message_size=262144)
    data = "x" * 200000
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=t(5), context=pki.ctx())
    try:
        body = json.dumps({"channel": hh.chan("big-"), "data": data}).encode()
        conn.putrequest("POST", "/api/v1/publish")
        for k, v in dict(AUTH, **{"Content-Type": "application/json",
                                  "Content-Length": str(len(body)),
                                  "Expect": "100-continue"}).items():
            conn.putheader(k, v)
        conn.endheaders()
        sock = conn.sock
        sock.settimeout(t(5))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 100"), head
        conn.send(body)
        r = conn.getresponse()
        assert r.status == 200, r.read()
        assert json.loads(r.read())["offset"] == 1
    finally:
        conn.close()


def test_api_over_tls_pipelined_requests(api_tls, pki):
    """Requests written at once over TLS are answered in order; the last
    one's Connection: close ends with close_notify (a clean end of
    stream for the client)."""
    s, port = api_tls()
    one = ("GET /api/v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: apikey %s\r\n\r\n"
           % KEY).encode()
    last = ("GET /api/v1/nope HTTP/1.1\r\nHost: x\r\nAuthorization: apikey %s\r\n"
            "Connection: close\r\n\r\n" % KEY).encode()
    sock = pki.ctx().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=t(5)),
                                 server_hostname="127.0.0.1")
    try:
        sock.sendall(one * 20 + last)
        data = b""
        while True:
            chunk = sock.recv(65536)     # b"" at close_notify; SSLError without it
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    assert data.count(b"HTTP/1.1 200 ") == 20, data[:300]
    assert data.count(b"HTTP/1.1 404 ") == 1
    assert data.rindex(b"HTTP/1.1 404 ") > data.rindex(b"HTTP/1.1 200 ")


async def test_api_tls_over_max_connections_is_closed(api_tls, pki):
    """Over max_connections an API connection over TLS is closed (a
    plaintext 503 would read as a broken handshake); below it, served."""
    s, port = api_tls(max_connections=1)
    ws = await s.client()
    await ws.ok("ping")
    assert await asyncio.to_thread(refused, port, pki.ctx())
    await ws.ws.close()
    await hh.async_wait_for(lambda: json.loads(hh.http_get(s.port, "/healthz")[1])
                            ["connections"] == 0, t(5), what="the client gone")
    status, _ = await asyncio.to_thread(https, port, pki.ctx(), "GET", "/api/v1/info", AUTH)
    assert status == 200


def test_api_mtls(api_tls, pki):
    """api_client_ca: a backend with a certificate from it is served; no
    certificate or another CA's is refused at the handshake."""
    s, port = api_tls(api_client_ca=pki.ca[0])
    status, doc = https(port, pki.ctx(pki.client), path="/api/v1/info", headers=AUTH)
    assert status == 200, doc
    assert refused(port, pki.ctx())
    assert refused(port, pki.ctx(pki.stranger))
    status, doc = https(port, pki.ctx(pki.client), path="/api/v1/info", headers=AUTH)
    assert status == 200, doc
    line = log_line(s, "API listening")
    assert line["client_certs"] == 1


@pytest.mark.parametrize("stage", ["silent_tcp", "partial_client_hello"])
def test_api_tls_handshake_timeout(api_tls, pki, stage):
    """A connection that does not finish its TLS handshake is closed after
    handshake_timeout."""
    s, port = api_tls(handshake_timeout=1)
    raw = socket.create_connection(("127.0.0.1", port), timeout=t(6))
    if stage == "partial_client_hello":
        raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    start = time.monotonic()
    try:
        while raw.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("%s: still open after %.0fs" % (stage, t(6))) from None
    finally:
        raw.close()
    assert time.monotonic() - start >= 0.5, "closed before the timeout"
    assert https(port, pki.ctx(), path="/api/v1/info", headers=AUTH)[0] == 200


def test_api_tls_garbage_does_not_disturb_others(api_tls, pki):
    s, port = api_tls()
    for g in (b"\x00" * 5 + os.urandom(512), b"\x16\x03\x03\x00\x30" + b"\x01" + b"\xff" * 47,
              b"GET / HTTP/1.1\r\n\r\n"):
        hh.exchange(port, g)
    assert https(port, pki.ctx(), path="/api/v1/info", headers=AUTH)[0] == 200


# -- configuration errors ------------------------------------------------------------

def _run(tmp_path, cfg, extra):
    path = os.path.join(str(tmp_path), "herald.conf")
    with open(path, "w") as f:
        f.write(hh.render_config(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    return subprocess.run([hh.HERALD_BIN, "--config", path] + extra, capture_output=True,
                          text=True, timeout=t(10), env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("case", ["ca_missing", "ca_directory", "ca_garbage", "api_ca_missing",
                                  "api_tls_without_cert", "api_tls_without_api_listen",
                                  "api_ca_without_api_tls", "client_ca_without_cert",
                                  "tls_listen_without_cert"])
def test_bad_tls_configuration_names_the_key(tmp_path, pki, case):
    """Exit 2 from --check-config and from a start, with the key (and the
    file) named, before anything listens."""
    d = str(tmp_path)
    garbage = os.path.join(d, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("not a PEM file\n")
    missing = os.path.join(d, "missing.pem")
    base = tls_base(pki)
    cfg, key, what = {
        "ca_missing": (dict(base, tls_client_ca=missing), "tls_client_ca", missing),
        "ca_directory": (dict(base, tls_client_ca=d), "tls_client_ca", d),
        "ca_garbage": (dict(base, tls_client_ca=garbage), "tls_client_ca", garbage),
        "api_ca_missing": (dict(base, api_listen="127.0.0.1:0", api_tls=True,
                                api_client_ca=missing), "api_client_ca", missing),
        "api_tls_without_cert": ({"api_listen": "127.0.0.1:0", "api_tls": True}, "api_tls",
                                 "tls_cert"),
        "api_tls_without_api_listen": (dict(base, api_tls=True), "api_tls", "api_listen"),
        "api_ca_without_api_tls": (dict(base, api_listen="127.0.0.1:0",
                                        api_client_ca=pki.ca[0]), "api_client_ca", "api_tls"),
        "client_ca_without_cert": ({"tls_client_ca": pki.ca[0]}, "tls_client_ca", "tls_cert"),
        "tls_listen_without_cert": ({"tls_listen": "127.0.0.1:0"}, "tls_listen", "tls_cert"),
    }[case]
    for extra in (["--check-config"],
                  ["--listen", "127.0.0.1:%d" % hh.free_port(), "--workers", "2"]):
        p = _run(tmp_path, cfg, extra)
        out = p.stdout + p.stderr
        assert p.returncode == 2, (case, extra, p.returncode, out)
        assert key in p.stderr and what in p.stderr, (case, out)
        assert '"listening"' not in out, (case, out)


def test_good_tls_configuration_checks(tmp_path, pki):
    cfg = tls_base(pki, tls_listen="127.0.0.1:0", tls_client_ca=pki.ca[0],
                   api_listen="127.0.0.1:0", api_tls=True, api_client_ca=pki.ca[0])
    p = _run(tmp_path, cfg, ["--check-config"])
    assert p.returncode == 0, p.stderr
