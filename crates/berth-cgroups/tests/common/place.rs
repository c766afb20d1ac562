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
