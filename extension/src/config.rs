//! Configuration: environment variables turned into typed, validated settings.
//!
//! AWS's "Parameters and Secrets Lambda Extension" variables keep their names and
//! defaults so the sidecar is a drop-in replacement; our own variables are prefixed
//! `SECRETS_SIDECAR_`. Every invalid value is reported with the variable's name and
//! the accepted range, all of them at once; nothing falls back to a default silently.
//! An empty value counts as unset (deployment tools often write `VAR: ''`).

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::allow::AllowList;
use crate::refs::{parse_ref_list, SecretRef};

pub const DEFAULT_HTTP_PORT: u16 = 2773;
pub const DEFAULT_CACHE_SIZE: usize = 1000;
/// AWS caps the cache at 1000 entries; we allow more for standalone use.
pub const MAX_CACHE_SIZE: usize = 100_000;
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// AWS caps TTLs at 300 s; we allow up to a day.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);
pub const DEFAULT_MAX_CONNECTIONS: usize = 3;
pub const MAX_MAX_CONNECTIONS: usize = 1000;
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(900);
pub const MAX_MAX_STALE: Duration = Duration::from_secs(7 * 86_400);
pub const DEFAULT_REFRESH_AHEAD: f64 = 0.75;
pub const MIN_REFRESH_AHEAD: f64 = 0.1;
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_millis(5000);
pub const MIN_INIT_TIMEOUT: Duration = Duration::from_millis(100);
/// Lambda gives the whole init phase 10 s; keep well inside it.
pub const MAX_INIT_TIMEOUT: Duration = Duration::from_millis(9000);
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 256;
pub const MAX_MAX_CLIENT_CONNECTIONS: usize = 65_536;
pub const DEFAULT_REFRESH_NOW_INTERVAL: Duration = Duration::from_millis(1000);
pub const MAX_REFRESH_NOW_INTERVAL: Duration = Duration::from_secs(3600);

/// Names of every variable we read, so tests and docs cannot drift from the code.
pub mod vars {
    pub const CACHE_ENABLED: &str = "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED";
    pub const CACHE_SIZE: &str = "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE";
    pub const HTTP_PORT: &str = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT";
    pub const LOG_LEVEL: &str = "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL";
    pub const MAX_CONNECTIONS: &str = "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS";
    pub const SM_TTL: &str = "SECRETS_MANAGER_TTL";
    pub const SSM_TTL: &str = "SSM_PARAMETER_STORE_TTL";
    pub const SM_TIMEOUT: &str = "SECRETS_MANAGER_TIMEOUT_MILLIS";
    pub const SSM_TIMEOUT: &str = "SSM_PARAMETER_STORE_TIMEOUT_MILLIS";
    pub const PREFETCH: &str = "SECRETS_SIDECAR_PREFETCH";
    pub const ALLOW: &str = "SECRETS_SIDECAR_ALLOW";
    pub const REQUIRED: &str = "SECRETS_SIDECAR_REQUIRED";
    pub const MAX_STALE: &str = "SECRETS_SIDECAR_MAX_STALE";
    pub const REFRESH_AHEAD: &str = "SECRETS_SIDECAR_REFRESH_AHEAD";
    pub const INIT_TIMEOUT: &str = "SECRETS_SIDECAR_INIT_TIMEOUT_MILLIS";
    pub const MAX_CLIENT_CONNECTIONS: &str = "SECRETS_SIDECAR_MAX_CLIENT_CONNECTIONS";
    pub const REFRESH_NOW_INTERVAL: &str = "SECRETS_SIDECAR_REFRESH_NOW_INTERVAL_MILLIS";
    pub const TOKEN: &str = "SECRETS_SIDECAR_TOKEN";
    pub const LAMBDA_LOG_LEVEL: &str = "AWS_LAMBDA_LOG_LEVEL";
    pub const LAMBDA_LOG_FORMAT: &str = "AWS_LAMBDA_LOG_FORMAT";
}

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
    pub max_client_connections: NonZeroUsize,
    pub refresh_now_interval: Duration,
}

/// One invalid variable. The value itself is never echoed: some variables
/// (the token) are secret, and naming the variable is enough to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

/// Every invalid variable found, reported together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A variable is set but its value is not valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotUnicode;

/// Where variables come from: the process environment, or a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Result<Option<String>, NotUnicode>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Result<Option<String>, NotUnicode> {
        match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(NotUnicode),
        }
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<String, String, S> {
    fn get(&self, name: &str) -> Result<Option<String>, NotUnicode> {
        Ok(std::collections::HashMap::get(self, name).cloned())
    }
}

/// Collects values and errors while the configuration is read.
struct Reader<'a, E: Env> {
    env: &'a E,
    errors: Vec<ConfigError>,
}

impl<E: Env> Reader<'_, E> {
    fn fail(&mut self, var: &'static str, problem: impl Into<String>) {
        self.errors.push(ConfigError {
            var,
            problem: problem.into(),
        });
    }

    /// The trimmed value, `None` when unset or empty.
    fn raw(&mut self, var: &'static str) -> Option<String> {
        match self.env.get(var) {
            Ok(Some(v)) => {
                let v = v.trim();
                (!v.is_empty()).then(|| v.to_owned())
            }
            Ok(None) => None,
            Err(NotUnicode) => {
                self.fail(var, "is not valid UTF-8");
                None
            }
        }
    }

    fn boolean(&mut self, var: &'static str, default: bool) -> bool {
        match self.raw(var) {
            None => default,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                self.fail(var, "expected true or false");
                default
            }
        }
    }

    fn integer(&mut self, var: &'static str, default: u64, min: u64, max: u64, unit: &str) -> u64 {
        match self.raw(var) {
            None => default,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    self.fail(var, format!("expected a whole number of {unit} from {min} to {max}"));
                    default
                }
            },
        }
    }

    fn seconds(&mut self, var: &'static str, default: Duration, max: Duration) -> Duration {
        Duration::from_secs(self.integer(var, default.as_secs(), 0, max.as_secs(), "seconds"))
    }

    fn millis(&mut self, var: &'static str, default: Duration, min: Duration, max: Duration) -> Duration {
        Duration::from_millis(self.integer(
            var,
            millis_u64(default),
            millis_u64(min),
            millis_u64(max),
            "milliseconds",
        ))
    }

    fn log_level(&mut self) -> LogLevel {
        if let Some(v) = self.raw(vars::LOG_LEVEL) {
            return match parse_log_level(&v) {
                Some(level) => level,
                None => {
                    self.fail(vars::LOG_LEVEL, "expected one of none, error, warn, info, debug, trace");
                    LogLevel::Info
                }
            };
        }
        // Lambda's own advanced logging control, when the AWS variable is not set.
        match self.raw(vars::LAMBDA_LOG_LEVEL) {
            None => LogLevel::Info,
            Some(v) if v.eq_ignore_ascii_case("fatal") => LogLevel::Error,
            Some(v) => match parse_log_level(&v) {
                Some(level) => level,
                None => {
                    self.fail(
                        vars::LAMBDA_LOG_LEVEL,
                        "expected one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL",
                    );
                    LogLevel::Info
                }
            },
        }
    }

    fn log_format(&mut self) -> LogFormat {
        match self.raw(vars::LAMBDA_LOG_FORMAT) {
            None => LogFormat::Text,
            Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            Some(v) if v.eq_ignore_ascii_case("text") => LogFormat::Text,
            Some(_) => {
                self.fail(vars::LAMBDA_LOG_FORMAT, "expected JSON or Text");
                LogFormat::Text
            }
        }
    }

    fn refs(&mut self, var: &'static str) -> Vec<SecretRef> {
        match self.raw(var) {
            None => Vec::new(),
            Some(v) => match parse_ref_list(&v) {
                Ok(refs) => refs,
                Err(e) => {
                    self.fail(var, e);
                    Vec::new()
                }
            },
        }
    }

    fn fraction(&mut self, var: &'static str, default: f64, min: f64, max: f64) -> f64 {
        match self.raw(var) {
            None => default,
            Some(v) => match v.parse::<f64>() {
                Ok(x) if x.is_finite() && (min..=max).contains(&x) => x,
                _ => {
                    self.fail(var, format!("expected a fraction of the TTL from {min} to {max}"));
                    default
                }
            },
        }
    }
}

fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse_log_level(v: &str) -> Option<LogLevel> {
    Some(match v.to_ascii_lowercase().as_str() {
        "none" | "off" => LogLevel::None,
        "error" => LogLevel::Error,
        "warn" | "warning" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        _ => return None,
    })
}

impl Config {
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
                    r.fail(vars::ALLOW, e);
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
        let max_client_connections = r.integer(
            vars::MAX_CLIENT_CONNECTIONS,
            DEFAULT_MAX_CLIENT_CONNECTIONS as u64,
            1,
            MAX_MAX_CLIENT_CONNECTIONS as u64,
            "connections",
        ) as usize;
        let refresh_now_interval = r.millis(
            vars::REFRESH_NOW_INTERVAL,
            DEFAULT_REFRESH_NOW_INTERVAL,
            Duration::ZERO,
            MAX_REFRESH_NOW_INTERVAL,
        );

        let config = Config {
            cache_enabled,
            cache_size,
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
            max_client_connections: NonZeroUsize::new(max_client_connections).unwrap_or(NonZeroUsize::MIN),
            refresh_now_interval,
        };
        config.check_consistency(&mut r);
        if r.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(r.errors))
        }
    }

    /// Combinations that are each valid but make no sense together.
    fn check_consistency<E: Env>(&self, r: &mut Reader<'_, E>) {
        for (var, refs) in [(vars::PREFETCH, &self.prefetch), (vars::REQUIRED, &self.required)] {
            for item in refs.iter() {
                if !self.caches(item.source()) {
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
    }

    /// Whether values of `source` are kept in the cache at all.
    pub fn caches(&self, source: crate::refs::Source) -> bool {
        self.cache_enabled && self.cache_size > 0 && !self.source(source).ttl.is_zero()
    }

    pub fn source(&self, source: crate::refs::Source) -> &SourceSettings {
        match source {
            crate::refs::Source::SecretsManager => &self.secrets_manager,
            crate::refs::Source::Ssm => &self.ssm,
        }
    }

    /// Everything to fetch at start-up: PREFETCH plus REQUIRED, without repeats.
    pub fn startup_refs(&self) -> Vec<SecretRef> {
        let mut all: Vec<SecretRef> = Vec::with_capacity(self.prefetch.len() + self.required.len());
        for r in self.prefetch.iter().chain(self.required.iter()) {
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
mod tests {
    use super::*;
    use crate::refs::Source;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn errors_of(pairs: &[(&str, &str)]) -> Vec<ConfigError> {
        Config::from_env(&env(pairs)).expect_err("config should be rejected").0
    }

    #[test]
    fn defaults_match_aws_extension() {
        let c = Config::from_env(&env(&[])).expect("empty env is valid");
        assert!(c.cache_enabled);
        assert_eq!(c.cache_size, 1000);
        assert_eq!(c.http_port, 2773);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.max_connections.get(), 3);
        assert_eq!(c.secrets_manager.ttl, Duration::from_secs(300));
        assert_eq!(c.ssm.ttl, Duration::from_secs(300));
        assert_eq!(c.secrets_manager.timeout, None);
        assert!(c.prefetch.is_empty() && c.required.is_empty() && c.allow.is_none());
    }

    #[test]
    fn ttl_beyond_aws_cap_is_accepted_up_to_a_day() {
        let c = Config::from_env(&env(&[(vars::SM_TTL, "3600"), (vars::SSM_TTL, "86400")])).expect("valid");
        assert_eq!(c.secrets_manager.ttl, Duration::from_secs(3600));
        assert_eq!(c.ssm.ttl, MAX_TTL);
        let errs = errors_of(&[(vars::SM_TTL, "86401")]);
        assert_eq!(errs[0].var, vars::SM_TTL);
        assert!(errs[0].problem.contains("0 to 86400"), "{}", errs[0].problem);
    }

    #[test]
    fn every_invalid_variable_is_named_with_its_range() {
        let errs = errors_of(&[
            (vars::HTTP_PORT, "0"),
            (vars::CACHE_SIZE, "-1"),
            (vars::CACHE_ENABLED, "yes"),
            (vars::MAX_CONNECTIONS, "0"),
            (vars::SSM_TIMEOUT, "ten"),
            (vars::REFRESH_AHEAD, "1.5"),
            (vars::LOG_LEVEL, "loud"),
            (vars::INIT_TIMEOUT, "20000"),
        ]);
        let named: Vec<&str> = errs.iter().map(|e| e.var).collect();
        for var in [
            vars::HTTP_PORT,
            vars::CACHE_SIZE,
            vars::CACHE_ENABLED,
            vars::MAX_CONNECTIONS,
            vars::SSM_TIMEOUT,
            vars::REFRESH_AHEAD,
            vars::LOG_LEVEL,
            vars::INIT_TIMEOUT,
        ] {
            assert!(named.contains(&var), "{var} missing from {named:?}");
        }
        let port = errs.iter().find(|e| e.var == vars::HTTP_PORT).expect("port error");
        assert!(port.problem.contains("1 to 65535"));
    }

    #[test]
    fn error_message_never_echoes_the_value() {
        let errs = errors_of(&[(vars::HTTP_PORT, "s3cr3t-looking-value")]);
        let text = ConfigErrors(errs).to_string();
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn empty_and_padded_values() {
        let c = Config::from_env(&env(&[(vars::HTTP_PORT, ""), (vars::SM_TTL, " 60 ")])).expect("valid");
        assert_eq!(c.http_port, DEFAULT_HTTP_PORT);
        assert_eq!(c.secrets_manager.ttl, Duration::from_secs(60));
    }

    #[test]
    fn zero_timeout_means_sdk_default() {
        let c = Config::from_env(&env(&[(vars::SM_TIMEOUT, "0"), (vars::SSM_TIMEOUT, "1500")])).expect("valid");
        assert_eq!(c.secrets_manager.timeout, None);
        assert_eq!(c.ssm.timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn lambda_log_level_is_the_fallback() {
        let c = Config::from_env(&env(&[(vars::LAMBDA_LOG_LEVEL, "DEBUG")])).expect("valid");
        assert_eq!(c.log_level, LogLevel::Debug);
        let c = Config::from_env(&env(&[(vars::LAMBDA_LOG_LEVEL, "DEBUG"), (vars::LOG_LEVEL, "none")])).expect("valid");
        assert_eq!(c.log_level, LogLevel::None);
        let c = Config::from_env(&env(&[(vars::LAMBDA_LOG_FORMAT, "JSON")])).expect("valid");
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn prefetch_needs_a_cache() {
        let errs = errors_of(&[(vars::PREFETCH, "secretsmanager:db"), (vars::SM_TTL, "0")]);
        assert_eq!(errs[0].var, vars::PREFETCH);
        let errs = errors_of(&[(vars::REQUIRED, "ssm:/x"), (vars::CACHE_ENABLED, "false")]);
        assert_eq!(errs[0].var, vars::REQUIRED);
        // The other source may still be cached.
        let c = Config::from_env(&env(&[(vars::PREFETCH, "ssm:/x"), (vars::SM_TTL, "0")])).expect("valid");
        assert!(c.caches(Source::Ssm) && !c.caches(Source::SecretsManager));
    }

    #[test]
    fn prefetch_outside_the_allowlist_is_rejected() {
        let errs = errors_of(&[
            (vars::PREFETCH, "secretsmanager:other"),
            (vars::ALLOW, "secretsmanager:app/*"),
        ]);
        assert_eq!(errs[0].var, vars::PREFETCH);
        assert!(errs[0].problem.contains("not permitted"));
    }

    #[test]
    fn startup_refs_merge_prefetch_and_required() {
        let c = Config::from_env(&env(&[
            (vars::PREFETCH, "secretsmanager:a, ssm:/b"),
            (vars::REQUIRED, "ssm:/b secretsmanager:c"),
        ]))
        .expect("valid");
        let all: Vec<String> = c.startup_refs().iter().map(ToString::to_string).collect();
        assert_eq!(all, ["secretsmanager:a", "ssm:/b", "secretsmanager:c"]);
    }
}
