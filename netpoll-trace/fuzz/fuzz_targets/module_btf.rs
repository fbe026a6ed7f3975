//! A module file's `.BTF` (netconsole.ko where it is not loaded), split over a base BTF.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netpoll_trace::fuzz::module_btf(data));
