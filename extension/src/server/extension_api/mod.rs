//! AWS's extension API as a front door: `GET /secretsmanager/get`,
//! `/secretsmanager/{id}`, `/systemsmanager/parameters/get`, `/ping`, `/metrics`,
//! with the `X-Aws-Parameters-Secrets-Token` header, answers and errors as AWS's
//! extension shapes them.
//!
//! A codec around the lookup: `auth` (token, X-Forwarded-For) → `query` (the query
//! string into a key, freshness and output shape) → `lookup` (the decision both
//! doors share) → `response` (the value in the shape asked for); `error` is every
//! way a request can fail here, with the refusals' statuses from `lookup`'s table.

pub mod auth;
pub mod error;
pub mod query;
pub mod response;

#[cfg(test)]
mod allowlist_tests;

use http::{Method, Request, Response};
use tracing::{debug, warn};

use super::answer::Body;
use super::app::App;
use super::lookup;
use crate::metrics::Route;
use error::ApiError;
use query::Lookup;

/// The AWS-compatible paths (same as AWS's extension).
pub const SECRETS_MANAGER_PATH: &str = "/secretsmanager/get";
pub const SSM_PATH: &str = "/systemsmanager/parameters/get";
/// `/secretsmanager/{id}`: the id in the path, as AWS's newer agents offer.
pub const SECRETS_MANAGER_PREFIX: &str = "/secretsmanager/";

/// Answers one request of this door; never fails (errors become JSON responses).
pub async fn handle<B>(app: &App, req: &Request<B>, route: Route) -> Response<Body> {
    match dispatch(app, req, route).await {
        Ok(resp) => resp,
        Err(e) => {
            note(app, &e, route);
            response::error(&e)
        }
    }
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

async fn serve_value(app: &App, asked: Lookup) -> Result<Response<Body>, ApiError> {
    let answer = lookup::one(app, &asked.key, asked.freshness).await?;
    response::value(&answer, &asked.output)
}

/// Logs a refused request. Ids may appear; values never do (errors carry none).
fn note(app: &App, e: &ApiError, route: Route) {
    match e {
        ApiError::MissingToken | ApiError::WrongToken | ApiError::ForwardedFor => {
            app.metrics.auth_failure();
            warn!(?route, code = e.code(), "refused request");
        }
        // The lookup logged its refusals, and the cache its failures, with the id.
        ApiError::Refused(_) => {}
        _ => debug!(?route, code = e.code(), message = %e, "bad request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeUpstream;
    use crate::server::answer::CACHE_HEADER;
    use crate::server::router::handle;
    use crate::server::testing::{self, body, get};
    use std::sync::Arc;

    fn app(vars: &[(&str, &str)]) -> (Arc<App>, Arc<FakeUpstream>) {
        let fake = testing::fake();
        (testing::app(&fake, vars), fake)
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
        assert_eq!(by_query.headers()[CACHE_HEADER], "hit", "one entry for both routes");
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
