"""docs/api.md against a real herald: every curl command of the page runs
as written and its answer, and the answer shown under it, match
docs/openapi.yaml; the backend programs of docs/examples/ (curl, Python
requests, Node fetch) are the ones the page shows and publish; the errors
table holds the status and code of each error the server gives."""

import ast
import json
import os
import re
import shutil
import subprocess

import pytest

import api_doc
import herald_harness as hh
from api_doc import AUTH, NOT_BUILT
from herald_harness import t

DOCS = os.path.join(api_doc.ROOT, "docs")
API_MD = os.path.join(DOCS, "api.md")

# The examples' namespaces, small bounds for the errors (api_max_body and
# max_message_size at their minimums) and a namespace without history or
# presence (503, code 108).
CONFIG = dict(api_doc.CONFIG, api_max_body=1024, max_message_size=256,
              namespaces=api_doc.CONFIG["namespaces"] + [
                  {"name": "quiet", "history_size": 0, "presence": False}])

server = hh.server_fixture(CONFIG, env=api_doc.ENV)


@pytest.fixture(scope="module")
def doc():
    return api_doc.load_doc()


@pytest.fixture(scope="module")
def port(server):
    return api_doc.api_port(server)


@pytest.fixture(scope="module")
def env(port):
    return dict(os.environ, HERALD_API="http://127.0.0.1:%d" % port,
                HERALD_API_KEY=api_doc.KEY)


def blocks():
    """The fenced code blocks of api.md in order: (language, text, the
    `<!-- example: FILE -->` comment's FILE just before it or None)."""
    with open(API_MD, encoding="utf-8") as f:
        md = f.read()
    pat = re.compile(r"(?:<!-- example: (\S+) -->\n)?^( *)```(\w*)\n(.*?)^\2```$",
                     re.M | re.S)
    out = []
    for m in pat.finditer(md):
        indent = len(m.group(2))
        text = "".join(l[indent:] + "\n" for l in m.group(4).splitlines())
        out.append((m.group(3), text, m.group(1)))
    return out


def operation(doc, command):
    """(path, operation) a curl command calls."""
    path = re.search(r"\$HERALD_API(/[a-z0-9/._]+)", command).group(1)
    method = "post" if "-X POST" in command else "get"
    return path, doc["paths"][path][method]


def schema_200(doc, op):
    resp = api_doc.resolve(doc, op["responses"]["200"])
    return resp["content"]["application/json"]["schema"]


def test_every_curl_command_runs_as_shown(doc, env):
    bs = blocks()
    ran = skipped = 0
    for i, (lang, text, _) in enumerate(bs):
        if lang != "sh" or not text.startswith("curl "):
            continue
        path, op = operation(doc, text)
        if path in NOT_BUILT:
            skipped += 1
            continue
        r = subprocess.run(["sh", "-c", text], env=env, capture_output=True, timeout=t(20))
        assert r.returncode == 0, (text, r.stderr)
        if path == "/metrics":              # text/plain: the exposition
            assert b"# TYPE herald_connections" in r.stdout, r.stdout[:300]
            ran += 1
            continue
        answer = json.loads(r.stdout)
        v = api_doc.validator(doc, schema_200(doc, op))
        errors = [e.message for e in v.iter_errors(answer)]
        assert not errors, "%s\nanswer %r: %s" % (text, answer, errors)
        # the answer the page shows next has the same shape
        if i + 1 < len(bs) and bs[i + 1][0] == "json":
            shown = json.loads(bs[i + 1][1])
            assert v.is_valid(shown), (text, shown)
            assert set(shown) == set(answer), \
                "%s\nthe page shows %s, the server answers %s" % (text, sorted(shown), sorted(answer))
        ran += 1
    assert ran >= 6 and ran + skipped >= 10, (ran, skipped)


def test_backend_examples_are_the_files_and_publish(doc, env, port):
    shown = {f: text for _, text, f in blocks() if f}
    assert sorted(shown) == ["examples/publish.mjs", "examples/publish.py",
                             "examples/publish.sh"]
    for f, text in shown.items():
        with open(os.path.join(DOCS, f), encoding="utf-8") as fh:
            assert fh.read() == text, "docs/api.md does not show docs/%s as it is" % f
    published = api_doc.validator(doc, doc["components"]["schemas"]["Published"])

    def run(*cmd):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=t(30))
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
        return r.stdout.splitlines()

    out = run("sh", os.path.join(DOCS, "examples", "publish.sh"))
    assert published.is_valid(json.loads(out[0])), out
    out = run("/usr/bin/python3", os.path.join(DOCS, "examples", "publish.py"))
    assert published.is_valid(ast.literal_eval(out[0])), out
    assert {"headline": "Hello from Python"} in ast.literal_eval(out[1]), out
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed (scripts/deps.sh test installs nodejs)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    assert int(version.lstrip("v").split(".")[0]) >= 18, version
    out = run(node, os.path.join(DOCS, "examples", "publish.mjs"))
    assert published.is_valid(json.loads(out[0])), out
    # each program's publication is in the channel's history
    status, _, body = api_doc.call(port, "GET", "/api/v1/history?channel=news&limit=100", AUTH)
    datas = [p["data"] for p in json.loads(body)["publications"]]
    for headline in ("Hello", "Hello from Python", "Hello from Node"):
        assert {"headline": headline} in datas, datas


def error_rows():
    """{(status, code)} of the errors table of api.md."""
    with open(API_MD, encoding="utf-8") as f:
        md = f.read()
    table = md[md.index("## Errors"):md.index("## Limits")]
    return {(int(s), int(c)) for s, c in re.findall(r"^\| (\d{3}) \| (\d{3}) \|", table, re.M)}


def test_errors_are_in_the_table_and_the_document(doc, port):
    rows = error_rows()
    assert len(rows) >= 15, rows
    json_ct = dict(AUTH, **{"Content-Type": "application/json"})
    pub = ("/api/v1/publish", "post")
    hist = ("/api/v1/history", "get")
    cases = [
        (pub, "POST", "/api/v1/publish", json_ct, b'{"channel": "news"}', 400, 107),
        (pub, "POST", "/api/v1/publish", json_ct, b'{"channel": "news", "data": 1, "x": 2}', 400, 107),
        (pub, "POST", "/api/v1/publish", json_ct, b'{"channel": "nope:1", "data": 1}', 400, 102),
        (hist, "GET", "/api/v1/history?channel=news&limit=5000", AUTH, None, 400, 106),
        (hist, "GET", "/api/v1/history?channel=news&since_offset=5&since_epoch=zzzz", AUTH, None, 400, 111),
        (hist, "GET", "/api/v1/history?channel=news&reverse=yes", AUTH, None, 400, 107),
        (hist, "GET", "/api/v1/history?channel=quiet:1", AUTH, None, 503, 108),
        (("/api/v1/presence", "get"), "GET", "/api/v1/presence?channel=quiet:1", AUTH, None, 503, 108),
        (("/api/v1/info", "get"), "GET", "/api/v1/info", {}, None, 401, 101),
        (("/api/v1/info", "get"), "GET", "/api/v1/info", {"Authorization": "apikey " + "x" * 32},
         None, 401, 101),
        (pub, "POST", "/api/v1/publish", json_ct,
         json.dumps({"channel": "news", "data": "x" * 400}).encode(), 413, 112),
        (pub, "POST", "/api/v1/publish", json_ct, b"[" + b"1," * 600 + b"1]", 413, 112),
        (pub, "POST", "/api/v1/publish", dict(AUTH, **{"Content-Type": "text/plain"}), b"hi", 415, 107),
        (None, "GET", "/api/v1/nope", AUTH, None, 404, 107),
        (None, "GET", "/api/v1/publish", AUTH, None, 405, 107),
    ]
    for where, method, target, headers, body, status, code in cases:
        st, rh, raw = api_doc.call(port, method, target, headers, body)
        answer = json.loads(raw)
        assert (st, answer.get("error", {}).get("code")) == (status, code), (target, body, st, answer)
        assert (status, code) in rows, "api.md's errors table has no row %d / %d" % (status, code)
        if where:
            api_doc.check_answer(doc, doc["paths"][where[0]][where[1]], st, rh, raw)
        if status == 401:
            assert rh["www-authenticate"] == "apikey"
        if status == 405:
            assert rh["allow"] == "POST"


def test_readme_curl_is_one_the_page_runs():
    with open(os.path.join(api_doc.ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("## HTTP API"):]
    m = re.search(r"```sh\n(.*?)```", section, re.S)
    command = "".join(l + "\n" for l in m.group(1).splitlines() if not l.startswith("#"))
    assert command in [text for lang, text, _ in blocks() if lang == "sh"], command
