//! The `#[repr(C)]` types the eBPF programs and userspace share.
//!
//! Every type here crosses the kernel/user boundary, so: fixed-width fields, explicit
//! padding, no `bool` and no Rust enums (a byte the kernel wrote must never be an
//! invalid Rust value). Each layout is pinned by a compile-time size assertion.
//!
//! One file per feature, named as netpoll-trace-ebpf's: `setup` (and its `pairing`),
//! `poll`, `send`, `cleanup`, `recorder`; what they share: `device` (what the programs
//! read of kernel structs), `config` (this kernel's struct layout), `per_cpu`; and the
//! names both sides use: `function` (the traced functions), `programs`, `maps`.
//! Everything is re-exported here, so callers name `netpoll_trace_common::X`.
#![no_std]

mod cleanup;
mod config;
mod device;
pub mod function;
pub mod maps;
mod opaque;
pub mod per_cpu;
mod poll;
pub mod programs;
mod recorder;
mod send;
mod setup;

pub use cleanup::stop_cause;
pub use config::{Config, config_flags};
pub use device::{
    COMM_LEN, IFNAMSIZ, OWNER_LEN, clear_after_nul, event_flags, is_netconsole, select_name,
};
pub use opaque::{mask, nonzero, opaque};
pub use per_cpu::CpuDev;
pub use poll::{POLL_BUCKETS, POLL_DEPTH, PollCpu, PollEvent, PollFrame, PollStats, poll_bucket};
pub use recorder::{
    CounterKey, CpuCounterKey, DEFAULT_RING_SIZE, RECORDER_SCHEMA, RecorderMeta, loss,
};
pub use send::{
    NC_TARGET_SLOTS, SEND_DEPTH, SendCpu, SendEvent, SendFrame, SendStats, send_drop, send_event,
};
pub use setup::{InflightKey, MAX_DEPTH, SetupEvent, pairing};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, repr(C), no padding the compiler adds (sizes asserted where
    // each type is defined).
    unsafe impl aya::Pod for super::SetupEvent {}
    unsafe impl aya::Pod for super::InflightKey {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::PollStats {}
    unsafe impl aya::Pod for super::PollEvent {}
    unsafe impl aya::Pod for super::PollCpu {}
    unsafe impl aya::Pod for super::RecorderMeta {}
    unsafe impl aya::Pod for super::CounterKey {}
    unsafe impl aya::Pod for super::CpuDev {}
    unsafe impl aya::Pod for super::CpuCounterKey {}
    unsafe impl aya::Pod for super::SendStats {}
    unsafe impl aya::Pod for super::SendEvent {}
    unsafe impl aya::Pod for super::SendCpu {}
}
