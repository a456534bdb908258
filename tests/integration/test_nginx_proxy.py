"""nginx in front of herald nodes, configured by conf/nginx.conf.

Each test starts herald nodes (HeraldServer) and a private nginx (its own
prefix directory, pid file and logs, no daemon, as bench/peers/nchan does)
with a copy of conf/nginx.conf where the lines marked `# @listen` and
`# @node` carry the test's ports; everything else is the shipped file.
nginx comes from `scripts/deps.sh test` (bench/peers/nchan/setup.sh installs
nginx-light), so a missing nginx fails here rather than skipping.

Without Redis the nodes are independent single nodes, which is enough for
the proxy itself: the handshake and subprotocol, pub/sub, heartbeats and
close codes through nginx, /healthz and other HTTP, the headers nginx sends
to the nodes, least_conn spreading, and failover when a node stops. When
the binary has cluster mode (`--redis` in `herald --help`), three more tests
start a redis-server and check that a subscriber behind nginx gets what is
published on either node, recovers on the other node when its own dies,
and sees a Redis outage through nginx as the contract says (503 degraded
/healthz, 108, then 4003 and recovered:false when Redis lost its data).
"""

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import herald_harness as hh
from herald_harness import chan, t

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
CONF = os.path.join(hh.REPO, "conf", "nginx.conf")

# The nodes: history for recovery, a short drain so that stopping one is
# quick (its clients still get the 4000 close).
NODE_CONFIG = {
    "shutdown_timeout": 2,
    "namespace_defaults": {"history_size": 100, "history_ttl": 300},
}


def _has_cluster_mode():
    try:
        out = subprocess.run([hh.HERALD_BIN, "--help"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--redis" in out.stdout + out.stderr


CLUSTER = _has_cluster_mode()
needs_cluster = pytest.mark.skipif(
    not CLUSTER, reason="herald has no --redis option yet (cluster mode)")


# --------------------------------------------------------------------------
# conf/nginx.conf with the test's ports

def render_nginx_conf(listen_port, node_ports):
    """conf/nginx.conf with the `# @listen` line listening on
    127.0.0.1:listen_port and the `# @node` lines replaced by one line per
    node port (the parameters of the first @node line kept)."""
    out, listens, nodes = [], 0, 0
    with open(CONF) as f:
        for line in f:
            mark = line.rstrip()
            if mark.endswith("# @listen"):
                line, n = re.subn(r"\blisten\s+[^\s;]+",
                                  "listen 127.0.0.1:%d" % listen_port, line, count=1)
                assert n == 1, "cannot substitute the @listen line: %r" % line
                listens += 1
            elif mark.endswith("# @node"):
                nodes += 1
                if nodes > 1:
                    continue
                tmpl = line
                lines = []
                for p in node_ports:
                    l2, n = re.subn(r"\bserver\s+[^\s;]+",
                                    "server 127.0.0.1:%d" % p, tmpl, count=1)
                    assert n == 1, "cannot substitute the @node line: %r" % tmpl
                    lines.append(l2)
                line = "".join(lines)
            out.append(line)
    assert listens == 1, "conf/nginx.conf: expected one '# @listen' line, got %d" % listens
    assert nodes >= 1, "conf/nginx.conf: no '# @node' line"
    return "".join(out)


class Nginx:
    """A private nginx: prefix directory `dir` (pid, logs, temp files),
    master in the foreground (daemon off) as our child."""

    def __init__(self, run_dir, node_ports):
        self.dir = run_dir
        os.makedirs(self.dir, exist_ok=True)
        self.node_ports = list(node_ports)
        self.port = None
        self.proc = None
        self.conf_path = os.path.join(self.dir, "nginx.conf")
        self.error_log = os.path.join(self.dir, "error.log")

    def base_cmd(self):
        return [NGINX, "-p", self.dir + "/", "-e", "error.log", "-c", self.conf_path]

    def start(self, timeout=None):
        assert os.access(NGINX, os.X_OK), (
            "nginx not found (%s): scripts/deps.sh test installs it" % NGINX)
        self.port = hh.free_port()
        with open(self.conf_path, "w") as f:
            f.write(render_nginx_conf(self.port, self.node_ports))
        check = subprocess.run(self.base_cmd() + ["-t", "-q"], capture_output=True,
                               text=True, timeout=t(10))
        assert check.returncode == 0, "nginx -t failed:\n%s%s" % (check.stdout, check.stderr)
        self._out = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen(self.base_cmd() + ["-g", "daemon off;"],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._out)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited with %s:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            try:
                hh.http_get(self.port, "/nginx-ready-probe", timeout=1)
                # not another test's server on a port picked twice
                return hh.pid_listens_on(self.proc.pid, self.port)
            except OSError:
                return False
        try:
            hh.wait_for(ready, timeout or t(10), what=lambda: "nginx on port %d to answer "
                        "HTTP; error.log:\n%s" % (self.port, self.log_tail()))
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, path="/ws"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def log(self):
        try:
            with open(self.error_log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n=30):
        return "\n".join(self.log().splitlines()[-n:])

    def serious_log_lines(self):
        """[emerg], [alert] and [crit] lines of error.log (an upstream that
        refuses is only [error] and expected when a node is down)."""
        return [l for l in self.log().splitlines()
                if re.search(r"\[(emerg|alert|crit)\]", l)]

    def _children(self):
        pids = []
        try:
            for task in os.listdir("/proc/%d/task" % self.proc.pid):
                with open("/proc/%d/task/%s/children" % (self.proc.pid, task)) as f:
                    pids += [int(x) for x in f.read().split()]
        except OSError:
            pass
        return pids

    def stop(self):
        """SIGTERM (fast shutdown: nginx closes every connection), SIGKILL
        to the master and its workers if it is still there after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            self._close_out()
            return
        workers = self._children()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=t(10))
        except subprocess.TimeoutExpired:
            for pid in workers + self._children():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.kill()
            self.proc.wait()
        self._close_out()

    def _close_out(self):
        f = getattr(self, "_out", None)
        if f and not f.closed:
            f.close()


class Redis:
    """A throw-away redis-server on a free loopback port, persisting
    nothing."""

    def __init__(self, run_dir):
        self.dir = run_dir
        os.makedirs(self.dir, exist_ok=True)
        self.port = None
        self.proc = None

    def start(self, port=None):
        """On a free port, or on `port` (a restart keeps the nodes' URI)."""
        assert os.access(REDIS, os.X_OK), (
            "redis-server not found (%s): scripts/deps.sh test installs it" % REDIS)
        self.port = port or hh.free_port()
        self._out = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._out)
        hh.wait_for(self.ping, t(10), what="redis-server to answer PING")
        return self

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def ping(self):
        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited with %s" % self.proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG") and \
                    hh.pid_listens_on(self.proc.pid, self.port)
        except OSError:
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=t(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        f = getattr(self, "_out", None)
        if f and not f.closed:
            f.close()


@pytest.fixture
def proxied(server_factory, tmp_path):
    """proxied(n=2, config=None, args=()) -> (nodes, nginx): n herald nodes
    named node0.. and an nginx in front of them. Everything is stopped after
    the test; an nginx [emerg]/[alert]/[crit] log line fails it."""
    made = []

    def make(n=2, config=None, args=()):
        nodes = []
        for i in range(n):
            cfg = dict(NODE_CONFIG)
            cfg.update(config or {})
            cfg["node_name"] = "node%d" % i
            nodes.append(server_factory(cfg, args=list(args), name="node%d" % i))
        ngx = Nginx(str(tmp_path / ("nginx%d" % len(made))), [s.port for s in nodes])
        made.append(ngx)
        ngx.start()
        return nodes, ngx

    yield make
    problems = []
    for ngx in made:
        ngx.stop()
        bad = ngx.serious_log_lines()
        if bad:
            problems.append("nginx error.log (%s):\n%s" % (ngx.dir, "\n".join(bad)))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def redis_server(tmp_path):
    r = Redis(str(tmp_path / "redis"))
    r.start()
    yield r
    r.stop()


async def through(ngx, enc="json"):
    """A protocol client connected to nginx (it lands on some node)."""
    return await hh.Client.open(None, enc=enc, url=ngx.url())


async def connect_node(c):
    """Sends `connect`; returns the name of the node that answered."""
    return (await c.ok("connect"))["node"]


async def to_thread(fn, *args):
    """Runs a blocking call (process waits) without stalling the clients'
    readers, which must keep answering close frames and pings."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# --------------------------------------------------------------------------
# The shipped file itself

def test_shipped_conf_passes_nginx_t(tmp_path):
    """conf/nginx.conf as shipped (ports 8080/8081-8083) is a complete
    configuration: `nginx -t` with only a prefix directory passes."""
    assert os.access(NGINX, os.X_OK), "nginx not found: scripts/deps.sh test installs it"
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    r = subprocess.run([NGINX, "-t", "-p", str(prefix) + "/", "-e", "error.log",
                        "-c", CONF], capture_output=True, text=True, timeout=t(10))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test is successful" in r.stderr


def test_conf_substitution_markers():
    """The marked lines are what a deployment changes; the rendering keeps
    the parameters of the first @node line for every node."""
    text = render_nginx_conf(18080, [19001, 19002])
    assert re.search(r"^\s*listen 127\.0\.0\.1:18080 reuseport;", text, re.M)
    servers = re.findall(r"^\s*server (127\.0\.0\.1:\d+) (.*);", text, re.M)
    assert [s[0] for s in servers] == ["127.0.0.1:19001", "127.0.0.1:19002"]
    assert all("max_fails=" in s[1] and "fail_timeout=" in s[1] for s in servers)
    assert "8081" not in text and "8082" not in text


# --------------------------------------------------------------------------
# Through nginx

@pytest.mark.parametrize("enc", ["json", "msgpack"])
async def test_pubsub_through_nginx(proxied, enc):
    nodes, ngx = proxied()
    c = await through(ngx, enc)
    if enc == "msgpack":
        # The subprotocol the node chose comes back through nginx.
        assert c.ws.subprotocol == hh.MSGPACK_SUB
    assert await connect_node(c) in ("node0", "node1")
    ch = chan()
    sub = await c.ok("subscribe", channel=ch)
    assert sub["offset"] == 0
    rep = await c.ok("publish", channel=ch, data={"via": "nginx", "n": 1})
    assert rep["offset"] == 1
    p = await c.push("pub")
    assert (p["channel"], p["offset"], p["epoch"], p["data"]) == \
        (ch, 1, rep["epoch"], {"via": "nginx", "n": 1})
    # A larger message crosses nginx in several reads and arrives whole.
    big = "x" * 50000
    await c.ok("publish", channel=ch, data=big)
    assert (await c.push("pub"))["data"] == big


async def test_two_clients_on_one_node_through_nginx(proxied):
    """A publisher and a subscriber on the same node (single nodes share
    nothing without Redis): the subscriber gets every publication in order."""
    nodes, ngx = proxied()
    sub = await through(ngx)
    node = await connect_node(sub)
    pub = None
    for _ in range(4):  # least_conn: the second client goes to the other node
        cand = await through(ngx)
        if await connect_node(cand) == node:
            pub = cand
            break
    assert pub is not None, "no second client landed on %s in 4 tries" % node
    ch = chan()
    await sub.ok("subscribe", channel=ch)
    for i in range(20):
        await pub.ok("publish", channel=ch, data=i)
    got = await sub.pubs(20)
    assert [p["offset"] for p in got] == list(range(1, 21))
    assert [p["data"] for p in got] == list(range(20))


def test_healthz_and_http_through_nginx(proxied):
    nodes, ngx = proxied()
    status, body = hh.healthz(ngx.port)
    assert status == 200, body
    assert body["status"] == "ok" and body["node"] in ("node0", "node1")
    # Other HTTP reaches a node too (location /): herald's own 404 and 426.
    status, body = hh.http_get(ngx.port, "/no-such-path")
    assert status == 404 and b"not found" in body
    status, body = hh.http_get(ngx.port, "/ws")
    assert status == 426, (status, body)


def _header_catcher():
    """A one-shot HTTP 'node' on a free port recording the request heads it
    gets; returns (port, heads list, stop function)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    heads, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                buf = b""
                try:
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    heads.append(buf.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                 b"Connection: close\r\n\r\nok")
                except OSError:
                    pass
    th = threading.Thread(target=serve, daemon=True)
    th.start()

    def close():
        stop.set()
        th.join(5)
        srv.close()
    return srv.getsockname()[1], heads, close


def _headers(head):
    out = {}
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        out.setdefault(k.strip().lower(), []).append(v.strip())
    return out


def test_headers_sent_to_nodes(tmp_path):
    """What nginx sends a node: HTTP/1.1, Upgrade/Connection for a WebSocket
    handshake (and Connection: close, no Upgrade, for plain HTTP),
    X-Forwarded-For, X-Real-IP and X-Forwarded-Proto on every request."""
    port, heads, close = _header_catcher()
    ngx = Nginx(str(tmp_path / "nginx"), [port])
    try:
        ngx.start()
        s = socket.create_connection(("127.0.0.1", ngx.port), timeout=t(5))
        s.sendall(("GET /ws HTTP/1.1\r\nHost: herald.test\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: herald.v1.json\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n\r\n").encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.close()
        hh.http_get(ngx.port, "/healthz")

        def request(path):
            return [h for h in heads if h.startswith("GET %s " % path)]
        hh.wait_for(lambda: request("/ws") and request("/healthz"), t(5),
                    what=lambda: "both requests at the fake node, got %r" % heads)
    finally:
        ngx.stop()
        close()
    (ws,), (plain,) = request("/ws"), request("/healthz")
    assert ws.startswith("GET /ws HTTP/1.1\r\n"), ws
    h = _headers(ws)
    assert h["upgrade"] == ["websocket"], ws
    assert h["connection"] == ["upgrade"], ws
    assert h["sec-websocket-protocol"] == ["herald.v1.json"], ws
    assert h["sec-websocket-key"] == ["dGhlIHNhbXBsZSBub25jZQ=="], ws
    assert h["host"] == ["herald.test"], ws
    # An X-Forwarded-For from the client is kept, the client address added.
    assert h["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"], ws
    assert h["x-real-ip"] == ["127.0.0.1"], ws
    assert h["x-forwarded-proto"] == ["http"], ws
    assert plain.startswith("GET /healthz HTTP/1.1\r\n"), plain
    h = _headers(plain)
    assert "upgrade" not in h, plain
    assert h["connection"] == ["close"], plain
    assert h["x-forwarded-for"] == ["127.0.0.1"], plain


def test_heartbeat_and_close_codes_through_nginx(proxied):
    """Server pings reach the client through nginx, and a client that does
    not answer gets the 4002 disconnect push and close frame through it."""
    nodes, ngx = proxied(config={"ping_interval": 1, "pong_timeout": 1})
    raw = hh.RawWS(ngx.port)
    try:
        events = []
        deadline = time.monotonic() + t(8)
        while True:
            ev = raw.recv_event(timeout=max(0.01, deadline - time.monotonic()))
            events.append(ev)
            if ev[0] in ("close", "eof"):
                break
    finally:
        raw.close()
    kinds = [e[0] for e in events]
    assert "ping" in kinds, events
    texts = [e[1] for e in events if e[0] == "text"]
    assert any('"disconnect"' in x and "4002" in x for x in texts), events
    assert events[-1][0] == "close" and events[-1][1] == 4002, events


async def test_least_conn_spreads_open_connections(proxied):
    """Four connections held open over two nodes: two on each (least_conn
    with the shared zone, whichever nginx worker accepted them)."""
    nodes, ngx = proxied()
    counts = {}
    clients = []
    for _ in range(4):
        c = await through(ngx)
        clients.append(c)
        n = await connect_node(c)
        counts[n] = counts.get(n, 0) + 1
    assert counts == {"node0": 2, "node1": 2}, counts


@pytest.mark.timeout(60)
async def test_node_stop_failover(proxied):
    """One node stops: its clients get 4000 through nginx, the other node's
    clients are untouched, every new connection through nginx succeeds (on
    the remaining node), /healthz through nginx still answers; when the
    node is back on its port, nginx sends it connections again."""
    nodes, ngx = proxied()
    by_node = {"node0": [], "node1": []}
    for _ in range(4):
        c = await through(ngx)
        by_node[await connect_node(c)].append(c)
    assert all(by_node.values()), by_node
    victim, survivor = nodes[0], nodes[1]
    ch = chan()
    for c in by_node["node1"]:
        await c.ok("subscribe", channel=ch)

    victim.send_signal(signal.SIGTERM)
    for c in by_node["node0"]:
        d = await c.push("disconnect", timeout=t(5))
        assert d["code"] == 4000 and d["reconnect"] is True, d
        assert await c.wait_closed(t(5)) == 4000
    assert await to_thread(victim.wait_exit, t(10)) == 0, victim.stderr_tail()

    # New connections: all succeed, all on the survivor (nginx retries a
    # refused handshake on the next node; the client never sees it).
    for i in range(6):
        c = await through(ngx)
        assert await connect_node(c) == "node1"
        await c.ok("publish", channel=ch, data=i)
        await c.close()
    for c in by_node["node1"]:
        assert [p["data"] for p in await c.pubs(6)] == list(range(6))
    for _ in range(3):
        status, body = await to_thread(hh.healthz, ngx.port)
        assert status == 200 and body["node"] == "node1", (status, body)

    # The node comes back on the same port: after fail_timeout at most,
    # least_conn gives it the next connections (it has the fewest).
    victim.returncode = None
    await to_thread(victim.start, None, victim.port)

    async def lands_on_victim():
        c = await through(ngx)
        try:
            return await connect_node(c) == "node0"
        finally:
            await c.close()
    await hh.async_wait_for(lands_on_victim, t(20), interval=0.25,
                            what="a new connection through nginx to reach the "
                                 "restarted node0")


# --------------------------------------------------------------------------
# Cluster mode (Redis): the nodes share channels

@needs_cluster
async def test_cluster_subscriber_behind_nginx_gets_both_nodes(proxied, redis_server):
    """A subscriber through nginx gets publications made directly on either
    node, in offset order, with one epoch."""
    nodes, ngx = proxied(args=["--redis", redis_server.url()])
    sub = await through(ngx)
    await connect_node(sub)
    direct = [await n.client() for n in nodes]
    ch = chan()
    await sub.ok("subscribe", channel=ch)
    epochs = set()
    for i in range(10):
        rep = await direct[i % 2].ok("publish", channel=ch, data={"i": i})
        assert rep["offset"] == i + 1, rep
        epochs.add(rep["epoch"])
    got = await sub.pubs(10)
    assert [p["offset"] for p in got] == list(range(1, 11))
    assert [p["data"]["i"] for p in got] == list(range(10))
    assert {p["epoch"] for p in got} == epochs and len(epochs) == 1
    status, body = await to_thread(hh.healthz, ngx.port)
    assert status == 200 and body["broker"] == "up", (status, body)


@needs_cluster
@pytest.mark.timeout(60)
async def test_cluster_redis_lost_through_nginx(proxied, redis_server):
    """Redis stops: /healthz through nginx passes the node's 503 "degraded"
    on (nginx does not fail over on it), the client behind nginx stays
    connected and its publish gets 108. Redis comes back without its data:
    the subscriber gets the 4003 disconnect and close through nginx, and
    `subscribe` with `since` through nginx says recovered:false."""
    nodes, ngx = proxied(args=["--redis", redis_server.url()])
    c = await through(ngx)
    await connect_node(c)
    ch = chan()
    await c.ok("subscribe", channel=ch)
    first = await c.ok("publish", channel=ch, data="before")
    assert (await c.push("pub"))["offset"] == 1

    await to_thread(redis_server.stop)

    def degraded():
        status, body = hh.http_get(ngx.port, "/healthz")
        return status == 503 and b'"degraded"' in body and b'"down"' in body
    await to_thread(hh.wait_for, degraded, t(10), 0.05,
                    "/healthz through nginx to answer 503 degraded")
    err = await c.error("publish", channel=ch, data="during")
    assert err["code"] == 108 and err["message"] == "broker unavailable", err
    assert not c.closed.is_set(), "closed with %s" % c.close_code

    await to_thread(redis_server.start, redis_server.port)
    d = await c.push("disconnect", timeout=t(15))
    assert d["code"] == 4003 and d["reconnect"] is True, d
    assert await c.wait_closed(t(5)) == 4003

    async def healthy():
        # every node, not just the one nginx asks: the next connection may
        # land on either, and each reconnects after its own random backoff
        for port in [n.port for n in nodes] + [ngx.port]:
            status, body = await to_thread(hh.healthz, port)
            if status != 200 or body["broker"] != "up":
                return False
        return True
    await hh.async_wait_for(healthy, t(15), interval=0.1,
                            what="/healthz of both nodes and through nginx 200 again")
    again = await through(ngx)
    r = await again.ok("subscribe", channel=ch,
                       since={"offset": 1, "epoch": first["epoch"]})
    assert r["recovered"] is False and r["epoch"] != first["epoch"], r


@needs_cluster
@pytest.mark.timeout(60)
async def test_cluster_recovery_on_other_node_through_nginx(proxied, redis_server):
    """The subscriber's node is killed (SIGKILL); publishing goes on on the
    other node; the client reconnects through nginx (to the surviving node)
    and `subscribe` with `since` recovers exactly what it missed."""
    nodes, ngx = proxied(args=["--redis", redis_server.url()])
    sub = await through(ngx)
    mine = await connect_node(sub)
    victim = nodes[0] if mine == "node0" else nodes[1]
    other = nodes[1] if victim is nodes[0] else nodes[0]
    pub = await other.client()
    ch = chan()
    await sub.ok("subscribe", channel=ch)
    first = await pub.ok("publish", channel=ch, data=0)
    p = await sub.push("pub")
    assert p["offset"] == first["offset"] == 1

    await to_thread(victim.kill)
    await sub.wait_closed(t(10))   # nginx drops the client side
    for i in range(1, 5):
        await pub.ok("publish", channel=ch, data=i)

    again = await through(ngx)
    assert await connect_node(again) == other.config["node_name"]
    r = await again.ok("subscribe", channel=ch,
                       since={"offset": 1, "epoch": first["epoch"]})
    assert r["recovered"] is True, r
    assert [x["offset"] for x in r["publications"]] == [2, 3, 4, 5]
    assert [x["data"] for x in r["publications"]] == [1, 2, 3, 4]
    await pub.ok("publish", channel=ch, data=5)
    assert (await again.push("pub"))["offset"] == 6
