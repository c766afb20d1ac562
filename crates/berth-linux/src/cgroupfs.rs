//! What a `type: cgroup` mount shows inside the container: one directory per host
//! hierarchy, each either a fresh cgroup mount (inside a cgroup namespace, where it shows the
//! container's own cgroup as the root) or a bind of the container's cgroup directory.

use std::path::Path;

use berth_cgroups::Mode;

use crate::plan::CgroupMountPlan;

const BASE: &str = "/sys/fs/cgroup";

/// The per-hierarchy plan for container cgroup `cg`.
pub fn mount_plan(cg: &berth_cgroups::Cgroup) -> Vec<CgroupMountPlan> {
    let unified = cg.unified_dir().map(Path::to_path_buf);
    if cg.mode() == Mode::Unified {
        return unified
            .map(|d| {
                vec![CgroupMountPlan {
                    name: String::new(),
                    host_dir: d,
                    fstype: "cgroup2".into(),
                    data: String::new(),
                }]
            })
            .unwrap_or_default();
    }
    let mut out = Vec::new();
    for dir in cg.dirs() {
        // Hierarchies are mounted at /sys/fs/cgroup/<name> on v1 and hybrid hosts.
        let Ok(rest) = dir.strip_prefix(BASE) else {
            continue;
        };
        let Some(name) = rest.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()) else {
            continue;
        };
        let is_v2 = unified.as_deref() == Some(dir);
        let data = if is_v2 {
            String::new()
        } else if cg.v1_dir(&format!("name={name}")).is_some() {
            format!("none,name={name}")
        } else {
            name.clone()
        };
        out.push(CgroupMountPlan {
            name,
            host_dir: dir.to_path_buf(),
            fstype: if is_v2 { "cgroup2".into() } else { "cgroup".into() },
            data,
        });
    }
    out
}
