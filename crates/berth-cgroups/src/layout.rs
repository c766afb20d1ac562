//! Host layout detection and `linux.cgroupsPath` resolution.
//!
//! Detection is on the container start path, so it uses the standard layout
//! first: `statfs(/sys/fs/cgroup)` tells unified (cgroup2) from a tmpfs of v1
//! mounts, `statfs(/sys/fs/cgroup/unified)` tells hybrid from legacy, and one
//! `readdir` of `/sys/fs/cgroup` (plus a `statfs` per entry, so a stray
//! directory on the tmpfs is never mistaken for a hierarchy) lists the v1
//! hierarchies. `/proc/cgroups` (one small read) tells whether a controller is
//! bound to a v1 hierarchy that is not among them, mounted elsewhere by another
//! runtime: only then, or when the standard layout is not there, is
//! `/proc/self/mountinfo` parsed. `/proc/self/cgroup` is read only for relative
//! cgroups paths.

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
            Some(mut layout) => {
                add_hierarchies_mounted_elsewhere(&mut layout);
                Ok(layout)
            }
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

/// One line of `/proc/cgroups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelController {
    pub name: String,
    pub hierarchy: u32,
    pub enabled: bool,
}

pub(crate) fn parse_proc_cgroups(text: &str) -> Vec<KernelController> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(KernelController {
                name: (*f.first()?).to_owned(),
                hierarchy: f.get(1)?.parse().ok()?,
                enabled: *f.get(3)? == "1",
            })
        })
        .collect()
}

/// Adds the v1 hierarchies another runtime mounted outside `/sys/fs/cgroup` (runc would find
/// them too, through mountinfo): only read when `/proc/cgroups` shows a controller bound to
/// a v1 hierarchy that the standard layout does not have.
fn add_hierarchies_mounted_elsewhere(layout: &mut Layout) {
    let Ok(kernel) = fsutil::read_raw(Path::new("/proc/cgroups")) else {
        return;
    };
    add_mounted_elsewhere(layout, &kernel, || fsutil::read_raw(Path::new("/proc/self/mountinfo")).ok());
}

fn add_mounted_elsewhere(layout: &mut Layout, proc_cgroups: &str, mountinfo: impl FnOnce() -> Option<String>) {
    let missing: Vec<String> = parse_proc_cgroups(proc_cgroups)
        .into_iter()
        .filter(|c| c.enabled && c.hierarchy != 0 && !layout.v1.iter().any(|h| h.controllers.contains(&c.name)))
        .map(|c| c.name)
        .collect();
    if missing.is_empty() {
        return;
    }
    let Some(content) = mountinfo() else {
        return;
    };
    for m in v1_mounts(&content) {
        // A mount of a subtree (root not `/`) cannot hold the absolute cgroupsPath.
        if m.root != "/" || !m.controllers.iter().any(|c| missing.contains(c)) {
            continue;
        }
        if !layout.v1.iter().any(|h| h.controllers == m.controllers) {
            layout.v1.push(V1Mount { controllers: m.controllers, mount: m.mount });
        }
    }
    layout.v1.sort_by(|a, b| a.mount.cmp(&b.mount));
}

/// Why v1 `controller` is in none of the hierarchies berth uses, in words for an error
/// message, from `/proc/cgroups` and mountinfo (read only on that error path). `None` when
/// the kernel binds it to cgroup2 (the caller then says what cgroup2 offers).
pub(crate) fn unreachable_reason(controller: &str) -> Option<String> {
    let text = fsutil::read_raw(Path::new("/proc/cgroups")).ok()?;
    let mountinfo = fsutil::read_raw(Path::new("/proc/self/mountinfo")).unwrap_or_default();
    reason_from(controller, &text, &mountinfo)
}

fn reason_from(controller: &str, proc_cgroups: &str, mountinfo: &str) -> Option<String> {
    let Some(k) = parse_proc_cgroups(proc_cgroups).into_iter().find(|k| k.name == controller) else {
        return Some(format!("this kernel has no {controller} controller (it is not in /proc/cgroups)"));
    };
    if !k.enabled {
        return Some(format!("the {controller} controller is disabled (cgroup_disable= on the kernel command line)"));
    }
    if k.hierarchy == 0 {
        return None;
    }
    let mounts = v1_mounts(mountinfo);
    let mounts: Vec<&MountedV1> = mounts.iter().filter(|m| m.controllers.iter().any(|c| c == controller)).collect();
    if mounts.iter().any(|m| m.root == "/") {
        // Mounted whole: in reach (the v1 layout has it), so the caller's reason stands.
        return None;
    }
    let views: Vec<String> =
        mounts.iter().map(|m| format!("{} (showing only its subtree {})", m.mount.display(), m.root)).collect();
    let hier = k.hierarchy;
    Some(if views.is_empty() {
        format!(
            "the kernel binds {controller} to cgroup v1 hierarchy {hier} (/proc/cgroups), which is not mounted in this \
             mount namespace (another runtime bound it and unmounted it, or mounted it in its own namespace); \
             mount it for berth to use it: mkdir -p {CGROUP_ROOT}/{controller} && mount -t cgroup -o {controller} cgroup {CGROUP_ROOT}/{controller}"
        )
    } else {
        format!(
            "the kernel binds {controller} to cgroup v1 hierarchy {hier} (/proc/cgroups), mounted here only as {}",
            views.join(", ")
        )
    })
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

/// A `cgroup` (v1) line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountedV1 {
    pub controllers: Vec<String>,
    pub mount: PathBuf,
    /// The directory of the hierarchy shown at `mount` (`/` for the whole hierarchy).
    pub root: String,
}

/// Every v1 hierarchy mount in mountinfo, in order.
pub(crate) fn v1_mounts(content: &str) -> Vec<MountedV1> {
    let mut out = Vec::new();
    for line in content.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(root), Some(mountpoint), Some(&"cgroup")) = (pre.get(3), pre.get(4), post.first()) else {
            continue;
        };
        let opts = post.get(2).copied().unwrap_or("");
        let controllers: Vec<String> =
            opts.split(',').filter(|o| KNOWN_V1.contains(o) || o.starts_with("name=")).map(str::to_owned).collect();
        if !controllers.is_empty() {
            out.push(MountedV1 {
                controllers,
                mount: PathBuf::from(unescape_octal(mountpoint)),
                root: unescape_octal(root),
            });
        }
    }
    out
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

    const PROC_CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled
cpu\t1\t14\t1
memory\t4\t26\t1
net_cls\t0\t16\t1
hugetlb\t13\t2\t1
rdma\t0\t1\t0
";

    #[test]
    fn hierarchies_mounted_outside_the_standard_place_are_added() {
        let mut l = Layout {
            mode: Mode::Hybrid,
            v1: vec![
                V1Mount { controllers: vec!["cpu".into()], mount: "/sys/fs/cgroup/cpu".into() },
                V1Mount { controllers: vec!["memory".into()], mount: "/sys/fs/cgroup/memory".into() },
            ],
            v2: Some("/sys/fs/cgroup/unified".into()),
        };
        let mi = "\
40 31 0:37 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
50 23 0:40 /sub /srv/hugetlb-view rw - cgroup cgroup rw,hugetlb
51 23 0:40 / /run/other\\040runtime/hugetlb rw - cgroup cgroup rw,hugetlb
";
        add_mounted_elsewhere(&mut l, PROC_CGROUPS, || Some(mi.to_owned()));
        assert_eq!(l.v1.len(), 3);
        assert_eq!(l.v1[0].controllers, vec!["hugetlb"]);
        assert_eq!(l.v1[0].mount, PathBuf::from("/run/other runtime/hugetlb"));
        // Nothing missing: mountinfo is not even read.
        let mut l2 = l.clone();
        add_mounted_elsewhere(&mut l2, PROC_CGROUPS, || panic!("read mountinfo although nothing was missing"));
        assert_eq!(l2, l);
    }

    #[test]
    fn why_a_controller_is_out_of_reach() {
        let none = "";
        let e = reason_from("hugetlb", PROC_CGROUPS, none).unwrap();
        assert!(
            e.starts_with("the kernel binds hugetlb to cgroup v1 hierarchy 13 (/proc/cgroups), which is not mounted"),
            "{e}"
        );
        assert!(e.contains("mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb"), "{e}");
        let view = "50 23 0:40 /sub /srv/v rw - cgroup cgroup rw,hugetlb\n";
        let e = reason_from("hugetlb", PROC_CGROUPS, view).unwrap();
        assert!(e.ends_with("mounted here only as /srv/v (showing only its subtree /sub)"), "{e}");
        let whole = "50 23 0:40 / /srv/v rw - cgroup cgroup rw,hugetlb\n";
        assert_eq!(reason_from("hugetlb", PROC_CGROUPS, whole), None);
        assert_eq!(reason_from("net_cls", PROC_CGROUPS, none), None, "on cgroup2: the caller explains");
        assert!(reason_from("rdma", PROC_CGROUPS, none).unwrap().contains("disabled"));
        assert!(reason_from("misc", PROC_CGROUPS, none).unwrap().contains("no misc controller"));
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
