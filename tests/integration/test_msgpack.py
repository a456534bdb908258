"""herald.v1.msgpack: binary frames, batching, cross-encoding delivery."""

import base64

import pytest

import herald_harness as hh
from herald_harness import chan

server = hh.server_fixture({
    "max_message_size": 4096,
    "namespaces": [{"name": "h", "history_size": 10}],
})


async def test_msgpack_subprotocol_and_binary_replies(server):
    c = await server.client(enc="msgpack")
    assert c.ws.subprotocol == hh.MSGPACK_SUB
    ok = await c.ok("connect")
    assert isinstance(ok["client"], str)
    assert ok["ping"] == 25
    assert c.bad_frames == []   # every frame was binary msgpack


async def test_msgpack_pubsub_with_bin_data(server):
    ch = chan()
    sub, pub = await server.client(enc="msgpack"), await server.client(enc="msgpack")
    s = await sub.ok("subscribe", channel=ch)
    assert s["offset"] == 0 and isinstance(s["epoch"], str)
    blob = bytes(range(256))
    r = await pub.ok("publish", channel=ch, data=blob)
    assert r["offset"] == 1
    p = await sub.push("pub")
    assert p["data"] == blob and isinstance(p["data"], bytes)
    assert p["channel"] == ch and p["offset"] == 1 and p["epoch"] == s["epoch"]


@pytest.mark.parametrize("data", [
    {"a": [1, 2, {"b": None}], "c": True, "d": 1.5, "e": "text ✓"},
    [1, -1, 2**40, "x", False],
    "string",
    0,
    None,
    {},
])
async def test_json_publisher_to_msgpack_subscriber(server, data):
    ch = chan()
    sub, pub = await server.client(enc="msgpack"), await server.client()
    await sub.ok("subscribe", channel=ch)
    pid = (await pub.ok("connect"))["client"]
    await pub.ok("publish", channel=ch, data=data)
    p = await sub.push("pub")
    assert p["data"] == data
    assert p["info"]["client"] == pid
    assert not p.get("binary")


@pytest.mark.parametrize("data", [
    {"a": [1, 2, {"b": None}], "c": True, "d": 1.5, "e": "text ✓"},
    [1, -1, 2**40, "x", False],
    "string",
    None,
])
async def test_msgpack_publisher_to_json_subscriber(server, data):
    ch = chan()
    sub, pub = await server.client(), await server.client(enc="msgpack")
    await sub.ok("subscribe", channel=ch)
    pid = (await pub.ok("connect"))["client"]
    await pub.ok("publish", channel=ch, data=data)
    p = await sub.push("pub")
    assert p["data"] == data
    assert p["info"]["client"] == pid
    assert not p.get("binary")


async def test_msgpack_bin_reaches_json_as_base64(server):
    ch = chan()
    js, mp = await server.client(), await server.client(enc="msgpack")
    await js.ok("subscribe", channel=ch)
    await mp.ok("subscribe", channel=ch)
    blob = b"\x00\x01\xfe\xffbinary\n"
    await mp.ok("publish", channel=ch, data=blob)
    p = await js.push("pub")
    assert p["binary"] is True
    assert base64.b64decode(p["data"]) == blob
    q = await mp.push("pub")
    assert q["data"] == blob


async def test_history_across_encodings(server):
    ch = chan("h:")
    js, mp = await server.client(), await server.client(enc="msgpack")
    await js.ok("publish", channel=ch, data={"from": "json"})
    await mp.ok("publish", channel=ch, data=b"\x01\x02")
    hm = await mp.ok("history", channel=ch)
    assert [p["data"] for p in hm["publications"]] == [{"from": "json"}, b"\x01\x02"]
    hj = await js.ok("history", channel=ch)
    assert hj["publications"][0]["data"] == {"from": "json"}
    assert hj["publications"][1]["binary"] is True
    assert base64.b64decode(hj["publications"][1]["data"]) == b"\x01\x02"
    assert hm["epoch"] == hj["epoch"] and hm["offset"] == hj["offset"] == 2


async def test_msgpack_recovery(server):
    ch = chan("h:")
    mp = await server.client(enc="msgpack")
    s = await mp.ok("subscribe", channel=ch)
    js = await server.client()
    await js.ok("publish", channel=ch, data=[0])
    assert (await mp.push("pub"))["data"] == [0]
    await mp.close()
    await js.ok("publish", channel=ch, data=[1])
    mpub = await server.client(enc="msgpack")
    await mpub.ok("publish", channel=ch, data=b"\x02")
    mp2 = await server.client(enc="msgpack")
    ok = await mp2.ok("subscribe", channel=ch, since={"offset": 1, "epoch": s["epoch"]})
    assert ok["recovered"] is True
    assert [p["data"] for p in ok["publications"]] == [[1], b"\x02"]
    assert [p["offset"] for p in ok["publications"]] == [2, 3]


async def test_client_batched_msgpack_commands(server):
    c = await server.client(enc="msgpack")
    ch = chan()
    replies = await c.batch([("subscribe", {"channel": ch}), ("ping", {}),
                             ("publish", {"channel": ch, "data": b"z"})], one_frame=True)
    assert ["ok" in r for r in replies] == [True, True, True], replies
    assert (await c.push("pub"))["data"] == b"z"


async def test_server_batching_msgpack(server):
    ch = chan()
    sub, pub = await server.client(enc="msgpack"), await server.client(enc="msgpack")
    await sub.ok("subscribe", channel=ch)
    n = 300
    await pub.batch([("publish", {"channel": ch, "data": i}) for i in range(n)])
    got = await sub.pubs(n)
    assert [p["data"] for p in got] == list(range(n))
    assert [p["offset"] for p in got] == list(range(1, n + 1))


async def test_text_frame_on_msgpack_connection_is_107(server):
    c = await server.client(enc="msgpack")
    await c.send_raw('{"id":1,"op":"ping"}')
    e = await c.noid()
    assert e["error"]["code"] == 107
    assert await c.ok("ping") == {}


@pytest.mark.parametrize("frame", [
    b"\xc1",                           # never-used byte
    b"\x92\x01",                       # truncated array
    b"\x81\xa2id",                     # truncated map
    b"\x93\x01\x02\x03",               # an array, not a map
    b"\xa5hello",                      # a string
    hh.mp_pack({"id": 1}),            # no op (has id: handled below)
])
async def test_malformed_msgpack_is_107(server, frame):
    c = await server.client(enc="msgpack")
    await c.send_raw(frame)
    e = await c.stray()
    assert e["error"]["code"] == 107, e
    assert await c.ok("ping") == {}


@pytest.mark.parametrize("data", [
    {1: "non-string key"},
    hh.msgpack.ExtType(5, b"ext"),
    float("nan"),
    float("inf"),
])
async def test_msgpack_data_not_representable_in_json_is_107(server, data):
    c = await server.client(enc="msgpack")
    e = await c.error("publish", channel=chan(), data=data)
    assert e["code"] == 107, e


async def test_msgpack_oversize_is_112(server):
    c = await server.client(enc="msgpack")
    await c.send({"id": 5, "op": "publish", "channel": chan(), "data": b"x" * 5000})
    e = await c.noid()
    assert e["error"]["code"] == 112
    assert await c.ok("ping") == {}


async def test_msgpack_errors_and_ids(server):
    c = await server.client(enc="msgpack")
    r = await c.call("nope")
    assert r["error"]["code"] == 104 and r["id"] >= 1
    r = await c.call("ping", id=2**32 - 1)
    assert r == {"id": 2**32 - 1, "ok": {}}


async def test_ten_malformed_msgpack_commands_disconnect_4101(server):
    c = await server.client(enc="msgpack")
    for _ in range(10):
        await c.send_raw(b"\xc1")
    p = await c.push("disconnect")
    assert p["code"] == 4101 and p["reconnect"] is False, p
    assert await c.wait_closed() == 4101
