#![no_std]
// The programs live in the binary target (src/main.rs); this library only exists so
// that netpoll-trace can name this crate as a build dependency.
