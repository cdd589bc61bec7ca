# Sourced by the run-*.sh scripts (bash). Defines `exec_surfstore ARGS...`,
# which replaces the calling shell with `surfstore ARGS...`:
# - SURFSTORE_BIN=PATH runs that binary (tests pass cargo's CARGO_BIN_EXE_*, so
#   a test run never starts a second, concurrent cargo build);
# - otherwise target/release/surfstore of the repository, (re)built quietly
#   first when it is missing or older than anything in src/, Cargo.toml or
#   Cargo.lock (compiler output is shown only if the build fails).
# exec keeps the caller's working directory and lets signals and the terminal
# reach the program directly. Expects `repo` to be set to the repository root.

surfstore_needs_build() {
    local bin=$1
    [ -x "$bin" ] || return 0
    [ "$repo/Cargo.toml" -nt "$bin" ] && return 0
    [ -e "$repo/Cargo.lock" ] && [ "$repo/Cargo.lock" -nt "$bin" ] && return 0
    [ -n "$(find "$repo/src" -newer "$bin" -print -quit)" ] && return 0
    return 1
}

# True when the arguments ask for help or the version: the script then
# passes them to the subcommand untouched (its --help is the full one, exit 0).
surfstore_wants_help() {
    local a
    for a in "$@"; do
        case "$a" in
            -h | --help | -V | --version) return 0 ;;
        esac
    done
    return 1
}

exec_surfstore() {
    if [ -n "${SURFSTORE_BIN:-}" ]; then
        exec "$SURFSTORE_BIN" "$@"
    fi
    local bin="$repo/target/release/surfstore" log
    if surfstore_needs_build "$bin"; then
        if [ -t 2 ]; then
            echo "$(basename "$0"): building the release binary..." >&2
        fi
        if ! log=$(cd "$repo" && cargo build --release --quiet 2>&1); then
            printf '%s\n' "$log" >&2
            echo "$(basename "$0"): cargo build --release failed" >&2
            exit 1
        fi
        # cargo leaves the binary alone when a change did not affect it (say, a
        # stray file under src/); touch it so the next start does not ask again.
        touch "$bin"
    fi
    exec "$bin" "$@"
}
