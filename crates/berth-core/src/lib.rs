//! Platform-neutral core of berth.
//!
//! This crate holds what every backend (Linux, Windows HCS) and every front (CLI, embedding
//! library, containerd shim) agrees on:
//!
//! * [`error`]: the error classes of the embedding API (not-found, conflict, ...);
//! * [`types`]: the libcontainerd vocabulary: [`Status`], [`EventType`], [`EventInfo`], [`Version`];
//! * [`client`]: the [`Client`] trait, the surface an engine embeds, implemented per platform;
//! * [`events`]: the [`EventSink`] an engine supplies and the per-container ordered [`EventQueue`];
//! * [`stdio`]: the stdio handles given to the engine for the init and each exec;
//! * [`state`]: the OCI state document and atomic state-file writes;
//! * [`time`]: RFC 3339 timestamps without a date library;
//! * [`signal`]: signal name/number parsing shared by the CLI, the library and the shim.

pub mod client;
pub mod error;
pub mod events;
pub mod signal;
pub mod state;
pub mod stdio;
pub mod time;
pub mod types;

pub use client::Client;
pub use error::{Error, ErrorKind, Result};
pub use events::{DiscardEvents, EventQueue, EventSink};
pub use stdio::{AttachStdio, ProcessIo, StdinWriter};
pub use types::{EventInfo, EventType, Status, Version};

/// The OCI runtime-spec version berth implements.
pub const OCI_VERSION: &str = "1.2.0";

/// The process id that names a container's init process in the embedding API.
///
/// Linux (and moby after 719b08313f) uses the container id; the HCS backend keeps the
/// original's `"init"` for byte-exact events where it must. This constant is the fallback
/// name accepted everywhere for the init.
pub const INIT_PROCESS_NAME: &str = "init";
