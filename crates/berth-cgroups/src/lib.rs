//! The cgroup manager of berth (cgroupfs driver).
//!
//! One type, [`Cgroup`], covers cgroup v1, v2 and hybrid hosts: it holds the
//! resolved directory of the container in every mounted hierarchy, and each
//! `linux.resources` field is written to whichever hierarchy holds its
//! controller. On a hybrid host that means most limits go to v1 while, for
//! example, `hugetlb` goes to the cgroup2 mount if that is where the kernel
//! bound it.
//!
//! A [`Cgroup`] is plain data (`Serialize`/`Deserialize`): `berth create`
//! resolves and creates it, stores it in the container's `state.json`, and
//! later commands (run by other processes) load it and act on the exact same
//! directories without detecting anything again.
//!
//! Start-up cost matters (container start is a hot path), so detection uses
//! `statfs` on the standard mount points and reads `/proc/self/mountinfo`
//! only for non-standard layouts; `/proc/self/cgroup` is read only for
//! relative cgroups paths; writes are one `open`/`write`/`close` each.
//!
//! The systemd cgroup driver is not implemented; `slice:prefix:name` paths
//! are rejected with a clear error.

mod apply;
mod delegate;
mod devices;
mod error;
mod freezer;
mod fsutil;
mod layout;
mod oom;
mod procs;
mod rootless;
mod stats;
mod sub;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use apply::{Ctl, Target};
pub use devices::{default_allowed_devices, runc_device_rules};
pub use error::CgroupError;
pub use freezer::FreezerState;
pub use layout::{detect, Mode};
pub use oom::OomWatcher;
pub use procs::PreparedJoin;
pub use rootless::without_unavailable;
pub use stats::*;
pub use sub::parse_sub_cgroups;

/// Conversions between OCI (v1-flavoured) values and cgroup v2 values, with
/// runc's formulas. Public so callers (e.g. `berth features`) can show them.
pub mod convert {
    pub use crate::apply::{blkio_weight_to_io_weight, shares_to_weight, swap_to_v2};
}

/// The container's directory in one v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct V1Dir {
    /// Controllers of the hierarchy (`name=systemd` for named ones).
    controllers: Vec<String>,
    /// Where the hierarchy is mounted.
    mount: PathBuf,
    /// The container's cgroup directory.
    path: PathBuf,
}

/// The container's directory in the cgroup2 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct V2Dir {
    mount: PathBuf,
    path: PathBuf,
    /// Controllers the kernel offers in this cgroup2 hierarchy (the root's
    /// `cgroup.controllers`); on a hybrid host, usually few.
    controllers: Vec<String>,
}

/// A container's cgroup: resolved absolute directories per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    mode: Mode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    v1: Vec<V1Dir>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v2: Option<V2Dir>,
    /// A cgroup2 subtree delegated to a rootless caller ([`Cgroup::resolve_delegated`]):
    /// only the controllers it has are used, and no device program (loading one needs
    /// privileges in the host's user namespace).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    delegated: bool,
}

impl Cgroup {
    /// Resolves `linux.cgroupsPath` with runc's semantics: an absolute path is
    /// relative to each hierarchy's root; a relative path is relative to the
    /// calling process's own cgroup in that hierarchy (`/proc/self/cgroup`);
    /// `None` (or `""`) means `/berth/<id>`. Paths with `..` are refused, and
    /// so is the systemd driver's `slice:prefix:name` form.
    ///
    /// Nothing is created or changed on the filesystem.
    pub fn resolve(cgroups_path: Option<&str>, id: &str) -> Result<Cgroup, CgroupError> {
        let spec = layout::parse_spec_path(cgroups_path, id)?;
        let l = layout::discover()?;
        Self::from_layout(&l, &spec)
    }

    /// Builds a v2-only cgroup on the cgroup2 mount at `mount`, as if the host
    /// were unified. Lets tests exercise the v2 code paths (eBPF devices,
    /// `cgroup.freeze`, `cgroup.kill`) on a hybrid host's
    /// `/sys/fs/cgroup/unified`. Not for production use.
    #[doc(hidden)]
    pub fn resolve_v2_only_for_tests(mount: &Path, cgroups_path: &str) -> Result<Cgroup, CgroupError> {
        let spec = layout::parse_spec_path(Some(cgroups_path), "unused")?;
        if !matches!(spec, layout::SpecPath::Absolute(_)) {
            return Err(CgroupError::BadPath {
                path: cgroups_path.to_owned(),
                reason: "only absolute paths are supported here".into(),
            });
        }
        let l = layout::Layout { mode: Mode::Unified, v1: Vec::new(), v2: Some(mount.to_path_buf()) };
        Self::from_layout(&l, &spec)
    }

    /// This cgroup without its cgroup2 directory, as on a host with v1
    /// hierarchies only. Lets tests drive the v1-only code paths (the v1
    /// freezer alone) on a hybrid host. Not for production use.
    #[doc(hidden)]
    pub fn without_unified_for_tests(&self) -> Cgroup {
        Cgroup { mode: Mode::Legacy, v1: self.v1.clone(), v2: None, delegated: false }
    }

    fn from_layout(l: &layout::Layout, spec: &layout::SpecPath) -> Result<Cgroup, CgroupError> {
        let (rel, own) = match spec {
            layout::SpecPath::Absolute(r) => (r.as_str(), None),
            layout::SpecPath::Relative(r) => (r.as_str(), Some(layout::read_own_cgroups()?)),
        };
        let mut v1 = Vec::with_capacity(l.v1.len());
        for h in &l.v1 {
            let own_path = match &own {
                None => None,
                Some(o) => Some(layout::own_v1_path(o, &h.controllers).ok_or_else(|| {
                    CgroupError::Detect(format!(
                        "/proc/self/cgroup has no entry for the {} hierarchy mounted at {}",
                        h.controllers.join(","),
                        h.mount.display()
                    ))
                })?),
            };
            v1.push(V1Dir {
                controllers: h.controllers.clone(),
                mount: h.mount.clone(),
                path: layout::hierarchy_dir(&h.mount, own_path, rel),
            });
        }
        let v2 = match &l.v2 {
            None => None,
            Some(mount) => {
                let own_path =
                    match &own {
                        None => None,
                        Some(o) => Some(layout::own_v2_path(o).ok_or_else(|| {
                            CgroupError::Detect("/proc/self/cgroup has no cgroup2 (0::) entry".into())
                        })?),
                    };
                let controllers = match fsutil::read(mount, "cgroup.controllers") {
                    Ok(c) => c.split_ascii_whitespace().map(str::to_owned).collect(),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Vec::new(),
                    Err(e) => return Err(e),
                };
                Some(V2Dir { mount: mount.clone(), path: layout::hierarchy_dir(mount, own_path, rel), controllers })
            }
        };
        Ok(Cgroup { mode: l.mode, v1, v2, delegated: false })
    }

    /// Whether this is a subtree delegated to a rootless caller.
    pub fn is_delegated(&self) -> bool {
        self.delegated
    }

    /// The host mode this cgroup was resolved on.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The cgroup2 directory, for `clone3(CLONE_INTO_CGROUP)`. Present on
    /// unified hosts and on hybrid ones (where it places the child in the v2
    /// cgroup only; call [`Cgroup::add_pid`] with `skip_unified` for v1).
    pub fn unified_dir(&self) -> Option<&Path> {
        self.v2.as_ref().map(|d| d.path.as_path())
    }

    /// The directory holding v1 `controller` (e.g. `"memory"`,
    /// `"name=systemd"`), if mounted.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1.iter().find(|h| h.controllers.iter().any(|c| c == controller)).map(|h| h.path.as_path())
    }

    /// Every directory of this cgroup (v1 hierarchies, then v2).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v1.iter().map(|h| h.path.as_path()).chain(self.v2.iter().map(|d| d.path.as_path()))
    }

    pub(crate) fn v2_dir(&self) -> Option<&Path> {
        self.unified_dir()
    }

    pub(crate) fn v2_has(&self, controller: &str) -> bool {
        self.v2.as_ref().is_some_and(|d| d.controllers.iter().any(|c| c == controller))
    }

    /// Picks the hierarchy for a controller: a mounted v1 hierarchy wins,
    /// else cgroup2 if it offers the controller.
    pub(crate) fn locate(&self, ctl: Ctl) -> Option<Target<'_>> {
        if let Some(d) = self.v1_dir(ctl.v1_name()) {
            return Some(Target::V1(d));
        }
        let v2 = self.v2.as_ref()?;
        let name = ctl.v2_name()?;
        if matches!(ctl, Ctl::Devices | Ctl::Freezer) || self.v2_has(name) {
            Some(Target::V2(&v2.path))
        } else {
            None
        }
    }

    /// One line describing the hierarchies, for error messages.
    pub(crate) fn describe_layout(&self) -> String {
        let mode = match self.mode {
            Mode::Unified => "unified",
            Mode::Hybrid => "hybrid",
            Mode::Legacy => "legacy",
        };
        let v1: Vec<&str> = self
            .v1
            .iter()
            .flat_map(|h| h.controllers.iter().map(String::as_str))
            .filter(|c| !c.starts_with("name="))
            .collect();
        let mut s = format!("{mode} mode");
        if !v1.is_empty() {
            s.push_str(&format!("; v1 controllers: {}", v1.join(", ")));
        }
        if let Some(v2) = &self.v2 {
            s.push_str(&format!(
                "; cgroup v2 at {} with controllers: {}",
                v2.mount.display(),
                if v2.controllers.is_empty() { "none".to_owned() } else { v2.controllers.join(", ") }
            ));
        }
        s
    }

    /// Creates the directory in every hierarchy (every mounted v1 hierarchy,
    /// including `name=systemd`, as runc does, plus cgroup2), enables the
    /// cgroup2 controllers on the way down, initialises v1 cpusets, then
    /// applies `resources`.
    ///
    /// Which cgroup2 controllers are enabled depends on the host: on a unified
    /// host every one the root offers (as runc); on a hybrid host only those
    /// `resources` need, so that a v1-only runtime can still bind the others
    /// (see [`Cgroup::destroy`]). A controller a limit needs that cannot be
    /// enabled is an error naming the field.
    ///
    /// All of `resources` is validated before anything is created. A cgroup
    /// that is frozen (v1 `freezer.state` not `THAWED`, or cgroup2
    /// `cgroup.freeze` set, on the directory itself or an ancestor) is refused
    /// with [`CgroupError::Frozen`] before anything is written to it. On any
    /// later error, every directory this call created (and only those) is
    /// removed before the error is returned.
    ///
    /// `resources.devices` is applied as given, and `None` is an empty rule
    /// list, i.e. deny all: a runtime passes the spec's rules through
    /// [`runc_device_rules`] first, which appends [`default_allowed_devices`].
    ///
    /// Returns the directories it made, for a caller whose own setup fails
    /// later to remove exactly those ([`Created::remove`]).
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<Created, CgroupError> {
        let empty = LinuxResources::default();
        let r = resources.unwrap_or(&empty);
        let fresh_ops = apply::plan(self, r, true, false)?;
        let mut dirs = Vec::new();
        let result = self.create_dirs_and_apply(r, fresh_ops, &mut dirs);
        let v2 = self.v2.clone().filter(|_| self.mode == Mode::Hybrid);
        let created = Created { dirs, v2 };
        if let Err(e) = result {
            if let Err(e) = created.remove() {
                log::warn!("cleaning up after a failed create: {e}");
            }
            return Err(e);
        }
        Ok(created)
    }

    fn create_dirs_and_apply(
        &self,
        r: &LinuxResources,
        fresh_ops: Vec<apply::Op>,
        created: &mut Vec<PathBuf>,
    ) -> Result<(), CgroupError> {
        let mut all_new = true;
        for h in &self.v1 {
            all_new &= mkdir_p(&h.mount, &h.path, created)?;
        }
        if let Some(v2) = &self.v2 {
            all_new &= mkdir_p(&v2.mount, &v2.path, created)?;
        }
        // Before anything is written: a pre-existing cgroup is not ours to change.
        freezer::check_not_frozen(self)?;
        let ops = if all_new { fresh_ops } else { apply::plan(self, r, false, false)? };
        // Held until the limits are written: a concurrent release must not take a
        // controller away in between.
        let _lock = self.delegate(&ops, true)?;
        if let Some(cpuset) = self.v1.iter().find(|h| h.controllers.iter().any(|c| c == "cpuset")) {
            init_v1_cpuset(cpuset, r, created)?;
        }
        apply::execute(&ops)
    }

    /// Enables the cgroup2 controllers `ops` need (and, on create on a unified host, every
    /// one offered) in the ancestors' `cgroup.subtree_control`. On a hybrid host, returns the
    /// shared lock that keeps a concurrent release away until the caller has applied `ops`.
    fn delegate(&self, ops: &[apply::Op], creating: bool) -> Result<Option<delegate::DelegationLock>, CgroupError> {
        let Some(v2) = &self.v2 else {
            return Ok(None);
        };
        let needed = apply::v2_needs(ops, &v2.path);
        let mut wanted: BTreeSet<String> = needed.keys().cloned().collect();
        if creating && self.mode != Mode::Hybrid {
            wanted.extend(v2.controllers.iter().cloned());
        }
        if wanted.is_empty() {
            return Ok(None);
        }
        let lock = if self.mode == Mode::Hybrid { delegate::lock_shared(&v2.mount) } else { None };
        delegate::enable(v2, &wanted, &needed)?;
        Ok(lock)
    }

    /// Moves `pid` into the cgroup in every hierarchy. With `skip_unified`,
    /// cgroup2 is left alone (the process was created there with
    /// `CLONE_INTO_CGROUP`).
    pub fn add_pid(&self, pid: i32, skip_unified: bool) -> Result<(), CgroupError> {
        if pid <= 0 {
            return Err(CgroupError::invalid("pid", format!("{pid} is not a process id")));
        }
        let v = pid.to_string();
        for h in &self.v1 {
            procs::write_procs(&h.path, &v)?;
        }
        if let (Some(v2), false) = (&self.v2, skip_unified) {
            procs::write_procs(&v2.path, &v)?;
        }
        Ok(())
    }

    /// Moves the calling process into the cgroup in every hierarchy (writes
    /// `0` to each `cgroup.procs`), for `berth exec`'s child.
    pub fn join_self(&self) -> Result<(), CgroupError> {
        for d in self.dirs() {
            procs::write_procs(d, "0")?;
        }
        Ok(())
    }

    /// Opens every `cgroup.procs` now so that a forked child can join with
    /// [`PreparedJoin::join`], which only issues `write(2)`s (no allocation,
    /// async-signal-safe).
    pub fn prepare_join(&self, skip_unified: bool) -> Result<PreparedJoin, CgroupError> {
        let dirs: Vec<&Path> = self
            .v1
            .iter()
            .map(|h| h.path.as_path())
            .chain(self.v2.iter().filter(|_| !skip_unified).map(|d| d.path.as_path()))
            .collect();
        PreparedJoin::open(&dirs)
    }

    /// Applies `r` to the live cgroup (`berth update`). Fields that are absent
    /// are left as they are; `devices` is replaced only if present (minimal
    /// transition on v1, atomic program replacement on v2), by exactly the
    /// rules given: compose them with [`runc_device_rules`] as for create.
    pub fn update(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let ops = apply::plan(self, r, false, true)?;
        // A limit the container did not have at create may need a cgroup2 controller
        // that was left off (hybrid hosts enable only what is needed).
        let _lock = self.delegate(&ops, false)?;
        apply::execute(&ops)
    }

    /// Freezes every process: cgroup2 `cgroup.freeze` (waiting for `frozen 1`
    /// in `cgroup.events`) wherever the container has a cgroup2 directory,
    /// then the v1 `freezer.state` (waiting for `FROZEN`, then checking in
    /// `/proc` that every task really stopped and freezing again if one did
    /// not). On error nothing is left frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        freezer::freeze(self)
    }

    /// Thaws both freezers.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        freezer::thaw(self)
    }

    /// Current freezer state, over both freezers: `Frozen` only when every
    /// freezer asked to freeze has frozen.
    pub fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        freezer::state(self)
    }

    /// The hierarchy used to list processes: cgroup2 on unified hosts, else
    /// a v1 hierarchy every process is added to.
    fn primary_dir(&self) -> Option<&Path> {
        if self.mode == Mode::Unified {
            return self.unified_dir();
        }
        ["pids", "freezer", "memory", "devices", "cpu"]
            .iter()
            .find_map(|c| self.v1_dir(c))
            .or_else(|| self.v1.first().map(|h| h.path.as_path()))
            .or_else(|| self.unified_dir())
    }

    /// Every process in the cgroup and its descendants.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some(dir) = self.primary_dir() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        procs::collect_pids(dir, &mut out)?;
        Ok(out)
    }

    /// Sends `sig` to every process (`kill --all`). On cgroup2 with
    /// `cgroup.kill`, SIGKILL is a single write; otherwise the cgroup is frozen
    /// so no process can fork between listing and signalling, then thawed
    /// (left frozen if it was frozen before, except for SIGKILL).
    pub fn signal_all(&self, sig: i32) -> Result<(), CgroupError> {
        procs::signal_all(self, sig)
    }

    /// Resource usage, in the shape of runc's `events --stats` data.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        stats::collect(self)
    }

    /// Removes the directory in every hierarchy (sub-cgroups first), retrying
    /// briefly while the kernel reports EBUSY (exiting processes). Missing
    /// directories are fine. Every hierarchy is attempted; the first error is
    /// returned. Parents like `/berth` are shared and stay.
    ///
    /// On a hybrid host it then disables, in those parents and the cgroup2
    /// root, the controllers no remaining cgroup uses (no limit set, not
    /// enabled further down), so that a v1-only runtime can bind them again.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for d in self.dirs() {
            if let Err(e) = procs::remove_tree(d) {
                first.get_or_insert(e);
            }
        }
        if let (Some(v2), Mode::Hybrid, None) = (&self.v2, self.mode, &first) {
            delegate::release(v2);
        }
        first.map_or(Ok(()), Err)
    }

    /// A pollable watcher of OOM events (v1: eventfd on
    /// `memory.oom_control`; v2: inotify on `memory.events`).
    pub fn oom_watcher(&self) -> Result<OomWatcher, CgroupError> {
        match self.locate(Ctl::Memory) {
            Some(Target::V1(d)) => OomWatcher::v1(d),
            Some(Target::V2(d)) => OomWatcher::v2(d),
            None => Err(CgroupError::NoController { op: "oom_watcher", controller: "memory" }),
        }
    }

    /// How many processes the OOM killer killed in this cgroup (v1
    /// `memory.oom_control` `oom_kill`, v2 `memory.events` `oom_kill`).
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        let (dir, file) = match self.locate(Ctl::Memory) {
            Some(Target::V1(d)) => (d, "memory.oom_control"),
            Some(Target::V2(d)) => (d, "memory.events"),
            None => return Err(CgroupError::NoController { op: "oom_kill_count", controller: "memory" }),
        };
        let content = fsutil::read(dir, file)?;
        // Kernels before 4.13 have no oom_kill line in v1: report 0.
        Ok(fsutil::value_of(&content, "oom_kill").unwrap_or(0))
    }
}

/// The directories one [`Cgroup::create`] made (parents before children). A
/// pre-existing cgroup (a `cgroupsPath` an administrator prepared) is not in
/// it, so the cleanup of a failed start leaves that one alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Created {
    dirs: Vec<PathBuf>,
    /// The cgroup2 directory on a hybrid host, whose controllers are released
    /// after the removal as [`Cgroup::destroy`] does.
    v2: Option<V2Dir>,
}

impl Created {
    /// The directories, parents first.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Removes the directories, children first, retrying briefly while exiting
    /// processes keep one busy. Every one is attempted; the first error is
    /// returned. On a hybrid host, then releases the cgroup2 controllers no
    /// cgroup uses any more, as [`Cgroup::destroy`] does.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for dir in self.dirs.iter().rev() {
            if let Err(e) = procs::rmdir_retry(dir) {
                first.get_or_insert(e);
            }
        }
        if let (Some(v2), None) = (&self.v2, &first) {
            delegate::release(v2);
        }
        first.map_or(Ok(()), Err)
    }
}

/// Creates `path` and any missing parents below `mount`, recording what it
/// created. Returns whether `path` itself was created. The common case (parent
/// exists) is one `mkdir`.
fn mkdir_p(mount: &Path, path: &Path, created: &mut Vec<PathBuf>) -> Result<bool, CgroupError> {
    use std::os::unix::fs::DirBuilderExt;
    let mkdir = |p: &Path| std::fs::DirBuilder::new().mode(0o755).create(p);
    match mkdir(path) {
        Ok(()) => {
            created.push(path.to_path_buf());
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path != mount => {
            let parent = path
                .parent()
                .filter(|p| p.starts_with(mount))
                .ok_or_else(|| CgroupError::Mkdir { path: path.to_path_buf(), source: e })?;
            mkdir_p(mount, parent, created)?;
            match mkdir(path) {
                Ok(()) => {
                    created.push(path.to_path_buf());
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(source) => Err(CgroupError::Mkdir { path: path.to_path_buf(), source }),
            }
        }
        Err(source) => Err(CgroupError::Mkdir { path: path.to_path_buf(), source }),
    }
}

/// A new v1 cpuset has empty `cpus`/`mems`, and no task can join it until
/// they are set: copy them from the parent into each directory we created
/// (top-down), except values the spec sets on the leaf itself.
fn init_v1_cpuset(h: &V1Dir, r: &LinuxResources, created: &[PathBuf]) -> Result<(), CgroupError> {
    let spec_sets = |file: &str| {
        r.cpu().as_ref().is_some_and(|c| {
            let v = if file == "cpuset.cpus" { c.cpus() } else { c.mems() };
            v.as_deref().is_some_and(|s| !s.is_empty())
        })
    };
    for dir in created.iter().filter(|d| d.starts_with(&h.mount)) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if dir == &h.path && spec_sets(file) {
                continue;
            }
            let value = cpuset_of_parent(&h.mount, dir, file)?;
            fsutil::write(dir, file, &value, None)?;
        }
    }
    Ok(())
}

/// The parent's value of `file`, fixing up (like runc's `ensureParent`) an
/// ancestor left empty by someone else.
fn cpuset_of_parent(mount: &Path, dir: &Path, file: &str) -> Result<String, CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(String::new());
    };
    let v = fsutil::read(parent, file)?.trim().to_owned();
    if !v.is_empty() || parent == mount || !parent.starts_with(mount) {
        return Ok(v);
    }
    let up = cpuset_of_parent(mount, parent, file)?;
    fsutil::write(parent, file, &up, None)?;
    Ok(up)
}

#[cfg(test)]
mod tests;
