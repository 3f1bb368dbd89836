//! Query strings of both routes: parsing never panics, and what it accepts is
//! consistent (an id within bounds, at most one selector).
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrets_sidecar::query::{parse_secrets_manager, parse_ssm, Selector};
use secrets_sidecar::refs::MAX_ID_LEN;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else { return };
    for lookup in [parse_secrets_manager(q), parse_ssm(q)].into_iter().flatten() {
        assert!(!lookup.id.is_empty() && lookup.id.len() <= MAX_ID_LEN);
        if let Selector::Version(n) = lookup.selector {
            assert!(n >= 1);
        }
    }
});
