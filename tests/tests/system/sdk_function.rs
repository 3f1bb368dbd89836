//! The article's second approach, unchanged, gets the cache (issue 12 item 6): a
//! Node.js function calling `GetSecretValue` with the AWS SDK for JavaScript v3 on
//! every invoke, in the emulator with the real sidecar in its layer, its endpoint set
//! only by `AWS_ENDPOINT_URL_SECRETS_MANAGER`. moto sits behind the fault proxy, which
//! counts the calls that reach "AWS". The same function without the layer, pointed
//! straight at the proxy, is the baseline: one upstream call per invoke, so the count
//! that the cached run is held to is a count that can come out otherwise.
//!
//! The function answers with the SHA-256 digest of the secret; the test compares
//! digests of a value it planted and never prints one.

use anyhow::Result;
use harness::emulator::ShutdownReason;
use harness::moto::Moto;
use harness::proxy::FaultProxy;
use harness::sdk_function::{sha256_hex, Route, SdkFunction};

const SECRET: &str = "app/article-sdk";
const INVOKES: usize = 100;

struct Setup {
    _moto: Moto,
    proxy: FaultProxy,
    function: SdkFunction,
    value: String,
    digest: String,
}

async fn start(route: Route) -> Result<Setup> {
    let moto = Moto::start().await?;
    let value = format!("sk_live_{}", uuid::Uuid::new_v4().simple());
    moto.create_secret(SECRET, &value).await?;
    let proxy = FaultProxy::start(moto.port).await?;
    // No prefetch: the first invoke's call is the one upstream call.
    let function = SdkFunction::start(SECRET, &proxy.endpoint(), route, &[]).await?;
    let digest = sha256_hex(value.as_bytes())?;
    Ok(Setup {
        _moto: moto,
        proxy,
        function,
        value,
        digest,
    })
}

/// Invokes `INVOKES` times; how many answered the planted secret.
async fn invoke_all(s: &Setup) -> Result<usize> {
    Ok(s.function.invoke_n(INVOKES, &s.digest).await?.right)
}

fn assert_no_value_in_logs(s: &Setup) {
    let hits = s
        .function
        .emulator
        .logs()
        .lines()
        .iter()
        .filter(|l| l.contains(&s.value))
        .count();
    assert_eq!(hits, 0, "the planted value appears in {hits} log lines");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sdk_call_on_every_invoke_through_the_sidecar_reaches_aws_once() -> Result<()> {
    let s = start(Route::Sidecar).await?;
    assert!(s.function.endpoint.starts_with("http://localhost:"));
    let right = invoke_all(&s).await?;
    s.function.emulator.settle().await;
    assert_eq!(right, INVOKES, "every invoke answered the planted secret");
    assert_eq!(
        s.proxy.count("GetSecretValue"),
        1,
        "one upstream GetSecretValue for {INVOKES} invokes: {:?}",
        s.proxy.counts()
    );
    assert_eq!(s.proxy.count("BatchGetSecretValue"), 0);
    let report = s.function.emulator.shutdown(ShutdownReason::Spindown).await;
    assert!(
        report.killed.is_empty() && report.extensions.iter().all(|(_, exited)| exited.is_some()),
        "the sidecar exited by itself within the deadline: {:?}",
        report.extensions
    );
    assert_no_value_in_logs(&s);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_function_straight_to_aws_calls_it_on_every_invoke() -> Result<()> {
    let s = start(Route::Direct).await?;
    let right = invoke_all(&s).await?;
    s.function.emulator.settle().await;
    assert_eq!(right, INVOKES, "every invoke answered the planted secret");
    assert_eq!(
        s.proxy.count("GetSecretValue"),
        INVOKES as u64,
        "{:?}",
        s.proxy.counts()
    );
    s.function.emulator.shutdown(ShutdownReason::Spindown).await;
    assert_no_value_in_logs(&s);
    Ok(())
}
