#!/usr/bin/env bash
# ipr.sh: user-space instructions per request of tollgate (and bare Pingora) under callgrind, on
# the configurations run.sh generates: ../shared/bench/instructions-per-request.sh per target.
#
# Usage: benches/load/ipr.sh [TARGET...]   (default: tg-all; also tg-plain tg-key tg-restrict
#        tg-limit tg-log bare-pingora). TOLLGATE_BIN / BARE_BIN: the binaries (default: release
#        builds, not rebuilt). IPR=path of instructions-per-request.sh. OUT=folder keeps dumps.
# Prints one line per target: "TARGET  N.Nk" plus the script's top functions when TOP is set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
IPR="${IPR:-$(realpath ../shared/bench/instructions-per-request.sh)}"
TOLLGATE_BIN="${TOLLGATE_BIN:-target/release/tollgate}"
BARE_BIN="${BARE_BIN:-target/release/examples/bare_proxy}"
conf="$(CONFIG_ONLY=1 BUILD=0 benches/load/run.sh 2>/dev/null)"
targets=("$@")
((${#targets[@]})) || targets=(tg-all)
for t in "${targets[@]}"; do
    out="$(mktemp -d "${TMPDIR:-/tmp}/ipr-$t.XXXXXX")"
    case "$t" in
        bare-pingora)
            FLOOR_LISTEN=127.0.0.1:9083 FLOOR_UPSTREAM=127.0.0.1:1980 OUT="$out" TOP="${TOP:-25}" \
                "$IPR" 9083 -- "$BARE_BIN" -c benches/load/conf/bare-pingora.yaml >"$out/ipr.txt" ;;
        tg-*)
            RUST_LOG=warn OUT="$out" TOP="${TOP:-25}" \
                "$IPR" 9080 'apikey: key-7' -- "$TOLLGATE_BIN" -c "$conf/$t.yaml" >"$out/ipr.txt" ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    printf '%-12s %s   (%s)\n' "$t" "$(grep -o '[0-9.]*k$' "$out/ipr.txt" | head -1)" "$out/ipr.txt"
done
