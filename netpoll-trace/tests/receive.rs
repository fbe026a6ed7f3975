//! `receive` end to end on the build machine: a real UDP socket on loopback, extended and
//! plain datagrams, a gap, a fragmented message, escaping, the JSON summary.

use std::{
    io::{BufRead as _, BufReader},
    net::UdpSocket,
    process::{Command, Stdio},
};

fn port() -> u16 {
    // Let the kernel pick a free port, then hand it to the tool.
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `receive --listen 127.0.0.1:PORT ARGS...`, once it says it listens; and PORT.
fn receiver(args: &[&str]) -> (std::process::Child, u16) {
    let port = port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netpoll-trace"))
        .args(["receive", "--listen", &listen])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(
        line.contains(&format!("listening on UDP {listen}")),
        "{line}"
    );
    (child, port)
}

#[test]
fn receives_counts_gaps_and_summarises() {
    let (child, port) = receiver(&["--json", "--count", "4"]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in [
        &b"6,10,100,-;first\n"[..],
        b"6,13,200,-;after a gap of two\n",
        b"4,14,300,-,ncfrag=5/10;world",
        b"4,14,300,-,ncfrag=0/10;hello",
        b"plain \x1b[2J text\n",
    ] {
        tx.send_to(d, ("127.0.0.1", port)).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0]["seq"], 10);
    assert_eq!(lines[2]["text"], "helloworld");
    assert_eq!(lines[3]["seq"], serde_json::Value::Null);
    let from = tx.local_addr().unwrap().to_string();
    let s = &lines[4]["senders"][&from];
    assert_eq!(
        (s["messages"].as_u64(), s["gaps"].as_u64()),
        (Some(4), Some(2)),
        "{}",
        lines[4]
    );
}

#[test]
fn human_output_escapes_control_characters() {
    let (child, port) = receiver(&["--count", "1"]);
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"6,1,1,-;evil \x1b[2J\r\n", ("127.0.0.1", port))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("#1 <6> evil \\x1b[2J\\x0d"), "{text}");
    assert!(!text.contains('\x1b'));
}

/// Peak resident memory of a running process, from /proc (KiB).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A flood of unfinished fragmented messages from 2,000 source ports (anyone can forge
/// them) must not grow the receiver past its stated bound: MAX_SENDERS x MAX_OPEN_BYTES
/// (16 MiB) of fragments, plus the program itself. Unbounded, this flood holds ~90 MB.
#[test]
fn a_flood_of_fragments_from_many_ports_keeps_memory_bounded() {
    // Nothing completes (first fragments only), so stdout stays empty.
    let (mut child, port) = receiver(&["--for", "60s"]);
    let text = "x".repeat(1400);
    for sender in 0..2000u32 {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for seq in 0..32u32 {
            let d = format!("6,{seq},1,-,ncfrag=0/16000;{text}");
            let _ = tx.send_to(d.as_bytes(), ("127.0.0.1", port));
        }
        // Let the receiver keep up (a datagram lost at the socket holds nothing).
        if sender % 4 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(4));
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let peak = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("receive's peak RSS under the flood: {peak} KiB");
    assert!(
        peak < 48 * 1024,
        "peak RSS {peak} KiB: over the 48 MiB bound"
    );
}
