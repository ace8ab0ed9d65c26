#!/usr/bin/env python3
"""Writes a tollgate resources file: one key-auth route to UPSTREAM and N consumers, consumer
c<i> with key-auth key k<i> (i zero-padded to 7 digits, from 0). Usage: gen.py N UPSTREAM OUT
[SKIP]: SKIP leaves consumer SKIP out (a changed config for the reload)."""
import sys

n, upstream, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
skip = int(sys.argv[4]) if len(sys.argv) > 4 else -1
with open(out, "w", buffering=1 << 20) as f:
    f.write(
        "upstreams:\n"
        f'  - {{id: echo, nodes: {{"{upstream}": 1}}}}\n'
        "routes:\n"
        "  - {id: auth, uri: /auth/*, upstream_id: echo, plugins: {key-auth: {}}}\n"
        "consumers:\n"
    )
    f.writelines(
        f"  - {{username: c{i:07d}, plugins: {{key-auth: {{key: k{i:07d}}}}}}}\n"
        for i in range(n)
        if i != skip
    )
    f.write("#END\n")
