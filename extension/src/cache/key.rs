//! Cache keys: source, canonical id, version selector and decryption flag.
//!
//! The id in a stored key is the value's full ARN, so a secret asked for by name,
//! by partial ARN and by full ARN shares one entry once the first answer has told us
//! the ARN (see the alias map in `cache/mod.rs`). The decryption flag only matters for
//! SSM SecureStrings: every other value is stored as [`Decrypt::Irrelevant`] and
//! serves requests with or without `withDecryption`.

use std::sync::Arc;

use crate::query::{Lookup, Selector};
use crate::refs::Source;

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
    pub source: Source,
    pub id: Arc<str>,
    pub selector: Selector,
    pub decrypt: Decrypt,
}

impl Key {
    /// The key a request is looked up under, given its (alias-resolved) id.
    pub fn for_lookup(lookup: &Lookup, id: Arc<str>) -> Key {
        let decrypt = match (lookup.source, lookup.decrypt) {
            (Source::SecretsManager, _) => Decrypt::Irrelevant,
            (Source::Ssm, true) => Decrypt::Yes,
            (Source::Ssm, false) => Decrypt::No,
        };
        Key {
            source: lookup.source,
            id,
            selector: lookup.selector.clone(),
            decrypt,
        }
    }

    /// The latest/AWSCURRENT value of `id`, as prefetched (parameters decrypted).
    pub fn current(source: Source, id: Arc<str>) -> Key {
        Key {
            source,
            id,
            selector: Selector::Current,
            decrypt: match source {
                Source::SecretsManager => Decrypt::Irrelevant,
                Source::Ssm => Decrypt::Yes,
            },
        }
    }

    pub fn with_id(&self, id: Arc<str>) -> Key {
        Key { id, ..self.clone() }
    }

    pub fn with_decrypt(&self, decrypt: Decrypt) -> Key {
        Key {
            decrypt,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{parse_secrets_manager, parse_ssm};
    use proptest::prelude::*;

    #[test]
    fn secrets_ignore_decryption() {
        let l = parse_secrets_manager("secretId=a").expect("valid");
        assert_eq!(Key::for_lookup(&l, "a".into()).decrypt, Decrypt::Irrelevant);
        let l = parse_ssm("name=/a&withDecryption=true").expect("valid");
        assert_eq!(Key::for_lookup(&l, "/a".into()).decrypt, Decrypt::Yes);
        let l = parse_ssm("name=/a").expect("valid");
        assert_eq!(Key::for_lookup(&l, "/a".into()).decrypt, Decrypt::No);
    }

    proptest! {
        /// Two lookups share a key exactly when they ask for the same thing.
        #[test]
        fn keys_distinguish_selectors_and_flags(name in "/[a-z]{1,8}", v1 in 1u64..5, v2 in 1u64..5, d1: bool, d2: bool) {
            let q = |v: u64, d: bool| parse_ssm(&format!("name={name}:{v}&withDecryption={d}")).expect("valid");
            let (a, b) = (q(v1, d1), q(v2, d2));
            let ka = Key::for_lookup(&a, a.id.as_str().into());
            let kb = Key::for_lookup(&b, b.id.as_str().into());
            prop_assert_eq!(ka == kb, v1 == v2 && d1 == d2);
        }

        #[test]
        fn output_shape_and_refresh_do_not_change_the_key(id in "[a-z/]{1,12}", raw: bool, refresh: bool) {
            let plain = parse_secrets_manager(&format!("secretId={id}")).expect("valid");
            let other = parse_secrets_manager(&format!("secretId={id}&raw={raw}&refreshNow={refresh}&jsonKey=k")).expect("valid");
            prop_assert_eq!(
                Key::for_lookup(&plain, plain.id.as_str().into()),
                Key::for_lookup(&other, other.id.as_str().into())
            );
        }
    }
}
