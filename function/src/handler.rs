//! `GET /{provider}/{latitude}/{longitude}`: route, validate, get the key, ask the
//! provider (refreshing the key once if the provider refuses it), answer in °C.

use std::time::Instant;

use lambda_http::{Body, Request, RequestExt, Response};
use tracing::{info, warn};

use crate::config::{Settings, SIDECAR_TIMEOUT};
use crate::coords::Coords;
use crate::error::ApiError;
use crate::outbound::{CallError, Outbound};
use crate::providers::{Provider, ProviderError};
use crate::secret::Secret;
use crate::sidecar::{Sidecar, SidecarError};

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

    /// The provider's key from the sidecar; `refresh` bypasses its cache.
    async fn key(&self, provider: Provider, refresh: bool) -> Result<Secret, SidecarError> {
        let s = &self.settings;
        match provider {
            Provider::DarkSky => self.sidecar.parameter(&s.darksky_key_parameter, refresh).await,
            Provider::OpenWeatherMap => {
                self.sidecar
                    .secret_field(&s.openweathermap_secret, &s.openweathermap_secret_field, refresh)
                    .await
            }
            Provider::Here => {
                self.sidecar
                    .parameter(&format!("{}api-key", s.here_parameter_path), refresh)
                    .await
            }
        }
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
        provider.celsius(status, &body).map_err(|e| ApiError::Provider {
            provider: provider.name(),
            detail: match e {
                ProviderError::Unauthorized => "the key was refused".into(),
                ProviderError::Status(s) => format!("answered {s}"),
                ProviderError::Unreadable(why) => why,
            },
        })
    }

    /// The temperature, retrying once with a freshly fetched key when the provider
    /// refuses the cached one (a rotated key works without waiting for the TTL).
    pub async fn temperature(&self, provider: Provider, at: Coords) -> Result<f64, ApiError> {
        let key = self.key(provider, false).await.map_err(ApiError::Sidecar)?;
        match self.ask(provider, at, &key).await {
            Err(ApiError::Provider { detail, .. }) if detail == "the key was refused" => {
                warn!(
                    provider = provider.name(),
                    "key refused; refreshing it and retrying once"
                );
                let fresh = self.key(provider, true).await.map_err(ApiError::Sidecar)?;
                self.ask(provider, at, &fresh).await
            }
            other => other,
        }
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
    let celsius = app.temperature(provider, at).await?;
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
