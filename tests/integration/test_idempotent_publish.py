"""Idempotent publish (issue 12, docs/api-design.md "Idempotent
publish"): a publication with an `idempotency_key` repeated on the same
channel inside `idempotency_window` is answered with the first
publication's offset and epoch ("duplicate": true) and delivers nothing
again, through the server API and the client `publish` op, on one node,
across the two nodes of a cluster (the Redis publish script), and after a
restart with a durable namespace (the key is in the stored document).

"Delivers nothing again" is checked without waiting for silence: after
the repeats a marker publication follows on the same channel, and a
subscriber gets exactly the first publication and then the marker
(a channel's publications arrive in offset order).
"""

import asyncio
import hashlib
import http.client
import json
import os

import msgpack
import pytest

import cluster_harness as chh
import herald_harness as hh
from ferret_harness import ferretdb  # noqa: F401 (fixture)
from herald_harness import t

KEY = "k" * 32
AUTH = {"Authorization": "apikey " + KEY}
JSON_AUTH = dict(AUTH, **{"Content-Type": "application/json"})
MP_AUTH = dict(AUTH, **{"Content-Type": "application/msgpack"})

make_cluster = chh.cluster_factory_fixture()


def api_port(s):
    line = hh.wait_for(lambda: next((l for l in s.log_lines()
                                     if l.get("msg") == "API listening"), None),
                       t(5), what="the API listening line")
    return line["port"]


def api_env():
    e = {"HERALD_API_KEY": KEY}
    if hh.SANITIZE:
        e["ASAN_OPTIONS"] = hh.ASAN_SMALL_QUARANTINE   # a memory bound is measured
    return e


@pytest.fixture
def api(server_factory):
    """A herald with api_listen and one key; (server, port)."""
    def make(config=None, **kw):
        cfg = {"api_listen": "127.0.0.1:0", "namespace_defaults": {"history_size": 10}}
        cfg.update(config or {})
        s = server_factory(cfg, env=api_env(), **kw)
        return s, api_port(s)
    return make


def post(port, body, mp=False):
    """POST /api/v1/publish (a dict body: JSON or msgpack; bytes: as is)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=t(5))
    if isinstance(body, dict):
        body = msgpack.packb(body) if mp else json.dumps(body)
    c.request("POST", "/api/v1/publish", body=body, headers=MP_AUTH if mp else JSON_AUTH)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data) if data else None


async def apost(port, body, mp=False):
    return await asyncio.to_thread(post, port, body, mp)


async def delivered_once(sub, first, marker):
    """The subscriber gets `first` and then `marker`, nothing between."""
    got = await sub.pubs(2, timeout=t(5))
    assert [(p["offset"], p["data"]) for p in got] == [first, marker], got


def rss_kib(s):
    with open("/proc/%d/status" % s.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ---- one node ---------------------------------------------------------------

async def test_api_repeat_answers_the_first_and_delivers_once(api):
    s, port = api()
    ch = hh.chan("idem-")
    sub = await s.client()
    await sub.ok("subscribe", channel=ch)
    st, first = await apost(port, {"channel": ch, "data": {"n": 1}, "idempotency_key": "order-1"})
    assert st == 200 and set(first) == {"offset", "epoch"}, first
    # the same again, in JSON and in msgpack (same data: same publication)
    for mp in (False, True, False):
        st, doc = await apost(port, {"channel": ch, "data": {"n": 1},
                                     "idempotency_key": "order-1"}, mp=mp)
        assert st == 200 and doc == dict(first, duplicate=True), doc
    # another key, or none, publishes
    st, marker = await apost(port, {"channel": ch, "data": "marker", "idempotency_key": "order-2"})
    assert st == 200 and marker["offset"] == first["offset"] + 1, marker
    await delivered_once(sub, (first["offset"], {"n": 1}), (marker["offset"], "marker"))
    hist = await sub.ok("history", channel=ch)
    assert [p["offset"] for p in hist["publications"]] == [1, 2]
    # a key is per channel
    st, other = await apost(port, {"channel": ch + "x", "data": {"n": 1}, "idempotency_key": "order-1"})
    assert st == 200 and other["offset"] == 1 and "duplicate" not in other, other


@pytest.mark.parametrize("enc", ["json", "msgpack"])
async def test_client_op_repeat(api, enc):
    """The client publish op takes idempotency_key (protocol v1 addition):
    a repeat's reply carries the first offset and epoch and duplicate:true,
    from the same connection or another of the same user (a retry after a
    reconnect). Keys are the publisher's own: the same key from the API
    (or another user) is another publication."""
    s, port = api()
    ch = hh.chan("idem-")
    sub = await s.client()
    await sub.ok("subscribe", channel=ch)
    c = await s.client(enc)
    first = await c.ok("publish", channel=ch, data=[1, "x"], idempotency_key="k:1/")
    assert set(first) == {"offset", "epoch"}, first
    again = await c.ok("publish", channel=ch, data=[1, "x"], idempotency_key="k:1/")
    assert again == dict(first, duplicate=True), again
    # a batch of repeats in one frame, and one through the API
    replies = await c.batch([("publish", {"channel": ch, "data": [1, "x"],
                                          "idempotency_key": "k:1/"})] * 5, one_frame=True)
    assert [r["ok"] for r in replies] == [dict(first, duplicate=True)] * 5
    c2 = await s.client(enc)
    again = await c2.ok("publish", channel=ch, data=[1, "x"], idempotency_key="k:1/")
    assert again == dict(first, duplicate=True), again
    st, doc = await apost(port, {"channel": ch, "data": [1, "x"], "idempotency_key": "k:1/"})
    assert st == 200 and doc["offset"] == first["offset"] + 1 and "duplicate" not in doc, doc
    marker = await c.ok("publish", channel=ch, data="m")
    got = await sub.pubs(3, timeout=t(5))
    assert [(p["offset"], p["data"]) for p in got] == [
        (first["offset"], [1, "x"]), (doc["offset"], [1, "x"]), (marker["offset"], "m")], got


async def test_key_reused_with_other_data_is_a_conflict(api):
    s, port = api()
    ch = hh.chan("idem-")
    st, first = await apost(port, {"channel": ch, "data": 1, "idempotency_key": "K"})
    assert st == 200
    st, doc = await apost(port, {"channel": ch, "data": 2, "idempotency_key": "K"})
    assert st == 409 and doc["error"]["code"] == 107, doc
    assert "idempotency_key" in doc["error"]["message"]
    c = await s.client()
    mine = await c.ok("publish", channel=ch, data={"x": 1}, idempotency_key="K")
    assert "duplicate" not in mine, mine          # a client's own "K"
    err = await c.error("publish", channel=ch, data={"x": 2}, idempotency_key="K")
    assert err["code"] == 107 and "idempotency_key" in err["message"], err
    # the first is still the answer for the same data
    st, doc = await apost(port, {"channel": ch, "data": 1, "idempotency_key": "K"})
    assert st == 200 and doc == dict(first, duplicate=True), doc


BAD_KEYS = ["", "x" * 65, "a b", "tab\t", "del\x7f", "é", 123, True, ["k"], {"k": 1}]


async def test_bad_keys_are_refused(api):
    s, port = api()
    ch = hh.chan("idem-")
    for k in BAD_KEYS:
        for mp in (False, True):
            st, doc = await apost(port, {"channel": ch, "data": 1, "idempotency_key": k}, mp=mp)
            assert st == 400 and doc["error"]["code"] == 107, (k, mp, doc)
            assert "idempotency_key" in doc["error"]["message"], doc
        # (fresh clients: repeated bad commands close a connection, 4101)
        for enc in ("json", "msgpack"):
            cl = await s.client(enc)
            err = await cl.error("publish", channel=ch, data=1, idempotency_key=k)
            assert err["code"] == 107 and "idempotency_key" in err["message"], (k, err)
            await cl.close()
    c = await s.client()
    # the longest key and every printable byte are fine; null is no key
    for k in ("x" * 64, "".join(chr(b) for b in range(0x21, 0x61)),
              "".join(chr(b) for b in range(0x61, 0x7f))):
        st, doc = await apost(port, {"channel": ch, "data": 1, "idempotency_key": k})
        assert st == 200 and "duplicate" not in doc, doc
    st, a = await apost(port, {"channel": ch, "data": 1, "idempotency_key": None})
    st2, b = await apost(port, {"channel": ch, "data": 1, "idempotency_key": None})
    assert st == st2 == 200 and b["offset"] == a["offset"] + 1
    hist = await c.ok("history", channel=ch)
    assert len(hist["publications"]) == 5     # nothing refused was published


async def test_window_expiry_publishes_again(api):
    s, port = api({"idempotency_window": 1})
    ch = hh.chan("idem-")
    st, first = await apost(port, {"channel": ch, "data": 1, "idempotency_key": "w"})
    assert st == 200
    seen = []

    def again():
        st, doc = post(port, {"channel": ch, "data": 1, "idempotency_key": "w"})
        assert st == 200, doc
        seen.append(doc)
        return "duplicate" not in doc
    hh.wait_for(again, t(10), interval=0.05, what="the key to expire")
    assert all(d == dict(first, duplicate=True) for d in seen[:-1])
    assert seen[-1]["offset"] == first["offset"] + 1, seen[-1]
    # the new publication is the key's first one now
    st, doc = await apost(port, {"channel": ch, "data": 1, "idempotency_key": "w"})
    assert doc == dict(seen[-1], duplicate=True), doc


async def test_window_zero_turns_keys_off(api):
    s, port = api({"idempotency_window": 0})
    ch = hh.chan("idem-")
    offs = []
    for _ in range(3):
        st, doc = await apost(port, {"channel": ch, "data": 1, "idempotency_key": "z"})
        assert st == 200 and "duplicate" not in doc
        offs.append(doc["offset"])
    assert offs == [1, 2, 3]


async def test_keys_per_channel_are_bounded(api):
    """idempotency_max keys per channel, oldest dropped first (the limit of
    the guarantee); driving many times past it, memory stays bounded."""
    s, port = api({"idempotency_max": 100})
    ch = hh.chan("idem-")
    c = await s.client()

    async def publish_keys(lo, hi):
        for at in range(lo, hi, 500):
            replies = await c.batch([("publish", {"channel": ch, "data": 0,
                                                  "idempotency_key": "key-%d" % i})
                                     for i in range(at, min(at + 500, hi))], one_frame=True)
            assert all("ok" in r and "duplicate" not in r["ok"] for r in replies), replies[:2]

    await publish_keys(0, 300)
    # the newest 100 are remembered, older ones were dropped
    newest = await c.ok("publish", channel=ch, data=0, idempotency_key="key-299")
    assert newest.get("duplicate") is True and newest["offset"] == 300, newest
    edge = await c.ok("publish", channel=ch, data=0, idempotency_key="key-200")
    assert edge.get("duplicate") is True and edge["offset"] == 201, edge
    dropped = await c.ok("publish", channel=ch, data=0, idempotency_key="key-199")
    assert "duplicate" not in dropped and dropped["offset"] == 301, dropped

    await publish_keys(1000, 21000)
    base = rss_kib(s)
    await publish_keys(21000, 121000)
    grown = rss_kib(s) - base
    # 100,000 more keys kept would take well over 20 MiB (an entry is about
    # 200 bytes); bounded, the map stays at 100 entries
    assert grown < 8 * 1024, "RSS grew by %d KiB" % grown


# ---- cluster ----------------------------------------------------------------

def cluster_cfg():
    return {"api_listen": "127.0.0.1:0", "namespace_defaults": {"history_size": 10}}


async def test_cluster_repeat_on_another_node(make_cluster):
    cl = make_cluster(cluster_cfg(), n=2, env=api_env())
    a, b = cl.nodes
    pa, pb = api_port(a), api_port(b)
    ch = hh.chan("idem-")
    subs = [await a.client(), await b.client()]
    for sub in subs:
        await sub.ok("subscribe", channel=ch)
    st, first = await apost(pa, {"channel": ch, "data": {"o": 7}, "idempotency_key": "x-1"})
    assert st == 200
    # the retry goes to the other node (through the API, and a client's
    # own key from one node, then the other)
    st, doc = await apost(pb, {"channel": ch, "data": {"o": 7}, "idempotency_key": "x-1"})
    assert st == 200 and doc == dict(first, duplicate=True), doc
    ca, cb = await a.client(), await b.client("msgpack")
    mine = await ca.ok("publish", channel=ch, data={"c": 1}, idempotency_key="x-1")
    assert "duplicate" not in mine, mine        # the client's own key
    ok = await cb.ok("publish", channel=ch, data={"c": 1}, idempotency_key="x-1")
    assert ok == dict(mine, duplicate=True), ok
    err = await cb.error("publish", channel=ch, data={"o": 8}, idempotency_key="x-1")
    assert err["code"] == 107, err
    st, doc = await apost(pb, {"channel": ch, "data": {"o": 8}, "idempotency_key": "x-1"})
    assert st == 409, doc
    marker = await cb.ok("publish", channel=ch, data="m")
    for sub in subs:
        got = await sub.pubs(3, timeout=t(5))
        assert [(p["offset"], p["data"]) for p in got] == [
            (first["offset"], {"o": 7}), (mine["offset"], {"c": 1}), (marker["offset"], "m")]
    # Redis holds the keys (as kept: scoped) for the window
    keys = sorted(cl.redis_of(ch).keys("herald:{%s}:idem:*" % ch))
    assert keys == sorted("herald:{%s}:idem:%s" % (ch, scoped(sc, "x-1"))
                          for sc in ("api", "user:")), keys


async def test_cluster_nodes_racing_with_one_key_publish_once(make_cluster):
    cl = make_cluster(cluster_cfg(), n=2, env=api_env())
    a, b = cl.nodes
    ports = [api_port(a), api_port(b)]
    ch = hh.chan("idem-")
    sub = await a.client()
    await sub.ok("subscribe", channel=ch)
    for round_ in range(5):
        key = "race-%d" % round_
        docs = await asyncio.gather(*[apost(ports[i % 2], {"channel": ch, "data": round_,
                                                           "idempotency_key": key})
                                      for i in range(8)])
        assert all(st == 200 for st, _ in docs), docs
        offsets = {d["offset"] for _, d in docs}
        assert len(offsets) == 1, docs
        assert sum("duplicate" not in d for _, d in docs) == 1, docs
    # repeats sent while the first is on its way to Redis wait for it
    cb = await b.client()
    replies = await cb.batch([("publish", {"channel": ch, "data": "b",
                                           "idempotency_key": "batch"})] * 6, one_frame=True)
    assert [r["ok"]["offset"] for r in replies] == [6] * 6, replies
    assert [r["ok"].get("duplicate") for r in replies] == [None] + [True] * 5, replies
    marker = await cb.ok("publish", channel=ch, data="m")
    got = await sub.pubs(7, timeout=t(5))
    assert [p["data"] for p in got] == [0, 1, 2, 3, 4, "b", "m"], got
    assert got[-1]["offset"] == marker["offset"] == 7


# ---- durable namespace: after a restart -------------------------------------

def durable_cfg(fd):
    return {
        "api_listen": "127.0.0.1:0",
        "mongodb": fd.uri("", serverSelectionTimeoutMS=1000,
                          connectTimeoutMS=1000, socketTimeoutMS=2000),
        "mongodb_spill_path": os.path.join(os.path.dirname(fd.dir), "herald.spill"),
        "namespaces": [{"name": "d", "history_size": 100, "durable": True}],
    }


def scoped(scope, key):
    """How a key is kept (core/idem.h idem_scoped_key)."""
    return hashlib.sha256(scope.encode() + b"\0" + key.encode()).hexdigest()[:32]


def stored(fd, channel):
    coll = fd.client().herald.publications
    return sorted(coll.find({"channel": channel}, {"_id": 0, "offset": 1, "ik": 1, "ih": 1}),
                  key=lambda d: d["offset"])


async def test_durable_key_survives_a_restart(server_factory, ferretdb):
    cfg = durable_cfg(ferretdb)
    s = server_factory(cfg, env=api_env())
    ch = hh.chan("d:")
    st, first = await apost(api_port(s), {"channel": ch, "data": {"d": 1}, "idempotency_key": "dk"})
    assert st == 200
    c = await s.client()
    await c.ok("publish", channel=ch, data="plain")
    got = hh.wait_for(lambda: (lambda d: d if len(d) == 2 else None)(stored(ferretdb, ch)),
                      t(10), what="both stored")
    assert got[0]["ik"] == scoped("api", "dk") and "ih" in got[0] and "ik" not in got[1], got
    assert "cannot create an index" not in s.stderr()     # (channel, ik) too
    await c.close()
    s.stop()

    s2 = server_factory(cfg, env=api_env())
    port = api_port(s2)
    sub = await s2.client()
    await sub.ok("subscribe", channel=ch)
    # the key is not in memory: the store answers it
    st, doc = await apost(port, {"channel": ch, "data": {"d": 1}, "idempotency_key": "dk"})
    assert st == 200 and doc == dict(first, duplicate=True), doc
    st, doc = await apost(port, {"channel": ch, "data": {"d": 1}, "idempotency_key": "dk"}, mp=True)
    assert st == 200 and doc == dict(first, duplicate=True), doc
    c2 = await s2.client("msgpack")
    st, doc = await apost(port, {"channel": ch, "data": {"d": 2}, "idempotency_key": "dk"})
    assert st == 409, doc
    # several at once for a key the store does not have: one publication
    replies = await c2.batch([("publish", {"channel": ch, "data": "n",
                                           "idempotency_key": "new"})] * 4, one_frame=True)
    assert [r["ok"]["offset"] for r in replies] == [3] * 4, replies
    assert sum("duplicate" not in r["ok"] for r in replies) == 1
    marker = await c2.ok("publish", channel=ch, data="m")
    got = await sub.pubs(2, timeout=t(5))
    assert [(p["offset"], p["data"]) for p in got] == [(3, "n"), (marker["offset"], "m")], got
    hh.wait_for(lambda: len(stored(ferretdb, ch)) == 4, t(10), what="4 stored")


async def test_durable_lookup_without_the_store_refuses(server_factory, ferretdb):
    """A keyed publish the store cannot be asked about is refused (108):
    publishing could duplicate. Afterwards the key is not stuck."""
    s = server_factory(durable_cfg(ferretdb), env=api_env())
    ch = hh.chan("d:")
    c = await s.client()
    ferretdb.pause()
    try:
        e = await c.call("publish", channel=ch, data=1, idempotency_key="p", timeout=t(15))
        assert e["error"]["code"] == 108, e
    finally:
        ferretdb.resume()
    first = await c.ok("publish", channel=ch, data=1, idempotency_key="p")
    assert first["offset"] == 1 and "duplicate" not in first, first
    again = await c.ok("publish", channel=ch, data=1, idempotency_key="p")
    assert again == dict(first, duplicate=True), again
    hh.wait_for(lambda: len(stored(ferretdb, ch)) == 1, t(10), what="one stored")


async def test_keys_are_each_users_own(server_factory):
    """A user cannot claim another user's (or a backend's) key: the same
    key from another user is another publication, from the same user on
    another connection a repeat."""
    secret = "u" * 32
    s = server_factory({"api_listen": "127.0.0.1:0", "token_secret": secret,
                        "namespace_defaults": {"history_size": 10}}, env=api_env())
    ch = hh.chan("idem-")
    users = {}
    for name in ("alice", "alice", "mallory"):
        c = await s.client()
        await c.ok("connect", token=hh.make_jwt(secret, sub=name))
        users.setdefault(name, []).append(c)
    first = await users["mallory"][0].ok("publish", channel=ch, data=1, idempotency_key="order-9")
    a1 = await users["alice"][0].ok("publish", channel=ch, data=1, idempotency_key="order-9")
    assert "duplicate" not in a1 and a1["offset"] == first["offset"] + 1, a1
    a2 = await users["alice"][1].ok("publish", channel=ch, data=1, idempotency_key="order-9")
    assert a2 == dict(a1, duplicate=True), a2
    st, doc = await apost(api_port(s), {"channel": ch, "data": 1, "idempotency_key": "order-9"})
    assert st == 200 and doc["offset"] == a1["offset"] + 1 and "duplicate" not in doc, doc


async def test_a_stream_with_keys_is_not_evicted(server_factory):
    """Single node, no store: a stream's keys are only in memory, so under
    max_channels pressure it is not evicted (others are); a repeat stays a
    repeat. With every stream holding keys a new channel is refused (503,
    the server's capacity) rather than a key forgotten."""
    s = server_factory({"api_listen": "127.0.0.1:0", "max_channels": 2,
                        "namespace_defaults": {"history_size": 10, "history_ttl": 300}},
                       env=api_env(), workers=1)
    port = api_port(s)
    a, b, c = hh.chan("ev-a"), hh.chan("ev-b"), hh.chan("ev-c")
    st, first = await apost(port, {"channel": a, "data": 1, "idempotency_key": "order-1"})
    assert st == 200
    for ch in (b, c):                      # b is evicted to make room for c
        st, doc = await apost(port, {"channel": ch, "data": 1})
        assert st == 200, doc
    st, doc = await apost(port, {"channel": a, "data": 1, "idempotency_key": "order-1"})
    assert st == 200 and doc == dict(first, duplicate=True), doc
    st, doc = await apost(port, {"channel": c, "data": 2, "idempotency_key": "k"})
    assert st == 200
    st, doc = await apost(port, {"channel": hh.chan("ev-d"), "data": 1})
    assert (st, doc["error"]["code"]) == (503, 106), doc


async def test_publications_keep_their_order_during_a_key_lookup(server_factory, ferretdb):
    """A keyed publish on a young durable stream waits for the store's
    lookup of its key; the publishes sent after it wait too, so one
    publisher's offsets follow its order."""
    s = server_factory(durable_cfg(ferretdb), env=api_env())
    ch = hh.chan("d:")
    c = await s.client()
    cmds = [("publish", {"channel": ch, "data": 0, "idempotency_key": "first"}),
            ("publish", {"channel": ch, "data": 1}),
            ("publish", {"channel": ch, "data": 2, "idempotency_key": "third"}),
            ("publish", {"channel": ch, "data": 3})]
    replies = await c.batch(cmds, one_frame=True)
    assert [r["ok"]["offset"] for r in replies] == [1, 2, 3, 4], replies
