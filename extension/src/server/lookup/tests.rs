//! Every refusal and failure through both doors: the same request asked of the
//! extension API and of the SDK protocol must meet the same decision (the same
//! kind, rendered by each door from the one table), the same upstream calls, and
//! the same marks (`Cache-Control: no-store`, the cache outcome on values).

use std::sync::Arc;
use std::time::Duration;

use http::Response;
use serde_json::json;

use super::refusal::{Kind, TABLE};
use crate::backend::fake::FakeUpstream;
use crate::backend::ErrorKind;
use crate::server::answer::{Body, CACHE_HEADER};
use crate::server::gate::Gate;
use crate::server::router;
use crate::server::testing::{self, body, get, signed};

const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";

/// One request asked of both doors.
struct Case {
    name: &'static str,
    allow: Option<&'static str>,
    snapstart: bool,
    /// Every upstream call fails with this.
    failing: Option<ErrorKind>,
    id: String,
    /// `None`: a value is served.
    refused: Option<Kind>,
    upstream_calls: usize,
}

fn cases() -> Vec<Case> {
    let case = |name, allow, id: &str, refused, upstream_calls| Case {
        name,
        allow,
        snapstart: false,
        failing: None,
        id: id.to_owned(),
        refused,
        upstream_calls,
    };
    let failing = |kind: ErrorKind, refused: Kind| Case {
        failing: Some(kind),
        ..case("upstream fails", None, "app/db", Some(refused), 1)
    };
    vec![
        case("served", None, "app/db", None, 1),
        case("allowed and served", Some("secretsmanager:app/*"), "app/db", None, 1),
        case("missing", None, "app/missing", Some(Kind::NotFound), 1),
        case(
            "allowed but missing",
            Some("secretsmanager:app/*"),
            "app/missing",
            Some(Kind::NotFound),
            1,
        ),
        case(
            "outside the allowlist",
            Some("secretsmanager:other/*"),
            "app/db",
            Some(Kind::NotAllowed),
            0,
        ),
        case(
            "a look-alike that does not exist",
            Some("secretsmanager:app/db"),
            &format!("{ARN}app/db-zzzzzz"),
            Some(Kind::NotAllowed),
            1,
        ),
        case(
            "a look-alike of another secret",
            Some("secretsmanager:app/db"),
            &format!("{ARN}app/db-evil12"),
            Some(Kind::NotAllowed),
            1,
        ),
        Case {
            snapstart: true,
            ..case("SnapStart INIT", None, "app/db", Some(Kind::SnapStartInit), 0)
        },
        Case {
            snapstart: true,
            ..case(
                "outside the allowlist during a SnapStart INIT",
                Some("secretsmanager:other/*"),
                "app/db",
                Some(Kind::NotAllowed),
                0,
            )
        },
        failing(ErrorKind::AccessDenied, Kind::AccessDenied),
        failing(ErrorKind::Invalid, Kind::Invalid),
        failing(ErrorKind::Throttled, Kind::Throttled),
        failing(ErrorKind::Unavailable, Kind::Unavailable),
        failing(ErrorKind::Timeout, Kind::Timeout),
        failing(ErrorKind::Aborted, Kind::Aborted),
    ]
}

fn upstream() -> Arc<FakeUpstream> {
    let fake = Arc::new(FakeUpstream::new());
    fake.put_secret_with_suffix("app/db", "AbCdEf", "the-db-password");
    fake.put_secret_with_suffix("app/db-evil12", "sUliwU", "someone-elses-value");
    fake
}

/// What a door answered, reduced to what both must agree on.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    /// The extension API's `error` code or the SDK's `__type`; `None` for a value.
    error: Option<String>,
    cache: Option<String>,
    no_store: bool,
    served_value: bool,
    upstream_calls: usize,
}

async fn ask(case: &Case, sdk: bool) -> Seen {
    let fake = upstream();
    let vars: Vec<(&str, &str)> = case.allow.iter().map(|a| ("SECRETS_SIDECAR_ALLOW", *a)).collect();
    let gate = if case.snapstart {
        Gate::for_snapshot()
    } else {
        Gate::open()
    };
    let app = testing::app_with_gate(&fake, &vars, gate);
    fake.fail_all(case.failing);
    let req = if sdk {
        signed("secretsmanager.GetSecretValue", json!({ "SecretId": case.id }))
    } else {
        let id: String = form_urlencoded::byte_serialize(case.id.as_bytes()).collect();
        get(&format!("/secretsmanager/get?secretId={id}"))
    };
    let resp: Response<Body> = router::handle(&app, req).await;
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().expect("ascii").to_owned());
    let (status, cache, no_store) = (
        resp.status().as_u16(),
        header(CACHE_HEADER.as_str()),
        header("cache-control").as_deref() == Some("no-store"),
    );
    let error_type = header("x-amzn-errortype");
    let text = body(resp).await;
    let error = match status {
        200 => None,
        _ if sdk => error_type,
        _ => serde_json::from_str::<serde_json::Value>(&text).expect("json")["error"]
            .as_str()
            .map(str::to_owned),
    };
    Seen {
        status,
        error,
        cache,
        no_store,
        served_value: text.contains("the-db-password"),
        upstream_calls: fake.calls(),
    }
}

#[tokio::test]
async fn every_refusal_is_the_same_decision_through_both_doors() {
    for case in cases() {
        let (ext, sdk) = (ask(&case, false).await, ask(&case, true).await);
        let name = case.name;
        assert!(
            ext.no_store && sdk.no_store,
            "{name}: both doors say no-store: {ext:?} {sdk:?}"
        );
        assert_eq!(ext.upstream_calls, case.upstream_calls, "{name}: {ext:?}");
        assert_eq!(sdk.upstream_calls, case.upstream_calls, "{name}: {sdk:?}");
        match case.refused {
            None => {
                for seen in [&ext, &sdk] {
                    assert_eq!(seen.status, 200, "{name}: {seen:?}");
                    assert!(seen.served_value, "{name}: {seen:?}");
                    assert_eq!(seen.cache.as_deref(), Some("miss"), "{name}: marked: {seen:?}");
                }
            }
            Some(kind) => {
                let row = TABLE.iter().find(|r| r.kind == kind).expect("row");
                assert_eq!(
                    (ext.status, ext.error.as_deref()),
                    (row.status, Some(row.code)),
                    "{name}"
                );
                assert_eq!(
                    (sdk.status, sdk.error.as_deref()),
                    (row.sdk_status, Some(row.secrets_manager_type)),
                    "{name}"
                );
                for seen in [&ext, &sdk] {
                    assert!(!seen.served_value && seen.cache.is_none(), "{name}: {seen:?}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_role_outside_the_allowlist_is_refused_before_any_call() {
    // The SDK door has no roleArn (its scope is the signature's region): this
    // refusal is the extension API's alone.
    let fake = upstream();
    let app = testing::app(&fake, &[("SECRETS_SIDECAR_ALLOW", "secretsmanager:app/*")]);
    let role = "arn:aws:iam::123456789012:role/other";
    let resp = router::handle(
        &app,
        get(&format!("/secretsmanager/get?secretId=app/db&roleArn={role}")),
    )
    .await;
    let row = TABLE.iter().find(|r| r.kind == Kind::RoleNotAllowed).expect("row");
    assert_eq!(resp.status(), row.status);
    assert_eq!(fake.calls(), 0);
    let metrics = body(router::handle(&app, get("/metrics")).await).await;
    assert!(
        metrics.contains("secrets_sidecar_refusals_total{reason=\"role_not_allowed\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_value_is_marked_stale_through_both_doors() {
    for sdk in [false, true] {
        let fake = upstream();
        let app = testing::app(&fake, &[("SECRETS_MANAGER_TTL", "60")]);
        let req = || {
            if sdk {
                signed("secretsmanager.GetSecretValue", json!({ "SecretId": "app/db" }))
            } else {
                get("/secretsmanager/get?secretId=app/db")
            }
        };
        assert_eq!(router::handle(&app, req()).await.status(), 200);
        fake.fail_all(Some(ErrorKind::Unavailable));
        tokio::time::advance(Duration::from_secs(120)).await;
        let resp = router::handle(&app, req()).await;
        assert_eq!(resp.status(), 200, "sdk={sdk}: stale-if-error");
        assert_eq!(resp.headers()[CACHE_HEADER], "stale", "sdk={sdk}");
        assert_eq!(resp.headers()["age"], "120", "sdk={sdk}");
        assert!(body(resp).await.contains("the-db-password"));
    }
}

#[tokio::test]
async fn refusals_are_counted_by_reason_through_both_doors() {
    let fake = upstream();
    let app = testing::app(&fake, &[("SECRETS_SIDECAR_ALLOW", "secretsmanager:other/*")]);
    router::handle(&app, get("/secretsmanager/get?secretId=app/db")).await;
    router::handle(
        &app,
        signed("secretsmanager.GetSecretValue", json!({ "SecretId": "app/db" })),
    )
    .await;
    let batch = json!({ "SecretIdList": ["app/db", "app/db-evil12"] });
    let resp = router::handle(&app, signed("secretsmanager.BatchGetSecretValue", batch)).await;
    let answer: serde_json::Value = serde_json::from_str(&body(resp).await).expect("json");
    assert_eq!(answer["Errors"][0]["ErrorCode"], "AccessDeniedException");
    assert_eq!(answer["Errors"].as_array().map(Vec::len), Some(2));
    let metrics = body(router::handle(&app, get("/metrics")).await).await;
    assert!(
        metrics.contains("secrets_sidecar_refusals_total{reason=\"not_allowed\"} 4"),
        "{metrics}"
    );
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn a_tenants_ids_are_read_under_the_tenants_role_on_both_doors_and_nothing_else_is() {
    let fake = upstream();
    fake.put_secret("tenants/acme/db", "acme-db-password");
    let vars = [
        (
            "SECRETS_SIDECAR_ALLOW",
            "secretsmanager:tenants/{tenant}/* secretsmanager:app/*",
        ),
        (
            "SECRETS_SIDECAR_TENANT_ROLE",
            "arn:aws:iam::111122223333:role/tenant-{tenant}",
        ),
    ];
    let acme_role = "arn:aws:iam::111122223333:role/tenant-acme";
    for sdk in [false, true] {
        let app = testing::app_for_tenant(&fake, &vars, "acme");
        let req = |id: &str| {
            if sdk {
                signed("secretsmanager.GetSecretValue", json!({ "SecretId": id }))
            } else {
                get(&format!("/secretsmanager/get?secretId={id}"))
            }
        };
        let resp = router::handle(&app, req("tenants/acme/db")).await;
        assert_eq!(resp.status(), 200, "sdk={sdk}");
        assert!(body(resp).await.contains("acme-db-password"));
        let resp = router::handle(&app, req("app/db")).await;
        assert_eq!(resp.status(), 200, "sdk={sdk}");
        assert_eq!(
            fake.take_roles(),
            [Some(acme_role.to_owned()), None],
            "sdk={sdk}: the tenant's id under its role, the shared one under the function's"
        );
        // Cached under the role: a second read calls nothing.
        assert_eq!(router::handle(&app, req("tenants/acme/db")).await.status(), 200);
        assert!(fake.take_roles().is_empty(), "sdk={sdk}");
        let resp = router::handle(&app, req("tenants/globex/db")).await;
        let row = TABLE.iter().find(|r| r.kind == Kind::NotAllowed).expect("row");
        let want = if sdk { row.sdk_status } else { row.status };
        assert_eq!(resp.status(), want, "sdk={sdk}: another tenant's");
        assert!(fake.take_roles().is_empty(), "sdk={sdk}");
    }
    // A roleArn: the tenant's own on its id is the same read; any other role on a
    // tenant's id, and any tenant's role on another id, are refused before a call.
    let app = testing::app_for_tenant(&fake, &vars, "acme");
    let ask = |id: &str, role: &str| get(&format!("/secretsmanager/get?secretId={id}&roleArn={role}"));
    assert_eq!(
        router::handle(&app, ask("tenants/acme/db", acme_role)).await.status(),
        200
    );
    assert_eq!(fake.take_roles(), [Some(acme_role.to_owned())]);
    let row = TABLE.iter().find(|r| r.kind == Kind::RoleNotAllowed).expect("row");
    for (id, role) in [
        ("tenants/acme/db", "arn:aws:iam::111122223333:role/reader"),
        ("tenants/acme/db", "arn:aws:iam::111122223333:role/tenant-globex"),
        ("app/db", acme_role),
        ("app/db", "arn:aws:iam::111122223333:role/tenant-globex"),
    ] {
        let resp = router::handle(&app, ask(id, role)).await;
        assert_eq!(resp.status(), row.status, "{id} as {role}");
    }
    assert!(fake.take_roles().is_empty(), "no call for a refused role");
}
