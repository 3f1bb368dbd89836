//! Configuration: environment variables turned into typed, validated settings.
//!
//! AWS's "Parameters and Secrets Lambda Extension" variables keep their names and
//! defaults so the sidecar is a drop-in replacement; our own variables are prefixed
//! `SECRETS_SIDECAR_`. Every invalid value is reported with the variable's name and
//! the accepted range, all of them at once; nothing falls back to a default silently.
//! An empty value counts as unset (deployment tools often write `VAR: ''`).

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::allow::AllowList;
use crate::backend::aws::endpoints::{self, Endpoints};
use crate::backend::{BackendSettings, RoleSettings, TenantSession};
use crate::cache::CacheSettings;
use crate::mapping::{parse_env, parse_files, EnvMapping, FileMapping};
use crate::model::{SecretRef, Source};
use crate::tenant::{template, TenantRole};

mod reader;

use reader::Reader;
pub use reader::{Env, NotUnicode, ProcessEnv};
use roles::{external_id, session_name, tenant_role};

mod host;
mod limits;
mod platform;
mod roles;
pub mod vars;

pub use host::Host;
pub use limits::*;
pub use platform::{Platform, RefreshDriver};

/// How much the sidecar logs. `None` silences it entirely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    None,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings of one upstream service.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SourceSettings {
    /// Zero means "do not cache values of this source".
    pub ttl: Duration,
    /// `None` means the SDK's defaults (AWS: "0 = no timeout").
    pub timeout: Option<Duration>,
}

/// The validated configuration. Built once at start-up.
#[derive(Clone, Debug)]
pub struct Config {
    pub cache_enabled: bool,
    /// Zero disables caching, as with AWS's extension.
    pub cache_size: usize,
    /// Heap bytes the cache may hold: `SECRETS_SIDECAR_CACHE_BYTES`, or
    /// [`default_cache_bytes`] of the function's memory.
    pub cache_bytes: usize,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MB; `None` standalone.
    pub function_memory_mb: Option<u64>,
    /// `SECRETS_SIDECAR_WORKER_THREADS`; `None`: [`default_worker_threads`] decides.
    pub worker_threads: Option<usize>,
    pub http_port: u16,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    /// Concurrent upstream calls per service.
    pub max_connections: NonZeroUsize,
    pub secrets_manager: SourceSettings,
    pub ssm: SourceSettings,
    pub prefetch: Vec<SecretRef>,
    pub allow: Option<AllowList>,
    pub required: Vec<SecretRef>,
    pub max_stale: Duration,
    pub refresh_ahead: f64,
    pub init_timeout: Duration,
    /// `None`: the platform's default (`lifecycle::limits`).
    pub max_client_connections: Option<NonZeroUsize>,
    pub refresh_now_interval: Duration,
    /// `SECRETS_SIDECAR_ENV`: set by the exec wrapper; the sidecar prefetches them.
    pub env_mappings: Vec<EnvMapping>,
    /// `SECRETS_SIDECAR_FILES`: written by the exec wrapper, kept current by the sidecar.
    pub files: Vec<FileMapping>,
    /// Write CloudWatch Embedded Metric Format lines (off by default: custom metrics cost money).
    pub emf: bool,
    /// Zero: definitive failures are not remembered.
    pub negative_ttl: Duration,
    /// Refresh offsets, retry jitter and backoff, single-attempt refreshes and
    /// prefetch retries; off only to measure what they save (the fleet benchmark).
    pub fleet_spread: bool,
    /// External id and session name of every role assumed for `roleArn`.
    pub roles: RoleSettings,
    /// `SECRETS_SIDECAR_TENANT_ROLE`: the role the tenant's ids are read under.
    pub tenant_role: Option<TenantRole>,
    /// `AWS_LAMBDA_FUNCTION_NAME`: the EMF lines' dimension; `None` standalone.
    pub function_name: Option<String>,
    /// Where the sidecar's own upstream calls go, resolved against its own port.
    pub endpoints: Endpoints,
}

/// One invalid variable. The value itself is never echoed: some variables
/// (the token) are secret, and naming the variable is enough to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

/// Every invalid variable found, reported together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", join(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn join(errors: &[ConfigError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl Config {
    /// The async runtime's threads: 1 is the single-threaded runtime.
    pub fn runtime_threads(&self, platform: Platform) -> usize {
        let available = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        self.worker_threads
            .unwrap_or_else(|| default_worker_threads(platform, self.function_memory_mb, available))
    }

    /// Reads the process environment.
    pub fn from_process_env() -> Result<Self, ConfigErrors> {
        Self::from_env(&ProcessEnv)
    }

    /// Reads and validates every variable, reporting all problems at once.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigErrors> {
        let mut r = Reader {
            env,
            errors: Vec::new(),
        };
        let cache_enabled = r.boolean(vars::CACHE_ENABLED, true);
        let cache_size = r.integer(
            vars::CACHE_SIZE,
            DEFAULT_CACHE_SIZE as u64,
            0,
            MAX_CACHE_SIZE as u64,
            "entries",
        ) as usize;
        let memory_mb = r
            .raw(vars::LAMBDA_MEMORY_SIZE)
            .map(|_| r.integer(vars::LAMBDA_MEMORY_SIZE, 0, 1, MAX_FUNCTION_MEMORY_MB, "megabytes"));
        let cache_bytes = r.bytes(
            vars::CACHE_BYTES,
            default_cache_bytes(memory_mb),
            MIN_CACHE_BYTES,
            MAX_CACHE_BYTES,
        ) as usize;
        let http_port = r.integer(vars::HTTP_PORT, u64::from(DEFAULT_HTTP_PORT), 1, 65_535, "port") as u16;
        let log_level = r.log_level();
        let log_format = r.log_format();
        let max_connections = r.integer(
            vars::MAX_CONNECTIONS,
            DEFAULT_MAX_CONNECTIONS as u64,
            1,
            MAX_MAX_CONNECTIONS as u64,
            "connections",
        ) as usize;
        let secrets_manager = SourceSettings {
            ttl: r.seconds(vars::SM_TTL, DEFAULT_TTL, MAX_TTL),
            timeout: nonzero(r.millis(vars::SM_TIMEOUT, Duration::ZERO, Duration::ZERO, MAX_TIMEOUT)),
        };
        let ssm = SourceSettings {
            ttl: r.seconds(vars::SSM_TTL, DEFAULT_TTL, MAX_TTL),
            timeout: nonzero(r.millis(vars::SSM_TIMEOUT, Duration::ZERO, Duration::ZERO, MAX_TIMEOUT)),
        };
        let prefetch = r.refs(vars::PREFETCH);
        let required = r.refs(vars::REQUIRED);
        let allow = match r.raw(vars::ALLOW) {
            None => None,
            Some(v) => match AllowList::parse(&v) {
                Ok(list) => Some(list),
                Err(e) => {
                    r.fail(vars::ALLOW, e.to_string());
                    None
                }
            },
        };
        let max_stale = r.seconds(vars::MAX_STALE, DEFAULT_MAX_STALE, MAX_MAX_STALE);
        let refresh_ahead = r.fraction(vars::REFRESH_AHEAD, DEFAULT_REFRESH_AHEAD, MIN_REFRESH_AHEAD, 1.0);
        let init_timeout = r.millis(
            vars::INIT_TIMEOUT,
            DEFAULT_INIT_TIMEOUT,
            MIN_INIT_TIMEOUT,
            MAX_INIT_TIMEOUT,
        );
        let max_client_connections = r
            .raw(vars::MAX_CLIENT_CONNECTIONS)
            .map(|_| {
                r.integer(
                    vars::MAX_CLIENT_CONNECTIONS,
                    DEFAULT_MAX_CLIENT_CONNECTIONS as u64,
                    1,
                    MAX_MAX_CLIENT_CONNECTIONS as u64,
                    "connections",
                ) as usize
            })
            .and_then(NonZeroUsize::new);
        let refresh_now_interval = r.millis(
            vars::REFRESH_NOW_INTERVAL,
            DEFAULT_REFRESH_NOW_INTERVAL,
            Duration::ZERO,
            MAX_REFRESH_NOW_INTERVAL,
        );
        let negative_ttl = r.seconds(vars::NEGATIVE_TTL, DEFAULT_NEGATIVE_TTL, MAX_NEGATIVE_TTL);
        let fleet_spread = r.on_off(vars::FLEET_SPREAD, true);
        let function_name = r.raw(vars::LAMBDA_FUNCTION_NAME);
        let roles = RoleSettings {
            external_id: external_id(&mut r),
            session_name: function_name
                .as_deref()
                .map_or_else(|| RoleSettings::STANDALONE_SESSION.to_owned(), session_name),
            tenant: TenantSession::default(),
        };
        let tenant_role = tenant_role(&mut r);
        // Not through the reader: an endpoint that is not UTF-8 is the SDK's to refuse.
        let endpoints = endpoints::resolve(|name| env.get(name).ok().flatten(), http_port);

        let env_mappings = match r.raw(vars::ENV).map(|v| parse_env(&v)) {
            None => Vec::new(),
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                r.fail(vars::ENV, e.to_string());
                Vec::new()
            }
        };
        let files = match r.raw(vars::FILES).map(|v| parse_files(&v)) {
            None => Vec::new(),
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                r.fail(vars::FILES, e.to_string());
                Vec::new()
            }
        };
        let emf = r.boolean(vars::EMF, false);
        let worker_threads = r
            .raw(vars::WORKER_THREADS)
            .map(|_| r.integer(vars::WORKER_THREADS, 1, 1, MAX_WORKER_THREADS, "threads") as usize);

        let config = Config {
            cache_enabled,
            cache_size,
            cache_bytes,
            function_memory_mb: memory_mb,
            worker_threads,
            http_port,
            log_level,
            log_format,
            max_connections: NonZeroUsize::new(max_connections).unwrap_or(NonZeroUsize::MIN),
            secrets_manager,
            ssm,
            prefetch,
            allow,
            required,
            max_stale,
            refresh_ahead,
            init_timeout,
            max_client_connections,
            refresh_now_interval,
            env_mappings,
            files,
            emf,
            negative_ttl,
            fleet_spread,
            roles,
            tenant_role,
            function_name,
            endpoints,
        };
        config.check_consistency(&mut r);
        if r.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(r.errors))
        }
    }

    /// `{tenant}` may stand in PREFETCH only (and in the allowlist, checked by its
    /// parser): the tenant is named with the first invoke, after INIT, when
    /// REQUIRED and the exec wrapper's ids are already due.
    fn check_templates<E: Env>(&self, r: &mut Reader<'_, E>) {
        for item in &self.prefetch {
            if let Err(e) = template::check(item.id()) {
                r.fail(vars::PREFETCH, e.to_string());
            } else if template::is_template(item.id()) && matches!(item, SecretRef::Tag(_)) {
                r.fail(
                    vars::PREFETCH,
                    format!("{item}: a tag reference cannot hold {{tenant}}"),
                );
            }
        }
        let templated = self.prefetch.iter().any(|i| template::is_template(i.id()))
            || self
                .allow
                .as_ref()
                .is_some_and(|a| a.templates().iter().any(|t| !t.starts_with("role:")));
        if self.tenant_role.is_some() && !templated {
            r.fail(
                vars::TENANT_ROLE,
                format!(
                    "names the role for the tenant's secrets, but no {{tenant}} template in {} or {} says which \
                     secrets are the tenant's",
                    vars::PREFETCH,
                    vars::ALLOW
                ),
            );
        }
        let init_time = self.required.iter().map(|i| (vars::REQUIRED, i));
        let mapped = self.env_mappings.iter().map(|m| (vars::ENV, &m.reference));
        let filed = self.files.iter().map(|m| (vars::FILES, &m.reference));
        for (var, item) in init_time.chain(mapped).chain(filed) {
            if template::is_template(item.id()) {
                r.fail(
                    var,
                    format!(
                        "{item}: {{tenant}} is known only after INIT (with the first invoke); template it in {} instead",
                        vars::PREFETCH
                    ),
                );
            }
        }
    }

    /// Combinations that are each valid but make no sense together.
    fn check_consistency<E: Env>(&self, r: &mut Reader<'_, E>) {
        self.check_templates(r);
        let cache = self.cache_settings();
        for (var, refs) in [(vars::PREFETCH, &self.prefetch), (vars::REQUIRED, &self.required)] {
            // A template is checked against the allowlist once resolved (the cache's check).
            for item in refs.iter().filter(|i| !template::is_template(i.id())) {
                if !cache.caches(item.source()) {
                    r.fail(
                        var,
                        format!(
                            "{item} cannot be prefetched: caching is off for {} \
                             (check {}, {} and the TTL)",
                            item.source().label(),
                            vars::CACHE_ENABLED,
                            vars::CACHE_SIZE
                        ),
                    );
                }
                if let Some(allow) = &self.allow {
                    if !allow.permits_ref(item) {
                        r.fail(var, format!("{item} is not permitted by {}", vars::ALLOW));
                    }
                }
            }
        }
        // A mapped id the allowlist refuses could never be read: say so at start-up.
        if let Some(allow) = &self.allow {
            let mapped = self.env_mappings.iter().map(|m| (vars::ENV, &m.reference));
            let filed = self.files.iter().map(|m| (vars::FILES, &m.reference));
            for (var, item) in mapped.chain(filed) {
                if !allow.permits_ref(item) {
                    r.fail(var, format!("{item} is not permitted by {}", vars::ALLOW));
                }
            }
        }
    }

    /// The cache's settings.
    pub fn cache_settings(&self) -> CacheSettings {
        CacheSettings {
            capacity: self.cache_size,
            budget: self.cache_bytes,
            enabled: self.cache_enabled,
            secrets_manager_ttl: self.secrets_manager.ttl,
            ssm_ttl: self.ssm.ttl,
            max_stale: self.max_stale,
            refresh_ahead: self.refresh_ahead,
            refresh_now_interval: self.refresh_now_interval,
            negative_ttl: self.negative_ttl,
            allow: self.allow.clone(),
            tenancy: None,
        }
    }

    /// The upstream clients' settings.
    pub fn backend_settings(&self) -> BackendSettings {
        BackendSettings {
            max_connections: self.max_connections.get(),
            secrets_manager_timeout: self.secrets_manager.timeout,
            ssm_timeout: self.ssm.timeout,
            roles: self.roles.clone(),
            endpoints: Some(self.endpoints.clone()),
        }
    }

    pub fn source(&self, source: Source) -> &SourceSettings {
        match source {
            Source::SecretsManager => &self.secrets_manager,
            Source::Ssm => &self.ssm,
        }
    }

    /// Everything to fetch at start-up: PREFETCH plus REQUIRED, plus the ids the
    /// exec wrapper will ask for (where their source is cached: its requests then
    /// join the prefetch instead of going upstream one by one), without repeats.
    pub fn startup_refs(&self) -> Vec<SecretRef> {
        let cache = self.cache_settings();
        let mapped = self
            .env_mappings
            .iter()
            .map(|m| &m.reference)
            .chain(self.files.iter().map(|m| &m.reference))
            .filter(|r| cache.caches(r.source()));
        let mut all: Vec<SecretRef> = Vec::with_capacity(self.prefetch.len() + self.required.len());
        // `{tenant}` entries wait for the tenant (`lifecycle::Running::bind_tenant`).
        let untemplated = self.prefetch.iter().filter(|r| !template::is_template(r.id()));
        for r in untemplated.chain(self.required.iter()).chain(mapped) {
            if !all.contains(r) {
                all.push(r.clone());
            }
        }
        all
    }
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests;
