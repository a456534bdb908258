"""Presence and join/leave pushes."""

import herald_harness as hh
from herald_harness import chan

SECRET = "presence-secret"

server = hh.server_fixture({
    "log_level": "debug",          # "connection open" names each client's worker
    "token_secret": SECRET,
    "allow_anonymous": True,
    "namespaces": [
        {"name": "room", "presence": True, "join_leave": True},
        {"name": "quiet", "presence": True},
        {"name": "jl", "join_leave": True},
    ],
})


async def user_client(server, user):
    c = await server.client()
    ok = await c.ok("connect", token=hh.make_jwt(SECRET, sub=user))
    return c, ok["client"]


async def anon_client(server):
    c = await server.client()
    ok = await c.ok("connect")
    return c, ok["client"]


def users(presence_ok):
    return {cid: v.get("user", "") for cid, v in presence_ok["clients"].items()}


async def test_presence_lists_subscribers_with_users(server):
    ch = chan("room:")
    a, aid = await user_client(server, "alice")
    b, bid = await user_client(server, "bob")
    n, nid = await anon_client(server)
    outsider, _ = await anon_client(server)
    for c in (a, b, n):
        await c.ok("subscribe", channel=ch)
    p = await outsider.ok("presence", channel=ch)
    assert users(p) == {aid: "alice", bid: "bob", nid: ""}


async def test_presence_of_empty_channel(server):
    c, _ = await anon_client(server)
    assert (await c.ok("presence", channel=chan("room:")))["clients"] == {}


async def test_join_goes_to_other_subscribers_only(server):
    ch = chan("room:")
    a, aid = await user_client(server, "alice")
    b, bid = await user_client(server, "bob")
    c, cid = await user_client(server, "carol")
    await a.ok("subscribe", channel=ch)
    await b.ok("subscribe", channel=ch)
    j = await a.push("join")
    assert j["channel"] == ch
    assert j["info"]["client"] == bid and j["info"]["user"] == "bob"
    await c.ok("subscribe", channel=ch)
    # b's first push is carol's join: b got no join about itself
    j = await b.push("join")
    assert j["info"]["client"] == cid, "b got %r" % j
    j = await a.push("join")
    assert j["info"]["client"] == cid
    # carol got nothing about herself: her first push is the marker pub
    await a.ok("publish", channel=ch, data="marker")
    assert (await c.push())["push"] == "pub"


async def test_leave_on_unsubscribe(server):
    ch = chan("room:")
    a, aid = await user_client(server, "alice")
    b, bid = await user_client(server, "bob")
    await a.ok("subscribe", channel=ch)
    await b.ok("subscribe", channel=ch)
    await a.push("join")
    await b.ok("unsubscribe", channel=ch)
    lv = await a.push("leave")
    assert lv["channel"] == ch
    assert lv["info"]["client"] == bid and lv["info"]["user"] == "bob"
    assert users(await a.ok("presence", channel=ch)) == {aid: "alice"}


async def test_leave_on_disconnect(server):
    ch = chan("room:")
    a, aid = await user_client(server, "alice")
    b, bid = await user_client(server, "bob")
    await a.ok("subscribe", channel=ch)
    await b.ok("subscribe", channel=ch)
    await a.push("join")
    await b.close()
    lv = await a.push("leave")
    assert lv["info"]["client"] == bid
    assert users(await a.ok("presence", channel=ch)) == {aid: "alice"}


async def test_presence_without_join_leave(server):
    ch = chan("quiet:")
    a, aid = await user_client(server, "alice")
    b, bid = await user_client(server, "bob")
    await a.ok("subscribe", channel=ch)
    await b.ok("subscribe", channel=ch)
    assert users(await a.ok("presence", channel=ch)) == {aid: "alice", bid: "bob"}
    await b.ok("publish", channel=ch, data="marker")
    p = await a.push()
    assert p["push"] == "pub", "no join expected in a namespace without join_leave, got %r" % p
    await b.close()
    await b.wait_closed()
    # presence eventually drops b; no leave push arrives meanwhile
    async def b_gone():
        return users(await a.ok("presence", channel=ch)) == {aid: "alice"}
    await hh.async_wait_for(b_gone, hh.t(5), interval=0.05, what="bob to leave presence")
    await a.ok("publish", channel=ch, data="marker2")
    assert (await a.push())["push"] == "pub"


async def test_join_leave_without_presence(server):
    ch = chan("jl:")
    a, _ = await anon_client(server)
    b, bid = await user_client(server, "bob")
    await a.ok("subscribe", channel=ch)
    await b.ok("subscribe", channel=ch)
    assert (await a.push("join"))["info"]["client"] == bid
    assert (await a.error("presence", channel=ch))["code"] == 108


async def test_presence_off_is_108(server):
    c, _ = await anon_client(server)
    ch = chan()
    await c.ok("subscribe", channel=ch)
    assert (await c.error("presence", channel=ch))["code"] == 108


async def test_presence_unknown_namespace_is_102(server):
    c, _ = await anon_client(server)
    assert (await c.error("presence", channel=chan("nowhere:")))["code"] == 102


async def test_presence_across_encodings(server):
    ch = chan("room:")
    a, aid = await user_client(server, "alice")
    m = await server.client(enc="msgpack")
    mid = (await m.ok("connect", token=hh.make_jwt(SECRET, sub="mallory")))["client"]
    await a.ok("subscribe", channel=ch)
    await m.ok("subscribe", channel=ch)
    j = await a.push("join")
    assert j["info"] == {"client": mid, "user": "mallory"} or \
        (j["info"]["client"] == mid and j["info"]["user"] == "mallory")
    assert users(await m.ok("presence", channel=ch)) == {aid: "alice", mid: "mallory"}


async def test_presence_and_join_leave_across_workers(server):
    """8 or more subscribers, on both workers: presence lists all of them,
    each one's join reaches every earlier subscriber, and a leave reaches
    all the others."""
    ch = chan("room:")
    clients, workers = [], set()
    i = -1
    while len(clients) < 8 or workers != {0, 1}:
        assert len(clients) < 40, "every subscriber on worker %r" % workers
        i += 1
        c, cid = await user_client(server, "u%d" % i)
        workers.add(await c.worker())
        await c.ok("subscribe", channel=ch)
        for prev, _ in clients:
            j = await prev.push("join")
            assert j["info"] == {"client": cid, "user": "u%d" % i} or \
                (j["info"]["client"] == cid and j["info"]["user"] == "u%d" % i), j
        clients.append((c, cid))
    expect = {cid: "u%d" % i for i, (_, cid) in enumerate(clients)}
    for c, _ in clients:
        assert users(await c.ok("presence", channel=ch)) == expect
    gone, gone_id = clients.pop(3)
    await gone.close()
    for c, _ in clients:
        lv = await c.push("leave")
        assert lv["info"]["client"] == gone_id
    del expect[gone_id]
    assert users(await clients[0][0].ok("presence", channel=ch)) == expect


# -- conn_info: the connection token's `info` ----------------------------------

async def test_token_info_reaches_presence_and_join_leave(server):
    """The `info` claim of a connection token is the client's `conn_info`
    in presence answers and join/leave pushes, in both encodings (msgpack
    gets a map, not JSON text); a client without info has none."""
    ch = chan("room:")
    info = {"name": "Ada", "tags": ["x", 1], "nested": {"ok": True}}
    watcher = await server.client("msgpack")
    await watcher.ok("connect", token=hh.make_jwt(SECRET, sub="w"))
    await watcher.ok("subscribe", channel=ch)
    jsonw, _ = await user_client(server, "jw")
    await jsonw.ok("subscribe", channel=ch)
    await watcher.push("join")                  # jw's join
    ada = await server.client()
    ada_id = (await ada.ok("connect", token=hh.make_jwt(SECRET, sub="ada", info=info)))["client"]
    await ada.ok("subscribe", channel=ch)
    for w in (watcher, jsonw):
        j = await w.push("join")
        assert j["info"] == {"client": ada_id, "user": "ada", "conn_info": info}, j
    p = await jsonw.ok("presence", channel=ch)
    assert p["clients"][ada_id] == {"user": "ada", "conn_info": info}
    assert "conn_info" not in p["clients"][jsonw.client_id or
                                           next(k for k, v in p["clients"].items()
                                                if v.get("user") == "jw")]
    p = await watcher.ok("presence", channel=ch)
    assert p["clients"][ada_id] == {"user": "ada", "conn_info": info}
    await ada.close()
    for w in (watcher, jsonw):
        lv = await w.push("leave")
        assert lv["info"] == {"client": ada_id, "user": "ada", "conn_info": info}, lv


async def test_info_of_an_anonymous_token_and_refresh(server):
    """A token without sub may still carry info; a refresh's info applies
    to later subscriptions."""
    ch, ch2 = chan("room:"), chan("room:")
    c = await server.client()
    cid = (await c.ok("connect", token=hh.make_jwt(SECRET, info={"v": 1})))["client"]
    await c.ok("subscribe", channel=ch)
    p = await c.ok("presence", channel=ch)
    assert p["clients"][cid] == {"conn_info": {"v": 1}}
    await c.ok("refresh", token=hh.make_jwt(SECRET, info={"v": 2}))
    await c.ok("subscribe", channel=ch2)
    assert (await c.ok("presence", channel=ch2))["clients"][cid] == {"conn_info": {"v": 2}}


async def test_user_with_control_characters_is_refused(server):
    c = await server.client()
    e = await c.error("connect", token=hh.make_jwt(SECRET, sub="al\x1fice"))
    assert e["code"] == 101, e
