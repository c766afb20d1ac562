//! Keeping the runtime binary out of a container's reach (the CVE-2019-5736 class).
//!
//! The container init and exec processes are clones of the running `berth`, so until they
//! exec the user's program their `/proc/PID/exe` is the berth binary, and an entrypoint of
//! `#!/proc/self/exe` makes the container run that very file. If the file can be reopened
//! for writing from inside the container, the next `berth` on the host runs the attacker's
//! code. berth therefore refuses to let a container-facing process run from a writable
//! binary:
//!
//! * fast path: the binary already cannot be written — it sits on a read-only mount, carries
//!   the immutable attribute (`scripts/install` sets it), or is a sealed memfd. No cost
//!   beyond one `open` and two queries.
//! * otherwise: berth re-executes itself once, from a detached read-only bind mount of its
//!   own binary (`open_tree` + `mount_setattr(MOUNT_ATTR_RDONLY)` + `execveat`), the way crun
//!   does since 2024. Nothing is mounted in any namespace; a write through
//!   `/proc/PID/exe` then fails with EROFS. This costs one exec (see docs/security.md for
//!   the figure) and only happens for `create`, `run` and `exec`.
//!
//! `PR_SET_DUMPABLE=0` is set as well, so a container process without CAP_SYS_PTRACE cannot
//! even open `/proc/PID/exe` of a berth process while it runs.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use berth_sys::mount::{self as m, MountAttr};
use rustix::fs::{Mode, OFlags};

use crate::error::{Context, Error, Result};

/// Set in the environment of the re-executed binary, so that it never loops. Not part of the
/// caller's environment: hooks, which inherit the runtime's, do not get it.
pub(crate) const REEXEC_ENV: &str = "BERTH_SEALED_REEXEC";

/// Why the running binary is (or is not) safe from writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// On a read-only mount (including the detached mount of a previous re-exec).
    ReadOnlyMount,
    /// The file has the immutable attribute.
    Immutable,
    /// A memfd with write seals.
    SealedMemfd,
    /// The calling user cannot write it (rootless: the container, mapped to this user at
    /// most, cannot either).
    NotWritable,
    /// Writable: must be sealed before a container can see the process.
    None,
}

/// Inspects `/proc/self/exe`.
pub fn protection() -> Result<Protection> {
    let exe = rustix::fs::open("/proc/self/exe", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| "opening /proc/self/exe".to_string())?;
    let vfs = rustix::fs::fstatvfs(&exe).ctx(|| "statvfs /proc/self/exe".to_string())?;
    if vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Ok(Protection::ReadOnlyMount);
    }
    if let Ok(seals) = rustix::fs::fcntl_get_seals(&exe) {
        if seals.contains(rustix::fs::SealFlags::WRITE) {
            return Ok(Protection::SealedMemfd);
        }
    }
    if let Ok(flags) = rustix::fs::ioctl_getflags(&exe) {
        if flags.contains(rustix::fs::IFlags::IMMUTABLE) {
            return Ok(Protection::Immutable);
        }
    }
    if !rustix::process::geteuid().is_root()
        && rustix::fs::accessat(
            rustix::fs::CWD,
            "/proc/self/exe",
            rustix::fs::Access::WRITE_OK,
            rustix::fs::AtFlags::EACCESS,
        )
        .is_err()
    {
        return Ok(Protection::NotWritable);
    }
    Ok(Protection::None)
}

/// Makes the process non-dumpable and, if the binary is writable, re-executes it from a
/// detached read-only mount. Returns only if the binary is already protected; on re-exec
/// it does not return. Call before anything else in commands that create container-facing
/// processes.
pub fn ensure_sealed() -> Result<()> {
    if rustix::process::geteuid().is_root() {
        // Rootless callers stay dumpable: their container's processes have no capability in
        // the caller's user namespace, so they cannot ptrace or open /proc/PID/exe of it
        // anyway, and a non-dumpable child's /proc/PID/{uid_map,setgroups} would belong to
        // root and could not be written.
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
            .ctx(|| "PR_SET_DUMPABLE".to_string())?;
    }
    if protection()? != Protection::None {
        return Ok(());
    }
    if std::env::var_os(REEXEC_ENV).is_some() {
        // We already re-executed and the binary is still writable: never loop.
        return Err(Error::Invalid(
            "cannot protect the berth binary from writes (re-exec from a read-only mount did not take effect)".into(),
        ));
    }
    let exe = rustix::fs::open("/proc/self/exe", OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| "opening /proc/self/exe".to_string())?;
    let tree = m::open_tree(exe.as_fd(), c"", m::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as u32)
        .ctx(|| "cloning a mount of the berth binary".to_string())?;
    let attr =
        MountAttr { attr_set: m::MOUNT_ATTR_RDONLY | m::MOUNT_ATTR_NOSUID | m::MOUNT_ATTR_NODEV, ..Default::default() };
    m::mount_setattr(tree.as_fd(), c"", libc::AT_EMPTY_PATH as u32, &attr)
        .ctx(|| "making the berth binary's mount read-only".to_string())?;
    let args: Vec<Vec<u8>> = std::env::args_os().map(|a| a.as_bytes().to_vec()).collect();
    let mut env: Vec<Vec<u8>> = std::env::vars_os()
        .map(|(k, v)| {
            let mut e = k.as_bytes().to_vec();
            e.push(b'=');
            e.extend_from_slice(v.as_bytes());
            e
        })
        .collect();
    env.push(format!("{REEXEC_ENV}=1").into_bytes());
    let argv =
        berth_sys::process::CStringArray::from_bytes(&args).map_err(|_| Error::Invalid("argv has NUL".into()))?;
    let envp =
        berth_sys::process::CStringArray::from_bytes(&env).map_err(|_| Error::Invalid("environ has NUL".into()))?;
    let err = berth_sys::process::fexecve(tree.as_fd(), &argv, &envp);
    Err(Error::io("re-executing berth from a read-only mount", err))
}

/// The effective uid of the calling process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The effective gid of the calling process.
pub fn egid() -> u32 {
    rustix::process::getegid().as_raw()
}
