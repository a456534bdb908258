"""bench/report.py (the HTML report of `make bench`) on real reports: two
short herald-bench runs (fanout, request) against a real herald write their
JSON; report.py renders them into a temporary directory. Checks that the
page is one self-contained HTML file with both plots per run (inline SVG),
the commands and the key figures of each report, that a report of another
target with the same parameters gets a comparison table with ratios, and
that a directory without reports fails. The suite itself (bench/run.sh)
is `make bench`, not a test."""

import html
import importlib.util
import json
import os
import re
import subprocess
import sys

import herald_harness as hh
from herald_harness import t

BENCH = os.path.join(os.path.dirname(os.path.abspath(hh.HERALD_BIN)), "herald-bench")
REPORT_PY = os.path.join(hh.REPO, "bench", "report.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

server = hh.server_fixture({"namespace_defaults": {"history_size": 100}})


def bench_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    if hh.SANITIZE:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    return env


def run_bench(server, path, scenario, *args):
    cmd = [BENCH, scenario, "--url", server.url(), "--duration", "1", "--warmup", "0.3",
           "--quiet", "--json", str(path), "--server-pid", str(server.proc.pid)] + \
        [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=bench_env(), timeout=t(40))
    assert p.returncode == 0, "%s\nexit %d\n%s" % (" ".join(cmd), p.returncode, p.stderr[-3000:])
    with open(path) as f:
        return json.load(f)


def render(args):
    p = subprocess.run([PYTHON, REPORT_PY] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=t(120))
    return p.returncode, p.stderr


def report_module():
    """bench/report.py itself, for its number format."""
    spec = importlib.util.spec_from_file_location("bench_report", REPORT_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def grouped(v):
    return "{:,.0f}".format(v)


def test_report_of_two_runs(server, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    fan = run_bench(server, results / "fanout-small.json", "fanout", "--channels", 1, "--subs", 20)
    req = run_bench(server, results / "request-small.json", "request", "--clients", 2)
    # Not a herald-bench report: ignored.
    (results / "notes.json").write_text('{"hello": 1}')
    out = tmp_path / "html" / "report.html"
    rc, err = render(["--results", results, "--out", out])
    assert rc == 0, err
    page = out.read_text()

    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # Self-contained: plots inline, nothing loaded from elsewhere.
    assert not re.search(r'<(img|script|link)\b[^>]*(src|href)=', page)
    assert "<?xml" not in page
    # Two runs, each with a latency distribution and a throughput plot.
    assert page.count("<svg") == 4
    assert page.count("Latency distribution") == 2
    assert page.count("Throughput over time") == 2
    assert "publish to delivery" in page and "publish round trip" in page
    assert "measure" in page  # a phase of the timeline's legend

    # Each run's command and key figures.
    for r in (fan, req):
        assert html.escape(r["command"]) in page
    assert grouped(fan["deliveries_per_s"]) in page
    assert grouped(req["requests_per_s"]) in page
    assert "deliveries/s" in page and "requests/s" in page
    for key in ("p50_us", "p99_us", "p999_us"):
        v = fan["latency"][key]
        shown = "%.2f s" % (v / 1e6) if v >= 1e6 else "%.1f ms" % (v / 1e3) if v >= 1e3 \
            else "%.0f µs" % v
        assert shown in page, (key, shown)
    ns = fan["servers"][0]["ns_per_delivery"]
    assert ns > 0 and report_module().num(ns) in page
    assert "server CPU ns per delivery" in page and "server CPU ns per request" in page
    assert "gaps / duplicates" in page
    # Only herald reports: no comparison section.
    assert "Comparison with other servers" not in page


def test_comparison_between_targets(server, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    herald = run_bench(server, results / "fanout-herald.json", "fanout", "--channels", 1,
                       "--subs", 10)
    # The same run presented as another target's report (the peer drivers
    # write "target"); half the throughput gives a 0.50x ratio.
    peer = dict(herald, target="socketio", time=herald["time"] + 1,
                deliveries_per_s=herald["deliveries_per_s"] / 2)
    (results / "fanout-socketio.json").write_text(json.dumps(peer))
    out = tmp_path / "report.html"
    rc, err = render(["--results", results, "--out", out])
    assert rc == 0, err
    page = out.read_text()
    assert "Comparison with other servers" in page
    assert "socketio / herald" in page
    assert "0.50×" in page and "1.00×" in page
    assert page.count("<svg") == 4


def test_no_reports_fails(tmp_path):
    rc, err = render(["--results", tmp_path, "--out", tmp_path / "r.html"])
    assert rc == 1 and "no herald-bench reports" in err
    assert not (tmp_path / "r.html").exists()
