//! Every other operation of the two services: forwarded to the real endpoint,
//! re-signed with the credentials the caller proved it holds, its answer returned
//! as it came, so pointing an SDK at the sidecar never breaks a function.
//!
//! Two duties on the way:
//! - **Writes invalidate.** A successful write to a secret or parameter (the ids in
//!   [`writes`]) drops what the cache holds for it, and the failures remembered for
//!   its source, so the next read through the sidecar sees the new value.
//! - **The allowlist holds.** With `SECRETS_SIDECAR_ALLOW` set, the answers of the
//!   forwarded operations that carry values (BatchGetSecretValue by filter,
//!   GetParametersByPath with filters, GetParameterHistory) are checked item by
//!   item on the identity AWS returned, and items outside the list are removed; an
//!   answer that cannot be checked that way is refused whole. Operations not known
//!   to be free of values are refused rather than forwarded: every Secrets Manager
//!   operation outside [`SECRETS_MANAGER_VALUE_FREE`], and every SSM operation about
//!   parameters outside [`SSM_VALUE_FREE`].
//! - **Tenants stay apart.** With `{tenant}` templates (`crate::tenant`) nothing is
//!   forwarded at all.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use tracing::{debug, warn};

use super::protocol::{Operation, SdkError, Service, Target};
use crate::allow::AllowList;
use crate::backend::passthrough::{Forward, Passthrough};
use crate::backend::ErrorKind;
use crate::model::{Scope, Source};
use crate::secret::SecretBytes;
use crate::server::answer::{no_store, Body};
use crate::server::app::App;

/// Secrets Manager operations whose answers carry no secret value: forwarded
/// unchanged even under an allowlist.
pub const SECRETS_MANAGER_VALUE_FREE: &[&str] = &[
    "CancelRotateSecret",
    "CreateSecret",
    "DeleteResourcePolicy",
    "DeleteSecret",
    "DescribeSecret",
    "GetRandomPassword",
    "GetResourcePolicy",
    "ListSecretVersionIds",
    "ListSecrets",
    "PutResourcePolicy",
    "PutSecretValue",
    "RemoveRegionsFromReplication",
    "ReplicateSecretToRegions",
    "RestoreSecret",
    "RotateSecret",
    "StopReplicationToReplica",
    "TagResource",
    "UntagResource",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "ValidateResourcePolicy",
];

/// SSM operations about parameters whose answers carry no value.
pub const SSM_VALUE_FREE: &[&str] = &[
    "AddTagsToResource",
    "DeleteParameter",
    "DeleteParameters",
    "DescribeParameters",
    "LabelParameterVersion",
    "ListTagsForResource",
    "PutParameter",
    "RemoveTagsFromResource",
    "UnlabelParameterVersion",
];

/// Longest a write's answer waits for fetches in flight to settle before it is
/// relayed (see `Cache::invalidate_after_write`).
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One operation to forward, after its signature was verified.
pub struct Call<'a> {
    pub target: &'a Target,
    pub region: &'a str,
    pub scope: &'a Scope,
    pub body: &'a [u8],
    pub credentials: &'a aws_credential_types::Credentials,
}

/// How the allowlist treats an operation's answer.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// No values in it: forwarded unchanged.
    None,
    /// Values in a list of items, each checked (`key` names the list).
    Items { list: &'static str, source: Source },
    /// Values that cannot be checked item by item: refused, not forwarded.
    Refuse,
}

fn check_for(target: &Target) -> Check {
    let name = match &target.operation {
        Operation::Other(name) => name.as_str(),
        // Served operations only get here in their forwarded form.
        Operation::BatchGetSecretValue => "BatchGetSecretValue",
        Operation::GetParametersByPath => "GetParametersByPath",
        _ => return Check::Refuse,
    };
    match (target.service, name) {
        (Service::SecretsManager, "BatchGetSecretValue") => Check::Items {
            list: "SecretValues",
            source: Source::SecretsManager,
        },
        (Service::Ssm, "GetParametersByPath" | "GetParameterHistory") => Check::Items {
            list: "Parameters",
            source: Source::Ssm,
        },
        (Service::SecretsManager, n) if SECRETS_MANAGER_VALUE_FREE.contains(&n) => Check::None,
        (Service::SecretsManager, _) => Check::Refuse,
        (Service::Ssm, n) if SSM_VALUE_FREE.contains(&n) => Check::None,
        (Service::Ssm, n) if n.contains("Parameter") => Check::Refuse,
        (Service::Ssm, _) => Check::None,
    }
}

/// The ids a write changes, from its request: `(source, id)`.
fn writes(target: &Target, body: &[u8]) -> Vec<(Source, String)> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Ids {
        secret_id: Option<String>,
        name: Option<String>,
        names: Option<Vec<String>>,
    }
    let Operation::Other(op) = &target.operation else {
        return Vec::new();
    };
    let is_write = match target.service {
        Service::SecretsManager => matches!(
            op.as_str(),
            "PutSecretValue"
                | "UpdateSecret"
                | "UpdateSecretVersionStage"
                | "RotateSecret"
                | "DeleteSecret"
                | "RestoreSecret"
                | "CreateSecret"
                | "CancelRotateSecret"
        ),
        Service::Ssm => matches!(
            op.as_str(),
            "PutParameter"
                | "DeleteParameter"
                | "DeleteParameters"
                | "LabelParameterVersion"
                | "UnlabelParameterVersion"
        ),
    };
    if !is_write {
        return Vec::new();
    }
    let ids: Ids = serde_json::from_slice(body).unwrap_or_default();
    match target.service {
        // CreateSecret names its secret `Name`; the others `SecretId`.
        Service::SecretsManager => ids
            .secret_id
            .or(ids.name)
            .map(|id| vec![(Source::SecretsManager, id)])
            .unwrap_or_default(),
        Service::Ssm => ids
            .name
            .into_iter()
            .chain(ids.names.unwrap_or_default())
            .map(|n| (Source::Ssm, n))
            .collect(),
    }
}

/// Forwards `call` and relays the answer (checked by the allowlist when set).
pub async fn answer(app: &App, aws: &dyn Passthrough, call: Call<'_>) -> Result<Response<Body>, SdkError> {
    let target = call.target;
    let check = match &app.allow {
        Some(_) => check_for(target),
        None => Check::None,
    };
    let target_text = format!(
        "{}.{}",
        match target.service {
            Service::SecretsManager => "secretsmanager",
            Service::Ssm => "AmazonSSM",
        },
        target.operation_name()
    );
    // Under `{tenant}` templates nothing is forwarded: a forwarded call names its
    // ids in a body of its own shape, which the tenancy does not read, so it could
    // reach another tenant's secret. Reads are served through the lookup.
    if app.tenancy().is_some() {
        warn!(target = %target_text, "refused: not forwarded under {{tenant}} templates");
        return Err(SdkError {
            type_name: "AccessDeniedException",
            message: format!(
                "{target_text} is not forwarded while {{tenant}} templates are configured: only reads served by the \
                 sidecar keep tenants apart"
            ),
            status: 400,
        });
    }
    if check == Check::Refuse {
        warn!(target = %target_text, "refused: its answer could carry values SECRETS_SIDECAR_ALLOW cannot check");
        return Err(SdkError {
            type_name: "AccessDeniedException",
            message: format!(
                "{target_text} is not forwarded while SECRETS_SIDECAR_ALLOW is set: its answer could carry values \
                 the allowlist cannot check"
            ),
            status: 400,
        });
    }
    let forwarded = aws
        .forward(Forward {
            service: target.service.signing_name(),
            region: call.region,
            target: &target_text,
            body: call.body,
            credentials: call.credentials,
        })
        .await
        .map_err(|e| unreachable_upstream(target.service, &e))?;
    debug!(target = %target_text, status = forwarded.status, "forwarded");
    let ok = (200..300).contains(&forwarded.status);
    if ok {
        for (source, id) in writes(target, call.body) {
            app.cache
                .invalidate_after_write(call.scope, source, &id, IN_FLIGHT_WAIT)
                .await;
        }
    }
    let body = match (&check, &app.allow) {
        (Check::Items { list, source }, Some(allow)) if ok => filter_items(&forwarded.body, list, *source, allow)
            .ok_or_else(|| SdkError {
                type_name: "AccessDeniedException",
                message: format!("{target_text}: the answer could not be checked against SECRETS_SIDECAR_ALLOW"),
                status: 400,
            })?,
        _ => forwarded.body,
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::from_u16(forwarded.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let h = resp.headers_mut();
    let content_type = forwarded
        .content_type
        .as_deref()
        .unwrap_or("application/x-amz-json-1.1");
    for (name, value) in [
        (CONTENT_TYPE.as_str(), Some(content_type)),
        ("x-amzn-requestid", forwarded.request_id.as_deref()),
        ("x-amzn-errortype", forwarded.error_type.as_deref()),
    ] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(name, v);
        }
    }
    no_store(h);
    Ok(resp)
}

/// The real endpoint could not be reached: the service's own internal error, which
/// every SDK retries.
fn unreachable_upstream(service: Service, e: &crate::backend::UpstreamError) -> SdkError {
    let status = if e.kind == ErrorKind::Invalid { 400 } else { 500 };
    let type_name = match (service, e.kind) {
        (_, ErrorKind::Invalid) => "ValidationException",
        (Service::SecretsManager, _) => "InternalServiceError",
        (Service::Ssm, _) => "InternalServerError",
    };
    SdkError {
        type_name,
        message: e.detail.clone(),
        status,
    }
}

/// The answer with every item of `list` outside the allowlist removed; `None` when
/// it does not parse or an item carries no name to check.
fn filter_items(body: &[u8], list: &str, source: Source, allow: &AllowList) -> Option<Bytes> {
    let mut answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let items = answer.get_mut(list)?.as_array_mut()?;
    let mut verdicts = Vec::with_capacity(items.len());
    for item in items.iter() {
        let name = item.get("Name")?.as_str()?;
        let arn = item.get("ARN").and_then(|a| a.as_str()).unwrap_or("");
        verdicts.push(match source {
            Source::SecretsManager => !arn.is_empty() && allow.permits_secret(name, arn),
            Source::Ssm => allow.permits_parameter(name, arn),
        });
    }
    let mut verdict = verdicts.into_iter();
    items.retain(|_| verdict.next().unwrap_or(false));
    let text = serde_json::to_vec(&answer).ok()?;
    Some(SecretBytes::new(text).into_shared())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> Target {
        Target::parse(text).expect("target")
    }

    #[test]
    fn writes_name_the_ids_they_change() {
        let w = writes(
            &target("secretsmanager.PutSecretValue"),
            br#"{"SecretId":"app/db","SecretString":"x"}"#,
        );
        assert_eq!(w, [(Source::SecretsManager, "app/db".to_owned())]);
        let w = writes(&target("secretsmanager.CreateSecret"), br#"{"Name":"app/new"}"#);
        assert_eq!(w, [(Source::SecretsManager, "app/new".to_owned())]);
        let w = writes(&target("AmazonSSM.DeleteParameters"), br#"{"Names":["/a","/b"]}"#);
        assert_eq!(w, [(Source::Ssm, "/a".to_owned()), (Source::Ssm, "/b".to_owned())]);
        assert!(writes(&target("secretsmanager.DescribeSecret"), br#"{"SecretId":"app/db"}"#).is_empty());
    }

    #[test]
    fn value_carrying_operations_are_checked_or_refused() {
        assert_eq!(check_for(&target("secretsmanager.DescribeSecret")), Check::None);
        assert_eq!(
            check_for(&target("secretsmanager.BatchGetSecretValue")),
            Check::Items {
                list: "SecretValues",
                source: Source::SecretsManager
            }
        );
        assert_eq!(
            check_for(&target("secretsmanager.GetSecretValuesSomeday")),
            Check::Refuse
        );
        assert_eq!(
            check_for(&target("AmazonSSM.GetParameterHistory")),
            Check::Items {
                list: "Parameters",
                source: Source::Ssm
            }
        );
        assert_eq!(check_for(&target("AmazonSSM.GetParametersSomeday")), Check::Refuse);
        assert_eq!(check_for(&target("AmazonSSM.SendCommand")), Check::None);
    }

    #[test]
    fn items_outside_the_allowlist_are_removed() {
        let allow = AllowList::parse("secretsmanager:app/*").expect("allow");
        let body = br#"{"SecretValues":[
            {"Name":"app/db","ARN":"arn:aws:secretsmanager:us-east-1:1:secret:app/db-AbCdEf","SecretString":"a"},
            {"Name":"other/db","ARN":"arn:aws:secretsmanager:us-east-1:1:secret:other/db-AbCdEf","SecretString":"b"}
        ],"Errors":[]}"#;
        let kept = filter_items(body, "SecretValues", Source::SecretsManager, &allow).expect("parses");
        let v: serde_json::Value = serde_json::from_slice(&kept).expect("json");
        assert_eq!(v["SecretValues"].as_array().expect("list").len(), 1);
        assert_eq!(v["SecretValues"][0]["Name"], "app/db");
        let nameless = br#"{"SecretValues":[{"ARN":"x","SecretString":"a"}]}"#;
        assert!(filter_items(nameless, "SecretValues", Source::SecretsManager, &allow).is_none());
        let allow = AllowList::parse("ssm:/app/*").expect("allow");
        let history = br#"{"Parameters":[{"Name":"/app/a","Value":"1"},{"Name":"/other","Value":"2"}]}"#;
        let kept = filter_items(history, "Parameters", Source::Ssm, &allow).expect("parses");
        let v: serde_json::Value = serde_json::from_slice(&kept).expect("json");
        assert_eq!(v["Parameters"].as_array().expect("list").len(), 1);
    }
}
