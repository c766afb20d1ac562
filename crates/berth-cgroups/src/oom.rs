//! OOM notification.
//!
//! v1: an eventfd registered for `memory.oom_control` through
//! `cgroup.event_control`; the kernel bumps it on every OOM in the cgroup,
//! and once more when the cgroup is removed (we tell the two apart by
//! checking whether the directory still exists).
//!
//! v2: inotify on `memory.events`, which kernfs marks modified whenever a
//! counter changes; the number reported is the growth of `oom_kill`.
//!
//! Both fds are non-blocking and `O_CLOEXEC`: poll [`OomWatcher`] for
//! readability, then call [`OomWatcher::read_events`].

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::event::EventfdFlags;
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::CgroupError;
use crate::fsutil;

#[derive(Debug)]
enum Kind {
    V1 {
        eventfd: OwnedFd,
        // Kept open for as long as the registration should live.
        _oom_control: OwnedFd,
    },
    V2 {
        inotify: OwnedFd,
        last_oom_kill: u64,
    },
}

/// A pollable source of OOM events for one cgroup.
#[derive(Debug)]
pub struct OomWatcher {
    dir: PathBuf,
    kind: Kind,
}

fn sys<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> CgroupError + 'a {
    move |e| CgroupError::Sys { op, path: path.to_path_buf(), source: e.into() }
}

impl OomWatcher {
    pub(crate) fn v1(dir: &Path) -> Result<Self, CgroupError> {
        let ctl_path = dir.join("memory.oom_control");
        let oom_control = rustix::fs::open(&ctl_path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| CgroupError::Read { path: ctl_path.clone(), source: e.into() })?;
        let eventfd =
            rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(sys("eventfd", dir))?;
        use std::os::fd::AsRawFd;
        let registration = format!("{} {}", eventfd.as_raw_fd(), oom_control.as_raw_fd());
        fsutil::write(dir, "cgroup.event_control", &registration, None)?;
        Ok(OomWatcher { dir: dir.to_path_buf(), kind: Kind::V1 { eventfd, _oom_control: oom_control } })
    }

    pub(crate) fn v2(dir: &Path) -> Result<Self, CgroupError> {
        let inotify = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).map_err(sys("inotify_init", dir))?;
        let events = dir.join("memory.events");
        // Watch before reading the baseline so no change can slip between.
        inotify::add_watch(&inotify, &events, WatchFlags::MODIFY | WatchFlags::DELETE_SELF)
            .map_err(sys("inotify_add_watch", &events))?;
        let last_oom_kill = fsutil::value_of(&fsutil::read(dir, "memory.events")?, "oom_kill").unwrap_or(0);
        Ok(OomWatcher { dir: dir.to_path_buf(), kind: Kind::V2 { inotify, last_oom_kill } })
    }

    /// The cgroup directory being watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Consumes pending notifications and returns how many OOM events
    /// happened since the last call (v1: OOM situations; v2: OOM kills).
    /// Never blocks: returns `Ok(0)` when nothing is pending. Returns
    /// [`CgroupError::Removed`] once the cgroup is gone, after which the
    /// watcher is useless.
    pub fn read_events(&mut self) -> Result<u64, CgroupError> {
        match &mut self.kind {
            Kind::V1 { eventfd, .. } => {
                let mut buf = [0u8; 8];
                let count = match rustix::io::read(&*eventfd, &mut buf[..]) {
                    Ok(8) => u64::from_ne_bytes(buf),
                    Ok(n) => {
                        return Err(CgroupError::Sys {
                            op: "reading the OOM eventfd",
                            path: self.dir.clone(),
                            source: std::io::Error::other(format!("short read of {n} bytes")),
                        })
                    }
                    Err(Errno::AGAIN) => 0,
                    Err(e) => return Err(sys("reading the OOM eventfd", &self.dir)(e)),
                };
                // The kernel also signals the eventfd when the cgroup is
                // removed; that is not an OOM.
                if !fsutil::exists(&self.dir.join("cgroup.event_control")) {
                    return Err(CgroupError::Removed { path: self.dir.clone() });
                }
                Ok(count)
            }
            Kind::V2 { inotify, last_oom_kill } => {
                let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1024];
                let mut reader = inotify::Reader::new(&*inotify, &mut buf);
                let mut gone = false;
                loop {
                    match reader.next() {
                        Ok(ev) => {
                            if ev.events().intersects(ReadFlags::DELETE_SELF | ReadFlags::IGNORED) {
                                gone = true;
                            }
                        }
                        Err(Errno::AGAIN) => break,
                        Err(Errno::INTR) => continue,
                        Err(e) => return Err(sys("reading inotify events", &self.dir)(e)),
                    }
                }
                let content = match fsutil::read(&self.dir, "memory.events") {
                    Ok(c) => c,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) || gone => {
                        return Err(CgroupError::Removed { path: self.dir.clone() })
                    }
                    Err(e) => return Err(e),
                };
                let now = fsutil::value_of(&content, "oom_kill").unwrap_or(0);
                let delta = now.saturating_sub(*last_oom_kill);
                *last_oom_kill = now;
                Ok(delta)
            }
        }
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::V1 { eventfd, .. } => eventfd.as_fd(),
            Kind::V2 { inotify, .. } => inotify.as_fd(),
        }
    }
}
