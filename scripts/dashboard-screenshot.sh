#!/usr/bin/env bash
# Regenerates the two dashboard screens in README.md from a real run:
#   ./scripts/dashboard-screenshot.sh [README]
#
# Starts ./run-cluster.sh on a throwaway 3-node config (free ports on
# localhost, a fresh data directory, both in a temp dir) inside a private
# tmux server at 100x30, drives it with the dashboard's own keys, and after
# each step waits for the text that step puts on the screen (polling
# `tmux capture-pane` against a deadline; no fixed sleeps):
#   screen 1: three `w` writes; the leader's digit and `c` (crash it); a new
#             leader; one more `w` through it;
#   screen 2: `r` (restore the crashed node); the leader's digit and `p`
#             (isolate it); a leader among the other two; one more `w`.
# Each screen is `tmux capture-pane -p` and replaces the block between
# `<!-- dashboard-screenshot:N begin -->` and `<!-- ... end -->` in README
# (default: the repository's README.md). Then `q` stops the cluster.
# Whatever happens, every process it started (the tmux server and the
# cluster inside it) is stopped by PID and the temp dir removed.
# SURFSTORE_BIN=PATH runs that binary (otherwise the release binary, built
# first if it is out of date). Needs tmux and python3 (for free ports).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
readme=${1:-$repo/README.md}
deadline_secs=${SCREENSHOT_DEADLINE_SECS:-60}

command -v tmux >/dev/null || { echo "$0: tmux is required" >&2; exit 1; }
command -v python3 >/dev/null || { echo "$0: python3 is required" >&2; exit 1; }
grep -q '<!-- dashboard-screenshot:1 begin -->' "$readme" ||
    { echo "$0: $readme has no dashboard-screenshot markers" >&2; exit 1; }

if [ -z "${SURFSTORE_BIN:-}" ]; then
    # Built here, not inside the pane, so a build error is seen.
    (cd "$repo" && cargo build --release --quiet)
    export SURFSTORE_BIN=$repo/target/release/surfstore
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/surfstore-screenshot.XXXXXX")
socket="surfstore-screenshot-$$"
server_pid=
cluster_pid=

t() { tmux -L "$socket" "$@"; }

cleanup() {
    local status=$?
    # The cluster first (SIGTERM stops it cleanly), then the tmux server.
    if [ -n "$cluster_pid" ] && kill -0 "$cluster_pid" 2>/dev/null; then
        kill "$cluster_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$cluster_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$cluster_pid" 2>/dev/null || true
    fi
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Three free ports, as the kernel hands them out (released before the
# cluster binds them; a clash makes the cluster fail to start, and the wait
# for its first screen fails loudly).
read -r p0 p1 p2 < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
printf 'M: 3\nmetadata0: localhost:%s\nmetadata1: localhost:%s\nmetadata2: localhost:%s\n' \
    "$p0" "$p1" "$p2" >"$work/3nodes.txt"
printf 'set -g remain-on-exit on\nset -g history-limit 200\n' >"$work/tmux.conf"

t -f "$work/tmux.conf" new-session -d -s shot -x 100 -y 30 -c "$work" \
    -e "SURFSTORE_BIN=$SURFSTORE_BIN" \
    "exec '$repo/run-cluster.sh' 3nodes.txt --data-dir '$work/data'"
server_pid=$(t display-message -p -t shot '#{pid}')
cluster_pid=$(t display-message -p -t shot '#{pane_pid}')

screen() { t capture-pane -p -t shot; }

# wait_for WHAT PATTERN: polls the screen until it matches the extended
# regular expression PATTERN; prints that screen.
wait_for() {
    local what=$1 pattern=$2 end=$((SECONDS + deadline_secs)) s
    while :; do
        s=$(screen)
        if grep -Eq -- "$pattern" <<<"$s"; then
            printf '%s\n' "$s"
            return 0
        fi
        if [ "$SECONDS" -ge "$end" ] || ! kill -0 "$cluster_pid" 2>/dev/null; then
            printf '%s: the screen never showed %s:\n%s\n' "$0" "$what" "$s" >&2
            return 1
        fi
        sleep 0.1
    done
}

# The leader the title bar names on screen $1.
leader_of() { sed -n 's/.*leader: node \([0-9]\) .*/\1/p' <<<"$1" | head -n1; }

keys() { t send-keys -t shot "$@"; }

writes=0
# w, then wait for its outcome.
write() {
    writes=$((writes + 1))
    keys w
    wait_for "demo-$writes.txt applied" "write demo-$writes\.txt v1: applied" >/dev/null
}

# ---- screen 1: three writes, crash the leader, one write through the next
s=$(wait_for "a leader" 'leader: node [0-9] ')
first=$(leader_of "$s")
write
write
write
keys "$first"
wait_for "node $first selected" "▶ $first " >/dev/null
keys c
s=$(wait_for "a new leader after the crash of node $first" \
    "leader: node [^$first] .*3nodes\.txt")
write
shot1=$(screen)

# ---- screen 2: restore it, isolate the new leader, one write
second=$(leader_of "$s")
keys r
wait_for "node $first restored" "node $first +restored" >/dev/null
keys "$second"
wait_for "node $second selected" "▶ $second " >/dev/null
keys p
wait_for "node $second isolated" "isolated node $second" >/dev/null
wait_for "a leader without node $second" "leader: node [^$second] .*3nodes\.txt" >/dev/null
write
shot2=$(screen)

keys q
end=$((SECONDS + deadline_secs))
while kill -0 "$cluster_pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do
    sleep 0.1
done
if kill -0 "$cluster_pid" 2>/dev/null; then
    echo "$0: the cluster did not stop after q" >&2
    exit 1
fi

# Replace each marked block (the fence lines included) in the README.
printf '%s\n' "$shot1" >"$work/shot1"
printf '%s\n' "$shot2" >"$work/shot2"
python3 - "$readme" "$work/shot1" "$work/shot2" <<'EOF'
import re, sys
readme, shots = sys.argv[1], sys.argv[2:]
text = open(readme, encoding="utf-8").read()
for n, path in enumerate(shots, 1):
    screen = open(path, encoding="utf-8").read().rstrip("\n")
    screen = "\n".join(line.rstrip() for line in screen.split("\n"))
    begin, end = f"<!-- dashboard-screenshot:{n} begin -->", f"<!-- dashboard-screenshot:{n} end -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        sys.exit(f"{readme}: no {begin} ... {end} block")
    block = f"{begin}\n```text\n{screen}\n```\n{end}"
    text = pattern.sub(lambda _: block, text, count=1)
open(readme, "w", encoding="utf-8").write(text)
EOF
echo "$readme: dashboard screens 1 and 2 regenerated (3 nodes on ports $p0 $p1 $p2)"
