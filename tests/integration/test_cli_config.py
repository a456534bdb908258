"""Command line, configuration file, environment overrides, logs, HTTP."""

import json
import os
import re
import subprocess

import pytest

import herald_harness as hh
from herald_harness import HERALD_BIN, t


def run_cli(args, env=None, timeout=None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    base.update(env or {})
    return subprocess.run([HERALD_BIN] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=base,
                          timeout=timeout or t(15))


def write(tmp_path, text, name="herald.conf"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError("%r not in config" % needle)


def assert_names(stderr, path, line, key):
    """The message names the file, the line and the key."""
    assert path in stderr, "file %s not named in: %s" % (path, stderr)
    assert key in stderr, "key %r not named in: %s" % (key, stderr)
    pat = r"(:%d\b|line %d\b)" % (line, line)
    assert re.search(pat, stderr), "line %d not named in: %s" % (line, stderr)


VALID = """\
# a complete, valid configuration
listen = "127.0.0.1:8080";
workers = 2;
log_level = "info";
node_name = "node-a";
max_connections = 1000;
max_message_size = 65536;
max_channels_per_conn = 128;
send_queue_max = 1048576;
max_batch_bytes = 65536;
history_max_limit = 1000;
ping_interval = 25;
pong_timeout = 10;
shutdown_timeout = 5;
handshake_timeout = 10;
rate_limit = 0;
rate_burst = 100;
token_secret = "";
allow_anonymous = true;
namespace_defaults = {
  history_size = 0;
  history_ttl = 0;
  presence = false;
  join_leave = false;
  allow_publish = true;
  allow_anonymous = true;
  max_subscribers = 0;
};
namespaces = (
  { name = "chat"; history_size = 100; presence = true; join_leave = true; },
  { name = "news"; allow_publish = false; }
);
"""


# -- --help, --version -------------------------------------------------------

def test_help_exits_0_and_lists_options():
    r = run_cli(["--help"])
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for opt in ("--config", "--listen", "--workers", "--log-level", "--check-config",
                "--version", "--redis", "--mongodb"):
        assert opt in out, "%s missing from --help output:\n%s" % (opt, out)


def test_version_exits_0_and_prints_version():
    r = run_cli(["--version"])
    assert r.returncode == 0, r.stderr
    assert re.search(r"\d+\.\d+\.\d+", r.stdout + r.stderr), r.stdout + r.stderr


def test_unknown_option_exits_2():
    r = run_cli(["--no-such-option"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "no-such-option" in r.stderr


def test_mongodb_option_is_checked_and_never_echoed():
    r = run_cli(["--mongodb", "mongodb://app:s3cret@db.example:27017/?w=majority",
                 "--check-config"])
    assert r.returncode == 0, r.stderr
    r = run_cli(["--mongodb", "postgres://app:s3cret@db.example/", "--check-config"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--mongodb" in r.stderr and "mongodb://" in r.stderr, r.stderr
    assert "s3cret" not in r.stderr


def test_ack_durable_needs_durable(tmp_path):
    path = write(tmp_path, 'namespaces = ( { name = "n"; ack = "durable"; } );\n')
    r = run_cli(["--config", path, "--check-config"])
    assert r.returncode == 2 and "ack" in r.stderr and "durable = true" in r.stderr, r.stderr
    path = write(tmp_path, 'namespaces = ( { name = "n"; ack = "fast"; } );\n')
    r = run_cli(["--config", path, "--check-config"])
    assert r.returncode == 2 and "unknown ack mode" in r.stderr and ":1" in r.stderr, r.stderr


# -- --check-config ------------------------------------------------------------

def test_check_config_valid_file_exits_0(tmp_path):
    path = write(tmp_path, VALID)
    r = run_cli(["--config", path, "--check-config"])
    assert r.returncode == 0, r.stderr


def test_check_config_empty_file_uses_defaults(tmp_path):
    path = write(tmp_path, "# nothing\n")
    r = run_cli(["--config", path, "--check-config"])
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("bad,key", [
    ("no_such_key = 1;", "no_such_key"),                       # unknown key
    ('workers = "two";', "workers"),                           # wrong type
    ("max_message_size = \"big\";", "max_message_size"),       # wrong type
    ("send_queue_max = 100;", "send_queue_max"),               # below min 4096
    ("ping_interval = -1;", "ping_interval"),                  # out of range
    ('log_level = "loud";', "log_level"),                      # bad enum
    ('listen = "no-port-here";', "listen"),                    # bad address
    ("allow_anonymous = 7;", "allow_anonymous"),               # wrong type
])
def test_check_config_bad_value_exits_2_naming_file_line_key(tmp_path, bad, key):
    pat = r"(?m)^%s = .*;$" % re.escape(key)
    if re.search(pat, VALID):
        # replace the valid top-level line for that key
        text = re.sub(pat, lambda m: bad, VALID, count=1)
    else:
        text = VALID.replace("rate_burst = 100;", "rate_burst = 100;\n" + bad)
    path = write(tmp_path, text)
    r = run_cli(["--config", path, "--check-config"])
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert_names(r.stderr, path, line_of(text, bad), key)


@pytest.mark.parametrize("bad,key", [
    ("{ name = \"chat\"; bogus = 1; }", "bogus"),                   # unknown ns key
    ("{ name = \"chat\"; history_size = \"lots\"; }", "history_size"),  # wrong type
    ("{ name = \"chat\"; presence = 3; }", "presence"),              # wrong type
])
def test_check_config_bad_namespace_exits_2(tmp_path, bad, key):
    text = VALID.replace(
        '{ name = "chat"; history_size = 100; presence = true; join_leave = true; }', bad)
    path = write(tmp_path, text)
    r = run_cli(["--config", path, "--check-config"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert_names(r.stderr, path, line_of(text, bad), key)


def test_check_config_bad_namespace_defaults_key_exits_2(tmp_path):
    text = VALID.replace("  max_subscribers = 0;\n", "  max_subscribers = 0;\n  colour = 1;\n")
    path = write(tmp_path, text)
    r = run_cli(["--config", path, "--check-config"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert_names(r.stderr, path, line_of(text, "colour = 1;"), "colour")


def test_check_config_syntax_error_exits_2_with_file_and_line(tmp_path):
    text = 'workers = 2;\nnode_name = "unterminated;\nlog_level = "info";\n'
    path = write(tmp_path, text)
    r = run_cli(["--config", path, "--check-config"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert path in r.stderr, r.stderr
    assert re.search(r"(:\d+\b|line \d+)", r.stderr), r.stderr


def test_check_config_missing_file_exits_2(tmp_path):
    path = str(tmp_path / "does-not-exist.conf")
    r = run_cli(["--config", path, "--check-config"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert path in r.stderr, r.stderr


def test_check_config_bad_env_value_exits_2_naming_variable(tmp_path):
    path = write(tmp_path, VALID)
    r = run_cli(["--config", path, "--check-config"], env={"HERALD_WORKERS": "lots"})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "HERALD_WORKERS" in r.stderr, r.stderr


def test_check_config_bad_cli_value_exits_2(tmp_path):
    path = write(tmp_path, VALID)
    r = run_cli(["--config", path, "--check-config", "--workers", "many"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "workers" in r.stderr, r.stderr


def test_check_config_does_not_listen(tmp_path):
    """--check-config only validates: it exits at once, even though the
    configured port is free and the config is fine."""
    port = hh.free_port()
    path = write(tmp_path, VALID.replace("127.0.0.1:8080", "127.0.0.1:%d" % port))
    r = run_cli(["--config", path, "--check-config"], timeout=t(10))
    assert r.returncode == 0, r.stderr


def test_starting_with_bad_config_exits_2(tmp_path):
    text = VALID + "\nmystery = true;\n"
    path = write(tmp_path, text)
    r = run_cli(["--config", path, "--listen", "127.0.0.1:%d" % hh.free_port()])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert_names(r.stderr, path, line_of(text, "mystery"), "mystery")


def test_starting_with_bad_log_level_option_exits_2():
    r = run_cli(["--log-level", "shouty", "--listen", "127.0.0.1:%d" % hh.free_port()])
    assert r.returncode == 2, (r.returncode, r.stderr)


def test_port_taken_by_another_herald_refuses_to_start(server_factory):
    """Workers listen with SO_REUSEPORT; a second herald on the same port
    would silently take part of the connections. It must refuse instead,
    and the first one keeps serving."""
    first = server_factory({})
    port = first.port
    r = run_cli(["--listen", "127.0.0.1:%d" % port, "--workers", "2"],
                timeout=t(10))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Address already in use" in r.stderr
    assert "127.0.0.1:%d" % port in r.stderr
    assert first.healthz()[0] == 200


def test_harness_does_not_take_another_server_for_its_own(server_factory):
    """Test processes run side by side and free_port() can hand the same
    port to two of them: a harness that took the other one's /healthz 200
    for its own server would send its test's traffic there. Starting on a
    port another herald holds must fail (this one exits "in use"), not
    report the other server as ready."""
    first = server_factory({})
    second = server_factory({}, start=False)
    with pytest.raises(hh.ServerStartError) as e:
        second.start(port=first.port)
    assert "in use" in str(e.value)
    assert hh.pid_listens_on(first.proc.pid, first.port)
    assert not hh.pid_listens_on(first.proc.pid, hh.free_port())


# -- precedence: file < env < CLI ------------------------------------------------

def test_env_overrides_file(server_factory):
    s = server_factory({"node_name": "from-file", "workers": 1},
                       env={"HERALD_NODE_NAME": "from-env", "HERALD_WORKERS": "3"},
                       workers=None)
    status, body = s.healthz()
    assert status == 200
    assert body["node"] == "from-env"
    assert body["workers"] == 3


def test_cli_overrides_env_and_file(server_factory):
    s = server_factory({"workers": 1}, env={"HERALD_WORKERS": "3"}, workers=2)
    status, body = s.healthz()
    assert body["workers"] == 2


def test_listen_from_file(server_factory):
    s = server_factory({"node_name": "filelisten"}, listen="file")
    assert s.healthz()[1]["node"] == "filelisten"


def test_listen_from_env_overrides_file(server_factory):
    # The file names a port nobody listens on; HERALD_LISTEN wins.
    other = hh.free_port()
    s = server_factory({"listen": "127.0.0.1:%d" % other}, listen="env")
    assert s.healthz()[0] == 200
    with pytest.raises(OSError):
        hh.http_get(other, "/healthz", timeout=1)


def test_cli_listen_overrides_env(server_factory):
    other = hh.free_port()
    s = server_factory(None, env={"HERALD_LISTEN": "127.0.0.1:%d" % other})
    assert s.healthz()[0] == 200
    with pytest.raises(OSError):
        hh.http_get(other, "/healthz", timeout=1)


def test_runs_without_config_file(server_factory):
    s = server_factory(None)
    status, body = s.healthz()
    assert status == 200 and body["status"] == "ok"


# -- logs ------------------------------------------------------------------------

def test_logs_are_json_lines_with_listening(server_factory):
    s = server_factory({"log_level": "info"})
    lines = hh.wait_for(lambda: [l for l in s.log_lines() if l.get("msg") == "listening"],
                        t(5), what='a "listening" log line')
    assert len(lines) == 1, lines
    for l in s.log_lines():
        assert {"time", "level", "msg"} <= set(l), l
        assert l["level"] in ("debug", "info", "warn", "error"), l
    # every non-empty stderr line is a JSON object (sanitizer output aside)
    for raw in s.stderr().splitlines():
        if raw.strip():
            assert isinstance(json.loads(raw), dict), raw


# -- HTTP ------------------------------------------------------------------------

def test_healthz_reports_status_node_connections_workers(server_factory):
    s = server_factory({"node_name": "hz-node"})
    status, body = s.healthz()
    assert status == 200
    assert body["status"] == "ok"
    assert body["node"] == "hz-node"
    assert body["workers"] == 2
    assert isinstance(body["connections"], int)


async def test_healthz_counts_websocket_connections(server_factory):
    s = server_factory(None)
    base = s.healthz()[1]["connections"]
    clients = [await s.client() for _ in range(3)]
    for c in clients:
        await c.ok("ping")
    await hh.async_wait_for(lambda: s.healthz()[1]["connections"] == base + 3, t(5),
                            what="connections == %d" % (base + 3))
    for c in clients:
        await c.close()
    await hh.async_wait_for(lambda: s.healthz()[1]["connections"] == base, t(5),
                            what="connections back to %d" % base)


def test_unknown_path_is_404_with_json_error(server_factory):
    s = server_factory(None)
    for path in ("/nope", "/healthz/extra", "/ws/x"):
        status, body = hh.http_get(s.port, path)
        assert status == 404, (path, status, body)
        doc = json.loads(body)
        assert isinstance(doc.get("error"), str) and doc["error"], (path, doc)


# -- namespace options -------------------------------------------------------------

async def test_named_namespaces_inherit_namespace_defaults(server_factory):
    s = server_factory({
        "namespace_defaults": {"history_size": 3, "allow_publish": False},
        "namespaces": [{"name": "inh", "presence": True},
                       {"name": "own", "allow_publish": True, "history_size": 0}],
    })
    c = await s.client()
    # default namespace: publishing is off
    assert (await c.error("publish", channel=hh.chan(), data=1))["code"] == 103
    # "inh" inherits allow_publish=false and history_size=3
    assert (await c.error("publish", channel=hh.chan("inh:"), data=1))["code"] == 103
    ch = hh.chan("inh:")
    await c.ok("subscribe", channel=ch)
    assert (await c.ok("history", channel=ch))["publications"] == []
    # "own" overrides both
    ch = hh.chan("own:")
    await c.ok("publish", channel=ch, data=1)
    assert (await c.error("history", channel=ch))["code"] == 108


def test_handshake_timeout_closes_silent_tcp(server_factory):
    """A TCP connection that never completes the HTTP/WebSocket handshake
    is closed after handshake_timeout."""
    import socket
    import time
    s = server_factory({"handshake_timeout": 1})
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.settimeout(t(6))
    start = time.monotonic()
    try:
        data = sock.recv(4096)     # b"" (EOF) or an error response, then EOF
        while data:
            data = sock.recv(4096)
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("silent TCP connection still open after %.0fs "
                             "(handshake_timeout = 1)" % (time.monotonic() - start)) from None
    finally:
        sock.close()
    # not before the timeout (the wait above bounds it from above)
    assert time.monotonic() - start >= 0.9


async def log_an_info_and_a_warn_line(s):
    """Makes the server log at info ("protocol violations: closing", 4101)
    and at warn ("connection limit reached", 4103, max_connections = 1)."""
    c = await s.client()
    for _ in range(10):
        await c.send_raw("garbage")
    assert await c.wait_closed(t(5)) == 4101
    await hh.async_wait_for(lambda: s.healthz()[1]["connections"] == 0, t(5),
                            what="the 4101 connection to be gone")
    a = await s.client()
    await a.ok("ping")
    b = await s.client()
    assert await b.wait_closed(t(5)) == 4103
    await a.close()


@pytest.mark.parametrize("level", ["info", "warn"])
async def test_log_level_filters_lines(server_factory, level):
    s = server_factory({"max_connections": 1}, args=["--log-level", level])
    await log_an_info_and_a_warn_line(s)
    msgs = lambda lv: {l["msg"] for l in s.log_lines() if l["level"] == lv}  # noqa: E731
    await hh.async_wait_for(lambda: "connection limit reached" in msgs("warn"), t(5),
                            what="the warn line")
    if level == "warn":
        assert {l["level"] for l in s.log_lines()} <= {"warn", "error"}, s.log_lines()
    else:
        assert {"listening", "protocol violations: closing"} <= msgs("info"), s.log_lines()


def test_log_level_from_config_and_env(server_factory):
    s = server_factory({"log_level": "error"}, env={"HERALD_LOG_LEVEL": "debug"})
    hh.wait_for(lambda: any(l.get("msg") == "listening" for l in s.log_lines()), t(5),
                what='"listening" logged at debug level')


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999", "127.0.0.1:", ":x"])
def test_bad_listen_option_exits_2(listen):
    r = run_cli(["--listen", listen, "--check-config"])
    assert r.returncode == 2, (listen, r.returncode, r.stderr)
    assert "listen" in r.stderr, r.stderr


def test_port_in_use_exits_nonzero_with_message():
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run_cli(["--listen", "127.0.0.1:%d" % port, "--workers", "2"], timeout=t(10))
    assert r.returncode != 0, r.stderr
    assert str(port) in r.stderr, r.stderr


async def test_env_sets_limits_and_secret(server_factory):
    secret = "env-secret"
    s = server_factory(None, env={"HERALD_MAX_CONNECTIONS": "2",
                                  "HERALD_TOKEN_SECRET": secret,
                                  "HERALD_ALLOW_ANONYMOUS": "false"})
    a = await s.client()
    ok = await a.ok("connect", token=hh.make_jwt(secret, sub="env-user"))
    assert ok["client"]
    b = await s.client()
    assert (await b.error("ping"))["code"] == 101      # anonymous not allowed
    c = await s.client()
    p = await c.push("disconnect")
    assert p["code"] == 4103
    assert await c.wait_closed() == 4103


def test_repeated_option_last_one_wins(server_factory):
    """An option given many times (more than any fixed table would hold)
    neither overflows nor errs: the last value wins."""
    s = server_factory(args=["--log-level", "debug"] * 12 + ["--log-level", "warn"])
    assert s.healthz()[0] == 200
    levels = {l.get("level") for l in s.log_lines()}
    assert "info" not in levels and "debug" not in levels, levels
    assert s.stop() == 0
    assert s.sanitizer_report() is None
