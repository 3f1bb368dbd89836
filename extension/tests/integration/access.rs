//! Access (reliability suite 4): missing and wrong tokens, tokens of other lengths,
//! `X-Forwarded-For`, ids outside the allowlist and `/metrics` without the token are
//! all refused, never reach upstream, and are logged without the token; the listener
//! answers on 127.0.0.1 and on no other local address.

use std::net::UdpSocket;
use std::time::Duration;

use harness::moto::Moto;
use harness::proxy::FaultProxy;
use harness::sidecar::{SidecarBuilder, TOKEN_HEADER};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_secrets-sidecar");

type R = anyhow::Result<()>;

/// (what is tried, headers sent, status expected)
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

/// This machine's address on its default route (a UDP "connect" sends nothing).
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    s.local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_without_the_right_token_or_id_is_refused() -> R {
    let moto = Moto::start().await?;
    moto.create_secret("app/allowed", "v").await?;
    moto.create_secret("other/denied", "w").await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let mut sc = SidecarBuilder::new(BIN)
        .endpoint(&proxy.endpoint())
        .var("SECRETS_SIDECAR_ALLOW", "secretsmanager:app/*")
        .spawn()
        .await?;
    let path = "/secretsmanager/get?secretId=app/allowed";
    let token = sc.token.clone();
    let shorter = token[..token.len() - 1].to_owned();
    let longer = format!("{token}0");
    let same_length = format!("{}X", &token[..token.len() - 1]);
    let huge = "t".repeat(8000);
    let upper = token.to_uppercase();
    let cases: Vec<Case> = vec![
        ("no token", vec![], 401),
        ("empty token", vec![(TOKEN_HEADER, "")], 403),
        ("one byte short", vec![(TOKEN_HEADER, &shorter)], 403),
        ("one byte long", vec![(TOKEN_HEADER, &longer)], 403),
        ("same length, last byte wrong", vec![(TOKEN_HEADER, &same_length)], 403),
        ("8000-byte token", vec![(TOKEN_HEADER, &huge)], 403),
        ("upper-case token", vec![(TOKEN_HEADER, &upper)], 403),
        (
            "right token, forwarded",
            vec![(TOKEN_HEADER, &token), ("X-Forwarded-For", "203.0.113.7")],
            400,
        ),
    ];
    for (what, headers, expected) in &cases {
        let r = sc.get_with(path, headers).await?;
        assert_eq!(r.status, *expected, "{what}: {}", r.text());
    }
    let r = sc.get_with("/metrics", &[]).await?;
    assert_eq!(r.status, 401, "metrics need the token");
    let denied = sc.get("/secretsmanager/get?secretId=other/denied").await?;
    assert_eq!(
        (denied.status, denied.json()["error"].as_str()),
        (403, Some("NotAllowed"))
    );
    let by_arn = sc
        .get("/secretsmanager/get?secretId=arn:aws:secretsmanager:us-east-1:123456789012:secret:other/denied-AbCdEf")
        .await?;
    assert_eq!(by_arn.status, 403, "an ARN does not get around the allowlist");
    assert_eq!(proxy.total(), 0, "refused requests never reach upstream");
    assert_eq!(sc.get(path).await?.status, 200, "the right token and id still work");

    sc.proc.signal("TERM").await?;
    sc.proc.wait_exit(Duration::from_secs(5)).await?;
    let logs = sc.proc.logs.lines().join("\n");
    assert!(logs.contains("other/denied"), "allowlist refusals are logged by id");
    assert!(
        logs.matches("refused request").count() >= cases.len(),
        "auth refusals are logged"
    );
    assert!(!logs.contains(&token) && !logs.contains(&huge), "no token in the logs");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_is_on_loopback_only() -> R {
    let moto = Moto::start().await?;
    let sc = SidecarBuilder::new(BIN).endpoint(&moto.endpoint()).spawn().await?;
    assert!(TcpStream::connect(("127.0.0.1", sc.port)).await.is_ok());
    assert!(
        TcpStream::connect(("127.0.0.2", sc.port)).await.is_err(),
        "another loopback address"
    );
    assert!(TcpStream::connect(("::1", sc.port)).await.is_err(), "IPv6 loopback");
    if let Some(ip) = non_loopback_address() {
        assert!(
            TcpStream::connect((ip, sc.port)).await.is_err(),
            "the machine's address {ip}"
        );
    }
    Ok(())
}
