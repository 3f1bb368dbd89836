//! Verifying an SDK request's SigV4 signature against the sidecar's own credentials.
//!
//! The caller signs with the function's credentials (the SDK in the function reads
//! the same role's credentials the sidecar was given). Verifying means computing
//! the signature that request would carry if those credentials had signed it, with
//! the SDK's own signer (`aws-sigv4`: the canonical request, the string to sign, the
//! HMAC chain), and comparing in constant time. Before any of that, the cheap
//! checks: the `Authorization` header's shape, the service in the credential scope,
//! `X-Amz-Date` within five minutes, a known access key, and `X-Amz-Security-Token`
//! equal to that credential set's session token.
//!
//! Only what the caller signed is signed again: exactly the headers its
//! `SignedHeaders` lists (nothing excluded, nothing added), the body's SHA-256 as the
//! payload hash, the date it signed at, the region of its credential scope.
//! Credentials of another identity (an assumed role, another account) cannot be
//! verified here: [`SigError::UnknownAccessKey`] names the key so the caller knows.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::protocol::error::{clip, MAX_ECHO};

/// How far a request's `X-Amz-Date` may be from now, either way (AWS's own window).
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a request's signature was not accepted. Messages name access key ids and
/// services, never secrets or signatures.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("the request is not signed (no Authorization header)")]
    Missing,
    #[error("the Authorization header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the request is signed for service '{found}', not '{expected}'")]
    WrongService { found: String, expected: &'static str },
    #[error("X-Amz-Date is missing, malformed or more than 5 minutes from now")]
    Skewed,
    #[error(
        "the request is signed with access key '{0}': only the function's own credentials are served here \
         (a request signed with an assumed role or another account's credentials cannot be verified)"
    )]
    UnknownAccessKey(String),
    #[error("X-Amz-Security-Token does not match the credentials the request is signed with")]
    TokenMismatch,
    #[error("the signature does not match the request")]
    BadSignature,
}

/// What a verified signature says about the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The region of the credential scope: the region the caller's SDK is set to.
    pub region: String,
    pub access_key_id: String,
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SigError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or(SigError::Malformed("not AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(SigError::Malformed("unknown component")),
        }
    }
    let credential = credential.ok_or(SigError::Malformed("no Credential"))?;
    // ACCESS_KEY/yyyymmdd/region/service/aws4_request
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(SigError::Malformed(
            "the credential scope is not KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    let signed_headers: Vec<&str> = signed
        .ok_or(SigError::Malformed("no SignedHeaders"))?
        .split(';')
        .collect();
    let signature = signature.ok_or(SigError::Malformed("no Signature"))?;
    let lowercase_hex = |s: &str| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !lowercase_hex(signature) {
        return Err(SigError::Malformed("the signature is not 64 hex digits"));
    }
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(SigError::Malformed("SignedHeaders are not lower-case names"));
    }
    if !signed_headers.contains(&"host") {
        return Err(SigError::Malformed("the host header is not signed"));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// `20260102T030405Z` as a point in time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), proleptic Gregorian.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies the signature of a request for `service` (`secretsmanager`, `ssm`)
/// against `known` (the credential sets the sidecar's provider has handed out and
/// that have not expired), at `now`.
pub fn verify(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    service: &'static str,
    known: &[Credentials],
    now: SystemTime,
) -> Result<Verified, SigError> {
    let auth = parse_authorization(header(headers, "authorization").ok_or(SigError::Missing)?)?;
    if auth.service != service {
        return Err(SigError::WrongService {
            found: clip(auth.service, MAX_ECHO).to_owned(),
            expected: service,
        });
    }
    let date_text = header(headers, "x-amz-date").ok_or(SigError::Skewed)?;
    let signed_at = parse_amz_date(date_text).ok_or(SigError::Skewed)?;
    let skew = now.duration_since(signed_at).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW || !date_text.starts_with(auth.date) {
        return Err(SigError::Skewed);
    }
    let creds = known
        .iter()
        .find(|c| c.access_key_id() == auth.access_key_id)
        .ok_or_else(|| SigError::UnknownAccessKey(clip(auth.access_key_id, MAX_ECHO).to_owned()))?;
    let given_token = header(headers, "x-amz-security-token");
    let tokens_match = match (given_token, creds.session_token()) {
        (None, None) => true,
        (Some(given), Some(ours)) => bool::from(given.as_bytes().ct_eq(ours.as_bytes())),
        _ => false,
    };
    if !tokens_match {
        return Err(SigError::TokenMismatch);
    }

    // Sign again exactly what the caller signed.
    let mut signed: Vec<(&str, &str)> = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let value = header(headers, name).ok_or(SigError::Malformed("a signed header is missing"))?;
        signed.push((name, value));
    }
    let host = header(headers, "host").ok_or(SigError::Malformed("no host header"))?;
    let uri = format!("http://{host}{path_and_query}");
    let request = SignableRequest::new(method, uri, signed.into_iter(), SignableBody::Bytes(body))
        .map_err(|_| SigError::Malformed("the request line cannot be signed"))?;
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(Vec::new());
    settings.signature_location = SignatureLocation::Headers;
    settings.payload_checksum_kind = if auth.signed_headers.contains(&"x-amz-content-sha256") {
        PayloadChecksumKind::XAmzSha256
    } else {
        PayloadChecksumKind::NoHeader
    };
    settings.session_token_mode = if auth.signed_headers.contains(&"x-amz-security-token") {
        SessionTokenMode::Include
    } else {
        SessionTokenMode::Exclude
    };
    let identity: Identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|_| SigError::Malformed("signing parameters"))?
        .into();
    let expected = sign(request, &params).map_err(|_| SigError::Malformed("the request cannot be signed"))?;
    if !bool::from(expected.signature().as_bytes().ct_eq(auth.signature.as_bytes())) {
        return Err(SigError::BadSignature);
    }
    Ok(Verified {
        region: auth.region.to_owned(),
        access_key_id: auth.access_key_id.to_owned(),
    })
}

#[cfg(test)]
mod tests;
