//! The answers of the served operations in AWS's shapes. Cached bodies are already
//! GetSecretValue's output and GetParameter's `{"Parameter": …}`; batch answers are
//! assembled from them byte for byte, into a buffer that is zeroized when the
//! response is dropped.

use bytes::Bytes;

use super::SdkError;
use crate::backend::Value;
use crate::cache::Answer;
use crate::secret::SecretBytes;

/// Collects JSON into a buffer zeroized on drop: it holds values.
struct Assembly(Vec<u8>);

impl Assembly {
    fn with_capacity(n: usize) -> Assembly {
        Assembly(Vec::with_capacity(n))
    }

    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// A JSON array of `items`, each already JSON: `[a,b,…]`.
    fn array<I: AsRef<[u8]>>(&mut self, items: impl IntoIterator<Item = I>) {
        self.push(b"[");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(b",");
            }
            self.push(item.as_ref());
        }
        self.push(b"]");
    }

    fn done(self) -> Bytes {
        SecretBytes::new(self.0).into_shared()
    }
}

/// The `{…}` inside a cached `{"Parameter":{…}}` body.
fn parameter_object(value: &Value) -> &[u8] {
    let body = &value.body[..];
    body.strip_prefix(b"{\"Parameter\":")
        .and_then(|b| b.strip_suffix(b"}"))
        .unwrap_or(b"{}")
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// One item's answer in a batch: its value, or AWS's error for it.
pub type Item = (String, Result<Answer, SdkError>);

fn values(results: &[Item]) -> impl Iterator<Item = &Answer> {
    results.iter().filter_map(|(_, r)| r.as_ref().ok())
}

fn errors(results: &[Item]) -> impl Iterator<Item = (&str, &SdkError)> {
    results
        .iter()
        .filter_map(|(id, r)| r.as_ref().err().map(|e| (id.as_str(), e)))
}

/// BatchGetSecretValue's output: each value's GetSecretValue body, and per-id errors.
pub fn batch_secrets_body(results: &[Item]) -> Bytes {
    let size: usize = results
        .iter()
        .map(|(_, r)| r.as_ref().map_or(128, |a| a.value.body.len() + 1))
        .sum();
    let mut out = Assembly::with_capacity(size + 64);
    out.push(b"{\"SecretValues\":");
    out.array(values(results).map(|a| &a.value.body[..]));
    out.push(b",\"Errors\":");
    out.array(errors(results).map(|(id, e)| {
        format!(
            "{{\"SecretId\":{},\"ErrorCode\":{},\"Message\":{}}}",
            json_string(id),
            json_string(e.type_name),
            json_string(&e.message)
        )
    }));
    out.push(b"}");
    out.done()
}

/// GetParametersByPath's output: one page, and the token of the next when there is one.
pub fn path_page_body(page: &[Answer], next_token: Option<&str>) -> Bytes {
    let size: usize = page.iter().map(|a| a.value.body.len()).sum();
    let mut out = Assembly::with_capacity(size + 96);
    out.push(b"{\"Parameters\":");
    out.array(page.iter().map(|a| parameter_object(&a.value)));
    if let Some(token) = next_token {
        out.push(b",\"NextToken\":");
        out.push(json_string(token).as_bytes());
    }
    out.push(b"}");
    out.done()
}

/// GetParameters' output: the parameters found, and the names not found.
pub fn parameters_body(results: &[Item]) -> Bytes {
    let size: usize = results
        .iter()
        .map(|(_, r)| r.as_ref().map_or(64, |a| a.value.body.len()))
        .sum();
    let mut out = Assembly::with_capacity(size + 64);
    out.push(b"{\"Parameters\":");
    out.array(values(results).map(|a| parameter_object(&a.value)));
    out.push(b",\"InvalidParameters\":");
    out.array(errors(results).map(|(name, _)| json_string(name)));
    out.push(b"}");
    out.done()
}
