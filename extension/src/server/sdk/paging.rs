//! The `NextToken`s of GetParametersByPath as the sidecar issues them: an offset
//! into the cached listing, bound to the request it continues (path, recursion,
//! decryption, page size) with a per-process key, so a token cannot be forged to
//! skip the check or reused for another request.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use super::protocol::PathRequest;

const TOKEN_PREFIX: &str = "secrets-sidecar.1.";

/// What a token is bound to.
pub fn token_check(r: &PathRequest) -> u64 {
    static KEY: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    KEY.get_or_init(foldhash::fast::RandomState::default)
        .hash_one((&r.path, r.recursive, r.decrypt, r.max_results))
}

pub fn issue_token(offset: usize, check: u64) -> String {
    format!("{TOKEN_PREFIX}{offset}.{check:016x}")
}

/// The offset a token continues from, if it was issued for this request.
pub fn parse_token(token: &str, check: u64) -> Option<usize> {
    let (offset, sum) = token.strip_prefix(TOKEN_PREFIX)?.split_once('.')?;
    (u64::from_str_radix(sum, 16).ok()? == check).then_some(())?;
    offset.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> PathRequest {
        PathRequest {
            path: path.into(),
            recursive: true,
            decrypt: true,
            max_results: 10,
            next_token: None,
        }
    }

    #[test]
    fn tokens_continue_only_the_request_they_were_issued_for() {
        let check = token_check(&request("/app"));
        let token = issue_token(20, check);
        assert_eq!(parse_token(&token, check), Some(20));
        assert_eq!(parse_token(&token, token_check(&request("/other"))), None);
        let mut flat = request("/app");
        flat.recursive = false;
        assert_eq!(parse_token(&token, token_check(&flat)), None);
        assert_eq!(parse_token("AAAA", check), None);
        assert_eq!(parse_token(&format!("{TOKEN_PREFIX}x.{check:016x}"), check), None);
    }
}
