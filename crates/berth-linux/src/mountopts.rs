//! `mounts[].options` to mount flags, the way runc reads them.
//!
//! Options fall into four groups: per-mount flags set at mount time (`ro`, `nosuid`, ...),
//! recursive attributes applied with `mount_setattr(AT_RECURSIVE)` (`rro`, `rnosuid`, ...),
//! propagation (`rprivate`, `shared`, ...), and everything else, which is passed to the
//! filesystem as its data string (`mode=755`, `size=65536k`, ...). Parsing happens in the
//! parent, once, before the container process exists.

use berth_sys::mount as m;

/// Parsed mount options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags (without propagation).
    pub flags: libc::c_ulong,
    /// Flags explicitly cleared by the options (`rw`, `suid`, `dev`, `exec`, ...). Needed for
    /// bind mounts, where the new mount inherits the source's flags unless cleared.
    pub cleared: libc::c_ulong,
    /// Propagation flags to apply after mounting, in order.
    pub propagation: Vec<libc::c_ulong>,
    /// Recursive attributes to set (`MOUNT_ATTR_*`).
    pub rec_set: u64,
    /// Recursive attributes to clear.
    pub rec_clr: u64,
    /// Filesystem-specific data (comma-joined).
    pub data: String,
    /// `tmpcopyup`: copy the underlying directory's content into a new tmpfs.
    pub tmpcopyup: bool,
    /// `idmap`/`ridmap` was requested.
    pub idmap: Option<bool>,
}

impl MountOptions {
    /// True for `bind`/`rbind`.
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }
    /// True for `rbind`.
    pub fn is_recursive(&self) -> bool {
        self.flags & libc::MS_REC != 0
    }
}

/// Parses an options list. Never fails: unknown options become filesystem data, as in runc.
pub fn parse(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let s = opt.as_str();
        if let Some((set, flag)) = flag_of(s) {
            if set {
                o.flags |= flag;
                o.cleared &= !flag;
            } else {
                o.flags &= !flag;
                o.cleared |= flag;
            }
            continue;
        }
        if let Some(p) = propagation_of(s) {
            o.propagation.push(p);
            continue;
        }
        if let Some((set, attr)) = rec_attr_of(s) {
            if attr == m::MOUNT_ATTR_STRICTATIME || attr == m::MOUNT_ATTR_NOATIME || attr == m::MOUNT_ATTR_RELATIME {
                // atime attributes are a 3-valued field: setting one clears the others.
                o.rec_clr |= m::MOUNT_ATTR_ATIME_MASK;
                o.rec_set = (o.rec_set & !m::MOUNT_ATTR_ATIME_MASK) | if set { attr } else { 0 };
            } else if set {
                o.rec_set |= attr;
                o.rec_clr &= !attr;
            } else {
                o.rec_clr |= attr;
                o.rec_set &= !attr;
            }
            continue;
        }
        match s {
            "tmpcopyup" => o.tmpcopyup = true,
            "idmap" => o.idmap = Some(false),
            "ridmap" => o.idmap = Some(true),
            "" => {}
            _ => data.push(s),
        }
    }
    o.data = data.join(",");
    o
}

/// Every option [`parse`] recognises (anything else is filesystem data), sorted: the
/// `mountOptions` of `berth features`.
pub const KNOWN: &[&str] = &[
    "acl",
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noacl",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

fn flag_of(s: &str) -> Option<(bool, libc::c_ulong)> {
    Some(match s {
        "acl" => (true, libc::MS_POSIXACL),
        "noacl" => (false, libc::MS_POSIXACL),
        "async" => (false, libc::MS_SYNCHRONOUS),
        "atime" => (false, libc::MS_NOATIME),
        "bind" => (true, libc::MS_BIND),
        "defaults" => (true, 0),
        "dev" => (false, libc::MS_NODEV),
        "diratime" => (false, libc::MS_NODIRATIME),
        "dirsync" => (true, libc::MS_DIRSYNC),
        "exec" => (false, libc::MS_NOEXEC),
        "iversion" => (true, libc::MS_I_VERSION),
        "lazytime" => (true, libc::MS_LAZYTIME),
        "loud" => (false, libc::MS_SILENT),
        "mand" => (true, libc::MS_MANDLOCK),
        "noatime" => (true, libc::MS_NOATIME),
        "nodev" => (true, libc::MS_NODEV),
        "nodiratime" => (true, libc::MS_NODIRATIME),
        "noexec" => (true, libc::MS_NOEXEC),
        "noiversion" => (false, libc::MS_I_VERSION),
        "nolazytime" => (false, libc::MS_LAZYTIME),
        "nomand" => (false, libc::MS_MANDLOCK),
        "norelatime" => (false, libc::MS_RELATIME),
        "nostrictatime" => (false, libc::MS_STRICTATIME),
        "nosuid" => (true, libc::MS_NOSUID),
        "nosymfollow" => (true, MS_NOSYMFOLLOW),
        "rbind" => (true, libc::MS_BIND | libc::MS_REC),
        "relatime" => (true, libc::MS_RELATIME),
        "remount" => (true, libc::MS_REMOUNT),
        "ro" => (true, libc::MS_RDONLY),
        "rw" => (false, libc::MS_RDONLY),
        "silent" => (true, libc::MS_SILENT),
        "strictatime" => (true, libc::MS_STRICTATIME),
        "suid" => (false, libc::MS_NOSUID),
        "symfollow" => (false, MS_NOSYMFOLLOW),
        "sync" => (true, libc::MS_SYNCHRONOUS),
        _ => return None,
    })
}

/// `MS_NOSYMFOLLOW` (Linux 5.10); not in every libc version.
pub const MS_NOSYMFOLLOW: libc::c_ulong = 256;

fn propagation_of(s: &str) -> Option<libc::c_ulong> {
    Some(match s {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// Parses `linux.rootfsPropagation`.
pub fn rootfs_propagation(s: &str) -> Option<libc::c_ulong> {
    propagation_of(s)
}

fn rec_attr_of(s: &str) -> Option<(bool, u64)> {
    Some(match s {
        "rro" => (true, m::MOUNT_ATTR_RDONLY),
        "rrw" => (false, m::MOUNT_ATTR_RDONLY),
        "rnosuid" => (true, m::MOUNT_ATTR_NOSUID),
        "rsuid" => (false, m::MOUNT_ATTR_NOSUID),
        "rnodev" => (true, m::MOUNT_ATTR_NODEV),
        "rdev" => (false, m::MOUNT_ATTR_NODEV),
        "rnoexec" => (true, m::MOUNT_ATTR_NOEXEC),
        "rexec" => (false, m::MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (true, m::MOUNT_ATTR_NODIRATIME),
        "rdiratime" => (false, m::MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (true, m::MOUNT_ATTR_RELATIME),
        "rnorelatime" => (false, m::MOUNT_ATTR_RELATIME),
        "rnoatime" => (true, m::MOUNT_ATTR_NOATIME),
        "ratime" => (false, m::MOUNT_ATTR_NOATIME),
        "rstrictatime" => (true, m::MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => (false, m::MOUNT_ATTR_STRICTATIME),
        "rnosymfollow" => (true, m::MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => (false, m::MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

/// Translates per-mount `MS_*` flags to `MOUNT_ATTR_*` for `mount_setattr` on a bind mount.
/// Returns (set, clear).
pub fn ms_to_attr(flags: libc::c_ulong, cleared: libc::c_ulong) -> (u64, u64) {
    let pairs = [
        (libc::MS_RDONLY, m::MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, m::MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, m::MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, m::MOUNT_ATTR_NOEXEC),
        (libc::MS_NODIRATIME, m::MOUNT_ATTR_NODIRATIME),
        (MS_NOSYMFOLLOW, m::MOUNT_ATTR_NOSYMFOLLOW),
    ];
    let (mut set, mut clr) = (0, 0);
    for (ms, attr) in pairs {
        if flags & ms != 0 {
            set |= attr;
        } else if cleared & ms != 0 {
            clr |= attr;
        }
    }
    for (ms, attr) in [
        (libc::MS_NOATIME, m::MOUNT_ATTR_NOATIME),
        (libc::MS_STRICTATIME, m::MOUNT_ATTR_STRICTATIME),
        (libc::MS_RELATIME, m::MOUNT_ATTR_RELATIME),
    ] {
        if flags & ms != 0 {
            clr |= m::MOUNT_ATTR_ATIME_MASK;
            set = (set & !m::MOUNT_ATTR_ATIME_MASK) | attr;
        }
    }
    (set, clr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn runc_default_mounts() {
        let o = parse(&v(&["nosuid", "strictatime", "mode=755", "size=65536k"]));
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = parse(&v(&["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]));
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_NOEXEC);
        assert_eq!(o.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    }

    #[test]
    fn later_options_win_and_record_clears() {
        let o = parse(&v(&["ro", "rw"]));
        assert_eq!(o.flags & libc::MS_RDONLY, 0);
        assert_ne!(o.cleared & libc::MS_RDONLY, 0);
        let o = parse(&v(&["rw", "ro"]));
        assert_ne!(o.flags & libc::MS_RDONLY, 0);
        assert_eq!(o.cleared & libc::MS_RDONLY, 0);
    }

    #[test]
    fn bind_propagation_and_recursive_attrs() {
        let o = parse(&v(&["rbind", "rprivate", "rro", "rnosuid", "tmpcopyup"]));
        assert!(o.is_bind() && o.is_recursive());
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        assert_eq!(o.rec_set, m::MOUNT_ATTR_RDONLY | m::MOUNT_ATTR_NOSUID);
        assert!(o.tmpcopyup);
        assert!(o.data.is_empty());
    }

    #[test]
    fn known_is_exactly_what_parse_recognises() {
        let mut sorted = KNOWN.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, KNOWN, "KNOWN must be sorted and without duplicates");
        for o in KNOWN {
            assert!(parse(&v(&[o])).data.is_empty(), "{o} is treated as filesystem data");
        }
        // Filesystem data stays data.
        for o in ["mode=755", "size=1k", "newinstance", "gid=5", "context=x", "uid=0"] {
            assert_eq!(parse(&v(&[o])).data, o);
        }
        let acl = parse(&v(&["acl"]));
        assert_eq!(acl.flags, libc::MS_POSIXACL);
        assert_ne!(parse(&v(&["acl", "noacl"])).cleared & libc::MS_POSIXACL, 0);
    }

    #[test]
    fn attr_translation() {
        let (set, clr) = ms_to_attr(libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOATIME, libc::MS_NOEXEC);
        assert_eq!(set, m::MOUNT_ATTR_RDONLY | m::MOUNT_ATTR_NOSUID | m::MOUNT_ATTR_NOATIME);
        assert_eq!(clr, m::MOUNT_ATTR_NOEXEC | m::MOUNT_ATTR_ATIME_MASK);
    }
}
