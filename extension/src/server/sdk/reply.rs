//! The SDK door's responses: `application/x-amz-json-1.1`, a request id of the
//! sidecar's own, `Cache-Control: no-store`, and on answers with values the cache
//! outcome and age both doors send (`answer`); errors carry `x-amzn-ErrorType`.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;

use super::protocol::SdkError;
use crate::cache::Answer;
use crate::server::answer::{mark, no_store, Body};

pub const JSON_1_1: HeaderValue = HeaderValue::from_static("application/x-amz-json-1.1");
pub const ERROR_TYPE: &str = "x-amzn-errortype";
pub const REQUEST_ID: &str = "x-amzn-requestid";

/// An answer made of `answers`' values.
pub fn ok<'a>(body: Bytes, answers: impl IntoIterator<Item = &'a Answer>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, JSON_1_1);
    h.insert(REQUEST_ID, request_id());
    no_store(h);
    mark(h, answers);
    resp
}

pub fn error(e: &SdkError) -> Response<Body> {
    let mut resp = Response::new(Full::new(e.body()));
    *resp.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, JSON_1_1);
    h.insert(ERROR_TYPE, HeaderValue::from_static(e.type_name));
    h.insert(REQUEST_ID, request_id());
    no_store(h);
    resp
}

/// A request id of the sidecar's own, so an SDK's logs can tell its answers apart.
fn request_id() -> HeaderValue {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("secrets-sidecar-{}-{n}", std::process::id()))
        .unwrap_or(HeaderValue::from_static("secrets-sidecar"))
}
