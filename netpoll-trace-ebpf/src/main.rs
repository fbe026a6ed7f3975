//! The modern object: fentry/fexit where the kernel has BPF trampolines (cheaper per
//! call), kprobes everywhere else, aya-log for the programs' own diagnostics (needs
//! 5.8). Userspace loads one set of programs. The logic is in the library.
//! Each function's name is a program name of `netpoll_trace_common::programs`
//! (userspace's tests check the built objects against it).
#![no_std]
#![no_main]

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};
use netpoll_trace_ebpf::{
    cleanup_enter, function, inner_cleanup_enter, poll_enter, poll_exit, send_udp_enter,
    setup_enter, setup_exit,
};

netpoll_trace_ebpf::kprobe_programs!();
netpoll_trace_ebpf::license!();

#[fentry(function = "netpoll_setup")]
pub fn netpoll_setup_fentry(ctx: FEntryContext) -> u32 {
    let np: u64 = ctx.arg(0);
    setup_enter(function::NETPOLL_SETUP, np, 0);
    0
}

#[fexit(function = "netpoll_setup")]
pub fn netpoll_setup_fexit(ctx: FExitContext) -> u32 {
    // fexit sees the arguments, then the return value.
    let np: u64 = ctx.arg(0);
    let ret: u64 = ctx.arg(1);
    setup_exit(&ctx, function::NETPOLL_SETUP, Some(np), ret);
    0
}

#[fentry(function = "__netpoll_setup")]
pub fn inner_netpoll_setup_fentry(ctx: FEntryContext) -> u32 {
    let np: u64 = ctx.arg(0);
    let dev: u64 = ctx.arg(1);
    setup_enter(function::INNER_NETPOLL_SETUP, np, dev);
    0
}

#[fexit(function = "__netpoll_setup")]
pub fn inner_netpoll_setup_fexit(ctx: FExitContext) -> u32 {
    let np: u64 = ctx.arg(0);
    let ret: u64 = ctx.arg(2);
    setup_exit(&ctx, function::INNER_NETPOLL_SETUP, Some(np), ret);
    0
}

#[fentry(function = "netpoll_poll_dev")]
pub fn poll_dev_fentry(ctx: FEntryContext) -> u32 {
    poll_enter(ctx.arg(0));
    0
}

#[fexit(function = "netpoll_poll_dev")]
pub fn poll_dev_fexit(ctx: FExitContext) -> u32 {
    poll_exit(&ctx);
    0
}

#[fentry(function = "netpoll_send_udp")]
pub fn send_udp_fentry(ctx: FEntryContext) -> u32 {
    let len: u64 = ctx.arg(2);
    send_udp_enter(&ctx, ctx.arg(0), len);
    0
}

// The send path under fentry: the UDP send's entry and the skb transmit's return, two
// program runs per message (fexit sees the netpoll, so no entry program is needed).
#[fexit(function = "netpoll_send_skb")]
pub fn send_skb_fexit(ctx: FExitContext) -> u32 {
    netpoll_trace_ebpf::send_skb_fexit(&ctx, ctx.arg(0));
    0
}

#[fexit(function = "netpoll_send_skb_on_dev")]
pub fn send_skb_on_dev_fexit(ctx: FExitContext) -> u32 {
    netpoll_trace_ebpf::send_skb_fexit(&ctx, ctx.arg(0));
    0
}

#[fentry(function = "netpoll_cleanup")]
pub fn cleanup_fentry(ctx: FEntryContext) -> u32 {
    cleanup_enter(ctx.arg(0));
    0
}

#[fentry(function = "__netpoll_cleanup")]
pub fn inner_cleanup_fentry(ctx: FEntryContext) -> u32 {
    inner_cleanup_enter(&ctx, ctx.arg(0));
    0
}

#[fentry(function = "do_netpoll_cleanup")]
pub fn do_cleanup_fentry(ctx: FEntryContext) -> u32 {
    cleanup_enter(ctx.arg(0));
    0
}
