//! HERE weather API v3 (`/v3/report`, product `observation`), metric units.

use serde_json::Value;

use super::{enc, unreadable, ProviderError};
use crate::coords::Coords;
use crate::secret::Secret;

pub fn url(base: &str, at: Coords, key: &Secret) -> String {
    format!(
        "{base}?products=observation&location={},{}&units=metric&apiKey={}",
        at.latitude,
        at.longitude,
        enc(key.expose())
    )
}

pub fn celsius(body: &[u8]) -> Result<f64, ProviderError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| unreadable("JSON"))?;
    v["places"][0]["observations"][0]["temperature"]
        .as_f64()
        .ok_or_else(|| unreadable("places[0].observations[0].temperature"))
}
