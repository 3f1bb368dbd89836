//! Local stand-ins for the weather providers and for the sidecar.
//!
//! [`FakeProviders`] serves the three APIs the weather function calls, on one port:
//! - Dark Sky-compatible: `GET /darksky/{key}/{lat},{lon}?units=si|us` →
//!   `{"currently":{"temperature"},"flags":{"units"}}` (°F unless `units=si`);
//! - OpenWeatherMap: `GET /owm?lat=&lon=&appid=&units=metric` → `{"main":{"temp"}}`
//!   (Kelvin unless `units=metric`);
//! - HERE weather v3: `GET /here?products=observation&location=LAT,LON&apiKey=&units=metric`
//!   → `{"places":[{"observations":[{"temperature"}]}]}`.
//!
//! A wrong key gets 401 with the provider's error shape. The temperature is a pure
//! function of the coordinates ([`FakeProviders::celsius`]) so tests know the answer.
//! Calls are counted per provider; latency and failures can be injected.
//!
//! [`FakeSidecar`] answers the sidecar's two routes from an in-memory map, checks the
//! token, and with `refreshNow=true` serves the value set by [`FakeSidecar::rotate`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::net::{self, Server};

type Resp = Response<Full<Bytes>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn json_resp(status: StatusCode, body: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static("application/json"));
    r
}

fn query_map(query: &str) -> HashMap<String, String> {
    crate::net::query_pairs(query, true).into_iter().collect()
}

/// Serves `handler` on a free loopback port (handlers here never fail).
async fn serve<F, Fut>(handler: F) -> Result<Server>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    serve_on(TcpListener::bind("127.0.0.1:0").await?, handler)
}

fn serve_on<F, Fut>(listener: TcpListener, handler: F) -> Result<Server>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    net::serve(listener, service)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    DarkSky,
    OpenWeatherMap,
    Here,
}

#[derive(Default)]
struct ProviderState {
    keys: Mutex<HashMap<Api, String>>,
    calls: Mutex<HashMap<Api, u64>>,
    rejected: Mutex<HashMap<Api, u64>>,
    /// Status to answer instead of the weather, per provider.
    failure: Mutex<HashMap<Api, u16>>,
    latency: Mutex<HashMap<Api, Duration>>,
}

/// The fake providers; they stop when dropped.
pub struct FakeProviders {
    pub port: u16,
    state: Arc<ProviderState>,
    _server: Server,
}

impl FakeProviders {
    /// Starts the providers accepting `darksky`, `owm` and `here` as the valid keys.
    pub async fn start(darksky: &str, owm: &str, here: &str) -> Result<FakeProviders> {
        FakeProviders::start_on(TcpListener::bind("127.0.0.1:0").await?, darksky, owm, here).await
    }

    /// The same on a listener of the caller's (the `fake-providers` binary: a fixed
    /// port on every interface, for the Docker compose path).
    pub async fn start_on(listener: TcpListener, darksky: &str, owm: &str, here: &str) -> Result<FakeProviders> {
        let state = Arc::new(ProviderState::default());
        {
            let mut keys = lock(&state.keys);
            keys.insert(Api::DarkSky, darksky.to_owned());
            keys.insert(Api::OpenWeatherMap, owm.to_owned());
            keys.insert(Api::Here, here.to_owned());
        }
        let server = {
            let state = state.clone();
            serve_on(listener, move |req| {
                let state = state.clone();
                async move { handle_provider(&state, req).await }
            })?
        };
        Ok(FakeProviders {
            port: server.port(),
            state,
            _server: server,
        })
    }

    pub fn darksky_url(&self) -> String {
        format!("http://127.0.0.1:{}/darksky", self.port)
    }

    pub fn openweathermap_url(&self) -> String {
        format!("http://127.0.0.1:{}/owm", self.port)
    }

    pub fn here_url(&self) -> String {
        format!("http://127.0.0.1:{}/here", self.port)
    }

    /// The temperature every provider reports for these coordinates, in °C.
    pub fn celsius(lat: f64, lon: f64) -> f64 {
        ((lat + lon) / 10.0 * 10.0).round() / 10.0
    }

    /// Changes the valid key (a rotation at the provider).
    pub fn set_key(&self, api: Api, key: &str) {
        lock(&self.state.keys).insert(api, key.to_owned());
    }

    pub fn calls(&self, api: Api) -> u64 {
        lock(&self.state.calls).get(&api).copied().unwrap_or(0)
    }

    /// Calls answered 401 for a wrong key.
    pub fn rejected(&self, api: Api) -> u64 {
        lock(&self.state.rejected).get(&api).copied().unwrap_or(0)
    }

    pub fn fail_with(&self, api: Api, status: Option<u16>) {
        match status {
            Some(s) => lock(&self.state.failure).insert(api, s),
            None => lock(&self.state.failure).remove(&api),
        };
    }

    pub fn set_latency(&self, api: Api, d: Duration) {
        lock(&self.state.latency).insert(api, d);
    }
}

async fn handle_provider(state: &ProviderState, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let q = query_map(req.uri().query().unwrap_or(""));
    let (api, key, lat, lon) = if let Some(rest) = path.strip_prefix("/darksky/") {
        let Some((key, coords)) = rest.split_once('/') else {
            return json_resp(StatusCode::NOT_FOUND, json!({"error": "not found"}));
        };
        let (lat, lon) = coords.split_once(',').unwrap_or(("", ""));
        (
            Api::DarkSky,
            crate::net::percent_decode(key, true),
            lat.to_owned(),
            lon.to_owned(),
        )
    } else if path == "/owm" {
        let g = |k: &str| q.get(k).cloned().unwrap_or_default();
        (Api::OpenWeatherMap, g("appid"), g("lat"), g("lon"))
    } else if path == "/here" {
        let loc = q.get("location").cloned().unwrap_or_default();
        let (lat, lon) = loc.split_once(',').unwrap_or(("", ""));
        (
            Api::Here,
            q.get("apiKey").cloned().unwrap_or_default(),
            lat.to_owned(),
            lon.to_owned(),
        )
    } else {
        return json_resp(StatusCode::NOT_FOUND, json!({"error": "not found"}));
    };
    *lock(&state.calls).entry(api).or_insert(0) += 1;
    let latency = lock(&state.latency).get(&api).copied();
    if let Some(d) = latency {
        tokio::time::sleep(d).await;
    }
    if let Some(status) = lock(&state.failure).get(&api).copied() {
        return json_resp(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            json!({"error": "injected"}),
        );
    }
    let valid = lock(&state.keys).get(&api).is_some_and(|k| *k == key);
    if !valid {
        *lock(&state.rejected).entry(api).or_insert(0) += 1;
        let body = match api {
            Api::DarkSky => json!({"message": "Forbidden"}),
            Api::OpenWeatherMap => {
                json!({"cod": 401, "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info."})
            }
            Api::Here => json!({"error": "Unauthorized", "error_description": "apiKey invalid. apiKey not found."}),
        };
        return json_resp(StatusCode::UNAUTHORIZED, body);
    }
    let (Ok(lat), Ok(lon)) = (lat.parse::<f64>(), lon.parse::<f64>()) else {
        return json_resp(StatusCode::BAD_REQUEST, json!({"error": "bad coordinates"}));
    };
    let c = FakeProviders::celsius(lat, lon);
    match api {
        Api::DarkSky => {
            let si = q.get("units").is_some_and(|u| u == "si");
            let t = if si { c } else { c * 9.0 / 5.0 + 32.0 };
            json_resp(
                StatusCode::OK,
                json!({"latitude": lat, "longitude": lon, "currently": {"temperature": t, "summary": "Clear"}, "flags": {"units": if si { "si" } else { "us" }}}),
            )
        }
        Api::OpenWeatherMap => {
            let metric = q.get("units").is_some_and(|u| u == "metric");
            let t = if metric { c } else { c + 273.15 };
            json_resp(
                StatusCode::OK,
                json!({"coord": {"lat": lat, "lon": lon}, "main": {"temp": t}, "name": "Somewhere"}),
            )
        }
        Api::Here => json_resp(
            StatusCode::OK,
            json!({"places": [{"observations": [{"place": {"location": {"lat": lat, "lng": lon}}, "temperature": c, "description": "Clear"}]}]}),
        ),
    }
}

/// (route, id): "sm" or "ssm", and the secret id or parameter name.
type SidecarKey = (String, String);
/// The value served now, and the one a refresh will switch to.
type SidecarValue = (String, Option<String>);

#[derive(Default)]
struct SidecarState {
    token: String,
    /// (route, id) → value now and value after a refresh.
    values: Mutex<HashMap<SidecarKey, SidecarValue>>,
    requests: Mutex<Vec<String>>,
    refreshes: AtomicU64,
    down: Mutex<bool>,
}

/// A stand-in for the sidecar's HTTP API, for testing a function alone; it stops
/// when dropped.
pub struct FakeSidecar {
    pub port: u16,
    state: Arc<SidecarState>,
    _server: Server,
}

impl FakeSidecar {
    pub async fn start(token: &str) -> Result<FakeSidecar> {
        let state = Arc::new(SidecarState {
            token: token.to_owned(),
            ..SidecarState::default()
        });
        let server = {
            let state = state.clone();
            serve(move |req| {
                let state = state.clone();
                async move { handle_sidecar(&state, req) }
            })
            .await?
        };
        Ok(FakeSidecar {
            port: server.port(),
            state,
            _server: server,
        })
    }

    /// Sets an SSM parameter's value.
    pub fn parameter(&self, name: &str, value: &str) {
        lock(&self.state.values).insert(("ssm".into(), name.into()), (value.into(), None));
    }

    /// Sets a Secrets Manager secret's SecretString.
    pub fn secret(&self, id: &str, value: &str) {
        lock(&self.state.values).insert(("sm".into(), id.into()), (value.into(), None));
    }

    /// The value the next `refreshNow=true` request (and later ones) will see.
    pub fn rotate(&self, route: &str, id: &str, value: &str) {
        if let Some(v) = lock(&self.state.values).get_mut(&(route.into(), id.into())) {
            v.1 = Some(value.into());
        }
    }

    pub fn set_down(&self, down: bool) {
        *lock(&self.state.down) = down;
    }

    pub fn requests(&self) -> Vec<String> {
        lock(&self.state.requests).clone()
    }

    pub fn refreshes(&self) -> u64 {
        self.state.refreshes.load(SeqCst)
    }
}

fn handle_sidecar(state: &SidecarState, req: Request<Incoming>) -> Resp {
    let uri = req.uri().to_string();
    lock(&state.requests).push(uri);
    if *lock(&state.down) {
        return json_resp(
            StatusCode::BAD_GATEWAY,
            json!({"error": "UpstreamUnavailable", "message": "down"}),
        );
    }
    let token = req
        .headers()
        .get("x-aws-parameters-secrets-token")
        .and_then(|v| v.to_str().ok());
    if token != Some(state.token.as_str()) {
        return json_resp(
            StatusCode::FORBIDDEN,
            json!({"error": "InvalidToken", "message": "bad token"}),
        );
    }
    let q = query_map(req.uri().query().unwrap_or(""));
    let (route, id) = match req.uri().path() {
        "/secretsmanager/get" => ("sm", q.get("secretId").cloned().unwrap_or_default()),
        "/systemsmanager/parameters/get" => ("ssm", q.get("name").cloned().unwrap_or_default()),
        _ => return json_resp(StatusCode::NOT_FOUND, json!({"error": "NotFound", "message": "route"})),
    };
    let refresh = q.get("refreshNow").is_some_and(|v| v == "true");
    if refresh {
        state.refreshes.fetch_add(1, SeqCst);
    }
    let value = {
        let mut values = lock(&state.values);
        let Some(entry) = values.get_mut(&(route.to_owned(), id.clone())) else {
            return json_resp(
                StatusCode::NOT_FOUND,
                json!({"error": "ResourceNotFound", "message": "no such id"}),
            );
        };
        if refresh {
            if let Some(next) = entry.1.take() {
                entry.0 = next;
            }
        }
        entry.0.clone()
    };
    if let Some(key) = q.get("jsonKey") {
        let field = serde_json::from_str::<Value>(&value)
            .ok()
            .and_then(|v| v.get(key).cloned());
        return match field {
            Some(Value::String(s)) => {
                let mut r = Response::new(Full::new(Bytes::from(s)));
                r.headers_mut()
                    .insert("content-type", http::HeaderValue::from_static("text/plain"));
                r
            }
            Some(other) => Response::new(Full::new(Bytes::from(other.to_string()))),
            None => json_resp(
                StatusCode::NOT_FOUND,
                json!({"error": "JsonKeyNotFound", "message": "field"}),
            ),
        };
    }
    match route {
        "sm" => json_resp(StatusCode::OK, json!({"Name": id, "SecretString": value})),
        _ => json_resp(
            StatusCode::OK,
            json!({"Parameter": {"Name": id, "Type": "SecureString", "Value": value, "Version": 1}}),
        ),
    }
}
