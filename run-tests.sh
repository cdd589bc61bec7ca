#!/usr/bin/env bash
# Runs the whole test suite: unit, simulation, codec, HTTP, config, cluster,
# dashboard, tester, durability, block store and sync client, and the
# Python-stdlib interop test (which starts nodes through run-server.sh).
# Release profile: the simulation and the cluster tests are timing-sensitive
# and the process tests exec the release binary. Ends with one line
# "tests: N passed, M failed" summed over every test binary.
set -euo pipefail
cd "$(dirname "$0")"
command -v python3 >/dev/null || { echo "run-tests.sh: python3 is required (the interop test uses its xmlrpc.client)" >&2; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
