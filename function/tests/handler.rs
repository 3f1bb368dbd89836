//! The handler against a fake sidecar and fake providers: each provider, each error
//! class, both API Gateway event formats, and the refused-key → refresh → retry path.

use std::time::Duration;

use bytes::Bytes;
use harness::emulator::gateway::{http_api_event, match_route};
use harness::fakes::{Api, FakeProviders, FakeSidecar};
use serde_json::{json, Value};
use weather::config::Settings;
use weather::handler::{handle, App};

const TOKEN: &str = "session-token";
const ROUTE: &str = "/{provider}/{latitude}/{longitude}";

struct Rig {
    app: App,
    sidecar: FakeSidecar,
    providers: FakeProviders,
}

async fn rig(extra: &[(&str, &str)]) -> anyhow::Result<Rig> {
    let sidecar = FakeSidecar::start(TOKEN).await?;
    sidecar.parameter("/weather/darksky-api-key", "ds-key");
    sidecar.secret("weather/openweathermap", r#"{"appid":"owm-key","other":"x"}"#);
    sidecar.parameter("/weather/here/api-key", "here-key");
    let providers = FakeProviders::start("ds-key", "owm-key", "here-key").await?;
    let mut vars: Vec<(String, String)> = vec![
        ("AWS_SESSION_TOKEN".into(), TOKEN.into()),
        (
            "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT".into(),
            sidecar.port.to_string(),
        ),
        ("DARKSKY_URL".into(), providers.darksky_url()),
        ("OPENWEATHERMAP_URL".into(), providers.openweathermap_url()),
        ("HERE_URL".into(), providers.here_url()),
    ];
    for (k, v) in extra {
        vars.retain(|(key, _)| key != k);
        vars.push(((*k).into(), (*v).into()));
    }
    let settings = Settings::from_env(|k| vars.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()))
        .map_err(anyhow::Error::msg)?;
    Ok(Rig {
        app: App::new(settings).map_err(anyhow::Error::msg)?,
        sidecar,
        providers,
    })
}

/// An HTTP API (v2) request as API Gateway would send it.
fn v2(method: &str, path: &str) -> lambda_http::Request {
    let params = match_route(ROUTE, path).unwrap_or_default();
    let method: http::Method = method.parse().unwrap_or(http::Method::GET);
    let event = http_api_event(ROUTE, &method, path, "", &http::HeaderMap::new(), params, &Bytes::new());
    lambda_http::request::from_str(&event.to_string()).expect("valid v2 event")
}

/// A REST API (v1) request with a stage.
fn v1(path: &str, params: Value) -> lambda_http::Request {
    let event = json!({
        "resource": ROUTE,
        "path": path,
        "httpMethod": "GET",
        "headers": {"Host": "abc.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {"Host": ["abc.execute-api.us-east-1.amazonaws.com"]},
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": params,
        "stageVariables": null,
        "requestContext": {
            "resourceId": "x", "resourcePath": ROUTE, "httpMethod": "GET", "stage": "dev",
            "requestId": "r", "accountId": "123456789012", "apiId": "abc", "path": format!("/dev{path}"),
            "identity": {"sourceIp": "127.0.0.1"}, "protocol": "HTTP/1.1", "requestTimeEpoch": 0
        },
        "body": null,
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("valid v1 event")
}

async fn call(rig: &Rig, req: lambda_http::Request) -> (u16, Value) {
    let resp = handle(&rig.app, req).await;
    let status = resp.status().as_u16();
    let body: Value = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        lambda_http::Body::Binary(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, body)
}

#[tokio::test]
async fn each_provider_answers_in_celsius() -> anyhow::Result<()> {
    let rig = rig(&[]).await?;
    for provider in ["darksky", "openweathermap", "here"] {
        let (status, body) = call(&rig, v2("GET", &format!("/{provider}/52.52/13.4"))).await;
        assert_eq!(status, 200, "{provider}: {body}");
        assert_eq!(body["provider"], provider);
        assert_eq!(body["latitude"], 52.52);
        assert_eq!(body["longitude"], 13.4);
        assert_eq!(body["units"], "celsius");
        assert_eq!(body["temperature"], FakeProviders::celsius(52.52, 13.4), "{provider}");
    }
    assert_eq!(
        (
            rig.providers.calls(Api::DarkSky),
            rig.providers.calls(Api::OpenWeatherMap),
            rig.providers.calls(Api::Here)
        ),
        (1, 1, 1)
    );
    // The keys came from the right places, with decryption and the JSON field.
    let asked = rig.sidecar.requests().join("\n");
    assert!(
        asked.contains("name=%2Fweather%2Fdarksky-api-key&withDecryption=true"),
        "{asked}"
    );
    assert!(
        asked.contains("secretId=weather%2Fopenweathermap&jsonKey=appid"),
        "{asked}"
    );
    assert!(
        asked.contains("name=%2Fweather%2Fhere%2Fapi-key&withDecryption=true"),
        "{asked}"
    );
    Ok(())
}

#[tokio::test]
async fn rest_api_events_work_too() -> anyhow::Result<()> {
    let rig = rig(&[]).await?;
    let params = json!({"provider": "here", "latitude": "-33.9", "longitude": "151.2"});
    let (status, body) = call(&rig, v1("/here/-33.9/151.2", params)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["temperature"], FakeProviders::celsius(-33.9, 151.2));
    Ok(())
}

#[tokio::test]
async fn malformed_paths_and_methods() -> anyhow::Result<()> {
    let rig = rig(&[]).await?;
    for path in [
        "/darksky/abc/1",
        "/darksky/NaN/1",
        "/darksky/1/inf",
        "/darksky/90.1/0",
        "/here/0/-180.01",
        "/here/1e9/0",
    ] {
        let (status, body) = call(&rig, v2("GET", path)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("BadCoordinates")),
            "{path}"
        );
    }
    for path in ["/accuweather/1/2", "/darksky/1", "/darksky/1/2/3"] {
        let (status, _) = call(&rig, v2("GET", path)).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = call(&rig, v2("POST", "/darksky/1/2")).await;
    assert_eq!(status, 405);
    assert_eq!(rig.providers.calls(Api::DarkSky), 0, "nothing was asked of a provider");
    assert!(rig.sidecar.requests().is_empty(), "nor of the sidecar");
    Ok(())
}

#[tokio::test]
async fn provider_failures_and_timeouts() -> anyhow::Result<()> {
    let rig = rig(&[("PROVIDER_TIMEOUT_MILLIS", "300")]).await?;
    rig.providers.fail_with(Api::OpenWeatherMap, Some(500));
    let (status, body) = call(&rig, v2("GET", "/openweathermap/1/2")).await;
    assert_eq!((status, body["error"].as_str()), (502, Some("ProviderError")), "{body}");
    rig.providers.set_latency(Api::Here, Duration::from_secs(2));
    let (status, body) = call(&rig, v2("GET", "/here/1/2")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (504, Some("ProviderTimeout")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn sidecar_trouble_is_503() -> anyhow::Result<()> {
    let rig = rig(&[]).await?;
    rig.sidecar.set_down(true);
    let (status, body) = call(&rig, v2("GET", "/darksky/1/2")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("KeyUnavailable")),
        "{body}"
    );

    // Nothing listening at all.
    let port = harness::net::free_port().to_string();
    let unreachable = rig_with_port(&port).await?;
    let (status, _) = call(&unreachable, v2("GET", "/darksky/1/2")).await;
    assert_eq!(status, 503);
    Ok(())
}

async fn rig_with_port(port: &str) -> anyhow::Result<Rig> {
    rig(&[("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port)]).await
}

#[tokio::test]
async fn a_refused_key_is_refreshed_once_and_retried() -> anyhow::Result<()> {
    let rig = rig(&[]).await?;
    // The provider rotated the key; the sidecar still holds the old one until refreshed.
    rig.providers.set_key(Api::OpenWeatherMap, "owm-key-2");
    rig.sidecar
        .rotate("sm", "weather/openweathermap", r#"{"appid":"owm-key-2"}"#);
    let (status, body) = call(&rig, v2("GET", "/openweathermap/10/20")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rig.providers.rejected(Api::OpenWeatherMap), 1);
    assert_eq!(rig.providers.calls(Api::OpenWeatherMap), 2);
    assert_eq!(rig.sidecar.refreshes(), 1);
    let refreshed = rig
        .sidecar
        .requests()
        .iter()
        .filter(|r| r.contains("refreshNow=true"))
        .count();
    assert_eq!(refreshed, 1);

    // A key that stays wrong: one retry only, then 502.
    rig.providers.set_key(Api::Here, "nobody-has-this");
    let (status, body) = call(&rig, v2("GET", "/here/10/20")).await;
    assert_eq!((status, body["error"].as_str()), (502, Some("ProviderError")));
    assert_eq!(rig.providers.calls(Api::Here), 2);
    let text = body.to_string();
    assert!(
        !text.contains("here-key") && !text.contains("nobody-has-this"),
        "no key in errors: {text}"
    );
    Ok(())
}

/// `req` as the runtime hands it over in a tenant isolation function: the tenant
/// from `Lambda-Runtime-Aws-Tenant-Id`, in the invoke's context.
fn for_tenant(req: lambda_http::Request, tenant: &str) -> lambda_http::Request {
    use lambda_http::RequestExt;
    let mut ctx = lambda_http::Context::default();
    ctx.tenant_id = Some(tenant.to_owned());
    req.with_lambda_context(ctx)
}

#[tokio::test]
async fn a_per_tenant_key_is_the_invokes_tenants_and_no_request_picks_another() -> anyhow::Result<()> {
    let rig = rig(&[("OPENWEATHERMAP_SECRET", "weather/tenants/{tenant}/openweathermap")]).await?;
    rig.sidecar
        .secret("weather/tenants/acme/openweathermap", r#"{"appid":"owm-key"}"#);
    rig.sidecar
        .secret("weather/tenants/globex/openweathermap", r#"{"appid":"globex-key"}"#);
    let (status, body) = call(&rig, for_tenant(v2("GET", "/openweathermap/52.52/13.40"), "acme")).await;
    assert_eq!(status, 200, "{body}");
    // The provider only accepts acme's key: globex's would have been refused (401).
    let (status, body) = call(&rig, for_tenant(v2("GET", "/openweathermap/52.52/13.40"), "globex")).await;
    assert_eq!(status, 502, "globex's key is not the provider's: {body}");
    // No tenant from Lambda (not a tenant isolation function): a clear 500, no call.
    let (status, body) = call(&rig, v2("GET", "/openweathermap/52.52/13.40")).await;
    assert_eq!((status, body["error"].as_str()), (500, Some("TenantMissing")), "{body}");
    // Keys that are not per tenant are unaffected.
    let (status, _) = call(&rig, for_tenant(v2("GET", "/darksky/52.52/13.40"), "acme")).await;
    assert_eq!(status, 200);
    Ok(())
}
