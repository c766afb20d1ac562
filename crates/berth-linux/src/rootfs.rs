//! Building the container's filesystem view inside its new mount namespace.
//!
//! Runs in the container's init (a single-threaded child). Order, as runc and crun do it:
//! make the mount tree non-propagating, bind the rootfs onto itself, perform `mounts` in spec
//! order, populate /dev, (createContainer hooks), pivot_root, (the console), then read-only
//! and masked paths, the read-only tmpfs mounts and /dev, the read-only root and the final
//! root propagation. Nothing here touches the host's mount namespace, so a failure leaves no
//! host mount behind: the namespace dies with the process.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_sys::mount::{self as m, MountAttr};
use rustix::fs::{self as rfs, Mode, OFlags};

use crate::error::{Context, Error, Result};
use crate::mountopts;
use crate::paths::{clean, cstr, proc_fd, rel, Root};
use crate::plan::{DevicePlan, MountKind, MountPlan, Plan};

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// Mounts that `mounts` asked to be read-only but that are made read-write first and
/// read-only by [`finish`]: a tmpfs, and /dev whatever its type (runc's order). /dev must be
/// populated and gets the mount points of /dev/pts, /dev/shm, ... and /dev/console; a tmpfs
/// may get mount points of later mounts and its tmpcopyup content. Each entry holds the new
/// mount's root, so the remount reaches the mount that entry made, whatever is later mounted
/// over its path.
#[derive(Debug, Default)]
pub struct ReadOnlyLater(Vec<(String, OwnedFd)>);

/// Prepares the mount namespace up to (not including) pivot_root. Returns the root and the
/// mounts that [`finish`] makes read-only.
pub fn prepare(plan: &Plan) -> Result<(Root, ReadOnlyLater)> {
    if plan.own_mntns {
        isolate_mount_tree(plan)?;
    }
    // Without a mount namespace the mounts below land in the caller's namespace, under the
    // rootfs only (resolved inside it as always); delete removes them
    // (`unmount_under_rootfs`).
    let root = Root::open(&plan.rootfs)?;
    let mut later = ReadOnlyLater::default();
    for mp in &plan.mounts {
        let ro_later = mount_one(&root, plan, mp).map_err(|e| {
            let labelled = mp.kind == MountKind::Cgroup || mp.opts.data.contains("context=");
            let hint = if labelled { crate::lsm::mount_label_hint(plan.mount_label.as_deref()) } else { String::new() };
            Error::Invalid(format!("mounts[{}] ({}): {e}{hint}", mp.index, mp.destination))
        })?;
        if let Some(fd) = ro_later {
            later.0.push((format!("mounts[{}] ({})", mp.index, mp.destination), fd));
        }
    }
    if plan.populate_dev {
        populate_dev(&root, plan)?;
    }
    Ok((root, later))
}

/// In the container's own mount namespace: stops propagation back to the host and binds the
/// rootfs onto itself (pivot_root needs a mount point).
fn isolate_mount_tree(plan: &Plan) -> Result<()> {
    let slash = c"/";
    let mut prop = plan.rootfs_propagation.unwrap_or(libc::MS_SLAVE | libc::MS_REC);
    // An unbindable tree refuses every bind from it: the rootfs's bind onto itself first
    // (EINVAL: runc 1.1 fails there), then every bind mount of `mounts`. Build under the
    // default rslave (which, like unbindable, sends nothing back to the host) and make the
    // new root unbindable (`runbindable`: the whole tree) in finish().
    if prop & libc::MS_UNBINDABLE != 0 {
        prop = libc::MS_SLAVE | libc::MS_REC;
    }
    m::mount(None, slash, None, prop | libc::MS_REC, None)
        .ctx(|| "making the container's mount tree non-propagating".to_string())?;
    // Only a shared propagation leaves mounts peered with the host's (it is applied
    // recursively above); the default, rslave, does not, and then mountinfo is not read.
    if prop & libc::MS_SHARED != 0 {
        make_parent_mount_private(&plan.rootfs)?;
    }
    let rootfs = cstr("root.path", &plan.rootfs.to_string_lossy())?;
    m::mount(Some(&rootfs), &rootfs, None, libc::MS_BIND | libc::MS_REC, None)
        .ctx(|| format!("bind-mounting the rootfs {}", plan.rootfs.display()))?;
    Ok(())
}

/// Removes every mount at or under `rootfs` from the calling process's mount namespace,
/// deepest first: what a container without a mount namespace of its own left in its
/// caller's (runc leaves them there).
pub fn unmount_under_rootfs(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ctx(|| "reading /proc/self/mountinfo".to_string())?;
    let mut targets: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(|m| PathBuf::from(unescape_mountinfo(m))))
        .filter(|mp| mp.starts_with(rootfs))
        .collect();
    targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let mut first = None;
    for mp in targets {
        let c = cstr("container mount", &mp.to_string_lossy())?;
        match m::umount2(&c, libc::MNT_DETACH) {
            // Gone already with a parent, or stacked mounts counted twice.
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                first.get_or_insert(Error::io(format!("unmounting {}", mp.display()), e));
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Before a chroot (`--no-pivot`), removes from the container's mount namespace every full
/// procfs and sysfs mount outside the rootfs. A chroot leaves the old root's mounts in the
/// namespace, out of sight but not gone, and the kernel lets a process in a new user
/// namespace mount procfs or sysfs when a fully visible instance exists anywhere in its mount
/// namespace (`mount_too_revealing`): the host's /proc would be that instance, unmasked, and
/// the container could get an unmasked /proc of its own. pivot_root detaches the old root
/// entirely, so this is needed only here. Each mount is made a slave first so the unmount
/// cannot propagate to the host; where unmounting is refused, a tmpfs covers it (as runc).
fn detach_host_proc_and_sys(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ctx(|| "reading /proc/self/mountinfo".to_string())?;
    let mut targets: Vec<PathBuf> = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let fields: Vec<&str> = pre.split(' ').collect();
        let fstype = post.split(' ').next().unwrap_or_default();
        // Only full instances reveal anything (a bind of a subdirectory does not count).
        if fields.get(3) != Some(&"/") || (fstype != "proc" && fstype != "sysfs") {
            continue;
        }
        let Some(mp) = fields.get(4).map(|m| PathBuf::from(unescape_mountinfo(m))) else { continue };
        if !mp.starts_with(rootfs) {
            targets.push(mp);
        }
    }
    // Deepest first, so a covered parent never hides a child still to be handled.
    targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for mp in targets {
        let c = cstr("host mount", &mp.to_string_lossy())?;
        match m::mount(None, &c, None, libc::MS_SLAVE | libc::MS_REC, None) {
            Ok(()) => {}
            // Already gone with a parent detached before it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) || e.raw_os_error() == Some(libc::EINVAL) => continue,
            Err(e) => return Err(Error::io(format!("--no-pivot: making {} a slave", mp.display()), e)),
        }
        match m::umount2(&c, libc::MNT_DETACH) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::EPERM) => {
                m::mount(Some(c"tmpfs"), &c, Some(c"tmpfs"), libc::MS_RDONLY, None)
                    .ctx(|| format!("--no-pivot: covering {}", mp.display()))?;
            }
            Err(e) => return Err(Error::io(format!("--no-pivot: detaching {}", mp.display()), e)),
        }
    }
    Ok(())
}

/// runc's rootfsParentMountPrivate. With `rootfsPropagation: shared` the container's copy of
/// the mount holding the rootfs stays a peer of the host's, so binding the rootfs onto itself
/// (and every mount under it) would propagate to the host and outlive the container, and
/// pivot_root refuses a shared parent (EINVAL). Making that one mount private in our
/// namespace stops both; the new root gets the requested propagation in [`finish`].
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ctx(|| "reading /proc/self/mountinfo".to_string())?;
    // The mount holding the rootfs: the longest mount point that contains it; of mounts
    // stacked on one point, the last listed is the visible one.
    let mut best: Option<(PathBuf, bool)> = None;
    for line in info.lines() {
        let Some((pre, _)) = line.split_once(" - ") else { continue };
        let fields: Vec<&str> = pre.split(' ').collect();
        let Some(mp) = fields.get(4).map(|m| PathBuf::from(unescape_mountinfo(m))) else { continue };
        if !rootfs.starts_with(&mp) {
            continue;
        }
        let shared = fields.iter().skip(6).any(|f| f.starts_with("shared:"));
        if best.as_ref().is_none_or(|(b, _)| mp.components().count() >= b.components().count()) {
            best = Some((mp, shared));
        }
    }
    if let Some((mp, true)) = best {
        let c = cstr("rootfs parent mount", &mp.to_string_lossy())?;
        m::mount(None, &c, None, libc::MS_PRIVATE, None)
            .ctx(|| format!("making {} (the mount holding the rootfs) private", mp.display()))?;
    }
    Ok(())
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let oct = b.get(i + 1..i + 4).filter(|d| c == b'\\' && d.iter().all(|x| (b'0'..=b'7').contains(x)));
        match oct {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, x| acc.wrapping_mul(8).wrapping_add(x - b'0')));
                i += 4;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Performs one entry of `mounts`. Returns the new mount when it is to be made read-only by
/// [`finish`] (see [`ReadOnlyLater`]).
fn mount_one(root: &Root, plan: &Plan, mp: &MountPlan) -> Result<Option<OwnedFd>> {
    match mp.kind {
        MountKind::Bind { dir } => {
            let premade = plan.bind_trees.iter().find(|(i, _)| *i == mp.index).map(|(_, fd)| fd);
            mount_bind(root, mp, dir, premade).map(|()| None)
        }
        MountKind::Fs => mount_fs(root, mp),
        MountKind::Cgroup => mount_cgroup(root, plan, mp).map(|()| None),
    }
}

/// A detached copy of a bind mount's source with the mount's attributes and, given a user
/// namespace, its id mapping: what [`mount_bind`] attaches.
///
/// Idmapped trees are made by the runtime parent, in the host's user namespace, and handed
/// to the init ([`Plan::bind_trees`]): `MOUNT_ATTR_IDMAP` needs CAP_SYS_ADMIN in the user
/// namespace of the source's filesystem (the host's), which an init inside a new user
/// namespace does not have.
pub fn bind_tree(mp: &MountPlan, userns: Option<&OwnedFd>) -> Result<OwnedFd> {
    let src = rfs::open(mp.source.as_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| format!("opening bind source {}", mp.source))?;
    let mut flags = m::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as u32;
    if mp.opts.is_recursive() {
        flags |= m::AT_RECURSIVE;
    }
    let tree = m::open_tree(src.as_fd(), c"", flags).ctx(|| format!("cloning {}", mp.source))?;
    let (set, clr) = mountopts::ms_to_attr(mp.opts.flags, mp.opts.cleared);
    if set | clr != 0 {
        let attr = MountAttr { attr_set: set, attr_clr: clr, ..Default::default() };
        m::mount_setattr(tree.as_fd(), c"", libc::AT_EMPTY_PATH as u32, &attr)
            .ctx(|| "setting mount attributes".to_string())?;
    }
    apply_rec_attrs(&tree, mp)?;
    if let (Some(ns), Some((_, _, recursive))) = (userns, &mp.idmap) {
        let attr = MountAttr {
            attr_set: m::MOUNT_ATTR_IDMAP,
            userns_fd: u64::try_from(std::os::fd::AsRawFd::as_raw_fd(ns)).unwrap_or(u64::MAX),
            ..Default::default()
        };
        let flags = libc::AT_EMPTY_PATH as u32 | if *recursive { m::AT_RECURSIVE } else { 0 };
        m::mount_setattr(tree.as_fd(), c"", flags, &attr).map_err(|e| {
            Error::io(
                format!(
                    "creating an idmapped mount of {} (the filesystem or kernel may not support idmapped mounts)",
                    mp.source
                ),
                e,
            )
        })?;
    }
    Ok(tree)
}

fn mount_bind(root: &Root, mp: &MountPlan, dir: bool, premade: Option<&OwnedFd>) -> Result<()> {
    let target = if dir { root.mkdir_all(&mp.destination, 0o755)? } else { root.create_file(&mp.destination)? };
    let made;
    let tree = match premade {
        Some(t) => t,
        None => {
            made = bind_tree(mp, None)?;
            &made
        }
    };
    m::move_mount(tree.as_fd(), c"", target.as_fd(), c"", m::MOVE_MOUNT_F_EMPTY_PATH | m::MOVE_MOUNT_T_EMPTY_PATH)
        .ctx(|| format!("attaching the bind mount of {}", mp.source))?;
    for p in &mp.opts.propagation {
        m::mount(None, &proc_fd(tree.as_fd()), None, *p, None).ctx(|| "setting propagation".to_string())?;
    }
    Ok(())
}

fn apply_rec_attrs(fd: &OwnedFd, mp: &MountPlan) -> Result<()> {
    if mp.opts.rec_set | mp.opts.rec_clr == 0 {
        return Ok(());
    }
    let attr = MountAttr { attr_set: mp.opts.rec_set, attr_clr: mp.opts.rec_clr, ..Default::default() };
    m::mount_setattr(fd.as_fd(), c"", libc::AT_EMPTY_PATH as u32 | m::AT_RECURSIVE, &attr)
        .ctx(|| "setting recursive mount attributes".to_string())
}

/// Resolves a mount target: `/proc` and `/sys` (and anything under them) must be reached
/// without symlinks (CVE-2019-19921 / CVE-2023-27561: a symlinked /proc redirected the LSM
/// label writes); other targets follow symlinks inside the root.
fn target_dir(root: &Root, dest: &str, strict: bool) -> Result<OwnedFd> {
    if !strict {
        return root.mkdir_all(dest, 0o755);
    }
    match root.resolve_no_symlinks(dest) {
        Ok(fd) => {
            let st = rfs::fstat(&fd).ctx(|| format!("checking {dest}"))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Err(Error::Invalid(format!("{dest} must be mounted on an ordinary directory")));
            }
            Ok(fd)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            root.mkdir_all(dest, 0o755)?;
            root.resolve_no_symlinks(dest).ctx(|| format!("resolving {dest}"))
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            Err(Error::Invalid(format!("{dest} must be mounted on an ordinary directory, not a symlink")))
        }
        Err(e) => Err(Error::io(format!("resolving {dest}"), e)),
    }
}

/// Targets that must be reached without following any symlink: /proc and /sys (LSM label and
/// sysctl writes go there) and /dev (device nodes and the /dev/null used for masking).
fn is_strict(dest: &str, fstype: &str) -> bool {
    // Cleaned, so that `//proc/.` or `/x/../sys` cannot pass for another path.
    let d = clean(dest);
    fstype == "proc"
        || fstype == "sysfs"
        || ["/proc", "/sys", "/dev"].iter().any(|p| d == *p || d.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

fn mount_fs(root: &Root, mp: &MountPlan) -> Result<Option<OwnedFd>> {
    let strict = is_strict(&mp.destination, &mp.fstype);
    let ro_later = mp.opts.flags & libc::MS_RDONLY != 0 && (mp.fstype == "tmpfs" || clean(&mp.destination) == "/dev");
    // As runc: a tmpfs without `mode=` takes the mode of the directory it covers when the
    // image has one (a tmpfs on a 0711 or 1777 directory keeps it); on a mount point that
    // berth creates it keeps tmpfs's own default, 1777.
    let keep_mode = mp.fstype == "tmpfs"
        && !mp.opts.data.split(',').any(|o| o.starts_with("mode="))
        && if strict { root.resolve_no_symlinks(&mp.destination) } else { root.resolve(&mp.destination) }.is_ok();
    let target = target_dir(root, &mp.destination, strict)?;
    let source = cstr("source", if mp.source.is_empty() { &mp.fstype } else { &mp.source })?;
    let fstype = cstr("type", &mp.fstype)?;
    let mut data = mp.opts.data.clone();
    if keep_mode {
        let st = rfs::fstat(&target).ctx(|| format!("stat {}", mp.destination))?;
        let mode = format!("mode={:04o}", st.st_mode & 0o7777);
        data = if data.is_empty() { mode } else { format!("{mode},{data}") };
    }
    let data = if data.is_empty() { None } else { Some(cstr("options", &data)?) };
    let tpath = proc_fd(target.as_fd());
    let mut flags = mp.opts.flags & !libc::MS_REMOUNT;
    if ro_later {
        flags &= !libc::MS_RDONLY;
    }
    let res = m::mount(Some(&source), &tpath, Some(&fstype), flags, data.as_deref());
    match res {
        Ok(()) => {}
        // Without its own network namespace (or in a user namespace) sysfs cannot be mounted;
        // runc then binds the host's /sys read-only, so do the same.
        Err(e) if mp.fstype == "sysfs" && matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EBUSY)) => {
            let tree = m::open_tree(rustix::fs::CWD, c"/sys", m::OPEN_TREE_CLONE | m::AT_RECURSIVE)
                .ctx(|| "cloning the host /sys".to_string())?;
            let attr = MountAttr {
                attr_set: m::MOUNT_ATTR_RDONLY | m::MOUNT_ATTR_NOSUID | m::MOUNT_ATTR_NODEV | m::MOUNT_ATTR_NOEXEC,
                ..Default::default()
            };
            m::mount_setattr(tree.as_fd(), c"", libc::AT_EMPTY_PATH as u32 | m::AT_RECURSIVE, &attr)
                .ctx(|| "making /sys read-only".to_string())?;
            m::move_mount(
                tree.as_fd(),
                c"",
                target.as_fd(),
                c"",
                m::MOVE_MOUNT_F_EMPTY_PATH | m::MOVE_MOUNT_T_EMPTY_PATH,
            )
            .ctx(|| "binding the host /sys".to_string())?;
        }
        Err(e) => return Err(Error::io(format!("mounting {} on {}", mp.fstype, mp.destination), e)),
    }
    if !mp.opts.propagation.is_empty()
        || mp.opts.rec_set | mp.opts.rec_clr != 0
        || strict
        || mp.opts.tmpcopyup
        || ro_later
    {
        // The O_PATH fd above refers to the directory under the new mount; re-resolve to reach
        // the mount itself.
        let mounted = if strict { root.resolve_no_symlinks(&mp.destination) } else { root.resolve(&mp.destination) }
            .ctx(|| format!("resolving {} after mounting", mp.destination))?;
        if strict && (mp.fstype == "proc" || mp.fstype == "sysfs") {
            let sfs = rfs::fstatfs(&mounted).ctx(|| format!("statfs {}", mp.destination))?;
            let want = if mp.fstype == "proc" { PROC_SUPER_MAGIC } else { SYSFS_MAGIC };
            if sfs.f_type as i64 != want {
                return Err(Error::Invalid(format!("{} is not a {} mount after mounting", mp.destination, mp.fstype)));
            }
        }
        if mp.opts.tmpcopyup {
            tmpcopyup(&target, &mounted, &mp.destination)?;
        }
        apply_rec_attrs(&mounted, mp)?;
        for p in &mp.opts.propagation {
            m::mount(None, &proc_fd(mounted.as_fd()), None, *p, None).ctx(|| "setting propagation".to_string())?;
        }
        if ro_later {
            return Ok(Some(mounted));
        }
    }
    Ok(None)
}

/// `tmpcopyup`: the new tmpfs starts with a copy of what the image had at that path. The
/// directory under the new mount is still reachable through the descriptor opened before
/// mounting, so the copy reads the shadowed content by fd and never resolves a path.
fn tmpcopyup(under: &OwnedFd, mounted: &OwnedFd, dest: &str) -> Result<()> {
    let src = rfs::openat(under, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| format!("tmpcopyup: opening the directory under {dest}"))?;
    let dst = rfs::openat(mounted, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| format!("tmpcopyup: opening the new tmpfs at {dest}"))?;
    let st = rfs::fstat(&src).ctx(|| "tmpcopyup: stat".to_string())?;
    rfs::fchmod(&dst, Mode::from_raw_mode(st.st_mode & 0o7777)).ctx(|| "tmpcopyup: chmod".to_string())?;
    rfs::fchown(&dst, Some(rfs::Uid::from_raw(st.st_uid)), Some(rfs::Gid::from_raw(st.st_gid)))
        .ctx(|| "tmpcopyup: chown".to_string())?;
    copy_tree(&src, &dst, dest, 0)
}

fn copy_tree(src: &OwnedFd, dst: &OwnedFd, what: &str, depth: u32) -> Result<()> {
    if depth > 64 {
        return Err(Error::Invalid(format!("tmpcopyup: {what}: directory tree too deep")));
    }
    let dir = rfs::Dir::read_from(src).ctx(|| format!("tmpcopyup: reading {what}"))?;
    for entry in dir {
        let entry = entry.ctx(|| format!("tmpcopyup: reading {what}"))?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let shown = format!("{what}/{}", name.to_string_lossy());
        let st = rfs::statat(src, name, rfs::AtFlags::SYMLINK_NOFOLLOW).ctx(|| format!("tmpcopyup: stat {shown}"))?;
        let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                rfs::mkdirat(dst, name, Mode::from_raw_mode(0o700)).ctx(|| format!("tmpcopyup: mkdir {shown}"))?;
                let s2 = rfs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ctx(|| format!("tmpcopyup: open {shown}"))?;
                let d2 = rfs::openat(
                    dst,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ctx(|| format!("tmpcopyup: open {shown}"))?;
                copy_tree(&s2, &d2, &shown, depth + 1)?;
                rfs::fchmod(&d2, mode).ctx(|| format!("tmpcopyup: chmod {shown}"))?;
            }
            libc::S_IFREG => {
                let from = rfs::openat(src, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                    .ctx(|| format!("tmpcopyup: open {shown}"))?;
                let to = rfs::openat(
                    dst,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    mode,
                )
                .ctx(|| format!("tmpcopyup: create {shown}"))?;
                std::io::copy(
                    &mut std::fs::File::from(from),
                    &mut std::fs::File::from(to.try_clone().ctx(|| "dup".to_string())?),
                )
                .ctx(|| format!("tmpcopyup: copy {shown}"))?;
                rfs::fchmod(&to, mode).ctx(|| format!("tmpcopyup: chmod {shown}"))?;
            }
            libc::S_IFLNK => {
                let target = rfs::readlinkat(src, name, Vec::new()).ctx(|| format!("tmpcopyup: readlink {shown}"))?;
                rfs::symlinkat(target.as_c_str(), dst, name).ctx(|| format!("tmpcopyup: symlink {shown}"))?;
            }
            kind => {
                rfs::mknodat(dst, name, rfs::FileType::from_raw_mode(kind), mode, st.st_rdev)
                    .ctx(|| format!("tmpcopyup: mknod {shown}"))?;
            }
        }
        rfs::chownat(
            dst,
            name,
            Some(rfs::Uid::from_raw(st.st_uid)),
            Some(rfs::Gid::from_raw(st.st_gid)),
            rfs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .ctx(|| format!("tmpcopyup: chown {shown}"))?;
    }
    Ok(())
}

fn mount_cgroup(root: &Root, plan: &Plan, mp: &MountPlan) -> Result<()> {
    let target = target_dir(root, &mp.destination, true)?;
    let tpath = proc_fd(target.as_fd());
    let ro = mp.opts.flags & libc::MS_RDONLY != 0;
    let base = mp.opts.flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME);
    let unified_only = plan.cgroup_mounts.len() == 1
        && plan.cgroup_mounts[0].fstype == "cgroup2"
        && plan.cgroup_mounts[0].name.is_empty();
    if unified_only {
        let h = &plan.cgroup_mounts[0];
        if plan.unshare_cgroupns {
            m::mount(Some(c"cgroup2"), &tpath, Some(c"cgroup2"), base | if ro { libc::MS_RDONLY } else { 0 }, None)
                .ctx(|| "mounting cgroup2".to_string())?;
        } else {
            bind_dir(&h.host_dir, &target, ro, base)?;
        }
        return Ok(());
    }
    // v1 or hybrid: a tmpfs holding one directory per hierarchy, like the host's layout.
    // runc labels it with linux.mountLabel.
    let data = cstr("options", &crate::lsm::with_mount_label("mode=755", plan.mount_label.as_deref()))?;
    m::mount(Some(c"tmpfs"), &tpath, Some(c"tmpfs"), base, Some(&data))
        .ctx(|| format!("mounting a tmpfs on {}", mp.destination))?;
    for h in &plan.cgroup_mounts {
        let dest = format!("{}/{}", mp.destination.trim_end_matches('/'), h.name);
        let sub = root.mkdir_all(&dest, 0o755)?;
        if plan.unshare_cgroupns {
            let fstype = cstr("cgroup type", &h.fstype)?;
            let data = if h.data.is_empty() { None } else { Some(cstr("cgroup data", &h.data)?) };
            m::mount(
                Some(&fstype),
                &proc_fd(sub.as_fd()),
                Some(&fstype),
                base | if ro { libc::MS_RDONLY } else { 0 },
                data.as_deref(),
            )
            .ctx(|| format!("mounting the {} hierarchy at {dest}", h.name))?;
        } else {
            bind_dir(&h.host_dir, &sub, ro, base)?;
        }
    }
    if ro {
        let mounted = root.resolve_no_symlinks(&mp.destination).ctx(|| format!("resolving {}", mp.destination))?;
        m::mount(
            None,
            &proc_fd(mounted.as_fd()),
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | base,
            None,
        )
        .ctx(|| format!("making {} read-only", mp.destination))?;
    }
    Ok(())
}

fn bind_dir(host: &Path, target: &OwnedFd, ro: bool, flags: libc::c_ulong) -> Result<()> {
    let src = rfs::open(host, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| format!("opening {}", host.display()))?;
    let tree = m::open_tree(src.as_fd(), c"", m::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as u32)
        .ctx(|| format!("cloning {}", host.display()))?;
    let (mut set, clr) = mountopts::ms_to_attr(flags, 0);
    if ro {
        set |= m::MOUNT_ATTR_RDONLY;
    }
    if set | clr != 0 {
        let attr = MountAttr { attr_set: set, attr_clr: clr, ..Default::default() };
        m::mount_setattr(tree.as_fd(), c"", libc::AT_EMPTY_PATH as u32, &attr)
            .ctx(|| "setting mount attributes".to_string())?;
    }
    m::move_mount(tree.as_fd(), c"", target.as_fd(), c"", m::MOVE_MOUNT_F_EMPTY_PATH | m::MOVE_MOUNT_T_EMPTY_PATH)
        .ctx(|| format!("binding {}", host.display()))
}

fn populate_dev(root: &Root, plan: &Plan) -> Result<()> {
    // CVE-2026-47766: a rootfs whose /dev is a symlink must not make us create nodes
    // elsewhere, even inside the root.
    let dev = match root.resolve_no_symlinks("/dev") {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => root.mkdir_all("/dev", 0o755)?,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::Invalid("/dev in the rootfs is a symlink; refusing to create devices".into()))
        }
        Err(e) => return Err(Error::io("resolving /dev", e)),
    };
    let devdir = rfs::openat(&dev, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| "opening /dev".to_string())?;
    for d in &plan.devices {
        create_device(root, plan, d)?;
    }
    for (target, name) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        match rfs::symlinkat(target, &devdir, name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(Error::io(format!("creating /dev/{name}"), e)),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = rfs::symlinkat("/proc/kcore", &devdir, "core");
    }
    match rfs::unlinkat(&devdir, "ptmx", rfs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(Error::io("removing /dev/ptmx", e)),
    }
    rfs::symlinkat("pts/ptmx", &devdir, "ptmx").ctx(|| "creating /dev/ptmx".to_string())?;
    Ok(())
}

fn create_device(root: &Root, plan: &Plan, d: &DevicePlan) -> Result<()> {
    let p = Path::new(rel(&d.path));
    let (parent, name) = match (p.parent(), p.file_name()) {
        (Some(pa), Some(n)) => (pa.to_string_lossy().into_owned(), n.to_os_string()),
        _ => return Err(Error::Invalid(format!("linux.devices: bad path {}", d.path))),
    };
    let pfd = root.mkdir_all(&parent, 0o755)?;
    let dir = rfs::openat(&pfd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| format!("opening the parent of {}", d.path))?;
    // mknod of a device is not permitted in a user namespace: bind the host's node instead.
    // A FIFO is no device: it is created there like anywhere else.
    if plan.in_userns() && d.kind != libc::S_IFIFO {
        match rfs::openat(
            &dir,
            &name,
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(_) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(Error::io(format!("creating {}", d.path), e)),
        }
        let target = rfs::openat(&dir, &name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .ctx(|| format!("opening {}", d.path))?;
        let host = CString::new(d.path.as_str()).map_err(|_| Error::Invalid("device path has NUL".into()))?;
        let tree = m::open_tree(rustix::fs::CWD, &host, m::OPEN_TREE_CLONE)
            .ctx(|| format!("cloning host device {}", d.path))?;
        return m::move_mount(
            tree.as_fd(),
            c"",
            target.as_fd(),
            c"",
            m::MOVE_MOUNT_F_EMPTY_PATH | m::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .ctx(|| format!("binding host device {}", d.path));
    }
    let dev = rustix::fs::makedev(d.major as u32, d.minor as u32);
    let kind = rfs::FileType::from_raw_mode(d.kind);
    let mode = Mode::from_raw_mode(d.mode);
    match rfs::mknodat(&dir, &name, kind, mode, dev) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => {
            rfs::unlinkat(&dir, &name, rfs::AtFlags::empty()).ctx(|| format!("replacing {}", d.path))?;
            rfs::mknodat(&dir, &name, kind, mode, dev).ctx(|| format!("creating device {}", d.path))?;
        }
        Err(e) => return Err(Error::io(format!("creating device {}", d.path), e)),
    }
    if d.uid != 0 || d.gid != 0 {
        rfs::chownat(
            &dir,
            &name,
            Some(rfs::Uid::from_raw(d.uid)),
            Some(rfs::Gid::from_raw(d.gid)),
            rfs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .ctx(|| format!("chown {}", d.path))?;
    }
    Ok(())
}

/// pivot_root into the prepared root (or chroot with `--no-pivot`).
pub fn enter(root: &Root, plan: &Plan) -> Result<()> {
    let dir = rfs::openat(root.fd(), ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .ctx(|| "opening the rootfs".to_string())?;
    rustix::process::fchdir(&dir).ctx(|| "chdir to the rootfs".to_string())?;
    if !plan.own_mntns {
        // The caller's namespace: its mounts stay as they are; chroot is all there is (as
        // in runc), and CAP_SYS_CHROOT would leave it (docs/spec.md).
        rustix::process::chroot(".").ctx(|| "chroot".to_string())?;
    } else if plan.no_pivot {
        detach_host_proc_and_sys(&plan.rootfs)?;
        m::mount(Some(c"."), c"/", None, libc::MS_MOVE, None).ctx(|| "moving the rootfs to /".to_string())?;
        rustix::process::chroot(".").ctx(|| "chroot".to_string())?;
    } else {
        let old_root = rfs::open("/", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .ctx(|| "opening the old root".to_string())?;
        rustix::process::pivot_root(".", ".").ctx(|| "pivot_root".to_string())?;
        // The old root is now stacked on the new one. "." still names the new root's tree,
        // so step into the old root before making it a slave (what runc does): otherwise the
        // recursive MS_SLAVE lands on the container's mounts and wipes the propagation the
        // spec asked for, and the old root's unmount could propagate to the host.
        rustix::process::fchdir(&old_root).ctx(|| "chdir to the old root".to_string())?;
        m::mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None)
            .ctx(|| "making the old root a slave".to_string())?;
        m::umount2(c".", libc::MNT_DETACH).ctx(|| "detaching the old root".to_string())?;
    }
    rustix::process::chdir("/").ctx(|| "chdir /".to_string())
}

/// After pivot_root (and the console): read-only paths, masked paths, the mounts of
/// [`ReadOnlyLater`], read-only root, root propagation.
pub fn finish(plan: &Plan, later: ReadOnlyLater) -> Result<()> {
    let root = Root::open(Path::new("/"))?;
    for (i, p) in plan.readonly.iter().enumerate() {
        readonly_path(&root, p).map_err(|e| Error::Invalid(format!("linux.readonlyPaths[{i}] ({p}): {e}")))?;
    }
    if !plan.masked.is_empty() {
        let null = verified_dev_null(&root)?;
        for (i, p) in plan.masked.iter().enumerate() {
            mask_path(&root, p, null.as_ref(), plan.mount_label.as_deref()).map_err(|e| {
                let hint = crate::lsm::mount_label_hint(plan.mount_label.as_deref());
                Error::Invalid(format!("linux.maskedPaths[{i}] ({p}): {e}{hint}"))
            })?;
        }
    }
    // mount_setattr changes only the read-only attribute, so nosuid, nodev, noexec and the
    // atime setting the spec gave stay as they are (a MS_REMOUNT would need them all again).
    let ro = MountAttr { attr_set: m::MOUNT_ATTR_RDONLY, ..Default::default() };
    for (what, fd) in later.0 {
        m::mount_setattr(fd.as_fd(), c"", libc::AT_EMPTY_PATH as u32, &ro)
            .ctx(|| format!("{what}: making it read-only"))?;
    }
    if plan.readonly_root {
        let vfs = rfs::statvfs("/").ctx(|| "statvfs /".to_string())?;
        let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
        let f = vfs.f_flag;
        for (st, ms) in [
            (rfs::StatVfsMountFlags::NOSUID, libc::MS_NOSUID),
            (rfs::StatVfsMountFlags::NODEV, libc::MS_NODEV),
            (rfs::StatVfsMountFlags::NOEXEC, libc::MS_NOEXEC),
        ] {
            if f.contains(st) {
                flags |= ms;
            }
        }
        m::mount(None, c"/", None, flags, None).ctx(|| "making the root read-only".to_string())?;
    }
    if let Some(p) = plan.rootfs_propagation {
        m::mount(None, c"/", None, p, None).ctx(|| "setting rootfsPropagation".to_string())?;
    }
    Ok(())
}

fn readonly_path(root: &Root, p: &str) -> Result<()> {
    let fd = match root.resolve(p) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::io("resolving", e)),
    };
    let tree = m::open_tree(fd.as_fd(), c"", m::OPEN_TREE_CLONE | m::AT_RECURSIVE | libc::AT_EMPTY_PATH as u32)
        .ctx(|| "cloning".to_string())?;
    let attr = MountAttr { attr_set: m::MOUNT_ATTR_RDONLY, ..Default::default() };
    m::mount_setattr(tree.as_fd(), c"", libc::AT_EMPTY_PATH as u32 | m::AT_RECURSIVE, &attr)
        .ctx(|| "read-only".to_string())?;
    m::move_mount(tree.as_fd(), c"", fd.as_fd(), c"", m::MOVE_MOUNT_F_EMPTY_PATH | m::MOVE_MOUNT_T_EMPTY_PATH)
        .ctx(|| "attaching".to_string())
}

/// The container's /dev/null, verified to be the real character device 1:3. Masking files by
/// binding a /dev/null that the image replaced with a symlink to a procfs file was
/// CVE-2025-31133.
fn verified_dev_null(root: &Root) -> Result<Option<OwnedFd>> {
    let fd = match root.resolve_no_symlinks("/dev/null") {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(Error::Invalid(format!("/dev/null cannot be used for masking: {e}"))),
    };
    let st = rfs::fstat(&fd).ctx(|| "stat /dev/null".to_string())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || rfs::major(st.st_rdev) != 1 || rfs::minor(st.st_rdev) != 3 {
        return Err(Error::Invalid("/dev/null is not the null device (1:3); refusing to mask with it".into()));
    }
    Ok(Some(fd))
}

fn mask_path(root: &Root, p: &str, null: Option<&OwnedFd>, label: Option<&str>) -> Result<()> {
    let fd = match root.resolve(p) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::io("resolving", e)),
    };
    let st = rfs::fstat(&fd).ctx(|| "stat".to_string())?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        // runc labels this tmpfs with linux.mountLabel too.
        let data = cstr("options", &crate::lsm::with_mount_label("size=0k,nr_inodes=1", label))?;
        m::mount(Some(c"tmpfs"), &proc_fd(fd.as_fd()), Some(c"tmpfs"), libc::MS_RDONLY, Some(&data))
            .ctx(|| "mounting an empty read-only tmpfs".to_string())
    } else {
        let null = null.ok_or_else(|| Error::Invalid("no /dev/null to mask files with".into()))?;
        let tree = m::open_tree(null.as_fd(), c"", m::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as u32)
            .ctx(|| "cloning /dev/null".to_string())?;
        m::move_mount(tree.as_fd(), c"", fd.as_fd(), c"", m::MOVE_MOUNT_F_EMPTY_PATH | m::MOVE_MOUNT_T_EMPTY_PATH)
            .ctx(|| "binding /dev/null".to_string())
    }
}

/// Writes `linux.sysctl`, refusing anything that is not on a real procfs.
pub fn write_sysctls(plan: &Plan) -> Result<()> {
    if plan.sysctl.is_empty() {
        return Ok(());
    }
    let root = Root::open(Path::new("/"))?;
    for (key, value) in &plan.sysctl {
        let path = format!("/proc/sys/{key}");
        let fd = rfs::openat2(
            root.fd(),
            rel(&path),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
            rfs::ResolveFlags::IN_ROOT | rfs::ResolveFlags::NO_SYMLINKS | rfs::ResolveFlags::NO_MAGICLINKS,
        )
        .ctx(|| format!("linux.sysctl {}: opening {path}", key.replace('/', ".")))?;
        let sfs = rfs::fstatfs(&fd).ctx(|| format!("statfs {path}"))?;
        if sfs.f_type as i64 != PROC_SUPER_MAGIC {
            return Err(Error::Invalid(format!("linux.sysctl {}: {path} is not on procfs", key.replace('/', "."))));
        }
        rustix::io::write(&fd, value.as_bytes())
            .ctx(|| format!("linux.sysctl {}: writing {value:?}", key.replace('/', ".")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{is_strict, unescape_mountinfo};

    #[test]
    fn strict_targets_whatever_the_spelling() {
        for d in ["/proc", "//proc/.", "/sys/", "/x/../sys/fs", "/dev", "/./dev/pts", "dev/shm"] {
            assert!(is_strict(d, "tmpfs"), "{d}");
        }
        for d in ["/mnt", "/devices", "/proc2", "/sys.d"] {
            assert!(!is_strict(d, "tmpfs"), "{d}");
        }
        assert!(is_strict("/mnt", "proc") && is_strict("/mnt", "sysfs"));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/tab\\011x\\134"), "/tab\tx\\");
        // Not an escape: kept as is, no panic at the end of the string.
        assert_eq!(unescape_mountinfo("/x\\04"), "/x\\04");
        assert_eq!(unescape_mountinfo("/x\\"), "/x\\");
        assert_eq!(unescape_mountinfo("/x\\9999"), "/x\\9999");
    }
}
