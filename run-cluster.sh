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

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/exec-surfstore.sh
. "$repo/scripts/exec-surfstore.sh"

if surfstore_wants_help "$@" || [ "$#" -lt 1 ]; then
    # The subcommand prints its help (exit 0), or says in one line what is
    # missing (exit 2).
    exec_surfstore cluster "$@"
fi

config=$1
shift

case "$config" in
    /*) ;;
    *) config="$PWD/$config" ;;
esac

exec_surfstore cluster "$config" "$@"
