#!/usr/bin/env python3
"""No include circle in server/: a module (a .c file and its .h) may use
another module only if that one does not use it back, directly or through
others (docs/architecture.md, "Layers"). A module is a path without its
extension: net/conn.c and net/conn.h are the module net/conn. A header
without a .c of its name (store/store.h) is one module with the .c files of
its folder that include it (store/writer.c, store/reader.c, ...): they are
its implementation. Prints every circle found and exits 1; exits 0 when the
graph has none.

Usage: include_cycles.py [SERVER_DIR]   (default: server/ beside tests/)
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def modules(root):
    """module -> set of modules it includes (headers found under root)."""
    graph = {}
    for d, _, files in os.walk(root):
        for f in files:
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(d, f)
            mod = os.path.splitext(os.path.relpath(path, root))[0]
            deps = graph.setdefault(mod, set())
            with open(path, encoding="utf-8") as fh:
                for inc in INCLUDE.findall(fh.read()):
                    if os.path.exists(os.path.join(root, inc)):
                        dep = os.path.splitext(inc)[0]
                        if dep != mod:
                            deps.add(dep)
    return graph


def merge_implementations(graph, root):
    """Folds a header-only module into the .c files of its folder that
    include it (directly or through a header of that folder)."""
    sources = {m for m in graph if os.path.exists(os.path.join(root, m + ".c"))}
    rep = {m: m for m in graph}

    def find(m):
        while rep[m] != m:
            rep[m] = rep[rep[m]]
            m = rep[m]
        return m

    for h in sorted(graph):
        if h in sources or not os.path.exists(os.path.join(root, h + ".h")):
            continue
        folder = os.path.dirname(h)
        # Headers of the folder that reach h, h included.
        reach = {h}
        changed = True
        while changed:
            changed = False
            for m, deps in graph.items():
                if (m not in reach and m not in sources and
                        os.path.dirname(m) == folder and deps & reach):
                    reach.add(m)
                    changed = True
        for c in sorted(sources):
            if os.path.dirname(c) == folder and graph[c] & reach:
                rep[find(h)] = find(c)
    merged = {}
    for m, deps in graph.items():
        r = find(m)
        merged.setdefault(r, set()).update(find(d) for d in deps)
        merged[r].discard(r)
    names = {}
    for m in graph:
        names.setdefault(find(m), []).append(m)
    return merged, {r: "+".join(sorted(v)) for r, v in names.items()}


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "server")
    graph, names = merge_implementations(modules(root), root)
    found = cycles(graph)
    for comp in found:
        print("include circle: " + " <-> ".join(names[m] for m in comp))
        for m in comp:
            uses = sorted(names[d] for d in graph[m] if d in comp)
            print("  %s uses %s" % (names[m], ", ".join(uses)))
    if not found:
        print("no include circle among %d modules" % len(graph))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
