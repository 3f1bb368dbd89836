//! Requests signed as an SDK signs them (the same `aws-sigv4` signer, its default
//! settings), then verified; and every way a request can fail verification.

use super::*;
use crate::server::testing::sign_as_sdk;
use aws_smithy_types::date_time::{DateTime, Format};
use proptest::prelude::*;

const BODY: &[u8] = br#"{"SecretId":"app/db"}"#;

fn creds(key: &str, secret: &str, token: Option<&str>) -> Credentials {
    Credentials::new(key, secret, token.map(str::to_owned), None, "test")
}

fn function_creds() -> Credentials {
    creds("ASIAFUNCTION", "function-secret-key", Some("function-session-token"))
}

/// A request as an SDK sends it to the sidecar, signed with `signer` at `at`.
fn signed_request(signer: &Credentials, service: &str, at: SystemTime, body: &[u8]) -> http::Request<Vec<u8>> {
    let mut req = http::Request::post("http://localhost:2773/")
        .header("host", "localhost:2773")
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "secretsmanager.GetSecretValue")
        .header("user-agent", "aws-sdk-test/1.0")
        .header("content-length", body.len().to_string())
        .body(body.to_vec())
        .expect("request");
    sign_as_sdk(&mut req, signer, "us-east-1", service, at);
    req
}

fn check(
    req: &http::Request<Vec<u8>>,
    service: &'static str,
    known: &[Credentials],
    now: SystemTime,
) -> Result<Verified, SigError> {
    verify(
        req.method().as_str(),
        req.uri().path_and_query().map_or("/", |p| p.as_str()),
        req.headers(),
        req.body(),
        service,
        known,
        now,
    )
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

/// Verified for Secrets Manager, now, by a sidecar that knows the function's
/// credentials only: the check most tests make.
fn check_now(req: &http::Request<Vec<u8>>) -> Result<Verified, SigError> {
    check(req, "secretsmanager", &[function_creds()], now())
}

#[test]
fn a_request_signed_with_the_functions_credentials_is_verified() {
    let req = signed_request(&function_creds(), "secretsmanager", now(), BODY);
    let v = check_now(&req).expect("verified");
    assert_eq!(v.region, "us-east-1");
    assert_eq!(v.access_key_id, "ASIAFUNCTION");
    let auth = req.headers()["authorization"].to_str().expect("ascii");
    assert!(auth.contains("x-amz-security-token") && auth.contains("host"), "{auth}");
}

#[test]
fn tampering_with_anything_signed_breaks_it_and_unsigned_headers_do_not() {
    let req = signed_request(&function_creds(), "secretsmanager", now(), BODY);
    let mut body = req.clone();
    *body.body_mut() = br#"{"SecretId":"app/other"}"#.to_vec();
    assert_eq!(check_now(&body), Err(SigError::BadSignature));
    let mut target = req.clone();
    target.headers_mut().insert(
        "x-amz-target",
        http::HeaderValue::from_static("secretsmanager.PutSecretValue"),
    );
    assert_eq!(check_now(&target), Err(SigError::BadSignature));
    let mut agent = req.clone();
    agent
        .headers_mut()
        .insert("user-agent", http::HeaderValue::from_static("changed-by-a-proxy"));
    assert!(check_now(&agent).is_ok(), "user-agent is not signed");
    let mut path = req.clone();
    *path.uri_mut() = "http://localhost:2773/other".parse().expect("uri");
    assert_eq!(check_now(&path), Err(SigError::BadSignature));
}

#[test]
fn a_different_secret_key_behind_the_same_key_id_is_refused() {
    let forged = creds("ASIAFUNCTION", "guessed-secret", Some("function-session-token"));
    let req = signed_request(&forged, "secretsmanager", now(), BODY);
    assert_eq!(check_now(&req), Err(SigError::BadSignature));
}

#[test]
fn other_credentials_are_named_and_refused() {
    let assumed = creds("ASIAASSUMEDROLE", "other-secret", Some("other-token"));
    let req = signed_request(&assumed, "secretsmanager", now(), BODY);
    let err = check_now(&req).expect_err("unknown");
    assert_eq!(err, SigError::UnknownAccessKey("ASIAASSUMEDROLE".into()));
    let message = err.to_string();
    assert!(message.contains("ASIAASSUMEDROLE") && message.contains("only the function's own credentials"));
    assert!(!message.contains("other-secret") && !message.contains("other-token"));
}

#[test]
fn the_previous_and_the_next_credential_sets_are_both_accepted() {
    let previous = creds("ASIAPREVIOUS", "previous-secret", Some("previous-token"));
    let known = [function_creds(), previous.clone()];
    let req = signed_request(&previous, "secretsmanager", now(), BODY);
    assert!(check(&req, "secretsmanager", &known, now()).is_ok());
}

#[test]
fn the_session_token_must_be_the_credentials_own() {
    let mut req = signed_request(&function_creds(), "secretsmanager", now(), BODY);
    req.headers_mut().insert(
        "x-amz-security-token",
        http::HeaderValue::from_static("someone-elses-token"),
    );
    assert_eq!(check_now(&req), Err(SigError::TokenMismatch));
    let mut missing = signed_request(&function_creds(), "secretsmanager", now(), BODY);
    missing.headers_mut().remove("x-amz-security-token");
    assert_eq!(check_now(&missing), Err(SigError::TokenMismatch));
}

#[test]
fn the_date_must_be_within_five_minutes() {
    let req = signed_request(&function_creds(), "secretsmanager", now(), BODY);
    let within = now() + MAX_SKEW - Duration::from_secs(1);
    assert!(check(&req, "secretsmanager", &[function_creds()], within).is_ok());
    let late = now() + MAX_SKEW + Duration::from_secs(1);
    assert_eq!(
        check(&req, "secretsmanager", &[function_creds()], late),
        Err(SigError::Skewed)
    );
    let early = now() - MAX_SKEW - Duration::from_secs(1);
    assert_eq!(
        check(&req, "secretsmanager", &[function_creds()], early),
        Err(SigError::Skewed)
    );
}

#[test]
fn the_service_must_be_the_one_the_target_names() {
    let req = signed_request(&function_creds(), "ssm", now(), BODY);
    let err = check_now(&req).expect_err("wrong service");
    assert_eq!(
        err,
        SigError::WrongService {
            found: "ssm".into(),
            expected: "secretsmanager"
        }
    );
}

#[test]
fn malformed_authorization_headers_are_named() {
    let base = signed_request(&function_creds(), "secretsmanager", now(), BODY);
    let auth = base.headers()["authorization"].to_str().expect("ascii").to_owned();
    for (broken, why) in [
        (
            auth.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
            "not AWS4-HMAC-SHA256",
        ),
        (auth.replace("aws4_request", "aws5_request"), "credential scope"),
        (auth.replace("SignedHeaders=", "Signed="), "unknown component"),
        (auth.replace("host;", ""), "host header is not signed"),
        (format!("{}0", auth), "64 hex digits"),
    ] {
        let mut req = base.clone();
        req.headers_mut()
            .insert("authorization", http::HeaderValue::from_str(&broken).expect("header"));
        let err = check_now(&req).expect_err(why);
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    let mut unsigned = base.clone();
    unsigned.headers_mut().remove("authorization");
    assert_eq!(check_now(&unsigned), Err(SigError::Missing));
}

/// Both ways of computing the expected signature, for a request as it arrived.
fn both_signatures(req: &http::Request<Vec<u8>>) -> (Option<String>, String) {
    let headers = req.headers();
    let auth = parse_authorization(header(headers, "authorization").expect("signed")).expect("parsed");
    let date = header(headers, "x-amz-date").expect("dated");
    let body_sha256 = hex(&Sha256::digest(req.body()));
    let request = Request {
        method: req.method().as_str(),
        path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
        headers,
        body: req.body(),
        body_sha256: &body_sha256,
    };
    let at = parse_amz_date(date).expect("date");
    let creds = function_creds();
    let fast = fast_signature(&request, &auth, date, "secretsmanager", &creds);
    let aws = signature_by_aws_signer(&request, &auth, at, "secretsmanager", &creds).expect("signed");
    (fast, aws)
}

#[test]
fn the_kept_key_signature_is_aws_signers_own_and_odd_shapes_go_to_aws_signer() {
    let plain = signed_request(&function_creds(), "secretsmanager", now(), BODY);
    let (fast, aws) = both_signatures(&plain);
    assert_eq!(
        fast.as_deref(),
        Some(aws.as_str()),
        "the SDK's request takes the fast path"
    );
    let signed = plain.headers()["authorization"].to_str().expect("ascii").to_owned();
    assert!(signed.ends_with(&aws), "and both are the signature the SDK sent");
    // Spaces inside a signed value: trimmed and collapsed alike, signed and verified.
    let mut spaced = http::Request::post("http://localhost:2773/")
        .header("host", "localhost:2773")
        .header("content-type", "  application/x-amz-json-1.1  ")
        .header("x-amz-target", "secretsmanager.GetSecretValue")
        .header("x-amz-meta", "a   b  c")
        .body(BODY.to_vec())
        .expect("request");
    sign_as_sdk(&mut spaced, &function_creds(), "us-east-1", "secretsmanager", now());
    let (fast, aws) = both_signatures(&spaced);
    assert_eq!(fast.as_deref(), Some(aws.as_str()));
    assert!(check_now(&spaced).is_ok());
    // A tampered body changes both, the same way.
    let mut tampered = plain.clone();
    *tampered.body_mut() = br#"{"SecretId":"app/other"}"#.to_vec();
    let (fast, aws) = both_signatures(&tampered);
    assert_eq!(fast.as_deref(), Some(aws.as_str()));
    assert!(!signed.ends_with(&aws));
    // A query: AWS's signer canonicalises it, and the request still verifies.
    let mut query = http::Request::post("http://localhost:2773/?b=2&a=1")
        .header("host", "localhost:2773")
        .header("x-amz-target", "secretsmanager.GetSecretValue")
        .body(BODY.to_vec())
        .expect("request");
    sign_as_sdk(&mut query, &function_creds(), "us-east-1", "secretsmanager", now());
    let (fast, _) = both_signatures(&query);
    assert_eq!(fast, None, "a query goes through AWS's signer");
    assert!(check_now(&query).is_ok());
    // A signed header given twice: AWS's signer too.
    let mut twice = plain.clone();
    twice.headers_mut().append(
        "x-amz-target",
        http::HeaderValue::from_static("secretsmanager.GetSecretValue"),
    );
    assert_eq!(both_signatures(&twice).0, None);
}

#[test]
fn a_kept_key_belongs_to_its_secret_date_region_and_service() {
    let key = |secret: &str, date: &str, region: &str, service: &'static str| KEYS.key(secret, date, region, service);
    let k = key("s1", "20260102", "us-east-1", "secretsmanager");
    assert_eq!(*k, *derive_key("s1", "20260102", "us-east-1", "secretsmanager"));
    assert_eq!(*key("s1", "20260102", "us-east-1", "secretsmanager"), *k, "kept");
    for other in [
        key("s2", "20260102", "us-east-1", "secretsmanager"),
        key("s1", "20260103", "us-east-1", "secretsmanager"),
        key("s1", "20260102", "eu-west-1", "secretsmanager"),
        key("s1", "20260102", "us-east-1", "ssm"),
    ] {
        assert_ne!(*other, *k);
    }
    // The chain AWS documents: kSigning for the example in "Examples of how to derive a signing key".
    let documented = derive_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "20120215",
        "us-east-1",
        "iam",
    );
    assert_eq!(
        hex(&*documented),
        "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
    );
}

proptest! {
    /// `X-Amz-Date` parses to the instant the SDK's own formatter wrote.
    #[test]
    fn amz_dates_round_trip(secs in 0i64..4_102_444_800) {
        let text = DateTime::from_secs(secs).fmt(Format::DateTime).expect("formatted");
        let amz: String = text.chars().filter(|c| *c != '-' && *c != ':').collect();
        let parsed = parse_amz_date(&amz).expect("parsed");
        prop_assert_eq!(parsed, SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64));
    }
}
