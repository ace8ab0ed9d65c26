#!/usr/bin/env bash
# Supply-chain check: licences, banned or wildcard dependencies and sources (deny.toml), with
# cargo-deny, which is installed first if missing. The advisory check is left out: it needs the
# advisory database from the network.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null; then
    nice -n 19 cargo install --locked cargo-deny
fi
# --offline reads every crate of the lock file, other platforms' too: fetch them first.
cargo fetch --locked --quiet
cargo deny --offline check --hide-inclusion-graph bans licenses sources
