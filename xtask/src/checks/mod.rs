//! Checks that need no lab kernel: the eBPF objects against old kernels' verifier rules
//! (`bpfcheck`), `cargo xtask` as a newcomer's first command (`first_contact`) and
//! coverage-guided fuzzing of every parser of untrusted input (`fuzz`).

pub mod bpfcheck;
pub mod first_contact;
pub mod fuzz;
