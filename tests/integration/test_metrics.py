"""GET /metrics (docs/metrics.md): the Prometheus exposition parsed with
prometheus_client's own parser (Debian python3-prometheus-client), its
values checked against traffic the test makes: N publications to M
subscribers are N*M deliveries and N received, connections accepted and
closed with their codes, errors by code, API requests by route and status,
the broker's state in cluster mode and the durable store's with FerretDB.
Served on api_listen when it is set, else on the main port; `metrics =
false` is 404; `metrics_key` is enforced on both."""

import http.client
import json
import os
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

import cluster_harness as ch
import herald_harness as hh
from ferret_harness import ferretdb  # noqa: F401 (fixture)
from herald_harness import chan, t

API_KEY = "a" * 32
METRICS_KEY = "m" * 24
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def get(port, path, headers=None, method="GET", body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=t(5))
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r, r.read()
    finally:
        c.close()


class Scrape:
    """One parsed exposition: samples by name, each with its labels."""

    def __init__(self, text):
        self.text = text
        self.families = {}
        self.samples = []
        for fam in text_string_to_metric_families(text):
            self.families[fam.name] = fam
            self.samples.extend(fam.samples)

    def value(self, name, **labels):
        """The sum of the samples of `name` whose labels include `labels`
        (over workers, say); 0 when there is none."""
        return sum(s.value for s in self.samples if s.name == name and
                   all(s.labels.get(k) == v for k, v in labels.items()))

    def labels(self, name, key):
        return {s.labels[key]: s.value for s in self.samples if s.name == name}


def scrape(port, headers=None):
    r, body = get(port, "/metrics", headers)
    assert r.status == 200, body
    assert r.getheader("Content-Type") == CONTENT_TYPE
    return Scrape(body.decode())


async def wait_scrape(port, pred, what, headers=None, timeout=5):
    """Scrapes until pred(scrape) holds (within timeout seconds, scaled);
    returns that scrape."""
    last = [None]

    def probe():
        last[0] = scrape(port, headers)
        return last[0] if pred(last[0]) else None

    return await hh.async_wait_for(
        probe, t(timeout), what=lambda: "%s; last scrape:\n%s" % (
            what, last[0].text if last[0] else None))


def api_port(s):
    line = hh.wait_for(lambda: next((l for l in s.log_lines()
                                     if l.get("msg") == "API listening"), None),
                       t(5), what="the API listening line")
    return line["port"]


def test_exposition_format(server_factory):
    """Every family has HELP and TYPE, the families of docs/metrics.md are
    all there, and the histogram's buckets are cumulative."""
    s = server_factory()
    m = scrape(s.port)
    for name in ("herald_connections", "herald_connections_accepted",
                 "herald_connections_closed", "herald_subscriptions",
                 "herald_channels", "herald_publications_received",
                 "herald_publications_delivered", "herald_websocket_received_bytes",
                 "herald_websocket_sent_bytes", "herald_send_queue_overflows",
                 "herald_send_queue_dropped_bytes", "herald_errors",
                 "herald_mailbox_backlog", "herald_broker_up",
                 "herald_publish_fanout_seconds", "herald_api_requests",
                 "herald_info", "herald_workers", "herald_api_connections"):
        assert name in m.families, name
        assert m.families[name].documentation, name
    assert m.families["herald_publish_fanout_seconds"].type == "histogram"
    assert m.families["herald_connections_accepted"].type == "counter"
    assert m.families["herald_connections"].type == "gauge"
    assert m.value("herald_workers") == 2
    assert m.labels("herald_connections", "worker") == {"0": 0, "1": 0}
    assert m.value("herald_broker_up", broker="memory") == 1
    # no durable store configured: no store families
    assert "herald_store_up" not in m.families
    for line in m.text.splitlines():
        if line.startswith("# TYPE "):
            assert line.split()[3] in ("counter", "gauge", "histogram"), line
    # the main port keeps the connection for the next request
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=t(5))
    for _ in range(3):
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read()
        assert r.status == 200 and len(body) == int(r.getheader("Content-Length"))
        assert not r.will_close
        Scrape(body.decode())
    c.close()


async def test_publications_and_connections_counted(server_factory):
    """N publications to M subscribers: N received, N*M delivered, N
    latencies; M+1 connections accepted, then closed with the clients'
    code."""
    s = server_factory({"namespace_defaults": {"history_size": 0}})  # counters from 0
    n, m_subs = 7, 5
    ch = chan("m")
    subs = [await s.client() for _ in range(m_subs)]
    for c in subs:
        await c.ok("subscribe", channel=ch)
    pub = await s.client()
    for i in range(n):
        await pub.ok("publish", channel=ch, data={"i": i})
    for c in subs:
        got = await c.pubs(n)
        assert [p["data"]["i"] for p in got] == list(range(n))

    m = await wait_scrape(
        s.port, lambda m: m.value("herald_publications_delivered_total") == n * m_subs,
        "%d deliveries" % (n * m_subs))
    assert m.value("herald_publications_received_total", source="client") == n
    assert m.value("herald_publications_received_total", source="api") == 0
    assert m.value("herald_connections_accepted_total") == m_subs + 1
    assert m.value("herald_connections") == m_subs + 1
    assert m.value("herald_subscriptions") == m_subs
    assert m.value("herald_channels") == 1
    assert m.value("herald_publish_fanout_seconds_count") == n
    assert m.value("herald_publish_fanout_seconds_bucket", le="+Inf") == n
    buckets = [(float(x.labels["le"]), x.value) for x in m.samples
               if x.name == "herald_publish_fanout_seconds_bucket"]
    counts = [v for _, v in sorted(buckets)]
    assert counts == sorted(counts), buckets
    assert m.value("herald_publish_fanout_seconds_sum") > 0
    # payload bytes: at least every publish command in, every pub out
    assert m.value("herald_websocket_received_bytes_total") > n * len('"publish"')
    assert m.value("herald_websocket_sent_bytes_total") > n * m_subs * len('"pub"')
    assert m.value("herald_errors_total") == 0
    assert m.value("herald_connections_closed_total") == 0

    for c in subs:
        await c.close()          # close frame with 1000
    await pub.ws.close(code=1001)
    await pub.close()
    m = await wait_scrape(s.port, lambda m: m.value("herald_connections") == 0,
                          "every connection closed")
    assert m.labels("herald_connections_closed_total", "code") == {
        "1000": m_subs, "1001": 1}
    assert m.value("herald_subscriptions") == 0


async def test_errors_and_server_close_codes(server_factory):
    """Error replies by protocol code; a close the server chooses (4100), a
    socket dropped without a close frame ("none")."""
    s = server_factory({"token_secret": "s" * 32, "allow_anonymous": False})
    c = await s.client()
    assert (await c.error("connect", token="not-a-jwt"))["code"] == 101
    assert await c.wait_closed() == 4100
    raw = s.raw(subprotocol=hh.JSON_SUB)
    raw.send_json({"id": 1, "op": "ping"})
    assert raw.recv_msgs()[0]["error"]["code"] == 101   # connect first
    raw.send_json({"id": 2, "op": "nonsense"})
    assert raw.recv_msgs()[0]["error"]["code"] == 104   # the decoder's
    raw.sock.close()                                     # no close frame
    m = await wait_scrape(s.port, lambda m: m.value("herald_connections_closed_total") == 2,
                          "two connections closed")
    assert m.labels("herald_connections_closed_total", "code") == {"4100": 1, "none": 1}
    assert m.labels("herald_errors_total", "code") == {"101": 2, "104": 1}

    a = server_factory()
    c = await a.client()
    assert (await c.error("nonsense"))["code"] == 104
    await c.ok("subscribe", channel="x")
    assert (await c.error("subscribe", channel="x"))["code"] == 105
    assert (await c.error("subscribe", channel="nons:x"))["code"] == 102
    m = scrape(a.port)
    assert m.labels("herald_errors_total", "code") == {"102": 1, "104": 1, "105": 1}


async def test_api_listen_counts_requests(server_factory):
    """On api_listen: an API publish is received (source api), delivered,
    and counted under its route and status; 401 and 404 too. /metrics is
    served there, not on the main port."""
    s = server_factory({"api_listen": "127.0.0.1:0"}, env={"HERALD_API_KEY": API_KEY})
    port = api_port(s)
    auth = {"Authorization": "apikey " + API_KEY}
    ch = chan("api")
    sub = await s.client()
    await sub.ok("subscribe", channel=ch)
    r, body = get(port, "/api/v1/publish", dict(auth, **{"Content-Type": "application/json"}),
                  "POST", json.dumps({"channel": ch, "data": {"x": 1}}))
    assert r.status == 200, body
    assert (await sub.push("pub"))["data"] == {"x": 1}
    assert get(port, "/api/v1/info")[0].status == 401
    assert get(port, "/api/v1/nowhere", auth)[0].status == 404
    assert get(port, "/api/v1/info", auth)[0].status == 200

    m = await wait_scrape(port, lambda m: m.value("herald_publications_delivered_total") == 1,
                          "the API publication delivered")
    assert m.value("herald_publications_received_total", source="api") == 1
    assert m.value("herald_publications_received_total", source="client") == 0
    req = {(x.labels["route"], x.labels["status"]): x.value for x in m.samples
           if x.name == "herald_api_requests_total"}
    assert req == {("/api/v1/publish", "200"): 1, ("/api/v1/info", "401"): 1,
                   ("other", "404"): 1, ("/api/v1/info", "200"): 1}, req
    # the first scrape was counted once its answer was written
    m = scrape(port)
    assert m.value("herald_api_requests_total", route="/metrics", status="200") >= 1
    assert m.value("herald_api_connections") >= 0
    # the main port has no /metrics when api_listen is set
    assert get(s.port, "/metrics")[0].status == 404
    # /metrics takes no API key and GET only
    r, body = get(port, "/metrics", method="POST", body=b"",
                  headers={"Content-Type": "text/plain"})
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD", body


def test_metrics_off_is_404(server_factory):
    s = server_factory({"metrics": False})
    r, body = get(s.port, "/metrics")
    assert r.status == 404, body
    a = server_factory({"metrics": False, "api_listen": "127.0.0.1:0"},
                       env={"HERALD_API_KEY": API_KEY})
    r, body = get(api_port(a), "/metrics")
    assert r.status == 404, body
    assert json.loads(body)["error"]["code"] == 107
    # the rest of the API is unchanged
    r, _ = get(api_port(a), "/api/v1/info", {"Authorization": "apikey " + API_KEY})
    assert r.status == 200


def check_key(port):
    for headers in ({}, {"Authorization": "apikey " + "x" * 24},
                    {"Authorization": "apikey " + METRICS_KEY[:-1]},
                    {"Authorization": "Bearer " + METRICS_KEY},
                    {"Authorization": "apikey " + API_KEY}):
        r, body = get(port, "/metrics", headers)
        assert r.status == 401, (headers, body)
        assert r.getheader("WWW-Authenticate") == "apikey"
        assert b"herald_" not in body
    m = scrape(port, {"Authorization": "apikey " + METRICS_KEY})
    assert m.value("herald_workers") == 2


def test_metrics_key_on_the_main_port(server_factory):
    s = server_factory({"metrics_key": METRICS_KEY})
    check_key(s.port)
    assert METRICS_KEY not in s.stderr()


def test_metrics_key_on_api_listen_from_the_environment(server_factory):
    s = server_factory({"api_listen": "127.0.0.1:0"},
                       env={"HERALD_API_KEY": API_KEY, "HERALD_METRICS_KEY": METRICS_KEY})
    check_key(api_port(s))
    assert METRICS_KEY not in s.stderr()


def test_metrics_key_too_short_is_a_config_error(server_factory):
    s = server_factory({"metrics_key": "tiny-secret"}, start=False)
    s.port = hh.free_port()
    p = subprocess.run(s.command() + ["--check-config"], capture_output=True,
                       text=True, env=s.proc_env(), timeout=t(10))
    assert p.returncode == 2, p
    assert "key 'metrics_key': too short" in p.stderr
    assert "tiny-secret" not in p.stderr      # keys are never quoted back


async def test_slow_consumer_counted(server_factory):
    """A subscriber that does not read is closed with 4001: counted as an
    overflow, its queued bytes as dropped, its close under code 4001."""
    s = server_factory({"send_queue_max": 65536, "namespace_defaults": {"history_size": 0}})
    ch = chan("slow")
    raw = s.raw(subprotocol=hh.JSON_SUB, rcvbuf=4096)
    reply, _ = raw.call({"id": 1, "op": "subscribe", "channel": ch})
    assert "ok" in reply, reply
    # from now on `raw` reads nothing: the kernel's buffers fill, then its
    # send queue
    pub = await s.client()
    payload = "p" * 8192
    sent = 0
    while not scrape(s.port).value("herald_send_queue_overflows_total"):
        assert sent * len(payload) < 24 * 1024 * 1024, "no 4001 after %d bytes" % (
            sent * len(payload))
        replies = await pub.batch([("publish", {"channel": ch, "data": payload})] * 4)
        assert all("ok" in r for r in replies), replies
        sent += 4
    m = scrape(s.port)
    assert m.value("herald_send_queue_overflows_total") == 1
    assert m.value("herald_send_queue_dropped_bytes_total") > 0
    raw.close()
    await wait_scrape(
        s.port, lambda m: m.value("herald_connections_closed_total", code="4001") == 1,
        "the slow consumer's connection closed with 4001")


make_cluster = ch.cluster_factory_fixture()


async def test_cluster_broker_state_and_latency(make_cluster):
    """Two nodes on one Redis: publications made on node a and delivered on
    node b are received on a, delivered and timed (from their numbering)
    on b; the broker is up, then down on both when Redis stops."""
    cl = make_cluster({"namespace_defaults": {"history_size": 0}}, n=2)
    a, b = cl.nodes
    ch_name = chan("cl")
    sub = await b.client()
    await sub.ok("subscribe", channel=ch_name)
    pub = await a.client()
    n = 5
    for i in range(n):
        await pub.ok("publish", channel=ch_name, data=i)
    assert [p["data"] for p in await sub.pubs(n)] == list(range(n))
    mb = await wait_scrape(b.port, lambda m: m.value("herald_publish_fanout_seconds_count") == n,
                           "%d latencies on node b" % n)
    assert mb.value("herald_publications_delivered_total") == n
    assert mb.value("herald_broker_up", broker="redis") == 1
    assert mb.value("herald_broker_links_down") == 0
    ma = scrape(a.port)
    assert ma.value("herald_publications_received_total", source="client") == n
    assert mb.value("herald_publications_received_total", source="client") == 0
    cl.redis[0].stop()
    for node in (a, b):
        m = await wait_scrape(node.port, lambda m: m.value("herald_broker_up", broker="redis") == 0,
                              "the broker down on port %d" % node.port)
        assert m.value("herald_broker_links_down") > 0


@pytest.mark.timeout(90)
async def test_durable_store_state(server_factory, ferretdb):
    """With a durable store: it is up, publications to a durable namespace
    are written, nothing waits, nothing spilled; paused, it is down and
    what is published meanwhile waits or spills."""
    s = server_factory({
        "mongodb": ferretdb.uri("", serverSelectionTimeoutMS=1000,
                                connectTimeoutMS=1000, socketTimeoutMS=1000),
        "mongodb_spill_path": os.path.join(os.path.dirname(ferretdb.dir), "herald.spill"),
        "namespaces": [{"name": "d", "history_size": 10, "durable": True}],
    })
    c = await s.client()
    for i in range(4):
        await c.ok("publish", channel="d:x", data=i)
    m = await wait_scrape(s.port, lambda m: m.value("herald_store_written_total") == 4,
                          "4 publications written", timeout=15)
    assert m.value("herald_store_up") == 1
    assert m.value("herald_store_backlog") == 0
    assert m.value("herald_store_spilled_total") == 0
    assert m.value("herald_store_spill_bytes") == 0
    ferretdb.pause()
    try:
        for i in range(4, 8):
            await c.ok("publish", channel="d:x", data=i)
        m = await wait_scrape(s.port, lambda m: m.value("herald_store_up") == 0,
                              "the store failing while FerretDB is paused", timeout=20)
        assert m.value("herald_store_backlog") + m.value("herald_store_spilled_total") >= 1
    finally:
        ferretdb.resume()
    await wait_scrape(s.port, lambda m: m.value("herald_store_written_total") == 8 and
                      m.value("herald_store_up") == 1, "every publication written", timeout=30)
