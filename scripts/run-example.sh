#!/usr/bin/env bash
# Builds tollgate and runs it on conf/ in front of the demo upstream (src/bin/demo_upstream.rs, an
# echo server). One `cargo build --release` builds both binaries.
# The gateway runs in the foreground (Ctrl-C stops it gracefully); the demo upstream runs in the
# background and is stopped, by its PID, when the gateway exits.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

# Before the build, so a port already taken does not cost a build first, and again after it
# (another run may have started meanwhile).
check_ports() {
    local port
    for port in 9080 9081 9091; do
        if (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "run-example: port $port on 127.0.0.1 is already in use (an earlier run still up?)" >&2
            exit 1
        fi
    done
}
check_ports

if [ -x target/release/tollgate ] && [ -x target/release/tollgate-demo-upstream ]; then
    echo "run-example: cargo build --release (only what changed since the last build)"
else
    echo "run-example: cargo build --release: the gateway and the demo upstream, one build."
    echo "run-example: the first build compiles about 340 crates and takes about 10 minutes on a"
    echo "run-example: 2-core machine; the last crate, tollgate itself (optimised across crates),"
    echo "run-example: takes a few minutes with no new line. Later builds redo only what changed."
fi
start=$SECONDS
cargo build --release
echo "run-example: build done in $((SECONDS - start)) s"
check_ports

target/release/tollgate-demo-upstream 127.0.0.1:9081 &
upstream_pid=$!
trap 'kill "$upstream_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    kill -0 "$upstream_pid" 2>/dev/null || break
    curl -fs -o /dev/null http://127.0.0.1:9081/ && break
    sleep 0.1
done
kill -0 "$upstream_pid" 2>/dev/null || { echo "run-example: the demo upstream did not start" >&2; exit 1; }

cat <<EOF

tollgate starts on http://127.0.0.1:9080 (status on http://127.0.0.1:9091), PID $$.
Its log and one JSON access-log line per request follow on this terminal.
In another terminal, try:

  curl -i http://127.0.0.1:9080/hello/world                            # no auth: 200, the demo upstream echoes the request
  curl -i http://127.0.0.1:9080/petstore/pets                          # key-auth, no key: 401
  curl -i -H 'apikey: wrong' http://127.0.0.1:9080/petstore/pets       # wrong key: 401
  curl -i -H 'apikey: john-key' http://127.0.0.1:9080/petstore/pets    # JohnDoe: 200, X-Consumer-Username: JohnDoe upstream
  curl -i -H 'apikey: bot-key' http://127.0.0.1:9080/petstore/pets     # FetchBot: 200 (limit-count: the 3rd in 5 s gets 503)
  curl -i http://127.0.0.1:9080/nowhere                                # no route: 404
  curl -s http://127.0.0.1:9091/healthz
  curl -s http://127.0.0.1:9091/metrics | grep -E '^tollgate_(http_requests|auth_failures|limit_count_rejections|config_reloads)_total'
  kill -HUP $$      # reload conf/resources.yaml now (saving the file reloads it too)
Ctrl-C stops the gateway gracefully and the demo upstream with it.

EOF

# After `exec` this shell's PID is the gateway's and its EXIT trap is gone, so a small watcher
# takes over: it waits for that PID to end and then kills the demo upstream by its PID.
gateway_pid=$$
(
    trap 'kill "$upstream_pid" 2>/dev/null || true' EXIT
    while kill -0 "$gateway_pid" 2>/dev/null; do sleep 1; done
) &
trap - EXIT
exec target/release/tollgate -c conf/tollgate.yaml
