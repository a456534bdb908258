"""The C client library through herald-cli, against the real server, in both
encodings: pub/sub, history, presence, errors and exit codes, and reconnects
with recovery: a server restart (new epoch: recovered=false is reported), a
dropped connection (recovered: every publication exactly once, in order)
and a slow-consumer close 4001 (the same)."""

import os
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

import herald_harness as hh
from herald_harness import chan, t, wait_for

CLI = os.path.join(os.path.dirname(os.path.abspath(hh.HERALD_BIN)), "herald-cli")

CONFIG = {
    "namespace_defaults": {"history_size": 1000, "presence": True},
    "namespaces": [{"name": "nohist", "history_size": 0, "presence": False}],
}

server = hh.server_fixture(CONFIG)

ENCODINGS = ["json", "msgpack"]


def cli_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    if hh.SANITIZE:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    return env


def run_cli(url, enc, *args, timeout=None):
    """Runs one herald-cli command; returns CompletedProcess (text)."""
    p = subprocess.run([CLI, "--url", url, "--encoding", enc] + list(args),
                       capture_output=True, text=True, env=cli_env(),
                       timeout=timeout or t(15))
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    return p


def pub(url, enc, ch, data):
    p = run_cli(url, enc, "pub", ch, data)
    assert p.returncode == 0, p.stderr
    fields = dict(kv.split("=", 1) for kv in p.stdout.split())
    return int(fields["offset"]), fields["epoch"]


class Sub:
    """A running `herald-cli sub`, its stdout and stderr lines collected."""

    def __init__(self, url, enc, *channels, extra=()):
        self.proc = subprocess.Popen(
            [CLI, "--url", url, "--encoding", enc] + list(extra) + ["sub"] + list(channels),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
        self.out, self.err = [], []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True)]
        for th in self.threads:
            th.start()

    def _read(self, f, into):
        for line in f:
            with self.lock:
                into.append(line.rstrip("\n"))

    def lines(self):
        with self.lock:
            return list(self.out)

    def errs(self):
        with self.lock:
            return list(self.err)

    def pubs(self, ch):
        """(offset, data text) of the publication lines of ch."""
        out = []
        for line in self.lines():
            if line.startswith(ch + " "):
                _, off, data = line.split(" ", 2)
                out.append((int(off), data))
        return out

    def wait_err(self, text, count=1, timeout=10):
        return wait_for(lambda: sum(text in e for e in self.errs()) >= count, t(timeout),
                        what=lambda: "%r x%d on herald-cli stderr (have %r)" % (
                            text, count, self.errs()))

    def wait_out(self, prefix, timeout=10):
        """Waits for a stdout line starting with prefix (stdout and stderr
        are read by separate threads, so a stderr line seen first says
        nothing about stdout yet)."""
        return wait_for(lambda: [l for l in self.lines() if l.startswith(prefix)], t(timeout),
                        what=lambda: "a stdout line %r (have %r)" % (prefix, self.lines()))

    def wait_pubs(self, ch, n, timeout=10):
        return wait_for(lambda: len(self.pubs(ch)) >= n and self.pubs(ch), t(timeout),
                        what=lambda: "%d publications of %s (have %r)" % (n, ch, self.lines()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout=t(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        for th in self.threads:
            th.join(timeout=5)
        errs = "\n".join(self.errs())
        assert "Sanitizer" not in errs and "runtime error" not in errs, errs
        return rc


@pytest.fixture
def subs():
    started = []
    yield started
    for s in started:
        s.stop()


def start_sub(subs, *a, **kw):
    s = Sub(*a, **kw)
    subs.append(s)
    return s


# ---------------------------------------------------------------------------

@pytest.mark.parametrize("enc", ENCODINGS)
def test_pub_sub_history_presence(server, subs, enc):
    url = server.url()
    ch = chan()
    s = start_sub(subs, url, enc, ch)
    s.wait_err(ch + " subscribed")
    assert pub(url, enc, ch, '{"hi":1}')[0] == 1
    off, epoch = pub(url, enc, ch, '[1,"two",{"x":null}]')
    assert off == 2 and epoch
    assert pub(url, enc, ch, '"text with spaces"')[0] == 3
    got = s.wait_pubs(ch, 3)
    assert got == [(1, '{"hi":1}'), (2, '[1,"two",{"x":null}]'), (3, '"text with spaces"')]

    h = run_cli(url, enc, "history", ch)
    assert h.returncode == 0, h.stderr
    assert h.stdout.splitlines() == [ch + ' 1 {"hi":1}', ch + ' 2 [1,"two",{"x":null}]',
                                     ch + ' 3 "text with spaces"',
                                     "# epoch=%s offset=3" % epoch]
    h = run_cli(url, enc, "history", ch, "--limit", "2", "--reverse")
    assert h.returncode == 0, h.stderr
    assert [l.split(" ")[1] for l in h.stdout.splitlines()[:-1]] == ["3", "2"]

    p = run_cli(url, enc, "presence", ch)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 1      # the running subscriber
    assert s.stop() == 0


async def test_msgpack_publisher_json_subscriber(server, subs):
    url = server.url()
    ch = chan()
    sj = start_sub(subs, url, "json", ch)
    sm = start_sub(subs, url, "msgpack", ch)
    sj.wait_err(ch + " subscribed")
    sm.wait_err(ch + " subscribed")
    # uint64 above 2^63 (which jansson cannot hold) reaches the JSON client.
    c = await server.client("msgpack")
    await c.ok("publish", channel=ch, data={"n": 18446744073709551615, "f": 1.5, "s": "\u00e9"})
    pub(url, "json", ch, '{"a" : [true, false]}')
    assert [d for _, d in sj.wait_pubs(ch, 2)] == \
        ['{"n":18446744073709551615,"f":1.5,"s":"\u00e9"}', '{"a" : [true, false]}']
    assert [d for _, d in sm.wait_pubs(ch, 2)] == \
        ['{"n":18446744073709551615,"f":1.5,"s":"\u00e9"}', '{"a":[true,false]}']


@pytest.mark.parametrize("enc", ENCODINGS)
def test_errors_and_exit_codes(server, enc):
    url = server.url()
    p = run_cli(url, enc, "history", "nohist:x")
    assert p.returncode == 1 and "error 108" in p.stderr
    p = run_cli(url, enc, "presence", "nohist:x")
    assert p.returncode == 1 and "error 108" in p.stderr
    p = run_cli(url, enc, "pub", "unknown:ns", "1")
    assert p.returncode == 1 and "error 102" in p.stderr, p.stderr
    for args in (["pub", "bad channel", "1"], ["pub", "a", "{bad"], ["pub", "a"],
                 ["frobnicate"], ["history"], ["history", "a", "--limit", "x"],
                 ["--bogus", "sub", "a"]):
        p = run_cli(url, enc, *args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
    p = run_cli(url, enc, "--help")
    assert p.returncode == 0 and "Usage: herald-cli" in p.stdout
    # No server: one-shot commands give up after --timeout with status 1.
    p = run_cli("ws://127.0.0.1:%d/ws" % hh.free_port(), enc, "--timeout", "1", "pub", "a", "1")
    assert p.returncode == 1 and "timed out" in p.stderr


@pytest.mark.parametrize("enc", ENCODINGS)
def test_restart_reports_recovered_false(server_factory, subs, enc):
    srv = server_factory(CONFIG)
    url, port = srv.url(), srv.port
    ch = chan()
    s = start_sub(subs, url, enc, ch)
    s.wait_err(ch + " subscribed")
    pub(url, enc, ch, '{"n":1}')
    pub(url, enc, ch, '{"n":2}')
    s.wait_pubs(ch, 2)
    srv.stop()                                   # disconnect 4000, reconnect true
    s.wait_err("code 4000")
    srv.start(port=port)                         # new process: history and epoch are gone
    s.wait_err(ch + " resubscribed, NOT recovered")
    s.wait_out("# %s recovered=false" % ch)
    marks = [l for l in s.lines() if l.startswith("# ")]
    assert len(marks) == 1 and marks[0].startswith("# %s recovered=false" % ch), s.lines()
    pub(url, enc, ch, '{"n":"new"}')
    got = s.wait_pubs(ch, 3)
    assert got == [(1, '{"n":1}'), (2, '{"n":2}'), (1, '{"n":"new"}')]
    # The missed-data line comes before the new stream's first publication.
    lines = s.lines()
    assert lines.index(marks[0]) < lines.index(ch + ' 1 {"n":"new"}')


class Proxy:
    """A TCP forwarder whose connections can be cut, and which can refuse
    new ones for a while, to drop a client without restarting the server."""

    def __init__(self, port):
        self.target = port
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        self.refusing = False
        self.accepted = 0
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            if self.refusing:
                c.close()
                continue
            u = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns.append((c, u))
                self.accepted += 1
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                r, _, _ = select.select([a, b], [], [], 0.5)
                for s in r:
                    d = s.recv(65536)
                    if not d:
                        raise OSError
                    (b if s is a else a).sendall(d)
        except OSError:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        with self.lock:
            for a, b in self.conns:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self.conns = []

    def close(self):
        self.running = False
        self.cut()
        self.ls.close()


@pytest.mark.parametrize("enc", ENCODINGS)
def test_dropped_connection_recovers(server, subs, enc):
    url = server.url()
    proxy = Proxy(server.port)
    try:
        ch = chan()
        s = start_sub(subs, "ws://127.0.0.1:%d/ws" % proxy.port, enc, ch,
                      extra=["--timeout", "5"])
        s.wait_err(ch + " subscribed")
        for i in range(1, 4):
            pub(url, enc, ch, '{"n":%d}' % i)
        s.wait_pubs(ch, 3)
        proxy.refusing = True
        proxy.cut()                              # no close frame: 1006
        s.wait_err("disconnected (code 1006")
        for i in range(4, 7):                    # published while it is away
            pub(url, enc, ch, '{"n":%d}' % i)
        proxy.refusing = False
        s.wait_err(ch + " resubscribed, recovered")
        pub(url, enc, ch, '{"n":7}')
        got = s.wait_pubs(ch, 7)
        assert got == [(i, '{"n":%d}' % i) for i in range(1, 8)], s.lines()
        assert not [l for l in s.lines() if l.startswith("#")]
        assert proxy.accepted >= 2
    finally:
        proxy.close()


@pytest.mark.parametrize("resume", ["at_once", "after_drop"])
@pytest.mark.parametrize("enc", ENCODINGS)
async def test_slow_consumer_close_recovers(server_factory, subs, enc, resume):
    """A paused subscriber is closed with 4001 by a small send queue; when it
    resumes it reconnects with since and gets every publication exactly
    once, in order, with no missed-data line. at_once: it resumes as soon as
    the server has decided (its log line), within the server's close grace
    (CONN_CLOSE_GRACE_S, 3 s), so it reads the disconnect push and the close
    frame 4001; after_drop: it resumes only after the grace ran out and the
    socket was dropped, so it sees the close frame 4001 if that still fitted
    into the socket buffers before the drop (a burst can take the send queue
    over the limit while the kernel still has room), else the end of the
    stream without one (1006). The client must reconnect and recover in
    both cases."""
    # History far above what is published here: the test is about the
    # client, not about a history too short to recover from.
    srv = server_factory(dict(CONFIG, send_queue_max=65536,
                              namespace_defaults={"history_size": 10000, "presence": True}))
    ch = chan()
    s = start_sub(subs, srv.url(), enc, ch)
    s.wait_err(ch + " subscribed")
    c = await srv.client(enc)
    # Both connections counted: the publisher's handshake can complete on
    # the client before its worker counts it (and /healthz may be answered
    # by the other worker meanwhile), so the count is waited for, not read.
    before = {"connections": 2}
    await hh.async_wait_for(lambda: srv.healthz()[1]["connections"] == 2, t(10),
                            what="the subscriber and the publisher counted")
    s.proc.send_signal(signal.SIGSTOP)
    n = 0
    try:
        payload = "x" * 8000

        # Publish until the server has decided to close the paused
        # subscriber (its socket buffers full, then its send queue over
        # 64 KiB), and not beyond: whatever is published while it waits
        # for the close grace only adds to what has to be recovered.
        async def closed_slow():
            nonlocal n
            await c.batch([("publish", {"channel": ch, "data": payload})] * 25)
            n += 25
            return any(l.get("msg") == "slow consumer closed" for l in srv.log_lines())
        await hh.async_wait_for(closed_slow, t(30), interval=0.01,
                                what="the paused subscriber closed 4001")
        if resume == "after_drop":
            # awaited, not a blocking wait: the publisher's own connection
            # must go on answering the server's pings meanwhile
            await hh.async_wait_for(
                lambda: srv.healthz()[1]["connections"] < before["connections"], t(15),
                what="the server to drop the paused subscriber")
    finally:
        s.proc.send_signal(signal.SIGCONT)
    # published while it takes the close and reconnects: recovered or live
    await c.batch([("publish", {"channel": ch, "data": payload})] * 10)
    n += 10

    def wait_err(text, timeout):
        # wait_for's message shows stderr as it was when the wait began.
        try:
            s.wait_err(text, timeout=timeout)
        except AssertionError as e:
            raise AssertionError("%s; stderr now %r" % (e, s.errs())) from None

    # Large timeouts: the backlog and the recovery reply (n * 8 kB) are
    # slow to arrive when the host's TCP memory is under pressure (the
    # kernel then drops most segments and the sender waits for its
    # retransmission timer, ~200 ms, before each retry).
    wait_err("disconnected (code ", 30)
    disc = [e for e in s.errs() if "disconnected (code " in e]
    assert len(disc) == 1, s.errs()
    if resume == "at_once":
        assert "(code 4001)" in disc[0], disc
    else:
        # the close frame, or only the disconnect push before the drop
        # ("code 4001: connection closed"), or neither (1006)
        assert "(code 4001" in disc[0] or "(code 1006" in disc[0], disc
    wait_err(ch + " resubscribed, recovered", 30)
    got = s.wait_pubs(ch, n, timeout=30)
    assert [o for o, _ in got] == list(range(1, n + 1))
    assert not [l for l in s.lines() if l.startswith("#")], "recovery failed"
    assert s.stop() == 0
