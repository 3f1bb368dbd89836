//! The one decision behind both front doors: may this caller have these values,
//! and what is answered when they cannot be had. The extension API
//! (`extension_api`) and the SDK protocol (`sdk`) only parse their wire format into
//! keys and render what comes back; everything between is here, in this order:
//!
//! 1. **ids and roles**: an id that cannot name an allowed secret, or a `roleArn`
//!    the allowlist does not list, is refused before anything waits or goes upstream;
//! 2. **the SnapStart gate** (`gate`): no value during a SnapStart INIT;
//! 3. **the cache**: single-flight, stale-if-error, refresh-ahead, and the check of
//!    AWS's answer against the allowlist on the identity AWS returned;
//! 4. **the look-alike rule**: with an allowlist, a not-found or access-denied answer
//!    for an id that does not name an allowed identity as written is refused like
//!    any id outside the list, so a caller learns nothing about what exists outside it.
//!
//! Each answer's cache outcome and each refusal is counted (`metrics`); refusals are
//! logged with the id, never a value.

pub mod refusal;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::Arc;

use tracing::warn;

pub use refusal::Refusal;

use super::app::App;
use crate::backend::{ErrorKind, UpstreamError};
use crate::cache::{under_path, Answer, Freshness, Key};
use crate::model::{Scope, Source};
use crate::tenant::Refused as TenantRefused;

/// One key: its answer, or why there is none.
pub async fn one(app: &App, key: &Key, freshness: Freshness) -> Result<Answer, Refusal> {
    // The tenant first: the allowlist's templates resolve with the binding it waits
    // for, and a tenant's id is read under the tenant's role.
    let key = &*tenant(app, key).await.map_err(|r| counted(app, r))?;
    admit(app, key).map_err(|r| counted(app, r))?;
    pass_gate(app).await?;
    match app.cache.get(key, freshness).await {
        Ok(answer) => {
            app.metrics.outcome(answer.outcome);
            Ok(answer)
        }
        Err(e) => Err(counted(app, failed(app, key, e))),
    }
}

/// Several keys in one request (a batch, a page of a path): each answered or
/// refused on its own, in order, fetched together; `Err` when none could be looked
/// up at all (the gate).
pub async fn many(app: &App, keys: &[Key], freshness: Freshness) -> Result<Vec<Result<Answer, Refusal>>, Refusal> {
    let mut results: Vec<Option<Result<Answer, Refusal>>> = Vec::with_capacity(keys.len());
    let mut scoped: Vec<Cow<'_, Key>> = Vec::with_capacity(keys.len());
    for key in keys {
        let refused = match tenant(app, key).await {
            Ok(k) => {
                let refused = admit(app, &k).err();
                scoped.push(k);
                refused
            }
            Err(r) => {
                scoped.push(Cow::Borrowed(key));
                Some(r)
            }
        };
        results.push(refused.map(|r| Err(counted(app, r))));
    }
    let admitted: Vec<&Key> = scoped
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_none())
        .map(|(k, _)| &**k)
        .collect();
    if !admitted.is_empty() {
        pass_gate(app).await?;
        let wanted: Vec<Key> = admitted.iter().map(|k| (*k).clone()).collect();
        let mut answers = app.cache.get_many(&wanted, freshness).await.into_iter();
        for (slot, key) in results.iter_mut().zip(keys).filter(|(r, _)| r.is_none()) {
            *slot = Some(match answers.next() {
                Some(Ok(answer)) => {
                    app.metrics.outcome(answer.outcome);
                    Ok(answer)
                }
                Some(Err(e)) => Err(counted(app, failed(app, key, e))),
                None => Err(Refusal::Upstream(UpstreamError::new(ErrorKind::Aborted, "no answer"))),
            });
        }
    }
    Ok(results.into_iter().flatten().collect())
}

/// The names of the parameters under `path` (GetParametersByPath), `recursive`ly
/// or one level, in listing order, without those the allowlist could never allow
/// (the caller named the path, not them: they are left out, not refused). Names
/// only; their values are looked up with [`many`], each under the rules above.
pub async fn listing(
    app: &App,
    scope: &Scope,
    path: &str,
    recursive: bool,
    decrypt: bool,
) -> Result<Vec<Arc<str>>, Refusal> {
    let scope = &*listing_scope(app, scope, path).await.map_err(|r| counted(app, r))?;
    pass_gate(app).await?;
    let names = app
        .cache
        .list_path(scope, path, decrypt)
        .await
        .map_err(|e| counted(app, Refusal::Upstream(e)))?;
    let allowed = |name: &str| app.allow.as_ref().is_none_or(|a| a.could_name(Source::Ssm, name));
    Ok(names
        .iter()
        .filter(|n| under_path(path, n, recursive) && allowed(n))
        .cloned()
        .collect())
}

/// Step 1: the id and the role, before any wait or call.
fn admit(app: &App, key: &Key) -> Result<(), Refusal> {
    if let Some(allow) = &app.allow {
        if !allow.could_name(key.source, &key.id) {
            warn!(source = key.source.label(), id = %key.id, "refused: not in the allowlist");
            return Err(Refusal::NotAllowed { id: key.id.clone() });
        }
    }
    if let Some(role) = key.scope.role() {
        // No role may be assumed without the allowlist naming it, but the tenant's
        // (configured, and given to the tenant's ids only by step 1b).
        let tenants = app.tenancy().and_then(|t| t.role()) == Some(role);
        if !tenants && !app.allow.as_ref().is_some_and(|a| a.permits_role(role)) {
            warn!(role, "refused: roleArn not in the allowlist");
            return Err(Refusal::RoleNotAllowed);
        }
    }
    Ok(())
}

/// Step 1b: an id a `{tenant}` template claims must be the bound tenant's; before
/// the binding it waits for it, within the invoke's deadline. Ids no template
/// claims pass without a wait (one check of a short list). With a tenant role
/// (`SECRETS_SIDECAR_TENANT_ROLE`) the key returned is the tenant's id read under
/// it: nothing of the tenant's is read with the function's own role, and the
/// tenant role reads nothing but the tenant's ids.
async fn tenant<'k>(app: &App, key: &'k Key) -> Result<Cow<'k, Key>, Refusal> {
    let Some(tenancy) = app.tenancy() else {
        return Ok(Cow::Borrowed(key));
    };
    match tenancy.admit(key.source, &key.id).await {
        Ok(false) => match key.scope.role() {
            Some(role) if tenancy.is_tenant_role(role) => {
                warn!(role, id = %key.id, "refused: a tenant role for an id no template claims");
                Err(Refusal::RoleNotAllowed)
            }
            _ => Ok(Cow::Borrowed(key)),
        },
        Ok(true) => {
            let Some(role) = tenancy.role() else {
                return Ok(Cow::Borrowed(key));
            };
            match key.scope.role() {
                None => {
                    let scope = Scope::new(key.scope.account(), key.scope.region(), Some(role));
                    Ok(Cow::Owned(key.clone().with_scope(scope)))
                }
                Some(r) if r == role => Ok(Cow::Borrowed(key)),
                Some(r) => {
                    warn!(role = r, id = %key.id, "refused: a tenant's id under a role not the tenant's");
                    Err(Refusal::RoleNotAllowed)
                }
            }
        }
        Err(TenantRefused::OtherTenant) => {
            warn!(source = key.source.label(), id = %key.id, "refused: another tenant's id");
            Err(Refusal::OtherTenant { id: key.id.clone() })
        }
        Err(TenantRefused::Unknown { during_init }) => {
            let why = if during_init {
                format!(
                    "'{}' names a tenant's secret and Lambda names the tenant only with an invoke, not during INIT",
                    key.id
                )
            } else {
                format!(
                    "'{}' names a tenant's secret and Lambda did not name the tenant by the invoke's deadline",
                    key.id
                )
            };
            Err(Refusal::TenantUnknown { why })
        }
        Err(TenantRefused::Unbindable(why)) => Err(Refusal::TenantUnknown { why }),
    }
}

/// Where a path is listed: a listing that could hold a tenant's names (and
/// returns their values) is made under the tenant's role, once it is bound.
async fn listing_scope<'s>(app: &App, scope: &'s Scope, path: &str) -> Result<Cow<'s, Scope>, Refusal> {
    let Some(tenancy) = app.tenancy().filter(|t| t.has_role() && t.may_list_claimed(path)) else {
        return Ok(Cow::Borrowed(scope));
    };
    if let Some(role) = scope.role() {
        if tenancy.is_tenant_role(role) && tenancy.role() != Some(role) {
            return Err(Refusal::RoleNotAllowed);
        }
        return Ok(Cow::Borrowed(scope));
    }
    match tenancy.bound().await {
        Ok(_) => Ok(Cow::Owned(Scope::new(scope.account(), scope.region(), tenancy.role()))),
        Err(TenantRefused::OtherTenant) => Err(Refusal::OtherTenant { id: path.into() }),
        Err(TenantRefused::Unknown { .. }) => Err(Refusal::TenantUnknown {
            why: format!("listing '{path}' could name a tenant's secrets and the tenant is not known yet"),
        }),
        Err(TenantRefused::Unbindable(why)) => Err(Refusal::TenantUnknown { why }),
    }
}

/// Step 2: one atomic load when open (always, but around a SnapStart snapshot).
async fn pass_gate(app: &App) -> Result<(), Refusal> {
    if !app.gate.is_open() && app.gate.pass().await.is_err() {
        return Err(counted(app, Refusal::SnapStartInit));
    }
    Ok(())
}

/// Step 4: an upstream failure as answered.
fn failed(app: &App, key: &Key, e: UpstreamError) -> Refusal {
    let look_alike = || {
        app.allow
            .as_ref()
            .is_some_and(|a| !a.names_exactly(key.source, &key.id))
    };
    match e.kind {
        // The cache's check of AWS's answer on the identity it returned.
        ErrorKind::NotAllowed => Refusal::NotAllowed { id: key.id.clone() },
        ErrorKind::NotFound | ErrorKind::AccessDenied if look_alike() => {
            warn!(source = key.source.label(), id = %key.id, "refused: a look-alike of an allowed id");
            Refusal::NotAllowed { id: key.id.clone() }
        }
        _ => Refusal::Upstream(e),
    }
}

fn counted(app: &App, refusal: Refusal) -> Refusal {
    if let Some(reason) = refusal.reason() {
        app.metrics.refused(reason);
    }
    refusal
}
