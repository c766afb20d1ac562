//! Which cgroup2 controllers berth turns on for a container, and turning them off again.
//!
//! A cgroup2 directory has a controller's files only when each of its ancestors enables the
//! controller in `cgroup.subtree_control`. And once the cgroup2 root enables a controller
//! for its children (and a child exists), the kernel refuses to bind that controller to a v1
//! hierarchy: `mount -t cgroup -o hugetlb ...` fails with EBUSY. On a hybrid host that locks
//! out v1-only runtimes: crun refuses a hybrid host whose cgroup2 offers any controller, and
//! the cure, mounting the leftover controller as a v1 hierarchy
//! (`mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb`), then fails too.
//!
//! So on a **hybrid** host berth enables only the controllers the container's limits need,
//! and when the container's directories are removed it disables again, in the container's
//! ancestors, each controller that no cgroup below them uses any more: none of their
//! children enables it further down or has one of its limits set. On a **unified** host it
//! enables every controller the root offers, as runc does: stats and OOM events need them,
//! and nothing else could bind them; it never disables anything there.
//!
//! A `create`/`update` that enables controllers holds a shared `flock` on the cgroup2 mount
//! directory until its limits are written, and a release holds it exclusively while it
//! checks and disables, so one berth cannot take away a controller another berth is about to
//! use (or has just given a limit). Other programs do not take that lock; a release only
//! ever disables a controller that shows no limit anywhere below, the same check the kernel
//! would need.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode as FileMode, OFlags};

use crate::error::CgroupError;
use crate::{fsutil, V2Dir};

/// A limit no machine can reach counts as no limit. A new hugetlb cgroup's `hugetlb.*.max`
/// reads 9223372036854771712, not `max` (the kernel's maximum rounded down to whole huge
/// pages), and so does `i64::MAX` bytes, what some engines write for "unlimited".
const UNREACHABLE: u64 = 1 << 62;

/// The controllers a release may disable, with how to recognise their limit files. Other
/// controllers (memory, cpu, io, cpuset) stay enabled once enabled: their settings are too
/// many to tell "unused" safely, and hybrid hosts mount them as v1 anyway.
fn is_limit_file(controller: &str, file: &str) -> Option<bool> {
    match controller {
        "hugetlb" => Some(file.starts_with("hugetlb.") && file.ends_with(".max")),
        "pids" | "rdma" | "misc" => Some(file.strip_suffix(".max") == Some(controller)),
        _ => None,
    }
}

/// Whether a limit file's content limits anything: a number below [`UNREACHABLE`] in any
/// of its values (`4194304`, `mlx4_0 hca_handle=2`, `res_a 5`); `max` and names do not.
fn limits_something(content: &str) -> bool {
    content
        .split_whitespace()
        .map(|t| t.rsplit_once('=').map_or(t, |(_, v)| v))
        .any(|v| v.parse::<u64>().is_ok_and(|n| n < UNREACHABLE))
}

/// An `flock` on the cgroup2 mount directory, released on drop.
pub(crate) struct DelegationLock(#[allow(dead_code)] OwnedFd);

fn open_mount(mount: &Path) -> Option<OwnedFd> {
    match rustix::fs::open(mount, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, FileMode::empty()) {
        Ok(fd) => Some(fd),
        Err(e) => {
            log::debug!("opening {} to lock it: {e}", mount.display());
            None
        }
    }
}

/// Shared: taken by every `create`/`update` that enables controllers on a hybrid host.
/// Waits for a release in progress, which only reads and writes a few small files.
pub(crate) fn lock_shared(mount: &Path) -> Option<DelegationLock> {
    let fd = open_mount(mount)?;
    loop {
        match rustix::fs::flock(&fd, FlockOperation::LockShared) {
            Ok(()) => return Some(DelegationLock(fd)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                log::debug!("locking {}: {e}", mount.display());
                return None;
            }
        }
    }
}

/// Exclusive, for a release. Gives up after a while: leaving a controller enabled is safe,
/// while waiting on a stuck `create` would hang `delete`.
fn lock_exclusive(mount: &Path) -> Option<DelegationLock> {
    let fd = open_mount(mount)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pause = Duration::from_micros(200);
    loop {
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Some(DelegationLock(fd)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => {
                log::debug!("locking {} to release controllers: {e}; leaving them enabled", mount.display());
                return None;
            }
        }
    }
}

/// The cgroup2 root and every directory between it and the container's directory (its
/// ancestors within the hierarchy), root first.
fn ancestors(v2: &V2Dir) -> Vec<PathBuf> {
    let Ok(rel) = v2.path.strip_prefix(&v2.mount) else {
        return Vec::new();
    };
    let comps: Vec<_> = rel.components().collect();
    let mut out = vec![v2.mount.clone()];
    let mut dir = v2.mount.clone();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        dir.push(c);
        out.push(dir.clone());
    }
    out
}

fn subtree_control(dir: &Path) -> Result<BTreeSet<String>, CgroupError> {
    Ok(fsutil::read(dir, "cgroup.subtree_control")?.split_ascii_whitespace().map(str::to_owned).collect())
}

/// Enables `wanted` in each ancestor of the container's directory, top-down. A controller
/// in `needed` (controller -> the spec field needing it) that cannot be enabled is an error
/// naming that field; the others are only logged (and not tried further down).
pub(crate) fn enable(
    v2: &V2Dir,
    wanted: &BTreeSet<String>,
    needed: &BTreeMap<String, String>,
) -> Result<(), CgroupError> {
    let mut wanted = wanted.clone();
    let fail = |c: &str, e: CgroupError| -> Result<(), CgroupError> {
        let Some(field) = needed.get(c) else {
            log::debug!("enabling cgroup v2 controller {c}: {e}");
            return Ok(());
        };
        Err(match e {
            CgroupError::Write { path, source, .. } => CgroupError::Write {
                field: Some(field.clone()),
                path,
                source,
                hint: Some(format!("enabling the {c} controller, which this field needs")),
            },
            e => CgroupError::unsupported(
                field.clone(),
                format!("needs the cgroup v2 {c} controller, which cannot be enabled for this cgroup: {e}"),
            ),
        })
    };
    for dir in ancestors(v2) {
        if wanted.is_empty() {
            break;
        }
        let enabled = match subtree_control(&dir) {
            Ok(s) => s,
            Err(e) => {
                let first_needed = wanted.iter().find(|c| needed.contains_key(*c)).cloned();
                return fail(first_needed.as_deref().unwrap_or("any"), e);
            }
        };
        let missing: Vec<String> = wanted.difference(&enabled).cloned().collect();
        if missing.is_empty() {
            continue;
        }
        let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
        if fsutil::write(&dir, "cgroup.subtree_control", &all.join(" "), None).is_ok() {
            continue;
        }
        // One refused controller fails the whole write: find which.
        for c in missing {
            if let Err(e) = fsutil::write(&dir, "cgroup.subtree_control", &format!("+{c}"), None) {
                fail(&c, e)?;
                wanted.remove(&c);
            }
        }
    }
    Ok(())
}

/// Whether a cgroup below `dir` uses `controller`: a child enables it for its own children
/// or has one of its limits set. Unreadable means used. The cheap check (one file per child)
/// goes over every child before the limit files are read.
fn in_use(dir: &Path, controller: &str) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return true;
    };
    let mut children = Vec::new();
    for e in rd {
        let Ok(e) = e else { return true };
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            children.push(e.path());
        }
    }
    for child in &children {
        match subtree_control(child) {
            Ok(s) if s.contains(controller) => return true,
            Ok(_) => {}
            // Removed meanwhile: it uses nothing.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(_) => return true,
        }
    }
    children.iter().any(|child| has_limit(child, controller))
}

/// Whether `child` has one of `controller`'s limits set.
fn has_limit(child: &Path, controller: &str) -> bool {
    let Ok(files) = std::fs::read_dir(child) else {
        return false;
    };
    for f in files.flatten() {
        let name = f.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_limit_file(controller, name) != Some(true) {
            continue;
        }
        match fsutil::read_raw(&f.path()) {
            Ok(v) if !limits_something(&v) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            _ => return true,
        }
    }
    false
}

/// After the container's directories are gone: disables, deepest ancestor first, each
/// releasable controller nothing below uses any more. Best effort; failures are logged and
/// leave the controller enabled.
pub(crate) fn release(v2: &V2Dir) {
    let mut dirs = ancestors(v2);
    dirs.reverse();
    let candidates = |dir: &Path| -> Vec<String> {
        subtree_control(dir)
            .map(|s| s.into_iter().filter(|c| is_limit_file(c, "").is_some()).collect())
            .unwrap_or_default()
    };
    // The common case (nothing enabled on the way, e.g. no limit needed cgroup2) costs one
    // read per ancestor and no lock.
    if dirs.iter().all(|d| candidates(d).is_empty()) {
        return;
    }
    let Some(_lock) = lock_exclusive(&v2.mount) else {
        return;
    };
    for dir in &dirs {
        for c in candidates(dir) {
            if in_use(dir, &c) {
                continue;
            }
            match fsutil::write(dir, "cgroup.subtree_control", &format!("-{c}"), None) {
                Ok(()) => log::debug!("released cgroup v2 controller {c} in {}", dir.display()),
                Err(e) => log::debug!("releasing cgroup v2 controller {c}: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_values_that_limit_something() {
        for v in ["4194304", "0", "res_a 5\nres_b max", "mlx4_0 hca_handle=2 hca_object=max", "100"] {
            assert!(limits_something(v), "{v}");
        }
        for v in ["max", "9223372036854771712", "", "res_a max\nres_b max", "mlx4_0 hca_handle=max hca_object=max"] {
            assert!(!limits_something(v), "{v}");
        }
        assert_eq!(is_limit_file("hugetlb", "hugetlb.2MB.rsvd.max"), Some(true));
        assert_eq!(is_limit_file("hugetlb", "hugetlb.2MB.current"), Some(false));
        assert_eq!(is_limit_file("pids", "pids.max"), Some(true));
        assert_eq!(is_limit_file("memory", "memory.max"), None);
    }
}
