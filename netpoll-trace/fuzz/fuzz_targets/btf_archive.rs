//! A `--btf FILE` archive: BTFHub's .btf.tar.xz, or a plain tar.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netpoll_trace::fuzz::btf_archive(data));
