//! Log setup: `tracing` to stderr, JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`, level from
//! `PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL` (or `AWS_LAMBDA_LOG_LEVEL`); `none` installs
//! nothing at all.
//!
//! Our own events follow the configured level. Other crates (the AWS SDK, hyper,
//! rustls) are capped at `info` even when ours is `debug` or `trace`: their most
//! verbose levels can print request and response bodies, which carry values.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{LogFormat, LogLevel};

fn filter_of(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::None => LevelFilter::OFF,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// The per-crate filter described above.
pub fn targets(level: LogLevel) -> Targets {
    let ours = filter_of(level);
    let others = ours.min(LevelFilter::INFO);
    Targets::new().with_target("secrets_sidecar", ours).with_default(others)
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(level: LogLevel, format: LogFormat) {
    if level == LogLevel::None {
        return;
    }
    let filter = targets(level);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let result = match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("secrets-sidecar: logging not set up: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn other_crates_never_go_below_info() {
        let t = targets(LogLevel::Trace);
        assert!(t.would_enable("secrets_sidecar::cache", &Level::TRACE));
        assert!(!t.would_enable("aws_smithy_runtime::client", &Level::DEBUG));
        assert!(t.would_enable("aws_smithy_runtime::client", &Level::INFO));
        let t = targets(LogLevel::Warn);
        assert!(!t.would_enable("secrets_sidecar::cache", &Level::INFO));
        assert!(!t.would_enable("hyper", &Level::INFO));
        assert!(t.would_enable("hyper", &Level::WARN));
    }
}
