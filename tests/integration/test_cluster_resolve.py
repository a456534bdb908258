"""Cluster mode with a Redis host given by name: resolving it must never
stall a worker's loop, at the first connection or at any reconnect.

hiredis's redisAsyncConnect resolves the host with a blocking getaddrinfo
on the calling thread; a slow resolver (a DNS server that does not
answer, a lost route to it) would then freeze every connection of the
worker. The test makes a resolver that answers only when told to: the
test re-runs itself in a new network namespace (unshare; a user namespace
too when not run as root), where the addresses of the nameservers
/etc/resolv.conf names are put on the loopback interface and a DNS server
of the test answers on them (nothing outside the namespace changes, no
file is touched: this works in a chroot too). RES_OPTIONS makes the node's
resolver send one query and wait 30 s for it. That server
holds every query for the Redis host's name until the test releases it.
While a query is held, the node (one worker) must serve WebSocket clients
and /healthz (503: the broker is down), and answer 108 to what needs
Redis; once released, it connects and works. Then Redis drops the node's
connections, and the same must hold for the reconnect's resolution.
"""

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback

import pytest

import cluster_harness as ch
import herald_harness as hh
from herald_harness import t

NAME = "redis.herald.test"


# A network namespace; a user namespace too when not root (root needs
# none, and inside a chroot, where a fresh-machine check runs the suite,
# the kernel refuses to create one). No mount namespace: in a chroot,
# unshare cannot make / private.
UNSHARE = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]


def _namespaces_work():
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(UNSHARE + ["true"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _namespaces_work(),
                    reason="needs a network namespace (%s): the test's resolver "
                    "must own the nameservers' addresses" % " ".join(UNSHARE))
def test_resolving_the_redis_host_never_blocks_the_worker(tmp_path):
    env = dict(os.environ)
    r = subprocess.run(UNSHARE + ["--", sys.executable, os.path.abspath(__file__),
                        "--inside", str(tmp_path)],
                       capture_output=True, text=True, timeout=t(150), env=env,
                       cwd=os.path.dirname(os.path.abspath(__file__)))
    print(r.stdout)
    assert r.returncode == 0, "inside the namespaces:\n%s\n%s" % (r.stdout, r.stderr)
    assert "inside: ok" in r.stdout, r.stdout


# --------------------------------------------------------------------------
# Inside the namespaces

class HeldDns:
    """A DNS server on port 53 (UDP) of every local IPv4 address. Queries for NAME are recorded and,
    while held, left unanswered until release(); they are then answered A
    127.0.0.1 (AAAA: no address). Other names get NXDOMAIN at once."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 53))
        self.lock = threading.Lock()
        self.held = True
        self.pending = []        # (query, peer)
        self.queries = 0         # for NAME, A or AAAA
        self.answered = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _question(q):
        labels, i = [], 12
        while q[i]:
            n = q[i]
            labels.append(q[i + 1:i + 1 + n].decode().lower())
            i += 1 + n
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        return ".".join(labels), qtype, i + 5

    def _answer(self, q, peer):
        name, qtype, end = self._question(q)
        qid = q[:2]
        question = q[12:end]
        if name != NAME:
            resp = qid + struct.pack("!HHHHH", 0x8183, 1, 0, 0, 0) + question
        elif qtype == 1:
            rr = struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton("127.0.0.1")
            resp = qid + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + question + rr
        else:
            resp = qid + struct.pack("!HHHHH", 0x8180, 1, 0, 0, 0) + question
        self.sock.sendto(resp, peer)

    def _serve(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(4096)
                name, _, _ = self._question(q)
            except (OSError, IndexError, struct.error):
                continue
            with self.lock:
                if name == NAME:
                    self.queries += 1
                    if self.held:
                        self.pending.append((q, peer))
                        continue
                    self.answered += 1
            self._answer(q, peer)

    def hold(self):
        with self.lock:
            self.held = True

    def release(self):
        with self.lock:
            self.held = False
            pending, self.pending = self.pending, []
            self.answered += len(pending)
        for q, peer in pending:
            self._answer(q, peer)

    def waiting(self):
        with self.lock:
            return len(self.pending)


class EarlyNode(hh.HeraldServer):
    def wait_ready(self, timeout):   # ready = answering /healthz at all
        hh.wait_for(lambda: self.alive() and ch.health(self, timeout=1)[0] in (200, 503),
                    timeout, what=lambda: "herald answering /healthz (its only worker "
                    "must not wait for the resolver):\n" + self.stderr_tail())


async def served_while_held(node, dns, what):
    """With a resolution of NAME held: the worker answers /healthz (503) and
    a new WebSocket client's commands (108 for what needs Redis)."""
    await hh.async_wait_for(lambda: dns.waiting() > 0, t(10),
                            what="the node to ask the resolver (%s)" % what)
    st, doc = await asyncio.to_thread(ch.health, node, t(5))
    assert st == 503 and doc.get("broker") == "down", (what, st, doc)
    c = await node.client()
    await c.ok("connect")
    assert await c.ok("ping") == {}
    e = await c.error("subscribe", channel=hh.chan(""))
    assert e["code"] == 108, (what, e)
    await c.close()
    assert dns.waiting() > 0, "the query was answered meanwhile (%s)" % what
    print("inside: served while the resolution was held (%s)" % what)


async def works(node):
    c = await node.client()
    await c.ok("connect")
    chname = hh.chan("")
    await c.ok("subscribe", channel=chname)
    ok = await c.ok("publish", channel=chname, data="through a name")
    p = await c.push("pub")
    assert p["offset"] == ok["offset"] and p["data"] == "through a name", p
    await c.close()


async def inside(tmpdir):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # The nameservers the machine's resolver asks (none: glibc asks
    # 127.0.0.1) become addresses of this namespace's loopback.
    servers = []
    try:
        with open("/etc/resolv.conf") as f:
            servers = [w[1] for w in (line.split() for line in f)
                       if len(w) > 1 and w[0] == "nameserver"]
    except OSError:
        pass
    for addr in servers:
        assert ":" not in addr, "an IPv6 nameserver (%s): the test serves IPv4" % addr
        if not addr.startswith("127."):
            subprocess.run(["ip", "addr", "add", addr + "/32", "dev", "lo"], check=True)
    # One attempt, waiting long: the test decides when it is answered.
    os.environ["RES_OPTIONS"] = "timeout:30 attempts:1"
    dns = HeldDns()
    redis = ch.RedisServer(os.path.join(tmpdir, "redis"), name="redis")
    redis.start()
    node = EarlyNode({"allow_anonymous": True, "redis_timeout_ms": 60000,
                      "namespace_defaults": {"history_size": 10}},
                     args=["--redis", "redis://%s:%d" % (NAME, redis.port)],
                     tmpdir=tmpdir, name="named", workers=1)
    try:
        node.start()
        await served_while_held(node, dns, "first connection")
        dns.release()
        await hh.async_wait_for(lambda: asyncio.to_thread(ch.broker_up, node), t(10),
                                interval=0.05, what="broker up once the name resolves")
        await works(node)

        # Redis drops the node's connections: the reconnect resolves again
        dns.hold()
        before = dns.queries
        killed = redis.command("CLIENT", "KILL", "TYPE", "normal") + \
            redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 1, killed
        await served_while_held(node, dns, "reconnect")
        assert dns.queries > before
        dns.release()
        await hh.async_wait_for(lambda: asyncio.to_thread(ch.broker_up, node), t(10),
                                interval=0.05, what="broker up again after the reconnect")
        await works(node)
        logs = [l for l in node.log_lines() if l.get("msg") == "broker up"]
        assert logs and all(l.get("redis") == NAME for l in logs), logs
    finally:
        dns.release()
        await asyncio.to_thread(node.stop)
        redis.stop()
    report = node.sanitizer_report()
    assert not report, report
    print("inside: ok")


if __name__ == "__main__" and sys.argv[1:2] == ["--inside"]:
    try:
        asyncio.run(asyncio.wait_for(inside(sys.argv[2]), t(120)))
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
    sys.exit(0)
