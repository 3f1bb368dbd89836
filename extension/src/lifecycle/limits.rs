//! How many client connections the sidecar holds at once, per platform, within
//! what the process may open.
//!
//! On Managed Instances one environment runs many invokes at once, each worker with
//! its own connection (Python runs one process per request, each with its own pool),
//! and an extension cannot see the configured concurrency (`AWS_LAMBDA_MAX_CONCURRENCY`
//! goes to the runtime only). AWS allows up to 1,600 concurrent requests per
//! environment, so the default there is 2,048: every request of a full environment
//! gets a connection, with headroom for the idle keep-alive sockets of the others
//! (reclaimed at the cap). Elsewhere one invoke runs at a time, and 256 is plenty.
//!
//! Every connection is a file descriptor. At start the soft open-file limit is raised
//! to the hard one (allowed without privileges), and the cap is kept below it with
//! room to spare: an `accept` that fails with EMFILE cannot even reclaim an idle
//! connection for a newcomer.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::config::Platform;
use crate::config::DEFAULT_MAX_CLIENT_CONNECTIONS;

/// Managed Instances' default (see the header).
pub const MANAGED_INSTANCES_MAX_CLIENT_CONNECTIONS: usize = 2048;
/// Descriptors kept for everything but client connections: the listener, upstream
/// connections (a few per service), the Extensions API, logs.
const RESERVED_FDS: u64 = 128;

/// The platform's default cap.
pub fn default_client_connections(platform: Platform) -> usize {
    match platform {
        Platform::ManagedInstances => MANAGED_INSTANCES_MAX_CLIENT_CONNECTIONS,
        _ => DEFAULT_MAX_CLIENT_CONNECTIONS,
    }
}

/// Raises the soft open-file limit to the hard one; returns the soft limit now in
/// force (`None` when it cannot be read).
pub fn raise_open_files() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// The cap to use: `wanted`, but never so many that the descriptors run out first.
pub fn fit_to_open_files(wanted: usize, open_files: Option<u64>) -> usize {
    match open_files {
        Some(limit) => {
            let room = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
            wanted.min(room).max(1)
        }
        None => wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_instances_get_room_for_a_full_environment() {
        assert!(default_client_connections(Platform::ManagedInstances) >= 1600);
        assert_eq!(default_client_connections(Platform::OnDemand), 256);
        assert_eq!(default_client_connections(Platform::Standalone), 256);
    }

    #[test]
    fn the_cap_stays_below_the_open_file_limit() {
        assert_eq!(fit_to_open_files(2048, Some(1024)), 1024 - 128);
        assert_eq!(fit_to_open_files(256, Some(1024)), 256);
        assert_eq!(fit_to_open_files(2048, Some(65_536)), 2048);
        assert_eq!(fit_to_open_files(2048, None), 2048);
        assert_eq!(fit_to_open_files(2048, Some(64)), 1, "never zero");
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let (before, _) = getrlimit(Resource::RLIMIT_NOFILE).expect("readable");
        let after = raise_open_files().expect("readable");
        assert!(after >= before);
    }
}
