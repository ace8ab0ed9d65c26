#!/usr/bin/env bash
# Builds tollgate and runs it on conf/ in front of the demo echo upstream (examples/echo.rs).
# The gateway runs in the foreground (Ctrl-C stops it gracefully); the echo server runs in the
# background and is stopped, by its PID, when the gateway exits.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release
cargo build --release --example echo

for port in 9080 9081 9091; do
    if (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "run-example: port $port on 127.0.0.1 is already in use (an earlier run still up?)" >&2
        exit 1
    fi
done

target/release/examples/echo 127.0.0.1:9081 &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -fs -o /dev/null http://127.0.0.1:9081/ && break
    kill -0 "$echo_pid" 2>/dev/null || { echo "run-example: the echo server did not start" >&2; exit 1; }
    sleep 0.1
done

cat <<EOF

tollgate starts on http://127.0.0.1:9080 (status on http://127.0.0.1:9091), PID $$.
In another terminal, try:

  curl -i http://127.0.0.1:9080/hello/world                            # no auth: 200 from the echo upstream
  curl -i http://127.0.0.1:9080/petstore/pets                          # key-auth, no key: 401
  curl -i -H 'apikey: wrong' http://127.0.0.1:9080/petstore/pets       # wrong key: 401
  curl -i -H 'apikey: john-key' http://127.0.0.1:9080/petstore/pets    # JohnDoe: 200, X-Consumer-Username: JohnDoe upstream
  curl -i -H 'apikey: bot-key' http://127.0.0.1:9080/petstore/pets     # FetchBot: 200 (limit-count: the 3rd in 5 s gets 503)
  curl -i http://127.0.0.1:9080/nowhere                                # no route: 404
  curl -s http://127.0.0.1:9091/healthz
  curl -s http://127.0.0.1:9091/metrics | grep '^tollgate_'
  kill -HUP $$      # reload conf/resources.yaml now (saving the file reloads it too)
Ctrl-C stops the gateway gracefully and the echo server with it.

EOF

# After `exec` this shell's PID is the gateway's and its EXIT trap is gone, so a small watcher
# takes over: it waits for that PID to end and then kills the echo server by its PID.
gateway_pid=$$
(
    trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
    while kill -0 "$gateway_pid" 2>/dev/null; do sleep 1; done
) &
trap - EXIT
exec target/release/tollgate -c conf/tollgate.yaml
