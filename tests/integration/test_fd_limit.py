"""Running out of file descriptors: accept must neither spin nor crash.

The server runs under a small RLIMIT_NOFILE (prlimit) with max_connections
set above what the limit allows, so the kernel's EMFILE is what stops new
connections. While the process is saturated, its CPU use must stay low (no
busy accept loop), connected clients must keep working, and once
descriptors are freed new clients must get in again.
"""

import os
import shutil
import socket
import time

import pytest

import herald_harness as hh

NOFILE = 96


class LimitedServer(hh.HeraldServer):
    def command(self):
        return ["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--"] + super().command()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def try_ws(port):
    """Opens a WebSocket; returns it, or None when the server refused."""
    try:
        return hh.RawWS(port, timeout=hh.t(1))
    except (hh.HandshakeRefused, ConnectionError, socket.timeout, OSError):
        return None


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_emfile_neither_spins_nor_crashes(tmp_path):
    # The raw clients here answer pings only while reading, so heartbeats
    # are pushed out of the test's way.
    s = LimitedServer({"max_connections": 10000, "ping_interval": 3600},
                      tmpdir=str(tmp_path), workers=2)
    s.start()
    try:
        first = hh.RawWS(s.port)
        reply, _ = first.call({"id": 1, "op": "subscribe", "channel": "fd"})
        assert "ok" in reply

        # Fill the descriptor table, and then some.
        held, refused = [], 0
        for _ in range(NOFILE + 6):
            ws = try_ws(s.port)
            if ws is None:
                refused += 1
            else:
                held.append(ws)
        assert refused > 0, "the descriptor limit was never reached"

        # Keep knocking while saturated and watch the server's CPU time: a
        # spinning accept loop would burn a whole core.
        pid = s.proc.pid
        before = cpu_seconds(pid)
        start = time.monotonic()
        knockers = []
        while time.monotonic() - start < 2.0:
            c = socket.socket()
            c.settimeout(0.2)
            try:
                c.connect(("127.0.0.1", s.port))
            except OSError:
                pass
            knockers.append(c)
            time.sleep(0.05)
        used = cpu_seconds(pid) - before
        elapsed = time.monotonic() - start
        for c in knockers:
            c.close()
        assert s.alive(), "herald died at EMFILE:\n" + s.stderr_tail()
        assert used < 0.5 * elapsed, "herald used %.2fs CPU in %.2fs at EMFILE" % (used, elapsed)
        assert any("out of file descriptors" in (l.get("msg") or "") for l in s.log_lines())

        # A connected client is unaffected.
        reply, _ = first.call({"id": 2, "op": "ping"})
        assert reply == {"id": 2, "ok": {}}

        # Free descriptors: new clients get in again.
        for ws in held:
            ws.close()
        held = []

        def admitted():
            ws = try_ws(s.port)
            if ws is None:
                return False
            try:
                reply, _ = ws.call({"id": 1, "op": "ping"})
            except OSError:
                return False   # accepted while a worker was still saturated
            finally:
                ws.close()
            return reply.get("ok") == {}

        hh.wait_for(admitted, hh.t(10), interval=0.2, what="a new connection after freeing descriptors")
        first.close()
        assert s.stop() == 0
    finally:
        if s.alive():
            s.kill()
