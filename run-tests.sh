#!/usr/bin/env bash
# Runs the whole test suite: unit, simulation, codec, HTTP, cluster and the
# Python-stdlib interop test (which starts nodes through run-server.sh).
# Release profile: the simulation and the cluster tests are timing-sensitive
# and the interop test execs the release binary.
set -euo pipefail
cd "$(dirname "$0")"
command -v python3 >/dev/null || { echo "run-tests.sh: python3 is required (the interop test uses its xmlrpc.client)" >&2; exit 1; }
exec cargo test --release "$@"
