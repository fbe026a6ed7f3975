//! The maps and the logic of the programs, shared by the two objects this crate
//! builds: the modern one (src/main.rs: fentry/fexit and kprobes, aya-log) and the
//! legacy one (src/legacy.rs: kprobes only, loads on 4.14).
//!
//! One module per feature, named as `netpoll_trace_common`'s: `setup` (entry/exit
//! pairing), `poll`, `send` (with netconsole's console write), `cleanup`, `recorder`
//! (the ring, the counters, `lose`); what they share: `maps` (every `#[map]`),
//! `access` (this CPU, reads into the stack, constant-offset map value accesses, perf
//! output), `device` (the struct readers); and `programs`, the macros each binary
//! expands (the kprobe programs, the license). Program and map names are
//! `netpoll_trace_common::{programs, maps}`, checked against the built objects by
//! userspace's tests.
//!
//! Entry probes capture the arguments (the struct fields are read at the offsets
//! userspace resolved and stored in `CONFIG`) and park them in `INFLIGHT`, keyed by
//! thread and nesting depth; return probes complete the record with the return value
//! and duration and send it to userspace. Nesting matters: a bond's `__netpoll_setup`
//! calls `ndo_netpoll_setup`, which calls `__netpoll_setup` again for each slave, all
//! on one thread. A return is paired by function and `struct netpoll *` as well as
//! depth (`netpoll_trace_common::pairing` decides): a missed return or entry costs only its
//! own records, each counted in `LOSSES`.
//!
//! What keeps the legacy object loadable on 4.14, and so holds for all code here:
//! - every function is `#[inline(always)]`: bpf-to-bpf calls arrived in 4.16;
//! - no loops, only straight-line code: the 4.14 verifier refuses backward jumps;
//! - map keys and values, and perf output, come from the stack: 4.14 takes nothing
//!   else for them (a map value pointer is refused); and 4.9's bpf_probe_read and
//!   bpf_get_current_comm write only to the stack (read into it, then copy into a map value);
//! - no global data (.data/.rodata/.bss need 5.2) and no aya-log (a ring buffer, 5.8);
//! - for 4.4: no per-CPU maps (4.6): per-CPU state is keyed (or indexed) by
//!   `bpf_get_smp_processor_id()`; no pointer arithmetic on a map value (4.9 added
//!   offsets into one): an element of a map value's array is reached through a branch
//!   per constant index (`at_index!`; the modern object computes the histogram's and
//!   the drop slots' addresses, `bump_slot!`, as a branch per index ran up to 32
//!   compares a message); perf output names this CPU's index (4.4 has no
//!   BPF_F_CURRENT_CPU); and every stack buffer a helper fills is zeroed first (4.4 takes
//!   only initialised stack there; `probe_read`, `current_comm`);
//!   `cargo xtask bpfcheck` (and `--kernel 4.4`) checks most of this on the built object.
#![no_std]
// Inline assembly (for accesses at constant offsets into map values, see `at_index!`).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
// Map values and perf output are passed as `&value`: by value, the struct could be
// copied to a second stack slot, and the stack is 512 bytes.
#![allow(clippy::needless_borrows_for_generic_args)]

#[cfg(all(feature = "log", feature = "legacy"))]
compile_error!("the legacy object cannot carry aya-log: it needs a ring buffer and global data");

// Declared first: its macros (`at_index!`, `off!`, `bump_bucket!`) are used below.
#[macro_use]
mod access;
mod cleanup;
mod device;
mod maps;
mod poll;
mod programs;
mod recorder;
mod send;
mod setup;

// What the binaries and the exported macros (`$crate::...`) call.
pub use cleanup::{cleanup_enter, inner_cleanup_enter};
pub use netpoll_trace_common::function;
pub use poll::{poll_enter, poll_exit};
pub use send::{
    console_write, console_write_nbcon, netcons_send_udp_enter, send_skb_enter, send_skb_fexit,
    send_skb_return, send_udp_enter,
};
pub use setup::{netcons_setup_enter, setup_enter, setup_exit};

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
