//! The metrics endpoint: a minimal HTTP/1.1 responder on tokio for `GET /metrics`.
//! Every answer is bounded: one request per connection (`Connection: close`), a
//! request head of at most `MAX_HEAD` bytes (431 beyond), no request body (413),
//! unknown paths 404, other methods 405, a client that does not finish its request
//! within `READ_TIMEOUT` gets 408, and at most `MAX_ACTIVE` connections are served
//! at once with `MAX_WAITING` more queued for up to `QUEUE_WAIT` (503 beyond).
//! Parsing and responses are pure and unit-tested; only `serve` does I/O.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use super::{CONTENT_TYPE, Metrics};

/// Largest request head (request line and headers) read; a scrape needs ~200 bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the whole response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_ACTIVE: usize = 4;
/// Connections that may wait for a slot, each for at most QUEUE_WAIT.
pub const MAX_WAITING: usize = 16;
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// `--metrics-addr`: HOST:PORT, where HOST is an IP address or `localhost`. A bare
/// port is refused rather than guessed: where the endpoint listens is the
/// operator's explicit choice (loopback unless they name another address).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| format!("`{port}` in `{s}` is not a port number (0-65535)"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(port) = s.parse::<u16>() {
        return Err(format!(
            "`{s}` is a port without a host: use 127.0.0.1:{port} (this host only) or 0.0.0.0:{port} (every interface)"
        ));
    }
    Err(format!("`{s}` is not HOST:PORT (e.g. 127.0.0.1:9632, [::1]:9632, localhost:9632)"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path, without any query string.
    pub path: String,
}

/// Why a request cannot be served; each maps to one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    HeadTooLarge,
    BodyNotAllowed,
    Malformed(&'static str),
    VersionNotSupported,
}

/// Parses a request head from the bytes read so far: Ok(None) while incomplete.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, Reject> {
    let Some(end) = find(buf, b"\r\n\r\n").map(|i| i + 4).or_else(|| find(buf, b"\n\n").map(|i| i + 2)) else {
        return if buf.len() >= MAX_HEAD { Err(Reject::HeadTooLarge) } else { Ok(None) };
    };
    if end > MAX_HEAD {
        return Err(Reject::HeadTooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| Reject::Malformed("the request head is not UTF-8"))?;
    let mut lines = head.lines();
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::Malformed("the request line is not METHOD TARGET VERSION"));
    };
    if !version.starts_with("HTTP/") {
        return Err(Reject::Malformed("the request line has no HTTP version"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(Reject::VersionNotSupported);
    }
    if !target.starts_with('/') {
        return Err(Reject::Malformed("the target is not an absolute path"));
    }
    for h in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = h.split_once(':') else {
            return Err(Reject::Malformed("a header line has no colon"));
        };
        let name = name.trim();
        let value = value.trim();
        let has_body = (name.eq_ignore_ascii_case("content-length") && value != "0")
            || name.eq_ignore_ascii_case("transfer-encoding");
        if has_body {
            return Err(Reject::BodyNotAllowed);
        }
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let path = target.split(['?', '#']).next().unwrap_or_default().to_string();
    Ok(Some(Request { method, path }))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    HeaderFieldsTooLarge,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::BadRequest => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::PayloadTooLarge => 413,
            Self::HeaderFieldsTooLarge => 431,
            Self::ServiceUnavailable => 503,
            Self::VersionNotSupported => 505,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::BadRequest => "Bad Request",
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::RequestTimeout => "Request Timeout",
            Self::PayloadTooLarge => "Payload Too Large",
            Self::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Self::ServiceUnavailable => "Service Unavailable",
            Self::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    pub body: String,
    /// HEAD: the headers describe the body, which is not sent.
    pub omit_body: bool,
}

impl Response {
    fn text(status: Status, body: impl Into<String>) -> Self {
        Self { status, content_type: "text/plain; charset=utf-8", body: body.into(), omit_body: false }
    }

    pub fn rejected(r: Reject) -> Self {
        match r {
            Reject::HeadTooLarge => {
                Self::text(Status::HeaderFieldsTooLarge, format!("request head over {MAX_HEAD} bytes\n"))
            }
            Reject::BodyNotAllowed => Self::text(Status::PayloadTooLarge, "this endpoint takes no request body\n"),
            Reject::Malformed(why) => Self::text(Status::BadRequest, format!("{why}\n")),
            Reject::VersionNotSupported => Self::text(Status::VersionNotSupported, "HTTP/1.0 or HTTP/1.1 only\n"),
        }
    }

    pub fn timeout() -> Self {
        Self::text(Status::RequestTimeout, format!("no complete request within {}s\n", READ_TIMEOUT.as_secs()))
    }

    pub fn busy() -> Self {
        Self::text(Status::ServiceUnavailable, "too many connections; retry later\n")
    }

    /// Bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status.code(),
            self.status.reason(),
            self.content_type,
            self.body.len()
        );
        if self.status == Status::MethodNotAllowed {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !self.omit_body {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// What a parsed request gets; `metrics` renders only for `/metrics`.
pub fn route(req: &Request, metrics: impl FnOnce() -> String) -> Response {
    let mut r = match (req.method, req.path.as_str()) {
        (Method::Other, _) => Response::text(Status::MethodNotAllowed, "GET or HEAD only\n"),
        (_, "/metrics") => Response { status: Status::Ok, content_type: CONTENT_TYPE, body: metrics(), omit_body: false },
        (_, "/") => Response::text(Status::Ok, "netpoll-trace agent: metrics at /metrics\n"),
        (_, p) => Response::text(Status::NotFound, format!("no such path {p}: metrics are at /metrics\n")),
    };
    r.omit_body = req.method == Method::Head;
    r
}

/// Starts serving `metrics` on `listener` (a task on the current runtime).
pub fn spawn(listener: TcpListener, metrics: Metrics) {
    if let Ok(addr) = listener.local_addr() {
        crate::status!(Info, "metrics at http://{addr}/metrics");
    }
    tokio::spawn(serve(listener, metrics));
}

/// Binds the endpoint (before the agent attaches and drops capabilities, so a
/// taken port is a one-line error and a privileged port still binds).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let l = TcpListener::bind(addr).await.with_context(|| {
        format!("binding the metrics endpoint to {addr} (is the port in use? choose another with --metrics-addr)")
    })?;
    if !addr.ip().is_loopback() {
        crate::status!(Warn, "the metrics endpoint on {addr} is reachable from other hosts (it has no authentication)");
    }
    Ok(l)
}

/// Serves until the runtime stops.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    let active = Arc::new(Semaphore::new(MAX_ACTIVE));
    let waiting = Arc::new(Semaphore::new(MAX_WAITING));
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of fds and the like: back off instead of spinning.
                log::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        if let Ok(permit) = active.clone().try_acquire_owned() {
            tokio::spawn(async move {
                handle(stream, &metrics).await;
                drop(permit);
            });
            continue;
        }
        let Ok(queued) = waiting.clone().try_acquire_owned() else {
            // The queue is full too: answer at once without reading, never block.
            let _ = stream.try_write(&Response::busy().to_bytes());
            continue;
        };
        let active = active.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(QUEUE_WAIT, active.acquire_owned()).await {
                Ok(Ok(permit)) => {
                    drop(queued);
                    handle(stream, &metrics).await;
                    drop(permit);
                }
                _ => {
                    drop(queued);
                    let mut stream = stream;
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&Response::busy().to_bytes())).await;
                }
            }
        });
    }
}

/// One connection: read one request head (bounded in size and time), answer, close.
async fn handle(mut stream: TcpStream, metrics: &Metrics) {
    let mut buf = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            match parse_request(&buf) {
                Ok(Some(req)) => return Ok(req),
                Err(r) => return Err(Some(r)),
                Ok(None) => {}
            }
            // Never read past the limit: the next parse sees a full buffer and rejects.
            let room = (MAX_HEAD - buf.len()).min(chunk.len());
            match stream.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let response = match read {
        Ok(Ok(req)) => route(&req, || metrics.render()),
        Ok(Err(Some(reject))) => Response::rejected(reject),
        // The client closed or the connection broke: nobody to answer.
        Ok(Err(None)) => return,
        Err(_elapsed) => Response::timeout(),
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response.to_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    // Closing with unread input makes the kernel send a reset, which can destroy the
    // answer before the client reads it (e.g. the 431 to an oversized request): read
    // and discard a bounded amount first, briefly.
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Bounds of the discard-before-close in `handle`.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request {
        Request { method: Method::Get, path: path.into() }
    }

    #[test]
    fn addresses_need_a_host() {
        assert_eq!(parse_addr("127.0.0.1:9632"), Ok("127.0.0.1:9632".parse().unwrap()));
        assert_eq!(parse_addr("[::1]:9632"), Ok("[::1]:9632".parse().unwrap()));
        assert_eq!(parse_addr("localhost:9632"), Ok("127.0.0.1:9632".parse().unwrap()));
        assert_eq!(parse_addr("0.0.0.0:80"), Ok("0.0.0.0:80".parse().unwrap()));
        let e = parse_addr("9632").unwrap_err();
        assert!(e.contains("127.0.0.1:9632"), "{e}");
        assert!(parse_addr("localhost:99999").unwrap_err().contains("port"));
        assert!(parse_addr("example:1").unwrap_err().contains("HOST:PORT"));
    }

    #[test]
    fn a_scrape_request_parses_once_complete() {
        let full = b"GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9632\r\nUser-Agent: Wget\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse_request(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse_request(full), Ok(Some(get("/metrics"))));
        assert_eq!(parse_request(b"HEAD / HTTP/1.0\n\n").unwrap().unwrap().method, Method::Head);
        assert_eq!(parse_request(b"DELETE /metrics HTTP/1.1\r\n\r\n").unwrap().unwrap().method, Method::Other);
    }

    #[test]
    fn bad_requests_are_rejected_with_a_reason() {
        assert_eq!(parse_request(&vec![b'a'; MAX_HEAD]), Err(Reject::HeadTooLarge));
        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'y', MAX_HEAD));
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&long), Err(Reject::HeadTooLarge));
        assert_eq!(parse_request(b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), Err(Reject::BodyNotAllowed));
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Err(Reject::BodyNotAllowed));
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), Ok(Some(get("/metrics"))));
        assert_eq!(parse_request(b"GET /metrics HTTP/2.0\r\n\r\n"), Err(Reject::VersionNotSupported));
        assert!(matches!(parse_request(b"GET /metrics\r\n\r\n"), Err(Reject::Malformed(_))));
        assert!(matches!(parse_request(b"GET metrics HTTP/1.1\r\n\r\n"), Err(Reject::Malformed(_))));
        assert!(matches!(parse_request(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n"), Err(Reject::Malformed(_))));
        assert!(matches!(parse_request(b"GET /\xff HTTP/1.1\r\n\r\n"), Err(Reject::Malformed(_))));
    }

    #[test]
    fn routes_and_statuses() {
        let m = || "m 1\n".to_string();
        let r = route(&get("/metrics"), m);
        assert_eq!((r.status, r.body.as_str(), r.content_type), (Status::Ok, "m 1\n", CONTENT_TYPE));
        assert_eq!(route(&get("/nope"), m).status, Status::NotFound);
        assert_eq!(route(&get("/"), m).status, Status::Ok);
        let r = route(&Request { method: Method::Other, path: "/metrics".into() }, || unreachable!());
        assert_eq!(r.status, Status::MethodNotAllowed);
        assert!(String::from_utf8(r.to_bytes()).unwrap().contains("Allow: GET, HEAD\r\n"));
        assert_eq!(Response::rejected(Reject::HeadTooLarge).status.code(), 431);
        assert_eq!(Response::rejected(Reject::BodyNotAllowed).status.code(), 413);
        assert_eq!(Response::timeout().status.code(), 408);
        assert_eq!(Response::busy().status.code(), 503);
    }

    #[test]
    fn head_sends_headers_only_with_the_body_length() {
        let r = route(&Request { method: Method::Head, path: "/metrics".into() }, || "abc\n".into());
        let wire = String::from_utf8(r.to_bytes()).unwrap();
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(wire.contains("Content-Length: 4\r\n") && wire.ends_with("\r\n\r\n"), "{wire}");
    }

    #[test]
    fn the_server_answers_and_bounds_bad_clients() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let addr = l.local_addr().unwrap();
            let m = Metrics::new(&super::super::BuildInfo {
                version: "1".into(),
                kernel: "k".into(),
                attach_method: "kprobe".into(),
                object: "legacy".into(),
            });
            tokio::spawn(serve(l, m));
            async fn exchange(addr: SocketAddr, req: &[u8]) -> String {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let _ = s.write_all(req).await;
                let mut out = String::new();
                let _ = s.read_to_string(&mut out).await;
                out
            }
            let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            assert!(ok.starts_with("HTTP/1.1 200 OK") && ok.contains("netpoll_trace_build_info{"), "{ok}");
            assert!(exchange(addr, b"GET /x HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404 "));
            let huge = vec![b'A'; 64 * 1024];
            assert!(exchange(addr, &huge).await.starts_with("HTTP/1.1 431 "));
        });
    }
}
