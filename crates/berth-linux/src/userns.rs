//! Throw-away user namespaces carrying a given id mapping, for idmapped mounts.
//!
//! `mount_setattr(MOUNT_ATTR_IDMAP)` takes the mapping as a user namespace fd. The only way to
//! get one with an arbitrary mapping is a process living in it while the maps are written: a
//! child is cloned into a new user namespace, blocks on a pipe, the parent writes its maps
//! and opens `/proc/PID/ns/user`, then closes the pipe and reaps it. The namespace lives on
//! through the fd.

use std::os::fd::{AsFd, OwnedFd};

use berth_sys::process::{clone3, exit_immediately, Forked};
use rustix::fs::{Mode, OFlags};

use crate::error::{Context, Error, Result};

/// A user namespace fd whose uid/gid maps are `uid_map`/`gid_map` (in /proc map syntax).
pub fn mapped_userns(uid_map: &str, gid_map: &str) -> Result<OwnedFd> {
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ctx(|| "pipe".to_string())?;
    let forked = clone3(libc::CLONE_NEWUSER as u64, None).ctx(|| "creating a user namespace".to_string())?;
    let pid = match forked {
        Forked::Child(_) => {
            drop(wr);
            let mut b = [0u8; 1];
            let _ = rustix::io::read(&rd, &mut b);
            exit_immediately(0)
        }
        Forked::Parent { pid, .. } => pid,
    };
    drop(rd);
    let res = (|| -> Result<OwnedFd> {
        std::fs::write(format!("/proc/{pid}/uid_map"), uid_map).ctx(|| "writing uid_map".to_string())?;
        std::fs::write(format!("/proc/{pid}/gid_map"), gid_map).ctx(|| "writing gid_map".to_string())?;
        rustix::fs::open(format!("/proc/{pid}/ns/user"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .ctx(|| "opening the user namespace".to_string())
    })();
    drop(wr);
    let _ = rustix::process::waitpid(rustix::process::Pid::from_raw(pid), rustix::process::WaitOptions::empty());
    let fd = res?;
    // Make sure what we hold really is a user namespace (the pid could not have been reused
    // while it was our unreaped child, but be explicit).
    let st = rustix::fs::fstat(fd.as_fd()).ctx(|| "stat user namespace".to_string())?;
    if st.st_ino == 0 {
        return Err(Error::Invalid("bad user namespace".into()));
    }
    Ok(fd)
}
