//! The ceiling for any localhost sidecar: a minimal hyper server that answers every
//! request with fixed bytes and the same headers as a sidecar cache hit. Benchmarks
//! run it beside `secrets-sidecar` and report the sidecar's throughput as a ratio.
//!
//! Usage: `baseline-server PORT BODY_FILE`

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HeaderValue, AGE, CACHE_CONTROL, CONTENT_TYPE};
use http::Response;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let body = Bytes::from(std::fs::read(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: baseline-server PORT BODY_FILE"))?,
    )?);
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let mut resp = Response::new(Full::new(body.clone()));
                let h = resp.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                h.insert("x-secrets-sidecar-cache", HeaderValue::from_static("hit"));
                h.insert(AGE, HeaderValue::from(0u64));
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
