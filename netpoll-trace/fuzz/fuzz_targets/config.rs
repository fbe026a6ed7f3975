//! The agent's TOML configuration (`agent --config`; read as UTF-8 text).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        netpoll_trace::fuzz::config(text);
    }
});
