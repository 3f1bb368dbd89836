//! The SDK door's codec: an `X-Amz-Target`, headers (`Authorization`, `X-Amz-Date`,
//! `X-Amz-Security-Token`, content headers) and a JSON body, each stage as `POST /`
//! runs it: the target, the signature, the request fields. The invariant, not just
//! "no panic": every input ends as a typed refusal (one of AWS's exception types, a
//! JSON error body) or as a request the lookup can take (keys within AWS's bounds,
//! of the target's service, no id twice); and no refusal repeats the request's
//! values: the same input is run again with every value that is not an id (a
//! signature, a token, a flag, a version, a page token) replaced by a planted marker,
//! and no error body may contain it.
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use secrets_sidecar::backend::{MAX_PARAMETERS_PER_BATCH, MAX_SECRETS_PER_BATCH};
use secrets_sidecar::cache::Key;
use secrets_sidecar::model::{Source, MAX_ID_LEN};
use secrets_sidecar::server::sdk::protocol::error::MAX_ECHO;
use secrets_sidecar::server::sdk::protocol::{
    parse_request, Operation, Request, SdkError, Service, Target, MAX_PATH_RESULTS,
};
use secrets_sidecar::server::sdk::route::refusal;
use secrets_sidecar::server::sdk::sigv4;

const PLANTED: &str = "PLANTED-d41c9e";

/// The exception types a refusal of the codec may carry.
const TYPES: [&str; 6] = [
    "ValidationException",
    "UnknownOperationException",
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
];

/// Fields that name what is asked for: an error may repeat them (bounded).
const ID_FIELDS: [&str; 5] = ["SecretId", "SecretIdList", "Name", "Names", "Path"];

/// Input: the target on the first line, then `name: value` header lines, a blank
/// line, and the body.
struct Input {
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Input {
    fn parse(data: &[u8]) -> Input {
        let split = data.windows(2).position(|w| w == b"\n\n");
        let (head, body) = match split {
            Some(i) => (&data[..i], data[i + 2..].to_vec()),
            None => (data, Vec::new()),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split('\n');
        let target = lines.next().unwrap_or("").to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Input { target, headers, body }
    }

    /// The same request with every value that is not an id planted.
    fn planted(&self) -> Input {
        let headers = self
            .headers
            .iter()
            .map(|(k, v)| match k.to_ascii_lowercase().as_str() {
                "x-amz-security-token" => (k.clone(), PLANTED.to_owned()),
                "authorization" => (k.clone(), plant_signature(v)),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        let body = match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(serde_json::Value::Object(mut fields)) => {
                for (name, value) in fields.iter_mut() {
                    if !ID_FIELDS.contains(&name.as_str()) {
                        plant(value);
                    }
                }
                serde_json::to_vec(&fields).expect("json")
            }
            _ => self.body.clone(),
        };
        Input { target: self.target.clone(), headers, body }
    }

    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v.as_str())) {
                map.append(k, v);
            }
        }
        map
    }
}

/// Every string inside `value` replaced by the marker (numbers and flags become it too).
fn plant(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Array(items) => items.iter_mut().for_each(plant),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(plant),
        other => *other = serde_json::Value::String(PLANTED.to_owned()),
    }
}

fn plant_signature(authorization: &str) -> String {
    match authorization.find("Signature=") {
        Some(i) => format!("{}Signature={PLANTED}", &authorization[..i]),
        None => authorization.to_owned(),
    }
}

/// A refusal is typed, JSON, bounded, and (for a planted input) free of the marker.
fn check_refusal(e: &SdkError, planted: bool) {
    assert!(TYPES.contains(&e.type_name), "untyped refusal {}", e.type_name);
    assert!((400..500).contains(&e.status), "status {} for bad input", e.status);
    let body = e.body();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("error bodies are JSON");
    assert_eq!(v["__type"], e.type_name);
    assert!(body.len() <= MAX_ID_LEN + 2 * MAX_ECHO + 256, "an error body of {} bytes", body.len());
    if planted {
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains(PLANTED), "the error repeats a value of the request: {text}");
    }
}

/// A key the lookup can take for `service`.
fn check_key(key: &Key, service: Service) {
    let source = match service {
        Service::SecretsManager => Source::SecretsManager,
        Service::Ssm => Source::Ssm,
    };
    assert_eq!(key.source, source, "a key of the other service");
    assert!(!key.id.is_empty() && key.id.len() <= MAX_ID_LEN, "an id of {} bytes", key.id.len());
}

fn check_batch(keys: &[(String, Key)], max: usize, service: Service) {
    assert!((1..=max).contains(&keys.len()), "a batch of {}", keys.len());
    let mut seen = HashSet::new();
    for (given, key) in keys {
        assert!(seen.insert(given), "{given} asked twice");
        check_key(key, service);
    }
}

fn check_request(operation: &Operation, service: Service, request: &Request) {
    match (operation, request) {
        (Operation::GetSecretValue | Operation::GetParameter, Request::One(key)) => check_key(key, service),
        (Operation::BatchGetSecretValue, Request::Secrets(keys)) => {
            check_batch(keys, MAX_SECRETS_PER_BATCH, service)
        }
        (Operation::GetParameters, Request::Parameters(keys)) => {
            check_batch(keys, MAX_PARAMETERS_PER_BATCH, service)
        }
        (Operation::GetParametersByPath, Request::Path(p)) => {
            assert!(p.path.starts_with('/'), "a path not from the root");
            assert!((1..=MAX_PATH_RESULTS).contains(&p.max_results));
        }
        (Operation::BatchGetSecretValue | Operation::GetParametersByPath | Operation::Other(_), Request::PassThrough) => {}
        (op, r) => panic!("{op:?} read as {r:?}"),
    }
}

fn run(input: &Input, planted: bool) {
    let target = match Target::parse(&input.target) {
        Ok(t) => t,
        Err(e) => return check_refusal(&e, planted),
    };
    let headers = input.header_map();
    let known = [Credentials::new("AKIDFUZZ", "fuzz-secret-key", Some("fuzz-token".into()), None, "fuzz")];
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000);
    let service = target.service.signing_name();
    if let Err(e) = sigv4::verify("POST", "/", &headers, &input.body, service, &known, now) {
        check_refusal(&refusal(&e), planted);
    }
    match parse_request(&target.operation, &input.body) {
        Ok(request) => check_request(&target.operation, target.service, &request),
        Err(e) => check_refusal(&e, planted),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    run(&input, false);
    // An input that already holds the marker could name it as an id: only the rest is planted.
    if !data.windows(PLANTED.len()).any(|w| w == PLANTED.as_bytes()) {
        run(&input.planted(), true);
    }
});
