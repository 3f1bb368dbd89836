//! A tenant id as Lambda accepts it, and the narrower form that may enter a name.
//!
//! Lambda takes 1–256 characters of `A-Z a-z 0-9 . _ : / = + - @` and space on the
//! invoke (the Invoke API's `TenantId`). An id that becomes part of a secret's name
//! or a role's ARN must not change the name's shape: `/` would add a path level
//! (tenant `a/b` under `tenants/{tenant}/*` would reach into tenant `a`'s
//! names), `:` would split an ARN, a space is in no name. Such a tenant is bound (it
//! is Lambda's word) but its templates do not resolve; every templated id is refused
//! with that reason.

use std::fmt;

/// Lambda's bound on a tenant id's length.
pub const MAX_TENANT_LEN: usize = 256;

/// Characters Lambda accepts besides ASCII letters and digits.
const LAMBDA_EXTRA: &str = "._:/=+-@ ";
/// Characters that cannot enter a name or an ARN (see the module header).
const NOT_IN_NAMES: &str = "/: ";

/// Why a tenant id Lambda reported cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("the tenant id is empty")]
    Empty,
    #[error("the tenant id is longer than {MAX_TENANT_LEN} characters")]
    TooLong,
    #[error("the tenant id has a character Lambda does not allow (A-Z a-z 0-9 . _ : / = + - @ and space)")]
    Character,
    #[error("tenant id '{0}' holds '/', ':' or a space, which cannot enter a secret's name or a role's ARN")]
    NotNameSafe(String),
    /// The id is fine, but the tenant's role (`SECRETS_SIDECAR_TENANT_ROLE`) would
    /// not be a role ARN with it (IAM's role names are at most 64 characters).
    #[error("tenant id '{tenant}' makes the tenant's role an ARN IAM would not accept: it {why}")]
    Role { tenant: String, why: String },
}

/// A tenant id that passed Lambda's rule and may enter names and ARNs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TenantId(Box<str>);

impl TenantId {
    /// Checks Lambda's rule, then the narrower rule of names. Tenant ids are not
    /// secret: they name the caller in Lambda's own logs.
    pub fn parse(text: &str) -> Result<TenantId, TenantError> {
        if text.is_empty() {
            return Err(TenantError::Empty);
        }
        if text.chars().count() > MAX_TENANT_LEN {
            return Err(TenantError::TooLong);
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || LAMBDA_EXTRA.contains(c))
        {
            return Err(TenantError::Character);
        }
        if text.chars().any(|c| NOT_IN_NAMES.contains(c)) {
            return Err(TenantError::NotNameSafe(text.to_owned()));
        }
        Ok(TenantId(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambdas_rule_then_the_rule_of_names() {
        for ok in ["a", "Tenant-42", "acme.corp_eu=1+x@y", &"t".repeat(256)] {
            assert_eq!(TenantId::parse(ok).expect(ok).as_str(), ok);
        }
        assert_eq!(TenantId::parse(""), Err(TenantError::Empty));
        assert_eq!(TenantId::parse(&"t".repeat(257)), Err(TenantError::TooLong));
        for bad in ["a*b", "a{b}", "é", "a\u{ff21}", "a%2Fb", "a\nb", "a\\b"] {
            assert_eq!(TenantId::parse(bad), Err(TenantError::Character), "{bad:?}");
        }
        for shape in ["a/b", "..", "a:b", "a b"] {
            let e = TenantId::parse(shape);
            if shape == ".." {
                assert!(e.is_ok(), "dots are plain characters in AWS names");
            } else {
                assert!(matches!(e, Err(TenantError::NotNameSafe(_))), "{shape}: {e:?}");
            }
        }
    }
}
