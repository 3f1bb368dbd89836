//! The environment's tenant, as Lambda reported it: unknown until the first
//! `platform.start` event, then bound for the environment's life.
//!
//! Lambda never moves an environment to another tenant, so a second report that
//! differs (another tenant, or none after one) is not a change but a sign that
//! something other than Lambda is speaking: the binding becomes [`State::Conflict`]
//! and every tenant's id is refused from then on (failing closed).

use tokio::sync::watch;
use tokio::time::Instant;

use super::{TenantError, TenantId};

/// Where the binding stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// No `platform.start` yet.
    Unbound,
    Tenant(TenantId),
    /// Lambda reported a tenant its templates cannot use (see `id.rs`).
    Unusable(TenantError),
    /// Lambda reported an invoke without a tenant: not a tenant isolation function.
    NoTenant,
    /// Two reports disagreed; the first and the second, as reported.
    Conflict {
        first: String,
        second: String,
    },
}

impl State {
    fn reported(&self) -> Option<String> {
        match self {
            State::Unbound => None,
            State::Tenant(t) => Some(t.to_string()),
            State::Unusable(TenantError::NotNameSafe(t) | TenantError::Role { tenant: t, .. }) => Some(t.clone()),
            State::Unusable(e) => Some(format!("(invalid: {e})")),
            State::NoTenant => Some("(none)".to_owned()),
            State::Conflict { first, .. } => Some(first.clone()),
        }
    }
}

/// What one report did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reported {
    /// The first report: the binding is now this state.
    Bound(State),
    /// The same as before.
    Same,
    /// It disagreed with the binding, which is now a conflict.
    Conflict,
}

pub struct Binding {
    state: watch::Sender<State>,
}

impl Default for Binding {
    fn default() -> Self {
        Binding {
            state: watch::Sender::new(State::Unbound),
        }
    }
}

impl Binding {
    /// One `platform.start`'s `tenantId` (`None`: the record had none).
    pub fn report(&self, tenant: Option<&str>) -> Reported {
        self.report_checked(tenant, |_| Ok(()))
    }

    /// [`Binding::report`], with what else a tenant must satisfy to be usable (its
    /// role must resolve to an ARN).
    pub fn report_checked(
        &self,
        tenant: Option<&str>,
        usable: impl Fn(&TenantId) -> Result<(), TenantError>,
    ) -> Reported {
        let new = match tenant {
            None => State::NoTenant,
            Some(t) => match TenantId::parse(t).and_then(|id| usable(&id).map(|()| id)) {
                Ok(id) => State::Tenant(id),
                Err(e) => State::Unusable(e),
            },
        };
        let mut outcome = Reported::Same;
        self.state.send_if_modified(|state| {
            if *state == State::Unbound {
                *state = new.clone();
                outcome = Reported::Bound(new.clone());
                return true;
            }
            if matches!(state, State::Conflict { .. }) || *state == new {
                return false;
            }
            let first = state.reported().unwrap_or_default();
            let second = new.reported().unwrap_or_default();
            *state = State::Conflict { first, second };
            outcome = Reported::Conflict;
            true
        });
        outcome
    }

    pub fn current(&self) -> State {
        self.state.borrow().clone()
    }

    /// The binding once it is known, or [`State::Unbound`] at `deadline`.
    pub async fn wait(&self, deadline: Instant) -> State {
        let mut rx = self.state.subscribe();
        let known = async { rx.wait_for(|s| *s != State::Unbound).await.map(|s| s.clone()) };
        match tokio::time::timeout_at(deadline, known).await {
            Ok(Ok(state)) => state,
            _ => State::Unbound,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn binds_once_and_a_disagreement_fails_closed() {
        let b = Binding::default();
        assert_eq!(b.current(), State::Unbound);
        let acme = State::Tenant(TenantId::parse("acme").expect("tenant"));
        assert_eq!(b.report(Some("acme")), Reported::Bound(acme.clone()));
        assert_eq!(b.report(Some("acme")), Reported::Same);
        assert_eq!(b.current(), acme);
        assert_eq!(b.report(Some("other")), Reported::Conflict);
        assert_eq!(
            b.current(),
            State::Conflict {
                first: "acme".into(),
                second: "other".into()
            }
        );
        assert_eq!(b.report(Some("acme")), Reported::Same, "a conflict is for good");
        assert!(matches!(b.current(), State::Conflict { .. }));

        let none = Binding::default();
        assert_eq!(none.report(None), Reported::Bound(State::NoTenant));
        assert_eq!(none.report(Some("acme")), Reported::Conflict);

        let odd = Binding::default();
        assert!(matches!(
            odd.report(Some("a/b")),
            Reported::Bound(State::Unusable(TenantError::NotNameSafe(_)))
        ));
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_the_report_or_at_its_deadline() {
        let b = Arc::new(Binding::default());
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            b.wait(soon).await,
            State::Unbound,
            "nothing reported: the deadline ends the wait"
        );
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.wait(Instant::now() + Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        b.report(Some("acme"));
        let state = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the report")
            .expect("joined");
        assert_eq!(state, State::Tenant(TenantId::parse("acme").expect("tenant")));
    }
}
