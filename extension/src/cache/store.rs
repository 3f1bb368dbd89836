//! Storage: entries by key, aliases from every id that named a value to the id it is
//! stored under, and least-recently-used eviction at the size bound.
//!
//! The lock story, in one place: entries and aliases live in `DashMap`s, whose
//! shard locks are taken only inside these plain synchronous methods and never held
//! across an `.await` (nothing here is async). Entries are immutable snapshots
//! replaced whole (`entry.rs`), so a reader clones an `Arc` under a shard lock and
//! serves without any lock. Eviction scans without a global lock: an entry replaced
//! during the scan may survive one more round, which the bound tolerates.

use std::borrow::Cow;
use std::sync::Arc;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use tokio::time::Instant;
use tracing::debug;

use super::entry::Entry;
use super::key::{Decrypt, Key};
use crate::backend::{UpstreamError, Value};
use crate::model::{Scope, Source};

/// foldhash instead of SipHash: several times cheaper per lookup, and still seeded
/// per process (only token holders choose keys, within the allowlist).
type Map<K, V> = DashMap<K, V, RandomState>;

pub(super) struct Store {
    capacity: usize,
    entries: Map<Key, Arc<Entry>>,
    /// Home scope, per source: requested id → stored id. Looked up by `&str` on
    /// every request, so it is kept apart from the other scopes' aliases.
    aliases: [Map<Box<str>, Arc<str>>; 2],
    /// Other scopes (other regions, accounts, roles): a name means a different
    /// secret in each, so their aliases never mix with the home scope's.
    scoped_aliases: Map<(Scope, Source, Box<str>), Arc<str>>,
    /// Definitive failures (not found, access denied, not allowed) by the key that
    /// asked, until when they stand: the negative cache. No values here.
    negatives: Map<Key, (UpstreamError, Instant)>,
    /// Milliseconds on the eviction clock count from here.
    epoch: Instant,
}

impl Store {
    pub(super) fn new(capacity: usize) -> Store {
        Store {
            capacity,
            entries: Map::default(),
            aliases: [Map::default(), Map::default()],
            scoped_aliases: Map::default(),
            negatives: Map::default(),
            epoch: Instant::now(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn now_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// `key` with its id resolved through the aliases (borrowed when there is none).
    pub(super) fn canonical<'k>(&self, key: &'k Key) -> Cow<'k, Key> {
        let target = if key.scope.is_home() {
            self.aliases[key.source.index()]
                .get(&*key.id)
                .map(|t| t.value().clone())
        } else {
            let lookup = (key.scope.clone(), key.source, Box::from(&*key.id));
            self.scoped_aliases.get(&lookup).map(|t| t.value().clone())
        };
        match target {
            Some(id) => Cow::Owned(key.with_id(id)),
            None => Cow::Borrowed(key),
        }
    }

    /// The entry for `key`, or the decryption-independent one for a parameter, with
    /// the flag it is stored under.
    pub(super) fn find(&self, key: &Key) -> Option<(Arc<Entry>, Decrypt)> {
        if let Some(e) = self.entries.get(key) {
            return Some((e.value().clone(), key.decrypt));
        }
        if key.source == Source::Ssm && key.decrypt != Decrypt::Irrelevant {
            let plain = key.with_decrypt(Decrypt::Irrelevant);
            return self
                .entries
                .get(&plain)
                .map(|e| (e.value().clone(), Decrypt::Irrelevant));
        }
        None
    }

    /// Stores the value fetched under `flight_key` with `fetch_id` under its
    /// canonical id, records the aliases that lead there, and enforces the size
    /// bound. `build` makes the entry, given the one it replaces. Returns how many
    /// entries were evicted.
    pub(super) fn insert(
        &self,
        flight_key: &Key,
        fetch_id: &Arc<str>,
        value: &Value,
        build: impl FnOnce(Option<&Entry>) -> Entry,
    ) -> u64 {
        let source = flight_key.source;
        let by_arn = fetch_id.starts_with("arn:");
        let canonical = canonical_id(source, value, by_arn);
        let decrypt = match (source, value.secure, flight_key.decrypt) {
            (Source::SecretsManager, _, _) | (Source::Ssm, false, _) => Decrypt::Irrelevant,
            (Source::Ssm, true, Decrypt::No) => Decrypt::No,
            (Source::Ssm, true, _) => Decrypt::Yes,
        };
        let key = Key {
            id: canonical.clone(),
            decrypt,
            ..flight_key.clone()
        };
        // A name means the value only where it was asked for by that name: fetched by
        // ARN, the value may live in another region or account, where the same name
        // is a different secret, so its name must not lead here.
        let name = (!by_arn).then_some(&*value.name);
        for from in [Some(&**fetch_id), name, Some(&*value.arn)].into_iter().flatten() {
            self.alias(&key.scope, source, from, &canonical);
        }
        if !self.negatives.is_empty() {
            self.negatives.remove(flight_key);
        }
        if key != *flight_key {
            self.entries.remove(flight_key);
        }
        let prev = self.entries.get(&key).map(|e| e.value().clone());
        let entry = build(prev.as_deref());
        self.entries.insert(key, Arc::new(entry));
        self.enforce_capacity()
    }

    /// Records that `from` names what is stored under `to` in `scope`. Besides the
    /// aliases an answer proves (`insert`), a listing made in the scope proves its
    /// names (the tag prefetch fetches by ARN, and a name asked later must find it).
    pub(super) fn alias(&self, scope: &Scope, source: Source, from: &str, to: &Arc<str>) {
        if from == &**to {
            return;
        }
        // Aliases are only a shortcut: when they outgrow the cache, forget them all.
        let limit = 4 * self.capacity + 64;
        if scope.is_home() {
            let map = &self.aliases[source.index()];
            if map.len() > limit {
                map.clear();
            }
            if map.get(from).is_none_or(|t| t.value() != to) {
                map.insert(from.into(), to.clone());
            }
        } else {
            if self.scoped_aliases.len() > limit {
                self.scoped_aliases.clear();
            }
            self.scoped_aliases
                .insert((scope.clone(), source, from.into()), to.clone());
        }
    }

    /// Records a failed fetch of `key`: back off (transient) or drop the entry
    /// (definitive: the value must not be served any more).
    pub(super) fn record_failure(&self, key: &Key, error: &UpstreamError, now: Instant) {
        let Some(entry) = self.entries.get(key).map(|e| e.value().clone()) else {
            return;
        };
        if error.kind.is_transient() {
            self.entries
                .insert(key.clone(), Arc::new(entry.failed(now, error.clone())));
        } else {
            self.entries.remove(key);
        }
    }

    /// Remembers a definitive failure of `key` until `until`.
    pub(super) fn remember_negative(&self, key: &Key, error: &UpstreamError, until: Instant) {
        // A shortcut like the aliases: past its bound, forget them all.
        if self.negatives.len() > 4 * self.capacity + 64 {
            self.negatives.clear();
        }
        self.negatives.insert(key.clone(), (error.clone(), until));
    }

    /// The failure remembered for `key`, while it stands.
    pub(super) fn negative(&self, key: &Key, now: Instant) -> Option<UpstreamError> {
        if self.negatives.is_empty() {
            return None;
        }
        let (error, until) = self.negatives.get(key).map(|n| n.value().clone())?;
        if now < until {
            return Some(error);
        }
        self.negatives.remove_if(key, |_, (_, u)| *u == until);
        None
    }

    /// Evicts the least recently used entries once the size bound is passed. Large
    /// caches evict 5% at a time so the scan is paid once per many inserts.
    fn enforce_capacity(&self) -> u64 {
        let cap = self.capacity;
        if self.entries.len() <= cap {
            return 0;
        }
        let target = if cap >= 100 { cap - cap / 20 } else { cap };
        let mut ages: Vec<(u64, Key)> = self
            .entries
            .iter()
            .map(|e| (e.value().last_access(), e.key().clone()))
            .collect();
        let excess = ages.len().saturating_sub(target);
        if excess == 0 {
            return 0;
        }
        ages.select_nth_unstable_by_key(excess - 1, |(t, _)| *t);
        let mut evicted = 0;
        for (_, key) in ages.into_iter().take(excess) {
            if self.entries.remove(&key).is_some() {
                evicted += 1;
            }
        }
        debug!(evicted, capacity = cap, "evicted least recently used entries");
        evicted
    }

    /// Entries whose refresh-ahead point has passed and that are worth keeping warm
    /// (prefetched ones, and ones used since their last fetch), unless `in_flight`.
    pub(super) fn due_for_refresh(&self, now: Instant, in_flight: impl Fn(&Key) -> bool) -> Vec<(Key, Arc<str>)> {
        self.entries
            .iter()
            .filter(|e| {
                let entry = e.value();
                now >= entry.refresh_at
                    && !entry.backing_off(now)
                    && (entry.pinned || entry.used())
                    && !in_flight(e.key())
            })
            .map(|e| (e.key().clone(), e.value().fetch_id.clone()))
            .collect()
    }

    /// The earliest refresh-ahead point (or retry) among entries worth keeping warm.
    pub(super) fn next_refresh_at(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter(|e| e.value().pinned || e.value().used())
            .map(|e| {
                e.value()
                    .retry_at
                    .unwrap_or(e.value().refresh_at)
                    .max(e.value().refresh_at)
            })
            .min()
    }

    /// Drops, in `scope`, every `source` entry that `id` names (as stored, through
    /// an alias, or by the name or ARN its value carries), the aliases leading to
    /// them, and the source's remembered failures (a write may have created what
    /// was missing). Returns how many entries went.
    pub(super) fn invalidate(&self, scope: &Scope, source: Source, id: &str) -> usize {
        let probe = Key {
            scope: scope.clone(),
            source,
            id: Arc::from(id),
            selector: crate::model::Selector::Current,
            decrypt: Decrypt::Irrelevant,
        };
        let canonical = self.canonical(&probe).id.clone();
        let mut gone: Vec<Arc<str>> = Vec::new();
        self.entries.retain(|key, entry| {
            let named = key.scope == *scope
                && key.source == source
                && (*key.id == *canonical || *key.id == *id || crate::backend::answers(id, &entry.value));
            if named {
                gone.push(key.id.clone());
            }
            !named
        });
        let leads_to_gone = |to: &Arc<str>| *to == canonical || gone.iter().any(|g| g == to);
        if scope.is_home() {
            self.aliases[source.index()].retain(|from, to| &**from != id && !leads_to_gone(to));
        } else {
            self.scoped_aliases
                .retain(|(s, src, from), to| !(s == scope && *src == source && (&**from == id || leads_to_gone(to))));
        }
        self.negatives
            .retain(|key, _| !(key.scope == *scope && key.source == source));
        gone.len()
    }

    pub(super) fn clear(&self) {
        self.entries.clear();
        for map in &self.aliases {
            map.clear();
        }
        self.scoped_aliases.clear();
        self.negatives.clear();
    }
}

/// Secrets are identified by ARN (names can be reused after deletion, and partial
/// ARNs exist); parameters by name (unique within a region and account, and
/// unambiguous where ARNs are not), except when asked for by ARN: then the ARN, as
/// the parameter may be another region's or account's.
fn canonical_id(source: Source, value: &Value, by_arn: bool) -> Arc<str> {
    match source {
        Source::SecretsManager => value.arn.clone(),
        Source::Ssm if by_arn => value.arn.clone(),
        Source::Ssm => value.name.clone(),
    }
}
