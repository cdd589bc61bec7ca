#!/usr/bin/env bash
# Start one SurfStore metadata node: ./run-server.sh CONFIG ID [flags...]
#
# Works from any directory: CONFIG is taken relative to the caller's working
# directory, the crate is the directory this script lives in. The release binary
# is (re)built quietly when it is missing or older than anything in src/,
# Cargo.toml or Cargo.lock; then this shell is replaced by
# `surfstore server CONFIG ID flags...`, so signals reach the node directly.
# SURFSTORE_BIN=PATH runs that binary instead (the test suite uses it).
# The node keeps its write-ahead log in data/node<ID> under the caller's
# directory unless given --data-dir DIR or --in-memory.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 CONFIG ID [flags...]" >&2
    exit 2
fi

config=$1
id=$2
shift 2

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

# Make CONFIG absolute while we are still in the caller's directory.
case "$config" in
    /*) ;;
    *) config="$PWD/$config" ;;
esac

bin="$repo/target/release/surfstore"

# Tests that already built the binary name it here (cargo's CARGO_BIN_EXE_*),
# so a test run never starts a second, concurrent cargo build.
if [ -n "${SURFSTORE_BIN:-}" ]; then
    exec "$SURFSTORE_BIN" server "$config" "$id" "$@"
fi

needs_build() {
    [ -x "$bin" ] || return 0
    [ "$repo/Cargo.toml" -nt "$bin" ] && return 0
    [ -e "$repo/Cargo.lock" ] && [ "$repo/Cargo.lock" -nt "$bin" ] && return 0
    [ -n "$(find "$repo/src" -newer "$bin" -print -quit)" ] && return 0
    return 1
}

if needs_build; then
    # Quiet: compiler warnings are shown only if the build fails.
    if ! log=$(cd "$repo" && cargo build --release --quiet 2>&1); then
        printf '%s\n' "$log" >&2
        echo "$0: cargo build --release failed" >&2
        exit 1
    fi
    # cargo leaves the binary alone when the change did not affect it (say, a
    # stray file under src/); touch it so the next start does not ask again.
    touch "$bin"
fi

exec "$bin" server "$config" "$id" "$@"
