//! Raw seccomp(2) wrappers: filter installation and the user-notification ioctls.
//!
//! These are deliberately minimal. [`set_mode_filter`] runs in the container init between
//! `clone` and `execve`, where the process may share pages with a multi-threaded parent, so it
//! must not allocate or take locks: it builds the `sock_fprog` on the stack and reports errors
//! as raw errno values wrapped in [`std::io::Error`] (an `Os` repr, no heap).
//!
//! The notification wrappers are used by seccomp agents (and by berth's tests, which play the
//! agent) on the listener fd returned when a filter is installed with
//! `SECCOMP_FILTER_FLAG_NEW_LISTENER`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One classic-BPF instruction, as the kernel reads it.
pub type SockFilter = libc::sock_filter;
/// A notification read from the listener fd (`struct seccomp_notif`).
pub type SeccompNotif = libc::seccomp_notif;
/// The agent's answer to a notification (`struct seccomp_notif_resp`).
pub type SeccompNotifResp = libc::seccomp_notif_resp;

/// Largest program the kernel accepts (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// `SECCOMP_FILTER_FLAG_TSYNC`.
pub const FILTER_FLAG_TSYNC: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC as u32;
/// `SECCOMP_FILTER_FLAG_LOG`.
pub const FILTER_FLAG_LOG: u32 = libc::SECCOMP_FILTER_FLAG_LOG as u32;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`.
pub const FILTER_FLAG_SPEC_ALLOW: u32 = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
pub const FILTER_FLAG_NEW_LISTENER: u32 = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`.
pub const FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u32;
/// `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: let the notified syscall run as if it were allowed.
pub const USER_NOTIF_FLAG_CONTINUE: u32 = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;

/// Installs `program` as a seccomp filter on the calling thread:
/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &sock_fprog)`.
///
/// Returns the listener fd when `flags` contains `SECCOMP_FILTER_FLAG_NEW_LISTENER` (the kernel
/// creates it close-on-exec). The caller must already have `PR_SET_NO_NEW_PRIVS` set or hold
/// `CAP_SYS_ADMIN` in its user namespace, otherwise the kernel answers `EACCES`.
///
/// Does not allocate.
pub fn set_mode_filter(flags: u32, program: &[SockFilter]) -> io::Result<Option<OwnedFd>> {
    if program.is_empty() || program.len() > BPF_MAXINSNS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let len = u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer; `*mut` is what the C struct declares.
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `len` initialised `sock_filter`s borrowed for the duration of the
    // call; the kernel copies the program and does not keep the pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & FILTER_FLAG_NEW_LISTENER == 0 {
        return Ok(None);
    }
    let raw = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: with NEW_LISTENER the kernel returns a freshly allocated fd that nobody else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// Blocks until the next notification arrives on `listener` (`SECCOMP_IOCTL_NOTIF_RECV`).
///
/// Fails with `ENOENT` once no process is attached to the filter any more.
pub fn notif_recv(listener: BorrowedFd<'_>) -> io::Result<SeccompNotif> {
    // The kernel refuses (EINVAL) a receive buffer that is not zeroed.
    let mut notif = SeccompNotif {
        id: 0,
        pid: 0,
        flags: 0,
        data: libc::seccomp_data { nr: 0, arch: 0, instruction_pointer: 0, args: [0; 6] },
    };
    // SAFETY: the ioctl number encodes `size_of::<seccomp_notif>()` and the kernel writes at
    // most that many bytes into `notif`, which lives for the whole call.
    let ret =
        unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut notif as *mut SeccompNotif) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(notif)
}

/// Answers a notification (`SECCOMP_IOCTL_NOTIF_SEND`).
///
/// `resp.error` is a negative errno (or 0 with `resp.val` as the return value);
/// `resp.flags` may be [`USER_NOTIF_FLAG_CONTINUE`].
pub fn notif_send(listener: BorrowedFd<'_>, resp: &SeccompNotifResp) -> io::Result<()> {
    // SAFETY: the kernel reads exactly `size_of::<seccomp_notif_resp>()` bytes from `resp`,
    // which is a valid reference for the whole call.
    let ret =
        unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, resp as *const SeccompNotifResp) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Checks that notification `id` is still pending (`SECCOMP_IOCTL_NOTIF_ID_VALID`), which an
/// agent must do after reading the target's memory and before trusting what it read.
pub fn notif_id_valid(listener: BorrowedFd<'_>, id: u64) -> io::Result<()> {
    // SAFETY: the kernel reads one u64 from `&id`, valid for the whole call.
    let ret = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &id as *const u64) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
