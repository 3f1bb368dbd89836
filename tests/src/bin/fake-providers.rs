//! `fake-providers`: the three fake weather providers as a program of their own, for
//! the Docker compose path (`local/`), which runs it beside AWS's Lambda image so the
//! demo answers offline. Listens on `FAKE_PROVIDERS_ADDR` (default `0.0.0.0:8090`) and
//! accepts the keys in `DARKSKY_KEY`, `OPENWEATHERMAP_APPID` and `HERE_API_KEY`
//! (defaults: the ones `local/seed.sh` stores). Paths: `/darksky`, `/owm`, `/here`.
//! Runs until SIGTERM or SIGINT.

use anyhow::{Context, Result};
use harness::fakes::FakeProviders;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

const DEFAULT_ADDR: &str = "0.0.0.0:8090";
/// What `local/seed.sh` stores when no real key is given.
const DEFAULT_KEY: &str = "local-fake-key";

fn var(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let addr = var("FAKE_PROVIDERS_ADDR", DEFAULT_ADDR);
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let providers = FakeProviders::start_on(
        listener,
        &var("DARKSKY_KEY", DEFAULT_KEY),
        &var("OPENWEATHERMAP_APPID", DEFAULT_KEY),
        &var("HERE_API_KEY", DEFAULT_KEY),
    )
    .await?;
    eprintln!(
        "fake weather providers on {addr} (port {}): /darksky, /owm, /here",
        providers.port
    );
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
