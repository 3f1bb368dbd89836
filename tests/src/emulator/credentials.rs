//! SnapStart's container credentials endpoint, served on the Runtime API's port as
//! AWS's emulator does (`rapi/handler/credentials.go`): `GET /2021-04-23/credentials`
//! with header `Authorization: <AWS_CONTAINER_AUTHORIZATION_TOKEN>` (the raw token, no
//! `Bearer`) answers 200 with `{"AccessKeyId","SecretAccessKey","Token","Expiration"}`;
//! any other token gets 404 `cannot get credentials for the provided token`. Only in
//! SnapStart mode; elsewhere the path is unknown. Every request is traced
//! ([`Trace::CredentialsServed`]), so a test can see who fetched them.

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::config::FunctionConfig;
use super::state::{epoch_ms, Shared, Trace};

pub const PATH: &str = "/2021-04-23/credentials";

/// How long served credentials stay valid (Lambda's role sessions last hours).
const VALIDITY_MS: u64 = 6 * 3600 * 1000;

pub fn serve(shared: &Shared, cfg: &FunctionConfig, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let presented = headers.get("authorization").and_then(|v| v.to_str().ok());
    let ok = presented == Some(cfg.container_token.as_str());
    shared.update(|s| s.record(Trace::CredentialsServed { ok }));
    let (status, content_type, body) = if ok {
        let body = json!({
            "AccessKeyId": cfg.access_key_id,
            "SecretAccessKey": cfg.secret_access_key,
            "Token": cfg.session_token,
            "Expiration": rfc3339(epoch_ms() + VALIDITY_MS),
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
        let served: Vec<bool> = shared
            .trace()
            .iter()
            .filter_map(|t| match t.what {
                Trace::CredentialsServed { ok } => Some(ok),
                _ => None,
            })
            .collect();
        assert_eq!(served, [false, false, true]);
    }
}
