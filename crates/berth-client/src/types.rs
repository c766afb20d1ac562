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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let command = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // Fields after the command, 0-based: 0 state, 1 ppid, 11 utime, 12 stime, 21 rss (pages).
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    let ticks = clock_ticks();
    let to_dur = |s: &str| -> Option<Duration> {
        let t: u64 = s.parse().ok()?;
        Some(Duration::from_nanos(t.saturating_mul(1_000_000_000) / ticks))
    };
    let user_time = to_dur(rest.get(11)?)?;
    let system_time = to_dur(rest.get(12)?)?;
    let rss_pages: u64 = rest.get(21)?.parse().ok()?;
    let rss_bytes = rss_pages.saturating_mul(rustix::param::page_size() as u64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let args = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
        })
        .unwrap_or_default();
    Some(Summary { pid, ppid, uid, state, command, args, user_time, system_time, rss_bytes })
}

fn clock_ticks() -> u64 {
    // USER_HZ has been 100 on every Linux ABI for decades; the kernel reports it in the aux
    // vector, which rustix exposes.
    let t = rustix::param::clock_ticks_per_second();
    if t == 0 {
        100
    } else {
        t
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
