//! The `source:id` references of `SECRETS_SIDECAR_PREFETCH` and `..._REQUIRED`.

use std::fmt;

use super::{split_ssm_selector, Source, MAX_ID_LEN};

/// Why a reference list was refused. Messages quote the item: references are ids,
/// never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("'{0}' needs a prefix: secretsmanager:, secretsmanager-tag:, ssm: or ssm-path:")]
    NoPrefix(String),
    #[error("'{0}' has an empty id")]
    EmptyId(String),
    #[error("an id of '{0}:' is longer than {MAX_ID_LEN} characters")]
    TooLong(String),
    #[error("'{0}': version and label selectors cannot be prefetched; name the parameter alone")]
    Selector(String),
    #[error("'{0}': an SSM path starts with '/'")]
    RelativePath(String),
    #[error("'{0}:' is not a known prefix (use secretsmanager:, secretsmanager-tag:, ssm: or ssm-path:)")]
    UnknownPrefix(String),
    #[error("'{0}': a tag reference is KEY or KEY=VALUE with a non-empty key")]
    TagKey(String),
}

/// One entry of a reference list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// A Secrets Manager secret by name or ARN (its AWSCURRENT version).
    Secret(String),
    /// An SSM parameter by name or ARN (its latest version, decrypted).
    Parameter(String),
    /// Every parameter under an SSM path, recursively, decrypted.
    Path(String),
    /// Every secret carrying a tag: `KEY=VALUE`, or `KEY` with any value.
    Tag(String),
}

impl SecretRef {
    pub fn source(&self) -> Source {
        match self {
            SecretRef::Secret(_) | SecretRef::Tag(_) => Source::SecretsManager,
            SecretRef::Parameter(_) | SecretRef::Path(_) => Source::Ssm,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            SecretRef::Secret(id) | SecretRef::Parameter(id) | SecretRef::Path(id) | SecretRef::Tag(id) => id,
        }
    }

    /// A tag reference's key and value (`None`: any value).
    pub fn tag(&self) -> Option<(&str, Option<&str>)> {
        match self {
            SecretRef::Tag(t) => Some(match t.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (t.as_str(), None),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Secret(id) => write!(f, "secretsmanager:{id}"),
            SecretRef::Parameter(id) => write!(f, "ssm:{id}"),
            SecretRef::Path(id) => write!(f, "ssm-path:{id}"),
            SecretRef::Tag(tag) => write!(f, "secretsmanager-tag:{tag}"),
        }
    }
}

/// Parses a list separated by commas and/or whitespace. Neither service allows
/// commas or whitespace in names, so the separators are unambiguous.
pub fn parse_ref_list(text: &str) -> Result<Vec<SecretRef>, RefError> {
    let mut out = Vec::new();
    for item in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        let r = parse_ref(item)?;
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Parses one `secretsmanager:ID`, `ssm:NAME` or `ssm-path:/PREFIX/` item.
pub fn parse_ref(item: &str) -> Result<SecretRef, RefError> {
    let (kind, id) = item
        .split_once(':')
        .ok_or_else(|| RefError::NoPrefix(item.to_owned()))?;
    if id.is_empty() {
        return Err(RefError::EmptyId(item.to_owned()));
    }
    if id.len() > MAX_ID_LEN {
        return Err(RefError::TooLong(kind.to_owned()));
    }
    match kind {
        "secretsmanager" => Ok(SecretRef::Secret(id.to_owned())),
        "ssm" => {
            if split_ssm_selector(id).1.is_some() {
                return Err(RefError::Selector(item.to_owned()));
            }
            Ok(SecretRef::Parameter(id.to_owned()))
        }
        "ssm-path" => {
            if !id.starts_with('/') {
                return Err(RefError::RelativePath(item.to_owned()));
            }
            Ok(SecretRef::Path(id.to_owned()))
        }
        "secretsmanager-tag" => {
            if id.starts_with('=') {
                return Err(RefError::TagKey(item.to_owned()));
            }
            Ok(SecretRef::Tag(id.to_owned()))
        }
        other => Err(RefError::UnknownPrefix(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_and_keeps_arn_colons() {
        let refs = parse_ref_list(
            "secretsmanager:arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf,\n ssm:/app/key ssm-path:/team/",
        )
        .expect("valid list");
        assert_eq!(
            refs,
            vec![
                SecretRef::Secret("arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf".into()),
                SecretRef::Parameter("/app/key".into()),
                SecretRef::Path("/team/".into()),
            ]
        );
    }

    #[test]
    fn rejects_bad_items_with_a_reason() {
        for (item, needle) in [
            ("db", "needs a prefix"),
            ("sm:db", "not a known prefix"),
            ("ssm:", "empty id"),
            ("ssm-path:team", "starts with '/'"),
            ("ssm:/app/key:3", "selectors"),
        ] {
            let err = parse_ref_list(item).expect_err(item).to_string();
            assert!(err.contains(needle), "{item}: {err}");
        }
    }

    #[test]
    fn tags_with_and_without_a_value() {
        let refs = parse_ref_list("secretsmanager-tag:team=weather secretsmanager-tag:prefetch").expect("valid");
        assert_eq!(refs[0].tag(), Some(("team", Some("weather"))));
        assert_eq!(refs[1].tag(), Some(("prefetch", None)));
        assert_eq!(refs[0].to_string(), "secretsmanager-tag:team=weather");
        assert_eq!(refs[0].source(), Source::SecretsManager);
        assert_eq!(
            parse_ref_list("secretsmanager-tag:a=b=c").expect("valid")[0].tag(),
            Some(("a", Some("b=c"))),
            "values may hold '='"
        );
        let err = parse_ref_list("secretsmanager-tag:=x").expect_err("no key").to_string();
        assert!(err.contains("non-empty key"), "{err}");
    }

    #[test]
    fn duplicates_collapse() {
        let refs = parse_ref_list("ssm:/a,ssm:/a ssm:/b").expect("valid");
        assert_eq!(refs.len(), 2);
    }
}
