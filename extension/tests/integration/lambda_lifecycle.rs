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

/// Waits until the process exits by itself, at most until `deadline` (when Lambda
/// would SIGKILL it), and returns its status.
async fn exit_before(sc: &mut Sidecar, deadline: Instant) -> anyhow::Result<std::process::ExitStatus> {
    let left = deadline.saturating_duration_since(Instant::now());
    sc.proc
        .wait_exit(left)
        .await
        .map_err(|e| anyhow::anyhow!("still running at the SHUTDOWN deadline, where Lambda kills it: {e}"))
}

/// The value's age in whole seconds (`Age` header) and its cache outcome.
async fn age_and_outcome(sc: &Sidecar, path: &str) -> anyhow::Result<(u64, String, serde_json::Value)> {
    let r = sc.get(path).await?;
    anyhow::ensure!(r.status == 200, "{}", r.text());
    let age = r
        .header("age")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Age header: {:?}", r.headers))?;
    let outcome = r.header("x-secrets-sidecar-cache").unwrap_or("").to_owned();
    Ok((age, outcome, r.json()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_runs_refresh_ahead_before_the_next_poll_and_shutdown_exits_fast() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let api = MockExtensionsApi::start().await?;
    moto.create_secret("db", "v1").await?;
    // Refresh point: a quarter of the 8 s TTL after the fetch, plus up to 15% of the
    // TTL of jitter: between 2 s and 3.2 s, so surely passed once `Age` says 4 (the
    // value is still fresh then: it expires at 8).
    let b = lambda_sidecar(&api, &proxy.endpoint())
        .var("SECRETS_SIDECAR_PREFETCH", "secretsmanager:db")
        .var("SECRETS_MANAGER_TTL", "8")
        .var("SECRETS_SIDECAR_REFRESH_AHEAD", "0.25");
    let (refresh_earliest, refresh_latest) = (2, 4);
    let path = "/secretsmanager/get?secretId=db";
    let proc = b.spawn_raw()?;
    let mut sc = attach(&b, proc);
    api.wait_for("/event/next", 1, WAIT).await?;
    assert_eq!(proxy.count("BatchGetSecretValue"), 1);

    // An INVOKE before the refresh point refreshes nothing. (The value's age, read
    // after the INVOKE was handled, says whether it came that early.)
    api.push_invoke("req-1", Duration::from_secs(3));
    api.wait_for("/event/next", 2, WAIT).await?;
    let (age, _, _) = age_and_outcome(&sc, path).await?;
    if age < refresh_earliest {
        assert_eq!(proxy.count("BatchGetSecretValue"), 1, "refreshed at age {age} s");
    } else {
        eprintln!("the first INVOKE came {age} s after the fetch; nothing to check");
    }

    // Past the refresh point (the `Age` header says so), the next INVOKE refreshes the
    // rotated value before the extension polls again. The refresh is held 500 ms at the
    // proxy: one left running after the poll would still be in flight at the check.
    moto.put_secret_value("db", "v2").await?;
    harness::net::poll(WAIT, "the value past its refresh point", || async {
        let (age, _, _) = age_and_outcome(&sc, path).await.ok()?;
        (age >= refresh_latest).then_some(())
    })
    .await?;
    let before = proxy.count("BatchGetSecretValue");
    proxy.inject(
        Some("BatchGetSecretValue"),
        Fault::Latency(Duration::from_millis(500)),
        Some(1),
    );
    api.push_invoke("req-2", Duration::from_secs(3));
    api.wait_for("/event/next", 3, WAIT).await?;
    assert_eq!(
        proxy.count("BatchGetSecretValue"),
        before + 1,
        "refreshed in one batch before next"
    );
    let (_, outcome, fresh) = age_and_outcome(&sc, path).await?;
    assert_eq!(fresh["SecretString"], "v2");
    assert_eq!(outcome, "hit", "no request waited on upstream");

    // SHUTDOWN: exit 0, by itself, before the event's deadline (2 s ahead).
    api.push_shutdown("spindown");
    let deadline = Instant::now() + Duration::from_secs(2);
    let status = exit_before(&mut sc, deadline).await?;
    assert!(status.success(), "{status}");
    sc.proc
        .logs
        .wait_for(WAIT, |l| l.contains("stopped") && l.contains("summary"))
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
    api.push_shutdown("spindown");
    let deadline = Instant::now() + Duration::from_secs(2);
    // The waiting request is answered (503, not left hanging on the call that never
    // returns), and the process exits 0 by itself before the SHUTDOWN deadline.
    let answered = tokio::time::timeout(WAIT, pending).await???;
    assert_eq!(answered.status, 503, "{}", answered.text());
    let mut sc = std::sync::Arc::try_unwrap(sc).map_err(|_| anyhow::anyhow!("sidecar still shared"))?;
    let status = exit_before(&mut sc, deadline).await?;
    assert!(status.success(), "{status}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_past_the_byte_budget_fails_the_init_naming_both_sizes() -> R {
    let moto = Moto::start().await?;
    let api = MockExtensionsApi::start().await?;
    let big = "b".repeat(60_000);
    for name in ["big-1", "big-2"] {
        moto.create_secret(name, &big).await?;
    }
    // 64 KiB holds one of them, not both; prefetched entries are never evicted.
    let b = lambda_sidecar(&api, &moto.endpoint())
        .var("SECRETS_SIDECAR_PREFETCH", "secretsmanager:big-1 secretsmanager:big-2")
        .var("SECRETS_SIDECAR_CACHE_BYTES", "64KiB");
    let mut proc = b.spawn_raw()?;
    let errors = api.wait_for("/extension/init/error", 1, WAIT).await?;
    assert_eq!(
        errors[0].headers["lambda-extension-function-error-type"],
        "Extension.CacheBudgetExceeded"
    );
    let message = errors[0].body["errorMessage"].as_str().unwrap_or("");
    let held: u64 = message
        .split_once("it holds ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(held > 120_000, "the plan's size: {message}");
    assert!(
        message.contains("65536 bytes") && message.contains("SECRETS_SIDECAR_CACHE_BYTES"),
        "{message}"
    );
    assert!(!message.contains(&big[..100]), "no value in the message");
    assert!(api.requests("/event/next").is_empty(), "a failed init never polls");
    assert!(!proc.wait_exit(Duration::from_secs(5)).await?.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_register_shutdown_only_and_never_poll_after_it() -> R {
    let moto = Moto::start().await?;
    let api = MockExtensionsApi::start().await?;
    moto.create_secret("db", "pw").await?;
    let b = lambda_sidecar(&api, &moto.endpoint())
        .var("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances")
        .var("SECRETS_SIDECAR_PREFETCH", "secretsmanager:db");
    let proc = b.spawn_raw()?;
    let mut sc = attach(&b, proc);
    let reg = api.wait_for("/extension/register", 1, WAIT).await?;
    assert_eq!(reg[0].body["events"], serde_json::json!(["SHUTDOWN"]));
    api.wait_for("/event/next", 1, WAIT).await?;
    assert_eq!(sc.get("/secretsmanager/get?secretId=db").await?.status, 200);

    let shutdown_at = Instant::now();
    api.push_shutdown("spindown");
    let status = exit_before(&mut sc, shutdown_at + Duration::from_secs(2)).await?;
    assert!(status.success(), "{status}");
    assert_eq!(api.requests("/event/next").len(), 1, "no event/next after SHUTDOWN");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapstart_serves_no_value_during_init_and_restores_on_the_first_request() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let api = MockExtensionsApi::start().await?;
    moto.create_secret("db", "pw").await?;
    let b = lambda_sidecar(&api, &proxy.endpoint());
    let token = b.token.clone();
    // SnapStart: no session token (AWS's emulator sets it empty); the container
    // credentials token is the one callers present.
    let b = b
        .var("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
        .var("AWS_SESSION_TOKEN", "")
        .var("AWS_CONTAINER_AUTHORIZATION_TOKEN", &token)
        .var("SECRETS_SIDECAR_PREFETCH", "secretsmanager:db")
        .var("SECRETS_SIDECAR_REQUIRED", "secretsmanager:db");
    let proc = b.spawn_raw()?;
    let sc = attach(&b, proc);
    api.wait_for("/extension/register", 1, WAIT).await?;
    // INIT: REQUIRED is checked without a value; a request for one is refused.
    proxy.wait_for_count("DescribeSecret", 1, WAIT).await?;
    let during_init = harness::net::poll(WAIT, "an answer during INIT", || async {
        sc.get("/secretsmanager/get?secretId=db").await.ok()
    })
    .await?;
    assert_eq!(during_init.status, 503, "{}", during_init.text());
    assert_eq!(during_init.json()["error"], "SnapStartInit");
    api.wait_for("/event/next", 1, WAIT).await?;
    assert_eq!(
        proxy.count("BatchGetSecretValue") + proxy.count("GetSecretValue"),
        0,
        "no value fetched during INIT"
    );

    // After INIT's event/next (where the snapshot is taken): the first request is
    // the restore's, joins its one batch and is served.
    let restored = sc.get("/secretsmanager/get?secretId=db").await?;
    assert_eq!(restored.status, 200, "{}", restored.text());
    assert_eq!(restored.json()["SecretString"], "pw");
    assert_eq!(proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(
        proxy.count("GetSecretValue"),
        0,
        "the request joined the restore's batch"
    );
    Ok(())
}
