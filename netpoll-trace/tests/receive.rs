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
