"""Integration-test harness for Herald.

Everything the test files share:

* ``HeraldServer``: starts the real binary on a free loopback port with a
  generated libconfig file and/or HERALD_* environment, waits for
  ``GET /healthz`` to answer 200, captures stderr to a file, stops it with
  SIGTERM (SIGKILL after a timeout) and scans stderr for sanitizer reports.
* ``Client``: an asyncio client over ``websockets`` (10.4) speaking
  herald.v1.json or herald.v1.msgpack. It numbers commands itself, matches
  replies to commands by id, queues pushes and replies without an id, splits
  batched frames ('\\n' in JSON, concatenated objects in msgpack) and records
  the close code.
* ``RawWS``: a blocking WebSocket client over a plain socket that does the
  handshake by hand, so a test can refuse to read (slow consumer), refuse to
  answer pings (heartbeat) or send arbitrary frames.
* msgpack helpers, an HS256 JWT builder, a libconfig writer, ``http_get``.

Timeouts are multiplied by ``SCALE`` (3 under HERALD_SANITIZE=1).
"""

import asyncio
import base64
import hashlib
import hmac
import http.client
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid

import msgpack  # Debian python3-msgpack (scripts/deps.sh test)
import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))

# libmongoc (linked into herald) creates /dev/shm/mongoc-<pid> for its
# counters when the library loads, whether or not herald uses MongoDB, and
# a herald killed with SIGKILL leaves its file behind. A later process
# that gets the same pid then prints a non-JSON warning ("Falling back to
# malloc for counters") to stderr, which the log tests read. The tests turn
# the counters off for every process they start (README, "Logs").
os.environ.setdefault("MONGOC_DISABLE_SHM", "1")
HERALD_BIN = os.environ.get("HERALD_BIN") or os.path.join(REPO, "build", "bin", "herald")
SANITIZE = os.environ.get("HERALD_SANITIZE", "0") not in ("", "0", "OFF", "off", "false")
SCALE = 3.0 if SANITIZE else 1.0

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

JSON_SUB = "herald.v1.json"
MSGPACK_SUB = "herald.v1.msgpack"


def t(seconds):
    """A timeout scaled for the build under test."""
    return seconds * SCALE


def chan(prefix=""):
    """A channel name unique to this call (tests share module servers)."""
    return prefix + "c" + uuid.uuid4().hex[:12]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_listens_on(pid, port):
    """Whether process `pid` holds a TCP socket listening on `port`: a
    free_port() can be handed to two test processes running side by side,
    and a server answering on "our" port may be the other one's."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    # local address "ADDR:PORT" in hex, st 0A = LISTEN, inode
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port \
                            and cols[9] in inodes:
                        return True
        except OSError:
            continue
    return False


# --------------------------------------------------------------------------
# Encodings

def mp_pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def mp_unpack_all(data):
    """All msgpack objects concatenated in one frame."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(data)
    out = list(u)
    return out


def encode(obj, enc):
    if enc == "msgpack":
        return mp_pack(obj)
    return json.dumps(obj, separators=(",", ":"))


class BadFrame(Exception):
    pass


def decode_frame(frame, enc):
    """Splits one received frame into messages (protocol batching)."""
    if enc == "msgpack":
        if not isinstance(frame, (bytes, bytearray)):
            raise BadFrame("text frame on a msgpack connection: %r" % frame[:200])
        msgs = mp_unpack_all(bytes(frame))
    else:
        if not isinstance(frame, str):
            raise BadFrame("binary frame on a JSON connection: %r" % bytes(frame[:200]))
        parts = frame.split("\n")
        # A single separator between messages; tolerate one trailing '\n'.
        if parts and parts[-1] == "":
            parts.pop()
        msgs = [json.loads(p) for p in parts]
    for m in msgs:
        if not isinstance(m, dict):
            raise BadFrame("message is not a map: %r" % (m,))
    return msgs


# --------------------------------------------------------------------------
# JWT (HS256) with the standard library

def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(secret, sub=None, exp=None, info=None, alg="HS256", extra=None,
             header=None, sign=True):
    claims = {}
    if sub is not None:
        claims["sub"] = sub
    if exp is not None:
        claims["exp"] = exp
    if info is not None:
        claims["info"] = info
    if extra:
        claims.update(extra)
    hdr = header if header is not None else {"alg": alg, "typ": "JWT"}
    signing_input = b64url(json.dumps(hdr, separators=(",", ":"))) + "." + \
        b64url(json.dumps(claims, separators=(",", ":")))
    if not sign:
        return signing_input + "."
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384,
              "HS512": hashlib.sha512}.get(alg, hashlib.sha256)
    sig = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return signing_input + "." + b64url(sig)


# --------------------------------------------------------------------------
# libconfig writer

def _cfg_value(v, indent):
    pad = "  " * indent
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # libconfig strings use the same escapes
    if isinstance(v, dict):
        inner = "".join("%s  %s = %s;\n" % (pad, k, _cfg_value(x, indent + 1))
                        for k, x in v.items())
        return "{\n" + inner + pad + "}"
    if isinstance(v, (list, tuple)):
        items = [_cfg_value(x, indent + 1) for x in v]
        if all(isinstance(x, dict) for x in v):
            return "(\n" + ",\n".join(pad + "  " + i for i in items) + "\n" + pad + ")"
        return "[" + ", ".join(items) + "]"
    raise TypeError("cannot write %r to a config file" % (v,))


def render_config(cfg):
    """A dict rendered as libconfig text (or the string itself)."""
    if isinstance(cfg, str):
        return cfg
    return "".join("%s = %s;\n" % (k, _cfg_value(v, 0)) for k, v in cfg.items())


# --------------------------------------------------------------------------
# HTTP

def http_get(port, path, timeout=None, host="127.0.0.1"):
    """GET -> (status, body bytes). Raises OSError when nothing listens."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout or t(5))
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def exchange(port, data, timeout=None, source="127.0.0.1", shut_wr=False, gap=0.05):
    """Connects (from source), sends data in one write (or a list of
    pieces, `gap` seconds apart, so they arrive apart), optionally ends its
    sending side (shut_wr), and reads until the server ends the connection
    (or resets it); returns what it sent back. A connection still open
    after timeout (the server holding what it should have answered or
    refused) fails."""
    timeout = timeout or t(5)
    pieces = data if isinstance(data, list) else [data]
    so = socket.socket()
    so.bind((source, 0))
    so.settimeout(timeout)
    so.connect(("127.0.0.1", port))
    out = b""
    try:
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(gap)      # the bytes arrive apart (not a wait for the server)
            so.sendall(piece)
        if shut_wr:
            so.shutdown(socket.SHUT_WR)
        while True:
            chunk = so.recv(65536)
            if not chunk:
                return out
            out += chunk
    except ConnectionResetError:
        return out
    except socket.timeout:
        raise AssertionError("connection still open %.0f s after %r; the server sent %r"
                             % (timeout, pieces[0][:40], out[:200])) from None
    finally:
        so.close()


def healthz(port):
    status, body = http_get(port, "/healthz")
    return status, (json.loads(body) if status == 200 else body)


def _what(what):
    """A wait's description: a string, or a function called at the timeout
    (so that it shows the state at the failure, not at the start)."""
    return what() if callable(what) else what


def wait_for(pred, timeout, interval=0.02, what="condition"):
    """Polls pred() until it returns a true value; returns that value.
    `what` may be a function, evaluated only when the wait times out."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s%s" % (
                timeout, _what(what),
                (" (last error: %r)" % last_exc) if last_exc else ""))
        time.sleep(interval)


async def async_wait_for(pred, timeout, interval=0.02, what="condition"):
    """Async version of wait_for: pred may be sync or a coroutine function."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if asyncio.iscoroutine(v):
                v = await v
            if v:
                return v
        except Exception as e:  # noqa: BLE001
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s%s" % (
                timeout, _what(what),
                (" (last error: %r)" % last_exc) if last_exc else ""))
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------
# Server process

# Servers started by the current test (and module servers still alive):
# conftest reports their stderr when a test fails and checks them for
# sanitizer reports and unexpected deaths after each test.
ALL_SERVERS = []


class ServerStartError(AssertionError):
    pass


class HeraldServer:
    """One herald process.

    config: dict (rendered as libconfig) or str, or None for no --config.
    env: extra environment (HERALD_* variables); inherited HERALD_* variables
         (HERALD_BIN, HERALD_SANITIZE) are never passed to the server.
    listen: "cli" (default: --listen 127.0.0.1:PORT), "env" (HERALD_LISTEN)
            or "file" (listen key in the config file).
    workers: passed as --workers N (None: not passed).
    """

    def __init__(self, config=None, env=None, args=(), listen="cli", workers=2,
                 tmpdir=None, name="herald"):
        self.config = config
        self.env = dict(env or {})
        self.args = list(args)
        self.listen = listen
        self.workers = workers
        self.dir = tmpdir or tempfile.mkdtemp(prefix="herald-it-")
        self.name = name
        self.port = None
        self.proc = None
        self.returncode = None
        self.stderr_path = os.path.join(self.dir, "%s-%s.stderr" % (name, uuid.uuid4().hex[:6]))
        self.config_path = None
        self.stopping = False   # set once the test stops/signals it
        self.shared = False     # module-scoped (see server_fixture)
        self.died = None        # exit status if it died before being stopped
        ALL_SERVERS.append(self)

    # -- process ------------------------------------------------------------
    def command(self):
        cmd = [HERALD_BIN]
        if self.config is not None:
            cfg = self.config
            if isinstance(cfg, dict) and cfg.get("mongodb") and "mongodb_spill_path" not in cfg:
                # Each server its own spill file (the default is relative to
                # the working directory and locked); tests that restart on
                # the same spill file set it themselves.
                cfg = dict(cfg, mongodb_spill_path=os.path.join(
                    self.dir, "%s-%s.spill" % (self.name, uuid.uuid4().hex[:6])))
            if self.listen == "file":
                cfg = dict(cfg) if isinstance(cfg, dict) else cfg
                if isinstance(cfg, dict):
                    cfg["listen"] = "127.0.0.1:%d" % self.port
                else:
                    cfg += '\nlisten = "127.0.0.1:%d";\n' % self.port
            self.config_path = os.path.join(self.dir, "%s-%s.conf" % (self.name, uuid.uuid4().hex[:6]))
            with open(self.config_path, "w") as f:
                f.write(render_config(cfg))
            cmd += ["--config", self.config_path]
        if self.listen == "cli":
            cmd += ["--listen", "127.0.0.1:%d" % self.port]
        if self.workers is not None:
            cmd += ["--workers", str(self.workers)]
        return cmd + self.args

    def proc_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        if self.listen == "env":
            env["HERALD_LISTEN"] = "127.0.0.1:%d" % self.port
        env.update(self.env)
        if SANITIZE:
            env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        return env

    def start(self, timeout=None, port=None):
        if not os.access(HERALD_BIN, os.X_OK):
            raise ServerStartError("herald binary not found or not executable: %s "
                                   "(set HERALD_BIN or build with cmake --build build)" % HERALD_BIN)
        timeout = timeout or t(10)
        attempts = 1 if port else 3
        for attempt in range(attempts):
            self.port = port or free_port()
            self.returncode = None
            self.stopping = False
            self._errf = open(self.stderr_path, "ab")
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=self._errf, stderr=self._errf,
                                         env=self.proc_env())
            try:
                self.wait_ready(timeout)
                return self
            except ServerStartError:
                rc = self.proc.poll()
                err = self.stderr()
                if rc is not None and "in use" in err.lower() and attempt + 1 < attempts:
                    continue  # someone took the port between probe and bind
                self.kill()
                raise

    def restart_fresh(self):
        """Kills the process if needed and starts a new one on a new port
        with a new stderr file."""
        self.kill()
        self.died = None
        self.stderr_path = os.path.join(self.dir, "%s-%s.stderr" % (self.name, uuid.uuid4().hex[:6]))
        self.start()

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                raise ServerStartError("herald exited with %s before becoming ready; "
                                       "stderr:\n%s" % (rc, self.stderr_tail()))
            try:
                status, _ = http_get(self.port, "/healthz", timeout=1)
                # another test's server may answer on a port picked twice
                if status == 200 and pid_listens_on(self.proc.pid, self.port):
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise ServerStartError("herald not ready (GET /healthz != 200) after %.1fs; "
                                       "stderr:\n%s" % (timeout, self.stderr_tail()))
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.stopping = True
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Waits for the process to exit; returns the exit code or None."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
            return self.returncode
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """SIGTERM (or sig), SIGKILL after timeout; returns the exit code
        (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if not self.stopping and self.proc.poll() is not None and self.died is None:
            self.died = self.proc.poll()
        self.stopping = True
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            if self.wait_exit(timeout or t(10)) is None:
                self.kill()
        self.returncode = self.proc.wait()
        self._close_err()
        return self.returncode

    def kill(self):
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self.returncode = self.proc.returncode
        self._close_err()

    def _close_err(self):
        f = getattr(self, "_errf", None)
        if f and not f.closed:
            f.close()

    # -- output ---------------------------------------------------------------
    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, n=60):
        lines = self.stderr().splitlines()
        head = "" if len(lines) <= n else "[... %d earlier lines]\n" % (len(lines) - n)
        return head + "\n".join(lines[-n:])

    def log_lines(self):
        """stderr lines parsed as JSON (lines that are not JSON are skipped)."""
        out = []
        for line in self.stderr().splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if isinstance(v, dict):
                out.append(v)
        return out

    def worker_of(self, client_id):
        """The worker (0..N-1) serving a client, from the server's debug
        line "connection open" (needs log_level "debug"); None when not
        logged (yet)."""
        for l in self.log_lines():
            if l.get("msg") == "connection open" and l.get("client") == client_id:
                return l.get("worker")
        return None

    def sanitizer_report(self):
        err = self.stderr()
        for m in SANITIZER_MARKERS:
            i = err.find(m)
            if i >= 0:
                return err[max(0, i - 200): i + 4000]
        return None

    # -- clients --------------------------------------------------------------
    def url(self, path="/ws"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def healthz(self):
        return healthz(self.port)

    async def client(self, enc="json", subprotocols="default", **kw):
        return await Client.open(self, enc=enc, subprotocols=subprotocols, **kw)

    def raw(self, **kw):
        return RawWS(self.port, **kw)


# --------------------------------------------------------------------------
# asyncio client

OPEN_CLIENTS = []  # closed by conftest after each async test


class CommandError(AssertionError):
    pass


class Client:
    """A Herald protocol client over websockets.

    ``await c.call(op, **fields)`` returns the whole reply map;
    ``await c.ok(op, ...)`` returns its "ok" map (fails on an error reply);
    ``await c.error(op, ...)`` returns its "error" map (fails on ok).
    Pushes are queued: ``await c.push()``, ``await c.pubs(n)``.
    Replies without an id (unreadable commands): ``await c.noid()``.
    """

    def __init__(self, server, ws, enc):
        self.server = server
        self.ws = ws
        self.enc = enc
        self.ids = itertools.count(1)
        self.pending = {}
        self.pushes = asyncio.Queue()
        self.strays = asyncio.Queue()  # replies matching no pending command
        self.bad_frames = []     # frames that did not decode
        self.reply_order = []    # ids of replies in arrival order
        self.frames = 0
        self.frame_sizes = []    # bytes of every received frame
        self.closed = asyncio.Event()
        self.close_code = None
        self.close_reason = None
        self.client_id = None
        self._reader = asyncio.get_running_loop().create_task(self._read())
        OPEN_CLIENTS.append(self)

    @classmethod
    async def open(cls, server, enc="json", subprotocols="default", path="/ws",
                   timeout=None, url=None):
        if subprotocols == "default":
            subprotocols = [MSGPACK_SUB] if enc == "msgpack" else None
        ws = await websockets.connect(
            url or server.url(path), subprotocols=subprotocols,
            ping_interval=None, max_size=None, max_queue=None,
            open_timeout=timeout or t(5), close_timeout=t(2), compression=None)
        return cls(server, ws, enc)

    async def _read(self):
        try:
            async for frame in self.ws:
                self.frames += 1
                self.frame_sizes.append(len(frame.encode()) if isinstance(frame, str) else len(frame))
                try:
                    msgs = decode_frame(frame, self.enc)
                except Exception as e:  # noqa: BLE001
                    self.bad_frames.append(repr(e))
                    await self.pushes.put({"push": "_bad_frame", "error": repr(e)})
                    continue
                for m in msgs:
                    self._dispatch(m)
        except websockets.ConnectionClosed:
            pass
        except Exception as e:  # noqa: BLE001
            self.bad_frames.append(repr(e))
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            self.closed.set()
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(CommandError(
                        "connection closed (code %s, reason %r) before the reply"
                        % (self.close_code, self.close_reason)))
            self.pending.clear()

    def _dispatch(self, m):
        if "push" in m:
            self.pushes.put_nowait(m)
        elif "id" in m:
            self.reply_order.append(m["id"])
            fut = self.pending.pop(m["id"], None) if _hashable(m["id"]) else None
            if fut is not None and not fut.done():
                fut.set_result(m)
            else:
                self.strays.put_nowait(m)
        else:
            self.strays.put_nowait(m)

    # -- sending -------------------------------------------------------------
    async def send(self, obj):
        await self.ws.send(encode(obj, self.enc))

    async def send_raw(self, data):
        """Sends one frame as is: str = text frame, bytes = binary frame."""
        await self.ws.send(data)

    def next_id(self):
        return next(self.ids)

    def start(self, op, **fields):
        """Sends a command; returns (id, future of its reply)."""
        cid = fields.pop("id", None) or self.next_id()
        cmd = {"id": cid, "op": op}
        cmd.update(fields)
        fut = asyncio.get_running_loop().create_future()
        self.pending[cid] = fut
        return cid, cmd, fut

    async def call(self, op, timeout=None, **fields):
        cid, cmd, fut = self.start(op, **fields)
        await self.send(cmd)
        try:
            return await asyncio.wait_for(fut, timeout or t(5))
        except asyncio.TimeoutError:
            self.pending.pop(cid, None)
            raise CommandError("no reply to %r within %.1fs (closed=%s code=%s)" % (
                cmd, timeout or t(5), self.closed.is_set(), self.close_code)) from None

    async def ok(self, op, **fields):
        r = await self.call(op, **fields)
        if "ok" not in r:
            raise CommandError("expected ok for %s %r, got %r" % (op, fields, r))
        if op == "connect":
            self.client_id = r["ok"].get("client")
        return r["ok"]

    async def error(self, op, **fields):
        r = await self.call(op, **fields)
        if "error" not in r:
            raise CommandError("expected an error for %s %r, got %r" % (op, fields, r))
        return r["error"]

    async def batch(self, cmds, one_frame=False):
        """Sends several commands [(op, fields)] without waiting; returns
        their replies in order. one_frame: batch them into a single frame."""
        started = [self.start(op, **f) for op, f in cmds]
        if one_frame:
            if self.enc == "msgpack":
                await self.send_raw(b"".join(mp_pack(c) for _, c, _ in started))
            else:
                await self.send_raw("\n".join(encode(c, "json") for _, c, _ in started))
        else:
            for _, c, _ in started:
                await self.send(c)
        return await asyncio.wait_for(asyncio.gather(*[f for _, _, f in started]),
                                      t(10))

    # -- receiving -----------------------------------------------------------
    async def push(self, kind=None, timeout=None):
        try:
            p = await asyncio.wait_for(self.pushes.get(), timeout or t(5))
        except asyncio.TimeoutError:
            raise AssertionError("no push%s within %.1fs (closed=%s code=%s)" % (
                " of kind %r" % kind if kind else "", timeout or t(5),
                self.closed.is_set(), self.close_code)) from None
        if kind is not None and p.get("push") != kind:
            raise AssertionError("expected a %r push, got %r" % (kind, p))
        return p

    async def pubs(self, n, timeout=None):
        """The next n pushes, all of which must be pubs."""
        out = []
        deadline = time.monotonic() + (timeout or t(10))
        for _ in range(n):
            remaining = max(0.01, deadline - time.monotonic())
            try:
                out.append(await self.push("pub", timeout=remaining))
            except AssertionError as e:
                raise AssertionError("got %d of %d pubs: %s" % (len(out), n, e)) from None
        return out

    def pending_pushes(self):
        """Pushes already received and not consumed (no waiting)."""
        out = []
        while not self.pushes.empty():
            out.append(self.pushes.get_nowait())
        return out

    async def stray(self, timeout=None):
        """The next reply that matched no command sent with call()/ok()..."""
        try:
            return await asyncio.wait_for(self.strays.get(), timeout or t(5))
        except asyncio.TimeoutError:
            raise AssertionError("no reply within %.1fs (closed=%s code=%s)" % (
                timeout or t(5), self.closed.is_set(), self.close_code)) from None

    async def noid(self, timeout=None):
        """The next stray reply, which must carry no id."""
        r = await self.stray(timeout)
        assert "id" not in r, "expected a reply without id, got %r" % (r,)
        return r

    def pending_strays(self):
        out = []
        while not self.strays.empty():
            out.append(self.strays.get_nowait())
        return out

    async def call_raw(self, cmd, timeout=None):
        """Sends a hand-made command map and waits for the reply with its id."""
        fut = asyncio.get_running_loop().create_future()
        self.pending[cmd["id"]] = fut
        await self.send(cmd)
        try:
            return await asyncio.wait_for(fut, timeout or t(5))
        except asyncio.TimeoutError:
            self.pending.pop(cmd["id"], None)
            raise CommandError("no reply to %r within %.1fs (closed=%s code=%s)" % (
                cmd, timeout or t(5), self.closed.is_set(), self.close_code)) from None

    async def worker(self, timeout=None):
        """The worker serving this connection (server at log_level debug).
        Sends `connect` first if this client has not (so call it before any
        other command: a connect after one is 107)."""
        if self.client_id is None:
            await self.ok("connect")
        await async_wait_for(lambda: self.server.worker_of(self.client_id) is not None,
                             timeout or t(5), what="the \"connection open\" debug line of %s "
                             "(log_level debug?)" % self.client_id)
        return self.server.worker_of(self.client_id)

    async def wait_closed(self, timeout=None):
        """Waits for the connection to close; returns the close code."""
        try:
            await asyncio.wait_for(self.closed.wait(), timeout or t(5))
        except asyncio.TimeoutError:
            raise AssertionError("connection still open after %.1fs" % (timeout or t(5))) from None
        return self.close_code

    async def is_open_after(self, seconds):
        """True if the connection is still open after `seconds`."""
        try:
            await asyncio.wait_for(self.closed.wait(), seconds)
            return False
        except asyncio.TimeoutError:
            return True

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), t(3))
        except Exception:  # noqa: BLE001
            pass
        try:
            await asyncio.wait_for(self._reader, t(3))
        except Exception:  # noqa: BLE001
            self._reader.cancel()


def _hashable(x):
    try:
        hash(x)
        return True
    except TypeError:
        return False


async def spread_clients(server, n, encs=("json",), workers=2, max_clients=64):
    """At least n connected clients, their encodings taking turns from
    `encs`, with every worker serving at least one client of every
    encoding. The kernel spreads connections over the workers' SO_REUSEPORT
    sockets by a hash, so this opens more than n when needed (each client's
    worker comes from the server's debug log: log_level "debug"). Each
    client gets a `worker` attribute. Returns the list."""
    clients, seen = [], set()
    want = {(e, w) for e in encs for w in range(workers)}
    while len(clients) < n or not want <= seen:
        assert len(clients) < max_clients, \
            "%d clients, still no client on %r" % (len(clients), sorted(want - seen))
        enc = encs[len(clients) % len(encs)]
        c = await server.client(enc=enc)
        c.worker = await c.worker()
        seen.add((enc, c.worker))
        clients.append(c)
    return clients


async def history_from(c, channel, epoch, since, limit):
    """Every publication after `since`, read with `history` pages of
    `limit` (each page's `since` is the last offset of the one before)
    until a page comes back empty."""
    got, pos = [], since
    while True:
        page = await c.ok("history", channel=channel, limit=limit,
                          since={"offset": pos, "epoch": epoch})
        if not page["publications"]:
            return got
        got += page["publications"]
        pos = got[-1]["offset"]


async def close_all_clients():
    clients = list(OPEN_CLIENTS)
    OPEN_CLIENTS.clear()
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


# --------------------------------------------------------------------------
# Raw WebSocket over a blocking socket

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class HandshakeRefused(Exception):
    def __init__(self, status, head):
        super().__init__("handshake refused: HTTP %s\n%s" % (status, head))
        self.status = status
        self.head = head


class RawWS:
    """Minimal blocking WebSocket client for tests that must misbehave.

    rcvbuf: SO_RCVBUF set before connecting (small = the kernel window
    stays small when the test stops reading).
    source: the local address to connect from (per-address limits)."""

    def __init__(self, port, path="/ws", subprotocol=None, rcvbuf=None,
                 host="127.0.0.1", timeout=None, extra_headers=(), source=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:   # another loopback address, e.g. "127.0.0.2"
            self.sock.bind((source, 0))
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout or t(5))
        self.sock.connect((host, port))
        self.buf = b""
        self.subprotocol = None
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (host, port),
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
        if subprotocol:
            lines.append("Sec-WebSocket-Protocol: " + subprotocol)
        lines += list(extra_headers)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise HandshakeRefused(None, self.buf.decode("latin-1"))
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        head = head.decode("latin-1")
        status_line = head.split("\r\n", 1)[0]
        status = int(status_line.split()[1]) if len(status_line.split()) > 1 else None
        if status != 101:
            self.sock.close()
            raise HandshakeRefused(status, head)
        headers = {}
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        expect = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != expect:
            raise AssertionError("bad Sec-WebSocket-Accept in\n" + head)
        self.subprotocol = headers.get("sec-websocket-protocol")
        self.headers = headers

    # -- sending -------------------------------------------------------------
    def send_frame(self, opcode, payload=b"", fin=True, mask=True):
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload)
        b0 = (0x80 if fin else 0) | opcode
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 \
                else _mask_fast(payload, key)
            hdr += key
        self.sock.sendall(hdr + payload)

    def send_text(self, s):
        self.send_frame(OP_TEXT, s.encode() if isinstance(s, str) else s)

    def send_binary(self, b):
        self.send_frame(OP_BIN, b)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def send_close(self, code=1000):
        self.send_frame(OP_CLOSE, struct.pack("!H", code))

    # -- receiving -----------------------------------------------------------
    def _need(self, n, deadline):
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed by peer (no close frame)")
            self.buf += chunk

    def recv_frame(self, timeout=None):
        """Returns (fin, opcode, payload). Raises EOFError, ConnectionError
        or socket.timeout."""
        deadline = time.monotonic() + (timeout or t(5))
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        if b1 & 0x80:
            raise AssertionError("server sent a masked frame")
        self._need(pos + n, deadline)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_event(self, timeout=None, auto_pong=False):
        """Next whole message or control frame as a tuple:
        ("text", str) / ("binary", bytes) / ("ping", bytes) / ("pong", bytes)
        / ("close", code, reason) / ("eof",)."""
        deadline = time.monotonic() + (timeout or t(5))
        parts, first_op = [], None
        while True:
            try:
                fin, op, payload = self.recv_frame(max(0.001, deadline - time.monotonic()))
            except (EOFError, ConnectionResetError):
                return ("eof",)
            if op == OP_PING:
                if auto_pong:
                    self.send_frame(OP_PONG, payload)
                    continue
                return ("ping", payload)
            if op == OP_PONG:
                return ("pong", payload)
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return ("close", code, payload[2:].decode("utf-8", "replace"))
            if op in (OP_TEXT, OP_BIN):
                first_op = op
                parts = [payload]
            elif op == OP_CONT:
                parts.append(payload)
            if fin:
                data = b"".join(parts)
                if first_op == OP_TEXT:
                    return ("text", data.decode("utf-8"))
                return ("binary", data)

    def recv_msgs(self, timeout=None, enc="json"):
        """Next data message, split into protocol messages (pings answered)."""
        ev = self.recv_event(timeout, auto_pong=True)
        if ev[0] not in ("text", "binary"):
            raise AssertionError("expected a data frame, got %r" % (ev,))
        return decode_frame(ev[1], enc)

    def call(self, cmd, timeout=None, enc="json"):
        """Sends one command and returns its reply (pushes before it are
        returned too: (reply, [pushes]))."""
        if enc == "json":
            self.send_text(json.dumps(cmd))
        else:
            self.send_binary(mp_pack(cmd))
        pushes = []
        deadline = time.monotonic() + (timeout or t(5))
        while True:
            for m in self.recv_msgs(max(0.001, deadline - time.monotonic()), enc):
                if m.get("id") == cmd.get("id"):
                    return m, pushes
                pushes.append(m)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# Under AddressSanitizer freed memory waits in a quarantine (256 MiB by
# default) before it is reused, which a test of a memory bound would
# measure: a small one keeps the bound meaningful there too.
ASAN_SMALL_QUARANTINE = ("abort_on_error=0:detect_leaks=1:quarantine_size_mb=4:"
                         "thread_local_quarantine_size_kb=64")


class Ponger:
    """Reads a RawWS in a thread of its own, answering pings as they come
    (as a browser does, whatever the test's main thread is waiting for)
    and keeping what arrives: .msgs (decoded data messages), .pings
    (monotonic times of the pings received), .closed (the close or eof
    event, with its time). hold() keeps the pongs back until release().
    stop() ends the thread, leaving the socket to the caller."""

    def __init__(self, ws, enc="json"):
        self.ws, self.enc = ws, enc
        self.msgs, self.pings, self.closed = [], [], None
        self.held = []            # payloads of pings not answered yet
        self._holding = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def hold(self):
        with self._lock:
            self._holding = True

    def release(self):
        """Answers the held pings (from this thread: the reader waits)."""
        with self._lock:
            self._holding = False
            held, self.held = self.held, []
            for payload in held:
                self.ws.send_frame(OP_PONG, payload)

    def _run(self):
        while not self._stop.is_set() and self.closed is None:
            try:
                ev = self.ws.recv_event(timeout=0.05)
                if ev[0] == "ping":
                    with self._lock:
                        self.pings.append(time.monotonic())
                        if self._holding:
                            self.held.append(ev[1])
                        else:
                            self.ws.send_frame(OP_PONG, ev[1])
                elif ev[0] in ("text", "binary"):
                    self.msgs.extend(decode_frame(ev[1], self.enc))
                elif ev[0] in ("close", "eof"):
                    self.closed = ev + (time.monotonic(),)
            except (TimeoutError, socket.timeout):
                continue
            except OSError as e:
                self.closed = ("error", repr(e), time.monotonic())

    def stop(self):
        self._stop.set()
        self._thread.join()


def _mask_fast(payload, key):
    k = (key * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(len(payload), "big")


# --------------------------------------------------------------------------
# pytest fixtures

def server_fixture(config=None, scope="module", **kw):
    """A pytest fixture starting one server with `config` for the scope:

        server = server_fixture({"history_max_limit": 50})
    """
    import pytest

    @pytest.fixture(scope=scope)
    def _fixture(tmp_path_factory):
        s = HeraldServer(config, tmpdir=str(tmp_path_factory.mktemp("herald")), **kw)
        s.shared = True
        s.start()
        yield s
        s.stop()
        report = s.sanitizer_report()
        if report:
            pytest.fail("sanitizer report in herald stderr:\n" + report, pytrace=False)
        if s.died is not None:
            pytest.fail("herald died with status %s before the end of the module:\n%s"
                        % (s.died, s.stderr_tail(40)), pytrace=False)
    return _fixture
