#!/usr/bin/env bash
# Run every node of a cluster in this one process, with a live dashboard:
#   ./run-cluster.sh CONFIG [--headless] [timing flags...]
#
# Works from any directory: CONFIG is taken relative to the caller's working
# directory, the crate is the directory this script lives in. The release binary
# is (re)built quietly when it is missing or older than anything in src/,
# Cargo.toml or Cargo.lock; then this shell is replaced by
# `surfstore cluster CONFIG flags...`, so signals and the terminal reach it
# directly. SURFSTORE_BIN=PATH runs that binary instead (the test suite uses it).
# Node i keeps its write-ahead log in data/node<i> under the caller's directory
# unless given --data-dir DIR (then DIR/node<i>) or --in-memory.
set -euo pipefail

if [ "$#" -lt 1 ]; then
    echo "usage: $0 CONFIG [--headless] [flags...]   (flags: surfstore cluster --help)" >&2
    exit 2
fi

config=$1
shift

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
    exec "$SURFSTORE_BIN" cluster "$config" "$@"
fi

needs_build() {
    [ -x "$bin" ] || return 0
    [ "$repo/Cargo.toml" -nt "$bin" ] && return 0
    [ -e "$repo/Cargo.lock" ] && [ "$repo/Cargo.lock" -nt "$bin" ] && return 0
    [ -n "$(find "$repo/src" -newer "$bin" -print -quit)" ] && return 0
    return 1
}

if needs_build; then
    echo "run-cluster.sh: building the release binary..." >&2
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

exec "$bin" cluster "$config" "$@"
