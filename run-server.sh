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
# `--help` shows every flag and the exit codes.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/exec-surfstore.sh
. "$repo/scripts/exec-surfstore.sh"

if surfstore_wants_help "$@" || [ "$#" -lt 2 ]; then
    # The subcommand prints its help (exit 0), or says in one line what is
    # missing (exit 2).
    exec_surfstore server "$@"
fi

config=$1
id=$2
shift 2

# Make CONFIG absolute while we are still in the caller's directory.
case "$config" in
    /*) ;;
    *) config="$PWD/$config" ;;
esac

exec_surfstore server "$config" "$id" "$@"
