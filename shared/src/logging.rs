//! How both binaries log: to stderr, as text for people (the default) or as JSON lines for a
//! log pipeline (`--log-format json`). `RUST_LOG` overrides the binary's default filter.
//!
//! In JSON each line is one object: `timestamp`, `level`, `target`, the event's fields
//! (`message` among them) at the top level, `span` (the innermost span, with its fields) and
//! `spans` (every enclosing span, outermost first, each with its fields). The API's request span
//! carries `request_id`, and so does a worker's job span: every line logged for a request or
//! its job names it.
use tracing_subscriber::EnvFilter;

/// The shape of log lines.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the global subscriber: `format`, filtered by `RUST_LOG` or else `default_filter`.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(true).init(),
    }
}
