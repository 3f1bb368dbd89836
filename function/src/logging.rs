//! The function's logs: `tracing` to stdout, JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`,
//! level from `AWS_LAMBDA_LOG_LEVEL` (info by default) for this crate; other crates
//! (hyper, rustls, the Lambda runtime) stay at `info` or above, because their most
//! verbose levels can print request lines, and provider URLs carry keys.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub fn level(var: Option<&str>) -> LevelFilter {
    match var.map(str::to_ascii_lowercase).as_deref() {
        Some("trace") => LevelFilter::TRACE,
        Some("debug") => LevelFilter::DEBUG,
        Some("warn") => LevelFilter::WARN,
        Some("error" | "fatal") => LevelFilter::ERROR,
        Some("off" | "none") => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    }
}

pub fn targets(ours: LevelFilter) -> Targets {
    Targets::new()
        .with_target("weather", ours)
        .with_target("bootstrap", ours)
        .with_default(ours.min(LevelFilter::INFO))
}

pub fn init() {
    let ours = level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref());
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let layer = tracing_subscriber::fmt::layer().with_ansi(false).without_time();
    let result = if json {
        tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_filter(targets(ours)),
            )
            .try_init()
    } else {
        tracing_subscriber::registry()
            .with(layer.with_filter(targets(ours)))
            .try_init()
    };
    if let Err(e) = result {
        eprintln!("logging not set up: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn dependencies_stay_at_info() {
        let t = targets(level(Some("TRACE")));
        assert!(t.would_enable("weather::handler", &Level::TRACE));
        assert!(!t.would_enable("hyper_util::client", &Level::DEBUG));
        assert!(t.would_enable("hyper_util::client", &Level::INFO));
    }
}
