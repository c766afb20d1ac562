//! Cgroups for a rootless container (an unprivileged caller, or root in a user namespace
//! that is not the host's, such as rootless podman's).
//!
//! Such a caller can only use a cgroup2 subtree that was delegated to it (the directory it
//! lives in is its own to write, e.g. systemd's `user@UID.service` with `Delegate=yes`).
//! Everything else is skipped, as runc's rootless cgroup manager does: no v1 hierarchy (v1
//! has no safe delegation), and from the delegated subtree only the controllers it has.
//! What the spec asked for that cannot be applied is reported by field, so the caller can
//! warn.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::apply::Ctl;
use crate::error::CgroupError;
use crate::{fsutil, layout, Cgroup, Mode, V2Dir};

/// Whether the calling process may write `path` (an ownership or mode check: a delegated
/// cgroup is one whose files belong to the delegatee).
fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

impl Cgroup {
    /// The container's cgroup for a rootless caller: a cgroup2 directory under a subtree
    /// delegated to the caller, or `None` when there is none (v1 only, or the caller's own
    /// cgroup2 directory is not its own to write). `cgroups_path` is resolved as for
    /// [`Cgroup::resolve`], except that the default is `<own cgroup>/<id>`: the caller can
    /// only create cgroups below its own.
    pub fn resolve_delegated(cgroups_path: Option<&str>, id: &str) -> Result<Option<Cgroup>, CgroupError> {
        let l = layout::discover()?;
        let Some(mount) = l.v2.clone() else { return Ok(None) };
        let own = layout::read_own_cgroups()?;
        let Some(own_path) = layout::own_v2_path(&own) else { return Ok(None) };
        let own_dir = layout::hierarchy_dir(&mount, Some(own_path), "");
        let spec = match cgroups_path.filter(|p| !p.is_empty()) {
            Some(p) => layout::parse_spec_path(Some(p), id)?,
            None => layout::SpecPath::Relative(id.to_owned()),
        };
        let path = match &spec {
            layout::SpecPath::Absolute(r) => layout::hierarchy_dir(&mount, None, r),
            layout::SpecPath::Relative(r) => layout::hierarchy_dir(&mount, Some(own_path), r),
        };
        // Delegated: the nearest existing ancestor of the container's directory is ours to
        // write (mkdir there), and so is the caller's own cgroup's cgroup.procs (moving a
        // process needs write access to the common ancestor of source and destination).
        let mut anchor: PathBuf = path.clone();
        while !anchor.exists() {
            match anchor.parent() {
                Some(p) if p.starts_with(&mount) => anchor = p.to_path_buf(),
                _ => return Ok(None),
            }
        }
        if !anchor.starts_with(&own_dir) || !writable(&anchor) || !writable(&own_dir.join("cgroup.procs")) {
            return Ok(None);
        }
        let controllers = match fsutil::read(&own_dir, "cgroup.controllers") {
            Ok(c) => c.split_ascii_whitespace().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        };
        Ok(Some(Cgroup {
            mode: Mode::Unified,
            v1: Vec::new(),
            v2: Some(V2Dir { mount, path, controllers }),
            delegated: true,
        }))
    }
}

/// The fields of `r` that cgroup `cg` cannot apply (a rootless container's cgroup has only
/// the controllers its delegated subtree has, or there is none at all), and `r` without
/// them. Devices are always left out: a device program needs privileges in the host's user
/// namespace, and a user namespace cannot create device nodes anyway.
pub fn without_unavailable(cg: Option<&Cgroup>, r: &LinuxResources) -> (LinuxResources, Vec<String>) {
    let has = |ctl: Ctl| cg.is_some_and(|cg| ctl.v2_name().is_some_and(|name| cg.v2_has(name)));
    let mut out = r.clone();
    let mut dropped = Vec::new();
    let mut drop_field = |field: &str| dropped.push(format!("linux.resources.{field}"));
    if r.memory().is_some() && !has(Ctl::Memory) {
        drop_field("memory");
        out.set_memory(None);
    }
    if let Some(c) = r.cpu() {
        let limits = c.shares().is_some() || c.quota().is_some() || c.period().is_some() || c.idle().is_some();
        let sets = c.cpus().is_some() || c.mems().is_some();
        let realtime = c.realtime_runtime().is_some() || c.realtime_period().is_some();
        if (limits && !has(Ctl::Cpu)) || (sets && !has(Ctl::Cpuset)) || realtime {
            drop_field("cpu");
            out.set_cpu(None);
        }
    }
    if r.pids().is_some() && !has(Ctl::Pids) {
        drop_field("pids");
        out.set_pids(None);
    }
    if r.block_io().is_some() && !has(Ctl::Blkio) {
        drop_field("blockIO");
        out.set_block_io(None);
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) && !has(Ctl::Hugetlb) {
        drop_field("hugepageLimits");
        out.set_hugepage_limits(None);
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) && !has(Ctl::Rdma) {
        drop_field("rdma");
        out.set_rdma(None);
    }
    if r.network().is_some() {
        // net_cls/net_prio exist on cgroup v1 only.
        drop_field("network");
        out.set_network(None);
    }
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) && cg.is_none() {
        drop_field("unified");
        out.set_unified(None);
    }
    out.set_devices(None);
    (out, dropped)
}
