"""Connect, subscribe, publish, unsubscribe; pub pushes; ordering across
workers; reply order; client- and server-side batching (JSON)."""

import asyncio

import pytest

import herald_harness as hh
from herald_harness import chan, t

server = hh.server_fixture({
    "node_name": "pubsub-node",
    "log_level": "debug",          # "connection open" names each client's worker
    "namespace_defaults": {"history_size": 0},
    "namespaces": [{"name": "chat", "history_size": 10}],
})


async def test_connect_reply(server):
    c = await server.client()
    ok = await c.ok("connect", name="it", version="0.0")
    assert isinstance(ok["client"], str) and ok["client"]
    assert ok["node"] == "pubsub-node"
    assert ok["ping"] == 25
    assert ok.get("expires") in (None, 0) or "expires" not in ok


async def test_client_ids_are_unique(server):
    ids = set()
    for _ in range(5):
        c = await server.client()
        ids.add((await c.ok("connect"))["client"])
    assert len(ids) == 5


async def test_explicit_json_subprotocol(server):
    c = await server.client(subprotocols=[hh.JSON_SUB])
    assert c.ws.subprotocol == hh.JSON_SUB
    await c.ok("ping")


async def test_first_command_connects_anonymously(server):
    c = await server.client()
    ch = chan()
    ok = await c.ok("subscribe", channel=ch)
    assert isinstance(ok["epoch"], str) and ok["epoch"]
    assert ok["offset"] == 0
    assert "recovered" not in ok


async def test_ping_op(server):
    c = await server.client()
    assert await c.ok("ping") == {}


async def test_publish_reaches_subscribers_with_info(server):
    ch = chan()
    sub1, sub2, pub = [await server.client() for _ in range(3)]
    await sub1.ok("connect")
    s1 = await sub1.ok("subscribe", channel=ch)
    s2 = await sub2.ok("subscribe", channel=ch)
    assert s1["epoch"] == s2["epoch"]
    pid = (await pub.ok("connect"))["client"]
    r = await pub.ok("publish", channel=ch, data={"text": "hello"})
    assert r["offset"] == 1
    assert r["epoch"] == s1["epoch"]
    for sub in (sub1, sub2):
        p = await sub.push("pub")
        assert p["channel"] == ch
        assert p["offset"] == 1
        assert p["epoch"] == s1["epoch"]
        assert p["data"] == {"text": "hello"}
        assert p["info"]["client"] == pid
        assert p["info"].get("user", "") == ""


async def test_publish_does_not_require_subscription_and_offsets_increase(server):
    ch = chan()
    sub, pub = await server.client(), await server.client()
    await sub.ok("subscribe", channel=ch)
    offsets = [(await pub.ok("publish", channel=ch, data=i))["offset"] for i in range(5)]
    assert offsets == [1, 2, 3, 4, 5]
    got = await sub.pubs(5)
    assert [p["offset"] for p in got] == [1, 2, 3, 4, 5]
    assert [p["data"] for p in got] == [0, 1, 2, 3, 4]
    assert pub.pending_pushes() == []  # the publisher is not subscribed


async def test_subscriber_receives_its_own_publication(server):
    ch = chan()
    c = await server.client()
    await c.ok("subscribe", channel=ch)
    await c.ok("publish", channel=ch, data="me")
    p = await c.push("pub")
    assert p["data"] == "me" and p["offset"] == 1


@pytest.mark.parametrize("data", [
    {"a": [1, 2, {"b": None}], "c": True, "d": 1.5},
    [1, "two", 3.25, False, None],
    "plain string with \"quotes\" and \\ and \n newline",
    "unicode: héllo wörld ✓ 😀",
    12345678901234,
    -7,
    0.5,
    True,
    None,
    {},
    [],
    "",
])
async def test_data_round_trips_any_json_value(server, data):
    ch = chan()
    sub, pub = await server.client(), await server.client()
    await sub.ok("subscribe", channel=ch)
    await pub.ok("publish", channel=ch, data=data)
    p = await sub.push("pub")
    assert p["data"] == data
    assert "binary" not in p or p["binary"] is False


async def test_publish_without_data_is_bad_request(server):
    c = await server.client()
    e = await c.error("publish", channel=chan())
    assert e["code"] == 107


async def test_publish_into_namespace(server):
    ch = chan("chat:")
    sub, pub = await server.client(), await server.client()
    ok = await sub.ok("subscribe", channel=ch)
    assert ok["offset"] == 0
    await pub.ok("publish", channel=ch, data={"n": 1})
    assert (await sub.push("pub"))["channel"] == ch


async def test_channels_are_independent(server):
    a, b = chan(), chan()
    sub, pub = await server.client(), await server.client()
    await sub.ok("subscribe", channel=a)
    await sub.ok("subscribe", channel=b)
    assert (await pub.ok("publish", channel=a, data="a1"))["offset"] == 1
    assert (await pub.ok("publish", channel=b, data="b1"))["offset"] == 1
    assert (await pub.ok("publish", channel=a, data="a2"))["offset"] == 2
    got = await sub.pubs(3)
    by_chan = {}
    for p in got:
        by_chan.setdefault(p["channel"], []).append((p["offset"], p["data"]))
    assert by_chan == {a: [(1, "a1"), (2, "a2")], b: [(1, "b1")]}


async def test_unsubscribe_stops_delivery(server):
    gone, marker = chan(), chan()
    sub, pub = await server.client(), await server.client()
    await sub.ok("subscribe", channel=gone)
    await sub.ok("subscribe", channel=marker)
    assert await sub.ok("unsubscribe", channel=gone) == {}
    await pub.ok("publish", channel=gone, data="should not arrive")
    await pub.ok("publish", channel=marker, data="marker")
    p = await sub.push("pub")
    assert p["channel"] == marker, "got a publication after unsubscribe: %r" % p
    # subscribing again works
    await sub.ok("subscribe", channel=gone)
    await pub.ok("publish", channel=gone, data="again")
    assert (await sub.push("pub"))["data"] == "again"


async def test_disconnected_subscriber_does_not_break_fanout(server):
    ch = chan()
    gone, stay, pub = [await server.client() for _ in range(3)]
    await gone.ok("subscribe", channel=ch)
    await stay.ok("subscribe", channel=ch)
    await gone.close()
    for i in range(3):
        await pub.ok("publish", channel=ch, data=i)
    assert [p["data"] for p in await stay.pubs(3)] == [0, 1, 2]


async def test_replies_come_in_command_order(server):
    c = await server.client()
    ch = chan()
    cmds = [("subscribe", {"channel": ch})]
    for i in range(40):
        cmds.append(("publish", {"channel": chan(), "data": i}) if i % 3 else ("ping", {}))
    replies = await c.batch(cmds)
    assert all("ok" in r for r in replies), replies
    sent_ids = [r["id"] for r in replies]
    assert c.reply_order[:len(sent_ids)] == sent_ids


async def test_client_batched_commands_in_one_json_frame(server):
    c = await server.client()
    ch = chan()
    replies = await c.batch([("subscribe", {"channel": ch}), ("ping", {}),
                             ("publish", {"channel": ch, "data": "x"})], one_frame=True)
    assert [("ok" in r) for r in replies] == [True, True, True], replies
    assert replies[2]["ok"]["offset"] == 1
    assert (await c.push("pub"))["data"] == "x"


async def test_large_ids_are_echoed(server):
    c = await server.client()
    r = await c.call("ping", id=2**32 - 1)
    assert r == {"id": 2**32 - 1, "ok": {}}


@pytest.mark.timeout(60)
async def test_ordering_across_workers_concurrent_publishers(server):
    """10 or more subscribers (JSON and msgpack ones on both workers) and 4
    or more concurrent publishers (on both workers): every subscriber sees
    offsets 1..N, no gap, no duplicate, and the same data at the same
    offset."""
    ch = chan()
    n_pubs, per_pub = 4, 60
    subs = await hh.spread_clients(server, 10, encs=("json", "json", "msgpack"))
    for s in subs:
        assert (await s.ok("subscribe", channel=ch))["offset"] == 0
    pubs = await hh.spread_clients(server, n_pubs)
    n_pubs = len(pubs)
    total = n_pubs * per_pub

    async def publisher(k, c):
        offsets = []
        for start in range(0, per_pub, 10):
            replies = await c.batch([("publish", {"channel": ch, "data": {"p": k, "i": i}})
                                     for i in range(start, start + 10)])
            offsets += [r["ok"]["offset"] for r in replies]
        return offsets

    results = await asyncio.gather(*(publisher(k, c) for k, c in enumerate(pubs)))
    all_offsets = sorted(o for r in results for o in r)
    assert all_offsets == list(range(1, total + 1))
    for r in results:
        assert r == sorted(r), "one publisher's offsets must increase"

    received = await asyncio.gather(*(s.pubs(total, timeout=t(30)) for s in subs))
    reference = [(p["offset"], p["data"]) for p in received[0]]
    assert [o for o, _ in reference] == list(range(1, total + 1))
    # each publisher's messages appear in the order it sent them
    for k in range(n_pubs):
        seq = [d["i"] for _, d in reference if d["p"] == k]
        assert seq == list(range(per_pub))
    for i, got in enumerate(received[1:], 1):
        assert [(p["offset"], p["data"]) for p in got] == reference, "subscriber %d differs" % i
        assert len({p["epoch"] for p in got}) == 1


async def test_server_batching_is_split_by_the_client(server):
    """Many quick publications to one subscriber: however the server frames
    them (one per frame or '\\n'-batched), all arrive in order."""
    ch = chan()
    sub, pub = await server.client(), await server.client()
    await sub.ok("subscribe", channel=ch)
    n = 300
    await pub.batch([("publish", {"channel": ch, "data": {"i": i, "pad": "x" * 100}})
                     for i in range(n)])
    got = await sub.pubs(n)
    assert [p["data"]["i"] for p in got] == list(range(n))
    assert [p["offset"] for p in got] == list(range(1, n + 1))
    assert sub.frames <= n + 1


async def test_healthz_still_ok_after_traffic(server):
    status, body = server.healthz()
    assert status == 200 and body["status"] == "ok"


async def test_batched_frames_respect_max_batch_bytes(server_factory):
    s = server_factory({"max_batch_bytes": 4096})
    ch = chan()
    subs = [await s.client(), await s.client(enc="msgpack")]
    for c in subs:
        await c.ok("subscribe", channel=ch)
    pub = await s.client()
    n = 400
    big = 10000   # every 50th publication is bigger than max_batch_bytes
    await pub.batch([("publish", {"channel": ch, "data": {
        "i": i, "pad": "z" * (big if i % 50 == 7 else 200)}}) for i in range(n)])
    for c in subs:
        # The backlog is dozens of frames: they must leave without waiting
        # for unrelated events to wake the worker (they once went out one
        # frame per loop wake-up, the last ones seconds later).
        got = await c.pubs(n, timeout=t(3))
        assert [p["data"]["i"] for p in got] == list(range(n))
        assert all(len(p["data"]["pad"]) in (200, big) for p in got)
        # a frame holds several messages only while it stays within the cap;
        # a single bigger message travels alone
        assert c.frames < n, "no batching at all"
        assert max(c.frame_sizes) < big + 500, max(c.frame_sizes)
        small = [sz for sz in c.frame_sizes if sz <= 4096]
        assert len(c.frame_sizes) - len(small) <= n // 50 + 1, sorted(c.frame_sizes)[-12:]


async def test_backlog_of_many_frames_leaves_without_other_events(server_factory):
    """A backlog bigger than one frame (max_batch_bytes) is written frame
    after frame at once, with nothing else happening on the server. Each
    round is about 40 frames of 1 KiB: a server writing one frame per
    wake-up would wait for its 1 s tick before each, about 40 s, far beyond
    the wait for the round (5 s, 15 s under the sanitizers)."""
    s = server_factory({"max_batch_bytes": 1024})
    ch = chan()
    sub = await s.client()
    await sub.ok("subscribe", channel=ch)
    pub = await s.client()
    for r in range(5):
        frames = sub.frames
        await pub.batch([("publish", {"channel": ch, "data": {"r": r, "i": i,
                                                            "pad": "y" * 600}})
                         for i in range(60)])
        got = await sub.pubs(60, timeout=t(5))
        assert [p["data"]["i"] for p in got] == list(range(60))
        assert sub.frames - frames >= 30, "round %d: %d frames" % (r, sub.frames - frames)


async def test_message_shapes(server):
    """Replies and pushes carry the keys protocol-v1 lists, with the types
    it gives."""
    ch = chan("chat:")
    c = await server.client()
    r = await c.call("connect")
    assert set(r) == {"id", "ok"}
    assert set(r["ok"]) <= {"client", "node", "ping", "expires"}
    assert isinstance(r["ok"]["ping"], int)
    r = await c.call("subscribe", channel=ch)
    assert set(r["ok"]) == {"epoch", "offset"}, r
    r = await c.call("subscribe", channel=chan("chat:"),
                     since={"offset": 0, "epoch": r["ok"]["epoch"]})
    assert set(r["ok"]) == {"epoch", "offset", "recovered", "publications"}, r
    r = await c.call("publish", channel=ch, data={"k": "v"})
    assert set(r["ok"]) == {"offset", "epoch"}, r
    assert isinstance(r["ok"]["offset"], int) and isinstance(r["ok"]["epoch"], str)
    p = await c.push("pub")
    assert {"push", "channel", "offset", "epoch", "data"} <= set(p) <= \
        {"push", "channel", "offset", "epoch", "data", "info", "binary", "time"}, p
    assert set(p["info"]) <= {"client", "user"}
    r = await c.call("history", channel=ch)
    assert set(r["ok"]) == {"publications", "epoch", "offset"}, r
    h = r["ok"]["publications"][0]
    assert {"offset", "data"} <= set(h), h
    assert (h["offset"], h["data"]) == (p["offset"], p["data"])
    r = await c.call("unsubscribe", channel=ch)
    assert r["ok"] == {}
    r = await c.call("nope")
    assert set(r) == {"id", "error"} and set(r["error"]) == {"code", "message"}


@pytest.mark.timeout(60)
async def test_fanout_to_200_connections(server):
    ch = chan()
    n_conns, n_msgs = 200, 20
    subs = await asyncio.gather(*(server.client(enc="msgpack" if i % 2 else "json")
                                  for i in range(n_conns)))
    await asyncio.gather(*(c.ok("subscribe", channel=ch) for c in subs))
    base = server.healthz()[1]["connections"]
    assert base >= n_conns
    pub = await server.client()
    await pub.batch([("publish", {"channel": ch, "data": {"i": i}}) for i in range(n_msgs)])
    got = await asyncio.gather(*(c.pubs(n_msgs, timeout=t(20)) for c in subs))
    for g in got:
        assert [p["offset"] for p in g] == list(range(1, n_msgs + 1))
        assert [p["data"]["i"] for p in g] == list(range(n_msgs))


@pytest.mark.timeout(60)
async def test_subscribe_during_publishing_continues_from_reply_offset(server):
    """Subscribing while publications flow: the pushes a subscriber gets
    start right after the offset in its subscribe reply, with no gap and
    nothing older (JSON and msgpack, on both workers)."""
    ch = chan()
    keep = await server.client()           # keeps the stream alive
    await keep.ok("subscribe", channel=ch)
    pub = await server.client()
    total = 400

    async def publisher():
        for start in range(0, total, 10):
            await pub.batch([("publish", {"channel": ch, "data": i})
                             for i in range(start, start + 10)])
            await asyncio.sleep(0.003)

    task = asyncio.get_running_loop().create_task(publisher())
    subs, seen = [], set()
    want = {(e, w) for e in ("json", "msgpack") for w in (0, 1)}
    while len(subs) < 10 or not want <= seen:   # JSON and msgpack on both workers
        assert len(subs) < 40, "no subscriber on %r" % sorted(want - seen)
        enc = "msgpack" if len(subs) % 2 else "json"
        c = await server.client(enc=enc)
        seen.add((enc, await c.worker()))
        ok = await c.ok("subscribe", channel=ch)
        subs.append((c, ok["offset"]))
        await asyncio.sleep(0.01)
    await task
    for c, start in subs:
        got = await c.pubs(total - start, timeout=t(20))
        assert [p["offset"] for p in got] == list(range(start + 1, total + 1)), \
            "subscribed at %d, got %r..." % (start, [p["offset"] for p in got][:5])
        assert [p["data"] for p in got] == list(range(start, total))
    assert any(0 < start < total for _, start in subs), "no subscribe happened mid-stream"
