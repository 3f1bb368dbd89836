//! The tenancy's decisions: which ids a template claims, whose they are once the
//! binding is known, and what AWS returned.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::backend::{ParameterFields, SecretFields};
use crate::model::parse_ref_list;

const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";

fn secret(name: &str) -> Value {
    Value::from_secret(SecretFields {
        arn: format!("{ARN}{name}-AbCdEf"),
        name: name.into(),
        version_id: None,
        secret_string: Some("v".into()),
        secret_binary: None,
        version_stages: vec![],
        created_date: None,
    })
}

fn parameter(name: &str) -> Value {
    Value::from_parameter(ParameterFields {
        arn: format!("arn:aws:ssm:us-east-1:123456789012:parameter{name}"),
        name: name.into(),
        kind: "SecureString".into(),
        value: "v".into(),
        version: 1,
        data_type: None,
        last_modified_date: None,
        selector: None,
        source_result: None,
    })
}

fn tenancy(prefetch: &str, allow: Option<&str>) -> (Tenancy, Option<AllowList>) {
    let refs = parse_ref_list(prefetch).expect("refs");
    let allow = allow.map(|a| AllowList::parse(a).expect("allow"));
    (Tenancy::plan(&refs, allow.as_ref()).expect("templated"), allow)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

const SM: Source = Source::SecretsManager;

#[test]
fn nothing_templated_plans_nothing() {
    let refs = parse_ref_list("secretsmanager:app/db ssm:/app/key").expect("refs");
    let allow = AllowList::parse("secretsmanager:app/*").expect("allow");
    assert!(Tenancy::plan(&refs, Some(&allow)).is_none());
    assert!(Tenancy::plan(&[], None).is_none());
}

#[tokio::test]
async fn every_spelling_of_another_tenants_id_is_refused_and_the_own_is_admitted() {
    let (t, _) = tenancy("secretsmanager:tenants/{tenant}/db ssm:/tenants/{tenant}/key", None);
    t.end_init();
    t.set_invoke_deadline(now_ms() + 5_000);
    assert!(matches!(t.report(Some("acme")), Reported::Bound(State::Tenant(_))));
    for own in [
        "tenants/acme/db",
        &format!("{ARN}tenants/acme/db-AbCdEf"),
        &format!("{ARN}tenants/acme/db"),
    ] {
        assert_eq!(t.admit(SM, own).await, Ok(()), "{own}");
    }
    assert_eq!(t.admit(Source::Ssm, "/tenants/acme/key").await, Ok(()));
    for other in [
        "tenants/globex/db",
        "tenants/acme/../globex/db",
        "tenants/globex/acme/db",
        "tenants/acme2/db",
        "tenants/ACME/db",
        "tenants/\u{ff41}cme/db",
        &format!("{ARN}tenants/globex/db-AbCdEf"),
        &format!("{ARN}tenants/globex/db"),
        "arn:aws:secretsmanager:eu-west-1:999999999999:secret:tenants/globex/db",
    ] {
        assert_eq!(t.admit(SM, other).await, Err(Refused::OtherTenant), "{other}");
    }
    for other in [
        "/aws/reference/secretsmanager/tenants/globex/db",
        "/tenants/globex/key",
        "arn:aws:ssm:us-east-1:123456789012:parameter/tenants/globex/key",
    ] {
        assert_eq!(t.admit(Source::Ssm, other).await, Err(Refused::OtherTenant), "{other}");
    }
    for free in ["app/db", "tenants/db", "tenants/acme/db2/x"] {
        assert_eq!(t.admit(SM, free).await, Ok(()), "{free}: claimed by no template");
    }
}

#[tokio::test]
async fn a_claimed_id_before_the_binding_waits_for_it_then_fails_at_the_deadline() {
    let (t, _) = tenancy("secretsmanager:tenants/{tenant}/db", None);
    assert_eq!(
        t.admit(SM, "tenants/acme/db").await,
        Err(Refused::Unknown { during_init: true }),
        "no invoke yet: Lambda names the tenant only with one"
    );
    assert_eq!(t.admit(SM, "app/db").await, Ok(()), "unclaimed ids never wait");
    t.end_init();
    // A deadline 150 ms ahead leaves 50 ms to wait after the margin.
    t.set_invoke_deadline(now_ms() + 150);
    assert_eq!(
        t.admit(SM, "tenants/acme/db").await,
        Err(Refused::Unknown { during_init: false })
    );

    let t = Arc::new(t);
    t.set_invoke_deadline(now_ms() + 10_000);
    let waiting = {
        let t = t.clone();
        tokio::spawn(async move { t.admit(SM, "tenants/acme/db").await })
    };
    tokio::task::yield_now().await;
    t.report(Some("acme"));
    let admitted = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken by the binding")
        .expect("joined");
    assert_eq!(admitted, Ok(()));
}

#[tokio::test]
async fn no_tenant_a_conflict_or_an_unusable_tenant_refuse_every_claimed_id() {
    let (t, _) = tenancy("secretsmanager:tenants/{tenant}/db", None);
    t.end_init();
    t.set_invoke_deadline(now_ms() + 5_000);
    t.report(None);
    let Err(Refused::Unbindable(why)) = t.admit(SM, "tenants/acme/db").await else {
        panic!("no tenant: refused");
    };
    assert!(why.contains("not in tenant isolation mode"), "{why}");
    assert!(t.prefetch().is_empty());

    let (t, _) = tenancy("secretsmanager:tenants/{tenant}/db", None);
    t.end_init();
    t.set_invoke_deadline(now_ms() + 5_000);
    t.report(Some("acme"));
    t.report(Some("globex"));
    assert!(matches!(
        t.admit(SM, "tenants/acme/db").await,
        Err(Refused::Unbindable(_))
    ));

    let (t, _) = tenancy("secretsmanager:tenants/{tenant}/db", None);
    t.end_init();
    t.set_invoke_deadline(now_ms() + 5_000);
    t.report(Some("a/b"));
    let Err(Refused::Unbindable(why)) = t.admit(SM, "tenants/a/b/db").await else {
        panic!("a tenant with '/' cannot enter names");
    };
    assert!(why.contains("cannot enter"), "{why}");
}

#[test]
fn templates_resolve_in_the_prefetch_and_the_allowlist() {
    let (t, allow) = tenancy(
        "secretsmanager:tenants/{tenant}/db ssm-path:/tenants/{tenant}/ secretsmanager:shared/key",
        Some("secretsmanager:shared/* secretsmanager:tenants/{tenant}/* role:arn:aws:iam::111122223333:role/tenant-{tenant}"),
    );
    let allow = allow.expect("allow");
    assert!(t.prefetches());
    assert!(t.prefetch().is_empty(), "nothing resolves before the binding");
    assert!(
        !allow.could_name(SM, "tenants/acme/db"),
        "a template allows nothing unbound"
    );
    assert!(!allow.permits_role("arn:aws:iam::111122223333:role/tenant-acme"));
    t.report(Some("acme"));
    let resolved: Vec<String> = t.prefetch().iter().map(ToString::to_string).collect();
    assert_eq!(
        resolved,
        ["secretsmanager:tenants/acme/db", "ssm-path:/tenants/acme/"],
        "only the templated entries"
    );
    let copy = allow.clone();
    assert!(copy.could_name(SM, "tenants/acme/db"), "clones are bound together");
    assert!(!copy.could_name(SM, "tenants/globex/db"));
    assert!(copy.could_name(SM, "shared/x"));
    assert!(copy.permits_role("arn:aws:iam::111122223333:role/tenant-acme"));
    assert!(!copy.permits_role("arn:aws:iam::111122223333:role/tenant-globex"));
}

#[test]
fn what_aws_returned_is_checked_on_its_identity() {
    let (t, _) = tenancy("secretsmanager:tenants/{tenant}/db ssm:/tenants/{tenant}/key", None);
    assert!(
        !t.permits_value(SM, &secret("tenants/acme/db")),
        "before the binding no claimed value is anyone's"
    );
    assert!(t.permits_value(SM, &secret("app/db")));
    t.report(Some("acme"));
    assert!(t.permits_value(SM, &secret("tenants/acme/db")));
    assert!(!t.permits_value(SM, &secret("tenants/globex/db")));
    assert!(t.permits_value(Source::Ssm, &parameter("/tenants/acme/key")));
    assert!(!t.permits_value(Source::Ssm, &parameter("/tenants/globex/key")));
    assert!(t.permits_value(Source::Ssm, &parameter("/app/key")));
}
