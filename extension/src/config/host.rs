//! What the place the sidecar runs in says about itself: whether it is Lambda
//! (`AWS_LAMBDA_RUNTIME_API`), which platform (`AWS_LAMBDA_INITIALIZATION_TYPE`),
//! and the token callers must present (`crate::token` says which variable).
//!
//! Read apart from [`Config`](super::Config), and never failing as a whole: a
//! function whose configuration is invalid still needs the runtime API's address
//! and its platform to report that through `init/error`.

use super::reader::{Env, ProcessEnv};
use super::vars;
use super::Platform;
use crate::token::{self, Token, TokenError};

/// The host, read once at start-up and handed down typed.
#[derive(Debug)]
pub struct Host {
    /// [`Platform::Standalone`] when `AWS_LAMBDA_RUNTIME_API` is unset.
    pub platform: Platform,
    /// `host:port` of Lambda's runtime API (trimmed); `None` standalone.
    pub runtime_api: Option<String>,
    /// An `AWS_LAMBDA_INITIALIZATION_TYPE` this build does not know, cut to 64
    /// characters; such a function runs as on-demand (the caller logs it).
    pub unknown_platform: Option<String>,
    /// The token every request must carry, or why none could be set up.
    pub token: Result<Token, TokenError>,
}

impl Host {
    pub fn from_process_env() -> Host {
        Host::from_env(&ProcessEnv)
    }

    pub fn from_env(env: &impl Env) -> Host {
        // A value that is not UTF-8 cannot be an address or a platform name: unset.
        let set = |name: &str| {
            env.get(name)
                .ok()
                .flatten()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let runtime_api = set(vars::LAMBDA_RUNTIME_API);
        let (platform, unknown_platform) = match runtime_api {
            None => (Platform::Standalone, None),
            Some(_) => match Platform::from_initialization_type(set(vars::LAMBDA_INITIALIZATION_TYPE).as_deref()) {
                Ok(p) => (p, None),
                Err(unknown) => (Platform::OnDemand, Some(unknown)),
            },
        };
        let token = if platform.in_lambda() {
            token::for_lambda(env)
        } else {
            token::for_standalone(env)
        };
        Host {
            platform,
            runtime_api,
            unknown_platform,
            token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn host(pairs: &[(&str, &str)]) -> Host {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Host::from_env(&env)
    }

    #[test]
    fn the_runtime_api_decides_lambda_and_the_initialization_type_its_platform() {
        let h = host(&[(vars::LAMBDA_INITIALIZATION_TYPE, "snap-start")]);
        assert_eq!((h.platform, h.runtime_api), (Platform::Standalone, None));

        let h = host(&[(vars::LAMBDA_RUNTIME_API, "  "), ("SECRETS_SIDECAR_TOKEN", "t")]);
        assert_eq!(h.platform, Platform::Standalone, "a blank address is no Lambda");
        assert!(h.token.is_ok());

        let h = host(&[
            (vars::LAMBDA_RUNTIME_API, " 127.0.0.1:9001 "),
            (vars::LAMBDA_INITIALIZATION_TYPE, "snap-start"),
        ]);
        assert_eq!(h.platform, Platform::SnapStart);
        assert_eq!(h.runtime_api.as_deref(), Some("127.0.0.1:9001"));

        let h = host(&[
            (vars::LAMBDA_RUNTIME_API, "127.0.0.1:9001"),
            (vars::LAMBDA_INITIALIZATION_TYPE, "warp-drive"),
        ]);
        assert_eq!(h.platform, Platform::OnDemand);
        assert_eq!(h.unknown_platform.as_deref(), Some("warp-drive"));
    }

    #[test]
    fn the_token_follows_the_platform() {
        // In Lambda only the session token counts; standalone our own variable comes first.
        let pairs = [("SECRETS_SIDECAR_TOKEN", "mine"), ("AWS_SESSION_TOKEN", "sess")];
        let standalone = host(&pairs);
        assert!(standalone.token.expect("token").matches(b"mine"));
        let mut lambda = pairs.to_vec();
        lambda.push((vars::LAMBDA_RUNTIME_API, "127.0.0.1:9001"));
        assert!(host(&lambda).token.expect("token").matches(b"sess"));
        assert!(host(&[(vars::LAMBDA_RUNTIME_API, "127.0.0.1:9001")]).token.is_err());
    }
}
