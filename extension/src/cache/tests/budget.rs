//! The byte budget: what entries cost is counted exactly as they come and go, the
//! least recently used unpinned entries are evicted past it, prefetched ones never
//! are, a value larger than the budget is served but not cached, and a prefetch
//! past the budget is reported as an overflow.

use super::*;

/// A 4 KiB value, distinct per name.
fn four_k(name: &str) -> String {
    format!("{name}:{}", "x".repeat(4096))
}

/// The cost of one entry holding a 4 KiB value named like the tests' ids.
async fn one_entry_cost() -> usize {
    let (cache, fake) = setup(settings());
    fake.put_secret("s0000", &four_k("s0000"));
    sm(&cache, "secretId=s0000").await.expect("fetched");
    cache.bytes()
}

fn budgeted(budget: usize) -> (Cache, Arc<FakeUpstream>) {
    let mut s = settings();
    s.capacity = 10_000;
    s.budget = budget;
    setup(s)
}

#[tokio::test(start_paused = true)]
async fn the_held_bytes_follow_every_insert_replacement_and_removal() {
    let (cache, fake) = budgeted(64 << 20);
    assert_eq!(cache.bytes(), 0);
    for name in ["a", "b"] {
        fake.put_secret(name, &four_k(name));
        sm(&cache, &format!("secretId={name}")).await.expect("fetched");
    }
    let two = cache.bytes();
    assert!(two > 2 * 4096, "an entry costs more than its value: {two}");
    assert_eq!(cache.inner.store.recount(), two);
    // A refresh replaces the entry: the old cost goes, the new one comes.
    fake.put_secret("a", &four_k("a-longer-value"));
    sm(&cache, "secretId=a&refreshNow=true").await.expect("refreshed");
    assert_eq!(cache.inner.store.recount(), cache.bytes());
    assert!(cache.bytes() > two);
    // A transient failure replaces the entry with a failed copy of the same cost.
    let before = cache.bytes();
    fake.fail_next(&[ErrorKind::Throttled]);
    advance(TTL * 2).await;
    let _ = sm(&cache, "secretId=a").await;
    assert_eq!(cache.bytes(), before);
    assert_eq!(cache.inner.store.recount(), cache.bytes());
    cache.invalidate(&crate::model::Scope::HOME, Source::SecretsManager, "b");
    assert_eq!(cache.inner.store.recount(), cache.bytes());
    assert!(cache.bytes() < before);
    cache.wipe();
    assert_eq!(cache.bytes(), 0);
}

#[tokio::test(start_paused = true)]
async fn past_the_budget_the_least_recent_go_and_come_back_as_misses() {
    let cost = one_entry_cost().await;
    let budget = 20 * cost;
    let (cache, fake) = budgeted(budget);
    for i in 0..200 {
        let name = format!("s{i:04}");
        fake.put_secret(&name, &four_k(&name));
        let answer = sm(&cache, &format!("secretId={name}")).await.expect("fetched");
        assert_eq!(raw(&answer), four_k(&name));
        assert!(cache.bytes() <= budget, "{} > {budget} after {i}", cache.bytes());
        assert_eq!(cache.inner.store.recount(), cache.bytes());
        advance(Duration::from_millis(1)).await;
    }
    assert!(cache.len() >= 18 && cache.len() <= 20, "{} entries", cache.len());
    assert_eq!(cache.stats().evictions(), 200 - cache.len() as u64);
    // The newest is still held; the oldest went and is fetched again, correctly.
    assert_eq!(sm(&cache, "secretId=s0199").await.expect("hit").outcome, Outcome::Hit);
    let calls = fake.calls();
    let again = sm(&cache, "secretId=s0000").await.expect("refetched");
    assert_eq!(again.outcome, Outcome::Miss);
    assert_eq!(raw(&again), four_k("s0000"));
    assert_eq!(fake.calls(), calls + 1);
}

#[tokio::test(start_paused = true)]
async fn prefetched_entries_are_never_evicted() {
    let cost = one_entry_cost().await;
    let (cache, fake) = budgeted(10 * cost);
    let pinned: Vec<SecretRef> = (0..5)
        .map(|i| {
            let name = format!("p{i:03}");
            fake.put_secret(&name, &four_k(&name));
            SecretRef::Secret(name)
        })
        .collect();
    let report = cache.prefetch(cache.plan_prefetch(&pinned), Instant::now() + TTL).await;
    assert_eq!(report.stored, 5);
    assert_eq!(cache.overflow(), None);
    for i in 0..100 {
        let name = format!("s{i:04}");
        fake.put_secret(&name, &four_k(&name));
        sm(&cache, &format!("secretId={name}")).await.expect("fetched");
        advance(Duration::from_millis(1)).await;
    }
    assert!(cache.stats().evictions() >= 90);
    let calls = fake.calls();
    for i in 0..5 {
        let answer = sm(&cache, &format!("secretId=p{i:03}")).await.expect("held");
        assert_eq!(answer.outcome, Outcome::Hit, "p{i:03} was evicted");
    }
    assert_eq!(fake.calls(), calls);
}

#[tokio::test(start_paused = true)]
async fn a_value_larger_than_the_budget_is_served_but_not_cached() {
    let (cache, fake) = budgeted(64 << 10);
    fake.put_secret("small", "v");
    sm(&cache, "secretId=small").await.expect("fetched");
    let held = cache.bytes();
    let big = "y".repeat(70 << 10);
    fake.put_secret("big", &big);
    let calls = fake.calls();
    for _ in 0..2 {
        let answer = sm(&cache, "secretId=big").await.expect("served");
        assert_eq!(answer.outcome, Outcome::Miss);
        assert_eq!(raw(&answer).len(), big.len());
    }
    assert_eq!(fake.calls(), calls + 2, "each request went upstream");
    assert_eq!(cache.bytes(), held, "nothing of it was kept");
    assert_eq!(sm(&cache, "secretId=small").await.expect("hit").outcome, Outcome::Hit);
}

#[tokio::test(start_paused = true)]
async fn a_prefetch_past_the_budget_is_an_overflow_naming_both_sizes() {
    let cost = one_entry_cost().await;
    let (cache, fake) = budgeted(3 * cost);
    let refs: Vec<SecretRef> = (0..5)
        .map(|i| {
            let name = format!("p{i:03}");
            fake.put_secret(&name, &four_k(&name));
            SecretRef::Secret(name)
        })
        .collect();
    cache.prefetch(cache.plan_prefetch(&refs), Instant::now() + TTL).await;
    let overflow = cache.overflow().expect("does not fit");
    assert_eq!(overflow.entries, 5);
    assert_eq!(overflow.budget, 3 * cost);
    assert!(overflow.bytes >= 5 * cost - 5 * 16, "{overflow:?}");
    assert_eq!(cache.len(), 5, "kept, not evicted: start-up fails on it instead");

    // A prefetched value larger than the whole budget counts too.
    let (cache, fake) = budgeted(64 << 10);
    fake.put_secret("huge", &"z".repeat(80 << 10));
    cache
        .prefetch(
            cache.plan_prefetch(&[SecretRef::Secret("huge".into())]),
            Instant::now() + TTL,
        )
        .await;
    let overflow = cache.overflow().expect("does not fit");
    assert!(overflow.bytes > 80 << 10 && overflow.budget == 64 << 10, "{overflow:?}");
}
