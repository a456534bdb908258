#!/usr/bin/env python3
"""Adds up herald-bench connections reports of runs made side by side (one
per herald process, see bench/connections-100k.sh): connections, failures,
the connect rate over the common ramp (total / longest ramp), and server
memory per connection over every server (RSS growth and PSS growth over
the idle servers, summed, divided by all connections).

    bench/sum_connections.py REPORT.json...
"""
import json
import sys


def main(paths):
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    reps = []
    for p in paths:
        with open(p) as f:
            reps.append(json.load(f))
    conns = sum(r["connections"] for r in reps)
    fails = sum(r["failures"] for r in reps)
    drops = sum(r.get("disconnects", 0) for r in reps)
    ramp = max(r["ramp_s"] for r in reps)
    rss = pss = rss_total = 0
    for r in reps:
        for s in r["servers"]:
            if not s.get("ok"):
                print("server %s not sampled" % s["pid"], file=sys.stderr)
                return 1
            rss += s["rss_bytes"] - s["rss_before_bytes"]
            pss += s["pss_bytes"] - s["pss_before_bytes"]
            rss_total += s["rss_bytes"]
    p99 = max(r["connect_latency"]["p99_us"] for r in reps)
    out = {
        "processes": len(reps),
        "connections": conns,
        "failures": fails,
        "disconnects": drops,
        "ramp_s": ramp,
        "connects_per_s": conns / ramp if ramp else None,
        "connect_p99_us_max": p99,
        "server_rss_per_conn_bytes": rss / conns if conns else None,
        "server_pss_per_conn_bytes": pss / conns if conns else None,
        "server_rss_total_per_conn_bytes": rss_total / conns if conns else None,
        "commands": [r["command"] for r in reps],
    }
    print(json.dumps(out, indent=2))
    return 0 if conns and not fails else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
