//! Which Lambda platform the sidecar runs on, and what each one allows.
//!
//! Lambda tells every process of the environment in `AWS_LAMBDA_INITIALIZATION_TYPE`
//! (AWS's emulator leaves it unset for on-demand). The differences that matter here:
//!
//! | platform | events | refresh-ahead driven by | values fetched during INIT |
//! | --- | --- | --- | --- |
//! | on-demand | INVOKE, SHUTDOWN | INVOKE (frozen between invokes) | yes |
//! | provisioned concurrency | INVOKE, SHUTDOWN | INVOKE; INIT may be hours before the first | yes |
//! | SnapStart | INVOKE, SHUTDOWN | INVOKE | **no**: memory and disk are snapshotted |
//! | Managed Instances | SHUTDOWN only (INVOKE is refused with 403) | a timer: never frozen, invokes overlap | yes |

use std::fmt;

use super::extensions_api::EventType;

pub const INITIALIZATION_TYPE: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    OnDemand,
    Provisioned,
    SnapStart,
    ManagedInstances,
}

/// What drives refresh-ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshDriver {
    /// Each INVOKE, finished before the next `event/next` (timers do not run while
    /// the environment is frozen).
    Invoke,
    /// A timer: the environment is never frozen and gets no INVOKE events.
    Timer,
}

impl Platform {
    /// The platform `AWS_LAMBDA_INITIALIZATION_TYPE` names; unset or empty is
    /// on-demand. An unknown value is returned as `Err` (the caller logs it and
    /// runs as on-demand, the most common and most conservative mode).
    pub fn from_initialization_type(value: Option<&str>) -> Result<Platform, String> {
        match value.map(str::trim).unwrap_or("") {
            "" | "on-demand" => Ok(Platform::OnDemand),
            "provisioned-concurrency" => Ok(Platform::Provisioned),
            "snap-start" => Ok(Platform::SnapStart),
            "lambda-managed-instances" => Ok(Platform::ManagedInstances),
            other => Err(other.chars().take(64).collect()),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Platform::OnDemand => "on-demand",
            Platform::Provisioned => "provisioned-concurrency",
            Platform::SnapStart => "snap-start",
            Platform::ManagedInstances => "lambda-managed-instances",
        }
    }

    /// The events to register for.
    pub fn events(self) -> &'static [EventType] {
        match self {
            Platform::ManagedInstances => &[EventType::Shutdown],
            _ => &[EventType::Invoke, EventType::Shutdown],
        }
    }

    pub fn refresh_driver(self) -> RefreshDriver {
        match self {
            Platform::ManagedInstances => RefreshDriver::Timer,
            _ => RefreshDriver::Invoke,
        }
    }

    /// Whether values may be fetched during INIT. Under SnapStart whatever INIT
    /// leaves in memory or on disk is copied into every restored environment, for
    /// days: a wipe is not enough (freed pages, socket and SDK buffers keep copies).
    pub fn fetches_during_init(self) -> bool {
        self != Platform::SnapStart
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_value_and_the_emulators_unset_one() {
        for (value, platform) in [
            (None, Platform::OnDemand),
            (Some(""), Platform::OnDemand),
            (Some("on-demand"), Platform::OnDemand),
            (Some("provisioned-concurrency"), Platform::Provisioned),
            (Some("snap-start"), Platform::SnapStart),
            (Some("lambda-managed-instances"), Platform::ManagedInstances),
        ] {
            assert_eq!(Platform::from_initialization_type(value), Ok(platform), "{value:?}");
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                assert_eq!(platform.label(), v);
            }
        }
        assert_eq!(
            Platform::from_initialization_type(Some("Managed-Instances")),
            Err("Managed-Instances".into())
        );
    }

    #[test]
    fn managed_instances_register_shutdown_only_and_refresh_on_a_timer() {
        assert_eq!(Platform::ManagedInstances.events(), [EventType::Shutdown]);
        assert_eq!(Platform::ManagedInstances.refresh_driver(), RefreshDriver::Timer);
        for p in [Platform::OnDemand, Platform::Provisioned, Platform::SnapStart] {
            assert_eq!(p.events(), [EventType::Invoke, EventType::Shutdown]);
            assert_eq!(p.refresh_driver(), RefreshDriver::Invoke);
        }
        assert!(!Platform::SnapStart.fetches_during_init());
        assert!(Platform::ManagedInstances.fetches_during_init());
    }
}
