#!/usr/bin/env python3
"""Prints the side-by-side tables of bench/RESULTS.md from the reports that
bench/compare.sh wrote (DIR/<step>.<target>.json): per step, each target's
figures and their ratio to Herald's, measured in the same run.

    bench/compare.py DIR
"""
import glob
import json
import os
import sys

ORDER = ["herald", "nchan", "socketio", "centrifugo"]


def load(d):
    runs = {}
    for path in sorted(glob.glob(os.path.join(d, "*.json"))):
        step, target = os.path.basename(path)[:-5].split(".", 1)
        with open(path) as f:
            runs.setdefault(step, {})[target] = json.load(f)
    return runs


def server_sum(r, key):
    """Sum of a per-server figure over every server process sampled."""
    vals = [s.get(key) for s in r.get("servers", []) if s.get("ok")]
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def ratio(v, base, invert=False):
    if v is None or base in (None, 0) or v == 0:
        return "-"
    x = base / v if invert else v / base
    return "%.2fx" % x


def fmt(v, spec="%.0f"):
    return "-" if v is None else spec % v


def stream_table(step, runs):
    base = runs.get("herald")
    print("\n### %s\n" % step)
    print("| target | deliveries/s | vs herald | server ns/delivery | vs herald "
          "| p50 us | p99 us | server CPU | bench CPU | gaps | dups | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for t in ORDER:
        r = runs.get(t)
        if not r:
            continue
        ns = server_sum(r, "ns_per_delivery")
        cpu = server_sum(r, "cpu_util")
        bns = server_sum(base, "ns_per_delivery") if base else None
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %d |" % (
            t, fmt(r.get("deliveries_per_s")),
            ratio(r.get("deliveries_per_s"), base and base.get("deliveries_per_s")),
            fmt(ns), ratio(ns, bns), fmt(r["latency"]["p50_us"]),
            fmt(r["latency"]["p99_us"]),
            fmt(cpu * 100 if cpu is not None else None, "%.0f%%"),
            fmt(r["bench"]["cpu_util"] * 100, "%.0f%%"),
            r.get("gaps", 0), r.get("duplicates", 0), r.get("errors", 0)))


def conns_table(step, runs):
    base = runs.get("herald")
    print("\n### %s\n" % step)
    print("| target | connections | failures | connects/s | server RSS/conn "
          "| server PSS/conn | PSS vs herald |")
    print("|---|---|---|---|---|---|---|")
    for t in ORDER:
        r = runs.get(t)
        if not r:
            continue
        pss = r.get("server_pss_per_conn_bytes")
        bpss = base.get("server_pss_per_conn_bytes") if base else None
        print("| %s | %d | %d | %s | %s B | %s B | %s |" % (
            t, r.get("connections", 0), r.get("failures", 0),
            fmt(r.get("connects_per_s")),
            fmt(r.get("server_rss_per_conn_bytes")), fmt(pss), ratio(pss, bpss)))


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    runs = load(sys.argv[1])
    if not runs:
        print("compare.py: no reports in %s" % sys.argv[1], file=sys.stderr)
        return 1
    order = ["fanout1k", "fanout10k", "latency1k", "latency10k", "conns10k"]
    for step in sorted(runs, key=lambda k: (order.index(k) if k in order
                                            else len(order), k)):
        if step.startswith("conns"):
            conns_table(step, runs[step])
        else:
            stream_table(step, runs[step])
    return 0


if __name__ == "__main__":
    sys.exit(main())
