//! The Linux platform of berth.
//!
//! * [`container`]: lifecycle operations (create, start, run, kill, delete, state, list);
//! * [`plan`]: the setup plan computed from a validated spec before any process exists;
//! * [`init`]: what the cloned container init does until it execs the user process;
//! * [`rootfs`], [`paths`], [`mountopts`], [`cgroupfs`]: the mount namespace and safe path
//!   resolution inside the container root;
//! * [`sync`]: the parent/child setup channel;
//! * [`tty`], [`signals`]: terminals, console sockets, signal forwarding;
//! * [`hooks`]: OCI hooks;
//! * [`procattr`], [`lsm`], [`resctrl`]: scheduling, I/O priority, CPU affinity, memory
//!   policy and personality of the container's processes; AppArmor and SELinux labels; the
//!   resctrl group of `linux.intelRdt`;
//! * `net`: the loopback interface of a new network namespace;
//! * [`state`]: the persisted per-container state.
//!
//! All raw system calls go through `berth-sys`; this crate contains no `unsafe`.

#![forbid(unsafe_code)]

pub mod caps;
pub mod cgroupfs;
pub mod container;
pub mod error;
pub mod exec;
pub mod hooks;
pub mod init;
pub mod lsm;
pub mod mountopts;
mod net;
mod notify;
pub mod paths;
pub mod plan;
pub mod procattr;
pub mod resctrl;
pub mod resources;
pub mod rootfs;
pub mod rootless;
pub mod seal;
pub mod signals;
pub mod state;
pub mod sync;
pub mod tty;
pub mod userns;
pub mod vm;

pub use error::{Error, Result};

/// Re-export of the OCI types the API takes.
pub use oci_spec::runtime as oci;
