"""pytest plugin: in CI, a skip (or an expected failure) is a failure
unless it is expected and named.

CTest sees one pass or fail per test file, so a file whose tests all skip
(a missing openssl, prlimit, redis-server, ...) would pass unnoticed. With
CI set to a true value (CI=true, as CI systems set it; `.ci/run` does too),
every skipped test, skipped module and xfail is turned into a failure
unless a line of the allow-list matches it:

    <node id pattern> | <text the skip or xfail reason contains>

The pattern is an fnmatch pattern on the node id (`test_x.py::test_y[p]`);
`#` starts a comment. The file is `expected_skips.txt` next to this one
(HERALD_EXPECTED_SKIPS names another). Outside CI nothing changes: a
developer's machine may lack what CI must have.
"""

import fnmatch
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def in_ci():
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def load_allowed(path=None):
    """[(pattern, reason text)] from the allow-list file."""
    path = path or os.environ.get("HERALD_EXPECTED_SKIPS") or \
        os.path.join(HERE, "expected_skips.txt")
    out = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                pattern, sep, reason = line.partition("|")
                if not sep or not pattern.strip() or not reason.strip():
                    raise pytest.UsageError("%s:%d: expected '<node id pattern> | <reason>'"
                                            % (path, n))
                out.append((pattern.strip(), reason.strip()))
    except FileNotFoundError:
        pass
    return out


def allowed(nodeid, reason, entries):
    return any(fnmatch.fnmatchcase(nodeid, p) and r in reason for p, r in entries)


def _reason(rep):
    if hasattr(rep, "wasxfail"):
        return "xfail: " + str(rep.wasxfail)
    lr = rep.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2])
    return str(lr)


def _fail(rep, nodeid, reason):
    rep.outcome = "failed"
    rep.longrepr = ("%s was %s in CI, and no line of expected_skips.txt "
                    "(HERALD_EXPECTED_SKIPS) names it: %s\n"
                    "Install what it needs, or, if the skip is by design, add "
                    "'<node id pattern> | <reason>' to the allow-list."
                    % (nodeid, "an expected failure" if reason.startswith("xfail:")
                       else "skipped", reason))
    if hasattr(rep, "wasxfail"):
        del rep.wasxfail


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.skipped or not in_ci():
        return
    reason = _reason(rep)
    if not allowed(item.nodeid, reason, item.config._herald_allowed_skips):
        _fail(rep, item.nodeid, reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if not rep.skipped or not in_ci():
        return
    reason = _reason(rep)
    if not allowed(collector.nodeid, reason, collector.config._herald_allowed_skips):
        _fail(rep, collector.nodeid, reason)


def pytest_configure(config):
    config._herald_allowed_skips = load_allowed()
