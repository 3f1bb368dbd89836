//! Tenant isolation: an environment of a tenant-isolation function serves one
//! tenant, and the sidecar keeps every other tenant's secrets out of it.
//!
//! - `id`: the tenant id, checked as Lambda checks it and again before it enters a
//!   name or an ARN.
//! - `template`: `{tenant}` in PREFETCH entries, allowlist patterns and role ARNs;
//!   each template *claims* every name any tenant's instance could have.
//! - `binding`: the tenant Lambda reported (the Telemetry API's `platform.start`
//!   record, received by `lifecycle::telemetry`), bound once.
//! - `role`: the tenant's role (`SECRETS_SIDECAR_TENANT_ROLE`), under which every
//!   claimed id is read, with the tenant as the session tag.
//!
//! [`Tenancy`] answers, for any id either door is asked for: not claimed by any
//! template (served as before), claimed and the bound tenant's (served), claimed
//! and another tenant's (refused like an id outside the allowlist), or claimed
//! before the binding is known (the request waits for it within the invoke's
//! deadline). The tenant never comes from the caller. What AWS returns is checked
//! again on the identity it names, so no spelling of another tenant's id (a partial
//! ARN, an SSM reference, a look-alike) gets its value stored or served.

mod binding;
mod id;
pub mod role;
pub mod template;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

pub use binding::{Binding, Reported, State};
pub use id::{TenantError, TenantId, MAX_TENANT_LEN};
pub use role::TenantRole;

use crate::allow::AllowList;
use crate::backend::{SessionTag, TenantSession, Value};
use crate::model::{Scope, SecretRef, Source};

/// Kept free before the invoke's deadline when a request waits for the binding,
/// so its refusal still reaches the function in time.
const WAIT_MARGIN: Duration = Duration::from_millis(100);
/// How often a wait looks for an invoke's deadline it does not know yet.
const SLICE: Duration = Duration::from_millis(20);
/// The longest wait without a known deadline (Lambda's own longest timeout is 900 s;
/// an INVOKE event normally follows within milliseconds).
const UNKNOWN_DEADLINE_CAP: Duration = Duration::from_secs(30);

/// Why a claimed id gets no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another tenant's instance of a template.
    OtherTenant,
    /// The binding is not known: during INIT (Lambda names the tenant only with an
    /// invoke), or not by the invoke's deadline.
    Unknown { during_init: bool },
    /// The binding will never allow it: no tenant (not a tenant isolation
    /// function), a tenant its templates cannot use, or a conflict.
    Unbindable(String),
}

/// The templates of one configuration and the binding they resolve against.
pub struct Tenancy {
    binding: Binding,
    /// PREFETCH entries holding `{tenant}`, as written.
    prefetch: Vec<SecretRef>,
    /// Every template's claim, as an allowlist (`None`: only roles are templated).
    claims: Option<AllowList>,
    /// The claimed templates as allowlist items, resolved once bound into `mine`.
    items: Vec<String>,
    mine: OnceLock<AllowList>,
    /// The allowlist in force, bound with the tenant (its templated patterns).
    allow: Option<AllowList>,
    /// The tenant's role as configured, resolved once bound into `bound_role`,
    /// and the session tag every AssumeRole of it carries.
    role: Option<TenantRole>,
    bound_role: OnceLock<String>,
    session: TenantSession,
    /// The current invoke's deadline (ms since the epoch); zero before the first.
    deadline_ms: AtomicU64,
    /// INIT is over: a request now belongs to an invoke, even one whose INVOKE
    /// event the sidecar has not read yet (the runtime gets its event at the same time).
    init_done: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenancy")
            .field("templates", &self.items)
            .field("binding", &self.binding.current())
            .finish_non_exhaustive()
    }
}

/// A reference as the allowlist item that covers what it names.
fn as_item(r: &SecretRef) -> Option<String> {
    match r {
        SecretRef::Secret(id) => Some(format!("secretsmanager:{id}")),
        SecretRef::Parameter(id) => Some(format!("ssm:{id}")),
        SecretRef::Path(prefix) => Some(format!("ssm:{prefix}*")),
        SecretRef::Tag(_) => None,
    }
}

impl Tenancy {
    /// The tenancy of a configuration, `None` when nothing in it holds `{tenant}`
    /// (then nothing changes). `prefetch` is PREFETCH as configured; templates in
    /// it and in `allow` have been checked by the configuration. `role`: the
    /// tenant's role, whose session tag is set in `session` once bound.
    pub fn plan(
        prefetch: &[SecretRef],
        allow: Option<&AllowList>,
        role: Option<&TenantRole>,
        session: &TenantSession,
    ) -> Option<Tenancy> {
        let templated: Vec<SecretRef> = prefetch
            .iter()
            .filter(|r| template::is_template(r.id()))
            .cloned()
            .collect();
        let allow_templates = allow.map_or(&[][..], |a| a.templates());
        if templated.is_empty() && allow_templates.is_empty() {
            return None;
        }
        let items: Vec<String> = templated
            .iter()
            .filter_map(as_item)
            .chain(allow_templates.iter().filter(|t| !t.starts_with("role:")).cloned())
            .collect();
        let claims = (!items.is_empty())
            .then(|| AllowList::parse(&items.iter().map(|i| template::claim(i)).collect::<Vec<_>>().join(",")).ok())
            .flatten();
        Some(Tenancy {
            binding: Binding::default(),
            prefetch: templated,
            claims,
            items,
            mine: OnceLock::new(),
            allow: allow.cloned(),
            role: role.cloned(),
            bound_role: OnceLock::new(),
            session: session.clone(),
            deadline_ms: AtomicU64::new(0),
            init_done: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    /// One `platform.start` record's `tenantId`. The first report binds: the
    /// templates resolve, the allowlist's and the role's with them, all before the
    /// binding is published (a waiting request wakes to a complete tenancy).
    pub fn report(&self, tenant: Option<&str>) -> Reported {
        let usable = |t: &TenantId| self.role.as_ref().map_or(Ok(()), |r| r.resolve(t).map(drop));
        let parsed = tenant.map(|t| TenantId::parse(t).and_then(|id| usable(&id).map(|()| id)));
        if let Some(Ok(t)) = parsed {
            if self.binding.current() == State::Unbound {
                self.resolve(&t);
            }
        }
        self.binding.report_checked(tenant, usable)
    }

    /// Resolves every template for `t` (first resolution wins; the binding decides
    /// whether it is ever used).
    fn resolve(&self, t: &TenantId) {
        let resolved: Vec<String> = self.items.iter().map(|i| template::resolve(i, t)).collect();
        if let Ok(mine) = AllowList::parse(&resolved.join(",")) {
            let _ = self.mine.set(mine);
        }
        if let Some(allow) = &self.allow {
            allow.bind_tenant(t);
        }
        if let Some(Ok(arn)) = self.role.as_ref().map(|r| r.resolve(t)) {
            let tag = SessionTag {
                role: arn.clone(),
                key: self.role.as_ref().map_or_else(String::new, |r| r.tag_key().to_owned()),
                value: t.to_string(),
            };
            if self.bound_role.set(arn).is_ok() {
                self.session.set(tag);
            }
        }
    }

    /// Whether a tenant role is configured.
    pub fn has_role(&self) -> bool {
        self.role.is_some()
    }

    /// The bound tenant's role, when one is configured.
    pub fn role(&self) -> Option<&str> {
        match self.binding.current() {
            State::Tenant(_) => self.bound_role.get().map(String::as_str),
            _ => None,
        }
    }

    /// Whether `role` is some tenant's role (this one's or another's): it reads
    /// claimed ids only.
    pub fn is_tenant_role(&self, role: &str) -> bool {
        self.role.as_ref().is_some_and(|r| r.could_be(role))
    }

    /// Where the bound tenant's PREFETCH entries are read: under its role, if any.
    pub fn scope(&self) -> Scope {
        Scope::new(None, None, self.role())
    }

    /// Whether a GetParametersByPath of `path` could list a claimed name: with a
    /// tenant role such a listing (which returns values) is made under that role.
    pub fn may_list_claimed(&self, path: &str) -> bool {
        self.items
            .iter()
            .filter_map(|i| i.strip_prefix("ssm:"))
            .any(|glob| prefix_may_match(path, &template::claim(glob)))
    }

    /// INIT is over (called before the first `event/next`).
    pub fn end_init(&self) {
        self.init_done.store(true, Ordering::Release);
    }

    /// An INVOKE's deadline: a request waiting for the binding waits until then.
    pub fn set_invoke_deadline(&self, deadline_ms: u64) {
        self.deadline_ms.store(deadline_ms, Ordering::Release);
    }

    /// The PREFETCH templates resolved for the bound tenant (empty before).
    pub fn prefetch(&self) -> Vec<SecretRef> {
        let State::Tenant(t) = self.binding.current() else {
            return Vec::new();
        };
        self.prefetch.iter().map(|r| resolve_ref(r, &t)).collect()
    }

    /// Whether PREFETCH holds templates.
    pub fn prefetches(&self) -> bool {
        !self.prefetch.is_empty()
    }

    /// Whether some template claims `id` (before any upstream call: an id that
    /// could name a claimed secret, whatever AWS answers).
    pub fn claims(&self, source: Source, id: &str) -> bool {
        self.claims.as_ref().is_some_and(|c| c.could_name(source, id))
    }

    /// The decision for an id, waiting for the binding if a template claims it and
    /// it is not known: `Ok(false)` not claimed, `Ok(true)` the bound tenant's.
    pub async fn admit(&self, source: Source, id: &str) -> Result<bool, Refused> {
        if !self.claims(source, id) {
            return Ok(false);
        }
        self.bound().await?;
        let mine = self.mine.get().is_some_and(|m| m.could_name(source, id));
        if mine {
            Ok(true)
        } else {
            Err(Refused::OtherTenant)
        }
    }

    /// The bound tenant, waiting for it within the invoke's deadline.
    pub async fn bound(&self) -> Result<TenantId, Refused> {
        let state = match self.binding.current() {
            State::Unbound => {
                if !self.init_done.load(Ordering::Acquire) {
                    return Err(Refused::Unknown { during_init: true });
                }
                self.wait_within_invoke().await
            }
            known => known,
        };
        match state {
            State::Tenant(t) => Ok(t),
            State::Unbound => Err(Refused::Unknown { during_init: false }),
            other => Err(Refused::Unbindable(unbindable(&other))),
        }
    }

    /// Waits for the binding until the current invoke's deadline; while the
    /// INVOKE event is not read yet (its deadline unknown), in short slices that
    /// pick the deadline up once it is, never longer than [`UNKNOWN_DEADLINE_CAP`].
    async fn wait_within_invoke(&self) -> State {
        let started = Instant::now();
        loop {
            let deadline_ms = self.deadline_ms.load(Ordering::Acquire);
            let until = if deadline_ms == 0 {
                Instant::now() + SLICE
            } else {
                instant_before(deadline_ms)
            };
            let state = self.binding.wait(until).await;
            if state != State::Unbound
                || (deadline_ms != 0 && Instant::now() >= until)
                || started.elapsed() >= UNKNOWN_DEADLINE_CAP
            {
                return state;
            }
        }
    }

    /// Whether what AWS returned may be stored and served: a value whose identity
    /// a template claims must be the bound tenant's.
    pub fn permits_value(&self, source: Source, value: &Value) -> bool {
        let Some(claims) = &self.claims else {
            return true;
        };
        if !claims.permits_value(source, value) {
            return true;
        }
        self.mine.get().is_some_and(|m| m.permits_value(source, value))
    }
}

/// Why a known binding allows no tenant's id.
fn unbindable(state: &State) -> String {
    match state {
        State::NoTenant => "Lambda reported no tenant for this environment: the function is not in tenant \
                            isolation mode, so {tenant} cannot resolve"
            .to_owned(),
        State::Unusable(e) => format!("{e}; {{tenant}} does not resolve"),
        State::Conflict { first, second } => format!(
            "the environment was reported for tenant '{first}' and then for '{second}'; Lambda never moves an \
             environment, so every tenant's id is refused"
        ),
        State::Tenant(_) | State::Unbound => String::new(),
    }
}

fn resolve_ref(r: &SecretRef, t: &TenantId) -> SecretRef {
    let id = template::resolve(r.id(), t);
    match r {
        SecretRef::Secret(_) => SecretRef::Secret(id),
        SecretRef::Parameter(_) => SecretRef::Parameter(id),
        SecretRef::Path(_) => SecretRef::Path(id),
        SecretRef::Tag(_) => SecretRef::Tag(id),
    }
}

/// Whether some name under `path` could match `glob` (whose `*` stands for any
/// text): a listing's prefix either runs into the glob's first `*` or ends inside
/// its literal head.
fn prefix_may_match(path: &str, glob: &str) -> bool {
    let (head, wild) = match glob.split_once('*') {
        Some((head, _)) => (head, true),
        None => (glob, false),
    };
    let n = path.len().min(head.len());
    path.as_bytes()[..n] == head.as_bytes()[..n] && (path.len() <= head.len() || wild)
}

/// `deadline_ms` (ms since the epoch) less the margin, as a monotonic instant.
fn instant_before(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(WAIT_MARGIN);
    Instant::now() + left
}

#[cfg(test)]
mod tests;
