//! Datagrams a netconsole receiver (`receive`) gets from anyone on the network.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    netpoll_trace::fuzz::netconsole(data);
});
