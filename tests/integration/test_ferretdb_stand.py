"""The FerretDB test stand works the way Herald's durable history uses it.

Herald stores each publication of a durable namespace as one document
{channel, epoch, offset, data, time, info} under a unique index on
(channel, epoch, offset), reads ranges of offsets in order, trims by age
and count, and must live through its store stalling or restarting. These
tests check those operations against FerretDB (scripts/ferretdb/, SQLite
backend) through pymongo, before Herald's own tests rely on them, and pin
the FerretDB behaviours Herald's code depends on (duplicate-key code 11000
on retries, numeric offset comparison across int32/int64, a write that
timed out during a stall may still be applied).

No Herald binary is involved. Run:
    /usr/bin/python3 -m pytest -q test_ferretdb_stand.py
"""

import datetime
import os
import time

import pytest
# Debian's python3-pymongo (scripts/deps.sh test); missing, this module
# fails to import, which pytest reports as an error, not a skip.
import pymongo
from bson.binary import Binary
from bson.int64 import Int64
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError

import herald_harness as hh
import ferret_harness as fh
from ferret_harness import ferretdb  # noqa: F401 - the fixture

DB = "herald"
COLL = "publications"
UNIQUE_INDEX = {"key": {"channel": 1, "epoch": 1, "offset": 1},
                "name": "channel_epoch_offset", "unique": True}


def create_indexes(db):
    """As Herald does at start-up: the createIndexes command."""
    return db.command({"createIndexes": COLL, "indexes": [UNIQUE_INDEX]})


def pub(channel, offset, data, epoch="e1", t=None):
    return {"channel": channel, "epoch": epoch, "offset": Int64(offset),
            "data": data, "time": t or datetime.datetime.now(datetime.timezone.utc),
            "info": {"client": "cl-1", "user": "u-1"}}


def offsets(cursor):
    return [int(d["offset"]) for d in cursor]


def test_missing_binary_fails_with_the_setup_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(fh, "FERRETDB_BIN", str(tmp_path / "no-such-ferretdb"))
    with pytest.raises(fh.FerretDBError, match="run scripts/ferretdb/setup.sh"):
        fh.FerretDB(dir=str(tmp_path / "d")).start()


def test_binary_and_string_data_round_trip_byte_exact(ferretdb):
    col = ferretdb.client()[DB][COLL]
    create_indexes(col.database)
    every_byte = bytes(range(256))
    payloads = [
        Binary(every_byte),                   # msgpack publication, all byte values
        Binary(b""),                          # empty binary
        Binary(b"\x00" * 5 + b"\xff"),        # leading NULs
        Binary(every_byte * 4096),            # 1 MiB
        '{"text":"héllo ✓ 😀","n":[1,2.5,null]}',   # JSON text publication
        "",                                   # empty JSON text (not valid JSON; bytes kept)
        "a\x00b",                             # a NUL inside a BSON string
    ]
    col.insert_many([pub("ch", i + 1, p) for i, p in enumerate(payloads)])
    got = list(col.find({"channel": "ch"}).sort("offset", 1))
    assert [int(d["offset"]) for d in got] == list(range(1, len(payloads) + 1))
    for d, p in zip(got, payloads):
        if isinstance(p, Binary):
            # subtype 0 comes back as bytes under Python 3: same type, same bytes
            assert isinstance(d["data"], bytes) and bytes(d["data"]) == bytes(p)
        else:
            assert isinstance(d["data"], str) and d["data"] == p
        assert d["epoch"] == "e1" and d["info"] == {"client": "cl-1", "user": "u-1"}
        assert isinstance(d["time"], datetime.datetime)
    # a non-zero subtype is kept too
    col.insert_one(pub("ch", 100, Binary(b"\x01\x02", 5)))
    d = col.find_one({"channel": "ch", "offset": 100})
    assert d["data"] == Binary(b"\x01\x02", 5) and d["data"].subtype == 5


def test_unique_index_and_duplicate_key_11000(ferretdb):
    db = ferretdb.client()[DB]
    col = db[COLL]
    r = create_indexes(db)
    assert r["ok"] == 1 and r["numIndexesAfter"] == 2
    # Idempotent at every start-up.
    r = create_indexes(db)
    assert r["ok"] == 1 and r["numIndexesAfter"] == 2
    idx = {i["name"]: i for i in col.list_indexes()}
    assert idx["channel_epoch_offset"]["unique"] is True
    assert dict(idx["channel_epoch_offset"]["key"]) == UNIQUE_INDEX["key"]

    col.insert_one(pub("ch", 1, "one"))
    with pytest.raises(DuplicateKeyError) as e:
        col.insert_one(pub("ch", 1, "one again"))
    assert e.value.code == 11000

    # The raw command, as the C driver sees it: ok 1, writeErrors[0].code.
    r = db.command({"insert": COLL, "documents": [pub("ch", 1, "x")]})
    assert r["ok"] == 1 and r["n"] == 0
    assert [w["code"] for w in r["writeErrors"]] == [11000]

    # The same position in another epoch or channel is not a duplicate.
    col.insert_one(pub("ch", 1, "new epoch", epoch="e2"))
    col.insert_one(pub("other", 1, "other channel"))

    # An offset is compared as a number: int32 1 or double 1.0 is the same
    # key as int64 1.
    for same in (1, 1.0):
        with pytest.raises(DuplicateKeyError):
            col.insert_one({"channel": "ch", "epoch": "e1", "offset": same})

    # A retried batch (Herald's writer after a timeout): unordered insert of
    # 2..6 where 2 and 4 are already stored inserts the rest and reports
    # exactly those two as 11000, so the retry counts as success.
    col.insert_many([pub("ch", 2, "two"), pub("ch", 4, "four")])
    with pytest.raises(BulkWriteError) as e:
        col.insert_many([pub("ch", o, "batch %d" % o) for o in range(2, 7)], ordered=False)
    res = e.value.details
    assert res["nInserted"] == 3
    assert sorted((w["index"], w["code"]) for w in res["writeErrors"]) == [(0, 11000), (2, 11000)]
    assert offsets(col.find({"channel": "ch", "epoch": "e1"}).sort("offset", 1)) == [1, 2, 3, 4, 5, 6]
    assert col.find_one({"channel": "ch", "offset": 4})["data"] == "four"  # not overwritten

    # An ordered batch stops at the first duplicate.
    with pytest.raises(BulkWriteError) as e:
        col.insert_many([pub("ch", o, "o") for o in (7, 6, 8)], ordered=True)
    assert e.value.details["nInserted"] == 1
    assert offsets(col.find({"channel": "ch", "epoch": "e1"}).sort("offset", 1)) == [1, 2, 3, 4, 5, 6, 7]


def test_range_queries_sorted_by_offset_with_limit(ferretdb):
    col = ferretdb.client()[DB][COLL]
    create_indexes(col.database)
    # Offsets around 2^31 (int32 and int64 on the wire) and a second epoch
    # and channel that must not leak into the answers.
    base = 2 ** 31 - 50
    mine = list(range(base, base + 100))
    docs = [pub("ch", o, "m%d" % o) for o in mine]
    docs += [pub("ch", o, "old epoch", epoch="e0") for o in mine[:10]]
    docs += [pub("ch2", o, "other channel") for o in mine[:10]]
    col.insert_many(docs[::-1])  # stored out of order on purpose

    q = {"channel": "ch", "epoch": "e1"}
    since = base + 40  # `since` 40 publications in: the next ones, oldest first
    got = offsets(col.find(dict(q, offset={"$gt": since})).sort("offset", 1).limit(20))
    assert got == mine[41:61]
    # reverse: the newest 5 before a position
    got = offsets(col.find(dict(q, offset={"$lt": base + 60})).sort("offset", -1).limit(5))
    assert got == mine[55:60][::-1]
    # a bounded window
    got = offsets(col.find(dict(q, offset={"$gt": base + 47, "$lte": base + 53})).sort("offset", 1))
    assert got == mine[48:54]
    # the latest one (the stream's top, as a restart reads it)
    top = col.find(q).sort("offset", -1).limit(1)
    assert offsets(top) == [mine[-1]]
    # past the end: nothing
    assert offsets(col.find(dict(q, offset={"$gt": mine[-1]})).sort("offset", 1)) == []

    # Pages through getMore (batches of 7): complete and in order.
    cur = col.find(q).sort("offset", 1).batch_size(7)
    assert offsets(cur) == mine
    # limit larger than the first batch (101 documents) goes on with getMore
    assert offsets(col.find(q).sort("offset", 1).limit(150)) == mine
    # only the fields asked for
    d = col.find_one(dict(q, offset=mine[0]), {"_id": 0, "offset": 1})
    assert d == {"offset": mine[0]}


def test_delete_many_for_retention(ferretdb):
    col = ferretdb.client()[DB][COLL]
    create_indexes(col.database)
    now = datetime.datetime.now(datetime.timezone.utc)
    old = now - datetime.timedelta(hours=2)
    # offsets 1..30 are two hours old, 31..60 are fresh
    col.insert_many([pub("ch", o, "d", t=old if o <= 30 else now) for o in range(1, 61)])
    col.insert_many([pub("keep", o, "d", t=old) for o in range(1, 11)])

    # Age retention (1 hour) for one channel.
    r = col.delete_many({"channel": "ch", "time": {"$lt": now - datetime.timedelta(hours=1)}})
    assert r.deleted_count == 30
    assert offsets(col.find({"channel": "ch"}).sort("offset", 1)) == list(range(31, 61))

    # Count retention (keep the newest 10): find the cut-off, delete below it.
    cut = list(col.find({"channel": "ch", "epoch": "e1"}, {"offset": 1})
               .sort("offset", -1).skip(10).limit(1))
    assert int(cut[0]["offset"]) == 50
    r = col.delete_many({"channel": "ch", "epoch": "e1", "offset": {"$lte": cut[0]["offset"]}})
    assert r.deleted_count == 20
    assert offsets(col.find({"channel": "ch"}).sort("offset", 1)) == list(range(51, 61))

    # Nothing else was touched; deleting nothing is not an error.
    assert col.count_documents({"channel": "keep"}) == 10
    assert col.delete_many({"channel": "nope"}).deleted_count == 0


def test_write_concern_in_the_uri_is_accepted(ferretdb):
    """Herald's ack=durable waits for the URI's write concern. FerretDB
    (one node) accepts w=majority/j=true and never reports a
    writeConcernError; the write is committed to SQLite when acknowledged.
    (w=0 is not usable with FerretDB: it answers unacknowledged OP_MSG
    writes anyway, which desynchronises the connection.)"""
    c = pymongo.MongoClient(ferretdb.uri(DB, w="majority", journal=True, wtimeoutMS=2000,
                                         serverSelectionTimeoutMS=int(hh.t(3000))))
    try:
        col = c[DB][COLL]
        r = col.insert_many([pub("ch", o, "d") for o in range(1, 4)])
        assert r.acknowledged and len(r.inserted_ids) == 3
        raw = c[DB].command({"insert": COLL, "documents": [pub("ch", 4, "d")],
                             "writeConcern": {"w": "majority", "j": True, "wtimeout": 1000}})
        assert raw["ok"] == 1 and raw["n"] == 1 and "writeConcernError" not in raw
        assert col.count_documents({"channel": "ch"}) == 4
    finally:
        c.close()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_data_survives_restart_on_the_same_dir(ferretdb, how):
    db = ferretdb.client()[DB]
    create_indexes(db)
    db[COLL].insert_many([pub("ch", o, Binary(bytes([o]))) for o in range(1, 51)])
    uri = ferretdb.uri(DB)

    ferretdb.restart(kill=(how == "sigkill"))
    assert ferretdb.uri(DB) == uri  # same port, same data directory

    db = ferretdb.client()[DB]
    col = db[COLL]
    got = list(col.find({"channel": "ch"}).sort("offset", 1))
    assert [int(d["offset"]) for d in got] == list(range(1, 51))
    assert all(bytes(d["data"]) == bytes([int(d["offset"])]) for d in got)
    # the unique index came back with the data
    with pytest.raises(DuplicateKeyError):
        col.insert_one(pub("ch", 50, "dup"))
    r = create_indexes(db)
    assert r["ok"] == 1 and r["numIndexesBefore"] == r["numIndexesAfter"] == 2
    col.insert_one(pub("ch", 51, "after restart"))
    assert col.count_documents({"channel": "ch"}) == 51


def test_paused_store_gives_timely_errors_then_recovers(ferretdb):
    """SIGSTOP makes a stalled store: TCP still connects, nothing answers.
    A client with 1 s timeouts gets an error within a few seconds for reads
    and writes, and the same client works again after SIGCONT."""
    ms = int(hh.t(1000))
    c = ferretdb.client(serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms)
    col = c[DB][COLL]
    create_indexes(col.database)
    col.insert_one(pub("ch", 1, "before"))

    ferretdb.pause()
    # A bound, not a measurement: socket timeout, then (for a read) one
    # retry through server selection; about 1 s for a write, 2.5 s for a read.
    bound = hh.t(6)
    for what, op in (("insert", lambda: col.insert_one(pub("ch", 2, "during"))),
                     ("find", lambda: col.find_one({"channel": "ch"})),
                     ("ping", lambda: c.admin.command("ping"))):
        t0 = time.monotonic()
        with pytest.raises(ConnectionFailure):
            op()
        took = time.monotonic() - t0
        assert took < bound, "%s took %.1fs to fail while paused" % (what, took)
    # A new client fares the same (connect succeeds, the handshake times out).
    fresh = ferretdb.client(serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms)
    t0 = time.monotonic()
    with pytest.raises(ConnectionFailure):
        fresh.admin.command("ping")
    assert time.monotonic() - t0 < bound

    ferretdb.resume()
    hh.wait_for(lambda: c.admin.command("ping")["ok"] == 1, hh.t(10),
                what="the paused client to work again after SIGCONT")
    # The insert that timed out was sitting in FerretDB's socket buffer and
    # may have been applied after SIGCONT (it is, in practice): a timed-out
    # write is "unknown", not "failed". Retrying it is safe because of the
    # unique index: either it inserts, or it reports 11000.
    try:
        col.insert_one(pub("ch", 2, "retry"))
    except DuplicateKeyError as e:
        assert e.code == 11000
    assert offsets(col.find({"channel": "ch"}).sort("offset", 1)) == [1, 2]
    fresh.admin.command("ping")


def test_start_refuses_a_port_in_use(ferretdb, tmp_path):
    other = fh.FerretDB(dir=str(tmp_path / "other"), port=ferretdb.port)
    with pytest.raises(fh.FerretDBError, match="already in use"):
        other.start()
    assert ferretdb.alive() and not other.alive()
    assert not os.path.exists(os.path.join(other.dir, "ferretdb.pid"))
