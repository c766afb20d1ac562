//! Resolving paths inside the container root without escaping it.
//!
//! Every path the runtime touches inside the rootfs (mount destinations, device nodes, masked
//! and read-only paths, the cwd) is resolved with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` from a descriptor of the root: symlinks are followed as if the
//! rootfs were `/`, so `rootfs/etc -> /` lands on the rootfs, never on the host. The
//! resulting `O_PATH` descriptor is then used as the operation's target (by `/proc/self/fd/N`
//! or by `move_mount`), so a later rename of a path component cannot redirect it
//! (CVE-2021-30465).

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
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
    /// existing component inside the root, and returns an `O_PATH` descriptor of it. A
    /// dangling symlink on the way is followed inside the root and what it names is created
    /// (see [`Root::create_in_root`]).
    pub fn mkdir_all(&self, path: &str, mode: u32) -> Result<OwnedFd> {
        match self.open_in(path, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.create_in_root(path, Leaf::Dir(mode)),
            Err(e) => Err(Error::io(format!("resolving {path} in the container root"), e)),
        }
    }

    /// Makes sure `path` exists (creating it as an empty regular file, and its parents as
    /// directories), for bind-mounting a file onto it, and returns an `O_PATH` descriptor of
    /// it. A dangling symlink at `path` or on the way (`/etc/resolv.conf -> /run/...`) is
    /// followed inside the root and its target created.
    pub fn create_file(&self, path: &str) -> Result<OwnedFd> {
        if let Ok(fd) = self.resolve(path) {
            return Ok(fd);
        }
        if Path::new(rel(path)).file_name().is_none() {
            return Err(Error::Invalid(format!("{path}: not a file path")));
        }
        self.create_in_root(path, Leaf::File)
    }

    /// Walks `path` one component at a time, creating what is missing.
    ///
    /// Every existing component is reached by resolving the path walked so far from the root
    /// with `RESOLVE_IN_ROOT`, so it is inside the root whatever the image's links say and
    /// whatever is renamed concurrently. A missing component is created with a single name
    /// (`mkdirat`/`openat(O_CREAT|O_NOFOLLOW)`) under the directory descriptor just resolved,
    /// so it lands in that directory and nowhere else (CVE-2021-30465). A component that is
    /// a symlink whose target does not exist (yet) is read with `readlinkat` from that same
    /// descriptor and replaced by its target's components, an absolute target starting again
    /// from the root and `..` being resolved by the kernel, again inside the root: so the
    /// link's target is what gets created, as the kernel would create it were the rootfs `/`.
    fn create_in_root(&self, path: &str, leaf: Leaf) -> Result<OwnedFd> {
        let top = || {
            rfs::openat(&self.fd, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .ctx(|| "opening the container root".to_string())
        };
        let mut cur = top()?;
        // The path that resolves (in the root) to `cur`. It keeps `..` as given so that the
        // kernel resolves it against the directory actually reached, not lexically.
        let mut sofar = PathBuf::from("/");
        let mut todo: VecDeque<OsString> = walkable(Path::new(rel(path))).collect();
        let mut links = 0u32;
        while let Some(name) = todo.pop_front() {
            sofar.push(&name);
            let shown = sofar.display().to_string();
            if name == ".." {
                cur = self
                    .open_in(&shown, OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(|e| Error::io(format!("resolving {shown} in the container root"), e))?;
                continue;
            }
            let file = todo.is_empty() && matches!(leaf, Leaf::File);
            let flags = if file { OFlags::PATH } else { OFlags::PATH | OFlags::DIRECTORY };
            match self.open_in(&shown, flags) {
                Ok(fd) => {
                    cur = fd;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(Error::io(format!("resolving {shown} in the container root"), e)),
            }
            match rfs::readlinkat(&cur, name.as_os_str(), Vec::new()) {
                Ok(target) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Error::io(
                            format!("resolving {path} in the container root: more than {MAX_SYMLINKS} symbolic links"),
                            io::Error::from_raw_os_error(libc::ELOOP),
                        ));
                    }
                    sofar.pop();
                    let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                    if target.is_absolute() {
                        cur = top()?;
                        sofar = PathBuf::from("/");
                    }
                    for c in walkable(target).collect::<Vec<_>>().into_iter().rev() {
                        todo.push_front(c);
                    }
                    continue;
                }
                // Missing, or (created meanwhile) not a link: create it below.
                Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::INVAL) => {}
                Err(e) => return Err(Error::io(format!("reading {shown} in the container root"), e)),
            }
            cur = if file { create_file_at(&cur, &name, &shown)? } else { mkdir_at(&cur, &name, &shown, leaf)? };
        }
        Ok(cur)
    }
}

/// What [`Root::create_in_root`] makes of the last component.
#[derive(Debug, Clone, Copy)]
enum Leaf {
    /// A directory, as every parent, with this mode.
    Dir(u32),
    /// An empty regular file (parents are directories with mode 0755).
    File,
}

/// Linux's limit on symlinks followed in one path resolution (MAXSYMLINKS).
const MAX_SYMLINKS: u32 = 40;

/// The components of `p` that a walk acts on: names and `..` (the root and `.` are no-ops).
fn walkable(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// Creates directory `name` in `dir` (a directory resolved inside the root) and opens it
/// without following a link, so a swap for a link after the mkdir fails instead of leading
/// elsewhere.
fn mkdir_at(dir: &OwnedFd, name: &OsStr, shown: &str, leaf: Leaf) -> Result<OwnedFd> {
    let mode = match leaf {
        Leaf::Dir(m) => m,
        Leaf::File => 0o755,
    };
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(Error::io(format!("creating {shown} in the container root"), e)),
    }
    rfs::openat(dir, name, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| format!("opening {shown} in the container root"))
}

/// Creates the empty file `name` in `dir` (if missing) and opens it without following a link.
fn create_file_at(dir: &OwnedFd, name: &OsStr, shown: &str) -> Result<OwnedFd> {
    // The walk holds O_PATH descriptors; creating needs a real directory descriptor.
    let dirfd = rfs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| format!("opening the parent of {shown}"))?;
    match rfs::openat(
        &dirfd,
        name,
        OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    ) {
        Ok(_) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(Error::io(format!("creating {shown} in the container root"), e)),
    }
    rfs::openat(&dirfd, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| format!("opening {shown} in the container root"))
}

/// The lexically cleaned form of a container path (`/dev/`, `//dev/.`, `/x/../dev` are all
/// `/dev`), for comparing destinations as runc does (`CleanPath`). Never used to resolve.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
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
    fn dangling_links_are_followed_and_created_inside_the_root() {
        let d = tmpdir("dangling");
        let root = d.join("root");
        std::fs::create_dir_all(root.join("mnt")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let outside = format!("berth-paths-outside-{}", std::process::id());
        symlink("/data/newdir", root.join("mnt/abs")).unwrap();
        symlink(format!("../../../../../{outside}"), root.join("mnt/dots")).unwrap();
        symlink("/mnt/chain2", root.join("mnt/chain")).unwrap();
        symlink("../data/x/y", root.join("mnt/chain2")).unwrap();
        symlink("../run/sub/resolv.conf", root.join("mnt/file")).unwrap();
        symlink("loop2/a", root.join("mnt/loop1")).unwrap();
        symlink("loop1/b", root.join("mnt/loop2")).unwrap();
        let r = Root::open(&root).unwrap();
        r.mkdir_all("/mnt/abs", 0o755).unwrap();
        assert!(root.join("data/newdir").is_dir());
        r.mkdir_all("/mnt/dots/below", 0o755).unwrap();
        assert!(root.join(&outside).join("below").is_dir());
        assert!(!Path::new("/").join(&outside).exists() && !d.join(&outside).exists());
        r.mkdir_all("/mnt/chain/z", 0o755).unwrap();
        assert!(root.join("data/x/y/z").is_dir());
        // The descriptor returned is the created directory.
        let fd = r.mkdir_all("/mnt/abs", 0o755).unwrap();
        let (a, b) = (rfs::fstat(&fd).unwrap(), rfs::stat(root.join("data/newdir")).unwrap());
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
        r.create_file("/mnt/file").unwrap();
        assert!(root.join("run/sub/resolv.conf").is_file());
        // A cycle is refused, not followed forever.
        let e = r.mkdir_all("/mnt/loop1/c", 0o755).unwrap_err().to_string();
        assert!(e.contains("symbolic links"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn clean_paths() {
        for p in ["/dev", "/dev/", "//dev/.", "/x/../dev", "dev", "/../dev"] {
            assert_eq!(clean(p), "/dev", "{p}");
        }
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("/dev/pts/"), "/dev/pts");
    }

    #[test]
    fn rel_paths() {
        assert_eq!(rel("/"), ".");
        assert_eq!(rel("/proc"), "proc");
        assert_eq!(rel("dev/pts"), "dev/pts");
    }
}
