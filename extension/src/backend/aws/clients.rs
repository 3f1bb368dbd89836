//! The pool of SDK clients: the home set (the function's region and credentials)
//! and, built on first use, one set per other region and/or assumed role in use.
//!
//! Every set is derived from the one home `SdkConfig`, so all share its HTTP client
//! (one connector, one connection pool), its endpoint override and its identity
//! cache. Another region changes only where calls are signed for and sent; a role
//! swaps the credentials provider for the SDK's own `AssumeRoleProvider`, whose base
//! credentials are the home chain and whose STS calls go to the home region. One
//! provider per role is shared by that role's sets in every region, so the identity
//! cache (one partition per provider) holds one set of credentials per role: kept
//! until shortly before they expire (the lazy cache's 10 s buffer, minus up to 5 s
//! of jitter), then renewed by the next call, once however many calls wait.
//!
//! Both kinds are bounded ([`MAX_PLACES`], [`MAX_ROLES`]). Beyond the bound a call
//! is refused rather than a set evicted: eviction would turn a function that sprays
//! regions or roles into silent connection churn and repeated AssumeRole calls,
//! while a refusal costs nothing and names the limit. A function uses a handful. The
//! whole pool is dropped on reset (SnapStart restore), credentials included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use aws_sdk_secretsmanager as sm;
use aws_sdk_secretsmanager::config::SharedCredentialsProvider;
use aws_sdk_ssm as ssm;
use aws_smithy_async::time::SharedTimeSource;

use super::{lock, AttemptCounter, CONNECT_TIMEOUT, FIRST_BYTE_TIMEOUT};
use crate::backend::{Attempts, BackendSettings, ErrorKind, UpstreamError};
use crate::model::is_region;

/// Client sets for other regions and roles (each region × role combination is one).
pub const MAX_PLACES: usize = 16;
/// Roles assumed at once (each holds its own credentials).
pub const MAX_ROLES: usize = 8;

/// Clients for both services on one SDK configuration, each twice: with the SDK's
/// retries, and with a single attempt (see [`Attempts`]). Clients are cheap
/// handles: all four share the HTTP connector and the credentials cache.
pub(super) struct Clients {
    sm: sm::Client,
    ssm: ssm::Client,
    sm_once: sm::Client,
    ssm_once: ssm::Client,
}

impl Clients {
    pub(super) fn sm(&self, attempts: Attempts) -> &sm::Client {
        match attempts {
            Attempts::Retried => &self.sm,
            Attempts::Once => &self.sm_once,
        }
    }

    pub(super) fn ssm(&self, attempts: Attempts) -> &ssm::Client {
        match attempts {
            Attempts::Retried => &self.ssm,
            Attempts::Once => &self.ssm_once,
        }
    }

    fn build(sdk: &SdkConfig, settings: &BackendSettings, counter: &AttemptCounter) -> Clients {
        let mut sm_builder = sm::config::Builder::from(sdk)
            .timeout_config(timeouts(settings.secrets_manager_timeout))
            .interceptor(counter.clone());
        let mut ssm_builder = ssm::config::Builder::from(sdk)
            .timeout_config(timeouts(settings.ssm_timeout))
            .interceptor(counter.clone());
        // Set explicitly, even to "none": the SDK's own environment lookup would
        // otherwise bring back an endpoint that names this sidecar.
        if let Some(e) = &settings.endpoints {
            sm_builder.set_endpoint_url(e.secrets_manager.clone());
            ssm_builder.set_endpoint_url(e.ssm.clone());
        }
        let sm_config = sm_builder.build();
        let ssm_config = ssm_builder.build();
        let single = RetryConfig::standard().with_max_attempts(1);
        Clients {
            sm_once: sm::Client::from_conf(sm_config.to_builder().retry_config(single.clone()).build()),
            ssm_once: ssm::Client::from_conf(ssm_config.to_builder().retry_config(single).build()),
            sm: sm::Client::from_conf(sm_config),
            ssm: ssm::Client::from_conf(ssm_config),
        }
    }
}

fn timeouts(t: Option<Duration>) -> TimeoutConfig {
    match t {
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
    }
}

/// Where a set of clients calls from: another region (`None`: home) and/or an
/// assumed role (`None`: the function's own credentials).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Place {
    region: Option<Box<str>>,
    role: Option<Box<str>>,
}

pub(super) struct Pool {
    /// The home configuration, with an identity cache of this pool's own.
    sdk: SdkConfig,
    home: Arc<Clients>,
    others: Mutex<HashMap<Place, Arc<Clients>>>,
    /// One credentials provider per role, shared by its sets in every region.
    roles: Mutex<HashMap<Box<str>, SharedCredentialsProvider>>,
    settings: BackendSettings,
    counter: AttemptCounter,
}

impl Pool {
    pub(super) fn new(sdk: &SdkConfig, settings: &BackendSettings, counter: AttemptCounter) -> Pool {
        let mut builder = sdk.to_builder();
        // Each pool gets its own cache, so a reset forgets every credential even when
        // the configuration itself is reused.
        builder.set_identity_cache(Some(IdentityCache::lazy().build()));
        if sdk.time_source().is_none() {
            // AssumeRoleProvider needs one; configurations loaded from the
            // environment have it already.
            builder.set_time_source(Some(SharedTimeSource::default()));
        }
        let sdk = builder.build();
        let home = Arc::new(Clients::build(&sdk, settings, &counter));
        Pool {
            sdk,
            home,
            others: Mutex::new(HashMap::new()),
            roles: Mutex::new(HashMap::new()),
            settings: settings.clone(),
            counter,
        }
    }

    #[cfg(test)]
    pub(super) fn home(&self) -> Arc<Clients> {
        self.home.clone()
    }

    /// The home credentials chain (the function's role's).
    pub(super) fn credentials_provider(&self) -> Option<SharedCredentialsProvider> {
        self.sdk.credentials_provider()
    }

    pub(super) fn home_region(&self) -> Option<&str> {
        self.sdk.region().map(|r| r.as_ref())
    }

    /// The clients for calls in `region` (`None`: home) with `role` (`None`: the
    /// function's own credentials), built on first use.
    pub(super) async fn clients(
        &self,
        region: Option<&str>,
        role: Option<&str>,
    ) -> Result<Arc<Clients>, UpstreamError> {
        let region = region.filter(|r| Some(*r) != self.home_region());
        if region.is_none() && role.is_none() {
            return Ok(self.home.clone());
        }
        if let Some(r) = region {
            if !is_region(r) {
                return Err(UpstreamError::new(
                    ErrorKind::Invalid,
                    format!("'{r}' in the ARN is not an AWS region"),
                ));
            }
        }
        let place = Place {
            region: region.map(Box::from),
            role: role.map(Box::from),
        };
        if let Some(c) = lock(&self.others).get(&place) {
            return Ok(c.clone());
        }
        let credentials = match role {
            Some(role) => Some(self.role_credentials(role).await?),
            None => None,
        };
        let mut others = lock(&self.others);
        if let Some(c) = others.get(&place) {
            return Ok(c.clone());
        }
        if others.len() >= MAX_PLACES {
            return Err(UpstreamError::new(
                ErrorKind::Invalid,
                format!("at most {MAX_PLACES} other regions and roles are served at once"),
            ));
        }
        let mut builder = self.sdk.to_builder();
        if let Some(r) = region {
            builder.set_region(Some(Region::new(r.to_owned())));
        }
        if let Some(c) = credentials {
            builder.set_credentials_provider(Some(c));
        }
        let clients = Arc::new(Clients::build(&builder.build(), &self.settings, &self.counter));
        others.insert(place, clients.clone());
        tracing::debug!(region, role, sets = others.len(), "client set built");
        Ok(clients)
    }

    /// The credentials provider for `role`: the SDK's AssumeRoleProvider on the home
    /// configuration (base credentials, STS region, connector). Building it calls
    /// nothing; the first signed request assumes the role.
    async fn role_credentials(&self, role: &str) -> Result<SharedCredentialsProvider, UpstreamError> {
        {
            let roles = lock(&self.roles);
            if let Some(p) = roles.get(role) {
                return Ok(p.clone());
            }
            if roles.len() >= MAX_ROLES {
                return Err(too_many_roles());
            }
        }
        let sts = self.sdk.to_builder().timeout_config(timeouts(None)).build();
        let mut builder = AssumeRoleProvider::builder(role)
            .configure(&sts)
            .session_name(self.settings.roles.session_name.clone());
        if let Some(id) = &self.settings.roles.external_id {
            builder = builder.external_id(id.clone());
        }
        // The tenant's role carries the tenant, so the role owner's policies can key
        // on `aws:PrincipalTag/KEY` (its trust policy must allow sts:TagSession).
        if let Some(tag) = self.settings.roles.tenant.tag_for(role) {
            builder = builder.tags([(tag.key.clone(), tag.value.clone())]);
        }
        let provider = SharedCredentialsProvider::new(builder.build().await);
        let mut roles = lock(&self.roles);
        // A concurrent first call may have won; this provider was never used.
        if let Some(p) = roles.get(role) {
            return Ok(p.clone());
        }
        if roles.len() >= MAX_ROLES {
            return Err(too_many_roles());
        }
        roles.insert(role.into(), provider.clone());
        Ok(provider)
    }

    #[cfg(test)]
    pub(super) fn sizes(&self) -> (usize, usize) {
        (lock(&self.others).len(), lock(&self.roles).len())
    }
}

fn too_many_roles() -> UpstreamError {
    UpstreamError::new(
        ErrorKind::Invalid,
        format!("at most {MAX_ROLES} roles are assumed at once"),
    )
}
