"""Cluster mode under faults, each during a steady stream of publications:
Redis stopped (SIGTERM) or killed (SIGKILL) and started again with its
data, paused (SIGSTOP), restarted empty; a channel's keys deleted; a herald
node killed or stopped; one node cut off from Redis through a proxy
(connections dropped or stalled), shortly or for longer than presence_ttl;
one of two Redis servers stopped.

The subscribers here behave like a client SDK (ResilientSub): when their
connection ends they reconnect (to the next node if theirs is gone) and
subscribe again with `since` = their last offset and epoch, retrying while
the node answers 108. What every logical subscriber received over all its
connections is then checked against the publishers' records: offsets in
order without gap or duplicate, one epoch, every publication acknowledged
ok present with the acknowledged data. A publication whose publish failed
(108) or got no reply may appear or not (it may have reached Redis just
before the link was declared down), but nothing else may.
"""

import asyncio
import signal
import subprocess
import time

import pytest
import websockets

import cluster_harness as ch
import herald_harness as hh
from herald_harness import t

SECRET = "faults-secret"
PRESENCE_TTL = 3
# seconds Redis stays stopped/paused (the deliberate wait; longer under the
# sanitizers, where a node takes longer to notice)
OUTAGE = 3.0 * (1.5 if hh.SANITIZE else 1.0)
# a command sent this long before Redis came back may have reached the node
# after its link was up again (and honestly succeeded)
IN_FLIGHT = t(0.2)


def config(redis_timeout_ms):
    return {
        "token_secret": SECRET,
        "allow_anonymous": True,
        "redis_timeout_ms": redis_timeout_ms,
        "presence_ttl": PRESENCE_TTL,
        "namespace_defaults": {"history_size": 0},
        "namespaces": [
            {"name": "h", "history_size": 2000},
            {"name": "room", "history_size": 2000, "presence": True, "join_leave": True},
            {"name": "w", "history_size": 10},    # hot window max(10, 64) = 64
        ],
    }


make_cluster = ch.cluster_factory_fixture()
_native_tracebacks = ch.native_tracebacks_fixture()


@pytest.fixture
def proxies():
    made = []
    yield made
    for p in made:
        p.close()


async def connect(node, enc="json", user=None):
    c = await node.client(enc)
    if user is None:
        await c.ok("connect")
    else:
        await c.ok("connect", token=hh.make_jwt(SECRET, sub=user))
    return c


def now():
    return time.monotonic()


# --------------------------------------------------------------------------
# A publisher that keeps a steady rate and records every reply

class Publisher:
    """Publishes {"k": "<tag>-<i>"} at `rate` per second through `node`
    without waiting for the replies (a publish in flight never delays the
    next), and records send time, reply time and reply of each."""

    def __init__(self, node, chname, tag, rate, enc="json"):
        self.node, self.chname, self.tag, self.rate, self.enc = node, chname, tag, rate, enc
        self.records = []      # {"key", "sent", "replied", "reply" (None: no reply)}
        self.closes = []       # close codes of its own connection (should stay empty)
        self.stopping = False

    async def start(self):
        self.c = await connect(self.node, self.enc)
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self):
        waiters = []
        t0, i = now(), 0
        while not self.stopping:
            if self.c.closed.is_set():
                self.closes.append(self.c.close_code)
                self.c = await connect(self.node, self.enc)
            i += 1
            rec = {"key": "%s-%d" % (self.tag, i), "sent": now(), "replied": None, "reply": None}
            self.records.append(rec)
            _, cmd, fut = self.c.start("publish", channel=self.chname, data={"k": rec["key"]})
            try:
                await self.c.send(cmd)
            except websockets.ConnectionClosed:
                rec["replied"] = now()
                continue
            waiters.append(asyncio.get_running_loop().create_task(self._reply(rec, fut)))
            await asyncio.sleep(max(0.0, t0 + i / self.rate - now()))
        await asyncio.gather(*waiters)

    @staticmethod
    async def _reply(rec, fut):
        try:
            rec["reply"] = await asyncio.wait_for(fut, t(8))
        except (asyncio.TimeoutError, hh.CommandError):
            rec["reply"] = None
        rec["replied"] = now()

    async def stop(self):
        self.stopping = True
        await self.task

    def oks(self):
        return [r for r in self.records if r["reply"] is not None and "ok" in r["reply"]]

    def acked(self):
        return {r["reply"]["ok"]["offset"]: r["key"] for r in self.oks()}

    def ambiguous(self):
        return {r["key"] for r in self.records if r["reply"] is None or "ok" not in r["reply"]}

    def oks_sent_after(self, t0):
        return sum(1 for r in self.oks() if r["sent"] > t0)


def merge_acked(pubs):
    acked = {}
    for p in pubs:
        for off, key in p.acked().items():
            assert off not in acked, "offset %d acknowledged twice: %s and %s" % (
                off, acked[off], key)
            acked[off] = key
    return acked


async def final_publication(node, chname):
    """Publishes a last marker (retrying while the node says 108); returns
    (offset, key)."""
    c = await connect(node)
    deadline = now() + t(10)
    while True:
        r = await c.call("publish", channel=chname, data={"k": "final"})
        if "ok" in r:
            return r["ok"]["offset"], "final"
        assert r["error"]["code"] == 108 and now() < deadline, r
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------
# A subscriber that reconnects and recovers like a client SDK

NO_RECONNECT = (1000, 4100, 4101, 4102)


def _what_text(what):
    return what() if callable(what) else what


class ResilientSub:
    def __init__(self, nodes, chname, enc="json", label="sub", user=None):
        self.nodes = list(nodes)
        self.at = 0                # index of the node in use
        self.chname, self.enc, self.label, self.user = chname, enc, label, user
        self.received = []         # (offset, epoch, key) of the current epoch
        self.segments = [self.received]   # a new one after recovered:false
        self.starts = []           # offset each segment starts after
        self.epoch = self.offset = None
        self.closes = []           # (close code, time)
        self.disconnects = []      # disconnect pushes
        self.recovered = []        # `recovered` of every subscribe with since
        self.sub_errors = []       # error codes of failed (re)subscribes
        self.joins, self.leaves, self.other = [], [], []
        self.client_ids = []
        self.client = None
        self.stopping = False

    @property
    def client_id(self):
        return self.client.client_id

    async def start(self):
        await self._open()
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _open(self):
        deadline, delay = now() + t(15), 0.05
        while True:
            node = self.nodes[self.at % len(self.nodes)]
            c, why = None, None
            try:
                c = await node.client(self.enc)
                await c.ok("connect", **({"token": hh.make_jwt(SECRET, sub=self.user)}
                                         if self.user else {}))
                fields = {"channel": self.chname}
                if self.offset is not None:
                    fields["since"] = {"offset": self.offset, "epoch": self.epoch}
                r = await c.call("subscribe", **fields)
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException,
                    hh.CommandError) as e:
                why = repr(e)
                self.at += 1       # that node is gone or broken: try the next
            else:
                if "ok" in r:
                    self._subscribed(r["ok"], "since" in fields)
                    self.client = c
                    self.client_ids.append(c.client_id)
                    return
                code = r["error"]["code"]
                self.sub_errors.append(code)
                assert code == 108, "%s: subscribe failed with %r" % (self.label, r)
                why = "108"
            if c is not None:
                await c.close()
            if now() > deadline:
                raise AssertionError("%s could not subscribe again within %.0fs (last: %s)"
                                     % (self.label, t(15), why))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _subscribed(self, ok, with_since):
        if not with_since:
            self.starts.append(ok["offset"])
            self.epoch, self.offset = ok["epoch"], ok["offset"]
            return
        self.recovered.append(ok["recovered"])
        if ok["recovered"]:
            assert ok["epoch"] == self.epoch, (self.label, ok, self.epoch)
            for p in ok["publications"]:
                self._add(p["offset"], ok["epoch"], p["data"])
            assert ok["offset"] == self.offset, \
                "%s: recovered up to %s but the reply says top %s" % (
                    self.label, self.offset, ok["offset"])
        else:                      # the data is gone: a new segment
            self.received = []
            self.segments.append(self.received)
            self.starts.append(ok["offset"])
            self.epoch, self.offset = ok["epoch"], ok["offset"]

    def _add(self, offset, epoch, data):
        key = data.get("k") if isinstance(data, dict) else repr(data)
        self.received.append((offset, epoch, key))
        self.offset = max(self.offset, offset)

    async def _run(self):
        while True:
            c = self.client
            try:
                p = await asyncio.wait_for(c.pushes.get(), 0.05)
            except asyncio.TimeoutError:
                if self.stopping:
                    return
                if c.closed.is_set() and c.pushes.empty():
                    self.closes.append((c.close_code, now()))
                    if c.close_code in NO_RECONNECT:
                        return    # closed for good (or by the test's clean-up)
                    await self._open()
                continue
            kind = p.get("push")
            if kind == "pub" and p.get("channel") == self.chname:
                self._add(p["offset"], p["epoch"], p["data"])
            elif kind in ("join", "leave"):
                (self.joins if kind == "join" else self.leaves).append(
                    (p["info"]["client"], now()))
            elif kind == "disconnect":
                self.disconnects.append(p)
            else:
                self.other.append(p)

    def check_alive(self):
        """Fails (once, with a fresh exception) if the reconnect loop died."""
        if self.task.done() and not self.task.cancelled() and self.task.exception():
            exc = self.task.exception()
            raise AssertionError("%s stopped: %s" % (self.label, exc)) from exc

    async def until(self, pred, timeout, what):
        """Waits for pred(); gives up at once if the reconnect loop died."""
        await hh.async_wait_for(lambda: self.task.done() or pred(), timeout,
                                interval=0.02, what=what)
        self.check_alive()
        assert pred(), _what_text(what)

    async def wait_offset(self, target, timeout=None):
        await self.until(lambda: self.offset is not None and self.offset >= target,
                         timeout or t(10),
                         what=lambda: "%s to reach offset %d (at %s, closes %r)" % (
                             self.label, target, self.offset, self.closes))

    async def stop(self):
        self.stopping = True
        await self.task


    def check(self, acked, ambiguous):
        assert len(self.segments) == 1, "%s: recovered:false after %r" % (
            self.label, self.recovered)
        assert all(self.recovered), "%s: a resubscribe was not recovered: %r" % (
            self.label, self.recovered)
        ch.check_stream(self.label, self.received, acked, ambiguous,
                        start=self.starts[0], epoch=self.epoch)


# --------------------------------------------------------------------------
# Shared checks

async def two_subs_after_five(cl, chname):
    """Resilient subscribers on nodes A (JSON) and B (msgpack), five
    publications from node C that both received; returns (subs, the
    publisher's client, the epoch)."""
    subs = [await ResilientSub([cl[0]], chname, "json", "sub-A").start(),
            await ResilientSub([cl[1]], chname, "msgpack", "sub-B").start()]
    pub = await connect(cl[2])
    for i in range(5):
        ok = await pub.ok("publish", channel=chname, data={"k": "old-%d" % i})
    for s in subs:
        await s.wait_offset(5)
    return subs, pub, ok["epoch"]


async def wait_all(nodes, pred, timeout, what):
    async def every():
        return all(await asyncio.gather(*(asyncio.to_thread(pred, n) for n in nodes)))
    await hh.async_wait_for(every, timeout, interval=0.05, what=what)


async def health_states(nodes):
    async def one(n):
        try:
            return await asyncio.to_thread(ch.health, n)
        except OSError as e:
            return repr(e)
    return await asyncio.gather(*(one(n) for n in nodes))


def check_publishes_during_outage(pubs, down_from, down_to):
    """down_from..down_to: Redis certainly unreachable and the nodes know it.
    Every publish sent in that window got error 108 "broker unavailable";
    no publish at all was acknowledged ok while Redis could not answer;
    every publish got a reply; every error anywhere is 108."""
    all_recs = [r for p in pubs for r in p.records]
    noreply = [r["key"] for r in all_recs if r["reply"] is None]
    assert not noreply, "publishes without a reply: %r" % noreply[:10]
    inside = [r for r in all_recs if down_from <= r["sent"] <= down_to]
    assert inside, "no publish was made during the outage (publisher stalled?)"
    not108 = [(r["key"], r["reply"]) for r in inside
              if "error" not in r["reply"] or r["reply"]["error"]["code"] != 108]
    assert not not108, "publishes during the outage not answered 108: %r" % not108[:5]
    badmsg = [r["reply"] for r in inside if r["reply"]["error"].get("message") != "broker unavailable"]
    assert not badmsg, "108 without the message 'broker unavailable': %r" % badmsg[:3]
    other = [(r["key"], r["reply"]) for r in all_recs
             if "error" in r["reply"] and r["reply"]["error"]["code"] != 108]
    assert not other, "publish errors other than 108: %r" % other[:5]


def check_no_ok_while_redis_silent(pubs, silent_from, silent_to):
    """A publish sent after Redis stopped answering and acknowledged before
    it answered again cannot have reached Redis: an ok would be a lie."""
    lies = [(r["key"], r["reply"]) for p in pubs for r in p.oks()
            if r["sent"] > silent_from and r["replied"] < silent_to]
    assert not lies, "publishes acknowledged ok while Redis was not answering: %r" % lies[:5]


def check_logs(node):
    msgs = ch.log_msgs(node)
    downs = [i for i, m in enumerate(msgs) if "broker down" in m]
    ups = [i for i, m in enumerate(msgs) if "broker up" in m]
    assert downs, "%s logged no 'broker down'; msgs: %r" % (node.name, msgs[-15:])
    assert ups and ups[-1] > downs[0], "%s logged no 'broker up' after 'broker down'; " \
        "msgs: %r" % (node.name, msgs[-15:])


async def finish(cl, subs, pubs, extra_ambiguous=(), window_covers=False):
    """Stops the publishers, publishes a final marker, waits until every
    subscriber has it, stops them and checks every stream. window_covers:
    the hot window held every publication missed, so the nodes must have
    filled the gaps themselves: no subscriber may have been disconnected
    (4003 is only for gaps that cannot be filled)."""
    for p in pubs:
        await p.stop()
    final = await final_publication(cl[0], subs[0].chname)
    acked = merge_acked(pubs)
    acked[final[0]] = final[1]
    ambiguous = set(extra_ambiguous)
    for p in pubs:
        ambiguous |= p.ambiguous()
    for s in subs:
        await s.wait_offset(final[0])
    for s in subs:
        await s.stop()
    for s in subs:
        s.check(acked, ambiguous)
    for p in pubs:
        assert not p.closes, "publisher %s was disconnected: %r" % (p.tag, p.closes)
    if window_covers:
        for s in subs:
            assert not s.closes, "%s was disconnected (%r, disconnect pushes %r) although " \
                "the hot window held everything it missed" % (s.label, s.closes, s.disconnects)
    summary = {s.label: {"closes": [c for c, _ in s.closes], "recovered": s.recovered,
                         "pubs": len(s.received)} for s in subs}
    summary["acked"] = len(acked)
    summary["failed"] = sum(len(p.records) - len(p.oks()) for p in pubs)
    late = ambiguous & {k for s in subs for _, _, k in s.received}
    summary["failed-but-delivered"] = sorted(late)
    print("summary:", summary)
    return acked, summary


# --------------------------------------------------------------------------
# (a) Redis stopped with SIGTERM for 3 s

@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_redis_stopped_for_3s_during_publishing(make_cluster, how):
    """Redis stopped (SIGTERM: it exits cleanly) or killed (SIGKILL: the
    append-only file, fsynced at every write, still has every acknowledged
    write) for 3 s while two channels are published to through all three
    nodes; then started again on the same port and directory."""
    cl = make_cluster(config(2000))
    redis = cl.redis[0]
    chname, ch2 = hh.chan("h:"), hh.chan("h:")
    subs = [await ResilientSub([cl[0]], chname, "json", "sub-A").start(),
            await ResilientSub([cl[1]], chname, "msgpack", "sub-B").start(),
            await ResilientSub([cl[2]], chname, "json", "sub-C").start()]
    subs2 = [await ResilientSub([cl[1]], ch2, "json", "ch2-sub-B").start(),
             await ResilientSub([cl[2]], ch2, "msgpack", "ch2-sub-C").start()]
    probe = await connect(cl[0], "msgpack")
    pubs = [await Publisher(cl[1], chname, "B", 100).start(),
            await Publisher(cl[2], chname, "C", 25, "msgpack").start()]
    pubs2 = [await Publisher(cl[0], ch2, "A", 50).start()]
    # and 16 more channels, each with a subscriber on A or C and a slow
    # publisher on B: every subscribed channel's gap must be filled
    many = []
    for i in range(16):
        chn = hh.chan("h:")
        sub = await ResilientSub([cl[0] if i % 2 else cl[2]], chn, "msgpack" if i % 3 else "json",
                                 "many-%d" % i).start()
        many.append(([sub], [await Publisher(cl[1], chn, "M%d" % i, 4).start()]))
    await hh.async_wait_for(lambda: len(pubs[0].oks()) >= 50, t(5), what="50 publishes ok")

    if how == "SIGTERM":
        assert await asyncio.to_thread(redis.stop) == 0
    else:
        redis.kill()
        assert redis.proc.returncode == -9
    stopped = now()
    # every node notices (its connections were closed) before Redis is back
    await wait_all(cl.nodes, ch.broker_down_on_every_worker,
                   max(0.5, stopped + OUTAGE - 0.3 - now()),
                   what="every node's /healthz to answer 503 broker down, "
                   "every worker's link down")
    noticed = now()
    # clients stay connected; commands that need Redis get 108, others work
    assert await probe.ok("ping") == {}
    for op, fields in (("subscribe", {"channel": hh.chan("h:")}),
                       ("history", {"channel": chname}),
                       ("presence", {"channel": hh.chan("room:")})):
        e = await probe.error(op, **fields)
        assert e["code"] == 108, (op, e)
    await asyncio.sleep(max(0.0, stopped + OUTAGE - now()))   # the outage
    for s in subs + subs2 + [x for group, _ in many for x in group]:
        assert not s.closes, "%s was disconnected while Redis was down: %r" % (s.label, s.closes)
    assert not probe.closed.is_set()
    back = now()
    await asyncio.to_thread(redis.start)
    await wait_all(cl.nodes, ch.broker_up, t(12), what="every node's /healthz 200 broker up")
    up = now()
    await hh.async_wait_for(lambda: pubs[0].oks_sent_after(up) >= 30, t(5),
                            what="30 publishes ok after the restart")

    allpubs = pubs + pubs2 + [p for _, gp in many for p in gp]
    await asyncio.gather(*(p.stop() for p in allpubs))
    await finish(cl, subs, pubs, window_covers=True)
    await finish(cl, subs2, pubs2, window_covers=True)
    for group, gpubs in many:
        await finish(cl, group, gpubs, window_covers=True)
    # (a publish sent just before the restart may reach the node once it is
    # up again: only those sent IN_FLIGHT before it must have failed)
    check_publishes_during_outage(allpubs, noticed, back - IN_FLIGHT)
    check_no_ok_while_redis_silent(allpubs, stopped, back)
    for node in cl:
        check_logs(node)


# --------------------------------------------------------------------------
# (b) Redis paused with SIGSTOP for 3 s

@pytest.mark.timeout(60)
async def test_redis_paused_for_3s_during_publishing(make_cluster):
    cl = make_cluster(config(500))
    redis = cl.redis[0]
    chname = hh.chan("h:")
    subs = [await ResilientSub([cl[0]], chname, "msgpack", "sub-A").start(),
            await ResilientSub([cl[1]], chname, "json", "sub-B").start(),
            await ResilientSub([cl[2]], chname, "msgpack", "sub-C").start()]
    pubs = [await Publisher(cl[1], chname, "B", 100).start(),
            await Publisher(cl[2], chname, "C", 25, "msgpack").start()]
    await hh.async_wait_for(lambda: len(pubs[0].oks()) >= 50, t(5), what="50 publishes ok")

    redis.pause()
    paused = now()
    try:
        # every node notices by its own timeout (500 ms), the publishing
        # ones and node A, which only has subscriptions
        await wait_all(cl.nodes, ch.broker_down_on_every_worker,
                       max(0.5, paused + OUTAGE - 0.3 - now()),
                       what="every node's /healthz 503 broker down while Redis is "
                       "paused, every worker's link down")
        noticed = now()
        probe = await connect(cl[1])
        assert await probe.ok("ping") == {}
        e = await probe.error("subscribe", channel=hh.chan("h:"))
        assert e["code"] == 108, e
        await asyncio.sleep(max(0.0, paused + OUTAGE - now()))
        states = await health_states(cl.nodes)
    finally:
        redis.resume()
    resumed = now()
    print("healthz at the end of the pause:", states)
    for s in subs:
        assert not s.closes, "%s was disconnected while Redis was paused: %r" % (s.label, s.closes)
    await wait_all(cl.nodes, ch.broker_up, t(12), what="every node's /healthz 200 broker up")
    up = now()
    await hh.async_wait_for(lambda: pubs[0].oks_sent_after(up) >= 30, t(5),
                            what="30 publishes ok after the pause")

    await finish(cl, subs, pubs, window_covers=True)
    # a publish sent less than redis_timeout_ms before SIGCONT may still be
    # answered by Redis once it runs again (an honest ok)
    check_publishes_during_outage(pubs, noticed, resumed - 0.5 - IN_FLIGHT)
    check_no_ok_while_redis_silent(pubs, paused, resumed)
    for node in cl:
        check_logs(node)


# --------------------------------------------------------------------------
# (c) a node killed with SIGKILL

def users_of(presence_ok):
    return {cid: v.get("user", "") for cid, v in presence_ok["clients"].items()}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
async def test_lost_node_clients_recover_elsewhere_and_leave_presence(make_cluster, how):
    """Node C killed (SIGKILL) or stopped (SIGTERM, clients closed with 4000)
    during publishing: its clients reconnect to another node and recover
    everything; the other nodes' presence loses C's clients within
    presence_ttl + one refresh, and their subscribers get one leave push
    for each."""
    cl = make_cluster(dict(config(2000), shutdown_timeout=1))
    a, b, c = cl
    chname = hh.chan("room:")
    observers = [await ResilientSub([a], chname, "json", "obs-A", user="obs-a").start(),
                 await ResilientSub([b], chname, "msgpack", "obs-B", user="obs-b").start()]
    victims = [await ResilientSub([c, a, b], chname, "json", "victim-1", user="v1").start(),
               await ResilientSub([c, b, a], chname, "msgpack", "victim-2", user="v2").start()]
    subs = observers + victims
    dead_ids = {v.client_id for v in victims}
    qa, qb = await connect(a), await connect(b)

    async def presence_everywhere():
        pa = users_of(await qa.ok("presence", channel=chname))
        pb = users_of(await qb.ok("presence", channel=chname))
        return pa, pb

    everyone = {s.client_id: s.user for s in subs}
    async def all_present():
        pa, pb = await presence_everywhere()
        return pa == everyone and pb == everyone
    await hh.async_wait_for(all_present, t(5), interval=0.05,
                            what="presence of the 4 subscribers on nodes A and B")
    for o in observers:   # cross-node joins arrived
        await hh.async_wait_for(lambda: dead_ids <= {cid for cid, _ in o.joins}, t(5),
                                what="%s to get the joins of node C's clients" % o.label)

    pubs = [await Publisher(a, chname, "A", 50).start()]
    await hh.async_wait_for(lambda: len(pubs[0].oks()) >= 25, t(5), what="25 publishes ok")
    if how == "SIGKILL":
        c.kill()
    else:
        c.send_signal(signal.SIGTERM)
    killed = now()

    # the victims reconnect elsewhere with since and recover
    for v in victims:
        await v.until(lambda: len(v.client_ids) >= 2, t(10),
                      what="%s to reconnect to another node" % v.label)
    # node C's entries expire from presence within presence_ttl + one refresh
    limit = PRESENCE_TTL + PRESENCE_TTL / 3.0 + 1.5
    async def dead_gone():
        pa, pb = await presence_everywhere()
        return not (dead_ids & set(pa)) and not (dead_ids & set(pb))
    await hh.async_wait_for(dead_gone, t(limit + 3), interval=0.1,
                            what="node C's clients to leave presence on A and B")
    gone_after = now() - killed
    assert gone_after <= t(limit), "presence entries of the killed node lasted %.1fs " \
        "(presence_ttl %d s + refresh + slack = %.1fs)" % (gone_after, PRESENCE_TTL, limit)
    for o in observers:
        await hh.async_wait_for(lambda: dead_ids <= {cid for cid, _ in o.leaves}, t(5),
                                what=lambda: "%s to get leave pushes for %r (got %r)" % (
                                    o.label, dead_ids, o.leaves))
    # the reconnected victims are present, from either node
    now_ids = {o.client_id: o.user for o in observers}
    now_ids.update({v.client_id: v.user for v in victims})
    async def present_again():
        pa, pb = await presence_everywhere()
        return pa == now_ids and pb == now_ids
    await hh.async_wait_for(present_again, t(5), interval=0.05,
                            what=lambda: "presence == %r on A and B" % now_ids)

    await hh.async_wait_for(lambda: pubs[0].oks_sent_after(killed + gone_after) >= 10, t(5),
                            what="publishing to go on")
    await finish(cl, subs, pubs)
    if how == "SIGTERM":
        rc = await asyncio.to_thread(c.wait_exit, t(10))
        assert rc == 0, "node C exit status %r after SIGTERM" % rc
    for v in victims:
        assert v.recovered == [True], "%s: %r" % (v.label, v.recovered)
        if how == "SIGKILL":
            assert v.closes and v.closes[0][0] == 1006, "%s: %r" % (v.label, v.closes)
        else:
            assert v.closes and v.closes[0][0] == 4000, "%s: %r" % (v.label, v.closes)
            assert v.disconnects and v.disconnects[0].get("code") == 4000 and \
                v.disconnects[0].get("reconnect") is True, (v.label, v.disconnects)
    print("presence entries of the killed node gone after %.2fs" % gone_after)
    for o in observers:
        assert not o.closes, (o.label, o.closes)
        leaves = [cid for cid, _ in o.leaves]
        for d in dead_ids:
            assert leaves.count(d) == 1, "%s got %d leave pushes for %s" % (
                o.label, leaves.count(d), d)
        joins = [cid for cid, _ in o.joins]
        for v in victims:
            assert joins.count(v.client_ids[-1]) == 1, "%s got %d joins for %s's new " \
                "connection" % (o.label, joins.count(v.client_ids[-1]), v.label)
        own = o.client_ids[0]
        assert own not in leaves and own not in [cid for cid, _ in o.joins], \
            "%s got its own join/leave" % o.label


# --------------------------------------------------------------------------
# (d) Redis loses its data: subscribers are closed with 4003 and recover
#     with recovered:false in the new epoch

@pytest.mark.timeout(60)
async def test_redis_losing_its_data_closes_subscribers_with_4003(make_cluster):
    cl = make_cluster(config(2000))
    redis = cl.redis[0]
    chname = hh.chan("h:")
    subs, pub, old_epoch = await two_subs_after_five(cl, chname)

    redis.kill()
    redis.wipe()
    await wait_all(cl.nodes, ch.broker_down, t(5), what="every node /healthz broker down")
    await asyncio.to_thread(redis.start)
    await wait_all(cl.nodes, ch.broker_up, t(12), what="every node /healthz broker up")
    for s in subs:
        await s.until(lambda: s.recovered, t(10),
                      what=lambda: "%s to be closed with 4003 and to resubscribe "
                      "(closes %r, pubs %r)" % (s.label, s.closes, s.received[-3:]))
        assert [c for c, _ in s.closes] == [4003], (s.label, s.closes)
        assert s.disconnects and s.disconnects[0]["code"] == 4003 and \
            s.disconnects[0]["reconnect"] is True, (s.label, s.disconnects)
        assert s.recovered == [False], (s.label, s.recovered)
        assert s.epoch != old_epoch, "%s: the epoch did not change" % s.label
        assert [o for o, _, _ in s.segments[0]] == [1, 2, 3, 4, 5], s.segments[0]

    acked = {}
    for i in range(5):
        ok = await pub.ok("publish", channel=chname, data={"k": "new-%d" % i})
        assert ok["epoch"] != old_epoch
        acked[ok["offset"]] = "new-%d" % i
    for s in subs:
        await s.wait_offset(max(acked))
        await s.stop()
        assert s.epoch == ok["epoch"]
        ch.check_stream(s.label + " (new epoch)", s.segments[1], acked,
                        start=s.starts[1], epoch=ok["epoch"])


# --------------------------------------------------------------------------
# (e) one node cut off from Redis while the others keep publishing

@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["cut", "stall"])
async def test_one_node_cut_off_from_redis_while_the_others_publish(proxies, make_cluster, how):
    """Node B reaches Redis through a proxy that drops its connections
    ("cut") or stops forwarding so that only B's own timeout tells ("stall"),
    for 3 s, while A and C keep publishing. Back, B fills its subscriber's
    gap from the hot window of a channel whose namespace keeps 2000 (no
    disconnect); on a channel whose window (64) is shorter than the gap,
    B's subscriber gets disconnect 4003 and then recovered:false. Nodes A and
    C stay up and keep acknowledging throughout."""
    def via_proxy(redises):
        proxies.append(ch.TcpProxy(redises[0].port))
        return {1: [proxies[0].url]}
    cl = make_cluster(config(500), node_urls=via_proxy)
    proxy = proxies[0]
    a, b, c = cl
    hch, wch = hh.chan("h:"), hh.chan("w:")
    subs = [await ResilientSub([a], hch, "json", "h-sub-A").start(),
            await ResilientSub([b], hch, "msgpack", "h-sub-B").start(),
            await ResilientSub([c], hch, "json", "h-sub-C").start()]
    wsubs = [await ResilientSub([a], wch, "msgpack", "w-sub-A").start(),
             await ResilientSub([b], wch, "json", "w-sub-B").start()]
    pubs = [await Publisher(a, hch, "A", 100).start(),
            await Publisher(b, hch, "B", 30, "msgpack").start(),
            await Publisher(c, hch, "C", 30).start()]
    wpub = await Publisher(c, wch, "W", 60).start()
    await hh.async_wait_for(lambda: len(pubs[0].oks()) >= 30, t(5), what="30 publishes ok")

    getattr(proxy, how)()
    parted = now()
    try:
        await wait_all([b], ch.broker_down_on_every_worker,
                       max(0.5, parted + OUTAGE - 0.3 - now()),
                       what="node B /healthz 503 broker down, every worker's link down")
        noticed = now()
        await asyncio.sleep(max(0.0, parted + OUTAGE - now()))
        states = await health_states([a, c])
    finally:
        proxy.heal()
    healed = now()
    for node, st in zip((a, c), states):
        assert st[0] == 200 and st[1].get("broker") == "up", \
            "%s (not cut off) was not up during B's partition: %r" % (node.name, st)
    for s in subs + wsubs:
        assert not s.closes, "%s disconnected during B's partition: %r" % (s.label, s.closes)
    await wait_all([b], ch.broker_up, t(12), what="node B /healthz 200 broker up")
    up = now()
    await hh.async_wait_for(lambda: pubs[1].oks_sent_after(up) >= 10, t(5),
                            what="publishes through B ok again")
    wb = wsubs[1]
    await wb.until(lambda: wb.recovered, t(10),
                   what=lambda: "w-sub-B (gap longer than the window) to be closed "
                   "and to resubscribe (closes %r, at offset %s, wpub at %s)" % (
                       wb.closes, wb.offset, max(wpub.acked() or [0])))

    await finish(cl, subs, pubs)
    for s in subs:
        assert not s.closes, "%s was disconnected although the window (2000) covered " \
            "the gap: %r" % (s.label, s.closes)
    check_publishes_during_outage([pubs[1]], noticed, healed - 0.5 - IN_FLIGHT)
    for p in (pubs[0], pubs[2]):
        failed = [r["reply"] for r in p.records if "ok" not in r["reply"]]
        assert not failed, "publishes through %s failed while only B was cut off: %r" % (
            p.tag, failed[:3])

    await wpub.stop()
    final = await final_publication(a, wch)
    wacked = wpub.acked()
    wacked[final[0]] = final[1]
    for s in wsubs:
        await s.wait_offset(final[0])
        await s.stop()
    wsubs[0].check(wacked, wpub.ambiguous())
    assert [code for code, _ in wb.closes] == [4003], wb.closes
    assert wb.disconnects and wb.disconnects[0].get("code") == 4003 and \
        wb.disconnects[0].get("reconnect") is True, wb.disconnects
    assert wb.recovered == [False] and len(wb.segments) == 2, wb.recovered
    before, after = wb.segments
    last_before = before[-1][0] if before else wb.starts[0]
    assert wb.starts[1] - last_before > 10, \
        "recovered:false although only %d publications were missed (history_size 10)" % (
            wb.starts[1] - last_before)
    assert wb.epoch == wsubs[0].epoch, "the stream was not lost, its epoch must stay"
    ch.check_stream("w-sub-B before 4003", before, wacked, wpub.ambiguous(),
                    start=wb.starts[0], epoch=wb.epoch, upto=last_before)
    ch.check_stream("w-sub-B after 4003", after, wacked, wpub.ambiguous(),
                    start=wb.starts[1], epoch=wb.epoch)


# --------------------------------------------------------------------------
# (f) two Redis servers, one of them stopped

@pytest.mark.timeout(60)
async def test_one_of_two_redis_servers_stopped(make_cluster):
    """Channels on the Redis that stays up are not affected at all; those on
    the stopped one get 108 and recover their streams when it is back."""
    cl = make_cluster(config(2000), redis_names=("r0", "r1"))
    up_ch, down_ch = cl.chan("h:", 0), cl.chan("h:", 1)
    subs_up = [await ResilientSub([cl[i]], up_ch, enc, "up-sub-%d" % i).start()
               for i, enc in ((0, "json"), (1, "msgpack"), (2, "json"))]
    subs_down = [await ResilientSub([cl[i]], down_ch, enc, "down-sub-%d" % i).start()
                 for i, enc in ((0, "msgpack"), (1, "json"), (2, "msgpack"))]
    pubs_up = [await Publisher(cl[1], up_ch, "U", 60).start()]
    pubs_down = [await Publisher(cl[2], down_ch, "D", 60).start()]
    await hh.async_wait_for(lambda: len(pubs_down[0].oks()) >= 30, t(5), what="30 publishes ok")

    assert await asyncio.to_thread(cl.redis[1].stop) == 0
    stopped = now()
    await hh.async_wait_for(lambda: sum(1 for r in pubs_down[0].records
                                        if r["reply"] and "error" in r["reply"]) >= 5,
                            max(0.5, stopped + OUTAGE - 0.3 - now()),
                            what="publishes to the stopped shard to fail")
    noticed = now()
    # a node is degraded as soon as one of its links is down (docs/cluster.md)
    await wait_all(cl.nodes, ch.broker_down, max(0.5, stopped + OUTAGE - 0.3 - now()),
                   what="every node /healthz 503 broker down (one of its servers is)")
    # the other server's channels keep working, on every node
    for node in cl:
        q = await connect(node)
        assert (await q.ok("history", channel=up_ch, limit=1, reverse=True))["offset"] > 0
        await q.ok("subscribe", channel=up_ch)
        e = await q.error("subscribe", channel=down_ch)
        assert e["code"] == 108, e
        await q.close()
    await asyncio.sleep(max(0.0, stopped + OUTAGE - now()))
    back = now()
    await asyncio.to_thread(cl.redis[1].start)
    await hh.async_wait_for(lambda: pubs_down[0].oks_sent_after(back) >= 20, t(12),
                            what="publishes to the restarted shard ok again")
    await wait_all(cl.nodes, ch.broker_up, t(12), what="every node /healthz broker up")

    await finish(cl, subs_up, pubs_up, window_covers=True)
    await finish(cl, subs_down, pubs_down, window_covers=True)
    failed_up = [r["reply"] for r in pubs_up[0].records if "ok" not in r["reply"]]
    assert not failed_up, "publishes to the shard that stayed up failed: %r" % failed_up[:3]
    for s in subs_up:
        assert not s.closes, (s.label, s.closes)
    check_publishes_during_outage(pubs_down, noticed, back - IN_FLIGHT)
    check_no_ok_while_redis_silent(pubs_down, stopped, back)


# --------------------------------------------------------------------------
# (g) a channel's stream deleted from Redis (as evicted, or expired)

@pytest.mark.timeout(30)
async def test_stream_deleted_from_redis_closes_subscribers_with_4003(make_cluster):
    """The keys of a channel vanish from Redis while nodes have subscribers
    (evicted, FLUSHALL, expired): the next publication starts a new epoch,
    and every node closes its subscribers with 4003 instead of passing the
    new epoch's offsets on as if they continued the old stream."""
    cl = make_cluster(config(2000))
    chname = hh.chan("h:")
    subs, pub, old_epoch = await two_subs_after_five(cl, chname)
    redis = cl.redis[0]
    assert redis.command("DEL", ch.stream_key(chname, "herald", "s"),
                         ch.stream_key(chname, "herald", "w")) == 2
    ok = await pub.ok("publish", channel=chname, data={"k": "new-0"})
    assert ok["epoch"] != old_epoch and ok["offset"] == 1, ok
    acked = {1: "new-0"}
    for s in subs:
        await s.until(lambda: s.recovered, t(10),
                      what=lambda: "%s to be closed with 4003 and to resubscribe "
                      "(closes %r, received %r)" % (s.label, s.closes, s.received[-3:]))
    for i in range(1, 4):
        ok2 = await pub.ok("publish", channel=chname, data={"k": "new-%d" % i})
        acked[ok2["offset"]] = "new-%d" % i
    for s in subs:
        await s.wait_offset(max(acked))
        await s.stop()
        assert [c for c, _ in s.closes] == [4003], (s.label, s.closes)
        assert s.recovered == [False] and s.epoch == ok["epoch"], (s.label, s.recovered)
        assert [o for o, _, _ in s.segments[0]] == [1, 2, 3, 4, 5], \
            "%s passed on the new epoch's offsets as if they continued: %r" % (
                s.label, s.segments[0])
        ch.check_stream(s.label + " (new epoch)", s.segments[1], acked,
                        start=s.starts[1], epoch=ok["epoch"])


# --------------------------------------------------------------------------
# (h) presence across a partition longer than presence_ttl

@pytest.mark.timeout(60)
async def test_partitioned_node_clients_leave_and_join_again(proxies, make_cluster):
    """Node B cut off from Redis for longer than presence_ttl + a refresh:
    the other nodes drop B's client from presence and send a leave push,
    although it is still connected to B; when the partition heals B's
    refresh re-adds it and a join push announces it again."""
    def via_proxy(redises):
        proxies.append(ch.TcpProxy(redises[0].port))
        return {1: [proxies[0].url]}
    cl = make_cluster(config(2000), node_urls=via_proxy)
    proxy = proxies[0]
    a, b, c = cl
    chname = hh.chan("room:")
    obs = await ResilientSub([a], chname, "json", "obs-A", user="obs").start()
    cut_off = await ResilientSub([b], chname, "msgpack", "sub-B", user="bee").start()
    q = await connect(c)

    async def present():
        return users_of(await q.ok("presence", channel=chname))
    want = {obs.client_id: "obs", cut_off.client_id: "bee"}
    await hh.async_wait_for(lambda: present_is(present, want), t(5), interval=0.05,
                            what="both present")
    proxy.cut()
    cut = now()
    try:
        limit = PRESENCE_TTL + PRESENCE_TTL / 3.0 + 1.5
        await hh.async_wait_for(lambda: cut_off.client_id in {x for x, _ in obs.leaves},
                                t(limit + 1), interval=0.05,
                                what="a leave push for B's client on A")
        assert now() - cut <= t(limit), "leave after %.1fs" % (now() - cut)
        assert await present() == {obs.client_id: "obs"}
        assert not cut_off.closes, "B's client was disconnected: %r" % cut_off.closes
    finally:
        proxy.heal()
    await wait_all([b], ch.broker_up, t(12), what="node B up again")
    await hh.async_wait_for(lambda: [x for x, _ in obs.joins].count(cut_off.client_id) >= 2,
                            t(limit), interval=0.05,
                            what=lambda: "a second join push for B's client (joins %r)" % obs.joins)
    await hh.async_wait_for(lambda: present_is(present, want), t(5), interval=0.05,
                            what="B's client present again")
    await obs.stop()
    await cut_off.stop()
    assert not cut_off.closes and not obs.closes


async def present_is(present, want):
    return await present() == want


# --------------------------------------------------------------------------
# (i) Redis comes back with its last writes lost under the same epoch

@pytest.mark.timeout(30)
async def test_redis_rolled_back_under_the_same_epoch_closes_subscribers_with_4003(make_cluster):
    """As after a crash with appendfsync everysec: Redis returns with the
    same epoch but an older top (offsets 4 and 5 lost). The nodes notice
    when they reconnect (their links are cut here with CLIENT KILL) that
    the top is below what they delivered and close their subscribers with
    4003, instead of delivering new publications under offsets 4 and 5
    again."""
    cl = make_cluster(config(2000))
    redis = cl.redis[0]
    chname = hh.chan("h:")
    subs, pub, epoch = await two_subs_after_five(cl, chname)
    redis.command("ZREMRANGEBYSCORE", ch.stream_key(chname, "herald", "w"), 4, 5)
    redis.command("HSET", ch.stream_key(chname, "herald", "s"), "t", 3)
    killed = redis.command("CLIENT", "KILL", "TYPE", "normal") + \
        redis.command("CLIENT", "KILL", "TYPE", "pubsub")
    # (a node drops its pub/sub connection with its command connection)
    assert killed >= 3 * 2, "expected every worker's links to be cut, killed %d" % killed
    for s in subs:
        await s.until(lambda: s.recovered, t(12),
                      what=lambda: "%s to be closed with 4003 and to resubscribe "
                      "(closes %r, received %r)" % (s.label, s.closes, s.received[-3:]))
    acked = {}
    deadline = now() + t(10)
    while len(acked) < 3:
        r = await pub.call("publish", channel=chname, data={"k": "new-%d" % len(acked)})
        if "error" in r:       # node C may still be reconnecting
            assert r["error"]["code"] == 108 and now() < deadline, r
            await asyncio.sleep(0.1)
            continue
        assert r["ok"]["epoch"] == epoch
        acked[r["ok"]["offset"]] = "new-%d" % len(acked)
    assert sorted(acked) == [4, 5, 6], acked
    for s in subs:
        await s.wait_offset(6)
        await s.stop()
        assert [c for c, _ in s.closes] == [4003], (s.label, s.closes)
        assert s.recovered == [False], (s.label, s.recovered)
        assert [(o, k) for o, _, k in s.segments[0]] == [(i + 1, "old-%d" % i) for i in range(5)], \
            "%s: %r" % (s.label, s.segments[0])
        assert s.starts[1] == 3, s.starts
        ch.check_stream(s.label + " after the roll-back", s.segments[1], acked, start=3,
                        epoch=epoch)


# --------------------------------------------------------------------------
# (j) only the pub/sub flow of one node black-holed

def notice_bound(redis_timeout_ms):
    """How long a node may take to notice a silent pub/sub connection: a
    heartbeat goes out at most every redis_timeout_ms / 2 (1 s at most) and
    must be back within redis_timeout_ms, sent and checked on a 100 ms
    tick; plus a second of slack for a loaded machine."""
    ms = redis_timeout_ms
    return t((min(1000, ms / 2) + ms + 200) / 1000.0 + 1.0)


@pytest.mark.timeout(60)
async def test_pubsub_flow_blackholed_is_noticed_and_repaired(proxies, make_cluster):
    """Node B reaches Redis through a proxy that stops forwarding B's
    pub/sub connections only (both directions), keeping them open, as a
    stateful firewall that lost one flow would; B's command connections keep
    working, so no command times out. B must notice by the heartbeat that
    goes through pub/sub, say so in /healthz while it cannot reconnect, and
    once it can, repair: its subscribers get every publication made
    meanwhile (the window covers the gap), or 4003 and recovered:false
    where it does not - never a silent gap."""
    timeout_ms = 500

    def via_proxy(redises):
        proxies.append(ch.TcpProxy(redises[0].port))
        return {1: [proxies[0].url]}
    cl = make_cluster(config(timeout_ms), n=2, node_urls=via_proxy)
    proxy = proxies[0]
    a, b = cl
    hch, wch = hh.chan("h:"), hh.chan("w:")
    subs = [await ResilientSub([a], hch, "json", "h-sub-A").start(),
            await ResilientSub([b], hch, "msgpack", "h-sub-B").start(),
            await ResilientSub([b], hch, "json", "h-sub-B2").start()]
    wsub = await ResilientSub([b], wch, "json", "w-sub-B").start()
    pubs = [await Publisher(a, hch, "A", 50).start()]
    wpub = await Publisher(a, wch, "W", 100).start()
    await hh.async_wait_for(lambda: len(pubs[0].oks()) >= 20, t(5), what="20 publishes ok")
    # every worker of B has its pub/sub connection through the proxy
    assert proxy.pubsub_flows() == b.workers, proxy.pubsub_flows()
    # and B's sockets to Redis (here: to the proxy) have TCP keepalive on
    ss = subprocess.run(["ss", "-tnoH", "state", "established",
                         "( dport = :%d )" % proxy.port],
                        capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(ss) == 2 * b.workers and all("keepalive" in x for x in ss), ss

    held = proxy.blackhole_pubsub()
    assert held == b.workers, held
    holed = now()
    try:
        await wait_all([b], ch.broker_down, notice_bound(timeout_ms),
                       what="node B /healthz 503 broker down (its pub/sub is silent)")
        noticed = now()
        print("noticed after %.2fs" % (noticed - holed))

        def silent_workers():
            return {l.get("worker") for l in b.log_lines()
                    if l.get("msg") == "broker down" and "pub/sub" in str(l.get("reason"))}
        # every worker notices by its own heartbeat, within the bound
        await hh.async_wait_for(lambda: len(silent_workers()) == b.workers,
                                max(0.1, holed + notice_bound(timeout_ms) - now()),
                                what=lambda: "every worker of B to log its pub/sub silent "
                                "(%r)" % [l for l in b.log_lines() if l.get("msg") == "broker down"])
        # while down: B's clients stay, B's commands get 108, A is unaffected
        probe = await connect(b)
        e = await probe.error("publish", channel=hch, data={"k": "probe"})
        assert e["code"] == 108, e
        await probe.close()
        assert ch.broker_up(a)
        # down long enough for more than the window channel's 64
        await hh.async_wait_for(lambda: wpub.oks_sent_after(holed) >= 100, t(10),
                                what="100 publications to the window channel meanwhile")
        assert ch.broker_down(b)
    finally:
        proxy.heal()
    await wait_all([b], ch.broker_up, t(12), what="node B /healthz 200 broker up")
    for s in subs:
        assert not s.closes, "%s disconnected: %r" % (s.label, s.closes)

    # the window channel (64) lost more than its window meanwhile: 4003
    await wsub.until(lambda: wsub.recovered, t(10),
                     what=lambda: "w-sub-B to be closed with 4003 and resubscribe "
                     "(closes %r)" % wsub.closes)
    await finish(cl, subs, pubs, window_covers=True)
    await wpub.stop()
    final = await final_publication(a, wch)
    wacked = wpub.acked()
    wacked[final[0]] = final[1]
    await wsub.wait_offset(final[0])
    await wsub.stop()
    assert [code for code, _ in wsub.closes] == [4003], wsub.closes
    assert wsub.recovered == [False] and len(wsub.segments) == 2, wsub.recovered
    before, after = wsub.segments
    last_before = before[-1][0] if before else wsub.starts[0]
    ch.check_stream("w-sub-B before 4003", before, wacked, wpub.ambiguous(),
                    start=wsub.starts[0], epoch=wsub.epoch, upto=last_before)
    ch.check_stream("w-sub-B after 4003", after, wacked, wpub.ambiguous(),
                    start=wsub.starts[1], epoch=wsub.epoch)
    assert wsub.starts[1] - last_before > 64, \
        "recovered:false although the window still held the gap (%d missed)" % (
            wsub.starts[1] - last_before)


# --------------------------------------------------------------------------
# (k) a client moving from a node ahead to a node behind

@pytest.mark.timeout(60)
async def test_subscribe_since_beyond_a_lagging_node_waits_for_it(proxies, make_cluster):
    """Node B's pub/sub lags (its records arrive two seconds late through
    a proxy; the heartbeat's timeout, 5 s, is longer). A client that has
    everything up to offset N from node A subscribes on B with since N
    while B has delivered less: B must not answer recovered:false at an
    offset below N and then push what the client has; it waits until it
    has caught up and answers recovered:true at N, and the next push is
    N+1. A since beyond what the stream ever had is answered
    recovered:false (honestly: that position does not exist)."""
    def via_proxy(redises):
        proxies.append(ch.TcpProxy(redises[0].port))
        return {1: [proxies[0].url]}
    cl = make_cluster(config(5000), n=2, node_urls=via_proxy)
    proxy = proxies[0]
    a, b = cl
    chname = hh.chan("h:")
    # B follows the channel (a subscriber there), then its pub/sub lags
    local = await connect(b)
    await local.ok("subscribe", channel=chname)
    pub = await connect(a)
    await pub.ok("publish", channel=chname, data={"k": "warm"})
    assert (await local.push("pub"))["offset"] == 1
    proxy.delay_pubsub(2.0)

    mover = await connect(a)
    first = await mover.ok("subscribe", channel=chname)
    for i in range(5):
        ok = await pub.ok("publish", channel=chname, data={"k": "p%d" % i})
    got = [(await mover.push("pub"))["offset"] for _ in range(5)]
    assert got == [2, 3, 4, 5, 6], got
    top, epoch = ok["offset"], ok["epoch"]

    moved = await connect(b)
    # (the case under test: B has not delivered `top` yet, its records are
    # two seconds late)
    assert local.pushes.empty(), "B delivered before the client moved: nothing tested"
    r = await moved.ok("subscribe", channel=chname, since={"offset": top, "epoch": epoch})
    assert r["recovered"] is True and r["epoch"] == epoch and r["offset"] == top, r
    assert r.get("publications", []) == [], r
    ok = await pub.ok("publish", channel=chname, data={"k": "next"})
    p = await moved.push("pub")
    assert p["offset"] == ok["offset"] == top + 1, \
        "after recovering at %d the first push was %d (a duplicate)" % (top, p["offset"])

    # a position the stream never reached: recovered:false, not a wait forever
    bogus = await connect(b)
    r = await bogus.ok("subscribe", channel=chname,
                       since={"offset": top + 1000, "epoch": epoch})
    assert r["recovered"] is False and r["epoch"] == epoch, r
    assert r["offset"] <= top + 1, r
    assert first["offset"] == 1
