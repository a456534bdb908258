"""The server API's OpenAPI document (docs/openapi.yaml) against a real
herald: the served GET /api/v1/openapi.json is the YAML file, every example
of the document matches its schema and, sent to the server, gets the
documented answer, and schemathesis (PyPI, in the venv of
scripts/schemathesis.sh) finds no answer that breaks the document."""

import asyncio
import json
import os
import re
import subprocess
import tempfile
import urllib.parse

import msgpack
import pytest

import api_doc
import herald_harness as hh
from api_doc import AUTH, KEY, NOT_BUILT, NOT_BUILT_EXAMPLES
from herald_harness import t

CHECKS = ("not_a_server_error,response_schema_conformance,"
          "status_code_conformance,content_type_conformance")
# Test cases per operation and phase: the run takes about 6 s under ASan
# here (about 1,400 requests; the bound of the brief is 60 s).
MAX_EXAMPLES = 200

server = hh.server_fixture(api_doc.CONFIG, env=api_doc.ENV)


@pytest.fixture(scope="module")
def doc():
    return api_doc.load_doc()


@pytest.fixture(scope="module")
def port(server):
    return api_doc.api_port(server)


def operations(doc):
    """(path, METHOD, operation) of the document, POSTs first (the
    publications the history examples read)."""
    ops = [(path, m.upper(), op) for path, item in doc["paths"].items()
           for m, op in item.items()]
    return sorted(ops, key=lambda o: o[1] != "POST")


def needs_key(doc, op):
    sec = op.get("security", doc.get("security", []))
    return bool(sec) and {} not in sec


def example_requests(doc, path, op):
    """(name, target, content type, body bytes) for each example: one per
    example value of a query parameter (the other required ones at their
    first example), and one per example of each request body media type."""
    params = [api_doc.resolve(doc, p) for p in op.get("parameters", [])]

    def values(p):
        if "examples" in p:
            return [(n, api_doc.resolve(doc, e)["value"]) for n, e in p["examples"].items()]
        return [("example", p["example"])] if "example" in p else []

    base = {p["name"]: values(p)[0][1] for p in params if p.get("required")}
    queries = [("%s=%s" % (p["name"], n), dict(base, **{p["name"]: v}))
               for p in params for n, v in values(p)] or [("", base)]
    out = []
    body = op.get("requestBody")
    for qname, q in queries:
        target = path + ("?" + urllib.parse.urlencode(q) if q else "")
        if not body:
            out.append((qname or "no parameters", target, None, None))
            continue
        for ctype, media in body["content"].items():
            for name, ex in media.get("examples", {}).items():
                value = api_doc.resolve(doc, ex)["value"]
                raw = (json.dumps(value).encode() if ctype == "application/json"
                       else msgpack.packb(value, use_bin_type=True))
                out.append((name, target, ctype, raw))
    return out


def test_served_document_is_the_yaml_file(doc, port):
    # no key: the document is public
    status, headers, body = api_doc.call(port, "GET", "/api/v1/openapi.json")
    assert status == 200 and headers["content-type"] == "application/json", body[:200]
    assert json.loads(body) == doc
    # a key makes no difference
    status, _, body2 = api_doc.call(port, "GET", "/api/v1/openapi.json", AUTH)
    assert status == 200 and body2 == body
    status, headers, body = api_doc.call(port, "POST", "/api/v1/openapi.json", AUTH)
    assert status == 405 and headers["allow"] == "GET, HEAD", body


def test_examples_match_their_schemas(doc):
    """Every request and response example of the document is valid against
    the schema next to it: an example that is not teaches the wrong API."""
    checked = 0
    for path, method, op in operations(doc):
        media_sets = [(op["operationId"] + " request", op.get("requestBody", {}).get("content", {}))]
        for status, resp in op["responses"].items():
            media_sets.append(("%s %s" % (op["operationId"], status),
                               api_doc.resolve(doc, resp).get("content", {})))
        for where, content in media_sets:
            for ctype, media in content.items():
                v = api_doc.validator(doc, media["schema"])
                exs = [api_doc.resolve(doc, e)["value"] for e in media.get("examples", {}).values()]
                if "example" in media:
                    exs.append(media["example"])
                for ex in exs:
                    errors = [e.message for e in v.iter_errors(ex)]
                    assert not errors, "%s %s example %r: %s" % (where, ctype, ex, errors)
                    checked += 1
        for p in op.get("parameters", []):
            p = api_doc.resolve(doc, p)
            v = api_doc.validator(doc, p["schema"])
            for ex in ([api_doc.resolve(doc, e)["value"] for e in p.get("examples", {}).values()]
                       + ([p["example"]] if "example" in p else [])):
                assert v.is_valid(ex), "%s parameter %s example %r" % (op["operationId"], p["name"], ex)
                checked += 1
    assert checked >= 40, checked


def test_not_built_lists_are_current(port):
    """What NOT_BUILT and NOT_BUILT_EXAMPLES name is still refused as not
    built; once one is served, it must leave the list (and be tested)."""
    for path in sorted(NOT_BUILT):
        status, _, body = api_doc.call(port, "GET", path, AUTH)
        assert status == 404, "%s answers %d now: remove it from NOT_BUILT in %s" % (
            path, status, "tests/integration/api_doc.py")
    for (op_id, name), field in NOT_BUILT_EXAMPLES.items():
        assert op_id == "publish" and field == "idempotency_key"
        status, _, body = api_doc.call(
            port, "POST", "/api/v1/publish", dict(AUTH, **{"Content-Type": "application/json"}),
            json.dumps({"channel": "news", "data": 1, "idempotency_key": "k1"}).encode())
        assert status == 400 and b"unknown field" in body, \
            "publish takes %s now: remove (%r, %r) from NOT_BUILT_EXAMPLES in " \
            "tests/integration/api_doc.py" % (field, op_id, name)


async def test_every_example_gets_its_documented_answer(doc, server, port):
    # a subscriber, so that presence examples list a client
    c = await server.client()
    await c.ok("connect")
    for ch in ("news", "chat:lobby"):
        await c.ok("subscribe", channel=ch)
    sent = 0
    for path, method, op in operations(doc):
        if path in NOT_BUILT:
            continue
        for name, target, ctype, raw in example_requests(doc, path, op):
            if (op["operationId"], name) in NOT_BUILT_EXAMPLES:
                continue
            headers = dict(AUTH) if needs_key(doc, op) else {}
            if ctype:
                headers["Content-Type"] = ctype
            status, rh, body = await asyncio.to_thread(api_doc.call, port, method, target,
                                                       headers, raw)
            assert status == 200, "%s example %s (%s): %d %r" % (
                op["operationId"], name, ctype, status, body[:300])
            value = api_doc.check_answer(doc, op, status, rh, body)
            if op["operationId"] == "getHistory":
                assert value["publications"], (target, value)
            if op["operationId"] == "getPresence":
                assert c.client_id in value["clients"], (target, value)
            sent += 1
    assert sent >= 8, sent


def schemathesis_command():
    """The pinned schemathesis of scripts/schemathesis.sh (it installs it
    when missing: scripts/deps.sh test does that beforehand)."""
    r = subprocess.run([os.path.join(api_doc.ROOT, "scripts", "schemathesis.sh")],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip("schemathesis not installed (scripts/schemathesis.sh): " + r.stderr[-500:])
    return r.stdout.strip()


def test_schemathesis_finds_no_mismatch(doc, server, port):
    st = schemathesis_command()
    base = "http://127.0.0.1:%d" % port
    cmd = [st, "run", base + "/api/v1/openapi.json", "--url", base,
           "-H", "Authorization: apikey " + KEY, "--checks", CHECKS,
           "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
           "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
           "--request-timeout", str(t(10)), "--no-color"]
    for path in sorted(NOT_BUILT):
        cmd += ["--exclude-path", path]
    # the hooks encode application/msgpack bodies
    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
               PYTHONPATH=api_doc.HERE, NO_COLOR="1")
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=t(240))
    out = r.stdout + r.stderr
    assert r.returncode == 0, "schemathesis found a mismatch (or failed):\n" + out[-12000:]
    # schemathesis leaves out the operation serving the document it loaded
    n_ops = sum(len(item) for p, item in doc["paths"].items()
                if p not in NOT_BUILT and p != "/api/v1/openapi.json")
    tested = re.search(r"Tested: (\d+)", out)
    assert tested and int(tested.group(1)) == n_ops, out[-3000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    assert cases and int(cases.group(1)) >= 10 * n_ops, out[-3000:]
