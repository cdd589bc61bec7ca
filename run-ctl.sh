#!/usr/bin/env bash
# Look at a running SurfStore cluster and move it, like etcdctl:
#   ./run-ctl.sh --endpoint HOST:PORT status        (or --config CONFIG)
#   ./run-ctl.sh -e localhost:9001 -w json status
#   ./run-ctl.sh -e localhost:9001 members | transfer-leader [ID] | crash ID | restore ID
#
# `./run-ctl.sh --help` shows every flag and the exit codes. Works from any
# directory: the crate is the directory this script lives in. The release
# binary is (re)built quietly when it is missing or older than anything in
# src/, Cargo.toml or Cargo.lock; then this shell is replaced by
# `surfstore ctl flags...`. SURFSTORE_BIN=PATH runs that binary instead.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

# shellcheck source=scripts/exec-surfstore.sh
. "$repo/scripts/exec-surfstore.sh"
exec_surfstore ctl "$@"
