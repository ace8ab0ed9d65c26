#!/usr/bin/env bash
# Reload benchmark (issue 13): N consumers (benches/scale/gen.py), tollgate started on them,
# then RELOADS SIGHUPs of the file, each timed from the signal to "Reloaded config" in the log.
# The first SIGHUP reloads a file with one consumer removed (so one consumer is compiled and
# the rest shared), the later ones the same file again (everything shared). For each reload:
#   wall       SIGHUP to "Reloaded config"
#   CPU        user + system CPU of the whole process over the reload (/proc/PID/stat; with
#              WRK=1 it includes the proxy threads serving wrk)
#   before     VmRSS just before the SIGHUP (SETTLE seconds after the previous reload)
#   peak       VmHWM from just before the SIGHUP (reset through /proc/PID/clear_refs) to SETTLE s
#              after "Reloaded config", which is logged before the metrics' prune and the swap:
#              the whole reload, the old config's release included
#   ratios     peak / before, and peak / the RSS 1 s after start ("steady")
# With WRK=1 wrk sends random keys (benches/scale/random.lua) through the proxy during each
# reload (from 1 s before the signal until it is logged), and its failed requests and slowest
# request are printed per reload. Prints a Markdown table; appends nothing.
#
# Settings (environment): N=1000000 RELOADS=3 SETTLE=4 (s between reloads) WRK=0
# THREADS=2 CONNECTIONS=50 (wrk) GATEWAY_THREADS=2 BUILD=1 (0 skips `cargo build --release`)
# TOLLGATE_BIN ECHO_BIN (default: the release builds). Every process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-1000000}
RELOADS=${RELOADS:-3}
SETTLE=${SETTLE:-4}
WRK=${WRK:-0}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
GATEWAY_THREADS=${GATEWAY_THREADS:-2}
BUILD=${BUILD:-1}
TOLLGATE_BIN=${TOLLGATE_BIN:-target/release/tollgate}
ECHO_BIN=${ECHO_BIN:-target/release/examples/echo}
here=benches/scale

log() { echo "reload: $*" >&2; }
if [ "$BUILD" = 1 ]; then
    cargo build --release --bin tollgate --example echo
fi
[ "$WRK" = 0 ] || command -v wrk >/dev/null || { log "wrk is not installed"; exit 1; }

# shellcheck source=benches/scale/common.sh
source "$here/common.sh"
kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mb() { awk -v x="$1" 'BEGIN {printf "%.0f", x * 1024 / 1e6}'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
count_reloads() { grep -c "Reloaded config" "$tmp/tollgate.log" || true; }

echo_port=$(free_port)
"$ECHO_BIN" "127.0.0.1:$echo_port" 2>"$tmp/echo.log" &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$echo_port/" && break; sleep 0.1; done
curl -s -o /dev/null "http://127.0.0.1:$echo_port/" || { log "the echo upstream did not start:"; cat "$tmp/echo.log" >&2; exit 1; }

python3 "$here/gen.py" "$N" "127.0.0.1:$echo_port" "$tmp/resources.yaml"
gw_port=$(free_port)
status_port=$(free_port)
cat >"$tmp/tollgate.yaml" <<EOF2
listen: ["127.0.0.1:$gw_port"]
status_listen: "127.0.0.1:$status_port"
threads: $GATEWAY_THREADS
resources: ["resources.yaml"]
pid_file: $tmp/tollgate.pid
upgrade_sock: $tmp/tollgate_upgrade.sock
graceful_shutdown_timeout_seconds: 1
EOF2

load_before=$(uptime | sed 's/.*load average: //')
t0=$(now)
RUST_LOG=info "$TOLLGATE_BIN" -c "$tmp/tollgate.yaml" 2>"$tmp/tollgate.log" &
gw=$!
pids+=("$gw")
until [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'apikey: k0000000' "http://127.0.0.1:$gw_port/auth/x")" = 200 ]; do
    kill -0 "$gw" 2>/dev/null || { log "tollgate exited:"; cat "$tmp/tollgate.log" >&2; exit 1; }
    sleep 0.02
done
t1=$(now)
start=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
sleep 1
steady=$(kb "$gw" VmRSS)
hz=$(getconf CLK_TCK)
keys=$((N - 1))

rows=""
for r in $(seq "$RELOADS"); do
    if [ "$r" = 1 ]; then
        # The file loses one consumer; the watcher would reload it on its own after its
        # debounce: the SIGHUP comes first and the watcher's reload finds the same version.
        python3 "$here/gen.py" "$N" "127.0.0.1:$echo_port" "$tmp/resources.yaml.new" $((N - 1))
    fi
    if [ "$WRK" != 0 ]; then
        N=$keys wrk -t"$THREADS" -c"$CONNECTIONS" -d120s --latency -s "$here/random.lua" \
            "http://127.0.0.1:$gw_port" >"$tmp/wrk.out" &
        wrk_pid=$!
        pids+=("$wrk_pid")
        sleep 1
    fi
    before=$(count_reloads)
    rss0=$(kb "$gw" VmRSS)
    c0=$(ticks "$gw")
    [ "$r" = 1 ] && mv "$tmp/resources.yaml.new" "$tmp/resources.yaml"
    echo 5 >"/proc/$gw/clear_refs"
    t0=$(now)
    kill -HUP "$gw"
    until [ "$(count_reloads)" -gt "$before" ]; do
        kill -0 "$gw" 2>/dev/null || { log "tollgate exited:"; cat "$tmp/tollgate.log" >&2; exit 1; }
        sleep 0.01
    done
    t1=$(now)
    c1=$(ticks "$gw")
    during=""
    if [ "$WRK" != 0 ]; then
        kill -INT "$wrk_pid" 2>/dev/null || true
        wait "$wrk_pid" 2>/dev/null || true
        rest=()
        for p in "${pids[@]}"; do [ "$p" = "$wrk_pid" ] || rest+=("$p"); done
        pids=("${rest[@]}")
        failed=$(awk '/Non-2xx or 3xx responses:/ {n += $NF}
            /Socket errors:/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10}
            END {print n + 0}' "$tmp/wrk.out")
        total=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
        maxlat=$(awk '$1 == "Latency" {print $4}' "$tmp/wrk.out")
        during=" $failed of $total, $maxlat |"
    fi
    sleep "$SETTLE"
    peak=$(kb "$gw" VmHWM)
    row=$(awk -v a="$t0" -v b="$t1" -v c0="$c0" -v c1="$c1" -v hz="$hz" -v rss0="$rss0" \
        -v peak="$peak" -v steady="$steady" -v r="$r" 'BEGIN {
        printf "| %d | %.2f s | %.2f s | %.0f MB | %.0f MB | %.2fx | %.2fx |", r, b - a,
            (c1 - c0) / hz, rss0 * 1024 / 1e6, peak * 1024 / 1e6, peak / rss0, peak / steady }')
    rows+="$row$during"$'\n'
    log "$row$during"
done
settled=$(kb "$gw" VmRSS)
load_after=$(uptime | sed 's/.*load average: //')
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev+changes"
head="| reload | wall | CPU | RSS before | peak RSS | peak / before | peak / steady |"
sep="|---|---|---|---|---|---|---|"
if [ "$WRK" != 0 ]; then
    head+=" wrk during it: failed, slowest |"
    sep+="---|"
fi
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), tollgate $rev, $N consumers, WRK=$WRK: start to listening $start s,"
echo "steady RSS $(mb "$steady") MB (1 s after start), RSS $SETTLE s after the last reload $(mb "$settled") MB;"
echo "load average before: $load_before; after: $load_after."
echo
echo "$head"
echo "$sep"
printf '%s' "$rows"
