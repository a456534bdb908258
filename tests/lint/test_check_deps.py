"""The dependency check (scripts/check_deps.sh) itself: it passes the real
scripts/deps.sh, and fails, naming the module, header or program and the
Debian package, when a temporary copy of deps.sh lacks a package in the
profile that needs it. The real deps.sh is never edited. Run by CTest with
the unit label (tests/CMakeLists.txt); each run takes well under a second."""

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "scripts", "check_deps.sh")
DEPS = os.path.join(ROOT, "scripts", "deps.sh")


def run(deps=None):
    args = [TOOL] + ([deps] if deps else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def edited_deps(tmp_path, remove=(), add=()):
    """A copy of deps.sh with packages taken out of or put into a profile's
    array: remove=[("build_pkgs", "libjansson-dev")], add likewise."""
    text = open(DEPS).read()
    for array, pkg in remove:
        m = re.search(r"^%s=\((.*?)\)" % array, text, re.M | re.S)
        assert m, array
        body, n = re.subn(r"(?<![\w.+-])%s(?![\w.+-])" % re.escape(pkg), "", m.group(1))
        assert n == 1, (array, pkg)
        text = text[:m.start(1)] + body + text[m.end(1):]
    for array, pkg in add:
        text = re.sub(r"^%s=\(" % array, "%s=(%s " % (array, pkg), text, count=1, flags=re.M)
    path = tmp_path / "deps.sh"
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def test_the_real_deps_sh_passes():
    rc, out = run()
    assert rc == 0, out
    assert "each from a package of its deps.sh profile" in out


def test_an_unchanged_copy_passes(tmp_path):
    rc, out = run(edited_deps(tmp_path))
    assert rc == 0, out


def test_a_build_library_missing_names_module_and_package(tmp_path):
    rc, out = run(edited_deps(tmp_path, remove=[("build_pkgs", "libjansson-dev")]))
    assert rc == 1, out
    assert "libjansson-dev is missing from the build profile" in out
    assert "pkg-config module 'jansson' (CMakeLists.txt:" in out
    assert "header <jansson.h>" in out


def test_criterion_missing_from_the_test_profile(tmp_path):
    rc, out = run(edited_deps(tmp_path, remove=[("test_pkgs", "libcriterion-dev")]))
    assert rc == 1, out
    assert "libcriterion-dev is missing from the test profile" in out
    assert "pkg-config module 'criterion' (tests/CMakeLists.txt:" in out


def test_a_header_only_package_missing(tmp_path):
    rc, out = run(edited_deps(tmp_path, remove=[("build_pkgs", "uthash-dev")]))
    assert rc == 1, out
    assert "uthash-dev is missing from the build profile" in out
    assert "header <uthash.h>" in out


def test_a_build_need_listed_only_for_tests_fails(tmp_path):
    # `make run` installs the build profile only: libuv listed under
    # test_pkgs does not help it.
    deps = edited_deps(tmp_path, remove=[("build_pkgs", "libuv1-dev")],
                       add=[("test_pkgs", "libuv1-dev")])
    rc, out = run(deps)
    assert rc == 1, out
    assert "libuv1-dev is missing from the build profile" in out
    assert "pkg-config module 'libuv'" in out
    assert "test profile" not in out


def test_the_interpreter_missing(tmp_path):
    # python3 runs the tests and, at build time, converts docs/openapi.yaml
    # (server/CMakeLists.txt): missing from both profiles, the build's need
    # is the one named (what the build profile lacks the test one lacks).
    rc, out = run(edited_deps(tmp_path, remove=[("test_pkgs", "python3"),
                                                ("build_pkgs", "python3")]))
    assert rc == 1, out
    assert "program 'python3' (server/CMakeLists.txt:" in out
    assert "python3-minimal is missing from the build profile" in out
