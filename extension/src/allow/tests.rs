//! The allowlist's two checks, on look-alikes and on what AWS returns.

use super::*;
use crate::backend::{ParameterFields, SecretFields};
use proptest::prelude::*;

const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";

fn secret(name: &str, suffix: &str) -> Value {
    Value::from_secret(SecretFields {
        arn: format!("{ARN}{name}-{suffix}"),
        name: name.into(),
        version_id: None,
        secret_string: Some("v".into()),
        secret_binary: None,
        version_stages: vec![],
        created_date: None,
    })
}

fn parameter(name: &str, arn: &str, source_result: Option<&str>) -> Value {
    Value::from_parameter(ParameterFields {
        arn: arn.into(),
        name: name.into(),
        kind: "SecureString".into(),
        value: "v".into(),
        version: 1,
        data_type: None,
        last_modified_date: None,
        selector: None,
        source_result: source_result.map(str::to_owned),
    })
}

fn list(text: &str) -> AllowList {
    AllowList::parse(text).expect("valid")
}

#[test]
fn globs() {
    assert!(glob_match("app/*", "app/db"));
    assert!(glob_match("app/*", "app/a/b"));
    assert!(!glob_match("app/*", "other/db"));
    assert!(glob_match("*", ""));
    assert!(glob_match("a*b*c", "aXXbYYc"));
    assert!(!glob_match("a*b*c", "aXXbYY"));
    assert!(glob_match("exact", "exact"));
    assert!(!glob_match("exact", "exact2"));
}

#[test]
fn a_look_alike_arn_is_resolved_and_refused_on_the_name_aws_returns() {
    let allow = list("secretsmanager:app/db");
    let look_alike = format!("{ARN}app/db-evil12");
    // It may be app/db's full ARN (suffix "evil12"): only AWS can say.
    assert!(allow.could_name(Source::SecretsManager, &look_alike));
    assert!(!allow.names_exactly(Source::SecretsManager, &look_alike));
    // AWS says it is another secret: refused.
    assert!(!allow.permits_value(Source::SecretsManager, &secret("app/db-evil12", "sUliwU")));
    // Or that it is app/db itself: allowed.
    assert!(allow.permits_value(Source::SecretsManager, &secret("app/db", "evil12")));
}

#[test]
fn names_are_checked_as_written() {
    let allow = list("secretsmanager:app/db");
    assert!(allow.could_name(Source::SecretsManager, "app/db"));
    assert!(allow.names_exactly(Source::SecretsManager, "app/db"));
    for other in ["app/db-evil12", "app/db2", "app/d", "app/db/x", "APP/DB", "app/db "] {
        assert!(!allow.could_name(Source::SecretsManager, other), "{other}");
    }
    // Names that are prefixes of each other stay apart.
    let allow = list("secretsmanager:app/db-prod");
    assert!(!allow.could_name(Source::SecretsManager, "app/db"));
    assert!(!allow.permits_value(Source::SecretsManager, &secret("app/db", "AbCdEf")));
    assert!(allow.permits_value(Source::SecretsManager, &secret("app/db-prod", "AbCdEf")));
}

#[test]
fn partial_and_full_arns() {
    let allow = list("secretsmanager:app/db");
    assert!(allow.names_exactly(Source::SecretsManager, &format!("{ARN}app/db")));
    assert!(allow.could_name(Source::SecretsManager, &format!("{ARN}app/db-AbCdEf")));
    // A five- or seven-character tail cannot be a suffix.
    assert!(!allow.could_name(Source::SecretsManager, &format!("{ARN}app/db-evil1")));
    assert!(!allow.could_name(Source::SecretsManager, &format!("{ARN}app/db-evil123")));
    assert!(!allow.could_name(Source::SecretsManager, &format!("{ARN}other-AbCdEf")));
    // Not a secret ARN at all.
    assert!(!allow.could_name(Source::SecretsManager, "arn:aws:ssm:us-east-1:1:parameter/app/db"));
}

#[test]
fn arn_patterns_pin_region_account_and_suffix() {
    let exact = list(&format!("secretsmanager:{ARN}app/db-AbCdEf"));
    assert!(exact.permits_value(Source::SecretsManager, &secret("app/db", "AbCdEf")));
    assert!(!exact.permits_value(Source::SecretsManager, &secret("app/db", "ZZZZZZ")));
    // By name or partial ARN it may be that secret: resolved, then decided.
    assert!(exact.could_name(Source::SecretsManager, "app/db"));
    assert!(exact.could_name(Source::SecretsManager, &format!("{ARN}app/db")));
    assert!(!exact.could_name(Source::SecretsManager, "app/other"));
    let account = list("secretsmanager:arn:aws:secretsmanager:*:123456789012:secret:app/*");
    assert!(account.permits_value(Source::SecretsManager, &secret("app/x", "AbCdEf")));
    let mut elsewhere = secret("app/x", "AbCdEf");
    elsewhere.arn = "arn:aws:secretsmanager:eu-west-1:999999999999:secret:app/x-AbCdEf".into();
    assert!(!account.permits_value(Source::SecretsManager, &elsewhere));
    assert!(!account.could_name(
        Source::SecretsManager,
        "arn:aws:secretsmanager:eu-west-1:999999999999:secret:app/x-AbCdEf"
    ));
}

#[test]
fn glob_patterns_decide_on_the_returned_name() {
    let allow = list("secretsmanager:app/*");
    assert!(allow.could_name(Source::SecretsManager, "app/anything"));
    assert!(allow.permits_value(Source::SecretsManager, &secret("app/a/b", "AbCdEf")));
    assert!(!allow.permits_value(Source::SecretsManager, &secret("apps/x", "AbCdEf")));
    assert!(!allow.could_name(Source::SecretsManager, "appx"));
}

#[test]
fn sources_apply_apart_and_bare_patterns_to_both() {
    let allow = list("secretsmanager:app/*, ssm:/team/*");
    assert!(!allow.could_name(Source::Ssm, "app/db"));
    assert!(allow.could_name(Source::Ssm, "/team/here/key"));
    assert!(!allow.could_name(Source::Ssm, "/teamx/key"));
    assert!(allow.could_name(
        Source::Ssm,
        "arn:aws:ssm:us-east-1:123456789012:parameter/team/here/key"
    ));
    let both = list("shared/*");
    assert!(both.could_name(Source::Ssm, "shared/x") && both.could_name(Source::SecretsManager, "shared/x"));
}

#[test]
fn parameters_are_decided_on_their_returned_name_or_arn() {
    let allow = list("ssm:/team/*");
    let own = parameter("/team/k", "arn:aws:ssm:us-east-1:1:parameter/team/k", None);
    assert!(allow.permits_value(Source::Ssm, &own));
    // Shared parameters come back named by ARN.
    let shared_arn = "arn:aws:ssm:us-east-1:2:parameter/team/k";
    assert!(allow.permits_value(Source::Ssm, &parameter(shared_arn, shared_arn, None)));
    let other_arn = "arn:aws:ssm:us-east-1:2:parameter/teamx/k";
    assert!(!allow.permits_value(Source::Ssm, &parameter(other_arn, other_arn, None)));
    let flat = list("ssm:x");
    assert!(flat.permits_value(
        Source::Ssm,
        &parameter("x", "arn:aws:ssm:us-east-1:1:parameter/x", None)
    ));
}

#[test]
fn references_are_decided_on_the_secret_they_resolve_to() {
    let allow = list("secretsmanager:app/db");
    let reference = "/aws/reference/secretsmanager/app/db-evil12";
    assert!(
        !allow.could_name(Source::Ssm, reference),
        "a name is a name: no suffix to strip"
    );
    let by_arn = format!("/aws/reference/secretsmanager/{ARN}app/db-evil12");
    assert!(allow.could_name(Source::Ssm, &by_arn));
    assert!(!allow.names_exactly(Source::Ssm, &by_arn));
    let described = |name: &str, suffix: &str| format!(r#"{{"Name":"{name}","ARN":"{ARN}{name}-{suffix}"}}"#);
    let evil = parameter(
        &by_arn,
        &format!("{ARN}app/db-evil12-sUliwU"),
        Some(&described("app/db-evil12", "sUliwU")),
    );
    assert!(!allow.permits_value(Source::Ssm, &evil));
    let good = parameter(
        "/aws/reference/secretsmanager/app/db",
        &format!("{ARN}app/db-AbCdEf"),
        Some(&described("app/db", "AbCdEf")),
    );
    assert!(allow.permits_value(Source::Ssm, &good));
    // A reference AWS answered without naming its secret cannot be checked.
    let unnamed = parameter(
        "/aws/reference/secretsmanager/app/db",
        &format!("{ARN}app/db-AbCdEf"),
        None,
    );
    assert!(!allow.permits_value(Source::Ssm, &unnamed));
    // An ssm pattern over the reference path allows it too, decided on the secret's name.
    let by_path = list("ssm:/aws/reference/secretsmanager/app/*");
    assert!(by_path.permits_value(Source::Ssm, &good));
    assert!(by_path.could_name(Source::Ssm, "/aws/reference/secretsmanager/app/db"));
}

#[test]
fn roles_must_be_named() {
    let allow = list("secretsmanager:app/*, role:arn:aws:iam::123456789012:role/readers-*");
    assert!(allow.permits_role("arn:aws:iam::123456789012:role/readers-prod"));
    assert!(!allow.permits_role("arn:aws:iam::999999999999:role/readers-prod"));
    assert!(!list("secretsmanager:*").permits_role("arn:aws:iam::1:role/x"));
    assert!(!allow.could_name(Source::SecretsManager, "arn:aws:iam::123456789012:role/readers-prod"));
}

#[test]
fn paths_need_a_covering_pattern() {
    let allow = list("ssm:/team/*, ssm:/one/exact");
    assert!(allow.permits_ref(&SecretRef::Path("/team/".into())));
    assert!(allow.permits_ref(&SecretRef::Path("/team/sub/".into())));
    assert!(!allow.permits_ref(&SecretRef::Path("/one/".into())));
}

#[test]
fn empty_lists_are_errors() {
    assert_eq!(AllowList::parse(" , "), Err(AllowError::Empty));
    assert_eq!(AllowList::parse("ssm:"), Err(AllowError::EmptyPattern("ssm:".into())));
    assert_eq!(AllowList::parse("role:"), Err(AllowError::EmptyPattern("role:".into())));
}

proptest! {
    #[test]
    fn star_matches_everything(s in ".*") {
        prop_assert!(glob_match("*", &s));
    }

    #[test]
    fn literal_matches_only_itself(a in "[a-z/]{0,12}", b in "[a-z/]{0,12}") {
        prop_assert_eq!(glob_match(&a, &b), a == b);
    }

    #[test]
    fn prefix_star_is_starts_with(prefix in "[a-z/]{0,8}", s in "[a-z/]{0,16}") {
        prop_assert_eq!(glob_match(&format!("{prefix}*"), &s), s.starts_with(&prefix));
    }

    /// With an exact name pattern, only the secret of exactly that name passes the
    /// check on AWS's answer, whatever the request looked like.
    #[test]
    fn only_the_exact_name_is_served(
        allowed in "[a-z]{1,4}(/[a-z]{1,3})?",
        tail in "(-[A-Za-z0-9]{6})?(-[a-z0-9]{1,7})?",
        suffix in "[A-Za-z0-9]{6}",
    ) {
        let allow = list(&format!("secretsmanager:{allowed}"));
        let returned = format!("{allowed}{tail}");
        let ok = allow.permits_value(Source::SecretsManager, &secret(&returned, &suffix));
        prop_assert_eq!(ok, returned == allowed);
    }
}
