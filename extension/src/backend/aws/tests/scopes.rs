//! Other regions and assumed roles, through the SDK's replay client: where each
//! request was sent and signed for (host, SigV4 credential scope), which access key
//! signed it, how batches split by region, what STS was asked and how often, and
//! the bounds on the pool.

use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;

use super::*;
use crate::backend::aws::{MAX_PLACES, MAX_ROLES};
use crate::backend::{SessionTag, TenantSession};
use crate::model::Scope;

const EU_SECRET: &str = "arn:aws:secretsmanager:eu-west-1:210987654321:secret:shared/db-EuWest";
const ROLE: &str = "arn:aws:iam::210987654321:role/secret-reader";
const ASSUMED_KEY: &str = "ASIAASSUMEDROLE";

/// A secret in the region the request was signed for, named after it.
fn secret_in(region: &str) -> String {
    format!(
        r#"{{"ARN":"arn:aws:secretsmanager:{region}:210987654321:secret:shared/db-AbCdEf","Name":"shared/db","VersionId":"v1","SecretString":"in {region}","VersionStages":["AWSCURRENT"]}}"#
    )
}

/// STS's AssumeRole answer: credentials expiring at `expires`.
fn assumed(expires: SystemTime) -> String {
    let at = DateTime::from(expires).fmt(Format::DateTime).expect("a date");
    format!(
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEXAMPLE:fn</AssumedRoleId>
      <Arn>arn:aws:sts::210987654321:assumed-role/secret-reader/fn</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{ASSUMED_KEY}</AccessKeyId>
      <SecretAccessKey>assumed-secret-key</SecretAccessKey>
      <SessionToken>assumed-session-token</SessionToken>
      <Expiration>{at}</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#
    )
}

fn sts_error(code: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>refused by the test</Message></Error><RequestId>r2</RequestId></ErrorResponse>"#
    )
}

/// Answers STS with credentials valid for an hour and every other call with a
/// secret of the region it was signed for.
fn aws_world() -> (SharedHttpClient, Log) {
    responder(|sent| {
        if sent.is_sts() {
            (200, assumed(SystemTime::now() + Duration::from_secs(3600)))
        } else {
            (200, secret_in(&sent.region))
        }
    })
}

fn with_role(role: &str) -> Via {
    Via {
        scope: Scope::new(None, None, Some(role)),
        ..Via::HOME
    }
}

fn sts_calls(log: &Log) -> Vec<Sent> {
    sent(log).into_iter().filter(Sent::is_sts).collect()
}

#[tokio::test]
async fn a_full_arn_is_fetched_in_the_region_it_names_and_everything_else_at_home() {
    let (client, log) = aws_world();
    let (aws, calls) = upstream(client, None);
    let v = aws
        .get_secret(&Via::HOME, EU_SECRET, &Selector::Current)
        .await
        .expect("eu value");
    assert_eq!(&v.raw()[..], b"in eu-west-1");
    aws.get_secret(&Via::HOME, "app/db", &Selector::Current)
        .await
        .expect("home value");
    let home_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf";
    aws.get_secret(&Via::HOME, home_arn, &Selector::Current)
        .await
        .expect("home value by ARN");
    aws.get_parameter(
        &Via::HOME,
        "arn:aws:ssm:ap-southeast-2:210987654321:parameter/team/key",
        &Selector::Version(2),
        true,
    )
    .await
    .expect_err("the world answers secrets only; where it went is what counts");
    let sent = sent(&log);
    let places: Vec<(&str, &str)> = sent.iter().map(|s| (s.host.as_str(), s.region.as_str())).collect();
    assert_eq!(
        places,
        [
            ("secretsmanager.eu-west-1.amazonaws.com", "eu-west-1"),
            ("secretsmanager.us-east-1.amazonaws.com", "us-east-1"),
            ("secretsmanager.us-east-1.amazonaws.com", "us-east-1"),
            ("ssm.ap-southeast-2.amazonaws.com", "ap-southeast-2"),
        ]
    );
    assert_eq!(
        sent[3].body["Name"],
        "arn:aws:ssm:ap-southeast-2:210987654321:parameter/team/key:2"
    );
    assert!(
        sent.iter().all(|s| s.access_key == "AKIDEXAMPLE"),
        "the function's own credentials"
    );
    let pool = aws.pool().await;
    assert_eq!(pool.sizes(), (2, 0), "a home-region ARN uses the home clients");
    assert_eq!(calls.get(Api::GetSecretValue), 3);
}

#[tokio::test]
async fn other_partitions_are_routed_by_region_alone() {
    let (client, log) = aws_world();
    let (aws, _) = upstream(client, None);
    for arn in [
        "arn:aws-cn:secretsmanager:cn-north-1:210987654321:secret:db-AbCdEf",
        "arn:aws-us-gov:secretsmanager:us-gov-west-1:210987654321:secret:db-AbCdEf",
    ] {
        aws.get_secret(&Via::HOME, arn, &Selector::Current).await.expect(arn);
    }
    let sent = sent(&log);
    assert_eq!(sent[0].host, "secretsmanager.cn-north-1.amazonaws.com.cn");
    assert_eq!(sent[0].region, "cn-north-1");
    assert_eq!(sent[1].host, "secretsmanager.us-gov-west-1.amazonaws.com");
    assert_eq!(sent[1].region, "us-gov-west-1");
}

#[tokio::test]
async fn an_arn_whose_region_is_not_a_region_is_refused_before_any_call() {
    let (client, log) = aws_world();
    let (aws, _) = upstream(client, None);
    for arn in [
        "arn:aws:secretsmanager:evil.example.com:1:secret:x",
        "arn:aws:secretsmanager:EU-WEST-1:1:secret:x",
        "arn:aws:secretsmanager:eu-west-1#:1:secret:x",
    ] {
        let err = aws
            .get_secret(&Via::HOME, arn, &Selector::Current)
            .await
            .expect_err(arn);
        assert_eq!(err.kind, ErrorKind::Invalid, "{arn}");
        assert!(err.detail.contains("not an AWS region"), "{}", err.detail);
    }
    assert!(sent(&log).is_empty());
}

#[tokio::test]
async fn batches_are_split_by_region_one_call_each_and_merged() {
    let (client, log) = responder(|sent| {
        let ids: Vec<String> = sent.body["SecretIdList"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let values: Vec<String> = ids
            .iter()
            .map(|id| {
                let (arn, name) = if id.starts_with("arn:") {
                    (id.clone(), "shared")
                } else {
                    let arn = format!("arn:aws:secretsmanager:{}:123456789012:secret:{id}-AbCdEf", sent.region);
                    (arn, id.as_str())
                };
                format!(r#"{{"ARN":"{arn}","Name":"{name}","SecretString":"{}"}}"#, sent.region)
            })
            .collect();
        (200, format!(r#"{{"SecretValues":[{}],"Errors":[]}}"#, values.join(",")))
    });
    let (aws, calls) = upstream(client, None);
    let eu2 = "arn:aws:secretsmanager:eu-west-1:210987654321:secret:other-AbCdEf";
    let ap = "arn:aws:secretsmanager:ap-south-1:210987654321:secret:third-AbCdEf";
    let home_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mine-AbCdEf";
    let ids: Vec<String> = ["a", EU_SECRET, home_arn, ap, "b", eu2]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let batch = aws.batch_get_secrets(&Via::HOME, &ids).await.expect("batch");
    let sent = sent(&log);
    let calls_made: Vec<(&str, serde_json::Value)> = sent
        .iter()
        .map(|s| (s.region.as_str(), s.body["SecretIdList"].clone()))
        .collect();
    assert_eq!(
        calls_made,
        [
            ("us-east-1", serde_json::json!(["a", home_arn, "b"])),
            ("eu-west-1", serde_json::json!([EU_SECRET, eu2])),
            ("ap-south-1", serde_json::json!([ap])),
        ],
        "one call per region, names and home ARNs together"
    );
    assert_eq!(batch.values.len(), 6, "every answer merged");
    assert!(batch.errors.is_empty());
    for id in &ids {
        assert!(
            batch.values.iter().any(|v| crate::backend::answers(id, v)),
            "{id} is answered"
        );
    }
    assert_eq!(calls.get(Api::BatchGetSecretValue), 3);
}

#[tokio::test]
async fn a_region_failing_as_a_whole_fails_only_its_own_ids() {
    // eu-west-1 is throttled (transient), ap-south-1 refuses the call (definitive).
    let (client, _) = responder(|sent| {
        match sent.region.as_str() {
        "eu-west-1" => (400, THROTTLED.to_owned()),
        "ap-south-1" => (400, r#"{"__type":"ValidationException","message":"no"}"#.to_owned()),
        _ => (
            200,
            r#"{"Parameters":[{"ARN":"arn:aws:ssm:us-east-1:1:parameter/a","Name":"/a","Type":"String","Value":"va","Version":1}],"InvalidParameters":[]}"#
                .to_owned(),
        ),
    }
    });
    let (aws, _) = upstream(client, None);
    let eu = "arn:aws:ssm:eu-west-1:210987654321:parameter/x";
    let ap = "arn:aws:ssm:ap-south-1:210987654321:parameter/y";
    let names = vec!["/a".to_owned(), eu.to_owned(), ap.to_owned()];
    let once = Via {
        attempts: Attempts::Once,
        ..Via::HOME
    };
    let batch = aws.get_parameters(&once, &names, true).await.expect("a partial batch");
    assert_eq!(batch.values.len(), 1);
    assert_eq!(&*batch.values[0].name, "/a");
    assert_eq!(batch.errors.len(), 1, "{:?}", batch.errors);
    assert_eq!(
        (batch.errors[0].0.as_str(), batch.errors[0].1.kind),
        (eu, ErrorKind::Throttled)
    );
    // The refused region's id is neither answered nor failed: the cache fetches it
    // singly, as it does when a whole batch is refused.

    // All in one region: the call's own error, as before regions were split.
    let err = aws
        .get_parameters(&once, &[eu.to_owned()], true)
        .await
        .expect_err("throttled");
    assert_eq!(err.kind, ErrorKind::Throttled);
}

#[tokio::test]
async fn regions_are_bounded_and_refused_beyond_without_a_call() {
    let (client, log) = aws_world();
    let (aws, _) = upstream(client, None);
    let arn = |i: usize| format!("arn:aws:secretsmanager:xx-test-{i}:210987654321:secret:db-AbCdEf");
    for i in 0..MAX_PLACES {
        aws.get_secret(&Via::HOME, &arn(i), &Selector::Current)
            .await
            .expect("within the bound");
    }
    let err = aws
        .get_secret(&Via::HOME, &arn(MAX_PLACES), &Selector::Current)
        .await
        .expect_err("beyond the bound");
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(err.detail.contains("at most 16"), "{}", err.detail);
    assert_eq!(sent(&log).len(), MAX_PLACES, "the refused region was never called");
    // What is built keeps working, home included.
    aws.get_secret(&Via::HOME, &arn(0), &Selector::Current)
        .await
        .expect("an existing region");
    aws.get_secret(&Via::HOME, "app/db", &Selector::Current)
        .await
        .expect("home");
    // A reset (SnapStart restore) drops them all.
    aws.reset();
    aws.get_secret(&Via::HOME, &arn(MAX_PLACES), &Selector::Current)
        .await
        .expect("room again after a reset");
}

#[tokio::test]
async fn a_role_is_assumed_once_with_the_external_id_and_session_name_then_reused() {
    let (client, log) = aws_world();
    let roles = RoleSettings {
        external_id: Some("ext-4242".into()),
        session_name: "weather-api".into(),
        tenant: TenantSession::default(),
    };
    let (aws, calls) = upstream_with(client, None, roles);
    let via = with_role(ROLE);
    aws.get_secret(&via, EU_SECRET, &Selector::Current)
        .await
        .expect("eu value with the role");
    aws.get_secret(&via, "shared/db", &Selector::Current)
        .await
        .expect("home-region value with the role");
    aws.batch_get_secrets(&via, &["shared/db".to_owned()])
        .await
        .expect("a batch with the role");
    aws.get_secret(&Via::HOME, "app/db", &Selector::Current)
        .await
        .expect("the function's own");

    let sts = sts_calls(&log);
    assert_eq!(sts.len(), 1, "one AssumeRole for every region and call");
    let form = &sts[0].form;
    assert_eq!(form.get("RoleArn").map(String::as_str), Some(ROLE));
    assert_eq!(form.get("ExternalId").map(String::as_str), Some("ext-4242"));
    assert_eq!(form.get("RoleSessionName").map(String::as_str), Some("weather-api"));
    assert_eq!(sts[0].host, "sts.us-east-1.amazonaws.com", "STS in the home region");
    assert_eq!(
        sts[0].access_key, "AKIDEXAMPLE",
        "the base credentials are the function's"
    );

    let service: Vec<(String, String)> = sent(&log)
        .into_iter()
        .filter(|s| !s.is_sts())
        .map(|s| (s.region, s.access_key))
        .collect();
    assert_eq!(
        service,
        [
            ("eu-west-1".to_owned(), ASSUMED_KEY.to_owned()),
            ("us-east-1".to_owned(), ASSUMED_KEY.to_owned()),
            ("us-east-1".to_owned(), ASSUMED_KEY.to_owned()),
            ("us-east-1".to_owned(), "AKIDEXAMPLE".to_owned()),
        ]
    );
    assert_eq!(calls.total(), 4, "STS is not a Secrets Manager or SSM call");
}

#[tokio::test]
async fn the_tenants_role_is_assumed_with_the_tenant_as_session_tag_and_no_other_role_is() {
    let (client, log) = aws_world();
    let tenant = TenantSession::default();
    let roles = RoleSettings {
        tenant: tenant.clone(),
        ..RoleSettings::default()
    };
    let (aws, _) = upstream_with(client, None, roles);
    let other = "arn:aws:iam::210987654321:role/other";
    assert!(tenant.set(SessionTag {
        role: ROLE.to_owned(),
        key: "tenant".to_owned(),
        value: "acme".to_owned(),
    }));
    aws.get_secret(&with_role(ROLE), "shared/db", &Selector::Current)
        .await
        .expect("with the tenant's role");
    aws.get_secret(&with_role(other), "shared/db", &Selector::Current)
        .await
        .expect("with another role");
    let sts = sts_calls(&log);
    assert_eq!(sts.len(), 2);
    let tagged = |arn: &str| {
        let form = &sts
            .iter()
            .find(|s| s.form.get("RoleArn").map(String::as_str) == Some(arn))
            .expect(arn)
            .form;
        (
            form.get("Tags.member.1.Key").cloned(),
            form.get("Tags.member.1.Value").cloned(),
        )
    };
    assert_eq!(tagged(ROLE), (Some("tenant".to_owned()), Some("acme".to_owned())));
    assert_eq!(tagged(other), (None, None), "only the tenant's role carries the tenant");
}

#[tokio::test]
async fn credentials_close_to_expiry_are_renewed_before_they_are_used() {
    let answers = Arc::new(Mutex::new(0u32));
    let counter = answers.clone();
    let (client, log) = responder(move |sent| {
        if !sent.is_sts() {
            return (200, secret_in(&sent.region));
        }
        let mut n = counter.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *n += 1;
        // First credentials expire within the identity cache's buffer; the next last.
        let life = if *n == 1 { 3 } else { 3600 };
        (200, assumed(SystemTime::now() + Duration::from_secs(life)))
    });
    let (aws, _) = upstream(client, None);
    let via = with_role(ROLE);
    for _ in 0..3 {
        aws.get_secret(&via, "shared/db", &Selector::Current)
            .await
            .expect("value");
    }
    assert_eq!(
        sts_calls(&log).len(),
        2,
        "the short-lived credentials were renewed on the next call, the long-lived kept"
    );
}

#[tokio::test]
async fn roles_are_bounded_and_refused_beyond() {
    let (client, log) = aws_world();
    let (aws, _) = upstream(client, None);
    let role = |i: usize| format!("arn:aws:iam::210987654321:role/reader-{i}");
    for i in 0..MAX_ROLES {
        aws.get_secret(&with_role(&role(i)), "shared/db", &Selector::Current)
            .await
            .expect("within the bound");
    }
    let err = aws
        .get_secret(&with_role(&role(MAX_ROLES)), "shared/db", &Selector::Current)
        .await
        .expect_err("beyond the bound");
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(err.detail.contains("at most 8 roles"), "{}", err.detail);
    assert_eq!(sts_calls(&log).len(), MAX_ROLES, "the refused role was never assumed");
    assert_eq!(aws.pool().await.sizes(), (MAX_ROLES, MAX_ROLES));
}

#[tokio::test]
async fn sts_refusing_the_role_is_definitive_and_sts_throttling_transient() {
    for (status, code, kind) in [
        (403, "AccessDenied", ErrorKind::AccessDenied),
        (400, "Throttling", ErrorKind::Throttled),
    ] {
        let (client, log) = responder(move |sent| {
            if sent.is_sts() {
                (status, sts_error(code))
            } else {
                (200, secret_in(&sent.region))
            }
        });
        let (aws, calls) = upstream(client, None);
        let err = aws
            .get_secret(&with_role(ROLE), "shared/db", &Selector::Current)
            .await
            .expect_err("no credentials");
        assert_eq!(err.kind, kind, "{code}: {}", err.detail);
        assert!(err.detail.starts_with("AssumeRole: "), "{}", err.detail);
        assert!(err.detail.contains(code), "{}", err.detail);
        assert!(sent(&log).iter().all(Sent::is_sts), "nothing was sent unsigned");
        assert_eq!(calls.total(), 0);
    }
}

#[tokio::test]
async fn a_reset_forgets_assumed_credentials() {
    let (client, log) = aws_world();
    let (aws, _) = upstream(client, None);
    let via = with_role(ROLE);
    aws.get_secret(&via, "shared/db", &Selector::Current)
        .await
        .expect("value");
    aws.reset();
    aws.get_secret(&via, "shared/db", &Selector::Current)
        .await
        .expect("value after a reset");
    assert_eq!(sts_calls(&log).len(), 2, "a restored clone assumes the role afresh");
}

#[test]
fn shared_parameters_answer_their_arn_whatever_name_comes_back() {
    // AWS documents that a shared parameter must be asked for by full ARN, not
    // what Name its answer carries: match on the ARN either way.
    let arn = "arn:aws:ssm:eu-west-1:210987654321:parameter/team/key";
    for name in ["/team/key", arn] {
        let v = crate::backend::Value::from_parameter(crate::backend::ParameterFields {
            arn: arn.into(),
            name: name.into(),
            kind: "String".into(),
            value: "v".into(),
            version: 1,
            data_type: None,
            last_modified_date: None,
            selector: None,
            source_result: None,
        });
        assert!(crate::backend::answers(arn, &v), "Name {name}");
        assert!(
            !crate::backend::answers("arn:aws:ssm:us-east-1:210987654321:parameter/team/key", &v),
            "another region's ARN is another parameter"
        );
    }
}
