//! Query strings of both routes: parsing never panics, and what it accepts is
//! consistent (an id within bounds, at most one selector).
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrets_sidecar::model::{Selector, MAX_ID_LEN};
use secrets_sidecar::server::extension_api::query::{parse_secrets_manager, parse_ssm};

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else { return };
    for lookup in [parse_secrets_manager(q), parse_ssm(q)].into_iter().flatten() {
        assert!(!lookup.key.id.is_empty() && lookup.key.id.len() <= MAX_ID_LEN);
        if let Selector::Version(n) = lookup.key.selector {
            assert!(n >= 1);
        }
    }
});
