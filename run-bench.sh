#!/usr/bin/env bash
# Load a running cluster: ./run-bench.sh [HOST:PORT] [flags...]
#
# HOST:PORT is any node of our cluster; the bench finds the leader with
# surfstore.members / isLeader, follows NotLeader hints and leader changes,
# and prints committed ops/s, latency percentiles, failed attempts by kind and
# (with --pids) server CPU per committed op. `--target etcd --endpoints
# http://127.0.0.1:2379,...` drives etcd's v3 JSON gateway instead.
# `./run-bench.sh --help` shows every flag; bench/compare-etcd.sh runs both.
#
# Works from any directory: the crate is the directory this script lives in.
# The release binary is (re)built quietly when it is missing or older than
# anything in src/, Cargo.toml or Cargo.lock; then this shell is replaced by
# `surfstore bench flags...`. SURFSTORE_BIN=PATH runs that binary instead.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

# shellcheck source=scripts/exec-surfstore.sh
. "$repo/scripts/exec-surfstore.sh"
exec_surfstore bench "$@"
