//! SnapStart's container credentials endpoint, served on the Runtime API's port as
//! AWS's emulator does (`rapi/handler/credentials.go`): `GET /2021-04-23/credentials`
//! with header `Authorization: <AWS_CONTAINER_AUTHORIZATION_TOKEN>` (the raw token, no
//! `Bearer`) answers 200 with `{"AccessKeyId","SecretAccessKey","Token","Expiration"}`;
//! any other token gets 404 `cannot get credentials for the provided token`. Only in
//! SnapStart mode; elsewhere the path is unknown. Every request is traced
//! ([`Trace::CredentialsServed`], with the number of the set it handed out), so a
//! test can see who fetched them and what they got.
//!
//! As AWS's endpoint, it hands out the same set, with the same `Expiration` (hours
//! after the set was issued), until the role's credentials rotate. A function
//! configured with [`FunctionConfig::rotating_credentials`] lets the test rotate them
//! when it chooses ([`Emulator::rotate_credentials`]): set 0 is the configuration's
//! own, each rotation issues the next, and a caller holding an older set keeps it
//! (it stays valid until its own expiry, as in AWS). Rotation is explicit rather than
//! timed so a test knows exactly which invoke saw which set.

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::config::FunctionConfig;
use super::state::{epoch_ms, Shared, Trace};
use super::{Emulator, Mode};

pub const PATH: &str = "/2021-04-23/credentials";

/// How long served credentials stay valid (Lambda's role sessions last hours).
const VALIDITY_MS: u64 = 6 * 3600 * 1000;

/// The set the endpoint hands out now: its number (0: the configuration's own) and
/// when it was issued. Kept across environments, as the role's credentials are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issued {
    pub set: u32,
    pub at_ms: u64,
}

impl Issued {
    pub fn first() -> Issued {
        Issued {
            set: 0,
            at_ms: epoch_ms(),
        }
    }
}

/// One credential set of the role.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialSet {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl std::fmt::Debug for CredentialSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSet")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Set number `n` of the role: the configuration's own for 0, then one derived from
/// it per rotation (moto accepts any key, so they need not be real).
pub fn set(cfg: &FunctionConfig, n: u32) -> CredentialSet {
    if n == 0 {
        return CredentialSet {
            access_key_id: cfg.access_key_id.clone(),
            secret_access_key: cfg.secret_access_key.clone(),
            session_token: cfg.session_token.clone(),
        };
    }
    CredentialSet {
        access_key_id: format!("{}R{n}", cfg.access_key_id),
        secret_access_key: format!("{}-rotated-{n}", cfg.secret_access_key),
        session_token: format!("{}-rotated-{n}", cfg.session_token),
    }
}

pub fn serve(shared: &Shared, cfg: &FunctionConfig, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let presented = headers.get("authorization").and_then(|v| v.to_str().ok());
    let ok = presented == Some(cfg.container_token.as_str());
    let issued = shared.update(|s| {
        let issued = s.credentials;
        s.record(Trace::CredentialsServed {
            ok,
            set: ok.then_some(issued.set),
        });
        issued
    });
    let (status, content_type, body) = if ok {
        let served = set(cfg, issued.set);
        let body = json!({
            "AccessKeyId": served.access_key_id,
            "SecretAccessKey": served.secret_access_key,
            "Token": served.session_token,
            "Expiration": rfc3339(issued.at_ms + VALIDITY_MS),
        });
        (StatusCode::OK, "application/json", body.to_string())
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "cannot get credentials for the provided token\n".to_owned(),
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    r
}

impl Emulator {
    /// Rotates the role's credentials: from now on the endpoint hands out the next
    /// set (see the header). Returns its number and access key id. Refused unless the
    /// function was configured with [`FunctionConfig::rotating_credentials`] in
    /// SnapStart mode (elsewhere credentials are fixed environment variables).
    pub fn rotate_credentials(&self) -> Result<(u32, String), String> {
        let cfg = self.config();
        if !cfg.rotating_credentials || cfg.mode != Mode::SnapStart {
            return Err("credentials rotate only with rotating_credentials() in SnapStart mode".into());
        }
        let n = self.inner.shared.update(|s| {
            s.credentials = Issued {
                set: s.credentials.set + 1,
                at_ms: epoch_ms(),
            };
            s.record(Trace::CredentialsRotated { set: s.credentials.set });
            s.credentials.set
        });
        Ok((n, set(cfg, n).access_key_id))
    }

    /// The sets the endpoint handed out, in order (one entry per fetch that got one).
    pub fn credentials_served(&self) -> Vec<u32> {
        self.trace()
            .into_iter()
            .filter_map(|t| match t.what {
                Trace::CredentialsServed { set, .. } => set,
                _ => None,
            })
            .collect()
    }
}

/// `(year, month, day)` of a day counted from the epoch (Howard Hinnant's
/// civil-from-days; no date crate needed).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// An epoch time in milliseconds as RFC 3339 in UTC, to the second.
pub fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2024-02-29T12:34:56Z, a leap day.
        assert_eq!(rfc3339(1_709_210_096_000), "2024-02-29T12:34:56Z");
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn only_the_token_gets_credentials() {
        let shared = Shared::new();
        let cfg = FunctionConfig::new("f", "/task/bootstrap");
        let mut headers = HeaderMap::new();
        assert_eq!(serve(&shared, &cfg, &headers).status(), StatusCode::NOT_FOUND);
        headers.insert(
            "authorization",
            http::HeaderValue::from_str(&format!("Bearer {}", cfg.container_token)).expect("header"),
        );
        assert_eq!(serve(&shared, &cfg, &headers).status(), StatusCode::NOT_FOUND);
        headers.insert(
            "authorization",
            http::HeaderValue::from_str(&cfg.container_token).expect("header"),
        );
        assert_eq!(serve(&shared, &cfg, &headers).status(), StatusCode::OK);
        let served: Vec<(bool, Option<u32>)> = shared
            .trace()
            .iter()
            .filter_map(|t| match t.what {
                Trace::CredentialsServed { ok, set } => Some((ok, set)),
                _ => None,
            })
            .collect();
        assert_eq!(served, [(false, None), (false, None), (true, Some(0))]);
    }

    /// The access key id and expiration an answer hands out.
    async fn served_key(resp: Response<Full<Bytes>>) -> (String, String) {
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        (
            v["AccessKeyId"].as_str().expect("key").to_owned(),
            v["Expiration"].as_str().expect("expiration").to_owned(),
        )
    }

    #[tokio::test]
    async fn a_set_is_the_same_until_it_rotates() {
        let shared = Shared::new();
        let cfg = FunctionConfig::new("f", "/task/bootstrap");
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            http::HeaderValue::from_str(&cfg.container_token).expect("header"),
        );
        let first = served_key(serve(&shared, &cfg, &headers)).await;
        assert_eq!(first.0, cfg.access_key_id);
        assert_eq!(
            served_key(serve(&shared, &cfg, &headers)).await,
            first,
            "same key, same expiry"
        );
        shared.update(|s| {
            s.credentials = Issued {
                set: 1,
                at_ms: epoch_ms(),
            }
        });
        let second = served_key(serve(&shared, &cfg, &headers)).await;
        assert_eq!(second.0, set(&cfg, 1).access_key_id);
        assert_ne!(second.0, first.0);
        assert!(
            !format!("{:?}", set(&cfg, 1)).contains(&cfg.secret_access_key),
            "Debug hides the secret"
        );
    }

    #[tokio::test]
    async fn rotation_is_off_unless_configured() {
        let off = Emulator::start(FunctionConfig::new("f", "/task/bootstrap").mode(Mode::SnapStart))
            .await
            .expect("emulator");
        assert!(off.rotate_credentials().is_err(), "off by default");
        let cfg = FunctionConfig::new("f", "/task/bootstrap")
            .mode(Mode::SnapStart)
            .rotating_credentials();
        let key1 = set(&cfg, 1).access_key_id;
        let on = Emulator::start(cfg).await.expect("emulator");
        assert_eq!(on.rotate_credentials(), Ok((1, key1)));
        assert_eq!(on.rotate_credentials().map(|(n, _)| n), Ok(2));
    }
}
