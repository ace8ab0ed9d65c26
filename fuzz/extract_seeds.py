#!/usr/bin/env python3
"""Writes fuzz seed files from the integration tests and conf/ (run from the repository root).

resources/: every YAML resource text written inline in tests/it/*.rs (format! placeholders filled
in with loopback values) plus conf/resources.yaml. path/: every path literal the tests send.
Hostnames are replaced by 127.0.0.1 so no seed makes the loader resolve a name.
"""
import hashlib
import pathlib
import re

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "fuzz" / "seeds"
UP = '{type: roundrobin, nodes: {"127.0.0.1:9081": 1}}'


def fill(text):
    """Rust format! semantics in one pass: `{{` and `}}` are braces, `{name}` a value."""
    out, i = [], 0
    while i < len(text):
        two = text[i:i + 2]
        if two in ("{{", "}}"):
            out.append(two[0])
            i += 2
            continue
        m = re.match(r"\{([A-Za-z_][A-Za-z0-9_.()]*)?(?::[^}]*)?\}", text[i:])
        if m:
            name = m.group(1) or ""
            out.append(UP if "up" in name else "9081" if "port" in name else "x")
            i += m.end()
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def literals(src):
    for m in re.finditer(r'r(#*)"(.*?)"\1', src, re.S):
        yield m.group(2)
    for m in re.finditer(r'(?<![r#])"((?:[^"\\]|\\.)*)"', src, re.S):
        s = m.group(1)
        s = s.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        s = re.sub(r"\\\n\s*", "", s)
        yield s


def write(kind, data):
    d = out / kind
    d.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    (d / name).write_bytes(data)


resources = {(root / "conf" / "resources.yaml").read_text()}
paths = set()
for f in sorted((root / "tests" / "it").glob("*.rs")):
    src = f.read_text()
    for lit in literals(src):
        if re.search(r"^\s*-?\s*(routes|consumers|upstreams|services|consumer_groups|"
                     r"plugin_configs|global_rules):", lit, re.M):
            text = fill(lit)
            text = re.sub(r'"(?!127\.0\.0\.1)[a-z][a-z0-9.-]*\.(test|com|example|invalid):(\d+)"',
                          r'"127.0.0.1:\2"', text)
            resources.add(text)
        elif re.fullmatch(r"/[^\s\"]{0,120}", lit) and "{" not in lit:
            paths.add(lit.split("?")[0])

for r in resources:
    write("resources", r.encode())
for p in paths:
    write("path", p.encode())
print(f"{len(resources)} resource seeds, {len(paths)} path seeds")
