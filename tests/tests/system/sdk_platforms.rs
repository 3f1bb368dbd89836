//! The article's second approach (a Node.js function calling `GetSecretValue` with the
//! AWS SDK for JavaScript v3 on every invoke, unchanged, its endpoint set only by
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`) on the Lambda platforms beyond on demand
//! (`sdk_function.rs` covers that one): provisioned concurrency, SnapStart and Managed
//! Instances. Each changes something the SDK route depends on: provisioned
//! environments sit frozen between init and traffic; under SnapStart the function and
//! the sidecar take their credentials from the container credentials endpoint (so the
//! SigV4 check must accept what the JS SDK found there) and the snapshot must hold no
//! value; on Managed Instances invokes overlap, so the first burst must still make a
//! single upstream call. Each test asserts that every invoke answered the planted
//! secret (by digest), that "AWS" (moto behind the fault proxy) was called once, that
//! the sidecar exits by itself at SHUTDOWN, and that no value reached a log, and
//! prints the figures the report quotes.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use harness::emulator::{Mode, ShutdownReason, Trace};
use harness::moto::Moto;
use harness::proxy::FaultProxy;
use harness::sdk_function::{sha256_hex, Options, Route, SdkFunction};

const SECRET: &str = "app/article-sdk";
/// Invokes per platform: enough to show the count does not grow, few enough to stay quick.
const INVOKES: usize = 40;

struct Setup {
    _moto: Moto,
    proxy: FaultProxy,
    function: SdkFunction,
    value: String,
    digest: String,
}

async fn start(mode: Mode) -> Result<Setup> {
    let moto = Moto::start().await?;
    let value = format!("sk_live_{}", uuid::Uuid::new_v4().simple());
    moto.create_secret(SECRET, &value).await?;
    let proxy = FaultProxy::start(moto.port).await?;
    // No prefetch: the function's first call is the one upstream call.
    let options = Options {
        mode,
        ..Options::default()
    };
    let function = SdkFunction::start_with(SECRET, &proxy.endpoint(), Route::Sidecar, &[], options).await?;
    let digest = sha256_hex(value.as_bytes())?;
    Ok(Setup {
        _moto: moto,
        proxy,
        function,
        value,
        digest,
    })
}

/// What every platform must show after its invokes: the right answers, one upstream
/// call, a clean exit at SHUTDOWN, no value in any log. Returns SHUTDOWN → exit.
async fn check(s: &Setup, right: usize, mode: Mode) -> Result<Duration> {
    s.function.emulator.settle().await;
    ensure!(
        right == INVOKES,
        "{mode}: {right} of {INVOKES} invokes answered the planted secret"
    );
    ensure!(
        s.proxy.count("GetSecretValue") == 1 && s.proxy.count("BatchGetSecretValue") == 0,
        "{mode}: one upstream GetSecretValue for {INVOKES} invokes: {:?}",
        s.proxy.counts()
    );
    let report = s.function.emulator.shutdown(ShutdownReason::Spindown).await;
    ensure!(report.killed.is_empty(), "{mode}: {report:?}");
    ensure!(report.next_after_shutdown.is_empty(), "{mode}: {report:?}");
    let exit = report
        .extensions
        .iter()
        .find(|(name, _)| name == "secrets-sidecar")
        .and_then(|(_, exit)| *exit)
        .ok_or_else(|| anyhow::anyhow!("{mode}: the sidecar did not exit by itself: {report:?}"))?;
    let logs = s.function.emulator.logs().lines();
    let hits = logs.iter().filter(|l| l.contains(&s.value)).count();
    ensure!(hits == 0, "{mode}: the planted value appears in {hits} log lines");
    Ok(exit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_the_article_function_reaches_aws_once() -> Result<()> {
    let s = start(Mode::Provisioned).await?;
    let emulator = &s.function.emulator;
    let init = emulator.init().await.map_err(anyhow::Error::msg)?;
    // Provisioned ahead of traffic: frozen for a while before the first invoke.
    emulator
        .idle(Duration::from_millis(500))
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(
        s.proxy.total() == 0,
        "nothing fetched before traffic: {:?}",
        s.proxy.counts()
    );
    let tally = s.function.invoke_n(INVOKES, &s.digest).await?;
    let exit = check(&s, tally.right, Mode::Provisioned).await?;
    eprintln!(
        "provisioned: init {init:?}; {INVOKES} invokes, {} right, SDK call p50 {:.1} ms; upstream {:?}; SHUTDOWN → exit {exit:?}",
        tally.right,
        tally.p50(),
        s.proxy.counts()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapstart_the_article_function_signs_with_container_credentials_and_reaches_aws_once() -> Result<()> {
    let s = start(Mode::SnapStart).await?;
    let emulator = &s.function.emulator;
    let init = emulator.init().await.map_err(anyhow::Error::msg)?;
    let scan = emulator
        .snapshot(&[s.value.as_bytes()])
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(
        scan.findings.is_empty(),
        "the value is in the snapshot: {:?}",
        scan.findings
    );
    ensure!(
        s.proxy.total() == 0,
        "nothing fetched before the restore: {:?}",
        s.proxy.counts()
    );
    emulator.restore(Duration::ZERO).await.map_err(anyhow::Error::msg)?;
    // The JS SDK finds no AWS_ACCESS_KEY_ID here: it must take the endpoint's set,
    // and the sidecar must verify what it signed with that set.
    let first = s.function.call().await?;
    ensure!(first.sha256 == s.digest, "the first invoke answered another secret");
    let after_first = emulator.credentials_served().len();
    let rest = s.function.invoke_n(INVOKES - 1, &s.digest).await?;
    let served = emulator.credentials_served();
    let refused = emulator
        .trace()
        .iter()
        .filter(|t| matches!(t.what, Trace::CredentialsServed { ok: false, .. }))
        .count();
    ensure!(refused == 0, "{refused} credential requests were refused");
    ensure!(after_first > 0, "nobody fetched container credentials");
    // Both the function's client and the sidecar keep the set they fetched (valid for
    // hours): the fetches do not grow with invokes.
    ensure!(
        served.len() == after_first,
        "credentials fetched {after_first} times by the first invoke, {} by the last",
        served.len()
    );
    let exit = check(&s, rest.right + 1, Mode::SnapStart).await?;
    eprintln!(
        "snap-start: init {init:?}; snapshot scan: {} processes, {} bytes, no value; {INVOKES} invokes all right, SDK call first {:.1} ms, then p50 {:.1} ms; container credentials fetched {} times (all by the first invoke); upstream {:?}; SHUTDOWN → exit {exit:?}",
        scan.processes.len(),
        scan.bytes,
        first.ms,
        rest.p50(),
        served.len(),
        s.proxy.counts()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_concurrent_invokes_of_the_article_function_reach_aws_once() -> Result<()> {
    let at_once = 8;
    let s = start(Mode::managed_instances(at_once)).await?;
    let emulator = &s.function.emulator;
    let init = emulator.init().await.map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    // All at once, cache cold: the first `at_once` SDK calls overlap in the sidecar.
    let tally = s.function.invoke_at_once(INVOKES, &s.digest).await?;
    let took = started.elapsed();
    // How many invokes the runtime held at once (delivered, not yet answered).
    let (mut inflight, mut most) = (0usize, 0usize);
    for t in emulator.trace() {
        match t.what {
            Trace::InvokeToRuntime { .. } => inflight += 1,
            Trace::RuntimeAnswered { .. } => inflight = inflight.saturating_sub(1),
            _ => {}
        }
        most = most.max(inflight);
    }
    ensure!(most > 1, "the invokes never overlapped (at most {most} at once)");
    let exit = check(&s, tally.right, Mode::managed_instances(at_once)).await?;
    eprintln!(
        "managed-instances: init {init:?}; {INVOKES} invokes sent at once ({at_once} allowed, {most} overlapped) in {took:?}, all right, SDK call p50 {:.1} ms; upstream {:?}; SHUTDOWN → exit {exit:?}",
        tally.p50(),
        s.proxy.counts()
    );
    Ok(())
}
