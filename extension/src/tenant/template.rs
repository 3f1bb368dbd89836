//! `{tenant}` in a configured id, allowlist pattern or role ARN.
//!
//! A template holds the placeholder once. Resolved, it names the bound tenant's
//! secret; with `*` in its place it is the template's *claim*: every name any
//! tenant's instance could have, which no other tenant's environment may read.
//! Where the entry also holds a `*`, the placeholder must stand between `/`, `:`
//! or the entry's ends: `tenants/{tenant}-*` under tenant `a` would also match
//! tenant `a-b`'s names, so it is refused at start-up.

use super::TenantId;

pub const PLACEHOLDER: &str = "{tenant}";

/// Why an entry's template was refused. Entries are ids, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("'{0}' holds {{tenant}} more than once")]
    Repeated(String),
    #[error("'{0}' holds a brace that is not {{tenant}}")]
    Brace(String),
    #[error("'{0}': next to a '*', {{tenant}} must stand between '/', ':' or the ends, or one tenant's pattern would match another's names")]
    Undelimited(String),
}

/// Whether `text` is a template at all.
pub fn is_template(text: &str) -> bool {
    text.contains(PLACEHOLDER)
}

/// Checks a template (see the module header); `Ok` for text with no placeholder
/// and no brace.
pub fn check(text: &str) -> Result<(), TemplateError> {
    let count = text.matches(PLACEHOLDER).count();
    if count > 1 {
        return Err(TemplateError::Repeated(text.to_owned()));
    }
    let rest = text.replacen(PLACEHOLDER, "", 1);
    if rest.contains(['{', '}']) {
        return Err(TemplateError::Brace(text.to_owned()));
    }
    if count == 1 && text.contains('*') {
        let (before, after) = text.split_once(PLACEHOLDER).unwrap_or((text, ""));
        let open = before.is_empty() || before.ends_with(['/', ':']);
        let closed = after.is_empty() || after.starts_with(['/', ':']);
        if !open || !closed {
            return Err(TemplateError::Undelimited(text.to_owned()));
        }
    }
    Ok(())
}

/// The template naming `tenant`'s instance.
pub fn resolve(text: &str, tenant: &TenantId) -> String {
    text.replacen(PLACEHOLDER, tenant.as_str(), 1)
}

/// The template's claim as an allowlist glob: any tenant in the placeholder's place.
pub fn claim(text: &str) -> String {
    text.replacen(PLACEHOLDER, "*", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_resolves_and_claims() {
        let t = TenantId::parse("acme").expect("tenant");
        assert!(check("tenants/{tenant}/db").is_ok());
        assert!(check("tenants/{tenant}/*").is_ok());
        assert!(check("arn:aws:iam::111122223333:role/tenant-{tenant}").is_ok());
        assert!(check("{tenant}-db").is_ok(), "no '*': the name is one per tenant");
        assert!(check("plain/name").is_ok());
        assert_eq!(resolve("tenants/{tenant}/db", &t), "tenants/acme/db");
        assert_eq!(claim("tenants/{tenant}/db"), "tenants/*/db");
        assert!(matches!(check("a/{tenant}/{tenant}"), Err(TemplateError::Repeated(_))));
        assert!(matches!(check("a/{tenant"), Err(TemplateError::Brace(_))));
        assert!(matches!(check("a/{Tenant}/db"), Err(TemplateError::Brace(_))));
        assert!(matches!(
            check("tenants/{tenant}-*"),
            Err(TemplateError::Undelimited(_))
        ));
        assert!(matches!(check("*{tenant}/db"), Err(TemplateError::Undelimited(_))));
        assert!(!is_template("tenants/x/db"));
    }
}
