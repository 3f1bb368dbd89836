//! No loop: a function that points its SDK at the sidecar
//! (`AWS_ENDPOINT_URL_SECRETS_MANAGER=http://localhost:2773`) passes that variable to
//! the sidecar too; the sidecar's own clients must never call its own listener.

use std::time::Duration;

use harness::moto::Moto;
use harness::proxy::FaultProxy;
use harness::sidecar::SidecarBuilder;

const BIN: &str = env!("CARGO_BIN_EXE_secrets-sidecar");

type R = anyhow::Result<()>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_naming_the_sidecar_is_ignored_for_its_own_calls() -> R {
    let moto = Moto::start().await?;
    moto.create_secret("app/db", "pw").await?;
    moto.put_parameter("/app/key", "k", harness::moto::ParamType::String)
        .await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let builder = SidecarBuilder::new(BIN);
    let own = format!("http://localhost:{}", builder.port);
    let sc = builder
        // The function's own variables, as the extension inherits them...
        .var("AWS_ENDPOINT_URL_SECRETS_MANAGER", &own)
        .var("AWS_ENDPOINT_URL_SSM", &format!("http://127.0.0.1:{}/", sc_port(&own)))
        // ...and the sidecar's own upstream.
        .var("SECRETS_SIDECAR_UPSTREAM_ENDPOINT", &proxy.endpoint())
        .spawn()
        .await?;
    let secret = sc.get("/secretsmanager/get?secretId=app/db").await?;
    assert_eq!(secret.status, 200, "{}", secret.text());
    let param = sc.get("/systemsmanager/parameters/get?name=/app/key").await?;
    assert_eq!(param.status, 200, "{}", param.text());
    assert_eq!(
        proxy.total(),
        2,
        "both went to the upstream endpoint: {:?}",
        proxy.counts()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_general_endpoint_still_applies_under_a_looping_specific_one() -> R {
    let moto = Moto::start().await?;
    moto.create_secret("app/db", "pw").await?;
    let builder = SidecarBuilder::new(BIN).endpoint(&moto.endpoint());
    let own = format!("http://127.0.0.1:{}", builder.port);
    let mut sc = builder.var("AWS_ENDPOINT_URL_SECRETS_MANAGER", &own).spawn().await?;
    let r = tokio::time::timeout(Duration::from_secs(20), sc.get("/secretsmanager/get?secretId=app/db")).await??;
    assert_eq!(r.status, 200, "{}", r.text());
    sc.proc.signal("TERM").await?;
    sc.proc.wait_exit(Duration::from_secs(5)).await?;
    let logs = sc.proc.logs.lines().join("\n");
    assert!(
        logs.contains("AWS_ENDPOINT_URL_SECRETS_MANAGER") && logs.contains("names this sidecar"),
        "the ignored variable is named in the log: {logs}"
    );
    Ok(())
}

fn sc_port(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
}
