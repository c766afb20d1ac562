//! Process creation and replacement: `clone3`, `fork`, `execve`, `_exit`.
//!
//! `clone3` and `fork` duplicate only the calling thread. A child of a multi-threaded parent
//! may find a lock (malloc's, stdio's) held forever by a thread that no longer exists, so
//! after such a fork only async-signal-safe calls are allowed. berth's rule is simpler: these
//! wrappers refuse to run unless the process is single-threaded, which makes them safe to
//! call and lets the child run ordinary Rust. Multi-threaded users (the embedding library,
//! the shim) spawn the single-threaded `berth` binary instead (see docs/architecture.md).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use crate::{cvt, owned, ptr, raw};

/// `CLONE_PIDFD`.
pub const CLONE_PIDFD: u64 = 0x0000_1000;
/// `CLONE_PARENT`.
pub const CLONE_PARENT: u64 = 0x0000_8000;
/// `CLONE_CLEAR_SIGHAND`: reset handled signals to `SIG_DFL` in the child.
pub const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
/// `CLONE_INTO_CGROUP`: start the child in the cgroup v2 directory given by `cgroup`.
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Result of a successful [`clone3`] or [`fork`].
#[derive(Debug)]
pub enum Forked {
    /// Running in the new child.
    Child(Child),
    /// Running in the parent; the child's pid (in the caller's pid namespace) and, with
    /// `CLONE_PIDFD`, a pidfd for it.
    Parent {
        /// Child pid.
        pid: i32,
        /// pidfd, if requested.
        pidfd: Option<OwnedFd>,
    },
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What only the child of [`clone3`]/[`fork`] may do. Only those two calls create it.
#[derive(Debug)]
pub struct Child {
    _private: (),
}

impl Child {
    /// Closes every descriptor except 0, 1, 2 and those in `keep`.
    ///
    /// A fork child's descriptor table is a private copy. The objects it inherited from the
    /// parent (files, sockets, `OwnedFd`s) are copies too, and the descriptors they own are
    /// closed here; that is sound because berth's children never use those copies again and
    /// leave only through [`exit_immediately`] or `execve` (no destructor runs). A child that
    /// keeps using an inherited object must list its descriptor in `keep`.
    ///
    /// This is what keeps a container's init from holding its creator's descriptors (a
    /// containerd shim's connections, other containers' fifos) and from running out of
    /// descriptors under the spec's RLIMIT_NOFILE because of them.
    pub fn close_all_except(&self, keep: &[RawFd]) -> io::Result<()> {
        let mut keep: Vec<u32> = keep.iter().filter_map(|&fd| u32::try_from(fd).ok()).filter(|&fd| fd > 2).collect();
        keep.sort_unstable();
        keep.dedup();
        let mut next = 3u32;
        for fd in keep.into_iter().chain(std::iter::once(u32::MAX)) {
            if fd > next {
                let last = if fd == u32::MAX { u32::MAX } else { fd - 1 };
                // SAFETY: plain integers. The descriptors in [next, last] are not in `keep`,
                // so by this function's contract nothing in this process uses them again.
                crate::cvt(unsafe { libc::syscall(libc::SYS_close_range, next, last, 0u32) })?;
            }
            next = fd.saturating_add(1);
        }
        Ok(())
    }
}

/// Returns true if the calling process has exactly one thread.
///
/// glibc's `__libc_single_threaded` becomes false when a second thread is first created and
/// never turns back, which errs on the safe side.
pub fn is_single_threaded() -> bool {
    #[cfg(target_env = "gnu")]
    {
        extern "C" {
            static __libc_single_threaded: libc::c_char;
        }
        // SAFETY: glibc (>= 2.32) exports this byte for exactly this purpose; reading it is a
        // plain load of an initialised static that only glibc writes.
        unsafe { std::ptr::read_volatile(&raw const __libc_single_threaded) != 0 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().nth(17)).map(|n| n == "1"))
            .unwrap_or(false)
    }
}

fn refuse_if_threaded() -> io::Result<()> {
    if is_single_threaded() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "refusing to fork from a multi-threaded process (berth forks only from single-threaded processes)",
        ))
    }
}

/// `clone3` without `CLONE_VM`: like `fork`, the child continues from this call on a copy of
/// the caller's memory. `flags` may include namespace flags, [`CLONE_PIDFD`] (a pidfd is
/// returned to the parent), [`CLONE_INTO_CGROUP`] (with `cgroup` = an open cgroup v2
/// directory), [`CLONE_PARENT`] and [`CLONE_CLEAR_SIGHAND`]. The child's exit signal is
/// `SIGCHLD` (with `CLONE_PARENT` the kernel uses the caller's own exit signal instead).
///
/// Fails with `Unsupported` when the process is multi-threaded.
pub fn clone3(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    refuse_if_threaded()?;
    let mut pidfd: libc::c_int = -1;
    // With CLONE_PARENT the kernel requires exit_signal 0 and uses the caller's own.
    let exit_signal = if flags & CLONE_PARENT != 0 { 0 } else { libc::SIGCHLD as u64 };
    let mut args = CloneArgs { flags, exit_signal, ..Default::default() };
    if flags & CLONE_PIDFD != 0 {
        args.pidfd = (&raw mut pidfd) as u64;
    }
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = raw(fd) as u64;
    }
    // SAFETY: `args` is a properly laid out `struct clone_args` whose size we pass; the only
    // pointer in it (`pidfd`) points to a live local. Without CLONE_VM the child gets its own
    // copy of the address space and continues here like after fork(2); the process is
    // single-threaded (checked above), so no lock can be held by a thread missing in the child.
    let ret = cvt(unsafe { libc::syscall(libc::SYS_clone3, &raw mut args, std::mem::size_of::<CloneArgs>()) })?;
    if ret == 0 {
        return Ok(Forked::Child(Child { _private: () }));
    }
    let pid = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let pidfd = if flags & CLONE_PIDFD != 0 { Some(owned(pidfd as libc::c_long)?) } else { None };
    Ok(Forked::Parent { pid, pidfd })
}

/// `fork()`. Fails with `Unsupported` when the process is multi-threaded.
pub fn fork() -> io::Result<Forked> {
    refuse_if_threaded()?;
    // SAFETY: the process is single-threaded (checked above), so the child inherits no lock
    // held by another thread and may run arbitrary code.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child(Child { _private: () })),
        pid => Ok(Forked::Parent { pid, pidfd: None }),
    }
}

/// A NUL-terminated array of C strings for `execve`, built before the point of no return so
/// that the exec itself allocates nothing.
#[derive(Debug, Clone)]
pub struct CStringArray {
    owned: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into the CStrings owned by the same value; they are never
// shared mutably, so moving the array to another thread is as safe as moving the CStrings.
unsafe impl Send for CStringArray {}
// SAFETY: see `Send`; the array is read-only after construction.
unsafe impl Sync for CStringArray {}

impl CStringArray {
    /// Builds the array; fails if a string contains a NUL byte.
    pub fn new<S: AsRef<str>>(items: &[S]) -> Result<Self, std::ffi::NulError> {
        let owned = items.iter().map(|s| CString::new(s.as_ref())).collect::<Result<Vec<_>, _>>()?;
        let mut ptrs: Vec<*const libc::c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Ok(CStringArray { owned, ptrs })
    }

    /// Builds the array from raw bytes (arguments need not be UTF-8); fails on a NUL byte.
    pub fn from_bytes<B: AsRef<[u8]>>(items: &[B]) -> Result<Self, std::ffi::NulError> {
        let owned = items.iter().map(|s| CString::new(s.as_ref())).collect::<Result<Vec<_>, _>>()?;
        let mut ptrs: Vec<*const libc::c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Ok(CStringArray { owned, ptrs })
    }

    /// The strings.
    pub fn items(&self) -> &[CString] {
        &self.owned
    }
}

/// `execve(path, argv, envp)`. Returns only on failure.
pub fn execve(path: &CStr, argv: &CStringArray, envp: &CStringArray) -> io::Error {
    // SAFETY: all three are valid NUL-terminated data: `path` is a CStr and both arrays end with
    // a null pointer and point into CStrings they own, alive for the call.
    unsafe { libc::execve(ptr(path), argv.ptrs.as_ptr(), envp.ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// `execveat(dirfd, "", argv, envp, AT_EMPTY_PATH)`: executes an already opened file.
pub fn fexecve(fd: BorrowedFd<'_>, argv: &CStringArray, envp: &CStringArray) -> io::Error {
    let empty = c"";
    // SAFETY: as for `execve`; `fd` is borrowed, hence open.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            raw(fd),
            ptr(empty),
            argv.ptrs.as_ptr(),
            envp.ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}

/// `_exit(code)`: leaves without running destructors or atexit handlers, which is what a
/// forked child must do so it never flushes or frees the parent's copies of anything.
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Namespace flags accepted by [`unshare_namespaces`].
pub const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64
    | CLONE_NEWTIME;

/// `CLONE_NEWTIME` (not in every libc version).
pub const CLONE_NEWTIME: u64 = 0x80;

/// `unshare(flags)` restricted to namespace flags. (rustix marks unshare unsafe because
/// `CLONE_FILES`/`CLONE_FS` can invalidate descriptors other threads hold; namespace flags
/// cannot, and `CLONE_NEWUSER` itself fails in multi-threaded processes.)
pub fn unshare_namespaces(flags: u64) -> io::Result<()> {
    if flags & !NAMESPACE_FLAGS != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let flags = libc::c_int::try_from(flags).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: only namespace flags are passed (checked above); they change which namespaces
    // the caller belongs to and touch no memory of ours.
    crate::cvt_int(unsafe { libc::unshare(flags) }).map(drop)
}
