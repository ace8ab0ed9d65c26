#!/usr/bin/env bash
# run.sh: tollgate against bare Pingora and an nginx key-auth gateway, side by side, on loopback.
#
# The yardstick of issue 12, measured as the shared rig (../shared/bench/compare.sh) does:
#   - upstream: nginx, 1 worker, `return 200 "1234567890"` on 127.0.0.1:1980 (conf/upstream.conf)
#   - the gateway under test pinned to GATEWAY_CPU (0); the upstream and wrk pinned to LOADGEN_CPU
#     (1), so a figure is one gateway core's throughput
#   - wrk -t1 -c64, keepalive, `GET /hello` with `apikey: key-N`, N cycling over 1,000 keys
#     (keys.lua); wrk's own count of non-2xx/3xx answers is the status check
#   - interleaved rounds (A B C ... A B C ...): each target is started, checked, warmed up,
#     measured, its peak RSS read, and stopped, so the machine's drift hits every target alike
#   - a table of medians over the rounds and the ratios against the peers
#
# Targets (TARGETS, in this order by default; LADDER=1 adds the per-plugin ladder):
#   upstream       wrk straight to the upstream: the load-generator core's ceiling       :1980
#   nginx-keyauth  nginx key-auth gateway over the same 1,000 keys (conf/nginx-keyauth.conf) :9082
#   bare-pingora   examples/bare_proxy.rs, threads: 1: the framework's floor              :9083
#   tg-all         tollgate: key-auth (1,000 consumers), consumer-restriction (group whitelist),
#                  limit-count local never reached, X-Consumer-Username + X-Consumer-Custom-ID
#                  upstream, metrics with the consumer label; no access log                 :9080
#   ladder (LADDER=1), each one plugin more than the one before, all on :9080:
#   tg-plain       a plain route, no plugin, metrics without the consumer label
#   tg-key         + key-auth (and its consumer headers)
#   tg-restrict    + consumer-restriction
#   tg-limit       + limit-count, local
#   tg-all         + metrics consumer label (the full configuration above)
#   tg-log         + access log, JSON to a file
#   tg-all-base    tg-all run by BASE_BIN (only when BASE_BIN is set): another build of tollgate,
#                  e.g. the one before a change, measured in the same rounds              :9080
#
# Settings (environment): ROUNDS=3 DURATION=10 WARMUP=3 CONNECTIONS=64 THREADS=1 KEYS=1000
# GATEWAY_CPU=0 LOADGEN_CPU=1 LADDER=0 TARGETS="..." BUILD=1 (0: use the binaries as they are)
# TOLLGATE_BIN BARE_BIN (default: the release builds) BASE_BIN (a second tollgate binary, adds
# target tg-all-base) OUT_DIR=folder (copy results.tsv and
# summary.txt there). CONFIG_ONLY=1: only write the configurations and print their folder.
# Every process it starts is stopped by PID (its own process group).
#
# Figures from different runs or machines are not comparable; ratios from one run are.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT="$PWD"
LOAD_DIR="$ROOT/benches/load"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-1}"
KEYS="${KEYS:-1000}"
GATEWAY_CPU="${GATEWAY_CPU:-0}"
LOADGEN_CPU="${LOADGEN_CPU:-1}"
LADDER="${LADDER:-0}"
BUILD="${BUILD:-1}"
TOLLGATE_BIN="${TOLLGATE_BIN:-target/release/tollgate}"
BARE_BIN="${BARE_BIN:-target/release/examples/bare_proxy}"
UPSTREAM_PORT=1980
TG_PORT=9080
TG_STATUS_PORT=9090
READY_TIMEOUT=30
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STOP_TIMEOUT=10

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- tools and binaries ------------------------------------------------------------------------
need_apt=()
for tool in nginx:nginx wrk:wrk curl:curl taskset:util-linux setsid:util-linux ss:iproute2; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool#*:}")
done
if ((${#need_apt[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing ${need_apt[*]} (Debian packages; nginx's own service is not used)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        die "missing tools; install the Debian packages: ${need_apt[*]}"
    fi
fi
NGINX_BIN="$(command -v nginx)"
WRK_BIN="$(command -v wrk)"
ncpu="$(nproc --all)"
((GATEWAY_CPU < ncpu && LOADGEN_CPU < ncpu)) || die "need CPUs $GATEWAY_CPU and $LOADGEN_CPU, have $ncpu"

if [[ "$BUILD" == 1 ]]; then
    log "cargo build --release --bin tollgate --example bare_proxy"
    cargo build --release --quiet --bin tollgate --example bare_proxy
fi
[[ -x "$TOLLGATE_BIN" ]] || die "$TOLLGATE_BIN not found (cargo build --release --bin tollgate)"
[[ -x "$BARE_BIN" ]] || die "$BARE_BIN not found (cargo build --release --example bare_proxy)"
TOLLGATE_BIN="$(realpath "$TOLLGATE_BIN")"
BARE_BIN="$(realpath "$BARE_BIN")"
BASE_BIN="${BASE_BIN:-}"
if [[ -n "$BASE_BIN" ]]; then
    [[ -x "$BASE_BIN" ]] || die "BASE_BIN $BASE_BIN is not an executable"
    BASE_BIN="$(realpath "$BASE_BIN")"
fi

default_targets="upstream nginx-keyauth bare-pingora tg-all"
[[ "$LADDER" == 1 ]] && default_targets="upstream nginx-keyauth bare-pingora tg-plain tg-key tg-restrict tg-limit tg-all tg-log"
[[ -n "$BASE_BIN" ]] && default_targets+=" tg-all-base"
TARGETS="${TARGETS:-$default_targets}"

port_of() {
    case "$1" in
        upstream) echo "$UPSTREAM_PORT" ;;
        nginx-keyauth) echo 9082 ;;
        bare-pingora) echo 9083 ;;
        tg-*) echo "$TG_PORT" ;;
        *) die "unknown target $1" ;;
    esac
}
# Consumer header the pre-flight expects upstream for key-42 ("" = no auth checks).
expected_consumer_of() {
    case "$1" in
        nginx-keyauth | tg-key | tg-restrict | tg-limit | tg-all | tg-log | tg-all-base) echo consumer-42 ;;
        *) echo "" ;;
    esac
}
for t in $TARGETS; do port_of "$t" >/dev/null; done
for p in "$UPSTREAM_PORT" 9082 9083 "$TG_PORT" "$TG_STATUS_PORT"; do
    [[ "${CONFIG_ONLY:-0}" == 1 ]] && break
    if ss -Hltn "sport = :$p" | grep -q .; then
        die "port $p is already in use on this machine; stop whatever listens there"
    fi
done

# --- scratch folder: configs, logs, raw results ------------------------------------------------
RUN="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-load.XXXXXX")"
mkdir -p "$RUN/conf" "$RUN/logs" "$RUN/tmp"
cp "$LOAD_DIR"/conf/*.conf "$RUN/conf/"
for ((k = 0; k < KEYS; k++)); do printf 'key-%d consumer-%d;\n' "$k" "$k"; done >"$RUN/conf/keys.map"

# tollgate: one node file per ladder step, one resource file per plugin set.
tg_node() { # NAME RESOURCES CONSUMER_LABEL ACCESS_LOG(0/1)
    {
        echo "listen: [\"127.0.0.1:$TG_PORT\"]"
        echo "status_listen: \"127.0.0.1:$TG_STATUS_PORT\""
        echo "threads: 1"
        echo "resources: [\"$2\"]"
        echo "pid_file: $RUN/tmp/$1.pid"
        echo "upgrade_sock: $RUN/tmp/$1-upgrade.sock"
        echo "graceful_shutdown_timeout_seconds: 1"
        echo "metrics: {consumer_label: $3}"
        [[ "$4" == 1 ]] && echo "access_log: {path: $RUN/logs/$1-access.log, format: json}"
        true
    } >"$RUN/conf/$1.yaml"
}
tg_resources() { # FILE AUTH(0/1) RESTRICT(0/1) LIMIT(0/1)
    {
        echo "upstreams:"
        echo "  - id: up"
        echo "    nodes: {\"127.0.0.1:$UPSTREAM_PORT\": 1}"
        echo "routes:"
        echo "  - id: bench"
        echo "    uri: /*"
        echo "    upstream_id: up"
        if [[ "$2$3$4" != 000 ]]; then
            echo "    plugins:"
            [[ "$2" == 1 ]] && echo "      key-auth: {header: apikey}"
            [[ "$3" == 1 ]] && echo "      consumer-restriction: {type: consumer_group_id, whitelist: [bench]}"
            [[ "$4" == 1 ]] && echo "      limit-count: {count: 1000000000, time_window: 3600, key: consumer_name}"
        fi
        echo "consumer_groups:"
        echo "  - id: bench"
        echo "consumers:"
        for ((k = 0; k < KEYS; k++)); do
            printf '  - {username: consumer-%d, group_id: bench, labels: {custom_id: id-%d}, plugins: {key-auth: {key: key-%d}}}\n' "$k" "$k" "$k"
        done
        echo "#END"
    } >"$1"
}
tg_resources "$RUN/conf/plain.yaml" 0 0 0
tg_resources "$RUN/conf/key.yaml" 1 0 0
tg_resources "$RUN/conf/restrict.yaml" 1 1 0
tg_resources "$RUN/conf/all.yaml" 1 1 1
tg_node tg-plain plain.yaml false 0
tg_node tg-key key.yaml false 0
tg_node tg-restrict restrict.yaml false 0
tg_node tg-limit all.yaml false 0
tg_node tg-all all.yaml true 0
tg_node tg-log all.yaml true 1
if [[ "${CONFIG_ONLY:-0}" == 1 ]]; then # only the configurations (e.g. for benches/load/ipr.sh)
    echo "$RUN/conf"
    exit 0
fi

RAW="$RUN/results.tsv"
printf 'round\ttarget\trps\tp50_us\tp90_us\tp99_us\tmax_us\tnon2xx3xx\tsock_err\tcpu_gw\tcpu_load\tpeak_rss_kb\n' >"$RAW"
log "scratch folder: $RUN"

# --- processes: everything started here is recorded and stopped by PID --------------------------
declare -a STARTED=()

# start_pinned CPU LOGNAME CMD...: CMD in its own session (its PID leads its process group),
# pinned to CPU, output to logs/LOGNAME.log; sets STARTED_PID.
start_pinned() {
    local cpu="$1" name="$2"
    shift 2
    setsid taskset -c "$cpu" "$@" >>"$RUN/logs/$name.log" 2>&1 </dev/null &
    STARTED_PID=$!
    STARTED+=("$STARTED_PID")
}

# stop_pid PID: SIGINT to PID's process group, then TERM, then KILL.
stop_pid() {
    local pid="$1" sig waited
    for sig in INT TERM KILL; do
        kill -0 "$pid" 2>/dev/null || break
        kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true
        for ((waited = 0; waited < STOP_TIMEOUT * 10; waited++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    wait "$pid" 2>/dev/null || true
    kill -KILL -- "-$pid" 2>/dev/null || true
    local keep=()
    for p in "${STARTED[@]}"; do [[ "$p" != "$pid" ]] && keep+=("$p"); done
    STARTED=("${keep[@]+"${keep[@]}"}")
}

cleanup() {
    local rc=$?
    for pid in "${STARTED[@]+"${STARTED[@]}"}"; do stop_pid "$pid"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() { # PORT PID: until an HTTP answer comes on PORT (any status), PID alive, bounded
    local port="$1" pid="$2" i
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        if curl -s -o /dev/null -m 1 "http://127.0.0.1:$port/"; then return 0; fi
        sleep 0.1
    done
    return 1
}

tree_pids() { # PID and its descendants
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END { for (p in parent) { for (q = p; q != "" && q != 0 && q != root; q = parent[q]) {}
              if (q == root) print p } }'
}

peak_rss_kb() { # sum of VmHWM over PID's tree
    local total=0 p v
    for p in $(tree_pids "$1"); do
        v="$(awk '/^VmHWM:/ {print $2}' /proc/"$p"/status 2>/dev/null || true)"
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

cpu_ticks() { # CPU: "busy total" jiffies
    awk -v c="cpu$1" '$1 == c { busy = $2 + $3 + $4 + $7 + $8; total = busy + $5 + $6 + $9; print busy, total }' /proc/stat
}

start_target() {
    local t="$1" port
    port="$(port_of "$t")"
    TARGET_PID=""
    case "$t" in
        upstream) return 0 ;;
        nginx-keyauth)
            start_pinned "$GATEWAY_CPU" "$t" "$NGINX_BIN" -p "$RUN/" -c "$RUN/conf/$t.conf" -e "$RUN/logs/$t-startup.log" ;;
        bare-pingora)
            FLOOR_LISTEN="127.0.0.1:$port" FLOOR_UPSTREAM="127.0.0.1:$UPSTREAM_PORT" \
                start_pinned "$GATEWAY_CPU" "$t" "$BARE_BIN" -c "$LOAD_DIR/conf/bare-pingora.yaml" ;;
        tg-all-base)
            RUST_LOG=warn start_pinned "$GATEWAY_CPU" "$t" "$BASE_BIN" -c "$RUN/conf/tg-all.yaml" ;;
        tg-*)
            RUST_LOG=warn start_pinned "$GATEWAY_CPU" "$t" "$TOLLGATE_BIN" -c "$RUN/conf/$t.yaml" ;;
    esac
    TARGET_PID="$STARTED_PID"
    wait_ready "$port" "$TARGET_PID" || { log "$t did not start; see $RUN/logs/$t.log"; return 1; }
}

# Pre-flight: 200 with the upstream's body; an auth target answers 401 without a key or with an
# unknown one and sends the consumer's name upstream.
preflight() {
    local t="$1" port url out code expect
    port="$(port_of "$t")"
    url="http://127.0.0.1:$port"
    out="$(curl -s -m 5 -H 'apikey: key-7' "$url/hello" || true)"
    [[ "$out" == "1234567890" ]] || { echo "GET /hello with key-7 returned '${out:0:80}'"; return 1; }
    expect="$(expected_consumer_of "$t")"
    [[ -z "$expect" ]] && return 0
    code="$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$url/hello" || true)"
    [[ "$code" == 401 ]] || { echo "no apikey: status $code, want 401"; return 1; }
    code="$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H 'apikey: not-a-key' "$url/hello" || true)"
    [[ "$code" == 401 ]] || { echo "unknown apikey: status $code, want 401"; return 1; }
    out="$(curl -s -m 5 -H 'apikey: key-42' "$url/echo-consumer" || true)"
    [[ "$out" == "$expect" ]] || { echo "X-Consumer-Username upstream was '$out', want '$expect'"; return 1; }
}

run_wrk() { # PORT SECONDS [extra wrk args]
    local port="$1" secs="$2"
    shift 2
    BENCH_KEYS="$KEYS" taskset -c "$LOADGEN_CPU" "$WRK_BIN" -t "$THREADS" -c "$CONNECTIONS" \
        -d "${secs}s" --timeout 5s -s "$LOAD_DIR/keys.lua" "$@" "http://127.0.0.1:$port/hello"
}

# --- upstream ----------------------------------------------------------------------------------
start_pinned "$LOADGEN_CPU" upstream "$NGINX_BIN" -p "$RUN/" -c "$RUN/conf/upstream.conf" -e "$RUN/logs/upstream-startup.log"
wait_ready "$UPSTREAM_PORT" "$STARTED_PID" || die "upstream did not start; see $RUN/logs/upstream.log"
log "targets: $TARGETS | rounds $ROUNDS x ${DURATION}s (+${WARMUP}s warm-up), $CONNECTIONS conns, $KEYS keys"

# --- rounds ------------------------------------------------------------------------------------
for ((round = 1; round <= ROUNDS; round++)); do
    for t in $TARGETS; do
        port="$(port_of "$t")"
        if ! start_target "$t"; then
            printf '%d\t%s\tFAILED_START\n' "$round" "$t" >>"$RAW"
            if [[ -n "$TARGET_PID" ]]; then stop_pid "$TARGET_PID"; fi
            continue
        fi
        if ! why="$(preflight "$t")"; then
            log "$t pre-flight failed: $why"
            printf '%d\t%s\tFAILED_PREFLIGHT\n' "$round" "$t" >>"$RAW"
            if [[ -n "$TARGET_PID" ]]; then stop_pid "$TARGET_PID"; fi
            continue
        fi
        if ((WARMUP > 0)); then
            run_wrk "$port" "$WARMUP" >"$RUN/logs/wrk-warmup-$t-$round.log" 2>&1 || true
        fi
        read -r gb0 gt0 <<<"$(cpu_ticks "$GATEWAY_CPU")"
        read -r lb0 lt0 <<<"$(cpu_ticks "$LOADGEN_CPU")"
        run_wrk "$port" "$DURATION" --latency >"$RUN/logs/wrk-$t-$round.log" 2>&1 || true
        read -r gb1 gt1 <<<"$(cpu_ticks "$GATEWAY_CPU")"
        read -r lb1 lt1 <<<"$(cpu_ticks "$LOADGEN_CPU")"
        cpu_gw=$(((gb1 - gb0) * 100 / (gt1 - gt0 > 0 ? gt1 - gt0 : 1)))
        cpu_load=$(((lb1 - lb0) * 100 / (lt1 - lt0 > 0 ? lt1 - lt0 : 1)))
        rss=0
        if [[ -n "$TARGET_PID" ]]; then rss="$(peak_rss_kb "$TARGET_PID")"; fi
        line="$(grep '^RESULT ' "$RUN/logs/wrk-$t-$round.log" || true)"
        if [[ -z "$line" ]]; then
            log "$t: wrk gave no result; see $RUN/logs/wrk-$t-$round.log"
            printf '%d\t%s\tFAILED_WRK\n' "$round" "$t" >>"$RAW"
        else
            echo "$line" | awk -v r="$round" -v t="$t" -v cg="$cpu_gw" -v cl="$cpu_load" -v rss="$rss" '{
                for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                printf "%d\t%s\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", r, t, v["rps"], v["p50_us"],
                    v["p90_us"], v["p99_us"], v["max_us"], v["non2xx3xx"],
                    v["connect_err"] + v["read_err"] + v["write_err"] + v["timeouts"], cg, cl, rss }' >>"$RAW"
            log "round $round $t: $(tail -1 "$RAW" | awk -F'\t' '{printf "%s req/s, p99 %.2f ms, non-2xx %s, sock err %s, cpu gw %s%% lg %s%%, rss %d MiB", $3, $6/1000, $8, $9, $10, $11, $12/1024}')"
        fi
        if [[ -n "$TARGET_PID" ]]; then stop_pid "$TARGET_PID"; fi
    done
done

# --- table: medians over rounds; spread = (max - min) / median; ratios -------------------------
TABLE="$RUN/table.txt"
awk -F'\t' -v order="$TARGETS" -v rounds="$ROUNDS" '
    function median(s,    a, n, i, j, tmp) {
        n = split(s, a, " ")
        for (i = 2; i <= n; i++) { tmp = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > tmp; j--) a[j + 1] = a[j]; a[j + 1] = tmp }
        if (n == 0) return 0
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ratio(m, r) { return r > 0 ? sprintf("%.2f", m / r) : "-" }
    NR == 1 { next }
    $3 ~ /^FAILED/ { failed[$2] = failed[$2] " " $3; next }
    {
        t = $2; ok[t]++
        rps[t] = rps[t] " " $3; p50[t] = p50[t] " " $4; p99[t] = p99[t] " " $6
        cg[t] = cg[t] " " $10; cl[t] = cl[t] " " $11
        if (!(t in mn) || $3 < mn[t]) mn[t] = $3
        if (!(t in mx) || $3 > mx[t]) mx[t] = $3
        if ($12 > rss[t]) rss[t] = $12
        bad[t] += $8 + $9
    }
    END {
        nt = split(order, ts, " ")
        for (i = 1; i <= nt; i++) if (ts[i] in ok) med[ts[i]] = median(rps[ts[i]])
        nkey = ("nginx-keyauth" in med) ? med["nginx-keyauth"] : 0
        flr = ("bare-pingora" in med) ? med["bare-pingora"] : 0
        pln = ("tg-plain" in med) ? med["tg-plain"] : 0
        printf "| %-13s | %10s | %6s | %6s | %6s | %8s | %6s | %6s | %7s | %7s | %8s | %s |\n", "target", "median rps", "spread", "p50 ms", "p99 ms", "peak RSS", "cpu gw", "cpu lg", "vs nkey", "vs bare", "vs plain", "check"
        printf "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
        for (i = 1; i <= nt; i++) {
            t = ts[i]
            if (!(t in ok)) { printf "| %-13s | - | | | | | | | | | | no result:%s |\n", t, failed[t]; continue }
            m = med[t]
            chk = (bad[t] == 0 && ok[t] == rounds ? "ok" : (bad[t] > 0 ? bad[t] " bad responses/socket errors" : "") (ok[t] < rounds ? " only " ok[t] "/" rounds " rounds:" failed[t] : ""))
            if (t != "upstream" && median(cl[t]) >= 95) chk = chk " (load-gen core >=95% busy: may be a lower bound)"
            printf "| %-13s | %10.0f | %5.1f%% | %6.2f | %6.2f | %8s | %5.0f%% | %5.0f%% | %7s | %7s | %8s | %s |\n", t, m,
                (m > 0 ? (mx[t] - mn[t]) * 100 / m : 0), median(p50[t]) / 1000, median(p99[t]) / 1000,
                (rss[t] > 0 ? sprintf("%.1fMB", rss[t] / 1024) : "-"), median(cg[t]), median(cl[t]),
                ratio(m, nkey), ratio(m, flr), (t ~ /^tg-/ ? ratio(m, pln) : "-"), chk
        }
    }' "$RAW" >"$TABLE"

rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || rev="$rev+changes"
{
    echo
    echo "Load benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), tollgate $rev, $(nproc --all) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), load average at start: $LOAD_BEFORE"
    echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s (+${WARMUP}s warm-up), $ROUNDS interleaved rounds, $KEYS keys; gateway on cpu $GATEWAY_CPU, upstream + wrk on cpu $LOADGEN_CPU."
    echo "Medians over rounds; spread = (max-min)/median rps; vs nkey / vs bare / vs plain = median rps / that of nginx-keyauth / bare-pingora / tg-plain."
    echo
    cat "$TABLE"
} | tee "$RUN/summary.txt"

if [[ -n "${OUT_DIR:-}" ]]; then
    mkdir -p "$OUT_DIR"
    cp "$RAW" "$RUN/summary.txt" "$OUT_DIR/"
    log "raw results and table copied to $OUT_DIR"
fi
log "raw results: $RAW (logs in $RUN/logs)"
