//! The v2 code paths, run for real on this hybrid host's cgroup2 mount at
//! `/sys/fs/cgroup/unified` by treating it as a unified host
//! (`Cgroup::resolve_v2_only_for_tests`). What works there: directory
//! creation/removal, `hugetlb`, `cgroup.freeze`, `cgroup.kill`,
//! `cgroup.procs`, and the eBPF device filter (cgroup BPF programs act on the
//! cgroup2 membership of a task even on hybrid hosts).
//!
//! What cannot run here: the memory, cpu, io, pids and cpuset v2 controllers
//! are bound to v1 on this host, so their files do not exist in cgroup2 and
//! the OOM watcher's `memory.events` path cannot be driven by a real OOM.
//! Those translations are tested against a temp dir in `src/tests.rs`.
//!
//! hugetlb is only on cgroup2 while no other runtime bound it to a v1
//! hierarchy; where it is not, its parts are reported as SKIPPED. As if
//! unified, `create` here enables every controller cgroup2 offers in the
//! root's `cgroup.subtree_control`; [`Cgroup2Root`] takes back what the tests
//! added there once no cgroup uses it, so a v1-only runtime can still bind it.

mod common;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use berth_cgroups::{Cgroup, FreezerState, Mode};
use common::*;

/// The cgroup2 mount, serialised among this file's tests; on drop, the controllers they
/// added to the root's `cgroup.subtree_control` are disabled again if no cgroup uses them
/// (not enabled below, no limit in force).
struct Cgroup2Root {
    mount: PathBuf,
    before: String,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Cgroup2Root {
    fn get() -> Option<Cgroup2Root> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mount) = cgroup2_mount() else {
            skip("no cgroup2 mounted here");
            return None;
        };
        let before = read(&mount.join("cgroup.subtree_control"));
        Some(Cgroup2Root { mount, before, _serial: serial })
    }
}

impl Drop for Cgroup2Root {
    fn drop(&mut self) {
        let now = std::fs::read_to_string(self.mount.join("cgroup.subtree_control")).unwrap_or_default();
        let kids: Vec<PathBuf> =
            cgroup2_dirs(&self.mount).into_iter().filter(|d| d.parent() == Some(&self.mount)).collect();
        for c in now.split_whitespace().filter(|c| !self.before.split_whitespace().any(|b| b == *c)) {
            if kids.iter().any(|k| enables(k, c) || !limits_set(k, c).is_empty()) {
                continue;
            }
            let _ = std::fs::write(self.mount.join("cgroup.subtree_control"), format!("-{c}"));
        }
    }
}

fn resolve(root: &Cgroup2Root, name: &str) -> Cgroup {
    Cgroup::resolve_v2_only_for_tests(&root.mount, &unique(&format!("v2-{name}"))).unwrap()
}

/// Whether hugetlb is on cgroup2 here; if not, reports that `part` is not tested.
fn hugetlb_on_v2(part: &str) -> bool {
    match place_of("hugetlb") {
        Place::V2(_) => true,
        Place::V1(m) => {
            skip_part(part, &format!("hugetlb is a v1 hierarchy mounted at {}", m.display()));
            false
        }
        Place::Nowhere(why) => {
            skip_part(part, &why);
            false
        }
    }
}

fn dir(cg: &Cgroup) -> &Path {
    cg.unified_dir().unwrap()
}

fn attached_device_programs(dir: &Path) -> usize {
    let f = std::fs::File::open(dir).unwrap();
    let mut ids = [0u32; 16];
    berth_sys::bpf::prog_query(f.as_fd(), berth_sys::bpf::BPF_CGROUP_DEVICE, &mut ids).unwrap()
}

#[test]
fn create_sets_hugetlb_and_destroy_removes_the_directory() {
    let Some(root) = Cgroup2Root::get() else { return };
    if !hugetlb_on_v2("hugetlb on cgroup2") {
        return;
    }
    let cg = resolve(&root, "hugetlb");
    assert_eq!(cg.mode(), Mode::Unified);
    assert!(cg.v1_dir("memory").is_none());
    let t = TestCgroup::new(cg.clone());
    t.cg.create(Some(&resources(
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 6291456}, {"pageSize": "1GB", "limit": -1}]}"#,
    )))
    .unwrap();
    assert_eq!(read(&dir(&cg).join("hugetlb.2MB.max")), "6291456");
    assert_eq!(read(&dir(&cg).join("hugetlb.1GB.max")), "max");
    // The parent delegates hugetlb to us.
    assert!(read(&root.mount.join("cgroup.subtree_control")).contains("hugetlb"));
    t.cg.update(&resources(r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}"#)).unwrap();
    assert_eq!(read(&dir(&cg).join("hugetlb.2MB.max")), "2097152");
    t.cg.destroy().unwrap();
    assert!(!dir(&cg).exists());
}

#[test]
fn controllers_missing_from_v2_are_clear_errors_and_create_nothing() {
    let Some(root) = Cgroup2Root::get() else { return };
    let cg = resolve(&root, "nomem");
    for (json, want) in [
        (
            r#"{"memory": {"limit": 1048576}}"#,
            "linux.resources.memory: the memory controller is not available on this host",
        ),
        (r#"{"pids": {"limit": 3}}"#, "linux.resources.pids.limit: the pids controller is not available"),
        (r#"{"cpu": {"realtimeRuntime": 5}}"#, "the cpu controller is not available"),
        (r#"{"unified": {"memory.high": "5"}}"#, "the memory controller is not in the cgroup v2 hierarchy"),
    ] {
        let ctrl =
            json.split('"').nth(if json.contains("unified") { 3 } else { 1 }).unwrap().split('.').next().unwrap();
        if matches!(place_of(ctrl), Place::V2(_)) {
            skip_part(json, &format!("{ctrl} is on cgroup2 here, so it is no error"));
            continue;
        }
        let e = cg.create(Some(&resources(json))).unwrap_err().to_string();
        assert!(e.contains(want), "{json}: {e}");
        assert!(!dir(&cg).exists());
    }
}

#[test]
fn cgroup_freeze_stops_and_thaw_resumes() {
    let Some(root) = Cgroup2Root::get() else { return };
    let cg = resolve(&root, "freeze");
    let t = TestCgroup::new(cg);
    t.cg.create(None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("count");
    let mut p = Proc::spawn(&format!("i=0; while true; do i=$((i+1)); echo $i > {}; done", file.display()));
    t.cg.add_pid(p.pid(), false).unwrap();
    assert_eq!(t.cg.pids().unwrap(), vec![p.pid()]);
    p.go();
    let n = |f: &Path| std::fs::read_to_string(f).ok().and_then(|s| s.trim().parse::<u64>().ok());
    wait_until("counting", || n(&file).is_some_and(|v| v > 10));
    t.cg.freeze().unwrap();
    assert_eq!(t.cg.freezer_state().unwrap(), FreezerState::Frozen);
    assert_eq!(read(&dir(&t.cg).join("cgroup.freeze")), "1");
    let a = std::fs::read_to_string(&file).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(a, std::fs::read_to_string(&file).unwrap(), "frozen process kept counting");
    let at = a.trim().parse::<u64>().unwrap_or(0);
    t.cg.thaw().unwrap();
    assert_eq!(t.cg.freezer_state().unwrap(), FreezerState::Thawed);
    wait_until("counting again", || n(&file).is_some_and(|v| v > at));
}

#[test]
fn sigkill_uses_cgroup_kill() {
    let Some(root) = Cgroup2Root::get() else { return };
    let cg = resolve(&root, "kill");
    let t = TestCgroup::new(cg);
    // Background jobs get /dev/null as stdin: allow the default devices.
    t.cg.create(Some(&with_default_devices(Default::default()))).unwrap();
    let mut p = Proc::spawn("/bin/busybox sleep 1000 & echo started; wait");
    t.cg.add_pid(p.pid(), false).unwrap();
    p.go();
    assert_eq!(p.read_line(), "started");
    wait_until("two processes", || t.cg.pids().unwrap().len() == 2);
    become_subreaper();
    let pids = t.cg.pids().unwrap();
    t.cg.signal_all(libc::SIGKILL).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(p.child.wait().unwrap().signal(), Some(libc::SIGKILL));
    wait_until("empty cgroup", || t.cg.pids().unwrap().is_empty());
    reap(&pids);
    // No freezing was involved.
    assert_eq!(read(&dir(&t.cg).join("cgroup.freeze")), "0");
}

#[test]
fn ebpf_device_filter_denies_open_and_is_replaced_on_update() {
    let Some(root) = Cgroup2Root::get() else { return };
    let cg = resolve(&root, "devices");
    let t = TestCgroup::new(cg);
    let mut r = with_default_devices(resources(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#));
    let mut rules = r.devices().clone().unwrap();
    rules.push(
        serde_json::from_str(r#"{"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rw"}"#).unwrap(),
    );
    r.set_devices(Some(rules));
    t.cg.create(Some(&r)).unwrap();
    assert_eq!(attached_device_programs(dir(&t.cg)), 1);

    let mut p = Proc::spawn(
        "while read x; do if cat /dev/null; then n=ok; else n=denied; fi; u=$(head -c 1 /dev/urandom | wc -c); echo \"null=$n urandom=$u\"; done",
    );
    // Only the cgroup2 membership matters for the eBPF filter.
    t.cg.add_pid(p.pid(), false).unwrap();
    p.go();
    p.send("check");
    assert_eq!(p.read_line(), "null=denied urandom=1");

    // Update: the program is replaced (still exactly one) and /dev/null opens.
    t.cg.update(&with_default_devices(resources(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#))).unwrap();
    assert_eq!(attached_device_programs(dir(&t.cg)), 1);
    p.send("check");
    assert_eq!(p.read_line(), "null=ok urandom=1");

    // Deny-list mode: allow everything except reading /dev/urandom.
    t.cg.update(&resources(r#"{"devices": [{"allow": true, "access": "rwm"}, {"allow": false, "type": "c", "major": 1, "minor": 9, "access": "r"}]}"#))
        .unwrap();
    assert_eq!(attached_device_programs(dir(&t.cg)), 1);
    p.send("check");
    assert_eq!(p.read_line(), "null=ok urandom=0");
    let (_, _, err) = p.finish();
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn unified_keys_are_validated_and_written() {
    let Some(root) = Cgroup2Root::get() else { return };
    let cg = resolve(&root, "unified");
    let t = TestCgroup::new(cg);
    let huge = hugetlb_on_v2("hugetlb keys");
    if huge {
        t.cg.create(Some(&resources(r#"{"unified": {"hugetlb.2MB.max": "4194304", "cgroup.max.depth": "2"}}"#)))
            .unwrap();
        assert_eq!(read(&dir(&t.cg).join("hugetlb.2MB.max")), "4194304");
    } else {
        t.cg.create(Some(&resources(r#"{"unified": {"cgroup.max.depth": "2"}}"#))).unwrap();
    }
    assert_eq!(read(&dir(&t.cg).join("cgroup.max.depth")), "2");
    for (json, want) in [
        (r#"{"unified": {"..": "1"}}"#, "must be a file name"),
        (r#"{"unified": {"a/b": "1"}}"#, "must be a file name"),
        (r#"{"unified": {"nodot": "1"}}"#, "<controller>.<file>"),
        (r#"{"unified": {"cgroup.procs": "1"}}"#, "moving processes"),
        (r#"{"unified": {"hugetlb.7MB.max": "1"}}"#, "hugetlb.7MB.max: No such file or directory"),
    ] {
        if json.contains("hugetlb") && !huge {
            continue;
        }
        let e = t.cg.update(&resources(json)).unwrap_err().to_string();
        assert!(e.contains(want), "{json}: {e}");
    }
}

#[test]
fn stats_report_hugetlb_and_pressure_on_v2() {
    let Some(root) = Cgroup2Root::get() else { return };
    if !hugetlb_on_v2("hugetlb stats") {
        return;
    }
    let cg = resolve(&root, "stats");
    let t = TestCgroup::new(cg);
    t.cg.create(Some(&resources(r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}"#))).unwrap();
    let s = t.cg.stats().unwrap();
    assert_eq!(s.hugetlb.get("2MB").map(|h| h.failcnt), Some(0));
    assert!(s.cpu.psi.is_some());
}
