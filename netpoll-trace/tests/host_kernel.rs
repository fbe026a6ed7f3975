//! `check` and `watch` on the build machine's own kernel, outside the lab. The
//! expected verdict is derived here, independently of the tool, from /proc/kallsyms
//! and sysfs, so the test asserts the tool's answer on any kernel it runs on (on
//! our build machines: no kprobes, no netpoll, exit 4).

use std::{path::Path, process::Command};

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_netpoll-trace"))
}

fn kallsyms_has(name: &str) -> bool {
    std::fs::read_to_string("/proc/kallsyms")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some(name))
}

fn kprobes_present() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
        || Path::new("/sys/kernel/tracing/kprobe_events").exists()
        || Path::new("/sys/kernel/debug/tracing/kprobe_events").exists()
}

#[test]
fn check_names_what_this_kernel_lacks_and_exits_accordingly() {
    let netpoll = kallsyms_has("netpoll_setup") && kallsyms_has("__netpoll_setup");
    let kprobes = kprobes_present();
    let out = tool().arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // A missing row is a failure, not an empty line that contains nothing.
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` row in check's table:\n{text}"))
            .to_string()
    };
    assert_eq!(line("kprobes").contains("MISSING"), !kprobes, "{text}");
    assert_eq!(line("netpoll").contains("MISSING"), !netpoll, "{text}");
    if !kprobes {
        assert!(text.contains("CONFIG_KPROBES"), "{text}");
    }
    if !netpoll {
        assert!(text.contains("CONFIG_NETPOLL"), "{text}");
    }
    let expected = if netpoll && kprobes { 0 } else { 4 };
    assert_eq!(out.status.code(), Some(expected), "{text}");
}

#[test]
fn check_json_agrees_with_the_table() {
    let out = tool().args(["check", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let traceable = v["traceable"].as_bool().unwrap();
    assert_eq!(out.status.code(), Some(if traceable { 0 } else { 4 }));
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    for want in [
        "btf", "kprobes", "fentry", "bpffs", "netpoll", "modules", "lockdown",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
}

fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|u| u.split_whitespace().nth(1))
        == Some("0")
}

/// What `watch --for 1s` does here, derived from the kernel: no netpoll or no kprobes is
/// a one-line exit 4 naming what is missing; otherwise root traces for a second (exit 0)
/// and anyone else gets a one-line runtime error (exit 1) saying to run as root.
#[test]
fn watch_on_this_kernel_exits_as_the_kernel_dictates() {
    let netpoll = kallsyms_has("netpoll_setup");
    let kprobes = kprobes_present();
    let out = tool().args(["watch", "--for", "1s"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if !netpoll {
        assert_eq!(out.status.code(), Some(4), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("netpoll_setup") && err.contains("check"),
            "{err}"
        );
    } else if !kprobes {
        assert_eq!(out.status.code(), Some(4), "{err}");
        assert!(
            err.contains("CONFIG_KPROBES") || err.contains("kprobe"),
            "{err}"
        );
    } else if root() {
        assert_eq!(out.status.code(), Some(0), "{err}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("root"), "{err}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = tool().args(["watch", "--for", "ten"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));
    // --for and a COMMAND: the COMMAND ends the watch, so both is a mistake, not a choice.
    let out = tool()
        .args(["watch", "--for", "1s", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
    // --wait-all delays COMMAND's start: without one it would do nothing.
    let out = tool().args(["watch", "--wait-all"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--wait-all") && err.contains("COMMAND"),
        "{err}"
    );
}

/// Runs the tool for at most 10 s (an agent on a kernel with netpoll keeps running) and
/// returns its stderr.
fn stderr_within_10s(args: &[&str]) -> String {
    let mut child = tool()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned()
}

#[test]
fn the_agent_reads_etc_or_says_once_that_it_runs_on_defaults() {
    let err = stderr_within_10s(&["agent"]);
    let says = err
        .matches("no /etc/netpoll-trace/agent.toml: built-in defaults")
        .count();
    assert_eq!(
        says,
        if Path::new("/etc/netpoll-trace/agent.toml").exists() {
            0
        } else {
            1
        },
        "{err}"
    );
}

#[test]
fn the_configuration_sets_the_log_format_and_the_flag_wins() {
    let dir = std::env::temp_dir().join(format!("npt-lf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("agent.toml");
    // A valid configuration and a journal that cannot be opened: the error line comes in
    // the configured format on any kernel.
    std::fs::write(&cfg, "log_format = \"json\"\nring_size = 4096\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let err = stderr_within_10s(&[
        "agent",
        "--config",
        cfg,
        "--journal",
        "/nonexistent-dir/j.jsonl",
    ]);
    assert!(
        !err.is_empty()
            && err
                .lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{err}"
    );
    let err = stderr_within_10s(&[
        "agent",
        "--config",
        cfg,
        "--journal",
        "/nonexistent-dir/j.jsonl",
        "--log-format",
        "text",
    ]);
    assert!(
        err.lines().all(|l| l.starts_with("netpoll-trace: ")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
