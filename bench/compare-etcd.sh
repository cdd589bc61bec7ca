#!/usr/bin/env bash
# Our cluster against etcd, side by side, on this machine:
#
#   bench/compare-etcd.sh [--duration 10s] [--warmup 3s] [--clients 1,16,64]
#                         [--payload 64] [--workload update] [--rounds 1]
#                         [--out DIR] [--keep]
#
# (every flag also as an environment variable: DURATION, WARMUP, CLIENTS,
# PAYLOAD, WORKLOAD, ROUNDS, OUT, KEEP=1; flags win.)
#
# - Installs etcd-server and etcd-client with apt-get when `etcd` or
#   `etcdctl` is missing (sudo when not root).
# - Starts 3 etcd members (loopback, client ports 23790-23792, peer ports
#   23800-23802, default fsync) and 3 of our nodes (run-server.sh, ports
#   9500-9502, --fsync always), every data directory under one temporary
#   directory, so both write to the same disk.
# - For each client count, runs ours then etcd (then ours, etcd... for each
#   round), each a warm-up and a measured window of the same closed-loop
#   generator (run-bench.sh) with the same payload, with --pids so each
#   side's server CPU per committed op is read from /proc.
# - Prints one table: throughput, p50, p99 and CPU/op of both, and the
#   ratios ours/etcd. --out DIR keeps every run's JSON and the table there.
# - Stops everything it started, by PID, on exit, error or Ctrl-C, and
#   removes the temporary directory (--keep leaves it, with the logs).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
me=$(basename "$0")

duration=${DURATION:-10s}
warmup=${WARMUP:-3s}
clients=${CLIENTS:-1,16,64}
payload=${PAYLOAD:-64}
workload=${WORKLOAD:-update}
rounds=${ROUNDS:-1}
out=${OUT:-}
keep=${KEEP:-0}
ours_ports=(9500 9501 9502)
etcd_client_ports=(23790 23791 23792)
etcd_peer_ports=(23800 23801 23802)

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --duration) duration=${2:?}; shift 2 ;;
        --warmup) warmup=${2:?}; shift 2 ;;
        --clients) clients=${2:?}; shift 2 ;;
        --payload) payload=${2:?}; shift 2 ;;
        --workload) workload=${2:?}; shift 2 ;;
        --rounds) rounds=${2:?}; shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "$me: unknown argument $1" >&2; usage 2 ;;
    esac
done
case "$rounds" in ''|*[!0-9]*|0) echo "$me: --rounds must be a positive integer, got $rounds" >&2; exit 2 ;; esac
IFS=, read -r -a client_counts <<< "$clients"
for c in "${client_counts[@]}"; do
    case "$c" in ''|*[!0-9]*|0) echo "$me: --clients must be positive integers separated by commas, got $clients" >&2; exit 2 ;; esac
done
command -v python3 >/dev/null || { echo "$me: python3 is required (it formats the table)" >&2; exit 1; }

# --- etcd ------------------------------------------------------------------
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    echo "$me: installing etcd-server and etcd-client with apt-get..." >&2
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "$me: not root and no sudo: install etcd-server and etcd-client yourself" >&2; exit 1; }
        sudo_cmd=(sudo)
    fi
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client >&2 \
        || { "${sudo_cmd[@]}" apt-get update -q >&2 && "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client >&2; }
fi
etcd_version=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')

# --- our binary: built once, before any node starts --------------------------
if [ -n "${SURFSTORE_BIN:-}" ]; then
    bin=$SURFSTORE_BIN
else
    echo "$me: building the release binary..." >&2
    (cd "$repo" && cargo build --release --quiet)
    bin="$repo/target/release/surfstore"
fi
export SURFSTORE_BIN=$bin

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "${ours_ports[@]}" "${etcd_client_ports[@]}" "${etcd_peer_ports[@]}"; do
    if port_busy "$p"; then
        echo "$me: port $p on 127.0.0.1 is in use; stop what listens there first" >&2
        exit 1
    fi
done

# --- everything started from here on is stopped by cleanup ------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/compare-etcd.XXXXXX")
started=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${started[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${started[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [ "$keep" = 1 ]; then
        echo "$me: kept $tmp (data directories and logs)" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

initial=""
endpoints=""
for i in 0 1 2; do
    initial+="${initial:+,}e$i=http://127.0.0.1:${etcd_peer_ports[$i]}"
    endpoints+="${endpoints:+,}http://127.0.0.1:${etcd_client_ports[$i]}"
done
etcd_pids=()
for i in 0 1 2; do
    etcd --name "e$i" --data-dir "$tmp/etcd$i" \
        --listen-client-urls "http://127.0.0.1:${etcd_client_ports[$i]}" \
        --advertise-client-urls "http://127.0.0.1:${etcd_client_ports[$i]}" \
        --listen-peer-urls "http://127.0.0.1:${etcd_peer_ports[$i]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${etcd_peer_ports[$i]}" \
        --initial-cluster "$initial" --initial-cluster-state new \
        --initial-cluster-token "compare-$$" \
        > "$tmp/etcd$i.log" 2>&1 &
    started+=("$!")
    etcd_pids+=("$!")
done

config="$tmp/ours.txt"
{
    echo "M: 3"
    for i in 0 1 2; do echo "metadata$i: 127.0.0.1:${ours_ports[$i]}"; done
} > "$config"
ours_pids=()
for i in 0 1 2; do
    "$repo/run-server.sh" "$config" "$i" --data-dir "$tmp/ours$i" --fsync always \
        > "$tmp/ours$i.log" 2>&1 &
    started+=("$!")
    ours_pids+=("$!")
done
ours_pid_list=$(IFS=,; echo "${ours_pids[*]}")
etcd_pid_list=$(IFS=,; echo "${etcd_pids[*]}")

# Dies early, with the log, if a server did not survive its start.
check_alive() {
    local i
    for i in 0 1 2; do
        kill -0 "${etcd_pids[$i]}" 2>/dev/null || { echo "$me: etcd member $i exited:" >&2; tail -20 "$tmp/etcd$i.log" >&2; exit 1; }
        kill -0 "${ours_pids[$i]}" 2>/dev/null || { echo "$me: our node $i exited:" >&2; tail -20 "$tmp/ours$i.log" >&2; exit 1; }
    done
}

bench() { # SIDE CLIENTS ROUND
    local side=$1 c=$2 r=$3 file="$tmp/$1-c$2-r$3.json"
    check_alive
    echo "$me: $side, $c clients, round $r ($warmup warm-up + $duration)..." >&2
    local common=(--clients "$c" --duration "$duration" --warmup "$warmup"
        --payload "$payload" --workload "$workload" --connect-timeout 30s --json)
    if [ "$side" = ours ]; then
        "$repo/run-bench.sh" "127.0.0.1:${ours_ports[0]}" "${common[@]}" --pids "$ours_pid_list" > "$file"
    else
        "$repo/run-bench.sh" --target etcd --endpoints "$endpoints" "${common[@]}" --pids "$etcd_pid_list" > "$file"
    fi
}

for r in $(seq "$rounds"); do
    for c in "${client_counts[@]}"; do
        bench ours "$c" "$r"
        bench etcd "$c" "$r"
    done
done

table=$(python3 - "$tmp" "$rounds" "$clients" "$etcd_version" "$duration" "$warmup" <<'PY'
import json, os, sys
tmp, rounds, clients, etcd_version, duration, warmup = sys.argv[1:]
rows = []
first = None
for r in range(1, int(rounds) + 1):
    for c in clients.split(","):
        o = json.load(open(os.path.join(tmp, f"ours-c{c}-r{r}.json")))
        e = json.load(open(os.path.join(tmp, f"etcd-c{c}-r{r}.json")))
        first = first or (o, e)
        rows.append((c, r, o, e))

def num(x, fmt):
    return "–" if x is None else format(x, fmt)

def ratio(a, b):
    return "–" if a is None or b in (None, 0) else f"{a / b:.2f}×"

def errs(j):
    return str(j["errors_total"])

o, e = first
so, se = o["setup"], e["setup"]
print(f"workload {so['workload']}, payload {so['payload_bytes']} B, {warmup} warm-up + {duration} measured per point, "
      f"closed loop, one keep-alive connection per client, {so['cores']} cores shared by servers and load generator")
print(f"ours: {so['nodes']} nodes, storage {so['storage']}, fsync {so['fsync']}; "
      f"etcd {etcd_version}: {se['nodes']} members, storage {se['storage']}, fsync {se['fsync']}")
head = ["clients", "round", "ours ops/s", "etcd ops/s", "ratio", "ours p50 ms", "etcd p50 ms", "ratio",
        "ours p99 ms", "etcd p99 ms", "ratio", "ours CPU µs/op", "etcd CPU µs/op", "ratio", "errors ours/etcd"]
lines = []
for c, r, o, e in rows:
    lines.append([
        c, str(r),
        num(o["ops_per_sec"], ",.0f"), num(e["ops_per_sec"], ",.0f"), ratio(o["ops_per_sec"], e["ops_per_sec"]),
        num(o["latency_ms"]["p50"], ".3f"), num(e["latency_ms"]["p50"], ".3f"), ratio(o["latency_ms"]["p50"], e["latency_ms"]["p50"]),
        num(o["latency_ms"]["p99"], ".3f"), num(e["latency_ms"]["p99"], ".3f"), ratio(o["latency_ms"]["p99"], e["latency_ms"]["p99"]),
        num(o["server_cpu_us_per_op"], ".0f"), num(e["server_cpu_us_per_op"], ".0f"),
        ratio(o["server_cpu_us_per_op"], e["server_cpu_us_per_op"]),
        f"{errs(o)}/{errs(e)}",
    ])
print("| " + " | ".join(head) + " |")
print("|" + "|".join(" --- " for _ in head) + "|")
for l in lines:
    print("| " + " | ".join(l) + " |")
PY
)
echo
echo "$table"
if [ -n "$out" ]; then
    mkdir -p "$out"
    cp "$tmp"/*.json "$out"/
    printf '%s\n' "$table" > "$out/table.md"
    echo "$me: runs and table kept in $out" >&2
fi
