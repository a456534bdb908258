"""Heartbeat (server pings, 4002 on silence) and graceful shutdown
(SIGTERM/SIGINT: disconnect push 4000, close 4000, exit 0)."""

import asyncio
import http.client
import json
import signal
import socket
import time

import pytest

import herald_harness as hh
from herald_harness import chan, t, wait_for
from stopped_thread import StoppedThread, worker_tids

HB = {"ping_interval": 1, "pong_timeout": 1}


# -- heartbeat ---------------------------------------------------------------------

async def test_connect_reports_ping_interval(server_factory):
    s = server_factory(HB)
    c = await s.client()
    assert (await c.ok("connect"))["ping"] == 1


@pytest.mark.timeout(30)
async def test_client_answering_pings_stays_connected(server_factory):
    s = server_factory(HB)
    c = await s.client()            # websockets answers pings automatically
    m = await s.client(enc="msgpack")
    ch = chan()
    await c.ok("subscribe", channel=ch)
    await m.ok("subscribe", channel=ch)
    assert await c.is_open_after(4.5), "closed with %s" % c.close_code
    assert not m.closed.is_set(), "msgpack client closed with %s" % m.close_code
    await c.ok("publish", channel=ch, data="alive")
    assert (await m.push("pub"))["data"] == "alive"


def test_server_sends_ping_frames(server_factory):
    s = server_factory(HB)
    raw = s.raw()
    try:
        deadline = time.monotonic() + t(3)
        while True:
            ev = raw.recv_event(timeout=max(0.01, deadline - time.monotonic()))
            assert ev[0] != "eof", "closed before any ping"
            if ev[0] == "ping":
                raw.send_frame(hh.OP_PONG, ev[1])
                break
    finally:
        raw.close()


def test_pings_follow_ping_interval_not_pong_timeout(server_factory):
    """A client that answers every ping is pinged every ping_interval
    seconds, not every pong_timeout (the liveness check in between must not
    trigger a ping of its own)."""
    s = server_factory({"ping_interval": 3, "pong_timeout": 1})
    raw = s.raw()
    try:
        times = []
        # First ping within ~4 s of connecting, then one every ~3 s.
        deadline = time.monotonic() + 4 + 3 * 3 + t(10)
        while len(times) < 4:
            ev = raw.recv_event(timeout=max(0.01, deadline - time.monotonic()))
            assert ev[0] not in ("eof", "close"), "closed: %r" % (ev,)
            if ev[0] == "ping":
                times.append(time.monotonic())
                raw.send_frame(hh.OP_PONG, ev[1])
        # Three intervals: each is at least 2 s (3 s, less the one-second
        # granularity of the server's clock), so together at least 6 s less
        # how late this client read the first ping; pinging every
        # pong_timeout would take about 3 s. Only a lower bound: a loaded
        # machine makes pings later, never earlier.
        span = times[-1] - times[0]
        assert span >= 4.5, "4 pings in %.1fs: %r" % (span, [b - a for a, b in zip(times, times[1:])])
    finally:
        raw.close()


def test_silent_client_is_closed_4002(server_factory):
    s = server_factory(HB)
    raw = s.raw()
    # ping_interval + pong_timeout + clock granularity is 3 s: the wait
    # allows for a loaded machine
    deadline = time.monotonic() + t(10)
    events = []
    try:
        while True:
            ev = raw.recv_event(timeout=max(0.01, deadline - time.monotonic()))  # no pongs
            events.append(ev)
            if ev[0] in ("close", "eof"):
                break
    finally:
        raw.close()
    assert events[-1][0] == "close", events
    assert events[-1][1] == 4002, events
    texts = [json.loads(e[1]) for e in events if e[0] == "text"]
    assert texts and texts[-1].get("push") == "disconnect", events
    assert texts[-1]["code"] == 4002 and texts[-1]["reconnect"] is True, texts[-1]
    assert any(e[0] == "ping" for e in events), events


# -- shutdown ------------------------------------------------------------------------

async def _shutdown(s, sig):
    ch = chan()
    # JSON and msgpack clients on both workers
    clients = await hh.spread_clients(s, 12, encs=("json", "json", "msgpack"))
    for c in clients:
        await c.ok("subscribe", channel=ch)
    s.send_signal(sig)
    for c in clients:
        p = await c.push("disconnect", timeout=t(5))
        assert p["code"] == 4000 and p["reconnect"] is True, p
        assert isinstance(p.get("reason"), str)
        assert await c.wait_closed(t(5)) == 4000
    # every client took its close: the server exits then, long before its
    # shutdown_timeout (60 s)
    rc = await asyncio.get_running_loop().run_in_executor(None, s.wait_exit, t(10))
    assert rc == 0, "exit status %r after %s; stderr:\n%s" % (rc, sig, s.stderr_tail())


async def test_sigterm_disconnects_clients_and_exits_0(server_factory):
    await _shutdown(server_factory({"shutdown_timeout": 60, "log_level": "debug"}), signal.SIGTERM)


async def test_sigint_disconnects_clients_and_exits_0(server_factory):
    await _shutdown(server_factory({"shutdown_timeout": 60, "log_level": "debug"}), signal.SIGINT)


def test_sigterm_idle_server_exits_0_quickly(server_factory):
    """Without connections nothing waits for shutdown_timeout (60 s here)."""
    s = server_factory({"shutdown_timeout": 60})
    s.send_signal(signal.SIGTERM)
    assert s.wait_exit(t(10)) == 0, s.stderr_tail()


def test_sigterm_with_unresponsive_client_exits_0_within_timeout(server_factory):
    """A client that never reads cannot hold the shutdown beyond
    shutdown_timeout."""
    s = server_factory({"shutdown_timeout": 2})
    raw = s.raw(rcvbuf=4096)
    try:
        reply, _ = raw.call({"id": 1, "op": "subscribe", "channel": "stuck"})
        assert "ok" in reply, reply
        # from now on the client reads nothing and never answers the close
        s.send_signal(signal.SIGTERM)
        rc = s.wait_exit(t(2 + 4))
        assert rc == 0, "exit status %r; stderr:\n%s" % (rc, s.stderr_tail())
    finally:
        raw.close()


def test_draining_server_refuses_new_connections_at_once(server_factory):
    """From SIGTERM on, new connections are refused (a load balancer fails
    over at once) while the clients already connected drain."""
    s = server_factory({"shutdown_timeout": 3})
    raw = s.raw(rcvbuf=4096)
    try:
        reply, _ = raw.call({"id": 1, "op": "subscribe", "channel": "stuck"})
        assert "ok" in reply, reply
        # this client never answers the close: the server drains for 3 s
        s.send_signal(signal.SIGTERM)

        def refused():
            try:
                socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
                return False
            except ConnectionRefusedError:
                return True

        wait_for(refused, t(2), what="connections refused while draining")
        assert s.alive(), "exited before the drain deadline"
        assert s.wait_exit(t(3 + 4)) == 0, s.stderr_tail()
    finally:
        raw.close()


def test_stale_client_leave_reaches_other_subscribers(server_factory):
    """A client closed by the server (4002) leaves its channels: the other
    subscribers get its leave push and presence drops it."""
    s = server_factory(dict(HB, namespaces=[{"name": "room", "presence": True,
                                             "join_leave": True}]))
    ch = chan("room:")
    watcher = s.raw()
    reply, _ = watcher.call({"id": 1, "op": "subscribe", "channel": ch})
    assert "ok" in reply
    # The watcher answers pings from its own thread while this one waits
    # for the other client's replies (with pong_timeout = 1 s, a watcher
    # answering only inside its own calls was closed 4002 on a slow run).
    ponger = hh.Ponger(watcher)
    try:
        stale = s.raw()
        reply, _ = stale.call({"id": 1, "op": "connect"})
        stale_id = reply["ok"]["client"]
        reply, _ = stale.call({"id": 2, "op": "subscribe", "channel": ch})
        assert "ok" in reply
        # the stale one never reads again
        wait_for(lambda: ponger.closed or any(p.get("push") == "leave" for p in ponger.msgs),
                 t(8), what=lambda: "a leave push; got %r" % ponger.msgs)
    finally:
        ponger.stop()
    assert ponger.closed is None, "the watcher was closed: %r" % (ponger.closed,)
    join = [p for p in ponger.msgs if p.get("push") == "join"]
    leave = [p for p in ponger.msgs if p.get("push") == "leave"]
    assert join and join[0]["info"]["client"] == stale_id
    assert leave[0]["info"]["client"] == stale_id and leave[0]["channel"] == ch
    reply, _ = watcher.call({"id": 2, "op": "presence", "channel": ch})
    assert stale_id not in reply["ok"]["clients"]
    watcher.close()
    stale.close()


def test_a_stalled_loop_does_not_close_clients_that_answer(server_factory):
    """A worker's loop that stalls past pong_timeout closes none of its
    clients that answered its pings: each client holds its pong until the
    worker thread is stopped (ptrace, in epoll_wait), then sends it, so the
    pongs wait unread in the sockets for the 2.5 s stall. When the loop runs
    again libuv fires the overdue tick before it reads the sockets; the
    stale verdict must wait for that read. Three stalls; a client that does
    not answer at all is still closed 4002."""
    s = server_factory({"ping_interval": 1, "pong_timeout": 2}, workers=1)
    alive = [s.raw() for _ in range(4)]
    for r in alive:
        reply, _ = r.call({"id": 1, "op": "connect"})
        assert "ok" in reply, reply
    pongers = [hh.Ponger(r) for r in alive]
    tid = worker_tids(s)[0]
    silent = None
    try:
        for round_ in range(3):
            if round_ == 2:
                silent = s.raw()
                reply, _ = silent.call({"id": 1, "op": "connect"})
                assert "ok" in reply, reply
            for p in pongers:
                p.hold()
            since = time.monotonic()
            wait_for(lambda: all(p.closed or any(x > since for x in p.pings) for p in pongers),
                     t(5), what="a ping to every client (its pong held)")
            stopped = StoppedThread(s.proc.pid, tid).stop()
            try:
                for p in pongers:
                    p.release()   # into the sockets of the stopped worker
                time.sleep(2.5)   # the stall itself, not a wait for an outcome
            finally:
                stopped.resume()
            resumed = time.monotonic()
        # two pings after the last stall: the verdicts on the pings sent
        # before it have been made
        wait_for(lambda: all(p.closed or sum(x > resumed for x in p.pings) >= 2
                             for p in pongers),
                 t(6), what="two pings after the last stall")
    finally:
        for p in pongers:
            p.stop()
    closed = [p.closed for p in pongers if p.closed]
    assert not closed, "clients answering pings were closed after a stall: %r" % closed
    for r in alive:
        reply, _ = r.call({"id": 2, "op": "ping"})
        assert reply == {"id": 2, "ok": {}}, reply
        r.close()
    ev = silent.recv_event(timeout=t(5))
    while ev[0] in ("ping", "text"):
        ev = silent.recv_event(timeout=t(5))
    assert ev[:2] == ("close", 4002), ev
    silent.close()


def test_traffic_counts_as_liveness(server_factory):
    """A client that never answers ping frames but keeps sending commands
    is alive (protocol: closed when no pong/traffic arrives)."""
    s = server_factory(HB)
    raw = s.raw()
    try:
        end = time.monotonic() + 4
        n = 0
        while time.monotonic() < end:
            n += 1
            raw.send_json({"id": n, "op": "ping"})
            deadline = time.monotonic() + t(2)
            got = False
            while not got:
                ev = raw.recv_event(timeout=max(0.01, deadline - time.monotonic()))
                assert ev[0] in ("text", "ping"), "closed while sending commands: %r" % (ev,)
                if ev[0] == "text":
                    got = any(m.get("id") == n for m in hh.decode_frame(ev[1], "json"))
            time.sleep(0.3)
    finally:
        raw.close()


# -- SIGHUP --------------------------------------------------------------------------

def hup_lines(s, msg):
    return [l for l in s.log_lines() if l.get("msg", "").startswith(msg)]


async def test_sighup_reloads_log_level_and_keeps_serving(server_factory):
    """SIGHUP reads the configuration again: log_level takes effect, other
    changes are reported as needing a restart and not applied, a broken
    file is reported and the running configuration stays; connections are
    untouched throughout."""
    s = server_factory({"log_level": "info", "ping_interval": 25})
    c = await s.client()
    await c.ok("connect")
    ch = chan()
    await c.ok("subscribe", channel=ch)
    with open(s.config_path, "w") as f:
        f.write(hh.render_config({"log_level": "debug", "ping_interval": 30}))
    s.proc.send_signal(signal.SIGHUP)
    await hh.async_wait_for(lambda: hup_lines(s, "SIGHUP: configuration reloaded"), t(5),
                            what="the reload logged")
    (line,) = hup_lines(s, "SIGHUP: configuration reloaded")
    assert line["log_level"] == "debug" and line["restart_needed"] == 1, line
    assert hup_lines(s, "SIGHUP: configuration changes other than log_level"), s.log_lines()
    assert s.alive()
    # debug lines now appear; ping_interval is still the running one
    d = await s.client()
    assert (await d.ok("connect"))["ping"] == 25
    assert await d.worker() in (0, 1)          # its "connection open" debug line
    await c.ok("publish", channel=ch, data="after the reload")
    assert (await c.push("pub"))["data"] == "after the reload"

    with open(s.config_path, "w") as f:
        f.write("log_level = ;\n")
    s.proc.send_signal(signal.SIGHUP)
    await hh.async_wait_for(lambda: hup_lines(s, "SIGHUP: configuration not reloaded"), t(5),
                            what="the failed reload logged")
    (bad,) = hup_lines(s, "SIGHUP: configuration not reloaded")
    assert bad["level"] == "warn" and "syntax error" in bad["error"], bad
    assert s.alive()
    e = await s.client()
    assert await e.worker() in (0, 1)          # still at debug
    assert not c.closed.is_set() and not d.closed.is_set()
    await c.ok("ping")
    assert s.stop() == 0


def test_sighup_without_changes_changes_nothing(server_factory):
    s = server_factory(None, args=["--log-level", "info"])
    for _ in range(3):
        n = len(hup_lines(s, "SIGHUP: configuration reloaded"))
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(hup_lines(s, "SIGHUP: configuration reloaded")) == n + 1, t(5),
                 what="the reload logged")
    assert all(l["log_level"] == "info" and l["restart_needed"] == 0
               for l in hup_lines(s, "SIGHUP: configuration reloaded"))
    assert s.healthz()[0] == 200
    assert s.stop() == 0


# -- shutdown under load ---------------------------------------------------------------

def read_all(raw, timeout):
    """Everything a raw client is sent until its close frame or the end of
    the stream: (messages, last event)."""
    msgs = []
    deadline = time.monotonic() + timeout
    while True:
        ev = raw.recv_event(timeout=max(0.01, deadline - time.monotonic()), auto_pong=True)
        if ev[0] in ("close", "eof"):
            return msgs, ev
        if ev[0] == "text":
            msgs += hh.decode_frame(ev[1], "json")


@pytest.mark.timeout(90)
async def test_sigterm_with_publications_in_flight_and_full_send_queues(server_factory):
    """SIGTERM while publishes are in flight and subscribers that stopped
    reading hold full send queues: every subscriber gets everything that
    was queued for it, gap-free from offset 1 and including every
    publication acknowledged before the signal, then the disconnect push
    4000 and close 4000; every publish that got a reply got it before the
    publisher's 4000; /healthz answers 503 "draining" on a connection that
    was already open; the process exits 0 once everyone took the close."""
    s = server_factory({"shutdown_timeout": 60, "send_queue_max": 8 << 20,
                        "log_level": "debug"})
    ch = chan()
    payload = "q" * 2000
    # subscribers that stop reading, on both workers
    stuck, workers = [], set()
    while len(stuck) < 4 or workers != {0, 1}:
        assert len(stuck) < 40, "all on worker %r" % workers
        raw = s.raw(rcvbuf=4096)
        reply, _ = raw.call({"id": 1, "op": "connect"})
        cid = reply["ok"]["client"]
        wait_for(lambda: s.worker_of(cid) is not None, t(5), what="its worker logged")
        workers.add(s.worker_of(cid))
        reply, _ = raw.call({"id": 2, "op": "subscribe", "channel": ch})
        assert reply["ok"]["offset"] == 0, reply
        stuck.append(raw)
    readers = await hh.spread_clients(s, 2)
    for c in readers:
        await c.ok("subscribe", channel=ch)
    pub = await s.client()
    health = http.client.HTTPConnection("127.0.0.1", s.port, timeout=t(5))
    health.request("GET", "/healthz")
    r = health.getresponse()
    assert r.status == 200 and json.loads(r.read())["status"] == "ok"

    # 600 kB each for the stuck subscribers: far more than their sockets hold
    replies = await pub.batch([("publish", {"channel": ch, "data": {"i": i, "p": payload}})
                               for i in range(300)])
    acked_before = [x["ok"]["offset"] for x in replies]
    assert acked_before == list(range(1, 301))
    for c in readers:
        assert [p["offset"] for p in await c.pubs(300, timeout=t(20))] == acked_before

    # more publishes in flight, then the signal
    in_flight = [pub.start("publish", channel=ch, data={"i": 300 + i, "p": payload})
                 for i in range(200)]
    for k in range(0, len(in_flight), 20):     # frames under max_message_size
        await pub.send_raw("\n".join(hh.encode(cmd, "json") for _, cmd, _ in in_flight[k:k + 20]))
    s.send_signal(signal.SIGTERM)

    # a connection opened before the signal is told the node is draining
    # (once the signal reached its worker)
    def draining():
        health.request("GET", "/healthz")
        r = health.getresponse()
        body = json.loads(r.read())
        assert (r.status, body["status"]) in ((200, "ok"), (503, "draining")), (r.status, body)
        return r.status == 503
    wait_for(draining, t(5), interval=0.01, what="503 draining on an open connection")
    health.close()

    # the publisher: replies (each one at most once), then 4000
    p = await pub.push("disconnect", timeout=t(20))
    assert p["code"] == 4000 and p["reconnect"] is True, p
    assert await pub.wait_closed(t(10)) == 4000
    answered = [f.result() for _, _, f in in_flight if f.done() and not f.exception()]
    acked_after = [x["ok"]["offset"] for x in answered if "ok" in x]
    assert acked_after == list(range(301, 301 + len(acked_after))), acked_after[:5]

    def check(label, msgs):
        assert msgs and msgs[-1].get("push") == "disconnect", (label, msgs[-1:])
        assert msgs[-1]["code"] == 4000 and msgs[-1]["reconnect"] is True, (label, msgs[-1])
        offs = [m["offset"] for m in msgs[:-1] if m.get("push") == "pub"]
        assert all(m.get("push") == "pub" for m in msgs[:-1] if "id" not in m), label
        assert offs == list(range(1, len(offs) + 1)), "%s: gap or duplicate" % label
        assert len(offs) >= 300, "%s: got %d of the 300 acknowledged before" % (label, len(offs))

    # the stuck subscribers read now: their whole queue, then 4000
    loop = asyncio.get_running_loop()
    outcomes = await asyncio.gather(*(loop.run_in_executor(None, read_all, raw, t(30))
                                      for raw in stuck))
    for k, (msgs, last) in enumerate(outcomes):
        assert last[:2] == ("close", 4000), ("stuck %d" % k, last)
        check("stuck %d" % k, [m for m in msgs if "id" not in m])
    for k, c in enumerate(readers):
        assert await c.wait_closed(t(10)) == 4000
        rest = c.pending_pushes()
        check("reader %d" % k, [{"push": "pub", "offset": o} for o in acked_before] + rest)
    for raw in stuck:
        raw.close()
    rc = await loop.run_in_executor(None, s.wait_exit, t(20))
    assert rc == 0, "exit status %r; stderr:\n%s" % (rc, s.stderr_tail())


def test_sigterm_reads_the_close_answer_of_a_client_whose_commands_wait(server_factory):
    """A client whose commands wait (it sent pings without reading the
    replies: over send_queue_max the server stops reading its socket) is
    told 4000 at SIGTERM; it reads everything, answers the close and
    hangs up. The server must read that answer (it read nothing from the
    socket while the commands waited, and dropped them at the close), so it
    exits on drain, not at shutdown_timeout (60 s here)."""
    s = server_factory({"shutdown_timeout": 60, "send_queue_max": 65536})
    raw = s.raw()
    batch = "\n".join(json.dumps({"id": i + 1, "op": "ping"}) for i in range(2000)).encode()
    raw.sock.settimeout(0.5)
    sent = 0
    try:   # until the server stops reading: its replies are over the bound
        while sent < 20000:
            raw.send_frame(hh.OP_TEXT, batch)
            sent += 1
    except (socket.timeout, BlockingIOError):
        pass
    assert sent < 20000, "the server never stopped reading"
    s.send_signal(signal.SIGTERM)
    msgs, last = read_all(raw, t(20))
    assert last[:2] == ("close", 4000), last
    assert msgs and msgs[-1].get("push") == "disconnect" and msgs[-1]["code"] == 4000, msgs[-1:]
    raw.send_close(1000)
    raw.close()
    assert s.wait_exit(t(15)) == 0, s.stderr_tail()
