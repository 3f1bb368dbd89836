//! `SECRETS_SIDECAR_TENANT_ROLE`: the role every upstream call for the tenant's
//! secrets is made under, so nothing of a tenant's is read with the function's own
//! role.
//!
//! Either one role per tenant (`arn:aws:iam::111122223333:role/tenant-{tenant}`) or
//! one role for all whose policies key on the session tag (attribute-based access:
//! `aws:PrincipalTag/tenant`). Both ways every AssumeRole carries the tenant as the
//! session tag `SECRETS_SIDECAR_TENANT_TAG_KEY` (default `tenant`), which the role's
//! trust policy must allow (`sts:TagSession`).

use super::template;
use super::{TenantError, TenantId};
use crate::model::check_role_arn;

/// The session tag's key when none is configured.
pub const DEFAULT_TAG_KEY: &str = "tenant";
/// STS's bound on a tag key.
const MAX_TAG_KEY_LEN: usize = 128;

/// The tenant's role, as configured (a template or one ARN), and its tag key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRole {
    template: String,
    tag_key: String,
}

impl TenantRole {
    /// Checks the role as an ARN with a sample tenant in the placeholder's place,
    /// and the tag key as STS checks one. Errors name the rule, not the value.
    pub fn parse(template: &str, tag_key: &str) -> Result<TenantRole, String> {
        template::check(template).map_err(|e| e.to_string())?;
        let sample = template.replacen(template::PLACEHOLDER, "t", 1);
        check_role_arn(&sample).map_err(|why| {
            if template::is_template(template) {
                format!("with a tenant id in place of {{tenant}} it {why}")
            } else {
                why.to_owned()
            }
        })?;
        check_tag_key(tag_key)?;
        Ok(TenantRole {
            template: template.to_owned(),
            tag_key: tag_key.to_owned(),
        })
    }

    pub fn tag_key(&self) -> &str {
        &self.tag_key
    }

    /// The role's ARN for `tenant`, checked again: a long tenant id can make a role
    /// name IAM would refuse.
    pub fn resolve(&self, tenant: &TenantId) -> Result<String, TenantError> {
        let arn = template::resolve(&self.template, tenant);
        check_role_arn(&arn).map_err(|why| TenantError::Role {
            tenant: tenant.to_string(),
            why: why.to_owned(),
        })?;
        Ok(arn)
    }

    /// Whether `role` is the tenant role of some tenant (this one's or another's).
    pub fn could_be(&self, role: &str) -> bool {
        match self.template.split_once(template::PLACEHOLDER) {
            None => role == self.template,
            Some((before, after)) => {
                role.len() > before.len() + after.len() && role.starts_with(before) && role.ends_with(after)
            }
        }
    }
}

/// STS's rule for a session tag key: 1-128 of letters, digits, spaces and
/// `_.:/=+-@`, not starting with `aws:` (reserved).
fn check_tag_key(key: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    if key.is_empty() || key.chars().count() > MAX_TAG_KEY_LEN || !key.chars().all(allowed) {
        return Err(format!(
            "a session tag key must be 1-{MAX_TAG_KEY_LEN} of letters, digits, spaces and _.:/=+-@ (STS's rule)"
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err("a session tag key cannot start with 'aws:' (reserved by AWS)".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/tenant-{tenant}";

    #[test]
    fn a_templated_role_resolves_per_tenant_and_knows_every_tenants_instance() {
        let r = TenantRole::parse(ROLE, DEFAULT_TAG_KEY).expect("valid");
        let acme = TenantId::parse("acme").expect("tenant");
        assert_eq!(
            r.resolve(&acme).as_deref(),
            Ok("arn:aws:iam::111122223333:role/tenant-acme")
        );
        assert!(r.could_be("arn:aws:iam::111122223333:role/tenant-globex"));
        assert!(!r.could_be("arn:aws:iam::111122223333:role/tenant-"));
        assert!(!r.could_be("arn:aws:iam::111122223333:role/reader"));
        // A role name IAM would refuse: 64 characters at most.
        let long = TenantId::parse(&"a".repeat(60)).expect("tenant");
        assert!(matches!(r.resolve(&long), Err(TenantError::Role { .. })));
    }

    #[test]
    fn one_role_for_every_tenant_is_that_role_only() {
        let fixed = "arn:aws:iam::111122223333:role/tenants";
        let r = TenantRole::parse(fixed, "TenantId").expect("valid");
        assert!(r.could_be(fixed));
        assert!(!r.could_be("arn:aws:iam::111122223333:role/tenants2"));
        assert_eq!(r.tag_key(), "TenantId");
    }

    #[test]
    fn bad_roles_and_tag_keys_are_refused_with_the_rule() {
        for (role, key, want) in [
            ("arn:aws:iam::{tenant}:role/r", "tenant", "12-digit"),
            (
                "arn:aws:iam::111122223333:role/a-{tenant}-{tenant}",
                "tenant",
                "more than once",
            ),
            ("arn:aws:iam::111122223333:user/{tenant}", "tenant", "must be"),
            (ROLE, "", "session tag key"),
            (ROLE, "aws:tenant", "reserved"),
            (ROLE, "ten#ant", "session tag key"),
        ] {
            let err = TenantRole::parse(role, key).expect_err(role);
            assert!(err.contains(want), "{role} {key}: {err}");
        }
    }
}
