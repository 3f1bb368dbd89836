//! The allowlist (`SECRETS_SIDECAR_ALLOW`): which secrets and parameters the sidecar
//! serves, decided on the identity AWS returns.
//!
//! Patterns are `secretsmanager:PATTERN`, `ssm:PATTERN`, a bare `PATTERN` for both
//! sources, or `role:PATTERN` for the roles `roleArn` may name; `*` matches any run of
//! characters, `/` included. A pattern starting with `arn:` matches ARNs, any other
//! matches names. A name pattern matches that name in whatever region and account
//! the request reaches; an ARN pattern can pin both.
//!
//! A request is checked twice:
//! 1. [`AllowList::could_name`], before any upstream call: an id that cannot name an
//!    allowed secret whatever AWS answers is refused at once, costing nothing and
//!    revealing nothing. Ids whose identity only AWS can settle pass: a partial ARN
//!    (`…:secret:app/db-evil12` may be `app/db` with suffix `evil12`, or a secret
//!    named `app/db-evil12`), an SSM reference to a secret.
//! 2. [`AllowList::permits_value`], on what AWS returned (the secret's `Name` and
//!    `ARN`; the parameter's, or for `/aws/reference/secretsmanager/…` the referenced
//!    secret's), before the value is stored, aliased or served. The cache applies it.
//!
//! [`AllowList::names_exactly`] tells a not-found answer for an id that names an
//! allowed identity as written (passed on as 404) from one for a look-alike (403:
//! the caller learns nothing about secrets outside the list).

use std::sync::{Arc, OnceLock};

use crate::backend::Value;
use crate::model::{SecretRef, Source};
use crate::tenant::template::{self, TemplateError};
use crate::tenant::TenantId;

/// Where SSM serves Secrets Manager secrets as parameters.
pub const SECRET_REFERENCE_PREFIX: &str = "/aws/reference/secretsmanager/";

/// Why `SECRETS_SIDECAR_ALLOW` was refused. Patterns are ids, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllowError {
    #[error("'{0}' has an empty pattern")]
    EmptyPattern(String),
    #[error("no patterns given")]
    Empty,
    #[error(transparent)]
    Template(#[from] TemplateError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    /// `None` applies to both sources.
    source: Option<Source>,
    glob: String,
}

impl Pattern {
    fn applies_to(&self, source: Source) -> bool {
        self.source.is_none_or(|s| s == source)
    }

    fn is_arn(&self) -> bool {
        self.glob.starts_with("arn:")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowList {
    patterns: Vec<Pattern>,
    /// `role:` patterns: the roles `roleArn` may name. None: no role may be assumed.
    roles: Vec<String>,
    /// Items holding `{tenant}`, as written: they match nothing until the tenant is
    /// bound, then as their resolved form (`bound`).
    templates: Vec<String>,
    /// The templates resolved for the bound tenant; shared by every clone, so the
    /// cache's copy and the server's are bound together.
    bound: Arc<OnceLock<Resolved>>,
}

/// The patterns and roles of the templates, resolved.
#[derive(Debug, Default, PartialEq, Eq)]
struct Resolved {
    patterns: Vec<Pattern>,
    roles: Vec<String>,
}

/// One item of the list.
enum Item {
    Pattern(Pattern),
    Role(String),
}

/// Parses one item (no placeholder left in it).
fn parse_item(item: &str) -> Result<Item, AllowError> {
    let (source, glob) = match item.split_once(':') {
        Some(("secretsmanager", g)) => (Some(Source::SecretsManager), g),
        Some(("ssm", g)) => (Some(Source::Ssm), g),
        Some(("role", g)) => {
            if g.is_empty() {
                return Err(AllowError::EmptyPattern(item.to_owned()));
            }
            return Ok(Item::Role(g.to_owned()));
        }
        // An ARN pattern ("arn:aws:…") or a plain name applies to both sources.
        _ => (None, item),
    };
    if glob.is_empty() {
        return Err(AllowError::EmptyPattern(item.to_owned()));
    }
    Ok(Item::Pattern(Pattern {
        source,
        glob: glob.to_owned(),
    }))
}

/// Who a value is, as far as the allowlist is concerned: the names it may go by and
/// its ARN(s).
#[derive(Debug, Default)]
struct Identity<'a> {
    names: Vec<std::borrow::Cow<'a, str>>,
    arns: Vec<&'a str>,
}

impl AllowList {
    pub fn parse(text: &str) -> Result<Self, AllowError> {
        let mut patterns = Vec::new();
        let mut roles = Vec::new();
        let mut templates = Vec::new();
        for item in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            template::check(item)?;
            if template::is_template(item) {
                // Checked as it will be once resolved.
                parse_item(&item.replacen(template::PLACEHOLDER, "t", 1))?;
                templates.push(item.to_owned());
                continue;
            }
            match parse_item(item)? {
                Item::Pattern(p) => patterns.push(p),
                Item::Role(r) => roles.push(r),
            }
        }
        if patterns.is_empty() && roles.is_empty() && templates.is_empty() {
            return Err(AllowError::Empty);
        }
        Ok(AllowList {
            patterns,
            roles,
            templates,
            bound: Arc::default(),
        })
    }

    /// The items holding `{tenant}`, as written.
    pub fn templates(&self) -> &[String] {
        &self.templates
    }

    /// Resolves the templates for `tenant`, once: every clone of this list then
    /// allows the tenant's instances. A second call changes nothing.
    pub fn bind_tenant(&self, tenant: &TenantId) {
        let mut resolved = Resolved::default();
        for t in &self.templates {
            // Checked at parse; a resolved item parses as its probe did.
            match parse_item(&template::resolve(t, tenant)) {
                Ok(Item::Pattern(p)) => resolved.patterns.push(p),
                Ok(Item::Role(r)) => resolved.roles.push(r),
                Err(_) => {}
            }
        }
        let _ = self.bound.set(resolved);
    }

    /// Every pattern in force: the plain ones and, once bound, the resolved templates.
    fn all_patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.patterns
            .iter()
            .chain(self.bound.get().into_iter().flat_map(|r| r.patterns.iter()))
    }

    /// Whether a request for `id` may go upstream: some answer AWS could give names
    /// an allowed identity. Checked before any call.
    pub fn could_name(&self, source: Source, id: &str) -> bool {
        self.requested(source, id, true)
    }

    /// Whether `id`, as written, names an allowed identity (no suffix taken off a
    /// partial ARN): a not-found answer for it is the truth, not an oracle.
    pub fn names_exactly(&self, source: Source, id: &str) -> bool {
        self.requested(source, id, false)
    }

    /// Whether the value AWS returned may be stored and served.
    pub fn permits_value(&self, source: Source, value: &Value) -> bool {
        match source {
            Source::SecretsManager => self.matches(Source::SecretsManager, &secret_identity(&value.name, &value.arn)),
            Source::Ssm => match value.referenced_secret() {
                Some((name, arn)) => {
                    self.matches(Source::SecretsManager, &secret_identity(name, arn))
                        || self.matches(
                            Source::Ssm,
                            &Identity {
                                names: vec![format!("{SECRET_REFERENCE_PREFIX}{name}").into()],
                                arns: vec![],
                            },
                        )
                }
                // A reference whose secret AWS did not name cannot be checked: refused.
                None if value.name.starts_with(SECRET_REFERENCE_PREFIX) => false,
                None => self.matches(Source::Ssm, &parameter_identity(&value.name, &value.arn)),
            },
        }
    }

    /// Whether a secret listed with this name and (full) ARN may be fetched.
    pub fn permits_secret(&self, name: &str, arn: &str) -> bool {
        self.matches(Source::SecretsManager, &secret_identity(name, arn))
    }

    /// Whether a parameter returned with this name and ARN (empty when AWS gave
    /// none) may be served.
    pub fn permits_parameter(&self, name: &str, arn: &str) -> bool {
        if name.starts_with(SECRET_REFERENCE_PREFIX) {
            // A reference's secret is named only in a GetParameter answer.
            return false;
        }
        self.matches(Source::Ssm, &parameter_identity(name, arn))
    }

    /// Whether `roleArn` may name this role.
    pub fn permits_role(&self, role_arn: &str) -> bool {
        let bound = self.bound.get().into_iter().flat_map(|r| r.roles.iter());
        self.roles.iter().chain(bound).any(|g| glob_match(g, role_arn))
    }

    /// Whether a start-up reference is covered. A path is covered only when a
    /// pattern admits every name under it: testing the path followed by a character
    /// no name can hold shows that a trailing `*` absorbs whatever follows the path.
    pub fn permits_ref(&self, r: &SecretRef) -> bool {
        match r {
            SecretRef::Secret(id) => self.could_name(Source::SecretsManager, id),
            SecretRef::Parameter(id) => self.could_name(Source::Ssm, id),
            // Which secrets carry a tag is known only once listed; each is checked then.
            SecretRef::Tag(_) => true,
            SecretRef::Path(prefix) => self.matches(
                Source::Ssm,
                &Identity {
                    names: vec![format!("{prefix}\u{1}").into()],
                    arns: vec![],
                },
            ),
        }
    }

    fn requested(&self, source: Source, id: &str, loose: bool) -> bool {
        match source {
            Source::SecretsManager => self.requested_secret(id, loose),
            Source::Ssm => match id.strip_prefix(SECRET_REFERENCE_PREFIX) {
                Some(secret) => {
                    self.requested_secret(secret, loose)
                        || self.matches(
                            Source::Ssm,
                            &Identity {
                                names: vec![id.into()],
                                arns: vec![],
                            },
                        )
                }
                None => self.requested_parameter(id),
            },
        }
    }

    /// A secret asked for by name, partial ARN or full ARN. `loose`: a trailing
    /// `-XXXXXX` of an ARN may be Secrets Manager's suffix, so the name without it
    /// is a candidate too. An ARN pattern may end in a suffix the request leaves
    /// out (a partial ARN), so it is also tried without it.
    fn requested_secret(&self, id: &str, loose: bool) -> bool {
        let Some(resource) = arn_resource(id) else {
            // A name: its ARN will be some `…:secret:NAME-XXXXXX`.
            return self.all_patterns().any(|p| {
                p.applies_to(Source::SecretsManager)
                    && if p.is_arn() {
                        arn_pattern_could_name(&p.glob, id)
                    } else {
                        glob_match(&p.glob, id)
                    }
            });
        };
        let Some(name) = resource.strip_prefix("secret:") else {
            return false;
        };
        let base = loose.then(|| strip_suffix(name)).flatten();
        self.all_patterns()
            .filter(|p| p.applies_to(Source::SecretsManager))
            .any(|p| {
                if p.is_arn() {
                    glob_match(&p.glob, id) || strip_suffix(&p.glob).is_some_and(|g| glob_match(g, id))
                } else {
                    glob_match(&p.glob, name) || base.is_some_and(|b| glob_match(&p.glob, b))
                }
            })
    }

    fn requested_parameter(&self, id: &str) -> bool {
        if id.starts_with("arn:") {
            return self.matches(Source::Ssm, &parameter_identity(id, id));
        }
        let slashed = if id.starts_with('/') {
            std::borrow::Cow::Borrowed(id)
        } else {
            format!("/{id}").into()
        };
        self.all_patterns().any(|p| {
            p.applies_to(Source::Ssm)
                && if p.is_arn() {
                    arn_resource(&p.glob)
                        .and_then(|r| r.strip_prefix("parameter"))
                        .is_some_and(|r| glob_match(r, &slashed))
                } else {
                    glob_match(&p.glob, id)
                }
        })
    }

    fn matches(&self, source: Source, identity: &Identity<'_>) -> bool {
        self.all_patterns().filter(|p| p.applies_to(source)).any(|p| {
            if p.is_arn() {
                identity.arns.iter().any(|a| glob_match(&p.glob, a))
            } else {
                identity.names.iter().any(|n| glob_match(&p.glob, n))
            }
        })
    }
}

/// A secret as AWS returned it: its name, and its ARN (always full in an answer).
fn secret_identity<'a>(name: &'a str, arn: &'a str) -> Identity<'a> {
    Identity {
        names: vec![name.into()],
        arns: vec![arn],
    }
}

/// A parameter as AWS returned it. Shared parameters come back named by ARN; a
/// name is derived from the ARN then (`…:parameter/a/b` is `/a/b`, `…:parameter/x`
/// is `x`, which SSM also answers as `/x`).
fn parameter_identity<'a>(name: &'a str, arn: &'a str) -> Identity<'a> {
    let mut identity = Identity {
        names: Vec::new(),
        arns: vec![arn],
    };
    if !name.starts_with("arn:") {
        identity.names.push(name.into());
    }
    if let Some(rest) = arn_resource(arn).and_then(|r| r.strip_prefix("parameter")) {
        if !rest.is_empty() {
            identity.names.push(rest.into());
            if let Some(bare) = rest.strip_prefix('/').filter(|b| !b.contains('/')) {
                identity.names.push(bare.into());
            }
        }
    }
    identity
}

/// `arn:partition:service:region:account:resource` → `resource`.
fn arn_resource(id: &str) -> Option<&str> {
    if !id.starts_with("arn:") {
        return None;
    }
    id.splitn(6, ':').nth(5)
}

/// `text` without a trailing `-` and six letters or digits (Secrets Manager's suffix).
fn strip_suffix(text: &str) -> Option<&str> {
    let (base, suffix) = text.rsplit_once('-')?;
    (suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric())).then_some(base)
}

/// Whether a secret named `name` could have an ARN matched by the ARN pattern `glob`.
fn arn_pattern_could_name(glob: &str, name: &str) -> bool {
    let Some(resource) = arn_resource(glob).and_then(|r| r.strip_prefix("secret:")) else {
        return false;
    };
    let without = strip_suffix(resource).unwrap_or(resource);
    glob_match(without, name) || glob_match(resource, &format!("{name}-"))
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last star absorb one more character and retry.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests;
