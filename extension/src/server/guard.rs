//! Slow-client protection that leaves idle keep-alive connections alone.
//!
//! hyper's own header-read timeout also runs while a kept-alive connection waits
//! for its next request, so it closes idle connections. In Lambda that is a trap:
//! the timer keeps counting while the environment is frozen, fires on thaw, and
//! races the function reusing its pooled socket ("socket hang up"). Instead, each
//! connection tracks its phase: idle (nothing of a request yet), head (bytes of a
//! request arrived, handler not yet called) or busy (handler running). Only the
//! head phase is timed; a watchdog closes the connection when a head takes longer
//! than the limit, and sleeps (no wake-ups at all) while the connection is idle.
//!
//! The phase also lets the server reclaim a slot: when the connection cap is reached,
//! the connection idle the longest is asked to close, so idle keep-alive connections
//! cannot lock authorised callers out.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::socket::Probe;

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

pub struct ConnState {
    phase: AtomicU8,
    /// When the current head started, in ms since `epoch`.
    head_since_ms: AtomicU64,
    /// When the connection last became idle (or was accepted), in ms since `epoch`.
    idle_since_ms: AtomicU64,
    epoch: Instant,
    /// Why the connection was told to stop (`NONE`, `KILL` or `SHUTDOWN`), with
    /// `stop` to wake it. One signal for both reasons: the connection task then waits
    /// on one future besides hyper's, and each wake-up polls one instead of two.
    stop_reason: AtomicU8,
    stop: Notify,
    /// The last read found nothing waiting, and no input has arrived since (the
    /// reactor has not woken the reader). Only such a connection may be closed to
    /// make room: an idle one whose next request sits unread in the socket (its task
    /// not yet run on a busy machine) must not lose it. False until the first read.
    quiet: AtomicBool,
    /// The socket, to ask the kernel itself before the connection is closed for its
    /// slot: `quiet` cannot see input the reactor has not reported yet.
    probe: Option<Probe>,
}

const NONE: u8 = 0;
const KILL: u8 = 1;
const SHUTDOWN: u8 = 2;

/// What a connection was told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Drop it now: its head is overdue, or it is idle and its slot is needed.
    Kill,
    /// The server is shutting down: finish the request in progress, then close.
    Shutdown,
}

impl ConnState {
    /// A connection whose socket can be peeked (the server's).
    pub fn watching(probe: Probe) -> Arc<ConnState> {
        Self::with_probe(Some(probe))
    }

    /// A connection over a stream that is not a socket (tests).
    #[cfg(test)]
    pub fn new() -> Arc<ConnState> {
        Self::with_probe(None)
    }

    fn with_probe(probe: Option<Probe>) -> Arc<ConnState> {
        Arc::new(ConnState {
            phase: AtomicU8::new(IDLE),
            head_since_ms: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            stop_reason: AtomicU8::new(NONE),
            stop: Notify::new(),
            quiet: AtomicBool::new(false),
            probe,
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn on_bytes(&self) {
        if self.phase.load(Relaxed) == IDLE {
            self.head_since_ms.store(self.now_ms(), Relaxed);
            self.phase.store(HEAD, Relaxed);
        }
    }

    /// The handler was called: the head is complete.
    pub fn begin_request(&self) {
        self.phase.store(BUSY, Relaxed);
    }

    /// The handler returned: the connection waits for the next request.
    pub fn end_request(&self) {
        self.idle_since_ms.store(self.now_ms(), Relaxed);
        self.phase.store(IDLE, Relaxed);
    }

    /// How long the connection has been idle (no request in progress, and nothing
    /// of the next one received, read or not), if it is.
    pub fn idle_for(&self) -> Option<Duration> {
        (self.phase.load(Relaxed) == IDLE && self.quiet.load(Acquire))
            .then(|| Duration::from_millis(self.now_ms().saturating_sub(self.idle_since_ms.load(Relaxed))))
    }

    /// Whether the kernel holds unread input for this connection (a request that
    /// arrived after the last read, or the peer's close); see `socket`.
    pub fn input_waiting(&self) -> bool {
        self.probe.as_ref().is_some_and(Probe::input_waiting)
    }

    /// Whether a request head has been arriving for longer than `limit`.
    pub fn head_overdue(&self, limit: Duration) -> bool {
        self.phase.load(Relaxed) == HEAD
            && self.now_ms().saturating_sub(self.head_since_ms.load(Relaxed)) > limit.as_millis() as u64
    }

    /// Whether the connection has been told to stop (and will close shortly).
    pub fn stopping(&self) -> bool {
        self.stop_reason.load(Acquire) != NONE
    }

    pub fn request_kill(&self) {
        self.signal(KILL);
    }

    pub fn request_shutdown(&self) {
        self.signal(SHUTDOWN);
    }

    /// The first reason given wins: a kill is not downgraded, nor a shutdown upgraded.
    fn signal(&self, reason: u8) {
        if self.stop_reason.compare_exchange(NONE, reason, AcqRel, Acquire).is_ok() {
            self.stop.notify_one();
        }
    }

    /// Waits until the connection is told to stop, and says why.
    pub async fn stopped(&self) -> Stop {
        self.stop.notified().await;
        match self.stop_reason.load(Acquire) {
            SHUTDOWN => Stop::Shutdown,
            _ => Stop::Kill,
        }
    }
}

/// A stream that reports arriving bytes to its [`ConnState`].
pub struct GuardedIo<T> {
    inner: T,
    state: Arc<ConnState>,
    /// The reader's waker, wrapped to note input arriving; kept while the task's
    /// waker stays the same, so a read allocates nothing.
    waker: Option<Arc<InputWaker>>,
}

impl<T> GuardedIo<T> {
    pub fn new(inner: T, state: Arc<ConnState>) -> Self {
        GuardedIo {
            inner,
            state,
            waker: None,
        }
    }
}

/// Wakes the reading task, noting first that input has arrived.
struct InputWaker {
    state: Weak<ConnState>,
    task: Waker,
}

impl Wake for InputWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(state) = self.state.upgrade() {
            state.quiet.store(false, Release);
        }
        self.task.wake_by_ref();
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let wrapped = match &this.waker {
            Some(w) if w.task.will_wake(cx.waker()) => w.clone(),
            _ => {
                let w = Arc::new(InputWaker {
                    state: Arc::downgrade(&this.state),
                    task: cx.waker().clone(),
                });
                this.waker = Some(w.clone());
                w
            }
        };
        let waker = Waker::from(wrapped);
        let before = buf.filled().len();
        // Quiet from before the read: input arriving after this point wakes the
        // reader through `InputWaker`, which clears it again.
        this.state.quiet.store(true, Release);
        let result = Pin::new(&mut this.inner).poll_read(&mut Context::from_waker(&waker), buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.quiet.store(false, Release);
            this.state.on_bytes();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_a_head_in_progress_is_timed() {
        let state = ConnState::new();
        let limit = Duration::from_secs(5);
        // Idle for a long time: never overdue.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(!state.head_overdue(limit));
        // A head that completes in time, then a busy handler that takes long.
        state.on_bytes();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!state.head_overdue(limit));
        state.begin_request();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!state.head_overdue(limit));
        state.end_request();
        state.quiet.store(true, Release);
        assert!(state.idle_for().is_some());
        // A head that never completes.
        state.on_bytes();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(state.head_overdue(limit));
        assert!(state.idle_for().is_none());
    }

    #[tokio::test]
    async fn only_a_connection_with_no_input_waiting_counts_as_idle() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64);
        let state = ConnState::new();
        let mut io = GuardedIo::new(server, state.clone());
        assert!(state.idle_for().is_none(), "never read: unknown, so not idle");
        let mut buf = [0u8; 16];
        // A read that finds nothing waiting leaves the connection quiet, hence idle.
        let read = tokio::time::timeout(Duration::from_millis(20), io.read(&mut buf)).await;
        assert!(read.is_err(), "nothing to read yet");
        assert!(state.idle_for().is_some());
        // Input arrives but is not read yet (a busy machine has not run the task):
        // no longer idle.
        client.write_all(b"GET /").await.expect("write");
        assert!(state.idle_for().is_none(), "unread input makes it busy");
        let n = io.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"GET /");
        assert!(state.idle_for().is_none(), "a head in progress");
    }
}
