//! Supervisor crashes (issue 16): a monitor or the helper killed with SIGKILL ends in a
//! defined state. A container whose monitor died is killed (by the helper, or by the client
//! when it notices first) and the engine gets its exit event with the reason; a dead helper
//! leaves every container with its monitor, supervised as before. Never a container running
//! with nobody supervising it.
//!
//! This binary makes itself a subreaper: monitors orphaned by a dead helper come to it (as
//! they would to an engine's subreaper or PID 1) and are reaped here. Its tests run one at a
//! time, since they reap by pid.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use berth_client::{Client, Config, Helper};
use berth_core::Client as _;
use common::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    rustix::process::set_child_subreaper(Some(rustix::process::Pid::INIT)).unwrap();
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn kill9(pid: u32) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), rustix::process::Signal::KILL)
        .unwrap();
}

/// Reaps the zombie children of this process among `pids` (monitors and helpers re-parented
/// to us).
fn reap(pids: &[u32]) {
    for &p in pids {
        let _ =
            rustix::process::waitpid(rustix::process::Pid::from_raw(p as i32), rustix::process::WaitOptions::NOHANG);
    }
}

fn start(c: &Client, id: &str) -> u32 {
    let mut slot = None;
    let pid = c.start(id, None, false, &mut collect_into(&mut slot)).expect("start");
    pid
}

#[test]
fn a_killed_monitor_takes_its_container_with_it_and_reports_why() {
    let _s = serial();
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let (victim, other) = (id("crash-mon"), id("crash-other"));
    c.create(&victim, &spec(&["sleep", "1000"]), None).unwrap();
    c.create(&other, &spec(&["sleep", "1000"]), None).unwrap();
    let pid = start(&c, &victim);
    start(&c, &other);
    let mon = c.monitor_pid(&victim).unwrap();
    kill9(mon);
    let exit = rec.wait_exit(&victim, &victim);
    assert_eq!(exit.info.exit_code, u32::MAX, "the status is unknown, never a made-up one");
    let why = exit.info.error.clone().unwrap_or_default();
    assert!(why.contains("monitor") && why.contains("killed"), "reason: {why:?}");
    // Killed now, not at delete: nobody supervises it any more.
    eventually("the container whose monitor died to be killed", || !alive(pid));
    assert_eq!(c.status(&victim).unwrap(), berth_core::Status::Stopped);
    // The other container is untouched.
    let mut slot = None;
    c.exec(&other, "e1", &process(&["true"]), false, &mut collect_into(&mut slot)).unwrap();
    assert_eq!(rec.wait_exit(&other, "e1").info.exit_code, 0);
    c.delete(&victim).unwrap();
    assert!(!c.root().join(&victim).exists());
    for d in cgroup_dirs(&victim) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    reap(&[mon]);
}

#[test]
fn a_killed_monitor_with_no_engine_connected_still_takes_its_container_with_it() {
    let _s = serial();
    let root = tempfile::Builder::new().prefix("berth-client-root").tempdir().unwrap();
    let cfg = || {
        let mut cfg = Config::new(root.path());
        cfg.helper = Helper::Path(std::path::PathBuf::from(env!("CARGO_BIN_EXE_berth-monitor")));
        cfg
    };
    let vid = id("crash-noengine");
    let c1 = Client::new(cfg(), Recorder::new()).unwrap();
    c1.create(&vid, &spec(&["sleep", "1000"]), None).unwrap();
    let pid = start(&c1, &vid);
    let mon = c1.monitor_pid(&vid).unwrap();
    let helper = c1.helper_pid();
    // The engine goes away; the container lives on under its monitor...
    drop(c1);
    assert!(alive(pid) && alive(mon) && alive(helper));
    // ...until the monitor dies: the helper sees it and kills the container.
    kill9(mon);
    eventually("the helper to kill the container whose monitor died", || !alive(pid));
    // A new engine finds it stopped and removes it.
    let rec = Recorder::new();
    let c2 = Client::new(cfg(), rec.clone()).unwrap();
    let (alive_now, _) = c2.restore(&vid, &mut |_| Ok(())).unwrap();
    assert!(!alive_now);
    c2.delete(&vid).unwrap();
    for d in cgroup_dirs(&vid) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    drop(c2);
    reap(&[mon, helper]);
    eventually("the helper and monitors of the root to be gone", || {
        reap(&[helper]);
        pids_mentioning(&root.path().to_string_lossy()).is_empty()
    });
}

#[test]
fn a_killed_helper_leaves_every_container_supervised() {
    let _s = serial();
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let ids: Vec<String> = (0..3).map(|i| id(&format!("crash-helper{i}"))).collect();
    let mut pids = Vec::new();
    for id in &ids {
        c.create(id, &spec(&["sleep", "1000"]), None).unwrap();
        pids.push(start(&c, id));
    }
    let monitors: Vec<u32> = ids.iter().map(|id| c.monitor_pid(id).unwrap()).collect();
    let helper = c.helper_pid();
    kill9(helper);
    eventually("the helper to die", || !alive(helper));
    reap(&[helper]);
    // Every container still has its monitor: exec, signals, exit codes all work.
    for (i, id) in ids.iter().enumerate() {
        assert!(alive(pids[i]) && alive(monitors[i]), "{id} lost its init or monitor");
        let mut slot = None;
        c.exec(id, "e1", &process(&["sh", "-c", "exit 7"]), false, &mut collect_into(&mut slot)).unwrap();
        assert_eq!(rec.wait_exit(id, "e1").info.exit_code, 7);
    }
    // (SIGKILL: `sleep` as a pid namespace's init ignores SIGTERM.)
    c.signal_process(&ids[0], &ids[0], libc::SIGKILL).unwrap();
    assert_eq!(rec.wait_exit(&ids[0], &ids[0]).info.exit_code, 137);
    // New containers get a new helper.
    let fresh = id("crash-after");
    c.create(&fresh, &spec(&["true"]), None).unwrap();
    assert_ne!(c.helper_pid(), helper, "no new helper was started");
    start(&c, &fresh);
    assert_eq!(rec.wait_exit(&fresh, &fresh).info.exit_code, 0);
    c.delete(&fresh).unwrap();
    for id in &ids {
        let _ = c.stop(id, libc::SIGKILL, Duration::from_secs(10));
        c.delete(id).unwrap();
    }
    // The orphaned monitors exit after their delete and are reaped by us (the subreaper).
    eventually("the orphaned monitors to exit", || {
        reap(&monitors);
        monitors.iter().all(|m| !alive(*m) && std::fs::metadata(format!("/proc/{m}")).is_err())
    });
    for id in ids.iter().chain([&fresh]) {
        assert!(!c.root().join(id).exists(), "{id}: state left");
        for d in cgroup_dirs(id) {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}
