//! What both front doors put on every answer: the body type, `Cache-Control:
//! no-store` (a value must never land in a proxy's or client's cache), and on
//! answers that carry values how the cache answered (`x-secrets-sidecar-cache`) and
//! the value's age (`Age`), so a stale value is marked whichever door served it.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AGE, CACHE_CONTROL};
use http::HeaderMap;
use http_body_util::Full;

use crate::cache::{Answer, Outcome};

pub type Body = Full<Bytes>;

/// How the cache answered: `hit`, `miss`, `stale` or `bypass`.
pub const CACHE_HEADER: HeaderName = HeaderName::from_static("x-secrets-sidecar-cache");

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, NO_STORE);
}

/// Marks an answer made of `answers`: the least fresh outcome among them (a batch
/// with one stale value is marked stale) and the oldest age. Nothing is marked
/// when no value is in the answer.
pub fn mark<'a>(headers: &mut HeaderMap, answers: impl IntoIterator<Item = &'a Answer>) {
    let worst = answers
        .into_iter()
        .map(|a| (freshness_rank(a.outcome), a.outcome, a.age))
        .reduce(|(rank, outcome, age), (r, o, a)| {
            let (rank, outcome) = if r > rank { (r, o) } else { (rank, outcome) };
            (rank, outcome, age.max(a))
        });
    if let Some((_, outcome, age)) = worst {
        headers.insert(CACHE_HEADER, HeaderValue::from_static(outcome.label()));
        headers.insert(AGE, HeaderValue::from(age.as_secs()));
    }
}

/// Higher is less fresh: a value past its TTL outranks one fetched now, which
/// outranks one held in memory.
fn freshness_rank(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Hit => 0,
        Outcome::Miss => 1,
        Outcome::Bypass => 2,
        Outcome::Stale => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{SecretFields, Value};
    use std::sync::Arc;
    use std::time::Duration;

    fn answer(outcome: Outcome, age: u64) -> Answer {
        Answer {
            value: Arc::new(Value::from_secret(SecretFields {
                arn: "arn".into(),
                name: "n".into(),
                version_id: None,
                secret_string: Some("v".into()),
                secret_binary: None,
                version_stages: vec![],
                created_date: None,
            })),
            outcome,
            age: Duration::from_secs(age),
        }
    }

    #[test]
    fn a_batch_is_marked_by_its_least_fresh_value_and_oldest_age() {
        let mut h = HeaderMap::new();
        let batch = [
            answer(Outcome::Hit, 5),
            answer(Outcome::Stale, 2),
            answer(Outcome::Miss, 0),
        ];
        mark(&mut h, &batch);
        assert_eq!(h[CACHE_HEADER], "stale");
        assert_eq!(h[AGE], "5");
        let mut h = HeaderMap::new();
        mark(&mut h, &[answer(Outcome::Hit, 1), answer(Outcome::Miss, 0)]);
        assert_eq!(h[CACHE_HEADER], "miss");
        let mut h = HeaderMap::new();
        mark(&mut h, &[]);
        assert!(h.get(CACHE_HEADER).is_none() && h.get(AGE).is_none());
    }
}
