//! Raw BTF: /sys/kernel/btf/vmlinux or a `--btf FILE`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netpoll_trace::fuzz::btf(data));
