//! Other regions, other accounts and assumed roles, with the real binary in
//! standalone mode (home region us-east-1) against moto through the fault proxy,
//! which counts every call by operation and by the region it was signed for.
//!
//! moto keeps one world per account and region: the region comes from the SigV4
//! credential scope, the account from the access key, and keys handed out by STS
//! AssumeRole belong to the role's account. So a secret "in account B" is created
//! with a key the harness assumed for a role of B, and the sidecar reaches it only
//! through `roleArn`.

use harness::moto::{Caller, Moto, Service};
use harness::proxy::FaultProxy;
use harness::sidecar::{Sidecar, SidecarBuilder};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_secrets-sidecar");
const ACCOUNT_B: &str = "210987654321";
/// Any id, and any role of account B: `roleArn` is refused unless the allowlist
/// names the role.
const ALLOW_B_ROLES: &str = "*,role:arn:aws:iam::210987654321:role/*";

type R = anyhow::Result<()>;

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_B}:role/{name}")
}

async fn sidecar_on(endpoint: &str, vars: &[(&str, &str)]) -> anyhow::Result<Sidecar> {
    let mut b = SidecarBuilder::new(BIN).endpoint(endpoint);
    for (k, v) in vars {
        b = b.var(k, v);
    }
    b.spawn().await
}

fn secret_string(r: &harness::net::Response) -> String {
    r.json()["SecretString"].as_str().unwrap_or_default().to_owned()
}

fn parameter_value(r: &harness::net::Response) -> String {
    r.json()["Parameter"]["Value"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_another_region_is_fetched_there_by_its_arn_and_cached_under_it() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let home_arn = moto.create_secret("app/db", "pw-home").await?;
    let eu_arn = moto
        .create_secret_as(Caller::home_in("eu-west-1"), "app/db", "pw-eu")
        .await?;
    assert!(eu_arn.contains(":eu-west-1:"), "{eu_arn}");
    let sc = sidecar_on(&proxy.endpoint(), &[]).await?;

    let eu = sc
        .get(&format!("/secretsmanager/get?secretId={}", enc(&eu_arn)))
        .await?;
    assert_eq!((eu.status, secret_string(&eu)), (200, "pw-eu".into()), "{}", eu.text());
    assert_eq!(eu.json()["ARN"], eu_arn.as_str());
    assert_eq!(proxy.count_in("GetSecretValue", "eu-west-1"), 1);
    assert_eq!(proxy.count_in("GetSecretValue", "us-east-1"), 0);

    let again = sc
        .get(&format!("/secretsmanager/get?secretId={}", enc(&eu_arn)))
        .await?;
    assert_eq!(again.header("x-secrets-sidecar-cache"), Some("hit"));
    assert_eq!(proxy.count("GetSecretValue"), 1, "cached under its ARN: no second call");

    // The home name keeps meaning the home secret, fetched at home.
    let home = sc.get("/secretsmanager/get?secretId=app/db").await?;
    assert_eq!((home.status, secret_string(&home)), (200, "pw-home".into()));
    assert_eq!(home.json()["ARN"], home_arn.as_str());
    assert_eq!(proxy.count_in("GetSecretValue", "us-east-1"), 1);
    let eu = sc
        .get(&format!("/secretsmanager/get?secretId={}", enc(&eu_arn)))
        .await?;
    assert_eq!(
        (secret_string(&eu), eu.header("x-secrets-sidecar-cache")),
        ("pw-eu".into(), Some("hit"))
    );
    assert_eq!(proxy.count("GetSecretValue"), 2);

    // An ARN of a region where it does not exist is that region's 404.
    let ap = eu_arn.replace(":eu-west-1:", ":ap-south-1:");
    let missing = sc.get(&format!("/secretsmanager/get?secretId={}", enc(&ap))).await?;
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(proxy.count_in("GetSecretValue", "ap-south-1"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_in_another_region_never_answers_for_the_home_name() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    moto.put_parameter_as(Caller::HOME, "/app/key", "k-home").await?;
    let eu_arn = moto
        .put_parameter_as(Caller::home_in("eu-west-1"), "/app/key", "k-eu")
        .await?;
    let sc = sidecar_on(&proxy.endpoint(), &[]).await?;

    let eu = sc
        .get(&format!("/systemsmanager/parameters/get?name={}", enc(&eu_arn)))
        .await?;
    assert_eq!((eu.status, parameter_value(&eu)), (200, "k-eu".into()), "{}", eu.text());
    assert_eq!(proxy.count_in("GetParameter", "eu-west-1"), 1);
    let home = sc.get("/systemsmanager/parameters/get?name=/app/key").await?;
    assert_eq!(
        (parameter_value(&home), home.header("x-secrets-sidecar-cache")),
        ("k-home".into(), Some("miss")),
        "the eu parameter's name is no alias of the home one"
    );
    let eu = sc
        .get(&format!("/systemsmanager/parameters/get?name={}", enc(&eu_arn)))
        .await?;
    assert_eq!(
        (parameter_value(&eu), eu.header("x-secrets-sidecar-cache")),
        ("k-eu".into(), Some("hit"))
    );
    assert_eq!(
        (
            proxy.count_in("GetParameter", "eu-west-1"),
            proxy.count_in("GetParameter", "us-east-1")
        ),
        (1, 1)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_spanning_regions_makes_one_batch_call_per_region() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    moto.create_secret("app/a", "a-home").await?;
    let eu = Caller::home_in("eu-west-1");
    let eu_b = moto.create_secret_as(eu, "app/b", "b-eu").await?;
    let eu_c = moto.create_secret_as(eu, "app/c", "c-eu").await?;
    let prefetch = format!("secretsmanager:app/a,secretsmanager:{eu_b},secretsmanager:{eu_c}");
    let sc = sidecar_on(&proxy.endpoint(), &[("SECRETS_SIDECAR_PREFETCH", &prefetch)]).await?;
    assert_eq!(
        (
            proxy.count_in("BatchGetSecretValue", "us-east-1"),
            proxy.count_in("BatchGetSecretValue", "eu-west-1")
        ),
        (1, 1)
    );
    let before = proxy.total();
    for (id, value) in [("app/a", "a-home"), (eu_b.as_str(), "b-eu"), (eu_c.as_str(), "c-eu")] {
        let r = sc.get(&format!("/secretsmanager/get?secretId={}", enc(id))).await?;
        assert_eq!(
            (secret_string(&r), r.header("x-secrets-sidecar-cache")),
            (value.into(), Some("hit")),
            "{id}"
        );
    }
    assert_eq!(proxy.total(), before, "every prefetched value served without a call");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_is_assumed_once_and_what_it_reads_is_cached_apart() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let b_key = moto.assume_role(&role("harness")).await?;
    let in_b = |region| Caller {
        access_key: &b_key,
        region,
    };
    moto.create_secret("app/db", "pw-a").await?;
    let b_arn = moto.create_secret_as(in_b("us-east-1"), "app/db", "pw-b").await?;
    assert!(b_arn.contains(ACCOUNT_B), "{b_arn}");
    moto.create_secret_as(in_b("us-east-1"), "app/other", "other-b").await?;
    let b_eu_arn = moto.create_secret_as(in_b("eu-west-1"), "app/db", "pw-b-eu").await?;
    let reader = role("secret-reader");
    let sc = sidecar_on(
        &proxy.endpoint(),
        &[
            ("SECRETS_SIDECAR_ALLOW", ALLOW_B_ROLES),
            ("SECRETS_SIDECAR_ROLE_EXTERNAL_ID", "ext-4242"),
            ("AWS_LAMBDA_FUNCTION_NAME", "weather-api"),
        ],
    )
    .await?;
    let with_role = |id: &str| format!("/secretsmanager/get?secretId={}&roleArn={}", enc(id), enc(&reader));

    let b = sc.get(&with_role("app/db")).await?;
    assert_eq!((b.status, secret_string(&b)), (200, "pw-b".into()), "{}", b.text());
    assert_eq!(b.json()["ARN"], b_arn.as_str());
    assert_eq!(proxy.count("AssumeRole"), 1);
    let form = proxy.forms("AssumeRole").pop().unwrap_or_default();
    assert_eq!(form.get("RoleArn"), Some(&reader));
    assert_eq!(form.get("ExternalId").map(String::as_str), Some("ext-4242"));
    assert_eq!(form.get("RoleSessionName").map(String::as_str), Some("weather-api"));

    let again = sc.get(&with_role("app/db")).await?;
    assert_eq!(again.header("x-secrets-sidecar-cache"), Some("hit"));
    // The function's own read of the same name: its own account, its own entry.
    let a = sc.get("/secretsmanager/get?secretId=app/db").await?;
    assert_eq!(
        (secret_string(&a), a.header("x-secrets-sidecar-cache")),
        ("pw-a".into(), Some("miss"))
    );
    // More reads with the role, in the home region and in another: the credentials
    // are cached, no second AssumeRole.
    let other = sc.get(&with_role("app/other")).await?;
    assert_eq!(secret_string(&other), "other-b");
    let eu = sc.get(&with_role(&b_eu_arn)).await?;
    assert_eq!(
        (eu.status, secret_string(&eu)),
        (200, "pw-b-eu".into()),
        "{}",
        eu.text()
    );
    assert_eq!(proxy.count_in("GetSecretValue", "eu-west-1"), 1);
    assert_eq!(
        proxy.count("AssumeRole"),
        1,
        "one AssumeRole for every read with the role"
    );
    assert_eq!(proxy.count("GetSecretValue"), 4);

    // Parameters take the role too.
    moto.call_as(
        in_b("us-east-1"),
        Service::Ssm,
        "PutParameter",
        json!({"Name": "/b/key", "Value": "k-b", "Type": "String"}),
    )
    .await?;
    let p = sc
        .get(&format!(
            "/systemsmanager/parameters/get?name=/b/key&roleArn={}",
            enc(&reader)
        ))
        .await?;
    assert_eq!((p.status, parameter_value(&p)), (200, "k-b".into()), "{}", p.text());
    let home = sc.get("/systemsmanager/parameters/get?name=/b/key").await?;
    assert_eq!(home.status, 404, "not in the function's own account");
    assert_eq!(proxy.count("AssumeRole"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_role_arn_is_a_400_without_any_call() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let sc = sidecar_on(&proxy.endpoint(), &[]).await?;
    for (role_arn, needle) in [
        ("reader", "must be arn:PARTITION:iam::ACCOUNT:role/NAME"),
        ("arn:aws:iam::1:role/r", "12-digit"),
        ("arn:aws:iam::210987654321:role/a b", "role name"),
    ] {
        let r = sc
            .get(&format!(
                "/secretsmanager/get?secretId=app/db&roleArn={}",
                enc(role_arn)
            ))
            .await?;
        assert_eq!(r.status, 400, "{role_arn}");
        assert!(r.text().contains(needle), "{role_arn}: {}", r.text());
    }
    assert_eq!(proxy.total(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_and_roles_are_bounded() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let sc = sidecar_on(&proxy.endpoint(), &[]).await?;
    let regions = [
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-central-1",
        "eu-north-1",
        "ap-south-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ca-central-1",
        "sa-east-1",
        "eu-south-1",
        "af-south-1",
    ];
    let arn = |r: &str| format!("arn:aws:secretsmanager:{r}:123456789012:secret:nothing-AbCdEf");
    for r in &regions[..16] {
        let resp = sc
            .get(&format!("/secretsmanager/get?secretId={}", enc(&arn(r))))
            .await?;
        assert_eq!(resp.status, 404, "{r}: {}", resp.text());
    }
    let beyond = sc
        .get(&format!("/secretsmanager/get?secretId={}", enc(&arn(regions[16]))))
        .await?;
    assert_eq!(beyond.status, 400, "{}", beyond.text());
    assert!(beyond.text().contains("at most 16"), "{}", beyond.text());
    assert_eq!(proxy.count_in("GetSecretValue", regions[16]), 0);
    // The home scope is unaffected.
    moto.create_secret("app/db", "pw").await?;
    let home = sc.get("/secretsmanager/get?secretId=app/db").await?;
    assert_eq!((home.status, secret_string(&home)), (200, "pw".into()));

    // Roles: another sidecar, a fresh pool.
    let b_key = moto.assume_role(&role("harness")).await?;
    let in_b = Caller {
        access_key: &b_key,
        region: "us-east-1",
    };
    moto.create_secret_as(in_b, "app/db", "pw-b").await?;
    let sc = sidecar_on(&proxy.endpoint(), &[("SECRETS_SIDECAR_ALLOW", ALLOW_B_ROLES)]).await?;
    proxy.reset_counts();
    for i in 0..8 {
        let r = sc
            .get(&format!(
                "/secretsmanager/get?secretId=app/db&roleArn={}",
                enc(&role(&format!("reader-{i}")))
            ))
            .await?;
        assert_eq!((r.status, secret_string(&r)), (200, "pw-b".into()), "{}", r.text());
    }
    let ninth = sc
        .get(&format!(
            "/secretsmanager/get?secretId=app/db&roleArn={}",
            enc(&role("reader-8"))
        ))
        .await?;
    assert_eq!(ninth.status, 400, "{}", ninth.text());
    assert!(ninth.text().contains("at most 8 roles"), "{}", ninth.text());
    assert_eq!(proxy.count("AssumeRole"), 8, "the ninth role was never assumed");
    Ok(())
}

/// A `roleArn` is refused (403) before any call unless `SECRETS_SIDECAR_ALLOW` names
/// the role with `role:PATTERN`; without an allowlist, no role at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_assumed_only_when_the_allowlist_names_them() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let allowed = role("secret-reader");
    let allow = format!("secretsmanager:app/*,role:{allowed}");
    let sc = sidecar_on(&proxy.endpoint(), &[("SECRETS_SIDECAR_ALLOW", &allow)]).await?;
    let refused = sc
        .get(&format!(
            "/secretsmanager/get?secretId=app/db&roleArn={}",
            enc(&role("other"))
        ))
        .await?;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("NotAllowed"), "{}", refused.text());
    let b_key = moto.assume_role(&role("harness")).await?;
    let in_b = Caller {
        access_key: &b_key,
        region: "us-east-1",
    };
    moto.create_secret_as(in_b, "app/db", "pw-b").await?;
    let ok = sc
        .get(&format!(
            "/secretsmanager/get?secretId=app/db&roleArn={}",
            enc(&allowed)
        ))
        .await?;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(proxy.count("AssumeRole"), 1, "only the allowed role was assumed");
    let open = sidecar_on(&proxy.endpoint(), &[]).await?;
    let refused = open
        .get(&format!(
            "/secretsmanager/get?secretId=app/db&roleArn={}",
            enc(&allowed)
        ))
        .await?;
    assert_eq!(refused.status, 403, "no allowlist: no roles; {}", refused.text());
    assert_eq!(proxy.count("AssumeRole"), 1);
    Ok(())
}
