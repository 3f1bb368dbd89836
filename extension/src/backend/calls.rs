//! The upstream API operations and how many HTTP attempts each has made.
//!
//! Counted here, where the calls are made, because every attempt (retries included)
//! is what AWS bills; `/metrics` and the shutdown summary read the counts.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upstream API operations, for per-API call counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    GetSecretValue,
    BatchGetSecretValue,
    GetParameter,
    GetParameters,
    GetParametersByPath,
    /// Metadata only: whether a secret exists (SnapStart INIT checks REQUIRED so).
    DescribeSecret,
    /// Metadata only: whether a parameter, or any under a path, exists.
    DescribeParameters,
    /// Metadata only: the secrets carrying a tag (`secretsmanager-tag:` prefetch).
    ListSecrets,
}

impl Api {
    pub const ALL: [Api; 8] = [
        Api::GetSecretValue,
        Api::BatchGetSecretValue,
        Api::GetParameter,
        Api::GetParameters,
        Api::GetParametersByPath,
        Api::DescribeSecret,
        Api::DescribeParameters,
        Api::ListSecrets,
    ];

    /// The operation's AWS name (also its metrics label).
    pub fn name(self) -> &'static str {
        match self {
            Api::GetSecretValue => "GetSecretValue",
            Api::BatchGetSecretValue => "BatchGetSecretValue",
            Api::GetParameter => "GetParameter",
            Api::GetParameters => "GetParameters",
            Api::GetParametersByPath => "GetParametersByPath",
            Api::DescribeSecret => "DescribeSecret",
            Api::DescribeParameters => "DescribeParameters",
            Api::ListSecrets => "ListSecrets",
        }
    }

    pub fn from_name(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// HTTP attempts per operation.
#[derive(Debug, Default)]
pub struct CallStats {
    calls: [AtomicU64; Api::ALL.len()],
}

impl CallStats {
    pub fn record(&self, api: Api) {
        self.calls[api as usize].fetch_add(1, Relaxed);
    }

    pub fn get(&self, api: Api) -> u64 {
        self.calls[api as usize].load(Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.calls.iter().map(|c| c.load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_counts_add_up() {
        for api in Api::ALL {
            assert_eq!(Api::from_name(api.name()), Some(api));
        }
        assert_eq!(Api::from_name("PutSecretValue"), None);
        let stats = CallStats::default();
        stats.record(Api::GetParameters);
        stats.record(Api::GetParameters);
        stats.record(Api::GetSecretValue);
        assert_eq!(stats.get(Api::GetParameters), 2);
        assert_eq!(stats.get(Api::BatchGetSecretValue), 0);
        assert_eq!(stats.total(), 3);
    }
}
