//! Randomness for spreading retries and refreshes, reseedable after a SnapStart restore.
//!
//! Every environment restored from one snapshot starts with the same memory, so a
//! generator seeded during INIT would draw the same numbers in all of them and their
//! refreshes and retries would hit AWS in lockstep. [`reseed`] draws a new seed from
//! the operating system; the restore calls it. Not for anything secret: a splitmix64
//! sequence over one atomic counter, shared by every thread.
//!
//! [`set_spread`] turns all of it off (`SECRETS_SIDECAR_FLEET_SPREAD=off`): no
//! refresh offset, fixed retry intervals, the SDK's retries on every call, no prefetch
//! retries. That is the naive fleet the fleet benchmark measures against.
//!
//! The refresh-ahead point is shifted by one offset per process (per environment),
//! and a retry after N failures by one draw per process and N, both drawn with the
//! seed: environments spread apart, while the keys of one environment stay due
//! together and refresh (or retry) in one batch.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Once;

static STATE: AtomicU64 = AtomicU64::new(0);
static SEEDED: Once = Once::new();
/// This process's refresh offset in [0, 1), as `f64` bits.
static OFFSET: AtomicU64 = AtomicU64::new(0);
/// This process's base for retry draws in [0, 1), as `f64` bits.
static RETRY_BASE: AtomicU64 = AtomicU64::new(0);
static SPREAD: AtomicBool = AtomicBool::new(true);

/// Turns spreading on (the default) or off, for the whole process.
pub fn set_spread(on: bool) {
    SPREAD.store(on, Relaxed);
}

/// Whether retries and refreshes are spread out (see the module header).
pub(super) fn spreading() -> bool {
    SPREAD.load(Relaxed)
}

/// A fresh seed from the OS, or (without `/dev/urandom`) from the clock and pid.
fn entropy() -> u64 {
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    match read {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    }
}

fn seed() {
    STATE.store(entropy(), Relaxed);
    OFFSET.store(draw().to_bits(), Relaxed);
    RETRY_BASE.store(draw().to_bits(), Relaxed);
}

/// Starts a new sequence from the OS's randomness, with a new refresh offset.
pub fn reseed() {
    SEEDED.call_once(|| {});
    seed();
}

/// A uniform number in [0, 1).
#[cfg(test)]
fn unit() -> f64 {
    SEEDED.call_once(seed);
    draw()
}

/// This process's draw for a retry after `failures` consecutive failures, in [0, 1):
/// the same for every key of this environment (keys that failed together retry
/// together, in one batch), different across environments and failure counts.
pub(super) fn retry_offset(failures: u32) -> f64 {
    SEEDED.call_once(seed);
    // A golden-ratio step per failure count from the seed's base: evenly spread.
    let base = f64::from_bits(RETRY_BASE.load(Relaxed));
    (base + f64::from(failures) * 0.618_033_988_749_895).fract()
}

/// This process's position in the refresh jitter window, in [0, 1).
pub(super) fn refresh_offset() -> f64 {
    if !spreading() {
        return 0.0;
    }
    SEEDED.call_once(seed);
    f64::from_bits(OFFSET.load(Relaxed))
}

fn draw() -> f64 {
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 53 bits, as the mantissa of a double in [0, 1).
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_in_range_and_spread() {
        let draws: Vec<f64> = (0..10_000).map(|_| unit()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let low = draws.iter().filter(|d| **d < 0.5).count();
        assert!((4_500..5_500).contains(&low), "{low} of 10000 below one half");
    }

    #[test]
    fn retry_draws_are_per_failure_count_and_stable() {
        let draws: Vec<f64> = (1..=8).map(retry_offset).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        assert_eq!(retry_offset(3), retry_offset(3), "keys failing together retry together");
        for pair in draws.windows(2) {
            assert!(
                (pair[0] - pair[1]).abs() > 0.1,
                "consecutive failure counts spread: {draws:?}"
            );
        }
    }

    #[test]
    fn a_reseed_starts_a_different_sequence_and_offset() {
        reseed();
        let a: Vec<f64> = (0..4).map(|_| unit()).collect();
        let offset = refresh_offset();
        assert_eq!(refresh_offset(), offset, "one offset per seed");
        assert!((0.0..1.0).contains(&offset));
        reseed();
        let b: Vec<f64> = (0..4).map(|_| unit()).collect();
        assert_ne!(a, b, "two seeds from the OS gave the same sequence");
        assert_ne!(refresh_offset(), offset, "a clone gets its own refresh offset");
    }
}
