//! Storage: entries by key, aliases from every id that named a value to the id it is
//! stored under, and least-recently-used eviction at the two bounds: entries
//! (`PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE`) and heap bytes (the byte budget).
//!
//! Every entry carries its cost (`entry::cost`) and the store keeps their sum, added
//! before an entry goes in and taken off with the one that comes out. Prefetched
//! (pinned) entries are never evicted: start-up refuses a plan that does not fit,
//! and a value larger than the whole budget never gets here (`keep`).
//!
//! The lock story, in one place: entries and aliases live in `DashMap`s, whose
//! shard locks are taken only inside these plain synchronous methods and never held
//! across an `.await` (nothing here is async). Entries are immutable snapshots
//! replaced whole (`entry.rs`), so a reader clones an `Arc` under a shard lock and
//! serves without any lock. Eviction scans without a global lock: an entry replaced
//! during the scan may survive one more round, which the bound tolerates.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::entry::Entry;
use super::key::{canonical_id, Decrypt, Key};
use crate::backend::{UpstreamError, Value};
use crate::model::{Scope, Source};

/// foldhash instead of SipHash: several times cheaper per lookup, and still seeded
/// per process (only token holders choose keys, within the allowlist).
type Map<K, V> = DashMap<K, V, RandomState>;

pub(super) struct Store {
    capacity: usize,
    /// Heap bytes the entries may hold, and what they hold now.
    budget: usize,
    bytes: AtomicUsize,
    /// Said once: pinned entries alone are past a bound, so eviction cannot help.
    warned_pinned: AtomicBool,
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
    pub(super) fn new(capacity: usize, budget: usize) -> Store {
        Store {
            capacity,
            budget,
            bytes: AtomicUsize::new(0),
            warned_pinned: AtomicBool::new(false),
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

    /// Heap bytes the entries hold (the sum of their costs).
    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }

    /// The sum of the stored entries' costs, counted afresh (what `bytes` must equal).
    #[cfg(test)]
    pub(super) fn recount(&self) -> usize {
        self.entries.iter().map(|e| e.value().cost).sum()
    }

    /// Entries and bytes of the pinned (prefetched) entries.
    pub(super) fn pinned(&self) -> (usize, usize) {
        self.entries
            .iter()
            .filter(|e| e.value().pinned)
            .fold((0, 0), |(n, b), e| (n + 1, b + e.value().cost))
    }

    /// Stores `entry` under `key`, counting its cost before it is visible and
    /// taking off the cost of the entry it replaces.
    fn put(&self, key: Key, entry: Entry) {
        self.bytes.fetch_add(entry.cost, Relaxed);
        if let Some(old) = self.entries.insert(key, Arc::new(entry)) {
            self.bytes.fetch_sub(old.cost, Relaxed);
        }
    }

    /// Removes the entry under `key`, taking off its cost.
    fn take(&self, key: &Key) -> Option<Arc<Entry>> {
        let (_, old) = self.entries.remove(key)?;
        self.bytes.fetch_sub(old.cost, Relaxed);
        Some(old)
    }

    /// Drops the entry `key` leads to (a newer value that may not be cached
    /// replaces it: the old one must not be served in its place).
    pub(super) fn forget(&self, key: &Key) {
        let canonical = self.canonical(key).into_owned();
        if let Some((_, decrypt)) = self.find(&canonical) {
            self.take(&canonical.with_decrypt(decrypt));
        }
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
    /// canonical id, records the aliases that lead there, and enforces the bounds.
    /// `build` makes the entry, given the one it replaces; `cost` is `entry::cost`'s.
    /// Returns how many entries were evicted.
    pub(super) fn insert(
        &self,
        flight_key: &Key,
        fetch_id: &Arc<str>,
        value: &Value,
        cost: usize,
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
            self.take(flight_key);
        }
        let prev = self.entries.get(&key).map(|e| e.value().clone());
        let mut entry = build(prev.as_deref());
        entry.cost = cost;
        self.put(key, entry);
        self.enforce_bounds()
    }

    /// Whether an entry of `cost` bytes can be stored at all.
    pub(super) fn admits(&self, cost: usize) -> bool {
        cost <= self.budget
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

    /// Forgets the aliases that led to the evicted entry `gone` (its fetch id, name
    /// and ARN), so the ids a function no longer asks for do not pile up.
    fn unalias(&self, key: &Key, gone: &Entry) {
        for from in [&*gone.fetch_id, &*gone.value.name, &*gone.value.arn] {
            if key.scope.is_home() {
                self.aliases[key.source.index()].remove_if(from, |_, to| *to == key.id);
            } else {
                let lookup = (key.scope.clone(), key.source, Box::from(from));
                self.scoped_aliases.remove_if(&lookup, |_, to| *to == key.id);
            }
        }
    }

    /// Records a failed fetch of `key`: back off (transient) or drop the entry
    /// (definitive: the value must not be served any more).
    pub(super) fn record_failure(&self, key: &Key, error: &UpstreamError, now: Instant) {
        let Some(entry) = self.entries.get(key).map(|e| e.value().clone()) else {
            return;
        };
        if error.kind.is_transient() {
            self.put(key.clone(), entry.failed(now, error.clone()));
        } else {
            self.take(key);
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

    /// Evicts the least recently used unpinned entries once a bound is passed,
    /// down to 95% of it, so one scan is paid for many inserts.
    fn enforce_bounds(&self) -> u64 {
        let (cap, budget) = (self.capacity, self.budget);
        let mut len = self.entries.len();
        let mut bytes = self.bytes();
        if len <= cap && bytes <= budget {
            return 0;
        }
        let count_target = if cap >= 100 { cap - cap / 20 } else { cap };
        let byte_target = budget - budget / 20;
        let mut ages: Vec<(u64, Key)> = self
            .entries
            .iter()
            .filter(|e| !e.value().pinned)
            .map(|e| (e.value().last_access(), e.key().clone()))
            .collect();
        ages.sort_unstable_by_key(|(t, _)| *t);
        let mut evicted = 0;
        for (_, key) in ages {
            if len <= count_target && bytes <= byte_target {
                break;
            }
            if let Some(gone) = self.take(&key) {
                self.unalias(&key, &gone);
                len = len.saturating_sub(1);
                bytes = bytes.saturating_sub(gone.cost);
                evicted += 1;
            }
        }
        if (len > cap || bytes > budget) && !self.warned_pinned.swap(true, Relaxed) {
            warn!(
                entries = len,
                bytes,
                capacity = cap,
                budget,
                "prefetched entries alone exceed the cache's bounds; they are kept"
            );
        }
        debug!(evicted, entries = len, bytes, "evicted least recently used entries");
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
                self.bytes.fetch_sub(entry.cost, Relaxed);
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
        self.entries.retain(|_, entry| {
            self.bytes.fetch_sub(entry.cost, Relaxed);
            false
        });
        for map in &self.aliases {
            map.clear();
        }
        self.scoped_aliases.clear();
        self.negatives.clear();
    }
}
