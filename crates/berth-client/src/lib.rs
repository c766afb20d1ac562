//! berth's embedding API on Linux: a libcontainerd-style [`Client`].
//!
//! An engine creates one [`Client`] per state root with an [`berth_core::EventSink`] and
//! drives containers through the [`berth_core::Client`] trait: `create`, `start`, `exec`,
//! `signal_process`, `pause`/`resume`, `stats`, `delete_task`, `delete`, `restore`, ... Events
//! (`create`, `start`, `exec-added`, `exec-started`, `paused`, `resumed`, `exit`, `oom`) arrive
//! at the sink in order per container, from berth-owned threads; the caller never blocks on
//! the sink.
//!
//! Process model (details in docs/embedding.md): the client never forks. It starts one
//! single-threaded helper per state root (`berth-monitor`, or the engine's own binary through
//! [`run_helper_if_requested`]), which forks one monitor per container. The monitor runs the
//! Linux runtime in-process, is the parent and subreaper of the container's processes,
//! produces every event of the container from one loop, keeps the container's stdio, and
//! outlives the engine: after an engine crash, [`berth_core::Client::restore`] reattaches and
//! receives the exits that happened meanwhile.
//!
//! ```no_run
//! use std::sync::Arc;
//! use berth_client::{Client, Config};
//! use berth_core::{Client as _, EventInfo, EventSink, EventType};
//!
//! struct Print;
//! impl EventSink for Print {
//!     fn process_event(&self, id: &str, e: EventType, i: &EventInfo)
//!         -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!         println!("{e} {id} {} {}", i.process_id, i.exit_code);
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> berth_core::Result<()> {
//! berth_client::run_helper_if_requested();
//! let client = Client::new(Config::new("/run/my-engine"), Arc::new(Print))?;
//! let spec = berth_spec_from_somewhere();
//! client.create("web", &spec, None)?;
//! let pid = client.start("web", None, false, &mut |io| {
//!     // hand io.stdout / io.stderr to copy threads
//!     Ok(())
//! })?;
//! # Ok(()) }
//! # fn berth_spec_from_somewhere() -> oci_spec::runtime::Spec { unimplemented!() }
//! ```

#![forbid(unsafe_code)]

mod client;
mod conn;
pub mod helper;
mod stdio;
mod types;
mod wire;

pub use client::{Client, Config, Helper};
pub use helper::run_if_requested as run_helper_if_requested;
pub use types::{CreateOptions, Resources, Stats, Summary};
