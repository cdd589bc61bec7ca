#!/usr/bin/env bash
# Sync a local folder with a SurfStore cluster: ./run-client.sh HOST:PORT BASEDIR BLOCKSIZE [flags...]
#
# HOST:PORT is any node of the cluster (the client finds the leader itself);
# BASEDIR is the folder to sync (it must exist; the client keeps index.txt in
# it); BLOCKSIZE is the block size in bytes. Works from any directory: BASEDIR
# is taken relative to the caller's working directory, the crate is the
# directory this script lives in. The release binary is (re)built quietly when
# it is missing or older than anything in src/, Cargo.toml or Cargo.lock; then
# this shell is replaced by `surfstore client HOST:PORT BASEDIR BLOCKSIZE flags...`.
# SURFSTORE_BIN=PATH runs that binary instead (the test suite uses it).
# Exit status: 0 synced, 1 synced but some files were skipped, 2 failed.
set -euo pipefail

if [ "$#" -lt 3 ]; then
    echo "usage: $0 HOST:PORT BASEDIR BLOCKSIZE [flags...]" >&2
    exit 2
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
bin="$repo/target/release/surfstore"

if [ -n "${SURFSTORE_BIN:-}" ]; then
    exec "$SURFSTORE_BIN" client "$@"
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
    touch "$bin"
fi

exec "$bin" client "$@"
