//! The flight recorder's pinned header (META), RING's capacity and its sequence numbers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netpoll_trace::fuzz::recorder_meta(data));
