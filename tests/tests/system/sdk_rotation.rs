//! Credential rotation end to end on the SDK route. Under SnapStart the function's
//! SDK and the sidecar take their credentials from the container credentials
//! endpoint, and neither fetches them at the same moment, so after the role's
//! credentials rotate the function may sign with a set the sidecar has never seen.
//! The sidecar must then ask the endpoint once more and serve (not refuse), keep
//! accepting the previous set while it is unexpired, and still refuse a key the
//! endpoint never handed out.
//!
//! The function (`tests/fixtures/sdk/rotation.js`) holds the two kinds of client real
//! handlers hold: the article's, built once per environment, which keeps the set it
//! resolved (valid for hours) and so goes on signing with the previous set after a
//! rotation; and one built inside the handler, which resolves credentials on every
//! invoke and so signs with the new set at once. That second client is what makes a
//! caller sign with a set newer than the sidecar's deterministically. (The other way
//! a client picks up a new set, its refresh five minutes before expiry, would not
//! exercise the refetch: the sidecar renews its own set within the same five minutes,
//! so it would have the new set already.) The emulator rotates when the test says
//! (`Emulator::rotate_credentials`) and traces every fetch with the set it handed out.
//!
//! Without the sidecar's refetch on an unknown access key, the first invoke signed
//! with the new set would be refused (`UnrecognizedClientException`) and this test
//! fails there.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use harness::emulator::{Mode, ShutdownReason};
use harness::moto::Moto;
use harness::proxy::FaultProxy;
use harness::sdk_function::{sha256_hex, Call, Options, Route, SdkFunction};
use serde_json::json;

const SECRET: &str = "app/article-sdk";
/// The sidecar asks the endpoint again on an unknown key at most once a second
/// (`keys.rs`, `MIN_REFETCH`); waiting longer than that makes its next fetch certain.
const PAST_REFETCH_LIMIT: Duration = Duration::from_millis(1500);

async fn call(f: &SdkFunction, client: &str, digest: &str) -> Result<Call> {
    let call = f
        .call_with(json!({ "client": client }))
        .await
        .with_context(|| format!("the {client} client"))?;
    ensure!(call.sha256 == digest, "the {client} client got another secret");
    Ok(call)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_the_sidecar_refetches_once_and_keeps_refusing_strangers() -> Result<()> {
    let moto = Moto::start().await?;
    let value = format!("sk_live_{}", uuid::Uuid::new_v4().simple());
    moto.create_secret(SECRET, &value).await?;
    let digest = sha256_hex(value.as_bytes())?;
    let proxy = FaultProxy::start(moto.port).await?;
    let options = Options {
        handler: "rotation.js",
        mode: Mode::SnapStart,
        rotating_credentials: true,
    };
    let f = SdkFunction::start_with(SECRET, &proxy.endpoint(), Route::Sidecar, &[], options).await?;
    let emulator = &f.emulator;
    let key0 = emulator.config().access_key_id.clone();
    let served = || emulator.credentials_served();

    // Before the rotation (the first invoke snapshots and restores the environment):
    // both clients sign with set 0.
    for client in ["module", "per-invoke", "module", "per-invoke"] {
        let c = call(&f, client, &digest).await?;
        ensure!(c.access_key_id.as_deref() == Some(key0.as_str()), "{client}: {c:?}");
    }
    let before = served();
    ensure!(before.iter().all(|&set| set == 0), "{before:?}");

    let (set1, key1) = emulator.rotate_credentials().map_err(anyhow::Error::msg)?;
    ensure!(set1 == 1 && key1 != key0);

    // The per-invoke client fetches set 1 and signs with it: the sidecar has not seen
    // it, asks the endpoint once, and serves from its cache.
    let c = call(&f, "per-invoke", &digest).await?;
    ensure!(c.access_key_id.as_deref() == Some(key1.as_str()), "{c:?}");
    let after_rotation = served();
    let new_fetches = &after_rotation[before.len()..];
    // One fetch is the function's own (a client built per invoke always fetches); the
    // other is the sidecar's refetch. Both got set 1.
    ensure!(
        new_fetches == [1, 1],
        "the function's fetch and one sidecar refetch, both of set 1: {new_fetches:?}"
    );

    // Set 1 is known now: the next per-invoke call fetches (the function) but the
    // sidecar does not; the module client still signs with set 0, still accepted.
    let c = call(&f, "per-invoke", &digest).await?;
    ensure!(c.access_key_id.as_deref() == Some(key1.as_str()), "{c:?}");
    let c = call(&f, "module", &digest).await?;
    ensure!(c.access_key_id.as_deref() == Some(key0.as_str()), "{c:?}");
    let settled = served();
    ensure!(
        settled.len() == after_rotation.len() + 1,
        "only the per-invoke client fetched: {:?}",
        &settled[after_rotation.len()..]
    );

    // A key the endpoint never handed out (another account's, say): the sidecar asks
    // the endpoint once more (past its once-a-second limit), still does not find it,
    // and refuses with no upstream call.
    tokio::time::sleep(PAST_REFETCH_LIMIT).await;
    let upstream_before = proxy.total();
    let stranger = "ASIASTRANGERNEVERHANDEDOUT";
    let refused = f
        .call_with(json!({
            "client": "per-invoke",
            "credentials": {
                "accessKeyId": stranger,
                "secretAccessKey": "not-the-roles-secret-key",
                "sessionToken": "not-the-roles-session-token",
            },
        }))
        .await;
    let why = match refused {
        Ok(c) => anyhow::bail!("a stranger's key was served: {c:?}"),
        Err(e) => e.to_string(),
    };
    ensure!(
        why.contains("UnrecognizedClientException") && why.contains(stranger),
        "refused as AWS refuses an unknown key, naming it: {why}"
    );
    ensure!(
        proxy.total() == upstream_before,
        "the refusal called AWS: {:?}",
        proxy.counts()
    );
    let after_stranger = served();
    ensure!(
        after_stranger[settled.len()..] == [1],
        "one refetch (of set 1) before refusing: {:?}",
        &after_stranger[settled.len()..]
    );

    // And the function's own clients still get through.
    call(&f, "module", &digest).await?;
    call(&f, "per-invoke", &digest).await?;
    emulator.settle().await;
    ensure!(
        proxy.count("GetSecretValue") == 1,
        "one upstream call through the rotation: {:?}",
        proxy.counts()
    );

    let report = emulator.shutdown(ShutdownReason::Spindown).await;
    ensure!(
        report.killed.is_empty() && report.extensions.iter().all(|(_, exit)| exit.is_some()),
        "the sidecar exited by itself: {report:?}"
    );
    let logs = emulator.logs().lines();
    let hits = logs.iter().filter(|l| l.contains(&value)).count();
    ensure!(hits == 0, "the planted value appears in {hits} log lines");
    eprintln!(
        "rotation: container credentials served {:?} (set per fetch, in order); upstream {:?}",
        served(),
        proxy.counts()
    );
    Ok(())
}
