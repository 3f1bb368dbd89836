//! Targets, request fields, and answers that parse as AWS's own.

use super::answer::{batch_secrets_body, parameters_body};
use super::*;
use crate::backend::{ErrorKind, ParameterFields, SecretFields, UpstreamError, Value};
use crate::cache::{Answer, Key, Outcome};
use crate::model::{Selector, Source};
use std::sync::Arc;
use std::time::Duration;

fn secret_answer(name: &str, value: &str) -> Answer {
    Answer {
        value: Arc::new(Value::from_secret(SecretFields {
            arn: format!("arn:aws:secretsmanager:us-east-1:1:secret:{name}-AbCdEf"),
            name: name.into(),
            version_id: Some("v1".into()),
            secret_string: Some(value.into()),
            secret_binary: None,
            version_stages: vec!["AWSCURRENT".into()],
            created_date: Some(1_700_000_000.5),
        })),
        outcome: Outcome::Hit,
        age: Duration::ZERO,
    }
}

fn parameter_answer(name: &str, value: &str) -> Answer {
    Answer {
        value: Arc::new(Value::from_parameter(ParameterFields {
            arn: format!("arn:aws:ssm:us-east-1:1:parameter{name}"),
            name: name.into(),
            kind: "SecureString".into(),
            value: value.into(),
            version: 3,
            data_type: Some("text".into()),
            last_modified_date: Some(1_700_000_000.0),
            selector: None,
            source_result: None,
        })),
        outcome: Outcome::Hit,
        age: Duration::ZERO,
    }
}

#[test]
fn targets_name_the_service_and_operation() {
    let t = Target::parse("secretsmanager.GetSecretValue").expect("target");
    assert_eq!(
        (t.service, t.operation),
        (Service::SecretsManager, Operation::GetSecretValue)
    );
    let t = Target::parse("AmazonSSM.GetParameters").expect("target");
    assert_eq!((t.service, t.operation), (Service::Ssm, Operation::GetParameters));
    let t = Target::parse("secretsmanager.PutSecretValue").expect("target");
    assert_eq!(t.operation, Operation::Other("PutSecretValue".into()));
    assert_eq!(Service::Ssm.signing_name(), "ssm");
    for bad in [
        "",
        "GetSecretValue",
        "kms.Decrypt",
        "secretsmanager.",
        "AmazonSSM.Get/../x",
    ] {
        let e = Target::parse(bad).expect_err(bad);
        assert_eq!(e.type_name, "UnknownOperationException", "{bad}");
    }
}

#[test]
fn get_secret_value_fields_as_aws_spells_them() {
    let r = parse_request(&Operation::GetSecretValue, br#"{"SecretId":"app/db"}"#).expect("request");
    assert_eq!(r, Request::One(Key::current(Source::SecretsManager, "app/db".into())));
    let r = parse_request(
        &Operation::GetSecretValue,
        br#"{"SecretId":"app/db","VersionStage":"AWSPREVIOUS"}"#,
    )
    .expect("request");
    let Request::One(key) = r else { panic!("one key") };
    assert_eq!(key.selector, Selector::VersionStage("AWSPREVIOUS".into()));
    let r = parse_request(&Operation::GetSecretValue, br#"{"SecretId":"app/db","VersionId":"v9"}"#).expect("request");
    let Request::One(key) = r else { panic!("one key") };
    assert_eq!(key.selector, Selector::VersionId("v9".into()));
    for bad in [
        &br#"{"SecretId":"a","VersionId":"v","VersionStage":"s"}"#[..],
        br#"{"SecretId":""}"#,
        br#"{}"#,
        b"not json",
    ] {
        let e = parse_request(&Operation::GetSecretValue, bad).expect_err("invalid");
        assert_eq!(e.type_name, "ValidationException");
    }
}

#[test]
fn parameters_with_selectors_and_decryption() {
    let r = parse_request(
        &Operation::GetParameter,
        br#"{"Name":"/app/key:3","WithDecryption":true}"#,
    )
    .expect("request");
    let Request::One(key) = r else { panic!("one key") };
    assert_eq!((&*key.id, &key.selector), ("/app/key", &Selector::Version(3)));
    assert_eq!(
        key,
        Key::new(Source::Ssm, "/app/key".into(), Selector::Version(3), true)
    );
    let r = parse_request(&Operation::GetParameters, br#"{"Names":["/a","/b:prod"]}"#).expect("request");
    let Request::Parameters(keys) = r else {
        panic!("parameters")
    };
    assert_eq!(keys[1].0, "/b:prod");
    assert_eq!(keys[1].1.selector, Selector::Label("prod".into()));
    let eleven: Vec<String> = (0..11).map(|i| format!("/p{i}")).collect();
    let body = serde_json::json!({ "Names": eleven }).to_string();
    let e = parse_request(&Operation::GetParameters, body.as_bytes()).expect_err("too many");
    assert!(e.message.contains("1 to 10"), "{e}");
    let e = parse_request(&Operation::GetParameter, br#"{"Name":"/a:0"}"#).expect_err("version 0");
    assert_eq!(e.type_name, "ValidationException");
}

#[test]
fn batch_get_secret_value_by_ids_or_passed_through_by_filter() {
    let r = parse_request(&Operation::BatchGetSecretValue, br#"{"SecretIdList":["a","b"]}"#).expect("request");
    let Request::Secrets(keys) = r else { panic!("secrets") };
    assert_eq!(keys.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let r = parse_request(
        &Operation::BatchGetSecretValue,
        br#"{"Filters":[{"Key":"tag-key","Values":["team"]}]}"#,
    )
    .expect("request");
    assert_eq!(r, Request::PassThrough);
    let ids: Vec<String> = (0..21).map(|i| format!("s{i}")).collect();
    let body = serde_json::json!({ "SecretIdList": ids }).to_string();
    assert!(parse_request(&Operation::BatchGetSecretValue, body.as_bytes()).is_err());
    assert!(parse_request(&Operation::BatchGetSecretValue, br#"{}"#).is_err());
}

#[test]
fn batch_answers_parse_as_aws_shapes() {
    let results = vec![
        ("app/db".to_owned(), Ok(secret_answer("app/db", "pw \"quoted\""))),
        (
            "gone".to_owned(),
            Err(SdkError::upstream(
                Service::SecretsManager,
                &Selector::Current,
                &UpstreamError::new(ErrorKind::NotFound, "ResourceNotFoundException: gone"),
            )),
        ),
        ("app/other".to_owned(), Ok(secret_answer("app/other", "x"))),
    ];
    let body = batch_secrets_body(&results);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["SecretValues"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["SecretValues"][0]["SecretString"], "pw \"quoted\"");
    assert_eq!(v["SecretValues"][0]["CreatedDate"], 1_700_000_000.5);
    assert_eq!(v["Errors"][0]["SecretId"], "gone");
    assert_eq!(v["Errors"][0]["ErrorCode"], "ResourceNotFoundException");

    let results = vec![
        ("/a".to_owned(), Ok(parameter_answer("/a", "va"))),
        ("/missing".to_owned(), Err(SdkError::validation("x"))),
    ];
    let v: serde_json::Value = serde_json::from_slice(&parameters_body(&results)).expect("json");
    assert_eq!(v["Parameters"][0]["Name"], "/a");
    assert_eq!(v["Parameters"][0]["Value"], "va");
    assert_eq!(v["Parameters"][0]["Version"], 3);
    assert_eq!(v["InvalidParameters"], serde_json::json!(["/missing"]));
    let empty: serde_json::Value = serde_json::from_slice(&parameters_body(&[])).expect("json");
    assert_eq!(empty, serde_json::json!({"Parameters": [], "InvalidParameters": []}));
}

#[test]
fn upstream_failures_map_to_each_services_exceptions() {
    let e = |service, selector: &Selector, kind, detail: &str| {
        SdkError::upstream(service, selector, &UpstreamError::new(kind, detail)).type_name
    };
    let cur = Selector::Current;
    assert_eq!(
        e(Service::SecretsManager, &cur, ErrorKind::NotFound, ""),
        "ResourceNotFoundException"
    );
    assert_eq!(e(Service::Ssm, &cur, ErrorKind::NotFound, ""), "ParameterNotFound");
    assert_eq!(
        e(Service::Ssm, &Selector::Version(9), ErrorKind::NotFound, ""),
        "ParameterVersionNotFound"
    );
    assert_eq!(
        e(
            Service::Ssm,
            &Selector::Label("x".into()),
            ErrorKind::NotFound,
            "ParameterVersionLabelNotFound: x"
        ),
        "ParameterVersionLabelNotFound"
    );
    assert_eq!(
        e(Service::Ssm, &cur, ErrorKind::AccessDenied, ""),
        "AccessDeniedException"
    );
    assert_eq!(
        e(Service::SecretsManager, &cur, ErrorKind::NotAllowed, ""),
        "AccessDeniedException"
    );
    assert_eq!(
        e(Service::SecretsManager, &cur, ErrorKind::Throttled, ""),
        "ThrottlingException"
    );
    let internal = SdkError::upstream(Service::Ssm, &cur, &UpstreamError::new(ErrorKind::Timeout, "slow"));
    assert_eq!((internal.type_name, internal.status), ("InternalServerError", 500));
    let body: serde_json::Value = serde_json::from_slice(&internal.body()).expect("json");
    assert_eq!(
        body,
        serde_json::json!({"__type": "InternalServerError", "message": "slow"})
    );
    // AWS's message as AWS sends it: the backend's `Code: ` prefix is not repeated.
    let missing = UpstreamError::new(
        ErrorKind::NotFound,
        "ResourceNotFoundException: Secrets Manager can't find the specified secret.",
    );
    let e = SdkError::upstream(Service::SecretsManager, &cur, &missing);
    assert_eq!(e.message, "Secrets Manager can't find the specified secret.");
    let plain = UpstreamError::new(ErrorKind::NotFound, "'x: y' is missing");
    assert_eq!(
        SdkError::upstream(Service::Ssm, &cur, &plain).message,
        "'x: y' is missing"
    );
}

#[test]
fn repeated_ids_and_names_are_answered_once() {
    let Request::Parameters(keys) =
        parse_request(&Operation::GetParameters, br#"{"Names":["/d/x","/d/y","/d/x"]}"#).expect("parses")
    else {
        panic!("parameters")
    };
    let names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["/d/x", "/d/y"]);
    let Request::Secrets(keys) =
        parse_request(&Operation::BatchGetSecretValue, br#"{"SecretIdList":["a","a"]}"#).expect("parses")
    else {
        panic!("secrets")
    };
    assert_eq!(keys.len(), 1);
}

#[test]
fn a_body_that_does_not_parse_is_refused_without_repeating_its_text() {
    let planted = "planted-3f9c-not-an-id";
    let bodies = [
        format!(r#"{{"Name":"/app/key","WithDecryption":"{planted}"}}"#),
        format!(r#"{{"Name":"/app/key","WithDecryption":true,"x":"{planted}"#),
        format!(r#"{{"Names":["/a","/b"],"WithDecryption":["{planted}"]}}"#),
        format!(r#"{{"Path":"/app","MaxResults":"{planted}"}}"#),
    ];
    let ops = [
        Operation::GetParameter,
        Operation::GetParameter,
        Operation::GetParameters,
        Operation::GetParametersByPath,
    ];
    for (op, body) in ops.iter().zip(&bodies) {
        let e = parse_request(op, body.as_bytes()).expect_err(body);
        assert_eq!((e.type_name, e.status), ("ValidationException", 400), "{body}");
        let sent = String::from_utf8(e.body().to_vec()).expect("utf-8");
        assert!(sent.contains("does not parse"), "{sent}");
        assert!(!sent.contains(planted), "the body repeats the request's text: {sent}");
    }
    // A missing field is named (the name is ours, not the caller's).
    let e = parse_request(&Operation::GetSecretValue, br#"{"VersionStage":"AWSPENDING"}"#).expect_err("no id");
    assert!(e.message.contains("missing field `SecretId`"), "{}", e.message);
}

#[test]
fn a_callers_text_is_repeated_at_most_max_echo_bytes() {
    let long = format!("secretsmanager.{}", "é".repeat(5_000));
    let e = Target::parse(&long).expect_err("too long");
    assert_eq!(e.type_name, "UnknownOperationException");
    assert!(e.message.len() < error::MAX_ECHO + 64, "{} bytes", e.message.len());
    assert_eq!(error::clip("abcdé", 5), "abcd", "cut on a character boundary");
    assert_eq!(error::clip("abc", 5), "abc");
    // A parameter name is repeated as an id: at most MAX_ID_LEN of it.
    let name = format!("/{}:{}", "n".repeat(20_000), "x".repeat(200));
    let e =
        parse_request(&Operation::GetParameter, format!(r#"{{"Name":"{name}"}}"#).as_bytes()).expect_err("bad version");
    assert!(
        e.message.len() <= crate::model::MAX_ID_LEN + 64,
        "{} bytes",
        e.message.len()
    );
}
