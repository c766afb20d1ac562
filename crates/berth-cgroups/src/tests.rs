//! Translation tests against temp directories that mimic cgroupfs.
//!
//! This host is hybrid with only `hugetlb` in cgroup2, so the v2 memory, cpu,
//! io, pids, cpuset and rdma files cannot be exercised for real here, and
//! neither can the v1 net_cls, net_prio, hugetlb and rdma controllers (not
//! mounted). These tests check the exact writes (file, value, order) our code
//! makes for them, using a temp dir with the kernel's file names pre-created
//! (a write to a missing file fails like it would on cgroupfs) and a journal
//! of writes, since a regular file only keeps the last value written.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::apply::{self, Op};
use crate::fsutil::JOURNAL;
use crate::{Cgroup, CgroupError, Mode, V1Dir, V2Dir};

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("valid resources JSON")
}

const V2_FILES: &[(&str, &str)] = &[
    ("cgroup.procs", ""),
    ("cgroup.freeze", "0"),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
    ("memory.max", "max"),
    ("memory.low", "0"),
    ("memory.swap.max", "max"),
    ("memory.current", "52428800"),
    ("memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 0\n"),
    ("cpu.weight", "100"),
    ("cpu.max", "max 100000"),
    ("cpu.max.burst", "0"),
    ("cpu.idle", "0"),
    ("io.weight", "default 100"),
    ("io.max", ""),
    ("pids.max", "max"),
    ("cpuset.cpus", ""),
    ("cpuset.mems", ""),
    ("hugetlb.2MB.max", "max"),
    ("hugetlb.2MB.rsvd.max", "max"),
    ("hugetlb.1GB.max", "max"),
    ("rdma.max", ""),
];

struct Fixture {
    _tmp: tempfile::TempDir,
    cg: Cgroup,
    dir: PathBuf,
}

fn v2_fixture(extra: &[(&str, &str)], skip: &[&str]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().to_path_buf();
    let dir = mount.join("c");
    std::fs::create_dir(&dir).unwrap();
    for (f, c) in V2_FILES.iter().chain(extra) {
        if !skip.contains(f) {
            std::fs::write(dir.join(f), c).unwrap();
        }
    }
    let controllers = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"];
    // As `create` left it: the root delegates every controller to the container.
    std::fs::write(mount.join("cgroup.subtree_control"), controllers.join(" ")).unwrap();
    let cg = Cgroup {
        mode: Mode::Unified,
        v1: Vec::new(),
        v2: Some(V2Dir { mount, path: dir.clone(), controllers: controllers.iter().map(|s| s.to_string()).collect() }),
        delegated: false,
    };
    Fixture { _tmp: tmp, cg, dir }
}

/// v1 controllers in separate temp "mounts", with their kernel files.
fn v1_fixture(hier: &[(&str, &[(&str, &str)])]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let mut v1 = Vec::new();
    for (ctrl, files) in hier {
        let mount = tmp.path().join(ctrl);
        let dir = mount.join("c");
        std::fs::create_dir_all(&dir).unwrap();
        for (f, c) in *files {
            std::fs::write(dir.join(f), c).unwrap();
        }
        v1.push(V1Dir { controllers: ctrl.split(',').map(str::to_owned).collect(), mount, path: dir });
    }
    let dir = tmp.path().to_path_buf();
    Fixture { _tmp: tmp, cg: Cgroup { mode: Mode::Legacy, v1, v2: None, delegated: false }, dir }
}

/// Runs `f` and returns the writes it made as (path below `base`, value).
fn journal<T>(base: &Path, f: impl FnOnce() -> T) -> (T, Vec<(String, String)>) {
    JOURNAL.with(|j| *j.borrow_mut() = Some(Vec::new()));
    let out = f();
    let writes = JOURNAL.with(|j| j.borrow_mut().take().unwrap_or_default());
    let writes =
        writes.into_iter().map(|(p, v)| (p.strip_prefix(base).unwrap_or(&p).display().to_string(), v)).collect();
    (out, writes)
}

/// Plans and executes `r` on a fresh cgroup, minus the device filter: a v2
/// device program cannot be attached to a temp dir (it is exercised on the
/// real cgroup2 mount in `tests/v2_mount.rs`).
fn apply_fresh(cg: &Cgroup, r: &LinuxResources) -> Result<(), CgroupError> {
    apply::execute(&no_devices(apply::plan(cg, r, true, false)?))
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn no_devices(ops: Vec<Op>) -> Vec<Op> {
    ops.into_iter().filter(|o| !matches!(o, Op::DevicesV1 { .. } | Op::DevicesV2 { .. })).collect()
}

// ---- conversions -------------------------------------------------------

#[test]
fn conversions_match_runc() {
    use crate::convert::*;
    assert_eq!(shares_to_weight(0), 0);
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(blkio_weight_to_io_weight(10), 1);
    assert_eq!(blkio_weight_to_io_weight(500), 4950);
    assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    assert_eq!(swap_to_v2(0, -1), Ok(-1));
    assert_eq!(swap_to_v2(-1, 100), Ok(-1));
    assert_eq!(swap_to_v2(0, 100), Ok(0));
    assert_eq!(swap_to_v2(500, -1), Ok(500));
    assert_eq!(swap_to_v2(300, 100), Ok(200));
    assert_eq!(swap_to_v2(100, 100), Ok(0));
    assert!(swap_to_v2(100, 0).unwrap_err().contains("without a memory limit"));
    assert!(swap_to_v2(50, 100).unwrap_err().contains("cannot set swap below the memory limit"));
}

// ---- cgroup v2 ---------------------------------------------------------

#[test]
fn v2_memory_limits_swap_and_reservation() {
    let fx = v2_fixture(&[], &[]);
    let r = res(r#"{"memory": {"limit": 67108864, "swap": 100663296, "reservation": 33554432, "kernel": 5}}"#);
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &r));
    out.unwrap();
    assert_eq!(w, pairs(&[("memory.swap.max", "33554432"), ("memory.max", "67108864"), ("memory.low", "33554432")]));
    // -1: unlimited memory and, when swap is not given, unlimited swap.
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &res(r#"{"memory": {"limit": -1}}"#)));
    out.unwrap();
    assert_eq!(w, pairs(&[("memory.swap.max", "max"), ("memory.max", "max")]));
    // memory == memory+swap: no swap at all.
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &res(r#"{"memory": {"limit": 1048576, "swap": 1048576}}"#)));
    out.unwrap();
    assert_eq!(w, pairs(&[("memory.swap.max", "0"), ("memory.max", "1048576")]));
    let e = apply_fresh(&fx.cg, &res(r#"{"memory": {"swap": 1048576}}"#)).unwrap_err().to_string();
    assert_eq!(e, "linux.resources.memory.swap: unable to set a swap limit without a memory limit");
}

#[test]
fn v2_swap_without_swap_accounting() {
    let fx = v2_fixture(&[], &["memory.swap.max"]);
    // "max" and "0" are dropped (with a warning for "0"), like runc.
    for json in [r#"{"memory": {"limit": -1}}"#, r#"{"memory": {"limit": 4096, "swap": 4096}}"#] {
        let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &res(json)));
        out.unwrap();
        assert_eq!(w.len(), 1, "{json}: {w:?}");
        assert_eq!(w[0].0, "memory.max");
    }
    // A real swap limit cannot be honoured: error naming the file.
    let e = apply_fresh(&fx.cg, &res(r#"{"memory": {"limit": 4096, "swap": 8192}}"#)).unwrap_err().to_string();
    assert!(e.starts_with("linux.resources.memory.swap: writing "), "{e}");
    assert!(e.contains("memory.swap.max: No such file or directory"), "{e}");
}

#[test]
fn v2_memory_knobs_without_an_equivalent_are_errors() {
    let fx = v2_fixture(&[], &[]);
    let e = apply_fresh(&fx.cg, &res(r#"{"memory": {"disableOOMKiller": true}}"#)).unwrap_err();
    assert!(matches!(e, CgroupError::Unsupported { .. }));
    assert_eq!(e.to_string(), "linux.resources.memory.disableOOMKiller: cgroup v2 cannot disable the OOM killer");
    apply_fresh(&fx.cg, &res(r#"{"memory": {"disableOOMKiller": false}}"#)).unwrap();
    let e = apply_fresh(&fx.cg, &res(r#"{"memory": {"useHierarchy": false}}"#)).unwrap_err().to_string();
    assert!(e.contains("always hierarchical"), "{e}");
    // swappiness: only the host-wide value can be "honoured".
    let host: u64 = std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap().trim().parse().unwrap();
    apply_fresh(&fx.cg, &res(&format!(r#"{{"memory": {{"swappiness": {host}}}}}"#))).unwrap();
    let other = if host == 0 { 1 } else { host - 1 };
    let e = apply_fresh(&fx.cg, &res(&format!(r#"{{"memory": {{"swappiness": {other}}}}}"#))).unwrap_err().to_string();
    assert!(e.starts_with("linux.resources.memory.swappiness: cgroup v2 has no per-cgroup swappiness"), "{e}");
}

#[test]
fn v2_check_before_update_compares_with_current_usage() {
    let fx = v2_fixture(&[], &[]); // memory.current = 50 MiB
    let r = res(r#"{"memory": {"limit": 41943040, "checkBeforeUpdate": true}}"#);
    let (out, w) = journal(&fx.dir, || fx.cg.update(&r));
    let e = out.unwrap_err().to_string();
    assert!(
        e.starts_with("linux.resources.memory.limit: rejecting limit 41943040: at or below current usage 52428800"),
        "{e}"
    );
    assert!(w.is_empty(), "nothing may be written: {w:?}");
    fx.cg.update(&res(r#"{"memory": {"limit": 104857600, "checkBeforeUpdate": true}}"#)).unwrap();
    // Without the flag the kernel decides (it reclaims or OOMs).
    fx.cg.update(&res(r#"{"memory": {"limit": 41943040}}"#)).unwrap();
}

#[test]
fn v2_cpu_weight_max_burst_idle() {
    let fx = v2_fixture(&[], &[]);
    let r = res(
        r#"{"cpu": {"shares": 1024, "quota": 50000, "period": 200000, "burst": 1000, "idle": 1, "cpus": "0-3", "mems": "0"}}"#,
    );
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &r));
    out.unwrap();
    assert_eq!(
        w,
        pairs(&[
            ("cpuset.cpus", "0-3"),
            ("cpuset.mems", "0"),
            ("cpu.weight", "39"),
            ("cpu.idle", "1"),
            ("cpu.max.burst", "1000"),
            ("cpu.max", "50000 200000"),
        ])
    );
    // Fresh cgroup, quota only: runc's default period.
    let (_, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &res(r#"{"cpu": {"quota": -1}}"#)));
    assert_eq!(w, pairs(&[("cpu.max", "max 100000")]));
    // Update naming one half keeps the other half from the live value.
    std::fs::write(fx.dir.join("cpu.max"), "max 250000\n").unwrap();
    let (_, w) = journal(&fx.dir, || fx.cg.update(&res(r#"{"cpu": {"quota": 50000}}"#)));
    assert_eq!(w, pairs(&[("cpu.max", "50000 250000")]));
    std::fs::write(fx.dir.join("cpu.max"), "20000 100000\n").unwrap();
    let (_, w) = journal(&fx.dir, || fx.cg.update(&res(r#"{"cpu": {"period": 50000}}"#)));
    assert_eq!(w, pairs(&[("cpu.max", "20000 50000")]));
}

#[test]
fn v2_realtime_is_an_error_naming_the_field() {
    let fx = v2_fixture(&[], &[]);
    let e = apply_fresh(&fx.cg, &res(r#"{"cpu": {"realtimeRuntime": 950000}}"#)).unwrap_err().to_string();
    assert_eq!(e, "linux.resources.cpu.realtimeRuntime: cgroup v2 has no real-time group scheduling interface");
    let e = apply_fresh(&fx.cg, &res(r#"{"cpu": {"realtimePeriod": 1000000}}"#)).unwrap_err().to_string();
    assert!(e.starts_with("linux.resources.cpu.realtimePeriod:"), "{e}");
    let e = apply_fresh(&fx.cg, &res(r#"{"cpu": {"idle": 2}}"#)).unwrap_err().to_string();
    assert_eq!(e, "linux.resources.cpu.idle: 2 is not 0 or 1");
}

#[test]
fn v2_io_weight_and_io_max() {
    let fx = v2_fixture(&[], &[]);
    let r = res(r#"{"blockIO": {"weight": 500,
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 2048}],
            "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}]}}"#);
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &r));
    out.unwrap();
    assert_eq!(
        w,
        pairs(&[
            ("io.weight", "4950"),
            ("io.max", "8:0 rbps=1048576"),
            ("io.max", "8:16 wbps=2048"),
            ("io.max", "8:0 riops=100"),
            ("io.max", "8:0 wiops=max"),
        ])
    );
    let e = apply_fresh(&fx.cg, &res(r#"{"blockIO": {"leafWeight": 300}}"#)).unwrap_err().to_string();
    assert!(e.starts_with("linux.resources.blockIO.leafWeight: cgroup v2 has no leaf weight"), "{e}");
    let e = apply_fresh(&fx.cg, &res(r#"{"blockIO": {"weight": 5}}"#)).unwrap_err().to_string();
    assert!(e.contains("below the minimum of 10"), "{e}");
    // Per-device weights need BFQ on v2; without it the error names the file.
    let e = apply_fresh(&fx.cg, &res(r#"{"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 300}]}}"#))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("linux.resources.blockIO.weightDevice[0].weight: writing "), "{e}");
    assert!(e.contains("io.bfq.weight: No such file"), "{e}");
    let e =
        apply_fresh(&fx.cg, &res(r#"{"blockIO": {"throttleReadBpsDevice": [{"major": -1, "minor": 0, "rate": 1}]}}"#))
            .unwrap_err()
            .to_string();
    assert!(e.starts_with("linux.resources.blockIO.throttleReadBpsDevice[0]: -1:0 is not a device number"), "{e}");
}

#[test]
fn v2_bfq_takes_the_weight_unconverted() {
    let fx = v2_fixture(&[("io.bfq.weight", "default 100")], &[]);
    let r = res(r#"{"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 300}]}}"#);
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &r));
    out.unwrap();
    assert_eq!(w, pairs(&[("io.bfq.weight", "500"), ("io.bfq.weight", "8:0 300")]));
}

#[test]
fn v2_pids_hugetlb_rdma() {
    let fx = v2_fixture(&[], &[]);
    for (limit, want) in [(0, "max"), (-1, "max"), (-7, "max"), (10, "10")] {
        let (_, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &res(&format!(r#"{{"pids": {{"limit": {limit}}}}}"#))));
        assert_eq!(w, pairs(&[("pids.max", want)]), "limit {limit}");
    }
    let r = res(r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}, {"pageSize": "1GB", "limit": -1}],
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 4}, "mlx5_0": {"hcaObjects": 9}}}"#);
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &r));
    out.unwrap();
    // 1GB has no rsvd file in the fixture: skipped (old kernels lack it).
    assert_eq!(
        w,
        pairs(&[
            ("hugetlb.2MB.max", "4194304"),
            ("hugetlb.2MB.rsvd.max", "4194304"),
            ("hugetlb.1GB.max", "max"),
            ("rdma.max", "mlx5_0 hca_object=9"),
            ("rdma.max", "mlx5_1 hca_handle=3 hca_object=4"),
        ])
    );
    let e = apply_fresh(&fx.cg, &res(r#"{"hugepageLimits": [{"pageSize": "../2MB", "limit": 1}]}"#))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("linux.resources.hugepageLimits[0].pageSize:"), "{e}");
}

#[test]
fn v2_network_and_v1_only_settings_are_refused() {
    let fx = v2_fixture(&[], &[]);
    let e = apply_fresh(&fx.cg, &res(r#"{"network": {"classID": 1}}"#)).unwrap_err();
    assert!(matches!(e, CgroupError::Unsupported { .. }));
    assert!(e.to_string().contains("cgroup v2 has no equivalent"), "{e}");
}

#[test]
fn v2_unified_writes_each_line_and_needs_existing_files() {
    let fx = v2_fixture(&[], &[]);
    let r = res(r#"{"pids": {"limit": 5}, "unified": {"pids.max": "9", "io.max": "8:0 rbps=1\n8:16 wbps=2\n"}}"#);
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &r));
    out.unwrap();
    // unified is applied last, so it wins over the typed field.
    assert_eq!(w, pairs(&[("pids.max", "5"), ("io.max", "8:0 rbps=1"), ("io.max", "8:16 wbps=2"), ("pids.max", "9")]));
    let e = apply_fresh(&fx.cg, &res(r#"{"unified": {"memory.oom.group": "1"}}"#)).unwrap_err().to_string();
    assert!(e.starts_with(r#"linux.resources.unified["memory.oom.group"]: writing "#), "{e}");
    assert!(e.contains("No such file or directory"), "{e}");
}

#[test]
fn v2_devices_become_one_program() {
    let fx = v2_fixture(&[], &[]);
    let mut r = res(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#);
    let mut d = r.devices().clone().unwrap();
    d.extend(crate::default_allowed_devices());
    r.set_devices(Some(d));
    let ops = apply::plan(&fx.cg, &r, true, false).unwrap();
    let progs: Vec<_> = ops.iter().filter(|o| matches!(o, Op::DevicesV2 { .. })).collect();
    assert_eq!(progs.len(), 1);
    // Updates without devices leave the program alone.
    let ops = apply::plan(&fx.cg, &res(r#"{"pids": {"limit": 1}}"#), false, true).unwrap();
    assert_eq!(no_devices(ops.clone()), ops);
}

#[test]
fn v2_stats_from_kernel_files() {
    let fx = v2_fixture(
        &[
            ("memory.stat", "anon 1000\nfile 4096\nkernel 12\n"),
            ("memory.peak", "70000000"),
            ("memory.swap.current", "100"),
            (
                "cpu.stat",
                "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\n",
            ),
            ("io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"),
            ("pids.current", "3"),
            ("hugetlb.2MB.current", "2097152"),
            ("hugetlb.2MB.events", "max 4\n"),
            ("cpuset.cpus.effective", "0-2,5\n"),
            (
                "cpu.pressure",
                "some avg10=1.50 avg60=0.00 avg300=0.00 total=12\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=3\n",
            ),
        ],
        &[],
    );
    std::fs::write(fx.dir.join("pids.max"), "20\n").unwrap();
    let s = fx.cg.stats().unwrap();
    assert_eq!((s.cpu.usage.total, s.cpu.usage.user, s.cpu.usage.kernel), (1_500_000, 1_000_000, 500_000));
    assert_eq!(
        (s.cpu.throttling.periods, s.cpu.throttling.throttled_periods, s.cpu.throttling.throttled_time),
        (7, 2, 30_000)
    );
    assert_eq!(s.memory.cache, 4096);
    assert_eq!(s.memory.usage.usage, 52_428_800);
    assert_eq!(s.memory.usage.limit, u64::MAX);
    assert_eq!(s.memory.usage.max, 70_000_000);
    assert_eq!(s.memory.usage.failcnt, 2);
    // v1 semantics: memory+swap.
    assert_eq!(s.memory.swap.usage, 52_428_900);
    assert_eq!(s.memory.swap.limit, u64::MAX);
    assert!(s.memory.use_hierarchy);
    assert_eq!((s.pids.current, s.pids.limit), (3, 20));
    assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
    assert_eq!(s.blkio.io_serviced_recursive[1].op, "Write");
    assert_eq!(s.hugetlb["2MB"].usage, 2_097_152);
    assert_eq!(s.hugetlb["2MB"].failcnt, 4);
    assert_eq!(s.cpuset.cpus, vec![0, 1, 2, 5]);
    assert_eq!(s.cpu.psi.as_ref().unwrap().some.avg10, 1.5);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["blkio"]["ioServiceBytesRecursive"][0], serde_json::json!({"major": 8, "op": "Read", "value": 4096}));
    assert_eq!(
        v["cpu"]["throttling"],
        serde_json::json!({"periods": 7, "throttledPeriods": 2, "throttledTime": 30000})
    );
    assert_eq!(v["pids"], serde_json::json!({"current": 3, "limit": 20}));
    assert!(v["memory"]["raw"]["anon"] == 1000);
}

#[test]
fn v2_oom_watcher_follows_memory_events_with_inotify() {
    let fx = v2_fixture(&[], &[]);
    let mut w = fx.cg.oom_watcher().unwrap();
    let pollable = |w: &crate::OomWatcher| {
        let mut fds = [rustix::event::PollFd::new(w, rustix::event::PollFlags::IN)];
        let ts = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
        rustix::event::poll(&mut fds, Some(&ts)).unwrap() == 1
    };
    assert!(!pollable(&w));
    assert_eq!(w.read_events().unwrap(), 0);
    // What the kernel does on an OOM kill: rewrite memory.events in place.
    std::fs::write(fx.dir.join("memory.events"), "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n").unwrap();
    assert!(pollable(&w));
    assert_eq!(w.read_events().unwrap(), 2);
    assert!(!pollable(&w));
    assert_eq!(fx.cg.oom_kill_count().unwrap(), 2);
    std::fs::remove_file(fx.dir.join("memory.events")).unwrap();
    assert!(matches!(w.read_events(), Err(CgroupError::Removed { .. })));
}

// ---- cgroup v1 controllers absent on this host -------------------------

#[test]
fn v1_net_cls_net_prio_hugetlb_rdma() {
    let fx = v1_fixture(&[
        ("net_cls,net_prio", &[("net_cls.classid", "0"), ("net_prio.ifpriomap", "")]),
        ("hugetlb", &[("hugetlb.2MB.limit_in_bytes", ""), ("hugetlb.2MB.rsvd.limit_in_bytes", "")]),
        ("rdma", &[("rdma.max", "")]),
    ]);
    let r = res(
        r#"{"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}, {"name": "lo", "priority": 2}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "rdma": {"mlx4_0": {"hcaHandles": 2}}}"#,
    );
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &r));
    out.unwrap();
    assert_eq!(
        w,
        pairs(&[
            ("hugetlb/c/hugetlb.2MB.limit_in_bytes", "4194304"),
            ("hugetlb/c/hugetlb.2MB.rsvd.limit_in_bytes", "4194304"),
            ("net_cls,net_prio/c/net_cls.classid", "1048577"),
            ("net_cls,net_prio/c/net_prio.ifpriomap", "eth0 5"),
            ("net_cls,net_prio/c/net_prio.ifpriomap", "lo 2"),
            ("rdma/c/rdma.max", "mlx4_0 hca_handle=2"),
        ])
    );
    // No v2 at all: unified is refused.
    let e = apply_fresh(&fx.cg, &res(r#"{"unified": {"pids.max": "1"}}"#)).unwrap_err().to_string();
    assert!(e.contains("this host has no cgroup v2 hierarchy"), "{e}");
}

#[test]
fn v1_blkio_prefers_cfq_files_and_supports_leaf_weights() {
    let cfq: &[(&str, &str)] = &[
        ("blkio.weight", "500"),
        ("blkio.weight_device", ""),
        ("blkio.leaf_weight", "500"),
        ("blkio.leaf_weight_device", ""),
        ("blkio.bfq.weight", "100"),
    ];
    let fx = v1_fixture(&[("blkio", cfq)]);
    let r = res(
        r#"{"blockIO": {"weight": 300, "leafWeight": 200, "weightDevice": [{"major": 8, "minor": 0, "weight": 400, "leafWeight": 100}]}}"#,
    );
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &r));
    out.unwrap();
    assert_eq!(
        w,
        pairs(&[
            ("blkio/c/blkio.weight", "300"),
            ("blkio/c/blkio.leaf_weight", "200"),
            ("blkio/c/blkio.weight_device", "8:0 400"),
            ("blkio/c/blkio.leaf_weight_device", "8:0 100"),
        ])
    );
}

#[test]
fn v1_memory_and_memsw_write_order() {
    let files: &[(&str, &str)] = &[
        ("memory.limit_in_bytes", "67108864"),
        ("memory.memsw.limit_in_bytes", "67108864"),
        ("memory.soft_limit_in_bytes", ""),
        ("memory.oom_control", ""),
        ("memory.swappiness", ""),
    ];
    let fx = v1_fixture(&[("memory", files)]);
    // Fresh cgroup (limits are unlimited): memory first.
    let r = res(r#"{"memory": {"limit": 33554432, "swap": 67108864, "disableOOMKiller": true, "swappiness": 0}}"#);
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &r));
    out.unwrap();
    assert_eq!(
        w,
        pairs(&[
            ("memory/c/memory.limit_in_bytes", "33554432"),
            ("memory/c/memory.memsw.limit_in_bytes", "67108864"),
            ("memory/c/memory.oom_control", "1"),
            ("memory/c/memory.swappiness", "0"),
        ])
    );
    // Growing past the live memory limit (32 MiB now): memsw first.
    let (out, w) = journal(&fx.dir, || {
        fx.cg.update(&res(r#"{"memory": {"limit": 134217728, "swap": 268435456, "disableOOMKiller": false}}"#))
    });
    out.unwrap();
    assert_eq!(
        w,
        pairs(&[
            ("memory/c/memory.memsw.limit_in_bytes", "268435456"),
            ("memory/c/memory.limit_in_bytes", "134217728"),
            ("memory/c/memory.oom_control", "0"),
        ])
    );
    // Unlimited memory lifts memsw too.
    let (_, w) = journal(&fx.dir, || fx.cg.update(&res(r#"{"memory": {"limit": -1}}"#)));
    assert_eq!(w, pairs(&[("memory/c/memory.memsw.limit_in_bytes", "-1"), ("memory/c/memory.limit_in_bytes", "-1")]));
}

#[test]
fn v1_swap_without_swap_accounting() {
    let fx = v1_fixture(&[("memory", &[("memory.limit_in_bytes", "")])]);
    let (_, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &res(r#"{"memory": {"limit": -1, "swap": -1}}"#)));
    assert_eq!(w, pairs(&[("memory/c/memory.limit_in_bytes", "-1")]));
    let e = apply_fresh(&fx.cg, &res(r#"{"memory": {"limit": 4096, "swap": 8192}}"#)).unwrap_err().to_string();
    assert!(e.starts_with("linux.resources.memory.swap: writing "), "{e}");
    assert!(e.contains("swapaccount=1"), "{e}");
}

#[test]
fn v1_cpu_realtime_and_shares() {
    let files: &[(&str, &str)] = &[
        ("cpu.shares", ""),
        ("cpu.cfs_period_us", ""),
        ("cpu.cfs_quota_us", ""),
        ("cpu.rt_period_us", ""),
        ("cpu.rt_runtime_us", ""),
    ];
    let fx = v1_fixture(&[("cpu,cpuacct", files)]);
    let r = res(
        r#"{"cpu": {"shares": 2048, "period": 50000, "quota": 25000, "realtimePeriod": 1000000, "realtimeRuntime": 950000}}"#,
    );
    let (out, w) = journal(&fx.dir, || apply_fresh(&fx.cg, &r));
    out.unwrap();
    assert_eq!(
        w,
        pairs(&[
            ("cpu,cpuacct/c/cpu.shares", "2048"),
            ("cpu,cpuacct/c/cpu.cfs_period_us", "50000"),
            ("cpu,cpuacct/c/cpu.cfs_quota_us", "25000"),
            ("cpu,cpuacct/c/cpu.rt_period_us", "1000000"),
            ("cpu,cpuacct/c/cpu.rt_runtime_us", "950000"),
        ])
    );
    // Burst on a kernel without cfs_burst_us: error naming the file.
    let e = apply_fresh(&fx.cg, &res(r#"{"cpu": {"burst": 10}}"#)).unwrap_err().to_string();
    assert!(e.contains("cpu.cfs_burst_us: No such file"), "{e}");
}

// ---- layout, resolution and creation on a fake mount --------------------

#[test]
fn state_json_shape_is_stable() {
    let cg = Cgroup {
        mode: Mode::Hybrid,
        v1: vec![V1Dir {
            controllers: vec!["cpu".into(), "cpuacct".into()],
            mount: "/sys/fs/cgroup/cpu,cpuacct".into(),
            path: "/sys/fs/cgroup/cpu,cpuacct/berth/c".into(),
        }],
        v2: Some(V2Dir {
            mount: "/sys/fs/cgroup/unified".into(),
            path: "/sys/fs/cgroup/unified/berth/c".into(),
            controllers: vec!["hugetlb".into()],
        }),
        delegated: false,
    };
    let v = serde_json::to_value(&cg).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "mode": "hybrid",
            "v1": [{"controllers": ["cpu", "cpuacct"], "mount": "/sys/fs/cgroup/cpu,cpuacct", "path": "/sys/fs/cgroup/cpu,cpuacct/berth/c"}],
            "v2": {"mount": "/sys/fs/cgroup/unified", "path": "/sys/fs/cgroup/unified/berth/c", "controllers": ["hugetlb"]}
        })
    );
    assert_eq!(
        cg.locate(crate::apply::Ctl::Cpu),
        Some(crate::apply::Target::V1(Path::new("/sys/fs/cgroup/cpu,cpuacct/berth/c")))
    );
    assert_eq!(
        cg.locate(crate::apply::Ctl::Hugetlb),
        Some(crate::apply::Target::V2(Path::new("/sys/fs/cgroup/unified/berth/c")))
    );
    assert_eq!(cg.locate(crate::apply::Ctl::Memory), None);
    // Devices/freezer fall back to the v2 pseudo-controllers when v1 lacks them.
    assert!(matches!(cg.locate(crate::apply::Ctl::Devices), Some(crate::apply::Target::V2(_))));
}

#[test]
fn unified_create_enables_every_controller_and_the_needed_ones_must_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path();
    std::fs::write(mount.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
    std::fs::write(mount.join("cgroup.subtree_control"), "pids\n").unwrap();
    let l = crate::layout::Layout { mode: Mode::Unified, v1: Vec::new(), v2: Some(mount.to_path_buf()) };
    let cg = Cgroup::from_layout(&l, &crate::layout::SpecPath::Absolute("a/b".into())).unwrap();
    assert_eq!(cg.v2.as_ref().unwrap().controllers, vec!["cpu", "memory", "pids"]);
    // In a temp dir the new directories get no kernel files, so the walk cannot read `a`'s
    // subtree_control: pids, which the limit needs, cannot be enabled there, an error naming
    // the field, and both new directories are removed again.
    let (out, w) = journal(mount, || cg.create(Some(&res(r#"{"pids": {"limit": 3}}"#))));
    let e = out.unwrap_err().to_string();
    assert!(e.starts_with("linux.resources.pids.limit: needs the cgroup v2 pids controller"), "{e}");
    assert!(e.contains("a/cgroup.subtree_control"), "{e}");
    assert_eq!(w, pairs(&[("cgroup.subtree_control", "+cpu +memory")]));
    assert!(!mount.join("a").exists());
    assert!(mount.join("cgroup.controllers").exists());
}

/// A hybrid host's cgroup2 on a temp dir: the root and a shared parent `p` (with their
/// `cgroup.subtree_control`), the container at `p/c`, hugetlb and pids offered.
fn hybrid_v2_fixture(root_enables: &str, p_enables: &str) -> (tempfile::TempDir, Cgroup) {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().to_path_buf();
    std::fs::create_dir(mount.join("p")).unwrap();
    std::fs::write(mount.join("cgroup.subtree_control"), root_enables).unwrap();
    std::fs::write(mount.join("p/cgroup.subtree_control"), p_enables).unwrap();
    let v2 = V2Dir { path: mount.join("p/c"), mount, controllers: vec!["hugetlb".into(), "pids".into()] };
    (tmp, Cgroup { mode: Mode::Hybrid, v1: Vec::new(), v2: Some(v2), delegated: false })
}

#[test]
fn hybrid_enables_in_cgroup2_only_what_the_limits_need() {
    let (tmp, cg) = hybrid_v2_fixture("", "");
    let delegate = |json: &str, creating: bool| {
        let ops = no_devices(apply::plan(&cg, &res(json), true, !creating).unwrap());
        journal(tmp.path(), || cg.delegate(&ops, creating).map(|lock| lock.is_some()))
    };
    // No limit lives on cgroup2: nothing is enabled, nothing is locked.
    let (out, w) = delegate(r#"{}"#, true);
    assert!(!out.unwrap());
    assert!(w.is_empty(), "{w:?}");
    // A hugetlb limit needs hugetlb, on every ancestor, and nothing else; the shared lock is
    // held until the caller has written the limit.
    let (out, w) = delegate(r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}"#, true);
    assert!(out.unwrap());
    assert_eq!(w, pairs(&[("cgroup.subtree_control", "+hugetlb"), ("p/cgroup.subtree_control", "+hugetlb")]));
    // So does an update that adds a pids limit, and a unified key of that controller.
    std::fs::write(tmp.path().join("cgroup.subtree_control"), "hugetlb").unwrap();
    std::fs::write(tmp.path().join("p/cgroup.subtree_control"), "hugetlb").unwrap();
    let (_, w) = delegate(r#"{"pids": {"limit": 5}}"#, false);
    assert_eq!(w, pairs(&[("cgroup.subtree_control", "+pids"), ("p/cgroup.subtree_control", "+pids")]));
    std::fs::write(tmp.path().join("cgroup.subtree_control"), "hugetlb pids").unwrap();
    std::fs::write(tmp.path().join("p/cgroup.subtree_control"), "hugetlb pids").unwrap();
    let (_, w) = delegate(r#"{"unified": {"pids.max": "5"}}"#, false);
    assert!(w.is_empty(), "already enabled: {w:?}");

    // The same cgroup on a unified host enables every offered controller on create.
    let (tmp, mut cg) = hybrid_v2_fixture("", "");
    cg.mode = Mode::Unified;
    let (_, w) = journal(tmp.path(), || cg.delegate(&[], true).map(|_| ()));
    assert_eq!(
        w,
        pairs(&[("cgroup.subtree_control", "+hugetlb +pids"), ("p/cgroup.subtree_control", "+hugetlb +pids")])
    );
}

#[test]
fn hybrid_release_disables_what_no_cgroup_uses_any_more() {
    // The container `p/c` is gone; `other` is another cgroup under the root.
    let setup = |other_enables: &str, other_limit: &str| {
        let (tmp, cg) = hybrid_v2_fixture("hugetlb pids", "hugetlb");
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("cgroup.subtree_control"), other_enables).unwrap();
        // A new cgroup's hugetlb limit reads as the kernel's rounded maximum, not `max`.
        std::fs::write(other.join("hugetlb.2MB.max"), other_limit).unwrap();
        std::fs::write(other.join("hugetlb.2MB.current"), "4194304").unwrap();
        (tmp, cg)
    };
    let (tmp, cg) = setup("", "9223372036854771712");
    let (_, w) = journal(tmp.path(), || crate::delegate::release(cg.v2.as_ref().unwrap()));
    assert_eq!(
        w,
        pairs(&[
            ("p/cgroup.subtree_control", "-hugetlb"),
            ("cgroup.subtree_control", "-hugetlb"),
            ("cgroup.subtree_control", "-pids"),
        ])
    );
    // A limit in force below keeps hugetlb at the root (pids still goes).
    let (tmp, cg) = setup("", "4194304");
    let (_, w) = journal(tmp.path(), || crate::delegate::release(cg.v2.as_ref().unwrap()));
    assert_eq!(w, pairs(&[("p/cgroup.subtree_control", "-hugetlb"), ("cgroup.subtree_control", "-pids")]));
    // So does a child enabling it for its own children.
    let (tmp, cg) = setup("hugetlb", "max");
    let (_, w) = journal(tmp.path(), || crate::delegate::release(cg.v2.as_ref().unwrap()));
    assert_eq!(w, pairs(&[("p/cgroup.subtree_control", "-hugetlb"), ("cgroup.subtree_control", "-pids")]));
    // Controllers whose use cannot be told apart from their defaults stay.
    let (tmp, cg) = hybrid_v2_fixture("memory", "memory");
    let (_, w) = journal(tmp.path(), || crate::delegate::release(cg.v2.as_ref().unwrap()));
    assert!(w.is_empty(), "{w:?}");
    // A unified host releases nothing.
    let (tmp, mut cg) = setup("", "max");
    cg.mode = Mode::Unified;
    let (_, w) = journal(tmp.path(), || cg.destroy().unwrap());
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn devices_none_on_create_means_deny_all() {
    let fx = v1_fixture(&[("devices", &[("devices.allow", ""), ("devices.deny", ""), ("devices.list", "a *:* rwm")])]);
    let (out, w) = journal(&fx.dir, || apply::execute(&apply::plan(&fx.cg, &LinuxResources::default(), true, false)?));
    out.unwrap();
    assert_eq!(w, pairs(&[("devices/c/devices.deny", "a *:* rwm")]));
    // An update without devices leaves them alone.
    let (_, w) = journal(&fx.dir, || fx.cg.update(&LinuxResources::default()));
    assert!(w.is_empty());
    // An update from the live list only writes the difference.
    std::fs::write(fx.cg.v1[0].path.join("devices.list"), "c 1:3 rwm\nc 1:5 rwm\n").unwrap();
    let r = res(
        r#"{"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rw"}]}"#,
    );
    let (_, w) = journal(&fx.dir, || fx.cg.update(&r));
    assert_eq!(w, pairs(&[("devices/c/devices.deny", "c 1:5 rwm"), ("devices/c/devices.allow", "c 1:7 rw")]));
}

// ---- freezer -------------------------------------------------------------

/// A hybrid cgroup on temp dirs: a v1 freezer and a cgroup2 directory.
fn hybrid_freezer_fixture(v1_state: &str, v2_freeze: &str, v2_frozen: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let fmount = tmp.path().join("freezer");
    let fdir = fmount.join("c");
    std::fs::create_dir_all(&fdir).unwrap();
    std::fs::write(fdir.join("freezer.state"), v1_state).unwrap();
    let umount = tmp.path().join("unified");
    let udir = umount.join("c");
    std::fs::create_dir_all(&udir).unwrap();
    std::fs::write(udir.join("cgroup.freeze"), v2_freeze).unwrap();
    std::fs::write(udir.join("cgroup.events"), format!("populated 1\nfrozen {v2_frozen}\n")).unwrap();
    let cg = Cgroup {
        mode: Mode::Hybrid,
        v1: vec![V1Dir { controllers: vec!["freezer".into()], mount: fmount, path: fdir }],
        v2: Some(V2Dir { mount: umount, path: udir, controllers: Vec::new() }),
        delegated: false,
    };
    let dir = tmp.path().to_path_buf();
    Fixture { _tmp: tmp, cg, dir }
}

#[test]
fn freezer_state_is_frozen_only_when_every_freezer_asked_has_frozen() {
    use crate::FreezerState::*;
    for (v1, freeze, frozen, want) in [
        ("THAWED", "0", "0", Thawed),
        // Paused through one freezer only (by an older berth, or by hand).
        ("FROZEN", "0", "0", Frozen),
        ("THAWED", "1", "1", Frozen),
        ("FROZEN", "1", "1", Frozen),
        // One freezer still on its way.
        ("FREEZING", "1", "1", Freezing),
        ("FROZEN", "1", "0", Freezing),
        ("THAWED", "1", "0", Freezing),
    ] {
        let fx = hybrid_freezer_fixture(v1, freeze, frozen);
        assert_eq!(fx.cg.freezer_state().unwrap(), want, "freezer.state {v1}, cgroup.freeze {freeze}, frozen {frozen}");
    }
}

/// The v1 freezer of kernels 6.1 to 6.15 (without upstream 14a67b42cb6f)
/// can report `FROZEN` while a task runs. A fake freezer whose
/// `freezer.state` simply keeps what is written plays that kernel, with a
/// real process that is not stopped (asleep in `S`) as its task: `freeze`
/// must not report success, must have frozen again before giving up, and
/// must leave the cgroup thawed.
#[test]
fn v1_freeze_does_not_trust_frozen_while_a_task_is_not_stopped() {
    let mut child = std::process::Command::new("/bin/busybox").args(["sleep", "1000"]).spawn().unwrap();
    let pid = child.id().to_string();
    let fx = v1_fixture(&[("freezer", &[("freezer.state", "THAWED"), ("tasks", &pid)])]);
    let (out, w) = journal(&fx.dir, || fx.cg.freeze());
    let _ = child.kill();
    let _ = child.wait();
    let e = out.expect_err("freeze reported success while a task of the cgroup was running").to_string();
    assert!(e.contains("freezer reports FROZEN but a task is not stopped"), "{e}");
    assert!(e.contains(&format!("task {pid} is in state S")), "{e}");
    let writes: Vec<&str> = w.iter().filter(|(f, _)| f == "freezer/c/freezer.state").map(|(_, v)| v.as_str()).collect();
    assert!(writes.windows(2).filter(|p| p == &["THAWED", "FROZEN"]).count() >= 3, "no refreeze: {writes:?}");
    assert_eq!(writes.last(), Some(&"THAWED"), "left frozen: {writes:?}");
}
