#!/usr/bin/env python3
"""Converts docs/openapi.yaml to a C file holding the document as compact
JSON, which the server serves at GET /api/v1/openapi.json (server/api/
openapi.h). Run by the build (server/CMakeLists.txt) with Debian's python3
and PyYAML (python3-yaml, the build profile of scripts/deps.sh).

    openapi_to_c.py IN.yaml OUT.c

The YAML is read with the safe loader and must be plain JSON data (no
dates, no binary, string keys): anything else fails the build rather than
serving a document that differs from the file."""

import json
import sys

import yaml


def check(v, where="$"):
    """Fails on what YAML has and JSON has not (a date, bytes, a non-string
    key), so that the served JSON is the YAML file's meaning exactly."""
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                sys.exit("openapi_to_c: %s: key %r is not a string" % (where, k))
            check(x, "%s.%s" % (where, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            check(x, "%s[%d]" % (where, i))
    elif not (v is None or isinstance(v, (str, int, float, bool))):
        sys.exit("openapi_to_c: %s: %s is not JSON (quote it)" % (where, type(v).__name__))


def c_literal(text, width=96):
    """text (ASCII) as concatenated C string literals of about width chars."""
    out = []
    for i in range(0, len(text), width):
        part = text[i:i + width].replace("\\", "\\\\").replace('"', '\\"')
        out.append('    "%s"' % part)
    return "\n".join(out)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: openapi_to_c.py IN.yaml OUT.c")
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    check(doc)
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    with open(sys.argv[2], "w", encoding="ascii") as f:
        f.write("/* Generated from docs/openapi.yaml by scripts/openapi_to_c.py:"
                " do not edit. */\n")
        f.write('#include "api/openapi.h"\n\n')
        f.write("const char api_openapi_json[] =\n%s;\n" % c_literal(text))
        f.write("const size_t api_openapi_json_len = %d;\n" % len(text))


if __name__ == "__main__":
    main()
