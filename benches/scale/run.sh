#!/usr/bin/env bash
# Scale benchmark (issue 13): N consumers with one key-auth credential each, one key-auth route
# to the echo upstream, everything on 127.0.0.1 with free ports. For each N it measures
#   check            `tollgate check` wall time (and its peak RSS)
#   start            exec to the first 200 through the proxy port
#   steady RSS       VmRSS 1 s after that; peak RSS (load) = VmHWM then
#   one key / random wrk through a Lua script: the same key on every request, then a random key
#                    out of N per request, alternating (RANDOM_RUNS pairs, to show whether it
#                    decays and so that a neighbour's load weighs on both), with p99 and the ratios
#   RSS after        VmRSS after the random runs (every called consumer has its series)
#   SIGHUP reload    with one consumer removed from the file: SIGHUP to "Reloaded config" in the
#                    log, while wrk sends random keys; peak RSS during it (VmHWM reset before
#                    through /proc/PID/clear_refs, read when that wrk ends), failed requests and
#                    max latency of that wrk
# and prints a Markdown table, appended to RESULTS (a "Scale" section) unless RESULTS is empty,
# with `uptime` before and after (the machine may be shared).
#
# Settings (environment): SIZES="100000 1000000" DURATION=10 (s per wrk run) RANDOM_RUNS=3
# THREADS=2 CONNECTIONS=50 (wrk) GATEWAY_THREADS=2 BUILD=1 (0 skips `cargo build --release`)
# RESULTS=benches/RESULTS.md TOLLGATE_BIN ECHO_BIN (default: the release builds).
# Every process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZES=${SIZES:-100000 1000000}
DURATION=${DURATION:-10}
RANDOM_RUNS=${RANDOM_RUNS:-3}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
GATEWAY_THREADS=${GATEWAY_THREADS:-2}
BUILD=${BUILD:-1}
RESULTS=${RESULTS-benches/RESULTS.md}
TOLLGATE_BIN=${TOLLGATE_BIN:-target/release/tollgate}
ECHO_BIN=${ECHO_BIN:-target/release/examples/echo}
here=benches/scale

log() { echo "scale: $*" >&2; }
command -v wrk >/dev/null || { log "wrk is not installed (apt-get install wrk)"; exit 1; }
command -v python3 >/dev/null || { log "python3 is needed to write the configs"; exit 1; }
if [ "$BUILD" = 1 ]; then
    cargo build --release --bin tollgate --example echo
fi
# shellcheck source=benches/scale/common.sh
source "$here/common.sh"
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f s", b - a}'; }
# VmRSS or VmHWM of PID in MB (10^6 bytes)
mem() { awk -v k="$2:" '$1 == k {printf "%.0f MB", $2 * 1024 / 1e6}' "/proc/$1/status"; }
stop() { # PID: stop one process we started and forget it
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local rest=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || rest+=("$p"); done
    pids=("${rest[@]}")
}
keys=0 # random keys are k0000000 .. k<keys - 1>
run_wrk() { # OUT DURATION [KEY_INDEX]: wrk through random.lua
    local out=$1 d=$2
    if [ -n "${3:-}" ]; then
        KEY_INDEX=$3 N=$keys wrk -t"$THREADS" -c"$CONNECTIONS" -d"$d" --latency -s "$here/random.lua" \
            "http://127.0.0.1:$gw_port" >"$out"
    else
        N=$keys wrk -t"$THREADS" -c"$CONNECTIONS" -d"$d" --latency -s "$here/random.lua" \
            "http://127.0.0.1:$gw_port" >"$out"
    fi
}
rps() { awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$1"; }
p99() { awk '$1 == "99%" {print $2}' "$1"; }
max_lat() { awk '$1 == "Latency" {print $4}' "$1"; }
errors() {
    awk '/Non-2xx or 3xx responses:/ {n += $NF}
        /Socket errors:/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10}
        END {print n + 0}' "$1"
}
count_reloads() { grep -c "Reloaded config" "$tmp/tollgate.log" || true; }

load_before=$(uptime | sed 's/.*load average: //')
echo_port=$(free_port)
"$ECHO_BIN" "127.0.0.1:$echo_port" 2>"$tmp/echo.log" &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$echo_port/" && break; sleep 0.1; done
curl -s -o /dev/null "http://127.0.0.1:$echo_port/" || { log "the echo upstream did not start:"; cat "$tmp/echo.log" >&2; exit 1; }

table="| consumers | check (peak RSS) | start to listening | steady RSS | peak RSS (load) | one key: req/s, p99 (each run) | random keys: req/s, p99 (each run) | random / one key: req/s, p99 | RSS after | SIGHUP reload | peak RSS (reload) | during reload: failed, max latency |
|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in $SIZES; do
    log "$n consumers: writing the config"
    keys=$n
    python3 "$here/gen.py" "$n" "127.0.0.1:$echo_port" "$tmp/resources.yaml"
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

    log "$n: check"
    t0=$(now)
    /usr/bin/time -f "%M" -o "$tmp/check.time" "$TOLLGATE_BIN" check -c "$tmp/tollgate.yaml" >"$tmp/check.log" 2>&1 ||
        { log "check failed:"; cat "$tmp/check.log" >&2; exit 1; }
    t1=$(now)
    check="$(secs "$t0" "$t1") ($(awk '{printf "%.0f MB", $1 * 1024 / 1e6}' "$tmp/check.time"))"

    log "$n: start"
    t0=$(now)
    RUST_LOG=info "$TOLLGATE_BIN" -c "$tmp/tollgate.yaml" 2>"$tmp/tollgate.log" &
    gw=$!
    pids+=("$gw")
    until [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'apikey: k0000000' "http://127.0.0.1:$gw_port/auth/x")" = 200 ]; do
        kill -0 "$gw" 2>/dev/null || { log "tollgate exited:"; cat "$tmp/tollgate.log" >&2; exit 1; }
        sleep 0.02
    done
    t1=$(now)
    start=$(secs "$t0" "$t1")
    peak_load=$(mem "$gw" VmHWM)
    sleep 1
    steady=$(mem "$gw" VmRSS)

    # One-key and random-key runs alternate, so a neighbour's load that comes or goes during
    # the measurement weighs on both alike; each pair gives a ratio.
    one="" random="" ratio=""
    for r in $(seq "$RANDOM_RUNS"); do
        log "$n: one key, run $r, ${DURATION}s"
        run_wrk "$tmp/one.out" "${DURATION}s" 1
        one="$one${one:+ / }$(rps "$tmp/one.out"), $(p99 "$tmp/one.out")"
        [ "$(errors "$tmp/one.out")" = 0 ] || one="$one ($(errors "$tmp/one.out") failed)"
        log "$n: random keys, run $r, ${DURATION}s"
        run_wrk "$tmp/random.out" "${DURATION}s"
        random="$random${random:+ / }$(rps "$tmp/random.out"), $(p99 "$tmp/random.out")"
        [ "$(errors "$tmp/random.out")" = 0 ] || random="$random ($(errors "$tmp/random.out") failed)"
        ratio="$ratio${ratio:+ / }$(awk -v a="$(rps "$tmp/random.out")" -v b="$(rps "$tmp/one.out")" \
            -v p="$(p99 "$tmp/random.out")" -v q="$(p99 "$tmp/one.out")" '
            function ms(x) { if (x ~ /us$/) return x / 1000; if (x ~ /ms$/) return x + 0; return x * 1000 }
            BEGIN { printf "%.2f, %.2f", a / b, ms(p) / ms(q) }')"
    done
    after=$(mem "$gw" VmRSS)

    log "$n: SIGHUP reload under random-key load"
    python3 "$here/gen.py" "$n" "127.0.0.1:$echo_port" "$tmp/resources.yaml.new" $((n - 1))
    mv "$tmp/resources.yaml.new" "$tmp/resources.yaml" # the watcher reloads it too
    keys=$((n - 1)) # the removed consumer's key would be a 401
    # Let the watcher's reload of the new file finish, so SIGHUP measures a reload of its own.
    for _ in $(seq 3000); do [ "$(count_reloads)" -ge 1 ] && break; sleep 0.02; done
    before=$(count_reloads)
    # wrk runs around the reload: long enough for a reload as slow as 3 starts, plus 2 s each side.
    d=$(awk -v s="${start% s}" 'BEGIN {printf "%d", 4 + 3 * s + 1}')
    run_wrk "$tmp/reload.out" "${d}s" &
    wrk_pid=$!
    pids+=("$wrk_pid")
    sleep 2
    echo 5 >"/proc/$gw/clear_refs"
    t0=$(now)
    kill -HUP "$gw"
    until [ "$(count_reloads)" -gt "$before" ]; do
        kill -0 "$gw" 2>/dev/null || { log "tollgate exited:"; cat "$tmp/tollgate.log" >&2; exit 1; }
        sleep 0.01
    done
    t1=$(now)
    reload=$(secs "$t0" "$t1")
    # Read once wrk is done (seconds after the log line, which comes before the metrics' prune
    # and the swap): the whole reload, the old config's release included.
    wait "$wrk_pid" || true
    peak_reload=$(mem "$gw" VmHWM)
    stop "$wrk_pid"
    during="$(errors "$tmp/reload.out") of $(awk '/requests in/ {print $1}' "$tmp/reload.out"), $(max_lat "$tmp/reload.out")"
    stop "$gw"
    table+=$'\n'"| $n | $check | $start | $steady | $peak_load | $one | $random | $ratio | $after | $reload | $peak_reload | $during |"
    echo "$table" | tail -1 >&2
done

load_after=$(uptime | sed 's/.*load average: //')
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev+changes"
report="### $(date -u '+%Y-%m-%d %H:%M UTC'): ${cpu:-unknown CPU}, $(nproc) CPUs, tollgate $rev

\`benches/scale/run.sh\`: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s through a Lua script; tollgate threads:
$GATEWAY_THREADS; wrk, tollgate and the echo upstream share the CPUs. MB = 10^6 bytes. Load average
before: $load_before; after: $load_after.

$table
"
echo
echo "$report"
if [ -n "$RESULTS" ]; then
    grep -q '^## Scale' "$RESULTS" 2>/dev/null ||
        printf '\n## Scale\n\nAppended by `benches/scale/run.sh` (issue 13), newest last.\n' >>"$RESULTS"
    # At the end of the Scale section (before the next `## ` heading), not of the file.
    printf '%s\n' "$report" >"$tmp/report.md"
    awk -v rep="$tmp/report.md" '
        function put() { while ((getline l < rep) > 0) print l; print ""; done = 1 }
        /^## / && in_scale && !done { put() }
        /^## Scale/ { in_scale = 1 } { print }
        END { if (!done) { print ""; put() } }' "$RESULTS" >"$tmp/results.md"
    cp "$tmp/results.md" "$RESULTS"
    log "appended to $RESULTS"
fi
