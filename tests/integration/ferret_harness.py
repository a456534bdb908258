"""FerretDB for the integration tests: the MongoDB-protocol store behind
Herald's durable channel history.

`FerretDB` runs the binary built by ``scripts/ferretdb/setup.sh`` through
``scripts/ferretdb/start.sh`` / ``stop.sh`` (SQLite backend, one data
directory, a free loopback port) and lets a test stop, kill, pause
(SIGSTOP), resume (SIGCONT) and restart it on the same port and directory,
keeping the data, to show how Herald behaves when its store stalls or goes
away. Nothing is skipped: without the binary the fixtures fail and say how
to build it.

    from ferret_harness import ferretdb          # the fixture, by import

    def test_x(ferretdb):
        herald = ... --mongodb ferretdb.uri("herald") ...
        ferretdb.pause(); ...; ferretdb.resume()

The fixture `ferretdb` starts one FerretDB per test in the test's tmp dir
(pytest keeps it after a failure: ferretdb/ferretdb.log is the server log);
`ferretdb_fixture(scope="module")` makes a shared one. The log's tail is
printed at teardown, so a failing test's report shows it.
"""

import os
import shutil
import signal
import subprocess
import tempfile
from urllib.parse import quote, urlencode

import pytest

import herald_harness as hh

SCRIPTS = os.path.join(hh.REPO, "scripts", "ferretdb")
FERRETDB_BIN = os.path.join(SCRIPTS, "bin", "ferretdb")
SETUP_HINT = ("FerretDB is not built: run scripts/ferretdb/setup.sh "
              "(or scripts/deps.sh test) first; %s is missing" % FERRETDB_BIN)


class FerretDBError(AssertionError):
    pass


def _state(pid):
    """The process state letter from /proc (R, S, T, Z...), None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


class FerretDB:
    """One FerretDB process on 127.0.0.1:port with its data in `dir`.

    The process is not our child (start.sh backgrounds it), so it is
    watched through its pid file and /proc. `dir` is created; when none is
    given a temporary one is made and removed by cleanup()."""

    def __init__(self, dir=None, port=None):
        if dir is None:
            dir = tempfile.mkdtemp(prefix="herald-ferretdb-")
            self._own_dir = True
        else:
            os.makedirs(dir, exist_ok=True)
            self._own_dir = False
        self.dir = os.path.abspath(dir)
        self.port = port or hh.free_port()
        self.pid = None
        self.paused = False
        # True while the process is meant to be running: a test's teardown
        # reports one that went away without being stopped or killed.
        self.expected_up = False
        self._clients = []

    # ---- process control ------------------------------------------------

    def start(self, timeout=None):
        """Starts FerretDB and returns once it answers a ping."""
        if not os.access(FERRETDB_BIN, os.X_OK):
            raise FerretDBError(SETUP_HINT)
        env = dict(os.environ, FERRETDB_START_TIMEOUT_S=str(hh.t(timeout or 30)))
        r = subprocess.run([os.path.join(SCRIPTS, "start.sh"), self.dir, str(self.port)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env, timeout=hh.t(timeout or 30) + 15)
        if r.returncode != 0:
            raise FerretDBError("ferretdb start.sh %s %s failed (%d):\n%s%s" % (
                self.dir, self.port, r.returncode, r.stdout, r.stderr))
        with open(os.path.join(self.dir, "ferretdb.pid")) as f:
            self.pid = int(f.read())
        self.paused = False
        self.expected_up = True
        return self

    def alive(self):
        return self.pid is not None and _state(self.pid) not in (None, "Z")

    def stop(self, timeout=10):
        """SIGTERM (the process is resumed first if paused), SIGKILL after
        `timeout` s. The data directory stays."""
        if self.paused and self.alive():
            self.resume()  # so that closing the clients does not wait on it
        self.close_clients()
        self.expected_up = False
        if self.pid is None:
            return
        env = dict(os.environ, FERRETDB_STOP_TIMEOUT_S=str(int(hh.t(timeout))))
        r = subprocess.run([os.path.join(SCRIPTS, "stop.sh"), self.dir],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env, timeout=hh.t(timeout) + 15)
        if r.returncode != 0:
            raise FerretDBError("ferretdb stop.sh %s failed (%d): %s" % (
                self.dir, r.returncode, r.stderr))
        self.pid = None
        self.paused = False

    def kill(self, timeout=5):
        """SIGKILL, as a crash: nothing is flushed by FerretDB itself (what
        SQLite committed stays)."""
        self.expected_up = False
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        hh.wait_for(lambda: not self.alive(), hh.t(timeout),
                    what="ferretdb pid %d to die after SIGKILL" % self.pid)
        try:
            os.unlink(os.path.join(self.dir, "ferretdb.pid"))
        except FileNotFoundError:
            pass
        self.pid = None
        self.paused = False

    def pause(self, timeout=5):
        """SIGSTOP: the port still accepts TCP connections (the kernel
        completes the handshake) but nothing is answered: a stalled store."""
        self._require_up("pause")
        os.kill(self.pid, signal.SIGSTOP)
        hh.wait_for(lambda: _state(self.pid) == "T", hh.t(timeout),
                    what="ferretdb pid %d to stop (SIGSTOP)" % self.pid)
        self.paused = True

    def resume(self, timeout=5):
        """SIGCONT after pause()."""
        self._require_up("resume")
        os.kill(self.pid, signal.SIGCONT)
        hh.wait_for(lambda: _state(self.pid) not in ("T", "t"), hh.t(timeout),
                    what="ferretdb pid %d to run again (SIGCONT)" % self.pid)
        self.paused = False

    def restart(self, kill=False):
        """Stops (or kills) and starts again on the same port and directory,
        so the data and the URI stay the same."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def cleanup(self):
        """Stops the process (if any) and removes a directory we made."""
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _require_up(self, what):
        if not self.alive():
            raise FerretDBError("ferretdb %s: not running (pid %s)\n%s" % (
                what, self.pid, self.log_tail(20)))

    # ---- clients --------------------------------------------------------

    def uri(self, database="", **options):
        """mongodb://127.0.0.1:PORT/DATABASE?OPTIONS, e.g.
        uri("herald", serverSelectionTimeoutMS=2000). No option is added
        implicitly (a single loopback server needs no directConnection:
        drivers connect directly to a lone host without replicaSet)."""
        u = "mongodb://127.0.0.1:%d/%s" % (self.port, quote(database))
        if options:
            u += "?" + urlencode({k: str(v).lower() if isinstance(v, bool) else v
                                  for k, v in options.items()})
        return u

    def client(self, **kw):
        """A pymongo client with short timeouts (overridable), closed by
        stop()/cleanup(). pymongo is imported here so that a harness user
        without pymongo only fails when it asks for a client."""
        import pymongo
        opts = dict(directConnection=True, serverSelectionTimeoutMS=int(hh.t(3000)),
                    connectTimeoutMS=int(hh.t(3000)), socketTimeoutMS=int(hh.t(10000)))
        opts.update(kw)
        c = pymongo.MongoClient("127.0.0.1", self.port, **opts)
        self._clients.append(c)
        return c

    def close_clients(self):
        # Closing sends endSessions, which FerretDB answers "no such
        # command" (logged at WARN); with the server gone it costs at most
        # one server selection timeout per client.
        clients, self._clients = self._clients, []
        for c in clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass

    # ---- diagnostics ----------------------------------------------------

    def log_tail(self, lines=40):
        try:
            with open(os.path.join(self.dir, "ferretdb.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return "(no ferretdb.log)"

    def __repr__(self):
        return "FerretDB(port=%d, dir=%s, pid=%s%s)" % (
            self.port, self.dir, self.pid, ", paused" if self.paused else "")


def _run_fixture(fd):
    """Starts fd, yields it, checks it did not die on its own, cleans up."""
    if not os.access(FERRETDB_BIN, os.X_OK):
        pytest.fail(SETUP_HINT, pytrace=False)
    fd.start()
    died = False
    try:
        yield fd
        died = fd.expected_up and not fd.alive()
    finally:
        # Shown by pytest with a failing test's report ("Captured stdout").
        print("---- %r: ferretdb.log tail ----\n%s" % (fd, fd.log_tail(40)))
        fd.cleanup()
    if died:
        pytest.fail("ferretdb (port %d) died during the test without being "
                    "stopped:\n%s" % (fd.port, fd.log_tail(40)), pytrace=False)


@pytest.fixture
def ferretdb(tmp_path):
    """A FerretDB for one test, data in tmp_path/ferretdb."""
    yield from _run_fixture(FerretDB(dir=str(tmp_path / "ferretdb")))


def ferretdb_fixture(scope="module"):
    """A shared FerretDB fixture: `fdb = ferretdb_fixture()` in a test
    module. Its data directory is temporary and removed afterwards."""

    @pytest.fixture(scope=scope)
    def _shared():
        yield from _run_fixture(FerretDB())

    return _shared
