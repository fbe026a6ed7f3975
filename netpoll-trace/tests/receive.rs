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
/// (20 MiB) of fragments, plus the program itself. Unbounded, this flood holds ~90 MB.
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

/// Many senders at once into several workers: every message arrives, and each sender's
/// come out in the order it sent them (the kernel keeps a sender on one worker's socket).
#[test]
fn several_workers_keep_each_senders_messages_in_order() {
    const SENDERS: usize = 40;
    const EACH: u64 = 50;
    let total = (SENDERS as u64 * EACH).to_string();
    let (child, port) = receiver(&[
        "--json",
        "--workers",
        "4",
        "--count",
        &total,
        "--for",
        "60s",
    ]);
    let txs: Vec<UdpSocket> = (0..SENDERS)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for seq in 1..=EACH {
        for tx in &txs {
            let d = format!("6,{seq},{seq},-;message {seq}\n msgid={seq}\n");
            tx.send_to(d.as_bytes(), ("127.0.0.1", port)).unwrap();
        }
        // Stay under the socket buffers of a slow (debug, shared) machine.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut last = std::collections::HashMap::<String, u64>::new();
    for m in lines.iter().filter(|l| l["type"] == "netconsole") {
        let from = m["from"].as_str().unwrap().to_string();
        let seq = m["seq"].as_u64().unwrap();
        let prev = last.insert(from.clone(), seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "{from}: {seq} after {prev}");
    }
    assert_eq!(last.len(), SENDERS);
    assert!(last.values().all(|&s| s == EACH), "{last:?}");
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["workers"], 4);
    assert_eq!(summary["messages"], SENDERS as u64 * EACH);
    assert_eq!(summary["socket_drops"], 0);
}

/// A 6.x kernel's extended datagrams, byte for byte (netconsole.rst's examples and
/// prepare_sysdata's order): the lines after the text are JSON fields, and a gap in msgid
/// is what the summary counts (seq skipping what printk never sent is not a loss).
#[test]
fn sysdata_and_userdata_are_json_fields_and_gaps_follow_msgid() {
    let (child, port) = receiver(&["--json", "--count", "3", "--for", "60s"]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in [
        &b"13,434,54928466,-;This is message #1\n foo=bar\n cpu=42\n taskname=echo\n msgid=1\n"[..],
        b"6.18.15+deb13-amd64,13,440,54934019,-;This is message #2\n release=6.18.15+deb13-amd64\n msgid=2\n",
        b"13,441,54934020,-;This is message #5\n msgid=5\n",
    ] {
        tx.send_to(d, ("127.0.0.1", port)).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let m = &lines[0];
    assert_eq!(m["text"], "This is message #1");
    assert_eq!(
        (
            &m["cpu"],
            &m["taskname"],
            &m["msgid"],
            &m["userdata"]["foo"]
        ),
        (&42.into(), &"echo".into(), &1.into(), &"bar".into())
    );
    assert_eq!(lines[1]["release"], "6.18.15+deb13-amd64");
    let from = tx.local_addr().unwrap().to_string();
    let s = &lines[3]["senders"][&from];
    assert_eq!(
        (s["gaps"].as_u64(), s["last_msgid"].as_u64()),
        (Some(2), Some(5)),
        "seq skipped 8, msgid 2: {s}"
    );
}

/// A receiver that stops reading while the flood goes on: the kernel drops at its socket,
/// and the summary says how many; with what arrived, every datagram is accounted for.
#[test]
fn drops_at_the_socket_are_counted() {
    let (mut child, port) = receiver(&["--json", "--workers", "1"]);
    let pid = child.id() as i32;
    // SAFETY: signals to our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let text = "y".repeat(900);
    let sent = 40_000u64;
    for seq in 1..=sent {
        let d = format!("6,{seq},1,-;{text}");
        tx.send_to(d.as_bytes(), ("127.0.0.1", port)).unwrap();
    }
    // Read what it writes meanwhile, or it stops on a full pipe.
    let mut pipe = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut s).unwrap();
        s
    });
    unsafe { libc::kill(pid, libc::SIGCONT) };
    std::thread::sleep(std::time::Duration::from_secs(3));
    // The drops were the last sent before this one: it shows them as a gap too.
    let sent = sent + 1;
    tx.send_to(format!("6,{sent},1,-;last").as_bytes(), ("127.0.0.1", port))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stdout = reader.join().unwrap();
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let (got, dropped) = (
        summary["messages"].as_u64().unwrap(),
        summary["socket_drops"].as_u64().unwrap(),
    );
    assert!(dropped > 0, "{summary}");
    assert_eq!(got + dropped, sent, "{summary}");
    let from = tx.local_addr().unwrap().to_string();
    assert_eq!(summary["senders"][&from]["gaps"], dropped, "{summary}");
    assert_eq!(out.status.code(), Some(0));
}
