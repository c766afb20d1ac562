//! Raw Linux system calls for berth.
//!
//! Every `unsafe` block of the project lives in this crate, each one a thin wrapper with a
//! `// SAFETY:` comment, so the rest of the code is safe Rust. Where `rustix` already offers a
//! safe wrapper, callers use rustix directly; this crate covers the gaps: `clone3` with
//! `CLONE_PIDFD`/`CLONE_INTO_CGROUP`, `fork`, `execve`, the mount calls with raw flags
//! (`mount`, `mount_setattr`, `open_tree`, `move_mount`), `close_range`, signal masks and
//! dispositions, `signalfd`, `personality`, network interface flags (`SIOCSIFFLAGS`), the
//! scheduling policy, I/O priority and NUMA memory policy of a process, and seccomp filter
//! installation and notification.
//!
//! The process-creation wrappers ([`clone3`], [`fork`]) are only sound to call from a
//! single-threaded process, or when the child restricts itself to async-signal-safe calls;
//! berth calls them only from single-threaded processes (see docs/architecture.md).

#![cfg(target_os = "linux")]

pub mod bpf;
pub mod fd;
pub mod keyring;
pub mod mem;
pub mod mount;
pub mod net;
pub mod process;
pub mod sched;
pub mod seccomp;
pub mod signal;

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub use rustix;

fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_int(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Wraps a file descriptor number returned by the kernel into an [`OwnedFd`].
fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: `fd` was just returned by a successful syscall that creates a new descriptor,
    // so it is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `close_range(first, last, CLOSE_RANGE_CLOEXEC)`: marks every descriptor in the range
/// close-on-exec, which is how the init drops any descriptor it should not pass on without
/// closing ones it still needs before `execve`. Only the CLOEXEC form is offered safely:
/// flagging descriptors cannot invalidate anyone's ownership of them.
pub fn cloexec_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: close_range takes plain integers; with CLOSE_RANGE_CLOEXEC it closes nothing,
    // it only sets a flag, so no descriptor owned elsewhere is invalidated.
    cvt(unsafe { libc::syscall(libc::SYS_close_range, first, last, CLOSE_RANGE_CLOEXEC) }).map(drop)
}

/// Closes every descriptor from `first` up.
///
/// # Safety
/// No descriptor in the range may be owned by anything that will use or close it later
/// (an `OwnedFd`, a `File`, a library's internal descriptor). berth calls it once, first
/// thing in `main`, to drop whatever its caller leaked before any descriptor is opened.
pub unsafe fn close_from(first: u32) -> io::Result<()> {
    // SAFETY: plain integers; the caller guarantees nobody owns the descriptors closed.
    cvt(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) }).map(drop)
}

/// `CLOSE_RANGE_CLOEXEC` (linux/close_range.h).
pub const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

/// Clears `FD_CLOEXEC` on `fd` so it survives `execve` (for `--preserve-fds` and LISTEN_FDS).
pub fn clear_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(io::Error::from)
}

/// Clears `FD_CLOEXEC` on descriptor number `fd`, which the process inherited but does not
/// own as a Rust object (`--preserve-fds`). Fails with `EBADF` if it is not open.
pub fn keep_on_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(F_SETFD) on an integer touches no memory; an invalid number yields EBADF.
    cvt_int(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }).map(drop)
}

/// `personality(persona)`.
pub fn personality(persona: libc::c_ulong) -> io::Result<()> {
    // SAFETY: personality takes an integer and changes only the calling process's
    // execution domain.
    cvt_int(unsafe { libc::personality(persona) }).map(drop)
}

/// Converts a `&CStr` for syscalls (helper used by the modules).
fn ptr(s: &CStr) -> *const libc::c_char {
    s.as_ptr()
}

/// Raw number of a borrowed descriptor (helper used by the modules).
fn raw(fd: BorrowedFd<'_>) -> libc::c_int {
    fd.as_raw_fd()
}

/// `NS_GET_NSTYPE` (linux/nsfs.h): `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// The kind of namespace `fd` refers to, as its `CLONE_NEW*` bit (`ioctl(NS_GET_NSTYPE)`).
/// Fails with `ENOTTY` (or `EINVAL`) when `fd` is not a namespace file.
pub fn namespace_type(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: NS_GET_NSTYPE takes no argument and touches no memory of ours; on any other
    // kind of file the kernel refuses it with an error.
    let ret = cvt_int(unsafe { libc::ioctl(raw(fd), NS_GET_NSTYPE as _) })?;
    u64::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}
