//! Reading a lab guest's serial console: the lines lab/init and lab/lib.sh print
//! (`NPT-BOOT`, `NPT-CHECK`, `NPT-EXIT`, the `NPT-DMESG-BEGIN`..`END` section, and
//! `NPT-PANIC lines=N` where a scenario panics the kernel on purpose) and any kernel oops or
//! warning anywhere in it (after `NPT-PANIC`, kept apart: the panic asked for is expected there).

#[derive(Debug, PartialEq, Clone)]
pub enum Status {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Debug, PartialEq, Clone)]
pub struct Check {
    pub name: String,
    pub status: Status,
}

#[derive(Debug, Default, PartialEq)]
pub struct Console {
    /// `uname -r` the guest reported.
    pub boot: Option<String>,
    /// The scenario's exit status; None when `NPT-EXIT` never came (or was not a number).
    pub exit: Option<i32>,
    pub checks: Vec<Check>,
    /// The guest's dmesg, when the section was complete.
    pub dmesg: Option<Vec<String>>,
    /// Lines that show a kernel bug, oops or warning.
    pub oopses: Vec<String>,
    /// The report lines the scenario's panic prints, once it said `NPT-PANIC lines=N`.
    pub panic: Option<u32>,
    /// Oops-marker lines after `NPT-PANIC`: the panic itself, and whatever else went wrong.
    pub panic_oopses: Vec<String>,
}

/// Kernel texts that fail a run wherever they appear.
const OOPS_MARKERS: &[&str] = &[
    "BUG:",
    "Oops",
    "WARNING:",
    "general protection",
    "Kernel panic",
];

pub fn parse(text: &str) -> Console {
    let mut console = Console::default();
    let mut dmesg: Option<Vec<String>> = None;
    for line in unsplice(text) {
        let line = line.as_str();
        if let Some(lines) = dmesg.as_mut() {
            if marker(line, "NPT-DMESG-END").is_some() {
                console.dmesg = dmesg.take();
                continue;
            }
            lines.push(line.to_string());
        } else if marker(line, "NPT-DMESG-BEGIN").is_some() {
            dmesg = Some(Vec::new());
            continue;
        }
        if let Some(rest) = marker(line, "NPT-BOOT ") {
            console.boot = Some(rest.trim().to_string());
        } else if let Some(rest) = marker(line, "NPT-EXIT ") {
            console.exit = rest.trim().parse().ok();
        } else if let Some(rest) = marker(line, "NPT-PANIC lines=") {
            console.panic = rest.trim().parse().ok();
            continue;
        } else if let Some(rest) = marker(line, "NPT-CHECK ") {
            if let Some(check) = parse_check(rest) {
                console.checks.push(check);
            }
            // A check's own detail may quote kernel text; it is judged by its status.
            continue;
        }
        let found = match console.panic {
            None => &mut console.oopses,
            Some(_) => &mut console.panic_oopses,
        };
        if OOPS_MARKERS.iter().any(|m| line.contains(m))
            && !found.iter().any(|o| same_message(o, line))
        {
            found.push(line.to_string());
        }
    }
    console
}

/// The console's lines, with a check line that a kernel record interrupted put back
/// together. A printk at a console level can land in the middle of our write:
/// "NPT-CHECK traffi[   30.74] npt-hello 161" then "c_unpatched pass" on the next
/// line. Only a check line that is incomplete before the record is joined with the
/// next line (a record glued after a complete status word is left alone); the kernel
/// record stays a line of its own, so oops detection still sees it.
fn unsplice(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let Some(at) = line.find("NPT-CHECK ") else {
            out.push(line.to_string());
            continue;
        };
        let body = at + "NPT-CHECK ".len();
        match kernel_record_at(&line[body..]).map(|r| body + r) {
            Some(cut) if parse_check(&line[body..cut]).is_none() && i < lines.len() => {
                out.push(line[cut..].to_string());
                out.push(format!("{}{}", &line[..cut], lines[i]));
                i += 1;
            }
            _ => out.push(line.to_string()),
        }
    }
    out
}

/// What of a guest's console the terminal shows while the guest runs (the log file always
/// gets all of it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Show {
    Nothing,
    /// The tool's session: what the scenario printed, without the kernel's own records.
    Session,
    /// Every line: firmware, kernel log, scenario, the closing dmesg.
    Everything,
}

/// Picks the tool's session out of a console stream, line by line: what the scenario
/// printed between `NPT-BOOT` and `NPT-EXIT`, without kernel records (the guest's dmesg is
/// shown only when a check fails, or with --verbose) and without the check lines (the
/// verdict reports them).
#[derive(Debug, Default)]
pub struct Session {
    booted: bool,
    ended: bool,
}

impl Session {
    /// The text to show for `line`, if any.
    pub fn line(&mut self, line: &str) -> Option<String> {
        let line = line.trim_end_matches('\r');
        if self.ended {
            return None;
        }
        if let Some(release) = marker(line, "NPT-BOOT ") {
            self.booted = true;
            return Some(format!("(guest booted {})", release.trim()));
        }
        if !self.booted {
            return None;
        }
        if marker(line, "NPT-EXIT ").is_some() {
            self.ended = true;
            return None;
        }
        if marker(line, "NPT-CHECK ").is_some() {
            return None;
        }
        // A kernel record, alone or glued after the scenario's text.
        match kernel_record_at(line) {
            Some(0) => None,
            Some(at) if line[..at].trim().is_empty() => None,
            Some(at) => Some(line[..at].to_string()),
            None => Some(line.to_string()),
        }
    }
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`): a log file or CI page would
/// show them as noise.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Where a kernel console record ("[   30.743596] ...") starts in `s`.
fn kernel_record_at(s: &str) -> Option<usize> {
    s.match_indices('[').map(|(i, _)| i).find(|&i| {
        let rest = &s[i + 1..];
        let Some(end) = rest.find(']') else {
            return false;
        };
        let stamp = rest[..end].trim_start();
        let (secs, frac) = stamp.split_once('.').unwrap_or(("", ""));
        !secs.is_empty()
            && !frac.is_empty()
            && secs.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The text after `tag` when the line carries it (kernel output may precede it on the line).
fn marker<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    line.find(tag).map(|at| &line[at + tag.len()..])
}

/// `NAME pass` | `NAME fail DETAIL` | `NAME skip REASON`
fn parse_check(rest: &str) -> Option<Check> {
    let mut words = rest.trim().splitn(3, ' ');
    let name = words.next()?.to_string();
    // Kernel console output (a printk at a console level) can land right after the
    // status word on the same line: "pass[   26.10] ...". The word is what counts.
    let word = words.next()?.split('[').next()?;
    let detail = words.next().unwrap_or("").trim().to_string();
    let status = match word {
        "pass" => Status::Pass,
        "fail" => Status::Fail(detail),
        "skip" => Status::Skip(detail),
        _ => return None,
    };
    Some(Check { name, status })
}

/// The same kernel message seen on the console and again in the dmesg section.
fn same_message(a: &str, b: &str) -> bool {
    strip_timestamp(a) == strip_timestamp(b)
}

fn strip_timestamp(line: &str) -> &str {
    let t = line.trim_start();
    match (t.starts_with('['), t.find(']')) {
        (true, Some(end)) => t[end + 1..].trim_start(),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[    0.000000] Linux version 6.1.0-56-amd64\r\n\
        NPT-BOOT 6.1.0-56-amd64\n\
        NPT-CHECK uname pass\n\
        NPT-CHECK kprobes skip no kprobe PMU on 5.10\n\
        NPT-CHECK dummy fail rc=2: RTNETLINK answers: Operation not supported\n\
        NPT-EXIT 0\n\
        NPT-DMESG-BEGIN\n\
        [    1.000000] netconsole: network logging started\n\
        NPT-DMESG-END\n";

    #[test]
    fn reads_boot_checks_exit_and_dmesg() {
        let c = parse(GOOD);
        assert_eq!(c.boot.as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(c.exit, Some(0));
        assert_eq!(c.checks.len(), 3);
        assert_eq!(
            c.checks[0],
            Check {
                name: "uname".into(),
                status: Status::Pass
            }
        );
        assert_eq!(
            c.checks[1].status,
            Status::Skip("no kprobe PMU on 5.10".into())
        );
        assert_eq!(
            c.checks[2].status,
            Status::Fail("rc=2: RTNETLINK answers: Operation not supported".into())
        );
        assert_eq!(
            c.dmesg,
            Some(vec![
                "[    1.000000] netconsole: network logging started".to_string()
            ])
        );
        assert!(c.oopses.is_empty());
    }

    #[test]
    fn warning_in_dmesg_is_found_once() {
        let text = "NPT-BOOT x\n[    2.5] WARNING: CPU: 1 PID: 80 at net/core/netpoll.c:600 __netpoll_setup+0x1/0x2\n\
                    NPT-EXIT 0\nNPT-DMESG-BEGIN\n\
                    [    2.5] WARNING: CPU: 1 PID: 80 at net/core/netpoll.c:600 __netpoll_setup+0x1/0x2\n\
                    NPT-DMESG-END\n";
        let c = parse(text);
        assert_eq!(c.oopses.len(), 1, "{:?}", c.oopses);
        assert!(c.oopses[0].contains("WARNING: CPU: 1"));
    }

    #[test]
    fn the_session_is_the_scenarios_output_without_kernel_records_checks_or_dmesg() {
        let console = "SeaBIOS (version 1.16)\n[    0.000000] Linux version 6.12\nNPT-BOOT 6.12.117+deb12-amd64\n\
            $ netpoll-trace check\n[    5.120000] virtio_net virtio0 eth0: up\n  btf ok\n\
            + 0.000s netpoll_setup eth0 ok[    6.100000] netconsole: network logging started\n\
            NPT-CHECK demo_ready pass\nNPT-EXIT 0\nNPT-DMESG-BEGIN\n[    0.000000] Linux version 6.12\n\
            plain dmesg continuation\nNPT-DMESG-END\n";
        let mut s = Session::default();
        let shown: Vec<String> = console.lines().filter_map(|l| s.line(l)).collect();
        assert_eq!(
            shown,
            [
                "(guest booted 6.12.117+deb12-amd64)",
                "$ netpoll-trace check",
                "  btf ok",
                "+ 0.000s netpoll_setup eth0 ok"
            ]
        );
    }

    #[test]
    fn ansi_sequences_are_stripped() {
        assert_eq!(
            strip_ansi("\x1b[1m$ netpoll-trace check\x1b[0m"),
            "$ netpoll-trace check"
        );
        assert_eq!(strip_ansi("plain [1] text"), "plain [1] text");
    }

    #[test]
    fn an_asked_for_panic_is_kept_apart_from_earlier_oopses() {
        let c = parse(
            "NPT-BOOT 6.12\n[ 3.0] WARNING: CPU: 0 PID: 1 at x\nNPT-DMESG-BEGIN\n[ 1.0] ok\nNPT-DMESG-END\n\
             NPT-PANIC lines=300\n[ 9.0] npt-panic: line 1 of 300\n\
             [ 9.1] Kernel panic - not syncing: npt-lab: 300 report lines printed with interrupts off\n",
        );
        assert_eq!(c.panic, Some(300));
        assert_eq!(c.oopses, vec!["[ 3.0] WARNING: CPU: 0 PID: 1 at x"]);
        assert_eq!(c.panic_oopses.len(), 1);
        assert!(c.panic_oopses[0].contains("Kernel panic - not syncing: npt-lab"));
        assert!(c.dmesg.is_some());
    }

    #[test]
    fn panic_without_dmesg_section() {
        let text = "NPT-BOOT x\n[    3.0] BUG: kernel NULL pointer dereference, address: 0000000000000008\n\
                    [    3.0] Oops: 0000 [#1] PREEMPT SMP NOPTI\n[    3.1] Kernel panic - not syncing: Fatal exception\n";
        let c = parse(text);
        assert_eq!(c.exit, None);
        assert_eq!(c.dmesg, None);
        assert_eq!(c.oopses.len(), 3);
    }

    #[test]
    fn unterminated_dmesg_section_is_not_complete() {
        let c = parse("NPT-EXIT 0\nNPT-DMESG-BEGIN\n[ 1.0] x\n");
        assert_eq!(c.dmesg, None);
    }

    #[test]
    fn check_detail_quoting_a_warning_is_not_an_oops() {
        let c = parse("NPT-CHECK no_warn fail saw WARNING: in dmesg\n");
        assert!(c.oopses.is_empty());
        assert!(matches!(c.checks[0].status, Status::Fail(_)));
    }

    #[test]
    fn marker_after_kernel_noise_on_the_same_line() {
        let c = parse("[   5.1] virtio_net virtio0 eth0: up NPT-CHECK late pass\n");
        assert_eq!(c.checks[0].name, "late");
    }

    #[test]
    fn a_kernel_record_inside_a_check_name_is_spliced_out() {
        let text = "NPT-CHECK unpatch_restores pass\nNPT-CHECK traffi[   30.743596] npt-hello-unpatched 161\n\
            c_unpatched pass\nNPT-CHECK delivered_after_unpatch pass\n";
        let c = parse(text);
        let names: Vec<&str> = c.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "unpatch_restores",
                "traffic_unpatched",
                "delivered_after_unpatch"
            ]
        );
        assert!(c.checks.iter().all(|c| c.status == Status::Pass));
        // Cut inside the status word, and a kernel warning as the interrupting record.
        let c = parse("NPT-CHECK x fa[    1.5] WARNING: CPU: 0 PID: 1 at foo\nil rc=1: boom\n");
        assert_eq!(
            c.checks,
            [Check {
                name: "x".into(),
                status: Status::Fail("rc=1: boom".into())
            }]
        );
        assert_eq!(c.oopses.len(), 1);
        // A detail that quotes a timestamp is a complete line: not joined.
        let c = parse("NPT-CHECK y fail rc=1: [    2.0] netpoll: eth0 oops\nNPT-CHECK z pass\n");
        assert_eq!(c.checks.len(), 2);
    }

    #[test]
    fn kernel_output_glued_after_a_status_word_does_not_hide_the_check() {
        let c = parse(
            "NPT-CHECK traffic pass[   26.101154] npt-hello 100\nNPT-CHECK other fail[  1.0] boom detail\n",
        );
        assert_eq!(c.checks.len(), 2, "{:?}", c.checks);
        assert_eq!(c.checks[0].name, "traffic");
        assert!(matches!(c.checks[0].status, Status::Pass));
        assert!(matches!(c.checks[1].status, Status::Fail(_)));
    }
}
