//! Query strings of the two AWS-compatible routes, parsed into a [`Lookup`]: the
//! cache [`Key`] asked for, how fresh it must be, and how to shape the answer.
//!
//! Parsing is strict: a missing id, a repeated or unknown parameter, conflicting
//! selectors or a malformed boolean is a 400 with a message naming the parameter,
//! because a silently ignored typo (`versionstage=AWSPREVIOUS`) would hand the
//! function the wrong secret.

use std::borrow::Cow;
use std::sync::Arc;

use crate::cache::{Freshness, Key};
use crate::model::{
    check_role_arn, split_ssm_selector, Scope, Selector, Source, AWSCURRENT, MAX_ID_LEN, MAX_LABEL_LEN,
};

/// How the answer is shaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// AWS's JSON response shape.
    Json,
    /// The bare value.
    Raw,
    /// One top-level field of a JSON value, as text.
    JsonKey(String),
}

/// A parsed request for one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// What is asked for: the id as given (without selector suffix), the selector,
    /// SSM's `withDecryption`.
    pub key: Key,
    /// `refreshNow=true` asks for [`Freshness::Latest`].
    pub freshness: Freshness,
    pub output: Output,
}

/// A malformed query. The message is safe to return: it names parameters, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError(msg.into()))
}

/// Parameters each route accepts.
const SM_PARAMS: &[&str] = &[
    "secretId",
    "versionId",
    "versionStage",
    "refreshNow",
    "jsonKey",
    "raw",
    "roleArn",
];
const SSM_PARAMS: &[&str] = &[
    "name",
    "version",
    "label",
    "withDecryption",
    "refreshNow",
    "jsonKey",
    "raw",
    "roleArn",
];

/// Longest `roleArn` STS accepts.
const MAX_ROLE_ARN_LEN: usize = 2048;

/// Whether a query has nothing to decode: plain ASCII, no `%` escapes, no `+`. Almost
/// every query a function sends is; its pairs are then borrowed slices, with no
/// decoding pass and no UTF-8 repair scan on the hit path.
fn is_plain(query: &str) -> bool {
    query.bytes().all(|b| b.is_ascii() && b != b'%' && b != b'+')
}

/// The pairs of a plain query, split exactly as `form_urlencoded` splits them: on `&`,
/// skipping empty pieces, at the first `=`.
fn plain_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The decoded parameters of one query, each at most once.
struct Params<'a> {
    allowed: &'static [&'static str],
    values: [Option<Cow<'a, str>>; 8],
    /// Values given and not yet taken: once 0 (usually right after the id), asking
    /// for the optional parameters costs no name comparisons.
    left: u8,
}

impl<'a> Params<'a> {
    fn parse(query: &'a str, allowed: &'static [&'static str]) -> Result<Self, QueryError> {
        let mut p = Params {
            allowed,
            values: Default::default(),
            left: 0,
        };
        if is_plain(query) {
            for (name, value) in plain_pairs(query) {
                p.set(Cow::Borrowed(name), Cow::Borrowed(value))?;
            }
        } else {
            for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                p.set(name, value)?;
            }
        }
        Ok(p)
    }

    fn set(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) -> Result<(), QueryError> {
        let allowed = self.allowed;
        let Some(slot) = allowed.iter().position(|p| *p == name) else {
            // The name is echoed (truncated): it is not a value, and naming it is
            // what makes the error actionable.
            let shown: String = name.chars().take(64).collect();
            return err(format!(
                "unknown query parameter '{shown}' (accepted: {})",
                allowed.join(", ")
            ));
        };
        // Only a decoded value can hold the replacement character: a borrowed one
        // is a slice of the URI, which is ASCII.
        if matches!(value, Cow::Owned(_)) && value.contains('\u{FFFD}') {
            return err(format!("'{}' is not valid UTF-8", allowed[slot]));
        }
        if self.values[slot].is_some() {
            return err(format!("'{}' is given more than once", allowed[slot]));
        }
        self.values[slot] = Some(value);
        self.left += 1;
        Ok(())
    }

    fn take(&mut self, name: &str) -> Option<Cow<'a, str>> {
        if self.left == 0 {
            return None;
        }
        let slot = self.allowed.iter().position(|p| *p == name)?;
        let value = self.values[slot].take()?;
        self.left -= 1;
        Some(value)
    }

    fn text(&mut self, name: &str, max: usize) -> Result<Option<Cow<'a, str>>, QueryError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => err(format!("'{name}' is empty")),
            Some(v) if v.len() > max => err(format!("'{name}' is longer than {max} characters")),
            Some(v) => Ok(Some(v)),
        }
    }

    fn freshness(&mut self) -> Result<Freshness, QueryError> {
        Ok(match self.boolean("refreshNow")? {
            true => Freshness::Latest,
            false => Freshness::Cached,
        })
    }

    fn boolean(&mut self, name: &str) -> Result<bool, QueryError> {
        match self.take(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => err(format!("'{name}' must be true or false")),
        }
    }

    /// `roleArn`: the scope of a value read with an assumed role (its own cache
    /// entries, never shared with the function's own); none: the home scope.
    fn scope(&mut self) -> Result<Scope, QueryError> {
        match self.text("roleArn", MAX_ROLE_ARN_LEN)? {
            None => Ok(Scope::HOME),
            Some(role) => match check_role_arn(&role) {
                Ok(()) => Ok(Scope::new(None, None, Some(&role))),
                Err(why) => err(format!("'roleArn' {why}")),
            },
        }
    }

    fn output(&mut self) -> Result<Output, QueryError> {
        let raw = self.boolean("raw")?;
        Ok(match self.text("jsonKey", 1024)? {
            Some(key) => Output::JsonKey(key.into_owned()),
            None if raw => Output::Raw,
            None => Output::Json,
        })
    }
}

/// `GET /secretsmanager/get?secretId=…[&versionId=…|&versionStage=…]`
pub fn parse_secrets_manager(query: &str) -> Result<Lookup, QueryError> {
    let mut p = Params::parse(query, SM_PARAMS)?;
    let Some(id) = p.text("secretId", MAX_ID_LEN)? else {
        return err("'secretId' is required");
    };
    secrets_manager_lookup(&id, p)
}

/// `GET /secretsmanager/{id}[?versionId=…|?versionStage=…]`, as AWS's newer agents
/// offer: the id is the rest of the path (slashes kept, `%2F` decoded); every other
/// parameter as on `/secretsmanager/get`.
pub fn parse_secrets_manager_path(encoded_id: &str, query: &str) -> Result<Lookup, QueryError> {
    let id = percent_decode(encoded_id)?;
    if id.is_empty() {
        return err("the path names no secret: use /secretsmanager/{id} or /secretsmanager/get?secretId=");
    }
    if id.len() > MAX_ID_LEN {
        return err(format!(
            "the secret id in the path is longer than {MAX_ID_LEN} characters"
        ));
    }
    let mut p = Params::parse(query, SM_PARAMS)?;
    if p.text("secretId", MAX_ID_LEN)?.is_some() {
        return err("the secret is named by the path: 'secretId' is not accepted here");
    }
    secrets_manager_lookup(&id, p)
}

/// A path segment's `%XX` escapes decoded (`+` stays itself, unlike in a query).
fn percent_decode(text: &str) -> Result<String, QueryError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return err("the path has a '%' not followed by two hex digits");
            };
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).or_else(|_| err("the secret id in the path is not valid UTF-8"))
}

fn secrets_manager_lookup(id: &str, mut p: Params<'_>) -> Result<Lookup, QueryError> {
    let version_id = p.text("versionId", 64)?;
    let version_stage = p.text("versionStage", 256)?;
    let selector = match (version_id, version_stage) {
        (Some(_), Some(_)) => return err("give 'versionId' or 'versionStage', not both"),
        (Some(v), None) => Selector::VersionId(v.into_owned()),
        (None, Some(s)) if s == AWSCURRENT => Selector::Current,
        (None, Some(s)) => Selector::VersionStage(s.into_owned()),
        (None, None) => Selector::Current,
    };
    Ok(Lookup {
        key: Key::new(Source::SecretsManager, Arc::from(id), selector, false).with_scope(p.scope()?),
        freshness: p.freshness()?,
        output: p.output()?,
    })
}

/// `GET /systemsmanager/parameters/get?name=…[&version=N|&label=L][&withDecryption=true]`,
/// with `name:N` and `name:label` accepted as selectors too.
pub fn parse_ssm(query: &str) -> Result<Lookup, QueryError> {
    let mut p = Params::parse(query, SSM_PARAMS)?;
    let Some(full) = p.text("name", MAX_ID_LEN)? else {
        return err("'name' is required");
    };
    let (name, suffix) = split_ssm_selector(&full);
    if name.is_empty() {
        return err("'name' has no parameter name before its selector");
    }
    let from_suffix = match suffix {
        None => None,
        Some("") => return err("'name' ends with ':' but no version or label follows"),
        Some(s) => Some(parse_ssm_selector(s)?),
    };
    let version = match p.take("version") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n >= 1 => Some(Selector::Version(n)),
            _ => return err("'version' must be a whole number from 1"),
        },
    };
    let label = p.text("label", MAX_LABEL_LEN)?.map(|l| Selector::Label(l.into_owned()));
    let selector = match (from_suffix, version, label) {
        (None, None, None) => Selector::Current,
        (Some(s), None, None) | (None, Some(s), None) | (None, None, Some(s)) => s,
        _ => return err("give one selector: 'version', 'label' or a ':' suffix on 'name'"),
    };
    let decrypt = p.boolean("withDecryption")?;
    Ok(Lookup {
        key: Key::new(Source::Ssm, Arc::from(name), selector, decrypt).with_scope(p.scope()?),
        freshness: p.freshness()?,
        output: p.output()?,
    })
}

fn parse_ssm_selector(s: &str) -> Result<Selector, QueryError> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Selector::Version(n)),
            _ => err("the version after ':' must be a whole number from 1"),
        };
    }
    if s.len() > MAX_LABEL_LEN {
        return err(format!("the label after ':' is longer than {MAX_LABEL_LEN} characters"));
    }
    Ok(Selector::Label(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Decrypt;
    use proptest::prelude::*;

    #[test]
    fn the_path_route_takes_the_id_from_the_path() {
        let l = parse_secrets_manager_path("app/db", "").expect("valid");
        assert_eq!(&*l.key.id, "app/db");
        let encoded = parse_secrets_manager_path("app%2Fdb", "versionStage=AWSPREVIOUS&jsonKey=k").expect("valid");
        assert_eq!(&*encoded.key.id, "app/db", "%2F is a slash");
        assert_eq!(encoded.key.selector, Selector::VersionStage("AWSPREVIOUS".into()));
        assert_eq!(encoded.output, Output::JsonKey("k".into()));
        assert_eq!(
            &*parse_secrets_manager_path("a+b%20c", "").expect("valid").key.id,
            "a+b c"
        );
        let same = parse_secrets_manager("secretId=app/db").expect("valid");
        assert_eq!(l.key, same.key, "one cache entry for both routes");
        for (path, query, why) in [
            ("", "", "names no secret"),
            ("app/db", "secretId=other", "not accepted here"),
            ("app%2", "", "two hex digits"),
            ("app%ff", "", "UTF-8"),
            ("app/db", "versionId=a&versionStage=b", "not both"),
        ] {
            let e = parse_secrets_manager_path(path, query).expect_err(why).to_string();
            assert!(e.contains(why), "{path}?{query}: {e}");
        }
    }

    #[test]
    fn secrets_manager_basics() {
        let l = parse_secrets_manager("secretId=app%2Fdb").expect("valid");
        assert_eq!(&*l.key.id, "app/db");
        assert_eq!(l.key.selector, Selector::Current);
        assert_eq!(l.key.decrypt, Decrypt::Irrelevant);
        assert_eq!(l.output, Output::Json);
        assert_eq!(l.freshness, Freshness::Cached);

        let l = parse_secrets_manager("secretId=x&versionStage=AWSPREVIOUS&refreshNow=true&raw=true").expect("valid");
        assert_eq!(l.key.selector, Selector::VersionStage("AWSPREVIOUS".into()));
        assert_eq!(l.freshness, Freshness::Latest);
        assert_eq!(l.output, Output::Raw);

        // AWSCURRENT is the default version: same cache entry as no selector.
        let l = parse_secrets_manager("secretId=x&versionStage=AWSCURRENT").expect("valid");
        assert_eq!(l.key.selector, Selector::Current);

        let l = parse_secrets_manager("secretId=x&versionId=0123&jsonKey=appid").expect("valid");
        assert_eq!(l.key.selector, Selector::VersionId("0123".into()));
        assert_eq!(l.output, Output::JsonKey("appid".into()));
    }

    #[test]
    fn secrets_manager_rejections() {
        for (q, needle) in [
            ("", "required"),
            ("secretId=", "empty"),
            ("versionId=1", "required"),
            ("secretId=x&versionId=1&versionStage=AWSPREVIOUS", "not both"),
            ("secretId=x&secretId=y", "more than once"),
            (
                "secretId=x&versionstage=AWSPREVIOUS",
                "unknown query parameter 'versionstage'",
            ),
            ("secretId=x&refreshNow=yes", "true or false"),
            ("secretId=%FF", "UTF-8"),
        ] {
            let e = parse_secrets_manager(q).expect_err(q);
            assert!(e.0.contains(needle), "{q}: {e}");
        }
        let long = format!("secretId={}", "a".repeat(MAX_ID_LEN + 1));
        assert!(parse_secrets_manager(&long).is_err());
    }

    #[test]
    fn ssm_selectors() {
        let l = parse_ssm("name=/app/key&withDecryption=true").expect("valid");
        assert_eq!(
            (&*l.key.id, &l.key.selector, l.key.decrypt),
            ("/app/key", &Selector::Current, Decrypt::Yes)
        );
        assert_eq!(parse_ssm("name=/app/key").expect("valid").key.decrypt, Decrypt::No);
        let l = parse_ssm("name=/app/key:3").expect("valid");
        assert_eq!(l.key.selector, Selector::Version(3));
        let l = parse_ssm("name=/app/key:prod").expect("valid");
        assert_eq!(l.key.selector, Selector::Label("prod".into()));
        let l = parse_ssm("name=/app/key&version=7").expect("valid");
        assert_eq!(l.key.selector, Selector::Version(7));
        let l = parse_ssm("name=/app/key&label=blue").expect("valid");
        assert_eq!(l.key.selector, Selector::Label("blue".into()));
        let l = parse_ssm("name=arn:aws:ssm:us-east-1:123456789012:parameter/app/key").expect("valid");
        assert_eq!(&*l.key.id, "arn:aws:ssm:us-east-1:123456789012:parameter/app/key");
        assert_eq!(l.key.selector, Selector::Current);
        let l = parse_ssm("name=arn:aws:ssm:us-east-1:123456789012:parameter/app/key:4").expect("valid");
        assert_eq!(&*l.key.id, "arn:aws:ssm:us-east-1:123456789012:parameter/app/key");
        assert_eq!(l.key.selector, Selector::Version(4));
    }

    #[test]
    fn a_role_arn_scopes_the_key_on_both_routes() {
        let role = "arn:aws:iam::210987654321:role/team/reader";
        let l = parse_secrets_manager(&format!("secretId=app/db&roleArn={role}")).expect("valid");
        assert_eq!(l.key.scope.role(), Some(role));
        assert_eq!((l.key.scope.account(), l.key.scope.region()), (None, None));
        let l = parse_ssm(&format!("name=/app/key:3&withDecryption=true&roleArn={role}")).expect("valid");
        assert_eq!(l.key.scope.role(), Some(role));
        assert_eq!(l.key.selector, Selector::Version(3));
        // Encoded the way a client library would send it.
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "secretId",
                "arn:aws:secretsmanager:eu-west-1:210987654321:secret:db-AbCdEf",
            )
            .append_pair("roleArn", role)
            .finish();
        let l = parse_secrets_manager(&q).expect("valid");
        assert_eq!(l.key.scope.role(), Some(role));
        assert!(parse_secrets_manager("secretId=app/db")
            .expect("valid")
            .key
            .scope
            .is_home());
        assert!(parse_ssm("name=/a").expect("valid").key.scope.is_home());
    }

    #[test]
    fn a_malformed_role_arn_is_refused_with_the_reason() {
        for (q, needle) in [
            ("secretId=x&roleArn=", "empty"),
            (
                "secretId=x&roleArn=reader",
                "'roleArn' must be arn:PARTITION:iam::ACCOUNT:role/NAME",
            ),
            ("secretId=x&roleArn=arn:aws:iam::123:role/r", "12-digit"),
            ("secretId=x&roleArn=arn:aws:iam::123456789012:user/r", "must be"),
            (
                "secretId=x&roleArn=arn:aws:iam::123456789012:role/r&roleArn=arn:aws:iam::123456789012:role/s",
                "more than once",
            ),
        ] {
            let e = parse_secrets_manager(q).expect_err(q);
            assert!(e.0.contains(needle), "{q}: {e}");
        }
        let e = parse_ssm("name=/a&roleArn=arn:aws:iam::123456789012:role/a%20b").expect_err("space");
        assert!(e.0.contains("role name"), "{e}");
    }

    #[test]
    fn encoded_queries_are_decoded() {
        assert!(is_plain("secretId=app/db&versionStage=AWSPREVIOUS"));
        for q in ["secretId=a%20b", "secretId=a+b"] {
            assert!(!is_plain(q), "{q}");
            assert_eq!(&*parse_secrets_manager(q).expect(q).key.id, "a b");
        }
        assert!(!is_plain("secretId=caf\u{e9}"));
        assert_eq!(
            &*parse_secrets_manager("secretId=caf\u{e9}").expect("utf-8").key.id,
            "caf\u{e9}"
        );
    }

    #[test]
    fn ssm_rejections() {
        for (q, needle) in [
            ("", "required"),
            ("name=/a&version=0", "from 1"),
            ("name=/a&version=x", "from 1"),
            ("name=/a:0", "from 1"),
            ("name=/a:", "no version or label"),
            ("name=:3", "no parameter name"),
            ("name=/a:3&label=x", "one selector"),
            ("name=/a&version=2&label=x", "one selector"),
            ("name=/a&withDecryption=1", "true or false"),
            ("name=/a&secretId=x", "unknown"),
        ] {
            let e = parse_ssm(q).expect_err(q);
            assert!(e.0.contains(needle), "{q}: {e}");
        }
    }

    proptest! {
        #[test]
        fn any_query_parses_or_errors_without_panicking(q in ".{0,200}") {
            let _ = parse_secrets_manager(&q);
            let _ = parse_ssm(&q);
        }

        #[test]
        fn plain_queries_split_as_form_urlencoded_does(q in "[a-zA-Z0-9=&/_.:-]{0,60}") {
            prop_assert!(is_plain(&q));
            let fast: Vec<(String, String)> = plain_pairs(&q).map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
            let reference: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes())
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            prop_assert_eq!(fast, reference);
        }

        #[test]
        fn encoded_ids_round_trip(id in "[a-zA-Z0-9/_+=.@-]{1,64}") {
            let q: String = form_urlencoded::Serializer::new(String::new()).append_pair("secretId", &id).finish();
            let l = parse_secrets_manager(&q).expect("valid id");
            prop_assert_eq!(&*l.key.id, id.as_str());
        }

        #[test]
        fn ssm_names_and_versions_round_trip(name in "/[a-zA-Z0-9_.-]{1,20}(/[a-zA-Z0-9_.-]{1,20}){0,3}", v in 1u64..1_000_000) {
            let q = format!("name={}:{v}", name);
            let l = parse_ssm(&q).expect("valid");
            prop_assert_eq!(&*l.key.id, name.as_str());
            prop_assert_eq!(l.key.selector, Selector::Version(v));
        }

        /// Output shape and `refreshNow` never change which entry is asked for.
        #[test]
        fn output_shape_and_refresh_do_not_change_the_key(id in "[a-z/]{1,12}", raw: bool, refresh: bool) {
            let plain = parse_secrets_manager(&format!("secretId={id}")).expect("valid");
            let other = parse_secrets_manager(&format!("secretId={id}&raw={raw}&refreshNow={refresh}&jsonKey=k")).expect("valid");
            prop_assert_eq!(plain.key, other.key);
        }
    }
}
