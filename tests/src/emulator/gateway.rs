//! Front doors to an emulated function.
//!
//! - [`serve_rie`]: `POST /2015-03-31/functions/function/invocations`, the Runtime
//!   Interface Emulator's endpoint (payload in, function response out; with tenant
//!   isolation, the tenant in `X-Amz-Tenant-Id`, and 400 for an invoke refused).
//! - [`serve_http_api`]: an API-Gateway-like HTTP server for one route template such
//!   as `/{provider}/{latitude}/{longitude}`: each matching request becomes an HTTP API
//!   (payload format 2.0) event, and the function's result becomes the HTTP response.
//!   Other paths get API Gateway's `404 {"message":"Not Found"}` without an invoke.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Result;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use super::{epoch_ms, Emulator, Outcome};
use crate::net::{self, Server};

type Resp = Response<Full<Bytes>>;

/// A running front door; stops when dropped.
pub struct FrontDoor {
    pub port: u16,
    _server: Server,
}

impl FrontDoor {
    fn new(server: Server) -> Self {
        FrontDoor {
            port: server.port(),
            _server: server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert("content-type", v);
    }
    r
}

/// The RIE-compatible invoke endpoint on `addr` (port 0 picks a free one).
pub async fn serve_rie(emulator: Emulator, addr: SocketAddr) -> Result<FrontDoor> {
    let service = service_fn(move |req| {
        let emulator = emulator.clone();
        async move { Ok::<_, Infallible>(rie_invoke(&emulator, req).await) }
    });
    let server = net::serve(TcpListener::bind(addr).await?, service)?;
    Ok(FrontDoor::new(server))
}

/// One request to the RIE endpoint: the payload in, the function's result out.
async fn rie_invoke(emulator: &Emulator, req: Request<Incoming>) -> Resp {
    if req.method() != Method::POST || req.uri().path() != "/2015-03-31/functions/function/invocations" {
        return respond(StatusCode::NOT_FOUND, "application/json", r#"{"message":"Not Found"}"#);
    }
    // AWS's emulator reads the tenant from `X-Amz-Tenant-Id` (`rie/handlers.go`); a
    // function without tenant isolation ignores it here.
    let tenant = req
        .headers()
        .get("x-amz-tenant-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let invoked = match tenant {
        Some(t) if emulator.config().tenant_isolation => emulator.invoke_for_tenant(&t, body).await,
        _ => emulator.invoke(body).await,
    };
    match invoked.outcome {
        Outcome::Response(b) => respond(StatusCode::OK, "application/json", b),
        Outcome::FunctionError { error_type, body } => {
            let mut r = respond(StatusCode::OK, "application/json", body);
            if let Ok(v) = http::HeaderValue::from_str(&error_type) {
                r.headers_mut().insert("x-amz-function-error", v);
            }
            r
        }
        Outcome::Timeout => {
            let secs = emulator.config().timeout.as_secs_f64();
            let body = json!({"errorType": "Sandbox.Timedout", "errorMessage": format!("Task timed out after {secs:.2} seconds")});
            respond(StatusCode::OK, "application/json", body.to_string())
        }
        Outcome::Failed(why) => {
            let body = json!({"errorType": "Runtime.ExitError", "errorMessage": why});
            respond(StatusCode::OK, "application/json", body.to_string())
        }
        Outcome::Rejected { error_type, message } => {
            let body = json!({"errorType": error_type, "errorMessage": message});
            respond(StatusCode::BAD_REQUEST, "application/json", body.to_string())
        }
    }
}

/// Matches `path` against a template like `/{a}/{b}`; returns the path parameters.
pub fn match_route(template: &str, path: &str) -> Option<Map<String, Value>> {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = Map::new();
    for (seg, val) in t.iter().zip(&p) {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if val.is_empty() {
                return None;
            }
            let decoded: String = crate::net::percent_decode(val, false);
            params.insert(name.to_owned(), Value::from(decoded));
        } else if seg != val {
            return None;
        }
    }
    Some(params)
}

/// The HTTP API (payload format 2.0) event for one request.
pub fn http_api_event(
    template: &str,
    method: &Method,
    path: &str,
    query: &str,
    headers: &http::HeaderMap,
    params: Map<String, Value>,
    body: &Bytes,
) -> Value {
    let mut hdrs = Map::new();
    for (k, v) in headers {
        if let Ok(v) = v.to_str() {
            hdrs.insert(k.as_str().to_owned(), Value::from(v));
        }
    }
    let mut qs = Map::new();
    for (k, v) in crate::net::query_pairs(query, false) {
        qs.insert(k, Value::from(v));
    }
    let now = epoch_ms();
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {template}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": format!("{method} {template}"),
            "stage": "$default",
            "time": "",
            "timeEpoch": now,
        },
        "pathParameters": params,
        "isBase64Encoded": false,
    });
    if !qs.is_empty() {
        event["queryStringParameters"] = Value::Object(qs);
    }
    if !body.is_empty() {
        event["body"] = Value::from(String::from_utf8_lossy(body).into_owned());
    }
    event
}

/// Turns an HTTP API 2.0 function result into an HTTP response: an object with
/// `statusCode` is a full response; anything else is a 200 JSON body.
pub fn http_api_response(result: &Bytes) -> Resp {
    let Ok(v) = serde_json::from_slice::<Value>(result) else {
        return respond(StatusCode::OK, "application/json", result.clone());
    };
    let Some(status) = v.get("statusCode").and_then(Value::as_u64) else {
        return respond(StatusCode::OK, "application/json", result.clone());
    };
    let body = v.get("body").and_then(Value::as_str).unwrap_or("");
    let body = if v.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(headers) = v.get("headers").and_then(Value::as_object) {
        for (k, val) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                val.as_str().map(http::HeaderValue::from_str),
            ) {
                r.headers_mut().insert(name, value);
            }
        }
    }
    r
}

/// The API-Gateway-like HTTP server for `template` (e.g. `/{provider}/{latitude}/{longitude}`).
pub async fn serve_http_api(emulator: Emulator, addr: SocketAddr, template: &str) -> Result<FrontDoor> {
    let template: std::sync::Arc<str> = template.into();
    let service = service_fn(move |req| {
        let (emulator, template) = (emulator.clone(), template.clone());
        async move { Ok::<_, Infallible>(http_api_invoke(&emulator, &template, req).await) }
    });
    let server = net::serve(TcpListener::bind(addr).await?, service)?;
    Ok(FrontDoor::new(server))
}

/// One request to the HTTP API: an event if it matches the route, the function's
/// result as the response.
async fn http_api_invoke(emulator: &Emulator, template: &str, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let Some(params) = match_route(template, &path) else {
        return respond(StatusCode::NOT_FOUND, "application/json", r#"{"message":"Not Found"}"#);
    };
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_owned();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let event = http_api_event(template, &method, &path, &query, &headers, params, &body);
    let invoked = emulator.invoke(Bytes::from(event.to_string())).await;
    match invoked.outcome {
        Outcome::Response(b) => http_api_response(&b),
        Outcome::FunctionError { .. } | Outcome::Failed(_) | Outcome::Rejected { .. } => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            r#"{"message":"Internal Server Error"}"#,
        ),
        Outcome::Timeout => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            r#"{"message":"Service Unavailable"}"#,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_templates() {
        let p = match_route("/{provider}/{latitude}/{longitude}", "/darksky/52.5/13.4").expect("match");
        assert_eq!(p["provider"], "darksky");
        assert_eq!(p["latitude"], "52.5");
        assert!(match_route("/{provider}/{latitude}/{longitude}", "/darksky/52.5").is_none());
        assert!(match_route("/{a}/x", "/1/y").is_none());
        let p = match_route("/{a}", "/caf%C3%A9").expect("match");
        assert_eq!(p["a"], "café");
    }

    #[test]
    fn results_become_responses() {
        let r = http_api_response(&Bytes::from(
            r#"{"statusCode":404,"headers":{"content-type":"application/json"},"body":"{\"error\":1}"}"#,
        ));
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "application/json");
        let r = http_api_response(&Bytes::from(r#"{"a":1}"#));
        assert_eq!(r.status(), 200);
    }
}
