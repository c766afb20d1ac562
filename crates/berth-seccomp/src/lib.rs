//! Seccomp for berth: `linux.seccomp` → BPF through libseccomp, installed with the raw
//! `seccomp(2)` syscall.
//!
//! The split follows berth's process model. The parent, which may be multi-threaded and can
//! allocate, calls [`compile`] (or [`compile_cached`]) before cloning the container init. The
//! init then calls [`CompiledFilter::install`], which makes one syscall, touches no
//! libseccomp and allocates nothing. When a rule uses `SCMP_ACT_NOTIFY`, `install` returns the
//! listener fd, which the runtime passes to the agent at `listenerPath` with
//! [`send_to_listener`] / [`send_listener_fd`].
//!
//! Semantics follow runc; the differences are listed in `docs/seccomp.md`.

mod cache;
mod compile;
mod enosys;
mod error;
mod features;
mod filter;
mod json;
mod notify;
mod profile;

pub use cache::{cache_key, cache_path, compile_cached};
pub use compile::{compile, validate};
pub use error::SeccompError;
pub use features::{libseccomp_version, KNOWN_ACTIONS, KNOWN_ARCHS, KNOWN_OPERATORS};
pub use filter::CompiledFilter;
pub use json::{from_json, from_json_slice};
pub use notify::{send_listener_fd, send_to_listener, ContainerProcessState, SECCOMP_FD_NAME};
pub use profile::default_profile;

/// The raw seccomp wrappers (flags, notification ioctls), re-exported for agents and tests.
pub use berth_sys::seccomp as sys;
