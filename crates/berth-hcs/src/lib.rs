//! The Windows Host Compute Service (HCS) backend of berth.
//!
//! A port (semantics, not code) of moby's `libcontainerd/client_local_windows.go` (Dec 2017)
//! with its later upstream fixes:
//!
//! * [`translate`]: OCI spec -> HCS documents for process-isolated, Hyper-V-isolated and
//!   Linux (LCOW) containers, and the init/exec process documents; pure functions, byte-exact
//!   with what hcsshim v0.6.8 sent (see `berth-hcs-schema`);
//! * [`lcow`]: the utility VM options of opengcs v0.3.4, quirks included;
//! * [`guid`]: layer ids through the [`guid::NameToGuid`] trait (vmcompute on Windows, a
//!   documented stand-in elsewhere);
//! * [`hcs`]: the binding to `vmcompute.dll`, loaded at run time (so it builds everywhere and
//!   reports "HCS is not available on this host" off Windows), with hcsshim's semantics;
//! * [`client`]: [`client::HcsClient`], the [`berth_core::Client`] implementation;
//! * [`dry_run`]: what `berth hcs-config` prints.
//!
//! All `unsafe` code is in the private `ffi` module.

#![deny(unsafe_code)]

pub mod client;
pub mod cmdline;
pub mod dry_run;
mod ffi;
pub mod guid;
pub mod hcs;
pub mod host;
pub mod lcow;
pub mod translate;
pub mod winpath;

pub use client::{HcsClient, HcsCreateOptions, HcsStats, Timeouts};
pub use guid::{Guid, NameToGuid, StandInNameToGuid};
pub use hcs::{ComputeSystem, HcsApi, HcsError, Process, VmcomputeNameToGuid};
pub use host::{HostInfo, RealHost, SlashHost};
pub use lcow::{LcowConfig, LcowEnv};
pub use translate::{parse_spec, translate_container, ContainerTranslation, TranslateContext};
