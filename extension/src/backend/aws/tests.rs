//! The real request building, response parsing and error sorting of [`AwsUpstream`],
//! run against the SDK's own test HTTP client: each test answers the SDK's request
//! with what AWS would send and checks what the sidecar makes of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider, SharedHttpClient};
use aws_smithy_http_client::test_util::{infallible_client_fn, NeverClient};
use aws_smithy_types::body::SdkBody;

use super::*;
use crate::backend::{ErrorKind, RoleSettings, Upstream};
use crate::model::{SecretRef, Selector};

/// What the SDK sent: the `X-Amz-Target` operation and the JSON body; where it
/// went and who signed it (host, the region and access key of the SigV4 credential
/// scope); for STS's query protocol, the form fields.
#[derive(Clone, Debug)]
struct Sent {
    target: String,
    body: serde_json::Value,
    host: String,
    region: String,
    access_key: String,
    form: HashMap<String, String>,
}

impl Sent {
    fn of(req: &http::Request<SdkBody>) -> Sent {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let bytes = req.body().bytes().unwrap_or_default();
        // `Credential=AKID/DATE/REGION/SERVICE/aws4_request`
        let scope: Vec<String> = header("authorization")
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split(',').next())
            .map(|c| c.split('/').map(str::to_owned).collect())
            .unwrap_or_default();
        Sent {
            target: header("x-amz-target"),
            body: serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null),
            host: req.uri().host().unwrap_or_default().to_owned(),
            region: scope.get(2).cloned().unwrap_or_default(),
            access_key: scope.first().cloned().unwrap_or_default(),
            form: form_urlencoded::parse(bytes).into_owned().collect(),
        }
    }

    fn is_sts(&self) -> bool {
        self.form.get("Action").is_some_and(|a| a == "AssumeRole")
    }
}

type Log = Arc<Mutex<Vec<Sent>>>;

/// An HTTP client that records every request and answers it with what `answer`
/// returns for it: status, body.
fn responder(answer: impl Fn(&Sent) -> (u16, String) + Send + Sync + 'static) -> (SharedHttpClient, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let client = infallible_client_fn(move |req: http::Request<SdkBody>| {
        let sent = Sent::of(&req);
        let (status, body) = answer(&sent);
        let content_type = if sent.is_sts() {
            "text/xml"
        } else {
            "application/x-amz-json-1.1"
        };
        seen.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(sent);
        http::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(SdkBody::from(body))
            .expect("a valid response")
    });
    (client, log)
}

/// An HTTP client that records every request and answers each with `status` and `body`.
fn answering(status: u16, answer: &'static str) -> (SharedHttpClient, Log) {
    responder(move |_| (status, answer.to_owned()))
}

fn upstream(client: SharedHttpClient, timeout: Option<Duration>) -> (AwsUpstream, Arc<CallStats>) {
    upstream_with(client, timeout, RoleSettings::default())
}

fn upstream_with(
    client: SharedHttpClient,
    timeout: Option<Duration>,
    roles: RoleSettings,
) -> (AwsUpstream, Arc<CallStats>) {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "secret-key",
            Some("session-token".into()),
            None,
            "test",
        )))
        .http_client(client)
        .retry_config(retry_config())
        .build();
    let settings = BackendSettings {
        max_connections: 3,
        secrets_manager_timeout: timeout,
        ssm_timeout: timeout,
        roles,
        endpoints: None,
    };
    let calls = Arc::new(CallStats::default());
    (AwsUpstream::new(&sdk, settings, calls.clone()), calls)
}

fn sent(log: &Log) -> Vec<Sent> {
    log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

const SECRET: &str = r#"{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf","Name":"app/db","VersionId":"v1","SecretString":"{\"password\":\"pw\"}","VersionStages":["AWSPREVIOUS"],"CreatedDate":1.7E9}"#;

#[tokio::test]
async fn get_secret_value_is_asked_with_the_selector_and_rendered_in_aws_shape() {
    let (client, log) = answering(200, SECRET);
    let (aws, calls) = upstream(client, None);
    let value = aws
        .get_secret(&Via::HOME, "app/db", &Selector::VersionStage("AWSPREVIOUS".into()))
        .await
        .expect("value");
    let sent = sent(&log);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].target, "secretsmanager.GetSecretValue");
    assert_eq!(sent[0].body["SecretId"], "app/db");
    assert_eq!(sent[0].body["VersionStage"], "AWSPREVIOUS");
    assert!(sent[0].body.get("VersionId").is_none());
    assert_eq!(&*value.name, "app/db");
    assert_eq!(
        &*value.arn,
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf"
    );
    assert_eq!(&value.raw()[..], br#"{"password":"pw"}"#);
    let body: serde_json::Value = serde_json::from_slice(&value.body).expect("json");
    assert_eq!(body["VersionStages"][0], "AWSPREVIOUS");
    assert_eq!(body["CreatedDate"], 1.7e9);
    assert_eq!((calls.get(Api::GetSecretValue), calls.total()), (1, 1));
}

#[tokio::test]
async fn get_parameter_sends_the_selector_suffix_and_the_decryption_flag() {
    let (client, log) = answering(
        200,
        r#"{"Parameter":{"ARN":"arn:aws:ssm:us-east-1:123456789012:parameter/app/key","Name":"/app/key","Type":"SecureString","Value":"k3","Version":3,"Selector":":3","DataType":"text","LastModifiedDate":1.7E9}}"#,
    );
    let (aws, calls) = upstream(client, None);
    let value = aws
        .get_parameter(&Via::HOME, "/app/key", &Selector::Version(3), true)
        .await
        .expect("value");
    let sent = sent(&log);
    assert_eq!(sent[0].target, "AmazonSSM.GetParameter");
    assert_eq!(sent[0].body["Name"], "/app/key:3");
    assert_eq!(sent[0].body["WithDecryption"], true);
    assert!(value.secure, "a SecureString changes with the decryption flag");
    assert_eq!(&*value.version, "3");
    assert_eq!(&value.raw()[..], b"k3");
    let body: serde_json::Value = serde_json::from_slice(&value.body).expect("json");
    assert_eq!(body["Parameter"]["Selector"], ":3");
    assert_eq!(calls.get(Api::GetParameter), 1);
}

#[tokio::test]
async fn batch_get_secret_value_maps_values_and_per_id_errors() {
    let (client, log) = answering(
        200,
        r#"{"SecretValues":[{"ARN":"arn:aws:secretsmanager:us-east-1:1:secret:a-AbCdEf","Name":"a","VersionId":"v1","SecretString":"va","VersionStages":["AWSCURRENT"]}],"Errors":[{"SecretId":"gone","ErrorCode":"ResourceNotFoundException","Message":"Secrets Manager can't find the specified secret."}]}"#,
    );
    let (aws, calls) = upstream(client, None);
    let batch = aws
        .batch_get_secrets(&Via::HOME, &["a".to_owned(), "gone".to_owned()])
        .await
        .expect("batch");
    let sent = sent(&log);
    assert_eq!(sent[0].target, "secretsmanager.BatchGetSecretValue");
    assert_eq!(sent[0].body["SecretIdList"], serde_json::json!(["a", "gone"]));
    assert_eq!(batch.values.len(), 1);
    assert_eq!(&*batch.values[0].name, "a");
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].0, "gone");
    assert_eq!(batch.errors[0].1.kind, ErrorKind::NotFound);
    assert_eq!(calls.get(Api::BatchGetSecretValue), 1);
}

#[tokio::test]
async fn get_parameters_reports_invalid_names_as_not_found() {
    let (client, log) = answering(
        200,
        r#"{"Parameters":[{"ARN":"arn:aws:ssm:us-east-1:1:parameter/a","Name":"/a","Type":"String","Value":"va","Version":1}],"InvalidParameters":["/missing"]}"#,
    );
    let (aws, _) = upstream(client, None);
    let batch = aws
        .get_parameters(&Via::HOME, &["/a".to_owned(), "/missing".to_owned()], false)
        .await
        .expect("batch");
    let sent = sent(&log);
    assert_eq!(sent[0].target, "AmazonSSM.GetParameters");
    assert_eq!(sent[0].body["WithDecryption"], false);
    assert_eq!(batch.values.len(), 1);
    assert!(!batch.values[0].secure);
    assert_eq!(batch.errors[0].0, "/missing");
    assert_eq!(batch.errors[0].1.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn parameters_by_path_are_read_recursively_page_by_page() {
    let (client, log) = answering(
        200,
        r#"{"Parameters":[{"ARN":"arn:aws:ssm:us-east-1:1:parameter/team/a","Name":"/team/a","Type":"String","Value":"v","Version":1}],"NextToken":""}"#,
    );
    let (aws, calls) = upstream(client, None);
    let page = aws
        .get_parameters_by_path(&Via::HOME, "/team/", true, Some("page-2"))
        .await
        .expect("page");
    let sent = sent(&log);
    assert_eq!(sent[0].target, "AmazonSSM.GetParametersByPath");
    assert_eq!(sent[0].body["Path"], "/team/");
    assert_eq!(sent[0].body["Recursive"], true);
    assert_eq!(sent[0].body["NextToken"], "page-2");
    assert_eq!(page.values.len(), 1);
    assert_eq!(page.next_token, None, "an empty token ends the listing");
    assert_eq!(calls.get(Api::GetParametersByPath), 1);
}

#[tokio::test]
async fn throttling_is_retried_then_reported_as_transient() {
    let (client, log) = answering(400, r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#);
    let (aws, calls) = upstream(client, None);
    let err = aws
        .get_secret(&Via::HOME, "app/db", &Selector::Current)
        .await
        .expect_err("throttled");
    assert_eq!(err.kind, ErrorKind::Throttled);
    assert!(
        err.detail.contains("ThrottlingException: Rate exceeded"),
        "{}",
        err.detail
    );
    assert_eq!(sent(&log).len(), MAX_ATTEMPTS as usize, "the SDK retried");
    assert_eq!(
        calls.get(Api::GetSecretValue),
        u64::from(MAX_ATTEMPTS),
        "every attempt is counted"
    );
}

#[tokio::test]
async fn a_missing_secret_is_definitive_and_not_retried() {
    let (client, log) = answering(
        400,
        r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#,
    );
    let (aws, _) = upstream(client, None);
    let err = aws
        .get_secret(&Via::HOME, "nope", &Selector::Current)
        .await
        .expect_err("missing");
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(!err.kind.is_transient());
    assert_eq!(sent(&log).len(), 1);
}

#[tokio::test]
async fn access_denied_and_server_errors_are_told_apart() {
    let (client, _) = answering(
        400,
        r#"{"__type":"AccessDeniedException","message":"User is not authorized to perform ssm:GetParameter"}"#,
    );
    let (aws, _) = upstream(client, None);
    let err = aws
        .get_parameter(&Via::HOME, "/x", &Selector::Current, true)
        .await
        .expect_err("denied");
    assert_eq!(err.kind, ErrorKind::AccessDenied);

    let (client, log) = answering(500, r#"{"__type":"InternalServerError","message":"oops"}"#);
    let (aws, _) = upstream(client, None);
    let err = aws
        .get_parameter(&Via::HOME, "/x", &Selector::Current, true)
        .await
        .expect_err("5xx");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(sent(&log).len(), MAX_ATTEMPTS as usize, "server errors are retried");
}

#[tokio::test]
async fn a_silent_upstream_times_out_within_the_configured_limit() {
    let never = NeverClient::new();
    let (aws, _) = upstream(SharedHttpClient::new(never.clone()), Some(Duration::from_millis(200)));
    let err = aws
        .get_secret(&Via::HOME, "app/db", &Selector::Current)
        .await
        .expect_err("timeout");
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(err.kind.is_transient());
    assert!(never.num_calls() >= 1);
}

#[tokio::test]
async fn an_answer_without_an_arn_is_refused_as_malformed() {
    let (client, _) = answering(200, r#"{"Name":"app/db","SecretString":"pw"}"#);
    let (aws, _) = upstream(client, None);
    let err = aws
        .get_secret(&Via::HOME, "app/db", &Selector::Current)
        .await
        .expect_err("no ARN");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.detail.contains("ARN"), "{}", err.detail);
}

#[tokio::test]
async fn existence_is_asked_with_metadata_calls_only() {
    let (client, log) = answering(
        200,
        r#"{"ARN":"arn:aws:secretsmanager:us-east-1:1:secret:app/db-AbCdEf","Name":"app/db"}"#,
    );
    let (aws, calls) = upstream(client, None);
    aws.exists(&Via::HOME, &SecretRef::Secret("app/db".into()))
        .await
        .expect("exists");
    let (client, param_log) = answering(
        200,
        r#"{"Parameters":[{"Name":"/team/a","Type":"String","Version":1}]}"#,
    );
    let (ssm_aws, ssm_calls) = upstream(client, None);
    ssm_aws
        .exists(&Via::HOME, &SecretRef::Path("/team/".into()))
        .await
        .expect("a parameter under the path");
    ssm_aws
        .exists(
            &Via::HOME,
            &SecretRef::Parameter("arn:aws:ssm:us-east-1:123456789012:parameter/app/key".into()),
        )
        .await
        .expect("exists");
    let sent_sm = sent(&log);
    assert_eq!(sent_sm[0].target, "secretsmanager.DescribeSecret");
    assert_eq!(sent_sm[0].body["SecretId"], "app/db");
    let sent_ssm = sent(&param_log);
    assert_eq!(sent_ssm[0].target, "AmazonSSM.DescribeParameters");
    let path = &sent_ssm[0].body["ParameterFilters"][0];
    assert_eq!(
        (path["Key"].as_str(), path["Option"].as_str()),
        (Some("Path"), Some("Recursive"))
    );
    assert_eq!(path["Values"][0], "/team", "the Path filter takes no trailing slash");
    let name = &sent_ssm[1].body["ParameterFilters"][0];
    assert_eq!(
        (name["Key"].as_str(), name["Option"].as_str()),
        (Some("Name"), Some("Equals"))
    );
    assert_eq!(name["Values"][0], "/app/key", "an ARN is asked for by its name");
    assert_eq!(
        (calls.get(Api::DescribeSecret), ssm_calls.get(Api::DescribeParameters)),
        (1, 2)
    );
    assert_eq!(calls.total() + ssm_calls.total(), 3, "no value was asked for");
}

#[tokio::test]
async fn nothing_described_is_not_found() {
    let (client, _) = answering(200, r#"{"Parameters":[]}"#);
    let (aws, _) = upstream(client, None);
    let err = aws
        .exists(&Via::HOME, &SecretRef::Parameter("/gone".into()))
        .await
        .expect_err("missing");
    assert_eq!(err.kind, ErrorKind::NotFound);
    let (client, _) = answering(
        400,
        r#"{"__type":"ResourceNotFoundException","message":"no such secret"}"#,
    );
    let (aws, _) = upstream(client, None);
    let err = aws
        .exists(&Via::HOME, &SecretRef::Secret("gone".into()))
        .await
        .expect_err("missing");
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn a_reset_builds_new_clients_on_the_next_call() {
    let (client, log) = answering(200, SECRET);
    let (aws, _) = upstream(client, None);
    aws.get_secret(&Via::HOME, "app/db", &Selector::Current)
        .await
        .expect("value");
    let first = aws.clients().await;
    aws.reset();
    aws.get_secret(&Via::HOME, "app/db", &Selector::Current)
        .await
        .expect("value after a reset");
    let second = aws.clients().await;
    assert!(!Arc::ptr_eq(&first, &second), "the reset dropped the old clients");
    assert_eq!(sent(&log).len(), 2);
}

const THROTTLED: &str = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;

#[tokio::test]
async fn a_call_with_a_value_in_hand_makes_one_attempt_and_a_cold_one_retries() {
    let (client, log) = answering(400, THROTTLED);
    let (aws, calls) = upstream(client, None);
    let once = Via {
        attempts: Attempts::Once,
        ..Via::HOME
    };
    let err = aws
        .get_secret(&once, "app/db", &Selector::Current)
        .await
        .expect_err("throttled");
    assert_eq!(err.kind, ErrorKind::Throttled);
    assert_eq!(sent(&log).len(), 1, "one attempt, no SDK retries");
    aws.get_parameters(&once, &["/a".to_owned()], true)
        .await
        .expect_err("throttled");
    assert_eq!(sent(&log).len(), 2, "one attempt on SSM too");
    aws.get_secret(&Via::HOME, "app/db", &Selector::Current)
        .await
        .expect_err("throttled");
    assert_eq!(
        sent(&log).len(),
        2 + MAX_ATTEMPTS as usize,
        "a cold call keeps the SDK's retries"
    );
    assert_eq!(
        calls.get(Api::GetSecretValue),
        1 + u64::from(MAX_ATTEMPTS),
        "every attempt is counted"
    );
}

#[tokio::test]
async fn an_account_without_an_arn_or_a_role_is_refused() {
    let (client, log) = answering(200, SECRET);
    let (aws, _) = upstream(client, None);
    let elsewhere = Via {
        scope: crate::model::Scope::new(Some("210987654321"), None, None),
        ..Via::HOME
    };
    let err = aws
        .get_secret(&elsewhere, "app/db", &Selector::Current)
        .await
        .expect_err("no way to reach it");
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(sent(&log).is_empty());
}

mod scopes;
