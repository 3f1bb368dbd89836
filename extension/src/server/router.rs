//! Which door a request goes through: `POST /` is the SDKs' own protocol (`sdk`),
//! every other path AWS's extension API (`extension_api`). Both are counted here,
//! by route and by status class.

use http::{Method, Request, Response};

use super::answer::Body;
use super::app::App;
use super::extension_api::{self, SECRETS_MANAGER_PATH, SECRETS_MANAGER_PREFIX, SSM_PATH};
use super::sdk;
use crate::metrics::Route;

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

/// Answers one request; never fails (errors become responses in the door's format).
pub async fn handle<B>(app: &App, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let route = route_of(req.uri().path());
    app.metrics.request(route);
    let resp = if route == Route::Sdk && req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        sdk::route::handle(app, &parts.headers, path_and_query, body).await
    } else {
        extension_api::handle(app, &req, route).await
    };
    app.metrics.response(resp.status().as_u16());
    resp
}
