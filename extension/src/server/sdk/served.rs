//! The read operations answered from the cache: each request read into keys, the
//! lookup (`lookup`: the allowlist, the SnapStart gate, the cache, the look-alike
//! rule, the same as on the extension API), and the answer in AWS's own shape.
//!
//! Per-item outcomes follow AWS: BatchGetSecretValue reports an id that is missing
//! (or refused) in `Errors` and answers the rest; GetParameters lists a missing name
//! in `InvalidParameters`. A failure AWS would raise for the whole call (throttling,
//! an outage with nothing cached, access denied to a parameter) fails the whole
//! call, so the SDK's own retries and exceptions apply. GetParametersByPath pages
//! through a cached listing with tokens the sidecar issues (`paging`).

use std::sync::Arc;

use http::Response;

use super::paging::{issue_token, parse_token, token_check};
use super::protocol::answer::{self, Item};
use super::protocol::{PathRequest, Request, SdkError, Service};
use super::reply;
use crate::backend::ErrorKind;
use crate::cache::{Freshness, Key};
use crate::model::{Scope, Selector, Source};
use crate::server::answer::Body;
use crate::server::app::App;
use crate::server::lookup::{self, Refusal};

/// Answers a served operation's request.
pub async fn answer(app: &App, service: Service, scope: &Scope, request: Request) -> Result<Response<Body>, SdkError> {
    match request {
        Request::One(key) => {
            let key = key.with_scope(scope.clone());
            let answer = lookup::one(app, &key, Freshness::Cached)
                .await
                .map_err(|r| SdkError::refused(service, &key.selector, &r))?;
            Ok(reply::ok(answer.value.body.clone(), [&answer]))
        }
        Request::Secrets(ids) => batch_secrets(app, scope, ids).await,
        Request::Parameters(names) => parameters(app, scope, names).await,
        Request::Path(path) => path_page(app, scope, path).await,
        Request::PassThrough => Err(SdkError::validation("this request is not served from the cache")),
    }
}

/// Each item of a batch with its lookup; a refusal of the whole call (the gate) fails it.
async fn each<'k>(app: &App, service: Service, keys: &'k [Key]) -> Result<Vec<(&'k Key, Looked)>, SdkError> {
    let results = lookup::many(app, keys, Freshness::Cached)
        .await
        .map_err(|r| SdkError::refused(service, &Selector::Current, &r))?;
    Ok(keys.iter().zip(results).collect())
}

type Looked = Result<crate::cache::Answer, Refusal>;

fn scoped(items: &[(String, Key)], scope: &Scope) -> Vec<Key> {
    items.iter().map(|(_, k)| k.clone().with_scope(scope.clone())).collect()
}

/// A batch's items by the names the request gave them, each with its value or its
/// refusal in AWS's shape; a refusal `fails_call` picks out fails the whole call
/// instead, as AWS would have.
async fn items(
    app: &App,
    service: Service,
    scope: &Scope,
    named: Vec<(String, Key)>,
    fails_call: fn(&Refusal) -> bool,
) -> Result<Vec<Item>, SdkError> {
    let keys = scoped(&named, scope);
    let mut results: Vec<Item> = Vec::with_capacity(named.len());
    for ((name, _), (key, result)) in named.into_iter().zip(each(app, service, &keys).await?) {
        let result = match result {
            Ok(a) => Ok(a),
            Err(r) if fails_call(&r) => return Err(SdkError::refused(service, &key.selector, &r)),
            Err(r) => Err(SdkError::refused(service, &key.selector, &r)),
        };
        results.push((name, result));
    }
    Ok(results)
}

async fn batch_secrets(app: &App, scope: &Scope, ids: Vec<(String, Key)>) -> Result<Response<Body>, SdkError> {
    // Transient: the whole call fails, and the SDK retries it.
    let transient = |r: &Refusal| matches!(r, Refusal::Upstream(e) if e.kind.is_transient());
    let results = items(app, Service::SecretsManager, scope, ids, transient).await?;
    let body = answer::batch_secrets_body(&results);
    Ok(reply::ok(body, results.iter().filter_map(|(_, r)| r.as_ref().ok())))
}

async fn parameters(app: &App, scope: &Scope, names: Vec<(String, Key)>) -> Result<Response<Body>, SdkError> {
    // A missing name is listed in InvalidParameters; anything else (a refusal
    // included) fails the call, as AWS does for a name it refuses.
    let not_missing = |r: &Refusal| !matches!(r, Refusal::Upstream(e) if e.kind == ErrorKind::NotFound);
    let results = items(app, Service::Ssm, scope, names, not_missing).await?;
    let body = answer::parameters_body(&results);
    Ok(reply::ok(body, results.iter().filter_map(|(_, r)| r.as_ref().ok())))
}

async fn path_page(app: &App, scope: &Scope, request: PathRequest) -> Result<Response<Body>, SdkError> {
    let service = Service::Ssm;
    let matching = lookup::listing(app, scope, &request.path, request.recursive, request.decrypt)
        .await
        .map_err(|r| SdkError::refused(service, &Selector::Current, &r))?;
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
        .map(|n| Key::new(Source::Ssm, Arc::clone(n), Selector::Current, request.decrypt).with_scope(scope.clone()))
        .collect();
    let mut page = Vec::with_capacity(keys.len());
    for (key, result) in each(app, service, &keys).await? {
        match result {
            Ok(a) => page.push(a),
            // Deleted since it was listed, or refused by the allowlist: not listed.
            Err(Refusal::NotAllowed { .. }) => {}
            Err(Refusal::Upstream(e)) if e.kind == ErrorKind::NotFound => {}
            Err(r) => return Err(SdkError::refused(service, &key.selector, &r)),
        }
    }
    let next = (end < matching.len()).then(|| issue_token(end, check));
    let body = answer::path_page_body(&page, next.as_deref());
    Ok(reply::ok(body, &page))
}
