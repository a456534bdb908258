"""Cluster-mode harness: a real Redis and several Herald nodes.

* ``RedisServer`` runs Debian's ``redis-server`` on a free loopback port
  with its own directory and append-only file (``--appendonly yes
  --appendfsync always --save ''``), so what it acknowledged survives a
  stop, a SIGKILL and a restart on the same port and directory. It can be
  stopped (SIGTERM), killed (SIGKILL), paused (SIGSTOP) and resumed
  (SIGCONT); ``command()`` talks RESP to it over a plain socket.
* ``Cluster`` starts N ``HeraldServer`` nodes (herald_harness) on the same
  Redis server(s) with one config and stops them all at the end.
* ``TcpProxy`` sits between one node and Redis to cut or stall that node's
  links alone (a network partition).
* Helpers every cluster test needs: the channel -> shard hash of the
  contract (FNV-1a 32), ``/healthz`` with its 503 body parsed, a stream
  checker (offset order, no gap, no duplicate, every acknowledged
  publication present) and pytest fixture factories.

Timeouts go through ``t()`` like the rest of the harness.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import herald_harness as hh
from herald_harness import t

REDIS_BIN = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server") \
    or "/usr/bin/redis-server"


class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


class _PortTaken(Exception):
    pass


# --------------------------------------------------------------------------
# A tiny RESP2 client (one connection per call: tests issue few commands)

def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        ln = self.line()
        kind, rest = ln[:1], ln[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError("unexpected RESP reply %r" % ln)


def redis_command(port, *args, timeout=None, host="127.0.0.1", password=None, db=None):
    """Sends one command (after AUTH and SELECT when given), returns the
    decoded reply (bulk strings as bytes, errors raised as RedisError)."""
    with socket.create_connection((host, port), timeout=timeout or t(5)) as s:
        r = _Reader(s)
        pre = []
        if password:
            pre.append(["AUTH", password])
        if db:
            pre.append(["SELECT", db])
        for cmd in pre + [list(args)]:
            s.sendall(_resp_encode(cmd))
            v = r.reply()
            if isinstance(v, RedisError):
                raise v
    return v


# --------------------------------------------------------------------------
# redis-server

class RedisServer:
    """One redis-server process; start() again reuses port and directory."""

    def __init__(self, tmpdir=None, name="redis", extra_args=(), password=None):
        self.password = password
        self.dir = tmpdir or tempfile.mkdtemp(prefix="herald-redis-")
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.extra_args = list(extra_args)
        self.port = None
        self.proc = None
        self.paused = False
        self.log_path = os.path.join(self.dir, "%s.log" % name)
        self.data_dir = os.path.join(self.dir, "%s-data" % name)
        os.makedirs(self.data_dir, exist_ok=True)

    @property
    def url(self):
        auth = ":%s@" % self.password if self.password else ""
        return "redis://%s127.0.0.1:%d" % (auth, self.port)

    def command_line(self):
        return [REDIS_BIN,
                "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.data_dir,
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--daemonize", "no", "--protected-mode", "no",
                "--logfile", self.log_path] + \
            (["--requirepass", self.password] if self.password else []) + self.extra_args

    def start(self, timeout=None):
        """Starts redis (on the port it had before, if any) and waits until
        it answers PING with PONG (not -LOADING) with its own process id
        (not another server that holds the port). A first start on a port
        picked here tries other ports if that one was taken meanwhile."""
        assert not self.alive(), "redis already running"
        attempts = 3 if self.port is None else 1
        for attempt in range(attempts):
            if attempts > 1:
                self.port = hh.free_port()
            try:
                return self._start_once(timeout)
            except _PortTaken:
                if attempt + 1 == attempts:
                    raise AssertionError("redis-server: port %d in use; log:\n%s"
                                         % (self.port, self.log_tail()))

    def _start_once(self, timeout):
        self.paused = False
        self.proc = subprocess.Popen(self.command_line(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + (timeout or t(10))
        last = None
        while True:
            rc = self.proc.poll()
            if rc is not None:
                if "already in use" in self.log_tail(5):
                    raise _PortTaken()
                raise AssertionError("redis-server exited with %s at start; log:\n%s"
                                     % (rc, self.log_tail()))
            try:
                if self.command("PING", timeout=1) == "PONG":
                    info = self.command("INFO", "server", timeout=1).decode()
                    if "process_id:%d\r\n" % self.proc.pid in info:
                        return self
                    last = "another server answers on port %d" % self.port
            except (OSError, RedisError) as e:
                last = e
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("redis-server on port %d not answering PING after "
                                     "%.1fs (last: %r); log:\n%s"
                                     % (self.port, timeout or t(10), last, self.log_tail()))
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=None):
        """SIGTERM (redis flushes its append-only file and exits), then waits;
        SIGKILL if it does not exit in time. Returns the exit status."""
        if not self.alive():
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        if self.paused:
            self.resume()  # a stopped process acts on SIGTERM only once continued
        try:
            return self.proc.wait(timeout=timeout or t(10))
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self.paused = False

    def pause(self):
        """SIGSTOP: the port still accepts TCP connections (kernel backlog)
        but nothing answers."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def wipe(self):
        """Deletes the data directory (redis must not be running): the next
        start() begins empty, as if Redis had lost its data."""
        assert not self.alive()
        shutil.rmtree(self.data_dir)
        os.makedirs(self.data_dir)

    def command(self, *args, timeout=None, db=None):
        return redis_command(self.port, *args, timeout=timeout, password=self.password, db=db)

    def keys(self, pattern="*", db=None):
        return sorted(k.decode() for k in self.command("KEYS", pattern, db=db))

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n:])


# --------------------------------------------------------------------------
# A TCP proxy between one node and Redis (a network partition of one node)

class TcpProxy:
    """Forwards 127.0.0.1:self.port to 127.0.0.1:target, one thread per
    connection. cut(): closes every connection and closes new ones at once
    (the node sees the link drop). stall(): forwards nothing and accepts new
    connections without forwarding either (the node must notice by its own
    timeout). blackhole_pubsub(): only the flows of the pub/sub connections
    open now (those whose client sent SUBSCRIBE) stop forwarding, in both
    directions, while staying open; command connections keep working, and
    new connections are closed at once (so a node that noticed stays down
    until heal()). delay_pubsub(s): bytes from Redis on pub/sub connections
    reach the node `s` seconds late (in order; a node whose pub/sub lags).
    heal(): forwards again; connections from before a stall or black hole
    are closed (as after a long partition) rather than delivering stale
    bytes."""

    def __init__(self, target_port):
        import threading
        self.target = target_port
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []          # _Flow
        self.mode = "open"       # "open", "cut", "stall" or "blackhole-pubsub"
        self.pubsub_delay = 0.0
        self.running = True
        self._threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    class _Flow:
        def __init__(self, client, upstream):
            self.client, self.upstream = client, upstream
            self.pubsub = False      # its client sent SUBSCRIBE
            self.held = False        # black-holed
            self.seen = b""          # the client's first bytes (classification)

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def _accept(self):
        while self.running:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            if self.mode in ("cut", "blackhole-pubsub"):
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                c.close()
                continue
            f = self._Flow(c, u)
            with self.lock:
                self.conns.append(f)
            self._threading.Thread(target=self._pump, args=(f,), daemon=True).start()

    def _pump(self, f):
        import select
        a, b = f.client, f.upstream
        late = []                # (due, bytes) from Redis, delayed
        try:
            while self.running:
                if self.mode == "stall" or f.held:
                    time.sleep(0.02)
                    continue
                if late and late[0][0] <= time.monotonic():
                    a.sendall(late.pop(0)[1])
                    continue
                r, _, _ = select.select([a, b], [], [], 0.01 if late else 0.1)
                for x in r:
                    d = x.recv(65536)
                    if not d:
                        raise OSError("closed")
                    if x is a:
                        if not f.pubsub and len(f.seen) < 4096:
                            f.seen += d
                            f.pubsub = b"SUBSCRIBE" in f.seen.upper()
                        b.sendall(d)
                    elif f.pubsub and (self.pubsub_delay or late):
                        late.append((time.monotonic() + self.pubsub_delay, d))
                    else:
                        a.sendall(d)
        except (OSError, ValueError):
            pass
        finally:
            self._close_pair(a, b)

    @staticmethod
    def _close_pair(a, b):
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                x.close()
            except OSError:
                pass

    def _drop(self, which):
        with self.lock:
            gone = [f for f in self.conns if which(f)]
            self.conns = [f for f in self.conns if not which(f)]
        for f in gone:
            self._close_pair(f.client, f.upstream)

    def _drop_all(self):
        self._drop(lambda f: True)

    def pubsub_flows(self):
        """How many open connections were classified as pub/sub."""
        with self.lock:
            return sum(1 for f in self.conns if f.pubsub)

    def cut(self):
        self.mode = "cut"
        self._drop_all()

    def stall(self):
        with self.lock:
            self.mode = "stall"

    def blackhole_pubsub(self):
        """Returns how many pub/sub flows were black-holed."""
        with self.lock:
            self.mode = "blackhole-pubsub"
            held = [f for f in self.conns if f.pubsub]
            for f in held:
                f.held = True
        return len(held)

    def delay_pubsub(self, seconds):
        self.pubsub_delay = seconds

    def heal(self):
        if self.mode == "stall":
            self._drop_all()
        self._drop(lambda f: f.held)
        self.mode = "open"

    def close(self):
        self.running = False
        try:
            self.ls.close()
        except OSError:
            pass
        self._drop_all()


# --------------------------------------------------------------------------
# Sharding (contract: FNV-1a 32 of the channel name mod the number of URIs)

def fnv1a32(data):
    if isinstance(data, str):
        data = data.encode()
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def shard_of(channel, n):
    return fnv1a32(channel) % n


def chan_on_shard(prefix, shard, n):
    """A fresh channel name (hh.chan) that the contract places on `shard`."""
    while True:
        c = hh.chan(prefix)
        if shard_of(c, n) == shard:
            return c


def stream_key(channel, prefix="herald", part="s"):
    return "%s:{%s}:%s" % (prefix, channel, part)


# --------------------------------------------------------------------------
# /healthz with the 503 body too

def health(node, timeout=None):
    """(status, parsed JSON body or None)."""
    status, body = hh.http_get(node.port, "/healthz", timeout=timeout or t(2))
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    return status, doc


def health_is(node, status, broker):
    try:
        st, doc = health(node, timeout=1)
    except OSError:
        return False
    return st == status and isinstance(doc, dict) and doc.get("broker") == broker


def broker_up(node):
    return health_is(node, 200, "up")


def broker_down(node):
    try:
        st, doc = health(node, timeout=1)
    except OSError:
        return False
    return (st == 503 and isinstance(doc, dict) and doc.get("broker") == "down"
            and doc.get("status") == "degraded")


def broker_down_on_every_worker(node):
    """/healthz says broker down and every worker has logged "broker down"
    since its last "broker up". /healthz is degraded as soon as one worker's
    link is down, while another worker may still be waiting for its own
    timeout: a publish sent to that worker in between is still in flight
    (108 "... may have been published"), not refused."""
    if not broker_down(node):
        return False
    state = {}
    for line in node.log_lines():
        if line.get("msg") in ("broker up", "broker down") and "worker" in line:
            state[line["worker"]] = line["msg"]
    return (len(state) == node.workers
            and all(v == "broker down" for v in state.values()))


def log_msgs(node):
    """The "msg" fields of the node's JSON log lines, in order."""
    return [str(l.get("msg", "")) for l in node.log_lines()]


# --------------------------------------------------------------------------
# Herald nodes on Redis

class Cluster:
    """N herald nodes sharing `redis` (a RedisServer or a list of them: the
    channels are then sharded over them in that order).

    config: dict for every node (node_name is set per node).
    forms: how each node is given the Redis addresses, one per node (the
    default is "args" for all): "args" repeats --redis, "comma" passes one
    --redis with a comma-separated list, "config" uses the `redis` key
    (string or list), "env" sets HERALD_REDIS."""

    NAMES = "abcdefgh"

    def __init__(self, redis, n=3, config=None, tmpdir=None, workers=2, forms=None,
                 node_urls=None, env=None):
        self.node_urls = dict(node_urls or {})   # node index -> its own URL list
        self.env = dict(env or {})               # extra environment of every node
        self.redis = list(redis) if isinstance(redis, (list, tuple)) else [redis]
        self.n = n
        self.config = dict(config or {})
        self.dir = tmpdir or tempfile.mkdtemp(prefix="herald-cluster-")
        self.workers = workers
        self.forms = list(forms or ["args"] * n)
        self.nodes = []

    def urls(self):
        return [r.url for r in self.redis]

    @property
    def prefix(self):
        return self.config.get("redis_prefix", "herald")

    @property
    def nshards(self):
        return len(self.redis)

    def redis_of(self, channel):
        """The Redis server the contract puts `channel` on."""
        return self.redis[shard_of(channel, self.nshards)]

    def chan(self, prefix, shard=0):
        """A fresh channel on shard `shard` (mod the number of shards)."""
        return chan_on_shard(prefix, shard % self.nshards, self.nshards)

    def make_node(self, i):
        urls = self.node_urls.get(i) or self.urls()
        cfg = dict(self.config)
        cfg["node_name"] = "node-" + self.NAMES[i]
        args, env = [], dict(self.env)
        form = self.forms[i]
        if form == "args":
            for u in urls:
                args += ["--redis", u]
        elif form == "comma":
            args += ["--redis", ",".join(urls)]
        elif form == "config":
            cfg["redis"] = urls[0] if len(urls) == 1 else urls
        elif form == "env":
            env["HERALD_REDIS"] = ",".join(urls)
        else:
            raise ValueError(form)
        return hh.HeraldServer(cfg, args=args, env=env, tmpdir=self.dir,
                               workers=self.workers, name="node-" + self.NAMES[i])

    def start(self):
        for i in range(self.n):
            node = self.make_node(i)
            self.nodes.append(node)
            node.start()
        for node in self.nodes:
            st, doc = health(node)
            assert st == 200 and doc.get("broker") == "up", \
                "%s (redis given as %s) does not report broker up: %s %r" % (
                    node.name, self.forms[self.nodes.index(node)], st, doc)
        return self

    def __getitem__(self, i):
        return self.nodes[i]

    def __iter__(self):
        return iter(self.nodes)

    def stop(self):
        for node in self.nodes:
            if node.proc is not None:
                node.stop()


def _fail_on_node_problems(nodes):
    import pytest
    for s in nodes:
        report = s.sanitizer_report()
        if report:
            pytest.fail("sanitizer report in %s stderr:\n%s" % (s.name, report), pytrace=False)
        if s.died is not None:
            pytest.fail("%s died with status %s before the end of the module:\n%s"
                        % (s.name, s.died, s.stderr_tail(40)), pytrace=False)


def redis_fixture(scope="module", name="redis"):
    """A fixture yielding a started RedisServer, stopped afterwards."""
    import pytest

    @pytest.fixture(scope=scope)
    def _fixture(tmp_path_factory):
        r = RedisServer(str(tmp_path_factory.mktemp(name)), name=name)
        r.start()
        yield r
        r.stop()
    return _fixture


def cluster_session(tmp_path_factory, config, redis_names=("redis",), n=3, forms=None):
    """Generator for a fixture: starts one RedisServer per name and an
    n-node Cluster on them, yields the Cluster, stops everything and checks
    the nodes for sanitizer reports and crashes. The nodes are marked shared
    (tests use unique channel names; conftest restarts a node that died)."""
    redises = []
    cl = None
    try:
        for nm in redis_names:
            r = RedisServer(str(tmp_path_factory.mktemp(nm)), name=nm)
            redises.append(r.start())
        cl = Cluster(redises, n=n, config=config,
                     tmpdir=str(tmp_path_factory.mktemp("cluster")), forms=forms)
        cl.start()
        for node in cl:
            node.shared = True
        yield cl
    finally:
        if cl is not None:
            cl.stop()
        for r in redises:
            r.stop()
    _fail_on_node_problems(cl.nodes)


def cluster_fixture(config, redis_names=("redis",), n=3, scope="module", forms=None):
    """A fixture running cluster_session for the scope."""
    import pytest

    @pytest.fixture(scope=scope)
    def _fixture(tmp_path_factory):
        yield from cluster_session(tmp_path_factory, config, redis_names, n, forms)
    return _fixture


def redis_factory_fixture():
    """A function-scoped fixture: make(name="redis", **RedisServer kwargs)
    starts a RedisServer in the test's tmp dir; all are stopped afterwards.
    Request it before server_factory so the nodes stop first."""
    import pytest

    @pytest.fixture
    def _fixture(tmp_path):
        made = []

        def make(name="redis", **kw):
            r = RedisServer(str(tmp_path / name), name=name, **kw)
            made.append(r)
            return r.start()
        yield make
        for r in made:
            r.stop()
    return _fixture


def cluster_factory_fixture():
    """A function-scoped fixture: make(config, n=3, redis_names=("redis",),
    forms=None) starts fresh Redis servers and a Cluster on them for one
    test (for tests that break things); everything is stopped afterwards."""
    import pytest

    @pytest.fixture
    def _fixture(tmp_path):
        made = []

        def make(config, n=3, redis_names=("redis",), forms=None, node_urls=None, env=None):
            """node_urls: called with the started RedisServers, returns
            {node index: [URL, ...]} for nodes that reach Redis another way
            (through a TcpProxy). env: extra environment of every node."""
            redises = [RedisServer(str(tmp_path / nm), name=nm) for nm in redis_names]
            cl = Cluster(redises, n=n, config=config, tmpdir=str(tmp_path), forms=forms,
                         env=env)
            made.append(cl)
            for r in redises:
                r.start()
            if node_urls:
                cl.node_urls = node_urls(redises)
            return cl.start()
        yield make
        for cl in made:
            cl.stop()
            for r in cl.redis:
                r.stop()
    return _fixture


def native_tracebacks_fixture():
    """An autouse fixture switching the default traceback style to
    "native". Debian 12's Python 3.11.2 can fail in ast.parse with
    "SystemError: AST constructor recursion depth mismatch" (CPython
    gh-106905, fixed in 3.11.8) when pytest renders its long tracebacks after
    a few failures in one session, which turns the failures into an
    INTERNALERROR; native tracebacks do not parse source. An explicit --tb
    is left alone, and the style is restored after the module."""
    import pytest

    @pytest.fixture(autouse=True, scope="module")
    def _fixture(request):
        before = request.config.option.tbstyle
        if before == "auto":
            request.config.option.tbstyle = "native"
        yield
        request.config.option.tbstyle = before
    return _fixture


# --------------------------------------------------------------------------
# Checking what subscribers received

def check_stream(label, received, acked, ambiguous=(), start=None, epoch=None, upto=None):
    """received: [(offset, epoch, key)] in arrival order (live pushes and
    recovered publications of every connection of one logical subscriber).
    acked: {offset: key} of every publish answered ok.
    ambiguous: keys whose publish got an error or no reply: they may or may
    not exist; anything else received is a phantom.
    start: the offset the subscriber started after (its first subscribe
    reply), default: the first offset received - 1.

    Asserts offsets start+1, start+2, ... without gap or duplicate, one
    epoch, each offset carrying the key acknowledged for it, and every
    acknowledged offset after `start` (and up to `upto`, when the stream
    was cut short on purpose) received."""
    offsets = [o for o, _, _ in received]
    if start is None:
        start = offsets[0] - 1 if offsets else 0
    expect = start + 1
    for i, o in enumerate(offsets):
        if o != expect:
            kind = "duplicate/out of order" if o < expect else "gap"
            raise AssertionError(
                "%s: %s at position %d: got offset %s, expected %d (around: %r)"
                % (label, kind, i, o, expect, offsets[max(0, i - 5): i + 5]))
        expect += 1
    epochs = {e for _, e, _ in received}
    if epoch is not None:
        epochs.add(epoch)
    assert len(epochs) <= 1, "%s: several epochs %r" % (label, epochs)
    amb = set(ambiguous)
    seen_keys = set()
    for o, _, k in received:
        if o in acked:
            assert acked[o] == k, "%s: offset %d carries %r but %r was acknowledged " \
                "with it" % (label, o, k, acked[o])
        else:
            assert k in amb, "%s: offset %d carries %r, which no publish made " \
                "(neither acknowledged nor failed)" % (label, o, k)
        assert k not in seen_keys, "%s: publication %r delivered twice" % (label, k)
        seen_keys.add(k)
    got = set(offsets)
    missing = sorted(o for o in acked if o > start and o not in got
                     and (upto is None or o <= upto))
    assert not missing, "%s: acknowledged publications never received: offsets %r" \
        % (label, missing[:20])
