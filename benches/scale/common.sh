# common.sh: what run.sh and reload.sh share, sourced after they set TOLLGATE_BIN, ECHO_BIN and
# log(). Checks the binaries, makes the scratch folder $tmp, stops every PID in pids() on exit,
# and gives free_port (below the ephemeral range, never twice) and now (seconds, as a float).
for bin in "$TOLLGATE_BIN" "$ECHO_BIN"; do
    [ -x "$bin" ] || { log "$bin not found (cargo build --release --bin tollgate --example echo)"; exit 1; }
done

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
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768-60999)
        case "$used" in *" $p "*) continue ;; esac
        if ! (: >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            used="$used$p "
            echo "$p"
            return
        fi
    done
}
now() { date +%s.%N; }
