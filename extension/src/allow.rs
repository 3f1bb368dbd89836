//! The allowlist (`SECRETS_SIDECAR_ALLOW`): which ids the sidecar will fetch at all.
//!
//! Patterns are `secretsmanager:PATTERN`, `ssm:PATTERN`, or a bare `PATTERN` for both
//! sources; `*` matches any run of characters, `/` included. A request by ARN is also
//! checked against the name inside the ARN, so `secretsmanager:app/*` admits
//! `arn:aws:secretsmanager:…:secret:app/db-AbCdEf`. The check happens before any
//! upstream call, so a refused id costs nothing and reveals nothing.

use crate::model::{SecretRef, Source};

/// Why `SECRETS_SIDECAR_ALLOW` was refused. Patterns are ids, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllowError {
    #[error("'{0}' has an empty pattern")]
    EmptyPattern(String),
    #[error("no patterns given")]
    Empty,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    /// `None` applies to both sources.
    source: Option<Source>,
    glob: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowList {
    patterns: Vec<Pattern>,
}

impl AllowList {
    pub fn parse(text: &str) -> Result<Self, AllowError> {
        let mut patterns = Vec::new();
        for item in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let (source, glob) = match item.split_once(':') {
                Some(("secretsmanager", g)) => (Some(Source::SecretsManager), g),
                Some(("ssm", g)) => (Some(Source::Ssm), g),
                // An ARN pattern ("arn:aws:…") or a plain name applies to both sources.
                _ => (None, item),
            };
            if glob.is_empty() {
                return Err(AllowError::EmptyPattern(item.to_owned()));
            }
            patterns.push(Pattern {
                source,
                glob: glob.to_owned(),
            });
        }
        if patterns.is_empty() {
            return Err(AllowError::Empty);
        }
        Ok(AllowList { patterns })
    }

    /// Whether a request for `id` from `source` may proceed.
    pub fn permits(&self, source: Source, id: &str) -> bool {
        let names = names_of(source, id);
        self.patterns
            .iter()
            .filter(|p| p.source.is_none_or(|s| s == source))
            .any(|p| names.iter().any(|n| glob_match(&p.glob, n)))
    }

    /// Whether a start-up reference is covered. A path is covered only when a
    /// pattern admits every name under it: testing the path followed by a character
    /// no name can hold shows that a trailing `*` absorbs whatever follows the path.
    pub fn permits_ref(&self, r: &SecretRef) -> bool {
        match r {
            SecretRef::Secret(id) => self.permits(Source::SecretsManager, id),
            SecretRef::Parameter(id) => self.permits(Source::Ssm, id),
            SecretRef::Path(prefix) => self.permits(Source::Ssm, &format!("{prefix}\u{1}")),
        }
    }
}

/// The id itself plus, for an ARN, the resource name(s) it carries.
fn names_of(source: Source, id: &str) -> Vec<&str> {
    let mut names = vec![id];
    if !id.starts_with("arn:") {
        return names;
    }
    // arn:partition:service:region:account:resource
    let Some(resource) = id.splitn(6, ':').nth(5) else {
        return names;
    };
    match source {
        Source::SecretsManager => {
            if let Some(name) = resource.strip_prefix("secret:") {
                names.push(name);
                // Secrets Manager appends "-" and six random characters to the name.
                if let Some((base, suffix)) = name.rsplit_once('-') {
                    if suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric()) {
                        names.push(base);
                    }
                }
            }
        }
        Source::Ssm => {
            if let Some(rest) = resource.strip_prefix("parameter") {
                // "parameter/a/b" is "/a/b"; "parameter/x" may be "x" or "/x".
                names.push(rest);
                if let Some(bare) = rest.strip_prefix('/') {
                    names.push(bare);
                }
            }
        }
    }
    names
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
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    fn sources_and_arns() {
        let list = AllowList::parse("secretsmanager:app/*, ssm:/team/*").expect("valid");
        assert!(list.permits(Source::SecretsManager, "app/db"));
        assert!(
            !list.permits(Source::Ssm, "app/db"),
            "pattern is for secretsmanager only"
        );
        assert!(list.permits(
            Source::SecretsManager,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf"
        ));
        assert!(!list.permits(
            Source::SecretsManager,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-AbCdEf"
        ));
        assert!(list.permits(Source::Ssm, "/team/here/key"));
        assert!(list.permits(
            Source::Ssm,
            "arn:aws:ssm:us-east-1:123456789012:parameter/team/here/key"
        ));
        assert!(!list.permits(Source::Ssm, "/teamx/key"));
    }

    #[test]
    fn paths_need_a_covering_pattern() {
        let list = AllowList::parse("ssm:/team/*, ssm:/one/exact").expect("valid");
        assert!(list.permits_ref(&SecretRef::Path("/team/".into())));
        assert!(list.permits_ref(&SecretRef::Path("/team/sub/".into())));
        assert!(!list.permits_ref(&SecretRef::Path("/one/".into())));
    }

    #[test]
    fn empty_lists_are_errors() {
        assert_eq!(AllowList::parse(" , "), Err(AllowError::Empty));
        assert_eq!(AllowList::parse("ssm:"), Err(AllowError::EmptyPattern("ssm:".into())));
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
    }
}
