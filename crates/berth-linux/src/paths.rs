//! Resolving paths inside the container root without escaping it.
//!
//! Every path the runtime touches inside the rootfs (mount destinations, device nodes, masked
//! and read-only paths, the cwd) is resolved with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` from a descriptor of the root: symlinks are followed as if the
//! rootfs were `/`, so `rootfs/etc -> /` lands on the rootfs, never on the host. The
//! resulting `O_PATH` descriptor is then used as the operation's target (by `/proc/self/fd/N`
//! or by `move_mount`), so a later rename of a path component cannot redirect it
//! (CVE-2021-30465).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};

use crate::error::{Context, Error, Result};

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// A directory opened as the root for in-root resolution.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens `path` (a host path) as a root.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rfs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .ctx(|| format!("opening root {}", path.display()))?;
        Ok(Root { fd, path: path.to_path_buf() })
    }

    /// The host path this root was opened from (for messages only: never resolve through it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `path` (a container path, absolute or not) inside the root with `flags`.
    pub fn open_in(&self, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
        rfs::openat2(&self.fd, rel(path), flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE).map_err(io::Error::from)
    }

    /// Opens `path` as an `O_PATH` descriptor inside the root.
    pub fn resolve(&self, path: &str) -> io::Result<OwnedFd> {
        self.open_in(path, OFlags::PATH)
    }

    /// Like [`Root::resolve`] but refuses any symlink in the path: for targets that must be
    /// real directories (`/proc`, `/sys`), whose redirection was CVE-2019-19921/CVE-2023-27561.
    pub fn resolve_no_symlinks(&self, path: &str) -> io::Result<OwnedFd> {
        rfs::openat2(
            &self.fd,
            rel(path),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(io::Error::from)
    }

    /// Creates `path` and every missing parent as directories (mode `mode`), resolving each
    /// existing component inside the root, and returns an `O_PATH` descriptor of it.
    pub fn mkdir_all(&self, path: &str, mode: u32) -> Result<OwnedFd> {
        match self.open_in(path, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(Error::io(format!("resolving {path} in the container root"), e)),
        }
        let mut cur = rfs::openat(&self.fd, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .ctx(|| "opening the container root".to_string())?;
        let mut sofar = PathBuf::from("/");
        for comp in Path::new(rel(path)).components() {
            let name = match comp {
                Component::Normal(n) => n,
                // RESOLVE_IN_ROOT already clamps `..` at the root; a `..` here after a
                // created component would be meaningless, so resolve from the root again.
                Component::ParentDir => {
                    sofar.pop();
                    cur = self.resolve(&sofar.to_string_lossy()).ctx(|| format!("resolving {}", sofar.display()))?;
                    continue;
                }
                _ => continue,
            };
            sofar.push(name);
            let shown = sofar.display().to_string();
            match self.open_in(&shown, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(fd) => {
                    cur = fd;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(Error::io(format!("resolving {shown} in the container root"), e)),
            }
            // `cur` is a directory we resolved inside the root, and `name` a single component,
            // so the new directory is inside the root whatever happens concurrently.
            match rfs::mkdirat(&cur, name, Mode::from_raw_mode(mode)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(Error::io(format!("creating {shown} in the container root"), e)),
            }
            cur = rfs::openat(
                &cur,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("opening {shown} in the container root"))?;
        }
        Ok(cur)
    }

    /// Makes sure `path` exists as a regular file (creating parents as directories), for
    /// bind-mounting a file onto it, and returns an `O_PATH` descriptor of it.
    pub fn create_file(&self, path: &str) -> Result<OwnedFd> {
        if let Ok(fd) = self.resolve(path) {
            return Ok(fd);
        }
        let p = Path::new(rel(path));
        let (parent, name) = match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => (parent, name),
            _ => return Err(Error::Invalid(format!("{path}: not a file path"))),
        };
        let dir = self.mkdir_all(&parent.to_string_lossy(), 0o755)?;
        // The parent is now an O_PATH fd; creating needs a real directory fd.
        let dirfd = rfs::openat(&dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .ctx(|| format!("opening the parent of {path}"))?;
        let f = rfs::openat(
            &dirfd,
            name,
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        );
        match f {
            Ok(_) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(Error::io(format!("creating {path} in the container root"), e)),
        }
        rfs::openat(&dirfd, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .ctx(|| format!("opening {path} in the container root"))
    }
}

/// Strips leading slashes so a container path is relative to the root descriptor.
pub fn rel(path: &str) -> &str {
    let r = path.trim_start_matches('/');
    if r.is_empty() {
        "."
    } else {
        r
    }
}

/// `/proc/self/fd/N` for a descriptor: the magic link through which mount(2) and friends act
/// on exactly the object the descriptor refers to.
pub fn proc_fd(fd: BorrowedFd<'_>) -> CString {
    use std::os::fd::AsRawFd;
    // A formatted integer never contains NUL.
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// Converts a path to a C string, with a message naming `what` on an interior NUL.
pub fn cstr(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Invalid(format!("{what}: contains a NUL byte")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-paths-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let d = tmpdir("escape");
        let root = d.join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        symlink("/", root.join("up")).unwrap();
        symlink("../../../../etc", root.join("dots")).unwrap();
        let r = Root::open(&root).unwrap();
        // `up/etc/x` must be created under the root, not in the host's /etc.
        r.mkdir_all("/up/etc/berth-test-dir", 0o755).unwrap();
        assert!(root.join("etc/berth-test-dir").is_dir());
        assert!(!Path::new("/etc/berth-test-dir").exists());
        r.mkdir_all("/dots/x", 0o755).unwrap();
        assert!(root.join("etc/x").is_dir());
        r.create_file("/up/newfile").unwrap();
        assert!(root.join("newfile").is_file());
        // Magic links are refused outright.
        symlink("/proc/self/root", root.join("magic")).unwrap();
        assert!(r.resolve("/magic/etc").is_err());
        // resolve_no_symlinks refuses any symlink.
        assert!(r.resolve_no_symlinks("/up").is_err());
        assert!(r.resolve_no_symlinks("/real").is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rel_paths() {
        assert_eq!(rel("/"), ".");
        assert_eq!(rel("/proc"), "proc");
        assert_eq!(rel("dev/pts"), "dev/pts");
    }
}
