#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, one after another, at low priority:
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#   FUZZ_TARGETS="path router" scripts/fuzz.sh 600
# Stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags); installs cargo-fuzz if
# missing. Each target starts from its committed seeds (fuzz/seeds/TARGET) plus the corpus kept
# from earlier runs (fuzz/corpus/TARGET, not committed). Built without a sanitizer by default:
# we hunt panics and broken invariants, and an ASan build runs at half the speed. The resource
# file reader drives libyaml through unsafe calls (src/config/yaml.rs): run `resources` under
# AddressSanitizer now and then, SANITIZER=address FUZZ_TARGETS=resources scripts/fuzz.sh 900.
# A crash is saved under fuzz/artifacts/TARGET/ and makes this script exit non-zero; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-...
# and turn it into a unit test in src/fuzzing.rs (or the module concerned).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
targets="${FUZZ_TARGETS:-resources tape rawtext path router auth}"
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null; then
    nice -n 19 cargo install --locked cargo-fuzz
fi

# The loader writes its resource file under TMPDIR: keep it in a directory of this run.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

sanitizer="${SANITIZER:-none}"
nice -n 19 cargo fuzz build -s "$sanitizer"
failed=()
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    echo "== fuzz $t for ${seconds}s"
    log="fuzz/artifacts/$t/last-run.log"
    if ! TMPDIR="$tmp" nice -n 19 cargo fuzz run -s "$sanitizer" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        failed+=("$t")
        tail -40 "$log"
    fi
    grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' "$log" || true
    echo "corpus: $(find "fuzz/corpus/$t" -type f | wc -l) files"
done
if ((${#failed[@]})); then
    echo "fuzz: crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: no crash in: $targets"
