//! The metrics endpoint's protocol, pure: `--metrics-addr`, request parsing, the Host
//! rule, the connection limits and the responses (unit-tested with the endpoint).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use super::super::CONTENT_TYPE;

/// Time a client has to send its whole request head (a scraper sends it at once).
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest request head (request line and headers) read; a scrape needs ~200 bytes.
pub const MAX_HEAD: usize = 8 * 1024;
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
    pub(super) conns: Vec<Conn>,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) id: u64,
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
