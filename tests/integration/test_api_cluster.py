"""The server API in cluster mode (docs/api.md): a publication made
through one node's API reaches WebSocket subscribers on another node, and
channels, disconnect and info ask every worker of every node through
Redis (broker/redis/control.c) and merge their answers."""

import asyncio
import json

import pytest

import cluster_harness as ch
import herald_harness as hh
from herald_harness import t
from test_api_listen import AUTH, JSON_AUTH, KEY, api_port, call

SECRET = "c" * 32
CONFIG = {"api_listen": "127.0.0.1:0", "token_secret": SECRET, "allow_anonymous": True,
          "namespaces": [{"name": "h", "history_size": 10}]}

cluster_factory = ch.cluster_factory_fixture()
_native_tracebacks = ch.native_tracebacks_fixture()


@pytest.fixture
def two(cluster_factory):
    cl = cluster_factory(CONFIG, n=2, env={"HERALD_API_KEY": KEY})
    for node in cl.nodes:
        node.api = api_port(node)
    return cl


def api(node, method, path, body=None):
    return asyncio.to_thread(call, node.api, method, path,
                             JSON_AUTH if body is not None else AUTH,
                             None if body is None else json.dumps(body))


async def test_publish_reaches_subscribers_on_another_node(two):
    a, b = two.nodes
    ch_ = hh.chan("h:")
    sub = await b.client()
    await sub.ok("subscribe", channel=ch_)
    offsets = []
    for i in range(5):
        r, doc = await api(a, "POST", "/api/v1/publish", {"channel": ch_, "data": {"i": i}})
        assert r.status == 200, doc
        offsets.append(doc["offset"])
    got = await sub.pubs(5, timeout=t(10))
    assert [p["offset"] for p in got] == offsets == [1, 2, 3, 4, 5]
    assert [p["data"]["i"] for p in got] == list(range(5))
    r, doc = await api(b, "POST", "/api/v1/broadcast", {"channels": [ch_], "data": "x"})
    assert doc["results"][0]["offset"] == 6, doc
    r, doc = await api(b, "GET", "/api/v1/history?channel=" + ch_)
    assert [p["offset"] for p in doc["publications"]] == [1, 2, 3, 4, 5, 6]


async def test_channels_counts_this_node_and_the_cluster(two):
    a, b = two.nodes
    base = hh.chan("cc-")
    for node, n in ((a, 2), (b, 3)):
        for _ in range(n):
            c = await node.client()
            await c.ok("subscribe", channel=base + "x")
    only_b = await b.client()
    await only_b.ok("subscribe", channel=base + "y")
    r, doc = await api(a, "GET", "/api/v1/channels?prefix=" + base)
    assert r.status == 200, doc
    assert doc == {"channels": [
        {"channel": base + "x", "subscribers": 2, "cluster_subscribers": 5},
        {"channel": base + "y", "subscribers": 0, "cluster_subscribers": 1}],
        "truncated": False}
    r, doc = await api(b, "GET", "/api/v1/channels?limit=1&prefix=" + base)
    assert doc == {"channels": [{"channel": base + "x", "subscribers": 3,
                                 "cluster_subscribers": 5}], "truncated": True}
    r, doc = await api(b, "GET", "/api/v1/channels?limit=1&prefix=%s&after=%sx" % (base, base))
    assert doc["channels"] == [{"channel": base + "y", "subscribers": 1,
                                "cluster_subscribers": 1}]


async def test_disconnect_reaches_every_node(two):
    a, b = two.nodes
    user = "u-" + hh.chan()
    mine = []
    for node in (a, b, b):
        c = await node.client()
        await c.ok("connect", token=hh.make_jwt(SECRET, sub=user))
        mine.append(c)
    other = await a.client()
    await other.ok("connect", token=hh.make_jwt(SECRET, sub="someone-else"))
    r, doc = await api(a, "POST", "/api/v1/disconnect", {"user": user})
    assert r.status == 200 and doc == {"disconnected": 3, "nodes": 2}, doc
    for c in mine:
        assert await c.wait_closed(timeout=t(5)) == 4102
    assert (await other.ok("publish", channel=hh.chan("z-"), data=1))["offset"] == 1


async def test_info_lists_every_node(two):
    a, b = two.nodes
    await a.client()
    r, doc = await api(b, "GET", "/api/v1/info")
    assert r.status == 200, doc
    assert doc["broker"] == "up" and doc["workers"] == 2
    assert [n["node"] for n in doc["nodes"]] == sorted(n["node"] for n in doc["nodes"])
    assert len({n["node"] for n in doc["nodes"]}) == 2
    assert doc["node"] in [n["node"] for n in doc["nodes"]]
    here = [n for n in doc["nodes"] if n["node"] == doc["node"]][0]
    assert here["connections"] == 0 and doc["connections"] == 0
    there = [n for n in doc["nodes"] if n["node"] != doc["node"]][0]
    assert there["connections"] == 1, doc
    assert all(n["broker"] == "up" and n["version"] == doc["version"] for n in doc["nodes"])


async def test_asks_need_the_broker(two):
    """With Redis gone, an ask of every node cannot be made: 503 / 108,
    at once; publish is refused the same way (never a hang)."""
    a, _ = two.nodes
    two.redis[0].stop()
    await hh.async_wait_for(lambda: not ch.broker_up(a), t(10), what="broker down")
    for path in ("/api/v1/channels", "/api/v1/info"):
        r, doc = await api(a, "GET", path)
        assert (r.status, doc["error"]["code"]) == (503, 108), (path, doc)
    r, doc = await api(a, "POST", "/api/v1/disconnect", {"user": "x"})
    assert (r.status, doc["error"]["code"]) == (503, 108), doc


async def test_an_owner_that_cannot_answer_in_time_gives_504(cluster_factory):
    """Redis stalls (SIGSTOP): a publish waits on it, and after
    api_timeout_ms the call answers 504 / 108 ("may have been made") and
    closes; the late reply after Redis resumes is dropped, and the node
    serves the API again."""
    cl = cluster_factory(dict(CONFIG, api_timeout_ms=300, redis_timeout_ms=8000), n=1,
                         env={"HERALD_API_KEY": KEY})
    node = cl.nodes[0]
    node.api = api_port(node)
    ch_ = hh.chan("h:")
    r, doc = await api(node, "POST", "/api/v1/publish", {"channel": ch_, "data": 0})
    assert r.status == 200, doc
    cl.redis[0].pause()
    try:
        r, doc = await api(node, "POST", "/api/v1/publish", {"channel": ch_, "data": 1})
        assert (r.status, doc["error"]["code"]) == (504, 108), doc
        assert "may have been made" in doc["error"]["message"]
        assert r.getheader("Connection") == "close"
    finally:
        cl.redis[0].resume()
    # the stalled publication went through once Redis resumed; the next
    # one follows it
    r, doc = await api(node, "POST", "/api/v1/publish", {"channel": ch_, "data": 2})
    assert r.status == 200 and doc["offset"] == 3, doc
