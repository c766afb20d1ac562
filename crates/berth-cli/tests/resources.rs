//! Resource control and observation through the CLI (issue 4): limits read back from the
//! cgroup files of whichever hierarchy holds each controller, OOM kills and their events,
//! pids limits, pause/resume, live update, stats. The per-file translation of every resource
//! on v1 and v2 is tested in crates/berth-cgroups.

mod common;

use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The hierarchy holding a controller, wherever the host (or another runtime) bound and
/// mounted it: found from /proc/cgroups and mountinfo, not from berth.
struct Hierarchy {
    mount: PathBuf,
    v1: bool,
}

impl Hierarchy {
    /// The container's directory there (berth's default cgroupsPath `/berth/<id>`).
    fn dir(&self, id: &str) -> PathBuf {
        self.mount.join("berth").join(id)
    }
}

/// Where each of `controllers` lives; `None` after reporting (SKIPPED, with the reason) the
/// first that is out of reach here, so the test does not run.
fn hierarchies<const N: usize>(controllers: [&str; N]) -> Option<[Hierarchy; N]> {
    let mut out = Vec::with_capacity(N);
    for c in controllers {
        match place_of(c) {
            Place::V1(mount) => out.push(Hierarchy { mount, v1: true }),
            Place::V2(mount) => out.push(Hierarchy { mount, v1: false }),
            Place::Nowhere(why) => {
                skip(&why);
                return None;
            }
        }
    }
    out.try_into().ok()
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display())).trim().to_string()
}

#[test]
fn limits_land_in_the_hierarchy_that_holds_each_controller() {
    let Some([mem_h, cpu_h, pids_h, cpuset_h]) = hierarchies(["memory", "cpu", "pids", "cpuset"]) else {
        return;
    };
    let env = Env::new();
    let mut b = env.bundle(&["sleep", "100000"]);
    b.set(
        "/linux/resources",
        json!({
            "memory": {"limit": 67108864, "reservation": 33554432},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 42},
            "blockIO": {"weight": 300}
        }),
    );
    let id = env.id("limits");
    let pid = env.run_detached(&b, &id);
    let (mem, cpu, pids, cpuset) = (mem_h.dir(&id), cpu_h.dir(&id), pids_h.dir(&id), cpuset_h.dir(&id));
    if mem_h.v1 {
        assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(&mem, "memory.soft_limit_in_bytes"), "33554432");
    } else {
        assert_eq!(read(&mem, "memory.max"), "67108864");
        assert_eq!(read(&mem, "memory.low"), "33554432");
    }
    if cpu_h.v1 {
        assert_eq!(read(&cpu, "cpu.shares"), "512");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    } else {
        assert_eq!(read(&cpu, "cpu.max"), "50000 100000");
        // runc's shares->weight conversion: 1 + ((512 - 2) * 9999) / 262142 = 20
        assert_eq!(read(&cpu, "cpu.weight"), "20");
    }
    assert_eq!(read(&pids, "pids.max"), "42");
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    // The init is in every one of them.
    for d in [&mem, &cpu, &pids, &cpuset] {
        assert!(read(d, "cgroup.procs").lines().any(|l| l == pid.to_string()), "{} lacks the init", d.display());
    }
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    for d in [&mem, &cpu, &pids, &cpuset] {
        assert!(!d.exists(), "{} left after delete", d.display());
    }
    env.finish();
}

#[test]
fn a_memory_limit_oom_kills_and_events_reports_it() {
    let Some([mem_h]) = hierarchies(["memory"]) else { return };
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", "sleep 1; tail /dev/zero; sleep 100000"]);
    b.set("/linux/resources/memory", json!({"limit": 16777216, "swap": 16777216}));
    let id = env.id("oom");
    let pid = env.run_detached(&b, &id);
    let (mut child, mut out) = spawn_piped(&env, &["events", "--interval", "1s", &id]);
    let mut saw_oom = false;
    let mut saw_stats = false;
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline && !saw_oom {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("events line {line:?}: {e}"));
        assert_eq!(v["id"], json!(id));
        match v["type"].as_str() {
            Some("oom") => saw_oom = true,
            Some("stats") => saw_stats = true,
            other => panic!("unexpected event type {other:?}"),
        }
    }
    assert!(saw_oom, "no oom event");
    assert!(saw_stats, "no stats event before the OOM");
    // The v1 eventfd fires at the OOM condition; the kill is counted right after.
    let mem = mem_h.dir(&id);
    let file = if mem_h.v1 { "memory.oom_control" } else { "memory.events" };
    let mut killed = String::new();
    let counted = wait_until(|| {
        killed = read(&mem, file);
        killed.lines().any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0")
    });
    assert!(counted, "{killed}");
    let _ = child.kill();
    let _ = child.wait();
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn a_pids_limit_stops_fork_and_update_lowers_limits_live() {
    let Some([pids_h, mem_h]) = hierarchies(["pids", "memory"]) else { return };
    let env = Env::new();
    let mut b = env.bundle(&["sleep", "100000"]);
    b.set("/linux/resources", json!({"pids": {"limit": 20}, "memory": {"limit": 134217728}}));
    let id = env.id("pids");
    let pid = env.run_detached(&b, &id);
    env.berth(&["exec", &id, "sh", "-c", "sleep 1 & sleep 1 & wait"]).ok();
    env.berth(&["update", "--pids-limit", "3", "--memory", "64m", &id]).ok();
    assert_eq!(read(&pids_h.dir(&id), "pids.max"), "3");
    assert_eq!(read(&mem_h.dir(&id), if mem_h.v1 { "memory.limit_in_bytes" } else { "memory.max" }), "67108864");
    // init + exec'd sh = 2; the third fork works, the fourth must fail.
    let out = env.berth(&["exec", &id, "sh", "-c", "sleep 5 & sleep 5 & echo after; wait"]);
    assert!(out.stderr.contains("can't fork"), "the fourth process was not refused: {out:?}");
    // --resources from stdin, as the containerd runc shim sends it.
    let mut cmd = env.command(&["update", "--resources", "-", &id]);
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), br#"{"pids":{"limit":10}}"#).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(read(&pids_h.dir(&id), "pids.max"), "10");
    // The new limits are recorded: the state file carries them.
    let st: Value =
        serde_json::from_str(&fs::read_to_string(env.root().join(&id).join("state.json")).unwrap()).unwrap();
    assert_eq!(st["spec"]["linux"]["resources"]["pids"]["limit"], json!(10));
    env.berth(&["update", "--memory", "notasize", &id]).fails_with("--memory");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn pause_stops_a_counter_and_resume_restarts_it() {
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /out/count; sleep 0.05; done"]);
    let out = b.file("out");
    fs::create_dir(&out).unwrap();
    b.push("/mounts", json!({"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}));
    let id = env.id("pause");
    let pid = env.run_detached(&b, &id);
    let count = || fs::read_to_string(out.join("count")).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
    assert!(wait_until(|| count() > 2), "the counter never ran");
    env.berth(&["pause", &id]).ok();
    assert_eq!(env.status(&id), "paused");
    let list: Value = serde_json::from_str(env.berth(&["list", "-f", "json"]).ok()).unwrap();
    assert_eq!(list.as_array().unwrap().iter().find(|c| c["id"] == json!(id)).unwrap()["status"], "paused");
    let frozen = count();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(), frozen, "the counter moved while paused");
    env.berth(&["pause", &id]).fails_with("already paused");
    env.berth(&["resume", &id]).ok();
    assert_eq!(env.status(&id), "running");
    assert!(wait_until(|| count() > frozen), "the counter did not resume");
    env.berth(&["resume", &id]).fails_with("not paused");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

/// `pause` must hold every time: after it returns, a busy loop must not write again. On this
/// kernel's v1 freezer a busy task can occasionally walk out of a freeze that reports FROZEN
/// (issue 12); berth freezes cgroup2 as well and checks every task.
#[test]
fn pause_holds_a_busy_loop_every_time() {
    const CYCLES: usize = 100;
    let env = Env::new();
    // The log's size grows with every round; /out/count alone reads empty most of the time
    // (the loop spends most of it between truncating and rewriting the file), hiding rounds.
    let mut b =
        env.bundle(&["sh", "-c", "i=0; while :; do echo $i > /out/count; echo $i >> /out/log; i=$((i+1)); done"]);
    let out = b.file("out");
    fs::create_dir(&out).unwrap();
    b.push("/mounts", json!({"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}));
    let id = env.id("pausebusy");
    let pid = env.run_detached(&b, &id);
    let progress = || fs::metadata(out.join("log")).map_or(0, |m| m.len());
    assert!(wait_until(|| progress() > 100), "the loop never ran");
    // The init's cgroup2 directory: the cgroup2 mount (the hierarchy with cgroup.controllers)
    // joined with the `0::` line of /proc/PID/cgroup.
    let v2_mount = cgroup_hierarchies().into_iter().find(|h| h.join("cgroup.controllers").exists());
    let v2_rel = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2_rel = v2_rel.lines().find_map(|l| l.strip_prefix("0::")).map(|r| r.trim_start_matches('/').to_string());
    let unified = v2_mount.zip(v2_rel).map(|(m, r)| m.join(r));
    let mut slips = Vec::new();
    for cycle in 0..CYCLES {
        env.berth(&["pause", &id]).ok();
        let a = progress();
        std::thread::sleep(Duration::from_millis(3));
        let b = progress();
        if a != b {
            slips.push(format!("cycle {cycle}: log grew from {a} to {b} bytes"));
        }
        if cycle == 0 {
            assert_eq!(env.status(&id), "paused");
            if let Some(u) = &unified {
                assert_eq!(read(u, "cgroup.freeze"), "1", "the container's cgroup2 directory is not frozen");
            }
        }
        env.berth(&["resume", &id]).ok();
        // Only a pause that catches the loop running tests anything.
        assert!(wait_until(|| progress() > b), "the loop did not resume after cycle {cycle}");
    }
    assert!(slips.is_empty(), "{} of {CYCLES} pauses let the loop run on:\n{}", slips.len(), slips.join("\n"));
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn events_stats_prints_one_runc_shaped_object() {
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", "sleep 100000"]);
    b.set("/linux/resources/pids", json!({"limit": 100}));
    let id = env.id("stats");
    let pid = env.run_detached(&b, &id);
    let out = env.berth(&["events", "--stats", &id]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], json!(id));
    let d = &v["data"];
    for k in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(d.get(k).is_some(), "data lacks {k}: {d}");
    }
    assert_eq!(d["pids"]["limit"], json!(100));
    assert!(d["pids"]["current"].as_u64().unwrap() >= 1);
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{d}");
    assert!(d["network_interfaces"].is_array(), "{d}");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.berth(&["events", "--stats", &id]).fails_with("does not exist");
    env.finish();
}

#[test]
fn a_limit_the_hierarchy_cannot_express_is_an_error_and_leaves_nothing() {
    if let Place::V1(m) = place_of("net_cls") {
        return skip(&format!("net_cls is a v1 hierarchy at {} here, so a classID is no error", m.display()));
    }
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    // net_cls is not mounted on this host (neither v1 nor v2 offer it): a clear error, never
    // a silent drop.
    b.set("/linux/resources/network", json!({"classID": 1048577}));
    let id = env.id("netcls");
    let probe = LeakProbe::with_bundle(&id, env.root(), &b);
    env.berth(&["run", "--bundle", b.dir(), &id]).fails_with("network");
    probe.assert_clean();
    env.finish();
}

/// Another runtime bound a controller to a v1 hierarchy and left it unmounted here (as crun's
/// users do with hugetlb): a limit that needs it is refused, naming the field and why, and
/// nothing is left behind. Arranged with net_cls, which is free on the development host.
#[test]
fn a_limit_needing_a_controller_bound_out_of_reach_is_refused_with_the_reason() {
    match place_of("net_cls") {
        Place::Nowhere(_) if hierarchy_of("net_cls") == Some(0) => {}
        p => return skip(&format!("net_cls is not free and unmounted here ({p:?})")),
    }
    let bound = match BoundUnmounted::new("net_cls") {
        Ok(b) => b,
        Err(e) => return skip(&format!("cannot bind net_cls to a v1 hierarchy: {e}")),
    };
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
    b.set("/linux/resources/network", json!({"classID": 1048577}));
    let reason = format!(
        "the kernel binds net_cls to cgroup v1 hierarchy {} (/proc/cgroups), which is not mounted in this mount namespace",
        bound.hierarchy
    );
    for cmd in ["create", "run"] {
        let out = fails_clean(&env, &b, cmd, &env.id(&format!("bound-{cmd}")), "linux.resources.network.classID");
        assert!(out.stderr.contains(&reason), "{out:?}");
    }
    env.finish();
}

/// `berth run` of a container with a hugetlb limit, then `delete`: a v1-only runtime can
/// still bind hugetlb (crun's users need `mount -t cgroup -o hugetlb ...` on a hybrid host,
/// which fails with EBUSY while cgroup2 enables hugetlb for the root's children). The limit
/// itself is in force while the container runs. A container without one never enables it.
#[test]
fn after_a_container_with_hugetlb_limits_a_v1_runtime_can_still_mount_hugetlb() {
    let freed = match FreedOnCgroup2::new("hugetlb") {
        Ok(f) => f,
        Err(why) => return skip(&why),
    };
    let env = Env::new();
    // Below a parent of its own (not the shared /berth), so that another berth on this host
    // cannot be mistaken for this one.
    let id = env.id("hugev1");
    let parent = format!("/berth-test-{id}");
    struct RmParent(String);
    impl Drop for RmParent {
        fn drop(&mut self) {
            for h in cgroup_hierarchies() {
                let _ = fs::remove_dir(h.join(self.0.trim_start_matches('/')));
            }
        }
    }
    let _rm = RmParent(parent.clone());
    let mut b = env.bundle(&["sleep", "100000"]);
    b.set("/linux/cgroupsPath", json!(format!("{parent}/c")));
    let plain = env.id("nohuge");
    let mut b2 = env.bundle(&["sleep", "100000"]);
    b2.set("/linux/cgroupsPath", json!(format!("{parent}/d")));
    b.set("/linux/resources/hugepageLimits", json!([{"pageSize": "2MB", "limit": 4194304}]));
    let pid = env.run_detached(&b, &id);
    let shared = freed.mount.join(parent.trim_start_matches('/'));
    assert_eq!(read(&shared.join("c"), "hugetlb.2MB.max"), "4194304");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    // berth took back what it enabled (whatever other runtimes on this host do meanwhile).
    assert!(!enables(&shared, "hugetlb"), "{} still enables hugetlb after delete", shared.display());
    // A container without a hugetlb limit, still running, does not enable it.
    let pid2 = env.run_detached(&b2, &plain);
    assert!(!enables(&shared, "hugetlb"), "{} enables hugetlb for a container without limits", shared.display());
    match mount_as_v1_eventually("hugetlb") {
        Ok(h) => assert_ne!(h, 0, "hugetlb did not move to the v1 hierarchy"),
        Err(e) => v1_consumer_refused(&freed, &parent, &e),
    }
    wait_back_on_cgroup2("hugetlb", &freed.mount);
    env.berth(&["delete", "-f", &plain]).ok();
    env.reap(pid2);
    drop(_rm);
    env.finish();
}
