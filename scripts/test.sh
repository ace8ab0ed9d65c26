#!/usr/bin/env bash
# The whole test suite: installs what the tests need (scripts/setup.sh), then checks formatting,
# lints and that no module imports form a cycle, and runs every test. The integration tests
# start the real binary, upstream servers and redis-server processes themselves. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
scripts/module-cycles.py
scripts/deny.sh
cargo test --all-targets
