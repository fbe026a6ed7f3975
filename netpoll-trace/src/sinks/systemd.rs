//! The service manager as a sink: readiness (`READY=1`, only once every probe is
//! attached, so `Before=` ordering against netconsole's loading means something), a
//! `STATUS=` line, `STOPPING=1`, and watchdog pings when the unit sets `WatchdogSec`.
//! The sd_notify(3) protocol, spoken directly: one datagram per message to
//! `$NOTIFY_SOCKET`.

use std::{io, os::unix::net::UnixDatagram, time::Duration};

/// Where `$NOTIFY_SOCKET` points: a path, or an abstract name (`@name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

/// Parses `$NOTIFY_SOCKET`; None for anything that is not a unix socket address
/// (systemd also allows `vsock:`, which a local agent never gets).
pub fn parse_address(v: &str) -> Option<Address> {
    if let Some(name) = v.strip_prefix('@') {
        return (!name.is_empty()).then(|| Address::Abstract(name.as_bytes().to_vec()));
    }
    v.starts_with('/').then(|| Address::Path(v.into()))
}

/// How often to ping: half of `$WATCHDOG_USEC` (as sd_watchdog_enabled(3) advises),
/// when `$WATCHDOG_PID` is absent or names this process.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = pid
        && p.trim().parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

pub struct Notifier {
    sock: UnixDatagram,
    addr: Address,
}

impl Notifier {
    /// From the environment systemd gives a `Type=notify` service; the variables are
    /// removed so commands the agent runs do not talk to systemd in its name.
    pub fn from_env() -> Option<(Self, Option<Duration>)> {
        let addr = std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|v| parse_address(&v));
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        // SAFETY: called at start-up, before the agent starts any thread of its own.
        unsafe {
            std::env::remove_var("NOTIFY_SOCKET");
            std::env::remove_var("WATCHDOG_USEC");
            std::env::remove_var("WATCHDOG_PID");
        }
        let sock = UnixDatagram::unbound().ok()?;
        Some((Self { sock, addr: addr? }, watchdog))
    }

    pub fn send(&self, msg: &str) -> io::Result<()> {
        match &self.addr {
            Address::Path(p) => self.sock.send_to(msg.as_bytes(), p).map(drop),
            Address::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                let a = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.sock.send_to_addr(msg.as_bytes(), &a).map(drop)
            }
        }
    }
}

/// `READY=1` with the ready line as `STATUS=` (one line: newlines would end it).
pub fn ready_message(status: &str) -> String {
    format!("READY=1\nSTATUS={}", status.replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert_eq!(
            parse_address("/run/systemd/notify"),
            Some(Address::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_address("@sd-notify"),
            Some(Address::Abstract(b"sd-notify".to_vec()))
        );
        assert_eq!(parse_address("@"), None);
        assert_eq!(parse_address("vsock:2:1234"), None);
        assert_eq!(parse_address(""), None);
    }

    #[test]
    fn the_watchdog_pings_at_half_the_interval_and_only_for_us() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn ready_carries_the_ready_line_as_status() {
        assert_eq!(
            ready_message("agent ready: 6 probes\nx"),
            "READY=1\nSTATUS=agent ready: 6 probes x"
        );
    }

    #[test]
    fn messages_reach_the_socket() {
        let dir = std::env::temp_dir().join(format!("npt-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            sock: UnixDatagram::unbound().unwrap(),
            addr: Address::Path(path),
        };
        n.send(&ready_message("ready")).unwrap();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=ready");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
