//! Translating `linux.resources` into cgroup file writes.
//!
//! Work is split in two phases so that a bad spec fails before anything is
//! touched: [`plan`] validates every field, picks the hierarchy that holds
//! each controller (v1 or v2, per controller, which is what a hybrid host
//! needs) and converts values (shares to weight, memory+swap to swap, ...)
//! into a list of [`Op`]s; [`execute`] then performs them. Ops that need the
//! live state (write order of memory and swap limits, device rule
//! transitions) read it at execution time.
//!
//! Value conventions follow runc: `0` means "unset" for memory, CPU shares,
//! quota and period, and block IO weights; `-1` means "unlimited".

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use berth_sys::bpf;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
use rustix::fs::{Mode as FileMode, OFlags};

use crate::devices::{self, Emulator};
use crate::error::CgroupError;
use crate::fsutil;
use crate::Cgroup;

/// Resource kinds, by the controller that implements them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctl {
    Memory,
    Cpu,
    CpuAcct,
    Cpuset,
    Pids,
    Blkio,
    Hugetlb,
    NetCls,
    NetPrio,
    Devices,
    Freezer,
    Rdma,
}

impl Ctl {
    pub fn v1_name(self) -> &'static str {
        match self {
            Ctl::Memory => "memory",
            Ctl::Cpu => "cpu",
            Ctl::CpuAcct => "cpuacct",
            Ctl::Cpuset => "cpuset",
            Ctl::Pids => "pids",
            Ctl::Blkio => "blkio",
            Ctl::Hugetlb => "hugetlb",
            Ctl::NetCls => "net_cls",
            Ctl::NetPrio => "net_prio",
            Ctl::Devices => "devices",
            Ctl::Freezer => "freezer",
            Ctl::Rdma => "rdma",
        }
    }

    /// The cgroup2 controller doing the same job. `devices` and `freezer`
    /// are not listed in `cgroup.controllers` but always exist on v2 (eBPF
    /// and `cgroup.freeze`); net_cls/net_prio have no v2 counterpart.
    pub fn v2_name(self) -> Option<&'static str> {
        match self {
            Ctl::Memory => Some("memory"),
            Ctl::Cpu | Ctl::CpuAcct => Some("cpu"),
            Ctl::Cpuset => Some("cpuset"),
            Ctl::Pids => Some("pids"),
            Ctl::Blkio => Some("io"),
            Ctl::Hugetlb => Some("hugetlb"),
            Ctl::Rdma => Some("rdma"),
            Ctl::Devices => Some("devices"),
            Ctl::Freezer => Some("freezer"),
            Ctl::NetCls | Ctl::NetPrio => None,
        }
    }
}

/// Where a controller lives for this cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl<'a> Target<'a> {
    pub fn dir(self) -> &'a Path {
        match self {
            Target::V1(d) | Target::V2(d) => d,
        }
    }
}

/// What to do when the file of an optional write does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Missing {
    Fail,
    Skip,
    Warn(String),
}

/// One step of applying resources.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Write {
        dir: PathBuf,
        file: String,
        value: String,
        field: String,
        missing: Missing,
    },
    /// Write to the first of `files` that exists (blkio.weight vs the BFQ file).
    FirstOf {
        dir: PathBuf,
        files: [&'static str; 2],
        value: String,
        field: String,
    },
    /// v1 memory + memsw limits, ordered so the kernel's memsw >= memory
    /// invariant holds at every step.
    MemoryV1 {
        dir: PathBuf,
        limit: Option<i64>,
        swap: Option<i64>,
        fresh: bool,
    },
    /// v2 `checkBeforeUpdate`: refuse limits at or below current usage.
    CheckUsageV2 {
        dir: PathBuf,
        limit: Option<i64>,
        swap: Option<i64>,
    },
    /// v1 CFS period/quota/burst with runc's retry for transient EINVAL.
    CpuV1Bandwidth {
        dir: PathBuf,
        period: Option<u64>,
        quota: Option<i64>,
        burst: Option<u64>,
    },
    /// v2 `cpu.max` (+ `cpu.max.burst`); missing halves are kept from the
    /// live value on update.
    CpuV2Max {
        dir: PathBuf,
        quota: Option<i64>,
        period: Option<u64>,
        burst: Option<u64>,
        fresh: bool,
    },
    /// v2 `io.bfq.weight`, else `io.weight` with the runc conversion.
    IoWeightV2 {
        dir: PathBuf,
        weight: u16,
    },
    DevicesV1 {
        dir: PathBuf,
        target: Emulator,
        fresh: bool,
    },
    DevicesV2 {
        dir: PathBuf,
        program: Vec<bpf::Insn>,
        fresh: bool,
    },
}

const F_MEM: &str = "linux.resources.memory";
const F_CPU: &str = "linux.resources.cpu";
const F_BLKIO: &str = "linux.resources.blockIO";

fn w(t: Target<'_>, file: impl Into<String>, value: impl Into<String>, field: impl Into<String>) -> Op {
    Op::Write {
        dir: t.dir().to_path_buf(),
        file: file.into(),
        value: value.into(),
        field: field.into(),
        missing: Missing::Fail,
    }
}

fn w_opt(
    t: Target<'_>,
    file: impl Into<String>,
    value: impl Into<String>,
    field: impl Into<String>,
    missing: Missing,
) -> Op {
    Op::Write { dir: t.dir().to_path_buf(), file: file.into(), value: value.into(), field: field.into(), missing }
}

/// Needs `ctl` for `field`, or explains why this host cannot do it.
fn need<'a>(cg: &'a Cgroup, ctl: Ctl, field: &str) -> Result<Target<'a>, CgroupError> {
    cg.locate(ctl).ok_or_else(|| {
        CgroupError::unsupported(
            field,
            format!(
                "the {} controller is not available on this host{} ({})",
                ctl.v1_name(),
                why_unreachable(ctl.v1_name()),
                cg.describe_layout()
            ),
        )
    })
}

/// ": <reason>" when the kernel has bound `controller` to a v1 hierarchy out of reach
/// (another runtime's), or has no such controller at all; empty otherwise.
fn why_unreachable(controller: &str) -> String {
    crate::layout::unreachable_reason(controller).map(|why| format!(": {why}")).unwrap_or_default()
}

/// A byte count: `-1` is unlimited, `0` unset, other negatives invalid.
fn bytes(v: Option<i64>, field: &str) -> Result<Option<i64>, CgroupError> {
    match v {
        None | Some(0) => Ok(None),
        Some(n) if n < -1 => {
            Err(CgroupError::invalid(field, format!("{n} is neither a byte count nor -1 (unlimited)")))
        }
        Some(n) => Ok(Some(n)),
    }
}

/// v2 spelling of a limit: -1 is `max`.
fn v2_num(v: i64) -> String {
    if v == -1 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

/// runc's `ConvertCPUSharesToCgroupV2Value`: [2, 262144] onto [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + shares.saturating_sub(2).saturating_mul(9999) / 262_142
}

/// runc's `ConvertBlkIOToIOWeightValue`: [10, 1000] onto [1, 10000].
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight).saturating_sub(10)) * 9999 / 990
}

/// runc's `ConvertMemorySwapToCgroupV2Value`: OCI `swap` is memory+swap,
/// `memory.swap.max` is swap alone. Inputs use 0 for unset, -1 for max.
pub fn swap_to_v2(swap: i64, memory: i64) -> Result<i64, String> {
    match (swap, memory) {
        (0, -1) => Ok(-1),
        (-1 | 0, _) => Ok(swap),
        (_, -1) => Ok(swap),
        (_, 0) => Err("unable to set a swap limit without a memory limit".into()),
        (_, m) if m < 0 => Err(format!("invalid memory value {m}")),
        (s, m) if s < m => Err(format!(
            "cannot set swap below the memory limit (memory+swap {s} < memory {m}); swap is the memory+swap total"
        )),
        (s, m) => Ok(s - m),
    }
}

/// Builds the operations for `r`. `fresh` means the cgroup directories were
/// just created by us (so they hold inherited defaults and no processes).
pub(crate) fn plan(cg: &Cgroup, r: &LinuxResources, fresh: bool, updating: bool) -> Result<Vec<Op>, CgroupError> {
    let mut ops = Vec::new();
    // Same order as runc: cpuset and devices first (a task cannot join a v1
    // cpuset without cpus/mems), then the limits.
    if let Some(cpu) = r.cpu() {
        plan_cpuset(cg, cpu, &mut ops)?;
    }
    plan_devices(cg, r, fresh, updating, &mut ops)?;
    if let Some(m) = r.memory() {
        plan_memory(cg, m, fresh, &mut ops)?;
    }
    if let Some(cpu) = r.cpu() {
        plan_cpu(cg, cpu, fresh, &mut ops)?;
    }
    if let Some(p) = r.pids() {
        let t = need(cg, Ctl::Pids, "linux.resources.pids.limit")?;
        let v = if p.limit() > 0 { p.limit().to_string() } else { "max".to_owned() };
        ops.push(w(t, "pids.max", v, "linux.resources.pids.limit"));
    }
    if let Some(b) = r.block_io() {
        plan_blkio(cg, b, &mut ops)?;
    }
    if let Some(h) = r.hugepage_limits() {
        plan_hugetlb(cg, h, &mut ops)?;
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            let t = net_target(cg, Ctl::NetCls, "linux.resources.network.classID")?;
            ops.push(w(t, "net_cls.classid", id.to_string(), "linux.resources.network.classID"));
        }
        for (i, p) in n.priorities().iter().flatten().enumerate() {
            let field = format!("linux.resources.network.priorities[{i}]");
            let t = net_target(cg, Ctl::NetPrio, &field)?;
            if p.name().is_empty() || p.name().chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(CgroupError::invalid(
                    format!("{field}.name"),
                    format!("{:?} is not an interface name", p.name()),
                ));
            }
            ops.push(w(t, "net_prio.ifpriomap", format!("{} {}", p.name(), p.priority()), field));
        }
    }
    if let Some(rdma) = r.rdma() {
        let sorted: BTreeMap<_, _> = rdma.iter().collect();
        for (dev, lim) in sorted {
            let field = format!("linux.resources.rdma[{dev:?}]");
            if dev.is_empty() || dev.chars().any(char::is_whitespace) {
                return Err(CgroupError::invalid(field, "device name must be non-empty without whitespace"));
            }
            let mut s = dev.clone();
            if let Some(h) = lim.hca_handles() {
                s.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = lim.hca_objects() {
                s.push_str(&format!(" hca_object={o}"));
            }
            if s.len() == dev.len() {
                continue;
            }
            let t = need(cg, Ctl::Rdma, &field)?;
            ops.push(w(t, "rdma.max", s, field));
        }
    }
    if let Some(u) = r.unified() {
        plan_unified(cg, u, &mut ops)?;
    }
    Ok(ops)
}

fn net_target<'a>(cg: &'a Cgroup, ctl: Ctl, field: &str) -> Result<Target<'a>, CgroupError> {
    match cg.locate(ctl) {
        Some(t @ Target::V1(_)) => Ok(t),
        _ => Err(CgroupError::unsupported(
            field,
            format!(
                "needs the cgroup v1 {} controller, which is not mounted on this host{} ({}); cgroup v2 has no equivalent (use eBPF/nftables instead)",
                ctl.v1_name(),
                why_unreachable(ctl.v1_name()),
                cg.describe_layout()
            ),
        )),
    }
}

fn plan_cpuset(cg: &Cgroup, cpu: &LinuxCpu, ops: &mut Vec<Op>) -> Result<(), CgroupError> {
    for (v, file, field) in [
        (cpu.cpus(), "cpuset.cpus", "linux.resources.cpu.cpus"),
        (cpu.mems(), "cpuset.mems", "linux.resources.cpu.mems"),
    ] {
        let Some(v) = v.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        if !v.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '-') {
            return Err(CgroupError::invalid(field, format!("{v:?} is not a list like \"0-3,7\"")));
        }
        let t = need(cg, Ctl::Cpuset, field)?;
        ops.push(w(t, file, v, field));
    }
    Ok(())
}

fn plan_devices(
    cg: &Cgroup,
    r: &LinuxResources,
    fresh: bool,
    updating: bool,
    ops: &mut Vec<Op>,
) -> Result<(), CgroupError> {
    if cg.is_delegated() {
        // A rootless caller cannot load a device program, and its user namespace cannot
        // create device nodes anyway.
        return Ok(());
    }
    let rules = match r.devices() {
        Some(d) => d.as_slice(),
        // On update, absent means "leave as is"; on create it is an empty
        // list, i.e. deny all (the caller appends the default allow list).
        None if updating => return Ok(()),
        None => &[],
    };
    let target = Emulator::from_rules(&devices::normalise(rules)?)?;
    match cg.locate(Ctl::Devices) {
        Some(Target::V1(dir)) => ops.push(Op::DevicesV1 { dir: dir.to_path_buf(), target, fresh }),
        Some(Target::V2(dir)) => ops.push(Op::DevicesV2 { dir: dir.to_path_buf(), program: target.program()?, fresh }),
        None if rules.is_empty() => {}
        None => {
            return Err(CgroupError::unsupported(
                "linux.resources.devices",
                format!("no devices controller on this host ({})", cg.describe_layout()),
            ))
        }
    }
    Ok(())
}

#[allow(deprecated)] // `kernel` is deprecated in the spec; we only warn about it.
fn plan_memory(cg: &Cgroup, m: &LinuxMemory, fresh: bool, ops: &mut Vec<Op>) -> Result<(), CgroupError> {
    if m.kernel().is_some() {
        log::warn!("linux.resources.memory.kernel is obsolete (kernel memory limits were removed in Linux 5.4 / cgroup v2); ignoring it");
    }
    if m.kernel_tcp().is_some() {
        log::warn!(
            "linux.resources.memory.kernelTCP is obsolete (not supported by cgroup v2 or recent kernels); ignoring it"
        );
    }
    let limit = bytes(m.limit(), "linux.resources.memory.limit")?;
    let reservation = bytes(m.reservation(), "linux.resources.memory.reservation")?;
    let swap = bytes(m.swap(), "linux.resources.memory.swap")?;
    let anything = limit.is_some()
        || reservation.is_some()
        || swap.is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some()
        || m.use_hierarchy().is_some();
    if !anything {
        return Ok(());
    }
    if let (Some(l), Some(s)) = (limit, swap) {
        if l > 0 && s != -1 && s < l {
            return Err(CgroupError::invalid(
                "linux.resources.memory.swap",
                format!("cannot set swap below the memory limit ({s} < {l}); swap is the memory+swap total"),
            ));
        }
    }
    let t = need(cg, Ctl::Memory, F_MEM)?;
    match t {
        Target::V1(_) => {
            if limit.is_some() || swap.is_some() {
                ops.push(Op::MemoryV1 { dir: t.dir().to_path_buf(), limit, swap, fresh });
            }
            if let Some(v) = reservation {
                ops.push(w(t, "memory.soft_limit_in_bytes", v.to_string(), "linux.resources.memory.reservation"));
            }
            match m.disable_oom_killer() {
                Some(true) => ops.push(w(t, "memory.oom_control", "1", "linux.resources.memory.disableOOMKiller")),
                // A new cgroup starts with the OOM killer enabled.
                Some(false) if !fresh => {
                    ops.push(w(t, "memory.oom_control", "0", "linux.resources.memory.disableOOMKiller"))
                }
                _ => {}
            }
            if let Some(s) = m.swappiness() {
                if s > 100 {
                    return Err(CgroupError::invalid(
                        "linux.resources.memory.swappiness",
                        format!("{s} is outside 0-100"),
                    ));
                }
                ops.push(w(t, "memory.swappiness", s.to_string(), "linux.resources.memory.swappiness"));
            }
            if let Some(h) = m.use_hierarchy() {
                ops.push(w(
                    t,
                    "memory.use_hierarchy",
                    if h { "1" } else { "0" },
                    "linux.resources.memory.useHierarchy",
                ));
            }
        }
        Target::V2(_) => {
            if m.check_before_update() == Some(true) && !fresh && (limit.is_some() || swap.is_some()) {
                ops.push(Op::CheckUsageV2 { dir: t.dir().to_path_buf(), limit, swap });
            }
            let (s, l) = (swap.unwrap_or(0), limit.unwrap_or(0));
            let v2swap = swap_to_v2(s, l).map_err(|e| CgroupError::invalid("linux.resources.memory.swap", e))?;
            let swap_str = match v2swap {
                0 if s > 0 => Some("0".to_owned()), // memory == memory+swap: no swap
                0 => None,
                v => Some(v2_num(v)),
            };
            if let Some(sv) = swap_str {
                let missing = match sv.as_str() {
                    "max" => Missing::Skip,
                    "0" => Missing::Warn("memory.swap.max does not exist (no swap accounting): linux.resources.memory.swap cannot disable swap for this container".into()),
                    _ => Missing::Fail,
                };
                ops.push(w_opt(t, "memory.swap.max", sv, "linux.resources.memory.swap", missing));
            }
            if let Some(v) = limit {
                ops.push(w(t, "memory.max", v2_num(v), "linux.resources.memory.limit"));
            }
            if let Some(v) = reservation {
                ops.push(w(t, "memory.low", v2_num(v), "linux.resources.memory.reservation"));
            }
            if m.disable_oom_killer() == Some(true) {
                return Err(CgroupError::unsupported(
                    "linux.resources.memory.disableOOMKiller",
                    "cgroup v2 cannot disable the OOM killer",
                ));
            }
            if let Some(s) = m.swappiness() {
                let host = host_swappiness();
                if host != Some(s) {
                    return Err(CgroupError::unsupported(
                        "linux.resources.memory.swappiness",
                        format!(
                            "cgroup v2 has no per-cgroup swappiness; only the host-wide vm.swappiness ({}) applies, so {s} cannot be honoured",
                            host.map_or_else(|| "unknown".to_owned(), |h| h.to_string())
                        ),
                    ));
                }
            }
            if m.use_hierarchy() == Some(false) {
                return Err(CgroupError::unsupported(
                    "linux.resources.memory.useHierarchy",
                    "cgroup v2 memory accounting is always hierarchical",
                ));
            }
        }
    }
    Ok(())
}

fn host_swappiness() -> Option<u64> {
    fsutil::read_raw(Path::new("/proc/sys/vm/swappiness")).ok().and_then(|s| s.trim().parse().ok())
}

fn plan_cpu(cg: &Cgroup, cpu: &LinuxCpu, fresh: bool, ops: &mut Vec<Op>) -> Result<(), CgroupError> {
    let shares = cpu.shares().filter(|&s| s != 0);
    let quota = cpu.quota().filter(|&q| q != 0);
    let period = cpu.period().filter(|&p| p != 0);
    let burst = cpu.burst();
    let rt_runtime = cpu.realtime_runtime().filter(|&v| v != 0);
    let rt_period = cpu.realtime_period().filter(|&v| v != 0);
    let idle = cpu.idle();
    if shares.is_none()
        && quota.is_none()
        && period.is_none()
        && burst.is_none()
        && rt_runtime.is_none()
        && rt_period.is_none()
        && idle.is_none()
    {
        return Ok(());
    }
    if let Some(s) = shares {
        if !(2..=262_144).contains(&s) {
            return Err(CgroupError::invalid(
                "linux.resources.cpu.shares",
                format!("{s} is outside the kernel's range 2-262144"),
            ));
        }
    }
    if let Some(q) = quota {
        if q < -1 {
            return Err(CgroupError::invalid(
                "linux.resources.cpu.quota",
                format!("{q} is neither microseconds nor -1 (unlimited)"),
            ));
        }
    }
    if let Some(i) = idle {
        if i != 0 && i != 1 {
            return Err(CgroupError::invalid("linux.resources.cpu.idle", format!("{i} is not 0 or 1")));
        }
    }
    let t = need(cg, Ctl::Cpu, F_CPU)?;
    match t {
        Target::V1(_) => {
            if let Some(s) = shares {
                ops.push(w(t, "cpu.shares", s.to_string(), "linux.resources.cpu.shares"));
            }
            if period.is_some() || quota.is_some() || burst.is_some() {
                ops.push(Op::CpuV1Bandwidth { dir: t.dir().to_path_buf(), period, quota, burst });
            }
            if let Some(p) = rt_period {
                ops.push(w(t, "cpu.rt_period_us", p.to_string(), "linux.resources.cpu.realtimePeriod"));
            }
            if let Some(r) = rt_runtime {
                ops.push(w(t, "cpu.rt_runtime_us", r.to_string(), "linux.resources.cpu.realtimeRuntime"));
            }
            if let Some(i) = idle {
                ops.push(w(t, "cpu.idle", i.to_string(), "linux.resources.cpu.idle"));
            }
        }
        Target::V2(_) => {
            if rt_runtime.is_some() || rt_period.is_some() {
                let f = if rt_runtime.is_some() { "realtimeRuntime" } else { "realtimePeriod" };
                return Err(CgroupError::unsupported(
                    format!("linux.resources.cpu.{f}"),
                    "cgroup v2 has no real-time group scheduling interface",
                ));
            }
            if let Some(s) = shares {
                ops.push(w(t, "cpu.weight", shares_to_weight(s).to_string(), "linux.resources.cpu.shares"));
            }
            if let Some(i) = idle {
                ops.push(w(t, "cpu.idle", i.to_string(), "linux.resources.cpu.idle"));
            }
            if period.is_some() || quota.is_some() || burst.is_some() {
                ops.push(Op::CpuV2Max { dir: t.dir().to_path_buf(), quota, period, burst, fresh });
            }
        }
    }
    Ok(())
}

fn dev(major: i64, minor: i64, field: &str) -> Result<String, CgroupError> {
    if major < 0 || minor < 0 || major > i64::from(u32::MAX) || minor > i64::from(u32::MAX) {
        return Err(CgroupError::invalid(field, format!("{major}:{minor} is not a device number")));
    }
    Ok(format!("{major}:{minor}"))
}

fn plan_blkio(cg: &Cgroup, b: &LinuxBlockIo, ops: &mut Vec<Op>) -> Result<(), CgroupError> {
    let weight = b.weight().filter(|&v| v != 0);
    let leaf = b.leaf_weight().filter(|&v| v != 0);
    let wd = b.weight_device().as_deref().unwrap_or(&[]);
    let throttles = [
        (b.throttle_read_bps_device(), "throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps"),
        (b.throttle_write_bps_device(), "throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps"),
        (b.throttle_read_iops_device(), "throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops"),
        (b.throttle_write_iops_device(), "throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops"),
    ];
    let any_throttle = throttles.iter().any(|(v, ..)| v.as_ref().is_some_and(|v| !v.is_empty()));
    if weight.is_none() && leaf.is_none() && wd.is_empty() && !any_throttle {
        return Ok(());
    }
    let t = need(cg, Ctl::Blkio, F_BLKIO)?;
    let v2 = matches!(t, Target::V2(_));
    if let Some(wt) = weight {
        if v2 {
            if wt < 10 {
                return Err(CgroupError::invalid(
                    "linux.resources.blockIO.weight",
                    format!("{wt} is below the minimum of 10"),
                ));
            }
            ops.push(Op::IoWeightV2 { dir: t.dir().to_path_buf(), weight: wt });
        } else {
            ops.push(Op::FirstOf {
                dir: t.dir().to_path_buf(),
                files: ["blkio.weight", "blkio.bfq.weight"],
                value: wt.to_string(),
                field: "linux.resources.blockIO.weight".into(),
            });
        }
    }
    if let Some(l) = leaf {
        if v2 {
            return Err(CgroupError::unsupported(
                "linux.resources.blockIO.leafWeight",
                "cgroup v2 has no leaf weight (it was a CFQ-only v1 knob)",
            ));
        }
        ops.push(w(t, "blkio.leaf_weight", l.to_string(), "linux.resources.blockIO.leafWeight"));
    }
    for (i, d) in wd.iter().enumerate() {
        let field = format!("linux.resources.blockIO.weightDevice[{i}]");
        let mm = dev(d.major(), d.minor(), &field)?;
        if let Some(wt) = d.weight().filter(|&v| v != 0) {
            if v2 {
                // Only BFQ takes per-device weights on v2 (io.weight's
                // per-device form belongs to iocost and uses another scale).
                ops.push(w(t, "io.bfq.weight", format!("{mm} {wt}"), format!("{field}.weight")));
            } else {
                ops.push(Op::FirstOf {
                    dir: t.dir().to_path_buf(),
                    files: ["blkio.weight_device", "blkio.bfq.weight_device"],
                    value: format!("{mm} {wt}"),
                    field: format!("{field}.weight"),
                });
            }
        }
        if let Some(l) = d.leaf_weight().filter(|&v| v != 0) {
            if v2 {
                return Err(CgroupError::unsupported(format!("{field}.leafWeight"), "cgroup v2 has no leaf weight"));
            }
            ops.push(w(t, "blkio.leaf_weight_device", format!("{mm} {l}"), format!("{field}.leafWeight")));
        }
    }
    for (list, name, v1file, v2key) in throttles {
        for (i, d) in list.iter().flatten().enumerate() {
            let field = format!("linux.resources.blockIO.{name}[{i}]");
            let mm = dev(d.major(), d.minor(), &field)?;
            if v2 {
                // 0 removes a v1 throttle; on v2 that is `max`.
                let rate = if d.rate() == 0 { "max".to_owned() } else { d.rate().to_string() };
                ops.push(w(t, "io.max", format!("{mm} {v2key}={rate}"), field));
            } else {
                ops.push(w(t, v1file, format!("{mm} {}", d.rate()), field));
            }
        }
    }
    Ok(())
}

fn plan_hugetlb(
    cg: &Cgroup,
    limits: &[oci_spec::runtime::LinuxHugepageLimit],
    ops: &mut Vec<Op>,
) -> Result<(), CgroupError> {
    for (i, h) in limits.iter().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}]");
        let ps = h.page_size();
        if ps.is_empty() || !ps.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CgroupError::invalid(
                format!("{field}.pageSize"),
                format!("{ps:?} is not a page size like \"2MB\""),
            ));
        }
        let limit = h.limit();
        if limit < -1 {
            return Err(CgroupError::invalid(
                format!("{field}.limit"),
                format!("{limit} is neither a byte count nor -1"),
            ));
        }
        let t = need(cg, Ctl::Hugetlb, &field)?;
        let (main, rsvd, v) = match t {
            Target::V1(_) => {
                (format!("hugetlb.{ps}.limit_in_bytes"), format!("hugetlb.{ps}.rsvd.limit_in_bytes"), limit.to_string())
            }
            Target::V2(_) => (format!("hugetlb.{ps}.max"), format!("hugetlb.{ps}.rsvd.max"), v2_num(limit)),
        };
        ops.push(w(t, main, v.clone(), format!("{field}.limit")));
        // Reservation limits (Linux 5.7+) are what stops a mmap(MAP_HUGETLB)
        // from succeeding and then faulting; older kernels lack the file.
        ops.push(w_opt(t, rsvd, v, format!("{field}.limit"), Missing::Skip));
    }
    Ok(())
}

fn plan_unified(
    cg: &Cgroup,
    u: &std::collections::HashMap<String, String>,
    ops: &mut Vec<Op>,
) -> Result<(), CgroupError> {
    let sorted: BTreeMap<_, _> = u.iter().collect();
    for (k, v) in sorted {
        let field = format!("linux.resources.unified[{k:?}]");
        if k.is_empty() || k.contains('/') || k.contains('\0') || k == "." || k == ".." {
            return Err(CgroupError::invalid(
                field,
                "must be a file name in the cgroup directory (no '/', not \".\" or \"..\")",
            ));
        }
        let Some((ctrl, _)) = k.split_once('.') else {
            return Err(CgroupError::invalid(field, "must be of the form <controller>.<file>, e.g. \"memory.high\""));
        };
        if k == "cgroup.procs" || k == "cgroup.threads" {
            return Err(CgroupError::invalid(field, "moving processes is not a resource setting"));
        }
        let Some(v2) = cg.v2_dir() else {
            return Err(CgroupError::unsupported(
                field,
                format!("this host has no cgroup v2 hierarchy ({})", cg.describe_layout()),
            ));
        };
        if ctrl != "cgroup" && !cg.v2_has(ctrl) {
            return Err(CgroupError::unsupported(
                field,
                format!(
                    "the {ctrl} controller is not in the cgroup v2 hierarchy on this host{} ({}); use the typed linux.resources fields for v1 controllers",
                    why_unreachable(ctrl),
                    cg.describe_layout()
                ),
            ));
        }
        // Multi-line values (io.max with several devices) are one command per
        // line for the kernel.
        for line in v.lines().filter(|l| !l.trim().is_empty()) {
            ops.push(w(Target::V2(v2), k.clone(), line, field.clone()));
        }
    }
    Ok(())
}

/// The cgroup2 controllers that `ops` need enabled in the container's directory `v2` (the
/// directory of a cgroup2 cgroup only has a controller's files when its parent enables it),
/// each with the first spec field that needs it, for the error if it cannot be enabled.
/// Core files (`cgroup.*`), the device filter and the freezer need no controller.
pub(crate) fn v2_needs(ops: &[Op], v2: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for op in ops {
        let (dir, ctrl, field) = match op {
            Op::Write { dir, file, field, .. } => match file.split_once('.') {
                Some((ctrl, _)) if ctrl != "cgroup" => (dir, ctrl, field.as_str()),
                _ => continue,
            },
            Op::CheckUsageV2 { dir, .. } => (dir, "memory", F_MEM),
            Op::CpuV2Max { dir, .. } => (dir, "cpu", F_CPU),
            Op::IoWeightV2 { dir, .. } => (dir, "io", "linux.resources.blockIO.weight"),
            Op::FirstOf { .. } | Op::MemoryV1 { .. } | Op::CpuV1Bandwidth { .. } => continue,
            Op::DevicesV1 { .. } | Op::DevicesV2 { .. } => continue,
        };
        if dir == v2 {
            out.entry(ctrl.to_owned()).or_insert_with(|| field.to_owned());
        }
    }
    out
}

/// Performs `ops` in order; stops at the first error.
pub(crate) fn execute(ops: &[Op]) -> Result<(), CgroupError> {
    for op in ops {
        exec_one(op)?;
    }
    Ok(())
}

fn exec_one(op: &Op) -> Result<(), CgroupError> {
    match op {
        Op::Write { dir, file, value, field, missing } => match fsutil::write(dir, file, value, Some(field)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && *missing != Missing::Fail => {
                if let Missing::Warn(msg) = missing {
                    log::warn!("{msg}");
                }
                Ok(())
            }
            Err(e) => Err(with_memory_hint(e, dir, file)),
            Ok(()) => Ok(()),
        },
        Op::FirstOf { dir, files, value, field } => {
            let [a, b] = files;
            let file = if fsutil::exists(&dir.join(a)) { a } else { b };
            fsutil::write(dir, file, value, Some(field))
        }
        Op::MemoryV1 { dir, limit, swap, fresh } => exec_memory_v1(dir, *limit, *swap, *fresh),
        Op::CheckUsageV2 { dir, limit, swap } => {
            // Best effort, like runc: no usage file means nothing to check.
            let Ok(usage) = fsutil::read_u64(dir, "memory.current") else {
                return Ok(());
            };
            for (v, f) in [(swap, "swap"), (limit, "limit")] {
                if let Some(v) = v.filter(|&v| v > 0) {
                    if v as u64 <= usage {
                        return Err(CgroupError::invalid(
                            format!("{F_MEM}.{f}"),
                            format!("rejecting limit {v}: at or below current usage {usage} (checkBeforeUpdate)"),
                        ));
                    }
                }
            }
            Ok(())
        }
        Op::CpuV1Bandwidth { dir, period, quota, burst } => exec_cpu_v1(dir, *period, *quota, *burst),
        Op::CpuV2Max { dir, quota, period, burst, fresh } => exec_cpu_v2(dir, *quota, *period, *burst, *fresh),
        Op::IoWeightV2 { dir, weight } => {
            if fsutil::exists(&dir.join("io.bfq.weight")) {
                fsutil::write(dir, "io.bfq.weight", &weight.to_string(), Some("linux.resources.blockIO.weight"))
            } else {
                let v = blkio_weight_to_io_weight(*weight);
                fsutil::write(dir, "io.weight", &v.to_string(), Some("linux.resources.blockIO.weight"))
            }
        }
        Op::DevicesV1 { dir, target, fresh } => {
            let live = if *fresh {
                // A new v1 cgroup inherits its parent's rules, which we do not
                // need to know: starting from "allow all" makes the transition
                // begin with a reset, which is right for any parent.
                Emulator { default_allow: true, exceptions: BTreeMap::new() }
            } else {
                let list = fsutil::read(dir, "devices.list")?;
                Emulator::from_list(&list).ok_or_else(|| CgroupError::Parse {
                    path: dir.join("devices.list"),
                    reason: "unexpected line format".into(),
                })?
            };
            for (allow, rule) in live.transition(target) {
                let file = if allow { "devices.allow" } else { "devices.deny" };
                fsutil::write(dir, file, &rule, Some("linux.resources.devices"))?;
            }
            Ok(())
        }
        Op::DevicesV2 { dir, program, fresh } => exec_devices_v2(dir, program, *fresh),
    }
}

/// Turns EBUSY on a memory limit into "below current usage" with numbers.
fn with_memory_hint(e: CgroupError, dir: &Path, file: &str) -> CgroupError {
    let (usage_file, peak_file) = match file {
        "memory.limit_in_bytes" | "memory.memsw.limit_in_bytes" => {
            ("memory.usage_in_bytes", "memory.max_usage_in_bytes")
        }
        "memory.max" => ("memory.current", "memory.peak"),
        _ => return e,
    };
    if e.raw_os_error() != Some(libc::EBUSY) {
        return e;
    }
    let usage = fsutil::read_u64(dir, usage_file).ok();
    let peak = fsutil::read_u64(dir, peak_file).ok();
    match e {
        CgroupError::Write { field, path, source, .. } => CgroupError::Write {
            field,
            path,
            source,
            hint: Some(format!(
                "the new limit is below what the cgroup uses and cannot be reclaimed: usage {}, peak {}",
                usage.map_or_else(|| "?".into(), |v| v.to_string()),
                peak.map_or_else(|| "?".into(), |v| v.to_string())
            )),
        },
        other => other,
    }
}

fn exec_memory_v1(dir: &Path, limit: Option<i64>, swap: Option<i64>, fresh: bool) -> Result<(), CgroupError> {
    const LIMIT: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    let write_limit = |v: i64| {
        fsutil::write(dir, LIMIT, &v.to_string(), Some("linux.resources.memory.limit"))
            .map_err(|e| with_memory_hint(e, dir, LIMIT))
    };
    let write_swap = |v: i64| {
        fsutil::write(dir, MEMSW, &v.to_string(), Some("linux.resources.memory.swap")).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOENT) {
                if let CgroupError::Write { field, path, source, .. } = e {
                    return CgroupError::Write {
                        field,
                        path,
                        source,
                        hint: Some("swap accounting is disabled on this host (boot with swapaccount=1)".into()),
                    };
                }
            }
            with_memory_hint(e, dir, MEMSW)
        })
    };
    // "Unlimited memory" with no swap value also lifts the memsw limit, or the
    // old memsw limit would still cap the cgroup.
    let swap = match (limit, swap) {
        (Some(-1), None) if fsutil::exists(&dir.join(MEMSW)) => Some(-1),
        (Some(-1), None) => None,
        // With no memsw file there is no swap limit to remove.
        (_, Some(-1)) if !fsutil::exists(&dir.join(MEMSW)) => None,
        (_, s) => s,
    };
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // memsw must stay >= memory after each write: raise memsw first
            // when it grows past the current memory limit.
            let swap_first = s == -1 || {
                let cur = if fresh { u64::MAX } else { fsutil::read_u64(dir, LIMIT)? };
                cur < s as u64
            };
            if swap_first {
                write_swap(s)?;
                write_limit(l)
            } else {
                write_limit(l)?;
                write_swap(s)
            }
        }
        (Some(l), None) => write_limit(l),
        (None, Some(s)) => write_swap(s),
        (None, None) => Ok(()),
    }
}

fn exec_cpu_v1(dir: &Path, period: Option<u64>, quota: Option<i64>, burst: Option<u64>) -> Result<(), CgroupError> {
    let einval = |e: &CgroupError| e.raw_os_error() == Some(libc::EINVAL);
    // Both period and burst may be refused (EINVAL) until the new quota is in
    // place; runc retries them after writing the quota.
    let mut retry_period = None;
    if let Some(p) = period {
        match fsutil::write(dir, "cpu.cfs_period_us", &p.to_string(), Some("linux.resources.cpu.period")) {
            Err(e) if einval(&e) && quota.is_some() => retry_period = Some(p),
            r => r?,
        }
    }
    let mut retry_burst = None;
    if let Some(b) = burst {
        match fsutil::write(dir, "cpu.cfs_burst_us", &b.to_string(), Some("linux.resources.cpu.burst")) {
            Err(e) if einval(&e) && quota.is_some() => retry_burst = Some(b),
            r => r?,
        }
    }
    if let Some(q) = quota {
        fsutil::write(dir, "cpu.cfs_quota_us", &q.to_string(), Some("linux.resources.cpu.quota"))?;
    }
    if let Some(p) = retry_period {
        fsutil::write(dir, "cpu.cfs_period_us", &p.to_string(), Some("linux.resources.cpu.period"))?;
    }
    if let Some(b) = retry_burst {
        fsutil::write(dir, "cpu.cfs_burst_us", &b.to_string(), Some("linux.resources.cpu.burst"))?;
    }
    Ok(())
}

fn exec_cpu_v2(
    dir: &Path,
    quota: Option<i64>,
    period: Option<u64>,
    burst: Option<u64>,
    fresh: bool,
) -> Result<(), CgroupError> {
    let mut retry_burst = None;
    if let Some(b) = burst {
        match fsutil::write(dir, "cpu.max.burst", &b.to_string(), Some("linux.resources.cpu.burst")) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota.is_some() => retry_burst = Some(b),
            r => r?,
        }
    }
    if quota.is_some() || period.is_some() {
        // An update that names only one half keeps the other from the live
        // value instead of resetting it (runc's defaults: max, 100000).
        let (mut q, mut p) = ("max".to_owned(), 100_000u64);
        if !fresh && (quota.is_none() || period.is_none()) {
            let cur = fsutil::read(dir, "cpu.max")?;
            let mut it = cur.split_ascii_whitespace();
            if let Some(cq) = it.next() {
                q = cq.to_owned();
            }
            if let Some(cp) = it.next().and_then(|v| v.parse().ok()) {
                p = cp;
            }
        }
        if let Some(nq) = quota {
            q = if nq > 0 { nq.to_string() } else { "max".to_owned() };
        }
        if let Some(np) = period {
            p = np;
        }
        let field = if quota.is_some() { "linux.resources.cpu.quota" } else { "linux.resources.cpu.period" };
        fsutil::write(dir, "cpu.max", &format!("{q} {p}"), Some(field))?;
    }
    if let Some(b) = retry_burst {
        fsutil::write(dir, "cpu.max.burst", &b.to_string(), Some("linux.resources.cpu.burst"))?;
    }
    Ok(())
}

fn sys_err<'a>(op: &'static str, dir: &'a Path) -> impl FnOnce(std::io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Sys { op, path: dir.to_path_buf(), source }
}

/// Loads the device program and attaches it, replacing whatever device
/// program this cgroup had (atomically with `BPF_F_REPLACE` when there is
/// exactly one, as after our own create).
fn exec_devices_v2(dir: &Path, program: &[bpf::Insn], fresh: bool) -> Result<(), CgroupError> {
    let dirfd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, FileMode::empty())
        .map_err(|e| sys_err("opening", dir)(e.into()))?;
    let old = if fresh { Vec::new() } else { attached_programs(dir, dirfd.as_fd())? };
    let prog = match bpf::prog_load(bpf::BPF_PROG_TYPE_CGROUP_DEVICE, program, devices::LICENSE, "berth_devices", None)
    {
        Ok(p) => p,
        Err(source) => {
            // Load again with a log buffer only now: the verifier log is
            // expensive and only useful when the load failed.
            let mut log = vec![0u8; 64 * 1024];
            let _ = bpf::prog_load(
                bpf::BPF_PROG_TYPE_CGROUP_DEVICE,
                program,
                devices::LICENSE,
                "berth_devices",
                Some(&mut log),
            );
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            return Err(CgroupError::BpfLoad {
                path: dir.to_path_buf(),
                source,
                log: String::from_utf8_lossy(log.get(..end).unwrap_or_default()).trim().to_owned(),
            });
        }
    };
    if let [only] = old.as_slice() {
        match bpf::prog_attach(
            dirfd.as_fd(),
            prog.as_fd(),
            bpf::BPF_CGROUP_DEVICE,
            bpf::BPF_F_ALLOW_MULTI | bpf::BPF_F_REPLACE,
            Some(only.as_fd()),
        ) {
            Ok(()) => return Ok(()),
            // Kernels before 5.6 lack BPF_F_REPLACE: attach, then detach.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(sys_err("BPF_PROG_ATTACH(BPF_F_REPLACE)", dir)(e)),
        }
    }
    bpf::prog_attach(dirfd.as_fd(), prog.as_fd(), bpf::BPF_CGROUP_DEVICE, bpf::BPF_F_ALLOW_MULTI, None)
        .map_err(sys_err("BPF_PROG_ATTACH(BPF_CGROUP_DEVICE)", dir))?;
    for o in &old {
        bpf::prog_detach(dirfd.as_fd(), o.as_fd(), bpf::BPF_CGROUP_DEVICE)
            .map_err(sys_err("BPF_PROG_DETACH of the previous device filter", dir))?;
    }
    Ok(())
}

/// Fds of the device programs attached directly to `dir`.
pub(crate) fn attached_programs(
    dir: &Path,
    dirfd: std::os::fd::BorrowedFd<'_>,
) -> Result<Vec<std::os::fd::OwnedFd>, CgroupError> {
    let mut ids = vec![0u32; 8];
    let n = loop {
        let n = bpf::prog_query(dirfd, bpf::BPF_CGROUP_DEVICE, &mut ids).map_err(sys_err("BPF_PROG_QUERY", dir))?;
        if n <= ids.len() {
            break n;
        }
        ids.resize(n, 0);
    };
    let mut out = Vec::with_capacity(n);
    for id in ids.iter().take(n) {
        match bpf::prog_get_fd_by_id(*id) {
            Ok(fd) => out.push(fd),
            // Programs an LSM hides from us can only restrict further.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                log::debug!("skipping device program {id} on {}: {e}", dir.display());
            }
            Err(e) => return Err(sys_err("BPF_PROG_GET_FD_BY_ID", dir)(e)),
        }
    }
    Ok(out)
}
