//! The legacy object: loads on 4.4 to 6.12 (4.4's verifier and helpers, see lib.rs).
//! kprobes only (fentry needs trampolines, 5.5), no aya-log, no global data; the
//! same maps and program names as the modern object, so userspace and the flight
//! recorder treat both alike. Built for BPF CPU v1 by netpoll-trace's build.rs and
//! checked by `cargo xtask bpfcheck`.
#![no_std]
#![no_main]

netpoll_trace_ebpf::kprobe_programs!();
netpoll_trace_ebpf::license!();
