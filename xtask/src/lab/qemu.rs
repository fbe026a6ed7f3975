//! Booting a lab guest under QEMU/TCG (nested KVM fails on these machines) with its NICs on one
//! QEMU-internal hub, so guests talk NIC to NIC and nothing leaves QEMU; the one exception is an
//! `e1000-host` NIC, whose user network's 10.0.2.2 is this host's loopback, where the lab runner
//! listens (receiver.rs): what a dying guest sent is counted outside it. The serial console is
//! captured line by line to a log file (and optionally the terminal); the guest is killed at the
//! deadline.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::lab::console::{Session, Show};
use crate::process;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nic {
    Virtio,
    E1000,
    /// An e1000 on QEMU's user network instead of the hub: the guest (10.0.2.15 by convention)
    /// reaches the lab runner's receiver at 10.0.2.2:`npt.receiver`.
    E1000Host,
}

impl Nic {
    pub fn parse(word: &str) -> Result<Nic> {
        match word {
            "virtio" => Ok(Nic::Virtio),
            "e1000" => Ok(Nic::E1000),
            "e1000-host" => Ok(Nic::E1000Host),
            other => bail!("unknown NIC {other:?}: the lab has virtio, e1000 and e1000-host"),
        }
    }

    fn device(self) -> &'static str {
        match self {
            Nic::Virtio => "virtio-net-pci",
            Nic::E1000 | Nic::E1000Host => "e1000",
        }
    }

    /// The guest driver module.
    pub fn module(self) -> &'static str {
        match self {
            Nic::Virtio => "virtio_net",
            Nic::E1000 | Nic::E1000Host => "e1000",
        }
    }
}

pub struct Machine {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
    pub nics: Vec<Nic>,
    pub cpus: u32,
    /// A host thread per vCPU (multi-threaded TCG) instead of one for all: only for the
    /// bench's opt-in measurement of work the guest does side by side (`--mttcg`).
    pub mttcg: bool,
}

impl Machine {
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-cpu",
            "max",
            "-m",
            "1024",
            "-nographic",
            "-no-reboot",
            // No default NIC: only the scenario's, on the internal hub.
            "-nic",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // One TCG thread for both vCPUs unless asked: with multi-threaded TCG a guest
        // kernel patching its own text (static keys, BPF trampolines) sometimes trapped
        // on a stale int3 ("Oops: int3" in __schedule during a 6.12 fentry flood, and in
        // early boot before): the emulator's cross-vCPU code modification, not ours.
        let tcg = if self.mttcg { "multi" } else { "single" };
        args.extend(["-accel".into(), format!("tcg,thread={tcg}")]);
        args.extend(["-smp".into(), self.cpus.to_string()]);
        args.extend(["-kernel".into(), self.kernel.display().to_string()]);
        args.extend(["-initrd".into(), self.initrd.display().to_string()]);
        args.extend(["-append".into(), self.append.clone()]);
        for (i, nic) in self.nics.iter().enumerate() {
            let netdev = match nic {
                // Not restricted: the guest must reach 10.0.2.2, which is this host's
                // loopback (the scenario sends only there).
                Nic::E1000Host => format!("user,id=n{i},net=10.0.2.0/24,ipv6=off"),
                _ => format!("hubport,id=n{i},hubid=0"),
            };
            args.extend(["-netdev".into(), netdev]);
            args.extend([
                "-device".into(),
                format!("{},netdev=n{i},mac={}", nic.device(), mac(i)),
            ]);
        }
        // A hub forwards a frame only while some other port can receive; with a
        // single NIC nothing can, QEMU holds the frame, the guest's TX queue never
        // completes and the kernel's TX watchdog fires. A restricted user-mode
        // network (no route to the host or beyond) is a port that accepts and drops.
        args.extend(["-netdev".into(), "user,id=sink,restrict=on,ipv6=off".into()]);
        args.extend([
            "-netdev".into(),
            "hubport,id=sinkport,hubid=0,netdev=sink".into(),
        ]);
        args
    }
}

/// A distinct, locally administered MAC per NIC index.
pub fn mac(index: usize) -> String {
    format!("52:54:00:4e:50:{:02x}", 0x10 + index)
}

pub struct Run {
    pub console: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// How long QEMU may take to exit once the guest printed its last line.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// Boots `machine`, writing the console to `log` (and what `show` says to the terminal); kills QEMU
/// after `timeout`, or `EXIT_GRACE` after a console line containing `last_line` (the guest is
/// done; a power-off that hangs must not count as a timeout).
pub fn run(
    machine: &Machine,
    log: &Path,
    timeout: Duration,
    show: Show,
    last_line: &str,
) -> Result<Run> {
    if !process::on_path("qemu-system-x86_64") {
        bail!("qemu-system-x86_64 is not installed: run `cargo xtask setup`");
    }
    let started = Instant::now();
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new("qemu-system-x86_64")
        .args(machine.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel::<String>();
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    let mut threads = Vec::new();
    for reader in readers.into_iter().flatten() {
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            while reader
                .read_until(b'\n', &mut buf)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                if tx.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        }));
    }
    drop(tx);
    let mut deadline = started + timeout;
    let mut console = String::new();
    let mut timed_out = false;
    let mut guest_done = false;
    let mut session = Session::default();
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = !guest_done;
            let _ = child.kill();
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                writeln!(file, "{line}").with_context(|| format!("writing {}", log.display()))?;
                match show {
                    Show::Nothing => {}
                    Show::Session => {
                        if let Some(text) = session.line(&line) {
                            // Bold prompts on a terminal; plain text in a log.
                            let text = if crate::progress::live() {
                                text
                            } else {
                                crate::lab::console::strip_ansi(&text)
                            };
                            println!("  | {text}");
                        }
                    }
                    Show::Everything => println!("  | {line}"),
                }
                if !guest_done && line.contains(last_line) {
                    guest_done = true;
                    deadline = deadline.min(Instant::now() + EXIT_GRACE);
                }
                console.push_str(&line);
                console.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.wait();
    // After a kill the pipes close; the remaining lines are still worth keeping.
    for line in rx.try_iter() {
        let _ = writeln!(file, "{line}");
        console.push_str(&line);
        console.push('\n');
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(Run {
        console,
        timed_out,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nics_share_one_internal_hub_with_distinct_macs() {
        let m = Machine {
            kernel: "vmlinuz".into(),
            initrd: "initrd".into(),
            append: "console=ttyS0".into(),
            nics: vec![Nic::Virtio, Nic::E1000],
            cpus: 2,
            mttcg: false,
        };
        let args = m.args().join(" ");
        assert!(args.contains("-smp 2"), "{args}");
        assert!(args.contains("-accel tcg,thread=single"), "{args}");
        assert!(!args.contains("kvm"));
        // The only user-mode network is the restricted sink: no route out of QEMU.
        assert_eq!(args.matches("user,").count(), 1, "{args}");
        assert!(args.contains("-netdev user,id=sink,restrict=on"), "{args}");
        assert!(
            args.contains("hubport,id=sinkport,hubid=0,netdev=sink"),
            "{args}"
        );
        assert!(args.contains(
            "-netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,mac=52:54:00:4e:50:10"
        ));
        assert!(args.contains(
            "-netdev hubport,id=n1,hubid=0 -device e1000,netdev=n1,mac=52:54:00:4e:50:11"
        ));
    }

    #[test]
    fn a_host_nic_is_on_a_user_network_of_its_own() {
        let m = Machine {
            kernel: "vmlinuz".into(),
            initrd: "initrd".into(),
            append: "console=ttyS0".into(),
            nics: vec![Nic::E1000Host],
            cpus: 1,
            mttcg: true,
        };
        let args = m.args().join(" ");
        assert!(args.contains("-smp 1"), "{args}");
        assert!(args.contains("-accel tcg,thread=multi"), "{args}");
        assert!(
            args.contains("-netdev user,id=n0,net=10.0.2.0/24,ipv6=off -device e1000,netdev=n0,mac=52:54:00:4e:50:10"),
            "{args}"
        );
        assert!(!args.contains("hubport,id=n0"), "{args}");
    }
}
