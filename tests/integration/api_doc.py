"""Helpers of the server API's documentation tests (test_api_openapi.py,
test_api_docs.py): the OpenAPI document, a validator of answers against
its schemas, and a herald with api_listen and one key whose namespaces
are the ones the documentation's examples use."""

import http.client
import json
import os

import yaml
from jsonschema import Draft202012Validator, RefResolver

import herald_harness as hh
from herald_harness import t

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOC_PATH = os.path.join(ROOT, "docs", "openapi.yaml")

KEY = "d0c5" * 8
AUTH = {"Authorization": "apikey " + KEY}

# The namespaces of the examples: news (the default namespace), chat:...
# and user:..., each with history and presence, so that an example's
# answer is the 200 it documents.
CONFIG = {
    "api_listen": "127.0.0.1:0",
    "namespace_defaults": {"history_size": 100, "history_ttl": 300, "presence": True},
    "namespaces": [
        {"name": "chat", "history_size": 100, "presence": True, "join_leave": True},
        {"name": "user", "history_size": 10, "presence": True},
    ],
}
ENV = {"HERALD_API_KEY": KEY}

# Routes of the document the server does not answer yet (404 today):
# schemathesis leaves them out and their examples (in openapi.yaml and
# api.md) are not sent. test_api_openapi.py's
# test_not_built_lists_are_current fails as soon as one answers, so that it
# leaves this list (and is tested) when it lands.
NOT_BUILT = set()
# Examples of built routes that use a field still being built
# ((operationId, example name) -> the field).
NOT_BUILT_EXAMPLES = {}


def load_doc():
    with open(DOC_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def api_port(server):
    line = hh.wait_for(lambda: next((l for l in server.log_lines()
                                     if l.get("msg") == "API listening"), None),
                       t(5), what="the API listening line")
    return line["port"]


def call(port, method, path, headers=None, body=None):
    """One request on its own connection: (status, headers, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=t(10))
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def resolve(doc, obj):
    """obj, or what its local $ref names."""
    while isinstance(obj, dict) and "$ref" in obj:
        node = doc
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        obj = node
    return obj


def validator(doc, schema):
    """A JSON Schema 2020-12 validator of schema, whose $refs point into doc
    (OpenAPI 3.1 schemas are 2020-12)."""
    return Draft202012Validator(schema, resolver=RefResolver("", doc))


def check_answer(doc, op, status, headers, body):
    """Checks an answer against the operation's documented response for its
    status: the status is documented, the Content-Type is the documented
    one, and a JSON body matches the schema. Returns the decoded body."""
    responses = op["responses"]
    assert str(status) in responses, \
        "%s: status %d not documented (%s): %r" % (op["operationId"], status,
                                                   sorted(responses), body[:300])
    resp = resolve(doc, responses[str(status)])
    ctype = headers.get("content-type", "").split(";")[0].strip()
    assert ctype in resp.get("content", {}), \
        "%s %d: Content-Type %r, documented %s" % (op["operationId"], status, ctype,
                                                  sorted(resp.get("content", {})))
    schema = resp["content"][ctype]["schema"]
    value = json.loads(body) if ctype == "application/json" else body.decode()
    errors = sorted(validator(doc, schema).iter_errors(value), key=str)
    assert not errors, "%s %d: the answer does not match its schema:\n%s\n%s" % (
        op["operationId"], status, "\n".join(e.message for e in errors[:5]), body[:500])
    return value
