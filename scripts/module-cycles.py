#!/usr/bin/env python3
"""Lists import cycles between the crate's modules (files under src/), from `use crate::...`
and `crate::x::y` paths. Exits 1 when there is a cycle. No dependency beyond Python 3."""
import os, re, sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "src")

def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"

files = {}
for d, _, fs in os.walk(ROOT):
    for f in fs:
        if f.endswith(".rs") and not d.endswith(os.sep + "bin"):
            p = os.path.join(d, f)
            files[module_of(p)] = open(p).read()
mods = set(files)

def resolve(path):
    parts = path.split("::")
    for n in range(len(parts), 0, -1):
        m = "::".join(parts[:n])
        if m in mods:
            return m
    return None

edges = {m: set() for m in mods}
for m, text in files.items():
    text = re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", text, flags=re.S)
    uses = re.findall(r"crate::([a-z_][a-z0-9_:]*)", text)
    for block in re.findall(r"use crate::\{([^;]*)\};", text, flags=re.S):
        uses += [u.strip().split("::{")[0] for u in re.split(r",\s*(?![^{]*\})", block)]
    for u in uses:
        t = resolve(u.strip(":"))
        # a module may use its own children and parent freely (one unit)
        if t and t != m and not t.startswith(m + "::") and not m.startswith(t + "::"):
            edges[m].add(t)

# Tarjan's strongly connected components.
index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1:
            sccs.append(sorted(comp))
for v in sorted(mods):
    if v not in index:
        strong(v)
for c in sccs:
    print("cycle among:", ", ".join(c))
    for a in c:
        print("   ", a, "->", ", ".join(sorted(e for e in edges[a] if e in c)))
sys.exit(1 if sccs else 0)
