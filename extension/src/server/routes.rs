//! Where a request goes: method and path to handler, auth, allowlist, cache, response.

use http::{Method, Request, Response};
use tracing::{debug, warn};

use super::app::App;
use super::auth;
use super::error::ApiError;
use super::metrics::Route;
use super::query::{self, Lookup};
use super::response::{self, Body};
use super::sdk;
use crate::backend::{ErrorKind, UpstreamError};
use crate::cache::Key;

/// The AWS-compatible paths (same as AWS's extension).
pub const SECRETS_MANAGER_PATH: &str = "/secretsmanager/get";
pub const SSM_PATH: &str = "/systemsmanager/parameters/get";
/// `/secretsmanager/{id}`: the id in the path, as AWS's newer agents offer.
pub const SECRETS_MANAGER_PREFIX: &str = "/secretsmanager/";

fn route_of(path: &str) -> Route {
    match path {
        SECRETS_MANAGER_PATH => Route::SecretsManager,
        p if p.starts_with(SECRETS_MANAGER_PREFIX) => Route::SecretsManager,
        SSM_PATH => Route::Ssm,
        "/ping" => Route::Ping,
        "/metrics" => Route::Metrics,
        "/" => Route::Sdk,
        _ => Route::Other,
    }
}

/// Answers one request; never fails (errors become JSON responses).
pub async fn handle<B>(app: &App, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let route = route_of(req.uri().path());
    app.metrics.request(route);
    if route == Route::Sdk && req.method() == Method::POST {
        // The SDKs' protocol: AWS's JSON answers and errors, its own authentication.
        let (parts, body) = req.into_parts();
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let resp = sdk::route::handle(app, &parts.headers, path_and_query, body).await;
        app.metrics.response(resp.status().as_u16());
        return resp;
    }
    let resp = match dispatch(app, &req, route).await {
        Ok(resp) => resp,
        Err(e) => {
            note(app, &e, route);
            response::error(&e)
        }
    };
    app.metrics.response(resp.status().as_u16());
    resp
}

async fn dispatch<B>(app: &App, req: &Request<B>, route: Route) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    match route {
        Route::Ping => return Ok(response::ping(app.is_ready())),
        Route::Other | Route::Sdk => return Err(ApiError::NoRoute),
        _ => {}
    }
    auth::check(&app.token, req.headers())?;
    let query = req.uri().query().unwrap_or("");
    match route {
        Route::SecretsManager => {
            let lookup = match req.uri().path() {
                SECRETS_MANAGER_PATH => query::parse_secrets_manager(query)?,
                path => query::parse_secrets_manager_path(&path[SECRETS_MANAGER_PREFIX.len()..], query)?,
            };
            serve_value(app, lookup).await
        }
        Route::Ssm => serve_value(app, query::parse_ssm(query)?).await,
        _ => Ok(response::metrics(app.snapshot().render())),
    }
}

async fn serve_value(app: &App, lookup: Lookup) -> Result<Response<Body>, ApiError> {
    let key = &lookup.key;
    // Before any upstream call: ids that cannot name an allowed secret, and roles
    // not listed (none may be assumed without the allowlist naming them).
    if let Some(allow) = &app.allow {
        if !allow.could_name(key.source, &key.id) {
            warn!(source = key.source.label(), id = %key.id, "refused: not in the allowlist");
            return Err(ApiError::NotAllowed);
        }
    }
    if let Some(role) = key.scope.role() {
        if !app.allow.as_ref().is_some_and(|a| a.permits_role(role)) {
            warn!(role, "refused: roleArn not in the allowlist");
            return Err(ApiError::RoleNotAllowed);
        }
    }
    // One atomic load when open (always, but around a SnapStart snapshot).
    if !app.gate.is_open() && app.gate.pass().await.is_err() {
        return Err(ApiError::SnapStartInit);
    }
    let answer = match app.cache.get(key, lookup.freshness).await {
        Ok(answer) => answer,
        Err(e) => return Err(refusal_or_upstream(app, key, e)),
    };
    app.metrics.outcome(answer.outcome);
    response::value(&answer, &lookup.output)
}

/// An upstream failure as answered. With an allowlist, a not-found or access-denied
/// answer for an id that does not name an allowed identity as written (a look-alike
/// that passed the first check) is refused like any id outside the list: the caller
/// learns nothing about which secrets exist outside it.
fn refusal_or_upstream(app: &App, key: &Key, e: UpstreamError) -> ApiError {
    let look_alike = |allow: &crate::allow::AllowList| !allow.names_exactly(key.source, &key.id);
    match (e.kind, &app.allow) {
        (ErrorKind::NotAllowed, _) => ApiError::NotAllowed,
        (ErrorKind::NotFound | ErrorKind::AccessDenied, Some(allow)) if look_alike(allow) => ApiError::NotAllowed,
        _ => ApiError::Upstream(e),
    }
}

/// Logs a refused request. Ids may appear; values never do (errors carry none).
fn note(app: &App, e: &ApiError, route: Route) {
    match e {
        ApiError::MissingToken | ApiError::WrongToken | ApiError::ForwardedFor => {
            app.metrics.auth_failure();
            warn!(?route, code = e.code(), "refused request");
        }
        // Upstream failures were logged where they happened, with the id.
        ApiError::Upstream(_) | ApiError::NotAllowed | ApiError::RoleNotAllowed => {}
        _ => debug!(?route, code = e.code(), message = %e, "bad request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeUpstream;
    use crate::backend::CallStats;
    use crate::cache::Cache;
    use crate::config::Config;
    use crate::server::gate::Gate;
    use crate::token::Token;
    use std::collections::HashMap;
    use std::sync::Arc;

    const TOKEN: &str = "test-token";

    fn app(vars: &[(&str, &str)]) -> (Arc<App>, Arc<FakeUpstream>) {
        let fake = Arc::new(FakeUpstream::new());
        fake.put_secret("app/db", "{\"user\":\"u\",\"password\":\"pw\"}");
        fake.put_param("/app/key", "SecureString", "k1");
        let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let config = Config::from_env(&env).expect("config");
        let token = Token::new(TOKEN).expect("token");
        let cache = Cache::new(config.cache_settings(), fake.clone());
        let app = App::new(
            cache,
            token,
            config.allow.clone(),
            Arc::new(CallStats::default()),
            Gate::open(),
        );
        (app, fake)
    }

    fn get(uri: &str) -> Request<String> {
        Request::get(uri)
            .header(crate::token::HEADER, TOKEN)
            .body(String::new())
            .expect("request")
    }

    async fn body(resp: Response<Body>) -> String {
        use http_body_util::BodyExt;
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf8")
    }

    #[tokio::test]
    async fn routes_and_statuses() {
        let (app, _) = app(&[]);
        let ok = handle(&app, get("/secretsmanager/get?secretId=app/db")).await;
        assert_eq!(ok.status(), 200);
        let v: serde_json::Value = serde_json::from_str(&body(ok).await).expect("json");
        assert_eq!(v["Name"], "app/db");

        let key = handle(&app, get("/secretsmanager/get?secretId=app/db&jsonKey=password")).await;
        assert_eq!(body(key).await, "pw");

        let p = handle(
            &app,
            get("/systemsmanager/parameters/get?name=/app/key&withDecryption=true"),
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&body(p).await).expect("json");
        assert_eq!(v["Parameter"]["Value"], "k1");

        assert_eq!(
            handle(&app, get("/secretsmanager/get?secretId=nope")).await.status(),
            404
        );
        assert_eq!(handle(&app, get("/secretsmanager/get")).await.status(), 400);
        assert_eq!(handle(&app, get("/nowhere")).await.status(), 404);
        let post = Request::post("/secretsmanager/get?secretId=app/db")
            .body(String::new())
            .expect("request");
        assert_eq!(handle(&app, post).await.status(), 405);
        let anon = Request::get("/secretsmanager/get?secretId=app/db")
            .body(String::new())
            .expect("request");
        assert_eq!(handle(&app, anon).await.status(), 401);
        let ping = Request::get("/ping").body(String::new()).expect("request");
        assert_eq!(handle(&app, ping).await.status(), 200);
        let metrics = Request::get("/metrics").body(String::new()).expect("request");
        assert_eq!(handle(&app, metrics).await.status(), 401, "metrics need the token");
        let metrics = handle(&app, get("/metrics")).await;
        let text = body(metrics).await;
        assert!(text.contains("secrets_sidecar_auth_failures_total 2"), "{text}");
    }

    #[tokio::test]
    async fn the_path_route_shares_the_query_routes_entries_and_rules() {
        let (app, fake) = app(&[]);
        fake.put_secret("get", "a secret named get");
        let by_path = handle(&app, get("/secretsmanager/app/db")).await;
        assert_eq!(by_path.status(), 200);
        let v: serde_json::Value = serde_json::from_str(&body(by_path).await).expect("json");
        assert_eq!(v["Name"], "app/db");
        let encoded = handle(&app, get("/secretsmanager/app%2Fdb?jsonKey=password")).await;
        assert_eq!(body(encoded).await, "pw");
        let by_query = handle(&app, get("/secretsmanager/get?secretId=app/db")).await;
        assert_eq!(
            by_query.headers()[response::CACHE_HEADER],
            "hit",
            "one entry for both routes"
        );
        assert_eq!(fake.calls(), 1);
        let named_get = handle(&app, get("/secretsmanager/get?secretId=get")).await;
        assert!(body(named_get).await.contains("a secret named get"));
        assert_eq!(handle(&app, get("/secretsmanager/")).await.status(), 400);
        let anon = Request::get("/secretsmanager/app/db")
            .body(String::new())
            .expect("request");
        assert_eq!(handle(&app, anon).await.status(), 401, "the token rules hold");
        let (allow, fake) = self::app(&[("SECRETS_SIDECAR_ALLOW", "secretsmanager:other/*")]);
        assert_eq!(handle(&allow, get("/secretsmanager/app/db")).await.status(), 403);
        assert_eq!(fake.calls(), 0, "the allowlist holds too");
    }

    #[tokio::test]
    async fn allowlist_is_checked_before_any_upstream_call() {
        let (app, fake) = app(&[("SECRETS_SIDECAR_ALLOW", "secretsmanager:other/*")]);
        let resp = handle(&app, get("/secretsmanager/get?secretId=app/db")).await;
        assert_eq!(resp.status(), 403);
        assert_eq!(fake.calls(), 0);
    }
}
