"""The token examples of the documentation (docs/examples/issue_token.py
with PyJWT, docs/examples/issue_token.mjs with jose) run as written, and
what they issue works against a server configured as the README says: the
connection token connects as user 42 with its grant and info, the channel
token opens its private channel, and nothing else of the namespace opens."""

import json
import os
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import herald_harness as hh
from herald_harness import t

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                        "docs", "examples")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("token-docs")
    k = ec.generate_private_key(ec.SECP256R1())
    priv, pub = d / "signing.pem", d / "signing.pub.pem"
    priv.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    pub.write_bytes(k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(priv), str(pub)


def issue(cmd, key):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=t(30),
                       env=dict(os.environ, HERALD_SIGNING_KEY=key), cwd=EXAMPLES)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def node():
    n = shutil.which("node")
    if not n or not os.path.isdir(os.path.join(EXAMPLES, "node_modules", "jose")):
        pytest.skip("node or jose missing (scripts/deps.sh test runs docs/examples/setup.sh)")
    return n


@pytest.mark.parametrize("lang", ["python", "node"])
async def test_issued_tokens_work(server_factory, keys, lang):
    priv, pub = keys
    cmd = ["/usr/bin/python3", "issue_token.py"] if lang == "python" else \
        [node(), "issue_token.mjs"]
    toks = issue(cmd, priv)
    s = server_factory({"token_public_key": pub, "allow_anonymous": False,
                        "namespaces": [{"name": "orders", "private": True,
                                        "presence": True}]})
    c = await s.client()
    ok = await c.ok("connect", token=toks["connection"])
    assert ok["expires"] > 0
    await c.ok("subscribe", channel="orders:acme")            # the grant
    await c.ok("subscribe", channel="orders:beta", token=toks["channel"])
    assert (await c.error("subscribe", channel="orders:gamma"))["code"] == 103
    p = await c.ok("presence", channel="orders:acme")
    assert p["clients"][ok["client"]] == {"user": "42", "conn_info": {"name": "Ada"}}
