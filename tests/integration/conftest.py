"""pytest glue for the Herald integration tests.

* async test functions run in a fresh event loop (asyncio.run) under an
  overall timeout (@pytest.mark.timeout(seconds), default 30, scaled for
  sanitizer builds); clients they opened are closed afterwards;
* `server_factory` starts servers for one test and stops them afterwards;
* after every test, each server it used is checked for sanitizer reports
  and for dying without being told to; on failure, their stderr is added
  to the report;
* with CI=true, a skip or xfail that expected_skips.txt does not name is a
  failure (skip_policy.py).
"""

import asyncio
import inspect

import pytest

import herald_harness as hh

# In CI, a skip or xfail not named in expected_skips.txt fails the test.
pytest_plugins = ("skip_policy",)


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): overall timeout of an async test")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    marker = pyfuncitem.get_closest_marker("timeout")
    timeout = hh.t(marker.args[0] if marker else 30)
    args = {a: pyfuncitem.funcargs[a] for a in pyfuncitem._fixtureinfo.argnames}

    async def body():
        # A socket or wait_for timeout inside the test is a TimeoutError
        # too: keep its traceback, apart from the overall timeout's.
        try:
            await fn(**args)
        except TimeoutError as e:
            raise AssertionError("a wait inside the test timed out: %r" % (e,)) from e

    async def run():
        try:
            await asyncio.wait_for(body(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError("test timed out after %.0fs" % timeout) from None
        finally:
            await hh.close_all_clients()

    asyncio.run(run())
    return True


def _relevant_servers(item):
    """Servers alive when the test started, and those it started."""
    start = getattr(item, "_herald_first_server", 0)
    before = getattr(item, "_herald_alive_at_start", ())
    return [s for i, s in enumerate(hh.ALL_SERVERS)
            if i >= start or any(s is b for b in before)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in _relevant_servers(item):
            if s.proc is None:
                continue
            rep.sections.append((
                "herald stderr (port %s, %s)" % (s.port, "running" if s.alive()
                                                  else "exit %s" % s.proc.poll()),
                s.stderr_tail(80)))


@pytest.fixture(autouse=True)
def _herald_watch(request):
    request.node._herald_first_server = len(hh.ALL_SERVERS)
    request.node._herald_alive_at_start = [s for s in hh.ALL_SERVERS if s.alive()]
    yield
    problems = []
    for s in _relevant_servers(request.node):
        if s.proc is None:
            continue
        report = s.sanitizer_report()
        died = (not s.stopping and s.proc.poll() is not None) or s.died is not None
        if report:
            problems.append("sanitizer report in herald stderr (port %s):\n%s" % (s.port, report))
        elif died:
            problems.append("herald (port %s) died during the test with status %s:\n%s"
                            % (s.port, s.proc.poll() if s.died is None else s.died,
                               s.stderr_tail(40)))
            s.died = None  # reported
        if (report or died) and s.shared:
            # a module-scoped server: give the next tests a fresh one so one
            # crash is reported once, not as every later test's failure
            s.restart_fresh()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def server_factory(tmp_path):
    """server_factory(config=None, start=True, **HeraldServer kwargs)."""
    made = []

    def make(config=None, start=True, **kw):
        s = hh.HeraldServer(config, tmpdir=str(tmp_path), **kw)
        made.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in made:
        if s.proc is not None:
            s.stop()
