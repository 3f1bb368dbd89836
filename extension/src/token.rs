//! The token every request (but `/ping`) must carry in `X-Aws-Parameters-Secrets-Token`.
//!
//! In Lambda it is `AWS_SESSION_TOKEN`, exactly as with AWS's extension, so only
//! code that can read the function's credentials can read its secrets. Where Lambda
//! sets no session token (SnapStart, whose credentials come from a container
//! credentials endpoint) it is `AWS_CONTAINER_AUTHORIZATION_TOKEN`, as AWS's agent
//! does too. A variable set but blank counts as unset (AWS's emulator sets
//! `AWS_SESSION_TOKEN=""` when it has none: an empty token would admit anyone). Standalone,
//! the first of `SECRETS_SIDECAR_TOKEN` (a value, or `file:///path` to read),
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN` and `AWS_SESSION_TOKEN` is used; with none
//! the sidecar refuses to start rather than serve secrets to anyone.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::config::{vars, Env};
use crate::secret::SecretBytes;

pub const HEADER: &str = "x-aws-parameters-secrets-token";
const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
const CONTAINER_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";

pub struct Token(SecretBytes);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn new(value: &str) -> Option<Token> {
        let v = value.trim();
        (!v.is_empty()).then(|| Token(SecretBytes::new(v.as_bytes().to_vec())))
    }

    /// Compares in constant time for a given length: the time taken says nothing
    /// about how many leading bytes were right.
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.expose().ct_eq(presented))
    }
}

/// Why no token could be set up. Messages name variables and paths, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0} is not valid UTF-8")]
    NotUnicode(&'static str),
    #[error("neither {SESSION_TOKEN} nor {CONTAINER_TOKEN} is set; Lambda sets one of them for the function's role")]
    NoSessionToken,
    #[error("{}: cannot read the token file {path}: {reason}", vars::TOKEN)]
    Unreadable { path: String, reason: String },
    #[error("{var}: the token file {path} is empty", var = vars::TOKEN, path = .0)]
    EmptyFile(String),
    #[error("{} is empty", vars::TOKEN)]
    Empty,
    #[error(
        "no token: set {} (a value or file:///path), {CONTAINER_TOKEN} or {SESSION_TOKEN}",
        vars::TOKEN
    )]
    NoToken,
}

fn var(env: &impl Env, name: &'static str) -> Result<Option<String>, TokenError> {
    env.get(name)
        .map_err(|_| TokenError::NotUnicode(name))
        .map(|v| v.filter(|s| !s.trim().is_empty()))
}

/// The token in Lambda: the function's session token, or (SnapStart) the token of
/// the container credentials endpoint.
pub fn for_lambda(env: &impl Env) -> Result<Token, TokenError> {
    for name in [SESSION_TOKEN, CONTAINER_TOKEN] {
        if let Some(t) = var(env, name)?.and_then(|v| Token::new(&v)) {
            return Ok(t);
        }
    }
    Err(TokenError::NoSessionToken)
}

/// The token outside Lambda.
pub fn for_standalone(env: &impl Env) -> Result<Token, TokenError> {
    if let Some(v) = var(env, vars::TOKEN)? {
        if let Some(path) = v.strip_prefix("file://") {
            let text = std::fs::read_to_string(path).map_err(|e| TokenError::Unreadable {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            return Token::new(&text).ok_or_else(|| TokenError::EmptyFile(path.to_owned()));
        }
        return Token::new(&v).ok_or(TokenError::Empty);
    }
    for name in [CONTAINER_TOKEN, SESSION_TOKEN] {
        if let Some(t) = var(env, name)?.and_then(|v| Token::new(&v)) {
            return Ok(t);
        }
    }
    Err(TokenError::NoToken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn matches_only_the_exact_token() {
        let t = Token::new("abc123").expect("token");
        assert!(t.matches(b"abc123"));
        assert!(!t.matches(b"abc124"));
        assert!(!t.matches(b"abc12"));
        assert!(!t.matches(b"abc1234"));
        assert!(!t.matches(b""));
    }

    #[test]
    fn lambda_uses_the_session_token_else_the_container_token() {
        let both = [
            ("AWS_SESSION_TOKEN", "sess"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container"),
            (vars::TOKEN, "other"),
        ];
        assert!(for_lambda(&env(&both)).expect("token").matches(b"sess"));
        // SnapStart: no session token; AWS's emulator sets it empty.
        let snap = [
            ("AWS_SESSION_TOKEN", " "),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container"),
        ];
        assert!(for_lambda(&env(&snap)).expect("token").matches(b"container"));
        assert!(for_lambda(&env(&snap[1..])).expect("token").matches(b"container"));
        // Our own variable is not a Lambda token source.
        assert!(for_lambda(&env(&both[2..])).is_err());
        assert!(for_lambda(&env(&[("AWS_SESSION_TOKEN", "")])).is_err());
    }

    #[test]
    fn standalone_precedence() {
        let all = [
            (vars::TOKEN, "mine"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container"),
            ("AWS_SESSION_TOKEN", "sess"),
        ];
        assert!(for_standalone(&env(&all)).expect("token").matches(b"mine"));
        assert!(for_standalone(&env(&all[1..])).expect("token").matches(b"container"));
        assert!(for_standalone(&env(&all[2..])).expect("token").matches(b"sess"));
        let err = for_standalone(&env(&[])).expect_err("no token");
        assert!(err.to_string().contains(vars::TOKEN));
    }

    #[test]
    fn token_from_a_file() {
        let dir = std::env::temp_dir().join(format!("sidecar-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("token");
        std::fs::write(&path, "from-file\n").expect("write");
        let t = for_standalone(&env(&[(vars::TOKEN, &format!("file://{}", path.display()))])).expect("token");
        assert!(t.matches(b"from-file"));
        let err = for_standalone(&env(&[(vars::TOKEN, "file:///nonexistent/token")])).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/token"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(format!("{:?}", Token::new("abc").expect("token")), "Token(<redacted>)");
    }
}
