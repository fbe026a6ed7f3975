//! A `dump --from` file: JSON lines from `watch --record`/`--json` or the agent's journal.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        netpoll_trace::fuzz::json_lines(text);
    }
});
