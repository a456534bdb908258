"""Cluster mode when Redis's operator (or a failover) does something the
nodes did not ask for, during a steady stream of publications:

* SCRIPT FLUSH: the nodes' Lua scripts are gone. The next script call gets
  NOSCRIPT; the node drops the link and reconnects (which loads the scripts
  again) instead of answering 108 forever.
* CLIENT KILL TYPE pubsub: Redis closes every pub/sub connection. The
  nodes reconnect and fill their subscribers' gaps from the hot window: no
  subscriber is disconnected and every acknowledged publication arrives.

Publishers, subscribers and checks are those of test_cluster_faults.py.
"""

import pytest

import cluster_harness as ch
import herald_harness as hh
import test_cluster_faults as cf
from herald_harness import t

make_cluster = ch.cluster_factory_fixture()


async def _steady(cl):
    chname = hh.chan("h:")
    subs = [await cf.ResilientSub([cl[0]], chname, "json", "sub-A").start(),
            await cf.ResilientSub([cl[1]], chname, "msgpack", "sub-B").start()]
    pubs = [await cf.Publisher(cl[1], chname, "B", 100).start()]
    await hh.async_wait_for(lambda: len(pubs[0].oks()) >= 30, t(5),
                            what="30 publishes ok")
    return subs, pubs


@pytest.mark.timeout(60)
async def test_script_flush_reloads_scripts(make_cluster):
    cl = make_cluster(cf.config(500), n=2)
    subs, pubs = await _steady(cl)
    cl.redis[0].command("SCRIPT", "FLUSH")
    flushed = cf.now()
    # publishing goes on: the link comes back with the scripts loaded
    await hh.async_wait_for(lambda: pubs[0].oks_sent_after(flushed + t(0.5)) >= 30,
                            t(10), what="30 publishes ok after SCRIPT FLUSH")
    await cf.finish(cl, subs, pubs, window_covers=True)
    reasons = [str(l.get("reason", "")) for n in cl for l in n.log_lines()]
    assert any("scripts missing" in r for r in reasons), \
        "no node logged the missing scripts: %r" % reasons


@pytest.mark.timeout(60)
async def test_pubsub_connections_killed_by_redis(make_cluster):
    cl = make_cluster(cf.config(500), n=2)
    subs, pubs = await _steady(cl)
    killed = cl.redis[0].command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed >= 2, "expected the nodes' pub/sub connections, killed %r" % killed
    after = cf.now()
    await hh.async_wait_for(lambda: pubs[0].oks_sent_after(after + t(0.5)) >= 30,
                            t(10), what="30 publishes ok after the kill")
    # the gap while each node resubscribed came from the window
    await cf.finish(cl, subs, pubs, window_covers=True)
