//! The legacy object: loads on 4.14 (and is kept to 4.9's helpers and CPU version).
//! kprobes only (fentry needs trampolines, 5.5), no aya-log, no global data; the
//! same maps and program names as the modern object, so userspace and the flight
//! recorder treat both alike. Built for BPF CPU v1 by netpoll-trace's build.rs and
//! checked by `cargo xtask bpfcheck`.
#![no_std]
#![no_main]

netpoll_trace_ebpf::kprobe_programs!();
netpoll_trace_ebpf::license!();
