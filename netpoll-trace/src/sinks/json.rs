//! JSON lines (docs/contract.md section 4): `--json` on stdout, `watch --record FILE`, dumps.
//! One object per line, in the order the outputs came.

use std::io::Write;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::model::{
    output::{Output, Sink},
    send::SendNotice,
};

/// Writes every contract object of the outputs to `out`, one per line.
pub struct JsonLines<W: Write> {
    out: Option<W>,
    /// What `out` is, for errors ("the record file").
    what: &'static str,
}

impl JsonLines<std::io::Stdout> {
    pub fn stdout() -> Self {
        Self {
            out: Some(std::io::stdout()),
            what: "standard output",
        }
    }
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W, what: &'static str) -> Self {
        Self {
            out: Some(out),
            what,
        }
    }
}

/// One object as a line; serialising plain fields cannot fail.
pub fn json_line<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The JSON lines of one output, in order (none for outputs outside the contract).
pub fn lines(out: &Output) -> Vec<String> {
    match out {
        Output::Attempt(attempt, diagnosis) => {
            let mut v: Vec<String> = attempt.records().map(json_line).collect();
            if let Some(d) = diagnosis {
                v.push(json_line(d));
            }
            v
        }
        Output::SlowPoll(p) => vec![json_line(p)],
        // Counts since the start: every `--stats-every` while watching, and at the end.
        Output::PollStats { stats, .. } => stats.iter().map(json_line).collect(),
        Output::SendStats { stats, .. } => stats.iter().map(json_line).collect(),
        Output::Send(SendNotice::Drop(d)) => vec![json_line(d)],
        Output::Send(SendNotice::Slow(s)) => vec![json_line(s)],
        Output::Target(t) => vec![json_line(t)],
        Output::Remediation(e) => vec![json_line(e)],
        Output::LateReady(l) => vec![json_line(l)],
        Output::Recorder(h) => vec![json_line(h)],
        Output::Counters(c) => c.iter().map(json_line).collect(),
        Output::Passthrough { value, .. } => vec![value.to_string()],
        Output::Lost(_)
        | Output::Losses(_)
        | Output::Dropped { .. }
        | Output::Warning(_)
        | Output::ConsoleWrite(_) => Vec::new(),
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn emit(&mut self, out: &Output) {
        let Some(w) = self.out.as_mut() else { return };
        for line in lines(out) {
            if let Err(e) = writeln!(w, "{line}") {
                crate::status!(
                    Warn,
                    "writing {} failed ({e}); recording to it stops",
                    self.what
                );
                self.out = None;
                return;
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(w) = self.out.as_mut() {
            w.flush()
                .with_context(|| format!("writing {}", self.what))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        correlate::{Attempt, tests::rec},
        event::SetupFn,
    };

    #[test]
    fn json_has_the_contract_fields() {
        let mut r = rec(SetupFn::InnerNetpollSetup, "eth0", 1, 1, 1, -524);
        r.ops_addr = Some(0xffff_ffff_c000_0000);
        let v: serde_json::Value = serde_json::from_str(&json_line(&r)).unwrap();
        for k in [
            "type",
            "ts_ns",
            "fn",
            "netpoll",
            "dev",
            "ifindex",
            "ret",
            "errno",
            "depth",
            "duration_ns",
            "pid",
            "comm",
            "driver",
            "ops_symbol",
            "ops_module",
            "has_poll_controller",
            "has_netpoll_setup",
            "netpoll_disabled",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["errno"], "ENOTSUPP");
        assert!(v.get("ops_addr").is_none());
    }

    #[test]
    fn an_attempt_is_its_records_then_its_diagnosis() {
        let root = rec(SetupFn::NetpollSetup, "d0", 0, 1, 1, -89);
        let a = Attempt {
            root,
            nested: vec![],
        };
        let d = crate::model::diagnosis::diagnose(&a, &Default::default(), &mut Default::default())
            .map(Box::new);
        let out = lines(&Output::Attempt(Box::new(a), d));
        assert_eq!(out.len(), 2);
        assert!(
            out[0].starts_with(r#"{"type":"setup""#)
                && out[1].starts_with(r#"{"type":"diagnosis""#)
        );
        assert!(
            lines(&Output::PollStats {
                stats: vec![],
                last: false
            })
            .is_empty()
        );
    }

    /// `watch --stats-every`: a summary while watching comes out like the last one.
    #[test]
    fn a_periodic_send_summary_is_printed_too() {
        let mut s = crate::model::send::summarize(&[], 7);
        s.dev = Some("eth0".into());
        s.messages = 3;
        let out = lines(&Output::SendStats {
            stats: vec![s],
            last: false,
        });
        assert_eq!(out.len(), 1);
        assert!(
            out[0].starts_with(r#"{"type":"send","ts_ns":7,"dev":"eth0""#),
            "{out:?}"
        );
    }

    #[test]
    fn a_write_error_stops_writing_and_finish_still_succeeds() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut s = JsonLines::new(Broken, "the record file");
        s.emit(&Output::Passthrough {
            kind: "poll".into(),
            value: serde_json::json!({"type": "poll"}),
        });
        assert!(s.out.is_none());
        assert!(s.finish().is_ok());
    }
}
