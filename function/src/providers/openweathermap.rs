//! OpenWeatherMap current weather. °C are asked for with `units=metric` (the default
//! would be Kelvin); the answer does not repeat the unit, so the request fixes it.

use serde_json::Value;

use super::{enc, unreadable, ProviderError};
use crate::coords::Coords;
use crate::secret::Secret;

pub fn url(base: &str, at: Coords, key: &Secret) -> String {
    format!(
        "{base}?lat={}&lon={}&appid={}&units=metric",
        at.latitude,
        at.longitude,
        enc(key.expose())
    )
}

pub fn celsius(body: &[u8]) -> Result<f64, ProviderError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| unreadable("JSON"))?;
    v["main"]["temp"].as_f64().ok_or_else(|| unreadable("main.temp"))
}
