//! Processes in cgroups: joining, listing, signalling, and removing the
//! directories once they are empty.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use rustix::fs::{Mode, OFlags};

use crate::apply::Ctl;
use crate::error::CgroupError;
use crate::freezer::{self, FreezerState};
use crate::fsutil;
use crate::Cgroup;

/// Writes `value` (a pid, or `0` for the caller) to `dir/cgroup.procs`.
pub(crate) fn write_procs(dir: &Path, value: &str) -> Result<(), CgroupError> {
    let mut tries = 0;
    loop {
        match fsutil::write(dir, "cgroup.procs", value, None) {
            // A task still in TASK_NEW (between fork and its first run) cannot
            // be moved yet: EINVAL, which clears within microseconds.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            r => return r,
        }
    }
}

/// `cgroup.procs` files opened ahead of a `fork`, so the child only has to
/// `write(2)` to join.
#[derive(Debug)]
pub struct PreparedJoin {
    fds: Vec<OwnedFd>,
}

impl PreparedJoin {
    pub(crate) fn open(dirs: &[&Path]) -> Result<Self, CgroupError> {
        let mut fds = Vec::with_capacity(dirs.len());
        for d in dirs {
            let path = d.join("cgroup.procs");
            let fd = rustix::fs::open(&path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| CgroupError::Write { field: None, path, source: e.into(), hint: None })?;
            fds.push(fd);
        }
        Ok(PreparedJoin { fds })
    }

    /// Moves the calling process into every prepared cgroup. Only issues
    /// `write(2)` and builds errors without allocating, so it is safe in a
    /// child after `fork` in a multi-threaded parent.
    pub fn join(&self) -> std::io::Result<()> {
        for fd in &self.fds {
            loop {
                match rustix::io::write(fd, b"0") {
                    Ok(_) => break,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(std::io::Error::from_raw_os_error(e.raw_os_error())),
                }
            }
        }
        Ok(())
    }
}

fn parse_pids(dir: &Path, content: &str, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    for line in content.lines().map(str::trim).filter(|l| !l.is_empty()) {
        out.push(line.parse().map_err(|_| CgroupError::Parse {
            path: dir.join("cgroup.procs"),
            reason: format!("{line:?} is not a pid"),
        })?);
    }
    Ok(())
}

/// Appends the pids in `dir` and every sub-cgroup.
pub(crate) fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let content = match fsutil::read(dir, "cgroup.procs") {
        Ok(c) => c,
        // A threaded v2 cgroup only lists threads.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => fsutil::read(dir, "cgroup.threads")?,
        Err(e) => return Err(e),
    };
    parse_pids(dir, &content, out)?;
    let rd = std::fs::read_dir(dir).map_err(|source| CgroupError::Read { path: dir.to_path_buf(), source })?;
    for entry in rd.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            match collect_pids(&entry.path(), out) {
                // Removed between readdir and read: nothing to collect.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                r => r?,
            }
        }
    }
    Ok(())
}

pub(crate) fn signal_all(cg: &Cgroup, sig: i32) -> Result<(), CgroupError> {
    // Any number 0 to 64: real-time signals (a systemd image's SIGRTMIN+3) included.
    if !(0..=berth_sys::signal::SIGMAX).contains(&sig) {
        return Err(CgroupError::invalid("signal", format!("{sig} is not a signal number")));
    }
    if sig == libc::SIGKILL && cg.mode() == crate::Mode::Unified {
        if let Some(dir) = cg.unified_dir() {
            match fsutil::write(dir, "cgroup.kill", "1", None) {
                Ok(()) => return Ok(()),
                // Kernels before 5.14: fall back to freeze + kill.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let has_freezer = cg.locate(Ctl::Freezer).is_some();
    let before = if has_freezer { Some(freezer::state(cg)?) } else { None };
    // A paused cgroup already cannot fork; freezing it again is not needed.
    if has_freezer && before != Some(FreezerState::Frozen) {
        freezer::freeze(cg)?;
    }
    let result = (|| {
        for pid in cg.pids()? {
            if pid <= 0 {
                continue;
            }
            match berth_sys::signal::kill(pid, sig) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(CgroupError::Sys { op: "kill", path: format!("/proc/{pid}").into(), source: e }),
            }
        }
        Ok(())
    })();
    if has_freezer {
        // SIGKILL must be able to act, which v1 frozen tasks cannot.
        let keep_frozen = before == Some(FreezerState::Frozen) && sig != libc::SIGKILL;
        if !keep_frozen {
            thaw_after_signal(cg)?;
        }
    }
    result
}

fn thaw_after_signal(cg: &Cgroup) -> Result<(), CgroupError> {
    match freezer::thaw(cg) {
        // The cgroup may vanish once everything died.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// `rmdir` with a short exponential backoff on EBUSY (tasks still exiting).
/// A missing directory counts as removed.
pub(crate) fn rmdir_retry(dir: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_millis(1);
    for attempt in 0.. {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 10 => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(source) => return Err(CgroupError::Rmdir { path: dir.to_path_buf(), source }),
        }
    }
    Ok(())
}

/// Removes `dir` and its sub-cgroups, children first.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    // Fast path: a leaf without processes goes in one syscall.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CgroupError::Read { path: dir.to_path_buf(), source }),
    };
    for entry in rd.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    rmdir_retry(dir)
}
