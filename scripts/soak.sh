#!/usr/bin/env bash
# Bounded soak: tollgate under wrk load while its resource file is rewritten every second.
#
#   scripts/soak.sh                      5 minutes, release build
#   SOAK_SECONDS=60 scripts/soak.sh      shorter
#   SOAK_PROFILE=debug scripts/soak.sh   the debug build (or TOLLGATE_BIN=path/to/tollgate)
#
# Everything runs on 127.0.0.1 in a temp dir: a fast upstream (Debian's nginx when installed,
# else the demo echo server, examples/echo.rs), tollgate (1 worker thread) on a key-auth route,
# and wrk (1 thread, SOAK_CONNECTIONS connections, default 32) for SOAK_SECONDS. Meanwhile the
# resource file is replaced atomically every second with a new version (a route more or less);
# every 10th second it is replaced by an invalid file (refused: the old config keeps serving) and
# every 10th, 3 s later, only touched. RSS is sampled every 5 s.
# Prints requests, non-2xx, socket errors, reloads by result (tollgate_config_reloads_total),
# ERROR lines in the gateway's log, RSS (idle, after 10 s of load, max, end).
# Exits non-zero when a request failed (non-2xx or socket error), RSS grew by more than 20 %
# between 10 s into the load and the end, no reload succeeded, the config serving at the end is
# not the last valid file written, or the gateway died.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${SOAK_SECONDS:-300}"
connections="${SOAK_CONNECTIONS:-32}"
profile="${SOAK_PROFILE:-release}"
((seconds >= 20)) || { echo "soak: SOAK_SECONDS must be at least 20" >&2; exit 2; }
command -v wrk >/dev/null || { echo "soak: wrk is required (apt-get install wrk)" >&2; exit 2; }

flag=()
[[ "$profile" == release ]] && flag=(--release)
if [[ -z "${TOLLGATE_BIN:-}" ]]; then
    cargo build "${flag[@]}" --bin tollgate
    TOLLGATE_BIN="target/$profile/tollgate"
fi
nginx_bin="$(command -v nginx || true)"
[[ -z "$nginx_bin" && -x /usr/sbin/nginx ]] && nginx_bin=/usr/sbin/nginx
if [[ -z "$nginx_bin" ]]; then
    cargo build "${flag[@]}" --example echo
fi

tmp="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# A free loopback port: nothing answers on it now.
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        (: >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}
wait_http() { # URL PID
    for _ in $(seq 100); do
        curl -fs -o /dev/null "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

up_port="$(free_port)"
gw_port="$(free_port)"
st_port="$(free_port)"

if [[ -n "$nginx_bin" ]]; then
    upstream_kind="nginx"
    mkdir -p "$tmp/nginx/logs"
    cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$up_port;
        location / { return 200 "ok\n"; }
    }
}
EOF
    "$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx/stderr.log" &
    pids+=($!)
else
    upstream_kind="echo (examples/echo.rs)"
    "target/$profile/examples/echo" "127.0.0.1:$up_port" 2>"$tmp/echo.log" &
    pids+=($!)
fi
wait_http "http://127.0.0.1:$up_port/" "${pids[-1]}" || { echo "soak: upstream did not start" >&2; exit 1; }

cat >"$tmp/tollgate.yaml" <<EOF
listen: ["127.0.0.1:$gw_port"]
status_listen: "127.0.0.1:$st_port"
threads: 1
resources: [resources.yaml]
EOF

# Version N of the resource file: the soak route plus N % 7 extra routes, so each differs.
resources() {
    local n="$1" i
    cat <<EOF
# soak version $n
upstreams:
  - id: up
    nodes: {"127.0.0.1:$up_port": 1}
routes:
  - {id: soak, uri: "/soak/*", upstream_id: up, plugins: {key-auth: {}}}
EOF
    for ((i = 0; i < n % 7; i++)); do
        echo "  - {id: extra-$i, uri: /extra/$i, upstream_id: up}"
    done
    cat <<EOF
consumers:
  - username: soaker
    plugins:
      key-auth: {key: soak-key}
#END
EOF
}
invalid() {
    printf 'routes:\n  - {id: broken, uri: /b, upstream_id: no-such-upstream}\n#END\n'
}
write_atomic() { # TEXT-PRODUCING-COMMAND...
    "$@" >"$tmp/resources.yaml.new"
    mv -f "$tmp/resources.yaml.new" "$tmp/resources.yaml"
}

write_atomic resources 0
"$TOLLGATE_BIN" -c "$tmp/tollgate.yaml" 2>"$tmp/tollgate.log" &
gw_pid=$!
pids+=("$gw_pid")
if ! wait_http "http://127.0.0.1:$st_port/healthz" "$gw_pid"; then
    echo "soak: tollgate did not start:" >&2
    cat "$tmp/tollgate.log" >&2
    exit 1
fi
curl -fs -o /dev/null -H 'apikey: soak-key' "http://127.0.0.1:$gw_port/soak/x" \
    || { echo "soak: the soak route does not answer 200" >&2; exit 1; }
rss_idle="$(rss_kb "$gw_pid")"

# Reloader: a new file every second, an invalid one every 10th, a bare touch 3 s after it.
(
    for ((i = 1; i < seconds; i++)); do
        sleep 1
        case $((i % 10)) in
            5) write_atomic invalid ;;
            8) touch "$tmp/resources.yaml" ;;
            *)
                write_atomic resources "$i"
                cp "$tmp/resources.yaml" "$tmp/last-valid.yaml"
                ;;
        esac
    done
) &
reloader_pid=$!
pids+=("$reloader_pid")

# RSS sampler: every 5 s.
(
    for ((t = 0; t <= seconds; t += 5)); do
        echo "$t $(rss_kb "$gw_pid")"
        sleep 5
    done
) >"$tmp/rss.log" &
pids+=($!)

echo "soak: ${seconds}s, $TOLLGATE_BIN, upstream $upstream_kind, wrk -t1 -c$connections"
wrk -t1 -c"$connections" -d"${seconds}s" -H 'apikey: soak-key' \
    "http://127.0.0.1:$gw_port/soak/x" >"$tmp/wrk.log" 2>&1 || true
alive=yes
kill -0 "$gw_pid" 2>/dev/null || alive=no
# Let the last reload land before reading the counters: the config serving must be the last
# valid file written (its version is the first 8 bytes of sha256(name, NUL, text)).
wait "$reloader_pid" 2>/dev/null || true
sleep 2
want_version="$( (printf 'resources.yaml\0'; cat "$tmp/last-valid.yaml") | sha256sum | cut -c1-16)"
have_version="$(curl -fs "http://127.0.0.1:$st_port/healthz" | sed -n 's/.*"config_version":"\([0-9a-f]*\)".*/\1/p')"
metrics="$(curl -fs "http://127.0.0.1:$st_port/metrics" || true)"
rss_end="$(rss_kb "$gw_pid")"

requests="$(awk '/requests in/ {print $1}' "$tmp/wrk.log")"
non2xx="$(awk '/Non-2xx/ {print $NF}' "$tmp/wrk.log")"
sockerr="$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' "$tmp/wrk.log")"
reload_ok="$(awk '/^tollgate_config_reloads_total\{.*result="success"/ {print $NF}' <<<"$metrics")"
reload_bad="$(awk '/^tollgate_config_reloads_total\{.*result="failure"/ {print $NF}' <<<"$metrics")"
rss_start="$(awk '$1 == 10 {print $2}' "$tmp/rss.log")"
rss_max="$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$tmp/rss.log")"
errors="$(grep -c ' ERROR ' "$tmp/tollgate.log" || true)"
: "${requests:=0}" "${non2xx:=0}" "${sockerr:=0}" "${reload_ok:=0}" "${reload_bad:=0}" "${rss_start:=0}"

echo "requests:        $requests"
echo "non-2xx:         $non2xx"
echo "socket errors:   $sockerr"
echo "reloads:         $reload_ok success, $reload_bad failure (tollgate_config_reloads_total)"
echo "final config:    $have_version (last valid file written: $want_version)"
echo "gateway ERRORs:  $errors log lines"
echo "RSS:             idle ${rss_idle} KiB, after 10 s ${rss_start} KiB, max ${rss_max} KiB, end ${rss_end} KiB"
echo "RSS samples (s KiB): $(tr '\n' ' ' <"$tmp/rss.log")"
grep -E 'Latency|Req/Sec|Requests/sec' "$tmp/wrk.log" || true

fail=()
[[ "$alive" == yes ]] || fail+=("the gateway died")
((requests > 0)) || fail+=("no request completed")
((non2xx == 0)) || fail+=("$non2xx non-2xx responses")
((sockerr == 0)) || fail+=("$sockerr socket errors")
reload_ok_int="${reload_ok%%.*}"
((reload_ok_int > 0)) || fail+=("no reload succeeded")
[[ "$have_version" == "$want_version" ]] || fail+=("the last valid file was not loaded")
if ((rss_start > 0 && rss_end * 100 > rss_start * 120)); then
    fail+=("RSS grew from $rss_start to $rss_end KiB (> 20 %)")
fi
if ((${#fail[@]})); then
    echo "soak: FAILED: ${fail[*]}" >&2
    echo "--- last gateway log lines" >&2
    tail -20 "$tmp/tollgate.log" >&2
    exit 1
fi
echo "soak: ok"
