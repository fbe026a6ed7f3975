//! The `netpoll-trace` binary: the library's command line (src/lib.rs holds the layers).

fn main() -> std::process::ExitCode {
    netpoll_trace::main()
}
