//! Diagnostics on stderr, as text (the default) or JSON (`--log-format json`): one
//! object per line, `{"ts","level","target","message"}`, for log shippers. Two kinds
//! of line go through here: `log` records (filtered by `RUST_LOG`, default set by
//! `-v`) and the tool's own status lines (`status!`: ready, warnings, the final
//! error), which are always shown. stdout (`--json`, the journal) is not touched.
//! `Stderr` is the sink that turns the pipeline's warnings and losses into status lines.

use std::{
    fmt,
    io::Write as _,
    sync::atomic::{AtomicBool, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use log::Level;
use serde::Serialize;

use crate::model::{
    console_gate::GateReport,
    output::{Output, Sink},
    ready::{self, LateReady, Ready},
};

pub use crate::model::config::LogFormat;

static JSON: AtomicBool = AtomicBool::new(false);

/// Sets up the logger and the format of status lines; call once, first.
pub fn init(format: LogFormat, verbose: u8) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    match format {
        LogFormat::Text => {
            b.format_timestamp(None);
        }
        LogFormat::Json => {
            b.format(|buf, r| {
                writeln!(
                    buf,
                    "{}",
                    json_line(
                        SystemTime::now(),
                        r.level(),
                        r.target(),
                        &r.args().to_string()
                    )
                )
            });
        }
    }
    b.init();
}

/// A status line of the tool itself (never filtered); see the `status!` macro.
pub fn line(level: Level, target: &str, args: fmt::Arguments) {
    let text = if JSON.load(Ordering::Relaxed) {
        json_line(SystemTime::now(), level, target, &args.to_string())
    } else {
        text_line(level, args)
    };
    // One write per line, so lines from concurrent tasks do not interleave.
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// `netpoll-trace: [error: |warning: ]message`, as the tool has always printed.
pub fn text_line(level: Level, args: fmt::Arguments) -> String {
    let prefix = match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info | Level::Debug | Level::Trace => "",
    };
    format!("netpoll-trace: {prefix}{args}")
}

#[derive(Serialize)]
struct JsonLine<'a> {
    ts: String,
    level: &'static str,
    target: &'a str,
    message: &'a str,
}

pub fn level_code(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// One JSON object (no newline). Multi-line messages stay one line: JSON escapes them.
pub fn json_line(ts: SystemTime, level: Level, target: &str, message: &str) -> String {
    let l = JsonLine {
        ts: rfc3339_millis(ts),
        level: level_code(level),
        target,
        message,
    };
    serde_json::to_string(&l).unwrap_or_else(|_| String::from("{}"))
}

/// `2024-02-29T23:59:59.123Z`.
pub fn rfc3339_millis(ts: SystemTime) -> String {
    let d = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm: exact, no tables, no time zone database).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A status line of the tool: `status!(Warn, "the kernel dropped {n} events")`.
#[macro_export]
macro_rules! status {
    ($level:ident, $($arg:tt)*) => {
        $crate::sinks::status::line(::log::Level::$level, module_path!(), format_args!($($arg)*))
    };
}

/// The sink of what the operator must see on stderr: the pipeline's warnings and the
/// events the kernel dropped (counted for the closing summary).
#[derive(Debug, Default)]
pub struct Stderr {
    /// Events the kernel dropped so far.
    pub lost: u64,
}

impl Sink for Stderr {
    fn emit(&mut self, out: &Output) {
        match out {
            Output::Lost(n) => {
                self.lost += n;
                crate::status!(Warn, "the kernel dropped {n} events (perf buffer full)");
            }
            Output::Dropped { what, count } => {
                crate::status!(
                    Warn,
                    "dropped {count} {} to stay within bounds",
                    what.as_str().replace('_', " ")
                )
            }
            Output::Warning(w) => crate::status!(Warn, "{w}"),
            Output::LateReady(l) => {
                for s in &l.skipped {
                    crate::status!(Warn, "{}", ready::not_tracing(s.function, &s.reason));
                }
                crate::status!(Info, "{}", late_ready_line(l));
            }
            Output::ConsoleWrite(g) => match &g.error {
                Some(e) => crate::status!(Warn, "{}: {e}", console_write_line(g)),
                None => crate::status!(Info, "{}", console_write_line(g)),
            },
            _ => {}
        }
    }
}

/// The late programs' readiness as one line, after `ready:`: `all ready: also tracing
/// netpoll_send_udp, ... (attached in 812.3 ms; sends and tear-downs went untraced for
/// 815.0 ms after ready)`.
pub fn late_ready_line(l: &LateReady) -> String {
    let what = if l.functions.is_empty() {
        "nothing more to trace".to_string()
    } else {
        format!("also tracing {}", l.functions.join(", "))
    };
    let what = match l.on_demand {
        Some(f) => format!("{what}; {f} only while a known target's device is down"),
        None => what,
    };
    let when = if l.deferred {
        format!(
            "attached in {:.1} ms; sends and tear-downs went untraced for {:.1} ms after ready",
            l.attach_ms, l.after_ready_ms
        )
    } else {
        "attached before ready".to_string()
    };
    match &l.error {
        Some(e) => format!("all ready: {what} ({when}); the rest failed: {e}"),
        None => format!("all ready: {what} ({when})"),
    }
}

/// The console write's probe attached or detached, as one line: `vl100 is down: tracing
/// netconsole:write_msg to count what netconsole skips (attached in 3.2 ms)`.
pub fn console_write_line(g: &GateReport) -> String {
    match (g.traced, g.error.is_some()) {
        (true, false) if g.down.is_empty() => format!(
            "tracing {} to count the messages netconsole skips (attached in {:.1} ms)",
            g.function, g.ms
        ),
        (true, false) => format!(
            "{} down: tracing {} to count the messages netconsole skips (attached in {:.1} ms)",
            g.down.join(", "),
            g.function,
            g.ms
        ),
        (false, false) => format!(
            "every known target's device is up: {} no longer traced (detached in {:.1} ms)",
            g.function, g.ms
        ),
        (true, true) => format!("attaching {} failed", g.function),
        (false, true) => format!("detaching {} failed", g.function),
    }
}

/// The tracer's readiness as one line: `ready: fentry on netpoll_setup, ... (attached
/// in 12.3 ms; offsets from /sys/kernel/btf/vmlinux; modern object, attach path
/// fentry)`, and where it records.
pub fn ready_line(r: &Ready) -> String {
    let offsets = match &r.offsets {
        None => "nowhere: reduced mode".to_string(),
        Some(o) => match (o.kind, &o.detail) {
            ("btf_archive", Some(m)) => format!("{} (BTFHub archive, {m})", o.path),
            ("headers", Some(rel)) => {
                format!("{} (built from the kernel headers of {rel})", o.path)
            }
            ("kernel_btf", Some(d)) => format!("{} ({d})", o.path),
            _ => o.path.clone(),
        },
    };
    let path = match r.kprobes_via {
        Some(v) => format!("{} ({v})", r.method),
        None => r.method.to_string(),
    };
    let mut line = format!(
        "ready: {} on {} ({} {:.1} ms; offsets from {offsets}; {} object, attach path {path})",
        r.method,
        r.functions.join(", "),
        if r.reused_pins {
            "reusing the pinned probes, opened in"
        } else {
            "attached in"
        },
        r.attach_ms,
        r.object,
    );
    if let Some(rec) = &r.recorder {
        line.push_str(&format!(
            "; recording into {} ({})",
            rec.dir,
            if rec.links_pinned {
                "links pinned: recording goes on after this process"
            } else {
                "probes end with this process"
            }
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T23:59:59.123Z: a leap day, checked with `date -u -d @1709251199`.
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_199_123);
        assert_eq!(rfc3339_millis(t), "2024-02-29T23:59:59.123Z");
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH + Duration::from_secs(951_868_800)),
            "2000-03-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH + Duration::from_secs(4_102_444_800)),
            "2100-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn json_lines_are_one_object_with_the_four_fields() {
        let line = json_line(
            UNIX_EPOCH,
            Level::Warn,
            "netpoll_trace::agent",
            "two\nlines \"quoted\"",
        );
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["target"], "netpoll_trace::agent");
        assert_eq!(v["message"], "two\nlines \"quoted\"");
        assert_eq!(v.as_object().unwrap().len(), 4);
        assert_eq!(level_code(Level::Error), "error");
    }

    #[test]
    fn text_lines_keep_the_established_prefixes() {
        assert_eq!(
            text_line(Level::Error, format_args!("x {}", 1)),
            "netpoll-trace: error: x 1"
        );
        assert_eq!(
            text_line(Level::Warn, format_args!("y")),
            "netpoll-trace: warning: y"
        );
        assert_eq!(
            text_line(Level::Info, format_args!("ready: z")),
            "netpoll-trace: ready: z"
        );
    }

    #[test]
    fn the_late_ready_line_says_what_went_untraced_and_for_how_long() {
        use crate::model::ready::Skipped;
        let mut l = LateReady {
            kind: LateReady::KIND,
            ts_ns: 1,
            functions: vec!["netpoll_send_udp", "netpoll_cleanup"],
            skipped: vec![Skipped {
                function: "netconsole:write_msg",
                reason: "x".into(),
            }],
            deferred: true,
            attach_ms: 812.34,
            after_ready_ms: 815.0,
            error: None,
            on_demand: None,
        };
        assert_eq!(
            late_ready_line(&l),
            "all ready: also tracing netpoll_send_udp, netpoll_cleanup (attached in 812.3 ms; sends and tear-downs went untraced for 815.0 ms after ready)"
        );
        l.functions.push("netconsole:write_msg");
        l.on_demand = Some("netconsole:write_msg");
        assert_eq!(
            late_ready_line(&l),
            "all ready: also tracing netpoll_send_udp, netpoll_cleanup, netconsole:write_msg; netconsole:write_msg only while a known target's device is down (attached in 812.3 ms; sends and tear-downs went untraced for 815.0 ms after ready)"
        );
        l.functions.pop();
        l.on_demand = None;
        l.deferred = false;
        assert_eq!(
            late_ready_line(&l),
            "all ready: also tracing netpoll_send_udp, netpoll_cleanup (attached before ready)"
        );
        l.functions.clear();
        l.error = Some("boom".into());
        assert_eq!(
            late_ready_line(&l),
            "all ready: nothing more to trace (attached before ready); the rest failed: boom"
        );
    }

    #[test]
    fn the_console_write_lines_say_why_and_how_fast() {
        let mut g = GateReport {
            traced: true,
            function: "netconsole:write_msg",
            down: vec!["vl100".into()],
            ms: 3.25,
            error: None,
        };
        assert_eq!(
            console_write_line(&g),
            "vl100 down: tracing netconsole:write_msg to count the messages netconsole skips (attached in 3.2 ms)"
        );
        // Attached for good (rtnetlink could not be followed): no device to name.
        g.down.clear();
        assert_eq!(
            console_write_line(&g),
            "tracing netconsole:write_msg to count the messages netconsole skips (attached in 3.2 ms)"
        );
        g.traced = false;
        assert_eq!(
            console_write_line(&g),
            "every known target's device is up: netconsole:write_msg no longer traced (detached in 3.2 ms)"
        );
        g.error = Some("EBUSY".into());
        assert_eq!(
            console_write_line(&g),
            "detaching netconsole:write_msg failed"
        );
    }

    #[test]
    fn the_ready_line_phrases_the_facts() {
        use crate::model::ready::{OffsetsSource, Recording};
        let mut r = Ready {
            method: "kprobe",
            kprobes_via: Some("kprobe PMU"),
            functions: vec!["netpoll_setup", "__netpoll_setup"],
            reused_pins: false,
            attach_ms: 12.34,
            object: "legacy",
            offsets: None,
            recorder: None,
        };
        assert_eq!(
            ready_line(&r),
            "ready: kprobe on netpoll_setup, __netpoll_setup (attached in 12.3 ms; offsets from nowhere: reduced mode; legacy object, attach path kprobe (kprobe PMU))"
        );
        r.reused_pins = true;
        r.offsets = Some(OffsetsSource {
            kind: "btf_archive",
            path: "/x.btf.tar.xz".into(),
            detail: Some("6.1.btf".into()),
        });
        r.recorder = Some(Recording {
            dir: "/sys/fs/bpf/netpoll-trace/v2".into(),
            links_pinned: true,
        });
        assert_eq!(
            ready_line(&r),
            "ready: kprobe on netpoll_setup, __netpoll_setup (reusing the pinned probes, opened in 12.3 ms; offsets from /x.btf.tar.xz (BTFHub archive, 6.1.btf); legacy object, attach path kprobe (kprobe PMU)); recording into /sys/fs/bpf/netpoll-trace/v2 (links pinned: recording goes on after this process)"
        );
    }
}
