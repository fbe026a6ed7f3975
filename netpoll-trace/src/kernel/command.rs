//! A command run for the agent (its retry): no shell, the configured argv as is, its
//! program checked as the patch module is (`TrustedFile`) and run by its path, in a
//! process group of its own with only the capabilities it is given,
//! stderr kept (the first 4 KiB), bounded by a timeout; stopped with its whole group
//! (SIGTERM, then SIGKILL after `KILL_GRACE`) so nothing it started outlives it.

use std::{
    os::fd::{FromRawFd as _, OwnedFd},
    path::Path,
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use tokio::io::unix::AsyncFd;

use super::{
    privileges::{self, CapSets},
    trusted_file::TrustedFile,
};

/// How long a command has after SIGTERM before its process group gets SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// The signal that ended a command that had to be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoppedBy {
    Term,
    Kill,
}

/// A command that is running, until it is reaped.
pub struct Running {
    child: tokio::process::Child,
    /// Its process group (its own: everything it starts is killed with it).
    pgid: i32,
    /// The leader's pidfd, readable once it exited: waiting on it leaves the leader a
    /// zombie, whose pid (the group's id) cannot be reused before the group is signalled.
    /// None without pidfd_open (before 5.3): the leader is then reaped first.
    exit: Option<AsyncFd<OwnedFd>>,
    /// The argv, joined, as journaled.
    pub command: String,
}

/// How a command ended.
#[derive(Debug)]
pub enum Ran {
    /// It exited, or could not be run: how, or why it failed.
    Exited(Result<String>),
    /// It ran past its timeout and was stopped with its process group.
    TimedOut { command: String, by: StoppedBy },
}

/// Runs `argv` with only the capabilities `caps` for at most `timeout`. While it runs it
/// is in `running`: if the caller is dropped meanwhile (the agent stops), the caller's
/// owner finds it there and stops it with `Running::stop`.
pub async fn run(
    argv: &[String],
    caps: CapSets,
    timeout: Duration,
    running: &mut Option<Running>,
) -> Ran {
    let Some((prog, args)) = argv.split_first() else {
        return Ran::Exited(Err(anyhow!("no command")));
    };
    let command = argv.join(" ");
    // It runs as root with CAP_SYS_MODULE: only a program only root can change. Then run
    // by its path: every directory on the way is root's and not writable by others (the
    // check), so nobody but root can swap it in between. (Running the checked descriptor,
    // fexecve, failed with ENOENT on 5.10 in the lab.)
    if let Err(e) = TrustedFile::open_program(Path::new(prog), "retry command") {
        return Ran::Exited(Err(e));
    }
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the hook only makes system calls (prctl, capset) on memory prepared
    // before the fork.
    unsafe { cmd.pre_exec(move || privileges::restrict_child(&caps)) };
    let mut child = match cmd.spawn().with_context(|| format!("running {prog}")) {
        Ok(c) => c,
        Err(e) => return Ran::Exited(Err(e)),
    };
    let Some(pgid) = child.id().map(|p| p as i32) else {
        return Ran::Exited(Err(anyhow!("{command} exited before it could be watched")));
    };
    let stderr = child.stderr.take().map(|e| tokio::spawn(read_bounded(e)));
    let r = running.insert(Running {
        child,
        pgid,
        exit: pidfd(pgid),
        command: command.clone(),
    });
    let status = match tokio::time::timeout(timeout, r.exited()).await {
        Ok(()) => {
            // Nothing it started outlives it.
            signal_group(pgid, libc::SIGKILL);
            r.child.wait().await
        }
        Err(_) => {
            let by = r.stop().await;
            *running = None;
            return Ran::TimedOut { command, by };
        }
    };
    *running = None;
    let stderr = match stderr {
        Some(task) => tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default(),
        None => String::new(),
    };
    Ran::Exited(match status {
        Ok(s) if s.success() => Ok(format!("ran {command} (exit 0)")),
        Ok(s) => Err(anyhow!("{command} exited with {s}: {}", stderr.trim())),
        Err(e) => Err(anyhow!("waiting for {command}: {e}")),
    })
}

impl Running {
    /// Stops it and its process group: SIGTERM, then SIGKILL after `KILL_GRACE`; says
    /// which signal ended it.
    pub async fn stop(&mut self) -> StoppedBy {
        signal_group(self.pgid, libc::SIGTERM);
        let by = match tokio::time::timeout(KILL_GRACE, self.exited()).await {
            Ok(()) => StoppedBy::Term,
            Err(_) => StoppedBy::Kill,
        };
        // Also whatever in the group ignored SIGTERM after its leader exited.
        signal_group(self.pgid, libc::SIGKILL);
        let _ = self.child.wait().await;
        by
    }

    /// Until the leader has exited: not reaped where a pidfd says so (`exit`).
    async fn exited(&mut self) {
        if let Some(fd) = &self.exit
            && fd.readable().await.is_ok()
        {
            return;
        }
        let _ = self.child.wait().await;
    }
}

/// A pidfd of `pid` (our child, not yet reaped), for `Running::exit`.
fn pidfd(pid: i32) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open with integer arguments; the descriptor is close-on-exec.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor we just opened and own; the AsyncFd owns it from then on and
    // nothing else closes or replaces it.
    unsafe {
        let fd = OwnedFd::from_raw_fd(fd as i32);
        AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE).ok()
    }
}

/// The first 4 KiB of a command's stderr (the rest is read and discarded, so the
/// command never blocks on a full pipe).
async fn read_bounded(mut from: tokio::process::ChildStderr) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = 4096usize.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) on a process group we created; ESRCH (already gone) is fine.
    unsafe { libc::kill(-pgid, sig) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    /// Gone (or a zombie of a reaper that is not us) within a second: SIGKILL is
    /// delivered at once, the exit takes a moment.
    fn gone(pid: i32) -> bool {
        (0..20).any(|_| {
            let dead = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z "));
            if !dead {
                std::thread::sleep(Duration::from_millis(50));
            }
            dead
        })
    }

    fn child_pid(file: &std::path::Path) -> i32 {
        std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn caps() -> CapSets {
        CapSets::only(&[])
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_process_group() {
        let file = std::env::temp_dir().join(format!("npt-retry-{}", std::process::id()));
        // Ignores SIGTERM, and so does the grandchild it leaves behind.
        let script = format!("trap '' TERM; sleep 60 & echo $! >{}; wait", file.display());
        let mut running = None;
        let started = std::time::Instant::now();
        let r = rt().block_on(async {
            // Bounded here too: before the fix the retry waited for the command forever.
            tokio::time::timeout(
                Duration::from_secs(20),
                run(&sh(&script), caps(), Duration::from_secs(1), &mut running),
            )
            .await
        });
        let Ok(Ran::TimedOut { command, by }) = r else {
            panic!("not timed out")
        };
        assert_eq!(by, StoppedBy::Kill);
        assert!(command.starts_with("/bin/sh -c trap"), "{command}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(running.is_none());
        assert!(
            gone(child_pid(&file)),
            "the grandchild outlived the timeout"
        );
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn a_command_cut_off_by_its_caller_is_left_running_for_the_caller_to_stop() {
        let file = std::env::temp_dir().join(format!("npt-retry-stop-{}", std::process::id()));
        let script = format!("sleep 60 & echo $! >{}; wait", file.display());
        let mut running = None;
        let rt = rt();
        rt.block_on(async {
            // The agent's select! drops the retry when SIGTERM arrives: here, after 1 s.
            let stopped = tokio::time::timeout(
                Duration::from_secs(1),
                run(&sh(&script), caps(), Duration::from_secs(60), &mut running),
            )
            .await;
            assert!(stopped.is_err());
        });
        let mut r = running.take().expect("the running command is still known");
        assert!(r.command.starts_with("/bin/sh -c sleep"));
        assert_eq!(rt.block_on(r.stop()), StoppedBy::Term);
        assert!(gone(child_pid(&file)));
        let _ = std::fs::remove_file(&file);
    }

    /// Run as root with CAP_SYS_MODULE: a program (or a symbolic link to one) that anyone
    /// but root could change is refused before anything runs; a trusted one runs, a
    /// script too.
    #[test]
    fn a_program_others_could_change_is_refused_and_never_run() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = std::env::temp_dir().join(format!("npt-retry-prog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (prog, link, ran) = (d.join("reload"), d.join("link"), d.join("ran"));
        std::fs::write(&prog, format!("#!/bin/sh\ntouch {}\n", ran.display())).unwrap();
        std::os::unix::fs::symlink(&prog, &link).unwrap();
        let run_it = |p: &std::path::Path| {
            let mut running = None;
            let argv = [p.display().to_string()];
            rt().block_on(run(&argv, caps(), Duration::from_secs(10), &mut running))
        };
        let refused = |p: &std::path::Path, why: &str| {
            let Ran::Exited(Err(e)) = run_it(p) else {
                panic!("{} was run", p.display())
            };
            let e = e.to_string();
            assert!(
                e.starts_with("refusing retry command") && e.contains(why),
                "{e}"
            );
            assert!(!ran.exists(), "{} was run", p.display());
        };
        let mode = |m| std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(m));
        mode(0o775).unwrap();
        refused(&prog, "writable by group or others");
        mode(0o755).unwrap();
        std::os::unix::fs::chown(&prog, Some(65534), None).unwrap();
        refused(&prog, "owned by uid 65534, not root");
        std::os::unix::fs::chown(&prog, Some(0), None).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
        refused(&link, "owned by uid 65534, not root");
        std::os::unix::fs::lchown(&link, Some(0), None).unwrap();
        for good in [&prog, &link] {
            assert!(
                matches!(run_it(good), Ran::Exited(Ok(_))),
                "{}",
                good.display()
            );
            assert!(ran.exists());
            std::fs::remove_file(&ran).unwrap();
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The wait before the group's SIGKILL leaves the leader a zombie: its pid, the
    /// group's id, cannot have been reused by the time the group is signalled.
    #[test]
    fn the_leader_is_left_unreaped_until_its_group_is_signalled() {
        rt().block_on(async {
            let mut cmd = tokio::process::Command::new("/bin/true");
            let child = cmd.process_group(0).spawn().unwrap();
            let pid = child.id().unwrap() as i32;
            let mut r = Running {
                child,
                pgid: pid,
                exit: pidfd(pid),
                command: String::new(),
            };
            assert!(r.exit.is_some(), "no pidfd_open on this kernel");
            r.exited().await;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            assert!(stat.contains(") Z "), "{stat}");
            assert!(r.child.wait().await.unwrap().success());
        });
    }

    #[test]
    fn a_command_that_fails_says_how() {
        let mut running = None;
        let timeout = Duration::from_secs(10);
        let r = rt().block_on(run(
            &sh("echo nope >&2; exit 3"),
            caps(),
            timeout,
            &mut running,
        ));
        let Ran::Exited(Err(e)) = r else {
            panic!("not a failure")
        };
        assert!(e.to_string().contains("exit status: 3: nope"), "{e}");
        let r = rt().block_on(run(&sh("exit 0"), caps(), timeout, &mut running));
        assert!(matches!(r, Ran::Exited(Ok(_))));
    }
}
