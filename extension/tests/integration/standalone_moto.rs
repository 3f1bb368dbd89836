//! The real binary in standalone mode against a real moto server: AWS-compatible
//! routes, selectors, decryption, output shapes, refresh, auth, errors, the cold
//! burst, prefetch batching, and serving cached values while moto is down.

use std::time::Duration;

use harness::moto::{Moto, ParamType};
use harness::proxy::{Fault, FaultProxy};
use harness::sidecar::{Sidecar, SidecarBuilder, TOKEN_HEADER};

const BIN: &str = env!("CARGO_BIN_EXE_secrets-sidecar");

type R = anyhow::Result<()>;

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn sidecar_on(endpoint: &str, vars: &[(&str, &str)]) -> anyhow::Result<Sidecar> {
    let mut b = SidecarBuilder::new(BIN).endpoint(endpoint);
    for (k, v) in vars {
        b = b.var(k, v);
    }
    b.spawn().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_by_name_and_by_arn_share_one_fetch() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let arn = moto.create_secret("app/db", r#"{"user":"u","password":"pw1"}"#).await?;
    let sc = sidecar_on(&proxy.endpoint(), &[]).await?;

    let by_name = sc.get("/secretsmanager/get?secretId=app/db").await?;
    assert_eq!(by_name.status, 200, "{}", by_name.text());
    let body = by_name.json();
    assert_eq!(body["Name"], "app/db");
    assert_eq!(body["ARN"], arn.as_str());
    assert_eq!(body["SecretString"], r#"{"user":"u","password":"pw1"}"#);
    assert_eq!(body["VersionStages"][0], "AWSCURRENT");
    assert!(body["VersionId"].is_string() && body["CreatedDate"].is_number());
    assert_eq!(by_name.header("x-secrets-sidecar-cache"), Some("miss"));

    let by_arn = sc.get(&format!("/secretsmanager/get?secretId={}", enc(&arn))).await?;
    assert_eq!(by_arn.status, 200);
    assert_eq!(by_arn.json(), body);
    assert_eq!(by_arn.header("x-secrets-sidecar-cache"), Some("hit"));
    assert_eq!(proxy.count("GetSecretValue"), 1, "name and ARN share the entry");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_by_name_arn_version_and_label() -> R {
    let moto = Moto::start().await?;
    moto.put_parameter("/app/color", "red", ParamType::String).await?;
    moto.put_parameter("/app/color", "green", ParamType::String).await?;
    moto.put_parameter("/app/color", "blue", ParamType::String).await?;
    moto.label_parameter_version("/app/color", 2, &["stable"]).await?;
    let sc = sidecar_on(&moto.endpoint(), &[]).await?;
    let value = |r: &harness::net::Response| r.json()["Parameter"]["Value"].as_str().unwrap_or("").to_owned();

    let latest = sc.get("/systemsmanager/parameters/get?name=/app/color").await?;
    assert_eq!((latest.status, value(&latest)), (200, "blue".into()));
    assert_eq!(latest.json()["Parameter"]["Version"], 3);
    let arn = latest.json()["Parameter"]["ARN"].as_str().unwrap_or("").to_owned();
    let by_arn = sc
        .get(&format!("/systemsmanager/parameters/get?name={}", enc(&arn)))
        .await?;
    assert_eq!(value(&by_arn), "blue");

    for (query, expected) in [
        ("name=/app/color:1", "red"),
        ("name=/app/color&version=2", "green"),
        ("name=/app/color&label=stable", "green"),
        ("name=/app/color:stable", "green"),
        (&*format!("name={}", enc(&format!("{arn}:1"))), "red"),
    ] {
        let r = sc.get(&format!("/systemsmanager/parameters/get?{query}")).await?;
        assert_eq!(
            (r.status, value(&r)),
            (200, expected.to_owned()),
            "{query}: {}",
            r.text()
        );
    }
    let missing = sc.get("/systemsmanager/parameters/get?name=/app/color:9").await?;
    assert_eq!(missing.status, 404, "{}", missing.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_strings_need_the_decryption_flag() -> R {
    let moto = Moto::start().await?;
    moto.put_parameter("/app/key", "plain-k1", ParamType::SecureString)
        .await?;
    let sc = sidecar_on(&moto.endpoint(), &[]).await?;
    let dec = sc
        .get("/systemsmanager/parameters/get?name=/app/key&withDecryption=true")
        .await?;
    assert_eq!(dec.json()["Parameter"]["Value"], "plain-k1");
    assert_eq!(dec.json()["Parameter"]["Type"], "SecureString");
    let enc = sc.get("/systemsmanager/parameters/get?name=/app/key").await?;
    let shown = enc.json()["Parameter"]["Value"].as_str().unwrap_or("").to_owned();
    assert!(shown.starts_with("kms:") && shown != "plain-k1", "{shown}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_key_and_raw_outputs() -> R {
    let moto = Moto::start().await?;
    moto.create_secret("owm", r#"{"appid":"abc123","n":7}"#).await?;
    moto.create_secret("plain", "just text").await?;
    moto.create_binary_secret("blob", &[0, 159, 146, 150, 255]).await?;
    let sc = sidecar_on(&moto.endpoint(), &[]).await?;

    let key = sc.get("/secretsmanager/get?secretId=owm&jsonKey=appid").await?;
    assert_eq!((key.status, key.text()), (200, "abc123".into()));
    assert_eq!(key.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(sc.get("/secretsmanager/get?secretId=owm&jsonKey=n").await?.text(), "7");
    assert_eq!(
        sc.get("/secretsmanager/get?secretId=owm&jsonKey=nope").await?.status,
        404
    );
    assert_eq!(
        sc.get("/secretsmanager/get?secretId=plain&jsonKey=k").await?.status,
        400
    );

    let raw = sc.get("/secretsmanager/get?secretId=plain&raw=true").await?;
    assert_eq!((raw.status, raw.text()), (200, "just text".into()));
    let blob = sc.get("/secretsmanager/get?secretId=blob&raw=true").await?;
    assert_eq!(blob.header("content-type"), Some("application/octet-stream"));
    assert_eq!(&blob.body[..], &[0, 159, 146, 150, 255]);
    let blob_json = sc.get("/secretsmanager/get?secretId=blob").await?;
    assert_eq!(blob_json.json()["SecretBinary"], "AJ+Slv8=");
    assert!(blob_json.json().get("SecretString").is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_now_and_previous_versions_after_rotation() -> R {
    let moto = Moto::start().await?;
    moto.create_secret("rot", "v1").await?;
    let sc = sidecar_on(&moto.endpoint(), &[]).await?;
    let value = |r: &harness::net::Response| r.json()["SecretString"].as_str().unwrap_or("").to_owned();

    assert_eq!(value(&sc.get("/secretsmanager/get?secretId=rot").await?), "v1");
    let v2_id = moto.put_secret_value("rot", "v2").await?;
    // Within the TTL the cached value is served...
    let cached = sc.get("/secretsmanager/get?secretId=rot").await?;
    assert_eq!(
        (value(&cached), cached.header("x-secrets-sidecar-cache")),
        ("v1".into(), Some("hit"))
    );
    // ...and refreshNow fetches the new one at once.
    let forced = sc.get("/secretsmanager/get?secretId=rot&refreshNow=true").await?;
    assert_eq!(value(&forced), "v2");
    assert_eq!(forced.json()["VersionId"], v2_id.as_str());
    assert_eq!(
        value(&sc.get("/secretsmanager/get?secretId=rot").await?),
        "v2",
        "the forced value is cached"
    );

    let prev = sc
        .get("/secretsmanager/get?secretId=rot&versionStage=AWSPREVIOUS")
        .await?;
    assert_eq!(value(&prev), "v1");
    assert!(prev.json()["VersionStages"]
        .as_array()
        .is_some_and(|s| s.iter().any(|x| x == "AWSPREVIOUS")));
    let by_id = sc
        .get(&format!("/secretsmanager/get?secretId=rot&versionId={v2_id}"))
        .await?;
    assert_eq!(value(&by_id), "v2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_forwarding_and_bad_requests_are_refused() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    moto.create_secret("s", "v").await?;
    let sc = sidecar_on(&proxy.endpoint(), &[]).await?;
    let path = "/secretsmanager/get?secretId=s";

    let r = sc.get_with(path, &[]).await?;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("MissingToken")));
    let r = sc.get_with(path, &[(TOKEN_HEADER, "wrong")]).await?;
    assert_eq!((r.status, r.json()["error"].as_str()), (403, Some("InvalidToken")));
    let longer = format!("{}x", sc.token);
    assert_eq!(sc.get_with(path, &[(TOKEN_HEADER, &longer)]).await?.status, 403);
    let r = sc
        .get_with(path, &[(TOKEN_HEADER, &sc.token), ("X-Forwarded-For", "10.1.2.3")])
        .await?;
    assert_eq!(r.status, 400);
    assert_eq!(sc.get_with("/metrics", &[]).await?.status, 401);
    assert_eq!(sc.get_with("/ping", &[]).await?.status, 200);
    assert_eq!(proxy.total(), 0, "refused requests never reach upstream");

    for (query, needle) in [
        ("/secretsmanager/get", "required"),
        ("/secretsmanager/get?secretId=s&versionId=a&versionStage=b", "not both"),
        ("/secretsmanager/get?secretId=s&secretId=t", "more than once"),
        ("/secretsmanager/get?secretId=s&bogus=1", "unknown"),
        ("/systemsmanager/parameters/get?name=/a&version=zero", "version"),
        ("/systemsmanager/parameters/get?name=/a:1&label=x", "one selector"),
        (
            "/systemsmanager/parameters/get?name=/a&withDecryption=maybe",
            "true or false",
        ),
    ] {
        let r = sc.get(query).await?;
        assert_eq!(r.status, 400, "{query}");
        assert!(
            r.json()["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{query}: {}",
            r.text()
        );
    }
    assert_eq!(sc.get("/secretsmanager/get?secretId=missing").await?.status, 404);
    assert_eq!(sc.get("/nothing/here").await?.status, 404);
    let post = sc
        .http
        .send(
            http::Method::POST,
            &sc.url(path),
            &[(TOKEN_HEADER, &sc.token)],
            bytes::Bytes::new(),
        )
        .await?;
    assert_eq!(post.status, 405);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_cold_requests_make_one_upstream_call() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    moto.create_secret("cold", "v").await?;
    let sc = std::sync::Arc::new(sidecar_on(&proxy.endpoint(), &[]).await?);
    // Slow the call down so all fifty arrive while it is in flight.
    proxy.inject(
        Some("GetSecretValue"),
        Fault::Latency(Duration::from_millis(500)),
        Some(1),
    );
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let sc = sc.clone();
            tokio::spawn(async move { sc.get("/secretsmanager/get?secretId=cold").await })
        })
        .collect();
    for t in tasks {
        let r = t.await??;
        assert_eq!((r.status, r.json()["SecretString"].as_str()), (200, Some("v")));
    }
    assert_eq!(proxy.count("GetSecretValue"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_batches_and_serves_without_further_calls() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    for i in 0..25 {
        moto.create_secret(&format!("pf/s{i}"), &format!("v{i}")).await?;
    }
    for i in 0..12 {
        moto.put_parameter(&format!("/pf/p{i}"), "x", ParamType::SecureString)
            .await?;
    }
    for i in 0..3 {
        moto.put_parameter(&format!("/team/here/k{i}"), "h", ParamType::String)
            .await?;
    }
    let mut refs: Vec<String> = (0..25).map(|i| format!("secretsmanager:pf/s{i}")).collect();
    refs.extend((0..12).map(|i| format!("ssm:/pf/p{i}")));
    refs.push("ssm-path:/team/".into());
    let sc = sidecar_on(&proxy.endpoint(), &[("SECRETS_SIDECAR_PREFETCH", &refs.join(","))]).await?;
    assert_eq!(proxy.count("BatchGetSecretValue"), 2, "25 secrets in batches of 20");
    assert_eq!(proxy.count("GetParameters"), 2, "12 parameters in batches of 10");
    assert_eq!(proxy.count("GetParametersByPath"), 1);
    let before = proxy.total();
    for i in 0..25 {
        let r = sc.get(&format!("/secretsmanager/get?secretId=pf/s{i}")).await?;
        assert_eq!(r.header("x-secrets-sidecar-cache"), Some("hit"));
    }
    for i in 0..12 {
        let r = sc
            .get(&format!(
                "/systemsmanager/parameters/get?name=/pf/p{i}&withDecryption=true"
            ))
            .await?;
        assert_eq!(r.json()["Parameter"]["Value"], "x");
    }
    let r = sc.get("/systemsmanager/parameters/get?name=/team/here/k1").await?;
    assert_eq!(r.header("x-secrets-sidecar-cache"), Some("hit"));
    assert_eq!(proxy.total(), before, "prefetched values need no call");
    assert_eq!(
        sc.metric("secrets_sidecar_upstream_calls_total{api=\"BatchGetSecretValue\"}")
            .await?,
        2
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_values_outlive_moto_and_uncached_ones_fail_fast() -> R {
    let mut moto = Moto::start().await?;
    moto.create_secret("kept", "v").await?;
    moto.create_secret("never-fetched", "w").await?;
    let sc = sidecar_on(&moto.endpoint(), &[]).await?;
    assert_eq!(sc.get("/secretsmanager/get?secretId=kept").await?.status, 200);
    moto.stop().await;

    let kept = sc.get("/secretsmanager/get?secretId=kept").await?;
    assert_eq!((kept.status, kept.json()["SecretString"].as_str()), (200, Some("v")));
    // Fails fast: a refused connection is an answer, after the SDK's few quick retries
    // (not after connect or first-byte timeouts).
    let cold = tokio::time::timeout(
        Duration::from_secs(8),
        sc.get("/secretsmanager/get?secretId=never-fetched"),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer within 8 s with moto down"))??;
    assert!(cold.status >= 500, "{} {}", cold.status, cold.text());
    assert_eq!(cold.json()["error"], "UpstreamUnavailable");
    let message = cold.json()["message"].as_str().unwrap_or("").to_owned();
    assert!(
        message.contains("Connection refused") && message.len() < 200,
        "{message}"
    );
    // One call for `kept`, then at most the SDK's three attempts for the cold one.
    let attempts = sc
        .metric("secrets_sidecar_upstream_calls_total{api=\"GetSecretValue\"}")
        .await?;
    assert!((2..=4).contains(&attempts), "{attempts} GetSecretValue attempts");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_with_a_summary_line() -> R {
    let moto = Moto::start().await?;
    moto.create_secret("s", "v").await?;
    let mut sc = sidecar_on(&moto.endpoint(), &[]).await?;
    sc.get("/secretsmanager/get?secretId=s").await?;
    sc.proc.signal("TERM").await?;
    let status = sc.proc.wait_exit(Duration::from_secs(5)).await?;
    assert!(status.success(), "{status}");
    let summary = sc
        .proc
        .logs
        .wait_for(Duration::from_secs(1), |l| l.contains("stopped"))
        .await?;
    assert!(
        summary.contains("misses=1") && summary.contains("upstream_calls=1"),
        "{summary}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_exits_two_naming_the_variable() -> R {
    let b = SidecarBuilder::new(BIN)
        .var("SECRETS_MANAGER_TTL", "forever")
        .var("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "100001");
    let mut p = b.spawn_raw()?;
    let status = p.wait_exit(Duration::from_secs(5)).await?;
    assert_eq!(status.code(), Some(2));
    let line = p
        .logs
        .wait_for(Duration::from_secs(1), |l| l.contains("invalid configuration"))
        .await?;
    assert!(
        line.contains("SECRETS_MANAGER_TTL") && line.contains("0 to 86400"),
        "{line}"
    );
    assert!(
        line.contains("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE") && line.contains("0 to 100000"),
        "{line}"
    );
    assert!(!line.contains("forever"), "values are not echoed");

    let no_token = SidecarBuilder::new(BIN).unset("SECRETS_SIDECAR_TOKEN");
    let mut p = no_token.spawn_raw()?;
    assert_eq!(p.wait_exit(Duration::from_secs(5)).await?.code(), Some(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_required_secret_stops_start_up() -> R {
    let moto = Moto::start().await?;
    moto.create_secret("present", "v").await?;
    let b = SidecarBuilder::new(BIN).endpoint(&moto.endpoint()).var(
        "SECRETS_SIDECAR_REQUIRED",
        "secretsmanager:present,secretsmanager:absent",
    );
    let mut p = b.spawn_raw()?;
    let status = p.wait_exit(Duration::from_secs(10)).await?;
    assert_eq!(status.code(), Some(1));
    let line = p
        .logs
        .wait_for(Duration::from_secs(1), |l| l.contains("required secrets unavailable"))
        .await?;
    assert!(
        line.contains("secretsmanager:absent") && !line.contains("secretsmanager:present"),
        "{line}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_timer_refreshes_ahead_of_expiry() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    moto.create_secret("warm", "v1").await?;
    let sc = sidecar_on(
        &proxy.endpoint(),
        &[
            ("SECRETS_SIDECAR_PREFETCH", "secretsmanager:warm"),
            ("SECRETS_MANAGER_TTL", "2"),
            ("SECRETS_SIDECAR_REFRESH_AHEAD", "0.5"),
        ],
    )
    .await?;
    assert_eq!(proxy.count("BatchGetSecretValue"), 1);
    moto.put_secret_value("warm", "v2").await?;
    // The timer refreshes about one second after the prefetch, in one batch.
    proxy
        .wait_for_count("BatchGetSecretValue", 2, Duration::from_secs(5))
        .await?;
    let r = harness::net::poll(Duration::from_secs(2), "the refreshed value", || async {
        let r = sc.get("/secretsmanager/get?secretId=warm").await.ok()?;
        (r.json()["SecretString"] == "v2").then_some(r)
    })
    .await?;
    assert_eq!(
        r.header("x-secrets-sidecar-cache"),
        Some("hit"),
        "served from memory, not fetched"
    );
    assert_eq!(proxy.count("GetSecretValue"), 0);
    Ok(())
}
