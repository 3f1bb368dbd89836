//! The function's settings, from its environment. Provider URLs default to the real
//! providers; tests and the demo point them at local fakes.

use std::time::Duration;

use crate::secret::Secret;

pub const DEFAULT_DARKSKY_URL: &str = "https://api.pirateweather.net/forecast";
pub const DEFAULT_OPENWEATHERMAP_URL: &str = "https://api.openweathermap.org/data/2.5/weather";
pub const DEFAULT_HERE_URL: &str = "https://weather.hereapi.com/v3/report";
pub const DEFAULT_DARKSKY_KEY_PARAMETER: &str = "/weather/darksky-api-key";
pub const DEFAULT_OPENWEATHERMAP_SECRET: &str = "weather/openweathermap";
pub const DEFAULT_OPENWEATHERMAP_SECRET_FIELD: &str = "appid";
pub const DEFAULT_HERE_PARAMETER_PATH: &str = "/weather/here/";
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_SIDECAR_PORT: u16 = 2773;
pub const SIDECAR_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct Settings {
    pub darksky_url: String,
    pub openweathermap_url: String,
    pub here_url: String,
    /// SSM SecureString holding the Dark Sky-compatible key.
    pub darksky_key_parameter: String,
    /// Secrets Manager JSON secret, and the field holding the OpenWeatherMap appid.
    pub openweathermap_secret: String,
    pub openweathermap_secret_field: String,
    /// SSM path (a team namespace) holding `api-key` for HERE.
    pub here_parameter_path: String,
    pub provider_timeout: Duration,
    pub sidecar_port: u16,
    /// `AWS_SESSION_TOKEN`, else `AWS_CONTAINER_AUTHORIZATION_TOKEN` (SnapStart): what
    /// the sidecar expects in its token header.
    pub sidecar_token: Secret,
}

impl Settings {
    /// Reads the settings; `get` returns a variable's value (empty counts as unset).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let var = |name: &str, default: &str| {
            get(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let timeout_ms = match get("PROVIDER_TIMEOUT_MILLIS").filter(|v| !v.is_empty()) {
            None => DEFAULT_PROVIDER_TIMEOUT.as_millis() as u64,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=60_000).contains(n))
                .ok_or("PROVIDER_TIMEOUT_MILLIS: expected 1 to 60000")?,
        };
        let sidecar_port = match get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT").filter(|v| !v.is_empty()) {
            None => DEFAULT_SIDECAR_PORT,
            Some(v) => v
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT: expected 1 to 65535")?,
        };
        // The session token; under SnapStart (no session token) the container
        // credentials token, as the sidecar itself expects.
        let token = ["AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"]
            .into_iter()
            .find_map(|name| get(name).filter(|v| !v.trim().is_empty()))
            .ok_or("neither AWS_SESSION_TOKEN nor AWS_CONTAINER_AUTHORIZATION_TOKEN is set (Lambda sets one)")?;
        let mut here_path = var("HERE_PARAMETER_PATH", DEFAULT_HERE_PARAMETER_PATH);
        if !here_path.ends_with('/') {
            here_path.push('/');
        }
        Ok(Settings {
            darksky_url: var("DARKSKY_URL", DEFAULT_DARKSKY_URL).trim_end_matches('/').to_owned(),
            openweathermap_url: var("OPENWEATHERMAP_URL", DEFAULT_OPENWEATHERMAP_URL),
            here_url: var("HERE_URL", DEFAULT_HERE_URL),
            darksky_key_parameter: var("DARKSKY_KEY_PARAMETER", DEFAULT_DARKSKY_KEY_PARAMETER),
            openweathermap_secret: var("OPENWEATHERMAP_SECRET", DEFAULT_OPENWEATHERMAP_SECRET),
            openweathermap_secret_field: var("OPENWEATHERMAP_SECRET_FIELD", DEFAULT_OPENWEATHERMAP_SECRET_FIELD),
            here_parameter_path: here_path,
            provider_timeout: Duration::from_millis(timeout_ms),
            sidecar_port,
            sidecar_token: Secret::new(token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_real_providers() {
        let s = settings(&[("AWS_SESSION_TOKEN", "t")]).expect("valid");
        assert_eq!(s.darksky_url, DEFAULT_DARKSKY_URL);
        assert_eq!(s.openweathermap_url, DEFAULT_OPENWEATHERMAP_URL);
        assert_eq!(s.here_url, DEFAULT_HERE_URL);
        assert_eq!(s.sidecar_port, 2773);
        assert_eq!(s.here_parameter_path, "/weather/here/");
    }

    #[test]
    fn bad_values_are_named() {
        assert!(settings(&[]).expect_err("no token").contains("AWS_SESSION_TOKEN"));
        let snap = settings(&[("AWS_SESSION_TOKEN", ""), ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "c")]).expect("valid");
        assert_eq!(
            snap.sidecar_token.expose(),
            "c",
            "SnapStart: the container credentials token"
        );
        let e = settings(&[("AWS_SESSION_TOKEN", "t"), ("PROVIDER_TIMEOUT_MILLIS", "0")]).expect_err("bad");
        assert!(e.contains("PROVIDER_TIMEOUT_MILLIS"));
        let s = settings(&[("AWS_SESSION_TOKEN", "t"), ("HERE_PARAMETER_PATH", "/team/here")]).expect("valid");
        assert_eq!(s.here_parameter_path, "/team/here/");
    }
}
