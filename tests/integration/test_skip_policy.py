"""skip_policy.py, the CI rule for skips: pytest runs on small generated
test files with CI set or not, and an allow-list of its own."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

TESTS = '''
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("needs a frobnicator")

@pytest.mark.xfail(strict=True, reason="the library cannot")
def test_xfails():
    assert False
'''


def run(tmp_path, source, ci, allow=""):
    (tmp_path / "test_gen.py").write_text(source)
    (tmp_path / "allowed.txt").write_text(allow)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HERALD_EXPECTED_SKIPS")}
    env.update(PYTHONPATH=HERE, HERALD_EXPECTED_SKIPS=str(tmp_path / "allowed.txt"))
    if ci is not None:
        env["CI"] = ci
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "skip_policy", "-rA", "test_gen.py"],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_outside_ci_skips_and_xfails_pass(tmp_path, ci):
    rc, out = run(tmp_path, TESTS, ci)
    assert rc == 0 and "1 passed, 1 skipped, 1 xfailed" in out, out


@pytest.mark.parametrize("ci", ["true", "1", "TRUE"])
def test_in_ci_an_unlisted_skip_or_xfail_fails(tmp_path, ci):
    rc, out = run(tmp_path, TESTS, ci)
    assert rc == 1, out
    assert "2 failed, 1 passed" in out, out
    assert "test_gen.py::test_skips was skipped in CI" in out and "needs a frobnicator" in out, out
    assert "test_gen.py::test_xfails was an expected failure in CI" in out, out


def test_in_ci_listed_skip_and_xfail_pass(tmp_path):
    allow = ("# comment\n\n"
             "test_gen.py::test_sk* | needs a frobnicator   # why: by design\n"
             "test_gen.py::test_xfails | the library cannot\n")
    rc, out = run(tmp_path, TESTS, "true", allow)
    assert rc == 0 and "1 passed, 1 skipped, 1 xfailed" in out, out


def test_in_ci_a_listed_test_skipped_for_another_reason_fails(tmp_path):
    rc, out = run(tmp_path, TESTS, "true", "test_gen.py::test_skips | needs a widget\n"
                                           "test_gen.py::test_xfails | the library cannot\n")
    assert rc == 1 and "1 failed" in out and "needs a frobnicator" in out, out


@pytest.mark.parametrize("how", [
    'pytestmark = pytest.mark.skipif(True, reason="needs openssl")\n',
    'pytest.skip("needs openssl", allow_module_level=True)\n'])
def test_in_ci_a_skipped_module_fails(tmp_path, how):
    src = "import pytest\n" + how + "\ndef test_a():\n    pass\n\ndef test_b():\n    pass\n"
    rc, out = run(tmp_path, src, "true")
    assert rc != 0 and "passed" not in out.splitlines()[-1], out
    assert "needs openssl" in out, out
    rc, out = run(tmp_path, src, None)
    assert rc in (0, 5), out   # (5: pytest's own "no tests collected")


def test_a_malformed_allow_list_line_is_an_error(tmp_path):
    rc, out = run(tmp_path, TESTS, "true", "test_gen.py::test_skips\n")
    assert rc not in (0, 1) and "expected '<node id pattern> | <reason>'" in out, out


def test_the_repository_allow_list_parses():
    import skip_policy
    entries = skip_policy.load_allowed(os.path.join(HERE, "expected_skips.txt"))
    assert entries and all(p and r for p, r in entries)
