//! The upstream seam: everything the cache asks of Secrets Manager and SSM.
//!
//! [`Upstream`] is the one trait between the cache and AWS. [`aws::AwsUpstream`]
//! implements it with the AWS SDK (unit-tested through the SDK's own replay HTTP
//! client, and against moto in the integration tests); [`fake::FakeUpstream`] is an
//! in-memory stand-in so cache logic is tested without a network. What comes back is
//! a [`Value`] (rendered once, zeroized on drop) or an [`UpstreamError`] sorted into
//! transient and definitive; [`CallStats`] counts every HTTP attempt by [`Api`].

pub mod aws;
mod calls;
mod error;
#[cfg(any(test, feature = "fake-upstream"))]
pub mod fake;
pub mod passthrough;
mod value;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use calls::{Api, CallStats};
pub use error::{ErrorKind, UpstreamError};
pub use value::{NotJsonObject, ParameterFields, SecretFields, Value, ValueMeter};

use crate::model::{Scope, SecretRef, Selector};

/// The backend's view of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSettings {
    /// Calls in flight per service (`PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Overall limit per Secrets Manager call; `None`: the SDK's default.
    pub secrets_manager_timeout: Option<Duration>,
    /// Overall limit per SSM call; `None`: the SDK's default.
    pub ssm_timeout: Option<Duration>,
    /// How roles named by `roleArn` are assumed.
    pub roles: RoleSettings,
    /// Where each service's calls go (`aws::endpoints`); `None`: as the SDK
    /// configuration says (a configuration given whole, in tests).
    pub endpoints: Option<aws::endpoints::Endpoints>,
}

/// What every STS AssumeRole call carries.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleSettings {
    /// `SECRETS_SIDECAR_ROLE_EXTERNAL_ID`, which a role's trust policy may require.
    pub external_id: Option<String>,
    /// Names the function in the role owner's CloudTrail (`AWS_LAMBDA_FUNCTION_NAME`).
    pub session_name: String,
    /// The tenant's session tag, once Lambda names the tenant (`SECRETS_SIDECAR_TENANT_ROLE`).
    pub tenant: TenantSession,
}

/// The session tag every AssumeRole of the tenant's role carries, so the role
/// owner's policies can key on `aws:PrincipalTag/KEY`. Set once, when the tenant is
/// bound (`tenant::Tenancy::report`), before any of the tenant's ids is admitted;
/// shared by the configuration, the tenancy and every client pool.
#[derive(Clone, Default)]
pub struct TenantSession(Arc<OnceLock<SessionTag>>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTag {
    /// The tenant's role, resolved.
    pub role: String,
    pub key: String,
    /// The tenant id (an id, not a secret).
    pub value: String,
}

impl TenantSession {
    /// Sets the tag; `false` when one was set already (an environment has one tenant).
    pub fn set(&self, tag: SessionTag) -> bool {
        self.0.set(tag).is_ok()
    }

    /// The tag for assuming `role`, when it is the tenant's.
    pub fn tag_for(&self, role: &str) -> Option<&SessionTag> {
        self.0.get().filter(|t| t.role == role)
    }
}

// One shared cell: equal when it is the same cell.
impl PartialEq for TenantSession {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TenantSession {}

impl std::fmt::Debug for TenantSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TenantSession").field(&self.0.get()).finish()
    }
}

impl RoleSettings {
    /// Session name when no function name is known (standalone).
    pub const STANDALONE_SESSION: &str = "secrets-sidecar";
}

impl Default for RoleSettings {
    fn default() -> Self {
        RoleSettings {
            external_id: None,
            session_name: RoleSettings::STANDALONE_SESSION.to_owned(),
            tenant: TenantSession::default(),
        }
    }
}

// The external id is not a credential, but it is a shared value between two
// accounts that has no business in logs.
impl std::fmt::Debug for RoleSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleSettings")
            .field("external_id", &self.external_id.as_ref().map(|_| "<set>"))
            .field("session_name", &self.session_name)
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// BatchGetSecretValue takes at most 20 ids.
pub const MAX_SECRETS_PER_BATCH: usize = 20;
/// GetParameters takes at most 10 names.
pub const MAX_PARAMETERS_PER_BATCH: usize = 10;

/// How one upstream call is made: in which account, region and role, and how many
/// attempts the SDK may spend on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Via {
    pub scope: Scope,
    pub attempts: Attempts,
}

impl Via {
    /// The function's own scope, with the SDK's retries.
    pub const HOME: Via = Via {
        scope: Scope::HOME,
        attempts: Attempts::Retried,
    };
}

/// Whether the SDK may retry a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Attempts {
    /// Nothing to serve meanwhile (a cold miss, the prefetch): the SDK's retries.
    Retried,
    /// A value is in hand and served meanwhile: one attempt, and the cache's own
    /// backoff paces the next. Retrying inside the call would multiply calls
    /// exactly when AWS throttles.
    Once,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Values returned by a batch call, plus the ids the service reported as failed.
#[derive(Debug, Default)]
pub struct Batch {
    pub values: Vec<Value>,
    pub errors: Vec<(String, UpstreamError)>,
}

/// A secret found by ListSecrets: its metadata, no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub arn: String,
}

/// One page of GetParametersByPath.
#[derive(Debug, Default)]
pub struct Page {
    pub values: Vec<Value>,
    pub next_token: Option<String>,
}

/// The operations the sidecar uses. Each call is one upstream API operation.
pub trait Upstream: Send + Sync + 'static {
    fn get_secret<'a>(
        &'a self,
        via: &'a Via,
        id: &'a str,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Value, UpstreamError>>;

    fn get_parameter<'a>(
        &'a self,
        via: &'a Via,
        name: &'a str,
        selector: &'a Selector,
        decrypt: bool,
    ) -> BoxFuture<'a, Result<Value, UpstreamError>>;

    /// AWSCURRENT of up to [`MAX_SECRETS_PER_BATCH`] secrets.
    fn batch_get_secrets<'a>(&'a self, via: &'a Via, ids: &'a [String]) -> BoxFuture<'a, Result<Batch, UpstreamError>>;

    /// Latest version of up to [`MAX_PARAMETERS_PER_BATCH`] parameters.
    fn get_parameters<'a>(
        &'a self,
        via: &'a Via,
        names: &'a [String],
        decrypt: bool,
    ) -> BoxFuture<'a, Result<Batch, UpstreamError>>;

    /// One page of every parameter under `path`, recursively.
    fn get_parameters_by_path<'a>(
        &'a self,
        via: &'a Via,
        path: &'a str,
        decrypt: bool,
        next_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page, UpstreamError>>;

    /// Whether `r` names something that exists (a path: at least one parameter under
    /// it), asked with metadata-only calls (DescribeSecret, DescribeParameters) that
    /// return no value: what a SnapStart INIT may call.
    fn exists<'a>(&'a self, via: &'a Via, r: &'a SecretRef) -> BoxFuture<'a, Result<(), UpstreamError>>;

    /// Every secret carrying the tag `key` (with exactly `value`, when given), from
    /// ListSecrets (metadata only), all pages.
    fn list_secrets_by_tag<'a>(
        &'a self,
        via: &'a Via,
        key: &'a str,
        value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Listed>, UpstreamError>>;
}

/// Whether `value` answers a request made with `id`: by name, by full ARN, or (for
/// secrets) by the partial ARN without Secrets Manager's six-character suffix.
pub fn answers(id: &str, value: &Value) -> bool {
    if id == &*value.name || id == &*value.arn {
        return true;
    }
    match value.arn.strip_prefix(id) {
        Some(rest) => {
            id.starts_with("arn:")
                && rest.len() == 7
                && rest.starts_with('-')
                && rest[1..].chars().all(|c| c.is_ascii_alphanumeric())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(name: &str, arn: &str) -> Value {
        Value::from_secret(SecretFields {
            arn: arn.into(),
            name: name.into(),
            version_id: None,
            secret_string: Some(String::new()),
            secret_binary: None,
            version_stages: vec![],
            created_date: None,
        })
    }

    #[test]
    fn ids_answered_by_name_arn_and_partial_arn() {
        let v = value("app/db", "arn:aws:secretsmanager:us-east-1:1:secret:app/db-AbCdEf");
        assert!(answers("app/db", &v));
        assert!(answers("arn:aws:secretsmanager:us-east-1:1:secret:app/db-AbCdEf", &v));
        assert!(answers("arn:aws:secretsmanager:us-east-1:1:secret:app/db", &v));
        assert!(!answers("app", &v));
        assert!(!answers("arn:aws:secretsmanager:us-east-1:1:secret:app", &v));
    }
}
