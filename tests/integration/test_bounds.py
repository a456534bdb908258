"""Bounds on what one node keeps, and deadlines that must hold on a quiet
worker.

* A closing connection whose peer stopped reading is dropped within the
  close grace period even when nothing else happens on its worker: lws 4.1
  (libuv event lib) re-reads its timer list only when one of its own events
  runs, so a timeout armed from a libuv timer or the mailbox never fired
  until some other traffic woke lws.
"""

import asyncio
import json
import socket
import time

import pytest

import herald_harness as hh
from herald_harness import chan, t

# server/net/conn.c CONN_CLOSE_GRACE_S: how long a closing connection may
# take to take its close frame.
CLOSE_GRACE_S = 3


def server_side_open(server_port, peer_port):
    """1 while the server holds its end of the connection from peer_port in
    a descriptor: /proc/net/tcp lists the socket with a non-zero inode; a
    socket the server closed is gone or orphaned (inode 0). Reading this
    does not touch the server, unlike /healthz (a request on the same
    worker would wake lws and hide the bug)."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            f = open(path)
        except OSError:
            continue
        with f:
            next(f)
            for line in f:
                p = line.split()
                lport = int(p[1].rsplit(":", 1)[1], 16)
                rport = int(p[2].rsplit(":", 1)[1], 16)
                if lport == server_port and rport == peer_port:
                    if int(p[9]) != 0:
                        return 1
    return 0


# -- close deadlines on a quiet worker --------------------------------------------

def test_closing_client_that_stopped_reading_is_dropped_on_a_quiet_worker(server_factory):
    """One worker. A subscriber stops reading; a publisher fills its queue
    until the server closes it as a slow consumer (4001, decided when a
    delivery comes through the worker's mailbox, outside any lws
    callback), then stays quiet (no pings either: ping_interval is long).
    The close frame cannot be written (the subscriber's socket is full),
    so only the close grace timeout ends the connection: it must, within
    the grace period, with no other traffic on the worker."""
    s = server_factory({"send_queue_max": 65536, "ping_interval": 3600,
                        "pong_timeout": 3600}, workers=1)
    ch = chan()
    v = s.raw(rcvbuf=4096)
    reply, _ = v.call({"id": 1, "op": "subscribe", "channel": ch})
    assert "ok" in reply, reply
    peer = v.sock.getsockname()[1]
    assert server_side_open(s.port, peer)
    p = s.raw()
    data = "x" * 60000
    cmd_id = 1
    deadline = time.monotonic() + t(30)
    while "slow consumer closed" not in s.stderr():
        assert time.monotonic() < deadline, "no slow-consumer close:\n" + s.stderr_tail(20)
        reply, _ = p.call({"id": cmd_id, "op": "publish", "channel": ch, "data": data})
        assert "ok" in reply, reply
        cmd_id += 1
    closed_at = time.monotonic()
    hh.wait_for(lambda: not server_side_open(s.port, peer),
                CLOSE_GRACE_S + t(3),
                what=lambda: "the server to drop the connection (%.1fs after "
                "the close, grace %ds)" % (time.monotonic() - closed_at, CLOSE_GRACE_S))
    took = time.monotonic() - closed_at
    v.close()
    assert took >= CLOSE_GRACE_S - 1, "dropped before the grace period: %.1fs" % took
    reply, _ = p.call({"id": cmd_id, "op": "ping"})
    assert reply == {"id": cmd_id, "ok": {}}, reply
    hh.wait_for(lambda: s.healthz()[1]["connections"] == 1, t(5),
                what=lambda: "only the publisher left: %r" % (s.healthz(),))
    p.close()
