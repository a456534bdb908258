#!/usr/bin/env python3
"""The summary of a bench/soak.sh run (also usable on its own).

    soak_summary.py OUT [BENCH_STATUS [RSS_GROWTH_MIB [RSS_SLOPE_MIB_MIN]]]

Reads OUT/samples.csv (herald-bench churn --samples: one row a second, the
bench's counters and every server's pid, RSS and CPU time), OUT/churn.json
(the bench's report) and OUT/events.csv (the faults soak.sh caused), and
prints a Markdown summary: per server the RSS at the end of the warm-up,
its maximum and last value after it, and the slope (least squares,
MiB/min) over the whole measured part and over its second half (after the
faults); the faults; the stream checks (gaps, duplicates, misreported
recoveries, regressions, unexpected events, recovered:false and what it
announced as lost, reported apart, publish errors, witnesses); the churn,
reconnects and resets. Exit status 1 when the bench failed (BENCH_STATUS
not 0, or its report shows a gap, a duplicate, a misreported recovery, a
regression, an unexpected event or a witness behind), when a herald node's
RSS at the end is more than RSS_GROWTH_MIB (32) above its value at the end
of the warm-up, or when its slope over the second half exceeds
RSS_SLOPE_MIB_MIN (1.0); 2 when the files are missing.
"""
import csv
import json
import os
import sys


def slope_per_min(points):
    """Least-squares slope of (t seconds, v) points, in v per minute."""
    n = len(points)
    if n < 2:
        return None
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return 60.0 * sum((t - mt) * (v - mv) for t, v in points) / var


def fmt(v, spec="%.1f"):
    return "-" if v is None else spec % v


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = sys.argv[1]
    status = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    growth_max = float(sys.argv[3]) if len(sys.argv) > 3 else 32.0
    slope_max = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    try:
        with open(os.path.join(out, "samples.csv")) as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        print("soak summary: %s" % e, file=sys.stderr)
        return 2
    try:
        with open(os.path.join(out, "churn.json")) as f:
            rep = json.load(f)
    except (OSError, ValueError):
        rep = None
    events = []
    try:
        with open(os.path.join(out, "events.csv")) as f:
            events = list(csv.DictReader(f))
    except OSError:
        pass
    cmd = None
    try:
        with open(os.path.join(out, "command.txt")) as f:
            cmd = f.read().strip()
    except OSError:
        pass

    labels = [k[: -len("_rss_mib")] for k in (rows[0].keys() if rows else [])
              if k.endswith("_rss_mib")]
    warm = [r for r in rows if r["phase"] == "warmup"]
    meas = [r for r in rows if r["phase"] == "measure"]
    bad = []
    lines = ["# Soak summary (%s)" % os.path.basename(os.path.normpath(out)), ""]
    if cmd:
        lines += ["Bench: `%s`" % cmd, ""]
    if meas:
        t_a, t_b = float(meas[0]["t_s"]), float(meas[-1]["t_s"])
        lines.append("Measured %.0f s after %.0f s of warm-up (%d samples)." % (
            t_b - t_a + 1, t_a - float(warm[0]["t_s"]) + 1 if warm else 0, len(meas)))
    else:
        lines.append("No measured samples.")
        bad.append("no measured samples")
    lines.append("")

    # Memory.
    lines += ["## Memory (RSS, MiB)", "",
              "| process | warm-up end | max after | last | growth | slope, measured (MiB/min)"
              " | slope, 2nd half (MiB/min) | restarts |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    half = None
    if meas:
        half = float(meas[0]["t_s"]) + (float(meas[-1]["t_s"]) - float(meas[0]["t_s"])) / 2
    for l in labels:
        def rss(r):
            v = r.get(l + "_rss_mib", "")
            return float(v) if v else None
        base = next((rss(r) for r in reversed(warm) if rss(r) is not None), None)
        after = [rss(r) for r in meas if rss(r) is not None]
        last = after[-1] if after else None
        mx = max(after) if after else None
        pts = [(float(r["t_s"]), rss(r)) for r in meas
               if rss(r) is not None and float(r["t_s"]) >= half]
        sl = slope_per_min(pts)
        sl_all = slope_per_min([(float(r["t_s"]), rss(r)) for r in meas
                                if rss(r) is not None])
        pids = []
        for r in rows:
            p = r.get(l + "_pid")
            if p and p != "0" and (not pids or pids[-1] != p):
                pids.append(p)
        growth = (last - base) if last is not None and base is not None else None
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %d |" % (
            l, fmt(base), fmt(mx), fmt(last), fmt(growth, "%+.1f"), fmt(sl_all, "%+.2f"),
            fmt(sl, "%+.2f"), max(0, len(pids) - 1)))
        if l.startswith("node"):
            if growth is None or sl is None:
                bad.append("%s: no RSS samples" % l)
            else:
                if growth > growth_max:
                    bad.append("%s: RSS grew %.1f MiB after the warm-up (limit %.0f)" % (
                        l, growth, growth_max))
                if sl > slope_max:
                    bad.append("%s: RSS slope %.2f MiB/min over the second half (limit %.2f)" % (
                        l, sl, slope_max))
    lines += ["", "Limits for the herald nodes: growth after the warm-up <= %.0f MiB,"
              " slope over the second half <= %.2f MiB/min. Redis restarts with"
              " its data and FerretDB is paused, not restarted." % (growth_max, slope_max), ""]

    # Faults.
    if events:
        lines += ["## Faults", "", "| t (s) | event |", "|---:|---|"]
        for e in events:
            lines.append("| %s | %s |" % (e["t_s"], e["event"]))
        lines.append("")

    # Streams.
    lines += ["## Streams", ""]
    if rep is None:
        bad.append("no bench report (churn.json)")
        lines.append("No bench report.")
    else:
        w = rep.get("witness", {})
        ch = rep.get("churn", {})
        rc = rep.get("recovery", {})
        sc = rep.get("server_closes", {})
        lat = rep.get("latency", {})
        rows_t = [
            ("gaps (must be 0)", rep.get("gaps")),
            ("duplicates (must be 0)", "%d (dropped by the client library: %d)" % (
                rep.get("duplicates", 0), rep.get("duplicates_dropped_by_client", 0))),
            ("misreported recoveries (must be 0)", rep.get("false_recoveries")),
            ("recoveries below the client's position (regressions, must be 0)",
             rep.get("regressions")),
            ("unexpected events (must be 0)", rep.get("unexpected_events")),
            ("lost, announced (recovered:false)", "%d publications in %d recoveries (new epoch: %d)" % (
                rep.get("lost", 0), rc.get("recovered_false", 0), rc.get("epoch_changes", 0))),
            ("recovered:true", rc.get("recovered_true")),
            ("publications acknowledged", rep.get("publications_total", 0)),
            ("publish errors", "%d (%d refused by the server, %d unanswered: connection lost)" % (
                rep.get("failed_publishes", 0),
                rep.get("failed_publishes", 0) - rep.get("uncertain_publishes", 0),
                rep.get("uncertain_publishes", 0))),
            ("delivered to the witnesses", "%d (%d witnesses; acknowledged but not delivered: %d;"
             " witnesses behind: %d; caught up in %.1f s)" % (
                 rep.get("witness_deliveries", 0), rep.get("witnesses", 0),
                 w.get("undelivered_acked", 0), w.get("behind", 0), w.get("drain_s", -1))),
            ("deliveries, all clients", rep.get("deliveries_total")),
            ("publish-to-delivery (live)", "p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
                lat.get("p50_us", 0) / 1e3, lat.get("p99_us", 0) / 1e3, lat.get("max_us", 0) / 1e3)),
            ("server closes", "4003: %d, 4001: %d, 4000: %d, other: %d" % (
                sc.get("4003", 0), sc.get("4001", 0), sc.get("4000", 0), sc.get("other", 0))),
            ("connections", "%d opened; %d closed, %d cut, %d dropped and recovered by the library" % (
                ch.get("opens", 0), ch.get("closes", 0), ch.get("cuts", 0), ch.get("drops", 0))),
            ("reconnects", "%d: %d replacements after a close or cut, %d by the library after a"
             " drop, %d after the server or a fault ended the connection" % (
                 ch.get("closes", 0) + ch.get("cuts", 0) + ch.get("drops", 0)
                 + rep.get("disconnects", 0),
                 ch.get("closes", 0) + ch.get("cuts", 0), ch.get("drops", 0),
                 rep.get("disconnects", 0))),
            ("subscriptions", "%d unsubscribes, %d subscribes with since, %d switches, %d refused (%d with 108)" % (
                ch.get("unsubscribes", 0), ch.get("subscribes_with_since", 0), ch.get("switches", 0),
                ch.get("subscribes_refused", 0), ch.get("subscribes_refused_108", 0))),
            ("subscribes unanswered for 30 s or more at the end", "%d (longest wait %.1f s)" % (
                ch.get("subscribes_stalled", 0), ch.get("subscribe_longest_wait_s", 0))),
            ("errors (bench; refused publishes included)", rep.get("errors")),
        ]
        lines += ["| check | value |", "|---|---|"]
        for k, v in rows_t:
            lines.append("| %s | %s |" % (k, v))
        lines.append("")
        if (rep.get("gaps") or rep.get("duplicates") or rep.get("false_recoveries")
                or rep.get("regressions") or rep.get("unexpected_events")):
            bad.append("gaps %d, duplicates %d, misreported recoveries %d, regressions %d,"
                       " unexpected events %d" % (
                           rep.get("gaps", 0), rep.get("duplicates", 0),
                           rep.get("false_recoveries", 0), rep.get("regressions", 0),
                           rep.get("unexpected_events", 0)))
        if not w.get("drained", False):
            bad.append("witnesses did not receive every acknowledged publication"
                       " (%d behind, %d publications)" % (w.get("behind", 0), w.get("undelivered_acked", 0)))
    if status != 0:
        bad.append("herald-bench exited %d (logs/bench.err)" % status)
    lines.append("Verdict: " + ("PASS" if not bad else "FAIL: " + "; ".join(bad)))
    print("\n".join(lines))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
