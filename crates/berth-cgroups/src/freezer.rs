//! Freezing and thawing.
//!
//! A container's processes are in its cgroup2 directory on unified *and*
//! hybrid hosts (berth clones the init into it), and every cgroup2 directory
//! has `cgroup.freeze`; on v1 and hybrid hosts they are also in the v1
//! freezer hierarchy. Both freezers are used where both exist:
//!
//! * cgroup2 first: write `1` to `cgroup.freeze` and wait for `frozen 1` in
//!   `cgroup.events` with `poll(POLLPRI)` (kernfs signals every change). Its
//!   tasks park in a signal-delivery trap and the cgroup counts them, so a
//!   task that leaves the trap is seen. The order matters: a task held in the
//!   v1 refrigerator never reaches that trap, so cgroup2 would never report
//!   frozen (measured on this host); the v1 freezer then stops the trapped
//!   tasks at once, since they sleep freezably.
//! * v1: write `FROZEN` to `freezer.state` and re-read until the kernel says
//!   `FROZEN` (it reports `FREEZING` while tasks are still on their way into
//!   the refrigerator); like runc, rewrite `FROZEN` on each round, which
//!   re-kicks tasks that were forking, and briefly thaw now and then so a
//!   task stuck behind a frozen one can make progress.
//!
//! `FROZEN` from the v1 freezer is not taken on trust: kernels 6.1 to 6.15
//! without the fix of upstream commit 14a67b42cb6f set `FROZEN` while a task
//! that was entering the refrigerator can still walk out of it (the cgroup
//! counts it frozen, then `freezing()` turns false for it because the cgroup
//! is `FROZEN`), and rewriting `FROZEN` does not reach that task any more.
//! So every task is checked in `/proc` (a frozen task reports `D`, and its
//! CPU time stands still across a short settle), and the cgroup is thawed and
//! frozen again if one is not stopped. cgroup2 needs no such check.
//!
//! Thawing undoes both, v1 first. [`state`] combines them: `Thawed` when no
//! freezer is asked to freeze, `Frozen` when every freezer that is asked to
//! has frozen, `Freezing` otherwise; so a container is only reported paused
//! while its processes are stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

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

/// How long the v1 check waits between its two looks at each task. Long
/// enough for an escaped task to run (it was on its way back to user space),
/// short enough not to matter for `pause`.
const SETTLE: Duration = Duration::from_millis(1);

/// How many times a v1 freeze that let a task through is redone before
/// giving up. A real escape is a rare race, so a task that is still running
/// after this many fresh freezes is not frozen by this freezer at all.
const REFREEZES: u32 = 5;

/// The freezer files of one cgroup.
#[derive(Debug, Clone, Copy)]
struct Dirs<'a> {
    v1: Option<&'a Path>,
    /// The cgroup2 directory, when it has `cgroup.freeze`.
    v2: Option<&'a Path>,
}

fn dirs(cg: &Cgroup) -> Result<Dirs<'_>, CgroupError> {
    let v1 = cg.v1_dir("freezer");
    // On a unified host cgroup.freeze is the only freezer, so a missing file
    // must surface as an error; on a hybrid host without it (kernels before
    // 5.2, or the directory is gone) the v1 freezer does the work alone.
    let v2 = cg.unified_dir().filter(|d| cg.mode() == crate::Mode::Unified || fsutil::exists(&d.join("cgroup.freeze")));
    if v1.is_none() && v2.is_none() {
        return Err(CgroupError::NoController { op: "freeze", controller: "freezer" });
    }
    Ok(Dirs { v1, v2 })
}

pub(crate) fn freeze(cg: &Cgroup) -> Result<(), CgroupError> {
    let d = dirs(cg)?;
    let result = freeze_dirs(d, Instant::now() + TIMEOUT);
    if result.is_err() {
        // Do not leave the cgroup half-frozen.
        let _ = thaw_dirs(d);
    }
    result
}

fn freeze_dirs(d: Dirs<'_>, deadline: Instant) -> Result<(), CgroupError> {
    if let Some(v2) = d.v2 {
        fsutil::write(v2, "cgroup.freeze", "1", None)?;
        if let Some(v1) = d.v1 {
            // Tasks already held by the v1 freezer must reach the cgroup2
            // trap: the trap is armed, so they go straight into it from the
            // refrigerator without running user code.
            if state_v1(v1)? != FreezerState::Thawed {
                fsutil::write(v1, "freezer.state", "THAWED", None)?;
            }
        }
        wait_v2(v2, true, deadline)?;
    }
    if let Some(v1) = d.v1 {
        freeze_v1(v1, deadline)?;
    }
    Ok(())
}

pub(crate) fn thaw(cg: &Cgroup) -> Result<(), CgroupError> {
    thaw_dirs(dirs(cg)?)
}

/// Thaws both freezers; both are attempted, the first error is returned.
fn thaw_dirs(d: Dirs<'_>) -> Result<(), CgroupError> {
    let v1 = d.v1.map(|v1| fsutil::write(v1, "freezer.state", "THAWED", None));
    let v2 = d.v2.map(|v2| {
        fsutil::write(v2, "cgroup.freeze", "0", None)?;
        wait_v2(v2, false, Instant::now() + TIMEOUT)
    });
    v1.unwrap_or(Ok(())).and(v2.unwrap_or(Ok(())))
}

pub(crate) fn state(cg: &Cgroup) -> Result<FreezerState, CgroupError> {
    let d = dirs(cg)?;
    let v1 = d.v1.map(state_v1).transpose()?;
    let v2 = d.v2.map(state_v2).transpose()?;
    let asked: Vec<FreezerState> = [v1, v2].into_iter().flatten().filter(|s| *s != FreezerState::Thawed).collect();
    Ok(if asked.is_empty() {
        FreezerState::Thawed
    } else if asked.iter().all(|s| *s == FreezerState::Frozen) {
        FreezerState::Frozen
    } else {
        FreezerState::Freezing
    })
}

fn state_v1(dir: &Path) -> Result<FreezerState, CgroupError> {
    parse_v1(dir, &fsutil::read(dir, "freezer.state")?)
}

fn state_v2(dir: &Path) -> Result<FreezerState, CgroupError> {
    let want = fsutil::read_u64(dir, "cgroup.freeze")?;
    let events = fsutil::read(dir, "cgroup.events")?;
    Ok(match (want, fsutil::value_of(&events, "frozen")) {
        (0, _) => FreezerState::Thawed,
        (_, Some(1)) => FreezerState::Frozen,
        _ => FreezerState::Freezing,
    })
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

/// Freezes the v1 freezer at `dir` and checks that it holds, redoing the
/// freeze (thaw, freeze) when a task got through.
fn freeze_v1(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    let mut escaped = String::new();
    for _ in 0..=REFREEZES {
        wait_v1(dir, deadline)?;
        match running_task(dir)? {
            None => return Ok(()),
            Some(task) => {
                log::debug!("{}: FROZEN, but {task}; freezing again", dir.display());
                escaped = task;
            }
        }
        if Instant::now() > deadline {
            break;
        }
        // Writing FROZEN again would not reach a task that walked out of the
        // refrigerator on the affected kernels: only a thaw resets that.
        fsutil::write(dir, "freezer.state", "THAWED", None)?;
    }
    Err(CgroupError::FreezeEscaped { path: dir.to_path_buf(), task: escaped })
}

/// Writes `FROZEN` until the kernel reports it (runc's loop).
fn wait_v1(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
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
        last = state_v1(dir)?;
        if last == FreezerState::Frozen {
            return Ok(());
        }
        if Instant::now() > deadline {
            break;
        }
    }
    Err(CgroupError::FreezeTimeout { path: dir.to_path_buf(), secs: TIMEOUT.as_secs(), state: format!("{last:?}") })
}

/// A task of a `FROZEN` v1 cgroup as `/proc` shows it.
#[derive(Debug, PartialEq, Eq)]
struct TaskLook {
    /// The state letter of `/proc/TID/stat`.
    state: char,
    /// Nanoseconds on a CPU (`/proc/TID/schedstat`), if the kernel keeps it.
    runtime: Option<u64>,
}

/// Describes a task of the v1 cgroup at `dir` (or a sub-cgroup) that is not
/// stopped although the freezer says `FROZEN`, if there is one. A frozen
/// task reports `D` (the kernel shows `TASK_FROZEN` as uninterruptible) and
/// does not run; it is looked at twice, [`SETTLE`] apart, so one that
/// escaped and went back to sleep elsewhere is still seen by its CPU time.
fn running_task(dir: &Path) -> Result<Option<String>, CgroupError> {
    let mut tids = Vec::new();
    collect_tasks(dir, &mut tids)?;
    let mut first = Vec::with_capacity(tids.len());
    for &tid in &tids {
        match look(tid) {
            None => continue,
            Some(l) if l.state != 'D' && !dying(tid) => return Ok(Some(format!("task {tid} is in state {}", l.state))),
            Some(l) => first.push((tid, l)),
        }
    }
    std::thread::sleep(SETTLE);
    if state_v1(dir)? != FreezerState::Frozen {
        return Ok(Some("freezer.state left FROZEN".into()));
    }
    for (tid, before) in first {
        let Some(now) = look(tid) else { continue };
        if now != before && !dying(tid) {
            return Ok(Some(format!(
                "task {tid} kept running (state {} -> {}, cpu time {:?} -> {:?} ns)",
                before.state, now.state, before.runtime, now.runtime
            )));
        }
    }
    Ok(None)
}

/// The task's state and CPU time; `None` if it is gone.
fn look(tid: i32) -> Option<TaskLook> {
    let stat = fsutil::read_raw(&proc_path(tid, "stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_ascii_whitespace().next()?.chars().next()?;
    let runtime = fsutil::read_raw(&proc_path(tid, "schedstat"))
        .ok()
        .and_then(|s| s.split_ascii_whitespace().next().and_then(|v| v.parse().ok()));
    Some(TaskLook { state, runtime })
}

/// Whether the task is exiting or has SIGKILL pending: the freezer leaves
/// such tasks alone (they are about to be gone), and so does the check.
fn dying(tid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = fsutil::read_raw(&proc_path(tid, "stat")) else { return true };
    let flags = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_ascii_whitespace().nth(6)?.parse::<u64>().ok());
    if flags.is_some_and(|f| f & PF_EXITING != 0) {
        return true;
    }
    let Ok(status) = fsutil::read_raw(&proc_path(tid, "status")) else { return true };
    let sigkill = 1u64 << (libc::SIGKILL - 1);
    status.lines().any(|l| {
        let (k, v) = l.split_once(':').unwrap_or_default();
        matches!(k, "SigPnd" | "ShdPnd") && u64::from_str_radix(v.trim(), 16).is_ok_and(|m| m & sigkill != 0)
    })
}

fn proc_path(tid: i32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{tid}/{file}"))
}

/// Appends the thread ids of `dir` (its `tasks` file) and of every
/// sub-cgroup, which the freezer also freezes.
fn collect_tasks(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let content = fsutil::read(dir, "tasks")?;
    out.extend(content.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    let rd = std::fs::read_dir(dir).map_err(|source| CgroupError::Read { path: dir.to_path_buf(), source })?;
    for entry in rd.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            match collect_tasks(&entry.path(), out) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                r => r?,
            }
        }
    }
    Ok(())
}

/// Waits until `cgroup.events` reports `frozen` = `frozen`.
fn wait_v2(dir: &Path, frozen: bool, deadline: Instant) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.events");
    let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| CgroupError::Read { path: path.clone(), source: e.into() })?;
    let want = u64::from(frozen);
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
