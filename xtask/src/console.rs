//! Reading a lab guest's serial console: the lines lab/init and lab/lib.sh print
//! (`NPT-BOOT`, `NPT-CHECK`, `NPT-EXIT`, the `NPT-DMESG-BEGIN`..`END` section) and any kernel
//! oops or warning anywhere in it.

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
}

/// Kernel texts that fail a run wherever they appear.
const OOPS_MARKERS: &[&str] = &["BUG:", "Oops", "WARNING:", "general protection", "Kernel panic"];

pub fn parse(text: &str) -> Console {
    let mut console = Console::default();
    let mut dmesg: Option<Vec<String>> = None;
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
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
        } else if let Some(rest) = marker(line, "NPT-CHECK ") {
            if let Some(check) = parse_check(rest) {
                console.checks.push(check);
            }
            // A check's own detail may quote kernel text; it is judged by its status.
            continue;
        }
        if OOPS_MARKERS.iter().any(|m| line.contains(m)) && !console.oopses.iter().any(|o| same_message(o, line)) {
            console.oopses.push(line.to_string());
        }
    }
    console
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
        assert_eq!(c.checks[0], Check { name: "uname".into(), status: Status::Pass });
        assert_eq!(c.checks[1].status, Status::Skip("no kprobe PMU on 5.10".into()));
        assert_eq!(c.checks[2].status, Status::Fail("rc=2: RTNETLINK answers: Operation not supported".into()));
        assert_eq!(c.dmesg, Some(vec!["[    1.000000] netconsole: network logging started".to_string()]));
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
    fn kernel_output_glued_after_a_status_word_does_not_hide_the_check() {
        let c = parse("NPT-CHECK traffic pass[   26.101154] npt-hello 100\nNPT-CHECK other fail[  1.0] boom detail\n");
        assert_eq!(c.checks.len(), 2, "{:?}", c.checks);
        assert_eq!(c.checks[0].name, "traffic");
        assert!(matches!(c.checks[0].status, Status::Pass));
        assert!(matches!(c.checks[1].status, Status::Fail(_)));
    }
}
