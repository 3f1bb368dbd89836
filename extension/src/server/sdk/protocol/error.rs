//! Errors in AWS's JSON shape: `{"__type": …, "message": …}` with the
//! `x-amzn-ErrorType` header and AWS's status. The lookup's refusals take theirs
//! from the table both doors share (`lookup::refusal::TABLE`).

use bytes::Bytes;

use super::Service;
use crate::backend::UpstreamError;
use crate::model::Selector;
use crate::server::lookup::refusal::{Kind, Refusal};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{type_name}: {message}")]
pub struct SdkError {
    pub type_name: &'static str,
    pub message: String,
    pub status: u16,
}

impl SdkError {
    pub fn validation(message: impl Into<String>) -> SdkError {
        SdkError {
            type_name: "ValidationException",
            message: message.into(),
            status: 400,
        }
    }

    pub(super) fn unknown_operation(target: &str) -> SdkError {
        SdkError {
            type_name: "UnknownOperationException",
            message: format!(
                "'{}' is not an operation of Secrets Manager or SSM",
                clip(target, MAX_ECHO)
            ),
            status: 400,
        }
    }

    /// A signature the sidecar cannot accept (see `sigv4`).
    pub fn unauthenticated(type_name: &'static str, message: String) -> SdkError {
        SdkError {
            type_name,
            message,
            status: 403,
        }
    }

    /// The lookup's refusal for `service`, as AWS itself would have answered.
    pub fn refused(service: Service, selector: &Selector, refusal: &Refusal) -> SdkError {
        let row = refusal.row();
        let type_name = match (row.kind, service) {
            // SSM tells a missing version or label from a missing parameter.
            (Kind::NotFound, Service::Ssm) => match refusal {
                Refusal::Upstream(e) if e.detail.contains("ParameterVersionLabelNotFound") => {
                    "ParameterVersionLabelNotFound"
                }
                _ if !matches!(selector, Selector::Current) => "ParameterVersionNotFound",
                _ => row.ssm_type,
            },
            (_, Service::SecretsManager) => row.secrets_manager_type,
            (_, Service::Ssm) => row.ssm_type,
        };
        let message = match refusal {
            Refusal::Upstream(e) => aws_message(&e.detail).to_owned(),
            other => other.message(),
        };
        SdkError {
            type_name,
            message,
            status: row.sdk_status,
        }
    }

    /// An upstream failure for `service`, as AWS itself would have answered.
    pub fn upstream(service: Service, selector: &Selector, e: &UpstreamError) -> SdkError {
        SdkError::refused(service, selector, &Refusal::Upstream(e.clone()))
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        Bytes::from(serde_json::json!({ "__type": self.type_name, "message": self.message }).to_string())
    }
}

/// The most of a caller's own text (a target, a service name, an access key id) an
/// error repeats: enough to recognise it, never a header's worth.
pub const MAX_ECHO: usize = 128;

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// AWS's message without the `Code: ` the backend puts before it (the SDK already
/// shows the code as the exception's name).
fn aws_message(detail: &str) -> &str {
    match detail.split_once(": ") {
        Some((code, message)) if !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric()) => message,
        _ => detail,
    }
}
