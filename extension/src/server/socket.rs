//! A connection's socket, shared by the task that serves it and the accept loop,
//! which may have to ask the kernel whether a request is waiting in it.
//!
//! Why: when the connection cap is reached, an idle connection is closed to make
//! room. "Idle" as the serving task sees it lags the kernel: a request that has
//! just arrived is invisible to the task until the runtime's reactor next reports
//! the socket readable, which on a saturated machine can come after the accept loop
//! has already picked a victim. Closing that connection would lose a request its
//! client already sent. So before a connection is closed for its slot, the socket
//! itself is peeked (`MSG_PEEK`, non-blocking): only one with nothing waiting goes.
//!
//! Sharing the stream means reading and writing through `&TcpStream` (readiness,
//! then a non-blocking `try_*` call), which is what tokio's own halves do.

use std::io;
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{ready, Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The most one read takes from the socket. hyper lends its buffer uninitialised,
/// and safe code may not hand uninitialised bytes to `read`: zeroing hyper's buffer
/// before every read cost about 250 instructions per request (a 2 KiB `memset`,
/// bench section 7), so reads go to a buffer of the connection's own, zeroed once,
/// and only the bytes that arrived are copied (a request is a few hundred).
const READ_CHUNK: usize = 4096;

/// The serving side: an `AsyncRead + AsyncWrite` over a stream the accept loop
/// can still peek.
pub struct SharedStream {
    stream: Arc<TcpStream>,
    scratch: Box<[u8]>,
}

/// The accept loop's side: no ownership, so the socket closes when its
/// connection ends, whoever holds a probe.
#[derive(Clone, Debug, Default)]
pub struct Probe(Weak<TcpStream>);

impl SharedStream {
    pub fn new(stream: TcpStream) -> (SharedStream, Probe) {
        let stream = Arc::new(stream);
        let probe = Probe(Arc::downgrade(&stream));
        let scratch = vec![0; READ_CHUNK].into_boxed_slice();
        (SharedStream { stream, scratch }, probe)
    }
}

impl Probe {
    /// Whether the kernel holds input for this connection that nobody has read:
    /// a request (or the peer's close). Only `false` when the socket is open and
    /// its receive queue is empty; an error or a closed socket counts as `true`,
    /// so such a connection is left to end by itself rather than chosen.
    pub fn input_waiting(&self) -> bool {
        let Some(stream) = self.0.upgrade() else {
            return true;
        };
        let mut one = [MaybeUninit::<u8>::uninit(); 1];
        // The socket is non-blocking (tokio made it so): an empty queue is WouldBlock.
        !matches!(SockRef::from(&*stream).peek(&mut one), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.stream.poll_read_ready(cx))?;
            let room = buf.remaining().min(this.scratch.len());
            match this.stream.try_read(&mut this.scratch[..room]) {
                Ok(n) => {
                    buf.put_slice(&this.scratch[..n]);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; it is cleared now, so the next poll waits.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// One non-blocking `write` once the socket is writable. Readiness can be stale: a
/// `WouldBlock` clears it, so the next round waits for the reactor again.
fn poll_writing(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    mut write: impl FnMut(&TcpStream) -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_write_ready(cx))?;
        match write(stream) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return Poll::Ready(result),
        }
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        poll_writing(&self.stream, cx, |stream| stream.try_write(data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_writing(&self.stream, cx, |stream| stream.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Writes go straight to the socket: nothing is buffered here.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Closes the write side, as tokio's `TcpStream` does (a FIN; reading goes on).
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(SockRef::from(&*self.stream).shutdown(Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn the_probe_sees_input_the_reader_has_not_taken() {
        let (mut client, server) = pair().await;
        let (mut io, probe) = SharedStream::new(server);
        assert!(!probe.input_waiting(), "nothing sent yet");
        client.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        // Arrival is asynchronous even on loopback: wait for the kernel, bounded.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !probe.input_waiting() {
            assert!(tokio::time::Instant::now() < deadline, "input never seen");
            tokio::task::yield_now().await;
        }
        // Peeking took nothing: the reader gets every byte.
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n");
        assert!(!probe.input_waiting(), "read: the queue is empty again");
        // A peer that closed leaves an end of file waiting: not a quiet connection.
        drop(client);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !probe.input_waiting() {
            assert!(tokio::time::Instant::now() < deadline, "close never seen");
            tokio::task::yield_now().await;
        }
        // Once the connection is gone the probe reports it as not choosable.
        drop(io);
        assert!(probe.input_waiting());
    }

    #[tokio::test]
    async fn reads_and_writes_pass_through_in_chunks() {
        let (mut client, server) = pair().await;
        let (mut io, _probe) = SharedStream::new(server);
        let big = vec![7u8; 3 * READ_CHUNK + 5];
        client.write_all(&big).await.expect("write");
        let mut got = vec![0u8; big.len()];
        io.read_exact(&mut got).await.expect("read");
        assert_eq!(got, big);
        io.write_all(b"answer").await.expect("write");
        io.shutdown().await.expect("shutdown");
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.expect("read to end");
        assert_eq!(back, b"answer");
    }
}
