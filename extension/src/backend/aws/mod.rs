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
//! clone restored days later must not reuse either. Calls in another region (a full
//! ARN names it) or with an assumed role (`Via::scope`) go through the pool's other
//! client sets (`clients`); batches whose ids span regions are split by region and
//! merged (`batches`). `operations` holds the calls, `classify` sorts their errors.

mod batches;
mod classify;
mod clients;
pub mod endpoints;
mod forward;
mod operations;
mod shapes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use tokio::sync::Semaphore;

use self::clients::{Clients, Pool};
pub use self::clients::{MAX_PLACES, MAX_ROLES};
#[cfg(test)]
use super::Attempts;
use super::{Api, BackendSettings, CallStats, ErrorKind, UpstreamError, Via};
use crate::model::arn_region;

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
    pool: Mutex<Option<Arc<Pool>>>,
    /// Held while the pool is built, so concurrent first calls build it once.
    building: tokio::sync::Mutex<()>,
    sm_permits: Semaphore,
    ssm_permits: Semaphore,
    /// The SDK route's pass-through client (`forward`), built on first use.
    forwarder: Mutex<Option<forward::HttpClient>>,
}

enum Source {
    /// The process environment (`aws_config`'s default chains).
    Environment,
    /// A configuration given whole (unit tests' replay clients).
    Given(Box<SdkConfig>),
}

/// Loads the shared SDK configuration from the environment: one HTTP client (and
/// so one connection pool) for every client set the pool derives from it.
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
            pool: Mutex::new(None),
            building: tokio::sync::Mutex::new(()),
            sm_permits: Semaphore::new(permits),
            ssm_permits: Semaphore::new(permits),
            forwarder: Mutex::new(None),
        }
    }

    /// Builds the home clients now rather than at the first call (loading the TLS
    /// trust store takes milliseconds better spent while the runtime starts).
    pub async fn connect(&self) {
        self.pool().await;
    }

    /// Drops every client set: their pooled connections and cached credentials
    /// (assumed roles' included) go with them, and the next call builds fresh ones.
    pub fn reset(&self) {
        *lock(&self.pool) = None;
        *lock(&self.forwarder) = None;
    }

    async fn pool(&self) -> Arc<Pool> {
        if let Some(p) = lock(&self.pool).clone() {
            return p;
        }
        let _building = self.building.lock().await;
        if let Some(p) = lock(&self.pool).clone() {
            return p;
        }
        let sdk = match &self.source {
            Source::Environment => load_sdk_config().await,
            Source::Given(sdk) => (**sdk).clone(),
        };
        let counter = AttemptCounter {
            calls: self.calls.clone(),
        };
        let pool = Arc::new(Pool::new(&sdk, &self.settings, counter));
        *lock(&self.pool) = Some(pool.clone());
        pool
    }

    /// The region of the home clients.
    async fn home_region(&self) -> Option<String> {
        self.pool().await.home_region().map(str::to_owned)
    }

    /// The home clients (the function's region and credentials).
    #[cfg(test)]
    async fn clients(&self) -> Arc<Clients> {
        self.pool().await.home()
    }

    /// The clients for a call about `id` (`None`: no id, e.g. a path) made `via`:
    /// in the region a full ARN names, else the scope's region, else home; with
    /// the scope's role, if any.
    async fn clients_for(&self, via: &Via, id: Option<&str>) -> Result<Arc<Clients>, UpstreamError> {
        if via.scope.account().is_some() && via.scope.role().is_none() {
            return Err(UpstreamError::new(
                ErrorKind::Invalid,
                "another account is reached through a full ARN or a role",
            ));
        }
        let region = id.and_then(arn_region).or(via.scope.region());
        self.pool().await.clients(region, via.scope.role()).await
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
