//! Rendering values in AWS's shapes, sharing and unescaping the bare value, metering.

use super::*;

fn secret(string: Option<&str>, binary: Option<&[u8]>) -> Value {
    Value::from_secret(SecretFields {
        arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf".into(),
        name: "app/db".into(),
        version_id: Some("v1".into()),
        secret_string: string.map(str::to_owned),
        secret_binary: binary.map(<[u8]>::to_vec),
        version_stages: vec!["AWSCURRENT".into()],
        created_date: Some(1_700_000_000.5),
    })
}

#[test]
fn secret_string_body_has_aws_shape() {
    let v = secret(Some("{\"user\":\"u\",\"password\":\"p\\\"w\"}"), None);
    let body: serde_json::Value = serde_json::from_slice(&v.body).expect("json");
    assert_eq!(
        body["ARN"],
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf"
    );
    assert_eq!(body["Name"], "app/db");
    assert_eq!(body["VersionId"], "v1");
    assert_eq!(body["SecretString"], "{\"user\":\"u\",\"password\":\"p\\\"w\"}");
    assert_eq!(body["VersionStages"][0], "AWSCURRENT");
    assert_eq!(body["CreatedDate"], 1_700_000_000.5);
    assert!(body.get("SecretBinary").is_none());
    assert!(!v.binary);
    assert_eq!(&v.raw()[..], b"{\"user\":\"u\",\"password\":\"p\\\"w\"}");
}

#[test]
fn binary_secret_is_base64_in_json_and_bytes_raw() {
    let v = secret(None, Some(&[0, 159, 146, 150]));
    let body: serde_json::Value = serde_json::from_slice(&v.body).expect("json");
    assert_eq!(body["SecretBinary"], "AJ+Slg==");
    assert!(body.get("SecretString").is_none());
    assert!(v.binary);
    assert_eq!(&v.raw()[..], &[0, 159, 146, 150]);
}

#[test]
fn json_field_extraction() {
    let v = secret(Some("{\"appid\":\"k\\u0041y\",\"n\":3,\"o\":{\"a\":1}}"), None);
    assert_eq!(v.json_field("appid").expect("object").as_deref(), Some(&b"kAy"[..]));
    assert_eq!(v.json_field("n").expect("object").as_deref(), Some(&b"3"[..]));
    assert_eq!(v.json_field("o").expect("object").as_deref(), Some(&b"{\"a\":1}"[..]));
    assert_eq!(v.json_field("missing").expect("object"), None);
    assert_eq!(secret(Some("plain"), None).json_field("k"), Err(NotJsonObject));
    assert_eq!(secret(Some("[1]"), None).json_field("k"), Err(NotJsonObject));
    assert_eq!(secret(None, Some(b"{}")).json_field("k"), Err(NotJsonObject));
}

#[test]
fn parameter_body_has_aws_shape() {
    let v = Value::from_parameter(ParameterFields {
        arn: "arn:aws:ssm:us-east-1:123456789012:parameter/app/key".into(),
        name: "/app/key".into(),
        kind: "SecureString".into(),
        value: "s3cr3t".into(),
        version: 4,
        data_type: Some("text".into()),
        last_modified_date: Some(1_700_000_000.0),
        selector: Some(":4".into()),
        source_result: None,
    });
    let body: serde_json::Value = serde_json::from_slice(&v.body).expect("json");
    let p = &body["Parameter"];
    assert_eq!(p["Name"], "/app/key");
    assert_eq!(p["Type"], "SecureString");
    assert_eq!(p["Value"], "s3cr3t");
    assert_eq!(p["Version"], 4);
    assert_eq!(p["Selector"], ":4");
    assert_eq!(p["DataType"], "text");
    assert!(v.secure);
    assert_eq!(&*v.version, "4");
}

#[test]
fn plain_values_share_the_body_and_escaped_ones_do_not() {
    let plain = secret(Some("AbC123-xyz"), None);
    let start = plain.raw().as_ptr() as usize - plain.body.as_ptr() as usize;
    assert!(start < plain.body.len(), "the raw value points into the body");
    assert_eq!(&plain.raw()[..], b"AbC123-xyz");
    let escaped = secret(Some("a\"quoted\"\nvalue"), None);
    assert!(escaped.raw.is_none(), "an escaped value is not kept twice");
    assert_eq!(&escaped.raw()[..], b"a\"quoted\"\nvalue");
    let unicode = secret(Some("caf\u{e9}-\u{1F510}"), None);
    assert_eq!(&unicode.raw()[..], "caf\u{e9}-\u{1F510}".as_bytes());
}

#[test]
fn escaped_parameter_values_are_unescaped_on_demand() {
    let v = Value::from_parameter(ParameterFields {
        arn: "arn:aws:ssm:us-east-1:1:parameter/j".into(),
        name: "/j".into(),
        kind: "String".into(),
        value: "{\"k\":\"v\"}".into(),
        version: 1,
        data_type: None,
        last_modified_date: None,
        selector: None,
        source_result: None,
    });
    assert!(v.raw.is_none());
    assert_eq!(&v.raw()[..], b"{\"k\":\"v\"}");
    assert_eq!(v.json_field("k").expect("object").as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_meter_counts_live_values_until_they_drop() {
    let meter = ValueMeter::default();
    let mut a = secret(Some("plain"), None);
    let mut b = secret(None, Some(&[1, 2, 3, 4]));
    assert_eq!(a.bytes(), a.body.len(), "a plain string is a view into the body");
    assert_eq!(b.bytes(), b.body.len() + 4, "binary bytes are stored apart");
    a.meter(&meter);
    b.meter(&meter);
    b.meter(&meter);
    assert_eq!(meter.live_bytes(), a.bytes() + b.bytes(), "metered once each");
    let shared = Arc::new(b);
    let clone = shared.clone();
    drop(shared);
    assert_eq!(
        meter.live_bytes(),
        a.bytes() + clone.bytes(),
        "alive while any clone is"
    );
    drop(clone);
    drop(a);
    assert_eq!(meter.live_bytes(), 0);
}

#[test]
fn debug_is_redacted() {
    let v = secret(Some("hunter2"), None);
    assert!(!format!("{v:?}").contains("hunter2"));
}
