//! Tenant isolation end to end: the real sidecar in the emulator's tenant mode, with
//! moto. Each environment binds to the tenant Lambda names (the Telemetry API's
//! `platform.start`), prefetches and serves that tenant's secret, and refuses the
//! other tenant's in every spelling, with and without an allowlist naming the
//! template.

use std::time::Duration;

use harness::emulator::{Outcome, Trace};
use harness::world::{Function, World, WorldConfig};
use serde_json::{json, Value};

type R = anyhow::Result<()>;

const TENANTS: [&str; 2] = ["acme", "globex"];

fn secret_name(tenant: &str) -> String {
    format!("tenants/{tenant}/db")
}

fn password(tenant: &str) -> String {
    format!("{tenant}-db-password")
}

/// The answers of one `fetch_many` invoke.
fn many(outcome: &Outcome) -> anyhow::Result<Vec<Value>> {
    let Outcome::Response(body) = outcome else {
        anyhow::bail!("the invoke failed: {outcome:?}");
    };
    let v: Value = serde_json::from_slice(body)?;
    Ok(v["many"].as_array().cloned().unwrap_or_default())
}

/// Every spelling of `tenant`'s secret a function could send to the extension API.
fn spellings(tenant: &str, arn: &str) -> Vec<String> {
    let name = secret_name(tenant);
    let partial = arn.rsplit_once('-').map_or(arn, |(base, _)| base).to_owned();
    vec![
        format!("/secretsmanager/get?secretId={name}"),
        format!("/secretsmanager/get?secretId={arn}"),
        format!("/secretsmanager/get?secretId={partial}"),
        format!("/secretsmanager/get?secretId={}", name.replace('/', "%2F")),
        format!("/systemsmanager/parameters/get?name=/aws/reference/secretsmanager/{name}&withDecryption=true"),
    ]
}

async fn world(allow: Option<&str>) -> anyhow::Result<(World, Vec<String>)> {
    let mut cfg = WorldConfig {
        function: Function::Probe(Vec::new()),
        tenant_isolation: true,
        timeout: Duration::from_secs(10),
        ..WorldConfig::default()
    }
    .env("SECRETS_SIDECAR_PREFETCH", "secretsmanager:tenants/{tenant}/db");
    if let Some(allow) = allow {
        cfg = cfg.env("SECRETS_SIDECAR_ALLOW", allow);
    }
    let world = World::start(cfg).await?;
    let mut arns = Vec::new();
    for t in TENANTS {
        arns.push(world.moto.create_secret(&secret_name(t), &password(t)).await?);
    }
    Ok((world, arns))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_reads_its_own_secret_and_none_of_the_others() -> R {
    for allow in [None, Some("secretsmanager:tenants/{tenant}/* secretsmanager:shared/*")] {
        let (world, arns) = world(allow).await?;
        for (i, tenant) in TENANTS.iter().enumerate() {
            let other = 1 - i;
            let own = spellings(tenant, &arns[i]);
            let theirs = spellings(TENANTS[other], &arns[other]);
            let paths: Vec<&String> = own.iter().take(3).chain(theirs.iter()).collect();
            // The SDK route too: signed GetSecretValue calls for the own secret and
            // the other's by name, full and partial ARN.
            let partial = |arn: &str| arn.rsplit_once('-').map_or(arn, |(b, _)| b).to_owned();
            let sdk: Vec<Value> = [
                secret_name(tenant),
                secret_name(TENANTS[other]),
                arns[other].clone(),
                partial(&arns[other]),
            ]
            .iter()
            .map(|id| json!({ "op": "GetSecretValue", "id": id }))
            .collect();
            let payload = json!({ "fetch_many": paths, "sdk_many": sdk, "needle": password(TENANTS[other]) });
            let invoked = world.emulator.invoke_for_tenant(tenant, payload.to_string()).await;
            let Outcome::Response(body) = &invoked.outcome else {
                anyhow::bail!("the invoke failed: {:?}", invoked.outcome);
            };
            let sdk_answers: Value = serde_json::from_slice(body)?;
            let sdk_answers = sdk_answers["sdk_many"].as_array().cloned().unwrap_or_default();
            assert_eq!(sdk_answers.len(), 4, "{sdk_answers:?}");
            assert_eq!(
                sdk_answers[0]["code"], "ok",
                "{allow:?} {tenant}: its own through the SDK"
            );
            for a in &sdk_answers[1..] {
                assert_eq!(a["code"], "AccessDeniedException", "{allow:?} {tenant}: {a}");
                assert_eq!(a["has_needle"], false, "{a}");
            }
            assert!(
                invoked.init.is_some(),
                "{tenant}: a tenant's first invoke is a new environment"
            );
            assert_eq!(world.emulator.tenant().as_deref(), Some(*tenant));
            let answers = many(&invoked.outcome)?;
            if answers.first().is_some_and(|a| a["status"] != 200) {
                for l in world.emulator.logs().lines() {
                    eprintln!("LOG {l}");
                }
            }
            assert_eq!(answers.len(), paths.len(), "{answers:?}");
            for (path, a) in paths.iter().zip(&answers).take(3) {
                assert_eq!(a["status"], 200, "{allow:?} {tenant} {path}: {a}");
                assert_eq!(a["head"], password(tenant), "{tenant} {path}");
            }
            for (path, a) in paths.iter().zip(&answers).skip(3) {
                let status = a["status"].as_u64().unwrap_or(0);
                assert!(status == 403 || status == 404, "{allow:?} {tenant} read {path}: {a}");
                assert_ne!(a["head"], password(TENANTS[other]), "{tenant} {path}");
                assert!(
                    !a["head"].as_str().unwrap_or("").contains(TENANTS[other]),
                    "{tenant} {path}: {a}"
                );
            }
            world
                .emulator
                .logs()
                .wait_for(Duration::from_secs(5), |l| {
                    l.contains("bound to the tenant Lambda reported") && l.contains(tenant)
                })
                .await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_without_tenant_isolation_fail_the_invoke_and_say_why() -> R {
    let world = World::start(
        WorldConfig {
            function: Function::Probe(Vec::new()),
            ..WorldConfig::default()
        }
        .env("SECRETS_SIDECAR_PREFETCH", "secretsmanager:tenants/{tenant}/db"),
    )
    .await?;
    world.emulator.init().await.map_err(anyhow::Error::msg)?;
    world.emulator.invoke(json!({ "fetch_many": [] }).to_string()).await;
    // The first invoke shows there is no tenant: the sidecar reports it as Lambda
    // takes an INIT error, failing the environment.
    world
        .emulator
        .wait_for_trace(Duration::from_secs(10), |t| {
            matches!(t, Trace::ErrorReported { path, error_type, .. }
                if path.ends_with("exit/error") && error_type == "Extension.TenantMissing")
        })
        .await?;
    world
        .emulator
        .logs()
        .wait_for(Duration::from_secs(10), |l| l.contains("not in tenant isolation mode"))
        .await?;
    Ok(())
}

/// The account of the tenants' roles: moto keeps one world per account, so a
/// secret created there is found only by a caller acting in it.
const ROLE_ACCOUNT: &str = "210987654321";

fn tenant_role(tenant: &str) -> String {
    format!("arn:aws:iam::{ROLE_ACCOUNT}:role/tenant-{tenant}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenants_secrets_are_read_under_its_own_role_tagged_with_the_tenant() -> R {
    let world = World::start(
        WorldConfig {
            function: Function::Probe(Vec::new()),
            tenant_isolation: true,
            timeout: Duration::from_secs(10),
            ..WorldConfig::default()
        }
        .env("SECRETS_SIDECAR_PREFETCH", "secretsmanager:tenants/{tenant}/db")
        .env(
            "SECRETS_SIDECAR_TENANT_ROLE",
            &format!("arn:aws:iam::{ROLE_ACCOUNT}:role/tenant-{{tenant}}"),
        ),
    )
    .await?;
    // Each tenant's secret lives only where its role acts; the function's own
    // account holds a decoy under the same name, which a read with the function's
    // role would find.
    for t in TENANTS {
        let key = world.moto.assume_role(&tenant_role(t)).await?;
        let caller = harness::moto::Caller {
            access_key: &key,
            region: "us-east-1",
        };
        world
            .moto
            .create_secret_as(caller, &secret_name(t), &password(t))
            .await?;
        world
            .moto
            .create_secret(&secret_name(t), "decoy-of-the-function-role")
            .await?;
    }
    world.moto.create_secret("shared/config", "shared-value").await?;

    for (i, tenant) in TENANTS.iter().enumerate() {
        let other = TENANTS[1 - i];
        let paths = [
            format!("/secretsmanager/get?secretId={}", secret_name(tenant)),
            "/secretsmanager/get?secretId=shared/config".to_owned(),
            format!("/secretsmanager/get?secretId={}", secret_name(other)),
            format!(
                "/secretsmanager/get?secretId={}&roleArn={}",
                secret_name(tenant),
                "arn:aws:iam::123456789012:role/function"
            ),
        ];
        let invoked = world
            .emulator
            .invoke_for_tenant(tenant, json!({ "fetch_many": paths }).to_string())
            .await;
        let answers = many(&invoked.outcome)?;
        assert_eq!(answers.len(), paths.len(), "{answers:?}");
        assert_eq!(answers[0]["status"], 200, "{tenant}: {}", answers[0]);
        assert_eq!(answers[0]["head"], password(tenant), "{tenant}: read under its role");
        assert_eq!(
            answers[1]["status"], 200,
            "{tenant}: an unclaimed id, the function's role"
        );
        assert_eq!(answers[1]["head"], "shared-value");
        for a in &answers[2..] {
            assert_eq!(a["status"], 403, "{tenant}: {a}");
            assert!(!a["head"].as_str().unwrap_or("").contains("password"), "{a}");
        }
    }

    // Who called: every Secrets Manager call was signed either by the function's
    // own key or by a key an AssumeRole of exactly one tenant's role handed out,
    // tagged with that tenant; each tenant's key was used.
    let proxy = &world.proxy;
    let mut calls: Vec<String> = proxy.callers("BatchGetSecretValue");
    calls.extend(proxy.callers("GetSecretValue"));
    let mut used = std::collections::BTreeMap::<String, usize>::new();
    for key in &calls {
        let Some(form) = proxy.assumed_by(key) else {
            continue;
        };
        let role = form.get("RoleArn").cloned().unwrap_or_default();
        let tenant = TENANTS
            .iter()
            .find(|t| tenant_role(t) == role)
            .unwrap_or_else(|| panic!("a call under {role}, no tenant's role"));
        assert_eq!(form.get("Tags.member.1.Key").map(String::as_str), Some("tenant"));
        assert_eq!(form.get("Tags.member.1.Value").map(String::as_str), Some(*tenant));
        *used.entry((*tenant).to_owned()).or_default() += 1;
    }
    assert_eq!(
        used.keys().map(String::as_str).collect::<Vec<_>>(),
        TENANTS,
        "each tenant's role read its secret: {used:?} of {calls:?}"
    );
    assert_eq!(proxy.count("AssumeRole"), 2, "one AssumeRole per environment");
    Ok(())
}
