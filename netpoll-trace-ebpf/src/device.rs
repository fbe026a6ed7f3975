//! The struct readers: a device's identity (name, ifindex), ops and flags, a netpoll's
//! names and addresses, `np->dev`, the deferred queue's length, whether a device is
//! being unregistered. Every read is at an offset userspace resolved (`CONFIG`) and
//! through bpf_probe_read, which faults safely.

use aya_ebpf::helpers::bpf_probe_read_buf;
use netpoll_trace_common::{
    COMM_LEN, Config, CpuDev, IFNAMSIZ, OWNER_LEN, SetupEvent, config_flags as cf,
    event_flags as ef, is_netconsole, nonzero, opaque,
};

#[cfg(not(feature = "legacy"))]
use crate::access::read_str_if;
use crate::access::{bytes_of, cpu, load_at, probe_read, read_if};

/// This CPU's key of a per-device value: the device's address and its ifindex, so a
/// device freed and another allocated at the same address never share statistics.
#[inline(always)]
pub(crate) fn cpu_dev(cfg: &Config, dev: u64) -> CpuDev {
    let mut key = CpuDev {
        cpu: cpu(),
        ifindex: 0,
        dev,
    };
    if dev != 0 && cfg.flags & cf::DEV_IFINDEX != 0 {
        let src = unsafe { (dev as *const u8).add(cfg.dev_ifindex as usize) };
        // Straight into the key (zeroed, as 4.4 wants a helper's stack buffer): a
        // separate slot cost the send path's exit 8 more bytes of stack, past what 5.10
        // allowed it beside the memset it called before the object's stores were inline
        // ("combined stack size ... Too large").
        // SAFETY: the key's own bytes; bpf_probe_read faults safely on a bad source.
        let dst = unsafe {
            core::slice::from_raw_parts_mut((&raw mut key.ifindex).cast::<u8>(), size_of::<i32>())
        };
        if unsafe { bpf_probe_read_buf(src, dst) }.is_err() {
            key.ifindex = 0;
        }
    }
    key
}

/// 1 when the configuration asks for the field(s) behind `flag`, else 0 (for `read_if`).
#[inline(always)]
fn on(cfg: &Config, flag: u32) -> u64 {
    nonzero(u64::from(cfg.flags & flag))
}

/// The device's name, ifindex and identity flags, read into the stack and returned for
/// a map value (the scratch slots): 4.9's bpf_probe_read writes only to the stack
/// (ARG_PTR_TO_RAW_STACK; a map value is refused, "R1 type=map_value_adj expected=fp").
#[inline(always)]
pub(crate) fn dev_identity(cfg: &Config, dev: u64) -> ([u8; IFNAMSIZ], i32, u32) {
    let mut name = [0u8; IFNAMSIZ];
    let mut ifindex = 0i32;
    let mut flags = 0u32;
    read_dev_identity(cfg, dev, &mut name, &mut ifindex, &mut flags);
    (name, ifindex, flags)
}

/// Reads into `name`, `ifindex` and `flags`, which must live on the stack (4.9, above).
#[inline(always)]
pub(crate) fn read_dev_identity(
    cfg: &Config,
    dev: u64,
    name: &mut [u8; IFNAMSIZ],
    ifindex: &mut i32,
    flags: &mut u32,
) {
    if dev == 0 {
        return;
    }
    // Each read's outcome is a flag computed without a branch, and so is whether the
    // configuration asks for it (`read_if`).
    let src = dev.wrapping_add(cfg.dev_name as u64);
    *flags |= ef::DEV_NAME * unsafe { read_if(on(cfg, cf::DEV_NAME), src, name) };
    let src = dev.wrapping_add(cfg.dev_ifindex as u64);
    *flags |= ef::IFINDEX * unsafe { read_if(on(cfg, cf::DEV_IFINDEX), src, bytes_of(ifindex)) };
}

/// `np->dev`, 0 when unknown.
#[inline(always)]
pub(crate) fn netpoll_dev(cfg: &Config, np: u64) -> u64 {
    if np == 0 {
        return 0;
    }
    unsafe { probe_read((np as *const u8).add(cfg.np_dev as usize) as *const u64) }.unwrap_or(0)
}

/// `npinfo->txq.qlen`.
#[inline(always)]
pub(crate) fn txq_len(cfg: &Config, npinfo: u64) -> u32 {
    unsafe { probe_read((npinfo as *const u8).add(cfg.npinfo_txq_qlen as usize) as *const u32) }
        .unwrap_or(0)
}

#[inline(always)]
pub(crate) fn dismantling(cfg: &Config, dev: u64) -> bool {
    let p = unsafe { (dev as *const u8).add(cfg.dev_dismantle as usize) };
    unsafe { probe_read(p) }.is_ok_and(|b: u8| b != 0)
}

const _: () = assert!(IFNAMSIZ == 16 && OWNER_LEN == 16 && COMM_LEN == 16);

#[inline(always)]
pub(crate) fn read_netpoll(ev: &mut SetupEvent, cfg: &Config, np: u64) {
    if np == 0 {
        return;
    }
    let src = np.wrapping_add(cfg.np_dev_name as u64);
    // SAFETY: the stack event's own field; bpf_probe_read faults safely on a bad address.
    ev.flags |=
        ef::NP_DEV_NAME * unsafe { read_if(on(cfg, cf::NP_DEV_NAME), src, &mut ev.np_dev_name) };
    // The owner: the string netpoll.name points to, when the pointer was read and set.
    let mut name = 0u64;
    let src = np.wrapping_add(cfg.np_name as u64);
    let got = unsafe { read_if(on(cfg, cf::NP_NAME), src, bytes_of(&mut name)) };
    let owner_on = u64::from(got) & nonzero(name);
    ev.flags |= ef::OWNER * read_owner(owner_on, name, &mut ev.owner);
    // The addresses: in the netpoll (before 7.3), else in the netconsole target
    // around it, only for a netpoll netconsole owns (any other may be a bare netpoll,
    // and reading past it would be a wrong value).
    // Each offset loaded at a constant offset into the map value (`load_at`): a field
    // address selected between the branches would be pointer arithmetic 4.4 refuses.
    // The choice stays a branch: an offset chosen by masks or products lost the bounds
    // 5.10 wants of one added to fentry's typed pointer ("math between ptr_ pointer and
    // register with unbounded min value").
    let c = cfg as *const Config as *mut u8;
    macro_rules! cfg_u32 {
        ($field:ident) => {
            // SAFETY: a u32 field of the CONFIG map value.
            unsafe { load_at::<{ off!(Config, $field) }, 4>(c) as u32 }
        };
    }
    let at = if cfg.flags & cf::NP_REMOTE != 0 {
        (
            1,
            cfg_u32!(np_ipv6),
            cfg_u32!(np_remote_ip),
            cfg_u32!(np_remote_port),
            cfg_u32!(np_local_port),
        )
    } else if cfg.flags & cf::NT_REMOTE != 0 && is_netconsole(&ev.owner) != 0 {
        (
            1,
            cfg_u32!(nt_ipv6),
            cfg_u32!(nt_remote_ip),
            cfg_u32!(nt_remote_port),
            cfg_u32!(nt_local_port),
        )
    } else {
        (0, 0, 0, 0, 0)
    };
    // Read in place and kept only when all four were read and the target is IPv4,
    // decided without a branch: a branch per outcome left the verifier six states to
    // walk the rest of the entry with (5.10: __netpoll_setup's entry ~7,100 verified
    // instructions).
    let (any, ipv6, remote_ip, remote_port, local_port) = at;
    let at = |off: u32| np.wrapping_add(off as u64);
    let mut v6 = 0u8;
    // SAFETY: each destination is the stack event's own field.
    let read = unsafe {
        read_if(any, at(ipv6), bytes_of(&mut v6))
            & read_if(any, at(remote_ip), &mut ev.remote_ip)
            & read_if(any, at(remote_port), bytes_of(&mut ev.remote_port))
            & read_if(any, at(local_port), bytes_of(&mut ev.local_port))
    };
    let keep = opaque(u64::from(read) & (nonzero(u64::from(v6)) ^ 1));
    ev.remote_ip = (u32::from_ne_bytes(ev.remote_ip) * keep as u32).to_ne_bytes();
    ev.remote_port *= keep as u16;
    ev.local_port *= keep as u16;
    ev.flags |= ef::REMOTE * keep as u32;
}

/// The string `netpoll.name` points to (at `src`), when `on`; 1 when read.
/// bpf_probe_read_str (4.11) is the exact read, of no bytes when `on` is 0 (see
/// `read_if`); the legacy object keeps to 4.9's helpers with a fixed-size read whose bytes
/// after the NUL are cleared (the owner is a string literal such as "netconsole", so its
/// 16 bytes are readable).
#[inline(always)]
fn read_owner(on: u64, src: u64, dst: &mut [u8; OWNER_LEN]) -> u32 {
    // SAFETY: the caller's stack buffer.
    #[cfg(not(feature = "legacy"))]
    return unsafe { read_str_if(on, src, dst) };
    #[cfg(feature = "legacy")]
    {
        if on == 0 {
            return 0;
        }
        let ok = unsafe { bpf_probe_read_buf(src as *const u8, dst) }.is_ok();
        netpoll_trace_common::clear_after_nul(dst);
        u32::from(ok)
    }
}

#[inline(always)]
pub(crate) fn read_device(ev: &mut SetupEvent, cfg: &Config, dev: u64) {
    if dev == 0 {
        return;
    }
    read_dev_identity(cfg, dev, &mut ev.dev_name, &mut ev.ifindex, &mut ev.flags);
    // Each read's outcome is a flag computed without a branch, and so is whether the
    // configuration asks for it (`read_if`): the verifier walks what follows once.
    let ops_on = on(cfg, cf::DEV_OPS);
    let mut ops = 0u64;
    let src = dev.wrapping_add(cfg.dev_netdev_ops as u64);
    let got = unsafe { read_if(ops_on, src, bytes_of(&mut ops)) };
    // ops 0 (absent, or not read): both reads below fault and read as 0.
    let mut pc = 0u64;
    let mut ns = 0u64;
    let src = ops.wrapping_add(cfg.ops_poll_controller as u64);
    let pc_ok = unsafe { read_if(ops_on, src, bytes_of(&mut pc)) };
    let src = ops.wrapping_add(cfg.ops_netpoll_setup as u64);
    let ns_ok = unsafe { read_if(ops_on, src, bytes_of(&mut ns)) };
    let all = got & pc_ok & ns_ok;
    ev.ops = ops;
    // Both or neither, as before: only with the flag.
    ev.poll_controller = pc.wrapping_mul(all as u64);
    ev.netpoll_setup_op = ns.wrapping_mul(all as u64);
    ev.flags |= ef::OPS * all;
    let mut raw = 0u64;
    let src = dev.wrapping_add(cfg.dev_priv_flags as u64);
    let got = unsafe { read_if(on(cfg, cf::DEV_PRIV_FLAGS), src, bytes_of(&mut raw)) };
    let hit = (raw >> (cfg.priv_flags_shift & 63)) & cfg.iff_disable_netpoll;
    let disabled = nonzero(hit) as u32;
    ev.flags |= (ef::PRIV_FLAGS * got) | (ef::NETPOLL_DISABLED * (got & disabled));
}
