//! A fetched value, rendered once into the bytes the server sends.
//!
//! The AWS-shaped JSON body and the bare value are built when the value arrives and
//! then only shared ([`bytes::Bytes`] clones), so a cache hit does no formatting and
//! no copying. Both buffers are zeroized when the last clone drops.
//!
//! A value handed to a [`ValueMeter`] counts its bytes there until it is dropped, so
//! the cache can say (and a test can check) that a wipe left no value alive.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde_json::value::RawValue;
use zeroize::Zeroize;

use crate::secret::SecretBytes;

mod body;

use body::{raw_view, render, ParameterEnvelope, ParameterJson, ParameterOnly, SecretJson, SecretOnly};

/// One cached value of a secret version or a parameter version.
pub struct Value {
    /// The AWS response shape (GetSecretValue output, or `{"Parameter": …}`).
    pub body: Bytes,
    /// The bare value when it is stored apart from `body` or as a view into it;
    /// `None` when it must be unescaped from `body` on demand (see [`Value::raw`]).
    raw: Option<Bytes>,
    /// Whether `raw` is SecretBinary (served as application/octet-stream).
    pub binary: bool,
    /// The full ARN: the canonical id of the cache entry.
    pub arn: Arc<str>,
    pub name: Arc<str>,
    /// Version id (secrets) or version number (parameters), for logs.
    pub version: Arc<str>,
    /// An SSM SecureString: the decryption flag of a request changes the answer.
    pub secure: bool,
    /// An SSM parameter (its bare value is `Parameter.Value` rather than `SecretString`).
    parameter: bool,
    /// For an SSM reference to a secret (`/aws/reference/secretsmanager/…`): the
    /// secret's name and ARN, from the answer's `SourceResult` (its metadata).
    referenced: Option<(Arc<str>, Arc<str>)>,
    /// Bytes of value buffers this value owns (the body, and the raw value when it
    /// is stored apart), and the meter they are counted on, once metered.
    bytes: usize,
    meter: Option<ValueMeter>,
}

/// Counts the bytes of the values alive that were handed to it with [`Value::meter`].
#[derive(Clone, Debug, Default)]
pub struct ValueMeter(Arc<AtomicUsize>);

impl ValueMeter {
    pub fn live_bytes(&self) -> usize {
        self.0.load(Relaxed)
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        if let Some(meter) = &self.meter {
            meter.0.fetch_sub(self.bytes, Relaxed);
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("arn", &self.arn)
            .field("version", &self.version)
            .field("binary", &self.binary)
            .field("secure", &self.secure)
            .field("raw", &"<redacted>")
            .finish()
    }
}

/// What Secrets Manager returned for one secret version.
pub struct SecretFields {
    pub arn: String,
    pub name: String,
    pub version_id: Option<String>,
    pub secret_string: Option<String>,
    pub secret_binary: Option<Vec<u8>>,
    pub version_stages: Vec<String>,
    /// Epoch seconds, as the AWS JSON protocol writes dates.
    pub created_date: Option<f64>,
}

/// What SSM returned for one parameter version.
pub struct ParameterFields {
    pub arn: String,
    pub name: String,
    pub kind: String,
    pub value: String,
    pub version: i64,
    pub data_type: Option<String>,
    pub last_modified_date: Option<f64>,
    pub selector: Option<String>,
    pub source_result: Option<String>,
}

impl Value {
    /// Builds a value from a GetSecretValue / BatchGetSecretValue result, wiping
    /// the SDK's copies of the secret once they are rendered.
    pub fn from_secret(mut f: SecretFields) -> Value {
        let binary = f.secret_string.is_none() && f.secret_binary.is_some();
        let mut b64 = f
            .secret_binary
            .as_ref()
            .filter(|_| binary)
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        let body = render(&SecretJson {
            arn: &f.arn,
            name: &f.name,
            version_id: f.version_id.as_deref(),
            secret_string: f.secret_string.as_deref(),
            secret_binary: b64.as_deref(),
            version_stages: &f.version_stages,
            created_date: f.created_date.filter(|d| d.is_finite()),
        });
        if let Some(b) = b64.as_mut() {
            b.zeroize();
        }
        let body = body.into_shared();
        let raw = match (f.secret_string.take(), f.secret_binary.take()) {
            (Some(s), bin) => {
                if let Some(mut b) = bin {
                    b.zeroize();
                }
                raw_view(&body, "SecretString", s)
            }
            (None, Some(b)) => Some(SecretBytes::new(b).into_shared()),
            (None, None) => Some(Bytes::new()),
        };
        let bytes = body.len() + if binary { raw.as_ref().map_or(0, Bytes::len) } else { 0 };
        Value {
            body,
            raw,
            binary,
            bytes,
            meter: None,
            version: Arc::from(f.version_id.as_deref().unwrap_or("")),
            arn: Arc::from(f.arn),
            name: Arc::from(f.name),
            secure: false,
            parameter: false,
            referenced: None,
        }
    }

    /// Builds a value from a GetParameter / GetParameters / GetParametersByPath result.
    pub fn from_parameter(f: ParameterFields) -> Value {
        let body = render(&ParameterEnvelope {
            parameter: ParameterJson {
                arn: &f.arn,
                data_type: f.data_type.as_deref(),
                last_modified_date: f.last_modified_date.filter(|d| d.is_finite()),
                name: &f.name,
                selector: f.selector.as_deref(),
                source_result: f.source_result.as_deref(),
                kind: &f.kind,
                value: &f.value,
                version: f.version,
            },
        });
        let referenced = f.source_result.as_deref().and_then(referenced_secret);
        if let Some(mut s) = f.source_result {
            s.zeroize();
        }
        let body = body.into_shared();
        let raw = raw_view(&body, "Value", f.value);
        Value {
            bytes: body.len(),
            meter: None,
            body,
            raw,
            binary: false,
            version: Arc::from(f.version.to_string()),
            secure: f.kind == "SecureString",
            parameter: true,
            referenced,
            arn: Arc::from(f.arn),
            name: Arc::from(f.name),
        }
    }

    /// The secret an SSM reference resolved to: (name, ARN).
    pub fn referenced_secret(&self) -> Option<(&str, &str)> {
        self.referenced.as_ref().map(|(n, a)| (&**n, &**a))
    }

    /// Counts this value's bytes on `meter` until it is dropped (once: a value
    /// already metered keeps its first meter).
    pub fn meter(&mut self, meter: &ValueMeter) {
        if self.meter.is_none() {
            meter.0.fetch_add(self.bytes, Relaxed);
            self.meter = Some(meter.clone());
        }
    }

    /// The bytes this value owns (what it counts on a meter).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What keeping this value costs the heap: its buffers, its identity strings,
    /// the struct itself and the allocations' headers (what the cache's byte budget
    /// counts; an estimate, never less than the buffers).
    pub fn footprint(&self) -> usize {
        let referenced = self.referenced.as_ref().map_or(0, |(n, a)| heap_str(n) + heap_str(a));
        // Value itself behind an Arc (two counters), and the `Bytes` shared headers.
        let own = std::mem::size_of::<Value>() + 16 + ALLOCATION_OVERHEAD + 2 * 32;
        own + self.bytes + heap_str(&self.arn) + heap_str(&self.name) + heap_str(&self.version) + referenced
    }
}

/// Per heap allocation: the allocator's header and rounding (glibc: 8 to 16 bytes).
const ALLOCATION_OVERHEAD: usize = 16;

/// What an `Arc<str>` of `s` holds on the heap: two counters, the text, overhead.
fn heap_str(s: &str) -> usize {
    16 + s.len() + ALLOCATION_OVERHEAD
}

impl Value {
    /// The bare value: SecretString, SecretBinary bytes, or the parameter's Value.
    pub fn raw(&self) -> Bytes {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let decoded = if self.parameter {
            serde_json::from_slice::<ParameterOnly>(&self.body).map(|p| p.parameter.value)
        } else {
            serde_json::from_slice::<SecretOnly>(&self.body).map(|s| s.secret_string)
        };
        match decoded {
            Ok(text) => SecretBytes::from_string(text.into_owned()).into_shared(),
            // The body was rendered by us from these very fields; it always parses.
            Err(_) => Bytes::new(),
        }
    }

    /// One top-level field of a JSON value, as text (strings unquoted, anything else
    /// as its JSON). `Ok(None)` when the field is absent, `Err` when the value is not
    /// a JSON object.
    pub fn json_field(&self, key: &str) -> Result<Option<Bytes>, NotJsonObject> {
        if self.binary {
            return Err(NotJsonObject);
        }
        // Borrowing the fields as raw JSON avoids copying any value but the one asked for.
        let raw = self.raw();
        let map: BTreeMap<String, &RawValue> = serde_json::from_slice(&raw).map_err(|_| NotJsonObject)?;
        let Some(field) = map.get(key) else {
            return Ok(None);
        };
        let text = field.get();
        if text.starts_with('"') {
            let s: String = serde_json::from_str(text).map_err(|_| NotJsonObject)?;
            Ok(Some(SecretBytes::from_string(s).into_shared()))
        } else {
            Ok(Some(SecretBytes::new(text.as_bytes().to_vec()).into_shared()))
        }
    }
}

/// The secret named by a reference's `SourceResult` (DescribeSecret's output: metadata,
/// no value), when it names one.
fn referenced_secret(source_result: &str) -> Option<(Arc<str>, Arc<str>)> {
    #[derive(serde::Deserialize)]
    struct Described {
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "ARN")]
        arn: String,
    }
    let d: Described = serde_json::from_str(source_result).ok()?;
    Some((Arc::from(d.name), Arc::from(d.arn)))
}

/// The value asked for with `jsonKey` is not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the value is not a JSON object")]
pub struct NotJsonObject;

#[cfg(test)]
mod tests;
