//! What the lab runner prints: one line per kernel x scenario, details on failure, a summary.

use std::time::Duration;

use crate::lab::verdict::Verdict;
use crate::setup::kernels::{self, Kernel};

/// Console lines shown with a failure.
const TAIL_LINES: usize = 40;

pub fn result_line(kernel: &str, scenario: &str, verdict: &Verdict, elapsed: Duration) -> String {
    let status = if verdict.passed() { "PASS" } else { "FAIL" };
    let mut line = format!(
        "{kernel:<5} {scenario:<24} {status} {:>5.1}s",
        elapsed.as_secs_f64()
    );
    for (name, reason) in &verdict.skipped {
        line.push_str(&format!("  skipped {name} ({reason})"));
    }
    line
}

pub fn failure_details(verdict: &Verdict, console: &str, log: &str) -> String {
    let mut out = String::new();
    for f in &verdict.failures {
        out.push_str(&format!("      reason: {f}\n"));
    }
    let lines: Vec<&str> = console.lines().collect();
    let from = lines.len().saturating_sub(TAIL_LINES);
    out.push_str(&format!(
        "      last {} console lines (full log: {log}):\n",
        lines.len() - from
    ));
    for l in &lines[from..] {
        out.push_str(&format!("      | {l}\n"));
    }
    out
}

/// `kernel 6.12 = linux-image-6.12.117+deb12-amd64 6.12.117-1~deb12u1 (+ 3 headers/kbuild packages)`:
/// the exact Debian kernel a run used, one line per kernel.
pub fn kernel_line(kernel: &Kernel) -> String {
    let rest = kernel.packages.len().saturating_sub(1);
    let extra = if rest > 0 {
        format!(" (+ {rest} headers/kbuild packages)")
    } else {
        String::new()
    };
    format!(
        "kernel {:<5} = {}{extra}",
        kernel.label,
        kernels::describe(&kernel.packages[..kernel.packages.len().min(1)])
    )
}

pub fn summary(passed: usize, failed: usize) -> String {
    format!("lab: {passed} passed, {failed} failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_status_time_and_skips() {
        let v = Verdict {
            failures: vec![],
            skipped: vec![("kprobe_pmu".into(), "not on 5.10".into())],
        };
        let line = result_line("5.10", "smoke", &v, Duration::from_millis(12_340));
        assert!(line.starts_with("5.10  smoke"));
        assert!(line.contains("PASS  12.3s"));
        assert!(line.ends_with("skipped kprobe_pmu (not on 5.10)"));
    }

    #[test]
    fn failure_shows_reasons_and_the_console_tail() {
        let v = Verdict {
            failures: vec!["scenario exited 1".into()],
            skipped: vec![],
        };
        let console: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let d = failure_details(&v, &console, "target/lab/6.1/smoke.log");
        assert!(d.contains("reason: scenario exited 1"));
        assert!(d.contains("| line 99") && d.contains("| line 60") && !d.contains("| line 59\n"));
    }

    #[test]
    fn kernel_line_names_the_exact_image_package() {
        let k = Kernel {
            label: "6.1",
            spec: crate::setup::kernels::spec("6.1").unwrap(),
            build_root: None,
            release: "6.1.0-48-amd64".into(),
            root: "/x".into(),
            packages: vec![
                ("linux-image-6.1.0-48-amd64".into(), "6.1.172-1".into()),
                ("linux-kbuild-6.1".into(), "6.1.172-1".into()),
            ],
        };
        assert_eq!(
            kernel_line(&k),
            "kernel 6.1   = linux-image-6.1.0-48-amd64 6.1.172-1 (+ 1 headers/kbuild packages)"
        );
    }

    #[test]
    fn summary_is_a_plain_count_line() {
        assert_eq!(summary(3, 0), "lab: 3 passed, 0 failed");
    }
}
