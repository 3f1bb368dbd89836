//! The read operations answered from the cache, with the same rules as the HTTP
//! API: the allowlist before any call and on what AWS returns, the SnapStart gate,
//! single-flight, stale-if-error and refresh-ahead (all in the cache), and the
//! answer in AWS's own shape.
//!
//! Per-item outcomes follow AWS: BatchGetSecretValue reports an id that is missing
//! (or refused) in `Errors` and answers the rest; GetParameters lists a missing name
//! in `InvalidParameters`. A failure AWS would raise for the whole call (throttling,
//! an outage with nothing cached, access denied to a parameter) fails the whole
//! call, so the SDK's own retries and exceptions apply. GetParametersByPath pages
//! through a cached listing (`Cache::list_path`) with tokens the sidecar issues.

use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::protocol::{self, PathRequest, Request, SdkError, Service};
use crate::backend::{ErrorKind, UpstreamError};
use crate::cache::{under_path, Answer, Freshness, Key};
use crate::model::{Scope, Selector, Source};
use crate::server::app::App;

/// Answers a served operation's request with its body.
pub async fn answer(app: &App, service: Service, scope: &Scope, request: Request) -> Result<Bytes, SdkError> {
    open_gate(app).await?;
    match request {
        Request::One(key) => {
            let key = key.with_scope(scope.clone());
            allowed(app, &key)?;
            let answer = app
                .cache
                .get(&key, Freshness::Cached)
                .await
                .map_err(|e| failure(app, service, &key, &e))?;
            app.metrics.outcome(answer.outcome);
            Ok(answer.value.body.clone())
        }
        Request::Secrets(ids) => batch_secrets(app, scope, ids).await,
        Request::Parameters(names) => parameters(app, scope, names).await,
        Request::Path(path) => path_page(app, scope, path).await,
        Request::PassThrough => Err(SdkError::validation("this request is not served from the cache")),
    }
}

/// Values are not served during a SnapStart INIT (see `gate`).
async fn open_gate(app: &App) -> Result<(), SdkError> {
    if !app.gate.is_open() && app.gate.pass().await.is_err() {
        return Err(SdkError::validation(
            "values are not served during a SnapStart INIT: read secrets in the handler or after restore",
        ));
    }
    Ok(())
}

/// The allowlist's check before any call.
fn allowed(app: &App, key: &Key) -> Result<(), SdkError> {
    match &app.allow {
        Some(allow) if !allow.could_name(key.source, &key.id) => Err(SdkError::not_allowed(&key.id)),
        _ => Ok(()),
    }
}

/// An upstream failure as AWS would answer it; with an allowlist, a not-found or
/// access-denied answer for a look-alike is a refusal (nothing is learnt about
/// what exists outside the list), as on the HTTP API.
fn failure(app: &App, service: Service, key: &Key, e: &UpstreamError) -> SdkError {
    let look_alike = app
        .allow
        .as_ref()
        .is_some_and(|a| !a.names_exactly(key.source, &key.id));
    match e.kind {
        ErrorKind::NotAllowed => SdkError::not_allowed(&key.id),
        ErrorKind::NotFound | ErrorKind::AccessDenied if look_alike => SdkError::not_allowed(&key.id),
        _ => SdkError::upstream(service, &key.selector, e),
    }
}

async fn batch_secrets(app: &App, scope: &Scope, ids: Vec<(String, Key)>) -> Result<Bytes, SdkError> {
    let mut results: Vec<(String, Result<Answer, SdkError>)> = Vec::with_capacity(ids.len());
    let mut wanted = Vec::new();
    let mut slots = Vec::new();
    for (id, key) in ids {
        let key = key.with_scope(scope.clone());
        match allowed(app, &key) {
            Err(e) => results.push((id, Err(e))),
            Ok(()) => {
                slots.push(results.len());
                results.push((id, Err(SdkError::validation("pending"))));
                wanted.push(key);
            }
        }
    }
    let answers = app.cache.get_many(&wanted, Freshness::Cached).await;
    for ((slot, key), answer) in slots.into_iter().zip(&wanted).zip(answers) {
        results[slot].1 = match answer {
            Ok(a) => {
                app.metrics.outcome(a.outcome);
                Ok(a)
            }
            // Transient: the whole call fails, and the SDK retries it.
            Err(e) if e.kind.is_transient() => return Err(failure(app, Service::SecretsManager, key, &e)),
            Err(e) => Err(failure(app, Service::SecretsManager, key, &e)),
        };
    }
    Ok(protocol::batch_secrets_body(&results))
}

async fn parameters(app: &App, scope: &Scope, names: Vec<(String, Key)>) -> Result<Bytes, SdkError> {
    let keys: Vec<Key> = names.iter().map(|(_, k)| k.clone().with_scope(scope.clone())).collect();
    for key in &keys {
        allowed(app, key)?;
    }
    let answers = app.cache.get_many(&keys, Freshness::Cached).await;
    let mut results = Vec::with_capacity(keys.len());
    for (((name, _), key), answer) in names.into_iter().zip(&keys).zip(answers) {
        let result = match answer {
            Ok(a) => {
                app.metrics.outcome(a.outcome);
                Ok(a)
            }
            Err(e) => {
                let refused = failure(app, Service::Ssm, key, &e);
                // A missing name is listed in InvalidParameters; anything else (a
                // refusal included) fails the call, as AWS does for a name it refuses.
                if e.kind != ErrorKind::NotFound || refused.type_name == "AccessDeniedException" {
                    return Err(refused);
                }
                Err(refused)
            }
        };
        results.push((name, result));
    }
    Ok(protocol::parameters_body(&results))
}

async fn path_page(app: &App, scope: &Scope, request: PathRequest) -> Result<Bytes, SdkError> {
    let listing_failure = |e: &UpstreamError| {
        let key = Key::new(
            Source::Ssm,
            Arc::from(request.path.as_str()),
            Selector::Current,
            request.decrypt,
        );
        SdkError::upstream(Service::Ssm, &key.selector, e)
    };
    let names = app
        .cache
        .list_path(scope, &request.path, request.decrypt)
        .await
        .map_err(|e| listing_failure(&e))?;
    let matching: Vec<&Arc<str>> = names
        .iter()
        .filter(|n| under_path(&request.path, n, request.recursive))
        .collect();
    let check = token_check(&request);
    let start = match &request.next_token {
        None => 0,
        Some(t) => parse_token(t, check)
            .filter(|&at| at <= matching.len())
            .ok_or_else(|| SdkError::validation("NextToken is not valid for this request"))?,
    };
    let end = (start + request.max_results).min(matching.len());
    let keys: Vec<Key> = matching[start..end]
        .iter()
        .map(|n| Key::new(Source::Ssm, (*n).clone(), Selector::Current, request.decrypt).with_scope(scope.clone()))
        .collect();
    let mut page = Vec::with_capacity(keys.len());
    for (key, answer) in keys.iter().zip(app.cache.get_many(&keys, Freshness::Cached).await) {
        match answer {
            Ok(a) => {
                app.metrics.outcome(a.outcome);
                page.push(a);
            }
            // Deleted since it was listed, or refused by the allowlist: not listed.
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::NotAllowed) => {}
            Err(e) => return Err(SdkError::upstream(Service::Ssm, &key.selector, &e)),
        }
    }
    let next = (end < matching.len()).then(|| issue_token(end, check));
    Ok(protocol::path_page_body(&page, next.as_deref()))
}

const TOKEN_PREFIX: &str = "secrets-sidecar.1.";

/// What a token is bound to: the request it continues (path, recursion,
/// decryption, page size), keyed per process so tokens cannot be forged to skip
/// the check.
fn token_check(r: &PathRequest) -> u64 {
    static KEY: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    KEY.get_or_init(foldhash::fast::RandomState::default)
        .hash_one((&r.path, r.recursive, r.decrypt, r.max_results))
}

fn issue_token(offset: usize, check: u64) -> String {
    format!("{TOKEN_PREFIX}{offset}.{check:016x}")
}

fn parse_token(token: &str, check: u64) -> Option<usize> {
    let (offset, sum) = token.strip_prefix(TOKEN_PREFIX)?.split_once('.')?;
    (u64::from_str_radix(sum, 16).ok()? == check).then_some(())?;
    offset.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> PathRequest {
        PathRequest {
            path: path.into(),
            recursive: true,
            decrypt: true,
            max_results: 10,
            next_token: None,
        }
    }

    #[test]
    fn tokens_continue_only_the_request_they_were_issued_for() {
        let check = token_check(&request("/app"));
        let token = issue_token(20, check);
        assert_eq!(parse_token(&token, check), Some(20));
        assert_eq!(parse_token(&token, token_check(&request("/other"))), None);
        let mut flat = request("/app");
        flat.recursive = false;
        assert_eq!(parse_token(&token, token_check(&flat)), None);
        assert_eq!(parse_token("AAAA", check), None);
        assert_eq!(parse_token(&format!("{TOKEN_PREFIX}x.{check:016x}"), check), None);
    }
}
