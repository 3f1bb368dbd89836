//! The real binary in Lambda mode against a scripted Extensions API and moto:
//! registration, prefetch before the first `event/next`, serving during INIT,
//! refresh-ahead on INVOKE before the next `event/next`, SHUTDOWN exit time, and
//! `init/error` for invalid configuration and missing REQUIRED secrets.

use std::time::{Duration, Instant};

use harness::extensions_api::{MockExtensionsApi, EXTENSION_ID};
use harness::moto::Moto;
use harness::proxy::{Fault, FaultProxy};
use harness::sidecar::{Sidecar, SidecarBuilder};

const BIN: &str = env!("CARGO_BIN_EXE_secrets-sidecar");
const WAIT: Duration = Duration::from_secs(10);

type R = anyhow::Result<()>;

fn lambda_sidecar(api: &MockExtensionsApi, endpoint: &str) -> SidecarBuilder {
    let b = SidecarBuilder::new(BIN).endpoint(endpoint);
    let token = b.token.clone();
    b.var("AWS_LAMBDA_RUNTIME_API", &api.address())
        .var("AWS_SESSION_TOKEN", &token)
        .unset("SECRETS_SIDECAR_TOKEN")
}

fn attach(b: &SidecarBuilder, proc: harness::process::Proc) -> Sidecar {
    Sidecar {
        proc,
        port: b.port,
        token: b.token.clone(),
        http: harness::net::HttpClient::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_prefetches_then_polls_and_serves_during_init() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let api = MockExtensionsApi::start().await?;
    moto.create_secret("db", "pw").await?;
    // A slow batch keeps the prefetch in flight while the function asks for the secret.
    proxy.inject(
        Some("BatchGetSecretValue"),
        Fault::Latency(Duration::from_millis(700)),
        Some(1),
    );
    let b = lambda_sidecar(&api, &proxy.endpoint()).var("SECRETS_SIDECAR_PREFETCH", "secretsmanager:db");
    let proc = b.spawn_raw()?;
    let sc = attach(&b, proc);

    let reg = api.wait_for("/extension/register", 1, WAIT).await?;
    assert_eq!(reg[0].headers["lambda-extension-name"], "secrets-sidecar");
    assert_eq!(reg[0].body["events"], serde_json::json!(["INVOKE", "SHUTDOWN"]));

    // During INIT (no event/next yet) the request is served, waiting on the prefetch.
    proxy.wait_for_count("BatchGetSecretValue", 1, WAIT).await?;
    assert!(api.requests("/event/next").is_empty(), "still initialising");
    let during_init = sc.get("/secretsmanager/get?secretId=db").await?;
    assert_eq!(during_init.status, 200, "{}", during_init.text());
    assert_eq!(during_init.json()["SecretString"], "pw");
    assert_eq!(proxy.count("GetSecretValue"), 0, "the request joined the prefetch");

    // The first event/next comes only after the prefetch has settled.
    let next = api.wait_for("/event/next", 1, WAIT).await?;
    assert_eq!(next[0].headers["lambda-extension-identifier"], EXTENSION_ID);
    assert_eq!(proxy.count("BatchGetSecretValue"), 1);
    let ping = sc.get_with("/ping", &[]).await?;
    assert_eq!(ping.json()["ready"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_runs_refresh_ahead_before_the_next_poll_and_shutdown_exits_fast() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let api = MockExtensionsApi::start().await?;
    moto.create_secret("db", "v1").await?;
    let b = lambda_sidecar(&api, &proxy.endpoint())
        .var("SECRETS_SIDECAR_PREFETCH", "secretsmanager:db")
        .var("SECRETS_MANAGER_TTL", "2")
        .var("SECRETS_SIDECAR_REFRESH_AHEAD", "0.25");
    let proc = b.spawn_raw()?;
    let mut sc = attach(&b, proc);
    api.wait_for("/event/next", 1, WAIT).await?;
    assert_eq!(proxy.count("BatchGetSecretValue"), 1);

    // An INVOKE before the refresh point refreshes nothing.
    api.push_invoke("req-1", Duration::from_secs(3));
    api.wait_for("/event/next", 2, WAIT).await?;
    assert_eq!(proxy.count("BatchGetSecretValue"), 1);

    // Past the refresh point (a quarter of the 2 s TTL), the next INVOKE refreshes
    // the rotated value before the extension polls again.
    moto.put_secret_value("db", "v2").await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    api.push_invoke("req-2", Duration::from_secs(3));
    api.wait_for("/event/next", 3, WAIT).await?;
    assert_eq!(
        proxy.count("BatchGetSecretValue"),
        2,
        "refreshed in one batch before next"
    );
    let fresh = sc.get("/secretsmanager/get?secretId=db").await?;
    assert_eq!(fresh.json()["SecretString"], "v2");
    assert_eq!(
        fresh.header("x-secrets-sidecar-cache"),
        Some("hit"),
        "no request waited on upstream"
    );

    // SHUTDOWN: exit 0, well inside the 2 s budget.
    let sent = Instant::now();
    api.push_shutdown("spindown");
    let status = sc.proc.wait_exit(Duration::from_secs(3)).await?;
    let took = sent.elapsed();
    assert!(status.success(), "{status}");
    eprintln!("SHUTDOWN to exit: {took:?}");
    assert!(took < Duration::from_millis(1000), "exit took {took:?}");
    sc.proc
        .logs
        .wait_for(Duration::from_secs(1), |l| {
            l.contains("stopped") && l.contains("summary")
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_an_upstream_call_still_exits_fast() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let api = MockExtensionsApi::start().await?;
    moto.create_secret("slow", "v").await?;
    let b = lambda_sidecar(&api, &proxy.endpoint());
    let proc = b.spawn_raw()?;
    let sc = std::sync::Arc::new(attach(&b, proc));
    api.wait_for("/event/next", 1, WAIT).await?;

    proxy.inject(Some("GetSecretValue"), Fault::Hang, None);
    let pending = {
        let sc = sc.clone();
        tokio::spawn(async move { sc.get("/secretsmanager/get?secretId=slow").await })
    };
    proxy.wait_for_count("GetSecretValue", 1, WAIT).await?;
    let sent = Instant::now();
    api.push_shutdown("spindown");
    // The waiting request is answered (503, not left hanging), then the process exits.
    let answered = tokio::time::timeout(Duration::from_secs(2), pending).await???;
    assert_eq!(answered.status, 503, "{}", answered.text());
    let mut sc = std::sync::Arc::try_unwrap(sc).map_err(|_| anyhow::anyhow!("sidecar still shared"))?;
    let status = sc.proc.wait_exit(Duration::from_secs(3)).await?;
    let took = sent.elapsed();
    eprintln!("SHUTDOWN with a call in flight to exit: {took:?}");
    assert!(status.success());
    assert!(took < Duration::from_millis(1000), "exit took {took:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_reported_through_init_error() -> R {
    let api = MockExtensionsApi::start().await?;
    let b = lambda_sidecar(&api, "http://127.0.0.1:9").var("SSM_PARAMETER_STORE_TTL", "-5");
    let mut proc = b.spawn_raw()?;
    let errors = api.wait_for("/extension/init/error", 1, WAIT).await?;
    assert_eq!(
        errors[0].headers["lambda-extension-function-error-type"],
        "Extension.ConfigInvalid"
    );
    assert_eq!(errors[0].headers["lambda-extension-identifier"], EXTENSION_ID);
    let message = errors[0].body["errorMessage"].as_str().unwrap_or("");
    assert!(
        message.contains("SSM_PARAMETER_STORE_TTL") && message.contains("0 to 86400"),
        "{message}"
    );
    let status = proc.wait_exit(Duration::from_secs(5)).await?;
    assert!(!status.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_required_secret_fails_the_init() -> R {
    let moto = Moto::start().await?;
    let api = MockExtensionsApi::start().await?;
    moto.create_secret("here", "v").await?;
    let b = lambda_sidecar(&api, &moto.endpoint())
        .var("SECRETS_SIDECAR_PREFETCH", "secretsmanager:here")
        .var("SECRETS_SIDECAR_REQUIRED", "secretsmanager:absent");
    let mut proc = b.spawn_raw()?;
    let errors = api.wait_for("/extension/init/error", 1, WAIT).await?;
    assert_eq!(
        errors[0].headers["lambda-extension-function-error-type"],
        "Extension.RequiredSecretUnavailable"
    );
    let message = errors[0].body["errorMessage"].as_str().unwrap_or("");
    assert!(
        message.contains("secretsmanager:absent") && message.contains("not_found"),
        "{message}"
    );
    assert!(api.requests("/event/next").is_empty(), "a failed init never polls");
    assert!(!proc.wait_exit(Duration::from_secs(5)).await?.success());
    Ok(())
}
