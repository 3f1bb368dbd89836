//! Reading variables: where they come from ([`Env`]), and a [`Reader`] that turns
//! each into a typed value within its range or records why it cannot.

use std::time::Duration;

use super::{vars, ConfigError, LogFormat, LogLevel};
use crate::model::{parse_ref_list, SecretRef};

/// A variable is set but its value is not valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not valid UTF-8")]
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
pub(super) struct Reader<'a, E: Env> {
    pub(super) env: &'a E,
    pub(super) errors: Vec<ConfigError>,
}

impl<E: Env> Reader<'_, E> {
    pub(super) fn fail(&mut self, var: &'static str, problem: impl Into<String>) {
        self.errors.push(ConfigError {
            var,
            problem: problem.into(),
        });
    }

    /// The trimmed value, `None` when unset or empty.
    pub(super) fn raw(&mut self, var: &'static str) -> Option<String> {
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

    pub(super) fn boolean(&mut self, var: &'static str, default: bool) -> bool {
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

    /// `on`/`off` (or `true`/`false`).
    pub(super) fn on_off(&mut self, var: &'static str, default: bool) -> bool {
        match self.raw(var) {
            None => default,
            Some(v) if v.eq_ignore_ascii_case("on") || v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                self.fail(var, "expected on or off");
                default
            }
        }
    }

    pub(super) fn integer(&mut self, var: &'static str, default: u64, min: u64, max: u64, unit: &str) -> u64 {
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

    pub(super) fn seconds(&mut self, var: &'static str, default: Duration, max: Duration) -> Duration {
        Duration::from_secs(self.integer(var, default.as_secs(), 0, max.as_secs(), "seconds"))
    }

    pub(super) fn millis(&mut self, var: &'static str, default: Duration, min: Duration, max: Duration) -> Duration {
        Duration::from_millis(self.integer(
            var,
            millis_u64(default),
            millis_u64(min),
            millis_u64(max),
            "milliseconds",
        ))
    }

    pub(super) fn log_level(&mut self) -> LogLevel {
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

    pub(super) fn log_format(&mut self) -> LogFormat {
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

    pub(super) fn refs(&mut self, var: &'static str) -> Vec<SecretRef> {
        match self.raw(var) {
            None => Vec::new(),
            Some(v) => match parse_ref_list(&v) {
                Ok(refs) => refs,
                Err(e) => {
                    self.fail(var, e.to_string());
                    Vec::new()
                }
            },
        }
    }

    /// A size in bytes ([`parse_bytes`]) from `min` to `max`.
    pub(super) fn bytes(&mut self, var: &'static str, default: u64, min: u64, max: u64) -> u64 {
        match self.raw(var) {
            None => default,
            Some(v) => match parse_bytes(&v) {
                Some(n) if (min..=max).contains(&n) => n,
                _ => {
                    self.fail(
                        var,
                        format!("expected bytes (a whole number, or with KiB, MiB or GiB) from {min} to {max}"),
                    );
                    default
                }
            },
        }
    }

    pub(super) fn fraction(&mut self, var: &'static str, default: f64, min: f64, max: f64) -> f64 {
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

/// `12345`, `64KiB`, `8MiB`, `1GiB` (suffix in any case, a space allowed before it).
pub(super) fn parse_bytes(v: &str) -> Option<u64> {
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(digits);
    let n: u64 = number.parse().ok()?;
    let shift = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
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
