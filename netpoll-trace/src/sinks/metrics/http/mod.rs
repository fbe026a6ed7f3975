//! The metrics endpoint: a minimal HTTP/1.1 responder for `GET /metrics`, served from
//! a thread of its own (its own tokio runtime), so nothing the agent does (a module
//! load, a retry command) delays a scrape. Every answer is bounded: one request per
//! connection (`Connection: close`), a request head of at most `MAX_HEAD` bytes (431
//! beyond), no request body (413), a `Host` naming the address the connection
//! arrived on (400 without one, 421 for another: a web page's DNS-rebinding request
//! is refused), unknown paths 404, other methods 405, and a client that does not
//! finish its request within `READ_TIMEOUT` gets 408. At most `MAX_CONNECTIONS`
//! connections are open at once and `MAX_PER_PEER` from one address (an IPv6 /64):
//! beyond the peer's share, 503 at once; with every slot taken, a new connection closes
//! the oldest one still waiting for its request head (503 only when all are being
//! served), so idle peers cannot keep a scraper out.
//! Parsing, the Host rule, the limits and responses are pure and unit-tested; only
//! `serve` and `handle` do I/O.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::{CONTENT_TYPE, Metrics};

/// Largest request head (request line and headers) read; a scrape needs ~200 bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole request head (a scraper sends it at once).
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a client has to take the whole response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once, from everyone.
pub const MAX_CONNECTIONS: usize = 32;
/// Connections open at once from one peer (an IPv4 address or an IPv6 /64).
pub const MAX_PER_PEER: usize = 8;

/// `--metrics-addr`: HOST:PORT, where HOST is an IP address or `localhost`. A bare
/// port is refused rather than guessed: where the endpoint listens is the
/// operator's explicit choice (loopback unless they name another address).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{port}` in `{s}` is not a port number (0-65535)"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(port) = s.parse::<u16>() {
        return Err(format!(
            "`{s}` is a port without a host: use 127.0.0.1:{port} (this host only) or 0.0.0.0:{port} (every interface)"
        ));
    }
    Err(format!(
        "`{s}` is not HOST:PORT (e.g. 127.0.0.1:9632, [::1]:9632, localhost:9632)"
    ))
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
    /// The `Host` header's value, if there was one (checked by `check_host`).
    pub host: Option<String>,
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
    let Some(end) = find(buf, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| find(buf, b"\n\n").map(|i| i + 2))
    else {
        return if buf.len() >= MAX_HEAD {
            Err(Reject::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD {
        return Err(Reject::HeadTooLarge);
    }
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| Reject::Malformed("the request head is not UTF-8"))?;
    let mut lines = head.lines();
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::Malformed(
            "the request line is not METHOD TARGET VERSION",
        ));
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
    let mut host = None;
    for h in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = h.split_once(':') else {
            return Err(Reject::Malformed("a header line has no colon"));
        };
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("host") {
            // Two Hosts could be read differently by a proxy and by us (RFC 9112 3.2).
            if host.replace(value.to_string()).is_some() {
                return Err(Reject::Malformed("more than one Host header"));
            }
        }
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
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(Some(Request { method, path, host }))
}

/// Why a `Host` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostReject {
    /// No Host header (400).
    Missing,
    /// Not `host[:port]` (400).
    Malformed,
    /// A name or address other than the one the connection arrived on (421): what a
    /// browser sends when a page's DNS name was rebound to this address.
    Other,
}

/// The Host rule: `host` must name `local`, the address the connection arrived on
/// (IP:PORT, `[IPv6]:PORT`; `localhost:PORT` too when that address is loopback; the
/// port may be left out only when it is 80). Names are compared as addresses, never
/// resolved: a DNS name is another host.
pub fn check_host(host: Option<&str>, local: SocketAddr) -> Result<(), HostReject> {
    let host = host.ok_or(HostReject::Missing)?;
    let (name, port) = split_host(host).ok_or(HostReject::Malformed)?;
    let local_ip = local.ip().to_canonical();
    let same_host = match name {
        HostName::Ip(ip) => ip.to_canonical() == local_ip,
        HostName::Localhost => local_ip.is_loopback(),
        HostName::Other => false,
    };
    let same_port = port.unwrap_or(80) == local.port();
    if same_host && same_port {
        Ok(())
    } else {
        Err(HostReject::Other)
    }
}

enum HostName {
    Ip(IpAddr),
    Localhost,
    Other,
}

/// `host[:port]` as RFC 9110 7.2 writes it: an IPv6 address in brackets.
fn split_host(h: &str) -> Option<(HostName, Option<u16>)> {
    let port = |p: &str| -> Option<u16> {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse().ok())
            .flatten()
    };
    if let Some(rest) = h.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => None,
            p => Some(port(p.strip_prefix(':')?)?),
        };
        return Some((HostName::Ip(IpAddr::V6(ip)), port));
    }
    let (name, port) = match h.split_once(':') {
        Some((n, p)) => (n, Some(port(p)?)),
        None => (h, None),
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return None;
    }
    let name = if name.eq_ignore_ascii_case("localhost") || name.eq_ignore_ascii_case("localhost.")
    {
        HostName::Localhost
    } else if let Ok(ip) = name.parse::<Ipv4Addr>() {
        HostName::Ip(IpAddr::V4(ip))
    } else {
        HostName::Other
    };
    Some((name, port))
}

/// Who a connection is counted against: an IPv4 address (an IPv4-mapped one too) or
/// an IPv6 /64, the block one host usually has to itself.
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::V6(Ipv6Addr::from(s))
        }
        v4 => v4,
    }
}

/// Why a connection is not admitted (503 at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `total` connections are open.
    Full,
    /// `per_peer` connections from this peer are open.
    PeerFull,
}

/// The connections open now, overall and per peer (`peer_key`), oldest first; pure
/// bookkeeping. When every slot is taken, a new connection closes the oldest one still
/// waiting for its request head: peers that open connections and send nothing cannot
/// keep a scraper out (it sends its request at once), they only push each other out.
#[derive(Debug)]
pub struct ConnLimits {
    total: usize,
    per_peer: usize,
    next_id: u64,
    conns: Vec<Conn>,
}

#[derive(Debug)]
struct Conn {
    id: u64,
    peer: IpAddr,
    /// Still reading its request head (idle, as far as serving goes).
    reading: bool,
}

/// An admitted connection: its id, and the idle one closed to make room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub id: u64,
    pub evicted: Option<u64>,
}

impl ConnLimits {
    pub fn new(total: usize, per_peer: usize) -> Self {
        Self {
            total,
            per_peer,
            next_id: 0,
            conns: Vec::new(),
        }
    }

    /// Counts a new connection from `peer`, or says why it is refused.
    pub fn admit(&mut self, peer: IpAddr) -> Result<Admitted, Refusal> {
        let key = peer_key(peer);
        if self.conns.iter().filter(|c| c.peer == key).count() >= self.per_peer {
            return Err(Refusal::PeerFull);
        }
        let mut evicted = None;
        if self.conns.len() >= self.total {
            let Some(i) = self.conns.iter().position(|c| c.reading) else {
                return Err(Refusal::Full);
            };
            evicted = Some(self.conns.remove(i).id);
        }
        self.next_id += 1;
        self.conns.push(Conn {
            id: self.next_id,
            peer: key,
            reading: true,
        });
        Ok(Admitted {
            id: self.next_id,
            evicted,
        })
    }

    /// Connection `id` sent a request to answer: it is being served, not idle.
    pub fn serving(&mut self, id: u64) {
        if let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
            c.reading = false;
        }
    }

    /// Connection `id` closed (an evicted one is already gone: nothing changes).
    pub fn release(&mut self, id: u64) {
        self.conns.retain(|c| c.id != id);
    }

    pub fn open(&self) -> usize {
        self.conns.len()
    }
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
    MisdirectedRequest,
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
            Self::MisdirectedRequest => 421,
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
            Self::MisdirectedRequest => "Misdirected Request",
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
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            omit_body: false,
        }
    }

    pub fn rejected(r: Reject) -> Self {
        match r {
            Reject::HeadTooLarge => Self::text(
                Status::HeaderFieldsTooLarge,
                format!("request head over {MAX_HEAD} bytes\n"),
            ),
            Reject::BodyNotAllowed => Self::text(
                Status::PayloadTooLarge,
                "this endpoint takes no request body\n",
            ),
            Reject::Malformed(why) => Self::text(Status::BadRequest, format!("{why}\n")),
            Reject::VersionNotSupported => {
                Self::text(Status::VersionNotSupported, "HTTP/1.0 or HTTP/1.1 only\n")
            }
        }
    }

    pub fn timeout() -> Self {
        Self::text(
            Status::RequestTimeout,
            format!("no complete request within {}s\n", READ_TIMEOUT.as_secs()),
        )
    }

    pub fn busy() -> Self {
        Self::text(
            Status::ServiceUnavailable,
            "too many connections; retry later\n",
        )
    }

    /// The answer to a refused `Host`; `local` is the address the connection arrived on.
    pub fn wrong_host(r: HostReject, local: SocketAddr) -> Self {
        let want = match local.ip().to_canonical() {
            ip if ip.is_loopback() => format!(
                "{} (or localhost:{})",
                SocketAddr::new(ip, local.port()),
                local.port()
            ),
            ip => SocketAddr::new(ip, local.port()).to_string(),
        };
        match r {
            HostReject::Missing => Self::text(
                Status::BadRequest,
                format!("a Host header is required: {want}\n"),
            ),
            HostReject::Malformed => Self::text(
                Status::BadRequest,
                format!("the Host header is not HOST[:PORT]; use {want}\n"),
            ),
            HostReject::Other => Self::text(
                Status::MisdirectedRequest,
                format!("this endpoint answers to Host {want} only\n"),
            ),
        }
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
        (_, "/metrics") => Response {
            status: Status::Ok,
            content_type: CONTENT_TYPE,
            body: metrics(),
            omit_body: false,
        },
        (_, "/") => Response::text(Status::Ok, "netpoll-trace agent: metrics at /metrics\n"),
        (_, p) => Response::text(
            Status::NotFound,
            format!("no such path {p}: metrics are at /metrics\n"),
        ),
    };
    r.omit_body = req.method == Method::Head;
    r
}

/// The answer to a parsed request that arrived on `local`: the Host rule, then `route`.
pub fn respond(req: &Request, local: SocketAddr, metrics: impl FnOnce() -> String) -> Response {
    match check_host(req.host.as_deref(), local) {
        Ok(()) => route(req, metrics),
        Err(r) => {
            let mut resp = Response::wrong_host(r, local);
            resp.omit_body = req.method == Method::Head;
            resp
        }
    }
}

/// Starts serving `metrics` on `listener` from a thread of its own, with its own
/// runtime. Start it after the agent dropped its capabilities: a thread keeps those
/// of the thread that made it, and the endpoint needs none.
/// Serves on a thread of its own that first runs `confine` (dropping what it must not
/// hold); when that fails, nothing is served and the error is returned.
pub fn spawn(
    listener: std::net::TcpListener,
    metrics: Metrics,
    confine: fn() -> std::io::Result<()>,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .context("the metrics endpoint's address")?;
    listener
        .set_nonblocking(true)
        .context("making the metrics listener non-blocking")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the metrics endpoint's runtime")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let confined = confine();
            let ok = confined.is_ok();
            let _ = tx.send(confined);
            if !ok {
                return;
            }
            rt.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => serve(l, metrics).await,
                    Err(e) => crate::status!(Warn, "the metrics endpoint stopped: {e}"),
                }
            })
        })
        .context("starting the metrics endpoint's thread")?;
    rx.recv()
        .context("the metrics endpoint's thread ended at start")?
        .context("dropping the metrics thread's capabilities")?;
    crate::status!(Info, "metrics at http://{addr}/metrics");
    Ok(())
}

/// Binds the endpoint (before the agent attaches and drops capabilities, so a
/// taken port is a one-line error and a privileged port still binds).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr).with_context(|| {
        format!("binding the metrics endpoint to {addr} (is the port in use? choose another with --metrics-addr)")
    })?;
    if !addr.ip().is_loopback() {
        crate::status!(
            Warn,
            "the metrics endpoint on {addr} is reachable from other hosts (it has no authentication)"
        );
    }
    Ok(l)
}

/// Serves until the runtime stops.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    let limits = Arc::new(Mutex::new(ConnLimits::new(MAX_CONNECTIONS, MAX_PER_PEER)));
    // The tasks of admitted connections, to close one evicted for a newer connection.
    let tasks: Arc<Mutex<HashMap<u64, tokio::task::AbortHandle>>> = Arc::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of fds and the like: back off instead of spinning.
                log::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let admitted = {
            let mut l = limits.lock().unwrap_or_else(|p| p.into_inner());
            l.admit(peer.ip()).map_err(|r| (r, l.open()))
        };
        let admitted = match admitted {
            Ok(a) => a,
            Err((why, open)) => {
                log::debug!("metrics endpoint: refused {peer}: {why:?} ({open} open)");
                // Answer at once without reading, never wait: the slots are taken.
                let _ = stream.try_write(&Response::busy().to_bytes());
                continue;
            }
        };
        if let Some(old) = admitted.evicted {
            log::debug!("metrics endpoint: closed idle connection {old} for {peer}");
            if let Some(h) = tasks.lock().unwrap_or_else(|p| p.into_inner()).remove(&old) {
                h.abort();
            }
        }
        let open = Open {
            limits: limits.clone(),
            tasks: tasks.clone(),
            id: admitted.id,
        };
        let metrics = metrics.clone();
        let mut t = tasks.lock().unwrap_or_else(|p| p.into_inner());
        let task = tokio::spawn(async move {
            handle(stream, local, &metrics, &open).await;
            drop(open);
        });
        t.insert(admitted.id, task.abort_handle());
    }
}

/// An admitted connection; released when dropped, however its task ends (an aborted
/// task drops it too).
struct Open {
    limits: Arc<Mutex<ConnLimits>>,
    tasks: Arc<Mutex<HashMap<u64, tokio::task::AbortHandle>>>,
    id: u64,
}

impl Open {
    fn serving(&self) {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .serving(self.id);
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(self.id);
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// One connection: read one request head (bounded in size and time), answer, close.
async fn handle(mut stream: TcpStream, local: SocketAddr, metrics: &Metrics, open: &Open) {
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
        Ok(Ok(req)) => {
            // A request to answer: no longer a connection a newer one may close. (One
            // that timed out or was rejected may still be closed while it says so.)
            open.serving();
            respond(&req, local, || metrics.render())
        }
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
        Request {
            method: Method::Get,
            path: path.into(),
            host: None,
        }
    }

    fn get_host(path: &str, host: &str) -> Request {
        Request {
            host: Some(host.into()),
            ..get(path)
        }
    }

    #[test]
    fn addresses_need_a_host() {
        assert_eq!(
            parse_addr("127.0.0.1:9632"),
            Ok("127.0.0.1:9632".parse().unwrap())
        );
        assert_eq!(parse_addr("[::1]:9632"), Ok("[::1]:9632".parse().unwrap()));
        assert_eq!(
            parse_addr("localhost:9632"),
            Ok("127.0.0.1:9632".parse().unwrap())
        );
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
        assert_eq!(
            parse_request(full),
            Ok(Some(get_host("/metrics", "127.0.0.1:9632")))
        );
        assert_eq!(
            parse_request(b"HEAD / HTTP/1.0\n\n")
                .unwrap()
                .unwrap()
                .method,
            Method::Head
        );
        assert_eq!(
            parse_request(b"DELETE /metrics HTTP/1.1\r\n\r\n")
                .unwrap()
                .unwrap()
                .method,
            Method::Other
        );
    }

    #[test]
    fn bad_requests_are_rejected_with_a_reason() {
        assert_eq!(
            parse_request(&vec![b'a'; MAX_HEAD]),
            Err(Reject::HeadTooLarge)
        );
        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'y', MAX_HEAD));
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&long), Err(Reject::HeadTooLarge));
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
            Err(Reject::BodyNotAllowed)
        );
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Reject::BodyNotAllowed)
        );
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Ok(Some(get("/metrics")))
        );
        assert_eq!(
            parse_request(b"GET /metrics HTTP/2.0\r\n\r\n"),
            Err(Reject::VersionNotSupported)
        );
        assert!(matches!(
            parse_request(b"GET /metrics\r\n\r\n"),
            Err(Reject::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"GET metrics HTTP/1.1\r\n\r\n"),
            Err(Reject::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n"),
            Err(Reject::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Err(Reject::Malformed(_))
        ));
    }

    #[test]
    fn routes_and_statuses() {
        let m = || "m 1\n".to_string();
        let r = route(&get("/metrics"), m);
        assert_eq!(
            (r.status, r.body.as_str(), r.content_type),
            (Status::Ok, "m 1\n", CONTENT_TYPE)
        );
        assert_eq!(route(&get("/nope"), m).status, Status::NotFound);
        assert_eq!(route(&get("/"), m).status, Status::Ok);
        let r = route(
            &Request {
                method: Method::Other,
                ..get("/metrics")
            },
            || unreachable!(),
        );
        assert_eq!(r.status, Status::MethodNotAllowed);
        assert!(
            String::from_utf8(r.to_bytes())
                .unwrap()
                .contains("Allow: GET, HEAD\r\n")
        );
        assert_eq!(Response::rejected(Reject::HeadTooLarge).status.code(), 431);
        assert_eq!(
            Response::rejected(Reject::BodyNotAllowed).status.code(),
            413
        );
        assert_eq!(Response::timeout().status.code(), 408);
        assert_eq!(Response::busy().status.code(), 503);
    }

    #[test]
    fn head_sends_headers_only_with_the_body_length() {
        let r = route(
            &Request {
                method: Method::Head,
                ..get("/metrics")
            },
            || "abc\n".into(),
        );
        let wire = String::from_utf8(r.to_bytes()).unwrap();
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(
            wire.contains("Content-Length: 4\r\n") && wire.ends_with("\r\n\r\n"),
            "{wire}"
        );
    }

    #[test]
    fn the_server_answers_and_bounds_bad_clients() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
            l.set_nonblocking(true).unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(serve(TcpListener::from_std(l).unwrap(), test_metrics()));
            async fn exchange(addr: SocketAddr, req: &[u8]) -> String {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let _ = s.write_all(req).await;
                let mut out = String::new();
                let _ = s.read_to_string(&mut out).await;
                out
            }
            let ok = exchange(
                addr,
                format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
            )
            .await;
            assert!(
                ok.starts_with("HTTP/1.1 200 OK") && ok.contains("netpoll_trace_build_info{"),
                "{ok}"
            );
            let local = format!(
                "GET /metrics HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
                addr.port()
            );
            assert!(
                exchange(addr, local.as_bytes())
                    .await
                    .starts_with("HTTP/1.1 200 OK")
            );
            assert!(
                exchange(
                    addr,
                    format!("GET /x HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()
                )
                .await
                .starts_with("HTTP/1.1 404 ")
            );
            // DNS rebinding: a page at evil.example whose name now points here.
            let rebound = format!(
                "GET /metrics HTTP/1.1\r\nHost: evil.example:{}\r\n\r\n",
                addr.port()
            );
            let r = exchange(addr, rebound.as_bytes()).await;
            assert!(
                r.starts_with("HTTP/1.1 421 Misdirected Request") && !r.contains("netpoll_trace_"),
                "{r}"
            );
            assert!(
                exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n")
                    .await
                    .starts_with("HTTP/1.1 400 ")
            );
            let huge = vec![b'A'; 64 * 1024];
            assert!(exchange(addr, &huge).await.starts_with("HTTP/1.1 431 "));
        });
    }

    /// One request over std (no runtime of the test's own): the answer, or what
    /// went wrong, and how long it took.
    fn std_exchange(addr: SocketAddr, req: &[u8], limit: Duration) -> (String, Duration) {
        use std::io::{Read as _, Write as _};
        let start = std::time::Instant::now();
        let mut s = std::net::TcpStream::connect_timeout(&addr, limit).unwrap();
        s.set_read_timeout(Some(limit)).unwrap();
        let _ = s.write_all(req);
        let mut out = Vec::new();
        if let Err(e) = s.read_to_end(&mut out) {
            out.extend_from_slice(format!("<{e}>").as_bytes());
        }
        (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
    }

    fn test_metrics() -> Metrics {
        Metrics::new(&super::super::BuildInfo {
            version: "1".into(),
            kernel: "k".into(),
            attach_method: "kprobe".into(),
            object: "legacy".into(),
        })
    }

    #[test]
    fn idle_connections_do_not_delay_a_scrape() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        spawn(l, test_metrics(), || Ok(())).unwrap();
        // Six clients that connect and say nothing (the four, and more).
        let idle: Vec<std::net::TcpStream> = (0..6)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let (answer, took) = std_exchange(addr, req.as_bytes(), Duration::from_secs(8));
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{took:?}: {answer}");
        assert!(
            took < Duration::from_secs(1),
            "the scrape took {took:?} behind idle connections"
        );
        drop(idle);
    }

    #[test]
    fn a_blocked_agent_runtime_does_not_stall_scrapes() {
        let (tx, rx) = std::sync::mpsc::channel();
        let agent = std::thread::spawn(move || {
            // The agent's runtime: it starts the endpoint, then remediation blocks its
            // one thread (a module load, a retry command) for 3 s.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                spawn(l, test_metrics(), || Ok(())).unwrap();
                std::thread::sleep(Duration::from_secs(3));
            });
        });
        let addr = rx.recv().unwrap();
        let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let (answer, took) = std_exchange(addr, req.as_bytes(), Duration::from_secs(2));
        agent.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{took:?}: {answer}");
        assert!(
            took < Duration::from_secs(1),
            "the scrape took {took:?} while the agent was busy"
        );
    }

    #[test]
    fn host_must_name_the_address_the_connection_arrived_on() {
        let v4: SocketAddr = "127.0.0.1:9632".parse().unwrap();
        let any4: SocketAddr = "10.0.0.5:9632".parse().unwrap();
        let v6: SocketAddr = "[::1]:9632".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:9632".parse().unwrap();
        let ok = |h: &str, l: SocketAddr| check_host(Some(h), l);
        assert_eq!(ok("127.0.0.1:9632", v4), Ok(()));
        assert_eq!(ok("localhost:9632", v4), Ok(()));
        assert_eq!(ok("LocalHost:9632", v4), Ok(()));
        assert_eq!(ok("[::1]:9632", v6), Ok(()));
        assert_eq!(ok("localhost:9632", v6), Ok(()));
        assert_eq!(ok("10.0.0.5:9632", any4), Ok(()));
        assert_eq!(
            ok("10.0.0.5:9632", mapped),
            Ok(()),
            "a v4 client of a dual-stack socket"
        );
        // Another name, address or port: 421.
        assert_eq!(ok("evil.example:9632", v4), Err(HostReject::Other));
        assert_eq!(
            ok("localhost:9632", any4),
            Err(HostReject::Other),
            "localhost only on loopback"
        );
        assert_eq!(ok("127.0.0.1:9633", v4), Err(HostReject::Other));
        assert_eq!(
            ok("127.0.0.1", v4),
            Err(HostReject::Other),
            "no port means 80"
        );
        assert_eq!(ok("127.0.0.1", "127.0.0.1:80".parse().unwrap()), Ok(()));
        assert_eq!(ok("127.0.0.2:9632", v4), Err(HostReject::Other));
        assert_eq!(ok("[::2]:9632", v6), Err(HostReject::Other));
        assert_eq!(ok("10.0.0.5:9632", v4), Err(HostReject::Other));
        // Not host[:port]: 400; none: 400.
        for bad in [
            "",
            ":9632",
            "::1:9632",
            "[::1:9632",
            "[nope]:9632",
            "127.0.0.1:",
            "127.0.0.1:+80",
            "127.0.0.1:99999",
            "a b:1",
            "x/y:1",
            "[::1]9632",
        ] {
            assert_eq!(ok(bad, v4), Err(HostReject::Malformed), "{bad:?}");
        }
        assert_eq!(check_host(None, v4), Err(HostReject::Missing));
    }

    #[test]
    fn a_wrong_host_gets_421_and_no_metrics() {
        let local: SocketAddr = "127.0.0.1:9632".parse().unwrap();
        let r = respond(
            &get_host("/metrics", "rebind.example:9632"),
            local,
            || unreachable!(),
        );
        assert_eq!(r.status.code(), 421);
        assert!(
            r.body.contains("127.0.0.1:9632 (or localhost:9632)"),
            "{}",
            r.body
        );
        assert_eq!(
            respond(&get("/metrics"), local, || unreachable!())
                .status
                .code(),
            400
        );
        assert_eq!(
            respond(&get_host("/metrics", "a b"), local, || unreachable!())
                .status
                .code(),
            400
        );
        assert_eq!(
            respond(&get_host("/metrics", "localhost:9632"), local, || "m 1\n"
                .into())
            .status,
            Status::Ok
        );
        let head = Request {
            method: Method::Head,
            ..get_host("/metrics", "x:1")
        };
        let r = respond(&head, local, || unreachable!());
        assert!(r.omit_body && r.status.code() == 421);
        let two = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9632\r\nhost: evil:9632\r\n\r\n";
        assert_eq!(
            parse_request(two),
            Err(Reject::Malformed("more than one Host header"))
        );
    }

    #[test]
    fn connections_are_limited_overall_and_per_peer() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let mut l = ConnLimits::new(5, 3);
        let ok = |r: Result<Admitted, Refusal>| r.map(|a| a.evicted);
        let first = l.admit(a).unwrap().id;
        assert_eq!(ok(l.admit(a)), Ok(None));
        assert_eq!(
            ok(l.admit(a_mapped)),
            Ok(None),
            "the same peer through a dual-stack socket"
        );
        assert_eq!(l.admit(a), Err(Refusal::PeerFull));
        let b1 = l.admit(b).unwrap().id;
        assert_eq!(ok(l.admit(b)), Ok(None), "another peer is not held up");
        assert_eq!(l.open(), 5);
        l.release(first);
        assert_eq!(
            ok(l.admit(a)),
            Ok(None),
            "a closed connection frees its peer's slot"
        );
        l.release(first); // a second release changes nothing
        assert_eq!(l.open(), 5);
        // Every slot taken, all idle: the oldest idle one goes (b1, since `first` closed).
        for c in l.conns.iter().map(|c| c.id).collect::<Vec<_>>() {
            if c != b1 {
                l.serving(c);
            }
        }
        assert_eq!(ok(l.admit("10.0.0.3".parse().unwrap())), Ok(Some(b1)));
        // All being served: nothing to close, 503.
        let newest = l.conns.last().unwrap().id;
        l.serving(newest);
        assert_eq!(l.admit("10.0.0.4".parse().unwrap()), Err(Refusal::Full));
        // One IPv6 host holds a /64: its addresses count as one peer.
        let mut l = ConnLimits::new(10, 2);
        assert!(l.admit("2001:db8::1".parse().unwrap()).is_ok());
        assert!(l.admit("2001:db8::ffff:2".parse().unwrap()).is_ok());
        assert_eq!(
            l.admit("2001:db8::3".parse().unwrap()),
            Err(Refusal::PeerFull)
        );
        assert!(l.admit("2001:db8:0:1::3".parse().unwrap()).is_ok());
    }

    /// #24: four peers reopening idle connections held every slot, so a scraper got 503.
    #[test]
    fn idle_peers_cannot_keep_a_scraper_out() {
        let mut l = ConnLimits::new(MAX_CONNECTIONS, MAX_PER_PEER);
        for p in 1..=4 {
            for _ in 0..MAX_PER_PEER {
                assert!(l.admit(format!("10.0.0.{p}").parse().unwrap()).is_ok());
            }
        }
        assert_eq!(l.open(), MAX_CONNECTIONS);
        let scraper = l.admit("192.0.2.9".parse().unwrap()).unwrap();
        assert!(scraper.evicted.is_some(), "an idle connection made room");
        assert_eq!(l.open(), MAX_CONNECTIONS);
    }

    /// A connection to `addr` from the loopback address `ip`.
    async fn connect_from(addr: SocketAddr, ip: &str) -> tokio::net::TcpStream {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
        s.connect(addr).await.unwrap()
    }

    /// A scrape from 127.0.0.1: what came back within a second.
    async fn scrape(addr: SocketAddr) -> String {
        let mut s = connect_from(addr, "127.0.0.1").await;
        s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_string(&mut out)).await;
        out
    }

    #[test]
    fn one_peer_cannot_take_every_connection() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        spawn(l, test_metrics(), || Ok(())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // MAX_PER_PEER idle connections from 127.0.0.2, then one more from there.
            let mut idle = Vec::new();
            for _ in 0..MAX_PER_PEER {
                idle.push(connect_from(addr, "127.0.0.2").await);
            }
            let mut extra = connect_from(addr, "127.0.0.2").await;
            let mut out = String::new();
            let start = std::time::Instant::now();
            let _ =
                tokio::time::timeout(Duration::from_secs(1), extra.read_to_string(&mut out)).await;
            assert!(
                out.starts_with("HTTP/1.1 503 "),
                "{:?}: {out}",
                start.elapsed()
            );
            // Another peer scrapes at once.
            let out = scrape(addr).await;
            assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
            drop(idle);
        });
    }

    /// Four peers hold every slot with silent connections; a scrape still gets 200.
    #[test]
    fn a_scrape_gets_through_four_idle_peers() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        spawn(l, test_metrics(), || Ok(())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut idle = Vec::new();
            for p in 2..=5 {
                for _ in 0..MAX_PER_PEER {
                    idle.push(connect_from(addr, &format!("127.0.0.{p}")).await);
                }
            }
            // Let the endpoint accept them all.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let out = scrape(addr).await;
            assert!(out.starts_with("HTTP/1.1 200 OK"), "{out:?}");
            drop(idle);
        });
    }
}
