//! The libcontainerd vocabulary: container status, event types and event payloads.
//!
//! String forms match the original (`libcontainerd/types.go`) and containerd's task event topic
//! suffixes (`exec-added` <-> `/tasks/exec-added`), so engines and the shim can map them 1:1.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The status of a container as the embedding API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created; the user process has not started.
    Created,
    /// The init process is executing.
    Running,
    /// Frozen.
    Paused,
    /// Being frozen.
    Pausing,
    /// The init process has exited.
    Stopped,
    /// Unknown (e.g. the container could not be found).
    Unknown,
}

impl Status {
    /// The lower-case name used by the original and by containerd.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Pausing => "pausing",
            Status::Stopped => "stopped",
            Status::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "created" => Status::Created,
            "running" => Status::Running,
            "paused" => Status::Paused,
            "pausing" => Status::Pausing,
            "stopped" => Status::Stopped,
            "unknown" => Status::Unknown,
            other => return Err(format!("unknown status {other:?}")),
        })
    }
}

/// The kind of an event delivered to the engine's [`crate::EventSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// The container was created.
    #[serde(rename = "create")]
    Create,
    /// The init process started.
    #[serde(rename = "start")]
    Start,
    /// An exec process was registered.
    #[serde(rename = "exec-added")]
    ExecAdded,
    /// An exec process started.
    #[serde(rename = "exec-started")]
    ExecStarted,
    /// The container was frozen.
    #[serde(rename = "paused")]
    Paused,
    /// The container was thawed.
    #[serde(rename = "resumed")]
    Resumed,
    /// A process exited.
    #[serde(rename = "exit")]
    Exit,
    /// The kernel's OOM killer acted in the container.
    #[serde(rename = "oom")]
    Oom,
    /// Never emitted; kept for parity with the original's `EventUnknown`.
    #[serde(rename = "unknown")]
    Unknown,
}

impl EventType {
    /// The original's string form, equal to the containerd topic suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Create => "create",
            EventType::Start => "start",
            EventType::ExecAdded => "exec-added",
            EventType::ExecStarted => "exec-started",
            EventType::Paused => "paused",
            EventType::Resumed => "resumed",
            EventType::Exit => "exit",
            EventType::Oom => "oom",
            EventType::Unknown => "unknown",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payload of an event (the original's `EventInfo`).
///
/// `error` is the later upstream addition (moby 8c52560ea4): when tearing a container down after
/// its init exited fails, the exit is reported with `exit_code = u32::MAX` (-1) and the failure
/// here, instead of a silent exit code 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInfo {
    /// The container the event belongs to.
    pub container_id: String,
    /// The process: the container id (or `"init"` on HCS) for the init, the exec id otherwise.
    pub process_id: String,
    /// Host pid of the process (0 when not applicable, e.g. `exec-added` on Linux).
    pub pid: u32,
    /// Exit code (exit events only); 128+N for a signal on Linux.
    pub exit_code: u32,
    /// When the process exited (exit events only).
    pub exited_at: Option<SystemTime>,
    /// Sticky: once an OOM kill happened in the container, later events carry `true`.
    pub oom_killed: bool,
    /// A failure attached to an exit (see the type docs).
    pub error: Option<String>,
}

impl EventInfo {
    /// An event payload for `container_id`/`process_id` with everything else zeroed.
    pub fn new(container_id: impl Into<String>, process_id: impl Into<String>) -> Self {
        EventInfo {
            container_id: container_id.into(),
            process_id: process_id.into(),
            pid: 0,
            exit_code: 0,
            exited_at: None,
            oom_killed: false,
            error: None,
        }
    }

    /// Sets the pid.
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = pid;
        self
    }
}

/// Version information of the runtime behind a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Release version, e.g. `0.1.0`.
    pub version: String,
    /// Source revision (git commit) or `unknown`.
    pub revision: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_match_containerd_topics() {
        for (e, s) in [
            (EventType::Create, "create"),
            (EventType::Start, "start"),
            (EventType::ExecAdded, "exec-added"),
            (EventType::ExecStarted, "exec-started"),
            (EventType::Paused, "paused"),
            (EventType::Resumed, "resumed"),
            (EventType::Exit, "exit"),
            (EventType::Oom, "oom"),
        ] {
            assert_eq!(e.as_str(), s);
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{s}\""));
        }
    }

    #[test]
    fn status_round_trips() {
        for s in [Status::Created, Status::Running, Status::Paused, Status::Pausing, Status::Stopped, Status::Unknown] {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        assert!("bogus".parse::<Status>().is_err());
    }
}
