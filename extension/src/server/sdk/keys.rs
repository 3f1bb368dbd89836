//! The credential sets a caller may have signed with.
//!
//! In Lambda the function's SDK and the sidecar read the same role's credentials,
//! but not at the same moment: container and standalone credentials rotate, so a
//! caller may sign with the set before the sidecar's current one, or with the next
//! one before the sidecar has asked for it. So every unexpired set the provider has
//! handed out is kept (the last [`KEEP`]), a set about to expire is renewed ahead,
//! and a request signed with an access key not among them makes the sidecar ask the
//! provider once more before refusing, at most once per [`MIN_REFETCH`] so unknown
//! keys cannot turn into a stream of credential fetches.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

use crate::backend::passthrough::Passthrough;
use crate::backend::UpstreamError;

/// Credential sets remembered at once.
const KEEP: usize = 4;
/// A set expiring within this is renewed before the next verification.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Least time between fetches made because of an unknown access key.
const MIN_REFETCH: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct KnownCredentials {
    sets: Mutex<Vec<Credentials>>,
    last_refetch: Mutex<Option<SystemTime>>,
    /// Held while the provider is asked, so concurrent requests ask once.
    fetching: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn expires_within(c: &Credentials, now: SystemTime, margin: Duration) -> bool {
    c.expiry().is_some_and(|at| at <= now + margin)
}

impl KnownCredentials {
    /// The unexpired sets, asking the provider first when none is held or the
    /// newest is about to expire.
    pub async fn known(&self, source: &dyn Passthrough, now: SystemTime) -> Result<Vec<Credentials>, UpstreamError> {
        let held = self.unexpired(now);
        if held.last().is_some_and(|c| !expires_within(c, now, RENEW_BEFORE)) {
            return Ok(held);
        }
        let _turn = self.fetching.lock().await;
        let held = self.unexpired(now);
        if held.last().is_some_and(|c| !expires_within(c, now, RENEW_BEFORE)) {
            return Ok(held);
        }
        match source.credentials().await {
            Ok(c) => {
                self.add(c);
                Ok(self.unexpired(now))
            }
            // A provider failing now does not invalidate a set still valid.
            Err(_) if !held.is_empty() => Ok(held),
            Err(e) => Err(e),
        }
    }

    /// After a request signed with an unknown access key: asks the provider once
    /// more (unless it was asked within [`MIN_REFETCH`]) and returns the sets then.
    pub async fn refetch(&self, source: &dyn Passthrough, now: SystemTime) -> Result<Vec<Credentials>, UpstreamError> {
        {
            let mut last = lock(&self.last_refetch);
            let recent = last.is_some_and(|t| now.duration_since(t).unwrap_or_default() < MIN_REFETCH);
            if recent {
                return Ok(self.unexpired(now));
            }
            *last = Some(now);
        }
        let _turn = self.fetching.lock().await;
        if let Ok(c) = source.credentials().await {
            self.add(c);
        }
        Ok(self.unexpired(now))
    }

    fn unexpired(&self, now: SystemTime) -> Vec<Credentials> {
        let mut sets = lock(&self.sets);
        sets.retain(|c| !expires_within(c, now, Duration::ZERO));
        sets.clone()
    }

    /// Keeps `c` as the newest set (replacing an older copy of the same key).
    fn add(&self, c: Credentials) {
        let mut sets = lock(&self.sets);
        sets.retain(|k| k.access_key_id() != c.access_key_id());
        sets.push(c);
        let excess = sets.len().saturating_sub(KEEP);
        sets.drain(..excess);
    }

    /// Forgets every set (SnapStart restore: the snapshot's credentials are not the clone's).
    pub fn clear(&self) {
        lock(&self.sets).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::passthrough::{Forward, Forwarded};
    use crate::backend::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Hands out `key-1`, `key-2`, … each expiring `life` after `start`.
    struct Rotating {
        fetches: AtomicUsize,
        start: SystemTime,
        life: Duration,
    }

    impl Rotating {
        /// `key-n` expiring `n` hours after `start`.
        fn hourly(start: SystemTime) -> Rotating {
            Rotating {
                fetches: AtomicUsize::new(0),
                start,
                life: Duration::from_secs(3600),
            }
        }
    }

    impl Passthrough for Rotating {
        fn home_region(&self) -> BoxFuture<'_, Option<String>> {
            Box::pin(async { None })
        }

        fn credentials(&self) -> BoxFuture<'_, Result<Credentials, UpstreamError>> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            let expiry = self.start + self.life * u32::try_from(n).unwrap_or(1);
            Box::pin(async move { Ok(Credentials::new(format!("key-{n}"), "s", None, Some(expiry), "test")) })
        }

        fn forward<'a>(&'a self, _call: Forward<'a>) -> BoxFuture<'a, Result<Forwarded, UpstreamError>> {
            unreachable!("not forwarded in these tests")
        }
    }

    fn keys(sets: &[Credentials]) -> Vec<String> {
        sets.iter().map(|c| c.access_key_id().to_owned()).collect()
    }

    #[tokio::test]
    async fn sets_are_kept_until_they_expire_and_renewed_ahead() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let p = Rotating::hourly(start);
        let known = KnownCredentials::default();
        assert_eq!(keys(&known.known(&p, start).await.expect("first")), ["key-1"]);
        assert_eq!(keys(&known.known(&p, start).await.expect("held")), ["key-1"]);
        assert_eq!(p.fetches.load(Ordering::SeqCst), 1, "held sets are not fetched again");
        // Four minutes before key-1 expires: renewed, and key-1 still accepted.
        let late = start + Duration::from_secs(3600 - 240);
        assert_eq!(keys(&known.known(&p, late).await.expect("renewed")), ["key-1", "key-2"]);
        // Once key-1 has expired it is no longer accepted.
        let after = start + Duration::from_secs(3601);
        assert_eq!(keys(&known.known(&p, after).await.expect("pruned")), ["key-2"]);
    }

    #[tokio::test]
    async fn an_unknown_key_fetches_once_per_interval() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let p = Rotating::hourly(start);
        let known = KnownCredentials::default();
        known.known(&p, start).await.expect("first");
        assert_eq!(
            keys(&known.refetch(&p, start).await.expect("refetch")),
            ["key-1", "key-2"]
        );
        known
            .refetch(&p, start + Duration::from_millis(500))
            .await
            .expect("too soon");
        assert_eq!(
            p.fetches.load(Ordering::SeqCst),
            2,
            "a second unknown key within a second asks nothing"
        );
        known.refetch(&p, start + Duration::from_secs(2)).await.expect("later");
        assert_eq!(p.fetches.load(Ordering::SeqCst), 3);
    }
}
