//! The terminal: every output rendered for people (set-up lines, diagnosis blocks,
//! poll statistics, journal entries, the flight recorder's header and counters), and
//! `check`'s report.

use std::{borrow::Cow, io::Write as _};

use serde_json::Value;

use crate::model::{
    check::{Report, Status},
    diagnosis::Diagnosis,
    event::SetupRecord,
    output::{Output, Sink},
    poll::{PollSummary, SlowPoll},
    recorder::{CounterLine, RecorderLine},
    remediation::Remediation,
    send::{DropReason, SendNotice, SendSummary},
    target::{Change, TargetEvent},
};

/// Prints outputs for people on stdout.
#[derive(Debug, Default)]
pub struct Terminal {
    /// Times are shown relative to the first attempt's.
    since: Option<u64>,
    /// Prefix each record with its flight recorder sequence number (`#12`).
    show_seq: bool,
}

impl Terminal {
    pub fn new(show_seq: bool) -> Self {
        Self {
            since: None,
            show_seq,
        }
    }

    /// The text of one output; None for outputs people do not see here.
    fn render(&mut self, out: &Output) -> Option<String> {
        Some(match out {
            Output::Attempt(attempt, diagnosis) => {
                let since = *self.since.get_or_insert(attempt.root.ts_ns);
                let mut text = String::new();
                for r in attempt.records() {
                    let line = human_line(r, since);
                    match r.seq.filter(|_| self.show_seq) {
                        Some(seq) => text.push_str(&format!("#{seq:<5} {line}\n")),
                        None => text.push_str(&format!("{line}\n")),
                    }
                }
                if let Some(d) = diagnosis {
                    text.push_str(render_diagnosis(d).trim_end());
                    text.push('\n');
                }
                text.trim_end().to_string()
            }
            Output::SlowPoll(p) => slow_poll_line(p),
            // Counts since the start: every `--stats-every` while watching (marked so),
            // and at the end.
            Output::SendStats { stats, last } if !stats.is_empty() => stats
                .iter()
                .map(|s| so_far(send_line(s), *last))
                .collect::<Vec<_>>()
                .join("\n"),
            Output::Send(SendNotice::Drop(d)) => format!(
                "send dropped on {}: {} ({})",
                esc_or(&d.dev, "?"),
                d.reason.as_str(),
                d.reason.explain()
            ),
            Output::Send(SendNotice::Slow(s)) => {
                format!(
                    "slow send on {} took {}us (interrupts off meanwhile)",
                    esc_or(&s.dev, "?"),
                    s.duration_ns / 1000
                )
            }
            Output::Target(t) => target_line(t),
            Output::PollStats { stats, last } if !stats.is_empty() => stats
                .iter()
                .map(|s| so_far(poll_line(s), *last))
                .collect::<Vec<_>>()
                .join("\n"),
            Output::Remediation(e) => remediation_line(e),
            Output::Recorder(h) => render_recorder(h).trim_end().to_string(),
            Output::Counters(c) if !c.is_empty() => render_counters(c).trim_end().to_string(),
            Output::Passthrough { kind, value } => passthrough_line(kind, value),
            _ => return None,
        })
    }
}

impl Sink for Terminal {
    fn emit(&mut self, out: &Output) {
        if let Some(text) = self.render(out) {
            // A closed stdout (a pager that quit) is not worth dying for mid-trace.
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        }
    }
}

/// `s` safe to print on a terminal: control characters (C0, DEL, C1, so every escape
/// sequence's introducer) and bidirectional overrides become visible escapes (`\x1b`,
/// `\r`, `\u{9b}`). Device names may hold them (the kernel refuses only whitespace, `/`
/// and `:`), and so may anything read back from a file by `dump --from`.
pub fn esc(s: &str) -> Cow<'_, str> {
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
    if !s.chars().any(|c| c.is_control() || bidi(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || bidi(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `esc` of an optional value, `none` when absent.
fn esc_or<'a>(s: &'a Option<String>, none: &'a str) -> Cow<'a, str> {
    s.as_deref().map_or(Cow::Borrowed(none), esc)
}

/// One terminal line; nested calls are indented by depth so a bond's slaves sit
/// under it.
pub fn human_line(r: &SetupRecord, since_ns: u64) -> String {
    let rel = r.ts_ns.saturating_sub(since_ns) as f64 / 1e9;
    let indent = "  ".repeat(r.depth.min(8) as usize);
    let result = match r.errno {
        _ if r.ret == 0 => "ok".to_string(),
        Some(name) => format!("-{name}"),
        None => r.ret.to_string(),
    };
    let mut line = format!(
        "+{rel:8.3}s {indent}{:<16} {:<10} {:<16} {:<14}",
        r.function.as_str(),
        esc_or(&r.netpoll, "?"),
        esc_or(&r.dev, "?"),
        result,
    );
    if let Some(d) = &r.driver {
        line.push_str(&format!(" driver={}", esc(d)));
    }
    if let Some(sym) = &r.ops_symbol {
        match &r.ops_module {
            Some(m) => line.push_str(&format!(" ops={}[{}]", esc(sym), esc(m))),
            None => line.push_str(&format!(" ops={}", esc(sym))),
        }
    }
    if let Some(pc) = r.has_poll_controller {
        line.push_str(if pc {
            " poll_controller=yes"
        } else {
            " poll_controller=no"
        });
    }
    if r.netpoll_disabled == Some(true) {
        line.push_str(" IFF_DISABLE_NETPOLL");
    }
    line.push_str(&format!(
        " ({}[{}], {}us)",
        esc_or(&r.comm, "?"),
        r.pid,
        r.duration_ns / 1000
    ));
    line.trim_end().to_string()
}

/// The block printed under a failed set-up.
pub fn render_diagnosis(d: &Diagnosis) -> String {
    let mut out = format!(
        "  diagnosis: {} on {} ({})\n",
        d.cause,
        esc_or(&d.dev, "?"),
        d.errno.map_or(d.ret.to_string(), |e| format!("-{e}")),
    );
    if d.chain.len() > 1 {
        let chain: Vec<Cow<str>> = d.chain.iter().map(|c| esc(c)).collect();
        out.push_str(&format!("  chain:     {}\n", chain.join(" -> ")));
    }
    out.push_str(&wrap("  why:       ", &esc(&d.explanation), 100));
    if !d.remedies.is_empty() {
        let r: Vec<&str> = d.remedies.iter().map(|r| r.as_str()).collect();
        out.push_str(&format!("  remedies:  {}\n", r.join(", ")));
    }
    out
}

/// `text` after `lead`, word-wrapped to `width` columns with a hanging indent.
fn wrap(lead: &str, text: &str, width: usize) -> String {
    let indent = " ".repeat(lead.len());
    let mut out = String::new();
    let mut line = lead.to_string();
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.clone();
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

pub fn poll_line(p: &PollSummary) -> String {
    let avg = p.total_ns.checked_div(p.count).unwrap_or(0);
    format!(
        "poll {:<16} {} call(s) of netpoll_poll_dev, avg {}us, max {}us",
        esc_or(&p.dev, "?"),
        p.count,
        avg / 1000,
        p.max_ns / 1000
    )
}

/// One device's send path: every message's outcome, drops by reason, transmit time.
pub fn send_line(s: &SendSummary) -> String {
    let avg = s.total_ns.checked_div(s.transmits()).unwrap_or(0);
    let mut line = format!(
        "send {:<16} {} message(s), {} bytes: {} sent, {} deferred, {} dropped",
        esc_or(&s.dev, "?"),
        s.messages,
        s.bytes,
        s.sent,
        s.deferred,
        s.dropped
    );
    let reasons: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| s.dropped_by.get(**r) > 0)
        .map(|r| format!("{} {}", s.dropped_by.get(*r), r.as_str()))
        .collect();
    if !reasons.is_empty() {
        line.push_str(&format!(" ({})", reasons.join(", ")));
    }
    line.push_str(&format!(
        "; transmit avg {}us, max {}us",
        avg / 1000,
        s.max_ns / 1000
    ));
    line
}

/// A target's lifecycle change.
pub fn target_line(t: &TargetEvent) -> String {
    let why = match t.event {
        Change::Enabled | Change::ReEnabled => String::new(),
        Change::Resumed => " (by the kernel)".to_string(),
        _ => format!(" ({})", t.cause.replace('_', " ")),
    };
    format!(
        "target {} {} on {}{why}",
        esc(&t.target),
        t.event.as_str().replace('_', "-"),
        esc_or(&t.dev, "?")
    )
}

fn slow_poll_line(p: &SlowPoll) -> String {
    format!(
        "slow poll {} took {}us",
        esc_or(&p.dev, "?"),
        p.duration_ns / 1000
    )
}

/// A periodic summary says that it is one.
fn so_far(line: String, last: bool) -> String {
    if last {
        line
    } else {
        format!("{line} (so far)")
    }
}

fn remediation_line(e: &Remediation) -> String {
    let mut line = format!(
        "remediation {} {} {}: {}",
        esc_or(&e.dev, "-"),
        e.action.as_str(),
        e.result.as_str(),
        esc(&e.detail)
    );
    // A verification says what it proved and, as plainly, what it did not.
    let words = |es: &[crate::model::remediation::Evidence]| {
        es.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
    };
    if let (Some(p), Some(n)) = (&e.proved, &e.not_proved) {
        line.push_str(&format!(
            " (proved: {}; not proved: {})",
            words(p),
            words(n)
        ));
    }
    line
}

/// A `remediation` or `poll` line read back from a file.
fn passthrough_line(kind: &str, v: &Value) -> String {
    let s = |k: &str| esc(v[k].as_str().unwrap_or("?")).into_owned();
    match kind {
        "remediation" => format!(
            "remediation {} {} {}: {}",
            esc(v["dev"].as_str().unwrap_or("-")),
            s("action"),
            s("result"),
            s("detail")
        ),
        "target" => format!(
            "target {} {} on {} ({})",
            s("target"),
            s("event").replace('_', "-"),
            s("dev"),
            s("cause").replace('_', " ")
        ),
        "send" => format!(
            "send {}: {} message(s): {} sent, {} deferred, {} dropped",
            s("dev"),
            v["messages"],
            v["sent"],
            v["deferred"],
            v["dropped"]
        ),
        "send_drop" => format!("send dropped on {}: {}", s("dev"), s("reason")),
        "attached" => {
            let functions: Vec<String> = v["functions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|f| esc(f).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "attached {} ({} ms after ready)",
                functions.join(", "),
                v["after_ready_ms"].as_f64().unwrap_or(0.0).round()
            )
        }
        "slow_send" => format!(
            "slow send on {} took {}us",
            s("dev"),
            v["duration_ns"].as_u64().unwrap_or(0) / 1000
        ),
        _ => match v.get("duration_ns").and_then(Value::as_u64) {
            Some(ns) => format!("slow poll {} took {}us", s("dev"), ns / 1000),
            None => format!("poll {}: {} call(s)", s("dev"), v["count"]),
        },
    }
}

fn render_recorder(h: &RecorderLine) -> String {
    let age = h.ts_ns.saturating_sub(h.created_ns) as f64 / 1e9;
    let mut out = format!(
        "flight recorder {} (schema v{}, ring of {} set-up events, created {age:.0}s ago)\n",
        esc(&h.pin_dir.to_string_lossy()),
        h.schema,
        h.ring_size
    );
    out.push_str(&format!(
        "events: {} recorded, {} kept{}, {} overwritten (ring full), {} lost (no free sequence number)\n",
        h.recorded,
        h.kept,
        match h.kept_seqs {
            Some((a, b)) => format!(" (#{a}..#{b})"),
            None => String::new(),
        },
        h.overwritten,
        h.unrecorded
    ));
    if !h.missing_seqs.is_empty() {
        let s: Vec<String> = h.missing_seqs.iter().map(|n| format!("#{n}")).collect();
        out.push_str(&format!("gaps: no event under {}\n", s.join(", ")));
    }
    if h.counters_full > 0 {
        out.push_str(&format!(
            "counters: {} update(s) dropped (counter map full)\n",
            h.counters_full
        ));
    }
    if h.lost.pairing() > 0 {
        let kinds: Vec<String> = h
            .lost
            .pairing_kinds()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{n} {name}"))
            .collect();
        out.push_str(&format!(
            "lost: {} set-up record(s) to pairing ({})\n",
            h.lost.pairing(),
            kinds.join(", ")
        ));
    }
    out.push_str(&if h.pinned_links.is_empty() {
        "probes: none pinned: recording stopped when the process that recorded ended\n".to_string()
    } else {
        format!(
            "probes: pinned ({}): still recording\n",
            h.pinned_links.join(", ")
        )
    });
    out.push_str(&format!(
        "memory: the pinned maps take {} KiB of kernel memory\n",
        h.memlock_bytes.div_ceil(1024)
    ));
    if h.kept_seqs.is_some() {
        out.push_str("devices, drivers and ops symbols below are resolved now, at dump time, not when recorded\n");
    }
    out
}

/// Per device: set-ups and their results.
fn render_counters(counters: &[CounterLine]) -> String {
    let mut out = String::from("counters (device: function result x calls):\n");
    let mut devs: Vec<Option<&String>> = counters.iter().map(|c| c.dev.as_ref()).collect();
    devs.dedup();
    for dev in devs {
        let parts: Vec<String> = counters
            .iter()
            .filter(|c| c.dev.as_ref() == dev)
            .map(|c| {
                let result = match (c.ret, c.errno) {
                    (0, _) => "ok".to_string(),
                    (_, Some(e)) => format!("-{e}"),
                    (r, None) => r.to_string(),
                };
                format!(
                    "{} {result} x{}",
                    c.function.map_or("?", |f| f.as_str()),
                    c.count
                )
            })
            .collect();
        out.push_str(&format!(
            "  {}: {}\n",
            esc(dev.map_or("?", String::as_str)),
            parts.join(", ")
        ));
    }
    out
}

/// `check`'s report: one aligned line per item, the fix indented under it.
pub fn render_check(r: &Report) -> String {
    let mut out = format!("kernel {}\n", r.kernel);
    // The names' column as wide as the widest (panic_report).
    let w = r
        .items
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(0)
        .max(10);
    for i in &r.items {
        let mark = match i.status {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Missing => "MISSING",
        };
        out.push_str(&format!("  {:<w$} {:<8}  {}\n", i.name, mark, i.detail));
        if let Some(fix) = &i.fix
            && i.status != Status::Ok
        {
            out.push_str(&format!("  {:<w$} {:<8}  -> {}\n", "", "", fix));
        }
    }
    out.push_str(if r.traceable {
        "netpoll can be traced on this kernel\n"
    } else {
        "netpoll cannot be traced on this kernel (see MISSING above)\n"
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        correlate::{group, tests::rec as record},
        diagnosis::{Context, diagnose},
        event::SetupFn,
    };

    /// `watch --stats-every`: a summary while watching is printed, marked as one.
    #[test]
    fn a_periodic_send_summary_says_so_far() {
        let mut s = crate::model::send::summarize(&[], 7);
        s.dev = Some("eth0".into());
        s.messages = 3;
        s.sent = 3;
        let mut t = Terminal::new(false);
        let text = t
            .render(&Output::SendStats {
                stats: vec![s.clone()],
                last: false,
            })
            .unwrap();
        assert!(
            text.starts_with("send eth0 ")
                && text.contains("3 message(s)")
                && text.ends_with(" (so far)"),
            "{text}"
        );
        let last = t
            .render(&Output::SendStats {
                stats: vec![s],
                last: true,
            })
            .unwrap();
        assert!(!last.contains("so far"), "{last}");
    }

    fn rec() -> SetupRecord {
        SetupRecord {
            kind: "setup",
            seq: None,
            resolved_at: None,
            ts_ns: 1_500_000_000,
            function: SetupFn::InnerNetpollSetup,
            netpoll: Some("netconsole".into()),
            dev: Some("eth0".into()),
            remote: None,
            ifindex: Some(2),
            ret: -524,
            errno: Some("ENOTSUPP"),
            depth: 1,
            duration_ns: 42_000,
            pid: 77,
            comm: Some("modprobe".into()),
            driver: Some("virtio_net".into()),
            driver_version: Some("1.0.0".into()),
            kernel: Some("6.1.0-test".into()),
            ops_symbol: Some("virtnet_netdev".into()),
            ops_module: Some("virtio_net".into()),
            has_poll_controller: Some(false),
            has_netpoll_setup: Some(false),
            netpoll_disabled: Some(true),
            ops_addr: None,
            netpoll_addr: 0,
        }
    }

    #[test]
    fn human_line_shows_errno_symbolically_and_the_device_facts() {
        let l = human_line(&rec(), 1_000_000_000);
        assert!(l.starts_with("+   0.500s   __netpoll_setup"), "{l}");
        for want in [
            "-ENOTSUPP",
            "eth0",
            "driver=virtio_net",
            "ops=virtnet_netdev[virtio_net]",
            "poll_controller=no",
            "IFF_DISABLE_NETPOLL",
            "modprobe[77], 42us",
        ] {
            assert!(l.contains(want), "{want} missing in {l}");
        }
    }

    #[test]
    fn rendered_diagnosis_fits_a_terminal() {
        let a = group(vec![record(
            SetupFn::NetpollSetup,
            "d0",
            0,
            1_000,
            100,
            -89,
        )]);
        let d = diagnose(&a[0], &Context::default(), &mut Default::default()).unwrap();
        let text = render_diagnosis(&d);
        assert!(text.lines().all(|l| l.len() <= 100), "{text}");
        assert!(text.contains("diagnosis: no_ip_address on d0 (-EDESTADDRREQ)"));
        assert!(text.contains("remedies:  set_local_ip, wait_for_address"));
    }

    #[test]
    fn counters_render_per_device() {
        use crate::model::recorder::{counter_lines, tests::key};
        use netpoll_trace_common::function::NETPOLL_SETUP;
        let lines = counter_lines(
            &[
                (key("eth0", NETPOLL_SETUP, 0), 1),
                (key("nosuch0", NETPOLL_SETUP, -19), 3),
                (key("eth0", NETPOLL_SETUP, -524), 2),
            ],
            0,
        );
        let out = render_counters(&lines);
        assert!(
            out.contains("eth0: netpoll_setup -ENOTSUPP x2, netpoll_setup ok x1"),
            "{out}"
        );
        assert!(out.contains("nosuch0: netpoll_setup -ENODEV x3"), "{out}");
    }

    #[test]
    fn seq_numbers_prefix_records_only_when_asked() {
        let mut r = rec();
        r.seq = Some(7);
        let a = Output::Attempt(
            Box::new(crate::model::correlate::Attempt {
                root: r,
                nested: vec![],
            }),
            None,
        );
        assert!(
            Terminal::new(true)
                .render(&a)
                .unwrap()
                .starts_with("#7     +   0.000s")
        );
        assert!(
            Terminal::new(false)
                .render(&a)
                .unwrap()
                .starts_with("+   0.000s")
        );
        assert_eq!(Terminal::new(true).render(&Output::Lost(3)), None);
    }

    #[test]
    fn control_characters_from_a_file_are_escaped() {
        // A recorded file is input: a device, driver, symbol or kernel line holding an
        // escape sequence must not reach the terminal raw (it could rewrite the screen).
        let mut r = rec();
        r.dev = Some("eth0\u{1b}[2J".into());
        r.driver = Some("drv\r\nforged line".into());
        r.ops_symbol = Some("sym\u{7}".into());
        r.comm = Some("c\u{9b}31m".into());
        let l = human_line(&r, 0);
        assert!(!l.chars().any(char::is_control), "{l:?}");
        assert!(
            l.contains(r"eth0\x1b[2J")
                && l.contains(r"drv\r\nforged line")
                && l.contains(r"sym\x07"),
            "{l}"
        );
        assert!(l.contains(r"c\u{9b}31m"), "{l}");

        let a = group(vec![record(
            SetupFn::NetpollSetup,
            "d0",
            0,
            1_000,
            100,
            -89,
        )]);
        let mut d = diagnose(&a[0], &Context::default(), &mut Default::default()).unwrap();
        d.dev = Some("d0\u{1b}]0;title\u{7}".into());
        d.chain = vec!["br0\u{1b}[1A".into(), "d0".into()];
        d.explanation
            .push_str(" The kernel said: \"\u{1b}[31mred\r\u{8}\"");
        let text = render_diagnosis(&d);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains(r"\x1b[31mred\r\x08"), "{text}");

        let v: Value = serde_json::json!({"dev": "x\u{1b}[H", "action": "start", "result": "ok", "detail": "a\u{1b}b\nc"});
        let p = passthrough_line("remediation", &v);
        assert!(!p.chars().any(char::is_control), "{p:?}");
        let v: Value = serde_json::json!({"dev": "p\u{1b}[H", "count": 3});
        let p = passthrough_line("poll", &v);
        assert!(!p.chars().any(char::is_control), "{p:?}");
    }

    #[test]
    fn a_recorded_attached_line_reads_back_as_what_was_attached() {
        let v: Value = serde_json::json!({"type": "attached", "functions": ["netpoll_send_udp", "netconsole:write_msg\u{1b}"], "after_ready_ms": 812.4});
        assert_eq!(
            passthrough_line("attached", &v),
            r"attached netpoll_send_udp, netconsole:write_msg\x1b (812 ms after ready)"
        );
    }
}
