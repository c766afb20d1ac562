//! `linux.intelRdt`: the container's group in the resctrl filesystem (Intel RDT / AMD PQoS
//! cache and memory-bandwidth allocation).
//!
//! Where no resctrl filesystem is mounted, any `intelRdt` is an error naming the field, as
//! the runtime spec requires ("the runtime MUST generate an error") and runc 1.4 does. runc
//! 1.1 silently ignored an `intelRdt` holding only `closID` there (and refused the schemas);
//! berth does not copy that leniency, since a container asking for a class of service
//! would otherwise run without it unnoticed (docs/spec.md).
//!
//! Where resctrl is mounted, as the runtime spec's rules say:
//!
//! - the group is `<resctrl>/<closID>`, or `<resctrl>/<container id>` without `closID`;
//! - with `closID` and no schema, the group must already exist (it is pre-configured);
//! - with a schema, a missing group is created and its `schemata` written (`l3CacheSchema`
//!   without its `MB:` lines, then `memBwSchema`, then every `schemata` line); an existing
//!   group's `schemata` must already hold the `l3CacheSchema` and `memBwSchema` values;
//! - every process of the container (the init, each exec) is written to the group's `tasks`;
//! - a group berth created is removed with the container; a pre-existing one is left.
//!
//! Monitoring groups (`enableMonitoring`, `enableCMT`, `enableMBM`) are refused: berth reports
//! no resctrl statistics.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxIntelRdt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `RDTGROUP_SUPER_MAGIC`.
const RDTGROUP_SUPER_MAGIC: i64 = 0x0765_5821;

/// The container's resctrl group, as recorded in its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdtGroup {
    /// The group directory.
    pub dir: PathBuf,
    /// Whether berth created it (and so removes it with the container).
    pub created: bool,
}

/// Where the resctrl filesystem is mounted in this mount namespace, if it is.
pub fn mount_point() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mountpoint = pre.split_whitespace().nth(4)?;
        (post.split_whitespace().next()? == "resctrl")
            .then(|| PathBuf::from(crate::rootfs::unescape_mountinfo(mountpoint)))
    })
}

/// Sets up the group of container `id` on this host's resctrl filesystem.
pub fn prepare(rdt: &LinuxIntelRdt, id: &str) -> Result<RdtGroup> {
    let root = mount_point().ok_or_else(|| {
        Error::Invalid(
            "linux.intelRdt: no resctrl filesystem is mounted (Intel RDT is not available or not enabled on this host)"
                .into(),
        )
    })?;
    let sfs =
        rustix::fs::statfs(&root).map_err(|e| Error::io(format!("linux.intelRdt: statfs {}", root.display()), e))?;
    if sfs.f_type as i64 != RDTGROUP_SUPER_MAGIC {
        return Err(Error::Invalid(format!("linux.intelRdt: {} is not a resctrl filesystem", root.display())));
    }
    prepare_at(&root, rdt, id)
}

/// [`prepare`] on the resctrl filesystem at `root` (a fake directory in tests).
pub fn prepare_at(root: &Path, rdt: &LinuxIntelRdt, id: &str) -> Result<RdtGroup> {
    #[allow(deprecated)]
    for (name, on) in [
        ("enableMonitoring", rdt.enable_monitoring()),
        ("enableCMT", rdt.enable_cmt()),
        ("enableMBM", rdt.enable_mbm()),
    ] {
        if *on == Some(true) {
            return Err(Error::Invalid(format!(
                "linux.intelRdt.{name}: resctrl monitoring groups are not supported by berth"
            )));
        }
    }
    let name = rdt.clos_id().as_deref().filter(|c| !c.is_empty()).unwrap_or(id);
    let dir = root.join(name);
    let wanted = schemata_lines(rdt);
    let has_schema = !wanted.is_empty();
    match fs::create_dir(&dir) {
        Ok(()) if rdt.clos_id().is_some() && !has_schema => {
            // A closID without a schema names a pre-configured group: do not make one up.
            let _ = fs::remove_dir(&dir);
            Err(Error::Invalid(format!(
                "linux.intelRdt.closID: resctrl group {} does not exist (without a schema, closID must name a \
                 pre-configured group)",
                dir.display()
            )))
        }
        Ok(()) => {
            let group = RdtGroup { dir, created: true };
            if has_schema {
                if let Err(e) = write_schemata(&group.dir, &wanted) {
                    group.remove();
                    return Err(e);
                }
            }
            Ok(group)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if rdt.clos_id().is_none() {
                return Err(Error::Invalid(format!(
                    "linux.intelRdt: resctrl group {} already exists (another container's?)",
                    dir.display()
                )));
            }
            check_existing(&dir, rdt)?;
            Ok(RdtGroup { dir, created: false })
        }
        Err(e) => Err(Error::io(format!("linux.intelRdt: creating resctrl group {}", dir.display()), e)),
    }
}

/// The lines to write to a new group's `schemata`, in the runtime spec's order.
fn schemata_lines(rdt: &LinuxIntelRdt) -> Vec<String> {
    let mut lines = Vec::new();
    let mb = rdt.mem_bw_schema().as_deref().filter(|s| !s.is_empty());
    if let Some(l3) = rdt.l3_cache_schema().as_deref().filter(|s| !s.is_empty()) {
        // The runtime spec: with memBwSchema, l3CacheSchema's own MB: line gives way to it.
        lines.extend(
            l3.lines().filter(|l| !(mb.is_some() && l.trim_start().starts_with("MB:"))).map(|l| l.trim().to_string()),
        );
    }
    lines.extend(mb.map(str::to_string));
    lines.extend(rdt.schemata().iter().flatten().filter(|l| !l.trim().is_empty()).map(|l| l.trim().to_string()));
    lines
}

fn write_schemata(dir: &Path, lines: &[String]) -> Result<()> {
    let path = dir.join("schemata");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(format!("linux.intelRdt: opening {}", path.display()), e))?;
    for line in lines {
        // One write per line: the kernel applies (or refuses) each resource separately and
        // says which one it refused in `info/last_cmd_status`.
        f.write_all(format!("{line}\n").as_bytes()).map_err(|e| {
            let status = dir
                .parent()
                .and_then(|r| fs::read_to_string(r.join("info/last_cmd_status")).ok())
                .map(|s| format!(" ({})", s.trim()))
                .unwrap_or_default();
            Error::io(format!("linux.intelRdt: writing {line:?} to {}{status}", path.display()), e)
        })?;
    }
    Ok(())
}

/// `resource:domain=value;...` as (resource, [(domain, value)]).
fn parse_line(line: &str) -> Option<(String, Vec<(String, String)>)> {
    let (res, rest) = line.trim().split_once(':')?;
    let doms = rest
        .split(';')
        .filter(|d| !d.trim().is_empty())
        .filter_map(|d| d.split_once('=').map(|(a, b)| (a.trim().to_string(), b.trim().to_string())))
        .collect();
    Some((res.trim().to_string(), doms))
}

/// Values are compared as numbers where both parse as hex (the kernel pads cache bit masks
/// with zeros), else as text.
fn same_value(a: &str, b: &str) -> bool {
    match (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// An existing group must already hold the requested `l3CacheSchema` and `memBwSchema`.
fn check_existing(dir: &Path, rdt: &LinuxIntelRdt) -> Result<()> {
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    if let Some(l3) = rdt.l3_cache_schema().as_deref() {
        wanted.extend(l3.lines().map(|l| ("l3CacheSchema", l)));
    }
    if let Some(mb) = rdt.mem_bw_schema().as_deref() {
        wanted.push(("memBwSchema", mb));
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let path = dir.join("schemata");
    let current =
        fs::read_to_string(&path).map_err(|e| Error::io(format!("linux.intelRdt: reading {}", path.display()), e))?;
    let have: Vec<(String, Vec<(String, String)>)> = current.lines().filter_map(parse_line).collect();
    for (field, line) in wanted {
        let Some((res, doms)) = parse_line(line) else {
            return Err(Error::Invalid(format!("linux.intelRdt.{field}: {line:?} is not a schemata line")));
        };
        let Some((_, cur)) = have.iter().find(|(r, _)| *r == res) else {
            return Err(Error::Invalid(format!(
                "linux.intelRdt.{field}: resctrl group {} has no {res} resource",
                dir.display()
            )));
        };
        for (d, v) in doms {
            if !cur.iter().any(|(cd, cv)| *cd == d && same_value(cv, &v)) {
                return Err(Error::Invalid(format!(
                    "linux.intelRdt.{field}: {line:?} does not match the existing resctrl group {} ({})",
                    dir.display(),
                    current.lines().map(str::trim).find(|l| l.starts_with(&format!("{res}:"))).unwrap_or("")
                )));
            }
        }
    }
    Ok(())
}

impl RdtGroup {
    /// Puts process `pid` in the group.
    pub fn add_task(&self, pid: i32) -> Result<()> {
        let path = self.dir.join("tasks");
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{pid}\n").as_bytes()))
            .map_err(|e| Error::io(format!("linux.intelRdt: adding {pid} to {}", path.display()), e))
    }

    /// Removes the group if berth created it. (Its tasks fall back to the default group.)
    pub fn remove(&self) {
        if self.created {
            if let Err(e) = fs::remove_dir(&self.dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("removing resctrl group {}: {e}", self.dir.display());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdt(v: serde_json::Value) -> LinuxIntelRdt {
        serde_json::from_value(v).unwrap()
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn without_closid_the_container_id_names_a_new_group() {
        let root = tempfile::tempdir().unwrap();
        let g = prepare_at(root.path(), &rdt(serde_json::json!({})), "ctr1").unwrap();
        assert_eq!(g, RdtGroup { dir: root.path().join("ctr1"), created: true });
        assert!(!g.dir.join("schemata").exists(), "no schema, nothing written");
        g.add_task(42).unwrap();
        assert_eq!(read(&g.dir.join("tasks")), "42\n");
        fs::remove_file(g.dir.join("tasks")).unwrap();
        g.remove();
        assert!(!g.dir.exists());
        // A group of that name already there belongs to someone else.
        fs::create_dir(root.path().join("ctr2")).unwrap();
        let e = prepare_at(root.path(), &rdt(serde_json::json!({})), "ctr2").unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
    }

    #[test]
    fn schemas_are_written_in_the_specs_order() {
        let root = tempfile::tempdir().unwrap();
        let g = prepare_at(
            root.path(),
            &rdt(serde_json::json!({"closID": "gold", "l3CacheSchema": "L3:0=7f0;1=1f",
                "memBwSchema": "MB:0=20;1=70", "schemata": ["L2:0=f;1=f"]})),
            "ctr",
        )
        .unwrap();
        assert_eq!(g, RdtGroup { dir: root.path().join("gold"), created: true });
        assert_eq!(read(&g.dir.join("schemata")), "L3:0=7f0;1=1f\nMB:0=20;1=70\nL2:0=f;1=f\n");
    }

    #[test]
    fn l3_cache_schema_gives_its_mb_line_to_mem_bw_schema() {
        let lines = schemata_lines(&rdt(serde_json::json!({"l3CacheSchema": "L3:0=ff", "memBwSchema": "MB:0=50"})));
        assert_eq!(lines, ["L3:0=ff", "MB:0=50"]);
        // (A newline inside l3CacheSchema is refused by berth-spec; here only the rule.)
        let mut r = LinuxIntelRdt::default();
        r.set_l3_cache_schema(Some("L3:0=ff\nMB:0=10".into())).set_mem_bw_schema(Some("MB:0=50".into()));
        assert_eq!(schemata_lines(&r), ["L3:0=ff", "MB:0=50"]);
        r.set_mem_bw_schema(None);
        assert_eq!(schemata_lines(&r), ["L3:0=ff", "MB:0=10"]);
    }

    #[test]
    fn a_closid_without_schema_must_be_preconfigured() {
        let root = tempfile::tempdir().unwrap();
        let e = prepare_at(root.path(), &rdt(serde_json::json!({"closID": "gold"})), "ctr").unwrap_err().to_string();
        assert!(e.starts_with("linux.intelRdt.closID: resctrl group") && e.contains("does not exist"), "{e}");
        assert!(!root.path().join("gold").exists(), "the group made for the check is gone");
        fs::create_dir(root.path().join("gold")).unwrap();
        let g = prepare_at(root.path(), &rdt(serde_json::json!({"closID": "gold"})), "ctr").unwrap();
        assert!(!g.created);
        g.remove();
        assert!(g.dir.exists(), "a pre-existing group is left alone");
    }

    #[test]
    fn an_existing_group_must_hold_the_requested_schemas() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("gold");
        fs::create_dir(&dir).unwrap();
        // The kernel's format: padded bit masks, leading blanks.
        fs::write(dir.join("schemata"), "    L3:0=07f0;1=001f\n    MB:0= 20;1= 70\n").unwrap();
        let ok = rdt(serde_json::json!({"closID": "gold", "l3CacheSchema": "L3:0=7f0;1=1f", "memBwSchema": "MB:1=70"}));
        let g = prepare_at(root.path(), &ok, "ctr").unwrap();
        assert!(!g.created);
        assert_eq!(read(&dir.join("schemata")), "    L3:0=07f0;1=001f\n    MB:0= 20;1= 70\n", "not rewritten");
        let bad = rdt(serde_json::json!({"closID": "gold", "memBwSchema": "MB:0=30"}));
        let e = prepare_at(root.path(), &bad, "ctr").unwrap_err().to_string();
        assert!(e.starts_with("linux.intelRdt.memBwSchema: \"MB:0=30\" does not match"), "{e}");
        assert!(e.ends_with("(MB:0= 20;1= 70)"), "{e}");
        let missing = rdt(serde_json::json!({"closID": "gold", "l3CacheSchema": "L2:0=f"}));
        let e = prepare_at(root.path(), &missing, "ctr").unwrap_err().to_string();
        assert!(e.contains("has no L2 resource"), "{e}");
    }

    #[test]
    fn monitoring_is_refused() {
        let root = tempfile::tempdir().unwrap();
        #[allow(deprecated)]
        for (f, r) in [
            ("enableMonitoring", LinuxIntelRdt::default().set_enable_monitoring(Some(true)).clone()),
            ("enableCMT", LinuxIntelRdt::default().set_enable_cmt(Some(true)).clone()),
            ("enableMBM", LinuxIntelRdt::default().set_enable_mbm(Some(true)).clone()),
        ] {
            let e = prepare_at(root.path(), &r, "ctr").unwrap_err().to_string();
            assert_eq!(e, format!("linux.intelRdt.{f}: resctrl monitoring groups are not supported by berth"));
        }
        assert!(fs::read_dir(root.path()).unwrap().next().is_none(), "nothing created");
        prepare_at(root.path(), &rdt(serde_json::json!({"enableMonitoring": false})), "ctr").unwrap();
    }
}
