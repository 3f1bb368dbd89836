//! The front door: the local HTTP server and the two doors behind it.
//!
//! Where a request goes: this file (accept loop, connection cap, drain) → `guard`
//! (slow request heads) → `router` (which door) → `extension_api` (AWS's extension
//! API: token, query string) or `sdk` (the SDKs' own protocol: signature, JSON
//! body) → `lookup` (the one decision both doors share: allowlist, `gate`, cache,
//! look-alikes, one table of refusals) → back to the door, which renders the answer
//! in its own format with the marks every answer carries (`answer`). `app` is the
//! state every handler shares.
//!
//! Listens on 127.0.0.1 only. Each connection is served by hyper's HTTP/1.1 server
//! with a bound on how large the request head may be and (see `guard`) how long it
//! may take to arrive; idle keep-alive connections are never timed out.
//! A connection over the cap takes the slot of a connection with no request in
//! flight (idle keep-alive, or one that never sent a byte), whatever its age, once
//! the socket itself confirms nothing is waiting in it (`socket`); only when every
//! connection is mid-request does it get a canned 503. On shutdown the listener
//! closes at once (new connects are refused), open connections finish the request in
//! progress and close, and the drain is bounded.

pub mod answer;
pub mod app;
pub mod extension_api;
pub mod gate;
pub mod guard;
pub mod lookup;
pub mod router;
pub mod sdk;
mod socket;
#[cfg(test)]
mod testing;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
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

pub use app::App;
use guard::{ConnState, GuardedIo, Stop};
use socket::SharedStream;

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

/// How long a connection over the cap waits for a reclaimed slot before its 503: the
/// victim only has to notice it was told to close (microseconds, unless the machine
/// is saturated), so this is a bound for bad days, not an expected wait.
const RECLAIM_WAIT: Duration = Duration::from_secs(1);

/// The open connections, so an idle one can be closed when the cap is reached.
#[derive(Default)]
struct Open {
    conns: Mutex<Vec<Weak<ConnState>>>,
}

impl Open {
    fn add(&self, state: &Arc<ConnState>) {
        let mut conns = self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if conns.len() >= 64 && conns.len().is_power_of_two() {
            conns.retain(|w| w.strong_count() > 0);
        }
        conns.push(Arc::downgrade(state));
    }

    /// Drops every connection whose request head is overdue.
    fn sweep_slow_heads(&self, limit: Duration) {
        let conns = self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for state in conns.iter().filter_map(Weak::upgrade) {
            if state.head_overdue(limit) {
                state.request_kill();
            }
        }
    }

    /// Tells every open connection that the server is shutting down.
    fn shut_down_all(&self) {
        let conns = self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for state in conns.iter().filter_map(Weak::upgrade) {
            state.request_shutdown();
        }
    }

    /// Asks the longest-idle connection with no request in flight (idle keep-alive,
    /// or never sent a byte), whatever its age, to close; one already asked is
    /// skipped, so concurrent newcomers each free a slot of their own.
    fn reclaim_one(&self) -> bool {
        let mut conns = self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        conns.retain(|w| w.strong_count() > 0);
        let mut idle: Vec<(Duration, Arc<ConnState>)> = conns
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| !s.stopping())
            .filter_map(|s| s.idle_for().map(|d| (d, s)))
            .collect();
        idle.sort_unstable_by_key(|(d, _)| std::cmp::Reverse(*d));
        // Longest idle first, asking the kernel (one peek each) until one has truly
        // nothing waiting: a request it has not reported yet must not be lost.
        let victim = idle.into_iter().map(|(_, s)| s).find(|s| !s.input_waiting());
        match victim {
            Some(state) => {
                // Idle means no request in progress: dropping the connection loses
                // nothing, and (unlike hyper's graceful shutdown) does not wait for a
                // first request from a connection that never sent one.
                state.request_kill();
                true
            }
            None => false,
        }
    }
}

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 74\r\nconnection: close\r\n\r\n{\"error\":\"TooManyConnections\",\"message\":\"connection limit reached; retry\"}";

/// Serves until `shutdown` fires, then drains.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken, limits: Limits) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Refusals are cheap but not free: past this many in progress, excess connects are just closed.
    let refusals = Arc::new(Semaphore::new(64));
    let open = Arc::new(Open::default());
    let tracker = TaskTracker::new();
    // One sweeper for every connection's head timer: nothing is woken per request.
    let sweeper = {
        let (open, shutdown, limit) = (open.clone(), shutdown.clone(), limits.header_read_timeout);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(limit / 10);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => open.sweep_slow_heads(limit),
                }
            }
        })
    };
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
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            app: app.clone(),
            shutdown: shutdown.clone(),
            limits: limits.clone(),
            open: open.clone(),
        };
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            tracker.spawn(conn.serve(stream, permit));
            continue;
        }
        // At the cap: close a connection with no request in flight and take its
        // slot. Each newcomer frees the permit it then waits for, so this needs no
        // refusal slot and is bounded by the cap itself.
        if open.reclaim_one() {
            let permits = permits.clone();
            tracker.spawn(async move {
                match tokio::time::timeout(RECLAIM_WAIT, permits.acquire_owned()).await {
                    Ok(Ok(permit)) => conn.serve(stream, permit).await,
                    _ => {
                        conn.app.metrics.connection_refused();
                        refuse(stream).await;
                    }
                }
            });
            continue;
        }
        // Every connection is mid-request: refuse, or (past this many refusals in
        // progress) just close.
        let Ok(slot) = refusals.clone().try_acquire_owned() else {
            app.metrics.connection_refused();
            continue;
        };
        tracker.spawn(async move {
            conn.app.metrics.connection_refused();
            refuse(stream).await;
            drop(slot);
        });
    }
    drop(listener);
    open.shut_down_all();
    sweeper.abort();
    tracker.close();
    if tokio::time::timeout(limits.drain, tracker.wait()).await.is_err() {
        debug!("drain time over; closing remaining connections");
    }
}

/// What a connection task needs.
struct Conn {
    app: Arc<App>,
    shutdown: CancellationToken,
    limits: Limits,
    open: Arc<Open>,
}

impl Conn {
    async fn serve(self, stream: TcpStream, permit: tokio::sync::OwnedSemaphorePermit) {
        let _permit = permit;
        self.app.metrics.connection_opened();
        let (stream, probe) = SharedStream::new(stream);
        let state = ConnState::watching(probe);
        self.open.add(&state);
        // Added after `shut_down_all` ran: it missed this one.
        if self.shutdown.is_cancelled() {
            state.request_shutdown();
        }
        serve_connection(stream, self.app.clone(), &self.limits, state).await;
        self.app.metrics.connection_closed();
    }
}

async fn serve_connection(stream: SharedStream, app: Arc<App>, limits: &Limits, state: Arc<ConnState>) {
    let service = {
        let state = state.clone();
        service_fn(move |req| {
            let app = app.clone();
            let state = state.clone();
            async move {
                state.begin_request();
                let resp = router::handle(&app, req).await;
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
        .keep_alive(true)
        // A client that sends its request and closes its side (`nc`, some scripts)
        // still gets its answer.
        .half_close(true);
    let io = TokioIo::new(GuardedIo::new(stream, state.clone()));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!(error = %e, "connection ended with an error");
            }
        }
        stop = state.stopped() => match stop {
            Stop::Kill => debug!("connection closed: request head too slow, or idle and its slot needed"),
            Stop::Shutdown => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        },
    }
}

/// Answers 503 to a connection over the cap and closes it without a reset: what the
/// client already sent is read (briefly) first, since closing a socket with unread
/// data makes the kernel send a reset that can discard the 503 before it is read.
/// The wait is short so a flood of silent connections cannot pin the refusal slots.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_millis(250), stream.write_all(REFUSAL)).await;
    let _ = stream.shutdown().await;
    // Read what the client sends until it closes (or briefly): closing with its
    // request unread would answer with a reset, which can destroy the 503 before a
    // client on a busy machine reads it.
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(250), async {
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

    /// The race a busy machine makes: a request reaches an idle connection's socket
    /// but the reactor has not reported it to the connection's task, which still
    /// looks idle. Here that is made certain by never yielding to the reactor (a
    /// current-thread runtime) between the client's write and the reclaim.
    /// Whether a read finds nothing for a while (and so leaves the connection quiet).
    async fn quiet(io: &mut GuardedIo<SharedStream>) -> bool {
        let mut sink = [0u8; 64];
        tokio::time::timeout(Duration::from_millis(20), io.read(&mut sink))
            .await
            .is_err()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_idle_connection_with_a_request_waiting_is_not_closed_for_its_slot() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("non-blocking");
        let (stream, probe) = SharedStream::new(TcpStream::from_std(server).expect("tokio stream"));
        let state = ConnState::watching(probe);
        let mut io = GuardedIo::new(stream, state.clone());
        let open = Open::default();
        open.add(&state);
        let mut buf = [0u8; 64];
        assert!(quiet(&mut io).await, "nothing sent yet");

        client.write_all(b"GET /ping HTTP/1.1\r\n").expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !state.input_waiting() {
            assert!(
                std::time::Instant::now() < deadline,
                "the kernel never held the request"
            );
            std::thread::yield_now();
        }
        assert!(state.idle_for().is_some(), "unreported: idle as far as its task knows");
        assert!(!open.reclaim_one(), "the kernel holds a request: no victim");
        assert!(!state.stopping());

        // Read and answered, then quiet again: now it may go.
        let n = io.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"GET /ping HTTP/1.1\r\n");
        state.begin_request();
        state.end_request();
        assert!(quiet(&mut io).await);
        assert!(open.reclaim_one());
        assert!(state.stopping());
    }

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
