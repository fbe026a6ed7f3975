//! A closed standard output (`netpoll-trace check | head -0`, a reader that went away)
//! ends a command with one line saying so and status 1: never a panic (status 101).

use std::os::fd::{FromRawFd as _, OwnedFd};
use std::process::{Command, Stdio};

/// A pipe whose read end is already closed: writing to it fails with EPIPE.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe fills two descriptors we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are ours; the read end is closed at once.
    unsafe {
        drop(OwnedFd::from_raw_fd(fds[0]));
        OwnedFd::from_raw_fd(fds[1])
    }
}

#[test]
fn check_with_a_closed_stdout_says_so_and_exits_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_netpoll-trace"))
        .arg("check")
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("standard output closed"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
