//! The wrapper's HTTP/1.1 client for the sidecar on 127.0.0.1: one `GET` per
//! connection (`Connection: close`), blocking, standard library only, within one
//! overall deadline.
//!
//! The sidecar binds its port before it registers, and Lambda starts the runtime
//! only after every extension registered, so in Lambda the first connect succeeds.
//! Standalone, a container's entrypoint may run before the sidecar listens: a
//! refused connection is retried until the deadline.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

/// A response: status and body (the body may be a secret value: zeroized on drop).
pub struct Response {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

/// Why no response came. Messages never carry a body.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the sidecar on 127.0.0.1:{port} within {waited:?}: {source}")]
    Connect {
        port: u16,
        waited: Duration,
        source: io::Error,
    },
    #[error("the sidecar did not answer in time")]
    Timeout,
    #[error("talking to the sidecar failed: {0}")]
    Io(io::Error),
    #[error("the sidecar's answer is not valid HTTP/1.1")]
    Malformed,
}

pub struct Sidecar {
    port: u16,
    token: Zeroizing<String>,
    deadline: Instant,
}

/// First wait between connection attempts; doubles up to `MAX_RETRY_PAUSE`.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(10);
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(200);

impl Sidecar {
    pub fn new(port: u16, token: Zeroizing<String>, budget: Duration) -> Sidecar {
        Sidecar {
            port,
            token,
            deadline: Instant::now() + budget,
        }
    }

    fn remaining(&self) -> Result<Duration, ClientError> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(ClientError::Timeout)
    }

    fn connect(&self) -> Result<TcpStream, ClientError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let started = Instant::now();
        let mut pause = FIRST_RETRY_PAUSE;
        loop {
            let left = self.remaining().map_err(|_| ClientError::Connect {
                port: self.port,
                waited: started.elapsed(),
                source: io::ErrorKind::TimedOut.into(),
            })?;
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => return Ok(s),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::thread::sleep(pause.min(left));
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
                Err(source) => {
                    return Err(ClientError::Connect {
                        port: self.port,
                        waited: started.elapsed(),
                        source,
                    })
                }
            }
        }
    }

    /// `GET path_and_query` with the token header.
    pub fn get(&self, path_and_query: &str) -> Result<Response, ClientError> {
        let mut stream = self.connect()?;
        let left = self.remaining()?;
        stream.set_read_timeout(Some(left)).map_err(ClientError::Io)?;
        stream.set_write_timeout(Some(left)).map_err(ClientError::Io)?;
        let request = Zeroizing::new(format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: localhost\r\nX-Aws-Parameters-Secrets-Token: {}\r\nConnection: close\r\n\r\n",
            self.token.as_str()
        ));
        stream.write_all(request.as_bytes()).map_err(io_error)?;
        let mut raw = Zeroizing::new(Vec::with_capacity(1024));
        stream.read_to_end(&mut raw).map_err(io_error)?;
        parse(&raw)
    }
}

fn io_error(e: io::Error) -> ClientError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
        _ => ClientError::Io(e),
    }
}

/// Splits a whole response into status and body (by `Content-Length`, chunked, or
/// to the end of the stream).
fn parse(raw: &[u8]) -> Result<Response, ClientError> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ClientError::Malformed)?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| ClientError::Malformed)?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 ").or_else(|| l.strip_prefix("HTTP/1.0 ")))
        .and_then(|l| l.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(ClientError::Malformed)?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| ClientError::Malformed)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n).ok_or(ClientError::Malformed)?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        body: Zeroizing::new(body),
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::with_capacity(data.len());
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(ClientError::Malformed)?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| ClientError::Malformed)?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ClientError::Malformed)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or(ClientError::Malformed)?);
        data = data.get(size + 2..).ok_or(ClientError::Malformed)?;
    }
}

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lengths_and_chunks() {
        let r = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcdef").expect("ok");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
        let r =
            parse(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
                .expect("chunked");
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
        let r = parse(b"HTTP/1.1 200 OK\r\n\r\nto the end").expect("eof");
        assert_eq!(r.body.as_slice(), b"to the end");
        for bad in [
            &b"garbage"[..],
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort",
        ] {
            assert!(parse(bad).is_err());
        }
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("app/db"), "app%2Fdb");
        assert_eq!(encode("a b+c&d=é"), "a%20b%2Bc%26d%3D%C3%A9");
        assert_eq!(encode("Az09-._~"), "Az09-._~");
    }

    #[test]
    fn a_refused_port_is_retried_until_the_deadline() {
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let client = Sidecar::new(port, Zeroizing::new("t".into()), Duration::from_millis(300));
        let started = Instant::now();
        let err = client.get("/ping").err().expect("nobody listens");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    }

    #[test]
    fn sends_the_token_and_reads_the_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).expect("read");
                head.push(byte[0]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .expect("write");
            String::from_utf8(head).expect("utf8")
        });
        let client = Sidecar::new(port, Zeroizing::new("tok".into()), Duration::from_secs(5));
        let r = client.get("/secretsmanager/get?secretId=a&raw=true").expect("answer");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let head = server.join().expect("server");
        assert!(
            head.starts_with("GET /secretsmanager/get?secretId=a&raw=true HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nX-Aws-Parameters-Secrets-Token: tok\r\n"), "{head}");
    }
}
