//! `name:selector` splitting and the reference grammar: no panics, and splitting
//! never loses or invents characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrets_sidecar::model::{parse_ref_list, split_ssm_selector};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (name, sel) = split_ssm_selector(s);
    let rebuilt = match sel {
        Some(x) => format!("{name}:{x}"),
        None => name.to_owned(),
    };
    assert_eq!(rebuilt, s);
    let _ = parse_ref_list(s);
    if let Ok(list) = secrets_sidecar::allow::AllowList::parse(s) {
        use secrets_sidecar::model::Source;
        for source in [Source::Ssm, Source::SecretsManager] {
            // An id the list names exactly is one it could name.
            if list.names_exactly(source, s) {
                assert!(list.could_name(source, s));
            }
        }
        let _ = list.permits_parameter(s, "");
        let _ = list.permits_secret(s, s);
        let _ = list.permits_role(s);
    }
});
