//! Prefetched keys still missing when the start-up deadline passed (throttled while
//! a whole fleet started, say): refresh-ahead keeps fetching them, with backoff,
//! until they are stored, so a sidecar never stays short of its prefetch list until
//! some request happens to ask.
//!
//! Only keys whose last failure was transient are wanted; a definitive answer (not
//! found, access denied) was reported at start-up and is not asked again. A key a
//! request stored meanwhile is dropped from the list when it comes due.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::entry::backoff;
use super::key::Key;

#[derive(Debug)]
pub(super) struct Wanted {
    pub(super) key: Key,
    pub(super) fetch_id: Arc<str>,
    pub(super) failures: u32,
    pub(super) retry_at: Instant,
}

#[derive(Default)]
pub(super) struct WantedList(Mutex<Vec<Wanted>>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl WantedList {
    /// Wants `key` again after its `failures`-th consecutive failure at `now`.
    pub(super) fn want(&self, key: Key, fetch_id: Arc<str>, failures: u32, now: Instant) {
        let mut list = lock(&self.0);
        list.retain(|w| w.key != key);
        list.push(Wanted {
            key,
            fetch_id,
            failures,
            retry_at: now + backoff(failures),
        });
    }

    /// Takes the wanted keys that are due at `now`.
    pub(super) fn take_due(&self, now: Instant) -> Vec<Wanted> {
        let mut list = lock(&self.0);
        let (due, later): (Vec<Wanted>, Vec<Wanted>) = list.drain(..).partition(|w| w.retry_at <= now);
        *list = later;
        due
    }

    pub(super) fn next_at(&self) -> Option<Instant> {
        lock(&self.0).iter().map(|w| w.retry_at).min()
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.0).len()
    }

    pub(super) fn clear(&self) {
        lock(&self.0).clear();
    }
}
