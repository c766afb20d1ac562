//! The surface an engine embeds: the original libcontainerd `Client`, one method per
//! operation, implemented per platform (Linux in `berth-client`, Windows HCS in `berth-hcs`).
//!
//! Differences from the Go original are deliberate and come from its later bug fixes
//! (see `docs/architecture.md` and the per-backend docs):
//!
//! * events are published through an [`crate::EventQueue`]; a process's exit is never queued
//!   before its `start`/`exec-started` event, and every exec's exit precedes the init's exit;
//! * `exec` after the init exited fails with not-found instead of reaching a dead system;
//! * starting a started container is [`crate::ErrorKind::NotModified`];
//! * a failed stdio attach kills and reaps the new process;
//! * no client-wide lock is held across slow operations.
//!
//! `Stats`, `Summary`, `Resources` and the create options are platform types, as they were in
//! the original (`types_linux.go` / `types_windows.go`), hence associated types.

use std::path::Path;
use std::time::SystemTime;

use oci_spec::runtime::{Process, Spec};

use crate::error::Result;
use crate::stdio::AttachStdio;
use crate::types::{Status, Version};

/// A libcontainerd-style client for one platform.
pub trait Client: Send + Sync {
    /// Statistics of a container (Linux: cgroup metrics; Windows: HCS statistics).
    type Stats;
    /// One row of `summary` (docker top).
    type Summary;
    /// Resources accepted by `update_resources`.
    type Resources: ?Sized;
    /// Platform-specific options for `create` (the original's `runtimeOptions interface{}`).
    type CreateOptions: ?Sized;

    /// Version of the runtime behind this client.
    fn version(&self) -> Result<Version>;

    /// Reattaches to a container that outlived the engine. Returns whether it is alive and the
    /// init's pid. Exits that happened while the engine was away are delivered as events.
    fn restore(&self, id: &str, attach: AttachStdio<'_>) -> Result<(bool, Option<u32>)>;

    /// Creates a container from `spec`; its init is not started. Conflict if `id` is in use.
    fn create(&self, id: &str, spec: &Spec, options: Option<&Self::CreateOptions>) -> Result<()>;

    /// Starts the init process and returns its pid. `attach` receives its stdio first.
    fn start(&self, id: &str, checkpoint_dir: Option<&Path>, with_stdin: bool, attach: AttachStdio<'_>) -> Result<u32>;

    /// Sends `signal` to a process (`process_id` = the container id or `"init"` for the init).
    fn signal_process(&self, id: &str, process_id: &str, signal: i32) -> Result<()>;

    /// Starts an additional process in a running container and returns its pid.
    fn exec(
        &self,
        id: &str,
        process_id: &str,
        spec: &Process,
        with_stdin: bool,
        attach: AttachStdio<'_>,
    ) -> Result<u32>;

    /// Resizes a process's terminal.
    fn resize_terminal(&self, id: &str, process_id: &str, width: u32, height: u32) -> Result<()>;

    /// Closes a process's stdin so it reads EOF.
    fn close_stdin(&self, id: &str, process_id: &str) -> Result<()>;

    /// Freezes the container.
    fn pause(&self, id: &str) -> Result<()>;

    /// Thaws the container.
    fn resume(&self, id: &str) -> Result<()>;

    /// Current statistics.
    fn stats(&self, id: &str) -> Result<Self::Stats>;

    /// Host pids of every process in the container.
    fn list_pids(&self, id: &str) -> Result<Vec<u32>>;

    /// Process list for `top`.
    fn summary(&self, id: &str) -> Result<Vec<Self::Summary>>;

    /// Returns the init's exit code and time once it has exited; conflict before that.
    fn delete_task(&self, id: &str) -> Result<(u32, SystemTime)>;

    /// Removes a created or stopped container and everything it holds.
    fn delete(&self, id: &str) -> Result<()>;

    /// Current status; [`Status::Unknown`] with a not-found error for unknown ids.
    fn status(&self, id: &str) -> Result<Status>;

    /// Changes the resources of a running container.
    fn update_resources(&self, id: &str, resources: &Self::Resources) -> Result<()>;

    /// Checkpoints the container into `checkpoint_dir`, optionally stopping it.
    fn create_checkpoint(&self, id: &str, checkpoint_dir: &Path, exit: bool) -> Result<()>;
}
