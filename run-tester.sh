#!/usr/bin/env bash
# Test a running SurfStore cluster: ./run-tester.sh HOST:PORT [flags...]
#
# HOST:PORT is any node; the tester finds the others with surfstore.members
# (or --config FILE). It runs every scenario (--list shows them, --only NAME
# picks some), restores every node it crashed, prints a summary and exits 0
# only if everything passed. `./run-tester.sh --help` shows the flags and exit codes.
#
# Works from any directory: the crate is the directory this script lives in.
# The release binary is (re)built quietly when it is missing or older than
# anything in src/, Cargo.toml or Cargo.lock; then this shell is replaced by
# `surfstore tester HOST:PORT flags...`, so Ctrl-C reaches the tester (which
# restores the cluster before exiting). SURFSTORE_BIN=PATH runs that binary
# instead (the test suite uses it).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

# shellcheck source=scripts/exec-surfstore.sh
. "$repo/scripts/exec-surfstore.sh"
# Everything goes to the subcommand: --help prints its full help (exit 0), a
# misuse is one line saying what is wrong (exit 2).
exec_surfstore tester "$@"
