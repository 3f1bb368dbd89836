//! Bad input over raw sockets (reliability suite 3): malformed request lines, invalid
//! UTF-8 and percent-encoding, repeated or conflicting parameters, huge headers and
//! query strings, slow heads, pipelining, HTTP/1.0 and every other method. Each gets a
//! clean 4xx (or 505) or a closed connection; the process never crashes and its memory
//! stays bounded. (The fuzz targets in `fuzz/` cover the parsers further.)

use std::time::Duration;

use harness::moto::Moto;
use harness::sidecar::SidecarBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_secrets-sidecar");

type R = anyhow::Result<()>;

async fn send(addr: &str, bytes: &[u8]) -> anyhow::Result<String> {
    send_with(addr, bytes, true).await
}

/// Writes `bytes`, optionally half-closes, reads until the server closes (7 s at most).
async fn send_with(addr: &str, bytes: &[u8], half_close: bool) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    if half_close {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(7), s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The status code of the first response, or None when the connection closed without one.
fn status(text: &str) -> Option<u16> {
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clean_refusals() -> R {
    let moto = Moto::start().await?;
    moto.create_secret("s", "v").await?;
    let sc = SidecarBuilder::new(BIN).endpoint(&moto.endpoint()).spawn().await?;
    let addr = format!("127.0.0.1:{}", sc.port);
    let t = format!("X-Aws-Parameters-Secrets-Token: {}\r\n", sc.token);
    let pid = sc.proc.pid().unwrap_or(0);
    let rss_before = rss_kib(pid);

    let req = |line: &str, extra: &str| format!("{line}\r\nHost: x\r\n{t}{extra}\r\n").into_bytes();
    let mut cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), &[400]),
        ("method only", b"GET\r\n\r\n".to_vec(), &[400]),
        (
            "unknown HTTP version",
            b"GET /ping HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
            &[400, 505],
        ),
        (
            "NUL in the path",
            b"GET /p\0ing HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "header without a colon",
            b"GET /ping HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "invalid UTF-8 in the query",
            {
                let mut v = b"GET /secretsmanager/get?secretId=\xff\xfe HTTP/1.1\r\nHost: x\r\n".to_vec();
                v.extend_from_slice(t.as_bytes());
                v.extend_from_slice(b"\r\n");
                v
            },
            &[400],
        ),
        (
            "percent-encoded invalid UTF-8",
            req("GET /secretsmanager/get?secretId=%ff%fe HTTP/1.1", ""),
            &[400],
        ),
        (
            "broken percent-encoding",
            req("GET /secretsmanager/get?secretId=%zz%2 HTTP/1.1", ""),
            &[404],
        ),
        (
            "repeated parameter",
            req("GET /secretsmanager/get?secretId=s&secretId=t HTTP/1.1", ""),
            &[400],
        ),
        (
            "conflicting selectors",
            req(
                "GET /secretsmanager/get?secretId=s&versionId=a&versionStage=b HTTP/1.1",
                "",
            ),
            &[400],
        ),
        (
            "conflicting SSM selectors",
            req("GET /systemsmanager/parameters/get?name=/a:1&version=2 HTTP/1.1", ""),
            &[400],
        ),
        (
            "unknown parameter",
            req("GET /secretsmanager/get?secretId=s&evil=1 HTTP/1.1", ""),
            &[400],
        ),
        (
            "empty id",
            req("GET /secretsmanager/get?secretId= HTTP/1.1", ""),
            &[400],
        ),
        (
            "huge query",
            req(
                &format!("GET /secretsmanager/get?secretId={} HTTP/1.1", "a".repeat(40_000)),
                "",
            ),
            &[400, 414, 431],
        ),
        (
            "huge header",
            req("GET /ping HTTP/1.1", &format!("X-Big: {}\r\n", "b".repeat(40_000))),
            &[431],
        ),
        (
            "many headers",
            req("GET /ping HTTP/1.1", &"X-A: 1\r\n".repeat(500)),
            &[400, 431],
        ),
        (
            "chunked garbage body",
            req(
                "POST /secretsmanager/get?secretId=s HTTP/1.1",
                "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            ),
            &[400, 405],
        ),
        (
            "absolute-form URI",
            req("GET http://elsewhere/secretsmanager/get?secretId=nope HTTP/1.1", ""),
            &[404],
        ),
    ];
    // HEAD gets the 405 status line and no body, as HTTP requires.
    cases.push(("HEAD", req("HEAD /secretsmanager/get?secretId=s HTTP/1.1", ""), &[405]));
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
        cases.push((
            "other method",
            req(
                &format!("{method} /secretsmanager/get?secretId=s HTTP/1.1"),
                "Content-Length: 0\r\n",
            ),
            &[405],
        ));
    }
    for (what, bytes, allowed) in &cases {
        let answer = send(&addr, bytes).await?;
        match status(&answer) {
            Some(code) => assert!(
                allowed.contains(&code),
                "{what}: got {code}, want one of {allowed:?}\n{answer}"
            ),
            None => assert!(answer.is_empty(), "{what}: not an HTTP answer: {answer:?}"),
        }
        if let Some(code) = status(&answer) {
            if code != 505 && *what != "HEAD" && code >= 400 && answer.contains("content-type: application/json") {
                assert!(answer.contains("\"error\""), "{what}: error bodies are JSON: {answer}");
            }
        }
    }

    // Pipelining: two requests in one write, two answers in order.
    let two = format!("GET /ping HTTP/1.1\r\nHost: x\r\n\r\nGET /secretsmanager/get?secretId=s HTTP/1.1\r\nHost: x\r\n{t}Connection: close\r\n\r\n");
    // (No half-close here: a pipelining client keeps its side open; the second
    // request's Connection: close ends the exchange.)
    let answer = send_with(&addr, two.as_bytes(), false).await?;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(
        answer.find("\"ready\"") < answer.find("SecretString"),
        "in order: {answer}"
    );

    // HTTP/1.0 gets an HTTP/1.0 answer and a closed connection.
    let old = send(
        &addr,
        format!("GET /secretsmanager/get?secretId=s HTTP/1.0\r\n{t}\r\n").as_bytes(),
    )
    .await?;
    assert!(old.starts_with("HTTP/1.0 200"), "{old}");

    // Slow heads, many at once, do not stop the service.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(&addr).await?;
        s.write_all(b"GET /ping HTTP/1.1\r\nHo").await?;
        slow.push(s);
    }
    let r = sc.get("/secretsmanager/get?secretId=s").await?;
    assert_eq!(r.status, 200, "served beside 50 slow heads");
    drop(slow);

    // The process is alive, still serving, and its memory did not run away.
    assert!(sc
        .proc
        .pid()
        .is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists()));
    let rss_after = rss_kib(pid);
    eprintln!(
        "{} malformed inputs; RSS {rss_before} KiB → {rss_after} KiB",
        cases.len() + 3
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    Ok(())
}
