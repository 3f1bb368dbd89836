//! The weather API function: `GET /{provider}/{latitude}/{longitude}` answers the
//! current temperature from Dark Sky-compatible APIs (Pirate Weather), OpenWeatherMap
//! or HERE, in °C. Each provider's key is read from the secrets-sidecar over
//! `http://127.0.0.1:2773` (no AWS SDK here): an SSM SecureString, a field of a JSON
//! secret, and a parameter under an SSM path.
//!
//! A request flows `handler` (route, validate) → `sidecar` (the key) →
//! `providers` (URL, call through `outbound`, parse, normalise units) → `handler`
//! (answer, or the `error` mapping). A provider refusing the key triggers one
//! `refreshNow` and one retry, so a rotated key works without waiting for the TTL.

pub mod config;
pub mod coords;
pub mod error;
pub mod handler;
pub mod logging;
pub mod outbound;
pub mod providers;
pub mod secret;
pub mod sidecar;
