//! `GET /{provider}/{latitude}/{longitude}`: route, validate, get the key, ask the
//! provider (refreshing the key once if the provider refuses it), answer in °C.

use std::future::Future;
use std::time::Instant;

use lambda_http::{Body, Request, RequestExt, Response};
use tracing::{info, warn};

use crate::config::{Settings, SIDECAR_TIMEOUT};
use crate::coords::Coords;
use crate::error::ApiError;
use crate::outbound::{CallError, Outbound};
use crate::providers::{Provider, ProviderError};
use crate::secret::Secret;
use crate::sidecar::Sidecar;

pub struct App {
    pub settings: Settings,
    sidecar: Sidecar,
    outbound: Outbound,
}

impl App {
    pub fn new(settings: Settings) -> Result<App, String> {
        let sidecar = Sidecar::new(
            settings.sidecar_port,
            Secret::new(settings.sidecar_token.expose().to_owned()),
            SIDECAR_TIMEOUT,
        );
        let outbound = Outbound::new(settings.provider_timeout)?;
        Ok(App {
            settings,
            sidecar,
            outbound,
        })
    }

    /// The provider's key from the sidecar; `refresh` bypasses its cache. `tenant`
    /// is the invoke's tenant as Lambda named it (never from the request).
    async fn key(&self, provider: Provider, refresh: bool, tenant: Option<&str>) -> Result<Secret, ApiError> {
        let s = &self.settings;
        let got = match provider {
            Provider::DarkSky => self.sidecar.parameter(&s.darksky_key_parameter, refresh).await,
            Provider::OpenWeatherMap => {
                let name = per_tenant(&s.openweathermap_secret, tenant).ok_or(ApiError::NoTenant {
                    provider: provider.name(),
                })?;
                self.sidecar
                    .secret_field(&name, &s.openweathermap_secret_field, refresh)
                    .await
            }
            Provider::Here => {
                self.sidecar
                    .parameter(&format!("{}api-key", s.here_parameter_path), refresh)
                    .await
            }
        };
        got.map_err(ApiError::Sidecar)
    }

    async fn ask(&self, provider: Provider, at: Coords, key: &Secret) -> Result<f64, ApiError> {
        let url = provider.url(&self.settings, at, key);
        let (status, body) = self.outbound.get(&url).await.map_err(|e| match e {
            CallError::Timeout => ApiError::ProviderTimeout {
                provider: provider.name(),
            },
            CallError::Transport(why) => ApiError::Provider {
                provider: provider.name(),
                detail: why,
            },
        })?;
        provider.celsius(status, &body).map_err(|e| provider_error(provider, e))
    }

    /// The temperature, retrying once with a freshly fetched key when the provider
    /// refuses the cached one (a rotated key works without waiting for the TTL).
    pub async fn temperature(&self, provider: Provider, at: Coords, tenant: Option<&str>) -> Result<f64, ApiError> {
        retry_refused_key(
            |refresh| async move { self.key(provider, refresh, tenant).await },
            |key: Secret| async move { self.ask(provider, at, &key).await },
        )
        .await
    }
}

/// A key's name with `{tenant}` resolved to the invoke's tenant; `None` when it
/// holds the placeholder and there is no tenant. The tenant is Lambda's word (the
/// runtime's `Lambda-Runtime-Aws-Tenant-Id`), so a request cannot pick another
/// tenant's key; should one try, the sidecar refuses it anyway.
fn per_tenant(name: &str, tenant: Option<&str>) -> Option<String> {
    if !name.contains("{tenant}") {
        return Some(name.to_owned());
    }
    tenant.map(|t| name.replacen("{tenant}", t, 1))
}

/// What a provider's failure means to the caller: a refused key (401/403) is
/// [`ApiError::KeyRefused`], which a fresh key may cure; anything else is final.
fn provider_error(provider: Provider, e: ProviderError) -> ApiError {
    match e {
        ProviderError::Unauthorized => ApiError::KeyRefused {
            provider: provider.name(),
        },
        other => ApiError::Provider {
            provider: provider.name(),
            detail: other.to_string(),
        },
    }
}

/// Asks with the cached key (`key(false)`); when the answer is
/// [`ApiError::KeyRefused`], fetches the key again bypassing the sidecar's cache
/// (`key(true)`) and asks once more. Any other answer is returned as it is.
async fn retry_refused_key<K, KeyFut, AskFut>(
    key: impl Fn(bool) -> KeyFut,
    ask: impl Fn(K) -> AskFut,
) -> Result<f64, ApiError>
where
    KeyFut: Future<Output = Result<K, ApiError>>,
    AskFut: Future<Output = Result<f64, ApiError>>,
{
    match ask(key(false).await?).await {
        Err(ApiError::KeyRefused { provider }) => {
            warn!(provider, "key refused; refreshing it and retrying once");
            ask(key(true).await?).await
        }
        other => other,
    }
}

/// Provider, latitude and longitude: from API Gateway's path parameters, or from
/// the path itself when the route has none.
fn route(req: &Request) -> Option<(String, String, String)> {
    let params = req.path_parameters();
    if let (Some(p), Some(lat), Some(lon)) = (
        params.first("provider"),
        params.first("latitude"),
        params.first("longitude"),
    ) {
        return Some((p.to_owned(), lat.to_owned(), lon.to_owned()));
    }
    let path = req.raw_http_path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [p, lat, lon] => Some(((*p).to_owned(), (*lat).to_owned(), (*lon).to_owned())),
        _ => None,
    }
}

fn json(status: u16, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert("content-type", http::HeaderValue::from_static("application/json"));
    resp
}

async fn answer(app: &App, req: &Request) -> Result<serde_json::Value, ApiError> {
    if req.method() != http::Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    let (provider, lat, lon) = route(req).ok_or(ApiError::NotFound)?;
    let provider = Provider::from_path(&provider).ok_or(ApiError::NotFound)?;
    let at = Coords::parse(&lat, &lon).map_err(ApiError::BadCoordinates)?;
    let tenant = req.lambda_context_ref().and_then(|c| c.tenant_id.as_deref());
    let celsius = app.temperature(provider, at, tenant).await?;
    Ok(serde_json::json!({
        "provider": provider.name(),
        "latitude": at.latitude,
        "longitude": at.longitude,
        "temperature": celsius,
        "units": "celsius",
    }))
}

/// Handles one API Gateway request (HTTP API v2 or REST v1 event).
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let started = Instant::now();
    let resp = match answer(app, &req).await {
        Ok(body) => json(200, &body),
        Err(e) => json(e.status().as_u16(), &e.body()),
    };
    info!(
        status = resp.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    const HERE_ANSWER: &[u8] = br#"{"places":[{"observations":[{"temperature":-3.0}]}]}"#;

    /// What the outbound call to the provider gives: a status and body, or a call error
    /// already mapped (timeouts, transport failures).
    type Call = Result<(u16, &'static [u8]), ApiError>;

    /// What one run of [`retry_refused_key`] did.
    #[derive(Debug)]
    struct Run {
        result: Result<f64, ApiError>,
        /// The `refresh` flag of every key fetch, in order.
        fetches: Vec<bool>,
        /// The key each provider call used, in order.
        asked: Vec<&'static str>,
    }

    /// Runs the retry logic against a HERE provider answering `calls` in turn (a call
    /// past the script answers 200), through the same status mapping as `App::ask`.
    async fn run(calls: &[Call]) -> Run {
        let fetches = RefCell::new(Vec::new());
        let asked = RefCell::new(Vec::new());
        let result = retry_refused_key(
            |refresh| {
                fetches.borrow_mut().push(refresh);
                async move { Ok(if refresh { "fresh-key" } else { "cached-key" }) }
            },
            |key: &'static str| {
                let call = calls
                    .get(asked.borrow().len())
                    .cloned()
                    .unwrap_or(Ok((200, HERE_ANSWER)));
                asked.borrow_mut().push(key);
                async move {
                    let (status, body) = call?;
                    Provider::Here
                        .celsius(status, body)
                        .map_err(|e| provider_error(Provider::Here, e))
                }
            },
        )
        .await;
        Run {
            result,
            fetches: fetches.into_inner(),
            asked: asked.into_inner(),
        }
    }

    #[tokio::test]
    async fn a_401_or_403_refreshes_the_key_and_retries_once() {
        for status in [401, 403] {
            let r = run(&[Ok((status, b"{}"))]).await;
            assert_eq!(r.result, Ok(-3.0), "{status}: {r:?}");
            assert_eq!(
                r.fetches,
                [false, true],
                "{status}: the second fetch bypasses the cache"
            );
            assert_eq!(r.asked, ["cached-key", "fresh-key"], "{status}");
        }
    }

    #[tokio::test]
    async fn a_key_refused_again_is_not_retried_a_second_time() {
        let r = run(&[Ok((401, b"{}")), Ok((403, b"{}"))]).await;
        assert_eq!(r.result, Err(ApiError::KeyRefused { provider: "here" }), "{r:?}");
        assert_eq!(r.fetches, [false, true]);
        assert_eq!(r.asked.len(), 2);
        let e = r.result.expect_err("refused");
        assert_eq!(
            (e.status().as_u16(), e.to_string()),
            (502, "here: the key was refused".into())
        );
    }

    #[tokio::test]
    async fn other_provider_errors_are_not_retried() {
        let mut calls: Vec<(Call, ApiError)> = [400, 404, 429, 500, 502, 503]
            .into_iter()
            .map(|s| {
                let e = ApiError::Provider {
                    provider: "here",
                    detail: format!("answered {s}"),
                };
                (Ok((s, &b"{}"[..])), e)
            })
            .collect();
        calls.push((
            Ok((200, b"not json")),
            ApiError::Provider {
                provider: "here",
                detail: "no JSON in the answer".into(),
            },
        ));
        for e in [
            ApiError::ProviderTimeout { provider: "here" },
            ApiError::Provider {
                provider: "here",
                detail: "connection refused".into(),
            },
        ] {
            calls.push((Err(e.clone()), e));
        }
        for (call, expected) in calls {
            let r = run(std::slice::from_ref(&call)).await;
            assert_eq!(r.result, Err(expected), "{call:?}");
            assert_eq!(r.fetches, [false], "{call:?}: the key was not fetched again");
            assert_eq!(r.asked, ["cached-key"], "{call:?}: the provider was asked once");
        }
    }

    #[tokio::test]
    async fn a_good_answer_needs_one_key_and_one_call() {
        let r = run(&[Ok((200, HERE_ANSWER))]).await;
        assert_eq!(
            (r.result, r.fetches, r.asked),
            (Ok(-3.0), vec![false], vec!["cached-key"])
        );
    }
}
