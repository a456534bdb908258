"""Shutdown of the durable store (issue 11): after SIGTERM, herald writes
what is queued for up to shutdown_timeout + 1 s, then appends the rest to
the spill file. A second signal meanwhile ("stop now") must cut that wait
short, not the spilling: the process exits 0 with every unwritten
publication in the spill file, and the next start writes them. FerretDB
is paused (SIGSTOP) so that nothing can be written.
"""

import asyncio
import os
import signal

import herald_harness as hh
from ferret_harness import ferretdb  # noqa: F401 (fixture)
from herald_harness import t


def config(fd, tmp_path, **extra):
    cfg = {
        "mongodb": fd.uri("", serverSelectionTimeoutMS=1000,
                          connectTimeoutMS=1000, socketTimeoutMS=2000),
        "mongodb_spill_path": str(tmp_path / "herald.spill"),
        "durable_ack_timeout_ms": 600000,
        "shutdown_timeout": 2,
        "namespaces": [{"name": "a", "history_size": 10, "durable": True,
                        "ack": "durable"}],
    }
    cfg.update(extra)
    return cfg


def stored(fd, channel):
    coll = fd.client().herald.publications
    return sorted(d["offset"] for d in coll.find({"channel": channel}, {"offset": 1}))


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def logged(s, prefix):
    return [line for line in s.log_lines() if str(line.get("msg", "")).startswith(prefix)]


async def test_second_sigterm_during_store_shutdown_still_spills(
        server_factory, ferretdb, tmp_path):
    cfg = config(ferretdb, tmp_path)
    s = server_factory(cfg)
    ch = hh.chan("a:")
    c = await s.client()
    first = await c.ok("publish", channel=ch, data=0)
    epoch = first["epoch"]
    await in_thread(ferretdb.pause)
    try:
        for i in range(1, 6):
            _, cmd, _ = c.start("publish", channel=ch, data=i)
            await c.send(cmd)
        await hh.async_wait_for(lambda: s.healthz()[1]["store"]["backlog"] == 5, t(5),
                                what="5 publications waiting for the store")
        s.send_signal(signal.SIGTERM)
        await hh.async_wait_for(
            lambda: logged(s, "MongoDB: writing what is queued before exit"), t(15),
            what="the store's shutdown to begin")
        s.send_signal(signal.SIGTERM)
        rc = await in_thread(s.wait_exit, t(20))
        assert rc == 0, "exit status %r after a second SIGTERM during the store's " \
            "shutdown:\n%s" % (rc, s.stderr_tail(20))
    finally:
        await in_thread(ferretdb.resume)
    kept = logged(s, "MongoDB: publications not written at shutdown are in")
    assert kept and kept[0]["count"] == 5, s.stderr_tail(20)
    assert os.path.getsize(tmp_path / "herald.spill") > 0
    s2 = server_factory(cfg)
    await hh.async_wait_for(lambda: stored(ferretdb, ch) == list(range(1, 7)), t(20),
                            what=lambda: "offsets 1..6 stored (have %r)" % stored(ferretdb, ch))
    c2 = await s2.client()
    r = await c2.ok("publish", channel=ch, data=6)
    assert r["offset"] == 7 and r["epoch"] == epoch, r
