#!/usr/bin/python3
"""Renders herald-bench JSON reports as one self-contained HTML page.

    /usr/bin/python3 bench/report.py [--results DIR] [--out FILE] [REPORT.json ...]

Reads every herald-bench report (a JSON object with a "scenario") in DIR
(default: the results folder beside this script, bench/results, which git
ignores: raw reports stay out of the repository) or the files given, and writes DIR/report.html
(or FILE): a summary table, then per run the commands (herald's, as
bench/run.sh recorded it under "suite", and the bench's own), the key
figures, a latency distribution plot (percentile spectrum from the
histogram buckets, log axes) and a throughput-over-time plot (the per-second
timeline, phases shaded). When reports of the same scenario and parameters
exist for several targets (top-level "target": herald when absent, or
nchan, socketio, centrifugo), a comparison section gives each target's
figures and its ratio to herald's.

Plots are made with matplotlib (Debian python3-matplotlib, installed by
`scripts/deps.sh bench`) and embedded as inline SVG; the page needs no
other file. Field meanings: bench/README.md.
"""

import argparse
import datetime
import glob
import html
import io
import json
import os
import sys

# Where make bench and the bench scripts write their reports (ignored by
# git), whatever the current directory.
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.patches import Patch  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.grid": True,
                     "grid.alpha": 0.3})

# bench/run.sh's steps, in the order the suite runs them.
STEP_ORDER = ["fanout-1k", "fanout-10k", "fanout-1k-rate", "fanout-10k-rate",
              "connections-15k", "reconnect-10k", "request"]

PHASE_COLORS = {"setup": "#bbbbbb", "warmup": "#f5d76e", "measure": "#9fd89f",
                "recover": "#f4a6a6", "drain": "#a9c8f0"}

# Per scenario: throughput field and unit, latency object, server CPU field.
SCENARIO = {
    "fanout": ("deliveries_per_s", "deliveries/s", "latency", "ns_per_delivery"),
    "reconnect": ("deliveries_per_s", "deliveries/s", "latency", "ns_per_delivery"),
    "request": ("requests_per_s", "requests/s", "latency", "ns_per_request"),
    "connections": ("connects_per_s", "connects/s", "connect_latency", "ns_per_connection"),
}
LATENCY_LABELS = {"latency": "publish to delivery", "ack_latency": "publish acknowledgement",
                  "connect_latency": "connect (WebSocket + connect reply)"}
# request's latency is a round trip, not a delivery.
REQUEST_LATENCY_LABEL = "publish round trip"

# Parameters that may differ between reports that are still comparable:
# where the server is, how the bench names channels, spreads source
# addresses and reads subscriptions (sub_transport: the peer's driver, or
# Herald's fast or client path).
NOT_COMPARED = {"url", "target", "channel_prefix", "conns_per_addr", "sub_transport"}


# --------------------------------------------------------------------------
# Loading

def load_reports(paths):
    runs = []
    for path in paths:
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, ValueError) as e:
            print("report: skipping %s: %s" % (path, e), file=sys.stderr)
            continue
        if not isinstance(r, dict) or "scenario" not in r:
            continue
        r["_file"] = os.path.basename(path)
        r["_name"] = (r.get("suite") or {}).get("step") or os.path.splitext(r["_file"])[0]
        runs.append(r)

    def order(r):
        name = r["_name"]
        idx = STEP_ORDER.index(name) if name in STEP_ORDER else len(STEP_ORDER)
        return (idx, r["scenario"], target(r) != "herald", target(r), r["_file"])
    return sorted(runs, key=order)


def target(r):
    return r.get("target") or "herald"


# --------------------------------------------------------------------------
# Numbers

def num(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) and not digits:
        return "{:,}".format(v)
    if isinstance(v, (int, float)):
        if digits == 0 and abs(v) >= 100:
            return "{:,.0f}".format(v)
        return "{:,.{}f}".format(v, digits if digits else (1 if abs(v) >= 10 else 2))
    return str(v)


def us(v):
    """A latency in microseconds, in a readable unit."""
    if v is None:
        return "–"
    if v >= 1e6:
        return "%.2f s" % (v / 1e6)
    if v >= 1e3:
        return "%.1f ms" % (v / 1e3)
    return "%.0f µs" % v


def nbytes(v):
    if v is None:
        return "–"
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(v) >= scale:
            return "%.1f %s" % (v / scale, unit)
    return "%.0f B" % v


def servers_sum(r, key):
    """The sum of a server figure over every --server-pid (None if none has it)."""
    vals = [s.get(key) for s in r.get("servers", []) if s.get(key) is not None]
    return sum(vals) if vals else None


def headline(r):
    """Throughput, its unit, the main latency object, server ns per operation."""
    tput_key, unit, lat_key, ns_key = SCENARIO.get(
        r["scenario"], ("deliveries_per_s", "per s", "latency", "ns_per_delivery"))
    return r.get(tput_key), unit, r.get(lat_key) or {}, servers_sum(r, ns_key), ns_key


# --------------------------------------------------------------------------
# Plots

def svg_of(fig):
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # inline: no XML declaration or DOCTYPE


PCT_TICKS = [(0.0, "0%"), (0.5, "50%"), (0.9, "90%"), (0.99, "99%"), (0.999, "99.9%"),
             (0.9999, "99.99%"), (0.99999, "99.999%"), (0.999999, "99.9999%")]


def latency_plot(r):
    """Percentile spectrum: latency (log) against 1/(1-p) (log), one line per
    latency object with buckets; None if the report has none."""
    names = ["latency", "ack_latency"] if r["scenario"] != "connections" else ["connect_latency"]
    series = []
    for name in names:
        lat = r.get(name) or {}
        buckets = lat.get("buckets") or []
        total = sum(c for _, c in buckets)
        if total <= 0:
            continue
        xs, ys, cum = [], [], 0
        for upper, count in buckets:
            # The bucket holds the fractions (cum, cum + count] of the samples.
            xs.append(1.0 / (1.0 - cum / total))
            ys.append(upper / 1000.0)
            cum += count
            xs.append(1.0 / max(1.0 - cum / total, 1.0 / total))
            ys.append(upper / 1000.0)
        label = REQUEST_LATENCY_LABEL if (r["scenario"] == "request" and name == "latency") \
            else LATENCY_LABELS.get(name, name)
        series.append((name, label, xs, ys, lat, total))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    xmax = 1
    for name, label, xs, ys, lat, total in series:
        line, = ax.plot(xs, ys, drawstyle="steps-post", label="%s (n=%s)" % (label, num(total)))
        xmax = max(xmax, xs[-1])
        for p, key in ((0.5, "p50_us"), (0.99, "p99_us"), (0.999, "p999_us")):
            if lat.get(key) and 1 / (1 - p) <= xs[-1]:
                ax.plot([1 / (1 - p)], [lat[key] / 1000.0], "o", ms=3.5, color=line.get_color())
    # Beyond 99.999 % the top bucket's flat line would only squeeze the rest.
    xmax = min(xmax, 1e5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: "%g" % v))
    ticks = [(1 / (1 - p), l) for p, l in PCT_TICKS if 1 / (1 - p) <= xmax * 1.0001]
    ax.set_xticks([t for t, _ in ticks])
    ax.set_xticklabels([l for _, l in ticks])
    ax.minorticks_off()
    ax.set_xlim(1, max(xmax, 10))
    ax.set_ylim(bottom=max(ax.get_ylim()[0], min(min(sr[3]) for sr in series) * 0.8))
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency distribution (dots: p50, p99, p99.9)")
    ax.legend(loc="lower right", fontsize=8)
    return svg_of(fig)


def timeline_plot(r):
    """Rate per second against time, phases shaded; connections on a second
    axis. None without a timeline."""
    tl = r.get("timeline") or []
    if not tl:
        return None
    _, unit, _, _, _ = headline(r)
    if r["scenario"] == "request":
        unit = "acknowledged requests/s"
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    prev = 0.0
    seen = []
    for s in tl:
        color = PHASE_COLORS.get(s.get("phase"), "#eeeeee")
        ax.axvspan(prev, s["t_s"], color=color, alpha=0.45, lw=0)
        if s.get("phase") not in seen:
            seen.append(s.get("phase"))
        prev = s["t_s"]
    ts = [s["t_s"] for s in tl]
    ax.plot(ts, [s.get("rate", 0) for s in tl], "o-", ms=3, color="#1f4e9c", label=unit)
    ax.set_xlim(0, ts[-1])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(unit)
    ax.ticklabel_format(axis="y", style="plain")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: "{:,.0f}".format(v)))
    ax2 = ax.twinx()
    ax2.plot(ts, [s.get("conns", 0) for s in tl], "--", color="#888888", lw=1, label="connections")
    ax2.set_ylabel("connections", color="#666666")
    ax2.set_ylim(bottom=0)
    ax2.grid(False)
    handles = [ax.get_lines()[0], ax2.get_lines()[0]] + \
        [Patch(color=PHASE_COLORS.get(p, "#eeeeee"), alpha=0.45, label=p) for p in seen]
    ax.legend(handles=handles, loc="lower center", fontsize=7, ncol=len(handles),
              bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.set_title("Throughput over time", pad=22)
    return svg_of(fig)


# --------------------------------------------------------------------------
# Tables

def key_figures(r):
    """(label, value) rows for a run's table."""
    sc = r["scenario"]
    tput, unit, lat, ns, ns_key = headline(r)
    rows = [("target", target(r))]
    if sc in ("fanout", "reconnect"):
        p = r.get("parameters", {})
        rows += [("subscribers", num(r.get("subscribers"))),
                 ("publishers x rate", "%s x %s" % (num(p.get("publishers", 1)),
                                                    "closed loop (window %s)" % p.get("window")
                                                    if not p.get("rate") else "%s/s" % num(p.get("rate")))),
                 ("publications/s", num(r.get("publications_per_s"))),
                 ("deliveries/s", num(tput)),
                 ("deliveries (window / total / expected)", "%s / %s / %s" % (
                     num(r.get("deliveries")), num(r.get("deliveries_total")),
                     num(r.get("expected_deliveries"))))]
    elif sc == "request":
        rows += [("clients", num(r.get("parameters", {}).get("clients"))),
                 ("requests/s", num(tput)), ("requests", num(r.get("requests")))]
    elif sc == "connections":
        rows += [("connections (failures, dropped while held)", "%s (%s, %s)" % (
                     num(r.get("connections")), num(r.get("failures")), num(r.get("disconnects")))),
                 ("bench processes", num(r.get("procs"))),
                 ("ramp", "%.2f s" % r["ramp_s"] if r.get("ramp_s") is not None else "–"),
                 ("connects/s", num(tput))]
    label = {"connections": "connect latency", "request": "round trip"}.get(sc, "latency")
    rows.append(("%s p50 / p99 / p99.9 / max" % label, " / ".join(
        us(lat.get(k)) for k in ("p50_us", "p99_us", "p999_us", "max_us"))))
    if r.get("ack_latency"):
        a = r["ack_latency"]
        rows.append(("ack p50 / p99 / p99.9", " / ".join(us(a.get(k)) for k in ("p50_us", "p99_us", "p999_us"))))
    nserv = len(r.get("servers", []))
    suffix = " (sum of %d processes)" % nserv if nserv > 1 else ""
    rows.append(("server CPU ns per %s%s" % (ns_key[len("ns_per_"):], suffix), num(ns)))
    rows.append(("server CPU (1.0 = one core)%s" % suffix, num(servers_sum(r, "cpu_util"), 2)))
    rows.append(("server RSS / PSS at the end%s" % suffix, "%s / %s" % (
        nbytes(servers_sum(r, "rss_bytes")), nbytes(servers_sum(r, "pss_bytes")))))
    if sc == "connections":
        rows.append(("server memory per connection: RSS growth / PSS growth / whole RSS", " / ".join(
            nbytes(r.get(k)) for k in ("server_rss_per_conn_bytes", "server_pss_per_conn_bytes",
                                       "server_rss_total_per_conn_bytes"))))
    b = r.get("bench", {})
    rows.append(("bench CPU (1.0 = one core), RSS", "%s, %s" % (num(b.get("cpu_util"), 2),
                                                               nbytes(b.get("rss_bytes")))))
    if sc != "connections":
        rows.append(("gaps / duplicates / lost", "%s / %s / %s" % (
            num(r.get("gaps")), num(r.get("duplicates")), num(r.get("lost")))))
        rows.append(("errors / failed / uncertain publishes / disconnects", " / ".join(
            num(r.get(k)) for k in ("errors", "failed_publishes", "uncertain_publishes", "disconnects"))))
    rc = r.get("reconnect")
    if rc:
        rows.append(("dropped / resubscribed", "%s / %s" % (num(rc.get("dropped")), num(rc.get("resubscribed")))))
        rows.append(("recovered true / false", "%s / %s" % (num(rc.get("recovered_true")),
                                                            num(rc.get("recovered_false")))))
        rows.append(("recovery time (drop to last resubscribe)",
                     "%.2f s" % rc["recovery_s"] if rc.get("recovery_s") is not None else "not all"))
    rows.append(("measured", "%.2f s" % r.get("duration_s", 0)))
    suite = r.get("suite")
    if suite:
        rows.append(("step wall time, exit status", "%.0f s, %s" % (suite.get("wall_s", 0),
                                                                  suite.get("exit_status"))))
        rows.append(("load average before, cores, git", "%s, %s, %s" % (
            suite.get("loadavg_before"), suite.get("nproc"), suite.get("git"))))
    return rows


def table(header, rows, cls=""):
    out = ['<table class="%s">' % cls]
    if header:
        out.append("<tr>" + "".join("<th>%s</th>" % html.escape(str(h)) for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join("<td>%s</td>" % html.escape(str(c)) for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def status_of(r):
    suite = r.get("suite") or {}
    st = suite.get("exit_status")
    bad = (r.get("gaps") or 0) + (r.get("duplicates") or 0)
    if st not in (None, 0):
        return "exit %s" % st
    return "gaps!" if bad else "ok"


def summary_rows(runs):
    rows = []
    for r in runs:
        tput, unit, lat, ns, ns_key = headline(r)
        rows.append((r["_name"], r["scenario"], target(r), "%s %s" % (num(tput), unit),
                     us(lat.get("p50_us")), us(lat.get("p99_us")), us(lat.get("p999_us")),
                     "%s per %s" % (num(ns), ns_key[len("ns_per_"):]),
                     num(servers_sum(r, "cpu_util"), 2), num((r.get("bench") or {}).get("cpu_util"), 2),
                     "%s / %s" % (num(r.get("gaps")), num(r.get("duplicates"))), status_of(r)))
    return rows


# --------------------------------------------------------------------------
# Comparison between targets

# (label, getter, True when higher is better)
COMPARED = [
    ("throughput", lambda r: headline(r)[0], True),
    ("latency p50 (µs)", lambda r: headline(r)[2].get("p50_us"), False),
    ("latency p99 (µs)", lambda r: headline(r)[2].get("p99_us"), False),
    ("latency p99.9 (µs)", lambda r: headline(r)[2].get("p999_us"), False),
    ("server CPU ns per operation", lambda r: headline(r)[3], False),
    ("server CPU (cores)", lambda r: servers_sum(r, "cpu_util"), False),
    ("server RSS at the end (bytes)", lambda r: servers_sum(r, "rss_bytes"), False),
    ("server RSS growth per connection (bytes)", lambda r: r.get("server_rss_per_conn_bytes"), False),
    ("server PSS growth per connection (bytes)", lambda r: r.get("server_pss_per_conn_bytes"), False),
    ("bench CPU (cores)", lambda r: (r.get("bench") or {}).get("cpu_util"), False),
    ("gaps + duplicates", lambda r: (r.get("gaps") or 0) + (r.get("duplicates") or 0), False),
]


def comparison_key(r):
    params = {k: v for k, v in (r.get("parameters") or {}).items() if k not in NOT_COMPARED}
    return r["scenario"], json.dumps(params, sort_keys=True)


def comparisons(runs):
    """Groups of the same scenario and parameters with several targets,
    herald among them: [(title, params, {target: latest report})]."""
    groups = {}
    for r in runs:
        groups.setdefault(comparison_key(r), []).append(r)
    out = []
    for (scenario, params), rs in groups.items():
        latest = {}
        for r in sorted(rs, key=lambda r: r.get("time", 0)):
            latest[target(r)] = r
        if len(latest) > 1 and "herald" in latest:
            names = sorted({x["_name"] for x in rs})
            out.append(("%s: %s" % (scenario, ", ".join(names)), json.loads(params), latest))
    return out


def comparison_html(title, params, latest):
    targets = ["herald"] + sorted(t for t in latest if t != "herald")
    header = ["figure", "better"]
    for t in targets:
        header += [t] if t == "herald" else [t, "%s / herald" % t]
    rows = []
    for label, get, higher in COMPARED:
        vals = {t: get(latest[t]) for t in targets}
        if all(v is None for v in vals.values()):
            continue
        row = [label, "higher" if higher else "lower"]
        base = vals["herald"]
        for t in targets:
            v = vals[t]
            row.append(num(v, 2 if isinstance(v, float) and abs(v) < 10 else 0))
            if t != "herald":
                row.append("%.2f×" % (v / base) if v is not None and base else "–")
        rows.append(row)
    parts = ["<h3>%s</h3>" % html.escape(title),
             "<p class=small>parameters: <code>%s</code></p>" % html.escape(
                 ", ".join("%s=%s" % kv for kv in sorted(params.items()))),
             table(header, rows, "cmp")]
    for t in targets:
        parts.append("<p class=small>%s: <code>%s</code></p>" % (
            html.escape(t), html.escape(latest[t].get("command", ""))))
    return "\n".join(parts)


# --------------------------------------------------------------------------
# Page

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-top: .6em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
table.summary td:nth-child(n+4), table.cmp td:nth-child(n+3) { text-align: right; }
pre { background: #f6f6f6; padding: .5em; white-space: pre-wrap; word-break: break-all; font-size: 12px; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots > div { flex: 1 1 560px; max-width: 680px; }
.plots svg { width: 100%; height: auto; }
.small { font-size: 12px; color: #555; } .bad { color: #b00; font-weight: bold; }
"""


def run_html(r, index):
    anchor = html.escape("run%d-%s-%s" % (index, r["_name"], target(r)))
    suite = r.get("suite") or {}
    parts = ['<h2 id="%s">%s <span class=small>(%s, %s, %s)</span></h2>' % (
        anchor, html.escape(r["_name"]), html.escape(r["scenario"]), html.escape(target(r)),
        html.escape(r["_file"]))]
    if status_of(r) != "ok":
        parts.append("<p class=bad>%s</p>" % html.escape(status_of(r)))
    cmds = []
    if suite.get("server_command"):
        cmds.append("# server\n" + suite["server_command"])
    cmds.append("# bench\n" + r.get("command", "(no command in the report)"))
    parts.append("<pre>%s</pre>" % html.escape("\n".join(cmds)))
    parts.append('<div class="plots"><div>%s</div><div>%s</div><div>%s</div></div>' % (
        table(["figure", "value"], key_figures(r), "figures"),
        latency_plot(r) or "<p class=small>(no latency histogram in this report)</p>",
        timeline_plot(r) or "<p class=small>(no timeline in this report)</p>"))
    return "\n".join(parts)


def render(runs):
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    walls = [(r.get("suite") or {}).get("wall_s") for r in runs]
    walls = [w for w in walls if w is not None]
    revs = sorted({(r.get("suite") or {}).get("git") for r in runs} - {None})
    quick = any((r.get("suite") or {}).get("quick") for r in runs)
    head = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
            "<title>Herald benchmark report</title><style>%s</style></head><body>" % CSS,
            "<h1>Herald benchmark report</h1>",
            "<p class=small>Rendered %s from %d report(s)%s%s%s. Every run's exact "
            "commands are given with it; fields: bench/README.md.</p>" % (
                when, len(runs),
                "; steps took %.0f s in all" % sum(walls) if walls else "",
                "; git %s" % ", ".join(revs) if revs else "",
                "; <b>quick mode</b> (short runs, small counts)" if quick else "")]
    body = ["<h2>Summary</h2>",
            table(["run", "scenario", "target", "throughput", "p50", "p99", "p99.9",
                   "server CPU ns per op", "server CPU", "bench CPU", "gaps / dups", "status"],
                  summary_rows(runs), "summary"),
            "<p class=small>Latency: publish to delivery (fanout, reconnect), round trip "
            "(request), connect (connections). CPU in cores (1.0 = one core busy during "
            "the measurement). Closed-loop latency is mostly queueing; the -rate runs "
            "measure latency at half the closed-loop rate.</p>"]
    cmps = comparisons(runs)
    if cmps:
        body.append("<h2>Comparison with other servers</h2>")
        body.append("<p class=small>Same scenario and parameters, the latest report of "
                    "each target; ratio = target / herald.</p>")
        body += [comparison_html(*c) for c in cmps]
    body += [run_html(r, i) for i, r in enumerate(runs, 1)]
    return "\n".join(head + body + ["</body></html>\n"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=RESULTS_DIR, help="directory of JSON reports")
    ap.add_argument("--out", help="HTML file (default RESULTS/report.html)")
    ap.add_argument("reports", nargs="*", help="report files instead of RESULTS/*.json")
    a = ap.parse_args(argv)
    paths = a.reports or sorted(glob.glob(os.path.join(a.results, "*.json")))
    runs = load_reports(paths)
    if not runs:
        print("report: no herald-bench reports in %s" % (" ".join(paths) or a.results), file=sys.stderr)
        return 1
    out = a.out or os.path.join(a.results, "report.html")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(render(runs))
    os.replace(tmp, out)
    print("report: %s (%d runs)" % (out, len(runs)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
