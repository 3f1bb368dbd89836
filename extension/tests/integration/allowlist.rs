//! The allowlist against moto, as a new user would meet it: `app/db` allowed beside
//! `app/db-evil12`, every look-alike form (partial and full ARNs, six-character tails,
//! SSM references) answered on the identity AWS returns, refusals remembered; and the
//! negative cache's call counts for a function hammering a missing id.

use std::time::{Duration, Instant};

use harness::moto::Moto;
use harness::proxy::FaultProxy;
use harness::sidecar::SidecarBuilder;

const BIN: &str = env!("CARGO_BIN_EXE_secrets-sidecar");
const PARTIAL: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";

type R = anyhow::Result<()>;

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alikes_are_decided_on_what_aws_returns() -> R {
    let moto = Moto::start().await?;
    let db_arn = moto.create_secret("app/db", "the-db-password").await?;
    let evil_arn = moto.create_secret("app/db-evil12", "someone-elses-value").await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let sc = SidecarBuilder::new(BIN)
        .endpoint(&proxy.endpoint())
        .var("SECRETS_SIDECAR_ALLOW", "secretsmanager:app/db")
        .spawn()
        .await?;
    let secret = |id: &str| format!("/secretsmanager/get?secretId={}", enc(id));
    let reference = |id: &str| {
        format!(
            "/systemsmanager/parameters/get?withDecryption=true&name={}",
            enc(&format!("/aws/reference/secretsmanager/{id}"))
        )
    };

    // (what is tried, path, status, upstream calls it may cost)
    let cases: Vec<(&str, String, u16, u64)> = vec![
        (
            "the issue's partial ARN of app/db-evil12",
            secret(&format!("{PARTIAL}app/db-evil12")),
            403,
            1,
        ),
        (
            "the same again (remembered)",
            secret(&format!("{PARTIAL}app/db-evil12")),
            403,
            0,
        ),
        ("app/db-evil12 by name", secret("app/db-evil12"), 403, 0),
        ("app/db-evil12 by full ARN", secret(&evil_arn), 403, 0),
        (
            "a six-character tail that names nothing",
            secret(&format!("{PARTIAL}app/db-zzzzzz")),
            403,
            1,
        ),
        (
            "a five-character tail",
            secret(&format!("{PARTIAL}app/db-evil1")),
            403,
            0,
        ),
        ("a prefix of the allowed name", secret("app/d"), 403, 0),
        ("reference to app/db-evil12 by name", reference("app/db-evil12"), 403, 0),
        (
            "reference to the look-alike partial ARN",
            reference(&format!("{PARTIAL}app/db-evil12")),
            403,
            1,
        ),
        ("app/db by name", secret("app/db"), 200, 1),
        ("app/db by full ARN", secret(&db_arn), 200, 0),
        (
            "app/db by partial ARN (a new alias: one call)",
            secret(&format!("{PARTIAL}app/db")),
            200,
            1,
        ),
        ("app/db through its SSM reference", reference("app/db"), 200, 1),
    ];
    let mut report = Vec::new();
    for (what, path, status, cost) in &cases {
        let before = proxy.total();
        let r = sc.get(path).await?;
        let spent = proxy.total() - before;
        report.push(format!(
            "{what}: {} {} ({spent} calls)",
            r.status,
            r.json()["error"].as_str().unwrap_or("")
        ));
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        assert!(
            spent <= *cost,
            "{what}: {spent} upstream calls, expected at most {cost}"
        );
        assert!(
            !r.text().contains("someone-elses-value"),
            "{what} leaked the look-alike's value"
        );
        if *status == 403 {
            assert_eq!(r.json()["error"], "NotAllowed", "{what}");
        } else {
            assert!(r.text().contains("the-db-password"), "{what}: {}", r.text());
        }
    }
    eprintln!("{}", report.join("\n"));
    assert_eq!(
        sc.metric("secrets_sidecar_cache_entries").await?,
        2,
        "only app/db (and its reference) are stored"
    );
    assert!(sc.metric("secrets_sidecar_negative_hits_total").await? >= 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_id_costs_one_call_per_negative_ttl_and_appears_within_it() -> R {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let sc = SidecarBuilder::new(BIN)
        .endpoint(&proxy.endpoint())
        .var("SECRETS_SIDECAR_NEGATIVE_TTL", "1")
        .spawn()
        .await?;
    let path = "/secretsmanager/get?secretId=app/later";
    let started = Instant::now();
    let mut requests = 0u64;
    while started.elapsed() < Duration::from_millis(2500) {
        assert_eq!(sc.get(path).await?.status, 404);
        requests += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let calls = proxy.total();
    eprintln!("{requests} requests for a missing id over {seconds:.1} s: {calls} upstream calls");
    assert!(requests > 20, "the loop ran: {requests}");
    assert!(
        calls as f64 <= seconds.ceil() + 1.0,
        "{calls} calls over {seconds:.1} s with a 1 s negative TTL"
    );

    let forced = sc.get(&format!("{path}&refreshNow=true")).await?;
    assert_eq!(forced.status, 404);
    assert_eq!(proxy.total(), calls + 1, "refreshNow bypasses the negative cache");

    moto.create_secret("app/later", "created").await?;
    let created = Instant::now();
    let visible = harness::net::poll(Duration::from_secs(10), "the new secret", || async {
        (sc.get(path).await.ok()?.status == 200).then_some(())
    })
    .await;
    assert!(visible.is_ok(), "a secret created after a negative answer shows up");
    let after = created.elapsed();
    eprintln!("created secret visible after {after:?}");
    assert!(
        after < Duration::from_secs(3),
        "visible within the negative TTL (plus slack): {after:?}"
    );
    Ok(())
}
