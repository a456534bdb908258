#!/usr/bin/env python3
"""The tables of bench/durable.sh: reads OUT/NN-<step>.json, writes
OUT/summary.json and OUT/summary.md and prints the markdown. Each on step
is compared with the off step of the same kind that ran next to it (the
k-th on with the k-th off: in the ABBA order of durable.sh they are
neighbours), and the ratios are summarised by their median.

    bench/durable_summary.py OUT NN-step [NN-step ...]

Exit 1 when a report is missing, a fan-out report has gaps, duplicates or
undelivered publications, or the store does not hold exactly the
acknowledged durable publications."""
import json
import os
import statistics
import sys


def ms(us):
    return "%.1f ms" % (us / 1000) if us >= 1000 else "%.0f us" % us


def main():
    out, names = sys.argv[1], sys.argv[2:]
    bad = 0
    fan, persist = [], []
    for name in names:
        step = name.split("-", 1)[1]
        try:
            with open(os.path.join(out, name + ".json")) as f:
                r = json.load(f)
        except (OSError, ValueError):
            print("%s: no report" % name, file=sys.stderr)
            bad = 1
            continue
        st = r.get("store", {})
        srv = r.get("servers", [])
        herald = srv[0] if srv and srv[0].get("ok") else {}
        ferret = srv[1] if len(srv) > 1 and srv[1].get("ok") else {}
        status = r.get("suite", {}).get("exit_status", 0)
        if r["scenario"] == "fanout":
            kind, mode = step.split("-")
            missing = r["expected_deliveries"] - r["deliveries_total"]
            stored_ok = (mode == "off" and st.get("written_final", 0) == 0) or (
                mode == "on" and st.get("written_final") == r["publications_total"])
            bad |= bool(missing or r["gaps"] or r["duplicates"] or not stored_ok or status)
            row = {
                "run": name, "kind": kind, "durable": mode == "on",
                "deliveries_per_s": round(r["deliveries_per_s"]),
                "publications_per_s": round(r["publications_per_s"], 1),
                "herald_ns_per_delivery": round(herald.get("ns_per_delivery") or 0),
                "ferretdb_ns_per_delivery": round(ferret.get("ns_per_delivery") or 0),
                "herald_cores": round(herald.get("cpu_util", 0), 2),
                "ferretdb_cores": round(ferret.get("cpu_util", 0), 2),
                "bench_cores": round(r["bench"]["cpu_util"], 2),
                "p50_us": r["latency"]["p50_us"], "p99_us": r["latency"]["p99_us"],
                "refused": r["failed_publishes"], "errors": r["errors"],
                "gaps": r["gaps"], "duplicates": r["duplicates"], "missing": missing,
                "publications_total": r["publications_total"],
                "store_written": st.get("written_final"),
                "store_backlog_peak": st.get("backlog_peak"),
                "store_empty_after_bench_s": st.get("bench_done_to_empty_s"),
                "exit_status": status,
            }
            fan.append(row)
        else:
            mode, rest = step.split("-b", 1)
            b, w = rest.split("-w")
            stored_ok = st.get("written_final") == r["requests_total"]
            bad |= bool(not stored_ok or status or not st.get("drained"))
            persist.append({
                "run": name, "mode": mode, "batch": int(b), "writers": int(w),
                "published": r["requests_total"], "refused": r["failed_publishes"],
                "publish_rate": round(r["requests_per_s"]),
                "store_written": st.get("written_final"),
                "saturated_pubs_per_s": st.get("saturated_pubs_per_s"),
                "saturated_s": st.get("saturated_s"),
                "first_to_empty_s": st.get("first_to_empty_s"),
                "end_to_end_pubs_per_s": st.get("end_to_end_pubs_per_s"),
                "herald_cores": st.get("herald_cores_saturated"),
                "ferretdb_cores": st.get("ferret_cores_saturated"),
                "drain_pubs_per_s": st.get("drain_pubs_per_s"),
                "herald_us_per_pub_drain": st.get("herald_us_per_pub_drain"),
                "ferretdb_us_per_pub_drain": st.get("ferret_us_per_pub_drain"),
                "herald_cores_drain": st.get("herald_cores_drain"),
                "ferretdb_cores_drain": st.get("ferret_cores_drain"),
                "exit_status": status,
            })

    # The k-th on step of a kind against the k-th off step of that kind.
    for kind in ("fanout", "rate"):
        offs = [x for x in fan if x["kind"] == kind and not x["durable"]]
        ons = [x for x in fan if x["kind"] == kind and x["durable"]]
        for row, o in zip(ons, offs):
            row["vs_off"] = {
                "off_run": o["run"],
                "deliveries_per_s": round(row["deliveries_per_s"] / o["deliveries_per_s"], 3),
                "herald_ns_per_delivery": round(
                    row["herald_ns_per_delivery"] / o["herald_ns_per_delivery"], 3)
                if o["herald_ns_per_delivery"] else None,
                "p50": round(row["p50_us"] / o["p50_us"], 3) if o["p50_us"] else None,
                "p99": round(row["p99_us"] / o["p99_us"], 3) if o["p99_us"] else None,
            }

    ratios = {}
    for kind in ("fanout", "rate"):
        pairs = [x["vs_off"] for x in fan if x["kind"] == kind and "vs_off" in x]
        if pairs:
            ratios[kind] = {k: statistics.median(p[k] for p in pairs if p[k] is not None)
                            for k in ("deliveries_per_s", "herald_ns_per_delivery", "p50", "p99")}
            ratios[kind]["pairs"] = len(pairs)

    md = []
    if fan:
        md.append("| run | durable | deliveries/s | herald ns/delivery | p50 | p99 | herald cores "
                  "| FerretDB ns/delivery | FerretDB cores | bench cores | refused | stored / acked | backlog peak | vs off: deliv/s, ns, p50, p99 |")
        md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for x in fan:
            v = x.get("vs_off")
            md.append("| %s | %s | %d | %d | %s | %s | %.2f | %d | %.2f | %.2f | %d | %s | %s | %s |" % (
                x["run"], "on" if x["durable"] else "off", x["deliveries_per_s"],
                x["herald_ns_per_delivery"], ms(x["p50_us"]), ms(x["p99_us"]),
                x["herald_cores"], x["ferretdb_ns_per_delivery"], x["ferretdb_cores"],
                x["bench_cores"], x["refused"],
                "%s / %d" % (x["store_written"], x["publications_total"]),
                x["store_backlog_peak"],
                "%.2fx, %.2fx, %.2fx, %.2fx (vs %s)" % (v["deliveries_per_s"], v["herald_ns_per_delivery"],
                                               v["p50"], v["p99"], v["off_run"][:2]) if v else ""))
        md.append("")
        for kind, r in ratios.items():
            md.append("%s: durable on / off, median of %d pairs: deliveries/s %.2fx, herald ns/delivery "
                      "%.2fx, p50 %.2fx, p99 %.2fx" % (kind, r["pairs"], r["deliveries_per_s"],
                                                       r["herald_ns_per_delivery"], r["p50"], r["p99"]))
        md.append("")
    if persist:
        md.append("| run | publishing | mongodb_batch | mongodb_writers | published (acked) | refused | stored "
                  "| store pubs/s (saturated) | first publish to empty | end to end pubs/s "
                  "| herald cores | FerretDB cores | drain pubs/s | drain CPU us/pub herald, FerretDB |")
        md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for x in persist:
            md.append("| %s | %s | %d | %d | %d | %d | %s | %s | %s s | %s | %s | %s | %s | %s, %s |" % (
                x["run"], "burst, then drain" if x["mode"] == "persist" else "closed loop",
                x["batch"], x["writers"], x["published"], x["refused"],
                x["store_written"], x["saturated_pubs_per_s"], x["first_to_empty_s"],
                x["end_to_end_pubs_per_s"], x["herald_cores"], x["ferretdb_cores"],
                x["drain_pubs_per_s"], x["herald_us_per_pub_drain"], x["ferretdb_us_per_pub_drain"]))
    text = "\n".join(md) + "\n"
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"fanout": fan, "fanout_ratios": ratios, "persist": persist}, f, indent=1)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    print(text, end="")
    return bad


if __name__ == "__main__":
    sys.exit(main())
