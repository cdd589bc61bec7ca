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


# shellcheck source=scripts/exec-surfstore.sh
. "$repo/scripts/exec-surfstore.sh"
exec_surfstore server "$config" "$id" "$@"
