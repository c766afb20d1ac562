//! The Linux platform types of the API: statistics, process summaries, resources and create
//! options (the original's `types_linux.go`, filled in where it was empty).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Statistics of a container: when they were read, and the cgroup metrics in the shape of
/// runc's `events --stats` (`Stats{Read, Metrics}` in the original).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// When the statistics were read (taken before reading, as the original did).
    pub read: SystemTime,
    /// Cgroup metrics.
    pub metrics: berth_cgroups::Stats,
}

/// One process of a container, for `top` (the original's Linux `Summary` was empty; this is
/// what `ps` shows, read from `/proc`; for a VM container, the guest's `/proc`, read by the
/// guest agent: pids are then the guest's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Host pid (the guest's, for a VM container).
    pub pid: u32,
    /// Pid of the parent, likewise.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Scheduler state letter (`R`, `S`, `D`, `Z`, ...).
    pub state: char,
    /// Command name (`comm`).
    pub command: String,
    /// Command line; empty for kernel threads and zombies.
    pub args: Vec<String>,
    /// User CPU time.
    pub user_time: Duration,
    /// System CPU time.
    pub system_time: Duration,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Resources accepted by `update_resources` (the original's `type Resources specs.LinuxResources`).
pub type Resources = oci_spec::runtime::LinuxResources;

/// Linux options of `create` (the original's `runtimeOptions interface{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// The bundle directory: where a relative `root.path` is resolved, and what hooks and
    /// `berth state` report. Required when `root.path` is relative; otherwise it defaults to
    /// the parent directory of `root.path`.
    pub bundle: Option<PathBuf>,
    /// Use `MS_MOVE` + chroot instead of `pivot_root` (for a rootfs on a ramdisk).
    pub no_pivot: bool,
}

/// Reads the summary of one process; `None` if it vanished meanwhile.
pub(crate) fn summary_of(pid: u32) -> Option<Summary> {
    berth_vm::proto::GuestProcess::read(std::path::Path::new("/proc"), i32::try_from(pid).ok()?).map(Summary::from)
}

/// What ps shows of a process, read from a `/proc` (the host's, or a VM guest's by its agent).
impl From<berth_vm::proto::GuestProcess> for Summary {
    fn from(p: berth_vm::proto::GuestProcess) -> Summary {
        Summary {
            pid: u32::try_from(p.pid).unwrap_or(0),
            ppid: u32::try_from(p.ppid).unwrap_or(0),
            uid: p.uid,
            state: p.state.chars().next().unwrap_or('?'),
            command: p.command,
            args: p.args,
            user_time: Duration::from_nanos(p.user_ns),
            system_time: Duration::from_nanos(p.system_ns),
            rss_bytes: p.rss_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_self() {
        let s = summary_of(std::process::id()).unwrap();
        assert_eq!(s.pid, std::process::id());
        assert_eq!(s.ppid, rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32));
        assert!(s.rss_bytes > 0);
        assert!(!s.args.is_empty());
        assert!(summary_of(u32::MAX).is_none());
    }
}
