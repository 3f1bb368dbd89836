//! The AWS JSON 1.1 protocol of the read operations the cache serves: which
//! operation an `X-Amz-Target` names, the request fields as AWS's API reference
//! spells them, and answers and errors shaped as AWS's own, so every SDK parses them
//! into its ordinary objects and exceptions.
//!
//! Cached bodies are already GetSecretValue's output and GetParameter's
//! `{"Parameter": …}`; batch answers are assembled from them byte for byte, into a
//! buffer that is zeroized when the response is dropped.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::backend::{ErrorKind, UpstreamError, Value, MAX_PARAMETERS_PER_BATCH, MAX_SECRETS_PER_BATCH};
use crate::cache::{Answer, Key};
use crate::model::{split_ssm_selector, Selector, Source, AWSCURRENT, MAX_ID_LEN, MAX_LABEL_LEN};
use crate::secret::SecretBytes;

/// The service an `X-Amz-Target` prefix names, and the name its SigV4 scope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    SecretsManager,
    Ssm,
}

impl Service {
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager",
            Service::Ssm => "ssm",
        }
    }

    /// The `__type` of an internal failure, which differs between the two services.
    fn internal_error(self) -> &'static str {
        match self {
            Service::SecretsManager => "InternalServiceError",
            Service::Ssm => "InternalServerError",
        }
    }
}

/// The operations served from the cache; anything else passes through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    GetSecretValue,
    BatchGetSecretValue,
    GetParameter,
    GetParameters,
    GetParametersByPath,
    /// Another operation of the service, by name.
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub service: Service,
    pub operation: Operation,
}

impl Target {
    /// `secretsmanager.GetSecretValue`, `AmazonSSM.GetParameter`, …
    pub fn parse(header: &str) -> Result<Target, SdkError> {
        let unknown = || SdkError::unknown_operation(header);
        let (prefix, name) = header.split_once('.').ok_or_else(unknown)?;
        let service = match prefix {
            "secretsmanager" => Service::SecretsManager,
            "AmazonSSM" => Service::Ssm,
            _ => return Err(unknown()),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(unknown());
        }
        let operation = match (service, name) {
            (Service::SecretsManager, "GetSecretValue") => Operation::GetSecretValue,
            (Service::SecretsManager, "BatchGetSecretValue") => Operation::BatchGetSecretValue,
            (Service::Ssm, "GetParameter") => Operation::GetParameter,
            (Service::Ssm, "GetParameters") => Operation::GetParameters,
            (Service::Ssm, "GetParametersByPath") => Operation::GetParametersByPath,
            (_, other) => Operation::Other(other.to_owned()),
        };
        Ok(Target { service, operation })
    }

    /// The operation's name, as the metrics label it.
    pub fn operation_name(&self) -> &str {
        match &self.operation {
            Operation::GetSecretValue => "GetSecretValue",
            Operation::BatchGetSecretValue => "BatchGetSecretValue",
            Operation::GetParameter => "GetParameter",
            Operation::GetParameters => "GetParameters",
            Operation::GetParametersByPath => "GetParametersByPath",
            Operation::Other(name) => name,
        }
    }
}

/// An error in AWS's JSON shape: `{"__type": …, "message": …}` with the
/// `x-amzn-ErrorType` header and AWS's status.
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

    fn unknown_operation(target: &str) -> SdkError {
        SdkError {
            type_name: "UnknownOperationException",
            message: format!("'{target}' is not an operation of Secrets Manager or SSM"),
            status: 400,
        }
    }

    /// A request the allowlist refuses: AWS's own access-denied exception.
    pub fn not_allowed(id: &str) -> SdkError {
        SdkError {
            type_name: "AccessDeniedException",
            message: format!("'{id}' is not in SECRETS_SIDECAR_ALLOW"),
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

    /// An upstream failure for `service`, as AWS itself would have answered.
    pub fn upstream(service: Service, selector: &Selector, e: &UpstreamError) -> SdkError {
        let (type_name, status) = match (e.kind, service) {
            (ErrorKind::NotFound, Service::SecretsManager) => ("ResourceNotFoundException", 400),
            (ErrorKind::NotFound, Service::Ssm) if e.detail.contains("ParameterVersionLabelNotFound") => {
                ("ParameterVersionLabelNotFound", 400)
            }
            (ErrorKind::NotFound, Service::Ssm) if !matches!(selector, Selector::Current) => {
                ("ParameterVersionNotFound", 400)
            }
            (ErrorKind::NotFound, Service::Ssm) => ("ParameterNotFound", 400),
            (ErrorKind::AccessDenied | ErrorKind::NotAllowed, _) => ("AccessDeniedException", 400),
            (ErrorKind::Invalid, Service::SecretsManager) => ("InvalidRequestException", 400),
            (ErrorKind::Invalid, Service::Ssm) => ("ValidationException", 400),
            (ErrorKind::Throttled, _) => ("ThrottlingException", 400),
            (ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Aborted, s) => (s.internal_error(), 500),
        };
        SdkError {
            type_name,
            message: aws_message(&e.detail).to_owned(),
            status,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        Bytes::from(serde_json::json!({ "__type": self.type_name, "message": self.message }).to_string())
    }
}

/// AWS's message without the `Code: ` the backend puts before it (the SDK already
/// shows the code as the exception's name).
fn aws_message(detail: &str) -> &str {
    match detail.split_once(": ") {
        Some((code, message)) if !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric()) => message,
        _ => detail,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetSecretValueInput {
    secret_id: String,
    version_id: Option<String>,
    version_stage: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchGetSecretValueInput {
    secret_id_list: Option<Vec<String>>,
    filters: Option<serde_json::Value>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParameterInput {
    name: String,
    with_decryption: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParametersByPathInput {
    path: String,
    recursive: Option<bool>,
    with_decryption: Option<bool>,
    parameter_filters: Option<serde_json::Value>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParametersInput {
    names: Vec<String>,
    with_decryption: Option<bool>,
}

fn input<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, SdkError> {
    serde_json::from_slice(body).map_err(|e| SdkError::validation(format!("the request body does not parse: {e}")))
}

fn checked_id(id: &str, what: &str) -> Result<Arc<str>, SdkError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(SdkError::validation(format!(
            "{what} must be 1 to {MAX_ID_LEN} characters"
        )));
    }
    Ok(Arc::from(id))
}

/// What a served operation asks the cache for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// GetSecretValue or GetParameter: one key.
    One(Key),
    /// BatchGetSecretValue by id list: the ids as given, and their keys.
    Secrets(Vec<(String, Key)>),
    /// GetParameters: the names as given, and their keys.
    Parameters(Vec<(String, Key)>),
    /// GetParametersByPath without filters: one page of a cached listing.
    Path(PathRequest),
    /// A form the cache cannot serve (BatchGetSecretValue by filter,
    /// GetParametersByPath with ParameterFilters): passes through.
    PassThrough,
}

/// GetParametersByPath, as served from a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRequest {
    pub path: String,
    pub recursive: bool,
    pub decrypt: bool,
    /// 1 to [`MAX_PATH_RESULTS`].
    pub max_results: usize,
    /// The caller's `NextToken`: one the sidecar issued (see `paging`).
    pub next_token: Option<String>,
}

/// GetParametersByPath returns at most 10 parameters per page.
pub const MAX_PATH_RESULTS: usize = 10;
/// The longest hierarchy SSM accepts.
const MAX_PATH_LEN: usize = 2048;

/// Reads the request of a served operation.
pub fn parse_request(operation: &Operation, body: &[u8]) -> Result<Request, SdkError> {
    match operation {
        Operation::GetSecretValue => {
            let i: GetSecretValueInput = input(body)?;
            let selector = match (i.version_id, i.version_stage) {
                (Some(_), Some(_)) => {
                    return Err(SdkError::validation("specify VersionId or VersionStage, not both"));
                }
                (Some(v), None) => Selector::VersionId(v),
                (None, Some(s)) if s == AWSCURRENT => Selector::Current,
                (None, Some(s)) => Selector::VersionStage(s),
                (None, None) => Selector::Current,
            };
            let id = checked_id(&i.secret_id, "SecretId")?;
            Ok(Request::One(Key::new(Source::SecretsManager, id, selector, false)))
        }
        Operation::BatchGetSecretValue => {
            let i: BatchGetSecretValueInput = input(body)?;
            match (i.secret_id_list, i.filters) {
                (Some(_), Some(_)) => Err(SdkError::validation("specify SecretIdList or Filters, not both")),
                (None, Some(_)) => Ok(Request::PassThrough),
                (None, None) => Err(SdkError::validation("SecretIdList or Filters is required")),
                (Some(ids), None) => {
                    if i.next_token.is_some() {
                        // An id list fits one answer; a token is only ever ours to issue.
                        return Err(SdkError::validation("NextToken is not valid for this SecretIdList"));
                    }
                    if ids.is_empty() || ids.len() > MAX_SECRETS_PER_BATCH {
                        return Err(SdkError::validation(format!(
                            "SecretIdList must hold 1 to {MAX_SECRETS_PER_BATCH} ids"
                        )));
                    }
                    let mut keys = Vec::with_capacity(ids.len());
                    for id in ids {
                        let key = Key::current(Source::SecretsManager, checked_id(&id, "SecretId")?);
                        keys.push((id, key));
                    }
                    Ok(Request::Secrets(keys))
                }
            }
        }
        Operation::GetParameter => {
            let i: GetParameterInput = input(body)?;
            Ok(Request::One(parameter_key(
                &i.name,
                i.with_decryption.unwrap_or(false),
            )?))
        }
        Operation::GetParameters => {
            let i: GetParametersInput = input(body)?;
            if i.names.is_empty() || i.names.len() > MAX_PARAMETERS_PER_BATCH {
                return Err(SdkError::validation(format!(
                    "Names must hold 1 to {MAX_PARAMETERS_PER_BATCH} names"
                )));
            }
            let decrypt = i.with_decryption.unwrap_or(false);
            let mut keys = Vec::with_capacity(i.names.len());
            for name in i.names {
                let key = parameter_key(&name, decrypt)?;
                keys.push((name, key));
            }
            Ok(Request::Parameters(keys))
        }
        Operation::GetParametersByPath => {
            let i: GetParametersByPathInput = input(body)?;
            if i.parameter_filters.as_ref().is_some_and(|f| !f.is_null()) {
                return Ok(Request::PassThrough);
            }
            if !i.path.starts_with('/') || i.path.len() > MAX_PATH_LEN {
                return Err(SdkError::validation(format!(
                    "Path must begin with / and be at most {MAX_PATH_LEN} characters"
                )));
            }
            let max_results = match i.max_results {
                None => MAX_PATH_RESULTS,
                Some(n) if (1..=MAX_PATH_RESULTS as i64).contains(&n) => n as usize,
                Some(_) => {
                    return Err(SdkError::validation(format!(
                        "MaxResults must be 1 to {MAX_PATH_RESULTS}"
                    )))
                }
            };
            Ok(Request::Path(PathRequest {
                path: i.path,
                recursive: i.recursive.unwrap_or(false),
                decrypt: i.with_decryption.unwrap_or(false),
                max_results,
                next_token: i.next_token,
            }))
        }
        Operation::Other(_) => Ok(Request::PassThrough),
    }
}

/// `name`, `name:3` or `name:label` (as GetParameter reads it) as a key.
fn parameter_key(name: &str, decrypt: bool) -> Result<Key, SdkError> {
    let (bare, selector) = split_ssm_selector(name);
    let selector = match selector {
        None => Selector::Current,
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => match s.parse::<u64>() {
            Ok(n) if n >= 1 => Selector::Version(n),
            _ => return Err(SdkError::validation(format!("'{name}' has an invalid version"))),
        },
        Some(s) if !s.is_empty() && s.len() <= MAX_LABEL_LEN => Selector::Label(s.to_owned()),
        Some(_) => return Err(SdkError::validation(format!("'{name}' has an invalid label"))),
    };
    Ok(Key::new(Source::Ssm, checked_id(bare, "Name")?, selector, decrypt))
}

/// Collects JSON into a buffer zeroized on drop: it holds values.
struct Assembly(Vec<u8>);

impl Assembly {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
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

/// BatchGetSecretValue's output: each value's GetSecretValue body, and per-id errors.
pub fn batch_secrets_body(results: &[(String, Result<Answer, SdkError>)]) -> Bytes {
    let size: usize = results
        .iter()
        .map(|(_, r)| r.as_ref().map_or(128, |a| a.value.body.len() + 1))
        .sum();
    let mut out = Assembly(Vec::with_capacity(size + 64));
    out.push(b"{\"SecretValues\":[");
    let mut first = true;
    for (_, answer) in results {
        if let Ok(a) = answer {
            if !first {
                out.push(b",");
            }
            first = false;
            out.push(&a.value.body);
        }
    }
    out.push(b"],\"Errors\":[");
    let mut first = true;
    for (id, answer) in results {
        if let Err(e) = answer {
            if !first {
                out.push(b",");
            }
            first = false;
            let item = format!(
                "{{\"SecretId\":{},\"ErrorCode\":{},\"Message\":{}}}",
                json_string(id),
                json_string(e.type_name),
                json_string(&e.message)
            );
            out.push(item.as_bytes());
        }
    }
    out.push(b"]}");
    out.done()
}

/// GetParametersByPath's output: one page, and the token of the next when there is one.
pub fn path_page_body(page: &[Answer], next_token: Option<&str>) -> Bytes {
    let size: usize = page.iter().map(|a| a.value.body.len()).sum();
    let mut out = Assembly(Vec::with_capacity(size + 96));
    out.push(b"{\"Parameters\":[");
    for (i, a) in page.iter().enumerate() {
        if i > 0 {
            out.push(b",");
        }
        out.push(parameter_object(&a.value));
    }
    out.push(b"]");
    if let Some(token) = next_token {
        out.push(b",\"NextToken\":");
        out.push(json_string(token).as_bytes());
    }
    out.push(b"}");
    out.done()
}

/// GetParameters' output: the parameters found, and the names not found.
pub fn parameters_body(results: &[(String, Result<Answer, SdkError>)]) -> Bytes {
    let size: usize = results
        .iter()
        .map(|(_, r)| r.as_ref().map_or(64, |a| a.value.body.len()))
        .sum();
    let mut out = Assembly(Vec::with_capacity(size + 64));
    out.push(b"{\"Parameters\":[");
    let mut first = true;
    for (_, answer) in results {
        if let Ok(a) = answer {
            if !first {
                out.push(b",");
            }
            first = false;
            out.push(parameter_object(&a.value));
        }
    }
    out.push(b"],\"InvalidParameters\":[");
    let mut first = true;
    for (name, answer) in results {
        if answer.is_err() {
            if !first {
                out.push(b",");
            }
            first = false;
            out.push(json_string(name).as_bytes());
        }
    }
    out.push(b"]}");
    out.done()
}

#[cfg(test)]
mod tests;
