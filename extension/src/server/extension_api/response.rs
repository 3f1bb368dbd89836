//! Building responses: values in the shape asked for, errors as JSON, ping, metrics.
//!
//! Value bodies are the cached [`Bytes`] themselves (a reference-count increment), so
//! a hit formats nothing. Every response says `Cache-Control: no-store`; values
//! carry the cache outcome and their age (`answer`).

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;

use super::error::ApiError;
use super::query::Output;
use crate::cache::Answer;
use crate::server::answer::{mark, no_store, Body};

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");
const PROMETHEUS: HeaderValue = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");

fn build(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, content_type);
    no_store(resp.headers_mut());
    resp
}

/// A value, shaped by `output`.
pub fn value(answer: &Answer, output: &Output) -> Result<Response<Body>, ApiError> {
    let v = &answer.value;
    let (content_type, body) = match output {
        Output::Json => (JSON, v.body.clone()),
        Output::Raw if v.binary => (OCTETS, v.raw()),
        Output::Raw => (TEXT, v.raw()),
        Output::JsonKey(key) => match v.json_field(key) {
            Ok(Some(field)) => (TEXT, field),
            Ok(None) => return Err(ApiError::JsonKeyMissing),
            Err(_) => return Err(ApiError::NotJsonObject),
        },
    };
    let mut resp = build(StatusCode::OK, content_type, body);
    mark(resp.headers_mut(), [answer]);
    Ok(resp)
}

pub fn error(e: &ApiError) -> Response<Body> {
    let body = serde_json::json!({ "error": e.code(), "message": e.to_string() });
    let mut resp = build(e.status(), JSON, Bytes::from(body.to_string()));
    if matches!(e, ApiError::MethodNotAllowed) {
        resp.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET"));
    }
    resp
}

pub fn ping(ready: bool) -> Response<Body> {
    let body: &'static [u8] = if ready {
        br#"{"status":"ok","ready":true}"#
    } else {
        br#"{"status":"ok","ready":false}"#
    };
    build(StatusCode::OK, JSON, Bytes::from_static(body))
}

pub fn metrics(text: String) -> Response<Body> {
    build(StatusCode::OK, PROMETHEUS, Bytes::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{SecretFields, UpstreamError, Value};
    use crate::cache::Outcome;
    use crate::server::answer::CACHE_HEADER;
    use crate::server::lookup::Refusal;
    use http::header::{AGE, CACHE_CONTROL};
    use std::sync::Arc;
    use std::time::Duration;

    fn served(s: Option<&str>, b: Option<&[u8]>) -> Answer {
        Answer {
            value: Arc::new(Value::from_secret(SecretFields {
                arn: "arn".into(),
                name: "n".into(),
                version_id: None,
                secret_string: s.map(str::to_owned),
                secret_binary: b.map(<[u8]>::to_vec),
                version_stages: vec![],
                created_date: None,
            })),
            outcome: Outcome::Stale,
            age: Duration::from_secs(42),
        }
    }

    #[test]
    fn value_shapes_and_headers() {
        let s = served(Some("{\"k\":\"v\"}"), None);
        let r = value(&s, &Output::Json).expect("ok");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[CACHE_HEADER], "stale");
        assert_eq!(r.headers()[AGE], "42");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        let r = value(&s, &Output::Raw).expect("ok");
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        let r = value(&s, &Output::JsonKey("k".into())).expect("ok");
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(
            value(&s, &Output::JsonKey("x".into())).expect_err("missing"),
            ApiError::JsonKeyMissing
        );
        let b = served(None, Some(&[1, 2]));
        assert_eq!(
            value(&b, &Output::Raw).expect("ok").headers()[CONTENT_TYPE],
            "application/octet-stream"
        );
        assert_eq!(
            value(&b, &Output::JsonKey("k".into())).expect_err("binary"),
            ApiError::NotJsonObject
        );
    }

    #[test]
    fn errors_are_json_with_status() {
        let r = error(&ApiError::Refused(Refusal::Upstream(UpstreamError::new(
            crate::backend::ErrorKind::Throttled,
            "slow down",
        ))));
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let r = error(&ApiError::MethodNotAllowed);
        assert_eq!(r.headers()[http::header::ALLOW], "GET");
    }
}
