"""Connection tokens beyond HS256: RS256/384/512, ES256/384, EdDSA and
HS384/512, keys from a PEM file (token_public_key) and a JWKS file
(token_jwks) with kid selection, the aud/iss/nbf/leeway checks, and a table
of bad tokens, each refused with its documented code: on connect (101 or
109, then closed with 4100), as the channel token of a subscribe to a
private channel (103 or 109, the connection stays) and on refresh (101 or
109, the connection stays with the token it has).

Keys are generated here with python3-cryptography; tokens are minted with
PyJWT (python3-jwt) where it can, and by hand (hh.b64url) for the
malformed ones PyJWT refuses to produce.
"""

import atexit
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

import herald_harness as hh
from herald_harness import HERALD_BIN, t

AUD = "herald-test"
ISS = "backend.example"
OCT = b"jwks-oct-secret-0123456789abcdef"

# -- keys, made once for the module ------------------------------------------

KEYS = {
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "rsa2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "p256": ec.generate_private_key(ec.SECP256R1()),
    "p384": ec.generate_private_key(ec.SECP384R1()),
    "ed": ed25519.Ed25519PrivateKey.generate(),
    "ed2": ed25519.Ed25519PrivateKey.generate(),
}
KEYDIR = tempfile.mkdtemp(prefix="herald-jwt-")
atexit.register(shutil.rmtree, KEYDIR, True)


def pem_path(name):
    path = os.path.join(KEYDIR, name + ".pub.pem")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(KEYS[name].public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64u(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64u(n.to_bytes(size, "big"))


def jwk(name, kid):
    pub = KEYS[name].public_key()
    if name.startswith("rsa"):
        nums = pub.public_numbers()
        return {"kty": "RSA", "kid": kid, "use": "sig", "n": int_b64u(nums.n),
                "e": int_b64u(nums.e)}
    if name.startswith("p"):
        nums = pub.public_numbers()
        size = 32 if name == "p256" else 48
        return {"kty": "EC", "kid": kid, "crv": "P-256" if size == 32 else "P-384",
                "x": int_b64u(nums.x, size), "y": int_b64u(nums.y, size)}
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64u(raw)}


JWKS_PATH = os.path.join(KEYDIR, "jwks.json")
with open(JWKS_PATH, "w") as _f:
    json.dump({"keys": [jwk("rsa", "r1"), jwk("p256", "e1"), jwk("p384", "e2"),
                        jwk("ed", "d1"),
                        {"kty": "oct", "kid": "h1", "k": b64u(OCT)}]}, _f)

# The JWKS server checks aud and iss and refuses anonymous connections; the
# PEM servers check neither and allow them.
PRIV = "priv:room"
jwks_server = hh.server_fixture({"token_jwks": JWKS_PATH, "token_audience": AUD,
                                 "token_issuer": ISS, "token_leeway": 5,
                                 "allow_anonymous": False,
                                 "namespaces": [{"name": "priv", "private": True}]})
rsa_server = hh.server_fixture({"token_public_key": pem_path("rsa")})
p256_server = hh.server_fixture({"token_public_key": pem_path("p256")})
p384_server = hh.server_fixture({"token_public_key": pem_path("p384")})
ed_server = hh.server_fixture({"token_public_key": pem_path("ed")})
secret_server = hh.server_fixture({"token_secret": "plain-secret"})

SIGNERS = {"RS": "rsa", "ES256": "p256", "ES384": "p384", "Ed": "ed"}


# Claims every token of the table gets on top of the good ones: the
# subscribe run makes them channel tokens of PRIV this way.
_EXTRA = {}


def claims(**kw):
    """Good claims for a connection token (plus _EXTRA)."""
    c = {"sub": "alice", "aud": AUD, "iss": ISS, "exp": int(time.time()) + 600}
    c.update(_EXTRA)
    for k, v in kw.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def mint(alg, kid=None, key=None, **kw):
    """A token of alg signed with the module's key of that type (or key)."""
    if key is None:
        if alg.startswith("HS"):
            key = OCT
        else:
            name = next(v for k, v in SIGNERS.items() if alg.startswith(k))
            key = KEYS[name]
    headers = {"kid": kid} if kid else None
    return pyjwt.encode(claims(**kw), key, algorithm=alg, headers=headers)


def raw_token(header, payload, sign_with=None):
    """header and payload are dicts or already-encoded text; signed with
    HMAC-SHA256 under sign_with, else the signature is "sig"."""
    h = header if isinstance(header, str) else b64u(json.dumps(header).encode())
    p = payload if isinstance(payload, str) else b64u(json.dumps(payload).encode())
    si = (h + "." + p).encode()
    if sign_with is None:
        return si.decode() + ".c2ln"
    m = hmac.HMAC(sign_with, hashes.SHA256())
    m.update(si)
    return si.decode() + "." + b64u(m.finalize())


def es256_der_signature():
    """An ES256 token whose signature is DER (as OpenSSL makes it), not the
    raw r || s of JWS."""
    h = b64u(json.dumps({"alg": "ES256", "kid": "e1"}).encode())
    p = b64u(json.dumps(claims()).encode())
    der = KEYS["p256"].sign((h + "." + p).encode(), ec.ECDSA(hashes.SHA256()))
    return h + "." + p + "." + b64u(der)


def tamper(tok, part):
    parts = tok.split(".")
    if part == 0:
        hdr = json.loads(base64.urlsafe_b64decode(parts[0] + "=="))
        hdr["typ"] = "XJWT"
        parts[0] = b64u(json.dumps(hdr).encode())
    elif part == 1:
        body = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        body["sub"] = "admin"
        parts[1] = b64u(json.dumps(body).encode())
    else:
        sig = bytearray(base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4)))
        sig[len(sig) // 2] ^= 1
        parts[2] = b64u(bytes(sig))
    return ".".join(parts)


async def expect_refused(server, token, code):
    c = await server.client()
    e = await c.error("connect", token=token)
    assert e["code"] == code, e
    p = await c.push("disconnect")
    assert p["code"] == 4100 and p["reconnect"] is False, p
    assert await c.wait_closed() == 4100


# -- good tokens: every algorithm ---------------------------------------------

GOOD = [("RS256", "r1"), ("RS384", "r1"), ("RS512", "r1"), ("ES256", "e1"),
        ("ES384", "e2"), ("EdDSA", "d1"), ("HS256", "h1"), ("HS384", "h1"),
        ("HS512", "h1"), ("ES384", None), ("EdDSA", None)]


@pytest.mark.parametrize("alg,kid", GOOD)
async def test_jwks_accepts_every_algorithm(jwks_server, alg, kid):
    exp = int(time.time()) + 600
    c = await jwks_server.client()
    ok = await c.ok("connect", token=mint(alg, kid, exp=exp,
                                          channels=["news", "user#alice"],
                                          info={"name": "Alice"}))
    assert ok["expires"] == exp
    ch = hh.chan()
    await c.ok("subscribe", channel=ch)
    await c.ok("publish", channel=ch, data=1)
    p = await c.push("pub")
    assert p["info"]["user"] == "alice"


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512"])
async def test_pem_rsa(rsa_server, alg):
    c = await rsa_server.client()
    await c.ok("connect", token=mint(alg, aud=None, iss=None))


@pytest.mark.parametrize("server_name,alg", [("p256_server", "ES256"),
                                             ("p384_server", "ES384"),
                                             ("ed_server", "EdDSA")])
async def test_pem_ec_and_ed25519(request, server_name, alg):
    server = request.getfixturevalue(server_name)
    c = await server.client()
    await c.ok("connect", token=mint(alg))
    # the same server refuses an RSA-signed token
    await expect_refused(server, mint("RS256"), 101)


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_secret_hs_family(secret_server, alg):
    c = await secret_server.client()
    await c.ok("connect", token=mint(alg, key=b"plain-secret"))


async def test_token_without_sub_is_anonymous_where_allowed(rsa_server):
    c = await rsa_server.client()
    ok = await c.ok("connect", token=mint("RS256", sub=None))
    assert "client" in ok
    ch = hh.chan()
    await c.ok("subscribe", channel=ch)
    await c.ok("publish", channel=ch, data=1)
    p = await c.push("pub")
    assert p["info"].get("user", "") == ""


async def test_leeway_accepts_a_just_expired_token(jwks_server):
    c = await jwks_server.client()
    await c.ok("connect", token=mint("RS256", "r1", exp=int(time.time()) - 1))


# -- bad tokens: the table ------------------------------------------------------

def _now():
    return int(time.time())


def _rsa_pem_as_hmac_secret():
    """The classic key confusion: the RSA public key's PEM as the HS256
    secret (PyJWT itself refuses to do this)."""
    return raw_token({"alg": "HS256", "kid": "r1"}, claims(),
                     sign_with=open(pem_path("rsa"), "rb").read())


def _oversized():
    tok = mint("RS256", "r1", pad="x" * 9000)
    assert len(tok) > 8192
    return tok


BAD = {
    # algorithm and key selection
    "alg_none": (lambda: raw_token({"alg": "none"}, claims()), 101),
    "alg_none_empty_sig": (lambda: raw_token({"alg": "none"}, claims())[:-4], 101),
    "alg_lowercase": (lambda: raw_token({"alg": "hs256", "kid": "h1"}, claims(), OCT), 101),
    "alg_unknown": (lambda: raw_token({"alg": "PS256", "kid": "r1"}, claims()), 101),
    "alg_missing": (lambda: raw_token({"kid": "h1"}, claims(), OCT), 101),
    "alg_not_string": (lambda: raw_token({"alg": 256, "kid": "h1"}, claims(), OCT), 101),
    "rsa_pem_as_hmac_secret": (_rsa_pem_as_hmac_secret, 101),
    "hs256_under_rsa_kid": (lambda: raw_token({"alg": "HS256", "kid": "r1"}, claims(), OCT), 101),
    "unknown_kid": (lambda: mint("RS256", "r9"), 101),
    "kid_of_other_type": (lambda: mint("RS256", "e1"), 101),
    "wrong_rsa_key": (lambda: mint("RS256", "r1", key=KEYS["rsa2"]), 101),
    "wrong_ed_key": (lambda: mint("EdDSA", "d1", key=KEYS["ed2"]), 101),
    "wrong_oct_key": (lambda: mint("HS256", "h1", key=b"not-the-secret-not-the-secret!!"), 101),
    "es256_der_signature": (es256_der_signature, 101),
    "es384_under_p256_kid": (lambda: mint("ES384", "e1"), 101),
    "crit_header": (lambda: raw_token({"alg": "HS256", "kid": "h1", "crit": ["exp"]},
                                      claims(), OCT), 101),
    # tampering
    "tampered_header": (lambda: tamper(mint("RS256", "r1"), 0), 101),
    "tampered_payload": (lambda: tamper(mint("ES256", "e1"), 1), 101),
    "tampered_signature": (lambda: tamper(mint("EdDSA", "d1"), 2), 101),
    "tampered_hs_payload": (lambda: tamper(mint("HS512", "h1"), 1), 101),
    # time
    "expired": (lambda: mint("RS256", "r1", exp=_now() - 60), 109),
    "expired_es": (lambda: mint("ES256", "e1", exp=_now() - 3600), 109),
    "nbf_future": (lambda: mint("RS256", "r1", nbf=_now() + 120), 101),
    "exp_not_integer": (lambda: mint("HS256", "h1", exp="tomorrow"), 101),
    "nbf_not_integer": (lambda: raw_token({"alg": "HS256", "kid": "h1"},
                                          claims(nbf="soon"), OCT), 101),
    # audience, issuer, subject
    "wrong_aud": (lambda: mint("RS256", "r1", aud="other-app"), 101),
    "aud_list_without_ours": (lambda: mint("RS256", "r1", aud=["a", "b"]), 101),
    "missing_aud": (lambda: mint("RS256", "r1", aud=None), 101),
    "wrong_iss": (lambda: mint("RS256", "r1", iss="evil.example"), 101),
    "missing_iss": (lambda: mint("RS256", "r1", iss=None), 101),
    "missing_sub_anonymous_not_allowed": (lambda: mint("RS256", "r1", sub=None), 101),
    "empty_sub_anonymous_not_allowed": (lambda: mint("RS256", "r1", sub=""), 101),
    "sub_not_string": (lambda: raw_token({"alg": "HS256", "kid": "h1"},
                                         claims(sub=42), OCT), 101),
    "sub_too_long": (lambda: mint("HS256", "h1", sub="u" * 256), 101),
    "iss_not_string": (lambda: raw_token({"alg": "HS256", "kid": "h1"},
                                         claims(iss=["backend.example"]), OCT), 101),
    "duplicate_sub": (lambda: raw_token(
        {"alg": "HS256", "kid": "h1"},
        b64u(('{"sub":"alice","sub":"admin","aud":"%s","iss":"%s"}' % (AUD, ISS)).encode()),
        OCT), 101),
    "duplicate_header_alg": (lambda: raw_token(
        b64u(b'{"alg":"HS256","alg":"none","kid":"h1"}'), claims(), OCT), 101),
    "channels_not_list": (lambda: mint("HS256", "h1", channels="news"), 101),
    "channels_not_strings": (lambda: mint("HS256", "h1", channels=["a", 1]), 101),
    "channels_too_many": (lambda: mint("HS256", "h1", channels=["c%d" % i for i in range(65)]), 101),
    "channel_too_long": (lambda: mint("HS256", "h1", channels=["c" * 256]), 101),
    "info_not_object": (lambda: mint("HS256", "h1", info="admin"), 101),
    # shape
    "garbage": (lambda: "not-a-token", 101),
    "two_parts": (lambda: "a.b", 101),
    "four_parts": (lambda: mint("HS256", "h1") + ".x", 101),
    "bad_base64_header": (lambda: "!!!." + mint("HS256", "h1").split(".", 1)[1], 101),
    "padded_base64": (lambda: (lambda p: p[0] + "=." + p[1] + "." + p[2])(
        mint("HS256", "h1").split(".")), 101),
    "header_not_json": (lambda: raw_token(b64u(b"{alg:HS256"), claims(), OCT), 101),
    "payload_not_json": (lambda: raw_token({"alg": "HS256", "kid": "h1"}, b64u(b"nope"), OCT), 101),
    "payload_array": (lambda: raw_token({"alg": "HS256", "kid": "h1"}, b64u(b"[1]"), OCT), 101),
    "empty_signature": (lambda: mint("RS256", "r1").rsplit(".", 1)[0] + ".", 101),
}


def test_the_table_is_large_enough():
    assert len(BAD) >= 30


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_bad_token_refused_with_its_code(jwks_server, kind):
    make, code = BAD[kind]
    await expect_refused(jwks_server, make(), code)


async def alice(server):
    c = await server.client()
    await c.ok("connect", token=mint("RS256", "r1", channel=None))
    return c


async def test_a_good_channel_token_opens_the_private_channel_the_table_uses(jwks_server):
    c = await alice(jwks_server)
    assert (await c.error("subscribe", channel=PRIV))["code"] == 103
    ok = await c.ok("subscribe", channel=PRIV, token=mint("ES256", "e1", channel=PRIV))
    assert ok["offset"] >= 0
    await c.ok("unsubscribe", channel=PRIV)


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_bad_channel_token_refused_on_subscribe(jwks_server, kind):
    """The same table as the channel token of a private channel: 103 (109
    when expired); the connection stays and is not subscribed."""
    make, code = BAD[kind]
    c = await alice(jwks_server)
    _EXTRA["channel"] = PRIV
    try:
        bad = make()
    finally:
        _EXTRA.clear()
    e = await c.error("subscribe", channel=PRIV, token=bad)
    assert e["code"] == {101: 103, 109: 109}[code], e
    assert (await c.error("presence", channel=PRIV))["code"] == 103
    assert await c.ok("ping") == {}


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_bad_token_refused_on_refresh(jwks_server, kind):
    """The table on refresh: the code connect gives, and the connection
    keeps the token it has (its expiry is unchanged: a good refresh then
    answers the new one)."""
    make, code = BAD[kind]
    if kind.endswith("sub_anonymous_not_allowed"):
        code = 103    # on alice's connection a token without sub is another user's
    c = await alice(jwks_server)
    e = await c.error("refresh", token=make())
    assert e["code"] == code, e
    exp = int(time.time()) + 900
    assert await c.ok("refresh", token=mint("EdDSA", "d1", exp=exp)) == {"expires": exp}


async def test_oversized_token_is_107_from_the_codec(jwks_server):
    """Longer than the protocol's 8 KiB bound for `token` (protocol/README.md
    limits table): refused by the codec with 107 before any JWT work; the
    connection stays and can connect with a good token."""
    c = await jwks_server.client()
    e = await c.error("connect", token=_oversized())
    assert e["code"] == 107, e
    await c.ok("connect", token=mint("EdDSA", "d1"))


async def test_server_survives_the_table(jwks_server):
    """After every bad token, a good one still connects, and the log never
    holds a token."""
    c = await jwks_server.client()
    tok = mint("RS256", "r1")
    await c.ok("connect", token=tok)
    log = jwks_server.stderr_tail(100000)
    sig = tok.rsplit(".", 1)[1]
    assert sig not in log and tok.split(".")[1] not in log


async def test_rsa_pem_server_refuses_hs256_made_with_the_pem(rsa_server):
    tok = raw_token({"alg": "HS256"}, claims(), sign_with=open(pem_path("rsa"), "rb").read())
    await expect_refused(rsa_server, tok, 101)
    der = open(pem_path("rsa"), "rb").read()
    tok = raw_token({"alg": "HS256"}, claims(), sign_with=der.strip())
    await expect_refused(rsa_server, tok, 101)


# -- configuration errors -------------------------------------------------------

def check_config(tmp_path, text):
    conf = tmp_path / "herald.conf"
    conf.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    return subprocess.run([HERALD_BIN, "-c", str(conf), "--check-config"],
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=env, timeout=t(15))


def test_config_key_files_are_checked(tmp_path):
    r = check_config(tmp_path, 'token_jwks = "%s";\ntoken_public_key = "%s";\n'
                     % (JWKS_PATH, pem_path("p256")))
    assert r.returncode == 0, r.stderr
    r = check_config(tmp_path, '\ntoken_public_key = "/nonexistent/key.pem";\n')
    assert r.returncode == 2 and "token_public_key" in r.stderr and ":2" in r.stderr, r.stderr
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    r = check_config(tmp_path, 'token_public_key = "%s";\n' % bad)
    assert r.returncode == 2 and "token_public_key" in r.stderr, r.stderr
    jw = tmp_path / "bad.jwks"
    jw.write_text('{"keys":[{"kty":"RSA","kid":"a","n":"AQAB"}]}')
    r = check_config(tmp_path, 'token_jwks = "%s";\n' % jw)
    assert r.returncode == 2 and "token_jwks" in r.stderr and "keys[0]" in r.stderr, r.stderr
    r = check_config(tmp_path, 'token_leeway = 100000;\n')
    assert r.returncode == 2 and "token_leeway" in r.stderr, r.stderr
