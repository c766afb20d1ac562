//! Mount system calls with raw flags.
//!
//! rustix splits `mount(2)` into typed helpers that cannot express every flag combination an
//! OCI `mounts[].options` list can produce (e.g. `MS_BIND|MS_REC|MS_RDONLY|MS_NOSUID` with a
//! propagation change), so berth keeps the raw form here. The new mount API calls are used to
//! mount by file descriptor, which is what makes target resolution race-free
//! (the CVE-2021-30465 class).

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::{cvt, cvt_int, owned, ptr, raw};

/// `mount(2)`.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let opt = |s: Option<&CStr>| s.map_or(std::ptr::null(), ptr);
    // SAFETY: every pointer is either null or a valid NUL-terminated string that outlives the
    // call; the kernel copies them before returning.
    cvt_int(unsafe { libc::mount(opt(source), ptr(target), opt(fstype), flags, opt(data).cast()) }).map(drop)
}

/// `umount2(2)`.
pub fn umount2(target: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `target` is a valid NUL-terminated string for the duration of the call.
    cvt_int(unsafe { libc::umount2(ptr(target), flags) }).map(drop)
}

/// `struct mount_attr` (linux/mount.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttr {
    /// `MOUNT_ATTR_*` flags to set.
    pub attr_set: u64,
    /// `MOUNT_ATTR_*` flags to clear.
    pub attr_clr: u64,
    /// `MS_SHARED`/`MS_SLAVE`/`MS_PRIVATE`/`MS_UNBINDABLE` or 0.
    pub propagation: u64,
    /// A user namespace fd for `MOUNT_ATTR_IDMAP`.
    pub userns_fd: u64,
}

/// `MOUNT_ATTR_RDONLY`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `MOUNT_ATTR_NOSUID`.
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
/// `MOUNT_ATTR_NODEV`.
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
/// `MOUNT_ATTR_NOEXEC`.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
/// `MOUNT_ATTR__ATIME` mask.
pub const MOUNT_ATTR_ATIME_MASK: u64 = 0x0000_0070;
/// `MOUNT_ATTR_RELATIME` (value 0 within the atime mask).
pub const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
/// `MOUNT_ATTR_NOATIME`.
pub const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
/// `MOUNT_ATTR_STRICTATIME`.
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
/// `MOUNT_ATTR_NODIRATIME`.
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
/// `MOUNT_ATTR_IDMAP`.
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `MOUNT_ATTR_NOSYMFOLLOW`.
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// `AT_RECURSIVE`.
pub const AT_RECURSIVE: u32 = 0x8000;
/// `OPEN_TREE_CLONE`.
pub const OPEN_TREE_CLONE: u32 = 1;
/// `OPEN_TREE_CLOEXEC`.
pub const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
/// `MOVE_MOUNT_F_EMPTY_PATH`.
pub const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x0000_0004;
/// `MOVE_MOUNT_T_EMPTY_PATH`.
pub const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x0000_0040;

/// `mount_setattr(dirfd, path, flags, attr)`.
pub fn mount_setattr(dirfd: BorrowedFd<'_>, path: &CStr, flags: u32, attr: &MountAttr) -> io::Result<()> {
    // SAFETY: `path` is a valid C string and `attr` points to a properly laid out
    // `struct mount_attr` whose size we pass; the kernel only reads them.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            raw(dirfd),
            ptr(path),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// `open_tree(dirfd, path, flags)`: with `OPEN_TREE_CLONE` returns a detached copy of the
/// mount at `path` that can be altered with [`mount_setattr`] and attached with [`move_mount`].
pub fn open_tree(dirfd: BorrowedFd<'_>, path: &CStr, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid C string; on success the kernel returns a new descriptor.
    owned(cvt(unsafe { libc::syscall(libc::SYS_open_tree, raw(dirfd), ptr(path), flags | OPEN_TREE_CLOEXEC) })?)
}

/// `move_mount(from_dirfd, from_path, to_dirfd, to_path, flags)`.
pub fn move_mount(
    from_dirfd: BorrowedFd<'_>,
    from_path: &CStr,
    to_dirfd: BorrowedFd<'_>,
    to_path: &CStr,
    flags: u32,
) -> io::Result<()> {
    // SAFETY: both paths are valid C strings for the duration of the call and the descriptors
    // are borrowed, hence open.
    cvt(unsafe {
        libc::syscall(libc::SYS_move_mount, raw(from_dirfd), ptr(from_path), raw(to_dirfd), ptr(to_path), flags)
    })
    .map(drop)
}
