//! Helpers the server's tests share: an app over the in-memory upstream, requests
//! as the function sends them through either door, bodies read back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value as Json;

use super::answer::Body;
use super::app::App;
use super::gate::Gate;
use crate::backend::fake::FakeUpstream;
use crate::backend::CallStats;
use crate::cache::Cache;
use crate::config::Config;
use crate::tenant::Tenancy;
use crate::token::Token;

pub const TOKEN: &str = "test-token";

/// An upstream holding `app/db` (a JSON secret) and `/app/key` (a SecureString).
pub fn fake() -> Arc<FakeUpstream> {
    let fake = Arc::new(FakeUpstream::new());
    fake.put_secret("app/db", r#"{"user":"u","password":"pw"}"#);
    fake.put_param("/app/key", "SecureString", "k1");
    fake
}

/// The app as the lifecycle builds it, configured by `vars`, over `fake` (also its
/// credentials and pass-through, so the SDK door is open), the gate as given.
pub fn app_with_gate(fake: &Arc<FakeUpstream>, vars: &[(&str, &str)], gate: Gate) -> Arc<App> {
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let config = Config::from_env(&env).expect("config");
    let cache = Cache::new(config.cache_settings(), fake.clone());
    let app = App::new(
        cache,
        Token::new(TOKEN).expect("token"),
        config.allow.clone(),
        Arc::new(CallStats::default()),
        gate,
    );
    app.set_passthrough(fake.clone());
    app
}

/// [`app`] with the tenancy its `{tenant}` templates plan (as the lifecycle builds
/// it), after INIT and bound to `tenant` as Lambda would report it.
pub fn app_for_tenant(fake: &Arc<FakeUpstream>, vars: &[(&str, &str)], tenant: &str) -> Arc<App> {
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let config = Config::from_env(&env).expect("config");
    let tenancy = Tenancy::plan(
        &config.prefetch,
        config.allow.as_ref(),
        config.tenant_role.as_ref(),
        &config.roles.tenant,
    )
    .map(Arc::new)
    .expect("templates");
    let mut settings = config.cache_settings();
    settings.tenancy = Some(tenancy.clone());
    let cache = Cache::new(settings, fake.clone());
    let app = App::new(
        cache,
        Token::new(TOKEN).expect("token"),
        config.allow.clone(),
        Arc::new(CallStats::default()),
        Gate::open(),
    );
    app.set_passthrough(fake.clone());
    app.set_tenancy(tenancy.clone());
    tenancy.end_init();
    tenancy.report(Some(tenant));
    app
}

pub fn app(fake: &Arc<FakeUpstream>, vars: &[(&str, &str)]) -> Arc<App> {
    app_with_gate(fake, vars, Gate::open())
}

/// An extension-API request with the token.
pub fn get(uri: &str) -> Request<String> {
    Request::get(uri)
        .header(crate::token::HEADER, TOKEN)
        .body(String::new())
        .expect("request")
}

pub async fn body(resp: Response<Body>) -> String {
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An SDK request as an SDK sends it, signed with `signer` for `region`.
pub fn signed_as(signer: &Credentials, region: &str, target: &str, body: &Json) -> Request<String> {
    let body = body.to_string();
    let service = if target.starts_with("secretsmanager.") {
        "secretsmanager"
    } else {
        "ssm"
    };
    let mut req = Request::post("http://localhost:2773/")
        .header("host", "localhost:2773")
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .body(body)
        .expect("request");
    sign_as_sdk(&mut req, signer, region, service, SystemTime::now());
    req
}

/// Signs `req` as an SDK does: the same `aws-sigv4` signer with its default
/// settings, over every header `req` carries and its whole body, at `at`.
pub fn sign_as_sdk<B: AsRef<[u8]>>(
    req: &mut Request<B>,
    signer: &Credentials,
    region: &str,
    service: &str,
    at: SystemTime,
) {
    let identity: Identity = signer.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .expect("params")
        .into();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().expect("ascii").to_owned()))
        .collect();
    let uri = req.uri().to_string();
    let signable = SignableRequest::new(
        req.method().as_str(),
        &uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(req.body().as_ref()),
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
    instructions.apply_to_request_http1x(req);
}

/// Signed with the fake's own credentials, in its home region.
pub fn signed(target: &str, body: Json) -> Request<String> {
    signed_as(&FakeUpstream::credentials(), "us-east-1", target, &body)
}
