"""The static site (static_dir) on the main port: every request line but
/ws's goes to Herald's own HTTP/1.1 server (net/sniff.c), which serves the
directory's files (server/web/) with their types and validators, never
anything outside the directory, and still answers /healthz, /metrics and
the server API on its kept-alive connections; WebSocket clients are served
as before, also while the site is flooded."""

import asyncio
import http.client
import json
import os
import shutil
import subprocess

import pytest

import herald_harness as hh
from herald_harness import HERALD_BIN, t
from test_api_listen import AUTH, KEY

SECRET = b"outside-the-site-secret"

FILES = {
    "index.html": (b"<!doctype html><p>home</p>", "text/html; charset=utf-8"),
    "app.js": (b"console.log(1);", "text/javascript; charset=utf-8"),
    "mod.mjs": (b"export const x = 1;", "text/javascript; charset=utf-8"),
    "s.css": (b"p{color:red}", "text/css; charset=utf-8"),
    "d.json": (b'{"a":1}', "application/json"),
    "app.js.map": (b'{"version":3}', "application/json"),
    "i.svg": (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
    "p.png": (b"\x89PNG\r\n\x1a\nxx", "image/png"),
    "j.jpg": (b"\xff\xd8\xff", "image/jpeg"),
    "favicon.ico": (b"\x00\x00\x01\x00", "image/x-icon"),
    "r.txt": (b"hello", "text/plain; charset=utf-8"),
    "w.wasm": (b"\x00asm\x01\x00\x00\x00", "application/wasm"),
    "f.woff2": (b"wOF2", "font/woff2"),
    "x.unknownext": (b"raw", "application/octet-stream"),
    "chat/index.html": (b"<p>chat</p>", "text/html; charset=utf-8"),
}


def make_site(root):
    """A site with every kind of file, a folder without an index, a file
    over the bound, a hidden file, and symlinks out of it (and one inside);
    plus a secret next to it."""
    site = os.path.join(root, "www")
    os.makedirs(os.path.join(site, "chat"))
    os.makedirs(os.path.join(site, "empty"))
    for name, (body, _) in FILES.items():
        with open(os.path.join(site, name), "wb") as f:
            f.write(body)
    with open(os.path.join(root, "secret.txt"), "wb") as f:
        f.write(SECRET)
    with open(os.path.join(site, ".hidden"), "wb") as f:
        f.write(SECRET)
    with open(os.path.join(site, "big.bin"), "wb") as f:
        f.write(b"b" * 4096)
    os.symlink(os.path.join(root, "secret.txt"), os.path.join(site, "out.txt"))
    os.symlink(root, os.path.join(site, "outdir"))
    os.symlink("../secret.txt", os.path.join(site, "rel.txt"))
    os.symlink("app.js", os.path.join(site, "in.js"))
    return site


def site_server(server_factory, tmp_path, config=None, **kw):
    site = make_site(str(tmp_path))
    cfg = {"static_dir": site, "static_max_file": 1024}
    cfg.update(config or {})
    s = server_factory(cfg, **kw)
    hh.wait_for(lambda: any(l.get("msg") == "static files at /" for l in s.log_lines()),
                t(5), what="the static files line")
    return s


def get(port, path, method="GET", headers=None, conn=None, body=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=t(5))
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r, r.read()
    finally:
        if conn is None:
            c.close()


def raw_status(port, path, method="GET"):
    """The status and body of a request sent byte for byte (no client
    normalises the path)."""
    out = hh.exchange(port, ("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                             % (method, path)).encode("latin-1"))
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_types_validators_and_methods(server_factory, tmp_path):
    s = site_server(server_factory, tmp_path)
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=t(5))
    for name, (body, ctype) in FILES.items():      # one kept-alive connection
        r, got = get(s.port, "/" + name, conn=c)
        assert r.status == 200, (name, got)
        assert got == body, name
        assert r.getheader("Content-Type") == ctype, name
        assert r.getheader("X-Content-Type-Options") == "nosniff"
        assert r.getheader("Cache-Control") == "no-cache"
        assert not r.will_close
    c.close()

    # "/" and "/dir/" are the index; "/dir" is sent to "/dir/"; query ignored
    r, got = get(s.port, "/?x=1&y=../../secret")
    assert r.status == 200 and got == FILES["index.html"][0]
    r, got = get(s.port, "/chat/")
    assert r.status == 200 and got == FILES["chat/index.html"][0]
    r, got = get(s.port, "/chat")
    assert r.status == 301 and r.getheader("Location") == "/chat/"

    # ETag and If-None-Match; Last-Modified and If-Modified-Since
    r, _ = get(s.port, "/app.js")
    etag, lm = r.getheader("ETag"), r.getheader("Last-Modified")
    assert etag.startswith('"') and lm.endswith(" GMT")
    r, got = get(s.port, "/app.js", headers={"If-None-Match": etag})
    assert r.status == 304 and got == b"" and r.getheader("ETag") == etag
    assert r.getheader("Content-Length") is None
    r, got = get(s.port, "/app.js", headers={"If-None-Match": 'W/"x", ' + etag})
    assert r.status == 304
    r, got = get(s.port, "/app.js", headers={"If-Modified-Since": lm})
    assert r.status == 304 and got == b""
    r, got = get(s.port, "/app.js", headers={"If-None-Match": '"other"',
                                             "If-Modified-Since": lm})
    assert r.status == 200 and got == FILES["app.js"][0]
    r, got = get(s.port, "/app.js", headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert r.status == 200
    # a changed file has a new ETag
    with open(os.path.join(str(tmp_path), "www", "app.js"), "wb") as f:
        f.write(b"console.log(22);")
    r, got = get(s.port, "/app.js", headers={"If-None-Match": etag})
    assert r.status == 200 and got == b"console.log(22);" and r.getheader("ETag") != etag

    # HEAD: the GET's headers and length, no body
    r, got = get(s.port, "/index.html", method="HEAD")
    assert r.status == 200 and got == b""
    assert int(r.getheader("Content-Length")) == len(FILES["index.html"][0])

    # other methods: 405 with Allow and the API's error shape
    for m in ("POST", "PUT", "DELETE", "OPTIONS"):
        r, got = get(s.port, "/index.html", method=m, body=b"x" if m != "OPTIONS" else None)
        assert r.status == 405 and r.getheader("Allow") == "GET, HEAD", (m, got)
        assert json.loads(got)["error"]["code"] == 107

    # not there, a folder without index, over static_max_file (logged)
    for path in ("/nope.html", "/empty/", "/chat/nope.js"):
        r, got = get(s.port, path)
        assert r.status == 404, path
        assert json.loads(got) == {"error": {"code": 107, "message": "not found"}}
    r, got = get(s.port, "/big.bin")
    assert r.status == 404 and json.loads(got)["error"]["code"] == 112
    hh.wait_for(lambda: any(l.get("msg") == "static file over static_max_file not served"
                            and l.get("file") == "big.bin" for l in s.log_lines()),
                t(5), what="the too-large warning")
    status, _ = raw_status(s.port, "/a%zz.js")
    assert status == 400


def test_nothing_outside_the_directory(server_factory, tmp_path):
    s = site_server(server_factory, tmp_path)
    attempts = [
        "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt", "/chat/../../secret.txt", "/chat/%2e%2e/%2e%2e/secret.txt",
        "/chat/..%2f..%2fsecret.txt", "/..%5csecret.txt", "/chat%5c..%5c..%5csecret.txt",
        "//secret.txt", "/%2fsecret.txt", "/out.txt", "/rel.txt", "/outdir/secret.txt",
        "/outdir/www/index.html", "/.hidden", "/%2ehidden", "/index.html%00.js",
        "/chat/./index.html", "/" + "%2e%2e/" * 20 + "etc/passwd",
    ]
    for path in attempts:
        status, body = raw_status(s.port, path)
        assert status in (400, 404), (path, status, body)
        assert SECRET not in body and b"root:" not in body, path
    # a symlink that stays inside is followed where openat2 resolves names
    # beneath the directory (the log says which resolver is in use)
    line = next(l for l in s.log_lines() if l.get("msg") == "static files at /")
    r, got = get(s.port, "/in.js")
    if line["resolver"] == "openat2":
        assert r.status == 200 and got == FILES["app.js"][0]
    else:
        assert r.status == 404


async def test_ws_healthz_metrics_and_api_beside_the_site(server_factory, tmp_path):
    s = site_server(server_factory, tmp_path, env={"HERALD_API_KEY": KEY})
    ch = hh.chan("site-")
    sub = await s.client()
    await sub.ok("subscribe", channel=ch)
    pub = await s.client()
    await pub.ok("publish", channel=ch, data={"n": 1})
    assert [p["data"] for p in await sub.pubs(1)] == [{"n": 1}]
    # a fresh connection for /healthz goes to the own server too; so do
    # the API and /metrics, also on a connection the site kept alive
    status, health = s.healthz()
    assert status == 200 and health["status"] == "ok" and health["connections"] == 2
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=t(5))
    r, _ = await asyncio.to_thread(get, s.port, "/", "GET", None, c)
    assert r.status == 200 and not r.will_close
    r, body = await asyncio.to_thread(get, s.port, "/healthz", "GET", None, c)
    assert r.status == 200 and json.loads(body)["status"] == "ok" and not r.will_close
    r, body = await asyncio.to_thread(get, s.port, "/api/v1/info", "GET", AUTH, c)
    assert r.status == 200 and json.loads(body)["connections"] == 2, body
    r, body = await asyncio.to_thread(get, s.port, "/metrics", "GET", None, c)
    assert r.status == 200 and b"herald_connections" in body
    r, body = await asyncio.to_thread(get, s.port, "/ws", "GET", None, c)
    assert r.status == 426
    c.close()
    r, body = await asyncio.to_thread(get, s.port, "/api/v1/info")
    assert r.status == 401
    # a WebSocket handshake on a path other than /ws is not lws's
    status, _ = raw_status(s.port, "/index.html")
    assert status == 200


async def test_with_api_listen_the_api_moves_and_the_site_stays(server_factory, tmp_path):
    s = site_server(server_factory, tmp_path, config={"api_listen": "127.0.0.1:0"},
                    env={"HERALD_API_KEY": KEY})
    from test_api_listen import api_port
    ap = api_port(s)
    r, got = await asyncio.to_thread(get, s.port, "/")
    assert r.status == 200 and got == FILES["index.html"][0]
    r, body = await asyncio.to_thread(get, s.port, "/api/v1/info", "GET", AUTH)
    assert r.status == 404 and b"api_listen" in body
    r, body = await asyncio.to_thread(get, ap, "/api/v1/info", "GET", AUTH)
    assert r.status == 200
    r, body = await asyncio.to_thread(get, ap, "/index.html")
    assert r.status in (401, 404) and b"home" not in body   # the main port's only
    sub = await s.client()
    await sub.ok("subscribe", channel=hh.chan("site-"))


async def test_a_flood_of_static_requests_leaves_websockets_served(server_factory, tmp_path):
    s = site_server(server_factory, tmp_path)
    ch = hh.chan("flood-")
    sub = await s.client()
    await sub.ok("subscribe", channel=ch)
    pub = await s.client()
    stop = asyncio.Event()
    served = [0]

    def flood():
        # keep-alive GETs and conditional GETs as fast as one client can
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=t(5))
        etag = None
        try:
            while not stop.is_set():
                r, _ = get(s.port, "/app.js", headers={"If-None-Match": etag} if etag else None,
                           conn=c)
                assert r.status in (200, 304)
                etag = r.getheader("ETag")
                served[0] += 1
        finally:
            c.close()

    floods = [asyncio.create_task(asyncio.to_thread(flood)) for _ in range(6)]
    try:
        await hh.async_wait_for(lambda: served[0] >= 200, t(10), what="the flood running")
        for i in range(50):
            await pub.ok("publish", channel=ch, data=i)
        got = await sub.pubs(50, timeout=t(10))
        assert [p["data"] for p in got] == list(range(50))
        assert not any(f.done() for f in floods), [f.exception() for f in floods if f.done()]
    finally:
        stop.set()
        await asyncio.gather(*floods)
    assert served[0] >= 200


def run_cli(args, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    return subprocess.run([HERALD_BIN] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=t(15))


def test_static_dir_errors_name_the_key(tmp_path):
    conf = tmp_path / "h.conf"
    conf.write_text('# a site\nstatic_dir = "missing/www";\n')
    r = run_cli(["--check-config", "-c", str(conf)])
    assert r.returncode == 2
    assert "%s:2: key 'static_dir': cannot open directory '%s/missing/www'" % (
        conf, tmp_path) in r.stderr, r.stderr
    r = run_cli(["--check-config", "--static-dir", "nope"], cwd=str(tmp_path))
    assert r.returncode == 2 and "--static-dir: key 'static_dir'" in r.stderr, r.stderr
    (tmp_path / "www").mkdir()
    r = run_cli(["--check-config", "--static-dir", "www"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr


async def test_demo_conf_serves_the_sdk_build(server_factory, tmp_path):
    """conf/demo.conf, as `make run` uses it: static_dir is relative to the
    file, so a copy beside a built clients/js/dist/www serves that."""
    src = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "demo.conf")
    os.makedirs(tmp_path / "conf")
    shutil.copy(src, tmp_path / "conf" / "demo.conf")
    conf = str(tmp_path / "conf" / "demo.conf")
    r = run_cli(["--check-config", "-c", conf])
    assert r.returncode == 2 and "key 'static_dir': cannot open directory" in r.stderr
    www = tmp_path / "clients" / "js" / "dist" / "www"
    os.makedirs(www)
    (www / "index.html").write_bytes(b"<p>demo</p>")
    r = run_cli(["--check-config", "-c", conf])
    assert r.returncode == 0, r.stderr
    with open(conf) as f:
        s = server_factory(f.read().replace('"../clients', '"%s/clients' % tmp_path))
    r, got = await asyncio.to_thread(get, s.port, "/")
    assert r.status == 200 and got == b"<p>demo</p>"
    a = await s.client()
    b = await s.client()
    await a.ok("connect")
    await b.ok("connect")
    ch = "demo:chat"
    await a.ok("subscribe", channel=ch)
    await b.ok("subscribe", channel=ch)
    join = await a.push("join")
    assert join["channel"] == ch
    pres = await a.ok("presence", channel=ch)
    assert set(pres["clients"]) == {a.client_id, b.client_id}
    # history from the defaults: a publication is kept for recovery
    await a.ok("publish", channel=ch, data="hi")
    hist = await b.ok("history", channel=ch, limit=10)
    assert [p["data"] for p in hist["publications"]] == ["hi"], hist
