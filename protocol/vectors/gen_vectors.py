#!/usr/bin/env python3
"""Generates the protocol test vectors (decode.json, encode.json, data.json).

The vectors are the shared contract between the C codec and other
implementations (the JavaScript SDK). They are written by hand here, with a
tiny independent MessagePack packer below, so the expected bytes do not come
from the C code under test. Run `python3 gen_vectors.py` in this folder after
editing; commit the generated JSON files with this script. No dependencies.
"""
import base64
import json
import os
import struct

# --- A minimal MessagePack packer (smallest encoding, like msgpack-c). ------


class F32(float):
    """A float packed as float32."""


class Raw(bytes):
    """Bytes inserted verbatim (non-minimal or invalid encodings)."""


class Ext:
    def __init__(self, typ, data):
        self.typ, self.data = typ, data


def pack(v):
    if isinstance(v, Raw):
        return bytes(v)
    if v is None:
        return b"\xc0"
    if v is False:
        return b"\xc2"
    if v is True:
        return b"\xc3"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack(">b", v)
        if v >= 0:
            for tag, fmt, lim in ((0xcc, ">B", 1 << 8), (0xcd, ">H", 1 << 16),
                                  (0xce, ">I", 1 << 32), (0xcf, ">Q", 1 << 64)):
                if v < lim:
                    return bytes([tag]) + struct.pack(fmt, v)
            raise ValueError(v)
        for tag, fmt, lim in ((0xd0, ">b", 1 << 7), (0xd1, ">h", 1 << 15),
                              (0xd2, ">i", 1 << 31), (0xd3, ">q", 1 << 63)):
            if v >= -lim:
                return bytes([tag]) + struct.pack(fmt, v)
        raise ValueError(v)
    if isinstance(v, F32):
        return b"\xca" + struct.pack(">f", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        return pack_str(v.encode("utf-8"))
    if isinstance(v, (bytes, bytearray)):
        n = len(v)
        if n < 256:
            return b"\xc4" + bytes([n]) + v
        if n < 65536:
            return b"\xc5" + struct.pack(">H", n) + v
        return b"\xc6" + struct.pack(">I", n) + v
    if isinstance(v, Ext):
        return b"\xc7" + bytes([len(v.data)]) + struct.pack(">b", v.typ) + v.data
    if isinstance(v, (list, tuple)):
        return pack_hdr(len(v), 0x90, 0xdc) + b"".join(pack(x) for x in v)
    if isinstance(v, (dict, Pairs)):
        items = v.items()
        return pack_hdr(len(items), 0x80, 0xde) + b"".join(
            pack(k) + pack(x) for k, x in items)
    raise TypeError(type(v))


def pack_str(b):
    n = len(b)
    if n < 32:
        return bytes([0xa0 | n]) + b
    if n < 256:
        return b"\xd9" + bytes([n]) + b
    if n < 65536:
        return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b


def pack_hdr(n, fix, tag16):
    if n < 16:
        return bytes([fix | n])
    if n < 65536:
        return bytes([tag16]) + struct.pack(">H", n)
    return bytes([tag16 + 1]) + struct.pack(">I", n)


class Pairs:
    """A map given as a list of pairs: allows duplicate and non-str keys."""

    def __init__(self, *pairs):
        self.pairs = pairs

    def items(self):
        return self.pairs


def hx(v):
    return pack(v).hex()


def j(v):
    """Compact JSON as the codec writes it."""
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def u64(n):
    """Integers beyond 2^53 are written as decimal strings in the vectors."""
    return str(n) if n > 2**53 else n


def nest(depth, leaf=1):
    v = leaf
    for _ in range(depth):
        v = [v]
    return v


def nest_json(depth):
    return "[" * depth + "1" + "]" * depth


U32 = 2**32 - 1
U64 = 2**64 - 1
I64MIN = -2**63
I64MAX = 2**63 - 1

# --- decode.json ------------------------------------------------------------

decode = []


def dj(name, text, *expect):
    """text is a str, or bytes when the input is not valid UTF-8."""
    v = {"name": name, "enc": "json", "expect": list(expect)}
    if isinstance(text, bytes):
        v["input_hex"] = text.hex()
    else:
        v["input"] = text
    decode.append(v)


def dm(name, objs, *expect, note=None):
    data = b"".join(pack(o) for o in objs) if isinstance(objs, list) else pack(objs)
    v = {"name": name, "enc": "msgpack", "input_hex": data.hex(),
         "expect": list(expect)}
    if note:
        v["note"] = note
    decode.append(v)


def err(code, id=0):
    return {"error": code, "id": id}


def pubexp(id, channel, data_json, data_mp, binary=False):
    e = {"id": id, "op": "publish", "channel": channel,
         "data_json": data_json, "data_msgpack_hex": data_mp}
    if binary:
        e["binary"] = True
    return e


# JSON: every op and field.
dj("connect with every field",
   '{"id":1,"op":"connect","token":"aaa.bbb.ccc","name":"js","version":"1.2.3"}',
   {"id": 1, "op": "connect", "token": "aaa.bbb.ccc", "name": "js",
    "version": "1.2.3"})
dj("connect without fields", '{"id":2,"op":"connect"}', {"id": 2, "op": "connect"})
dj("optional fields set to null are absent",
   '{"id":3,"op":"connect","token":null,"name":null,"version":null}',
   {"id": 3, "op": "connect"})
dj("subscribe", '{"id":4,"op":"subscribe","channel":"news"}',
   {"id": 4, "op": "subscribe", "channel": "news"})
dj("subscribe with token and since",
   '{"id":5,"op":"subscribe","channel":"chat:room-1","token":"t0k","since":{"offset":42,"epoch":"Xy7"}}',
   {"id": 5, "op": "subscribe", "channel": "chat:room-1", "token": "t0k",
    "since": {"offset": 42, "epoch": "Xy7"}})
dj("subscribe since offset 0 and empty epoch, keys in any order",
   '{"since":{"epoch":"","offset":0},"channel":"a","op":"subscribe","id":6}',
   {"id": 6, "op": "subscribe", "channel": "a", "since": {"offset": 0, "epoch": ""}})
dj("subscribe since offset at int64 max",
   '{"id":7,"op":"subscribe","channel":"a","since":{"offset":9223372036854775807,"epoch":"e"}}',
   {"id": 7, "op": "subscribe", "channel": "a",
    "since": {"offset": u64(I64MAX), "epoch": "e"}})
dj("unsubscribe", '{"id":8,"op":"unsubscribe","channel":"news"}',
   {"id": 8, "op": "unsubscribe", "channel": "news"})
dj("presence", '{"id":9,"op":"presence","channel":"room@x/y=z.w_v-u"}',
   {"id": 9, "op": "presence", "channel": "room@x/y=z.w_v-u"})
dj("ping", '{"id":10,"op":"ping"}', {"id": 10, "op": "ping"})
# v1 additions: token refresh (protocol/README.md, "Token lifetimes").
dj("refresh", '{"id":60,"op":"refresh","token":"h.p.s"}',
   {"id": 60, "op": "refresh", "token": "h.p.s"})
dj("refresh without token", '{"id":61,"op":"refresh"}', err(107, 61))
dj("refresh with a null token", '{"id":62,"op":"refresh","token":null}', err(107, 62))
dj("refresh with a non-string token", '{"id":63,"op":"refresh","token":5}', err(107, 63))
dj("sub_refresh", '{"id":64,"op":"sub_refresh","channel":"orders:acme","token":"h.p.s"}',
   {"id": 64, "op": "sub_refresh", "channel": "orders:acme", "token": "h.p.s"})
dj("sub_refresh without channel", '{"id":65,"op":"sub_refresh","token":"h.p.s"}', err(107, 65))
dj("sub_refresh without token", '{"id":66,"op":"sub_refresh","channel":"a"}', err(107, 66))
dj("sub_refresh with a bad channel", '{"id":67,"op":"sub_refresh","channel":"a b","token":"t"}',
   err(102, 67))
dj("a personal channel ('#' is a channel character)",
   '{"id":68,"op":"subscribe","channel":"notes:inbox#42"}',
   {"id": 68, "op": "subscribe", "channel": "notes:inbox#42"})
dj("history with every field",
   '{"id":11,"op":"history","channel":"news","since":{"offset":7,"epoch":"e1"},"limit":50,"reverse":true}',
   {"id": 11, "op": "history", "channel": "news",
    "since": {"offset": 7, "epoch": "e1"}, "limit": 50, "reverse": True})
dj("history limit 0 and reverse false",
   '{"id":12,"op":"history","channel":"news","limit":0,"reverse":false}',
   {"id": 12, "op": "history", "channel": "news", "limit": 0})
dj("history limit at 2^32-1",
   '{"id":13,"op":"history","channel":"news","limit":4294967295}',
   {"id": 13, "op": "history", "channel": "news", "limit": U32})
dj("id at 2^32-1", '{"id":4294967295,"op":"ping"}', {"id": U32, "op": "ping"})
dj("unknown keys are ignored",
   '{"id":14,"op":"ping","x":{"y":[1,2,{"z":null}]},"future":true}',
   {"id": 14, "op": "ping"})
dj("keys an op does not use are ignored whatever their type",
   '{"id":15,"op":"ping","channel":5,"data":1,"since":"x","limit":-1}',
   {"id": 15, "op": "ping"})
dj("whitespace around tokens",
   ' { "id" : 16 , "op" : "unsubscribe" , "channel" : "a" } ',
   {"id": 16, "op": "unsubscribe", "channel": "a"})

# JSON publish: data is kept byte-exact.
dj("publish object data keeps the publisher's bytes",
   '{"id":20,"op":"publish","channel":"chat:1","data": {"text" : "hi",  "n":[1, 2.5,true,null]} }',
   pubexp(20, "chat:1", '{"text" : "hi",  "n":[1, 2.5,true,null]}',
          hx({"text": "hi", "n": [1, 2.5, True, None]})))
dj("publish string data with escapes stays escaped",
   '{"id":21,"op":"publish","channel":"a","data":"h\\u00e9\\"llo\\n\\/"}',
   pubexp(21, "a", '"h\\u00e9\\"llo\\n\\/"', hx('hé"llo\n/')))
dj("publish non-ASCII data",
   '{"id":22,"op":"publish","channel":"a","data":{"emoji":"😀","jp":"日本"}}',
   pubexp(22, "a", '{"emoji":"😀","jp":"日本"}', hx({"emoji": "😀", "jp": "日本"})))
dj("publish null data", '{"id":23,"op":"publish","channel":"a","data":null}',
   pubexp(23, "a", "null", hx(None)))
dj("publish scalar data",
   '{"id":24,"op":"publish","channel":"a","data":-17}',
   pubexp(24, "a", "-17", hx(-17)))
dj("publish int64 limits",
   '{"id":25,"op":"publish","channel":"a","data":[9223372036854775807,-9223372036854775808,0,255,256,65536,-33,-129]}',
   pubexp(25, "a", "[9223372036854775807,-9223372036854775808,0,255,256,65536,-33,-129]",
          hx([I64MAX, I64MIN, 0, 255, 256, 65536, -33, -129])))
dj("publish reals are float64",
   '{"id":26,"op":"publish","channel":"a","data":[1.0,1E2,-0.5,1e-7]}',
   pubexp(26, "a", "[1.0,1E2,-0.5,1e-7]", hx([1.0, 100.0, -0.5, 1e-7])))
dj("publish data key spelled with an escape",
   '{"id":27,"op":"publish","channel":"a","d\\u0061ta":{"k":"v"}}',
   pubexp(27, "a", '{"k":"v"}', hx({"k": "v"})))
dj("publish data containing a NUL character",
   '{"id":28,"op":"publish","channel":"a","data":"a\\u0000b"}',
   pubexp(28, "a", '"a\\u0000b"', hx("a\x00b")))
dj("publish data: CR inside the line is dropped from the data text",
   '{"id":29,"op":"publish","channel":"a","data":{"a":\r1}}',
   pubexp(29, "a", '{"a":1}', hx({"a": 1})))
dj("publish data before other keys",
   '{"data":[true,false],"id":30,"channel":"a","op":"publish"}',
   pubexp(30, "a", "[true,false]", hx([True, False])))
dj("publish data nested 24 levels (the maximum)",
   '{"id":31,"op":"publish","channel":"a","data":' + nest_json(24) + '}',
   pubexp(31, "a", nest_json(24), hx(nest(24))))
dj("publish data nested 25 levels", '{"id":32,"op":"publish","channel":"a","data":' + nest_json(25) + '}',
   err(107, 32))
dj("publish empty containers",
   '{"id":33,"op":"publish","channel":"a","data":{"a":[],"b":{},"c":""}}',
   pubexp(33, "a", '{"a":[],"b":{},"c":""}', hx({"a": [], "b": {}, "c": ""})))

# JSON batching.
dj("batch of three", '{"id":1,"op":"ping"}\n{"id":2,"op":"ping"}\n{"id":3,"op":"ping"}',
   {"id": 1, "op": "ping"}, {"id": 2, "op": "ping"}, {"id": 3, "op": "ping"})
dj("trailing newline is tolerated", '{"id":1,"op":"ping"}\n', {"id": 1, "op": "ping"})
dj("CRLF separators are tolerated", '{"id":1,"op":"ping"}\r\n{"id":2,"op":"ping"}\r\n',
   {"id": 1, "op": "ping"}, {"id": 2, "op": "ping"})
dj("an empty line is a bad command", '{"id":1,"op":"ping"}\n\n{"id":2,"op":"ping"}',
   {"id": 1, "op": "ping"}, err(107), {"id": 2, "op": "ping"})
dj("a lone newline is one empty command", "\n", err(107))
dj("an empty frame has no commands", "")
dj("a bad line does not stop the batch",
   '{"id":1,"op":"ping"}\nnot json\n{"id":3,"op":"nope"}\n{"id":4,"op":"ping"}',
   {"id": 1, "op": "ping"}, err(107), err(104, 3), {"id": 4, "op": "ping"})

# JSON errors.
dj("not JSON", "hello", err(107))
dj("top-level array", '[{"id":1,"op":"ping"}]', err(107))
dj("top-level scalar", "5", err(107))
dj("invalid UTF-8 (the id is still read)", b'{"id":1,"op":"ping","x":"\xff"}', err(107, 1))
dj("a raw NUL byte between tokens is invalid JSON (the id is still read)",
   b'{"id":9,"op":"publish","channel":"a","data":[1\x00,2]}', err(107, 9))
dj("a raw NUL byte after the object", b'{"id":1,"op":"ping"}\x00', err(107, 1))
dj("broken line that starts with an object, no id", '{"x":[1,2}', err(107))
dj("missing id", '{"op":"ping"}', err(107))
dj("id 0", '{"id":0,"op":"ping"}', err(107))
dj("negative id", '{"id":-1,"op":"ping"}', err(107))
dj("id above 2^32-1", '{"id":4294967296,"op":"ping"}', err(107))
dj("id as a real", '{"id":1.0,"op":"ping"}', err(107))
dj("id as a string", '{"id":"1","op":"ping"}', err(107))
dj("id null", '{"id":null,"op":"ping"}', err(107))
dj("id too big for JSON integers", '{"id":99999999999999999999,"op":"ping"}', err(107))
dj("missing op", '{"id":40}', err(107, 40))
dj("op not a string", '{"id":41,"op":5}', err(107, 41))
dj("unknown op", '{"id":42,"op":"bogus"}', err(104, 42))
dj("ops are case-sensitive", '{"id":43,"op":"PING"}', err(104, 43))
dj("missing channel", '{"id":44,"op":"subscribe"}', err(107, 44))
dj("channel null", '{"id":45,"op":"unsubscribe","channel":null}', err(107, 45))
dj("channel not a string", '{"id":46,"op":"presence","channel":5}', err(107, 46))
dj("empty channel", '{"id":47,"op":"subscribe","channel":""}', err(102, 47))
dj("channel with a space", '{"id":48,"op":"subscribe","channel":"a b"}', err(102, 48))
dj("channel with non-ASCII", '{"id":49,"op":"history","channel":"caf\u00e9"}', err(102, 49))
dj("channel of 255 bytes", '{"id":50,"op":"subscribe","channel":"' + "c" * 255 + '"}',
   {"id": 50, "op": "subscribe", "channel": "c" * 255})
dj("channel of 256 bytes", '{"id":51,"op":"subscribe","channel":"' + "c" * 256 + '"}',
   err(102, 51))
dj("publish without data", '{"id":52,"op":"publish","channel":"a"}', err(107, 52))
dj("publish to a bad channel", '{"id":53,"op":"publish","channel":"a*","data":1}', err(102, 53))
dj("publish with an idempotency key",
   '{"id":80,"op":"publish","channel":"a","data":1,"idempotency_key":"' + "".join(chr(b) for b in range(0x21, 0x61) if chr(b) not in '"\\') + '"}',
   dict(pubexp(80, "a", "1", "01"),
        idempotency_key="".join(chr(b) for b in range(0x21, 0x61) if chr(b) not in '"\\')))
dj("publish idempotency key of 64 bytes",
   '{"id":81,"op":"publish","channel":"a","data":1,"idempotency_key":"' + "k" * 64 + '"}',
   dict(pubexp(81, "a", "1", "01"), idempotency_key="k" * 64))
dj("publish idempotency key of 65 bytes",
   '{"id":82,"op":"publish","channel":"a","data":1,"idempotency_key":"' + "k" * 65 + '"}', err(107, 82))
dj("publish empty idempotency key",
   '{"id":83,"op":"publish","channel":"a","data":1,"idempotency_key":""}', err(107, 83))
dj("publish idempotency key with a space",
   '{"id":84,"op":"publish","channel":"a","data":1,"idempotency_key":"a b"}', err(107, 84))
dj("publish idempotency key with non-ASCII",
   '{"id":85,"op":"publish","channel":"a","data":1,"idempotency_key":"caf\u00e9"}', err(107, 85))
dj("publish idempotency key not a string",
   '{"id":86,"op":"publish","channel":"a","data":1,"idempotency_key":7}', err(107, 86))
dj("idempotency key on another op is ignored",
   '{"id":87,"op":"unsubscribe","channel":"a","idempotency_key":7}',
   {"id": 87, "op": "unsubscribe", "channel": "a"})
dj("since not a map", '{"id":54,"op":"subscribe","channel":"a","since":5}', err(107, 54))
dj("since without offset", '{"id":55,"op":"subscribe","channel":"a","since":{"epoch":"e"}}',
   err(107, 55))
dj("since without epoch", '{"id":56,"op":"history","channel":"a","since":{"offset":1}}',
   err(107, 56))
dj("since offset negative", '{"id":57,"op":"subscribe","channel":"a","since":{"offset":-1,"epoch":"e"}}',
   err(107, 57))
dj("since offset a string", '{"id":58,"op":"subscribe","channel":"a","since":{"offset":"1","epoch":"e"}}',
   err(107, 58))
dj("since epoch not a string", '{"id":59,"op":"subscribe","channel":"a","since":{"offset":1,"epoch":1}}',
   err(107, 59))
dj("since epoch of 64 bytes", '{"id":60,"op":"subscribe","channel":"a","since":{"offset":1,"epoch":"' + "e" * 64 + '"}}',
   {"id": 60, "op": "subscribe", "channel": "a", "since": {"offset": 1, "epoch": "e" * 64}})
dj("since epoch of 65 bytes", '{"id":61,"op":"subscribe","channel":"a","since":{"offset":1,"epoch":"' + "e" * 65 + '"}}',
   err(107, 61))
dj("limit negative", '{"id":62,"op":"history","channel":"a","limit":-1}', err(107, 62))
dj("limit above 2^32-1", '{"id":63,"op":"history","channel":"a","limit":4294967296}', err(107, 63))
dj("limit a real", '{"id":64,"op":"history","channel":"a","limit":1.5}', err(107, 64))
dj("reverse not a bool", '{"id":65,"op":"history","channel":"a","reverse":1}', err(107, 65))
dj("token of 8192 bytes", '{"id":66,"op":"connect","token":"' + "t" * 8192 + '"}',
   {"id": 66, "op": "connect", "token": "t" * 8192})
dj("token of 8193 bytes", '{"id":67,"op":"connect","token":"' + "t" * 8193 + '"}', err(107, 67))
dj("token not a string", '{"id":68,"op":"subscribe","channel":"a","token":5}', err(107, 68))
dj("token with a NUL", '{"id":69,"op":"connect","token":"a\\u0000b"}', err(107, 69))
dj("name of 256 bytes", '{"id":70,"op":"connect","name":"' + "n" * 256 + '"}',
   {"id": 70, "op": "connect", "name": "n" * 256})
dj("name of 257 bytes", '{"id":71,"op":"connect","name":"' + "n" * 257 + '"}', err(107, 71))
dj("version not a string", '{"id":72,"op":"connect","version":1}', err(107, 72))
dj("duplicate key: the error carries the first id",
   '{"id":73,"op":"ping","op":"ping"}', err(107, 73))
dj("broken JSON after the id: the error carries the id",
   '{"id":74,"op":"publish","channel":"a","data":{bad}}', err(107, 74))
dj("broken JSON before the id: no id", '{"op":bad,"id":75}', err(107))
dj("truncated line", '{"id":76,"op":"ping"', err(107, 76))

# msgpack.
dm("msgpack connect with every field",
   {"id": 1, "op": "connect", "token": "aaa.bbb.ccc", "name": "go", "version": "0.1"},
   {"id": 1, "op": "connect", "token": "aaa.bbb.ccc", "name": "go", "version": "0.1"})
dm("msgpack subscribe with since",
   {"id": 2, "op": "subscribe", "channel": "news", "since": {"offset": 300, "epoch": "ab"}},
   {"id": 2, "op": "subscribe", "channel": "news", "since": {"offset": 300, "epoch": "ab"}})
dm("msgpack since offset at 2^64-1",
   {"id": 3, "op": "history", "channel": "news", "since": {"offset": U64, "epoch": "ab"},
    "limit": 10, "reverse": True},
   {"id": 3, "op": "history", "channel": "news", "since": {"offset": u64(U64), "epoch": "ab"},
    "limit": 10, "reverse": True})
dm("msgpack unsubscribe, presence, ping batch",
   [{"id": 4, "op": "unsubscribe", "channel": "a"}, {"id": 5, "op": "presence", "channel": "b"},
    {"id": 6, "op": "ping"}],
   {"id": 4, "op": "unsubscribe", "channel": "a"}, {"id": 5, "op": "presence", "channel": "b"},
   {"id": 6, "op": "ping"})
dm("msgpack id in a non-minimal encoding",
   Pairs(("id", Raw(b"\xcf" + (7).to_bytes(8, "big"))), ("op", "ping")),
   {"id": 7, "op": "ping"})
dm("msgpack id at 2^32-1", {"id": U32, "op": "ping"}, {"id": U32, "op": "ping"})
dm("msgpack nil optional fields are absent",
   {"id": 8, "op": "connect", "token": None, "name": None}, {"id": 8, "op": "connect"})
dm("msgpack publish map data",
   {"id": 10, "op": "publish", "channel": "a", "data": {"t": "hi", "n": [1, -2, 2.5, None, True]}},
   pubexp(10, "a", '{"t":"hi","n":[1,-2,2.5,null,true]}',
          hx({"t": "hi", "n": [1, -2, 2.5, None, True]})))
dm("msgpack publish bin data: base64 plus binary flag",
   {"id": 11, "op": "publish", "channel": "a", "data": b"\x00\x01\xfe\xff"},
   pubexp(11, "a", '"AAH+/w=="', hx(b"\x00\x01\xfe\xff"), binary=True))
dm("msgpack publish empty bin",
   {"id": 12, "op": "publish", "channel": "a", "data": b""},
   pubexp(12, "a", '""', hx(b""), binary=True))
dm("msgpack publish nested bin: base64 string, no binary flag",
   {"id": 13, "op": "publish", "channel": "a", "data": {"img": b"abcd"}},
   pubexp(13, "a", '{"img":"YWJjZA=="}', hx({"img": b"abcd"})))
dm("msgpack publish integer limits",
   {"id": 14, "op": "publish", "channel": "a", "data": [U64, I64MIN, 0, -1]},
   pubexp(14, "a", "[18446744073709551615,-9223372036854775808,0,-1]",
          hx([U64, I64MIN, 0, -1])))
dm("msgpack publish floats: shortest round-trip text",
   {"id": 15, "op": "publish", "channel": "a",
    "data": [0.1, 1.0, -0.0, 1e300, 0.30000000000000004, F32(0.1), F32(1.5), 123456.789]},
   pubexp(15, "a", "[0.1,1.0,-0.0,1e+300,0.30000000000000004,0.1,1.5,123456.789]",
          hx([0.1, 1.0, -0.0, 1e300, 0.30000000000000004, F32(0.1), F32(1.5), 123456.789])))
dm("msgpack publish string escaping",
   {"id": 16, "op": "publish", "channel": "a", "data": "q\"b\\n\n\t\x01\x1f\x7f/é"},
   pubexp(16, "a", '"q\\"b\\\\n\\n\\t\\u0001\\u001f\x7f/é"', hx("q\"b\\n\n\t\x01\x1f\x7f/é")))
dm("msgpack publish data re-packed minimally",
   Pairs(("id", 17), ("op", "publish"), ("channel", "a"), ("data", Raw(b"\xd9\x02hi"))),
   pubexp(17, "a", '"hi"', hx("hi")))
dm("msgpack publish nil data",
   {"id": 18, "op": "publish", "channel": "a", "data": None}, pubexp(18, "a", "null", "c0"))
dm("msgpack publish data nested 24 levels",
   {"id": 19, "op": "publish", "channel": "a", "data": nest(24)},
   pubexp(19, "a", nest_json(24), hx(nest(24))))
dm("msgpack publish data nested 25 levels",
   {"id": 20, "op": "publish", "channel": "a", "data": nest(25)}, err(107, 20))
dm("msgpack nesting beyond what msgpack-c can parse stops the frame",
   [{"id": 21, "op": "publish", "channel": "a", "data": nest(40)}, {"id": 22, "op": "ping"}],
   err(107))
dm("msgpack an empty frame has no commands", [])
dm("msgpack truncated second command",
   Raw(pack({"id": 1, "op": "ping"}) + pack({"id": 2, "op": "ping"})[:-2]),
   {"id": 1, "op": "ping"}, err(107))
dm("msgpack reserved byte 0xc1", Raw(b"\xc1"), err(107))
dm("msgpack container count larger than the frame",
   Raw(b"\xdd\xff\xff\xff\xff\x01"), err(107),
   note="array32 of 4294967295 elements in 6 bytes")
dm("msgpack map count larger than the frame",
   Raw(b"\xdf\x7f\xff\xff\xff"), err(107))
dm("msgpack top-level array is a bad command but framing continues",
   [[1, 2], {"id": 23, "op": "ping"}], err(107), {"id": 23, "op": "ping"})
dm("msgpack top-level scalar", [5, {"id": 24, "op": "ping"}], err(107), {"id": 24, "op": "ping"})
dm("msgpack missing id", {"op": "ping"}, err(107))
dm("msgpack id 0", {"id": 0, "op": "ping"}, err(107))
dm("msgpack negative id", {"id": -5, "op": "ping"}, err(107))
dm("msgpack id above 2^32-1", {"id": 2**32, "op": "ping"}, err(107))
dm("msgpack id float", {"id": 1.0, "op": "ping"}, err(107))
dm("msgpack id str", {"id": "1", "op": "ping"}, err(107))
dm("msgpack non-string key", Pairs(("id", 30), ("op", "ping"), (1, 2)), err(107, 30))
dm("msgpack bin key", Pairs(("id", 31), ("op", "ping"), (b"k", 2)), err(107, 31))
dm("msgpack duplicate key", Pairs(("id", 32), ("op", "ping"), ("op", "ping")), err(107, 32))
dm("msgpack op as bin", {"id": 33, "op": b"ping"}, err(107, 33))
dm("msgpack unknown op", {"id": 34, "op": "nope"}, err(104, 34))
dm("msgpack channel as bin", {"id": 35, "op": "subscribe", "channel": b"a"}, err(107, 35))
dm("msgpack bad channel", {"id": 36, "op": "subscribe", "channel": "a\x00"}, err(102, 36))
dm("msgpack token with invalid UTF-8",
   Pairs(("id", 37), ("op", "connect"), ("token", Raw(b"\xa2\xc3\x28"))), err(107, 37))
dm("msgpack name with a NUL", {"id": 38, "op": "connect", "name": "a\x00"}, err(107, 38))
dm("msgpack since with a non-string key",
   {"id": 39, "op": "subscribe", "channel": "a",
    "since": Pairs(("offset", 1), ("epoch", "e"), (5, 5))}, err(107, 39))
dm("msgpack since epoch as bin",
   {"id": 40, "op": "subscribe", "channel": "a", "since": {"offset": 1, "epoch": b"e"}}, err(107, 40))
dm("msgpack limit as float", {"id": 41, "op": "history", "channel": "a", "limit": 5.0}, err(107, 41))
dm("msgpack reverse as int", {"id": 42, "op": "history", "channel": "a", "reverse": 1}, err(107, 42))
dm("msgpack publish without data", {"id": 43, "op": "publish", "channel": "a"}, err(107, 43))
dm("msgpack data with ext", {"id": 44, "op": "publish", "channel": "a", "data": Ext(1, b"xy")},
   err(107, 44))
dm("msgpack data map with an int key",
   {"id": 45, "op": "publish", "channel": "a", "data": Pairs((1, "x"))}, err(107, 45))
dm("msgpack data map with a duplicate key",
   {"id": 46, "op": "publish", "channel": "a", "data": Pairs(("k", 1), ("k", 2))}, err(107, 46))
dm("msgpack data with invalid UTF-8",
   {"id": 47, "op": "publish", "channel": "a", "data": [Raw(b"\xa2\xed\xa0")]}, err(107, 47))
dm("msgpack data NaN", {"id": 48, "op": "publish", "channel": "a", "data": float("nan")},
   err(107, 48))
dm("msgpack data Infinity", {"id": 49, "op": "publish", "channel": "a", "data": [F32(float("-inf"))]},
   err(107, 49))
# publish's idempotency_key (a v1 addition): 1..64 bytes 0x21..0x7e.
dm("msgpack publish with an idempotency key",
   {"id": 60, "op": "publish", "channel": "a", "data": 1, "idempotency_key": "order-7"},
   dict(pubexp(60, "a", "1", "01"), idempotency_key="order-7"))
dm("msgpack idempotency key as bin",
   {"id": 61, "op": "publish", "channel": "a", "data": 1, "idempotency_key": b"k"}, err(107, 61))
dm("msgpack idempotency key nil is no key",
   {"id": 62, "op": "publish", "channel": "a", "data": 1, "idempotency_key": None},
   pubexp(62, "a", "1", "01"))
dm("msgpack unknown keys are ignored",
   {"id": 50, "op": "ping", "x": Ext(3, b"z"), "y": b"bin"}, {"id": 50, "op": "ping"})
dm("msgpack token of 8193 bytes", {"id": 51, "op": "connect", "token": "t" * 8193}, err(107, 51))

# --- data.json ----------------------------------------------------------------

data = []


def dd_json(name, text, out_json, value=None, error=None):
    v = {"name": name, "from": "json", "input": text}
    if error:
        v["error"] = error
    else:
        v.update({"json": out_json, "msgpack_hex": hx(value), "binary": False})
    data.append(v)


def dd_mp(name, value, out_json=None, binary=False, error=None, out_value=None):
    v = {"name": name, "from": "msgpack", "input_hex": hx(value)}
    if error:
        v["error"] = error
    else:
        v.update({"json": out_json,
                  "msgpack_hex": hx(value if out_value is None else out_value),
                  "binary": binary})
    data.append(v)


dd_json("object keeps bytes", '{"a": [1, 2.0, "x"]}', '{"a": [1, 2.0, "x"]}',
        {"a": [1, 2.0, "x"]})
dd_json("surrounding whitespace is trimmed", ' \t\n 5 \r\n', "5", 5)
dd_json("line breaks inside are dropped", '{\n  "a": 1,\r\n  "b": [\n1]\n}',
        '{  "a": 1,  "b": [1]}', {"a": 1, "b": [1]})
dd_json("scalar string", '"x"', '"x"', "x")
dd_json("true", "true", "true", True)
dd_json("key order is kept", '{"z":1,"a":2,"m":3}', '{"z":1,"a":2,"m":3}',
        Pairs(("z", 1), ("a", 2), ("m", 3)))
dd_json("big object with 16-bit header", j({("k%02d" % i): i for i in range(20)}),
        j({("k%02d" % i): i for i in range(20)}), {("k%02d" % i): i for i in range(20)})
dd_json("long string uses str8", j("s" * 40), j("s" * 40), "s" * 40)
dd_json("invalid JSON", "{", None, error=107)
dd_json("empty input", "", None, error=107)
dd_json("two values", "1 2", None, error=107)
dd_json("duplicate keys", '{"a":1,"a":2}', None, error=107)
dd_json("integer beyond int64", "18446744073709551615", None, error=107)
dd_json("nested 25 levels", nest_json(25), None, error=107)
dd_json("deep nesting", "[" * 5000 + "]" * 5000, None, error=107)
dd_mp("map", {"a": [1, 2.5], "b": None}, '{"a":[1,2.5],"b":null}')
dd_mp("top-level bin", b"hello", '"aGVsbG8="', binary=True)
dd_mp("bin of every length mod 3", [b"a", b"ab", b"abc"], '["YQ==","YWI=","YWJj"]')
dd_mp("nested bin", {"b": b"\xff"}, '{"b":"/w=="}')
dd_mp("float32", F32(3.25), "3.25")
dd_mp("float32 of 0.1 is written as float32 text", F32(0.1), "0.1")
dd_mp("integral float keeps a fraction", 100.0, "100.0")
dd_mp("large float", 1e21, "1e+21")
dd_mp("small float", 5e-324, "4.94065645841247e-324")
dd_mp("uint64 max", U64, "18446744073709551615")
dd_mp("control characters are escaped", "\x00\x08\x0c\n\r\t\x1b", '"\\u0000\\b\\f\\n\\r\\t\\u001b"')
dd_mp("non-minimal encodings are normalised", Raw(b"\xcd\x00\x05"), "5", out_value=5)
dd_mp("ext", Ext(1, b"a"), error=107)
dd_mp("int key", Pairs((1, 2)), error=107)
dd_mp("duplicate key in a big map",
      Pairs(*([("k%02d" % i, i) for i in range(20)] + [("k07", 0)])), error=107)
dd_mp("NUL in a key", {"a\x00b": 1}, error=107)
dd_mp("NUL in a string value is fine", {"k": "a\x00b"}, '{"k":"a\\u0000b"}')
dd_mp("overlong UTF-8", Raw(b"\xa2\xc0\xaf"), error=107)
dd_mp("UTF-16 surrogate in UTF-8", Raw(b"\xa3\xed\xa0\x80"), error=107)
dd_mp("code point above U+10FFFF", Raw(b"\xa4\xf4\x90\x80\x80"), error=107)
dd_mp("NaN", float("nan"), error=107)
dd_mp("trailing bytes", Raw(b"\x01\x02"), error=107)
dd_mp("truncated", Raw(b"\x92\x01"), error=107)
dd_mp("empty input", Raw(b""), error=107)

# --- encode.json ----------------------------------------------------------------

encode = []


def enc(name, kind, args, json_value, mp_value, json_text=None):
    encode.append({"name": name, "kind": kind, "args": args,
                   "json": json_text if json_text is not None else j(json_value),
                   "msgpack_hex": hx(mp_value)})


def P(*pairs):
    """An ordered map for both the JSON text and the msgpack bytes."""
    return dict(pairs)


enc("error reply", "error", {"id": 5, "code": 107, "message": "missing channel"},
    P(("id", 5), ("error", P(("code", 107), ("message", "missing channel")))),
    P(("id", 5), ("error", P(("code", 107), ("message", "missing channel")))))
enc("error reply without id", "error", {"id": 0, "code": 107, "message": "invalid JSON"},
    P(("error", P(("code", 107), ("message", "invalid JSON")))),
    P(("error", P(("code", 107), ("message", "invalid JSON")))))
enc("error message escaping", "error", {"id": U32, "code": 100, "message": "a\"b\\c\nd\x01"},
    P(("id", U32), ("error", P(("code", 100), ("message", "a\"b\\c\nd\x01")))),
    P(("id", U32), ("error", P(("code", 100), ("message", "a\"b\\c\nd\x01")))))
enc("error with the default message", "error", {"id": 6, "code": 104, "message": None},
    P(("id", 6), ("error", P(("code", 104), ("message", "unknown op")))),
    P(("id", 6), ("error", P(("code", 104), ("message", "unknown op")))))
enc("empty ok", "ok_empty", {"id": 7}, P(("id", 7), ("ok", {})), P(("id", 7), ("ok", {})))
enc("connect ok", "ok_connect",
    {"id": 1, "client": "c-1f2e", "node": "node-a", "ping": 25, "expires": 1700000000},
    P(("id", 1), ("ok", P(("client", "c-1f2e"), ("node", "node-a"), ("ping", 25),
                          ("expires", 1700000000)))),
    P(("id", 1), ("ok", P(("client", "c-1f2e"), ("node", "node-a"), ("ping", 25),
                          ("expires", 1700000000)))))
enc("connect ok without expiry", "ok_connect",
    {"id": 1, "client": "c", "node": "n", "ping": 25, "expires": 0},
    P(("id", 1), ("ok", P(("client", "c"), ("node", "n"), ("ping", 25)))),
    P(("id", 1), ("ok", P(("client", "c"), ("node", "n"), ("ping", 25)))))
enc("subscribe ok without since", "ok_subscribe",
    {"id": 2, "epoch": "ep", "offset": 0, "recovered": None, "publications": []},
    P(("id", 2), ("ok", P(("epoch", "ep"), ("offset", 0)))),
    P(("id", 2), ("ok", P(("epoch", "ep"), ("offset", 0)))))

PUB1 = {"channel": "news", "offset": 41, "epoch": "ep", "data": {"json": '{"a":1}'}}
PUB2 = {"channel": "news", "offset": u64(U64), "epoch": "ep", "data": {"msgpack_hex": hx(b"\x01\x02")},
        "info": {"client": "c9", "user": "u9"}, "time": 1700000000123}
PUB1_J = P(("channel", "news"), ("offset", 41), ("epoch", "ep"), ("data", {"a": 1}))
PUB2_J = P(("channel", "news"), ("offset", U64), ("epoch", "ep"), ("data", "AQI="),
           ("binary", True), ("info", P(("client", "c9"), ("user", "u9"))),
           ("time", 1700000000123))
PUB1_M = PUB1_J
PUB2_M = P(("channel", "news"), ("offset", U64), ("epoch", "ep"), ("data", b"\x01\x02"),
           ("info", P(("client", "c9"), ("user", "u9"))), ("time", 1700000000123))

enc("subscribe ok recovered with publications", "ok_subscribe",
    {"id": 3, "epoch": "ep", "offset": u64(U64), "recovered": True, "publications": [PUB1, PUB2]},
    P(("id", 3), ("ok", P(("epoch", "ep"), ("offset", U64), ("recovered", True),
                          ("publications", [PUB1_J, PUB2_J])))),
    P(("id", 3), ("ok", P(("epoch", "ep"), ("offset", U64), ("recovered", True),
                          ("publications", [PUB1_M, PUB2_M])))))
enc("subscribe ok not recovered", "ok_subscribe",
    {"id": 4, "epoch": "new", "offset": 9, "recovered": False, "publications": []},
    P(("id", 4), ("ok", P(("epoch", "new"), ("offset", 9), ("recovered", False),
                          ("publications", [])))),
    P(("id", 4), ("ok", P(("epoch", "new"), ("offset", 9), ("recovered", False),
                          ("publications", [])))))
enc("publish ok", "ok_publish", {"id": 5, "offset": 300, "epoch": "ep"},
    P(("id", 5), ("ok", P(("offset", 300), ("epoch", "ep")))),
    P(("id", 5), ("ok", P(("offset", 300), ("epoch", "ep")))))
enc("publish ok, an idempotent repeat", "ok_publish",
    {"id": 5, "offset": 300, "epoch": "ep", "duplicate": True},
    P(("id", 5), ("ok", P(("offset", 300), ("epoch", "ep"), ("duplicate", True)))),
    P(("id", 5), ("ok", P(("offset", 300), ("epoch", "ep"), ("duplicate", True)))))
enc("history ok", "ok_history",
    {"id": 6, "epoch": "ep", "offset": 41, "publications": [PUB1]},
    P(("id", 6), ("ok", P(("publications", [PUB1_J]), ("epoch", "ep"), ("offset", 41)))),
    P(("id", 6), ("ok", P(("publications", [PUB1_M]), ("epoch", "ep"), ("offset", 41)))))
enc("history ok empty", "ok_history",
    {"id": 6, "epoch": "", "offset": 0, "publications": []},
    P(("id", 6), ("ok", P(("publications", []), ("epoch", ""), ("offset", 0)))),
    P(("id", 6), ("ok", P(("publications", []), ("epoch", ""), ("offset", 0)))))
PRES = P(("id", 8), ("ok", P(("clients", P(
    ("c1", P(("user", "alice"))),
    ("c2", P(("user", "bob"),)),
    ("c3", {}))))))
enc("presence ok", "ok_presence",
    {"id": 8, "clients": [{"client": "c1", "user": "alice"},
                          {"client": "c2", "user": "bob"},
                          {"client": "c3", "user": ""}]},
    PRES, PRES)
enc("presence ok empty", "ok_presence", {"id": 9, "clients": []},
    P(("id", 9), ("ok", P(("clients", {})))), P(("id", 9), ("ok", P(("clients", {})))))
enc("pub push", "push_pub", PUB1,
    P(("push", "pub"), *PUB1_J.items()), P(("push", "pub"), *PUB1_M.items()))
enc("pub push with binary data, info and time", "push_pub", PUB2,
    P(("push", "pub"), *PUB2_J.items()), P(("push", "pub"), *PUB2_M.items()))
enc("pub push keeps the publisher's JSON bytes", "push_pub",
    {"channel": "a", "offset": 1, "epoch": "e", "data": {"json": '{"x" : [1, 2]}'}},
    None, P(("push", "pub"), ("channel", "a"), ("offset", 1), ("epoch", "e"),
            ("data", {"x": [1, 2]})),
    json_text='{"push":"pub","channel":"a","offset":1,"epoch":"e","data":{"x" : [1, 2]}}')
enc("pub push from a msgpack publisher", "push_pub",
    {"channel": "a", "offset": 2, "epoch": "e", "data": {"msgpack_hex": hx({"k": [1.5, None]})},
     "info": {"client": "c", "user": ""}},
    P(("push", "pub"), ("channel", "a"), ("offset", 2), ("epoch", "e"),
      ("data", {"k": [1.5, None]}), ("info", P(("client", "c"),))),
    P(("push", "pub"), ("channel", "a"), ("offset", 2), ("epoch", "e"),
      ("data", {"k": [1.5, None]}), ("info", P(("client", "c"),))))
enc("join push", "push_join", {"join": True, "channel": "room", "info": {"client": "c1", "user": "u1"}},
    P(("push", "join"), ("channel", "room"), ("info", P(("client", "c1"), ("user", "u1")))),
    P(("push", "join"), ("channel", "room"), ("info", P(("client", "c1"), ("user", "u1")))))
enc("leave push", "push_join", {"join": False, "channel": "room", "info": {"client": "c1", "user": ""}},
    P(("push", "leave"), ("channel", "room"), ("info", P(("client", "c1"),))),
    P(("push", "leave"), ("channel", "room"), ("info", P(("client", "c1"),))))
# conn_info (v1 addition): the token's info, JSON text on the server,
# written as it is for JSON and as a map for msgpack.
enc("join push with conn_info", "push_join",
    {"join": True, "channel": "room",
     "info": {"client": "c1", "user": "u1", "conn_info": '{"name":"Ada","n":[1,2]}'}},
    P(("push", "join"), ("channel", "room"),
      ("info", P(("client", "c1"), ("user", "u1"),
                 ("conn_info", P(("name", "Ada"), ("n", [1, 2])))))),
    P(("push", "join"), ("channel", "room"),
      ("info", P(("client", "c1"), ("user", "u1"),
                 ("conn_info", P(("name", "Ada"), ("n", [1, 2])))))))
PRES_CI = P(("id", 8), ("ok", P(("clients", P(
    ("c1", P(("user", "alice"), ("conn_info", P(("a", True),)))),
    ("c2", P(("conn_info", P(("b", None),)),)))),)))
enc("presence ok with conn_info", "ok_presence",
    {"id": 8, "clients": [{"client": "c1", "user": "alice", "conn_info": '{"a":true}'},
                          {"client": "c2", "user": "", "conn_info": '{"b":null}'}]},
    PRES_CI, PRES_CI)
enc("disconnect push", "push_disconnect", {"code": 4000, "reason": "shutting down", "reconnect": True},
    P(("push", "disconnect"), ("code", 4000), ("reason", "shutting down"), ("reconnect", True)),
    P(("push", "disconnect"), ("code", 4000), ("reason", "shutting down"), ("reconnect", True)))
enc("disconnect push without reconnect", "push_disconnect",
    {"code": 4100, "reason": "token expired", "reconnect": False},
    P(("push", "disconnect"), ("code", 4100), ("reason", "token expired"), ("reconnect", False)),
    P(("push", "disconnect"), ("code", 4100), ("reason", "token expired"), ("reconnect", False)))

enc("refresh ok", "ok_expires", {"id": 9, "expires": 1700007200},
    P(("id", 9), ("ok", P(("expires", 1700007200),))),
    P(("id", 9), ("ok", P(("expires", 1700007200),))))
enc("refresh ok without expiry", "ok_expires", {"id": 9, "expires": 0},
    P(("id", 9), ("ok", {})), P(("id", 9), ("ok", {})))
enc("unsubscribe push", "push_unsubscribe",
    {"channel": "orders:acme", "code": 109, "reason": "channel token expired"},
    P(("push", "unsubscribe"), ("channel", "orders:acme"), ("code", 109),
      ("reason", "channel token expired")),
    P(("push", "unsubscribe"), ("channel", "orders:acme"), ("code", 109),
      ("reason", "channel token expired")))

# Commands as clients build them.
enc("connect command", "cmd",
    {"id": 1, "op": "connect", "token": "t.k.n", "name": "herald-c", "version": "0.1.0"},
    P(("id", 1), ("op", "connect"), ("token", "t.k.n"), ("name", "herald-c"), ("version", "0.1.0")),
    P(("id", 1), ("op", "connect"), ("token", "t.k.n"), ("name", "herald-c"), ("version", "0.1.0")))
enc("subscribe command with since", "cmd",
    {"id": 2, "op": "subscribe", "channel": "news", "token": "ct", "since": {"offset": 10, "epoch": "ep"}},
    P(("id", 2), ("op", "subscribe"), ("channel", "news"), ("token", "ct"),
      ("since", P(("offset", 10), ("epoch", "ep")))),
    P(("id", 2), ("op", "subscribe"), ("channel", "news"), ("token", "ct"),
      ("since", P(("offset", 10), ("epoch", "ep")))))
enc("history command", "cmd",
    {"id": 3, "op": "history", "channel": "news", "limit": 10, "reverse": True},
    P(("id", 3), ("op", "history"), ("channel", "news"), ("limit", 10), ("reverse", True)),
    P(("id", 3), ("op", "history"), ("channel", "news"), ("limit", 10), ("reverse", True)))
enc("publish command", "cmd",
    {"id": 4, "op": "publish", "channel": "news", "data_json": '{"a":[1,2]}',
     "data_msgpack_hex": hx({"a": [1, 2]})},
    P(("id", 4), ("op", "publish"), ("channel", "news"), ("data", {"a": [1, 2]})),
    P(("id", 4), ("op", "publish"), ("channel", "news"), ("data", {"a": [1, 2]})))
enc("ping command", "cmd", {"id": U32, "op": "ping"},
    P(("id", U32), ("op", "ping")), P(("id", U32), ("op", "ping")))
enc("refresh command", "cmd", {"id": 9, "op": "refresh", "token": "h.p.s"},
    P(("id", 9), ("op", "refresh"), ("token", "h.p.s")),
    P(("id", 9), ("op", "refresh"), ("token", "h.p.s")))
enc("sub_refresh command", "cmd",
    {"id": 10, "op": "sub_refresh", "channel": "orders:acme", "token": "h.p.s"},
    P(("id", 10), ("op", "sub_refresh"), ("channel", "orders:acme"), ("token", "h.p.s")),
    P(("id", 10), ("op", "sub_refresh"), ("channel", "orders:acme"), ("token", "h.p.s")))


def write(name, desc, vectors):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), "w",
              encoding="utf-8") as f:
        json.dump({"description": desc, "vectors": vectors}, f, ensure_ascii=False, indent=1)
        f.write("\n")


write("decode.json", "Client commands as the server decodes them. See README.md.", decode)
write("encode.json", "Server messages and client commands as the codec encodes them. See README.md.",
      encode)
write("data.json", "Publication data conversion between JSON and msgpack. See README.md.", data)
print("decode %d, encode %d, data %d vectors" % (len(decode), len(encode), len(data)))
