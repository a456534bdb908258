"""Signed webhooks (docs/webhooks.md) against a local receiver: every event
with its fields and a valid signature (checked with the verifier of
docs/examples/webhook_receiver.py, which a tampered body fails), order per
channel, a retry after 500 with the same id, queue overflow, a receiver
that never answers, configuration errors, and the documented receivers
(Python and Node) run as programs."""

import asyncio
import importlib.util
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import herald_harness as hh
from herald_harness import chan, t

SECRET = "webhook-test-secret"
TOKEN_SECRET = "webhook-token-secret"
EXAMPLES = os.path.join(hh.REPO, "docs", "examples")
ALL_EVENTS = ["connect", "disconnect", "subscribe", "unsubscribe",
              "occupied", "vacated", "publication"]


def load_example():
    """The documented Python receiver as a module (its verify())."""
    os.environ.setdefault("HERALD_WEBHOOK_SECRET", SECRET)
    spec = importlib.util.spec_from_file_location(
        "webhook_receiver", os.path.join(EXAMPLES, "webhook_receiver.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


verify = load_example().verify


class Receiver:
    """An HTTP server on a thread that records every POST.

    answer(event) -> status decides each answer (default 204); `hang` makes
    every request wait until release() (a receiver that never answers)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.attempts = []        # every request: dict(headers, body, event, status)
        self.delivered = []       # the events answered 2xx, in arrival order
        self.answer = lambda ev: 204
        self.hang = threading.Event()
        self.released = threading.Event()
        rec = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ev = json.loads(body)
                if rec.hang.is_set():
                    with rec.lock:
                        rec.attempts.append(dict(headers=dict(self.headers), body=body,
                                                 event=ev, status=None, at=time.monotonic()))
                    rec.released.wait(t(60))
                    return      # no answer: the connection is dropped
                with rec.lock:
                    status = rec.answer(ev)
                    rec.attempts.append(dict(headers=dict(self.headers), body=body,
                                             event=ev, status=status, at=time.monotonic()))
                    if 200 <= status < 300:
                        rec.delivered.append(ev)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d/herald" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def events(self, **match):
        with self.lock:
            return [e for e in self.delivered
                    if all(e.get(k) == v for k, v in match.items())]

    def release(self):
        self.released.set()

    def close(self):
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def config(receiver, **extra):
    cfg = {
        "token_secret": TOKEN_SECRET,
        "webhooks": [{"url": receiver.url, "events": ALL_EVENTS}],
        "webhook_secret": SECRET,
        "webhook_drain_ms": 500,
        "namespaces": [{"name": "pubs", "publication_webhook": True,
                        "history_size": 1000},
                       {"name": "quiet"},
                       {"name": "priv", "private": True}],
    }
    cfg.update(extra)
    return cfg


async def user(node, name):
    c = await node.client()
    cid = (await c.ok("connect", token=hh.make_jwt(TOKEN_SECRET, sub=name)))["client"]
    return c, cid


def metric(server, name):
    status, body = hh.http_get(server.port, "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError("no %s in /metrics" % name)


async def wait_events(receiver, n, timeout=None, **match):
    await hh.async_wait_for(lambda: len(receiver.events(**match)) >= n,
                            timeout or t(10), what="%d %r events" % (n, match))
    return receiver.events(**match)


def check_signed(attempt):
    h = {k.lower(): v for k, v in attempt["headers"].items()}
    assert h["content-type"] == "application/json"
    assert h["herald-event-id"] == attempt["event"]["id"]
    assert verify(SECRET.encode(), h["herald-signature"], attempt["body"])
    return h


async def test_every_event_signed_with_its_fields(server_factory, receiver):
    server = server_factory(config(receiver))
    ch = chan("pubs:")
    c = await server.client()
    ok = await c.ok("connect", token=hh.make_jwt(TOKEN_SECRET, sub="alice",
                                                 info={"name": "Alice"}))
    cid = ok["client"]
    await c.ok("subscribe", channel=ch)
    pub = await c.ok("publish", channel=ch, data={"text": "hi", "n": [1, 2]})
    await c.ok("unsubscribe", channel=ch)
    await c.close()
    await wait_events(receiver, 1, event="disconnect", client=cid)
    await wait_events(receiver, 1, event="vacated", channel=ch)

    got = {e["event"]: e for e in receiver.events()
           if e.get("client") == cid or e.get("channel") == ch}
    assert sorted(got) == sorted(ALL_EVENTS)
    for e in got.values():
        assert re.fullmatch(r"[0-9a-f]{32}", e["id"])
        assert isinstance(e["time"], int) and abs(e["time"] / 1000 - time.time()) < 60
        assert e["node"]
    assert got["connect"]["user"] == "alice"
    assert got["connect"]["info"] == {"name": "Alice"}
    assert got["subscribe"]["user"] == "alice" and got["subscribe"]["client"] == cid
    assert got["unsubscribe"]["reason"] == "client"
    assert got["disconnect"]["user"] == "alice"
    assert got["disconnect"]["code"] in (1000, 1005)
    p = got["publication"]
    assert p["data"] == {"text": "hi", "n": [1, 2]}
    assert p["offset"] == pub["offset"] and p["epoch"] == pub["epoch"]
    assert p["info"] == {"client": cid, "user": "alice"}
    assert set(got["occupied"]) == {"id", "event", "time", "node", "channel"}

    # the channel's events in the order they happened
    order = [e["event"] for e in receiver.events(channel=ch)]
    assert order == ["occupied", "subscribe", "publication", "unsubscribe", "vacated"]

    ids = set()
    for a in receiver.attempts:
        check_signed(a)
        ids.add(a["event"]["id"])
    assert len(ids) == len(receiver.attempts)       # no repeats without failures
    # The verifier really checks: a changed byte, an old or a wrong secret fail.
    a = receiver.attempts[0]
    sig = {k.lower(): v for k, v in a["headers"].items()}["herald-signature"]
    tampered = a["body"].replace(b'"event":"', b'"event":"x', 1)
    assert tampered != a["body"]
    assert not verify(SECRET.encode(), sig, tampered)
    assert not verify(b"another secret", sig, a["body"])
    ts = int(sig.split(",")[0][2:])
    assert not verify(SECRET.encode(), sig, a["body"], now=ts + 3600)
    assert metric(server, "herald_webhook_events_sent_total") >= len(receiver.attempts)


API_KEY = "webhook-test-api-key-0123456789"


def api_publish(server, channel, data):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=t(5))
    conn.request("POST", "/api/v1/publish",
                 body=json.dumps({"channel": channel, "data": data}),
                 headers={"Authorization": "apikey " + API_KEY,
                          "Content-Type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, body
    return json.loads(body)


async def test_publications_only_where_the_namespace_opts_in(server_factory, receiver):
    server = server_factory(config(receiver, api_keys=[{"name": "b", "key": API_KEY}]))
    c = await server.client()
    await c.ok("connect")
    quiet, loud = chan("quiet:"), chan("pubs:")
    await c.ok("publish", channel=quiet, data=1)
    await c.ok("publish", channel=loud, data=2)
    api_publish(server, quiet, 3)
    r = api_publish(server, loud, {"from": "api"})
    await wait_events(receiver, 2, event="publication", channel=loud)
    await asyncio.sleep(0.2)
    assert receiver.events(event="publication", channel=quiet) == []
    e = receiver.events(event="publication", channel=loud)[1]
    assert e["data"] == {"from": "api"} and e["offset"] == r["offset"] == 2
    assert "info" not in e           # no client publisher


async def test_server_unsubscribe_and_disconnect_reasons(server_factory, receiver):
    server = server_factory(config(receiver))
    c = await server.client()
    cid = (await c.ok("connect"))["client"]
    ch = chan("quiet:")
    await c.ok("subscribe", channel=ch)
    await c.close()
    e = (await wait_events(receiver, 1, event="unsubscribe", client=cid))[0]
    assert e["reason"] == "disconnect" and e["user"] == ""
    await wait_events(receiver, 1, event="disconnect", client=cid)


async def test_channel_token_expiry_is_a_server_unsubscribe(server_factory, receiver):
    server = server_factory(config(receiver))
    c, cid = await user(server, "carl")
    ch = chan("priv:")
    token = hh.make_jwt(TOKEN_SECRET, sub="carl", exp=int(time.time()) + 2,
                        extra={"channel": ch})
    await c.ok("subscribe", channel=ch, token=token)
    await c.push("unsubscribe", timeout=t(10))
    e = (await wait_events(receiver, 1, event="unsubscribe", client=cid))[0]
    assert e["reason"] == "server" and e["user"] == "carl" and e["channel"] == ch
    await wait_events(receiver, 1, event="vacated", channel=ch)


async def test_shutdown_gives_queued_events_drain_ms_then_drops(server_factory, receiver):
    receiver.hang.set()
    server = server_factory(config(receiver, webhook_drain_ms=300,
                                   webhook_timeout_ms=60000))
    for _ in range(3):
        c = await server.client()
        await c.ok("connect")
    await hh.async_wait_for(lambda: len(receiver.attempts) >= 1, t(5),
                            what="a POST in flight")
    started = time.monotonic()
    server.stop(timeout=t(10))
    assert time.monotonic() - started < t(8)     # not the 60 s POST timeout
    lines = [json.loads(l) for l in server.stderr().splitlines() if l.startswith("{")]
    drop = [l for l in lines if l["msg"] == "webhook events dropped at shutdown"]
    assert drop and drop[0]["deliveries"] >= 3, lines[-5:]


def assert_in_order(pubs, n_expected):
    """Per channel: offsets 1..n once each, in order."""
    by = {}
    for e in pubs:
        by.setdefault(e["channel"], []).append(e["offset"])
    for ch, offs in by.items():
        assert offs == list(range(1, len(offs) + 1)), (ch, offs)
        assert len(offs) == n_expected, (ch, len(offs))
    return by


async def test_order_per_channel_with_many_publishers(server_factory, receiver):
    server = server_factory(config(receiver))
    chans = [chan("pubs:") for _ in range(3)]
    clients = []
    for _ in range(4):
        c = await server.client()
        await c.ok("connect")
        clients.append(c)
    per = 40

    async def publish_all(c, k):
        for i in range(per):
            await asyncio.gather(*(c.ok("publish", channel=ch, data={"c": k, "i": i})
                                   for ch in chans))

    await asyncio.gather(*(publish_all(c, k) for k, c in enumerate(clients)))
    await wait_events(receiver, 3 * 4 * per, timeout=t(30), event="publication")
    assert_in_order(receiver.events(event="publication"), 4 * per)
    # each client's own publications are in its sending order too
    for ch in chans:
        for k in range(4):
            seq = [e["data"]["i"] for e in receiver.events(event="publication", channel=ch)
                   if e["data"]["c"] == k]
            assert seq == list(range(per))


async def test_500_once_is_retried_with_the_same_id_in_order(server_factory, receiver):
    failed = set()

    def answer(ev):
        # the first attempt of every 5th publication fails
        if ev["event"] == "publication" and ev["offset"] % 5 == 1 and ev["id"] not in failed:
            failed.add(ev["id"])
            return 500
        return 204

    receiver.answer = answer
    server = server_factory(config(receiver))
    c = await server.client()
    await c.ok("connect")
    chans = [chan("pubs:") for _ in range(2)]
    for i in range(20):
        for ch in chans:
            await c.ok("publish", channel=ch, data=i)
    await wait_events(receiver, 40, timeout=t(30), event="publication")
    assert_in_order(receiver.events(event="publication"), 20)
    assert len(failed) == 8
    # each failed id came again, the same body, after its failure
    for fid in failed:
        tries = [a for a in receiver.attempts if a["event"]["id"] == fid]
        assert [a["status"] for a in tries] == [500, 204]
        assert tries[0]["body"] == tries[1]["body"]
        h = check_signed(tries[1])
        assert h["herald-event-id"] == fid
        assert tries[1]["at"] - tries[0]["at"] >= 0.1    # backoff (250 ms, jitter)
    assert metric(server, "herald_webhook_attempts_failed_total") == 8


async def test_queue_overflow_drops_and_counts_while_clients_are_served(
        server_factory, receiver):
    receiver.hang.set()
    server = server_factory(config(receiver, webhook_queue_max=5,
                                   webhook_timeout_ms=60000))
    c = await server.client()
    await c.ok("connect")
    ch = chan("pubs:")
    for i in range(50):
        await c.ok("publish", channel=ch, data=i)      # every publish answered
    dropped = 'herald_webhook_events_dropped_total{reason="queue_full"}'
    assert metric(server, dropped) >= 40
    assert metric(server, "herald_webhook_queue_depth") == 5
    assert any("webhook queue full" in l for l in server.stderr().splitlines())
    # a client is still served at once
    d = await server.client()
    await d.ok("connect")
    await d.ok("subscribe", channel=chan("quiet:"))


async def test_hanging_receiver_never_blocks_the_server(server_factory, receiver):
    receiver.hang.set()
    server = server_factory(config(receiver, webhook_timeout_ms=500,
                                   webhook_max_attempts=3))
    c = await server.client()
    cid = (await c.ok("connect"))["client"]
    # other clients are served while the connect event hangs
    for _ in range(10):
        d = await server.client()
        await d.ok("connect")
        await d.ok("publish", channel=chan("quiet:"), data=1)
        await d.close()
    # the connect event is tried again after webhook_timeout_ms, same id
    await hh.async_wait_for(
        lambda: len([a for a in receiver.attempts
                     if a["event"].get("client") == cid and a["event"]["event"] == "connect"]) >= 2,
        t(10), what="the connect event retried")
    tries = [a for a in receiver.attempts
             if a["event"].get("client") == cid and a["event"]["event"] == "connect"]
    assert tries[0]["event"]["id"] == tries[1]["event"]["id"]
    assert tries[1]["at"] - tries[0]["at"] >= 0.5
    await hh.async_wait_for(
        lambda: metric(server, 'herald_webhook_events_dropped_total{reason="attempts"}') >= 1,
        t(15), what="an event dropped after 3 attempts")


def test_config_errors_name_the_key_and_line(tmp_path):
    def check(text, *expect):
        p = tmp_path / "h.conf"
        p.write_text(text)
        r = subprocess.run([hh.HERALD_BIN, "--config", str(p), "--check"],
                           capture_output=True, text=True, timeout=t(10),
                           env={k: v for k, v in os.environ.items()
                                if not k.startswith("HERALD_")})
        assert r.returncode == 2, r
        for e in expect:
            assert e in r.stderr, r.stderr
        return r.stderr

    check('webhook_secret = "s";\nwebhooks = (\n { url = "http://x/"; '
          'events = ["connect", "joined"]; }\n);\n',
          ":3: key 'webhooks[0].events[1]'", "unknown event 'joined'")
    check('webhooks = ( { url = "http://x/"; } );\n',
          "key 'webhooks'", "webhook_secret")
    check('webhook_secret = "s";\nwebhooks = ( { url = "ftp://x/"; } );\n',
          "webhooks[0].url")
    err = check('webhook_secret = "sekrit-value";\nwebhooks = ( { url = "http://x/"; '
                'events = []; } );\n', "webhooks[0].events")
    assert "sekrit-value" not in err
    check('webhook_secret = "s";\nwebhooks = (' +
          ",".join(['{ url = "http://x/"; }'] * 9) + ");\n", "at most 8")


def function_text(text, start):
    """The lines of a function: from the line starting with `start` to the
    first line back at indentation 0 (or the end)."""
    lines = text.splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith(start))
    out = [lines[i]]
    for l in lines[i + 1:]:
        if l and not l[0].isspace():
            if l.startswith("}"):
                out.append(l)
            break
        out.append(l)
    return "\n".join(out).rstrip()


def test_webhooks_md_shows_the_examples_verifiers():
    with open(os.path.join(hh.REPO, "docs", "webhooks.md"), encoding="utf-8") as f:
        md = f.read()
    for name, start in (("webhook_receiver.py", "def verify("),
                        ("webhook_receiver.mjs", "export function verify(")):
        with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
            src = function_text(f.read(), start)
        assert function_text(md, start) == src, \
            "docs/webhooks.md does not show verify() of docs/examples/%s as it is" % name


def example_env(port):
    return dict(os.environ, HERALD_WEBHOOK_SECRET=SECRET, PORT=str(port))


def run_example(cmd, port):
    p = subprocess.Popen(cmd, env=example_env(port), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in p.stdout], daemon=True).start()
    assert lines.get(timeout=t(10)).strip() == "listening"
    return p, lines


@pytest.mark.parametrize("lang", ["python", "node"])
async def test_documented_receivers_verify_and_print(server_factory, lang):
    if lang == "python":
        cmd = [sys.executable, os.path.join(EXAMPLES, "webhook_receiver.py")]
    else:
        node = shutil.which("node")
        if not node:
            pytest.skip("node is not installed (scripts/deps.sh test installs nodejs)")
        cmd = [node, os.path.join(EXAMPLES, "webhook_receiver.mjs")]
    port = hh.free_port()
    p, lines = run_example(cmd, port)
    try:
        server = server_factory({
            "webhooks": [{"url": "http://127.0.0.1:%d/" % port,
                          "events": ["connect", "subscribe"]}],
            "webhook_secret": SECRET,
        })
        c = await server.client()
        cid = (await c.ok("connect"))["client"]
        await c.ok("subscribe", channel="news")
        got = []
        while len(got) < 2:
            line = await asyncio.get_running_loop().run_in_executor(
                None, lambda: lines.get(timeout=t(10)))
            got.append(json.loads(line))
        # (different keys: the client's and the channel's lanes, no order
        # between them)
        assert sorted(e["event"] for e in got) == ["connect", "subscribe"]
        assert all(e["client"] == cid for e in got)
        # a forged POST is refused by the example
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=t(5))
        conn.request("POST", "/", body=b'{"id":"x","event":"connect"}',
                     headers={"Herald-Signature": "t=%d,v1=%s" % (time.time(), "0" * 64),
                              "Content-Type": "application/json"})
        assert conn.getresponse().status == 401
    finally:
        p.kill()
        p.wait()


# --------------------------------------------------------------------------
# cluster: occupied/vacated once per channel across nodes; a killed node's
# vacated and disconnect events made by a surviving node

import cluster_harness as ch  # noqa: E402

make_cluster = ch.cluster_factory_fixture()


def cluster_config(receiver, presence_ttl=2):
    return dict(config(receiver), presence_ttl=presence_ttl)


async def test_cluster_occupied_and_vacated_once_per_channel(make_cluster, receiver):
    cl = make_cluster(cluster_config(receiver), n=2)
    a, b = cl
    x, y = chan("quiet:"), chan("quiet:")
    # a publication with subscribers on both nodes: one event, from the
    # publisher's node
    p = chan("pubs:")
    sa, _ = await user(a, "sal")
    sb, _ = await user(b, "sam")
    await sa.ok("subscribe", channel=p)
    await sb.ok("subscribe", channel=p)
    await sa.ok("publish", channel=p, data={"once": True})
    await sb.pubs(1)
    pe = (await wait_events(receiver, 1, event="publication", channel=p))[0]
    assert pe["node"] == "node-a" and pe["offset"] == 1
    ca, _ = await user(a, "ann")
    cb, _ = await user(b, "bob")
    cb2, _ = await user(b, "bea")
    await ca.ok("subscribe", channel=x)
    await wait_events(receiver, 1, event="occupied", channel=x)
    await cb.ok("subscribe", channel=x)
    await cb2.ok("subscribe", channel=x)
    await cb.ok("subscribe", channel=y)
    await wait_events(receiver, 3, event="subscribe", channel=x)
    await wait_events(receiver, 1, event="occupied", channel=y)
    await ca.ok("unsubscribe", channel=x)
    await cb.ok("unsubscribe", channel=x)
    await wait_events(receiver, 2, event="unsubscribe", channel=x)
    await asyncio.sleep(0.3)
    assert receiver.events(event="vacated", channel=x) == []   # bea is still there
    await cb2.ok("unsubscribe", channel=x)
    await cb.ok("unsubscribe", channel=y)
    await wait_events(receiver, 1, event="vacated", channel=x)
    await wait_events(receiver, 1, event="vacated", channel=y)
    # and again: a new first subscriber, on the other node
    await cb.ok("subscribe", channel=x)
    await wait_events(receiver, 2, event="occupied", channel=x)
    await cb.ok("unsubscribe", channel=x)
    await wait_events(receiver, 2, event="vacated", channel=x)
    await asyncio.sleep(0.5)
    assert len(receiver.events(event="publication", channel=p)) == 1
    assert len(receiver.events(event="occupied", channel=x)) == 2
    assert len(receiver.events(event="vacated", channel=x)) == 2
    assert len(receiver.events(event="occupied", channel=y)) == 1
    assert len(receiver.events(event="vacated", channel=y)) == 1
    # In a cluster, occupied is decided in Redis after the owner counted the
    # subscriber: it may come after that subscribe (docs/webhooks.md);
    # vacated still comes after the last unsubscribe.
    order = [e["event"] for e in receiver.events(channel=y)]
    assert sorted(order[:2]) == ["occupied", "subscribe"], order
    assert order[2:] == ["unsubscribe", "vacated"], order


@pytest.mark.parametrize("redis_names", [("redis",), ("redis", "redis2")],
                         ids=["one-redis", "two-redis"])
async def test_cluster_killed_node_gets_vacated_and_disconnect_from_another(
        make_cluster, receiver, redis_names):
    cl = make_cluster(cluster_config(receiver), n=2, redis_names=redis_names)
    a, b = cl
    shared, only_b = chan("quiet:"), chan("quiet:")
    ca, aid = await user(a, "ann")
    cb, bid = await user(b, "bob")
    cb2, b2id = await user(b, "bea")
    await ca.ok("subscribe", channel=shared)
    await cb.ok("subscribe", channel=shared)
    await cb.ok("subscribe", channel=only_b)
    await cb2.ok("subscribe", channel=only_b)
    await wait_events(receiver, 1, event="occupied", channel=only_b)
    await wait_events(receiver, 2, event="subscribe", channel=shared)
    b_name = next(e["node"] for e in receiver.events(event="connect", client=bid))
    a_name = next(e["node"] for e in receiver.events(event="connect", client=aid))
    assert a_name != b_name
    b.kill()
    killed_at = time.monotonic()
    # within the lease (presence_ttl = 2 s) and a renewal, node A makes them
    for cid, name in ((bid, "bob"), (b2id, "bea")):
        e = (await wait_events(receiver, 1, timeout=t(15), event="disconnect",
                               client=cid))[0]
        assert e["node"] == a_name and e["user"] == name and e["code"] == 1006
    v = (await wait_events(receiver, 1, timeout=t(15), event="vacated",
                           channel=only_b))[0]
    assert v["node"] == a_name
    assert time.monotonic() - killed_at >= 1.5       # not before the lease expired
    await asyncio.sleep(1.5)                         # more reaping rounds: nothing twice
    assert len(receiver.events(event="vacated", channel=only_b)) == 1
    assert len(receiver.events(event="disconnect", client=bid)) == 1
    assert receiver.events(event="vacated", channel=shared) == []   # ann is still there
    await ca.ok("unsubscribe", channel=shared)
    await wait_events(receiver, 1, event="vacated", channel=shared)
    assert len(receiver.events(event="occupied", channel=shared)) == 1
    # the dead node's keys are gone from every Redis server
    def b_keys():
        return [k for r in cl.redis for k in r.keys("herald:!hk:*")
                if b_name.encode() in (k if isinstance(k, bytes) else k.encode())]
    await hh.async_wait_for(lambda: not b_keys(), t(10), what="node B's keys reaped")


async def test_cluster_reaps_more_than_one_batch(make_cluster, receiver):
    """A dead node with more clients and channels than one reap call takes
    (REDIS_REAP_BATCH = 512): every one of them gets its event, once."""
    cl = make_cluster(dict(cluster_config(receiver),
                           webhooks=[{"url": receiver.url,
                                      "events": ["disconnect", "vacated"]}]), n=2)
    a, b = cl
    n = 400
    clients, chans = [], []

    async def one(i):
        c = await b.client()
        cid = (await c.ok("connect"))["client"]
        ch_ = "quiet:reap-%d-%s" % (i, hh.chan())
        await c.ok("subscribe", channel=ch_)
        clients.append(cid)
        chans.append(ch_)

    for k in range(0, n, 50):
        await asyncio.gather(*(one(i) for i in range(k, k + 50)))
    b.kill()
    await hh.async_wait_for(
        lambda: len(receiver.events(event="disconnect")) >= n and
        len(receiver.events(event="vacated")) >= n, t(30),
        what="%d disconnect and %d vacated events" % (n, n))
    await asyncio.sleep(1.5)
    assert sorted(e["client"] for e in receiver.events(event="disconnect")) == sorted(clients)
    assert sorted(e["channel"] for e in receiver.events(event="vacated")) == sorted(chans)
    reaps = [l for l in a.stderr().splitlines() if "lease expired" in l]
    assert len(reaps) >= 2, reaps          # more than one call


async def test_cluster_redis_losing_its_data_keeps_the_clients_known(make_cluster, receiver):
    """Redis restarted empty: each member writes its lease and clients again
    when its link is up, so a node killed afterwards still gets its clients'
    disconnect events from another node."""
    cl = make_cluster(cluster_config(receiver), n=2)
    a, b = cl
    redis = cl.redis[0]
    idle, iid = await user(b, "ida")

    def b_clients():
        out = set()
        for k in redis.keys("herald:!hk:node-b.*:clients"):
            out |= {x.decode() for x in redis.command("HKEYS", k)}
        return out

    await hh.async_wait_for(lambda: iid in b_clients(), t(5), what="ida in Redis")
    redis.kill()
    redis.wipe()
    await asyncio.to_thread(redis.start)
    for node in cl:
        await hh.async_wait_for(lambda: ch.broker_up(node), t(12), what="broker up")
    await hh.async_wait_for(lambda: iid in b_clients(), t(5),
                            what="ida written again after Redis lost its data")
    b.kill()
    e = (await wait_events(receiver, 1, timeout=t(15), event="disconnect", client=iid))[0]
    assert e["node"] == "node-a" and e["user"] == "ida" and e["code"] == 1006
