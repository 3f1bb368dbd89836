//! Where Lambda tells the sidecar its tenant: a Telemetry API subscription to the
//! platform events, delivered to a listener of the sidecar's own on 127.0.0.1.
//!
//! The `platform.start` record of every invoke carries `tenantId` in a tenant
//! isolation function (none otherwise); the first one binds the tenancy
//! (`crate::tenant`). Lambda closes subscriptions when INIT ends, so this runs
//! during INIT. The listener's path holds 128 random bits that only Lambda is told
//! (in the subscription), so another process of the environment cannot speak for
//! Lambda by guessing where to post; a post elsewhere gets 404 and a warning.
//! Lambda buffers events and posts them in batches, so the record arrives some
//! milliseconds after the INVOKE event (the subscription asks for the least delay
//! Lambda accepts, 25 ms).

use std::convert::Infallible;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::tenant::{Reported, State, Tenancy};

/// The least buffering delay Lambda accepts, in milliseconds.
pub const DELAY_MS: u32 = 25;
/// A batch is at most 1 MiB (the subscription's `maxBytes` bound).
const MAX_BATCH: usize = 1 << 20;

/// One event of a batch; only `platform.start`'s record is read.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    record: serde_json::Value,
}

/// A started listener: the URI to subscribe with, and its task.
pub struct Listener {
    pub uri: String,
    pub task: JoinHandle<()>,
}

/// Binds 127.0.0.1 on a free port and serves Lambda's posts until `stop`.
pub async fn listen(tenancy: Arc<Tenancy>, stop: CancellationToken) -> std::io::Result<Listener> {
    let path: Arc<str> = format!("/telemetry/{}", random_hex()?).into();
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let uri = format!("http://127.0.0.1:{}{path}", listener.local_addr()?.port());
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        warn!(error = %e, "telemetry listener: accept failed");
                        continue;
                    }
                },
            };
            let (tenancy, path) = (tenancy.clone(), path.clone());
            let service = service_fn(move |req| answer(tenancy.clone(), path.clone(), req));
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Listener { uri, task })
}

async fn answer(
    tenancy: Arc<Tenancy>,
    path: Arc<str>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = if req.method() != Method::POST || req.uri().path() != &*path {
        warn!(method = %req.method(), "telemetry listener: a post to an unknown path, ignored");
        StatusCode::NOT_FOUND
    } else {
        match Limited::new(req.into_body(), MAX_BATCH).collect().await {
            Ok(body) => {
                read_batch(&tenancy, &body.to_bytes());
                StatusCode::OK
            }
            Err(_) => StatusCode::BAD_REQUEST,
        }
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    Ok(resp)
}

/// Reports every `platform.start` record's tenant to the tenancy.
pub fn read_batch(tenancy: &Tenancy, body: &[u8]) {
    let Ok(events) = serde_json::from_slice::<Vec<Event>>(body) else {
        warn!("telemetry listener: a batch that is not a JSON array of events, ignored");
        return;
    };
    for event in events.iter().filter(|e| e.kind == "platform.start") {
        let tenant = event.record.get("tenantId").and_then(|t| t.as_str());
        match tenancy.report(tenant) {
            Reported::Bound(State::Tenant(t)) => info!(tenant = %t, "bound to the tenant Lambda reported"),
            Reported::Bound(State::NoTenant) => {
                error!("Lambda reported an invoke without a tenant: {{tenant}} templates cannot resolve")
            }
            Reported::Bound(other) => error!(state = ?other, "the tenant Lambda reported cannot be used"),
            Reported::Conflict => error!(
                state = ?tenancy.binding().current(),
                "Lambda's reports of the tenant disagree: every tenant's id is refused"
            ),
            Reported::Same => {}
        }
    }
}

/// 128 bits from the OS, in hex; no fallback: a guessable path would let a
/// process of the environment bind the tenant.
fn random_hex() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
