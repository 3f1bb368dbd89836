//! The whole product on one machine: moto (local AWS) seeded with the weather app's
//! keys, the fault proxy in front of it, fake weather providers, and an emulated
//! Lambda function with the real `secrets-sidecar` in its layer and either the real
//! weather `bootstrap` or the probe runtime. End-to-end tests and `make demo` use it.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;

use crate::emulator::gateway::{http_api_event, match_route};
use crate::emulator::{Emulator, FunctionConfig, Invoked, Mode};
use crate::fakes::FakeProviders;
use crate::layer::{Layer, TaskRoot};
use crate::moto::{Moto, ParamType};
use crate::proxy::FaultProxy;

/// Where the weather function finds its keys (its defaults).
pub const DARKSKY_PARAMETER: &str = "/weather/darksky-api-key";
pub const OPENWEATHERMAP_SECRET: &str = "weather/openweathermap";
pub const HERE_PATH: &str = "/weather/here/";
pub const HERE_PARAMETER: &str = "/weather/here/api-key";
/// The route of the weather API.
pub const ROUTE: &str = "/{provider}/{latitude}/{longitude}";
/// What the function's layer prefetches.
pub const PREFETCH: &str = "ssm:/weather/darksky-api-key secretsmanager:weather/openweathermap ssm-path:/weather/here/";

/// Stand-in keys for the fake providers (not secrets, but treated as such).
#[derive(Clone, Debug)]
pub struct Keys {
    pub darksky: String,
    pub openweathermap: String,
    pub here: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            darksky: "local-darksky-key".into(),
            openweathermap: "local-owm-appid".into(),
            here: "local-here-key".into(),
        }
    }
}

/// Which runtime the function runs.
#[derive(Clone, Debug)]
pub enum Function {
    /// The real weather `bootstrap`.
    Weather,
    /// The probe runtime with these settings (see `bin/probe-runtime.rs`).
    Probe(Vec<(String, String)>),
}

pub struct WorldConfig {
    pub function: Function,
    /// Extra environment for the function configuration (seen by the sidecar too).
    pub env: Vec<(String, String)>,
    pub keys: Keys,
    pub timeout: Duration,
    pub freeze: bool,
    /// The platform the function runs on (on demand unless a test says otherwise).
    pub mode: Mode,
    /// Real provider URLs instead of the fakes (the demo with real keys).
    pub provider_urls: Option<(String, String, String)>,
    /// Lambda's tenant isolation mode (invoke with `Emulator::invoke_for_tenant`).
    pub tenant_isolation: bool,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            function: Function::Weather,
            env: vec![("SECRETS_SIDECAR_PREFETCH".into(), PREFETCH.into())],
            keys: Keys::default(),
            timeout: Duration::from_secs(10),
            freeze: true,
            mode: Mode::OnDemand,
            provider_urls: None,
            tenant_isolation: false,
        }
    }
}

impl WorldConfig {
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

pub struct World {
    pub moto: Moto,
    pub proxy: FaultProxy,
    pub providers: Option<FakeProviders>,
    pub emulator: Emulator,
    pub keys: Keys,
    _layer: Layer,
    _task: TaskRoot,
}

/// Seeds the weather app's three keys where the function looks for them.
pub async fn seed(moto: &Moto, keys: &Keys) -> Result<()> {
    moto.put_parameter(DARKSKY_PARAMETER, &keys.darksky, ParamType::SecureString)
        .await?;
    moto.create_secret(
        OPENWEATHERMAP_SECRET,
        &serde_json::json!({ "appid": keys.openweathermap }).to_string(),
    )
    .await?;
    moto.put_parameter(HERE_PARAMETER, &keys.here, ParamType::SecureString)
        .await?;
    moto.put_parameter(&format!("{HERE_PATH}region"), "eu-west", ParamType::String)
        .await?;
    Ok(())
}

impl World {
    pub async fn start(cfg: WorldConfig) -> Result<World> {
        let sidecar = crate::bins::ensure("secrets-sidecar", "secrets-sidecar", "SIDECAR_BIN")?;
        let moto = Moto::start().await?;
        seed(&moto, &cfg.keys).await?;
        let proxy = FaultProxy::start(moto.port).await?;
        let (providers, urls) = match cfg.provider_urls.clone() {
            Some(urls) => (None, urls),
            None => {
                let p = FakeProviders::start(&cfg.keys.darksky, &cfg.keys.openweathermap, &cfg.keys.here).await?;
                let urls = (p.darksky_url(), p.openweathermap_url(), p.here_url());
                (Some(p), urls)
            }
        };
        let layer = Layer::new()?;
        layer.add_binary("secrets-sidecar", &sidecar)?;
        let task = match &cfg.function {
            Function::Weather => {
                TaskRoot::copy_of(&crate::bins::ensure("bootstrap", "weather-function", "BOOTSTRAP_BIN")?)?
            }
            Function::Probe(settings) => {
                let probe = crate::bins::ensure("probe-runtime", "harness", "PROBE_RUNTIME_BIN")?;
                let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                TaskRoot::new(&probe, &env)?
            }
        };
        let mut function = FunctionConfig::new("weather", task.bootstrap())
            .extensions(layer.extensions())
            .timeout(cfg.timeout)
            .freeze(cfg.freeze)
            .mode(cfg.mode)
            .env("AWS_ENDPOINT_URL", &proxy.endpoint())
            .env("DARKSKY_URL", &urls.0)
            .env("OPENWEATHERMAP_URL", &urls.1)
            .env("HERE_URL", &urls.2);
        // Each emulated environment is a separate Lambda sandbox, but here they share
        // one network namespace: give each its own sidecar port (function and sidecar
        // both read this variable).
        function = function.env(
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
            &crate::net::free_port().to_string(),
        );
        for (k, v) in &cfg.env {
            function = function.env(k, v);
        }
        if cfg.tenant_isolation {
            function = function.tenant_isolation();
        }
        let emulator = Emulator::start(function).await?;
        Ok(World {
            moto,
            proxy,
            providers,
            emulator,
            keys: cfg.keys,
            _layer: layer,
            _task: task,
        })
    }

    /// Invokes with an HTTP API (v2) event for `GET path`.
    pub async fn get(&self, path: &str) -> Invoked {
        self.emulator.invoke(get_event(path)).await
    }
}

/// The HTTP API (v2) event API Gateway sends for `GET path` on the weather route.
pub fn get_event(path: &str) -> Bytes {
    let params = match_route(ROUTE, path).unwrap_or_default();
    let event = http_api_event(
        ROUTE,
        &http::Method::GET,
        path,
        "",
        &http::HeaderMap::new(),
        params,
        &Bytes::new(),
    );
    Bytes::from(event.to_string())
}

/// The weather function's HTTP answer in an invoke's outcome: (status, JSON body);
/// (0, null) when the invoke gave no response.
pub fn http_answer(outcome: &crate::emulator::Outcome) -> (u64, serde_json::Value) {
    let crate::emulator::Outcome::Response(bytes) = outcome else {
        return (0, serde_json::Value::Null);
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null);
    let status = v["statusCode"].as_u64().unwrap_or(0);
    let inner = v["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, inner)
}
