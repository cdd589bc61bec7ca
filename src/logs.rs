//! How the binaries log: `tracing` to stderr, `RUST_LOG` choosing what
//! (default `info`), and colour only where a person reads it.

use std::io::IsTerminal;

/// Whether log lines on stderr may carry ANSI colours: only when stderr is
/// a terminal and `NO_COLOR` is unset or empty (<https://no-color.org>), so
/// a file or a pipe gets plain text.
pub fn stderr_ansi() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The filter `RUST_LOG` names, else `info`.
pub fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}
