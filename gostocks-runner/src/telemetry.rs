//! Logging: the binary alone installs the tracing subscriber.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Logs go to stderr; the level comes from `--log`, else `RUST_LOG`, else `info`. As text, or
/// as JSON: one object a line (`timestamp`, `level`, `fields` with the message, `span` and
/// `spans` with the spans' fields), for log shippers.
pub fn init(filter: Option<&str>, format: LogFormat) {
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder
            // Colour codes only on a terminal: in files and pipes they break every grep.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
