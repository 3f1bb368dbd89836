//! The bytes of a value as the server sends them: AWS's JSON shape of each answer
//! (GetSecretValue, GetParameter), rendered once into a buffer of exactly its size,
//! and the bare value found inside it as a view, so a cached value is stored once.

use bytes::Bytes;
use serde::Serialize;
use zeroize::Zeroize;

use crate::secret::SecretBytes;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SecretJson<'a> {
    #[serde(rename = "ARN")]
    pub(super) arn: &'a str,
    pub(super) name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) version_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) secret_string: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) secret_binary: Option<&'a str>,
    pub(super) version_stages: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) created_date: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ParameterJson<'a> {
    #[serde(rename = "ARN")]
    pub(super) arn: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) data_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) last_modified_date: Option<f64>,
    pub(super) name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) selector: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) source_result: Option<&'a str>,
    #[serde(rename = "Type")]
    pub(super) kind: &'a str,
    pub(super) value: &'a str,
    pub(super) version: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ParameterEnvelope<'a> {
    pub(super) parameter: ParameterJson<'a>,
}

/// Counts bytes instead of storing them.
struct Counting(usize);

impl std::io::Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serializes into a buffer of exactly the right size: one pass counts, the second
/// writes. No growth means no unwiped copies left behind in freed memory, and no
/// spare capacity kept for as long as the value is cached.
pub(super) fn render(value: &impl Serialize) -> SecretBytes {
    let mut counting = Counting(0);
    let sized = serde_json::to_writer(&mut counting, value).is_ok();
    let mut buf = Vec::with_capacity(counting.0);
    // Serializing plain structs of strings and numbers cannot fail, except on a
    // non-finite float, which the callers never pass.
    if !sized || serde_json::to_writer(&mut buf, value).is_err() {
        buf.zeroize();
        buf.extend_from_slice(b"{}");
    }
    SecretBytes::new(buf)
}

/// The bare value as a view into `body` when the body holds it verbatim (no JSON
/// escaping was needed), so a cached value is stored once. Otherwise `None`: the
/// value is unescaped from the body when a request asks for it bare (rare), rather
/// than kept twice for as long as it is cached. Either way `raw` is wiped here.
/// `field` is the JSON key whose string value it is. Quotes inside earlier values
/// are escaped, so the first `"field":"` in the body is the key itself.
pub(super) fn raw_view(body: &Bytes, field: &str, raw: String) -> Option<Bytes> {
    let needle = format!("\"{field}\":\"");
    let start = body
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .map(|i| i + needle.len());
    if let Some(start) = start {
        let end = start + raw.len();
        let verbatim = body.get(start..end) == Some(raw.as_bytes()) && body.get(end) == Some(&b'"');
        if verbatim {
            SecretBytes::from_string(raw).wipe_now();
            return Some(body.slice(start..end));
        }
    }
    SecretBytes::from_string(raw).wipe_now();
    None
}

/// Only the string value of the body, borrowed when it needs no unescaping.
#[derive(serde::Deserialize)]
pub(super) struct SecretOnly<'a> {
    #[serde(rename = "SecretString", borrow)]
    pub(super) secret_string: std::borrow::Cow<'a, str>,
}

#[derive(serde::Deserialize)]
pub(super) struct ParameterOnly<'a> {
    #[serde(rename = "Parameter", borrow)]
    pub(super) parameter: ParameterValueOnly<'a>,
}

#[derive(serde::Deserialize)]
pub(super) struct ParameterValueOnly<'a> {
    #[serde(rename = "Value", borrow)]
    pub(super) value: std::borrow::Cow<'a, str>,
}
