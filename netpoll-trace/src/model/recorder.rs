//! The flight recorder's contents as contract objects (`recorder`, `counter`): built
//! from what `kernel::recorder` read (pure); and `read_lines`, the bounded reader of a
//! recorded JSON-lines file that `dump --from` uses.

use std::{io::BufRead, path::PathBuf};

use netpoll_trace_common::{CounterKey, loss};
use serde::{Serialize, ser::SerializeMap as _};
use serde_json::Value;

use super::{
    errno::Errno,
    event::{SetupFn, SetupRecord, cstr},
    schema,
};

/// The recorder's own line: what it holds and what it lost.
#[derive(Debug, Clone, Serialize)]
pub struct RecorderLine {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub pin_dir: PathBuf,
    pub schema: u32,
    pub ring_size: u32,
    /// Events ever recorded (the next sequence number).
    pub recorded: u64,
    pub kept: u64,
    pub overwritten: u64,
    /// Events that got no sequence number, and counter updates dropped (also in
    /// `lost`, kept for readers of the first contract).
    pub unrecorded: u64,
    pub counters_full: u64,
    /// Everything the programs could not keep, per kind.
    pub lost: Losses,
    pub missing_seqs: Vec<u64>,
    /// Programs whose links are pinned: recording continues without a process.
    pub pinned_links: Vec<String>,
    pub memlock_bytes: u64,
    /// When the pins were created (CLOCK_MONOTONIC), for people.
    #[serde(skip)]
    pub created_ns: u64,
    /// The oldest and newest sequence numbers kept.
    #[serde(skip)]
    pub kept_seqs: Option<(u64, u64)>,
}

/// What the programs could not keep, per `loss::*` slot (summed over CPUs); in JSON
/// an object from each kind's name (`loss::NAMES`) to its count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Losses(pub [u64; loss::SLOTS as usize]);

impl Losses {
    pub fn get(&self, slot: u32) -> u64 {
        self.0.get(slot as usize).copied().unwrap_or(0)
    }

    /// Each kind by name, in slot order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        loss::NAMES.iter().copied().zip(self.0.iter().copied())
    }

    /// The kinds that cost set-up records their pairing: entries dropped, unpaired
    /// or missed returns, flushed leftovers; by name.
    pub fn pairing_kinds(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        const PAIRING: [u32; 4] = [
            loss::ENTRY_DROPPED,
            loss::UNPAIRED_RETURN,
            loss::MISSED_RETURN,
            loss::ORPHANED_ENTRY,
        ];
        PAIRING
            .into_iter()
            .map(|s| (loss::NAMES[s as usize], self.get(s)))
    }

    /// Set-up records lost to pairing, all kinds.
    pub fn pairing(&self) -> u64 {
        self.pairing_kinds().map(|(_, n)| n).sum()
    }

    /// What was counted after `start` (a pinned recorder's counts began before us).
    pub fn since(&self, start: &Losses) -> Losses {
        Losses(std::array::from_fn(|i| {
            self.0[i].saturating_sub(start.0[i])
        }))
    }

    /// A warning for each loss a live session must not keep quiet about: statistics,
    /// events and tear-down causes the programs could not keep.
    pub fn live_warnings(&self) -> Vec<String> {
        const LIVE: [(u32, &str); 3] = [
            (
                loss::STATS_FULL,
                "statistics update(s) dropped: the per-device statistics map was full (devices that unregistered while nothing traced them stay in it until `netpoll-trace reset`)",
            ),
            (
                loss::OUTPUT_FAILED,
                "event(s) the programs could not hand over (no perf buffer for that CPU yet: one brought online is read from the next second on)",
            ),
            (
                loss::CLEANUP_UNMARKED,
                "tear-down(s) whose cause could not be marked: an owner's disable may show as a device event",
            ),
        ];
        LIVE.iter()
            .filter(|(slot, _)| self.get(*slot) > 0)
            .map(|(slot, what)| {
                format!(
                    "{} {what} [{}]",
                    self.get(*slot),
                    loss::NAMES[*slot as usize]
                )
            })
            .collect()
    }
}

impl Serialize for Losses {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, n) in self.named() {
            m.serialize_entry(name, &n)?;
        }
        m.end()
    }
}

/// Calls of one function on one device with one result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CounterLine {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ns: u64,
    pub dev: Option<String>,
    #[serde(rename = "fn")]
    pub function: Option<SetupFn>,
    pub ret: i32,
    pub errno: Option<&'static str>,
    pub count: u64,
}

pub fn counter_line(k: &CounterKey, count: u64, now: u64) -> CounterLine {
    CounterLine {
        kind: "counter",
        ts_ns: now,
        dev: cstr(&k.dev_name),
        function: SetupFn::from_id(k.function),
        ret: k.ret,
        errno: Errno::from_ret(k.ret).and_then(Errno::name),
        count,
    }
}

/// Counter lines sorted by device, function and result.
pub fn counter_lines(counters: &[(CounterKey, u64)], now: u64) -> Vec<CounterLine> {
    let mut lines: Vec<CounterLine> = counters
        .iter()
        .map(|(k, n)| counter_line(k, *n, now))
        .collect();
    lines.sort_by(|a, b| {
        (&a.dev, a.function.map(SetupFn::as_str), a.ret).cmp(&(
            &b.dev,
            b.function.map(SetupFn::as_str),
            b.ret,
        ))
    });
    lines
}

// --- Reading a recorded JSON-lines file back (`dump --from`) -------------------------

/// Longest line `read_lines` accepts, without its newline. A `setup` object is under
/// 1 KiB and a diagnosis with a long explanation a few; a longer line is not ours.
pub const MAX_LINE: usize = 64 * 1024;

/// One line of a file from `watch --record`, `watch --json` or the agent's journal,
/// checked against the JSON contract.
#[derive(Debug, Clone)]
pub enum RecordedLine {
    Setup(Box<SetupRecord>),
    /// A recorded diagnosis: only the kernel line it quoted is kept, for the fresh
    /// diagnosis to quote again.
    Diagnosis {
        kernel_message: Option<String>,
    },
    /// Any other contract object (`remediation`, `poll`, `counter`, `recorder`), as read.
    Other {
        kind: &'static str,
        value: Value,
    },
}

/// Why reading stopped, at which line (1-based, blank lines counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    pub kind: LineErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineErrorKind {
    /// Longer than the limit (in bytes): the line is not read whole.
    TooLong {
        limit: usize,
    },
    NotUtf8,
    /// Not JSON, or not an object of the contract; the text says what is missing.
    Invalid(String),
    /// The last line has no newline: the writer was stopped mid-line.
    Truncated,
    /// The reader failed (an I/O error's text).
    Read(String),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NOT_OURS: &str = "not a JSON-lines file from `watch --record` or the agent's journal";
        let n = self.line;
        match &self.kind {
            LineErrorKind::TooLong { limit } => {
                write!(f, "line {n}: longer than {} KiB: {NOT_OURS}", limit / 1024)
            }
            LineErrorKind::NotUtf8 => write!(f, "line {n}: not UTF-8: {NOT_OURS}"),
            LineErrorKind::Invalid(e) => write!(f, "line {n}: {e}; {NOT_OURS}, or truncated"),
            LineErrorKind::Truncated => write!(
                f,
                "line {n}: the last line has no newline: the file is truncated"
            ),
            LineErrorKind::Read(e) => write!(f, "line {n}: reading failed: {e}"),
        }
    }
}

impl std::error::Error for LineError {}

/// Reads JSON lines from `input`, one line at a time and never more than `limit`
/// bytes of one line (so memory stays bounded whatever the input), and checks each
/// against the contract. Blank lines are skipped. The first error ends the iteration:
/// a file that is wrong in one place is not trusted in the next.
pub fn read_lines<R: BufRead>(input: R, limit: usize) -> LineReader<R> {
    LineReader {
        input,
        limit,
        line: 0,
        buf: Vec::new(),
        done: false,
    }
}

/// The iterator `read_lines` returns.
#[derive(Debug)]
pub struct LineReader<R> {
    input: R,
    limit: usize,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> LineReader<R> {
    /// The next non-blank line's bytes (newline stripped), None at the end.
    fn next_raw(&mut self) -> Option<Result<(), LineErrorKind>> {
        loop {
            self.buf.clear();
            self.line += 1;
            // One byte past the limit plus the newline: enough to tell a full line from
            // an overlong one without reading the rest of it.
            let cap = self.limit as u64 + 1;
            let n = match std::io::Read::take(&mut self.input, cap).read_until(b'\n', &mut self.buf)
            {
                Ok(n) => n,
                Err(e) => return Some(Err(LineErrorKind::Read(e.to_string()))),
            };
            if n == 0 {
                return None;
            }
            let ended = self.buf.last() == Some(&b'\n');
            if ended {
                self.buf.pop();
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
            }
            if self.buf.len() > self.limit {
                return Some(Err(LineErrorKind::TooLong { limit: self.limit }));
            }
            if !ended {
                return Some(Err(LineErrorKind::Truncated));
            }
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Some(Ok(()));
            }
        }
    }
}

/// `s` with its control characters escaped (`\u{1b}`).
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One line's text as a contract object.
fn parse_line(text: &str) -> Result<RecordedLine, LineErrorKind> {
    // The reason may quote the line (an unknown `type`): no control character of it
    // reaches the one-line error.
    let invalid = |e: &dyn std::fmt::Display| LineErrorKind::Invalid(printable(&e.to_string()));
    let kind = schema::check_line(text).map_err(|e| invalid(&e))?;
    let v: Value = serde_json::from_str(text).map_err(|e| invalid(&e))?;
    Ok(match kind {
        "setup" => RecordedLine::Setup(Box::new(
            SetupRecord::from_json(v).map_err(|e| invalid(&e))?,
        )),
        "diagnosis" => RecordedLine::Diagnosis {
            kernel_message: v["kernel_message"].as_str().map(str::to_string),
        },
        _ => RecordedLine::Other { kind, value: v },
    })
}

impl<R: BufRead> Iterator for LineReader<R> {
    type Item = Result<RecordedLine, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let parsed = self.next_raw()?.and_then(|()| {
            let text = std::str::from_utf8(&self.buf).map_err(|_| LineErrorKind::NotUtf8)?;
            parse_line(text)
        });
        Some(parsed.map_err(|kind| {
            self.done = true;
            LineError {
                line: self.line,
                kind,
            }
        }))
    }
}

#[cfg(test)]
pub mod tests {
    use netpoll_trace_common::function;

    use super::*;

    pub fn key(dev: &str, f: u32, ret: i32) -> CounterKey {
        let mut k = CounterKey {
            dev_name: [0; 16],
            function: f,
            ret,
        };
        k.dev_name[..dev.len()].copy_from_slice(dev.as_bytes());
        k
    }

    #[test]
    fn losses_are_named_per_kind_in_json() {
        let mut slots = [0; loss::SLOTS as usize];
        slots[loss::MISSED_RETURN as usize] = 2;
        slots[loss::ORPHANED_ENTRY as usize] = 1;
        slots[loss::UNRECORDED as usize] = 5;
        let l = Losses(slots);
        assert_eq!(l.pairing(), 3);
        let v = serde_json::to_value(l).unwrap();
        assert_eq!(v["missed_return"], 2);
        assert_eq!(v["orphaned_entry"], 1);
        assert_eq!(v["unrecorded"], 5);
        assert_eq!(v["entry_dropped"], 0);
        assert_eq!(v.as_object().unwrap().len(), loss::SLOTS as usize);
    }

    /// Only what happened after start counts, and each live loss is named.
    #[test]
    fn live_losses_since_start_are_named() {
        let mut start = [0; loss::SLOTS as usize];
        start[loss::OUTPUT_FAILED as usize] = 4;
        let mut now = start;
        assert!(Losses(now).since(&Losses(start)).live_warnings().is_empty());
        now[loss::OUTPUT_FAILED as usize] = 6;
        now[loss::STATS_FULL as usize] = 1;
        now[loss::MISSED_RETURN as usize] = 9;
        let w = Losses(now).since(&Losses(start)).live_warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("1 statistics") && w[0].ends_with("[stats_full]"));
        assert!(w[1].starts_with("2 event(s)") && w[1].ends_with("[output_failed]"));
    }

    #[test]
    fn counter_lines_name_function_and_errno() {
        let c = counter_line(&key("nosuch0", function::NETPOLL_SETUP, -19), 3, 5);
        assert_eq!(c.dev.as_deref(), Some("nosuch0"));
        assert_eq!(c.function, Some(SetupFn::NetpollSetup));
        assert_eq!(c.errno, Some("ENODEV"));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["type"], "counter");
        assert_eq!(v["fn"], "netpoll_setup");
        assert_eq!(v["count"], 3);
        assert_eq!(
            crate::model::schema::check_line(&v.to_string()).unwrap(),
            "counter"
        );
    }

    const START: &str = r#"{"type":"remediation","ts_ns":1,"dev":null,"action":"start","result":"ok","detail":"x"}"#;

    fn kinds(input: &[u8]) -> Vec<Result<&'static str, LineError>> {
        read_lines(input, 256)
            .map(|r| {
                r.map(|l| match l {
                    RecordedLine::Setup(_) => "setup",
                    RecordedLine::Diagnosis { .. } => "diagnosis",
                    RecordedLine::Other { kind, .. } => kind,
                })
            })
            .collect()
    }

    #[test]
    fn lines_are_read_one_by_one_skipping_blank_ones() {
        let text = format!("{START}\r\n\n   \n{START}\n");
        assert_eq!(
            kinds(text.as_bytes()),
            vec![Ok("remediation"), Ok("remediation")]
        );
        assert!(kinds(b"").is_empty());
    }

    #[test]
    fn an_endless_line_stops_at_the_limit() {
        // An endless input (like /dev/zero) yields one error, having read limit + 1 bytes.
        let mut it = read_lines(std::io::BufReader::new(std::io::repeat(0)), MAX_LINE);
        let e = it.next().unwrap().unwrap_err();
        assert_eq!(
            e,
            LineError {
                line: 1,
                kind: LineErrorKind::TooLong { limit: MAX_LINE }
            }
        );
        assert_eq!(e.to_string().split(':').next(), Some("line 1"));
        assert!(e.to_string().contains("longer than 64 KiB"), "{e}");
        assert!(it.next().is_none(), "the first error ends the iteration");
        // A line exactly at the limit is read.
        let at = format!(
            "{},\"pad\":\"{}\"}}\n",
            &START[..START.len() - 1],
            "p".repeat(256)
        );
        let limit = at.len() - 1;
        assert!(read_lines(at.as_bytes(), limit).next().unwrap().is_ok());
        assert!(matches!(
            read_lines(at.as_bytes(), limit - 1)
                .next()
                .unwrap()
                .unwrap_err()
                .kind,
            LineErrorKind::TooLong { .. }
        ));
    }

    #[test]
    fn bad_lines_name_their_number_and_stop_the_reading() {
        let k = kinds(format!("{START}\n\n{{\"type\":\"setup\",\"ts_").as_bytes());
        assert_eq!(k.len(), 2);
        assert_eq!(
            k[1],
            Err(LineError {
                line: 3,
                kind: LineErrorKind::Truncated
            })
        );
        let k = kinds(format!("{START}\nnot json\n{START}\n").as_bytes());
        assert_eq!(k.len(), 2, "nothing after the first error");
        let e = k[1].clone().unwrap_err();
        assert!(
            e.line == 2 && matches!(e.kind, LineErrorKind::Invalid(_)),
            "{e}"
        );
        assert_eq!(
            kinds(b"\xff\xfe\n")[0].clone().unwrap_err().kind,
            LineErrorKind::NotUtf8
        );
        let e = kinds(b"{\"type\":\"mystery\",\"ts_ns\":1}\n")[0]
            .clone()
            .unwrap_err();
        assert!(e.to_string().contains("unknown type `mystery`"), "{e}");
        let e = kinds(b"{\"type\":\"a\\u001b[2J\\n\",\"ts_ns\":1}\n")[0]
            .clone()
            .unwrap_err();
        assert!(!e.to_string().chars().any(char::is_control), "{e:?}");
        assert!(
            e.to_string().contains(r"unknown type `a\u{1b}[2J\n`"),
            "{e}"
        );
        // Deep nesting is an error from the JSON parser's own limit, not a stack overflow.
        let deep = format!("{}{}\n", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            read_lines(deep.as_bytes(), MAX_LINE)
                .next()
                .unwrap()
                .unwrap_err()
                .kind,
            LineErrorKind::Invalid(_)
        ));
    }
}
