//! Cache keys: scope (account, region, role), source, id, version selector and
//! decryption flag.
//!
//! A request's key carries the id as the caller gave it; the cache resolves it
//! through its alias map to the id it stores under (the full ARN for a secret, the
//! name for a parameter), so a secret asked for by name, by partial ARN and by full
//! ARN shares one entry once the first answer has told us the ARN. The decryption
//! flag only matters for SSM SecureStrings: every other value is stored as
//! [`Decrypt::Irrelevant`] and serves requests with or without `withDecryption`.

use std::sync::Arc;

use crate::backend::Value;
use crate::model::{Scope, Selector, Source};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decrypt {
    Irrelevant,
    No,
    Yes,
}

impl Decrypt {
    /// The `WithDecryption` flag to send upstream. String parameters ignore it, so an
    /// irrelevant flag asks for decryption: harmless, and right if the type changed.
    pub fn as_flag(self) -> bool {
        !matches!(self, Decrypt::No)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub scope: Scope,
    pub source: Source,
    pub id: Arc<str>,
    pub selector: Selector,
    pub decrypt: Decrypt,
}

impl Key {
    /// A request for `id` from `source` in the home scope. `decrypt` is SSM's
    /// `WithDecryption`; secrets ignore it.
    pub fn new(source: Source, id: Arc<str>, selector: Selector, decrypt: bool) -> Key {
        let decrypt = match (source, decrypt) {
            (Source::SecretsManager, _) => Decrypt::Irrelevant,
            (Source::Ssm, true) => Decrypt::Yes,
            (Source::Ssm, false) => Decrypt::No,
        };
        Key {
            scope: Scope::HOME,
            source,
            id,
            selector,
            decrypt,
        }
    }

    /// The latest/AWSCURRENT value of `id`, as prefetched (parameters decrypted).
    pub fn current(source: Source, id: Arc<str>) -> Key {
        Key::new(source, id, Selector::Current, true)
    }

    pub fn with_scope(self, scope: Scope) -> Key {
        Key { scope, ..self }
    }

    pub(super) fn with_id(&self, id: Arc<str>) -> Key {
        Key {
            scope: self.scope.clone(),
            source: self.source,
            id,
            selector: self.selector.clone(),
            decrypt: self.decrypt,
        }
    }

    pub(super) fn with_decrypt(&self, decrypt: Decrypt) -> Key {
        Key {
            decrypt,
            ..self.clone()
        }
    }

    /// Whether a batch API can fetch this key (only the current version can be batched).
    pub(super) fn batchable(&self) -> bool {
        self.selector == Selector::Current
    }
}

/// Secrets are identified by ARN (names can be reused after deletion, and partial
/// ARNs exist); parameters by name (unique within a region and account, and
/// unambiguous where ARNs are not), except when asked for by ARN: then the ARN, as
/// the parameter may be another region's or account's.
pub(super) fn canonical_id(source: Source, value: &Value, by_arn: bool) -> Arc<str> {
    match source {
        Source::SecretsManager => value.arn.clone(),
        Source::Ssm if by_arn => value.arn.clone(),
        Source::Ssm => value.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn secrets_ignore_decryption() {
        let k = |source, d| Key::new(source, "a".into(), Selector::Current, d).decrypt;
        assert_eq!(k(Source::SecretsManager, true), Decrypt::Irrelevant);
        assert_eq!(k(Source::SecretsManager, false), Decrypt::Irrelevant);
        assert_eq!(k(Source::Ssm, true), Decrypt::Yes);
        assert_eq!(k(Source::Ssm, false), Decrypt::No);
        assert!(Decrypt::Irrelevant.as_flag() && Decrypt::Yes.as_flag() && !Decrypt::No.as_flag());
    }

    #[test]
    fn the_scope_separates_keys() {
        let home = Key::current(Source::SecretsManager, "app/db".into());
        let eu = home.clone().with_scope(Scope::new(None, Some("eu-west-1"), None));
        assert_ne!(home, eu);
        assert_eq!(eu.clone().with_scope(Scope::HOME), home);
    }

    proptest! {
        /// Two keys are equal exactly when they ask for the same thing.
        #[test]
        fn keys_distinguish_ids_selectors_and_flags(
            a in "/[a-z]{1,3}", b in "/[a-z]{1,3}", v1 in 1u64..4, v2 in 1u64..4, d1: bool, d2: bool,
        ) {
            let ka = Key::new(Source::Ssm, a.as_str().into(), Selector::Version(v1), d1);
            let kb = Key::new(Source::Ssm, b.as_str().into(), Selector::Version(v2), d2);
            prop_assert_eq!(ka == kb, a == b && v1 == v2 && d1 == d2);
        }
    }
}
