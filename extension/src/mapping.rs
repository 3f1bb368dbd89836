//! The mappings of `SECRETS_SIDECAR_ENV` (`NAME=source:id[#field]`) and
//! `SECRETS_SIDECAR_FILES` (`/tmp/path=source:id[#field]`): which value goes into
//! which environment variable or file.
//!
//! Both the sidecar (which prefetches the ids, and keeps the files current) and the
//! exec wrapper (which sets the variables and writes the files before the runtime
//! starts) read them, so they are parsed here, once, with the same rules. `#field`
//! picks one top-level field of a JSON value, as the HTTP API's `jsonKey` does:
//! neither service allows `#` in a name, so it cannot be part of an id.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::{parse_ref, SecretRef};

/// Files may only be written here: in Lambda the one writable place, private to the
/// execution environment.
pub const FILES_ROOT: &str = "/tmp";

/// One `TARGET=source:id[#field]` item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping<T> {
    pub target: T,
    pub reference: SecretRef,
    pub field: Option<String>,
}

pub type EnvMapping = Mapping<String>;
pub type FileMapping = Mapping<PathBuf>;

/// Why a mapping was refused. Messages quote targets and ids, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("'{0}' is not TARGET=source:id")]
    NoTarget(String),
    #[error("'{0}': {1}")]
    Reference(String, String),
    #[error("'{0}': a path or a tag names many values; map one secret or parameter")]
    Many(String),
    #[error("'{0}': the field after '#' is empty")]
    EmptyField(String),
    #[error("'{0}' is not a variable name (letters, digits and '_', not starting with a digit)")]
    BadName(String),
    #[error("'{0}' is reserved (AWS_*, LAMBDA_*, SECRETS_SIDECAR_*, _*, LD_*, PATH)")]
    Reserved(String),
    #[error("'{0}' must be an absolute path under {FILES_ROOT}/, without '.', '..' or empty segments")]
    BadPath(String),
    #[error("'{0}' is mapped twice")]
    Duplicate(String),
}

/// A mapping's target as a message names it.
pub trait Target {
    fn show(&self) -> std::borrow::Cow<'_, str>;
}

impl Target for String {
    fn show(&self) -> std::borrow::Cow<'_, str> {
        self.as_str().into()
    }
}

impl Target for PathBuf {
    fn show(&self) -> std::borrow::Cow<'_, str> {
        self.to_string_lossy()
    }
}

impl<T: Target> fmt::Display for Mapping<T> {
    /// `TARGET (source:id#field)`: what a message names when this value is missing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.target.show(), self.reference)?;
        if let Some(field) = &self.field {
            write!(f, "#{field}")?;
        }
        f.write_str(")")
    }
}

/// Parses `SECRETS_SIDECAR_ENV`: items separated by whitespace or commas.
pub fn parse_env(text: &str) -> Result<Vec<EnvMapping>, MappingError> {
    let mut out: Vec<EnvMapping> = Vec::new();
    for item in items(text) {
        let (name, reference, field) = split(item)?;
        check_name(name)?;
        if out.iter().any(|m| m.target == name) {
            return Err(MappingError::Duplicate(name.to_owned()));
        }
        out.push(Mapping {
            target: name.to_owned(),
            reference,
            field,
        });
    }
    Ok(out)
}

/// Parses `SECRETS_SIDECAR_FILES`: items separated by whitespace or commas.
pub fn parse_files(text: &str) -> Result<Vec<FileMapping>, MappingError> {
    let mut out: Vec<FileMapping> = Vec::new();
    for item in items(text) {
        let (path, reference, field) = split(item)?;
        let path = check_path(path)?;
        if out.iter().any(|m| m.target == path) {
            return Err(MappingError::Duplicate(path.display().to_string()));
        }
        out.push(Mapping {
            target: path,
            reference,
            field,
        });
    }
    Ok(out)
}

fn items(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
}

/// `TARGET=source:id[#field]` → its parts. The first `=` ends the target: neither
/// variable names nor our paths may contain one, ids may (Secrets Manager allows `=`).
fn split(item: &str) -> Result<(&str, SecretRef, Option<String>), MappingError> {
    let (target, rest) = item
        .split_once('=')
        .filter(|(t, r)| !t.is_empty() && !r.is_empty())
        .ok_or_else(|| MappingError::NoTarget(item.to_owned()))?;
    let (reference, field) = match rest.split_once('#') {
        Some((_, "")) => return Err(MappingError::EmptyField(item.to_owned())),
        Some((r, f)) => (r, Some(f.to_owned())),
        None => (rest, None),
    };
    let reference = parse_ref(reference).map_err(|e| MappingError::Reference(target.to_owned(), e.to_string()))?;
    if matches!(reference, SecretRef::Path(_) | SecretRef::Tag(_)) {
        return Err(MappingError::Many(item.to_owned()));
    }
    Ok((target, reference, field))
}

fn check_name(name: &str) -> Result<(), MappingError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(MappingError::BadName(name.to_owned()));
    }
    // Lambda's own variables (credentials, the Runtime API), ours, and the loader's:
    // overriding any of them would break or hijack the runtime rather than configure it.
    let reserved = ["AWS_", "LAMBDA_", "SECRETS_SIDECAR_", "_", "LD_"]
        .iter()
        .any(|p| name.starts_with(p))
        || name == "PATH";
    if reserved {
        return Err(MappingError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// An absolute path strictly under `/tmp`, written as it will be used: no `.` or
/// `..` segments (so it cannot climb out), no empty ones, no trailing slash.
pub fn check_path(path: &str) -> Result<PathBuf, MappingError> {
    let bad = || MappingError::BadPath(path.to_owned());
    let rest = path
        .strip_prefix(FILES_ROOT)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(bad)?;
    if rest.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") || path.len() > 4096 {
        return Err(bad());
    }
    Ok(Path::new(path).to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_items_with_fields() {
        let m = parse_env("DATABASE_URL=secretsmanager:app/db#url STRIPE_KEY=ssm:/app/stripe,X=secretsmanager:a=b")
            .expect("valid");
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].target, "DATABASE_URL");
        assert_eq!(m[0].reference, SecretRef::Secret("app/db".into()));
        assert_eq!(m[0].field.as_deref(), Some("url"));
        assert_eq!(m[1].reference, SecretRef::Parameter("/app/stripe".into()));
        assert_eq!(m[1].field, None);
        assert_eq!(m[2].reference, SecretRef::Secret("a=b".into()), "ids may hold '='");
        assert_eq!(m[0].to_string(), "DATABASE_URL (secretsmanager:app/db#url)");
        assert!(parse_env("").expect("empty").is_empty());
    }

    #[test]
    fn env_refusals_name_the_item() {
        for (text, needle) in [
            ("DATABASE_URL", "TARGET=source:id"),
            ("=ssm:/x", "TARGET=source:id"),
            ("A=db", "needs a prefix"),
            ("A=ssm-path:/app/", "many values"),
            ("A=secretsmanager-tag:team=x", "many values"),
            ("A=secretsmanager:x#", "field"),
            ("1A=ssm:/x", "variable name"),
            ("A-B=ssm:/x", "variable name"),
            ("AWS_SESSION_TOKEN=ssm:/x", "reserved"),
            ("LD_PRELOAD=ssm:/x", "reserved"),
            ("PATH=ssm:/x", "reserved"),
            ("A=ssm:/x A=ssm:/y", "twice"),
        ] {
            let err = parse_env(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn files_only_under_tmp() {
        let m = parse_files("/tmp/secrets/db.json=secretsmanager:app/db /tmp/k=ssm:/k#f").expect("valid");
        assert_eq!(m[0].target, PathBuf::from("/tmp/secrets/db.json"));
        assert_eq!(m[1].field.as_deref(), Some("f"));
        for text in [
            "/etc/passwd=ssm:/x",
            "/tmp=ssm:/x",
            "/tmp/=ssm:/x",
            "/tmpx/a=ssm:/x",
            "tmp/a=ssm:/x",
            "/tmp/../etc/passwd=ssm:/x",
            "/tmp/a/../../etc=ssm:/x",
            "/tmp/./a=ssm:/x",
            "/tmp//a=ssm:/x",
            "/tmp/a/=ssm:/x",
            "/tmp/a=ssm:/x /tmp/a=ssm:/y",
        ] {
            assert!(parse_files(text).is_err(), "{text} accepted");
        }
    }
}
