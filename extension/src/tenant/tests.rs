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
    (
        Tenancy::plan(&refs, allow.as_ref(), None, &TenantSession::default()).expect("templated"),
        allow,
    )
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

const SM: Source = Source::SecretsManager;

#[test]
fn nothing_templated_plans_nothing() {
    let refs = parse_ref_list("secretsmanager:app/db ssm:/app/key").expect("refs");
    let allow = AllowList::parse("secretsmanager:app/*").expect("allow");
    assert!(Tenancy::plan(&refs, Some(&allow), None, &TenantSession::default()).is_none());
    assert!(Tenancy::plan(&[], None, None, &TenantSession::default()).is_none());
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
        assert_eq!(t.admit(SM, own).await, Ok(true), "{own}");
    }
    assert_eq!(t.admit(Source::Ssm, "/tenants/acme/key").await, Ok(true));
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
        assert_eq!(t.admit(SM, free).await, Ok(false), "{free}: claimed by no template");
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
    assert_eq!(t.admit(SM, "app/db").await, Ok(false), "unclaimed ids never wait");
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
    assert_eq!(admitted, Ok(true));
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

const TENANT_ROLE: &str = "arn:aws:iam::111122223333:role/tenant-{tenant}";

fn with_role(prefetch: &str, role: &str) -> (Tenancy, TenantSession) {
    let refs = parse_ref_list(prefetch).expect("refs");
    let role = TenantRole::parse(role, role::DEFAULT_TAG_KEY).expect("role");
    let session = TenantSession::default();
    let t = Tenancy::plan(&refs, None, Some(&role), &session).expect("templated");
    (t, session)
}

#[tokio::test]
async fn the_tenants_role_and_session_tag_are_set_before_the_binding_is_published() {
    let (t, session) = with_role("secretsmanager:tenants/{tenant}/db", TENANT_ROLE);
    let t = Arc::new(t);
    t.end_init();
    t.set_invoke_deadline(now_ms() + 5_000);
    assert_eq!(t.role(), None, "no role before the binding");
    assert_eq!(t.scope(), Scope::HOME);
    // A request waiting for the binding sees the role the moment it wakes.
    let waiting = {
        let t = t.clone();
        tokio::spawn(async move {
            let admitted = t.admit(SM, "tenants/acme/db").await;
            (admitted, t.role().map(str::to_owned))
        })
    };
    t.report(Some("acme"));
    let (admitted, role) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken")
        .expect("joined");
    assert_eq!(admitted, Ok(true));
    let acme_role = "arn:aws:iam::111122223333:role/tenant-acme";
    assert_eq!(role.as_deref(), Some(acme_role));
    assert_eq!(t.scope().role(), Some(acme_role));
    let tag = session.tag_for(acme_role).expect("the session tag is set");
    assert_eq!((tag.key.as_str(), tag.value.as_str()), ("tenant", "acme"));
    assert!(session
        .tag_for("arn:aws:iam::111122223333:role/tenant-globex")
        .is_none());
    assert!(t.is_tenant_role("arn:aws:iam::111122223333:role/tenant-globex"));
    assert!(!t.is_tenant_role("arn:aws:iam::111122223333:role/reader"));
}

#[tokio::test]
async fn a_tenant_whose_role_would_not_be_an_arn_is_bound_but_unusable() {
    let (t, session) = with_role("secretsmanager:tenants/{tenant}/db", TENANT_ROLE);
    t.end_init();
    // 60 characters: a valid tenant id, but "tenant-" + it is over IAM's 64.
    let long = "a".repeat(60);
    assert!(matches!(
        t.report(Some(&long)),
        Reported::Bound(State::Unusable(TenantError::Role { .. }))
    ));
    let Err(Refused::Unbindable(why)) = t.admit(SM, &format!("tenants/{long}/db")).await else {
        panic!("refused as unbindable");
    };
    assert!(why.contains("role"), "{why}");
    assert_eq!(t.role(), None);
    assert!(session
        .tag_for(&format!("arn:aws:iam::111122223333:role/tenant-{long}"))
        .is_none());
}

#[test]
fn listings_that_could_hold_a_claimed_name_are_known() {
    let (t, _) = with_role("ssm:/tenants/{tenant}/key,secretsmanager:app/{tenant}", TENANT_ROLE);
    for path in ["/", "/ten", "/tenants", "/tenants/", "/tenants/acme", "/tenants/acme/"] {
        assert!(t.may_list_claimed(path), "{path}");
    }
    for path in ["/app", "/other/", "/tenantsx"] {
        assert!(!t.may_list_claimed(path), "{path}");
    }
}
