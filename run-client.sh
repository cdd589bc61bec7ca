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

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

# shellcheck source=scripts/exec-surfstore.sh
. "$repo/scripts/exec-surfstore.sh"
# Everything goes to the subcommand: --help prints its full help (exit 0), a
# misuse is one line saying what is wrong (exit 2).
exec_surfstore client "$@"
