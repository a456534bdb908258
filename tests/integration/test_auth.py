"""Connection tokens (HS256 JWT; the other algorithms and key sources are in
test_auth_jwt.py), anonymous access rules."""

import time

import pytest

import herald_harness as hh
from herald_harness import chan

SECRET = "auth-test-secret"

NAMESPACES = [{"name": "private", "allow_anonymous": False}]

server = hh.server_fixture({"token_secret": SECRET, "allow_anonymous": True,
                            "namespaces": NAMESPACES})

closed_server = hh.server_fixture({"token_secret": SECRET, "allow_anonymous": False,
                                   "namespaces": NAMESPACES})


async def expect_4100(c, code):
    """Error `code` was already checked; now the disconnect push and close."""
    p = await c.push("disconnect")
    assert p["code"] == 4100 and p["reconnect"] is False, p
    assert await c.wait_closed() == 4100


# -- valid tokens -----------------------------------------------------------------

async def test_connect_with_valid_token(server):
    exp = int(time.time()) + 3600
    c = await server.client()
    ok = await c.ok("connect", token=hh.make_jwt(SECRET, sub="alice", exp=exp))
    assert isinstance(ok["client"], str) and ok["client"]
    assert isinstance(ok["node"], str)
    assert ok["ping"] == 25
    assert ok["expires"] == exp


async def test_token_without_exp_has_no_expires(server):
    c = await server.client()
    ok = await c.ok("connect", token=hh.make_jwt(SECRET, sub="bob"))
    assert ok.get("expires") in (None, 0)


async def test_token_with_info_claim_is_accepted(server):
    c = await server.client()
    await c.ok("connect", token=hh.make_jwt(SECRET, sub="carol", info={"role": "admin"}))
    await c.ok("ping")


async def test_user_appears_in_publication_info(server):
    ch = chan()
    sub = await server.client()
    await sub.ok("subscribe", channel=ch)
    pub = await server.client()
    cid = (await pub.ok("connect", token=hh.make_jwt(SECRET, sub="dave")))["client"]
    await pub.ok("publish", channel=ch, data=1)
    p = await sub.push("pub")
    assert p["info"] == {"client": cid, "user": "dave"} or \
        (p["info"]["client"] == cid and p["info"]["user"] == "dave"), p


async def test_connect_without_token_is_anonymous_when_allowed(server):
    c = await server.client()
    ok = await c.ok("connect")
    assert ok["client"]
    ch = chan()
    await c.ok("subscribe", channel=ch)
    await c.ok("publish", channel=ch, data="anon")
    p = await c.push("pub")
    assert p["info"].get("user", "") == ""


# -- invalid tokens -----------------------------------------------------------------

def _tampered():
    tok = hh.make_jwt(SECRET, sub="eve")
    head, body, sig = tok.split(".")
    other = hh.make_jwt(SECRET, sub="admin").split(".")[1]
    return ".".join([head, other, sig])


BAD_TOKENS = {
    "wrong_secret": lambda: hh.make_jwt("not-the-secret", sub="eve"),
    "tampered_claims": _tampered,
    "alg_none": lambda: hh.make_jwt(SECRET, sub="eve", alg="none", sign=False),
    # HS512 is accepted (test_auth_jwt.py), but this one is signed with SHA-256
    "alg_hs512_signed_hs256": lambda: hh.make_jwt(
        SECRET, sub="eve", header={"alg": "HS512", "typ": "JWT"}),
    "garbage": lambda: "abc",
    "two_parts": lambda: "a.b",
    "bad_base64": lambda: "!!!.@@@.###",
    "empty_sig": lambda: hh.make_jwt(SECRET, sub="eve").rsplit(".", 1)[0] + ".",
    "claims_not_json": lambda: hh.b64url('{"alg":"HS256"}') + "." + hh.b64url("nope") + ".x",
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_bad_token_is_101_then_4100(server, kind):
    c = await server.client()
    e = await c.error("connect", token=BAD_TOKENS[kind]())
    assert e["code"] == 101, (kind, e)
    await expect_4100(c, 101)


async def test_expired_token_is_109_then_4100(server):
    c = await server.client()
    tok = hh.make_jwt(SECRET, sub="frank", exp=int(time.time()) - 60)
    e = await c.error("connect", token=tok)
    assert e["code"] == 109, e
    await expect_4100(c, 109)


@pytest.mark.timeout(40)
async def test_token_expiring_while_connected_closes_4100(server):
    """A connection whose token expires is closed at its expiry (the
    connect reply's `expires`), with the default ping_interval of 25 s:
    disconnect push 4100 (reconnect false), close 4100. Its subscriptions
    end (the channel goes on for the others)."""
    ch = chan()
    other = await server.client()
    await other.ok("subscribe", channel=ch)
    c = await server.client()
    exp = int(time.time()) + 3
    ok = await c.ok("connect", token=hh.make_jwt(SECRET, sub="eve", exp=exp))
    assert ok["expires"] == exp and ok["ping"] == 25
    await c.ok("subscribe", channel=ch)
    await c.ok("publish", channel=ch, data="before")
    assert (await c.push("pub"))["data"] == "before"
    assert (await other.push("pub"))["data"] == "before"
    # open until the expiry, closed within a few seconds after it (the
    # server's clock ticks in seconds), not at the next heartbeat
    p = await c.push("disconnect", timeout=max(0.1, exp - time.time()) + hh.t(4))
    assert time.time() >= exp - 1, "closed %.1fs before the expiry" % (exp - time.time())
    assert p["code"] == 4100 and p["reconnect"] is False, p
    assert await c.wait_closed() == 4100
    r = await other.ok("publish", channel=ch, data="after")
    assert (await other.push("pub"))["data"] == "after" and r["offset"] == 2


async def test_second_connect_is_107_and_the_connection_stays(server):
    c = await server.client()
    first = await c.ok("connect", token=hh.make_jwt(SECRET, sub="gina"))
    e = await c.error("connect", token=hh.make_jwt(SECRET, sub="mallory"))
    assert e["code"] == 107, e
    e = await c.error("connect")
    assert e["code"] == 107, e
    # still connected as the first user
    ch = chan()
    await c.ok("subscribe", channel=ch)
    await c.ok("publish", channel=ch, data=1)
    p = await c.push("pub")
    assert p["info"] == {"client": first["client"], "user": "gina"}, p
    assert not c.closed.is_set()


async def test_connect_after_an_implied_anonymous_connect_is_107(server):
    c = await server.client()
    await c.ok("ping")                       # connects anonymously
    e = await c.error("connect", token=hh.make_jwt(SECRET, sub="gina"))
    assert e["code"] == 107, e
    await c.ok("ping")


async def test_bad_token_does_not_affect_others(server):
    ch = chan()
    good = await server.client()
    await good.ok("subscribe", channel=ch)
    bad = await server.client()
    await bad.error("connect", token="abc")
    await bad.wait_closed()
    await good.ok("publish", channel=ch, data="still here")
    assert (await good.push("pub"))["data"] == "still here"


# -- anonymous rules ------------------------------------------------------------------

async def test_anonymous_cannot_subscribe_private_namespace(server):
    c = await server.client()
    await c.ok("connect")
    assert (await c.error("subscribe", channel=chan("private:")))["code"] == 103
    # an implicit anonymous connection too
    c2 = await server.client()
    assert (await c2.error("subscribe", channel=chan("private:")))["code"] == 103
    await c2.ok("ping")


async def test_user_can_subscribe_private_namespace(server):
    c = await server.client()
    await c.ok("connect", token=hh.make_jwt(SECRET, sub="grace"))
    await c.ok("subscribe", channel=chan("private:"))


async def test_anonymous_disallowed_command_before_connect_is_101(closed_server):
    c = await closed_server.client()
    ch = chan()
    for op, fields in (("subscribe", {"channel": ch}), ("ping", {}),
                       ("publish", {"channel": ch, "data": 1})):
        e = await c.error(op, **fields)
        assert e["code"] == 101, (op, e)
    assert not c.closed.is_set()
    # the connection is still usable: connect with a token, then subscribe
    await c.ok("connect", token=hh.make_jwt(SECRET, sub="heidi"))
    await c.ok("subscribe", channel=ch)


async def test_anonymous_disallowed_connect_without_token_is_101_then_4100(closed_server):
    c = await closed_server.client()
    e = await c.error("connect")
    assert e["code"] == 101, e
    await expect_4100(c, 101)


async def test_anonymous_disallowed_connect_with_token_works(closed_server):
    exp = int(time.time()) + 600
    c = await closed_server.client()
    ok = await c.ok("connect", token=hh.make_jwt(SECRET, sub="ivan", exp=exp))
    assert ok["expires"] == exp
    ch = chan("private:")
    await c.ok("subscribe", channel=ch)
    await c.ok("publish", channel=ch, data="hi")
    p = await c.push("pub")
    assert p["info"]["user"] == "ivan"


async def test_anonymous_disallowed_bad_token_is_101_then_4100(closed_server):
    c = await closed_server.client()
    e = await c.error("connect", token=hh.make_jwt("wrong", sub="x"))
    assert e["code"] == 101
    await expect_4100(c, 101)
