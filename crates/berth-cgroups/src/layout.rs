//! Host layout detection and `linux.cgroupsPath` resolution.
//!
//! Detection is on the container start path, so it uses the standard layout
//! first: `statfs(/sys/fs/cgroup)` tells unified (cgroup2) from a tmpfs of v1
//! mounts, `statfs(/sys/fs/cgroup/unified)` tells hybrid from legacy, and one
//! `readdir` of `/sys/fs/cgroup` (plus a `statfs` per entry, so a stray
//! directory on the tmpfs is never mistaken for a hierarchy) lists the v1
//! hierarchies. `/proc/self/mountinfo` is parsed only when that layout is not
//! there. `/proc/self/cgroup` is read only for relative cgroups paths.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CgroupError;
use crate::fsutil;

/// The standard mount point of the cgroup tree.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Where hybrid hosts mount cgroup2.
pub const HYBRID_UNIFIED: &str = "/sys/fs/cgroup/unified";

const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// Kernel v1 controllers; a hierarchy directory whose name is made only of
/// other words is a named hierarchy (`name=systemd`).
const KNOWN_V1: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// Which cgroup hierarchies the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only cgroup2, mounted at `/sys/fs/cgroup`.
    Unified,
    /// v1 controllers plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`).
    Hybrid,
    /// Only v1 hierarchies.
    Legacy,
}

/// A mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Mount {
    /// Controllers bound to it; named hierarchies appear as `name=<name>`.
    pub controllers: Vec<String>,
    pub mount: PathBuf,
}

/// The host's hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub mode: Mode,
    pub v1: Vec<V1Mount>,
    pub v2: Option<PathBuf>,
}

fn fs_type(path: &str) -> Option<u64> {
    rustix::fs::statfs(path).ok().map(|s| s.f_type as u64)
}

/// Detects the host's cgroup mode with at most two `statfs` calls on the
/// standard layout.
pub fn detect() -> Result<Mode, CgroupError> {
    match fs_type(CGROUP_ROOT) {
        Some(CGROUP2_SUPER_MAGIC) => Ok(Mode::Unified),
        Some(TMPFS_MAGIC) => match fs_type(HYBRID_UNIFIED) {
            Some(CGROUP2_SUPER_MAGIC) => Ok(Mode::Hybrid),
            _ => Ok(Mode::Legacy),
        },
        _ => Ok(from_mountinfo()?.mode),
    }
}

/// Finds every hierarchy of the host.
pub(crate) fn discover() -> Result<Layout, CgroupError> {
    match fs_type(CGROUP_ROOT) {
        Some(CGROUP2_SUPER_MAGIC) => {
            Ok(Layout { mode: Mode::Unified, v1: Vec::new(), v2: Some(PathBuf::from(CGROUP_ROOT)) })
        }
        Some(TMPFS_MAGIC) => match scan_tmpfs(Path::new(CGROUP_ROOT))? {
            Some(layout) => Ok(layout),
            None => from_mountinfo(),
        },
        _ => from_mountinfo(),
    }
}

/// Lists the hierarchies mounted directly under a tmpfs at `root`. `None` if
/// there are none (a non-standard layout).
fn scan_tmpfs(root: &Path) -> Result<Option<Layout>, CgroupError> {
    let rd = std::fs::read_dir(root).map_err(|source| CgroupError::Read { path: root.to_path_buf(), source })?;
    let mut v1 = Vec::new();
    let mut v2 = None;
    for entry in rd {
        let entry = entry.map_err(|source| CgroupError::Read { path: root.to_path_buf(), source })?;
        // `cpu -> cpu,cpuacct` style aliases are symlinks: the real directory
        // is listed too.
        match entry.file_type() {
            Ok(t) if t.is_dir() => {}
            _ => continue,
        }
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        match rustix::fs::statfs(&path).map(|s| s.f_type as u64) {
            Ok(CGROUP_SUPER_MAGIC) => v1.push(V1Mount { controllers: controllers_from_dir_name(&name), mount: path }),
            Ok(CGROUP2_SUPER_MAGIC) if v2.is_none() => v2 = Some(path),
            _ => {}
        }
    }
    if v1.is_empty() && v2.is_none() {
        return Ok(None);
    }
    v1.sort_by(|a, b| a.mount.cmp(&b.mount));
    let mode = if v1.is_empty() {
        Mode::Unified
    } else if v2.is_some() {
        Mode::Hybrid
    } else {
        Mode::Legacy
    };
    Ok(Some(Layout { mode, v1, v2 }))
}

fn controllers_from_dir_name(name: &str) -> Vec<String> {
    let parts: Vec<&str> = name.split(',').collect();
    if parts.iter().all(|p| KNOWN_V1.contains(p)) {
        parts.into_iter().map(str::to_owned).collect()
    } else {
        vec![format!("name={name}")]
    }
}

/// Fallback for non-standard layouts: reads `/proc/self/mountinfo`.
fn from_mountinfo() -> Result<Layout, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let content = fsutil::read_raw(path).map_err(|source| CgroupError::Read { path: path.to_path_buf(), source })?;
    let layout = parse_mountinfo(&content);
    if layout.v1.is_empty() && layout.v2.is_none() {
        return Err(CgroupError::Detect(
            "no cgroup or cgroup2 filesystem is mounted (checked /sys/fs/cgroup and /proc/self/mountinfo)".into(),
        ));
    }
    Ok(layout)
}

pub(crate) fn parse_mountinfo(content: &str) -> Layout {
    let mut v1: Vec<V1Mount> = Vec::new();
    let mut v2 = None;
    for line in content.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(mountpoint), Some(fstype)) = (pre.get(4), post.first()) else {
            continue;
        };
        let mountpoint = PathBuf::from(unescape_octal(mountpoint));
        match *fstype {
            "cgroup2" if v2.is_none() => v2 = Some(mountpoint),
            "cgroup" => {
                let opts = post.get(2).copied().unwrap_or("");
                let controllers: Vec<String> = opts
                    .split(',')
                    .filter(|o| KNOWN_V1.contains(o) || o.starts_with("name="))
                    .map(str::to_owned)
                    .collect();
                if controllers.is_empty() || v1.iter().any(|h| h.controllers == controllers) {
                    continue;
                }
                v1.push(V1Mount { controllers, mount: mountpoint });
            }
            _ => {}
        }
    }
    let mode = match (v1.is_empty(), v2.is_some()) {
        (true, _) => Mode::Unified,
        (false, true) => Mode::Hybrid,
        (false, false) => Mode::Legacy,
    };
    Layout { mode, v1, v2 }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let (Some(b'\\'), Some(d)) = (b.get(i), b.get(i + 1..i + 4)) {
            if d.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        if let Some(c) = b.get(i) {
            out.push(*c);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnCgroup {
    /// Empty for the cgroup2 line (`0::/path`).
    pub controllers: Vec<String>,
    pub path: String,
}

pub(crate) fn parse_proc_cgroup(content: &str) -> Vec<OwnCgroup> {
    content
        .lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some(OwnCgroup {
                controllers: ctrls.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

pub(crate) fn read_own_cgroups() -> Result<Vec<OwnCgroup>, CgroupError> {
    let path = Path::new("/proc/self/cgroup");
    let content = fsutil::read_raw(path).map_err(|source| CgroupError::Read { path: path.to_path_buf(), source })?;
    Ok(parse_proc_cgroup(&content))
}

/// A validated `linux.cgroupsPath`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SpecPath {
    /// Relative to each hierarchy's root (components joined with `/`).
    Absolute(String),
    /// Relative to the caller's own cgroup in each hierarchy.
    Relative(String),
}

/// Validates `cgroups_path` (or builds the default from `id`).
pub(crate) fn parse_spec_path(cgroups_path: Option<&str>, id: &str) -> Result<SpecPath, CgroupError> {
    let raw = match cgroups_path {
        Some(p) if !p.is_empty() => p,
        _ => {
            if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
                return Err(CgroupError::BadPath {
                    path: String::new(),
                    reason: format!("no cgroupsPath given and container id {id:?} cannot be used as a cgroup name"),
                });
            }
            return Ok(SpecPath::Absolute(format!("berth/{id}")));
        }
    };
    let bad = |reason: &str| CgroupError::BadPath { path: raw.to_owned(), reason: reason.to_owned() };
    if raw.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if !raw.starts_with('/') && raw.split(':').count() == 3 {
        return Err(bad(
            "this is the systemd cgroup driver's \"slice:prefix:name\" form; berth only implements the cgroupfs driver, give a path instead",
        ));
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(bad("must not contain \"..\" components")),
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    if raw.starts_with('/') {
        if joined.is_empty() {
            return Err(bad("must not be the root cgroup"));
        }
        Ok(SpecPath::Absolute(joined))
    } else {
        if joined.is_empty() {
            return Err(bad("a relative path must name a child cgroup"));
        }
        Ok(SpecPath::Relative(joined))
    }
}

/// Joins `mount` + the caller's own cgroup (for relative paths) + `rel`.
pub(crate) fn hierarchy_dir(mount: &Path, own: Option<&str>, rel: &str) -> PathBuf {
    let mut p = mount.to_path_buf();
    if let Some(own) = own {
        let own = own.trim_start_matches('/');
        if !own.is_empty() {
            p.push(own);
        }
    }
    p.push(rel);
    p
}

/// Finds the caller's path in the v1 hierarchy holding `controllers`.
pub(crate) fn own_v1_path<'a>(own: &'a [OwnCgroup], controllers: &[String]) -> Option<&'a str> {
    own.iter()
        .find(|o| !o.controllers.is_empty() && controllers.iter().any(|c| o.controllers.iter().any(|oc| oc == c)))
        .map(|o| o.path.as_str())
}

/// Finds the caller's path in the cgroup2 hierarchy.
pub(crate) fn own_v2_path(own: &[OwnCgroup]) -> Option<&str> {
    own.iter().find(|o| o.controllers.is_empty()).map(|o| o.path.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_matches_this_hosts_layout() {
        // The real host: compare the statfs answer with an independent parse
        // of mountinfo, so the test holds on any layout.
        let mi = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
        assert_eq!(detect().unwrap(), mi.mode);
        let found = discover().unwrap();
        assert_eq!(found.mode, mi.mode);
        assert_eq!(found.v2, mi.v2);
        let mut a: Vec<_> = found.v1.iter().map(|h| (h.controllers.clone(), h.mount.clone())).collect();
        let mut b: Vec<_> = mi.v1.iter().map(|h| (h.controllers.clone(), h.mount.clone())).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn parses_hybrid_mountinfo_with_comounted_and_named_hierarchies() {
        let mi = "\
31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:31 / /mnt/again rw - cgroup cgroup rw,cpu,cpuacct
36 31 0:32 / /sys/fs/cgroup/my\\040dir rw - cgroup cgroup rw,memory
";
        let l = parse_mountinfo(mi);
        assert_eq!(l.mode, Mode::Hybrid);
        assert_eq!(l.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(l.v1.len(), 3);
        assert_eq!(l.v1[0].controllers, vec!["name=systemd"]);
        assert_eq!(l.v1[1].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(l.v1[2].mount, PathBuf::from("/sys/fs/cgroup/my dir"));
        let unified = parse_mountinfo("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(unified.mode, Mode::Unified);
        let legacy = parse_mountinfo("1 0 0:1 / /c/pids rw - cgroup cgroup rw,pids\n");
        assert_eq!(legacy.mode, Mode::Legacy);
    }

    #[test]
    fn scans_a_tmpfs_style_directory_and_skips_non_mounts() {
        // A temp dir holds no cgroup mounts, so nothing may be reported.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        assert_eq!(scan_tmpfs(dir.path()).unwrap(), None);
    }

    #[test]
    fn controller_names_from_directory_names() {
        assert_eq!(controllers_from_dir_name("cpu,cpuacct"), vec!["cpu", "cpuacct"]);
        assert_eq!(controllers_from_dir_name("systemd"), vec!["name=systemd"]);
        assert_eq!(controllers_from_dir_name("pids"), vec!["pids"]);
        assert_eq!(controllers_from_dir_name("elogind"), vec!["name=elogind"]);
    }

    #[test]
    fn spec_paths() {
        use SpecPath::*;
        assert_eq!(parse_spec_path(None, "c1").unwrap(), Absolute("berth/c1".into()));
        assert_eq!(parse_spec_path(Some(""), "c1").unwrap(), Absolute("berth/c1".into()));
        assert_eq!(parse_spec_path(Some("/a//b/./c/"), "x").unwrap(), Absolute("a/b/c".into()));
        assert_eq!(parse_spec_path(Some("a/b"), "x").unwrap(), Relative("a/b".into()));
        for bad in ["/a/../b", "..", "/", "system.slice:docker:abc", "a\0b"] {
            let e = parse_spec_path(Some(bad), "x").unwrap_err().to_string();
            assert!(e.starts_with("linux.cgroupsPath"), "{bad}: {e}");
        }
        let e = parse_spec_path(Some("machine.slice:libpod:abc"), "x").unwrap_err().to_string();
        assert!(e.contains("systemd cgroup driver"), "{e}");
        assert!(parse_spec_path(None, "a/b").is_err());
        assert!(parse_spec_path(None, "..").is_err());
    }

    #[test]
    fn proc_self_cgroup_lookup() {
        let own = parse_proc_cgroup("9:name=systemd:/s\n4:memory:/m/x\n2:cpu,cpuacct:/c\n0::/u\n");
        assert_eq!(own_v2_path(&own), Some("/u"));
        assert_eq!(own_v1_path(&own, &["memory".into()]), Some("/m/x"));
        assert_eq!(own_v1_path(&own, &["cpuacct".into()]), Some("/c"));
        assert_eq!(own_v1_path(&own, &["name=systemd".into()]), Some("/s"));
        assert_eq!(own_v1_path(&own, &["pids".into()]), None);
        assert_eq!(
            hierarchy_dir(Path::new("/sys/fs/cgroup/memory"), Some("/m/x"), "a/b"),
            PathBuf::from("/sys/fs/cgroup/memory/m/x/a/b")
        );
        assert_eq!(
            hierarchy_dir(Path::new("/sys/fs/cgroup/memory"), Some("/"), "a"),
            PathBuf::from("/sys/fs/cgroup/memory/a")
        );
    }
}
