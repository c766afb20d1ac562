//! The LSM fields: `process.apparmorProfile`, `process.selinuxLabel` and `linux.mountLabel`.
//!
//! Applied where the host has the LSM, and handled exactly as runc 1.1 does where it does
//! not (docs/spec.md, "LSM labels"):
//!
//! - `selinuxLabel` without SELinux is refused before anything exists, with runc's words;
//! - `apparmorProfile` is written as runc writes it (`exec <profile>` to
//!   `/proc/self/attr/apparmor/exec`, else `/proc/self/attr/exec`) without asking whether
//!   AppArmor is enabled, so on a host without it the kernel refuses the write and the
//!   container (or exec) fails at init, as under runc;
//! - `mountLabel` is passed as `context="…"` to the same mounts as runc's (every mount but
//!   bind, proc, sysfs and mqueue, and the tmpfs that masks a directory), which a kernel
//!   without SELinux refuses.
//!
//! The attribute files are reached only through the procfs mounted at the container's
//! `/proc`, resolved without symlinks, its root checked with `fstatfs`, and each file opened
//! beneath it without crossing a mount and checked again (docs/security.md): a label write
//! redirected to another file (CVE-2019-16884, CVE-2023-27561) would leave the process
//! unconfined.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};

use crate::error::{Error, Result};

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// The inode number of a procfs root directory.
const PROC_ROOT_INO: u64 = 1;

/// Whether SELinux is enabled: a selinuxfs is mounted (what go-selinux, and so runc, checks).
pub fn selinux_enabled() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| {
        info.lines().any(|l| l.split_once(" - ").is_some_and(|(_, post)| post.starts_with("selinuxfs ")))
    })
}

/// runc 1.1's check, with its words: a process label needs SELinux.
pub fn check_selinux_label(label: Option<&str>) -> Result<()> {
    match label {
        Some(l) if !l.is_empty() && !selinux_enabled() => Err(Error::Invalid(
            "process.selinuxLabel: selinux label is specified in config, but selinux is disabled or not supported"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// The procfs mounted at `proc` (normally the container's `/proc`): reached without
/// symlinks, and the root of a procfs, not a directory inside one.
pub fn open_procfs(proc: &Path) -> Result<OwnedFd> {
    let fd = rfs::openat2(
        rfs::CWD,
        proc,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| Error::io(format!("opening {}", proc.display()), e))?;
    let sfs = rfs::fstatfs(&fd).map_err(|e| Error::io(format!("statfs {}", proc.display()), e))?;
    let st = rfs::fstat(&fd).map_err(|e| Error::io(format!("stat {}", proc.display()), e))?;
    if sfs.f_type as i64 != PROC_SUPER_MAGIC || st.st_ino != PROC_ROOT_INO {
        return Err(Error::Invalid(format!("{} is not a procfs mount", proc.display())));
    }
    Ok(fd)
}

/// Writes `content` to the first of `candidates` (paths relative to the procfs root, such
/// as `self/attr/exec`) that exists. Each is opened beneath the procfs root without crossing
/// a mount or following a magic link, and checked to be on procfs before the write. Returns
/// the path written (for messages); the error names the path tried.
pub fn write_proc_attr(procfs: &OwnedFd, candidates: &[&str], content: &[u8]) -> Result<String> {
    let mut last = None;
    for rel in candidates {
        let shown = format!("/proc/{rel}");
        let fd = match rfs::openat2(
            procfs,
            *rel,
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                last = Some(Error::io(format!("open {shown}"), rustix::io::Errno::NOENT));
                continue;
            }
            Err(e) => return Err(Error::io(format!("open {shown}"), e)),
        };
        let sfs = rfs::fstatfs(&fd).map_err(|e| Error::io(format!("statfs {shown}"), e))?;
        if sfs.f_type as i64 != PROC_SUPER_MAGIC {
            return Err(Error::Invalid(format!("{shown} is not on procfs")));
        }
        let n = rustix::io::write(&fd, content).map_err(|e| Error::io(format!("write {shown}"), e))?;
        if n != content.len() {
            return Err(Error::Invalid(format!("write {shown}: short write")));
        }
        return Ok(shown);
    }
    Err(last.unwrap_or_else(|| Error::Invalid("no attribute file to write".into())))
}

/// `process.apparmorProfile`: the profile the process changes to at its execve. As runc's
/// `apparmor.ApplyProfile`: the AppArmor-specific file of Linux 5.8+, else the shared one.
pub fn apply_apparmor(profile: &str) -> Result<()> {
    let fail = |e: Error| Error::Invalid(format!("process.apparmorProfile: apparmor failed to apply profile: {e}"));
    let procfs = open_procfs(Path::new("/proc")).map_err(fail)?;
    write_proc_attr(&procfs, &["self/attr/apparmor/exec", "self/attr/exec"], format!("exec {profile}").as_bytes())
        .map(drop)
        .map_err(fail)
}

/// `process.selinuxLabel` (with SELinux enabled, checked by the plan): the label of the
/// process after its execve.
pub fn apply_selinux(label: &str) -> Result<()> {
    let fail = |e: Error| Error::Invalid(format!("process.selinuxLabel: cannot set the exec label {label:?}: {e}"));
    let procfs = open_procfs(Path::new("/proc")).map_err(fail)?;
    write_proc_attr(&procfs, &["self/attr/exec"], label.as_bytes()).map(drop).map_err(fail)
}

/// `data` with `linux.mountLabel` added as runc adds it (`context="<label>"`).
pub fn with_mount_label(data: &str, label: Option<&str>) -> String {
    match label.filter(|l| !l.is_empty()) {
        None => data.to_string(),
        Some(l) if data.is_empty() => format!("context=\"{l}\""),
        Some(l) => format!("{data},context=\"{l}\""),
    }
}

/// Whether runc 1.1 labels a mount of this type with `linux.mountLabel`.
pub fn labels_fs(fstype: &str) -> bool {
    !matches!(fstype, "proc" | "sysfs" | "mqueue" | "bind")
}

/// The hint a failed labelled mount gets.
pub fn mount_label_hint(label: Option<&str>) -> String {
    match label.filter(|l| !l.is_empty()) {
        Some(_) if !selinux_enabled() => {
            " (linux.mountLabel adds context=\"…\" to this mount, which needs SELinux, and SELinux is not enabled)"
                .into()
        }
        Some(_) => " (linux.mountLabel adds context=\"…\" to this mount)".into(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_procfs_root_must_be_a_real_procfs_root() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_procfs(dir.path()).unwrap_err().to_string();
        assert!(e.ends_with("is not a procfs mount"), "{e}");
        // A directory inside a procfs is not its root.
        let e = open_procfs(Path::new("/proc/self")).unwrap_err().to_string();
        assert!(e.contains("/proc/self"), "{e}");
        // A symlink to /proc is refused.
        let link = dir.path().join("proc");
        std::os::unix::fs::symlink("/proc", &link).unwrap();
        let e = open_procfs(&link).unwrap_err().to_string();
        assert!(e.contains("opening") && e.contains("symbolic links"), "{e}");
        open_procfs(Path::new("/proc")).expect("the host's /proc");
    }

    #[test]
    fn attribute_writes_stay_beneath_the_procfs_root() {
        let procfs = open_procfs(Path::new("/proc")).unwrap();
        // Absolute and escaping paths are refused by RESOLVE_BENEATH.
        for bad in ["/etc/hostname", "../etc/hostname", "self/root/etc/hostname"] {
            let e = write_proc_attr(&procfs, &[bad], b"x").unwrap_err().to_string();
            assert!(e.starts_with(&format!("open /proc/{bad}")), "{bad}: {e}");
        }
        // A missing candidate falls through to the next one; the last failure is reported.
        let e = write_proc_attr(&procfs, &["self/attr/nonexistent", "self/attr/nonexistent2"], b"x")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("open /proc/self/attr/nonexistent2"), "{e}");
    }

    #[test]
    fn apparmor_is_written_where_runc_writes_it() {
        let apparmor = Path::new("/sys/module/apparmor/parameters/enabled");
        if std::fs::read_to_string(apparmor).is_ok_and(|s| s.trim() == "Y") {
            eprintln!("SKIPPED: AppArmor is enabled here; a write would change this thread's profile");
            return;
        }
        // In a thread of its own: the write is per thread (it fails here anyway).
        let e = std::thread::spawn(|| apply_apparmor("berth-unit-test").unwrap_err().to_string()).join().unwrap();
        let file = if Path::new("/proc/self/attr/apparmor").exists() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        assert!(
            e.starts_with(&format!("process.apparmorProfile: apparmor failed to apply profile: write {file}: ")),
            "{e}"
        );
    }

    #[test]
    fn mount_labels_as_runc_formats_them() {
        assert_eq!(with_mount_label("mode=755", Some("a:b:c:s0:c1,c2")), "mode=755,context=\"a:b:c:s0:c1,c2\"");
        assert_eq!(with_mount_label("", Some("x")), "context=\"x\"");
        assert_eq!(with_mount_label("mode=755", None), "mode=755");
        assert_eq!(with_mount_label("mode=755", Some("")), "mode=755");
        for t in ["tmpfs", "devpts", "shm", "overlay"] {
            assert!(labels_fs(t), "{t}");
        }
        for t in ["proc", "sysfs", "mqueue", "bind"] {
            assert!(!labels_fs(t), "{t}");
        }
    }

    #[test]
    fn a_selinux_label_needs_selinux() {
        assert!(check_selinux_label(None).is_ok());
        assert!(check_selinux_label(Some("")).is_ok());
        let r = check_selinux_label(Some("system_u:system_r:container_t:s0"));
        assert_eq!(r.is_ok(), selinux_enabled(), "{r:?}");
    }
}
