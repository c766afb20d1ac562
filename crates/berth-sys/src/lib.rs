//! Placeholder; filled in by its issue.

pub mod bpf;
pub mod seccomp;
