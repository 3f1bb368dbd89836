//! Prefetch by tag against moto: `secretsmanager-tag:KEY=VALUE` lists with ListSecrets
//! (whose filters match prefixes, and keys and values independently), matches the
//! returned tags exactly, and fetches the matches in one batch.

use harness::moto::{Moto, Service};
use harness::proxy::FaultProxy;
use harness::sidecar::SidecarBuilder;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_secrets-sidecar");

type R = anyhow::Result<()>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_prefetches_exactly_the_secrets_carrying_it() -> R {
    let moto = Moto::start().await?;
    for (name, tags) in [
        ("weather/a", json!([{"Key": "team", "Value": "weather"}])),
        (
            "weather/b",
            json!([{"Key": "team", "Value": "weather"}, {"Key": "env", "Value": "prod"}]),
        ),
        // Look-alikes a prefix or independent key/value filter would let in.
        (
            "weather/prefix-value",
            json!([{"Key": "team", "Value": "weather-archive"}]),
        ),
        ("weather/prefix-key", json!([{"Key": "teams", "Value": "weather"}])),
        (
            "weather/crossed",
            json!([{"Key": "team", "Value": "infra"}, {"Key": "owner", "Value": "weather"}]),
        ),
    ] {
        moto.call(
            Service::SecretsManager,
            "CreateSecret",
            json!({"Name": name, "SecretString": format!("value-of-{name}"), "Tags": tags}),
        )
        .await?;
    }
    let proxy = FaultProxy::start(moto.port).await?;
    let sc = SidecarBuilder::new(BIN)
        .endpoint(&proxy.endpoint())
        .var("SECRETS_SIDECAR_PREFETCH", "secretsmanager-tag:team=weather")
        .var("SECRETS_SIDECAR_REQUIRED", "secretsmanager-tag:team=weather")
        .spawn()
        .await?;
    let counts = proxy.counts();
    eprintln!("start-up calls: {counts:?}");
    assert_eq!(proxy.count("ListSecrets"), 1);
    assert_eq!(proxy.count("BatchGetSecretValue"), 1, "{counts:?}");
    assert_eq!(proxy.total(), 2, "{counts:?}");
    for name in ["weather/a", "weather/b"] {
        let r = sc.get(&format!("/secretsmanager/get?secretId={name}")).await?;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-secrets-sidecar-cache"),
            Some("hit"),
            "{name} was prefetched"
        );
    }
    assert_eq!(proxy.total(), 2, "both served from the prefetch");
    assert_eq!(
        sc.metric("secrets_sidecar_cache_entries").await?,
        2,
        "no look-alike was fetched"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_tag_nothing_carries_stops_the_start() -> R {
    let moto = Moto::start().await?;
    let mut proc = SidecarBuilder::new(BIN)
        .endpoint(&moto.endpoint())
        .var("SECRETS_SIDECAR_REQUIRED", "secretsmanager-tag:team=nobody")
        .spawn_raw()?;
    let status = proc.wait_exit(std::time::Duration::from_secs(20)).await?;
    assert!(!status.success(), "the start failed");
    let logs = proc.logs.lines().join("\n");
    assert!(logs.contains("secretsmanager-tag:team=nobody"), "{logs}");
    Ok(())
}
