//! Who may ask: the token header, compared in constant time, and no forwarded requests.
//!
//! `X-Forwarded-For` means a proxy relayed the request from elsewhere; the sidecar
//! only serves the processes beside it, so such requests are refused outright.

use http::{HeaderMap, HeaderName};

use super::error::ApiError;
use crate::token::Token;

// Pre-built names: looking headers up by `&str` parses and hashes the name each time.
const TOKEN: HeaderName = HeaderName::from_static(crate::token::HEADER);
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

pub fn check(token: &Token, headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(FORWARDED_FOR) {
        return Err(ApiError::ForwardedFor);
    }
    let mut presented = headers.get_all(TOKEN).iter();
    let Some(first) = presented.next() else {
        return Err(ApiError::MissingToken);
    };
    // Two token headers are ambiguous; refuse rather than pick one.
    if presented.next().is_some() || !token.matches(first.as_bytes()) {
        return Err(ApiError::WrongToken);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::HEADER;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn token_rules() {
        let t = Token::new("tok").expect("token");
        assert_eq!(check(&t, &headers(&[(HEADER, "tok")])), Ok(()));
        assert_eq!(
            check(&t, &headers(&[("X-Aws-Parameters-Secrets-Token", "tok")])),
            Ok(())
        );
        assert_eq!(check(&t, &headers(&[])), Err(ApiError::MissingToken));
        assert_eq!(check(&t, &headers(&[(HEADER, "nope")])), Err(ApiError::WrongToken));
        assert_eq!(
            check(&t, &headers(&[(HEADER, "tok"), (HEADER, "tok")])),
            Err(ApiError::WrongToken)
        );
        assert_eq!(
            check(&t, &headers(&[(HEADER, "tok"), ("x-forwarded-for", "10.0.0.1")])),
            Err(ApiError::ForwardedFor)
        );
    }
}
