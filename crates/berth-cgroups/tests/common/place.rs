//! Where each cgroup controller lives on this host, found without berth's code, and how a
//! test reports that it cannot run here. Shared with the CLI tests
//! (`crates/berth-cli/tests/common/mod.rs` includes this file).
//!
//! A controller is bound to exactly one hierarchy: a v1 hierarchy (`/proc/cgroups` gives its
//! id, not 0) or the cgroup2 one (id 0). A v1 hierarchy may be mounted anywhere, several
//! times, or nowhere in this mount namespace: another runtime (crun mounts v1 controllers it
//! misses) may have bound it and left, and the hierarchy lives on while it has cgroups. Tests
//! ask [`place_of`] and test the controller where it is; a controller that is nowhere in reach
//! is reported with [`skip`], never counted as a pass in silence.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a controller can be reached from this mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Bound to a v1 hierarchy mounted (with its root) here.
    V1(PathBuf),
    /// Bound to cgroup2, mounted here, whose root offers it in `cgroup.controllers`.
    V2(PathBuf),
    /// Unreachable, and why.
    Nowhere(String),
}

/// One line of `/proc/cgroups`: hierarchy id and whether the controller is enabled.
fn proc_cgroups(controller: &str) -> Option<(u32, bool)> {
    let text = std::fs::read_to_string("/proc/cgroups").ok()?;
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first() != Some(&controller) {
            return None;
        }
        Some((f.get(1)?.parse().ok()?, f.get(3) == Some(&"1")))
    })
}

/// The cgroup mounts of this mount namespace: (root inside the hierarchy, mount point,
/// filesystem type, super options).
pub fn cgroup_mounts() -> Vec<(String, PathBuf, String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("/proc/self/mountinfo");
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let fstype = *post.first()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            let point = pre.get(4)?.replace("\\040", " ");
            Some((pre.get(3)?.to_string(), PathBuf::from(point), fstype.to_owned(), post.get(2)?.to_string()))
        })
        .collect()
}

/// The cgroup2 mount of this mount namespace, if any.
pub fn cgroup2_mount() -> Option<PathBuf> {
    cgroup_mounts().into_iter().find(|(root, _, t, _)| t == "cgroup2" && root == "/").map(|(_, p, _, _)| p)
}

/// Where `controller` (e.g. `"hugetlb"`) can be reached from here.
pub fn place_of(controller: &str) -> Place {
    let Some((hierarchy, enabled)) = proc_cgroups(controller) else {
        return Place::Nowhere(format!("this kernel has no {controller} controller (not in /proc/cgroups)"));
    };
    if !enabled {
        return Place::Nowhere(format!(
            "the {controller} controller is disabled (cgroup_disable= on the kernel command line)"
        ));
    }
    let mounts = cgroup_mounts();
    if hierarchy != 0 {
        let mut views = Vec::new();
        for (root, point, fstype, opts) in &mounts {
            if fstype == "cgroup" && opts.split(',').any(|o| o == controller) {
                if root == "/" {
                    return Place::V1(point.clone());
                }
                views.push(format!("{} (only its subtree {root})", point.display()));
            }
        }
        return Place::Nowhere(if views.is_empty() {
            format!(
                "{controller} is bound to cgroup v1 hierarchy {hierarchy} (/proc/cgroups), which is not mounted in this \
                 mount namespace (another runtime bound it and left it unmounted)"
            )
        } else {
            format!(
                "{controller} is bound to cgroup v1 hierarchy {hierarchy}, mounted here only as {}",
                views.join(", ")
            )
        });
    }
    let Some(v2) = cgroup2_mount() else {
        return Place::Nowhere(format!("{controller} is on cgroup2 (hierarchy 0), which is not mounted here"));
    };
    let offered = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    if offered.split_whitespace().any(|c| c == controller) {
        Place::V2(v2)
    } else {
        Place::Nowhere(format!(
            "{controller} is bound to no v1 hierarchy and cgroup2 at {} does not offer it (a v1-only controller)",
            v2.display()
        ))
    }
}

/// Reports that the calling test cannot test what it is about on this host, and why: on the
/// test's real stderr (not captured by the harness, so it shows in every `cargo test` run)
/// and in `skipped-tests.log` under `CARGO_TARGET_TMPDIR`, which `scripts/test` prints as a
/// summary. The test then returns; it was not a pass.
pub fn skip(reason: &str) {
    let name = std::thread::current().name().unwrap_or("<unnamed test>").to_owned();
    let line = format!("SKIPPED {name}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.log");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
        // One write per line: O_APPEND keeps concurrent tests' lines whole.
        let _ = f.write_all(line.as_bytes());
    }
}

/// [`skip`] for one part of a test that goes on with the rest.
pub fn skip_part(part: &str, reason: &str) {
    skip(&format!("({part}) {reason}"));
}

/// The hierarchy id `/proc/cgroups` gives `controller` (0: cgroup2), if the kernel has it.
pub fn hierarchy_of(controller: &str) -> Option<u32> {
    proc_cgroups(controller).map(|(h, _)| h)
}

/// `controller` bound to a v1 hierarchy that is mounted nowhere, as another runtime can leave
/// it (crun's users bind hugetlb to v1; a runtime that mounts it in its own mount namespace
/// and keeps cgroups there leaves exactly this). Undone on drop.
pub struct BoundUnmounted {
    controller: String,
    /// The cgroup that keeps the hierarchy alive while it is not mounted.
    hold: String,
    pub hierarchy: u32,
}

/// Runs `script` with `$1` = controller, `$2` = a fresh mount point, `$3` = `hold`, in a
/// private mount namespace (nothing it mounts shows outside, and it all goes when it exits).
fn in_private_mount_ns(script: &str, controller: &str, hold: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", controller])
        .arg(dir.path())
        .arg(hold)
        .output()
        .map_err(|e| format!("running unshare: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{} {text}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl BoundUnmounted {
    /// Binds a `controller` that is on cgroup2 and in use nowhere: mounts it as v1 in a private
    /// mount namespace, makes one cgroup there, and lets the namespace go.
    pub fn new(controller: &str) -> Result<BoundUnmounted, String> {
        let hold = format!("berth-test-hold-{}", std::process::id());
        let id = in_private_mount_ns(
            "mount -t cgroup -o \"$1\" cgroup \"$2\" || exit 1
             mkdir \"$2/$3\" || { umount \"$2\"; exit 1; }
             awk -v c=\"$1\" '$1 == c { print $2 }' /proc/cgroups
             umount \"$2\"",
            controller,
            &hold,
        )?;
        let hierarchy = id.parse().map_err(|_| format!("no hierarchy id for {controller}: {id:?}"))?;
        Ok(BoundUnmounted { controller: controller.to_owned(), hold, hierarchy })
    }
}

impl Drop for BoundUnmounted {
    fn drop(&mut self) {
        // The same options find the same hierarchy; without its last cgroup and mount the
        // kernel destroys it and the controller goes back to cgroup2. By hand:
        // unshare -m sh -c 'mount -t cgroup -o C cgroup /mnt && rmdir /mnt/berth-test-hold-*',
        // then the same without the rmdir until /proc/cgroups shows hierarchy 0 for C.
        let r = in_private_mount_ns(
            "mount -t cgroup -o \"$1\" cgroup \"$2\" || exit 1
             rmdir \"$2/$3\"; s=$?
             umount \"$2\"
             exit $s",
            &self.controller,
            &self.hold,
        );
        if let Err(e) = r {
            let _ = std::io::stderr().write_all(format!("unbinding {}: {e}\n", self.controller).as_bytes());
        }
        release_unmounted_hierarchy(&self.controller);
    }
}

/// Waits for `controller`'s v1 hierarchy, now without cgroups and mounts, to be destroyed.
/// The kernel destroys an unmounted hierarchy only if no cgroup was left in it when its last
/// mount went, and one just removed may still have been on its way out: then mount and
/// unmount it again (privately). Destruction is asynchronous, so each round first waits a
/// while for the controller to be back on cgroup2 (another mount meanwhile would only make a
/// new hierarchy).
pub fn release_unmounted_hierarchy(controller: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let round = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while std::time::Instant::now() < round {
            if hierarchy_of(controller) == Some(0) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if std::time::Instant::now() > deadline {
            let _ = std::io::stderr().write_all(
                format!("{controller} is still bound to a v1 hierarchy (see BoundUnmounted's drop to undo it)\n")
                    .as_bytes(),
            );
            return;
        }
        let _ = in_private_mount_ns("mount -t cgroup -o \"$1\" cgroup \"$2\" && umount \"$2\"", controller, "");
    }
}

/// Runs [`release_unmounted_hierarchy`] on drop, also when the test fails.
pub struct ReleaseHierarchyOnDrop(pub &'static str);

impl Drop for ReleaseHierarchyOnDrop {
    fn drop(&mut self) {
        release_unmounted_hierarchy(self.0);
    }
}
