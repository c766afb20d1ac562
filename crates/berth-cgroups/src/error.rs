//! The one error type of this crate. Every variant names what it was doing to
//! which file, and, where a spec field caused it, the field in `config.json`
//! terms (`linux.resources.memory.swap`), so a user can fix their bundle
//! without reading our source.

use std::io;
use std::path::PathBuf;

/// Errors from cgroup detection, resolution, creation, updates and queries.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A resource value is invalid on its own or against another field.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },

    /// The value is valid but this host's cgroup layout cannot express it
    /// (controller not mounted, v2-only key on a v1 host, ...).
    #[error("{field}: {reason}")]
    Unsupported { field: String, reason: String },

    /// `linux.cgroupsPath` cannot be used.
    #[error("linux.cgroupsPath {path:?}: {reason}")]
    BadPath { path: String, reason: String },

    /// Writing a cgroup file failed.
    #[error("{}writing {}: {source}{}", prefix(field), path.display(), suffix(hint))]
    Write {
        field: Option<String>,
        path: PathBuf,
        #[source]
        source: io::Error,
        hint: Option<String>,
    },

    /// Reading a cgroup (or proc) file failed.
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A file had content we could not parse.
    #[error("parsing {}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },

    /// Creating a cgroup directory failed.
    #[error("creating cgroup {}: {source}", path.display())]
    Mkdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Removing a cgroup directory failed.
    #[error("removing cgroup {}: {source}", path.display())]
    Rmdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The cgroup layout of the host could not be determined.
    #[error("detecting the cgroup layout: {0}")]
    Detect(String),

    /// A syscall on a cgroup (bpf, eventfd, inotify, poll, kill) failed.
    #[error("{op} on {}: {source}", path.display())]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Loading the cgroup v2 device filter was rejected by the verifier.
    #[error("linux.resources.devices: loading the eBPF device filter for {}: {source}; verifier log: {log}", path.display())]
    BpfLoad {
        path: PathBuf,
        #[source]
        source: io::Error,
        log: String,
    },

    /// Freezing did not settle in time.
    #[error("freezing {}: cgroup did not reach FROZEN within {secs}s (still {state})", path.display())]
    FreezeTimeout { path: PathBuf, secs: u64, state: String },

    /// A v1 freezer reported `FROZEN` but a task kept running, even after
    /// the cgroup was thawed and frozen again several times.
    #[error("freezing {}: the freezer reports FROZEN but a task is not stopped: {task}", path.display())]
    FreezeEscaped { path: PathBuf, task: String },

    /// The container's cgroup (or an ancestor) is frozen: a process started
    /// there could never run. The key words are runc's.
    #[error("linux.cgroupsPath: container's cgroup unexpectedly frozen: {}: {detail}; thaw it or use another cgroup", path.display())]
    Frozen { path: PathBuf, detail: String },

    /// The cgroup watched by an [`crate::OomWatcher`] has been removed.
    #[error("cgroup {} was removed", path.display())]
    Removed { path: PathBuf },

    /// The operation needs a controller this cgroup does not have.
    #[error("{op}: no {controller} controller in any hierarchy of this cgroup")]
    NoController { op: &'static str, controller: &'static str },
}

fn prefix(field: &Option<String>) -> String {
    match field {
        Some(f) => format!("{f}: "),
        None => String::new(),
    }
}

fn suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!(" ({h})"),
        None => String::new(),
    }
}

impl CgroupError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::Invalid { field: field.into(), reason: reason.into() }
    }

    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::Unsupported { field: field.into(), reason: reason.into() }
    }

    /// The errno behind this error, if it came from a syscall.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            CgroupError::Write { source, .. }
            | CgroupError::Read { source, .. }
            | CgroupError::Mkdir { source, .. }
            | CgroupError::Rmdir { source, .. }
            | CgroupError::Sys { source, .. }
            | CgroupError::BpfLoad { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
