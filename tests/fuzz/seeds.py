#!/usr/bin/env python3
"""Writes the seed inputs of the fuzzing corpora (tests/fuzz/corpus/<harness>/).

Seeds are the files named seed-*: this script removes them and writes them
again, and never touches any other file there (regression inputs, named
after the bug they caught, are added by hand: tests/fuzz/README.md). The
protocol harnesses start from the shared test vectors in protocol/vectors/
(both encodings); the others from small hand-made inputs that reach each
parser's main paths. Run it from anywhere after changing the vectors or the
inputs below, and commit the corpus with it. No dependencies.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VECTORS = os.path.join(ROOT, "protocol", "vectors")
MAX_SEED = 4096          # small files only; libFuzzer's default max_len

# --- a minimal MessagePack packer (what the seeds need) ---------------------


class Bin(bytes):
    """Packed as msgpack bin (plain bytes are packed as str)."""


def mp(v):
    if v is None:
        return b"\xc0"
    if v is True or v is False:
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if 0 <= v < 1 << 32:
            return b"\xce" + struct.pack(">I", v)
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, Bin):
        return (b"\xc4" + bytes([len(v)]) if len(v) < 256
                else b"\xc5" + struct.pack(">H", len(v))) + v
    if isinstance(v, (str, bytes)):
        b = v.encode() if isinstance(v, str) else v
        if len(b) < 32:
            return bytes([0xa0 | len(b)]) + b
        return b"\xd9" + bytes([len(b)]) + b
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x)
                                                  for k, x in v.items())
    raise TypeError(v)


# --- output -------------------------------------------------------------------


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


class Corpus:
    def __init__(self, harness):
        self.dir = os.path.join(HERE, "corpus", harness)
        os.makedirs(self.dir, exist_ok=True)
        for f in os.listdir(self.dir):
            if f.startswith("seed-"):
                os.remove(os.path.join(self.dir, f))
        self.names = set()

    def add(self, name, data):
        if isinstance(data, str):
            data = data.encode()
        if len(data) > MAX_SEED:
            return
        base = "seed-" + slug(name)
        name, k = base, 2
        while name in self.names:
            name, k = "%s-%d" % (base, k), k + 1
        self.names.add(name)
        with open(os.path.join(self.dir, name), "wb") as f:
            f.write(data)


def load(name):
    with open(os.path.join(VECTORS, name)) as f:
        return json.load(f)["vectors"]


# --- the protocol harnesses: the shared vectors -----------------------------


def protocol_seeds():
    cmd = {"json": Corpus("fuzz_cmd_json"), "msgpack": Corpus("fuzz_cmd_msgpack")}
    for v in load("decode.json"):
        data = bytes.fromhex(v["input_hex"]) if "input_hex" in v else v["input"]
        cmd[v["enc"]].add(v["name"], data)
    # Publication data, inside a publish, in the encoding it was given in.
    for v in load("data.json"):
        if v["from"] == "json":
            cmd["json"].add("data " + v["name"],
                            '{"id":7,"op":"publish","channel":"chat:x","data":%s}'
                            % v["input"])
        else:
            # A map of 4 whose last value is the raw data bytes.
            cmd["msgpack"].add("data " + v["name"],
                               b"\x84" + mp("id") + mp(7) + mp("op")
                               + mp("publish") + mp("channel") + mp("chat:x")
                               + mp("data") + bytes.fromhex(v["input_hex"]))

    smsg = {"json": Corpus("fuzz_smsg_json"), "msgpack": Corpus("fuzz_smsg_msgpack")}
    frames = {"json": [], "msgpack": []}
    for v in load("encode.json"):
        if v["kind"] == "cmd":
            continue   # client commands, not server messages
        smsg["json"].add(v["name"], v["json"])
        smsg["msgpack"].add(v["name"], bytes.fromhex(v["msgpack_hex"]))
        frames["json"].append(v["json"].encode())
        frames["msgpack"].append(bytes.fromhex(v["msgpack_hex"]))
    # Every message in one batched frame, as a server coalesces them.
    smsg["json"].add("batch of every message", b"\n".join(frames["json"]))
    smsg["msgpack"].add("batch of every message", b"".join(frames["msgpack"]))


# --- configuration ------------------------------------------------------------


def config_seeds():
    c = Corpus("fuzz_config")
    # The example configuration without its comments (it documents every
    # key, which makes it too long for a seed).
    with open(os.path.join(ROOT, "conf", "herald.conf")) as f:
        c.add("conf herald.conf", "".join(
            l for l in f if l.strip() and not l.lstrip().startswith("#")))
    c.add("minimal", 'listen = "127.0.0.1:8080";\nworkers = 2;\n')
    c.add("namespaces", """\
namespace_defaults = { history_size = 10; history_ttl = 300; };
namespaces = (
  { name = "chat"; presence = true; join_leave = true; max_subscribers = 100; },
  { name = "orders"; durable = true; ack = "durable"; retention_age = 86400; }
);
mongodb = "mongodb://127.0.0.1:27017/?w=majority";
""")
    c.add("redis list and ipv6", """\
listen = "[::1]:9000";
redis = ["redis://:secret@10.0.0.1:6380/2", "redis://redis-b"];
redis_prefix = "herald:a";
log_level = "debug";
token_secret = "s3cret";
tls_cert = "/etc/herald/cert.pem";
tls_key = "/etc/herald/key.pem";
""")
    c.add("errors", """\
workers = "two";
max_message_size = 1;
listen = "host";
namespaces = ( { presence = 1; }, { name = "chat"; name2 = 3; } );
history_size = 5;
pong_timout = 10;
""")
    # libconfig opens an include relative to the main file's directory
    # (the harness's scratch directory): missing here, so it is an error.
    c.add("include", 'workers = 2;\n@include "herald-other.conf"\nlog_level = "warn";\n')
    c.add("include text in comments and strings", """\
/* @include "a" */
# @include "b"
token_secret = "x
@include \\"c\\"
";
""")
    c.add("overrides and environment", """\
listen=0.0.0.0:8081
log-level=warn
redis=redis://a:1,redis://b:2/3
max_connections=99999999999999999999
HERALD_PING_INTERVAL=30
HERALD_NAMESPACE_DEFAULTS__HISTORY_SIZE=100
HERALD_NAMESPACES__chat__PRESENCE=true
HERALD_NAMESPACES__a__b__ACK=durable
""")


# --- tokens -----------------------------------------------------------------


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def auth_seeds():
    c = Corpus("fuzz_auth")
    secret = b"fuzz-secret"   # fuzz_auth.c's

    def signed(header, claims):
        body = b64url(header.encode()) + b"." + b64url(claims.encode())
        sig = hmac.new(secret, body, hashlib.sha256).digest()
        return body + b"." + b64url(sig)

    hs = '{"alg":"HS256","typ":"JWT"}'
    # Mode 0: whole tokens.
    c.add("token valid", b"\x00" + signed(hs, '{"sub":"alice","exp":1800000000}'))
    c.add("token expired", b"\x00" + signed(hs, '{"sub":"bob","exp":1600000000}'))
    c.add("token bad signature", b"\x00" + signed(hs, '{"sub":"eve"}')[:-2] + b"xx")
    c.add("token alg none", b"\x00" + b64url(b'{"alg":"none"}') + b"."
          + b64url(b'{"sub":"mallory"}') + b".")
    # Mode 1: base64url parts, signed by the harness.
    c.add("parts valid", b"\x01" + b64url(hs.encode()) + b"."
          + b64url(b'{"sub":"alice"}'))
    c.add("parts padded", b"\x01" + base64.urlsafe_b64encode(hs.encode()) + b"."
          + base64.urlsafe_b64encode(b'{"sub":"al"}'))
    # Mode 2: JSON header, NUL, JSON claims, encoded and signed by the harness.
    for name, claims in (("sub and exp", '{"sub":"alice","exp":1800000000}'),
                         ("no claims", "{}"),
                         ("exp real", '{"exp":1.8e9}'),
                         ("sub number", '{"sub":42}'),
                         ("sub unicode", '{"sub":"\\u00e9l\\u00e8ve"}'),
                         ("long sub", '{"sub":"%s"}' % ("x" * 300)),
                         ("claims array", "[1,2]")):
        c.add("json " + name, b"\x02" + hs.encode() + b"\x00" + claims.encode())
    c.add("json alg HS512", b'\x02{"alg":"HS512"}\x00{"sub":"a"}')
    c.add("json duplicate alg", b'\x02{"alg":"HS256","alg":"none"}\x00{}')


# --- spill files -------------------------------------------------------------


def bson(fields):
    """A BSON document of (key, type, value) with the types the store writes."""
    out = b""
    for key, typ, val in fields:
        k = key.encode() + b"\x00"
        if typ == "str":
            s = val.encode() + b"\x00"
            out += b"\x02" + k + struct.pack("<i", len(s)) + s
        elif typ == "i64":
            out += b"\x12" + k + struct.pack("<q", val)
        elif typ == "date":
            out += b"\x09" + k + struct.pack("<q", val)
        elif typ == "bin":
            out += b"\x05" + k + struct.pack("<i", len(val)) + b"\x00" + val
        elif typ == "bool":
            out += b"\x08" + k + (b"\x01" if val else b"\x00")
    return struct.pack("<i", len(out) + 5) + out + b"\x00"


def store_doc(chan, epoch, offset, time_ms, data=b'{"a":1}'):
    return bson([("channel", "str", chan), ("epoch", "str", epoch),
                 ("offset", "i64", offset), ("time", "date", time_ms),
                 ("json", "str", data.decode()),
                 ("mp", "bin", b"\x81\xa1a\x01"), ("binary", "bool", False),
                 ("client", "str", "c0ffee0123456789"), ("user", "str", "alice")])


def spill_record(doc):
    return struct.pack("<II", len(doc), zlib.crc32(doc)) + doc


def spill_seeds():
    c = Corpus("fuzz_spill")
    e1, e2 = "0123456789abcdef", "fedcba9876543210"
    docs = [store_doc("chat:x", e1, 1, 1700000000000),
            store_doc("chat:x", e1, 2, 1700000000001),
            store_doc("chat:y", e2, 7, 1700000000002),
            store_doc("chat:x", e2, 1, 1700000000003)]
    raw = b"".join(spill_record(d) for d in docs)
    # Mode 0 (bit 0 clear): the file as it is.
    c.add("file four records", b"\x00" + raw)
    c.add("file torn tail", b"\x04" + raw[:-7])
    c.add("file bad checksum", b"\x08" + raw[:20] + b"\xff" + raw[21:])
    c.add("file not ours", b"\x00" + spill_record(bson([("x", "i64", 1)])))
    # Mode 1 (bit 0 set, bit 1 set: BSON lengths fixed): pieces the
    # harness frames with headers and checksums.
    pieces = b"".join(struct.pack("<H", len(d)) + d for d in docs)
    c.add("pieces four records", b"\x03" + pieces)
    c.add("pieces small batches", b"\x07" + pieces)
    c.add("pieces odd documents", b"\x01" + struct.pack("<H", 5) + b"\x05\x00\x00\x00\x00"
          + struct.pack("<H", 3) + b"abc")


# --- Redis records ------------------------------------------------------------


def record_seeds():
    c = Corpus("fuzz_record")
    epoch = b"0123456789abcdef"

    def rec(offset, body):
        return str(offset).encode() + b":" + epoch + b":" + mp(body)

    c.add("publication", rec(42, [1700000000123, False, Bin(b'{"a":1}'),
                                   Bin(b"\x81\xa1a\x01"), "c0ffee0123456789", "alice"]))
    c.add("anonymous", rec(1, [0, False, Bin(b"null"), Bin(b"\xc0"), "", ""]))
    c.add("binary", rec(18446744073709551615,
                        [-1, True, Bin(b'"AAE="'), Bin(b"\xc4\x02\x00\x01"), "c", ""]))
    c.add("offset zero", rec(0, [0, False, Bin(b"1"), Bin(b"\x01"), "", ""]))
    c.add("offset 20 digits", b"00000000000000000001:" + epoch + b":"
          + mp([5, False, Bin(b"1"), Bin(b"\x01"), "", ""]))
    c.add("short array", rec(3, [0, False, Bin(b"1")]))
    c.add("join", b"J:" + epoch + b":alice")
    c.add("leave", b"L:" + epoch + b":")


def main():
    protocol_seeds()
    config_seeds()
    auth_seeds()
    spill_seeds()
    record_seeds()


if __name__ == "__main__":
    main()
