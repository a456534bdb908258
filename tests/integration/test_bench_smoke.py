"""herald-bench smoke run: every scenario for about two seconds with small
N against a real herald, in both builds. Checks that each run exits 0, that
its JSON report is well-formed with the documented fields, that the counts
are positive and consistent (deliveries = publications x subscribers), that
gaps and duplicates are 0, and that --server-pid produced server figures.
The big runs belong to `make bench`, not here."""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

import herald_harness as hh
from herald_harness import t

BENCH = os.path.join(os.path.dirname(os.path.abspath(hh.HERALD_BIN)), "herald-bench")

# History in every namespace, so that the reconnect scenario can recover.
CONFIG = {"namespace_defaults": {"history_size": 2000, "history_ttl": 300}}

server = hh.server_fixture(CONFIG)
# A second, independent server: several --url without a cluster (plumbing).
server2 = hh.server_fixture(CONFIG)

LAT_KEYS = {"count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"}


def bench_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    if hh.SANITIZE:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    return env


def run_bench(server, tmp_path, scenario, *args, duration=2.0, url_of=None):
    """server: one HeraldServer, or a list of them (one --url and
    --server-pid each, in that order); url_of(server) gives another --url
    for it than server.url()."""
    servers = server if isinstance(server, list) else [server]
    url_of = url_of or (lambda s: s.url())
    report = str(tmp_path / ("%s.json" % scenario))
    cmd = [BENCH, scenario, "--duration", str(duration), "--warmup", "0.5",
           "--json", report]
    for s in servers:
        cmd += ["--url", url_of(s), "--server-pid", str(s.proc.pid)]
    cmd += [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=bench_env(),
                       timeout=t(40))
    out = "command: %s\nexit %d\nstdout:\n%s\nstderr:\n%s" % (
        " ".join(cmd), p.returncode, p.stdout, p.stderr[-4000:])
    assert p.returncode == 0, out
    for marker in hh.SANITIZER_MARKERS:
        assert marker not in p.stderr, out
    with open(report) as f:
        r = json.load(f)
    assert r["scenario"] == scenario, out
    assert r["command"].startswith(BENCH), out
    assert isinstance(r["parameters"], dict)
    assert r["duration_s"] > 0
    assert r["gaps"] == 0 and r["duplicates"] == 0, out
    assert r["bench"]["cpu_s"] >= 0 and r["bench"]["cpu_util"] >= 0
    assert len(r["servers"]) == len(servers), out
    for s, srv in zip(r["servers"], servers):
        assert s["pid"] == srv.proc.pid and s["ok"] is True, out
        assert s["rss_bytes"] > 0 and s["cpu_s"] >= 0, out
        assert "pss_bytes" in s
    if len(servers) == 1:
        assert "urls" not in r["parameters"] and "per_url" not in r, out
    else:
        assert r["parameters"]["urls"] == [url_of(s) for s in servers], out
        assert r["parameters"]["url"] == url_of(servers[0]), out
    return r, out


def check_latency(lat, out):
    assert LAT_KEYS <= set(lat), out
    assert lat["count"] > 0, out
    assert 0 < lat["p50_us"] <= lat["p90_us"] <= lat["p99_us"] <= lat["p999_us"], out
    assert lat["p999_us"] <= lat["max_us"] * 1.01, out


def transport_args(transport):
    """The subscribers' reader: the bench's lean one where it can go (the
    default for a ws:// URL to an IPv4 address), or the C client library
    (`--sub-transport client`, as for wss:// or a host name)."""
    return ["--sub-transport", "client"] if transport == "client" else []


@pytest.mark.parametrize("transport", ["fast", "client"])
@pytest.mark.parametrize("enc", ["json", "msgpack"])
def test_fanout(server, tmp_path, enc, transport):
    # Subscribers read through the bench's lean reader (fastsub.c) or
    # through the C client library (where the reader cannot go: wss://,
    # host names); both must count the same way.
    r, out = run_bench(server, tmp_path, "fanout", "--channels", 2, "--subs", 20,
                       "--encoding", enc, "--size", 100, *transport_args(transport))
    assert r["parameters"]["sub_transport"] == transport, out
    assert r["subscribers"] == 40
    assert r["publications"] > 0 and r["deliveries"] > 0, out
    assert r["errors"] == 0 and r["disconnects"] == 0, out
    # Every publication of the whole run reached every subscriber of its
    # channel, once (after the drain).
    assert r["expected_deliveries"] == r["publications_total"] * 20, out
    assert r["deliveries_total"] == r["expected_deliveries"], out
    # The measured window is a part of the run. (How many of the window's
    # publications are delivered inside it depends on how loaded the
    # machine is: no ratio is asserted here; throughput belongs to bench/.)
    assert 0 < r["publications"] <= r["publications_total"], out
    assert 0 < r["deliveries"] <= r["deliveries_total"], out
    check_latency(r["latency"], out)
    check_latency(r["ack_latency"], out)
    assert r["deliveries_per_s"] > 0
    assert r["servers"][0]["ns_per_delivery"] > 0, out


def test_fanout_refused_handshake_is_a_setup_error(server, tmp_path):
    """A URL that is not Herald's WebSocket endpoint: the lean subscribers'
    handshake is refused (the server closes the socket), the run stops with
    exit 2 and says why."""
    url = server.url("/nope")
    cmd = [BENCH, "fanout", "--url", url, "--subs", 3, "--duration", 1,
           "--warmup", 0, "--setup-timeout", 5]
    p = subprocess.run([str(a) for a in cmd], capture_output=True, text=True,
                       env=bench_env(), timeout=t(30))
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "WebSocket handshake" in p.stderr, p.stderr
    assert "3 subscribes failed" in p.stderr, p.stderr


def test_fanout_fixed_rate(server, tmp_path):
    r, out = run_bench(server, tmp_path, "fanout", "--channels", 2, "--subs", 5,
                       "--pubs", 2, "--rate", 200)
    # 2 publishers x 200/s: a loaded machine may publish fewer, never more
    # than the schedule allows (the window's length, plus one second for
    # acknowledgements arriving at its start and the one-second catch-up
    # after a stall); a closed loop would publish thousands per second.
    assert 0 < r["publications"] <= 2 * 200 * (r["duration_s"] + 1), out
    assert r["deliveries_total"] == r["publications_total"] * 5, out


def test_fanout_in_flight(server, tmp_path):
    # One publication in flight per publisher (the api scenario's shape),
    # the window still bounding the lead over the subscribers.
    r, out = run_bench(server, tmp_path, "fanout", "--channels", 2, "--subs", 5,
                       "--pubs", 2, "--in-flight", 1)
    assert r["parameters"]["in_flight"] == 1 and r["parameters"]["window"] == 16, out
    assert r["publications"] > 0, out
    assert r["deliveries_total"] == r["publications_total"] * 5, out


async def test_fanout_run_id_names_the_channels(server, tmp_path):
    # --run-id fixes the channel names (P<run>.<i>), so that a subscriber
    # outside the bench (bench/sdk.sh: the JavaScript SDK's) gets every
    # publication the bench makes.
    c = await server.client()
    for i in range(2):
        await c.ok("subscribe", channel="rid.00abcd.%d" % i)
    r, out = await asyncio.get_running_loop().run_in_executor(
        None, lambda: run_bench(server, tmp_path, "fanout", "--channels", 2, "--subs", 2,
                                "--pubs", 2, "--rate", 50, "--channel-prefix", "rid.",
                                "--run-id", "abcd"))
    pubs = await c.pubs(r["publications_total"])
    assert sorted({p["channel"] for p in pubs}) == ["rid.00abcd.0", "rid.00abcd.1"], out
    assert all(p["data"].startswith("HB1:") for p in pubs), out


def test_connections(server, tmp_path):
    r, out = run_bench(server, tmp_path, "connections", "--count", 200,
                       "--procs", 2, "--rate", 2000, "--conns-per-addr", 20)
    assert r["connections"] == 200 and r["failures"] == 0, out
    assert r["procs"] == 2
    assert r["connects_per_s"] > 0 and r["ramp_s"] > 0, out
    check_latency(r["connect_latency"], out)
    assert r["connect_latency"]["count"] == 200
    assert "server_rss_per_conn_bytes" in r and "server_pss_per_conn_bytes" in r, out
    assert r["servers"][0]["rss_before_bytes"] > 0


def test_reconnect(server, tmp_path):
    # 600 clients on one thread: the client library spreads them over
    # three lws contexts (one more per 256 live connections), so the drop
    # and reconnect cross context boundaries.
    n = 600
    r, out = run_bench(server, tmp_path, "reconnect", "--count", n,
                       "--rate", 50, "--drop-after", 0.5, "--threads", 1)
    rc = r["reconnect"]
    assert rc["dropped"] == n and rc["resubscribed"] == n, out
    assert rc["all_recovered"] is True and rc["recovery_s"] is not None, out
    assert rc["recovered_true"] == n and rc["recovered_false"] == 0, out
    assert r["disconnects"] >= n, out
    assert r["lost"] == 0, out
    assert r["deliveries_total"] == r["publications_total"] * n, out


def test_request(server, tmp_path):
    r, out = run_bench(server, tmp_path, "request", "--clients", 2)
    assert r["requests"] > 0 and r["requests_per_s"] > 0, out
    check_latency(r["latency"], out)
    assert r["servers"][0]["ns_per_request"] > 0, out
    assert r["errors"] == 0, out


# One bench thread: with two, LeakSanitizer finds one lws client context's
# SSL_CTX (and the system CA store it loaded) not freed at exit in about 1
# run in 5, in any scenario (request --threads 2 too); the client
# transport's teardown with two contexts on two threads, not churn's.
CHURN_ARGS = ["--count", 40, "--channels", 4, "--per-client", 2, "--rate", 20,
              "--lifetime", 0.6, "--resub", 0.3, "--offline", 0.3,
              "--threads", 1, "--drain-timeout", 20, "--setup-timeout", 20]


def check_churn(r, out, n_urls, samples):
    """What every churn run must show (bench/README.md, churn): clients
    really churned, recovered with since, and no stream went wrong; every
    acknowledged publication reached each of its channel's witnesses (one
    per URL) exactly once; the --samples CSV has a row a second with each
    server's RSS."""
    ch, rc, w = r["churn"], r["recovery"], r["witness"]
    assert r["false_recoveries"] == 0 and r["regressions"] == 0, out
    assert r["unexpected_events"] == 0, out
    assert r["duplicates_dropped_by_client"] == 0, out
    assert w["drained"] is True and w["behind"] == 0, out
    assert w["undelivered_acked"] == 0, out
    assert r["failed_publishes"] == 0, out
    assert r["publications_total"] > 0, out
    assert r["witnesses"] == 4 * n_urls, out
    assert r["witness_deliveries"] == r["publications_total"] * n_urls, out
    # A connection lives 0.6 s on average: most of the 40 are replaced.
    assert ch["opens"] > 40 + r["witnesses"], out
    assert ch["closes"] + ch["cuts"] + ch["drops"] > 0, out
    assert ch["unsubscribes"] > 0 and ch["subscribes_with_since"] > 0, out
    # A history of 2000 holds every absence of at most 0.3 s.
    assert rc["recovered_true"] > 0, out
    assert rc["recovered_false"] == 0 and r["lost"] == 0, out
    assert r["deliveries_total"] > r["witness_deliveries"], out
    with open(samples) as f:
        rows = f.read().splitlines()
    head = rows[0].split(",")
    for i in range(n_urls):
        assert "server%d_rss_mib" % i in head, rows[0]
    col = head.index("server0_rss_mib")
    body = [x.split(",") for x in rows[1:]]
    assert len(body) >= 3, rows
    assert all(float(x[col]) > 0 for x in body), rows


def test_churn(server, tmp_path):
    samples = str(tmp_path / "samples.csv")
    r, out = run_bench(server, tmp_path, "churn", *CHURN_ARGS, "--samples", samples,
                       duration=3)
    check_churn(r, out, 1, samples)


def test_bad_usage_exits_2():
    # --sub-transport takes auto or client only (the lean reader is used
    # wherever it can go unless told otherwise, bench/README.md).
    for args in (["nosuch"], ["fanout", "--encoding", "xml"],
                 ["fanout", "--subs", "x"], ["fanout", "extra"],
                 ["fanout", "--sub-transport", "fast"],
                 ["fanout", "--run-id", "zz"], ["fanout", "--run-id", "1000000"]):
        p = subprocess.run([BENCH] + args, capture_output=True, text=True,
                           env=bench_env(), timeout=t(10))
        assert p.returncode == 2, (args, p.stderr)
    p = subprocess.run([BENCH, "--help"], capture_output=True, text=True,
                       env=bench_env(), timeout=t(10))
    assert p.returncode == 0 and "fanout" in p.stdout


# --- several --url ----------------------------------------------------------

@pytest.mark.parametrize("transport", ["fast", "client"])
def test_fanout_two_urls(server, server2, tmp_path, transport):
    """Two independent nodes: subscriber j of channel c goes to URL
    (c + j) mod 2 and publisher p to URL p mod 2, so with one subscriber per
    channel each channel's subscriber is on its publisher's node and every
    publication is delivered without a cluster. Both subscriber kinds (the
    library too)."""
    url_of = lambda s: s.url()
    r, out = run_bench([server, server2], tmp_path, "fanout", "--channels", 2,
                       "--subs", 1, "--pubs", 2, *transport_args(transport))
    assert r["parameters"]["sub_transport"] == transport, out
    assert r["subscribers"] == 2
    assert r["errors"] == 0 and r["disconnects"] == 0, out
    assert r["deliveries_total"] == r["publications_total"], out
    pu = r["per_url"]
    assert [u["url"] for u in pu] == [url_of(server), url_of(server2)], out
    for u in pu:
        assert u["subscribers"] == 1 and u["publishers"] == 1, out
        assert u["deliveries"] > 0, out
        check_latency(u["latency"], out)
    assert sum(u["deliveries"] for u in pu) == r["deliveries"], out
    assert sum(u["deliveries_total"] for u in pu) == r["deliveries_total"], out
    for s in r["servers"]:
        assert s["ns_per_delivery"] > 0, out


def test_request_two_urls(server, server2, tmp_path):
    r, out = run_bench([server, server2], tmp_path, "request", "--clients", 4)
    assert r["errors"] == 0, out
    for u in r["per_url"]:
        assert u["publishers"] == 2 and u["subscribers"] == 0, out
        check_latency(u["latency"], out)
    assert sum(u["latency"]["count"] for u in r["per_url"]) == r["requests"], out


def test_connections_two_urls(server, server2, tmp_path):
    r, out = run_bench([server, server2], tmp_path, "connections", "--count", 100,
                       "--rate", 2000)
    assert r["connections"] == 100 and r["failures"] == 0, out


# --- a cluster: two nodes through Redis --------------------------------------

REDIS_SERVER = "/usr/bin/redis-server"


def herald_has_cluster():
    try:
        p = subprocess.run([hh.HERALD_BIN, "--help"], capture_output=True, text=True,
                           timeout=t(10))
    except OSError:
        return False
    return "--redis" in p.stdout + p.stderr


@pytest.fixture
def redis_url():
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip("no %s" % REDIS_SERVER)
    if not herald_has_cluster():
        pytest.skip("herald has no --redis (cluster mode)")
    port = hh.free_port()
    d = tempfile.mkdtemp(prefix="herald-redis-")
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + t(10)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)
        yield "redis://127.0.0.1:%d" % port
    finally:
        proc.terminate()
        proc.wait(timeout=t(10))
        shutil.rmtree(d, ignore_errors=True)


def test_fanout_across_cluster(redis_url, tmp_path):
    """Two cluster nodes: the publisher on the first, half the subscribers
    on the second, so their deliveries cross Redis; every publication
    reaches every subscriber of both nodes, with no gap and no duplicate,
    and Redis is sampled as a server too."""
    nodes = [hh.HeraldServer(CONFIG, tmpdir=str(tmp_path), name="node%d" % i, workers=1,
                             args=["--redis", redis_url]) for i in (1, 2)]
    try:
        for n in nodes:
            n.start()
        r, out = run_bench(nodes, tmp_path, "fanout", "--channels", 1, "--subs", 20)
        assert r["errors"] == 0 and r["disconnects"] == 0, out
        assert r["deliveries_total"] == r["publications_total"] * 20, out
        pu = r["per_url"]
        assert [(u["subscribers"], u["publishers"]) for u in pu] == [(10, 1), (10, 0)], out
        for u in pu:
            assert u["deliveries_total"] == r["publications_total"] * 10, out
            check_latency(u["latency"], out)
    finally:
        for n in nodes:
            n.stop()


def test_churn_across_cluster(redis_url, tmp_path):
    """Churn over two cluster nodes: replacements land on either node and
    recover there with the position they had on the other."""
    nodes = [hh.HeraldServer(CONFIG, tmpdir=str(tmp_path), name="node%d" % i, workers=1,
                             args=["--redis", redis_url]) for i in (1, 2)]
    samples = str(tmp_path / "samples.csv")
    try:
        for n in nodes:
            n.start()
        r, out = run_bench(nodes, tmp_path, "churn", *CHURN_ARGS, "--samples", samples,
                           duration=3)
        check_churn(r, out, 2, samples)
    finally:
        for n in nodes:
            n.stop()


# --- api: publications through the server's HTTP API (api_listen) ---------

API_KEY = "b" * 32
api_server = hh.server_fixture(dict(CONFIG, api_listen="127.0.0.1:0"),
                               env={"HERALD_API_KEY": API_KEY})


def api_url(s):
    """The base URL of s's api_listen (the port from its log); the bench
    adds /api/v1/publish."""
    line = hh.wait_for(lambda: next((l for l in s.log_lines()
                                     if l.get("msg") == "API listening"), None),
                       t(5), what="the API listening line")
    return "http://127.0.0.1:%d" % line["port"]


def test_api(api_server, tmp_path):
    r, out = run_bench(api_server, tmp_path, "api", "--api-conns", 2,
                       "--api-url", api_url(api_server), "--api-key", API_KEY)
    p = r["parameters"]
    assert p["api_conns"] == 2 and p["channels"] == 2, out
    assert p["subs_per_channel"] == 0 and r["subscribers"] == 0, out
    assert p["api_url"].endswith("/api/v1/publish"), out
    assert p["http_client"].startswith("libcurl/"), out
    assert r["requests"] > 0 and r["requests_per_s"] > 0, out
    assert 0 < r["requests"] <= r["requests_total"], out
    check_latency(r["latency"], out)
    assert r["errors"] == 0 and r["failed_publishes"] == 0, out
    assert r["servers"][0]["ns_per_request"] > 0, out


def test_api_subscribers(api_server, tmp_path):
    # Every publication acknowledged over HTTP reaches every WebSocket
    # subscriber of its channel, in order (the offsets are checked).
    r, out = run_bench(api_server, tmp_path, "api", "--api-conns", 3,
                       "--channels", 2, "--subs", 5,
                       "--api-url", api_url(api_server), "--api-key", API_KEY)
    assert r["subscribers"] == 10 and r["requests"] > 0, out
    assert r["parameters"]["sub_transport"] == "fast", out
    assert r["expected_deliveries"] == r["requests_total"] * 5, out
    assert r["deliveries_total"] == r["expected_deliveries"], out
    check_latency(r["latency"], out)
    check_latency(r["delivery_latency"], out)
    assert r["errors"] == 0 and r["failed_publishes"] == 0, out
    assert r["disconnects"] == 0, out


def test_api_refused(api_server, tmp_path):
    # A wrong key: every publish is refused (401), counted as errors, and
    # the run fails with nothing acknowledged.
    cmd = [BENCH, "api", "--api-url", api_url(api_server), "--api-key",
           "x" * 32, "--duration", "1", "--warmup", "0.2"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=bench_env(),
                       timeout=t(30))
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "HTTP 401" in p.stderr and "no acknowledged requests" in p.stderr, p.stderr
    assert "failed publishes 0" not in p.stdout, p.stdout
    # And without any key the run does not start.
    p = subprocess.run([BENCH, "api", "--duration", "1"], capture_output=True,
                       text=True, env=bench_env(), timeout=t(10))
    assert p.returncode == 2 and "--api-key" in p.stderr, p.stderr
