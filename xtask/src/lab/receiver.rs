//! The lab runner's side of an `e1000-host` NIC: a UDP socket on this host's loopback that
//! QEMU's user network delivers the guest's 10.0.2.2 traffic to. It receives what a guest sent
//! while it died (netconsole's datagrams), and `report_checks` judges a panic's report from it:
//! every line the guest printed with interrupts off, and the final panic line.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::lab::console::{Check, Status};

pub struct Receiver {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Vec<u8>>>,
}

impl Receiver {
    /// Listens on 127.0.0.1 at a port of the kernel's choosing (guests run side by side).
    pub fn start() -> Result<Receiver> {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .context("binding the lab's UDP receiver on 127.0.0.1")?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .context("setting the receiver's read timeout")?;
        let port = socket
            .local_addr()
            .context("the receiver's address")?
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => got.push(buf[..n].to_vec()),
                    // Drain what is queued before stopping: QEMU may exit right after sending.
                    Err(_) if stopping.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
            got
        });
        Ok(Receiver { port, stop, thread })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops listening; every datagram received, in order.
    pub fn finish(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The text of netconsole's datagrams, one line each (a datagram may hold one message, or
/// an extended header `level,seq,ts,flags;` before it).
pub fn lines(datagrams: &[Vec<u8>]) -> Vec<String> {
    datagrams
        .iter()
        .flat_map(|d| {
            String::from_utf8_lossy(d)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Judges a panic's delivery: `received_report` (each of "npt-panic: line N of TOTAL",
/// N = 1..TOTAL, arrived) and `received_panic_line` (the kernel's "Kernel panic - not
/// syncing: npt-lab" arrived), from what the receiver got.
pub fn report_checks(lines: &[String], total: u32) -> Vec<Check> {
    let mut seen = vec![false; total as usize];
    for l in lines {
        let Some(rest) = l.split("npt-panic: line ").nth(1) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(n), Some("of"), Some(t)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        if let (Ok(n), Ok(t)) = (n.parse::<usize>(), t.parse::<u32>())
            && t == total
            && (1..=total as usize).contains(&n)
        {
            seen[n - 1] = true;
        }
    }
    let got = seen.iter().filter(|s| **s).count();
    let first_missing = seen.iter().position(|s| !s).map(|i| i + 1);
    let report = Check {
        name: "received_report".into(),
        status: match first_missing {
            None => Status::Pass,
            Some(n) => Status::Fail(format!(
                "the receiver got {got} of the {total} report lines printed with interrupts off (first missing: line {n})"
            )),
        },
    };
    let panic = Check {
        name: "received_panic_line".into(),
        status: if lines
            .iter()
            .any(|l| l.contains("Kernel panic - not syncing: npt-lab"))
        {
            Status::Pass
        } else {
            Status::Fail(format!(
                "the receiver never got \"Kernel panic - not syncing: npt-lab\" ({} line(s) received)",
                lines.len()
            ))
        },
    };
    vec![report, panic]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ns: &[u32], total: u32, panic: bool) -> Vec<String> {
        let mut l: Vec<String> = ns
            .iter()
            .map(|n| {
                format!("[   12.5] npt-panic: line {n} of {total} (printed with interrupts off)")
            })
            .collect();
        if panic {
            l.push("[   12.9] Kernel panic - not syncing: npt-lab: 3 report lines printed with interrupts off".into());
        }
        l
    }

    #[test]
    fn every_line_and_the_panic_pass() {
        let c = report_checks(&report(&[1, 3, 2], 3, true), 3);
        assert!(c.iter().all(|c| c.status == Status::Pass), "{c:?}");
    }

    #[test]
    fn a_lost_line_or_panic_fails_naming_what_is_missing() {
        let c = report_checks(&report(&[1, 3], 3, false), 3);
        assert_eq!(
            c[0].status,
            Status::Fail("the receiver got 2 of the 3 report lines printed with interrupts off (first missing: line 2)".into())
        );
        assert!(matches!(&c[1].status, Status::Fail(d) if d.contains("never got")));
    }

    #[test]
    fn lines_of_another_total_do_not_count() {
        let c = report_checks(&report(&[1, 2, 3], 4, true), 3);
        assert!(matches!(&c[0].status, Status::Fail(d) if d.contains("got 0 of the 3")));
    }

    #[test]
    fn receives_on_loopback() {
        let r = Receiver::start().unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"npt-panic: line 1 of 1\n", ("127.0.0.1", r.port()))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let got = r.finish();
        assert_eq!(lines(&got), vec!["npt-panic: line 1 of 1"]);
    }
}
