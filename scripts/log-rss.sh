#!/usr/bin/env bash
# The resident set of one node holding a large log: ./scripts/log-rss.sh [SECONDS] [PORT]
#
# Starts a 1-node cluster on localhost:PORT (default 9800) with a fresh data
# directory, `--fsync never` (RSS does not depend on fsync) and
# `--snapshot-threshold 0` (never compact: the whole log stays in it), loads it
# with `surfstore bench --workload create` (what run-bench.sh runs; 16 clients, every write a new file,
# 64-byte hash) for SECONDS (default 30), and prints the node's VmRSS
# (/proc/PID/status) with the log's length. Then stops it (SIGTERM to its PID),
# restarts it on the same directory, waits until every entry is applied, and
# prints VmRSS again (the restart recovers the whole log from the WAL).
# SURFSTORE_BIN=PATH measures that binary (e.g. one built at another commit);
# COMPARE_BIN=PATH then also restarts that one on the same directory (the
# same log, so the two restart figures compare exactly).
set -euo pipefail

secs=${1:-30}
port=${2:-9800}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
bin=${SURFSTORE_BIN:-$repo/target/release/surfstore}
if [ -z "${SURFSTORE_BIN:-}" ]; then
    (cd "$repo" && cargo build --release --quiet)
fi
work=$(mktemp -d)
printf 'M: 1\nmetadata0: localhost:%s\n' "$port" >"$work/config.txt"
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Waits for the node's status to satisfy a Python condition on `s`, prints `s`'s fields.
status() {
    python3 - "$port" "$1" <<'EOF'
import sys, time, xmlrpc.client
port, cond = sys.argv[1], sys.argv[2]
c = xmlrpc.client.ServerProxy(f"http://localhost:{port}")
deadline = time.time() + 120
while True:
    try:
        s = c.surfstore.status()
        if eval(cond):
            print(s["last_index"], s["applied_index"], s["files"])
            break
    except (ConnectionError, OSError):
        pass
    if time.time() > deadline:
        sys.exit("node did not reach: " + cond)
    time.sleep(0.2)
EOF
}

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

start() {
    local b=${1:-$bin}
    "$b" server "$work/config.txt" 0 --data-dir "$work/node0" --fsync never \
        --snapshot-threshold 0 >>"$work/server.log" 2>&1 &
    pid=$!
}

start
read -r last _ _ < <(status 's["role"] == "leader"')
echo "started: VmRSS $(rss "$pid") kB, log $last entries"
"$bin" bench "localhost:$port" --workload create --clients 16 --duration "${secs}s" \
    --warmup 0s --seed 1 >"$work/bench.txt"
read -r last applied files < <(status 's["applied_index"] == s["last_index"]')
echo "after the load: VmRSS $(rss "$pid") kB, log $last entries, $files files"
echo "WAL on disk: $(du -sk "$work/node0/wal" | cut -f1) kB"
total=$last
for b in "$bin" ${COMPARE_BIN:+"$COMPARE_BIN"}; do
    kill "$pid"
    wait "$pid" || true
    pid=
    start "$b"
    read -r last applied files < <(status "s['applied_index'] >= $total")
    echo "restarted on the same directory ($b): VmRSS $(rss "$pid") kB, log $last entries, $files files applied"
done
