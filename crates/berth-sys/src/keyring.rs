//! Session keyrings (`keyctl(2)`), for the container's own session keyring as runc makes it.
//!
//! Keyrings are not namespaced: without a session keyring of its own, a container process
//! shares the one of whoever started the runtime (a shell's, containerd's) and can use the
//! keys in it that its credentials allow. runc therefore joins a new, per-container session
//! keyring `_ses.<id>` in the init, and exec processes join that same keyring by name.

use std::ffi::CStr;
use std::io;

use crate::cvt;

const KEYCTL_DESCRIBE: libc::c_int = 6;
const KEYCTL_SETPERM: libc::c_int = 5;
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)`: joins the keyring called `name` that the
/// caller may search, or creates it; returns its serial.
pub fn join_session_keyring(name: &CStr) -> io::Result<i32> {
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call; the remaining
    // arguments are unused by this operation.
    let r = cvt(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr(), 0, 0, 0) })?;
    i32::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::ERANGE))
}

/// The permission mask of key `serial` (`KEYCTL_DESCRIBE`: `type;uid;gid;perm;description`).
pub fn permissions(serial: i32) -> io::Result<u32> {
    let mut buf = [0u8; 512];
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which lives until the
    // call returns.
    let n = cvt(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_DESCRIBE, serial, buf.as_mut_ptr(), buf.len(), 0) })?;
    let n = usize::try_from(n).unwrap_or(0).min(buf.len());
    let text = String::from_utf8_lossy(&buf[..n]);
    let perm = text.split(';').nth(3).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    u32::from_str_radix(perm.trim_end_matches('\0'), 16).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `keyctl(KEYCTL_SETPERM, serial, perm)`.
pub fn set_permissions(serial: i32, perm: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, serial, perm, 0, 0) }).map(drop)
}
