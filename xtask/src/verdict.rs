//! Deciding whether one lab run passed, from its parsed console and the scenario's declared
//! checks.

use crate::console::{Console, Status};

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

pub fn judge(
    console: &Console,
    declared: &[String],
    timed_out: bool,
    timeout_secs: u64,
) -> Verdict {
    let mut failures = Vec::new();
    if timed_out {
        failures.push(format!("timed out after {timeout_secs}s (QEMU killed)"));
    }
    if console.boot.is_none() {
        failures.push("the guest never reported NPT-BOOT (did the kernel or /init start?)".into());
    }
    match console.exit {
        None => failures.push("no NPT-EXIT: the scenario did not finish".into()),
        Some(0) => {}
        Some(rc) => failures.push(format!("scenario exited {rc}")),
    }
    for check in &console.checks {
        if let Status::Fail(detail) = &check.status {
            failures.push(format!("check {} failed: {detail}", check.name));
        }
    }
    for name in declared {
        if !console.checks.iter().any(|c| &c.name == name) {
            failures.push(format!("check {name} never reported"));
        }
    }
    if console.exit.is_some() && console.dmesg.is_none() {
        failures.push("the dmesg section is missing or cut short".into());
    }
    for oops in &console.oopses {
        failures.push(format!("kernel: {}", oops.trim()));
    }
    let skipped = console
        .checks
        .iter()
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
    use crate::console::parse;

    fn declared(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    const CLEAN: &str = "NPT-BOOT 6.12.117+deb12-amd64\nNPT-CHECK a pass\nNPT-CHECK b skip no netkit before 6.7\n\
                         NPT-EXIT 0\nNPT-DMESG-BEGIN\n[ 1.0] hello\nNPT-DMESG-END\n";

    #[test]
    fn clean_run_passes_and_reports_skips() {
        let v = judge(&parse(CLEAN), &declared(&["a", "b"]), false, 180);
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
        let v = judge(&parse(&text), &declared(&["a", "b"]), false, 180);
        assert!(!v.passed());
        assert!(
            v.failures.iter().any(|f| f.contains("WARNING: CPU: 0")),
            "{:?}",
            v.failures
        );
    }

    #[test]
    fn missing_declared_check_fails_the_run() {
        let v = judge(&parse(CLEAN), &declared(&["a", "b", "c"]), false, 180);
        assert_eq!(v.failures, vec!["check c never reported".to_string()]);
    }

    #[test]
    fn failed_check_and_nonzero_exit_fail_the_run() {
        let text = CLEAN
            .replace("NPT-CHECK a pass", "NPT-CHECK a fail rc=1")
            .replace("NPT-EXIT 0", "NPT-EXIT 1");
        let v = judge(&parse(&text), &declared(&["a"]), false, 180);
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
        );
        assert!(v.failures[0].starts_with("timed out after 30s"));
        assert!(v.failures.iter().any(|f| f.contains("no NPT-EXIT")));
    }
}
