"""The include-circle check (include_cycles.py) itself: it finds a circle
through a header-only module folded into its implementation, reports each
module of the circle, and passes a layered tree. Run by CTest with the
lint label (tests/CMakeLists.txt)."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "include_cycles.py")


def tree(tmp_path, files):
    for path, text in files.items():
        p = tmp_path / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(tmp_path)


def run(root):
    r = subprocess.run([sys.executable, TOOL, root], capture_output=True,
                       text=True, timeout=60)
    return r.returncode, r.stdout


def test_a_layered_tree_passes(tmp_path):
    root = tree(tmp_path, {
        "base/log.h": "",
        "base/log.c": '#include "base/log.h"\n',
        "core/owner.h": '#include "base/log.h"\n',
        "core/owner.c": '#include "core/owner.h"\n#include "base/log.h"\n',
        "net/worker.c": '#include "core/owner.h"\n',
    })
    rc, out = run(root)
    assert rc == 0, out
    assert "no include circle" in out


def test_a_circle_through_a_header_only_module_is_found(tmp_path):
    # store/store.h has no store.c: store/writer.c implements it, and the
    # writer uses the worker, which uses the store.
    root = tree(tmp_path, {
        "store/store.h": "",
        "store/writer.c": '#include "store/store.h"\n#include "net/worker.h"\n',
        "net/worker.h": "",
        "net/worker.c": '#include "net/worker.h"\n#include "store/store.h"\n',
        "base/log.h": "",
    })
    rc, out = run(root)
    assert rc == 1, out
    assert "include circle" in out
    assert "net/worker" in out and "store/writer" in out
    assert "base/log" not in out


def test_a_direct_pair_is_a_circle(tmp_path):
    root = tree(tmp_path, {
        "a.h": "", "a.c": '#include "b.h"\n',
        "b.h": "", "b.c": '#include "a.h"\n',
    })
    rc, out = run(root)
    assert rc == 1
    assert "a <-> b" in out
