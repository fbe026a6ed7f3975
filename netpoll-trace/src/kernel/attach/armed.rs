//! A module function's kprobes that the kernel arms whenever the module loads: a
//! tracefs kprobe event on `MODULE:FUNCTION` is accepted while the module is absent,
//! registered when it loads and again after every reload, and the programs are
//! attached to the event's tracepoint through a BPF perf link (bpf_link_create, 5.15+:
//! a link the flight recorder can pin, so recording outlives us), else
//! PERF_EVENT_IOC_SET_BPF as before the kprobe PMU. A PMU kprobe needs the symbol now
//! and dies with the module. 7.3+: netconsole's own set-up, which
//! `watch -- modprobe netconsole ...` must see.

use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{Context as _, Result, anyhow};
use aya::{Ebpf, programs::KProbe};

use super::{
    program::{load_kprobes, program, skip_return},
    verify::Verified,
};
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

/// One armed attachment: the program's name and what holds it (a BPF link where the
/// kernel has perf links, else the perf event): closing it detaches.
pub(super) struct ArmedLink {
    pub program: &'static str,
    pub fd: OwnedFd,
    /// `fd` is a BPF link (can be pinned).
    pub is_link: bool,
}

/// Loads `t`'s programs and, unless `load_only`, attaches each to an armed event (the
/// return probe first, as `kprobe::attach` does); the events are removed by
/// `tracefs::OwnEvents` unless their links were pinned.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    t: &Target,
    load_only: bool,
    verified: &mut Verified,
) -> Result<Vec<ArmedLink>> {
    let mut fds = Vec::new();
    for (name, kind, ret) in load_kprobes(ebpf, t, verified)? {
        if load_only || (ret && skip_return(t.function())) {
            continue;
        }
        let id = arm(t, kind, ret)?;
        fds.push(attach_program(ebpf, t, name, kind, id)?);
    }
    Ok(fds)
}

/// Creates the armed event of `t`'s entry (or return) probe: its tracepoint id. Not
/// enabled until a program is attached to it (the kernel registers the kprobe then).
pub(super) fn arm(t: &Target, kind: &str, ret: bool) -> Result<u64> {
    let id = tracefs::create_armed_event(ret, t.function())
        .with_context(|| format!("arming a {kind} on {}", t.function()))?;
    crate::kernel::profile::stage(&format!("{}: {kind} event armed", t.function()));
    Ok(id)
}

/// Attaches the loaded program `name` to the armed event `id` of `t`: closing what
/// this returns detaches it.
pub(super) fn attach_program(
    ebpf: &mut Ebpf,
    t: &Target,
    name: &'static str,
    kind: &str,
    id: u64,
) -> Result<ArmedLink> {
    let prog: &mut KProbe = program(ebpf, name)?;
    let prog_fd = prog.fd()?.as_fd().as_raw_fd();
    let event = open_tracepoint(id)
        .with_context(|| format!("attaching {name} to the armed {kind} on {}", t.function()))?;
    Ok(match link_create(prog_fd, &event) {
        // The link holds the perf event: ours can close.
        Ok(link) => ArmedLink {
            program: name,
            fd: link,
            is_link: true,
        },
        Err(e) => {
            log::debug!("no BPF perf link for {name} ({e}): PERF_EVENT_IOC_SET_BPF");
            set_bpf(&event, prog_fd).with_context(|| {
                format!("attaching {name} to the armed {kind} on {}", t.function())
            })?;
            ArmedLink {
                program: name,
                fd: event,
                is_link: false,
            }
        }
    })
}

/// bpf(BPF_LINK_CREATE) of a perf event (attach type BPF_PERF_EVENT, 5.15+).
fn link_create(prog_fd: libc::c_int, event: &OwnedFd) -> std::io::Result<OwnedFd> {
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_PERF_EVENT: u32 = 41;
    // union bpf_attr's link_create: prog_fd, target_fd, attach_type, flags, then the
    // perf_event member (bpf_cookie), zero; the rest of the union zero too.
    let mut attr = [0u32; 16];
    attr[0] = prog_fd as u32;
    attr[1] = event.as_raw_fd() as u32;
    attr[2] = BPF_PERF_EVENT;
    // SAFETY: a zeroed bpf_attr of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Pins a BPF link at `path` (bpf(BPF_OBJ_PIN)).
pub(super) fn pin(link: &OwnedFd, path: &std::path::Path) -> Result<()> {
    const BPF_OBJ_PIN: libc::c_long = 6;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow!("{}: a NUL in the path", path.display()))?;
    // union bpf_attr's obj_pin: pathname (u64), bpf_fd (u32), file_flags (u32).
    let mut attr = [0u64; 4];
    attr[0] = c.as_ptr() as u64;
    attr[1] = link.as_raw_fd() as u32 as u64;
    // SAFETY: the attr points at a live C string; the size passed is the buffer's.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_PIN,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if rc < 0 {
        return Err(anyhow!(
            "pinning at {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
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
