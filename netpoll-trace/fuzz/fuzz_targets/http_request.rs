//! A request head read by the agent's `/metrics` endpoint.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netpoll_trace::fuzz::http_request(data));
