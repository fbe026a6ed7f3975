//! `netpoll-trace receive`: a netconsole receiver. Prints (or writes as JSON lines) every
//! message, plain or extended, reassembling fragments, and counts per sender the
//! messages and, for extended netconsole, the gaps in the kernel's sequence numbers;
//! a summary on exit.

use crate::cli::outln;
use std::{io::Write as _, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};

use super::signals::Signals;
use crate::{
    cli::exit::Exit,
    model::netconsole::{Message, Receiver, printable},
    sinks::file::{Mode, open_private},
};

pub struct ReceiveArgs {
    pub listen: SocketAddr,
    pub json: bool,
    pub output: Option<PathBuf>,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
}

pub fn run(args: ReceiveArgs) -> Result<Exit> {
    super::runtime()?.block_on(receive(args))
}

async fn receive(args: ReceiveArgs) -> Result<Exit> {
    let signals = Signals::install()?;
    let sock = tokio::net::UdpSocket::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on UDP {} (a port below 1024 needs root; is another receiver there?)",
                args.listen
            )
        })?;
    let mut file = match &args.output {
        Some(p) => Some(std::io::BufWriter::new(open_private(
            p,
            Mode::Append,
            "output file",
        )?)),
        None => None,
    };
    crate::status!(
        Info,
        "receive: listening on UDP {}",
        sock.local_addr().unwrap_or(args.listen)
    );
    let Signals { mut term, mut int } = signals;
    let limit = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(limit);
    let mut receiver = Receiver::default();
    let mut received = 0u64;
    // A datagram is at most 64 KiB; netconsole's are about 1 KiB.
    let mut buf = vec![0u8; 65536];
    let stdout = std::io::stdout();
    'recv: while args.count.is_none_or(|c| received < c) {
        let (n, from) = tokio::select! {
            r = sock.recv_from(&mut buf) => r.context("receiving")?,
            _ = &mut limit => break,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        for m in receiver.take(&from.to_string(), &buf[..n]) {
            received += 1;
            let mut out = stdout.lock();
            if args.json {
                writeln!(out, "{}", serde_json::to_string(&m)?)?;
            } else {
                writeln!(out, "{}", human(&m))?;
            }
            out.flush()?;
            if let Some(f) = file.as_mut() {
                writeln!(f, "{}", serde_json::to_string(&m)?)?;
                f.flush()?;
            }
            if args.count.is_some_and(|c| received >= c) {
                break 'recv;
            }
        }
    }
    let summary = receiver.summary();
    let forgotten = receiver.forgotten();
    if args.json {
        outln!(
            "{}",
            serde_json::json!({ "type": "summary", "senders": summary, "forgotten": forgotten })
        );
    }
    for (from, s) in &summary {
        crate::status!(
            Info,
            "receive: {from}: {} message(s), {} gap(s) in sequence numbers, {} out of order, {} incomplete, {} malformed fragment(s)",
            s.messages,
            s.gaps,
            s.out_of_order,
            s.incomplete,
            s.malformed
        );
    }
    if forgotten.senders > 0 {
        crate::status!(
            Warn,
            "receive: forgot {} sender(s) (their {} message(s) are not in the summary): more than {} senders at once",
            forgotten.senders,
            forgotten.messages,
            crate::model::netconsole::MAX_SENDERS
        );
    }
    if summary.is_empty() {
        crate::status!(Info, "receive: nothing received");
    }
    Ok(Exit::Ok)
}

/// One line per line of the message, each prefixed with the sender (and the sequence
/// number and level of an extended message), so line-oriented tools keep working.
fn human(m: &Message) -> String {
    let prefix = match (m.seq, m.level) {
        (Some(seq), Some(level)) => format!("{} #{seq} <{level}>", m.from),
        _ => m.from.clone(),
    };
    let text = m.text.strip_suffix('\n').unwrap_or(&m.text);
    text.split('\n')
        .map(|l| format!("{prefix} {}", printable(l)))
        .collect::<Vec<_>>()
        .join("\n")
}
