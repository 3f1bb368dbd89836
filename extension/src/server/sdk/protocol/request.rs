//! The requests of the served operations, field by field as AWS's API reference
//! spells them, read into the keys the lookup takes. Strict: an id out of bounds,
//! conflicting selectors or a batch too large is AWS's ValidationException, never a
//! silently different request.

use std::sync::Arc;

use serde::Deserialize;

use super::error::clip;
use super::{Operation, SdkError};
use crate::backend::{MAX_PARAMETERS_PER_BATCH, MAX_SECRETS_PER_BATCH};
use crate::cache::Key;
use crate::model::{split_ssm_selector, Selector, Source, AWSCURRENT, MAX_ID_LEN, MAX_LABEL_LEN};

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
    serde_json::from_slice(body).map_err(|e| SdkError::validation(unparsed(&e)))
}

/// Why a body does not parse, without any of its text: serde's own message for a
/// field of the wrong type quotes the value given (`invalid type: string "…"`), and
/// an error body repeats no more of a request than the id it names.
fn unparsed(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Data => {
            let text = e.to_string();
            // "missing field `SecretId`" and "duplicate field `Name`" name our fields only.
            match ["missing field `", "duplicate field `"]
                .iter()
                .find(|p| text.starts_with(**p))
            {
                Some(_) => format!("the request body does not parse: {text}"),
                None => format!("the request body does not parse: a field has the wrong type or value at {at}"),
            }
        }
        Category::Syntax | Category::Eof | Category::Io => {
            format!("the request body does not parse: it is not JSON (at {at})")
        }
    }
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
                    // A repeated id is answered once, as moto does (and AWS's own set semantics suggest).
                    for id in dedup(ids) {
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
            for name in dedup(i.names) {
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

/// `items` without repeats, in first-seen order.
fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    items.into_iter().filter(|i| seen.insert(i.clone())).collect()
}

/// `name`, `name:3` or `name:label` (as GetParameter reads it) as a key.
fn parameter_key(name: &str, decrypt: bool) -> Result<Key, SdkError> {
    let (bare, selector) = split_ssm_selector(name);
    let selector = match selector {
        None => Selector::Current,
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => match s.parse::<u64>() {
            Ok(n) if n >= 1 => Selector::Version(n),
            _ => {
                return Err(SdkError::validation(format!(
                    "'{}' has an invalid version",
                    clip(name, MAX_ID_LEN)
                )))
            }
        },
        Some(s) if !s.is_empty() && s.len() <= MAX_LABEL_LEN => Selector::Label(s.to_owned()),
        Some(_) => {
            return Err(SdkError::validation(format!(
                "'{}' has an invalid label",
                clip(name, MAX_ID_LEN)
            )))
        }
    };
    Ok(Key::new(Source::Ssm, checked_id(bare, "Name")?, selector, decrypt))
}
