//! `POST /` end to end through the router, against the in-memory upstream: requests
//! signed as an SDK signs them, answers read as an SDK reads them.

use aws_credential_types::Credentials;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value as Json};
use std::sync::Arc;

use crate::backend::fake::FakeUpstream;
use crate::server::answer::CACHE_HEADER;
use crate::server::app::App;
use crate::server::router;
use crate::server::testing::{self, signed, signed_as};

fn app(vars: &[(&str, &str)]) -> (Arc<App>, Arc<FakeUpstream>) {
    let fake = testing::fake();
    (testing::app(&fake, vars), fake)
}

/// Status, `x-amzn-ErrorType`, body.
async fn call(app: &App, req: Request<String>) -> (u16, Option<String>, Json) {
    let resp = router::handle(app, req).await;
    let status = resp.status().as_u16();
    let error_type = resp
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().expect("ascii").to_owned());
    assert_eq!(resp.headers()["content-type"], "application/x-amz-json-1.1");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, error_type, serde_json::from_slice(&bytes).expect("json"))
}

/// GetSecretValue of `app/db`, signed with `signer` for `region`.
fn get_db_as(signer: &Credentials, region: &str) -> Request<String> {
    signed_as(
        signer,
        region,
        "secretsmanager.GetSecretValue",
        &json!({"SecretId": "app/db"}),
    )
}

#[tokio::test]
async fn get_secret_value_is_served_from_the_cache_in_aws_shape() {
    let (app, fake) = app(&[]);
    let req = || signed("secretsmanager.GetSecretValue", json!({"SecretId": "app/db"}));
    let (status, _, body) = call(&app, req()).await;
    assert_eq!(status, 200);
    assert_eq!(body["Name"], "app/db");
    assert_eq!(body["ARN"], FakeUpstream::arn_of("app/db"));
    assert!(body["SecretString"].is_string());
    call(&app, req()).await;
    assert_eq!(fake.calls(), 1, "the second read is a hit");
    // The HTTP API shares the entry.
    let http = Request::get("/secretsmanager/get?secretId=app/db")
        .header(crate::token::HEADER, "test-token")
        .body(String::new())
        .expect("request");
    let resp = router::handle(&app, http).await;
    assert_eq!(resp.headers()[CACHE_HEADER], "hit");
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn aws_exceptions_for_missing_ids() {
    let (app, _) = app(&[]);
    let (status, error_type, body) = call(
        &app,
        signed("secretsmanager.GetSecretValue", json!({"SecretId": "nope"})),
    )
    .await;
    assert_eq!(
        (status, error_type.as_deref()),
        (400, Some("ResourceNotFoundException"))
    );
    assert_eq!(body["__type"], "ResourceNotFoundException");
    let (_, error_type, _) = call(&app, signed("AmazonSSM.GetParameter", json!({"Name": "/nope"}))).await;
    assert_eq!(error_type.as_deref(), Some("ParameterNotFound"));
    let (_, error_type, _) = call(&app, signed("AmazonSSM.GetParameter", json!({"Name": "/app/key:9"}))).await;
    assert_eq!(error_type.as_deref(), Some("ParameterVersionNotFound"));
    let (_, error_type, _) = call(&app, signed("secretsmanager.GetSecretValue", json!({"Secret": "x"}))).await;
    assert_eq!(error_type.as_deref(), Some("ValidationException"));
}

#[tokio::test]
async fn other_credentials_are_refused_without_an_upstream_call() {
    let (app, fake) = app(&[]);
    let other = Credentials::new("AKIAOTHERACCOUNT", "other-secret", None, None, "test");
    let req = get_db_as(&other, "us-east-1");
    let (status, error_type, body) = call(&app, req).await;
    assert_eq!(
        (status, error_type.as_deref()),
        (403, Some("UnrecognizedClientException"))
    );
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("AKIAOTHERACCOUNT") && message.contains("only the function's own credentials"));
    // The right key with the wrong secret: the signature does not match.
    let forged = Credentials::new(
        crate::backend::fake::FAKE_ACCESS_KEY,
        "guessed",
        Some(crate::backend::fake::FAKE_SESSION_TOKEN.to_owned()),
        None,
        "test",
    );
    let req = get_db_as(&forged, "us-east-1");
    let (status, error_type, _) = call(&app, req).await;
    assert_eq!(
        (status, error_type.as_deref()),
        (403, Some("InvalidSignatureException"))
    );
    let unsigned = Request::post("/")
        .header("x-amz-target", "secretsmanager.GetSecretValue")
        .body(r#"{"SecretId":"app/db"}"#.to_owned())
        .expect("request");
    let (status, _, _) = call(&app, unsigned).await;
    assert_eq!(status, 403);
    assert_eq!(fake.calls(), 0);
    assert_eq!(fake.forwarded().len(), 0);
}

#[tokio::test]
async fn batches_report_missing_items_as_aws_does() {
    let (app, fake) = app(&[]);
    fake.put_secret("app/api", "k");
    let (status, _, body) = call(
        &app,
        signed(
            "secretsmanager.BatchGetSecretValue",
            json!({"SecretIdList": ["app/db", "app/api", "app/missing"]}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["SecretValues"].as_array().expect("values").len(), 2);
    assert_eq!(body["Errors"][0]["SecretId"], "app/missing");
    assert_eq!(body["Errors"][0]["ErrorCode"], "ResourceNotFoundException");
    let (status, _, body) = call(
        &app,
        signed(
            "AmazonSSM.GetParameters",
            json!({"Names": ["/app/key", "/app/nope"], "WithDecryption": true}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["Parameters"][0]["Name"], "/app/key");
    assert_eq!(body["Parameters"][0]["Value"], "k1");
    assert_eq!(body["InvalidParameters"], json!(["/app/nope"]));
}

#[tokio::test]
async fn parameters_by_path_are_paged_from_one_listing() {
    let (app, fake) = app(&[]);
    for i in 0..25 {
        fake.put_param(&format!("/svc/p{i:02}"), "String", "v");
    }
    fake.put_param("/svc/deep/q", "String", "v");
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = json!({"Path": "/svc", "MaxResults": 10});
        if let Some(t) = &token {
            req["NextToken"] = json!(t);
        }
        let (status, _, body) = call(&app, signed("AmazonSSM.GetParametersByPath", req)).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        for p in body["Parameters"].as_array().expect("page") {
            seen.push(p["Name"].as_str().expect("name").to_owned());
        }
        match body["NextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25, "not recursive: /svc/deep/q is not a direct child");
    let calls = fake.calls();
    let (_, _, body) = call(
        &app,
        signed(
            "AmazonSSM.GetParametersByPath",
            json!({"Path": "/svc", "Recursive": true}),
        ),
    )
    .await;
    assert_eq!(body["Parameters"].as_array().expect("page").len(), 10);
    assert_eq!(fake.calls(), calls, "a second listing is served from the first");
    let (status, error_type, _) = call(
        &app,
        signed(
            "AmazonSSM.GetParametersByPath",
            json!({"Path": "/other", "NextToken": token.unwrap_or_default()}),
        ),
    )
    .await;
    assert_eq!((status, error_type.as_deref()), (400, Some("ValidationException")));
}

#[tokio::test]
async fn writes_pass_through_and_invalidate() {
    let (app, fake) = app(&[]);
    let read = || signed("secretsmanager.GetSecretValue", json!({"SecretId": "app/db"}));
    call(&app, read()).await;
    fake.put_secret("app/db", "new value");
    let (status, _, _) = call(
        &app,
        signed(
            "secretsmanager.PutSecretValue",
            json!({"SecretId": "app/db", "SecretString": "new value"}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(fake.forwarded(), ["secretsmanager.PutSecretValue"]);
    let (_, _, body) = call(&app, read()).await;
    assert_eq!(body["SecretString"], "new value", "the write dropped the cached value");
    assert_eq!(fake.calls(), 2);
    // A forwarded error comes back unchanged.
    fake.answer_forwards(400, r#"{"__type":"ResourceExistsException","message":"exists"}"#);
    let (status, _, body) = call(&app, signed("secretsmanager.CreateSecret", json!({"Name": "app/db"}))).await;
    assert_eq!((status, &body["__type"]), (400, &json!("ResourceExistsException")));
}

#[tokio::test]
async fn the_allowlist_holds_on_served_and_forwarded_answers() {
    let (app, fake) = app(&[("SECRETS_SIDECAR_ALLOW", "secretsmanager:app/* ssm:/app/*")]);
    fake.put_secret("other/db", "x");
    let (_, error_type, _) = call(
        &app,
        signed("secretsmanager.GetSecretValue", json!({"SecretId": "other/db"})),
    )
    .await;
    assert_eq!(error_type.as_deref(), Some("AccessDeniedException"));
    assert_eq!(fake.calls(), 0, "refused before any call");
    let (_, _, body) = call(
        &app,
        signed(
            "secretsmanager.BatchGetSecretValue",
            json!({"SecretIdList": ["app/db", "other/db"]}),
        ),
    )
    .await;
    assert_eq!(body["SecretValues"].as_array().expect("values").len(), 1);
    assert_eq!(body["Errors"][0]["ErrorCode"], "AccessDeniedException");
    // A filtered batch is forwarded, and what it returns is checked item by item.
    fake.answer_forwards(
        200,
        &json!({"SecretValues": [
            {"Name": "app/db", "ARN": FakeUpstream::arn_of("app/db"), "SecretString": "a"},
            {"Name": "other/db", "ARN": FakeUpstream::arn_of("other/db"), "SecretString": "b"}
        ], "Errors": []})
        .to_string(),
    );
    let (status, _, body) = call(
        &app,
        signed(
            "secretsmanager.BatchGetSecretValue",
            json!({"Filters": [{"Key": "name", "Values": ["a"]}]}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["SecretValues"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v["Name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["app/db"]);
    // An operation that could carry values the list cannot check is not forwarded.
    let before = fake.forwarded().len();
    let (_, error_type, _) = call(&app, signed("secretsmanager.GetSecretValuesInBulk", json!({}))).await;
    assert_eq!(error_type.as_deref(), Some("AccessDeniedException"));
    assert_eq!(fake.forwarded().len(), before);
}

#[tokio::test]
async fn another_region_is_another_scope() {
    let (app, fake) = app(&[]);
    let home = signed("secretsmanager.GetSecretValue", json!({"SecretId": "app/db"}));
    call(&app, home).await;
    let away = get_db_as(&FakeUpstream::credentials(), "eu-west-1");
    call(&app, away).await;
    assert_eq!(fake.calls(), 2, "eu-west-1's app/db is not the home region's");
}

#[tokio::test]
async fn metrics_count_the_sdk_route_by_operation() {
    let (app, _) = app(&[]);
    call(
        &app,
        signed("secretsmanager.GetSecretValue", json!({"SecretId": "app/db"})),
    )
    .await;
    call(
        &app,
        signed("secretsmanager.DescribeSecret", json!({"SecretId": "app/db"})),
    )
    .await;
    let text = app.snapshot().render();
    assert!(
        text.contains("secrets_sidecar_requests_total{route=\"sdk\"} 2"),
        "{text}"
    );
    assert!(text.contains("secrets_sidecar_sdk_requests_total{operation=\"GetSecretValue\",handled=\"cache\"} 1"));
    assert!(text.contains("secrets_sidecar_sdk_requests_total{operation=\"DescribeSecret\",handled=\"forward\"} 1"));
}
