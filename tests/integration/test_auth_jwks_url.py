"""token_jwks as a URL: the JWKS is fetched by the server's keyring thread
(libcurl) from a local HTTP server run by the test, at start and then in
the background: a key rotated in is accepted (an unknown kid makes the
server fetch sooner), a key rotated out is refused, failures (refused
connections, a server that never answers, HTTP 500, bad JSON, an oversized
document) keep the keys in force and are retried, and neither the URL's
credentials nor its query reach the log."""

import http.server
import json
import threading
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import herald_harness as hh
from herald_harness import t
from test_auth_jwt import b64u, int_b64u

KEYS = {kid: ec.generate_private_key(ec.SECP256R1()) for kid in ("k1", "k2")}


def jwk(kid):
    n = KEYS[kid].public_key().public_numbers()
    return {"kty": "EC", "kid": kid, "crv": "P-256", "x": int_b64u(n.x, 32),
            "y": int_b64u(n.y, 32)}


def token(kid, sub="alice"):
    return pyjwt.encode({"sub": sub, "exp": int(time.time()) + 600}, KEYS[kid],
                        algorithm="ES256", headers={"kid": kid})


class JwksServer:
    """A local HTTP server whose answer the test changes: the JWKS of some
    kids, a status, a body, or no answer at all (hang)."""

    def __init__(self, port=0):
        self.kids = ["k1"]
        self.status = 200
        self.body = None          # bytes to send instead of the JWKS
        self.hang = threading.Event()
        self.gets = 0
        self.paths = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.gets += 1
                outer.paths.append(self.path)
                if outer.hang.is_set():
                    outer.hang_release.wait(30)
                    return
                body = outer.body if outer.body is not None else \
                    json.dumps({"keys": [jwk(k) for k in outer.kids]}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.hang_release = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/jwks.json"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def close(self):
        self.hang_release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks():
    s = JwksServer()
    yield s
    s.close()


async def connects(server, tok):
    c = await server.client()
    r = await c.call("connect", token=tok)
    await c.close()
    return "ok" in r


async def test_rotation_new_kid_accepted_removed_kid_refused(server_factory, jwks):
    s = server_factory({"token_jwks": jwks.url(), "token_jwks_refresh": 3600,
                        "allow_anonymous": False})
    assert jwks.gets == 1, "fetched once at start"
    assert await connects(s, token("k1"))
    assert not await connects(s, token("k2"))
    # the backend rotates: k2 in, k1 out. A token with the new kid makes
    # the server fetch (at most every 5 s), long before the hourly refresh.
    jwks.kids = ["k2"]
    # many tokens naming the unknown kid fetch at most once per 5 s
    began, gets = time.monotonic(), jwks.gets
    while time.monotonic() - began < 2:
        await connects(s, token("k2"))
    assert jwks.gets - gets <= 1, jwks.gets - gets
    await hh.async_wait_for(lambda: connects(s, token("k2")), t(15), interval=0.5,
                            what="a token of the rotated-in kid to be accepted")
    assert jwks.gets >= 2
    c = await s.client()
    e = await c.error("connect", token=token("k1"))
    assert e["code"] == 101, e


async def test_periodic_refresh(server_factory, jwks):
    s = server_factory({"token_jwks": jwks.url(), "token_jwks_refresh": 1})
    await hh.async_wait_for(lambda: jwks.gets >= 3, t(10), interval=0.2,
                            what="three fetches a second apart")
    jwks.kids = ["k1", "k2"]
    await hh.async_wait_for(lambda: connects(s, token("k2")), t(10), interval=0.5,
                            what="the refreshed set")


async def test_unreachable_at_start_then_served(server_factory):
    """Nothing listens on the URL's port: the server starts anyway (the
    log says the keys are unavailable), refuses tokens, and takes the keys
    once the JWKS server comes up (retries with backoff)."""
    port = hh.free_port()
    s = server_factory({"token_jwks": "http://127.0.0.1:%d/jwks.json" % port,
                        "token_jwks_refresh": 3600, "allow_anonymous": False})
    assert any(l.get("msg", "").startswith("token JWKS unavailable at start")
               for l in s.log_lines())
    c = await s.client()
    assert (await c.error("connect", token=token("k1")))["code"] == 101
    late = JwksServer(port)
    try:
        await hh.async_wait_for(lambda: connects(s, token("k1")), t(20), interval=0.5,
                                what="the keys once the JWKS server is up")
    finally:
        late.close()


def test_a_server_that_never_answers_delays_start_by_the_timeout_only(server_factory, jwks):
    jwks.hang.set()
    began = time.monotonic()
    s = server_factory({"token_jwks": jwks.url(), "token_jwks_timeout_ms": 500})
    took = time.monotonic() - began
    assert took < t(5), took
    line = next(l for l in s.log_lines() if l.get("msg", "").startswith("token JWKS not fetched"))
    assert "imeout" in line["error"] or "timed out" in line["error"], line


@pytest.mark.parametrize("fault", ["status_500", "not_json", "no_keys_member", "oversized"])
async def test_bad_fetches_keep_the_keys_in_force(server_factory, jwks, fault):
    s = server_factory({"token_jwks": jwks.url(), "token_jwks_refresh": 1})
    assert await connects(s, token("k1"))
    if fault == "status_500":
        jwks.status = 500
    elif fault == "not_json":
        jwks.body = b"{not json"
    elif fault == "no_keys_member":
        jwks.body = b'{"kees": []}'
    else:
        jwks.body = b'{"keys": [], "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'

    def failures():
        return len([l for l in s.log_lines()
                    if l.get("msg", "").startswith("token JWKS not fetched")])
    await hh.async_wait_for(lambda: failures() >= 2, t(15), interval=0.2,
                            what="two failed refreshes logged")
    assert await connects(s, token("k1")), "the keys in force were dropped"
    if fault == "oversized":
        assert any("larger than" in l.get("error", "") for l in s.log_lines())


async def test_url_credentials_and_query_never_logged(server_factory, jwks):
    url = "http://backend:s3cretpw@127.0.0.1:%d/jwks.json?sig=qu3rysecret" % jwks.port
    jwks.status = 500     # so that the URL is logged
    s = server_factory({"token_jwks": url, "token_jwks_refresh": 1})
    await hh.async_wait_for(lambda: jwks.gets >= 2, t(10), interval=0.2,
                            what="two fetches")
    log = s.stderr()
    assert "s3cretpw" not in log and "qu3rysecret" not in log and "backend" not in log
    assert "127.0.0.1:%d/jwks.json" % jwks.port in log
    assert jwks.paths[0] == "/jwks.json?sig=qu3rysecret"
    # a password with '?' or '#' in it (not a URL libcurl fetches): the
    # log names no part of it
    odd = server_factory({"token_jwks": "http://backend:s3cr?t#pw@127.0.0.1:%d/j" % jwks.port,
                          "token_jwks_refresh": 1})
    await hh.async_wait_for(lambda: len([l for l in odd.log_lines() if "url" in l]) >= 2,
                            t(10), interval=0.2, what="two failures logged")
    log = odd.stderr()
    assert "s3cr" not in log and "backend" not in log, log


async def test_an_identity_providers_extra_keys_are_left_out(server_factory, jwks):
    """Beside its signing key, the document has an encryption key and keys
    of algorithms and curves Herald does not verify: the signing key is
    used, the others are left out (and counted in the log)."""
    jwks.body = json.dumps({"keys": [
        jwk("k1"),
        {"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc1", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "alg": "PS256", "kid": "ps1", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
    ]}).encode()
    s = server_factory({"token_jwks": jwks.url()})
    assert await connects(s, token("k1"))
    line = next(l for l in s.log_lines() if l.get("msg", "").startswith("token JWKS: keys not"))
    assert line["skipped"] == 3 and line["keys"] == 1, line


def test_config_check_of_the_url(tmp_path):
    from test_auth_jwt import check_config
    r = check_config(tmp_path, 'token_jwks = "http://a b";\n')
    assert r.returncode == 2 and "token_jwks" in r.stderr, r.stderr
    r = check_config(tmp_path, 'token_jwks = "https://keys.example/jwks.json";\n'
                               'token_jwks_refresh = 0;\n')
    assert r.returncode == 2 and "token_jwks_refresh" in r.stderr, r.stderr
    # --check-config does not fetch: an unreachable URL is fine there
    r = check_config(tmp_path, 'token_jwks = "https://keys.invalid/jwks.json";\n')
    assert r.returncode == 0, r.stderr
