//! Freezing and thawing.
//!
//! v1: write `FROZEN` to `freezer.state` and re-read until the kernel says
//! `FROZEN` (it reports `FREEZING` while tasks are still on their way into the
//! refrigerator); like runc, rewrite `FROZEN` on each round, which re-kicks
//! tasks that were forking, and briefly thaw now and then so a task stuck
//! behind a frozen one can make progress.
//!
//! v2: write `1` to `cgroup.freeze` and wait for `frozen 1` in
//! `cgroup.events`, using `poll(POLLPRI)` on that file (kernfs signals every
//! change), not a sleep loop.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::apply::Target;
use crate::error::CgroupError;
use crate::fsutil;
use crate::Cgroup;

/// Freezer state of a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezerState {
    Thawed,
    /// Freezing was requested but not every task is frozen yet.
    Freezing,
    Frozen,
}

const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn freeze(t: Target<'_>) -> Result<(), CgroupError> {
    match t {
        Target::V1(dir) => freeze_v1(dir),
        Target::V2(dir) => {
            fsutil::write(dir, "cgroup.freeze", "1", None)?;
            wait_v2(dir, true)
        }
    }
}

pub(crate) fn thaw(t: Target<'_>) -> Result<(), CgroupError> {
    match t {
        Target::V1(dir) => fsutil::write(dir, "freezer.state", "THAWED", None),
        Target::V2(dir) => {
            fsutil::write(dir, "cgroup.freeze", "0", None)?;
            wait_v2(dir, false)
        }
    }
}

pub(crate) fn state(t: Target<'_>) -> Result<FreezerState, CgroupError> {
    match t {
        Target::V1(dir) => {
            let s = fsutil::read(dir, "freezer.state")?;
            parse_v1(dir, &s)
        }
        Target::V2(dir) => {
            let want = fsutil::read_u64(dir, "cgroup.freeze")?;
            let events = fsutil::read(dir, "cgroup.events")?;
            Ok(match (want, fsutil::value_of(&events, "frozen")) {
                (0, _) => FreezerState::Thawed,
                (_, Some(1)) => FreezerState::Frozen,
                _ => FreezerState::Freezing,
            })
        }
    }
}

fn parse_v1(dir: &Path, s: &str) -> Result<FreezerState, CgroupError> {
    match s.trim() {
        "THAWED" => Ok(FreezerState::Thawed),
        "FREEZING" => Ok(FreezerState::Freezing),
        "FROZEN" => Ok(FreezerState::Frozen),
        other => {
            Err(CgroupError::Parse { path: dir.join("freezer.state"), reason: format!("unknown state {other:?}") })
        }
    }
}

/// Refuses a cgroup that is frozen, or being frozen, in either freezer (its
/// own setting or an ancestor's): a process started there could never run,
/// and `create` would wait for it forever. runc refuses the same.
pub(crate) fn check_not_frozen(cg: &Cgroup) -> Result<(), CgroupError> {
    if let Some(v1) = cg.v1_dir("freezer") {
        let raw = match fsutil::read(v1, "freezer.state") {
            Ok(s) => Some(s),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        if let Some(raw) = raw {
            if parse_v1(v1, &raw)? != FreezerState::Thawed {
                let inherited = fsutil::read(v1, "freezer.self_freezing").is_ok_and(|s| s.trim() == "0");
                return Err(CgroupError::Frozen {
                    path: v1.join("freezer.state"),
                    detail: format!("{}{}", raw.trim(), if inherited { " (an ancestor cgroup is frozen)" } else { "" }),
                });
            }
        }
    }
    if let Some(v2) = cg.unified_dir() {
        match fsutil::read_u64_opt(v2, "cgroup.freeze")? {
            None | Some(0) => {}
            Some(v) => return Err(CgroupError::Frozen { path: v2.join("cgroup.freeze"), detail: v.to_string() }),
        }
        // An ancestor's cgroup.freeze applies here too; cgroup.events shows it.
        if let Ok(events) = fsutil::read(v2, "cgroup.events") {
            if fsutil::value_of(&events, "frozen") == Some(1) {
                return Err(CgroupError::Frozen {
                    path: v2.join("cgroup.events"),
                    detail: "frozen 1 (an ancestor cgroup is frozen)".into(),
                });
            }
        }
    }
    Ok(())
}

fn freeze_v1(dir: &Path) -> Result<(), CgroupError> {
    let start = Instant::now();
    let mut last = FreezerState::Freezing;
    for i in 0u32.. {
        if i % 50 == 49 {
            // A task may be blocked (e.g. in vfork) on one already frozen.
            fsutil::write(dir, "freezer.state", "THAWED", None)?;
            std::thread::sleep(Duration::from_millis(10));
        }
        fsutil::write(dir, "freezer.state", "FROZEN", None)?;
        if i % 25 == 24 {
            std::thread::sleep(Duration::from_micros(100));
        }
        last = parse_v1(dir, &fsutil::read(dir, "freezer.state")?)?;
        if last == FreezerState::Frozen {
            return Ok(());
        }
        if start.elapsed() > TIMEOUT {
            break;
        }
    }
    // Do not leave the cgroup half-frozen.
    let _ = fsutil::write(dir, "freezer.state", "THAWED", None);
    Err(CgroupError::FreezeTimeout { path: dir.to_path_buf(), secs: TIMEOUT.as_secs(), state: format!("{last:?}") })
}

/// Waits until `cgroup.events` reports `frozen` = `frozen`.
fn wait_v2(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.events");
    let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| CgroupError::Read { path: path.clone(), source: e.into() })?;
    let want = u64::from(frozen);
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 512];
    loop {
        let n = rustix::io::pread(&fd, &mut buf[..], 0)
            .map_err(|e| CgroupError::Read { path: path.clone(), source: e.into() })?;
        let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
        let now = fsutil::value_of(&text, "frozen");
        if now == Some(want) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if frozen {
                let _ = fsutil::write(dir, "cgroup.freeze", "0", None);
            }
            return Err(CgroupError::FreezeTimeout {
                path: dir.to_path_buf(),
                secs: TIMEOUT.as_secs(),
                state: format!("frozen {}", now.map_or_else(|| "?".into(), |v| v.to_string())),
            });
        }
        let ts = rustix::time::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        let mut fds = [PollFd::new(&fd, PollFlags::PRI)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(CgroupError::Sys { op: "poll", path, source: e.into() }),
        }
    }
}
