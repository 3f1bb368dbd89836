//! Whole requests through the router (auth, parsing, allowlist, cache, responses)
//! against an in-memory upstream: never a panic, never a 5xx for what is only bad
//! input, and every error body is JSON (the SDK route's included).
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use secrets_sidecar::backend::fake::FakeUpstream;
use secrets_sidecar::backend::CallStats;
use secrets_sidecar::cache::Cache;
use secrets_sidecar::config::Config;
use secrets_sidecar::server::gate::Gate;
use secrets_sidecar::server::{router, App};
use secrets_sidecar::token::Token;

fn app() -> &'static (Arc<App>, tokio::runtime::Runtime) {
    static APP: OnceLock<(Arc<App>, tokio::runtime::Runtime)> = OnceLock::new();
    APP.get_or_init(|| {
        let fake = Arc::new(FakeUpstream::new());
        fake.put_secret("app/db", r#"{"user":"u","password":"p"}"#);
        fake.put_param("/app/key", "SecureString", "k");
        let env: HashMap<String, String> = [("SECRETS_SIDECAR_ALLOW".to_owned(), "secretsmanager:app/* ssm:/app/*".to_owned())].into();
        let config = Config::from_env(&env).expect("config");
        let token = Token::new("fuzz-token").expect("token");
        let cache = Cache::new(config.cache_settings(), fake);
        let app = App::new(cache, token, config.allow.clone(), Arc::new(CallStats::default()), Gate::open());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        (app, rt)
    })
}

fuzz_target!(|data: &[u8]| {
    // First line: "METHOD TARGET"; then "name: value" header lines.
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    let (method, target) = first.split_once(' ').unwrap_or((first, "/"));
    let mut req = http::Request::builder().method(method.trim()).uri(target.trim());
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            req = req.header(k.trim(), v.trim());
        }
    }
    let Ok(req) = req.body(String::new()) else { return };
    let (app, rt) = app();
    let resp = rt.block_on(router::handle(app, req));
    let status = resp.status().as_u16();
    assert!(status < 500 || status == 503, "status {status} for bad input");
    if status >= 400 {
        let body = rt.block_on(resp.into_body().collect()).expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("error bodies are JSON");
        // The HTTP API's errors carry `error`; the SDK route's (`POST /`) AWS's `__type`.
        assert!(v.get("error").is_some() || v.get("__type").is_some());
    }
});
