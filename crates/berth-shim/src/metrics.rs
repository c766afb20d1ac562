//! berth's cgroup statistics in containerd's `io.containerd.cgroups.v1.Metrics` form.
//!
//! This is what containerd's runc shim returns from `Stats` on a cgroup v1 or hybrid host
//! (`ctr task metrics` and the CRI plugin decode it by its type URL). The memory counters
//! come from `memory.stat` (v1 key names; v2 names are mapped onto their v1 equivalents, so a
//! v2-only host still yields a useful v1 document).

use berth_cgroups::{BlkioEntry, Stats};
use containerd_shim_protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryStat, Metrics, NetworkStat, PidsStat,
    Throttle,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;

fn entry(e: &berth_cgroups::MemoryEntry) -> MemoryEntry {
    MemoryEntry { limit: e.limit, usage: e.usage, max: e.max, failcnt: e.failcnt, ..Default::default() }
}

fn blk(v: &[BlkioEntry]) -> Vec<BlkIOEntry> {
    v.iter()
        .map(|e| BlkIOEntry { op: e.op.clone(), major: e.major, minor: e.minor, value: e.value, ..Default::default() })
        .collect()
}

/// Converts berth's statistics.
pub fn to_v1(s: &Stats) -> Metrics {
    let mut m = Metrics::new();
    m.pids = Some(PidsStat { current: s.pids.current, limit: s.pids.limit, ..Default::default() }).into();
    let usage = CPUUsage {
        total: s.cpu.usage.total,
        kernel: s.cpu.usage.kernel,
        user: s.cpu.usage.user,
        per_cpu: s.cpu.usage.percpu.clone(),
        ..Default::default()
    };
    let throttling = Throttle {
        periods: s.cpu.throttling.periods,
        throttled_periods: s.cpu.throttling.throttled_periods,
        throttled_time: s.cpu.throttling.throttled_time,
        ..Default::default()
    };
    m.cpu =
        Some(CPUStat { usage: Some(usage).into(), throttling: Some(throttling).into(), ..Default::default() }).into();

    let raw = &s.memory.raw;
    // A v1 key, else its cgroup v2 counterpart.
    let g = |k: &str, v2: &str| raw.get(k).or_else(|| raw.get(v2)).copied().unwrap_or(0);
    let mem = MemoryStat {
        cache: g("cache", "file"),
        rss: g("rss", "anon"),
        rss_huge: g("rss_huge", "anon_thp"),
        mapped_file: g("mapped_file", "file_mapped"),
        dirty: g("dirty", "file_dirty"),
        writeback: g("writeback", "file_writeback"),
        pg_pg_in: g("pgpgin", "pgpgin"),
        pg_pg_out: g("pgpgout", "pgpgout"),
        pg_fault: g("pgfault", "pgfault"),
        pg_maj_fault: g("pgmajfault", "pgmajfault"),
        inactive_anon: g("inactive_anon", "inactive_anon"),
        active_anon: g("active_anon", "active_anon"),
        inactive_file: g("inactive_file", "inactive_file"),
        active_file: g("active_file", "active_file"),
        unevictable: g("unevictable", "unevictable"),
        hierarchical_memory_limit: g("hierarchical_memory_limit", "hierarchical_memory_limit"),
        hierarchical_swap_limit: g("hierarchical_memsw_limit", "hierarchical_memsw_limit"),
        total_cache: g("total_cache", "file"),
        total_rss: g("total_rss", "anon"),
        total_rss_huge: g("total_rss_huge", "anon_thp"),
        total_mapped_file: g("total_mapped_file", "file_mapped"),
        total_dirty: g("total_dirty", "file_dirty"),
        total_writeback: g("total_writeback", "file_writeback"),
        total_pg_pg_in: g("total_pgpgin", "pgpgin"),
        total_pg_pg_out: g("total_pgpgout", "pgpgout"),
        total_pg_fault: g("total_pgfault", "pgfault"),
        total_pg_maj_fault: g("total_pgmajfault", "pgmajfault"),
        total_inactive_anon: g("total_inactive_anon", "inactive_anon"),
        total_active_anon: g("total_active_anon", "active_anon"),
        total_inactive_file: g("total_inactive_file", "inactive_file"),
        total_active_file: g("total_active_file", "active_file"),
        total_unevictable: g("total_unevictable", "unevictable"),
        usage: Some(entry(&s.memory.usage)).into(),
        swap: Some(entry(&s.memory.swap)).into(),
        kernel: Some(entry(&s.memory.kernel)).into(),
        kernel_tcp: Some(entry(&s.memory.kernel_tcp)).into(),
        ..Default::default()
    };
    m.memory = Some(mem).into();

    let b = &s.blkio;
    m.blkio = Some(BlkIOStat {
        io_service_bytes_recursive: blk(&b.io_service_bytes_recursive),
        io_serviced_recursive: blk(&b.io_serviced_recursive),
        io_queued_recursive: blk(&b.io_queued_recursive),
        io_service_time_recursive: blk(&b.io_service_time_recursive),
        io_wait_time_recursive: blk(&b.io_wait_time_recursive),
        io_merged_recursive: blk(&b.io_merged_recursive),
        io_time_recursive: blk(&b.io_time_recursive),
        sectors_recursive: blk(&b.sectors_recursive),
        ..Default::default()
    })
    .into();

    m.hugetlb = s
        .hugetlb
        .iter()
        .map(|(size, h)| HugetlbStat {
            usage: h.usage,
            max: h.max,
            failcnt: h.failcnt,
            pagesize: size.clone(),
            ..Default::default()
        })
        .collect();
    m.network = s
        .network_interfaces
        .iter()
        .flatten()
        .map(|n| NetworkStat {
            name: n.name.clone(),
            rx_bytes: n.rx_bytes,
            rx_packets: n.rx_packets,
            rx_errors: n.rx_errors,
            rx_dropped: n.rx_dropped,
            tx_bytes: n.tx_bytes,
            tx_packets: n.tx_packets,
            tx_errors: n.tx_errors,
            tx_dropped: n.tx_dropped,
            ..Default::default()
        })
        .collect();
    m
}

/// The metrics wrapped in an `Any` as containerd expects.
pub fn to_any(s: &Stats) -> Any {
    crate::events::to_any(&to_v1(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::Message;

    #[test]
    fn v1_and_v2_memory_keys_and_counters_map() {
        let mut s = Stats::default();
        s.pids.current = 3;
        s.pids.limit = 10;
        s.cpu.usage.total = 1234;
        s.cpu.usage.percpu = vec![1000, 234];
        s.memory.usage.usage = 4096;
        s.memory.usage.limit = 1 << 20;
        s.memory.raw.insert("rss".into(), 11);
        s.memory.raw.insert("total_cache".into(), 22);
        s.memory.raw.insert("anon".into(), 99); // v2 name: used only where the v1 key is absent
        s.memory.raw.insert("file_dirty".into(), 5);
        s.hugetlb.insert("2MB".into(), berth_cgroups::Hugetlb { usage: 7, max: 8, failcnt: 0 });
        let a = to_any(&s);
        assert_eq!(a.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = Metrics::parse_from_bytes(&a.value).unwrap();
        assert_eq!((m.pids.current, m.pids.limit), (3, 10));
        assert_eq!(m.cpu.usage.total, 1234);
        assert_eq!(m.cpu.usage.per_cpu, vec![1000, 234]);
        assert_eq!(m.memory.rss, 11);
        assert_eq!(m.memory.total_cache, 22);
        assert_eq!(m.memory.total_rss, 99);
        assert_eq!(m.memory.dirty, 5);
        assert_eq!((m.memory.usage.usage, m.memory.usage.limit), (4096, 1 << 20));
        assert_eq!(m.hugetlb.len(), 1);
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
    }
}
