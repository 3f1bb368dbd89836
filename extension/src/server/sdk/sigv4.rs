//! Verifying an SDK request's SigV4 signature against the sidecar's own credentials.
//!
//! The caller signs with the function's credentials (the SDK in the function reads
//! the same role's credentials the sidecar was given). Verifying means computing
//! the signature that request would carry if those credentials had signed it, and
//! comparing in constant time. An SDK's request (to `/`, each signed header once,
//! its `SignedHeaders` sorted) gets its canonical request built here and one HMAC
//! with a signing key kept for its day, region and service, since deriving the key
//! is four HMACs of the same inputs on every request; any other shape goes through
//! the SDK's own signer (`aws-sigv4`), and tests hold the two to the same answer.
//! Before any of that, the cheap
//! checks: the `Authorization` header's shape, the service in the credential scope,
//! `X-Amz-Date` within five minutes, a known access key, and `X-Amz-Security-Token`
//! equal to that credential set's session token.
//!
//! Only what the caller signed is signed again: exactly the headers its
//! `SignedHeaders` lists (nothing excluded, nothing added), the body's SHA-256 as the
//! payload hash, the date it signed at, the region of its credential scope.
//! Credentials of another identity (an assumed role, another account) cannot be
//! verified here: [`SigError::UnknownAccessKey`] names the key so the caller knows.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use hmac::{digest::FixedOutput, Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

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

    let body_sha256 = hex(&Sha256::digest(body));
    let request = Request {
        method,
        path_and_query,
        headers,
        body,
        body_sha256: &body_sha256,
    };
    let expected = match fast_signature(&request, &auth, date_text, service, creds) {
        Some(signature) => signature,
        None => signature_by_aws_signer(&request, &auth, signed_at, service, creds)?,
    };
    if !bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        return Err(SigError::BadSignature);
    }
    Ok(Verified {
        region: auth.region.to_owned(),
        access_key_id: auth.access_key_id.to_owned(),
    })
}

/// The request being verified, and its body's SHA-256 (lower-case hex).
struct Request<'a> {
    method: &'a str,
    path_and_query: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
    body_sha256: &'a str,
}

/// The signature AWS's own signer (`aws-sigv4`) computes for exactly what the caller
/// signed: the headers its `SignedHeaders` lists, at its date, in its region.
fn signature_by_aws_signer(
    req: &Request<'_>,
    auth: &Authorization<'_>,
    signed_at: SystemTime,
    service: &'static str,
    creds: &Credentials,
) -> Result<String, SigError> {
    let (method, path_and_query, headers, body) = (req.method, req.path_and_query, req.headers, req.body);
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
    Ok(expected.signature().to_owned())
}

/// Signing keys derived lately, by credential scope: the four HMACs of the key
/// derivation are the same for every request of a day, region and service, so each
/// request costs only the canonical request's hash and one HMAC. The secret key is
/// part of what an entry is found by, so rotated credentials never meet an old key.
struct SigningKeys {
    recent: Mutex<Vec<Derived>>,
}

/// One per process: the sidecar verifies with one function's credentials.
static KEYS: SigningKeys = SigningKeys {
    recent: Mutex::new(Vec::new()),
};

struct Derived {
    secret: Zeroizing<String>,
    date: String,
    region: String,
    service: &'static str,
    key: Zeroizing<[u8; 32]>,
}

/// Scopes in use at once: the function's region, perhaps a second, across midnight.
const KEPT_KEYS: usize = 4;

impl SigningKeys {
    fn key(&self, secret: &str, date: &str, region: &str, service: &'static str) -> Zeroizing<[u8; 32]> {
        let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = recent.iter().find(|d| {
            d.service == service
                && d.date == date
                && d.region == region
                && bool::from(d.secret.as_bytes().ct_eq(secret.as_bytes()))
        });
        if let Some(d) = found {
            return d.key.clone();
        }
        let key = derive_key(secret, date, region, service);
        if recent.len() >= KEPT_KEYS {
            recent.remove(0);
        }
        recent.push(Derived {
            secret: Zeroizing::new(secret.to_owned()),
            date: date.to_owned(),
            region: region.to_owned(),
            service,
            key: key.clone(),
        });
        key
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any size");
    mac.update(data);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize_fixed());
    out
}

/// SigV4's key derivation: HMAC chained over date, region, service, `aws4_request`.
fn derive_key(secret: &str, date: &str, region: &str, service: &str) -> Zeroizing<[u8; 32]> {
    let first = Zeroizing::new(format!("AWS4{secret}"));
    let k_date = hmac(first.as_bytes(), date.as_bytes());
    let k_region = hmac(&*k_date, region.as_bytes());
    let k_service = hmac(&*k_region, service.as_bytes());
    hmac(&*k_service, b"aws4_request")
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// A header value as SigV4 canonicalises it: spaces trimmed at both ends and runs
/// of spaces collapsed to one (only spaces, as AWS's signer does).
fn push_trimmed(out: &mut String, value: &str) {
    let mut last_space = false;
    for c in value.trim_matches(' ').chars() {
        if c == ' ' {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
}

/// The signature of an SDK request to `/` (every SDK request the SDK route takes),
/// computed here with a kept signing key; `None` when the request is of a shape
/// only AWS's signer canonicalises exactly (a path or query, a header given twice,
/// a `SignedHeaders` list that is not sorted and unique, `x-amz-date` unsigned),
/// which then goes through it.
fn fast_signature(
    req: &Request<'_>,
    auth: &Authorization<'_>,
    amz_date: &str,
    service: &'static str,
    creds: &Credentials,
) -> Option<String> {
    let names = &auth.signed_headers;
    if req.path_and_query != "/" || !names.windows(2).all(|w| w[0] < w[1]) || !names.contains(&"x-amz-date") {
        return None;
    }
    let mut canonical = String::with_capacity(512);
    canonical.push_str(req.method);
    canonical.push_str("\n/\n\n");
    for name in names {
        let mut values = req.headers.get_all(*name).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        canonical.push_str(name);
        canonical.push(':');
        if *name == "x-amz-content-sha256" {
            // What AWS's signer puts there: the body's hash, whatever the header says.
            canonical.push_str(req.body_sha256);
        } else {
            push_trimmed(&mut canonical, value.to_str().ok()?);
        }
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&names.join(";"));
    canonical.push('\n');
    canonical.push_str(req.body_sha256);
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        auth.date,
        auth.region,
        service,
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let key = KEYS.key(creds.secret_access_key(), auth.date, auth.region, service);
    Some(hex(&*hmac(&*key, string_to_sign.as_bytes())))
}

#[cfg(test)]
mod tests;
