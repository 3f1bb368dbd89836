//! The allowlist end to end through the routes, against the in-memory upstream:
//! look-alikes refused on the identity AWS returns, nothing refused is stored or
//! served, refusals remembered for the negative TTL; and a property test over random
//! lists and requests that no refused request ever yields a value.

use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;
use proptest::prelude::*;

use crate::backend::fake::FakeUpstream;
use crate::server::answer::Body;
use crate::server::app::App;
use crate::server::router::handle;
use crate::server::testing::{self, TOKEN};

const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";

fn app(fake: &Arc<FakeUpstream>, vars: &[(&str, &str)]) -> Arc<App> {
    testing::app(fake, vars)
}

/// The case: `app/db` allowed, `app/db-evil12` beside it.
fn look_alikes() -> Arc<FakeUpstream> {
    let fake = Arc::new(FakeUpstream::new());
    fake.put_secret_with_suffix("app/db", "AbCdEf", "the-db-password");
    fake.put_secret_with_suffix("app/db-evil12", "sUliwU", "someone-elses-value");
    fake.put_param("/team/key", "SecureString", "team-key");
    fake
}

async fn get(app: &App, path: &str) -> (u16, String) {
    let req = Request::get(path)
        .header(crate::token::HEADER, TOKEN)
        .body(String::new())
        .expect("request");
    let resp: Response<Body> = handle(app, req).await;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_look_alike_partial_arn_is_refused_stored_nowhere_and_remembered() {
    let fake = look_alikes();
    let app = app(&fake, &[("SECRETS_SIDECAR_ALLOW", "secretsmanager:app/db")]);
    let path = format!("/secretsmanager/get?secretId={ARN}app/db-evil12");
    let (status, body) = get(&app, &path).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("NotAllowed"), "{body}");
    assert!(!body.contains("someone-elses-value"), "{body}");
    assert_eq!(fake.calls(), 1, "resolved once upstream");
    assert_eq!(app.cache.len(), 0, "nothing stored");
    assert_eq!(app.cache.live_value_bytes(), 0, "the refused value is gone");
    // Remembered without its value: asking again costs nothing.
    let (again, _) = get(&app, &path).await;
    assert_eq!((again, fake.calls()), (403, 1));
    let metrics = get(&app, "/metrics").await.1;
    assert!(metrics.contains("secrets_sidecar_negative_hits_total 1"), "{metrics}");
    assert!(
        metrics.contains("secrets_sidecar_cache_requests_total{outcome=\"hit\"} 0"),
        "{metrics}"
    );
    // The allowed secret by every id that names it.
    for id in [
        "app/db".to_owned(),
        format!("{ARN}app/db"),
        format!("{ARN}app/db-AbCdEf"),
    ] {
        let (status, body) = get(&app, &format!("/secretsmanager/get?secretId={id}")).await;
        assert_eq!(status, 200, "{id}: {body}");
        assert!(body.contains("the-db-password"));
    }
}

#[tokio::test]
async fn a_look_alike_that_does_not_exist_is_refused_not_reported_missing() {
    let fake = look_alikes();
    let app = app(&fake, &[("SECRETS_SIDECAR_ALLOW", "secretsmanager:app/*")]);
    let (status, body) = get(&app, &format!("/secretsmanager/get?secretId={ARN}other-zzzzzz")).await;
    assert_eq!(
        (status, fake.calls()),
        (403, 0),
        "plainly outside: refused before any call: {body}"
    );
    let allow_exact = app_with_exact(&fake);
    let (status, _) = get(
        &allow_exact,
        &format!("/secretsmanager/get?secretId={ARN}app/db-zzzzzz"),
    )
    .await;
    assert_eq!(status, 403, "may be app/db: resolved, does not exist, and says nothing");
    let (status, _) = get(&app, "/secretsmanager/get?secretId=app/missing").await;
    assert_eq!(
        status, 404,
        "an allowed name that does not exist is reported as missing"
    );
}

fn app_with_exact(fake: &Arc<FakeUpstream>) -> Arc<App> {
    app(fake, &[("SECRETS_SIDECAR_ALLOW", "secretsmanager:app/db")])
}

#[tokio::test]
async fn names_that_are_prefixes_of_each_other_stay_apart() {
    let fake = look_alikes();
    let app = app(&fake, &[("SECRETS_SIDECAR_ALLOW", "secretsmanager:app/db-evil12")]);
    let (status, _) = get(&app, "/secretsmanager/get?secretId=app/db").await;
    assert_eq!((status, fake.calls()), (403, 0));
    let (status, _) = get(&app, &format!("/secretsmanager/get?secretId={ARN}app/db-AbCdEf")).await;
    assert_eq!(
        (status, fake.calls()),
        (403, 0),
        "app/db's full ARN: neither it nor its name without the tail is listed"
    );
    let (status, body) = get(&app, "/secretsmanager/get?secretId=app/db-evil12").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_refused_look_alike_never_poisons_the_allowed_entry() {
    let fake = look_alikes();
    let app = app_with_exact(&fake);
    let (status, _) = get(&app, "/secretsmanager/get?secretId=app/db").await;
    assert_eq!(status, 200);
    let (status, _) = get(&app, &format!("/secretsmanager/get?secretId={ARN}app/db-evil12")).await;
    assert_eq!(status, 403);
    let (status, body) = get(&app, "/secretsmanager/get?secretId=app/db").await;
    assert_eq!(status, 200);
    assert!(body.contains("the-db-password"));
    assert_eq!(app.cache.len(), 1);
}

/// The secrets of the property test: names that are prefixes, suffix look-alikes
/// and six-character tails of one another.
const NAMES: [&str; 6] = ["a", "a-bcdefg", "a/b", "a/b-cdefgh", "ab", "a-bcdefg-hijklm"];

fn universe() -> Arc<FakeUpstream> {
    let fake = Arc::new(FakeUpstream::new());
    for (i, name) in NAMES.iter().enumerate() {
        fake.put_secret_with_suffix(name, &format!("Sfx00{i}"), &format!("value-of-{name}"));
    }
    fake
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the list and the ids, every value served belongs to a secret whose
    /// name one of the list's name patterns matches exactly as AWS names it.
    #[test]
    fn no_refused_request_yields_a_value(
        allowed in proptest::sample::subsequence(NAMES.to_vec(), 1..3),
        star in any::<bool>(),
        requests in proptest::collection::vec((0usize..6, 0usize..4, "[A-Za-z0-9]{6}"), 1..12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let fake = universe();
            let patterns: Vec<String> = allowed
                .iter()
                .map(|n| if star { format!("secretsmanager:{n}*") } else { format!("secretsmanager:{n}") })
                .collect();
            let app = app(&fake, &[("SECRETS_SIDECAR_ALLOW", &patterns.join(","))]);
            for (which, form, tail) in requests {
                let name = NAMES[which];
                let id = match form {
                    0 => name.to_owned(),
                    1 => format!("{ARN}{name}"),
                    2 => format!("{ARN}{name}-Sfx00{which}"),
                    _ => format!("{ARN}{name}-{tail}"),
                };
                let (status, body) = get(&app, &format!("/secretsmanager/get?secretId={id}")).await;
                if status != 200 {
                    prop_assert!(!body.contains("value-of-"), "{status} carried a value: {body}");
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(&body).expect("json");
                let served = v["Name"].as_str().expect("a name").to_owned();
                let permitted = allowed.iter().any(|a| if star { served.starts_with(a) } else { served == *a });
                prop_assert!(permitted, "{id} served {served} under {patterns:?}");
                let expected = format!("value-of-{served}");
                prop_assert_eq!(v["SecretString"].as_str(), Some(expected.as_str()));
            }
            Ok(())
        })?;
    }
}
