//! The task's root filesystem: the mounts containerd's snapshotter returned, mounted on
//! `<bundle>/rootfs` in the host mount namespace (as containerd's runc shim does), and
//! unmounted when the task is deleted or cleaned up.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use containerd_shim_protos::api::Mount;

use crate::error::{Error, Result};

fn cstr(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Invalid(format!("{what} {s:?} contains a NUL byte")))
}

/// Mounts `mounts` in order on `<bundle>/rootfs`. On failure, what was mounted is unmounted.
/// Returns the target, or `None` when there was nothing to mount.
pub fn mount_rootfs(bundle: &Path, mounts: &[Mount]) -> Result<Option<PathBuf>> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
    let t = cstr("rootfs path", &target.to_string_lossy())?;
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(&t, m) {
            unmount_all(&target);
            return Err(Error::io(
                format!("rootfs[{i}]: mounting {} {:?} on {}", m.type_, m.source, target.display()),
                e,
            ));
        }
    }
    Ok(Some(target))
}

fn mount_one(target: &CString, m: &Mount) -> std::io::Result<()> {
    let o = berth_linux::mountopts::parse(&m.options);
    let bad = |_| std::io::Error::from_raw_os_error(libc::EINVAL);
    let source = CString::new(m.source.as_str()).map_err(bad)?;
    let fstype = CString::new(m.type_.as_str()).map_err(bad)?;
    let data = CString::new(o.data.as_str()).map_err(bad)?;
    let fstype = if o.is_bind() || m.type_.is_empty() { None } else { Some(fstype.as_c_str()) };
    let data = if o.data.is_empty() { None } else { Some(data.as_c_str()) };
    berth_sys::mount::mount(Some(&source), target, fstype, o.flags, data)?;
    // A bind mount ignores most flags on creation: apply them with a remount.
    if o.is_bind() && o.flags & !(libc::MS_BIND | libc::MS_REC) != 0 {
        let flags = (o.flags & !libc::MS_REC) | libc::MS_REMOUNT | libc::MS_BIND;
        if let Err(e) = berth_sys::mount::mount(None, target, None, flags, None) {
            let _ = berth_sys::mount::umount2(target, 0);
            return Err(e);
        }
    }
    for p in &o.propagation {
        if let Err(e) = berth_sys::mount::mount(None, target, None, *p, None) {
            let _ = berth_sys::mount::umount2(target, 0);
            return Err(e);
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (like containerd's `mount.UnmountAll`). Missing
/// targets and non-mount points are fine.
pub fn unmount_all(target: &Path) {
    let Ok(t) = CString::new(target.to_string_lossy().as_bytes()) else { return };
    for _ in 0..32 {
        match berth_sys::mount::umount2(&t, 0) {
            Ok(()) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                // Something still uses it: detach so it goes away once unused.
                let _ = berth_sys::mount::umount2(&t, libc::MNT_DETACH);
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounted(p: &Path) -> bool {
        let s = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let p = p.to_string_lossy();
        s.lines().any(|l| l.split(' ').nth(4) == Some(p.as_ref()))
    }

    #[test]
    fn bind_ro_mount_and_unmount_all() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), "x").unwrap();
        let bundle = d.path().join("bundle");
        std::fs::create_dir(&bundle).unwrap();
        let mut m = Mount::new();
        m.type_ = "bind".into();
        m.source = src.to_string_lossy().into_owned();
        m.options = vec!["rbind".into(), "ro".into()];
        let t = mount_rootfs(&bundle, &[m.clone(), m]).unwrap().unwrap();
        assert!(mounted(&t));
        assert_eq!(std::fs::read_to_string(t.join("f")).unwrap(), "x");
        // Read-only took effect.
        assert!(std::fs::write(t.join("g"), "y").is_err());
        unmount_all(&t);
        assert!(!mounted(&t));
        assert!(!t.join("f").exists());
    }

    #[test]
    fn failed_mount_leaves_nothing_mounted_and_names_the_mount() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let mut good = Mount::new();
        good.type_ = "bind".into();
        good.source = src.to_string_lossy().into_owned();
        good.options = vec!["rbind".into()];
        let mut bad = Mount::new();
        bad.type_ = "nosuchfs".into();
        bad.source = "none".into();
        let e = mount_rootfs(d.path(), &[good, bad]).unwrap_err();
        assert!(e.to_string().contains("rootfs[1]"), "{e}");
        assert!(!mounted(&d.path().join("rootfs")));
        assert_eq!(mount_rootfs(d.path(), &[]).unwrap(), None);
    }
}
