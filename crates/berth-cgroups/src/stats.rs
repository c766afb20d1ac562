//! Resource usage in the JSON shape of runc's `events --stats` `data` object
//! (`types/events.go`), including Go's `omitempty` behaviour, so tools that
//! parse runc's output can parse ours. One addition: `memory.use_hierarchy`
//! (only emitted when true).
//!
//! Missing files are skipped (a controller not mounted, an old kernel);
//! unreadable or malformed files are errors.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::apply::{Ctl, Target};
use crate::error::CgroupError;
use crate::fsutil;
use crate::Cgroup;

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// `data` of a runc `stats` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
    /// Intel RDT is not managed by this crate; kept for the shape (`{}`).
    pub intel_rdt: IntelRdt,
    /// Filled by the caller from the container's network namespace, if at all.
    pub network_interfaces: Option<Vec<NetworkInterface>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntelRdt {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInterface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<Psi>,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    #[serde(default)]
    pub kernel: u64,
    #[serde(default)]
    pub user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttling {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub periods: u64,
    #[serde(default, rename = "throttledPeriods", skip_serializing_if = "is_zero_u64")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(default, rename = "throttledTime", skip_serializing_if = "is_zero_u64")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiData {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Psi {
    pub some: PsiData,
    pub full: PsiData,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<Psi>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_hierarchy: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub current: u64,
    /// 0 when unlimited.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlkioEntry {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub major: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub minor: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(default, rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<Psi>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hugetlb {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub max: u64,
    pub failcnt: u64,
}

/// `Ok(None)` for a missing file, so absent controllers/features are skipped.
fn opt(r: Result<String, CgroupError>) -> Result<Option<String>, CgroupError> {
    match r {
        Ok(s) => Ok(Some(s)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EOPNOTSUPP)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_opt(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    opt(fsutil::read(dir, file))
}

fn u64_opt(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    Ok(fsutil::read_u64_opt(dir, file)?.unwrap_or(0))
}

fn numbers(dir: &Path, file: &str, s: &str) -> Result<Vec<u64>, CgroupError> {
    s.split_ascii_whitespace().map(|v| fsutil::parse_u64(&dir.join(file), v)).collect()
}

/// USER_HZ, the unit of `cpuacct.stat`; 100 on every Linux architecture that
/// matters (the kernel fixes it for the user ABI).
const USER_HZ: u64 = 100;

pub(crate) fn collect(cg: &Cgroup) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    match cg.locate(Ctl::CpuAcct) {
        Some(Target::V1(d)) => cpuacct_v1(d, &mut s.cpu.usage)?,
        Some(Target::V2(d)) => cpu_stat(d, true, &mut s.cpu)?,
        None => {}
    }
    if let Some(Target::V1(d)) = cg.locate(Ctl::Cpu) {
        cpu_stat(d, false, &mut s.cpu)?;
    }
    match cg.locate(Ctl::Memory) {
        Some(Target::V1(d)) => memory_v1(d, &mut s.memory)?,
        Some(Target::V2(d)) => memory_v2(d, &mut s.memory)?,
        None => {}
    }
    if let Some(t) = cg.locate(Ctl::Pids) {
        let d = t.dir();
        s.pids.current = u64_opt(d, "pids.current")?;
        s.pids.limit = match fsutil::read_u64_opt(d, "pids.max")? {
            Some(u64::MAX) | None => 0,
            Some(v) => v,
        };
    }
    match cg.locate(Ctl::Blkio) {
        Some(Target::V1(d)) => blkio_v1(d, &mut s.blkio)?,
        Some(Target::V2(d)) => io_v2(d, &mut s.blkio)?,
        None => {}
    }
    if let Some(t) = cg.locate(Ctl::Hugetlb) {
        hugetlb(t, &mut s.hugetlb)?;
    }
    match cg.locate(Ctl::Cpuset) {
        Some(Target::V1(d)) => cpuset_v1(d, &mut s.cpuset)?,
        Some(Target::V2(d)) => {
            if let Some(c) = read_opt(d, "cpuset.cpus.effective")? {
                s.cpuset.cpus = parse_list(d, "cpuset.cpus.effective", &c)?;
            }
            if let Some(m) = read_opt(d, "cpuset.mems.effective")? {
                s.cpuset.mems = parse_list(d, "cpuset.mems.effective", &m)?;
            }
        }
        None => {}
    }
    // Pressure files exist in every cgroup2 directory, hybrid hosts included.
    if let Some(d) = cg.unified_dir() {
        s.cpu.psi = psi(d, "cpu.pressure")?;
        s.memory.psi = psi(d, "memory.pressure")?;
        s.blkio.psi = psi(d, "io.pressure")?;
    }
    Ok(s)
}

fn cpuacct_v1(d: &Path, u: &mut CpuUsage) -> Result<(), CgroupError> {
    u.total = u64_opt(d, "cpuacct.usage")?;
    if let Some(p) = read_opt(d, "cpuacct.usage_percpu")? {
        u.percpu = numbers(d, "cpuacct.usage_percpu", &p)?;
    }
    if let Some(all) = read_opt(d, "cpuacct.usage_all")? {
        // "cpu user system" header, then one line per CPU.
        for line in all.lines().skip(1) {
            let v = numbers(d, "cpuacct.usage_all", line)?;
            if let [_, user, sys] = v.as_slice() {
                u.percpu_user.push(*user);
                u.percpu_kernel.push(*sys);
            }
        }
    }
    if let Some(st) = read_opt(d, "cpuacct.stat")? {
        let ns = 1_000_000_000 / USER_HZ;
        u.user = fsutil::value_of(&st, "user").unwrap_or(0).saturating_mul(ns);
        u.kernel = fsutil::value_of(&st, "system").unwrap_or(0).saturating_mul(ns);
    }
    Ok(())
}

fn cpu_stat(d: &Path, v2: bool, c: &mut Cpu) -> Result<(), CgroupError> {
    let Some(st) = read_opt(d, "cpu.stat")? else {
        return Ok(());
    };
    for (k, v) in fsutil::key_values(&st) {
        match (k, v2) {
            ("usage_usec", true) => c.usage.total = v.saturating_mul(1000),
            ("user_usec", true) => c.usage.user = v.saturating_mul(1000),
            ("system_usec", true) => c.usage.kernel = v.saturating_mul(1000),
            ("nr_periods", _) => c.throttling.periods = v,
            ("nr_throttled", _) => c.throttling.throttled_periods = v,
            ("throttled_usec", true) => c.throttling.throttled_time = v.saturating_mul(1000),
            ("throttled_time", false) => c.throttling.throttled_time = v,
            _ => {}
        }
    }
    Ok(())
}

fn memory_entry_v1(d: &Path, prefix: &str) -> Result<Option<MemoryEntry>, CgroupError> {
    let Some(usage) = fsutil::read_u64_opt(d, &format!("{prefix}.usage_in_bytes"))? else {
        return Ok(None);
    };
    Ok(Some(MemoryEntry {
        usage,
        max: u64_opt(d, &format!("{prefix}.max_usage_in_bytes"))?,
        failcnt: u64_opt(d, &format!("{prefix}.failcnt"))?,
        limit: u64_opt(d, &format!("{prefix}.limit_in_bytes"))?,
    }))
}

fn memory_v1(d: &Path, m: &mut Memory) -> Result<(), CgroupError> {
    if let Some(st) = read_opt(d, "memory.stat")? {
        m.raw = fsutil::key_values(&st).map(|(k, v)| (k.to_owned(), v)).collect();
        m.cache = m.raw.get("cache").copied().unwrap_or(0);
    }
    m.usage = memory_entry_v1(d, "memory")?.unwrap_or_default();
    m.swap = memory_entry_v1(d, "memory.memsw")?.unwrap_or_default();
    m.kernel = memory_entry_v1(d, "memory.kmem")?.unwrap_or_default();
    m.kernel_tcp = memory_entry_v1(d, "memory.kmem.tcp")?.unwrap_or_default();
    m.use_hierarchy = fsutil::read_u64_opt(d, "memory.use_hierarchy")? == Some(1);
    Ok(())
}

fn memory_v2(d: &Path, m: &mut Memory) -> Result<(), CgroupError> {
    if let Some(st) = read_opt(d, "memory.stat")? {
        m.raw = fsutil::key_values(&st).map(|(k, v)| (k.to_owned(), v)).collect();
        m.cache = m.raw.get("file").copied().unwrap_or(0);
    }
    m.use_hierarchy = true;
    if let Some(usage) = fsutil::read_u64_opt(d, "memory.current")? {
        m.usage = MemoryEntry {
            usage,
            limit: u64_opt(d, "memory.max")?,
            max: u64_opt(d, "memory.peak")?,
            failcnt: read_opt(d, "memory.events")?.and_then(|e| fsutil::value_of(&e, "max")).unwrap_or(0),
        };
    }
    // v1 reports memory+swap; keep that meaning (as runc does on v2).
    if let Some(swap) = fsutil::read_u64_opt(d, "memory.swap.current")? {
        let limit = u64_opt(d, "memory.swap.max")?;
        m.swap = MemoryEntry {
            usage: swap.saturating_add(m.usage.usage),
            limit: if limit == u64::MAX { limit } else { limit.saturating_add(m.usage.limit) },
            max: 0,
            failcnt: 0,
        };
    }
    Ok(())
}

/// Parses `blkio.*_recursive`: `MAJ:MIN Op value` lines plus a `Total` line.
fn blkio_entries(d: &Path, file: &str, content: &str) -> Result<Vec<BlkioEntry>, CgroupError> {
    let mut out = Vec::new();
    for line in content.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let (Some(mm), Some(op), Some(v)) = (f.first(), f.get(1), f.get(2)) else {
            continue; // "Total N" and blank lines
        };
        let bad = || CgroupError::Parse { path: d.join(file), reason: format!("unexpected line {line:?}") };
        let (ma, mi) = mm.split_once(':').ok_or_else(bad)?;
        out.push(BlkioEntry {
            major: ma.parse().map_err(|_| bad())?,
            minor: mi.parse().map_err(|_| bad())?,
            op: (*op).to_owned(),
            value: v.parse().map_err(|_| bad())?,
        });
    }
    Ok(out)
}

fn blkio_v1(d: &Path, b: &mut Blkio) -> Result<(), CgroupError> {
    // Like runc: CFQ files if they have data, else BFQ, else throttling.
    for (bytes, ios) in [
        ("blkio.io_service_bytes_recursive", "blkio.io_serviced_recursive"),
        ("blkio.bfq.io_service_bytes_recursive", "blkio.bfq.io_serviced_recursive"),
        ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_serviced_recursive"),
    ] {
        let (Some(bc), Some(ic)) = (read_opt(d, bytes)?, read_opt(d, ios)?) else {
            continue;
        };
        let be = blkio_entries(d, bytes, &bc)?;
        let ie = blkio_entries(d, ios, &ic)?;
        if be.is_empty() && ie.is_empty() {
            continue;
        }
        b.io_service_bytes_recursive = be;
        b.io_serviced_recursive = ie;
        return Ok(());
    }
    Ok(())
}

fn io_v2(d: &Path, b: &mut Blkio) -> Result<(), CgroupError> {
    let Some(st) = read_opt(d, "io.stat")? else {
        return Ok(());
    };
    for line in st.lines() {
        let mut it = line.split_ascii_whitespace();
        let Some((ma, mi)) = it.next().and_then(|mm| mm.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                "rios" => (&mut b.io_serviced_recursive, "Read"),
                "wios" => (&mut b.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry { major, minor, op: op.to_owned(), value });
        }
    }
    Ok(())
}

/// Page sizes as the hugetlb controller names them ("2MB", "1GB").
pub(crate) fn huge_page_sizes() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut out: Vec<(u64, String)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let kb: u64 = name.to_str()?.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
            let label = if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            };
            Some((kb, label))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, l)| l).collect()
}

fn hugetlb(t: Target<'_>, out: &mut BTreeMap<String, Hugetlb>) -> Result<(), CgroupError> {
    for ps in huge_page_sizes() {
        let h = match t {
            Target::V1(d) => {
                let Some(usage) = fsutil::read_u64_opt(d, &format!("hugetlb.{ps}.usage_in_bytes"))? else {
                    continue;
                };
                Hugetlb {
                    usage,
                    max: u64_opt(d, &format!("hugetlb.{ps}.max_usage_in_bytes"))?,
                    failcnt: u64_opt(d, &format!("hugetlb.{ps}.failcnt"))?,
                }
            }
            Target::V2(d) => {
                let Some(usage) = fsutil::read_u64_opt(d, &format!("hugetlb.{ps}.current"))? else {
                    continue;
                };
                Hugetlb {
                    usage,
                    max: 0,
                    failcnt: read_opt(d, &format!("hugetlb.{ps}.events"))?
                        .and_then(|e| fsutil::value_of(&e, "max"))
                        .unwrap_or(0),
                }
            }
        };
        out.insert(ps, h);
    }
    Ok(())
}

/// Parses a cpu/node list like `0-3,7`.
pub(crate) fn parse_list(d: &Path, file: &str, s: &str) -> Result<Vec<u16>, CgroupError> {
    let bad = |part: &str| CgroupError::Parse {
        path: d.join(file),
        reason: format!("{part:?} is not a cpu/node list entry"),
    };
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u16, u16) = (a.parse().map_err(|_| bad(part))?, b.parse().map_err(|_| bad(part))?);
                if a > b {
                    return Err(bad(part));
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad(part))?),
        }
    }
    Ok(out)
}

fn cpuset_v1(d: &Path, c: &mut CpuSet) -> Result<(), CgroupError> {
    if let Some(v) = read_opt(d, "cpuset.cpus")? {
        c.cpus = parse_list(d, "cpuset.cpus", &v)?;
    }
    if let Some(v) = read_opt(d, "cpuset.mems")? {
        c.mems = parse_list(d, "cpuset.mems", &v)?;
    }
    c.cpu_exclusive = u64_opt(d, "cpuset.cpu_exclusive")?;
    c.mem_hardwall = u64_opt(d, "cpuset.mem_hardwall")?;
    c.mem_exclusive = u64_opt(d, "cpuset.mem_exclusive")?;
    c.memory_migrate = u64_opt(d, "cpuset.memory_migrate")?;
    c.memory_spread_page = u64_opt(d, "cpuset.memory_spread_page")?;
    c.memory_spread_slab = u64_opt(d, "cpuset.memory_spread_slab")?;
    c.memory_pressure = u64_opt(d, "cpuset.memory_pressure")?;
    c.sched_load_balance = u64_opt(d, "cpuset.sched_load_balance")?;
    if let Some(v) = read_opt(d, "cpuset.sched_relax_domain_level")? {
        c.sched_relax_domain_level = v.trim().parse().map_err(|_| CgroupError::Parse {
            path: d.join("cpuset.sched_relax_domain_level"),
            reason: format!("{v:?} is not a number"),
        })?;
    }
    Ok(())
}

/// Parses a PSI file (`some avg10=.. avg60=.. avg300=.. total=..`).
fn psi(d: &Path, file: &str) -> Result<Option<Psi>, CgroupError> {
    let content = match fsutil::read(d, file) {
        Ok(c) => c,
        // Absent, or PSI disabled at boot (EOPNOTSUPP): no data.
        Err(e) if e.raw_os_error().is_some() => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut p = Psi::default();
    for line in content.lines() {
        let mut it = line.split_ascii_whitespace();
        let target = match it.next() {
            Some("some") => &mut p.some,
            Some("full") => &mut p.full,
            _ => continue,
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let bad = || CgroupError::Parse { path: d.join(file), reason: format!("bad value in {line:?}") };
            match k {
                "avg10" => target.avg10 = v.parse().map_err(|_| bad())?,
                "avg60" => target.avg60 = v.parse().map_err(|_| bad())?,
                "avg300" => target.avg300 = v.parse().map_err(|_| bad())?,
                "total" => target.total = v.parse().map_err(|_| bad())?,
                _ => {}
            }
        }
    }
    Ok(Some(p))
}
