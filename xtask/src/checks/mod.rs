//! Checks that need no lab kernel: the eBPF objects against old kernels' verifier rules
//! (`bpfcheck`) and coverage-guided fuzzing of every parser of untrusted input (`fuzz`).

pub mod bpfcheck;
pub mod fuzz;
