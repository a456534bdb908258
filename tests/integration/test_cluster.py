"""Cluster mode: three herald nodes fanning out through Redis
(docs/cluster.md). Faults are in
test_cluster_faults.py.

Tests taking the `cl` fixture run twice, on three nodes sharing one Redis
("one-redis") and on three nodes sharding their channels over two Redis
servers ("two-redis", with a non-default redis_prefix); they share the
nodes of the module and use fresh channel names. Tests that care which
shard a channel is on pick it with cl.chan(prefix, shard) (the contract's
FNV-1a hash), so both shards are exercised. Nodes are cl[0], cl[1], cl[2]
(A, B, C). The last tests start nodes of their own (how a node is given
its Redis servers, URIs, start-up order).
"""

import asyncio
import base64
import os
import subprocess

import pytest

import cluster_harness as ch
import herald_harness as hh
from herald_harness import t

SECRET = "cluster-secret"

CONFIG = {
    "token_secret": SECRET,
    "allow_anonymous": True,
    "presence_ttl": 3,
    "namespace_defaults": {"history_size": 0},
    "namespaces": [
        {"name": "h", "history_size": 200},
        {"name": "room", "history_size": 50, "presence": True, "join_leave": True},
        {"name": "small", "history_size": 5},
        {"name": "ttl", "history_size": 100, "history_ttl": 1},
    ],
}

_native_tracebacks = ch.native_tracebacks_fixture()

SPECS = {
    "one-redis": (CONFIG, ("redis",)),
    "two-redis": (dict(CONFIG, redis_prefix="hx", stream_ttl=120), ("redis0", "redis1")),
}


@pytest.fixture(scope="module", params=sorted(SPECS))
def cl(request, tmp_path_factory):
    config, names = SPECS[request.param]
    yield from ch.cluster_session(tmp_path_factory, config, names, n=3)


async def connect(node, enc="json", user=None):
    c = await node.client(enc)
    if user is None:
        await c.ok("connect")
    else:
        await c.ok("connect", token=hh.make_jwt(SECRET, sub=user))
    return c


def shard_chan(cl, prefix, shard):
    """A fresh channel on `shard`; with one Redis, shard 1 is a duplicate."""
    if shard >= cl.nshards:
        pytest.skip("one Redis server: shard %d is shard 0" % shard)
    return cl.chan(prefix, shard)


def users(presence_ok):
    return {cid: v.get("user", "") for cid, v in presence_ok["clients"].items()}


# -- publications ---------------------------------------------------------------

async def check_fanout(cl, chname, n_each):
    """Subscribers on every node (both encodings), concurrent publishers on
    every node: one epoch, offsets 1..N handed out once each, every
    subscriber gets all N in offset order with the acknowledged data."""
    subs = [("A/json", await connect(cl[0], "json")),
            ("A/msgpack", await connect(cl[0], "msgpack")),
            ("B/msgpack", await connect(cl[1], "msgpack")),
            ("C/json", await connect(cl[2], "json"))]
    replies = await asyncio.gather(*(c.ok("subscribe", channel=chname) for _, c in subs))
    epochs = {r["epoch"] for r in replies}
    assert len(epochs) == 1, "subscribers on different nodes got different epochs " \
        "for the new channel %s: %r" % (chname, [r["epoch"] for r in replies])
    epoch = epochs.pop()
    assert [r["offset"] for r in replies] == [0] * len(subs), replies

    pubs = [("A", await connect(cl[0], "msgpack")), ("B", await connect(cl[1], "json")),
            ("C", await connect(cl[2], "json"))]

    async def publish_all(tag, c):
        return await c.batch([("publish", {"channel": chname, "data": {"k": "%s-%d" % (tag, i)}})
                              for i in range(n_each)])

    results = await asyncio.gather(*(publish_all(tag, c) for tag, c in pubs))
    acked, publisher_of = {}, {}
    for (tag, c), replies in zip(pubs, results):
        for i, r in enumerate(replies):
            assert "ok" in r, "publish through node %s failed: %r" % (tag, r)
            off = r["ok"]["offset"]
            assert r["ok"]["epoch"] == epoch, (tag, r, epoch)
            assert off not in acked, "offset %d handed out twice (%s and %s-%d)" % (
                off, acked.get(off), tag, i)
            acked[off] = "%s-%d" % (tag, i)
            publisher_of[off] = c.client_id
    total = n_each * len(pubs)
    assert sorted(acked) == list(range(1, total + 1)), \
        "publish offsets are not 1..%d: %r" % (total, sorted(acked))

    for label, c in subs:
        got = await c.pubs(total, timeout=t(10))
        for p in got:
            assert p["channel"] == chname
            assert p.get("info", {}).get("client") == publisher_of[p["offset"]], \
                "%s: pub %d carries info %r, publisher was %s" % (
                    label, p["offset"], p.get("info"), publisher_of[p["offset"]])
        ch.check_stream("%s on %s" % (label, chname),
                        [(p["offset"], p["epoch"], p["data"]["k"]) for p in got],
                        acked, start=0, epoch=epoch)


async def test_publications_from_every_node_reach_every_node_in_offset_order(cl):
    # two channels at once; with two Redis servers one on each shard
    await asyncio.gather(check_fanout(cl, cl.chan("h:", 0), 25),
                         check_fanout(cl, cl.chan("h:", 1), 25))


async def test_data_of_both_encodings_crosses_nodes(cl):
    ch_ = cl.chan("h:", 1)
    a = await connect(cl[0], "msgpack")
    b = await connect(cl[1])
    await a.ok("subscribe", channel=ch_)
    await b.ok("subscribe", channel=ch_)
    blob = b"\x00\x01\xfe\xffbin\n"
    ok = await a.ok("publish", channel=ch_, data=blob)
    pa, pb = await a.push("pub"), await b.push("pub")
    for p in (pa, pb):
        assert p["offset"] == ok["offset"] and p["epoch"] == ok["epoch"], (p, ok)
        assert p["info"]["client"] == a.client_id, p
    assert pa["data"] == blob, pa          # msgpack bin, through Redis, to its own node
    assert pb.get("binary") is True and base64.b64decode(pb["data"]) == blob, pb
    ok2 = await b.ok("publish", channel=ch_, data={"x": [1, "two", None, 2.5]})
    pa, pb = await a.push("pub"), await b.push("pub")
    for p in (pa, pb):
        assert p["offset"] == ok2["offset"] == ok["offset"] + 1, (p, ok2)
        assert p["data"] == {"x": [1, "two", None, 2.5]} and not p.get("binary"), p
        assert p["info"]["client"] == b.client_id, p
    # history from a third node, in both encodings
    hj = await (await connect(cl[2])).ok("history", channel=ch_)
    assert hj["publications"][0]["binary"] is True
    assert base64.b64decode(hj["publications"][0]["data"]) == blob
    hm = await (await connect(cl[2], "msgpack")).ok("history", channel=ch_)
    assert [p["data"] for p in hm["publications"]] == [blob, {"x": [1, "two", None, 2.5]}]


# -- keys and shards --------------------------------------------------------------

@pytest.mark.parametrize("shard", [0, 1])
async def test_stream_keys_live_in_the_channels_redis(cl, shard):
    chname = shard_chan(cl, "h:", shard)
    c = await connect(cl[shard % 3])
    for i in range(5):
        last = await c.ok("publish", channel=chname, data={"i": i})
    home = cl.redis_of(chname)
    key = ch.stream_key(chname, cl.prefix, "s")
    state = home.command("HGETALL", key)
    state = {state[i].decode(): state[i + 1].decode() for i in range(0, len(state), 2)}
    assert state.get("e") == last["epoch"] and state.get("t") == str(last["offset"]), \
        "%s in redis %s: %r, last publish %r" % (key, home.name, state, last)
    wkey = ch.stream_key(chname, cl.prefix, "w")
    assert home.command("ZCARD", wkey) == 5, home.keys()
    top = home.command("ZRANGE", wkey, -1, -1, "WITHSCORES")
    assert int(float(top[1])) == last["offset"], top
    # record <offset>:<epoch>:<body>; the body encoding is the server's own
    assert top[0].startswith(("%d:%s:" % (last["offset"], last["epoch"])).encode()), top
    # a quiet channel's state expires stream_ttl after its last publication
    stream_ttl = cl.config.get("stream_ttl", 86400)
    for k in (key, wkey):
        ttl = home.command("PTTL", k)
        assert (stream_ttl - 30) * 1000 < ttl <= stream_ttl * 1000, \
            "PTTL %s = %s, stream_ttl %d s" % (k, ttl, stream_ttl)
    for other in cl.redis:
        if other is not home:
            found = [k for k in other.keys("*") if chname in k]
            assert not found, "channel %s (shard %d) has keys %r in %s too" % (
                chname, ch.shard_of(chname, cl.nshards), found, other.name)


async def test_channels_spread_over_both_redis_servers(cl):
    if cl.nshards < 2:
        pytest.skip("one Redis server")
    a = await connect(cl[0])
    names = [hh.chan("h:") for _ in range(16)]
    for n in names:
        await a.ok("publish", channel=n, data=1)
    for i, r in enumerate(cl.redis):
        mine = {n for n in names if ch.shard_of(n, 2) == i}
        have = {n for n in names if ch.stream_key(n, cl.prefix, "s") in r.keys(cl.prefix + ":*")}
        assert have == mine, "redis %d holds %r, the hash puts %r there" % (i, have, mine)
    assert all(any(ch.shard_of(n, 2) == i for n in names) for i in (0, 1)), \
        "16 random names all on one shard: the FNV-1a helper is broken"


# -- history and recovery -----------------------------------------------------------

@pytest.mark.parametrize("shard", [0, 1])
async def test_history_is_the_same_from_every_node(cl, shard):
    chname = shard_chan(cl, "h:", shard)
    clients = [await connect(cl[i], enc) for i, enc in ((0, "json"), (1, "msgpack"), (2, "json"))]
    sent = []
    for i in range(12):
        ok = await clients[i % 3].ok("publish", channel=chname, data={"n": i})
        sent.append((ok["offset"], {"n": i}))
    epoch = ok["epoch"]
    assert [o for o, _ in sent] == list(range(1, 13))

    def view(h):
        return [(p["offset"], p["data"]) for p in h["publications"]]

    for c in clients:
        h = await c.ok("history", channel=chname)
        assert h["epoch"] == epoch and h["offset"] == 12, h
        assert view(h) == sent
        h = await c.ok("history", channel=chname, limit=4, reverse=True)
        assert view(h) == sent[::-1][:4]
        h = await c.ok("history", channel=chname, since={"offset": 9, "epoch": epoch})
        assert view(h) == sent[9:]


@pytest.mark.parametrize("shard", [0, 1])
async def test_client_recovers_on_another_node(cl, shard):
    chname = shard_chan(cl, "h:", shard)
    pa = await connect(cl[0])
    pc = await connect(cl[2], "msgpack")
    sub = await connect(cl[0])
    s = await sub.ok("subscribe", channel=chname)
    for i in range(3):
        await pc.ok("publish", channel=chname, data={"n": i})
    seen = await sub.pubs(3)
    assert [p["offset"] for p in seen] == [1, 2, 3]
    await sub.close()
    missed = []
    for i in range(3, 8):
        ok = await (pa if i % 2 else pc).ok("publish", channel=chname, data={"n": i})
        missed.append((ok["offset"], {"n": i}))

    sub2 = await connect(cl[1], "msgpack")
    ok = await sub2.ok("subscribe", channel=chname, since={"offset": 3, "epoch": s["epoch"]})
    assert ok["recovered"] is True, ok
    assert ok["epoch"] == s["epoch"] and ok["offset"] == 8, ok
    assert [(p["offset"], p["data"]) for p in ok["publications"]] == missed
    # live publications continue right after the recovered ones
    await pa.ok("publish", channel=chname, data="live")
    p = await sub2.push("pub")
    assert p["offset"] == 9 and p["data"] == "live"

    # nothing missed, from the third node
    sub3 = await connect(cl[2])
    ok = await sub3.ok("subscribe", channel=chname, since={"offset": 9, "epoch": s["epoch"]})
    assert ok["recovered"] is True and ok["publications"] == [], ok
    # a wrong epoch is not recovered, on any node
    sub4 = await connect(cl[1])
    ok = await sub4.ok("subscribe", channel=chname, since={"offset": 2, "epoch": "not-" + s["epoch"]})
    assert ok["recovered"] is False and ok["epoch"] == s["epoch"] and ok["offset"] == 9, ok


@pytest.mark.timeout(60)
async def test_subscribing_mid_stream_on_other_nodes_continues_exactly(cl):
    """While node A publishes as fast as it can, subscribers join on B and C
    (the first one makes the node subscribe in Redis) and others come back
    with since on alternating nodes: each continues exactly after its
    subscribe reply, without gap or duplicate, to the end."""
    chname = cl.chan("h:", 1)
    pub = await connect(cl[0], "msgpack")
    acked = {}
    done = asyncio.Event()

    async def publisher():
        n = 0
        while not done.is_set() and n < 1800:
            replies = await pub.batch([("publish", {"channel": chname, "data": {"k": "p%d" % i}})
                                       for i in range(n, n + 10)])
            for i, r in enumerate(replies):
                acked[r["ok"]["offset"]] = "p%d" % (n + i)
            n += 10
            await asyncio.sleep(0.005)

    task = asyncio.get_running_loop().create_task(publisher())
    await hh.async_wait_for(lambda: len(acked) >= 50, t(5), what="50 publications")
    joined = []        # (label, client, reply offset, epoch)
    for i in range(8):
        node = cl[1 + i % 2]
        c = await connect(node, "json" if i % 3 else "msgpack")
        ok = await c.ok("subscribe", channel=chname)
        joined.append(("joined %d on %s" % (i, node.name), c, ok["offset"], ok["epoch"]))
        await asyncio.sleep(0.03)
    # one subscriber hopping between nodes with since
    hop = await connect(cl[2])
    ok = await hop.ok("subscribe", channel=chname)
    hop_start, epoch, hop_seen = ok["offset"], ok["epoch"], []
    for i in range(6):
        got = await hop.pubs(10, timeout=t(10))
        hop_seen += [(p["offset"], p["epoch"], p["data"]["k"]) for p in got]
        await hop.close()
        hop = await connect(cl[i % 3], "msgpack" if i % 2 else "json")
        ok = await hop.ok("subscribe", channel=chname,
                          since={"offset": hop_seen[-1][0], "epoch": epoch})
        assert ok["recovered"] is True, ok
        hop_seen += [(p["offset"], ok["epoch"], p["data"]["k"]) for p in ok["publications"]]
    done.set()
    await task
    top = max(acked)
    print("mid-stream: top %d, joined at %r, hopping from %d" % (
        top, [j[2] for j in joined], hop_start))
    assert len({j[2] for j in joined}) > 1, "the publisher was not running while they joined"
    for label, c, start, ep in joined + [("hopping", hop, None, epoch)]:
        got = []
        if label == "hopping":
            got, start = hop_seen, hop_start
        need = top - (got[-1][0] if got else start)
        got += [(p["offset"], p["epoch"], p["data"]["k"]) for p in await c.pubs(need, timeout=t(10))]
        ch.check_stream(label, got, acked, start=start, epoch=epoch)


async def test_presence_outlives_presence_ttl_while_connected(cl):
    """Entries are refreshed (every presence_ttl/3): clients that stay
    connected longer than presence_ttl (3 s) stay present on every node and
    no leave push is sent for them. (A fixed wait: it checks that nothing
    happens.)"""
    chname = cl.chan("room:", 1)
    a = await connect(cl[0], user="ann")
    b = await connect(cl[1], "msgpack", user="ben")
    await a.ok("subscribe", channel=chname)
    await b.ok("subscribe", channel=chname)
    assert (await a.push("join"))["info"]["client"] == b.client_id
    want = {a.client_id: "ann", b.client_id: "ben"}
    await asyncio.sleep(CONFIG["presence_ttl"] + 1.5)
    for c in (a, b, await connect(cl[2])):
        assert users(await c.ok("presence", channel=chname)) == want
    assert a.pending_pushes() == [] and b.pending_pushes() == [], "leave/join pushes while " \
        "both stayed connected: %r" % (a.pending_pushes() + b.pending_pushes())
    # presence entries live in the channel's Redis (contract: P:{C}:pt, P:{C}:pu)
    home = cl.redis_of(chname)
    ptkey = ch.stream_key(chname, cl.prefix, "pt")
    members = {m.decode() for m in home.command("ZRANGE", ptkey, 0, -1)}
    assert members == set(want), members
    # the keys expire 2 x presence_ttl after the last refresh (docs/cluster.md)
    assert 0 < home.command("PTTL", ptkey) <= 2 * CONFIG["presence_ttl"] * 1000


async def test_window_holds_64_history_returns_history_size(cl):
    """Namespace `small` keeps history_size 5: the hot window in Redis holds
    max(5, 64) publications, history and recovery from another node give
    the last 5 only."""
    chname = cl.chan("small:", 0)
    a = await connect(cl[0])
    for i in range(70):
        last = await a.ok("publish", channel=chname, data=i)
    assert last["offset"] == 70
    home = cl.redis_of(chname)
    assert home.command("ZCARD", ch.stream_key(chname, cl.prefix, "w")) == 64
    b = await connect(cl[1], "msgpack")
    h = await b.ok("history", channel=chname)
    assert [(p["offset"], p["data"]) for p in h["publications"]] == [(o, o - 1) for o in range(66, 71)]
    ok = await b.ok("subscribe", channel=chname, since={"offset": 65, "epoch": last["epoch"]})
    assert ok["recovered"] is True and [p["offset"] for p in ok["publications"]] == [66, 67, 68, 69, 70]
    c = await connect(cl[2])
    ok = await c.ok("subscribe", channel=chname, since={"offset": 60, "epoch": last["epoch"]})
    assert ok["recovered"] is False and ok["offset"] == 70 and ok["epoch"] == last["epoch"], ok
    # the same on a node where the channel is live (recovery may come from
    # the node's own ring of delivered publications): still history_size
    live = await connect(cl[1])
    await live.ok("subscribe", channel=chname)
    for i in range(70, 80):
        last = await a.ok("publish", channel=chname, data=i)
    assert len(await live.pubs(10)) == 10
    d = await connect(cl[1], "msgpack")
    ok = await d.ok("subscribe", channel=chname, since={"offset": 70, "epoch": last["epoch"]})
    assert ok["recovered"] is False and ok["offset"] == 80, ok
    e = await connect(cl[1])
    ok = await e.ok("subscribe", channel=chname, since={"offset": 75, "epoch": last["epoch"]})
    assert ok["recovered"] is True and [p["offset"] for p in ok["publications"]] == [76, 77, 78, 79, 80]


async def test_history_ttl_applies_on_every_node(cl):
    chname = cl.chan("ttl:", 1)
    live = await connect(cl[2])            # the channel is live on C
    await live.ok("subscribe", channel=chname)
    a = await connect(cl[0])
    ok = await a.ok("publish", channel=chname, data="old")
    assert (await live.push("pub"))["data"] == "old"
    b = await connect(cl[1])
    h = await b.ok("history", channel=chname)
    assert [p["data"] for p in h["publications"]] == ["old"]

    async def expired():
        return (await b.ok("history", channel=chname))["publications"] == []
    await hh.async_wait_for(expired, t(4), interval=0.1, what="history_ttl (1 s) to drop it")
    for node in (cl[1], cl[2]):           # from the window, and where it is live
        c = await connect(node)
        ok2 = await c.ok("subscribe", channel=chname, since={"offset": 0, "epoch": ok["epoch"]})
        assert ok2["recovered"] is False and ok2["offset"] == 1, (node.name, ok2)


async def test_big_publication_and_odd_channel_names_cross_nodes(cl):
    """A publication near max_message_size (64 KiB: the record in Redis holds
    it twice) and names using the whole charset, with ':' inside, up to 255
    bytes, go through Redis intact."""
    names = [cl.chan("h:", 0) + ":x@y/z=w-v.u_t", cl.chan("h:", 1) + "::a:b",
             "h:" + "z" * 240 + hh.chan()[:13]]
    assert len(names[2]) == 255
    for chname in names:
        sub_j, sub_m = await connect(cl[0]), await connect(cl[1], "msgpack")
        for c in (sub_j, sub_m):
            await c.ok("subscribe", channel=chname)
        pub = await connect(cl[2], "msgpack")
        big = {"s": "\u00e9\u6f22\U0001f600" * 5000, "n": list(range(300))}
        blob = bytes(range(256)) * 100
        ok1 = await pub.ok("publish", channel=chname, data=big)
        ok2 = await pub.ok("publish", channel=chname, data=blob)
        for c in (sub_j, sub_m):
            p1, p2 = await c.pubs(2)
            assert p1["channel"] == chname and p1["offset"] == ok1["offset"], p1["offset"]
            assert p1["data"] == big
            assert p2["offset"] == ok2["offset"]
            if c is sub_m:
                assert p2["data"] == blob
            else:
                assert p2["binary"] is True and base64.b64decode(p2["data"]) == blob
        h = await (await connect(cl[1])).ok("history", channel=chname)
        assert [p["offset"] for p in h["publications"]] == [1, 2] and h["publications"][0]["data"] == big


@pytest.mark.timeout(60)
async def test_subscribe_unsubscribe_churn_on_a_node_during_publishing(cl):
    """A node subscribes to a channel in Redis with its first local
    subscriber and unsubscribes with its last one. Clients on B flip
    subscribe/unsubscribe (also both in one frame) while A publishes: every
    subscription delivers exactly the publications after its reply, and
    the subscriber that stays till the end misses nothing."""
    chname = cl.chan("h:", 0)
    pub = await connect(cl[0])
    done = asyncio.Event()
    acked_keys = {}

    async def publisher():
        n = 0
        while not done.is_set():
            replies = await pub.batch([("publish", {"channel": chname, "data": {"k": "p%d" % i}})
                                       for i in range(n, n + 5)])
            for i, r in enumerate(replies):
                acked_keys[r["ok"]["offset"]] = "p%d" % (n + i)
            n += 5
            await asyncio.sleep(0.003)

    task = asyncio.get_running_loop().create_task(publisher())
    await hh.async_wait_for(lambda: len(acked_keys) >= 20, t(5), what="publishing")
    churn = [await connect(cl[1], "json" if i % 2 else "msgpack") for i in range(3)]
    for rnd in range(12):
        c = churn[rnd % 3]
        if rnd % 4 == 3:      # subscribe + unsubscribe + subscribe in one frame
            r = await c.batch([("subscribe", {"channel": chname}),
                               ("unsubscribe", {"channel": chname}),
                               ("subscribe", {"channel": chname})], one_frame=True)
            assert all("ok" in x for x in r), r
            start = r[2]["ok"]["offset"]
        else:
            start = (await c.ok("subscribe", channel=chname))["offset"]
        got = await c.pubs(8, timeout=t(10))
        offs = [p["offset"] for p in got]
        if rnd % 4 == 3:
            # pubs of the first (cancelled) subscription may come first;
            # those of the last one continue exactly after its reply
            offs = [o for o in offs if o > start]
            while len(offs) < 8:
                offs.append((await c.push("pub", timeout=t(10)))["offset"])
                offs = [o for o in offs if o > start]
        assert offs[:8] == list(range(start + 1, start + 9)), (rnd, start, offs)
        await c.ok("unsubscribe", channel=chname)
        # nothing of this channel after the unsubscribe reply
        await c.ok("ping")
        c.pending_pushes()
    stayer = await connect(cl[1])
    start = (await stayer.ok("subscribe", channel=chname))["offset"]
    await hh.async_wait_for(lambda: len(acked_keys) >= start + 40, t(10), what="40 more")
    done.set()
    await task
    top = max(acked_keys)
    got = await stayer.pubs(top - start, timeout=t(10))
    ch.check_stream("stayer", [(p["offset"], p["epoch"], p["data"]["k"]) for p in got],
                    acked_keys, start=start)
    for c in churn:           # unsubscribed: nothing arrived after the last reply
        assert [p for p in c.pending_pushes() if p.get("channel") == chname] == [], c


# -- presence and join/leave ----------------------------------------------------------

@pytest.mark.parametrize("shard", [0, 1])
async def test_presence_is_the_same_from_every_node(cl, shard):
    chname = shard_chan(cl, "room:", shard)
    members = []
    for i, user in enumerate(("alice", "bob", "carol")):
        c = await connect(cl[i], "msgpack" if i == 1 else "json", user=user)
        await c.ok("subscribe", channel=chname)
        members.append((c, user))
    outsider = await connect(cl[2])
    want = {c.client_id: user for c, user in members}
    assert len(want) == 3, "client ids are not unique across nodes: %r" % want

    async def every_node_sees(expected):
        for c in [m for m, _ in members] + [outsider]:
            if c.closed.is_set():
                continue
            if users(await c.ok("presence", channel=chname)) != expected:
                return False
        return True

    await hh.async_wait_for(lambda: every_node_sees(want), t(5), interval=0.05,
                            what=lambda: "presence %r on every node" % want)
    bob = members[1][0]
    await bob.ok("unsubscribe", channel=chname)
    del want[bob.client_id]
    await hh.async_wait_for(lambda: every_node_sees(want), t(5), interval=0.05,
                            what="bob gone from presence on every node")
    carol = members[2][0]
    await carol.close()
    del want[carol.client_id]
    await hh.async_wait_for(lambda: every_node_sees(want), t(5), interval=0.05,
                            what="carol (disconnected) gone from presence on every node")


@pytest.mark.parametrize("shard", [0, 1])
async def test_conn_info_across_nodes(cl, shard):
    """A token's info travels through Redis: presence asked on another node
    and join/leave pushed there carry the client's conn_info."""
    chname = shard_chan(cl, "room:", shard)
    info = {"name": "Ada", "n": [1, 2]}
    watcher = await connect(cl[1], "msgpack", user="w")
    await watcher.ok("subscribe", channel=chname)
    ada = await cl[0].client()
    await ada.ok("connect", token=hh.make_jwt(SECRET, sub="ada", info=info))
    await ada.ok("subscribe", channel=chname)
    j = await watcher.push("join")
    assert j["info"] == {"client": ada.client_id, "user": "ada", "conn_info": info}, j
    other = await connect(cl[2])
    p = await other.ok("presence", channel=chname)
    assert p["clients"][ada.client_id] == {"user": "ada", "conn_info": info}, p
    await ada.close()
    lv = await watcher.push("leave")
    assert lv["info"] == {"client": ada.client_id, "user": "ada", "conn_info": info}, lv


@pytest.mark.parametrize("shard", [0, 1])
async def test_join_and_leave_cross_nodes(cl, shard):
    chname = shard_chan(cl, "room:", shard)
    a = await connect(cl[0], user="alice")
    b = await connect(cl[1], "msgpack", user="bob")
    c = await connect(cl[2], user="carol")
    pub = await connect(cl[1])

    def info(p):
        return p["info"]["client"], p["info"].get("user")

    await a.ok("subscribe", channel=chname)
    await b.ok("subscribe", channel=chname)
    j = await a.push("join")
    assert j["channel"] == chname and info(j) == (b.client_id, "bob"), j
    await c.ok("subscribe", channel=chname)
    j = await a.push("join")
    assert info(j) == (c.client_id, "carol"), j
    j = await b.push("join")       # b's first push: no join about itself
    assert info(j) == (c.client_id, "carol"), j
    await pub.ok("publish", channel=chname, data="m1")
    p = await c.push()             # c got nothing about itself either
    assert p["push"] == "pub" and p["data"] == "m1", p

    await c.ok("unsubscribe", channel=chname)
    for x in (a, b):
        lv = await x.push("pub")   # m1 first (a and b have it queued)
        assert lv["data"] == "m1"
        lv = await x.push("leave")
        assert lv["channel"] == chname and info(lv) == (c.client_id, "carol"), lv
    await b.close()
    lv = await a.push("leave")
    assert info(lv) == (b.client_id, "bob"), lv

    # nothing else: no duplicate join/leave from other nodes
    await pub.ok("publish", channel=chname, data="m2")
    p = await a.push()
    assert p["push"] == "pub" and p["data"] == "m2", "expected only m2, got %r" % p


# -- a node without --redis ---------------------------------------------------------

async def test_node_without_redis_is_a_single_node(server_factory, cl):
    s = server_factory({"namespaces": [{"name": "h", "history_size": 10}]})
    status, doc = ch.health(s)
    assert status == 200 and doc.get("broker") == "memory", (status, doc)
    chname = hh.chan("h:")
    sub = await s.client()
    first = await sub.ok("subscribe", channel=chname)
    pub = await s.client("msgpack")
    for i in range(3):
        await pub.ok("publish", channel=chname, data=i)
    assert [p["data"] for p in await sub.pubs(3)] == [0, 1, 2]
    await sub.close()
    await pub.ok("publish", channel=chname, data=3)
    again = await s.client()
    ok = await again.ok("subscribe", channel=chname, since={"offset": 3, "epoch": first["epoch"]})
    assert ok["recovered"] is True and [p["data"] for p in ok["publications"]] == [3]
    # and it is not part of the cluster running next to it: nothing of its
    # channel reached Redis, nothing of the cluster's reaches it
    for r in cl.redis:
        assert not [k for k in r.keys("*") if chname in k]
    other = await connect(cl[0])
    ok = await other.ok("history", channel=chname)
    assert ok["publications"] == [], ok


# -- how a node is given its Redis servers --------------------------------------------

make_cluster = ch.cluster_factory_fixture()
make_redis = ch.redis_factory_fixture()


@pytest.mark.parametrize("nredis", [1, 2])
async def test_every_way_of_giving_the_redis_addresses_joins_one_cluster(make_cluster, nredis):
    """--redis repeated, --redis with a comma-separated list, the `redis`
    config key (a string for one server, a list for two) and HERALD_REDIS:
    four nodes given the same servers in these four ways form one cluster
    that agrees on the shard of every channel."""
    cl = make_cluster(CONFIG, n=4, redis_names=["r%d" % i for i in range(nredis)],
                      forms=["args", "comma", "config", "env"])
    for shard in range(nredis):
        chname = shard_chan(cl, "h:", shard)
        subs = [await connect(node) for node in cl]
        for s in subs:
            await s.ok("subscribe", channel=chname)
        for i, node in enumerate(cl):
            ok = await subs[i].ok("publish", channel=chname, data=i)
            assert ok["offset"] == i + 1, (cl.forms[i], ok)
        for i, s in enumerate(subs):
            got = await s.pubs(4)
            assert [(p["offset"], p["data"]) for p in got] == [(1, 0), (2, 1), (3, 2), (4, 3)], \
                "subscriber on the node given Redis as %s: %r" % (cl.forms[i], got)
        assert ch.stream_key(chname, cl.prefix) in cl.redis_of(chname).keys()


async def test_redis_uri_with_password_and_db(make_redis, server_factory):
    r = make_redis("pw", password="s3cret")
    url = "redis://:s3cret@127.0.0.1:%d/3" % r.port
    nodes = [server_factory(dict(CONFIG, node_name="pw-%d" % i), args=["--redis", url])
             for i in range(2)]
    for n in nodes:
        status, doc = ch.health(n)
        assert status == 200 and doc.get("broker") == "up", (status, doc)
    chname = hh.chan("h:")
    sub = await connect(nodes[0])
    await sub.ok("subscribe", channel=chname)
    pub = await connect(nodes[1], "msgpack")
    ok = await pub.ok("publish", channel=chname, data="through db 3")
    p = await sub.push("pub")
    assert p["offset"] == ok["offset"] == 1 and p["data"] == "through db 3", p
    assert ch.stream_key(chname) in r.keys(db=3)
    assert not [k for k in r.keys(db=0) if chname in k]


async def test_node_started_before_redis_becomes_ready_when_redis_comes(make_redis, tmp_path):
    """A node starts whether or not Redis answers: /healthz 503 broker down
    (subscribe 108) until Redis is there, then 200 up and working."""
    r = ch.RedisServer(str(tmp_path / "late"), name="late")
    r.port = hh.free_port()

    class EarlyNode(hh.HeraldServer):
        def wait_ready(self, timeout):   # ready = answering /healthz at all
            hh.wait_for(lambda: self.alive() and ch.health(self, timeout=1)[0] in (200, 503),
                        timeout, what=lambda: "herald answering /healthz:\n" + self.stderr_tail())

    node = EarlyNode(CONFIG, args=["--redis", r.url], tmpdir=str(tmp_path), name="early")
    try:
        node.start()
        assert ch.broker_down(node), ch.health(node)
        c = await connect(node)
        assert (await c.error("subscribe", channel=hh.chan("h:")))["code"] == 108
        await asyncio.to_thread(r.start)
        await hh.async_wait_for(lambda: asyncio.to_thread(ch.broker_up, node), t(12),
                                interval=0.1, what="broker up once Redis runs")
        chname = hh.chan("h:")
        await c.ok("subscribe", channel=chname)
        ok = await c.ok("publish", channel=chname, data="late")
        p = await c.push("pub")
        assert p["offset"] == ok["offset"] == 1 and p["data"] == "late"
        await c.close()
    finally:
        await asyncio.to_thread(node.stop)
        r.stop()


def test_bad_redis_uris_exit_2_without_echoing_the_password(tmp_path):
    for uri in ("http://127.0.0.1:6379", "redis://127.0.0.1:99999", "redis://127.0.0.1:6379/1001",
                "redis://:Pw-s3cret@", "redis://:Pw-s3cret@127.0.0.1:port"):
        r = subprocess.run([hh.HERALD_BIN, "--redis", uri, "--check-config"],
                           capture_output=True, text=True, timeout=t(10),
                           env={k: v for k, v in os.environ.items() if not k.startswith("HERALD_")})
        assert r.returncode == 2, (uri, r.returncode, r.stderr)
        assert "redis" in r.stderr.lower(), (uri, r.stderr)
        assert "Pw-s3cret" not in r.stderr + r.stdout, (uri, r.stderr)
    conf = tmp_path / "bad.conf"
    conf.write_text('redis = ["redis://127.0.0.1:1", "redis://:Pw-s3cret@127.0.0.1:x"];\n')
    r = subprocess.run([hh.HERALD_BIN, "--config", str(conf), "--check-config"],
                       capture_output=True, text=True, timeout=t(10))
    assert r.returncode == 2 and "bad.conf:1" in r.stderr, r.stderr
    assert "Pw-s3cret" not in r.stderr, r.stderr


async def test_wrong_redis_password_keeps_the_node_degraded_and_secret(make_redis, tmp_path):
    r = make_redis("auth", password="right-s3cret")
    url = "redis://:Wrong-s3cret@127.0.0.1:%d" % r.port

    class EarlyNode(hh.HeraldServer):
        def wait_ready(self, timeout):
            hh.wait_for(lambda: self.alive() and ch.health(self, timeout=1)[0] in (200, 503),
                        timeout, what=lambda: "herald answering /healthz:\n" + self.stderr_tail())

    node = EarlyNode(CONFIG, args=["--redis", url], tmpdir=str(tmp_path), name="wrongpw")
    try:
        node.start()
        # the refusal is logged (the contract only names "broker down" for a
        # link going down; this one never came up)
        await hh.async_wait_for(lambda: "WRONGPASS" in node.stderr() or "NOAUTH" in node.stderr(),
                                t(5), what=lambda: "Redis' refusal in the log:\n" + node.stderr_tail())
        assert ch.broker_down(node), ch.health(node)
        c = await connect(node)
        assert (await c.error("subscribe", channel=hh.chan("h:")))["code"] == 108
        await c.close()
    finally:
        await asyncio.to_thread(node.stop)
    assert "Wrong-s3cret" not in node.stderr(), "the password is in the log:\n" + node.stderr_tail()


async def test_replies_and_pushes_have_the_single_node_shapes(cl, server_factory):
    """The same session on a single node and across cluster nodes gives
    messages with the same keys and value types (clients cannot tell)."""
    single = server_factory(CONFIG)

    def shape(v):
        if isinstance(v, dict):
            return {k: shape(x) for k, x in v.items()
                    if k not in ("clients",)} if "clients" not in v else \
                {"clients": sorted({tuple(sorted(e)) for e in v["clients"].values()})}
        if isinstance(v, list):
            return [shape(v[0])] if v else []
        return type(v).__name__

    async def session(n1, n2, enc):
        out = {}
        a = await n1.client(enc)
        out["connect"] = shape(await a.ok("connect", token=hh.make_jwt(SECRET, sub="u1")))
        b = await n2.client(enc)
        await b.ok("connect", token=hh.make_jwt(SECRET, sub="u2"))
        chname = hh.chan("room:")
        out["subscribe"] = shape(await b.ok("subscribe", channel=chname))
        await a.ok("subscribe", channel=chname)
        out["join"] = shape(await b.push("join"))
        out["publish"] = shape(await a.ok("publish", channel=chname, data={"x": 1}))
        out["pub"] = shape(await b.push("pub"))
        out["history"] = shape(await b.ok("history", channel=chname))
        out["presence"] = shape(await b.ok("presence", channel=chname))
        first = (await a.push("pub"))
        out["recover"] = shape(await (await n2.client(enc)).ok(
            "subscribe", channel=chname, since={"offset": 0, "epoch": first["epoch"]}))
        out["join-anonymous"] = shape(await b.push("join"))
        await a.ok("unsubscribe", channel=chname)
        out["leave"] = shape(await b.push("leave"))
        out["error"] = shape(await b.error("subscribe", channel=chname))
        for c in (a, b):
            await c.close()
        return out

    for enc in ("json", "msgpack"):
        alone = await session(single, single, enc)
        spread = await session(cl[0], cl[1], enc)
        for k in alone:
            if k == "connect":
                continue      # node names differ, keys must not
            assert spread[k] == alone[k], "%s (%s): cluster %r, single node %r" % (
                k, enc, spread[k], alone[k])
        assert sorted(spread["connect"]) == sorted(alone["connect"])


# -- gaps in pub/sub (injected through the documented keys) ---------------------------

async def test_record_missing_from_pubsub_is_filled_from_the_window(cl):
    """A record that is in the window but never came through pub/sub (as if
    its PUBLISH was lost) is read from the window by every node when the
    next record shows the gap, and delivered in order, while publications
    keep coming from other nodes."""
    chname = cl.chan("h:", 1)
    subs = [await connect(cl[0]), await connect(cl[1], "msgpack"), await connect(cl[2])]
    for s in subs:
        await s.ok("subscribe", channel=chname)
    pa, pc = await connect(cl[0]), await connect(cl[2], "msgpack")
    acked = {}
    for i in range(3):
        ok = await pa.ok("publish", channel=chname, data={"k": "p%d" % i})
        acked[ok["offset"]] = "p%d" % i
    epoch = ok["epoch"]
    for s in subs:
        assert [p["offset"] for p in await s.pubs(3)] == [1, 2, 3]
    # offset 4 goes into the window and the top, but not to pub/sub
    home = cl.redis_of(chname)
    wkey, skey = ch.stream_key(chname, cl.prefix, "w"), ch.stream_key(chname, cl.prefix, "s")
    last = home.command("ZRANGE", wkey, -1, -1)[0]
    assert last.startswith(b"3:" + epoch.encode() + b":"), last
    home.command("ZADD", wkey, 4, b"4:" + last[2:])
    assert home.command("HINCRBY", skey, "t", 1) == 4
    acked[4] = "p2"            # the injected record repeats offset 3's body
    # the next publications show the gap; more race with the fill
    replies = await asyncio.gather(
        pc.batch([("publish", {"channel": chname, "data": {"k": "c%d" % i}}) for i in range(20)]),
        pa.batch([("publish", {"channel": chname, "data": {"k": "a%d" % i}}) for i in range(20)]))
    for tag, rs in zip("ca", replies):
        for i, r in enumerate(rs):
            acked[r["ok"]["offset"]] = "%s%d" % (tag, i)
    assert sorted(acked) == list(range(1, 45))
    for i, s in enumerate(subs):
        got = await s.pubs(41, timeout=t(10))
        ch.check_stream("subscriber on %s" % cl[i].name,
                        [(p["offset"], p["epoch"], p["data"]["k"]) for p in got],
                        acked, start=3, epoch=epoch)
    # records coming through pub/sub again, late (4 after it was filled, 3
    # long after): already delivered, so dropped
    pubsub = "%s:{%s}" % (cl.prefix, chname)
    for rec in (b"4:" + last[2:], last):
        assert home.command("PUBLISH", pubsub, rec) >= 1, "no node subscribed to %s" % pubsub
    ok = await pa.ok("publish", channel=chname, data={"k": "end"})
    assert ok["offset"] == 45
    for i, s in enumerate(subs):
        p = await s.push("pub")
        assert p["offset"] == 45, "subscriber on %s got offset %s again" % (cl[i].name, p["offset"])


async def test_record_missing_everywhere_closes_subscribers_with_4003(cl):
    """An offset that exists nowhere (the top moved past it, as after a
    lost write): the nodes cannot fill the gap, so they close their
    subscribers with 4003 instead of skipping it, and recovery across it
    is not claimed."""
    chname = cl.chan("h:", 0)
    subs = [await connect(cl[0]), await connect(cl[1], "msgpack")]
    for s in subs:
        await s.ok("subscribe", channel=chname)
    pub = await connect(cl[2])
    for i in range(3):
        ok = await pub.ok("publish", channel=chname, data=i)
    epoch = ok["epoch"]
    for s in subs:
        assert [p["offset"] for p in await s.pubs(3)] == [1, 2, 3]
    home = cl.redis_of(chname)
    assert home.command("HINCRBY", ch.stream_key(chname, cl.prefix, "s"), "t", 1) == 4
    ok = await pub.ok("publish", channel=chname, data=5)
    assert ok["offset"] == 5 and ok["epoch"] == epoch
    for s in subs:
        p = await s.push(timeout=t(5))
        assert p.get("push") == "disconnect" and p.get("code") == 4003 and \
            p.get("reconnect") is True, "expected disconnect 4003 for the lost offset 4, got %r" % p
        assert await s.wait_closed(t(5)) == 4003
    again = await connect(cl[0])
    r = await again.ok("subscribe", channel=chname, since={"offset": 3, "epoch": epoch})
    assert r["recovered"] is False or [p["offset"] for p in r["publications"]] == [4, 5], \
        "recovery across the lost offset 4 claimed: %r" % r
