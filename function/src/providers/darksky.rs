//! Dark Sky-compatible forecast API (Dark Sky closed in 2023; Pirate Weather serves
//! the same API). °C are asked for with `units=si`; `flags.units` tells what came back.

use serde_json::Value;

use super::{enc, fahrenheit_to_celsius, unreadable, ProviderError};
use crate::coords::Coords;
use crate::secret::Secret;

pub fn url(base: &str, at: Coords, key: &Secret) -> String {
    format!(
        "{base}/{}/{},{}?units=si&exclude=minutely,hourly,daily,alerts",
        enc(key.expose()),
        at.latitude,
        at.longitude
    )
}

pub fn celsius(body: &[u8]) -> Result<f64, ProviderError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| unreadable("JSON"))?;
    let t = v["currently"]["temperature"]
        .as_f64()
        .ok_or_else(|| unreadable("currently.temperature"))?;
    // "us" (the API's default) is °F; "si", "ca" and "uk2" report °C.
    Ok(match v["flags"]["units"].as_str() {
        Some("us") => fahrenheit_to_celsius(t),
        _ => t,
    })
}
