//! A module function's kprobes that the kernel arms whenever the module loads: a
//! tracefs kprobe event on `MODULE:FUNCTION` is accepted while the module is absent,
//! registered when it loads and again after every reload, and the programs are
//! attached to the event's tracepoint (perf_event_open + PERF_EVENT_IOC_SET_BPF, as
//! before the kprobe PMU). A PMU kprobe needs the symbol now and dies with the module.
//! 7.3+: netconsole's own set-up, which `watch -- modprobe netconsole ...` must see.

use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{Context as _, Result, anyhow};
use aya::{Ebpf, programs::KProbe};

use super::program::{program, program_error, skip_return};
use crate::kernel::{targets::Target, tracefs};

/// `struct perf_event_attr` up to `config1` (PERF_ATTR_SIZE_VER0, accepted by every
/// kernel): all a tracepoint event with a BPF program needs.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttrV0 {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const _: () = assert!(std::mem::size_of::<PerfEventAttrV0>() == 64);

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `_IOW('$', 8, __u32)`.
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
/// `_IO('$', 0)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;

/// Loads `t`'s programs and, unless `load_only`, attaches each to an armed event (the
/// return probe first, as `kprobe::attach` does). The returned perf events hold the
/// attachments: closing them detaches; the events are removed by `tracefs::OwnEvents`.
pub(super) fn attach(ebpf: &mut Ebpf, t: &Target, load_only: bool) -> Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    let probes = t
        .kprobe
        .1
        .map(|exit| (exit, true))
        .into_iter()
        .chain([(t.kprobe.0, false)]);
    for (name, ret) in probes {
        let kind = if ret { "kretprobe" } else { "kprobe" };
        let prog: &mut KProbe = program(ebpf, name)?;
        prog.load()
            .map_err(|e| program_error(kind, name, t.function(), e))?;
        if load_only || (ret && skip_return(t.function())) {
            continue;
        }
        let id = tracefs::create_armed_event(ret, t.function())
            .with_context(|| format!("arming a {kind} on {}", t.function()))?;
        let prog_fd = prog.fd()?.as_fd().as_raw_fd();
        let fd = open_tracepoint(id)
            .and_then(|fd| set_bpf(&fd, prog_fd).map(|()| fd))
            .with_context(|| format!("attaching {name} to the armed {kind} on {}", t.function()))?;
        fds.push(fd);
    }
    Ok(fds)
}

fn open_tracepoint(id: u64) -> Result<OwnedFd> {
    let attr = PerfEventAttrV0 {
        kind: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttrV0>() as u32,
        config: id,
        sample_period: 1,
        wakeup_events: 1,
        ..Default::default()
    };
    // SAFETY: a valid attr of the size it declares; pid -1 with CPU 0 is every task (a
    // BPF program on a kprobe event runs wherever the probe fires).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttrV0,
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(anyhow!(
            "perf_event_open on tracepoint {id}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a new descriptor, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

fn set_bpf(fd: &OwnedFd, prog_fd: libc::c_int) -> Result<()> {
    // SAFETY: ioctls on a perf event descriptor we own, with a program descriptor.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_BPF as _, prog_fd) };
    if rc != 0 {
        return Err(anyhow!(
            "PERF_EVENT_IOC_SET_BPF: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: as above.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) };
    if rc != 0 {
        return Err(anyhow!(
            "PERF_EVENT_IOC_ENABLE: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
