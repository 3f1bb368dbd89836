//! The vocabulary every layer shares: where a value comes from ([`Source`]), which
//! version of it ([`Selector`]), in which account, region and role ([`Scope`]), the
//! `source:id` references of the configuration ([`SecretRef`]), the parts of ARNs that
//! route a request (`arn`), and the limits on ids.
//!
//! This module is the bottom of the crate: it imports nothing of ours, so the
//! backend, the cache, the allowlist and the front doors can all speak it without
//! importing each other.

mod arn;
mod refs;
mod scope;
mod selector;

pub use arn::{arn_region, check_role_arn, is_region};
pub use refs::{parse_ref, parse_ref_list, RefError, SecretRef};
pub use scope::Scope;
pub use selector::{split_ssm_selector, Selector, AWSCURRENT, MAX_LABEL_LEN};

/// Longest id either service accepts (a full ARN).
pub const MAX_ID_LEN: usize = 2048;

/// The upstream service a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    SecretsManager,
    Ssm,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::SecretsManager, Source::Ssm];

    /// The prefix used in references and logs.
    pub fn label(self) -> &'static str {
        match self {
            Source::SecretsManager => "secretsmanager",
            Source::Ssm => "ssm",
        }
    }

    /// A dense index, for per-source arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}
