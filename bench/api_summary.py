#!/usr/bin/env python3
"""The tables of bench/api.sh: publishing through the HTTP API and through
WebSocket, Herald and Centrifugo, from the run's reports (OUT/RR-<step>-
<kind>.json, each with the `suite` api.sh adds).

    bench/api_summary.py OUT        # prints summary.md, writes it and summary.json

Per step and kind, the median over the rounds (and the range) of:
publications/s acknowledged in the window; the round trip's p50 and p99
(api and request: `latency`; fanout: `ack_latency`); the server's CPU
microseconds per publication (its CPU over the window's acknowledged
publications: `ns_per_request`, or for fanout cpu_s / publications) and
its cores; the bench's CPU microseconds per publication (its client side:
libcurl for api, the C client library for WebSocket); and with
subscribers, the deliveries' p99 and whether every acknowledged
publication reached every subscriber. Then the ratios of kinds, computed
within each round (the kinds of a round ran next to each other) and their
median over the rounds. Exit status 1 when a run failed or a report shows
errors, failed publishes, gaps, duplicates or missing deliveries."""

import glob
import json
import os
import statistics
import sys

KINDS = ["herald-api", "herald-ws", "centrifugo-api", "centrifugo-ws"]
# (numerator, denominator, what): the comparisons of the ratio table.
RATIOS = [("herald-api", "herald-ws", "Herald API / Herald WebSocket"),
          ("herald-api", "centrifugo-api", "Herald API / Centrifugo API"),
          ("centrifugo-api", "centrifugo-ws", "Centrifugo API / Centrifugo WebSocket")]


def figures(r):
    """The figures of one report (None where it has none)."""
    sc = r["scenario"]
    if sc in ("api", "request"):
        pubs, per_s, rt = r["requests"], r["requests_per_s"], r["latency"]
    else:
        pubs, per_s, rt = r["publications"], r["publications_per_s"], r["ack_latency"]
    srv = [s for s in r["servers"] if s.get("ok")]
    cpu = sum(s["cpu_s"] for s in srv)
    f = {
        "pubs_per_s": per_s,
        "p50_us": rt["p50_us"],
        "p99_us": rt["p99_us"],
        "server_us": cpu * 1e6 / pubs if pubs and srv else None,
        "server_cores": sum(s["cpu_util"] for s in srv) if srv else None,
        "bench_us": r["bench"]["cpu_s"] * 1e6 / pubs if pubs else None,
        "subscribers": r.get("subscribers", 0),
        "delivery_p99_us": None,
        "delivered_all": None,
    }
    if f["subscribers"]:
        dl = r["delivery_latency"] if sc == "api" else r["latency"]
        f["delivery_p99_us"] = dl["p99_us"]
        f["delivered_all"] = r["deliveries_total"] == r["expected_deliveries"]
    return f


def problems(r):
    bad = []
    st = r.get("suite", {}).get("exit_status", 0)
    if st:
        bad.append("exit %d" % st)
    for k in ("errors", "failed_publishes", "gaps", "duplicates"):
        if r.get(k):
            bad.append("%s %d" % (k, r[k]))
    if r.get("subscribers") and r["deliveries_total"] != r["expected_deliveries"]:
        bad.append("deliveries %d of %d" % (r["deliveries_total"], r["expected_deliveries"]))
    return bad


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0):
    if x is None:
        return "-"
    return "{:,.{}f}".format(x, nd)


def rng(xs, nd=0):
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return ""
    return " (%s-%s)" % (fmt(min(xs), nd), fmt(max(xs), nd))


def main(out):
    runs = {}           # (step, kind) -> {round: figures}
    bad = []
    steps = []
    meta = None
    for path in sorted(glob.glob(os.path.join(out, "[0-9][0-9]-*.json"))):
        try:
            with open(path) as fh:
                r = json.load(fh)
        except (OSError, ValueError) as e:
            bad.append("%s: %s" % (os.path.basename(path), e))
            continue
        s = r.get("suite", {})
        step, kind, rnd = s.get("step"), s.get("kind"), int(s.get("round", 0))
        if step not in steps:
            steps.append(step)
        p = problems(r)
        if p:
            bad.append("%s: %s" % (os.path.basename(path), ", ".join(p)))
        runs.setdefault((step, kind), {})[rnd] = figures(r)
        meta = meta or {"git": s.get("git"), "duration_s": r["parameters"]["duration_s"],
                        "size": r["parameters"].get("size"),
                        "http_client": " ".join((r["parameters"].get("http_client") or "").split()[:2])}
    # rt<N> before fan<N>, each by N (the order of api.sh's STEPS default).
    steps.sort(key=lambda st: (st.startswith("fan"), int("0" + "".join(c for c in st if c.isdigit()))))
    kinds = [k for k in KINDS if any((st, k) in runs for st in steps)]
    rounds = sorted({rd for v in runs.values() for rd in v})

    lines = ["Publishing through the HTTP API and through WebSocket (bench/api.sh): "
             "%d round(s), %s s measured, %s-byte payloads, revision %s, %s."
             % (len(rounds), fmt(meta and meta["duration_s"]), meta and meta["size"],
                meta and meta["git"], meta and meta["http_client"]) if meta else "no reports",
             "",
             "| step | kind | publications/s | round trip p50 / p99 (us) | server us / publication "
             "| server cores | bench us / publication | deliveries p99 (us), all delivered |",
             "|---|---|---|---|---|---|---|---|"]
    summary = {"meta": meta, "rows": [], "ratios": [], "problems": bad}
    for st in steps:
        for k in kinds:
            v = runs.get((st, k))
            if not v:
                continue
            col = lambda key: [v[rd][key] for rd in sorted(v)]
            row = {key: med(col(key)) for key in ("pubs_per_s", "p50_us", "p99_us", "server_us",
                                                  "server_cores", "bench_us", "delivery_p99_us")}
            dall = [x for x in col("delivered_all") if x is not None]
            row.update(step=st, kind=k, rounds=len(v), delivered_all=all(dall) if dall else None)
            summary["rows"].append(row)
            deliv = "-" if row["delivered_all"] is None else "%s, %s" % (
                fmt(row["delivery_p99_us"]), "yes" if row["delivered_all"] else "NO")
            lines.append("| %s | %s | %s%s | %s / %s | %s%s | %s | %s | %s |" % (
                st, k, fmt(row["pubs_per_s"]), rng(col("pubs_per_s")),
                fmt(row["p50_us"]), fmt(row["p99_us"]),
                fmt(row["server_us"], 1), rng(col("server_us"), 1),
                fmt(row["server_cores"], 2), fmt(row["bench_us"], 1), deliv))
    lines += ["", "Ratios within each round, median over the rounds (range): "
              "publications/s, and server CPU per publication (below 1: the first costs less).",
              "", "| step | comparison | publications/s | server us / publication |", "|---|---|---|---|"]
    for st in steps:
        for a, b, what in RATIOS:
            va, vb = runs.get((st, a)), runs.get((st, b))
            if not va or not vb:
                continue
            both = sorted(set(va) & set(vb))
            rp = [va[rd]["pubs_per_s"] / vb[rd]["pubs_per_s"] for rd in both
                  if vb[rd]["pubs_per_s"]]
            rc = [va[rd]["server_us"] / vb[rd]["server_us"] for rd in both
                  if va[rd]["server_us"] and vb[rd]["server_us"]]
            summary["ratios"].append({"step": st, "a": a, "b": b, "pubs_per_s": med(rp),
                                      "server_us": med(rc), "rounds": len(both)})
            lines.append("| %s | %s | %sx%s | %sx%s |" % (
                st, what, fmt(med(rp), 2), rng(rp, 2), fmt(med(rc), 2), rng(rc, 2)))
    if bad:
        lines += ["", "Problems:"] + ["- " + b for b in bad]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with open(os.path.join(out, "summary.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return 1 if bad or not runs else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: api_summary.py OUT")
    sys.exit(main(sys.argv[1]))
