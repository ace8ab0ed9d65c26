#!/usr/bin/env bash
# Load benchmark with wrk, everything on 127.0.0.1 with free ports:
#   - the echo upstream (examples/echo.rs) alone: the ceiling for everything in front of it
#   - nginx as a reverse proxy in front of it, if nginx is installed or can be (apt)
#   - tollgate (release build) in front of it: a plain route; a key-auth route with one consumer;
#     key-auth plus limit-count with a count never reached
# Prints a Markdown table (requests/s, p50 and p99 latency, errors) and appends it to
# benches/RESULTS.md with the date and the machine. Every process it starts is killed by PID.
#
# Settings (environment): DURATION=10 (s) THREADS=2 CONNECTIONS=50 (wrk), WARMUP=2 (s per
# target, not measured), GATEWAY_THREADS=2 (tollgate threads, nginx workers), NGINX=1 (0 skips
# nginx), BUILD=1 (0 skips `cargo build --release`), RESULTS=benches/RESULTS.md (empty: print
# only), TOLLGATE_BIN, ECHO_BIN (default: the release builds).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-2}
GATEWAY_THREADS=${GATEWAY_THREADS:-2}
NGINX=${NGINX:-1}
BUILD=${BUILD:-1}
RESULTS=${RESULTS-benches/RESULTS.md}
TOLLGATE_BIN=${TOLLGATE_BIN:-target/release/tollgate}
ECHO_BIN=${ECHO_BIN:-target/release/examples/echo}
BARE_BIN=${BARE_BIN:-target/release/examples/bare_proxy}
KEY=bench-key

log() { echo "bench: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- tools -------------------------------------------------------------------------------------
command -v wrk >/dev/null || scripts/setup.sh
command -v wrk >/dev/null || { log "wrk is not installed and could not be (apt package wrk)"; exit 1; }
if [ "$NGINX" = 1 ] && ! command -v nginx >/dev/null; then
    log "installing nginx for the comparison (its service is not started)"
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod 755 "$policy" && made_policy=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends nginx >/dev/null ||
        { as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q update >/dev/null &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends nginx >/dev/null; } ||
        log "nginx could not be installed; its row is skipped"
    [ "$made_policy" = 1 ] && as_root rm -f "$policy"
fi
command -v nginx >/dev/null || NGINX=0

if [ "$BUILD" = 1 ]; then
    cargo build --release --bin tollgate --example echo --example bare_proxy
fi
for bin in "$TOLLGATE_BIN" "$ECHO_BIN"; do
    [ -x "$bin" ] || { log "$bin not found (build with: cargo build --release --bin tollgate --example echo)"; exit 1; }
done

# --- processes ---------------------------------------------------------------------------------
tmp=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

used=" "
free_port() { # a port nothing listens on and not handed out before
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        case "$used" in *" $p "*) continue ;; esac
        if ! (: >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            used="$used$p "
            echo "$p"
            return
        fi
    done
}

wait_for() { # URL PID NAME LOG: wait until URL answers, or fail showing LOG
    local _
    for _ in $(seq 100); do
        curl -s -o /dev/null "$1" && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    log "$3 did not start; its log:"
    cat "$4" >&2 || true
    exit 1
}

echo_port=$(free_port)
gw_port=$(free_port)
status_port=$(free_port)

"$ECHO_BIN" "127.0.0.1:$echo_port" 2>"$tmp/echo.log" &
pids+=($!)
wait_for "http://127.0.0.1:$echo_port/" "$!" "echo upstream" "$tmp/echo.log"

cat >"$tmp/tollgate.yaml" <<EOF
listen: ["127.0.0.1:$gw_port"]
status_listen: "127.0.0.1:$status_port"
threads: $GATEWAY_THREADS
resources: ["resources.yaml"]
pid_file: $tmp/tollgate.pid
upgrade_sock: $tmp/tollgate_upgrade.sock
graceful_shutdown_timeout_seconds: 1
EOF
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$tmp/resources.yaml" <<EOF
upstreams:
  - id: echo
    nodes:
      "127.0.0.1:$echo_port": 1
routes:
  - id: plain
    uri: /plain/*
    upstream_id: echo
  - id: auth
    uri: /auth/*
    upstream_id: echo
    plugins:
      key-auth: {}
  - id: limited
    uri: /limited/*
    upstream_id: echo
    plugins:
      key-auth: {}
      limit-count: {count: 1000000000, time_window: 3600, key: consumer_name}
  - id: redis
    uri: /redis/*
    upstream_id: echo
    plugins:
      key-auth: {}
      limit-count: {count: 1000000000, time_window: 3600, key: consumer_name, policy: redis, redis_host: 127.0.0.1, redis_port: $redis_port}
  - id: synced
    uri: /synced/*
    upstream_id: echo
    plugins:
      key-auth: {}
      limit-count: {count: 1000000000, time_window: 3600, key: consumer_name, policy: redis, redis_host: 127.0.0.1, redis_port: $redis_port, sync_interval: 0.5}
consumers:
  - username: bench
    plugins:
      key-auth: {key: $KEY}
#END
EOF
RUST_LOG=warn "$TOLLGATE_BIN" -c "$tmp/tollgate.yaml" 2>"$tmp/tollgate.log" &
pids+=($!)
wait_for "http://127.0.0.1:$status_port/healthz" "$!" "tollgate" "$tmp/tollgate.log"

if [ "$NGINX" = 1 ]; then
    nginx_port=$(free_port)
    mkdir -p "$tmp/nginx"
    cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes $GATEWAY_THREADS;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    upstream echo { server 127.0.0.1:$echo_port; keepalive 64; }
    server {
        listen 127.0.0.1:$nginx_port;
        location / {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' &
    pids+=($!)
    wait_for "http://127.0.0.1:$nginx_port/" "$!" "nginx" "$tmp/nginx/error.log"
fi

bare_port=$(free_port)
"$BARE_BIN" "127.0.0.1:$bare_port" "127.0.0.1:$echo_port" "$GATEWAY_THREADS" 2>"$tmp/bare.log" &
pids+=($!)
wait_for "http://127.0.0.1:$bare_port/" "$!" "bare Pingora" "$tmp/bare.log"

# --- runs --------------------------------------------------------------------------------------
# name|url|header (header may be empty)
targets=("echo upstream, direct|http://127.0.0.1:$echo_port/bench|")
[ "$NGINX" = 1 ] && targets+=("nginx $(nginx -v 2>&1 | sed 's|.*/||') → echo|http://127.0.0.1:$nginx_port/bench|")
targets+=(
    "bare Pingora (examples/bare_proxy.rs) → echo|http://127.0.0.1:$bare_port/bench|"
    "tollgate → echo, plain route|http://127.0.0.1:$gw_port/plain/bench|"
    "tollgate → echo, key-auth|http://127.0.0.1:$gw_port/auth/bench|apikey: $KEY"
    "tollgate → echo, key-auth + limit-count|http://127.0.0.1:$gw_port/limited/bench|apikey: $KEY"
    "tollgate → echo, key-auth + limit-count in Redis, per request|http://127.0.0.1:$gw_port/redis/bench|apikey: $KEY"
    "tollgate → echo, key-auth + limit-count in Redis, sync_interval 0.5 s|http://127.0.0.1:$gw_port/synced/bench|apikey: $KEY"
)

table="| target | requests/s | p50 | p99 | errors |
|---|---:|---:|---:|---:|"
for t in "${targets[@]}"; do
    IFS='|' read -r name url header <<<"$t"
    hdr=()
    [ -n "$header" ] && hdr=(-H "$header")
    code=$(curl -s -o /dev/null -w '%{http_code}' "${hdr[@]}" "$url" || true)
    if [ "$code" != 200 ]; then
        log "$name: $url answered $code, not 200; skipped"
        table+=$'\n'"| $name | skipped: status $code | | | |"
        continue
    fi
    log "$name: ${DURATION}s"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "${hdr[@]}" "$url" >/dev/null
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "${hdr[@]}" "$url" >"$tmp/wrk.out"
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$tmp/wrk.out")
    p50=$(awk '$1 == "50%" {print $2}' "$tmp/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$tmp/wrk.out")
    # Non-2xx answers plus socket errors (connect, read, write, timeout).
    errors=$(awk '/Non-2xx or 3xx responses:/ {n += $NF}
        /Socket errors:/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10}
        END {print n + 0}' "$tmp/wrk.out")
    table+=$'\n'"| $name | $rps | $p50 | $p99 | $errors |"
done

# --- report ------------------------------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev+changes"
report="## $(date -u '+%Y-%m-%d %H:%M UTC'): ${cpu:-unknown CPU}, $(nproc) CPUs, tollgate $rev

\`wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency\` after a ${WARMUP}s warm-up; tollgate threads and nginx
workers: $GATEWAY_THREADS; keep-alive to the upstream on both. wrk, the proxies and the single-threaded echo
upstream share this machine's CPUs, so compare rows with each other, not with other machines.

$table
"
echo
echo "$report"
if [ -n "$RESULTS" ]; then
    # shellcheck disable=SC2016 # backquotes are Markdown here
    [ -e "$RESULTS" ] || printf '# Load benchmark results\n\nAppended by `benches/load/run.sh`, newest last.\n' >"$RESULTS"
    printf '\n%s' "$report" >>"$RESULTS"
    log "appended to $RESULTS"
fi
