"""herald-bench against peer servers (--target): a short smoke run of the
scenarios through each peer's real protocol, against the real peer started
by its bench/peers/<name>/start.sh (and stopped by its stop.sh). Checks that
each run exits 0, that every publication of the run reached every
subscriber once (deliveries = publications x subscribers), that gaps and
duplicates are 0, and that the report is well-formed and names the target.

The peers are installed by `scripts/deps.sh test` (bench/peers/<name>/
setup.sh), so a missing peer fails here rather than skipping.

Adding a peer: one entry in PEERS (how to start it and which pids to
sample), then parametrized tests pick it up through the `peer` fixture;
tests of one peer only use PEERS[...] directly."""

import copy
import json
import os
import re
import subprocess

import pytest

import herald_harness as hh
from herald_harness import t

BENCH = os.path.join(os.path.dirname(os.path.abspath(hh.HERALD_BIN)), "herald-bench")
PEERS_DIR = os.path.join(hh.REPO, "bench", "peers")

LAT_KEYS = {"count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"}


class Peer:
    """How to run one peer server: start.sh/stop.sh options for a port and
    a run dir, the --url to give the bench, and the server pids (keys of the
    start script's "ready" line)."""

    def __init__(self, name, start_args, url, pid_keys):
        self.name = name
        self.start_args = start_args      # (port, run_dir) -> [args]
        self.url = url                    # port -> URL
        self.pid_keys = pid_keys          # keys of the ready line with pids
        self.port = None
        self.run_dir = None
        self.pids = []

    def script(self, which):
        return os.path.join(PEERS_DIR, self.name, which)

    def start(self, run_dir):
        self.port = hh.free_port()
        self.run_dir = str(run_dir)
        p = subprocess.run([self.script("start.sh")] +
                           self.start_args(self.port, self.run_dir),
                           capture_output=True, text=True, timeout=t(60))
        assert p.returncode == 0, "%s start.sh failed (%d):\n%s\n%s" % (
            self.name, p.returncode, p.stdout, p.stderr)
        line = p.stdout.strip().splitlines()[-1]
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        self.pids = [int(x) for k in self.pid_keys
                     for x in fields.get(k, "").split(",") if x]
        assert self.pids, "%s: no pids in %r" % (self.name, line)

    def stop(self):
        subprocess.run([self.script("stop.sh"), "--run-dir", self.run_dir],
                       capture_output=True, text=True, timeout=t(30))


def _sio_port(port):
    return int(os.environ.get("HERALD_TEST_SIO_PORT") or port)


PEERS = {
    # nginx + nchan (bench/peers/nchan): the workers serve, the master
    # only supervises, so the workers are the sampled server pids.
    "nchan": Peer(
        "nchan",
        lambda port, run_dir: ["--listen", "127.0.0.1:%d" % port,
                               "--run-dir", run_dir],
        lambda port: "ws://127.0.0.1:%d" % port,
        ["worker_pids"]),
    # Socket.IO 4 (bench/peers/socketio): a node cluster of 2 workers with
    # the Redis adapter and its own redis-server. The primary only accepts
    # and hands connections over, so the workers are the sampled pids.
    # HERALD_TEST_SIO_PORT / HERALD_TEST_SIO_REDIS_PORT pin the ports.
    "socketio": Peer(
        "socketio",
        lambda port, run_dir: [
            "--port", str(_sio_port(port)),
            "--redis-port",
            os.environ.get("HERALD_TEST_SIO_REDIS_PORT") or str(hh.free_port()),
            "--run-dir", run_dir],
        lambda port: "ws://127.0.0.1:%d" % _sio_port(port),
        ["worker_pids"]),
    # Centrifugo v6 (bench/peers/centrifugo): one process, memory engine,
    # anonymous connect and client publish.
    "centrifugo": Peer(
        "centrifugo",
        lambda port, run_dir: ["--port", str(port), "--run-dir", run_dir],
        lambda port: "ws://127.0.0.1:%d" % port,
        ["pid"]),
}


@pytest.fixture(scope="module", params=sorted(PEERS))
def peer(request, tmp_path_factory):
    pe = PEERS[request.param]
    pe.start(tmp_path_factory.mktemp("peer-" + pe.name))
    try:
        yield pe
    finally:
        pe.stop()


def bench_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    if hh.SANITIZE:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    return env


def run_bench(peer, tmp_path, scenario, *args, duration=2.0):
    report = str(tmp_path / ("%s-%s.json" % (peer.name, scenario)))
    cmd = [BENCH, scenario, "--target", peer.name, "--url", peer.url(peer.port),
           "--duration", str(duration), "--warmup", "0.5", "--json", report]
    for pid in peer.pids:
        cmd += ["--server-pid", str(pid)]
    cmd += [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=bench_env(),
                       timeout=t(60))
    out = "command: %s\nexit %d\nstdout:\n%s\nstderr:\n%s" % (
        " ".join(cmd), p.returncode, p.stdout, p.stderr[-4000:])
    assert p.returncode == 0, out
    for marker in hh.SANITIZER_MARKERS:
        assert marker not in p.stderr, out
    with open(report) as f:
        r = json.load(f)
    assert r["scenario"] == scenario, out
    assert r["target"] == peer.name, out
    assert r["parameters"]["target"] == peer.name, out
    assert r["parameters"]["url"] == peer.url(peer.port), out
    assert r["command"].startswith(BENCH), out
    assert r["duration_s"] > 0
    assert r["gaps"] == 0 and r["duplicates"] == 0, out
    assert r["bench"]["cpu_s"] >= 0
    assert [s["pid"] for s in r["servers"]] == peer.pids, out
    assert all(s["ok"] is True and s["rss_bytes"] > 0 for s in r["servers"]), out
    return r, out


def check_latency(lat, out):
    assert LAT_KEYS <= set(lat), out
    assert lat["count"] > 0, out
    assert 0 < lat["p50_us"] <= lat["p90_us"] <= lat["p99_us"] <= lat["p999_us"], out


def test_fanout(peer, tmp_path):
    r, out = run_bench(peer, tmp_path, "fanout", "--subs", 50, "--size", 100)
    assert r["subscribers"] == 50
    assert r["publications"] > 0 and r["deliveries"] > 0, out
    assert r["errors"] == 0 and r["failed_publishes"] == 0, out
    assert r["disconnects"] == 0, out
    # Every publication of the run reached every subscriber, once.
    assert r["expected_deliveries"] == r["publications_total"] * 50, out
    assert r["deliveries_total"] == r["expected_deliveries"], out
    check_latency(r["latency"], out)
    check_latency(r["ack_latency"], out)
    assert all(s["ns_per_delivery"] > 0 for s in r["servers"]), out


def test_fanout_two_publishers(peer, tmp_path):
    # Two publishers on one channel: gaps and duplicates are tracked per
    # publisher (their sequence numbers interleave).
    r, out = run_bench(peer, tmp_path, "fanout", "--subs", 10, "--pubs", 2,
                       "--rate", 200)
    assert r["publications"] > 0, out
    assert r["deliveries_total"] == r["publications_total"] * 10, out


def test_connections(peer, tmp_path):
    r, out = run_bench(peer, tmp_path, "connections", "--count", 200,
                       "--rate", 2000, "--conns-per-addr", 50, duration=1.0)
    assert r["connections"] == 200 and r["failures"] == 0, out
    assert r["disconnects"] == 0, out
    check_latency(r["connect_latency"], out)
    assert r["connect_latency"]["count"] == 200


def test_connections_many_lws_contexts(peer, tmp_path):
    # 600 connections on one bench thread: the transport (herald/ws.h)
    # spreads them over three lws contexts (one more per 256 live), so
    # setup and teardown cross context boundaries (the sanitizer build
    # checks for leaks and errors).
    r, out = run_bench(peer, tmp_path, "connections", "--count", 600,
                       "--rate", 3000, "--threads", 1, "--conns-per-addr", 100,
                       duration=1.0)
    assert r["connections"] == 600 and r["failures"] == 0, out
    assert r["disconnects"] == 0, out


def test_request(peer, tmp_path):
    r, out = run_bench(peer, tmp_path, "request", "--clients", 2,
                       "--window", 4)
    assert r["requests"] > 0 and r["requests_per_s"] > 0, out
    assert r["errors"] == 0, out


@pytest.mark.parametrize("peer", ["centrifugo"], indirect=True)
def test_centrifugo_api(peer, tmp_path):
    # Publications through Centrifugo's server HTTP API (http_api in its
    # config.json, on the same port), checked by WebSocket subscribers.
    r, out = run_bench(peer, tmp_path, "api", "--api-conns", 2, "--subs", 5,
                       "--api-url", "http://127.0.0.1:%d" % peer.port)
    assert r["parameters"]["api_url"] == \
        "http://127.0.0.1:%d/api/publish" % peer.port, out
    assert r["requests"] > 0 and r["subscribers"] == 10, out
    assert r["deliveries_total"] == r["requests_total"] * 5, out
    check_latency(r["latency"], out)
    check_latency(r["delivery_latency"], out)
    assert r["errors"] == 0 and r["failed_publishes"] == 0, out
    assert r["servers"][0]["ns_per_request"] > 0, out


def test_peer_usage_errors():
    # msgpack stamps and the reconnect scenario are Herald's only.
    for args in (["fanout", "--target", "nchan", "--encoding", "msgpack"],
                 ["reconnect", "--target", "nchan"],
                 ["fanout", "--target", "nosuchpeer"],
                 # a peer whose server HTTP API the bench does not know
                 ["api", "--target", "nchan"]):
        p = subprocess.run([BENCH] + args, capture_output=True, text=True,
                           env=bench_env(), timeout=t(10))
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.strip(), args


@pytest.mark.parametrize("peer", ["socketio"], indirect=True)
def test_socketio_redis_adapter(peer, tmp_path):
    # The publisher sits on one node worker and the subscribers on both
    # (the primary hands connections out round-robin), so half of them can
    # only be reached through the Redis adapter: every delivery arriving,
    # with both workers busy, shows the adapter at work. redis-server is
    # sampled too (one more --server-pid).
    assert len(peer.pids) == 2, peer.pids
    with open(os.path.join(peer.run_dir, "redis.pid")) as f:
        redis_pid = int(f.read())
    pe = copy.copy(peer)
    pe.pids = peer.pids + [redis_pid]
    r, out = run_bench(pe, tmp_path, "fanout", "--subs", 50, "--size", 100)
    assert r["target"] == "socketio", out
    assert r["subscribers"] == 50 and r["publications"] > 0, out
    assert r["errors"] == 0 and r["failed_publishes"] == 0, out
    assert r["disconnects"] == 0, out
    assert r["deliveries_total"] == r["publications_total"] * 50, out
    workers, redis = r["servers"][:2], r["servers"][2]
    assert all(s["cpu_s"] > 0 and s["ns_per_delivery"] > 0 for s in workers), out
    assert redis["pid"] == redis_pid and redis["ok"] is True, out
