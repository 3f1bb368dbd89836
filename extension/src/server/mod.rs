//! The local HTTP server: accept loop, connection cap, per-connection limits, drain.
//!
//! Listens on 127.0.0.1 only. Each connection is served by hyper's HTTP/1.1 server
//! with a bound on how large the request head may be and (see `guard`) how long it
//! may take to arrive; idle keep-alive connections are never timed out.
//! Connections over the cap get a canned 503 and are closed. On shutdown the listener
//! closes at once (new connects are refused), open connections finish the request in
//! progress and close, and the drain is bounded.

pub mod auth;
pub mod guard;
pub mod response;
pub mod routes;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::app::App;
use guard::{ConnState, GuardedIo};

/// Limits on what one client may do.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// Time allowed to send a request line and headers.
    pub header_read_timeout: Duration,
    /// Bound on the request line plus headers (hyper's read buffer; its minimum is 8 KiB).
    pub max_head_bytes: usize,
    /// Longest wait for open connections at shutdown.
    pub drain: Duration,
}

impl Limits {
    pub fn new(max_connections: usize) -> Self {
        Limits {
            max_connections,
            header_read_timeout: Duration::from_secs(5),
            max_head_bytes: 16 * 1024,
            drain: Duration::from_millis(500),
        }
    }
}

/// Binds the loopback listener. Binding happens before registration with Lambda so
/// the function never sees "connection refused".
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
}

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 74\r\nconnection: close\r\n\r\n{\"error\":\"TooManyConnections\",\"message\":\"connection limit reached; retry\"}";

/// Serves until `shutdown` fires, then drains.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken, limits: Limits) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Refusals are cheap but not free: past this many in progress, excess connects are just closed.
    let refusals = Arc::new(Semaphore::new(64));
    let tracker = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            app.metrics.connection_refused();
            if let Ok(slot) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let _slot = slot;
                    refuse(stream).await;
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        let limits = limits.clone();
        tracker.spawn(async move {
            let _permit = permit;
            app.metrics.connection_opened();
            serve_connection(stream, app.clone(), shutdown, &limits).await;
            app.metrics.connection_closed();
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(limits.drain, tracker.wait()).await.is_err() {
        debug!("drain time over; closing remaining connections");
    }
}

async fn serve_connection(stream: TcpStream, app: Arc<App>, shutdown: CancellationToken, limits: &Limits) {
    let state = ConnState::new();
    let service = {
        let state = state.clone();
        service_fn(move |req| {
            let app = app.clone();
            let state = state.clone();
            async move {
                state.begin_request();
                let resp = routes::handle(&app, req).await;
                state.end_request();
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let mut builder = http1::Builder::new();
    // hyper's own header timeout would also close idle keep-alive connections;
    // `guard` times only a request head in progress.
    builder
        .header_read_timeout(None)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .keep_alive(true);
    let io = TokioIo::new(GuardedIo::new(stream, state.clone()));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!(error = %e, "connection ended with an error");
            }
        }
        () = state.head_overdue(limits.header_read_timeout) => {
            debug!("request head too slow; closing the connection");
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Answers 503 to a connection over the cap and closes it without a reset.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(REFUSAL).await;
        let _ = stream.shutdown().await;
        // Read what the client sent so closing does not turn into a reset that
        // would discard the 503 before the client reads it.
        let mut sink = [0u8; 1024];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_a_well_formed_response() {
        let text = std::str::from_utf8(REFUSAL).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        assert_eq!(len, body.len());
        serde_json::from_str::<serde_json::Value>(body).expect("json body");
    }
}
