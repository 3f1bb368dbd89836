//! Where the upstream clients send their calls, without ever calling the sidecar
//! itself.
//!
//! Extensions receive the function's environment. A function that points its own
//! SDK at the sidecar (`AWS_ENDPOINT_URL_SECRETS_MANAGER=http://localhost:2773`)
//! would point the sidecar's clients at its own listener too, and every miss would
//! loop. So an `AWS_ENDPOINT_URL[_SECRETS_MANAGER|_SSM]` naming this sidecar's own
//! port on a loopback address is ignored (and said so once in the log), and
//! `SECRETS_SIDECAR_UPSTREAM_ENDPOINT[_SECRETS_MANAGER|_SSM]` stays available for
//! what the sidecar itself should call (moto, a proxy, a VPC endpoint). The clients
//! are then built with the SDK's own endpoint variables switched off and these
//! endpoints set explicitly, so nothing else can reintroduce the loop.

/// The endpoint variables, most specific first, per service.
pub const SIDECAR_ENDPOINT: &str = "SECRETS_SIDECAR_UPSTREAM_ENDPOINT";
pub const SIDECAR_ENDPOINT_SECRETS_MANAGER: &str = "SECRETS_SIDECAR_UPSTREAM_ENDPOINT_SECRETS_MANAGER";
pub const SIDECAR_ENDPOINT_SSM: &str = "SECRETS_SIDECAR_UPSTREAM_ENDPOINT_SSM";
const AWS_ENDPOINT: &str = "AWS_ENDPOINT_URL";
const AWS_ENDPOINT_SECRETS_MANAGER: &str = "AWS_ENDPOINT_URL_SECRETS_MANAGER";
const AWS_ENDPOINT_SSM: &str = "AWS_ENDPOINT_URL_SSM";

/// The endpoint of each service (`None`: AWS's own), and the variables ignored
/// because they name the sidecar's own listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub secrets_manager: Option<String>,
    pub ssm: Option<String>,
    pub ignored: Vec<(&'static str, String)>,
}

/// Resolves both services' endpoints from `var` (the environment), for a sidecar
/// listening on `own_port`.
pub fn resolve(var: impl Fn(&str) -> Option<String>, own_port: u16) -> Endpoints {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let mut ignored = Vec::new();
    let mut pick = |ours: &'static str, aws_specific: &'static str| -> Option<String> {
        if let Some(url) = set(ours).or_else(|| set(SIDECAR_ENDPOINT)) {
            return Some(url);
        }
        for name in [aws_specific, AWS_ENDPOINT] {
            if let Some(url) = set(name) {
                if names_own_listener(&url, own_port) {
                    if !ignored.iter().any(|(n, _)| *n == name) {
                        ignored.push((name, url));
                    }
                    continue;
                }
                return Some(url);
            }
        }
        None
    };
    let secrets_manager = pick(SIDECAR_ENDPOINT_SECRETS_MANAGER, AWS_ENDPOINT_SECRETS_MANAGER);
    let ssm = pick(SIDECAR_ENDPOINT_SSM, AWS_ENDPOINT_SSM);
    Endpoints {
        secrets_manager,
        ssm,
        ignored,
    }
}

/// Whether `url` reaches a loopback address on `port`: this sidecar's listener.
fn names_own_listener(url: &str, port: u16) -> bool {
    let Ok(uri) = url.trim().parse::<http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    loopback && uri.port_u16().unwrap_or(default_port) == port
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve_with(vars: &[(&str, &str)], port: u16) -> Endpoints {
        let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        resolve(|name| env.get(name).cloned(), port)
    }

    #[test]
    fn the_functions_endpoint_pointing_at_the_sidecar_is_ignored() {
        let e = resolve_with(
            &[
                ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://localhost:2773"),
                ("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:2773/"),
            ],
            2773,
        );
        assert_eq!((e.secrets_manager, e.ssm), (None, None), "AWS's own endpoints");
        assert_eq!(e.ignored.len(), 2);
        for url in [
            "http://[::1]:2773",
            "http://LOCALHOST:2773",
            "http://127.0.0.2:2773",
            "http://0.0.0.0:2773",
        ] {
            let e = resolve_with(&[("AWS_ENDPOINT_URL", url)], 2773);
            assert_eq!(e.secrets_manager, None, "{url}");
            assert_eq!(e.ignored, vec![("AWS_ENDPOINT_URL", url.to_owned())], "{url}");
        }
    }

    #[test]
    fn other_endpoints_are_kept() {
        let e = resolve_with(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")], 2773);
        assert_eq!(e.secrets_manager.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(e.ssm.as_deref(), Some("http://127.0.0.1:5000"));
        assert!(e.ignored.is_empty());
        let e = resolve_with(
            &[(
                "AWS_ENDPOINT_URL_SSM",
                "https://vpce-1.ssm.us-east-1.vpce.amazonaws.com",
            )],
            2773,
        );
        assert_eq!(
            e.ssm.as_deref(),
            Some("https://vpce-1.ssm.us-east-1.vpce.amazonaws.com")
        );
        assert_eq!(e.secrets_manager, None);
        // Port 80 on loopback is only the sidecar when it listens there.
        let e = resolve_with(&[("AWS_ENDPOINT_URL", "http://localhost")], 2773);
        assert_eq!(e.secrets_manager.as_deref(), Some("http://localhost"));
        let e = resolve_with(&[("AWS_ENDPOINT_URL", "http://localhost")], 80);
        assert_eq!(e.secrets_manager, None);
    }

    #[test]
    fn the_sidecars_own_variables_win_and_a_specific_one_beats_the_general() {
        let e = resolve_with(
            &[
                ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://localhost:2773"),
                ("SECRETS_SIDECAR_UPSTREAM_ENDPOINT", "http://127.0.0.1:5000"),
                ("SECRETS_SIDECAR_UPSTREAM_ENDPOINT_SSM", "http://127.0.0.1:6000"),
            ],
            2773,
        );
        assert_eq!(e.secrets_manager.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(e.ssm.as_deref(), Some("http://127.0.0.1:6000"));
        assert!(e.ignored.is_empty(), "nothing needed ignoring: ours came first");
        // A general AWS variable under a looping specific one still applies.
        let e = resolve_with(
            &[
                ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://localhost:2773"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ],
            2773,
        );
        assert_eq!(e.secrets_manager.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(e.ignored.len(), 1);
    }

    #[test]
    fn blank_and_unparsable_values_count_as_unset_or_foreign() {
        let e = resolve_with(
            &[("AWS_ENDPOINT_URL", "  "), ("AWS_ENDPOINT_URL_SSM", "not a url")],
            2773,
        );
        assert_eq!(e.secrets_manager, None);
        assert_eq!(e.ssm.as_deref(), Some("not a url"), "passed on for the SDK to refuse");
    }
}
