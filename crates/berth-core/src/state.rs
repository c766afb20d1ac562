//! The OCI state document and crash-safe state files.
//!
//! `berth state` prints the OCI runtime-spec state plus runc's extra `rootfs`, `created` and
//! `owner` fields, in runc's field order, because the containerd runc shim, conmon and podman
//! parse that output.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt; // mode(); std opens every file O_CLOEXEC
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The lifecycle state of a container as the OCI runtime spec names it (plus `paused`, which
/// runc reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Being created: the init exists but setup has not finished.
    Creating,
    /// Created: waiting for `start`.
    Created,
    /// Running the user process.
    Running,
    /// Frozen.
    Paused,
    /// The init has exited.
    Stopped,
}

impl ContainerStatus {
    /// Lower-case name as printed by `state` and `list`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Creating => "creating",
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Paused => "paused",
            ContainerStatus::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The document `berth state ID` prints (runc's `ContainerState`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciState {
    /// Runtime-spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the init; 0 once stopped (runc prints 0).
    pub pid: i32,
    /// Lifecycle state.
    pub status: ContainerStatus,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 with nanoseconds.
    pub created: String,
    /// Spec annotations (omitted when empty, like runc).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Owner name (runc prints the user name owning the state; empty for root).
    pub owner: String,
}

/// The strict OCI form (what hooks receive on stdin): no runc extras.
#[derive(Debug, Clone, Serialize)]
pub struct HookState<'a> {
    /// Runtime-spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    /// Container id.
    pub id: &'a str,
    /// Lifecycle state.
    pub status: ContainerStatus,
    /// Host pid of the init (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub pid: i32,
    /// Absolute bundle path.
    pub bundle: &'a Path,
    /// Spec annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// Writes `data` to `path` so that readers see either the old or the new content, never a
/// torn file: write a temp file in the same directory, fsync-free (state lives on tmpfs and a
/// crash loses the containers anyway), then rename over.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(data)?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Validates a container id the way runc does: `^[\w+-\.]+$`, and not `.` or `..`. The
/// messages carry runc's words (`container id cannot be empty`, `invalid container ID
/// format`), which users' scripts look for, then say what is wrong.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("container id cannot be empty".into());
    }
    if id == "." || id == ".." {
        return Err(format!("invalid container ID format: container id {id:?} is a path component"));
    }
    if id.len() > 1024 {
        return Err("invalid container ID format: container id longer than 1024 bytes".into());
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))) {
        return Err(format!(
            "invalid container ID format: container id {id:?} has the character {c:?} (allowed: letters, digits, _ + - .)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_json_shape_matches_runc() {
        let s = OciState {
            oci_version: "1.2.0".into(),
            id: "c1".into(),
            pid: 42,
            status: ContainerStatus::Running,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2024-01-01T00:00:00Z".into(),
            annotations: BTreeMap::new(),
            owner: String::new(),
        };
        let v = serde_json::to_value(&s).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        for k in ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"] {
            assert!(keys.contains(&k), "missing {k}");
        }
        assert!(!keys.contains(&"annotations"));
        assert_eq!(v["status"], "running");
    }

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ä"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn atomic_write_replaces() {
        let d = std::env::temp_dir().join(format!("berth-core-test-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let p = d.join("state.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "temp file left behind");
        fs::remove_dir_all(&d).unwrap();
    }
}
