"""Error replies and limits: malformed commands, unknown ops, channel names,
subscription rules, message size, protocol violations, permissions, rate
limit, connection limit, handshake rules."""

import asyncio
import json

import pytest
import websockets

import herald_harness as hh
from herald_harness import chan, t

server = hh.server_fixture({
    "log_level": "debug",          # "connection open" names each client's worker
    "max_message_size": 1024,
    "max_channels_per_conn": 3,
    "namespaces": [
        {"name": "news", "allow_publish": False},
        {"name": "small", "max_subscribers": 2},
    ],
})

rate_server = hh.server_fixture({"rate_limit": 5, "rate_burst": 5})

VALID_CHARS = "AZaz09_.:@/=-"


async def still_works(c):
    assert await c.ok("ping") == {}


# -- malformed input -------------------------------------------------------------

@pytest.mark.parametrize("frame", [
    "{not json",
    "[1, 2, 3]",
    "42",
    '"just a string"',
    "null",
    "{\"op\": \"ping\", \"id\": ",
])
async def test_unreadable_command_is_107_without_id(server, frame):
    c = await server.client()
    await c.send_raw(frame)
    e = await c.noid()
    assert e["error"]["code"] == 107, e
    await still_works(c)


async def test_truncated_command_is_107(server):
    """The id may or may not be salvaged from a truncated command."""
    c = await server.client()
    await c.send_raw('{"id": 1, "op": "ping"')
    e = await c.stray()
    assert e.get("id", 1) == 1 and e["error"]["code"] == 107, e
    await still_works(c)


async def test_empty_frame_does_not_hurt(server):
    """An empty frame holds no command: ignored or answered with 107."""
    c = await server.client()
    await c.send_raw("")
    await still_works(c)
    for e in c.pending_strays():
        assert "id" not in e and e["error"]["code"] == 107, e


@pytest.mark.parametrize("cmd", [
    {"id": 7},                                    # no op
    {"id": 7, "op": 5},                           # op not a string
    {"id": 7, "op": "subscribe"},                 # no channel
    {"id": 7, "op": "subscribe", "channel": 12},  # channel not a string
    {"id": 7, "op": "subscribe", "channel": None},
    {"id": 7, "op": "history", "channel": "x", "limit": "ten"},
    {"id": 7, "op": "history", "channel": "x", "limit": -1},
    {"id": 7, "op": "history", "channel": "x", "reverse": "yes"},
    {"id": 7, "op": "subscribe", "channel": "x", "since": 5},
    {"id": 7, "op": "subscribe", "channel": "x", "since": {"offset": "1", "epoch": "e"}},
    {"id": 7, "op": "subscribe", "channel": "x", "since": {"offset": -1, "epoch": "e"}},
    {"id": 7, "op": "connect", "token": 123},
    {"id": 7, "op": "unsubscribe"},
    {"id": 7, "op": "publish", "data": 1},        # no channel
])
async def test_malformed_command_with_id_is_107_with_id(server, cmd):
    c = await server.client()
    await c.ok("ping")
    r = await c.call_raw(cmd)
    assert r.get("id") == 7, r
    assert "error" in r and r["error"]["code"] == 107, r
    await still_works(c)


@pytest.mark.parametrize("cmd", [
    {"op": "ping"},                          # no id
    {"id": "1", "op": "ping"},               # id not an integer
    {"id": 0, "op": "ping"},                 # out of range
    {"id": -5, "op": "ping"},
    {"id": 2**32, "op": "ping"},
    {"id": 1.5, "op": "ping"},
])
async def test_bad_id_is_107(server, cmd):
    """An unusable id: error 107, without id (or echoing what was sent)."""
    c = await server.client()
    await c.send(cmd)
    e = await c.stray()
    assert e.get("id", cmd.get("id")) == cmd.get("id"), e
    assert e["error"]["code"] == 107, e
    await still_works(c)


async def test_unknown_op_is_104_with_id(server):
    c = await server.client()
    r = await c.call("frobnicate", channel="x")
    assert r["error"]["code"] == 104, r
    await still_works(c)


async def test_error_reply_shape(server):
    c = await server.client()
    r = await c.call("frobnicate")
    assert set(r) == {"id", "error"}
    assert isinstance(r["error"]["message"], str) and r["error"]["message"]


async def test_oversize_message_is_112_and_connection_stays(server):
    c = await server.client()
    ch = chan()
    await c.ok("subscribe", channel=ch)
    await c.send({"id": 99, "op": "publish", "channel": ch, "data": "x" * 2000})
    e = await c.noid()
    assert e["error"]["code"] == 112, e
    assert "id" not in e
    await still_works(c)
    # nothing was published
    r = await c.ok("publish", channel=ch, data="small")
    assert r["offset"] == 1


async def test_message_of_exactly_max_size_is_accepted(server):
    c = await server.client()
    ch = chan()
    cmd = {"id": 1, "op": "publish", "channel": ch, "data": ""}
    cmd["data"] = "y" * (1024 - len(hh.encode(cmd, "json")))
    assert len(hh.encode(cmd, "json")) == 1024
    r = await c.call_raw(cmd)
    assert r.get("ok", {}).get("offset") == 1, r


async def test_binary_frame_on_json_connection_is_107(server):
    c = await server.client()
    await c.send_raw(hh.mp_pack({"id": 1, "op": "ping"}))
    e = await c.noid()
    assert e["error"]["code"] == 107, e
    await still_works(c)


async def test_ten_malformed_commands_disconnect_4101(server):
    c = await server.client()
    for i in range(10):
        await c.send_raw("garbage %d" % i)
    p = await c.push("disconnect")
    assert p["code"] == 4101 and p["reconnect"] is False, p
    assert isinstance(p.get("reason"), str)
    assert await c.wait_closed() == 4101
    errors = c.pending_strays()
    assert all(e["error"]["code"] == 107 for e in errors), errors


async def test_nine_malformed_then_valid_keeps_connection(server):
    c = await server.client()
    for _ in range(3):
        for i in range(9):
            await c.send_raw("garbage %d" % i)
        await still_works(c)
    assert not c.closed.is_set()
    assert c.pending_pushes() == []


async def test_malformed_counter_counts_bad_commands_in_one_batch(server):
    c = await server.client()
    await c.send_raw("\n".join(["nope"] * 10))
    p = await c.push("disconnect")
    assert p["code"] == 4101
    assert await c.wait_closed() == 4101


# -- channel names -----------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "",
    "has space",
    "star*",
    "semi;colon",
    "qu\"ote",
    "uni\u00e9",
    "tab\t",
    "new\nline",
    "x" * 256,
    "nope:" + "y",            # unknown namespace
])
async def test_bad_channel_name_is_102(server, name):
    c = await server.client()
    for op in ("subscribe", "publish", "history", "presence"):
        fields = {"channel": name}
        if op == "publish":
            fields["data"] = 1
        r = await c.call(op, **fields)
        assert "error" in r and r["error"]["code"] == 102, (op, name, r)
    await still_works(c)


async def test_channel_name_charset_and_length_limits(server):
    c = await server.client()
    ok_names = [VALID_CHARS.replace(":", "") + chan(), "a", "x" * 255, "A-b_c.d@e/f=g"]
    for name in ok_names:
        await c.ok("publish", channel=name, data=1)
    assert len(ok_names[2]) == 255


# -- subscriptions ---------------------------------------------------------------

async def test_subscribe_twice_is_105(server):
    c = await server.client()
    ch = chan()
    await c.ok("subscribe", channel=ch)
    assert (await c.error("subscribe", channel=ch))["code"] == 105
    await still_works(c)


async def test_unsubscribe_when_not_subscribed_is_ok(server):
    c = await server.client()
    assert await c.ok("unsubscribe", channel=chan()) == {}


async def test_max_channels_per_conn_is_106(server):
    c = await server.client()
    names = [chan() for _ in range(4)]
    for n in names[:3]:
        await c.ok("subscribe", channel=n)
    assert (await c.error("subscribe", channel=names[3]))["code"] == 106
    await c.ok("unsubscribe", channel=names[0])
    await c.ok("subscribe", channel=names[3])


async def test_namespace_max_subscribers_is_106(server):
    ch = chan("small:")
    a, b = [await server.client() for _ in range(2)]
    await a.ok("subscribe", channel=ch)
    await b.ok("subscribe", channel=ch)
    # refused on both workers
    others = await hh.spread_clients(server, 5)
    for o in others:
        assert (await o.error("subscribe", channel=ch))["code"] == 106
    x = others[0]
    await a.close()

    async def got_in():
        r = await x.call("subscribe", channel=ch)
        return "ok" in r
    await hh.async_wait_for(got_in, t(5), interval=0.05, what="a free slot after a left")


async def test_publish_not_allowed_is_103(server):
    c = await server.client()
    ch = chan("news:")
    await c.ok("subscribe", channel=ch)
    assert (await c.error("publish", channel=ch, data="x"))["code"] == 103
    await still_works(c)


# -- rate limit ------------------------------------------------------------------

async def test_rate_limit_is_110_and_connection_stays(rate_server):
    c = await rate_server.client()
    replies = await c.batch([("ping", {}) for _ in range(40)])
    codes = [r["error"]["code"] if "error" in r else 0 for r in replies]
    assert 0 in codes, codes
    assert 110 in codes, codes
    assert set(codes) <= {0, 110}, codes
    assert not c.closed.is_set()

    # the bucket refills (5/s): a ping succeeds again soon
    async def ok_again():
        return "ok" in await c.call("ping")
    await hh.async_wait_for(ok_again, t(5), interval=0.3, what="the rate limit bucket to refill")


async def test_rate_limit_is_per_connection(rate_server):
    a, b = await rate_server.client(), await rate_server.client()
    await a.batch([("ping", {}) for _ in range(30)])
    assert await b.ok("ping") == {}


# -- worker_queue_max -------------------------------------------------------------

@pytest.mark.timeout(60)
async def test_worker_queue_max_refuses_110_before_an_offset(server_factory):
    """Publishing faster than a subscriber's worker takes deliveries
    (worker_queue_max = 64, bursts of 4 x 500 publishes): some publishes
    are refused with 110, none of them took an offset (the acknowledged
    offsets are exactly 1..N), the subscriber gets exactly those, and the
    next publication gets N + 1."""
    s = server_factory({"worker_queue_max": 64})
    ch = chan()
    reader = await s.client()
    await reader.ok("subscribe", channel=ch)
    pubs = [await s.client() for _ in range(4)]
    acked, refused = {}, 0
    for rnd in range(20):
        res = await asyncio.gather(*(
            p.batch([("publish", {"channel": ch, "data": [rnd, k, i]}) for i in range(500)],
                    one_frame=True) for k, p in enumerate(pubs)))
        for k, replies in enumerate(res):
            mine = []
            for r in replies:
                if "ok" in r:
                    mine.append(r["ok"]["offset"])
                    acked[r["ok"]["offset"]] = r["id"]
                else:
                    assert r["error"]["code"] == 110, r
                    refused += 1
            assert mine == sorted(mine), "one publisher's offsets must increase"
        if refused:
            break
    assert refused, "no publish refused with 110 in 20 bursts"
    n = len(acked)
    assert sorted(acked) == list(range(1, n + 1)), "a refused publish took an offset"
    got = await reader.pubs(n, timeout=t(20))
    assert [p["offset"] for p in got] == list(range(1, n + 1))
    r = await pubs[0].call("publish", channel=ch, data="next", timeout=t(10))
    assert r["ok"]["offset"] == n + 1, r
    assert (await reader.push("pub"))["offset"] == n + 1
    assert not any(p.closed.is_set() for p in pubs)


# -- connection limit -------------------------------------------------------------

async def test_connection_limit_4103(server_factory):
    s = server_factory({"max_connections": 3})
    first = [await s.client() for _ in range(3)]
    for c in first:
        await c.ok("connect")
    # extra ones until both workers have refused some
    def refused_on():
        return {l.get("worker") for l in s.log_lines() if l.get("msg") == "connection limit reached"}
    extras = 0
    while extras < 4 or refused_on() != {0, 1}:
        assert extras < 40, "refused only on workers %r" % refused_on()
        extra = await s.client()
        extras += 1
        p = await extra.push("disconnect", timeout=t(5))
        assert p["code"] == 4103 and p["reconnect"] is True, p
        assert await extra.wait_closed() == 4103
        await hh.async_wait_for(lambda: len([l for l in s.log_lines() if l.get("msg") ==
                                             "connection limit reached"]) == extras,
                                t(5), what="%d refusals logged" % extras)
    for c in first:
        await still_works(c)
    await first[0].close()

    async def can_connect():
        c = await s.client()
        r = await c.call("ping", timeout=t(2))
        return "ok" in r
    await hh.async_wait_for(can_connect, t(5), interval=0.1,
                            what="a new connection once one left")


# -- handshake ---------------------------------------------------------------------

async def test_unknown_subprotocol_is_refused(server):
    with pytest.raises((websockets.InvalidHandshake, websockets.InvalidStatusCode)):
        c = await hh.Client.open(server, subprotocols=["herald.v9.xml"])
        # a server that ignores the header completes the handshake without a
        # subprotocol; that is a refusal failure too
        await c.close()
        raise AssertionError("handshake with an unknown subprotocol succeeded")


def test_unknown_subprotocol_raw_handshake_not_101(server):
    with pytest.raises(hh.HandshakeRefused):
        server.raw(subprotocol="herald.v9.xml").close()


async def test_known_subprotocol_chosen_among_others(server):
    c = await hh.Client.open(server, subprotocols=["herald.v9.xml", hh.JSON_SUB])
    assert c.ws.subprotocol == hh.JSON_SUB
    await still_works(c)


async def test_websocket_only_at_ws(server):
    with pytest.raises((websockets.InvalidHandshake, websockets.InvalidStatusCode)):
        await hh.Client.open(server, path="/other")


def test_subprotocol_header_in_handshake_response(server):
    raw = server.raw()                      # none offered: JSON, no header back
    assert raw.subprotocol is None, raw.headers
    assert raw.call({"id": 1, "op": "ping"})[0] == {"id": 1, "ok": {}}
    raw.close()
    raw = server.raw(subprotocol=hh.MSGPACK_SUB)
    assert raw.subprotocol == hh.MSGPACK_SUB
    assert raw.call({"id": 1, "op": "ping"}, enc="msgpack")[0] == {"id": 1, "ok": {}}
    raw.close()
    raw = server.raw(subprotocol=hh.JSON_SUB)
    assert raw.subprotocol == hh.JSON_SUB
    raw.close()
