//! [`Upstream`] over the AWS SDK: Secrets Manager and SSM clients sharing one
//! trimmed SDK configuration (rustls with ring, no SSO).
//!
//! The endpoint, region and credentials come from the SDK's own environment chain,
//! so `AWS_ENDPOINT_URL[_SECRETS_MANAGER|_SSM]` points the sidecar at moto or a
//! proxy, and SnapStart's container credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`)
//! are found without configuration. Each service gets
//! `PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS` permits: at most that many calls
//! are in flight at once, the rest queue. Every HTTP attempt the SDK sends, retries
//! included, is counted by API in [`CallStats`], since that is what AWS bills.
//!
//! The clients (and with them the connection pool and the cached credentials) are
//! built on first use and can be dropped with [`AwsUpstream::reset`]: a SnapStart
//! clone restored days later must not reuse either. `operations` holds the calls,
//! `classify` sorts their errors.

mod classify;
mod operations;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_secretsmanager as sm;
use aws_sdk_ssm as ssm;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use tokio::sync::Semaphore;

use super::{Api, Attempts, BackendSettings, CallStats, ErrorKind, UpstreamError, Via};

/// SDK retries inside one operation: short, because a request may be waiting and
/// the cache's own backoff handles longer outages.
const MAX_ATTEMPTS: u32 = 3;
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The SDK's default connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// Without a configured timeout: longest wait for the first byte of an answer.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AwsUpstream {
    /// Where the SDK configuration comes from when the clients are (re)built.
    source: Source,
    settings: BackendSettings,
    calls: Arc<CallStats>,
    clients: Mutex<Option<Arc<Clients>>>,
    /// Held while clients are built, so concurrent first calls build them once.
    building: tokio::sync::Mutex<()>,
    sm_permits: Semaphore,
    ssm_permits: Semaphore,
}

enum Source {
    /// The process environment (`aws_config`'s default chains).
    Environment,
    /// A configuration given whole (unit tests' replay clients).
    Given(Box<SdkConfig>),
}

/// Clients for both services on one SDK configuration, each twice: with the SDK's
/// retries, and with a single attempt (see [`Attempts`]). Clients are cheap
/// handles: all four share the HTTP connector and the credentials cache.
struct Clients {
    sm: sm::Client,
    ssm: ssm::Client,
    sm_once: sm::Client,
    ssm_once: ssm::Client,
}

impl Clients {
    fn sm(&self, attempts: Attempts) -> &sm::Client {
        match attempts {
            Attempts::Retried => &self.sm,
            Attempts::Once => &self.sm_once,
        }
    }

    fn ssm(&self, attempts: Attempts) -> &ssm::Client {
        match attempts {
            Attempts::Retried => &self.ssm,
            Attempts::Once => &self.ssm_once,
        }
    }
}

/// Loads the shared SDK configuration from the environment.
pub async fn load_sdk_config() -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(retry_config())
        .load()
        .await
}

fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

impl AwsUpstream {
    /// Clients configured from the environment, built on first use.
    pub fn from_environment(settings: BackendSettings, calls: Arc<CallStats>) -> Self {
        AwsUpstream::with(Source::Environment, settings, calls)
    }

    /// Clients on a given SDK configuration.
    pub fn new(sdk: &SdkConfig, settings: BackendSettings, calls: Arc<CallStats>) -> Self {
        AwsUpstream::with(Source::Given(Box::new(sdk.clone())), settings, calls)
    }

    fn with(source: Source, settings: BackendSettings, calls: Arc<CallStats>) -> Self {
        let permits = settings.max_connections.max(1);
        AwsUpstream {
            source,
            settings,
            calls,
            clients: Mutex::new(None),
            building: tokio::sync::Mutex::new(()),
            sm_permits: Semaphore::new(permits),
            ssm_permits: Semaphore::new(permits),
        }
    }

    /// Builds the clients now rather than at the first call (loading the TLS trust
    /// store takes milliseconds better spent while the runtime starts).
    pub async fn connect(&self) {
        self.clients().await;
    }

    /// Drops the clients: their pooled connections and cached credentials go with
    /// them, and the next call builds fresh ones.
    pub fn reset(&self) {
        *lock(&self.clients) = None;
    }

    async fn clients(&self) -> Arc<Clients> {
        if let Some(c) = lock(&self.clients).clone() {
            return c;
        }
        let _building = self.building.lock().await;
        if let Some(c) = lock(&self.clients).clone() {
            return c;
        }
        let sdk = match &self.source {
            Source::Environment => load_sdk_config().await,
            Source::Given(sdk) => (**sdk).clone(),
        };
        let clients = Arc::new(self.build(&sdk));
        *lock(&self.clients) = Some(clients.clone());
        clients
    }

    /// The clients for `via`'s scope.
    async fn clients_for(&self, via: &Via) -> Result<Arc<Clients>, UpstreamError> {
        if !via.scope.is_home() {
            return Err(UpstreamError::new(
                ErrorKind::Invalid,
                "other regions, accounts and roles are not served yet",
            ));
        }
        Ok(self.clients().await)
    }

    fn build(&self, sdk: &SdkConfig) -> Clients {
        let counter = AttemptCounter {
            calls: self.calls.clone(),
        };
        let timeouts = |t: Option<Duration>| match t {
            Some(t) => TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT.min(t))
                .operation_timeout(t)
                .build(),
            // "0" keeps AWS's meaning (no overall limit), but a silent upstream must not
            // hold a request forever: each attempt gets its first byte within a bound.
            None => TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(FIRST_BYTE_TIMEOUT)
                .build(),
        };
        let sm_config = sm::config::Builder::from(sdk)
            .timeout_config(timeouts(self.settings.secrets_manager_timeout))
            .interceptor(counter.clone())
            .build();
        let ssm_config = ssm::config::Builder::from(sdk)
            .timeout_config(timeouts(self.settings.ssm_timeout))
            .interceptor(counter)
            .build();
        let single = RetryConfig::standard().with_max_attempts(1);
        Clients {
            sm_once: sm::Client::from_conf(sm_config.to_builder().retry_config(single.clone()).build()),
            ssm_once: ssm::Client::from_conf(ssm_config.to_builder().retry_config(single).build()),
            sm: sm::Client::from_conf(sm_config),
            ssm: ssm::Client::from_conf(ssm_config),
        }
    }
}

/// Locks a std mutex, surviving poisoning (it guards one `Option` swap).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts each HTTP attempt by operation name.
#[derive(Clone)]
struct AttemptCounter {
    calls: Arc<CallStats>,
}

impl std::fmt::Debug for AttemptCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptCounter")
    }
}

impl Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "AttemptCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(api) = cfg.load::<Metadata>().and_then(|meta| Api::from_name(meta.name())) {
            self.calls.record(api);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
