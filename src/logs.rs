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

/// How log lines look.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event, for people (`tracing`'s default layout).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`),
    /// for log collectors.
    Json,
}

/// `--log-format` and `--log-level`, for the binaries that run nodes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LogArgs {
    /// How log lines look: `text` or `json` (one object per line).
    #[arg(long, value_enum, default_value = "text", value_name = "text|json")]
    pub log_format: LogFormat,
    /// What to log: `error`, `warn`, `info`, `debug` or `trace`, or
    /// RUST_LOG-style directives (`info,surfstore::node::peers=debug`).
    /// Given, it replaces RUST_LOG; else RUST_LOG, else `info`.
    #[arg(long, value_parser = parse_level, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// A `--log-level` value, checked as `EnvFilter` directives.
fn parse_level(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| {
            format!("{text:?} is not a level (error, warn, info, debug, trace) or directives: {e}")
        })
}

impl LogArgs {
    /// The filter: `--log-level`, else `RUST_LOG`, else `info`.
    pub fn filter(&self) -> tracing_subscriber::EnvFilter {
        match &self.log_level {
            Some(l) => tracing_subscriber::EnvFilter::builder()
                .parse(l)
                .unwrap_or_else(|_| env_filter()),
            None => env_filter(),
        }
    }

    /// Installs the global subscriber writing to `writer`, with colours only
    /// when `ansi` (never in JSON). False if one was already installed.
    pub fn init<W>(&self, writer: W, ansi: bool) -> bool
    where
        W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(self.filter())
            .with_writer(writer);
        match self.log_format {
            LogFormat::Text => builder.with_ansi(ansi).try_init().is_ok(),
            LogFormat::Json => builder.json().with_ansi(false).try_init().is_ok(),
        }
    }
}
