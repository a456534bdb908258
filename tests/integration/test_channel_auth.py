"""Channel authorization: private namespaces (a grant in the connection
token's `channels`, a channel token on subscribe, or 103), publishing,
history and presence there, user-personal channels ("...#U"), and the
token lifetimes: refresh before the connection token expires (else 4100),
sub_refresh before a channel token expires (else an unsubscribe push with
109, the connection stays).

Tokens are HS256 under token_secret, minted with PyJWT (python3-jwt)."""

import asyncio
import json
import time

import jwt as pyjwt
import pytest

import herald_harness as hh
from herald_harness import t
from test_api_listen import JSON_AUTH, call
from test_api_main_port import main_api

SECRET = "channel-auth-secret-0123456789"

NAMESPACES = [
    {"name": "priv", "private": True, "history_size": 10, "presence": True},
    {"name": "board", "private": True, "publish_open": True},
    {"name": "me", "user_channels": True, "history_size": 10},
    {"name": "inbox", "private": True, "user_channels": True},
]

server = hh.server_fixture({"token_secret": SECRET, "namespaces": NAMESPACES})
# No leeway: expiries are enforced to the second.
strict = hh.server_fixture({"token_secret": SECRET, "token_leeway": 0,
                            "namespaces": NAMESPACES})


def tok(sub="alice", **claims):
    c = {"sub": sub, "exp": int(time.time()) + 600}
    c.update({k: v for k, v in claims.items()})
    return pyjwt.encode({k: v for k, v in c.items() if v is not None}, SECRET,
                        algorithm="HS256")


async def user(srv, sub="alice", **claims):
    c = await srv.client()
    ok = await c.ok("connect", token=tok(sub, **claims))
    c.expires = ok.get("expires")
    return c


# -- private namespaces ----------------------------------------------------------

async def test_private_channel_needs_a_grant_or_a_channel_token(server):
    ch = hh.chan("priv:")
    c = await user(server)
    e = await c.error("subscribe", channel=ch)
    assert e["code"] == 103, e
    # a channel token for this channel and user opens it
    await c.ok("subscribe", channel=ch, token=tok(channel=ch))
    # the same token for another channel or user does not
    other = hh.chan("priv:")
    assert (await c.error("subscribe", channel=other, token=tok(channel=ch)))["code"] == 103
    assert (await c.error("subscribe", channel=other,
                          token=tok("bob", channel=other)))["code"] == 103
    # a connection token is not a channel token (no `channel` claim)
    assert (await c.error("subscribe", channel=other, token=tok()))["code"] == 103
    # a token signed with another secret
    forged = pyjwt.encode({"sub": "alice", "channel": other}, "another-secret-0123456789",
                          algorithm="HS256")
    assert (await c.error("subscribe", channel=other, token=forged))["code"] == 103
    # expired: 109
    e = await c.error("subscribe", channel=other,
                      token=tok(channel=other, exp=int(time.time()) - 3600))
    assert e["code"] == 109, e


async def test_grants_exact_and_prefix(server):
    a, b = hh.chan("priv:"), hh.chan("priv:")
    c = await user(server, channels=[a, "priv:team-*"])
    await c.ok("subscribe", channel=a)
    await c.ok("subscribe", channel="priv:team-" + hh.chan())
    assert (await c.error("subscribe", channel=b))["code"] == 103
    # the prefix is a prefix, not a glob in the middle
    assert (await c.error("subscribe", channel="priv:teamx"))["code"] == 103
    star = await user(server, "root", channels=["*"])
    await star.ok("subscribe", channel=b)


async def test_private_publish_history_presence_follow_the_same_rule(server):
    ch = hh.chan("priv:")
    owner = await user(server, channels=[ch])
    await owner.ok("subscribe", channel=ch)
    r = await owner.ok("publish", channel=ch, data={"n": 1})
    assert r["offset"] == 1
    assert (await owner.push("pub"))["data"] == {"n": 1}
    assert len((await owner.ok("history", channel=ch))["publications"]) == 1
    assert "alice" in [v["user"] for v in (await owner.ok("presence", channel=ch))["clients"].values()]

    outsider = await user(server, "mallory")
    for op, extra in (("publish", {"data": 2}), ("history", {}), ("presence", {})):
        e = await outsider.error(op, channel=ch, **extra)
        assert e["code"] == 103, (op, e)

    # subscribed with a channel token: may publish, read history and presence
    guest = await user(server, "bob")
    await guest.ok("subscribe", channel=ch, token=tok("bob", channel=ch))
    await guest.ok("publish", channel=ch, data={"n": 2})
    assert [p["offset"] for p in (await guest.ok("history", channel=ch))["publications"]] == [1, 2]
    await guest.ok("presence", channel=ch)
    # once unsubscribed, that is over
    await guest.ok("unsubscribe", channel=ch)
    assert (await guest.error("history", channel=ch))["code"] == 103


async def test_publish_open_lets_anyone_publish_to_a_private_channel(server):
    ch = hh.chan("board:")
    reader = await user(server, channels=[ch])
    await reader.ok("subscribe", channel=ch)
    writer = await user(server, "bob")
    assert (await writer.error("subscribe", channel=ch))["code"] == 103
    await writer.ok("publish", channel=ch, data="hello")
    assert (await reader.push("pub"))["data"] == "hello"
    anon = await server.client()
    await anon.ok("publish", channel=ch, data="anon")
    assert (await reader.push("pub"))["data"] == "anon"


async def test_anonymous_clients_cannot_open_private_channels(server):
    ch = hh.chan("priv:")
    anon = await server.client()
    assert (await anon.error("subscribe", channel=ch))["code"] == 103
    # a channel token made for "no user" does open it: sub equal to the
    # connection's (none)
    await anon.ok("subscribe", channel=ch, token=tok(None, channel=ch))


async def test_backend_api_is_not_bound_by_channel_authorization(server_factory):
    """The server API acts for the backend: it publishes to private and
    personal channels without tokens."""
    s = main_api(server_factory, {"token_secret": SECRET, "namespaces": NAMESPACES})
    ch = hh.chan("priv:")
    c = await user(s, channels=[ch])
    await c.ok("subscribe", channel=ch)
    for target in (ch, "me:x#alice"):
        r, doc = await asyncio.to_thread(call, s.port, "POST", "/api/v1/publish", JSON_AUTH,
                                         json.dumps({"channel": target, "data": 7}))
        assert r.status == 200, doc
    assert (await c.push("pub"))["data"] == 7


# -- user-personal channels -------------------------------------------------------

async def test_user_channels_open_to_their_user_only(server):
    mine = "me:notes#alice"
    alice = await user(server)
    await alice.ok("subscribe", channel=mine)
    await alice.ok("publish", channel=mine, data="note")
    assert (await alice.push("pub"))["data"] == "note"
    assert len((await alice.ok("history", channel=mine))["publications"]) >= 1
    bob = await user(server, "bob")
    for op, extra in (("subscribe", {}), ("publish", {"data": 1}), ("history", {})):
        assert (await bob.error(op, channel=mine, **extra))["code"] == 103, op
    # "alice2" is not "alice", nor is a prefix of the name
    a2 = await user(server, "alice2")
    assert (await a2.error("subscribe", channel=mine))["code"] == 103
    assert (await alice.error("subscribe", channel="me:notes#alice2"))["code"] == 103
    anon = await server.client()
    assert (await anon.error("subscribe", channel=mine))["code"] == 103
    # channels without '#' in a user_channels namespace are ordinary ones
    ch = hh.chan("me:")
    await bob.ok("subscribe", channel=ch)
    # a grant or a channel token opens another user's channel
    await bob.ok("subscribe", channel=mine, token=tok("bob", channel=mine))
    admin = await user(server, "admin", channels=["me:*"])
    await admin.ok("subscribe", channel=mine)


async def test_private_user_channels(server):
    """inbox: private and user_channels: the user's own channel needs no
    token, everything else of the namespace does."""
    alice = await user(server)
    await alice.ok("subscribe", channel="inbox:#alice")
    assert (await alice.error("subscribe", channel="inbox:shared"))["code"] == 103
    assert (await alice.error("subscribe", channel="inbox:#bob"))["code"] == 103


async def test_hash_is_a_channel_character_everywhere(server):
    c = await user(server)
    ch = hh.chan() + "#x"
    await c.ok("subscribe", channel=ch)
    assert (await c.error("subscribe", channel="a#b c"))["code"] == 102


# -- refresh -----------------------------------------------------------------------

async def expiry_refresh_moves_the_expiry_and_the_connection_closes_at_the_new_one(strict):
    now = int(time.time())
    c = await user(strict, exp=now + 3)
    assert c.expires == now + 3
    new_exp = now + 6
    assert await c.ok("refresh", token=tok(exp=new_exp)) == {"expires": new_exp}
    # alive past the first expiry ...
    await hh.async_wait_for(lambda: time.time() > now + 4.5, t(10), interval=0.1,
                            what="the first expiry to pass")
    assert await c.ok("ping") == {}
    # ... and closed with 4100 at the new one
    p = await c.push("disconnect", timeout=t(8))
    assert p["code"] == 4100 and p["reconnect"] is False, p
    assert await c.wait_closed() == 4100
    assert time.time() >= new_exp


async def expiry_expiry_without_refresh_closes_with_4100(strict):
    now = int(time.time())
    c = await user(strict, exp=now + 2)
    p = await c.push("disconnect", timeout=t(6))
    assert p["code"] == 4100, p
    assert time.time() >= now + 2


async def test_refresh_rules(server):
    c = await user(server)
    # another user's token: 103, nothing changes
    e = await c.error("refresh", token=tok("bob"))
    assert e["code"] == 103, e
    # a token is required
    assert (await c.error("refresh"))["code"] == 107
    # an expired one: 109
    assert (await c.error("refresh", token=tok(exp=int(time.time()) - 3600)))["code"] == 109
    # without exp the connection no longer expires
    assert await c.ok("refresh", token=tok(exp=None)) == {}
    # new grants apply to later subscribes
    ch = hh.chan("priv:")
    assert (await c.error("subscribe", channel=ch))["code"] == 103
    await c.ok("refresh", token=tok(channels=[ch]))
    await c.ok("subscribe", channel=ch)


async def test_refresh_on_an_anonymous_connection(server):
    c = await server.client()
    await c.ok("connect")
    assert (await c.error("refresh", token=tok()))["code"] == 103
    exp = int(time.time()) + 100
    assert await c.ok("refresh", token=tok(None, exp=exp)) == {"expires": exp}


# -- channel token expiry and sub_refresh -----------------------------------------

async def expiry_channel_token_expiry_unsubscribes_with_109(strict):
    ch = hh.chan("priv:")
    c = await user(strict)
    now = int(time.time())
    await c.ok("subscribe", channel=ch, token=tok(channel=ch, exp=now + 2))
    p = await c.push("unsubscribe", timeout=t(6))
    assert p == {"push": "unsubscribe", "channel": ch, "code": 109,
                 "reason": "channel token expired"}, p
    assert time.time() >= now + 2
    # the connection stays; the channel is closed to it again
    assert (await c.error("history", channel=ch))["code"] == 103
    # a publication is no longer delivered (a pub to an open channel after
    # it arrives first, as pushes come in order)
    pub = await user(strict, "pub", channels=["*"])
    await pub.ok("publish", channel=ch, data="gone")
    mark = hh.chan("me:")
    await c.ok("subscribe", channel=mark)
    await pub.ok("publish", channel=mark, data="mark")
    assert (await c.push("pub"))["channel"] == mark
    await c.ok("subscribe", channel=ch, token=tok(channel=ch))


async def expiry_sub_refresh_moves_a_channel_token_expiry(strict):
    ch = hh.chan("priv:")
    c = await user(strict)
    now = int(time.time())
    await c.ok("subscribe", channel=ch, token=tok(channel=ch, exp=now + 2))
    r = await c.ok("sub_refresh", channel=ch, token=tok(channel=ch, exp=now + 5))
    assert r == {"expires": now + 5}
    await hh.async_wait_for(lambda: time.time() > now + 3.5, t(10), interval=0.1,
                            what="the first expiry to pass")
    assert c.pending_pushes() == []
    p = await c.push("unsubscribe", timeout=t(6))
    assert p["channel"] == ch and p["code"] == 109
    assert time.time() >= now + 5


async def test_sub_refresh_rules(server):
    ch = hh.chan("priv:")
    c = await user(server)
    e = await c.error("sub_refresh", channel=ch, token=tok(channel=ch))
    assert e["code"] == 107 and "not subscribed" in e["message"], e
    await c.ok("subscribe", channel=ch, token=tok(channel=ch, exp=int(time.time()) + 60))
    for bad, code in ((tok(channel=hh.chan("priv:")), 103), (tok("bob", channel=ch), 103),
                      (tok(channel=ch, exp=int(time.time()) - 3600), 109), ("x.y.z", 103)):
        assert (await c.error("sub_refresh", channel=ch, token=bad))["code"] == code
    assert (await c.error("sub_refresh", channel=ch))["code"] == 107
    # no exp: the subscription no longer expires
    assert await c.ok("sub_refresh", channel=ch, token=tok(channel=ch, exp=None)) == {}


async def test_tokens_never_logged(server):
    ch = hh.chan("priv:")
    c = await user(server)
    good = tok(channel=ch)
    await c.ok("subscribe", channel=ch, token=good)
    bad = tok("bob", channel=ch)
    await c.error("sub_refresh", channel=ch, token=bad)
    await c.error("refresh", token=bad)
    log = server.stderr_tail(100000)
    for token in (good, bad):
        assert token.split(".")[2] not in log and token.split(".")[1] not in log


async def test_api_presence_shows_conn_info(server_factory):
    s = main_api(server_factory, {"token_secret": SECRET, "namespaces": NAMESPACES})
    c = await s.client()
    cid = (await c.ok("connect", token=tok(info={"name": "Ada"})))["client"]
    await c.ok("subscribe", channel="priv:p1", token=tok(channel="priv:p1"))
    r, doc = await asyncio.to_thread(call, s.port, "GET", "/api/v1/presence?channel=priv:p1",
                                     JSON_AUTH)
    assert r.status == 200, doc
    assert doc["clients"][cid] == {"user": "alice", "conn_info": {"name": "Ada"}}, doc


# -- what the review asked to pin down ----------------------------------------------

async def test_a_channel_token_is_not_a_connection_token(server):
    ch = hh.chan("priv:")
    c = await server.client()
    e = await c.error("connect", token=tok(channel=ch, exp=int(time.time()) + 86400))
    assert e["code"] == 101, e
    assert await c.wait_closed() == 4100
    c = await user(server)
    e = await c.error("refresh", token=tok(channel=ch, exp=int(time.time()) + 86400))
    assert e["code"] == 101, e


async def test_refresh_without_sub_on_a_user_connection_is_103(server_factory):
    s = server_factory({"token_secret": SECRET, "allow_anonymous": False})
    c = await user(s)
    assert (await c.error("refresh", token=tok(None)))["code"] == 103


leeway = hh.server_fixture({"token_secret": SECRET, "token_leeway": 3})


async def expiry_leeway_applies_at_expiry(s):
    now = int(time.time())
    c = await user(s, exp=now + 1)
    await hh.async_wait_for(lambda: time.time() > now + 2.5, t(10), interval=0.1,
                            what="exp + 1.5 s")
    assert await c.ok("ping") == {}, "closed before exp + leeway"
    p = await c.push("disconnect", timeout=t(8))
    assert p["code"] == 4100
    assert time.time() >= now + 4


async def expiry_a_refused_refresh_keeps_expiry_and_grants(strict):
    ch = hh.chan("priv:")
    now = int(time.time())
    c = await user(strict, exp=now + 3, channels=[ch])
    assert (await c.error("refresh", token=tok("bob", exp=now + 600)))["code"] == 103
    await c.ok("subscribe", channel=ch)              # the old grant holds
    p = await c.push("disconnect", timeout=t(8))      # the old expiry too
    assert p["code"] == 4100 and time.time() < now + 6


async def test_a_subscription_under_a_dropped_grant_stays(server):
    ch = hh.chan("priv:")
    c = await user(server, channels=[ch])
    await c.ok("subscribe", channel=ch)
    await c.ok("refresh", token=tok(channels=[]))
    pub = await user(server, "pub", channels=["*"])
    await pub.ok("publish", channel=ch, data=1)
    assert (await c.push("pub"))["data"] == 1
    # made under the grant, the subscription still opens history
    assert (await c.error("subscribe", channel=hh.chan("priv:")))["code"] == 103


async def expiry_channel_token_expiry_applies_in_open_namespaces(strict):
    ch = hh.chan("me:")
    c = await user(strict)
    await c.ok("subscribe", channel=ch, token=tok(channel=ch, exp=int(time.time()) + 2))
    p = await c.push("unsubscribe", timeout=t(6))
    assert p["channel"] == ch and p["code"] == 109
    await c.ok("subscribe", channel=ch)               # open without a token


# -- the expiries, side by side -----------------------------------------------------

async def test_token_expiries(strict, leeway):
    """Each scenario waits for real expiries of a few seconds: they run at
    the same time (each on its own connections and channels), so the file
    takes the longest one's time, not their sum. A failing scenario fails
    the test with its own assertion."""
    scenarios = [f for n, f in sorted(globals().items()) if n.startswith("expiry_")]
    assert len(scenarios) == 7
    results = await asyncio.gather(
        *(f(leeway if f is expiry_leeway_applies_at_expiry else strict)
          for f in scenarios), return_exceptions=True)
    failed = [(f.__name__, r) for f, r in zip(scenarios, results) if isinstance(r, BaseException)]
    if failed:
        raise AssertionError("failed: %s" % failed) from failed[0][1]
