//! The three weather providers: which key each needs, the URL asked (with the units
//! requested explicitly), and how the answer is turned into °C.
//!
//! Queries sent (keys percent-encoded):
//! - Dark Sky-compatible: `{DARKSKY_URL}/{key}/{lat},{lon}?units=si&exclude=minutely,hourly,daily,alerts`
//!   (°C asked for; `flags.units` checked and °F converted if a provider ignores it);
//! - OpenWeatherMap: `{OPENWEATHERMAP_URL}?lat=&lon=&appid=&units=metric` (°C asked for);
//! - HERE v3: `{HERE_URL}?products=observation&location=LAT,LON&units=metric&apiKey=`.

mod darksky;
mod here;
mod openweathermap;

use crate::config::Settings;
use crate::coords::Coords;
use crate::secret::Secret;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    DarkSky,
    OpenWeatherMap,
    Here,
}

/// Why a provider gave no temperature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// 401 or 403: the key is wrong (or was rotated).
    #[error("the key was refused")]
    Unauthorized,
    #[error("answered {0}")]
    Status(u16),
    #[error("{0}")]
    Unreadable(String),
}

impl Provider {
    pub fn from_path(s: &str) -> Option<Provider> {
        match s {
            "darksky" => Some(Provider::DarkSky),
            "openweathermap" => Some(Provider::OpenWeatherMap),
            "here" => Some(Provider::Here),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::DarkSky => "darksky",
            Provider::OpenWeatherMap => "openweathermap",
            Provider::Here => "here",
        }
    }

    /// The URL to call; it holds the key, so it is a [`Secret`] too.
    pub fn url(self, settings: &Settings, at: Coords, key: &Secret) -> Secret {
        Secret::new(match self {
            Provider::DarkSky => darksky::url(&settings.darksky_url, at, key),
            Provider::OpenWeatherMap => openweathermap::url(&settings.openweathermap_url, at, key),
            Provider::Here => here::url(&settings.here_url, at, key),
        })
    }

    /// The temperature in °C from a provider's answer.
    pub fn celsius(self, status: u16, body: &[u8]) -> Result<f64, ProviderError> {
        match status {
            200 => {}
            401 | 403 => return Err(ProviderError::Unauthorized),
            s => return Err(ProviderError::Status(s)),
        }
        let t = match self {
            Provider::DarkSky => darksky::celsius(body),
            Provider::OpenWeatherMap => openweathermap::celsius(body),
            Provider::Here => here::celsius(body),
        }?;
        Ok((t * 100.0).round() / 100.0)
    }
}

pub(crate) fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) fn unreadable(what: &str) -> ProviderError {
    ProviderError::Unreadable(format!("no {what} in the answer"))
}

pub fn fahrenheit_to_celsius(f: f64) -> f64 {
    (f - 32.0) * 5.0 / 9.0
}

pub fn kelvin_to_celsius(k: f64) -> f64 {
    k - 273.15
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::from_env(|k| (k == "AWS_SESSION_TOKEN").then(|| "t".to_owned())).expect("settings")
    }

    #[test]
    fn conversions() {
        assert_eq!(fahrenheit_to_celsius(212.0), 100.0);
        assert_eq!(fahrenheit_to_celsius(32.0), 0.0);
        assert!((kelvin_to_celsius(300.0) - 26.85).abs() < 1e-9);
    }

    #[test]
    fn urls_ask_for_metric_units_and_encode_keys() {
        let at = Coords {
            latitude: 52.5,
            longitude: -13.25,
        };
        let key = Secret::new("k/y+".into());
        let s = settings();
        let d = Provider::DarkSky.url(&s, at, &key);
        assert_eq!(
            d.expose(),
            "https://api.pirateweather.net/forecast/k%2Fy%2B/52.5,-13.25?units=si&exclude=minutely,hourly,daily,alerts"
        );
        let o = Provider::OpenWeatherMap.url(&s, at, &key);
        assert_eq!(
            o.expose(),
            "https://api.openweathermap.org/data/2.5/weather?lat=52.5&lon=-13.25&appid=k%2Fy%2B&units=metric"
        );
        let h = Provider::Here.url(&s, at, &key);
        assert_eq!(
            h.expose(),
            "https://weather.hereapi.com/v3/report?products=observation&location=52.5,-13.25&units=metric&apiKey=k%2Fy%2B"
        );
    }

    #[test]
    fn answers_are_normalised_to_celsius() {
        let si = br#"{"currently":{"temperature":21.5},"flags":{"units":"si"}}"#;
        assert_eq!(Provider::DarkSky.celsius(200, si), Ok(21.5));
        let us = br#"{"currently":{"temperature":50.0},"flags":{"units":"us"}}"#;
        assert_eq!(Provider::DarkSky.celsius(200, us), Ok(10.0));
        let owm = br#"{"main":{"temp":12.34}}"#;
        assert_eq!(Provider::OpenWeatherMap.celsius(200, owm), Ok(12.34));
        let here = br#"{"places":[{"observations":[{"temperature":-3.0}]}]}"#;
        assert_eq!(Provider::Here.celsius(200, here), Ok(-3.0));
    }

    #[test]
    fn refusals_and_garbage() {
        assert_eq!(Provider::Here.celsius(401, b"{}"), Err(ProviderError::Unauthorized));
        assert_eq!(Provider::DarkSky.celsius(403, b"{}"), Err(ProviderError::Unauthorized));
        assert_eq!(
            Provider::OpenWeatherMap.celsius(500, b"{}"),
            Err(ProviderError::Status(500))
        );
        assert!(matches!(
            Provider::OpenWeatherMap.celsius(200, b"not json"),
            Err(ProviderError::Unreadable(_))
        ));
        assert!(matches!(
            Provider::Here.celsius(200, br#"{"places":[]}"#),
            Err(ProviderError::Unreadable(_))
        ));
        assert!(matches!(
            Provider::DarkSky.celsius(200, br#"{"currently":{"temperature":"warm"}}"#),
            Err(ProviderError::Unreadable(_))
        ));
    }
}
