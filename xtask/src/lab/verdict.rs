//! Deciding whether one lab run passed, from its parsed console and the scenario's declared
//! checks.

use crate::lab::console::{Check, Console, Status};
use crate::lab::scenario::Ending;

/// The panic a scenario asks for (lab/panic/npt_panic.c); nothing else may follow it.
const ASKED_PANIC: &str = "Kernel panic - not syncing: npt-lab";

#[derive(Debug, PartialEq)]
pub struct Verdict {
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
    /// Checks that were skipped, with their reasons.
    pub skipped: Vec<(String, String)>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// `host_checks`: what the lab runner judged outside the guest (a receiver's counts), judged
/// like the guest's own checks.
pub fn judge(
    console: &Console,
    declared: &[String],
    timed_out: bool,
    timeout_secs: u64,
    ending: Ending,
    host_checks: &[Check],
) -> Verdict {
    let mut failures = Vec::new();
    if timed_out {
        failures.push(format!("timed out after {timeout_secs}s (QEMU killed)"));
    }
    if console.boot.is_none() {
        failures.push("the guest never reported NPT-BOOT (did the kernel or /init start?)".into());
    }
    match (ending, console.exit, console.panic) {
        (Ending::Exit, None, _) => failures.push("no NPT-EXIT: the scenario did not finish".into()),
        (Ending::Exit, Some(0), _) => {}
        (Ending::Exit, Some(rc), _) => failures.push(format!("scenario exited {rc}")),
        (Ending::Panic, Some(rc), _) => failures.push(format!(
            "the scenario returned ({rc}) instead of panicking the kernel"
        )),
        (Ending::Panic, None, None) => {
            failures.push("no NPT-PANIC: the scenario never reached its panic".into())
        }
        (Ending::Panic, None, Some(_)) => {
            if !console.panic_oopses.iter().any(|l| l.contains(ASKED_PANIC)) {
                failures.push(format!("the kernel never printed \"{ASKED_PANIC}\""));
            }
        }
    }
    // After the asked-for panic only its own lines may carry an oops marker.
    for line in console
        .panic_oopses
        .iter()
        .filter(|l| !l.contains(ASKED_PANIC))
    {
        failures.push(format!("kernel, during the panic: {}", line.trim()));
    }
    for check in console.checks.iter().chain(host_checks) {
        if let Status::Fail(detail) = &check.status {
            failures.push(format!("check {} failed: {detail}", check.name));
        }
    }
    for name in declared {
        if !console
            .checks
            .iter()
            .chain(host_checks)
            .any(|c| &c.name == name)
        {
            failures.push(format!("check {name} never reported"));
        }
    }
    if (console.exit.is_some() || console.panic.is_some()) && console.dmesg.is_none() {
        failures.push("the dmesg section is missing or cut short".into());
    }
    for oops in &console.oopses {
        failures.push(format!("kernel: {}", oops.trim()));
    }
    let skipped = console
        .checks
        .iter()
        .chain(host_checks)
        .filter_map(|c| match &c.status {
            Status::Skip(reason) => Some((c.name.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    Verdict { failures, skipped }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::console::parse;

    fn declared(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    const CLEAN: &str = "NPT-BOOT 6.12.117+deb12-amd64\nNPT-CHECK a pass\nNPT-CHECK b skip no netkit before 6.7\n\
                         NPT-EXIT 0\nNPT-DMESG-BEGIN\n[ 1.0] hello\nNPT-DMESG-END\n";

    #[test]
    fn clean_run_passes_and_reports_skips() {
        let v = judge(
            &parse(CLEAN),
            &declared(&["a", "b"]),
            false,
            180,
            Ending::Exit,
            &[],
        );
        assert!(v.passed(), "{:?}", v.failures);
        assert_eq!(
            v.skipped,
            vec![("b".to_string(), "no netkit before 6.7".to_string())]
        );
    }

    #[test]
    fn warning_in_dmesg_fails_the_run() {
        let text = CLEAN.replace(
            "[ 1.0] hello",
            "[ 1.0] ------------[ cut here ]------------\n[ 1.0] WARNING: CPU: 0 PID: 1 at lib/foo.c:1 foo+0x0/0x10",
        );
        let v = judge(
            &parse(&text),
            &declared(&["a", "b"]),
            false,
            180,
            Ending::Exit,
            &[],
        );
        assert!(!v.passed());
        assert!(
            v.failures.iter().any(|f| f.contains("WARNING: CPU: 0")),
            "{:?}",
            v.failures
        );
    }

    #[test]
    fn missing_declared_check_fails_the_run() {
        let v = judge(
            &parse(CLEAN),
            &declared(&["a", "b", "c"]),
            false,
            180,
            Ending::Exit,
            &[],
        );
        assert_eq!(v.failures, vec!["check c never reported".to_string()]);
    }

    #[test]
    fn failed_check_and_nonzero_exit_fail_the_run() {
        let text = CLEAN
            .replace("NPT-CHECK a pass", "NPT-CHECK a fail rc=1")
            .replace("NPT-EXIT 0", "NPT-EXIT 1");
        let v = judge(
            &parse(&text),
            &declared(&["a"]),
            false,
            180,
            Ending::Exit,
            &[],
        );
        assert_eq!(
            v.failures,
            vec![
                "scenario exited 1".to_string(),
                "check a failed: rc=1".to_string()
            ]
        );
    }

    #[test]
    fn timeout_without_exit_fails_the_run() {
        let v = judge(
            &parse("NPT-BOOT x\nNPT-CHECK a pass\n"),
            &declared(&["a"]),
            true,
            30,
            Ending::Exit,
            &[],
        );
        assert!(v.failures[0].starts_with("timed out after 30s"));
        assert!(v.failures.iter().any(|f| f.contains("no NPT-EXIT")));
    }

    const PANICKED: &str = "NPT-BOOT 6.12\nNPT-CHECK a pass\nNPT-DMESG-BEGIN\n[ 1.0] hello\nNPT-DMESG-END\n\
                            NPT-PANIC lines=2\n[ 9.0] npt-panic: line 1 of 2\n\
                            [ 9.1] Kernel panic - not syncing: npt-lab: 2 report lines printed with interrupts off\n";

    fn received(ok: bool) -> Vec<Check> {
        vec![Check {
            name: "received_report".into(),
            status: if ok {
                Status::Pass
            } else {
                Status::Fail("got 1 of 2".into())
            },
        }]
    }

    #[test]
    fn an_asked_for_panic_with_everything_received_passes() {
        let v = judge(
            &parse(PANICKED),
            &declared(&["a", "received_report"]),
            false,
            180,
            Ending::Panic,
            &received(true),
        );
        assert!(v.passed(), "{:?}", v.failures);
    }

    #[test]
    fn a_panic_scenario_fails_on_loss_a_missing_panic_or_another_oops_during_it() {
        let v = judge(
            &parse(PANICKED),
            &declared(&["a"]),
            false,
            180,
            Ending::Panic,
            &received(false),
        );
        assert_eq!(
            v.failures,
            vec!["check received_report failed: got 1 of 2".to_string()]
        );
        let no_panic = PANICKED.replace("Kernel panic - not syncing: npt-lab", "still alive");
        let v = judge(
            &parse(&no_panic),
            &declared(&[]),
            false,
            180,
            Ending::Panic,
            &[],
        );
        assert!(
            v.failures.iter().any(|f| f.contains("never printed")),
            "{:?}",
            v.failures
        );
        let worse = format!("{PANICKED}[ 9.2] BUG: unable to handle page fault\n");
        let v = judge(
            &parse(&worse),
            &declared(&[]),
            false,
            180,
            Ending::Panic,
            &[],
        );
        assert_eq!(
            v.failures,
            vec!["kernel, during the panic: [ 9.2] BUG: unable to handle page fault".to_string()]
        );
        let returned = judge(
            &parse(CLEAN),
            &declared(&[]),
            false,
            180,
            Ending::Panic,
            &[],
        );
        assert!(
            returned.failures[0].contains("instead of panicking"),
            "{:?}",
            returned.failures
        );
        // An unasked-for panic in an ordinary scenario still fails it.
        let v = judge(
            &parse(PANICKED),
            &declared(&[]),
            false,
            180,
            Ending::Exit,
            &[],
        );
        assert!(
            v.failures.iter().any(|f| f.contains("no NPT-EXIT")),
            "{:?}",
            v.failures
        );
    }
}
