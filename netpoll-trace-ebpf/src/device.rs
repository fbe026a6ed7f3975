//! The struct readers: a device's identity (name, ifindex), ops and flags, a netpoll's
//! names and addresses, `np->dev`, the deferred queue's length, whether a device is
//! being unregistered. Every read is at an offset userspace resolved (`CONFIG`) and
//! through bpf_probe_read, which faults safely.

use aya_ebpf::helpers::bpf_probe_read_buf;
use netpoll_trace_common::{
    COMM_LEN, Config, CpuDev, IFNAMSIZ, OWNER_LEN, SetupEvent, config_flags as cf,
    event_flags as ef, nonzero, opaque,
};

use crate::access::{bytes_of, cpu, load_at, probe_read, read_ok};

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
    // Each read's outcome is a flag computed without a branch (`read_ok`); only the
    // configuration's switches branch (fentry's `dev` is a typed pointer: no arithmetic
    // on it but an offset, so a disabled read cannot be made to fault instead).
    if cfg.flags & cf::DEV_NAME != 0 {
        let ok = unsafe { read_ok(dev.wrapping_add(cfg.dev_name as u64), name) };
        *flags |= ef::DEV_NAME * ok;
    }
    if cfg.flags & cf::DEV_IFINDEX != 0 {
        let src = dev.wrapping_add(cfg.dev_ifindex as u64);
        *flags |= ef::IFINDEX * unsafe { read_ok(src, bytes_of(ifindex)) };
    }
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
    let base = np as *const u8;
    if cfg.flags & cf::NP_DEV_NAME != 0 {
        // SAFETY: bpf_probe_read faults safely on a bad address.
        let src = unsafe { base.add(cfg.np_dev_name as usize) };
        if unsafe { bpf_probe_read_buf(src, &mut ev.np_dev_name) }.is_ok() {
            ev.flags |= ef::NP_DEV_NAME;
        }
    }
    if cfg.flags & cf::NP_NAME != 0 {
        let ptr = unsafe { base.add(cfg.np_name as usize) } as *const u64;
        if let Ok(name) = unsafe { probe_read(ptr) }
            && name != 0
            && read_owner(name as *const u8, &mut ev.owner)
        {
            ev.flags |= ef::OWNER;
        }
    }
    // The addresses: in the netpoll (before 7.3), else in the netconsole target
    // around it, only for a netpoll netconsole owns (any other may be a bare netpoll,
    // and reading past it would be a wrong value).
    // Each offset loaded at a constant offset into the map value (`load_at`): a field
    // address selected between the branches would be pointer arithmetic 4.4 refuses.
    let c = cfg as *const Config as *mut u8;
    macro_rules! cfg_u32 {
        ($field:ident) => {
            // SAFETY: a u32 field of the CONFIG map value.
            unsafe { load_at::<{ off!(Config, $field) }, 4>(c) as u32 }
        };
    }
    let at = if cfg.flags & cf::NP_REMOTE != 0 {
        Some((
            cfg_u32!(np_ipv6),
            cfg_u32!(np_remote_ip),
            cfg_u32!(np_remote_port),
            cfg_u32!(np_local_port),
        ))
    } else if cfg.flags & cf::NT_REMOTE != 0 && owned_by_netconsole(&ev.owner) {
        Some((
            cfg_u32!(nt_ipv6),
            cfg_u32!(nt_remote_ip),
            cfg_u32!(nt_remote_port),
            cfg_u32!(nt_local_port),
        ))
    } else {
        None
    };
    if let Some((ipv6, remote_ip, remote_port, local_port)) = at {
        // Read in place and kept only when all four were read and the target is IPv4,
        // decided without a branch: a branch per outcome left the verifier six states to
        // walk the rest of the entry with (5.10: __netpoll_setup's entry ~7,100 verified
        // instructions).
        let at = |off: u32| np.wrapping_add(off as u64);
        let mut v6 = 0u8;
        // SAFETY: each destination is the stack event's own field.
        let read = unsafe {
            read_ok(at(ipv6), bytes_of(&mut v6))
                & read_ok(at(remote_ip), &mut ev.remote_ip)
                & read_ok(at(remote_port), bytes_of(&mut ev.remote_port))
                & read_ok(at(local_port), bytes_of(&mut ev.local_port))
        };
        let keep = opaque(u64::from(read) & (nonzero(u64::from(v6)) ^ 1));
        ev.remote_ip = (u32::from_ne_bytes(ev.remote_ip) * keep as u32).to_ne_bytes();
        ev.remote_port *= keep as u16;
        ev.local_port *= keep as u16;
        ev.flags |= ef::REMOTE * keep as u32;
    }
}

/// The owner string is netconsole's ("netconsole"), compared byte by byte: no memcmp
/// in a BPF program.
#[inline(always)]
fn owned_by_netconsole(owner: &[u8; OWNER_LEN]) -> bool {
    const _: () = assert!(OWNER_LEN >= 11);
    owner[0] == b'n'
        && owner[1] == b'e'
        && owner[2] == b't'
        && owner[3] == b'c'
        && owner[4] == b'o'
        && owner[5] == b'n'
        && owner[6] == b's'
        && owner[7] == b'o'
        && owner[8] == b'l'
        && owner[9] == b'e'
        && owner[10] == 0
}

/// The string `netpoll.name` points to. bpf_probe_read_str (4.11) is the exact
/// read; the legacy object keeps to 4.9's helpers with a fixed-size read whose bytes
/// after the NUL are cleared (the owner is a string literal such as "netconsole", so
/// its 16 bytes are readable).
#[inline(always)]
fn read_owner(src: *const u8, dst: &mut [u8; OWNER_LEN]) -> bool {
    #[cfg(not(feature = "legacy"))]
    {
        // Not the _kernel_ variant (5.5+): older kernels stay in reach.
        #[allow(deprecated)]
        let read = unsafe { aya_ebpf::helpers::bpf_probe_read_str(src, dst) };
        read.is_ok()
    }
    #[cfg(feature = "legacy")]
    {
        let ok = unsafe { bpf_probe_read_buf(src, dst) }.is_ok();
        netpoll_trace_common::clear_after_nul(dst);
        ok
    }
}

#[inline(always)]
pub(crate) fn read_device(ev: &mut SetupEvent, cfg: &Config, dev: u64) {
    if dev == 0 {
        return;
    }
    read_dev_identity(cfg, dev, &mut ev.dev_name, &mut ev.ifindex, &mut ev.flags);
    // Each read's outcome is a flag computed without a branch (`read_ok`): the verifier
    // walks what follows once per configuration, not once per outcome.
    if cfg.flags & cf::DEV_OPS != 0 {
        let mut ops = 0u64;
        let got = unsafe {
            read_ok(
                dev.wrapping_add(cfg.dev_netdev_ops as u64),
                bytes_of(&mut ops),
            )
        };
        // ops 0 (absent, or not read): both reads below fault and read as 0.
        let mut pc = 0u64;
        let mut ns = 0u64;
        let pc_ok = unsafe {
            read_ok(
                ops.wrapping_add(cfg.ops_poll_controller as u64),
                bytes_of(&mut pc),
            )
        };
        let ns_ok = unsafe {
            read_ok(
                ops.wrapping_add(cfg.ops_netpoll_setup as u64),
                bytes_of(&mut ns),
            )
        };
        let all = got & pc_ok & ns_ok;
        ev.ops = ops;
        // Both or neither, as before: only with the flag.
        ev.poll_controller = pc.wrapping_mul(all as u64);
        ev.netpoll_setup_op = ns.wrapping_mul(all as u64);
        ev.flags |= ef::OPS * all;
    }
    if cfg.flags & cf::DEV_PRIV_FLAGS != 0 {
        let mut raw = 0u64;
        let src = dev.wrapping_add(cfg.dev_priv_flags as u64);
        let got = unsafe { read_ok(src, bytes_of(&mut raw)) };
        let hit = (raw >> (cfg.priv_flags_shift & 63)) & cfg.iff_disable_netpoll;
        // 1 when any bit is set: the sign bit of hit | -hit.
        let disabled = ((hit | hit.wrapping_neg()) >> 63) as u32;
        ev.flags |= (ef::PRIV_FLAGS * got) | (ef::NETPOLL_DISABLED * (got & disabled));
    }
}
