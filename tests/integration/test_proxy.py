"""Proxy mode: connect, subscribe, publish and the refresh at expiry
decided by a backend over HTTP (a local server run by the test that
records every call): allow with what the answer sets, deny with its code,
a backend that is down or too slow (fail-closed, or fail-open per
namespace), order kept for commands behind a waiting one, no caching, and
the bound on calls waiting."""

import http.server
import json
import threading
import time

import pytest

import herald_harness as hh
from herald_harness import t


class Backend:
    def __init__(self):
        self.calls = []              # (path, body)
        self.delay = {}              # path -> seconds before answering
        self.refresh_answer = None   # None: extend by 3 s
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n))
                outer.calls.append((self.path, body))
                d = outer.delay.get(self.path)
                if d:
                    time.sleep(d)
                status, answer = outer.answer(self.path, body)
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def answer(self, path, body):
        if path == "/connect":
            tok = body.get("token", "")
            if tok.startswith("user:"):
                r = {"user": tok[5:], "info": {"name": tok[5:].title()},
                     "channels": ["priv:granted"]}
                if "exp" in body.get("name", ""):
                    r["expire_at"] = int(time.time()) + 2
                return 200, {"result": r}
            if tok == "anon":
                return 200, {"result": {}}
            if tok == "500":
                return 500, {}
            if tok == "garbage":
                return 200, {"resolt": 1}
            return 200, {"error": {"code": 103, "message": "unknown user"}}
        if path == "/subscribe":
            if "deny" in body["channel"]:
                return 200, {"error": {"code": 103, "message": "not yours"}}
            return 200, {"result": {}}
        if path == "/publish":
            if "deny" in body["channel"]:
                return 200, {"error": {"code": 103, "message": "read only"}}
            return 200, {"result": {}}
        if path == "/refresh":
            if self.refresh_answer is not None:
                return 200, self.refresh_answer
            return 200, {"result": {"expire_at": int(time.time()) + 3}}
        return 404, {}

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()


def config(b, **extra):
    c = {"proxy_connect_url": b.url("/connect"),
         "proxy_subscribe_url": b.url("/subscribe"),
         "proxy_publish_url": b.url("/publish"),
         "proxy_refresh_url": b.url("/refresh"),
         "proxy_timeout_ms": 500,
         "allow_anonymous": False,
         "namespaces": [
             {"name": "room", "proxy_subscribe": True, "proxy_publish": True,
              "presence": True},
             {"name": "open", "proxy_subscribe": True, "proxy_fail_open": True},
             {"name": "priv", "private": True},
         ]}
    c.update(extra)
    return c


async def connect(s, token, name=None):
    c = await s.client()
    f = {"token": token}
    if name:
        f["name"] = name
    return c, await c.call("connect", **f)


async def test_connect_allowed_sets_user_info_grants(server_factory, backend):
    s = server_factory(config(backend))
    c, r = await connect(s, "user:ada", name="app")
    assert "ok" in r, r
    path, body = backend.calls[-1]
    assert path == "/connect" and body["token"] == "user:ada" and body["name"] == "app"
    assert body["client"] == r["ok"]["client"] and body["encoding"] == "json"
    await c.ok("subscribe", channel="priv:granted")          # the answer's grant
    await c.ok("subscribe", channel="room:a")
    p = await c.ok("presence", channel="room:a")
    assert p["clients"][r["ok"]["client"]] == {"user": "ada", "conn_info": {"name": "Ada"}}
    body = [b for p, b in backend.calls if p == "/subscribe"][-1]
    assert body == {"client": r["ok"]["client"], "user": "ada", "channel": "room:a",
                    "info": {"name": "Ada"}}


@pytest.mark.parametrize("token,code,close", [
    ("nobody", 103, 4100),          # the backend's error
    ("anon", 101, 4100),            # no user where anonymous is not allowed
    ("500", 100, 4003),             # backend failure: try again later
    ("garbage", 100, 4003),
])
async def test_connect_refused(server_factory, backend, token, code, close):
    s = server_factory(config(backend))
    c, r = await connect(s, token)
    assert r["error"]["code"] == code, r
    p = await c.push("disconnect")
    assert p["code"] == close and p["reconnect"] == (close == 4003), p
    assert await c.wait_closed() == close


async def test_connect_timeout_and_backend_down(server_factory, backend):
    s = server_factory(config(backend))
    backend.delay["/connect"] = 2
    began = time.monotonic()
    c, r = await connect(s, "user:ada")
    assert r["error"]["code"] == 100 and time.monotonic() - began < t(2)
    down = server_factory(config(backend, proxy_connect_url="http://127.0.0.1:%d/x"
                                 % hh.free_port()))
    c, r = await connect(down, "user:ada")
    assert r["error"]["code"] == 100, r


async def test_subscribe_and_publish_verdicts(server_factory, backend):
    s = server_factory(config(backend))
    c, _ = await connect(s, "user:ada")
    assert (await c.error("subscribe", channel="room:deny"))["code"] == 103
    await c.ok("subscribe", channel="room:x")
    r = await c.ok("publish", channel="room:x", data={"n": [1, 2.50]})
    assert r["offset"] == 1
    _, body = backend.calls[-1]
    assert body["channel"] == "room:x" and body["data"] == {"n": [1, 2.5]}
    e = await c.error("publish", channel="room:deny", data=1)
    assert e["code"] == 103 and e["message"] == "read only", e
    # nothing is cached: the same subscribe asks again
    await c.ok("unsubscribe", channel="room:x")
    n = len([p for p, _ in backend.calls if p == "/subscribe"])
    await c.ok("subscribe", channel="room:x")
    assert len([p for p, _ in backend.calls if p == "/subscribe"]) == n + 1


async def test_fail_closed_and_fail_open(server_factory, backend):
    s = server_factory(config(backend))
    c, _ = await connect(s, "user:ada")
    backend.delay["/subscribe"] = 2
    e = await c.error("subscribe", channel="room:slow")
    assert e["code"] == 100, e                      # fail-closed
    await c.ok("subscribe", channel="open:slow")    # fail-open namespace


async def test_commands_behind_a_waiting_one_keep_their_order(server_factory, backend):
    s = server_factory(config(backend))
    c, _ = await connect(s, "user:ada")
    backend.delay["/subscribe"] = 0.3
    replies = await c.batch([("subscribe", {"channel": "room:o"}), ("ping", {}),
                             ("publish", {"channel": "room:o", "data": 1}), ("ping", {})],
                            one_frame=True)
    assert [list(r)[1] for r in replies] == ["ok"] * 4, replies
    assert [r["id"] for r in replies] == sorted(r["id"] for r in replies)
    assert (await c.push("pub"))["data"] == 1


async def test_refresh_at_expiry(server_factory, backend):
    s = server_factory(config(backend))
    c, r = await connect(s, "user:ada", name="exp")
    assert r["ok"]["expires"] > 0
    # the refresh proxy extends it (by 3 s each time)
    await hh.async_wait_for(lambda: any(p == "/refresh" for p, _ in backend.calls),
                            t(6), what="a refresh call")
    assert await c.is_open_after(1)
    assert await c.ok("ping") == {}
    # then refuses: closed with 4100
    backend.refresh_answer = {"error": {"code": 109, "message": "session ended"}}
    p = await c.push("disconnect", timeout=t(10))
    assert p["code"] == 4100, p


async def test_pending_calls_are_bounded(server_factory, backend):
    """With 2 calls allowed to wait and a slow backend, further connects
    are refused at once (100, close 4003) instead of queueing; the server
    keeps answering meanwhile."""
    import asyncio
    s = server_factory(config(backend, proxy_max_pending=2, proxy_timeout_ms=3000))
    backend.delay["/connect"] = 1.5
    clients = [await s.client() for _ in range(6)]
    calls = [asyncio.create_task(c.call("connect", token="user:u%d" % i, timeout=t(10)))
             for i, c in enumerate(clients)]
    await hh.async_wait_for(lambda: sum(c.done() for c in calls) >= 3, t(1.2),
                            interval=0.02, what="the calls over the bound refused at once")
    assert s.healthz()[0] == 200
    results = [await c for c in calls]
    ok = [r for r in results if "ok" in r]
    busy = [r for r in results if r.get("error", {}).get("code") == 100]
    assert len(ok) + len(busy) == 6 and len(ok) >= 1 and len(busy) >= 3, results


def test_config_errors_name_the_key(tmp_path):
    from test_auth_jwt import check_config
    r = check_config(tmp_path, 'namespaces = ({ name = "a"; proxy_subscribe = true; });\n')
    assert r.returncode == 2 and "proxy_subscribe" in r.stderr and \
        "proxy_subscribe_url" in r.stderr, r.stderr
    r = check_config(tmp_path, 'proxy_connect_url = "ftp://x/y";\n')
    assert r.returncode == 2 and "proxy_connect_url" in r.stderr and ":1" in r.stderr, r.stderr
