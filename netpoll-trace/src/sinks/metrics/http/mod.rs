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
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

mod protocol;
pub use protocol::*;

use super::Metrics;

/// Time a client has to take the whole response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
    use crate::sinks::metrics::CONTENT_TYPE;
    use std::net::IpAddr;

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
