#!/usr/bin/python3
"""What the default namespace's short history costs in memory.

Starts herald side by side with no configuration file, one with the
built-in defaults (history_size 100, history_ttl 120 s), one with history
off (HERALD_NAMESPACE_DEFAULTS__HISTORY_SIZE=0) and one with the defaults
under a small history_memory_mb (--bound-mb), publishes the same
CHANNELS x PUBS publications of SIZE bytes of data to each (no
subscribers: what is kept is the history alone), and reads both
processes' RSS and the channel streams they keep (/healthz) before and
right after each one's publishing, which finishes well inside
history_ttl: every ring is full when RSS is read.

    make build && bench/history_memory.py            # 10,000 x 100 x 100 B
    bench/history_memory.py --channels 1000 --pubs 10 --json out.json

Raw output (--json) goes wherever you say, bench/results/ by convention
(ignored by git); the table and its command are in bench/RESULTS.md.
Needs python3-websockets (scripts/deps.sh).
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def healthz(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=10) as r:
        return json.load(r)


def start(binary, workers, extra_env):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(extra_env)
    env["HERALD_LOG_LEVEL"] = "warn"
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:%d" % port, "--workers", str(workers)],
                         env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            healthz(port)
            return p, port
        except OSError:
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("herald did not start")
            time.sleep(0.05)


async def publish_all(port, channels, pubs, size, batch):
    """Every channel gets `pubs` publications; commands go in frames of
    `batch` (JSON lines), each frame's replies awaited before the next so
    the server's queues stay small."""
    data = "x" * size
    async with websockets.connect("ws://127.0.0.1:%d/ws" % port, max_size=None,
                                  ping_interval=None, compression=None) as ws:
        cid = 0
        cmds = []
        for k in range(pubs):
            for i in range(channels):
                cid += 1
                cmds.append(json.dumps({"id": cid, "op": "publish",
                                        "channel": "mem.%d" % i, "data": data}))
                if len(cmds) == batch:
                    await send_batch(ws, cmds)
                    cmds = []
        if cmds:
            await send_batch(ws, cmds)


async def send_batch(ws, cmds):
    await ws.send("\n".join(cmds))
    want = len(cmds)
    got = 0
    while got < want:
        frame = await ws.recv()
        for line in frame.split("\n"):
            m = json.loads(line)
            if "error" in m:
                raise RuntimeError("publish failed: %r" % m)
            got += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--herald", default=os.path.join(ROOT, "build", "bin", "herald"))
    ap.add_argument("--channels", type=int, default=10000)
    ap.add_argument("--pubs", type=int, default=100, help="publications per channel")
    ap.add_argument("--size", type=int, default=100, help="bytes of data per publication")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=200,
                    help="commands per frame (under max_message_size, 64 KiB)")
    ap.add_argument("--bound-mb", type=int, default=128,
                    help="a third server: the defaults under history_memory_mb = this "
                         "(0: none)")
    ap.add_argument("--json", help="write the raw figures here")
    a = ap.parse_args()

    runs = [("defaults (history 100, 120 s)", {}),
            ("history off (history_size 0)", {"HERALD_NAMESPACE_DEFAULTS__HISTORY_SIZE": "0"})]
    if a.bound_mb:
        runs.append(("defaults, history_memory_mb %d" % a.bound_mb,
                     {"HERALD_HISTORY_MEMORY_MB": str(a.bound_mb)}))
    procs = []
    try:
        for name, env in runs:
            p, port = start(a.herald, a.workers, env)
            procs.append((name, p, port))
        before = {name: rss_kib(p.pid) for name, p, _ in procs}
        out = []
        for name, p, port in procs:
            # each server is measured right after its own publishing, so
            # its rings are full (well inside history_ttl)
            t0 = time.monotonic()
            asyncio.run(publish_all(port, a.channels, a.pubs, a.size, a.batch))
            took = time.monotonic() - t0
            h = healthz(port)
            after = rss_kib(p.pid)
            if took > 100:
                print("warning: publishing took %.0f s; some history may have expired" % took,
                      file=sys.stderr)
            out.append({"run": name, "rss_before_kib": before[name], "rss_after_kib": after,
                        "grew_kib": after - before[name], "channels_kept": h["channels"],
                        "channels_evicted": h["channels_evicted"],
                        "publish_s": round(took, 1)})
    finally:
        for _, p, _ in procs:
            p.terminate()
            p.wait(timeout=30)
    total = a.channels * a.pubs
    report = {"channels": a.channels, "pubs_per_channel": a.pubs, "size": a.size,
              "workers": a.workers, "publications": total, "runs": out,
              "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])}
    on, off = out[0], out[1]
    report["history_cost_kib"] = on["rss_after_kib"] - off["rss_after_kib"]
    report["bytes_per_kept_publication"] = round(report["history_cost_kib"] * 1024 / total)
    print("| run | channel streams kept | evicted | RSS before (MiB) | RSS after (MiB) | grew (MiB) |")
    print("|---|---|---|---|---|---|")
    for r in out:
        print("| %s | %d | %d | %.1f | %.1f | %.1f |" % (
            r["run"], r["channels_kept"], r["channels_evicted"], r["rss_before_kib"] / 1024,
            r["rss_after_kib"] / 1024, r["grew_kib"] / 1024))
    print("\n%d publications of %d bytes kept: %.1f MiB more RSS with the defaults, "
          "%d bytes per kept publication" % (total, a.size, report["history_cost_kib"] / 1024,
                                             report["bytes_per_kept_publication"]))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
