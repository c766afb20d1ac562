//! A container's persisted state: `<root>/<id>/state.json`.
//!
//! Written atomically once setup succeeded; later commands (run by other processes) read it
//! to find the init (pid plus start time, so a recycled pid is never mistaken for it), the
//! cgroup paths resolved at create time, and the spec for exec and poststop hooks.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use berth_core::state::{ContainerStatus, OciState};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// The state file of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    /// Container id.
    pub id: String,
    /// Host pid of the init.
    pub pid: i32,
    /// Start time of the init (clock ticks since boot, /proc/PID/stat field 22).
    pub start_time: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time (RFC 3339).
    pub created: String,
    /// Owner shown by `state`.
    #[serde(default)]
    pub owner: String,
    /// Spec annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Cgroups as resolved at create time.
    pub cgroup: Option<berth_cgroups::Cgroup>,
    /// Whether the container has its own pid namespace (if not, delete kills every process
    /// in its cgroup, since the init's death does not take them down).
    pub own_pidns: bool,
    /// Created with `--no-new-keyring`: the init kept its creator's session keyring, and exec
    /// processes keep theirs too (otherwise they join the container's `_ses.<id>`).
    #[serde(default)]
    pub no_new_keyring: bool,
    /// Written while the container is being created (before its cgroups and init exist,
    /// then with the init's pid), cleared once it is ready: what `delete -f` needs to clean
    /// up after a `create` that was killed half-way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creating: bool,
    /// The resctrl group of `linux.intelRdt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel_rdt: Option<crate::resctrl::RdtGroup>,
    /// The validated spec.
    pub spec: oci_spec::runtime::Spec,
}

/// The directory of container `id` under `root`.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// File name of the exec fifo inside the container directory.
pub const EXEC_FIFO: &str = "exec.fifo";
/// File name of the state file.
pub const STATE_FILE: &str = "state.json";

impl ContainerState {
    /// Loads the state of container `id`.
    pub fn load(root: &Path, id: &str) -> Result<ContainerState> {
        berth_core::state::validate_id(id).map_err(Error::Invalid)?;
        let path = dir(root, id).join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound(id.to_string())),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_slice(&data).map_err(|e| Error::Invalid(format!("corrupt state file {}: {e}", path.display())))
    }

    /// Writes the state file atomically.
    pub fn save(&self, root: &Path) -> Result<()> {
        let path = dir(root, &self.id).join(STATE_FILE);
        let data = serde_json::to_vec(self).map_err(|e| Error::Invalid(format!("encoding state: {e}")))?;
        berth_core::state::write_atomic(&path, &data, 0o600).ctx(|| format!("writing {}", path.display()))
    }

    /// True while the init recorded here is alive (not a zombie, same start time).
    pub fn init_alive(&self) -> bool {
        self.pid > 0
            && matches!(proc_stat(self.pid), Some((state, st)) if state != 'Z' && state != 'X' && st == self.start_time)
    }

    /// The lifecycle status, as runc infers it.
    pub fn status(&self, root: &Path) -> ContainerStatus {
        if !self.init_alive() {
            return ContainerStatus::Stopped;
        }
        if self.creating {
            return ContainerStatus::Creating;
        }
        if dir(root, &self.id).join(EXEC_FIFO).exists() {
            return ContainerStatus::Created;
        }
        if let Some(cg) = &self.cgroup {
            if matches!(cg.freezer_state(), Ok(berth_cgroups::FreezerState::Frozen)) {
                return ContainerStatus::Paused;
            }
        }
        ContainerStatus::Running
    }

    /// The OCI state document (`berth state`).
    pub fn oci(&self, root: &Path) -> OciState {
        let status = self.status(root);
        OciState {
            oci_version: self.spec.version().clone(),
            id: self.id.clone(),
            pid: if status == ContainerStatus::Stopped { 0 } else { self.pid },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            annotations: self.annotations.clone(),
            owner: self.owner.clone(),
        }
    }
}

/// (state letter, start time) of `pid` from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: split after the last ')'.
    let rest = s.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let start = f.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Ids of every container under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(Error::io(format!("reading {}", root.display()), e)),
    };
    for e in rd.flatten() {
        if e.path().join(STATE_FILE).exists() {
            if let Some(n) = e.file_name().to_str() {
                ids.push(n.to_string());
            }
        }
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_of_self() {
        let (state, start) = proc_stat(std::process::id() as i32).unwrap();
        assert!(state == 'R' || state == 'S');
        assert!(start > 0);
        assert!(proc_stat(i32::MAX).is_none());
    }
}
