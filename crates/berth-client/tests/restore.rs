//! Restore after the engine is killed with SIGKILL.
//!
//! The "engine" is this test binary run again as a child process (the `engine_child` test,
//! selected by an environment variable). The first engine creates two containers and an exec
//! and is then killed with SIGKILL. While no engine runs, one container and the exec exit. A
//! second engine restores: the live container is alive with the same pid and its stdio works
//! again; the exits that happened meanwhile are delivered with their real exit codes, in order.
//!
//! This process makes itself a subreaper: the helper was the first engine's child, so after
//! the kill it is reparented here, and this test reaps it (PID 1 of this machine reaps no
//! orphans). A test binary of its own, so the subreaper setting affects no other test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use berth_client::{Client, Config, Helper};
use berth_core::Client as _;
use common::*;

const ROLE: &str = "BERTH_TEST_ENGINE_ROLE";
const ROOT: &str = "BERTH_TEST_ENGINE_ROOT";
const TAG: &str = "BERTH_TEST_ENGINE_TAG";

fn engine_client(root: &Path, rec: Arc<Recorder>) -> Client {
    let mut cfg = Config::new(root);
    cfg.helper = Helper::Path(PathBuf::from(env!("CARGO_BIN_EXE_berth-monitor")));
    Client::new(cfg, rec).expect("client")
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {line}").unwrap();
    out.flush().unwrap();
}

/// The engine processes' bodies; a no-op when run as an ordinary test.
#[test]
fn engine_child() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let root = PathBuf::from(std::env::var(ROOT).unwrap());
    let tag = std::env::var(TAG).unwrap();
    let (keep, dies) = (format!("keep-{tag}"), format!("dies-{tag}"));
    let rec = Recorder::new();
    let c = engine_client(&root, rec.clone());
    match role.as_str() {
        "first" => {
            c.create(&keep, &spec(&["sh", "-c", "while read l; do echo \"got:$l\"; done; exit 7"]), None).unwrap();
            let mut slot = None;
            let pid1 = c.start(&keep, None, true, &mut collect_into(&mut slot)).unwrap();
            let mut io = slot.unwrap();
            io.stdin.as_mut().unwrap().write_all(b"before\n").unwrap();
            eventually("the echo before the crash", || io.stdout.lock().unwrap().as_slice() == b"got:before\n");
            let wait_go = |f: &str| format!("while [ ! -e /tmp/{f} ]; do sleep 0.02; done");
            let script = format!("{}; exit 9", wait_go(&format!("go-exec-{tag}")));
            c.exec(&keep, "waiter", &process(&["sh", "-c", &script]), false, &mut |_| Ok(())).unwrap();
            let script = format!("{}; echo bye; exit 42", wait_go(&format!("go-{tag}")));
            c.create(&dies, &spec(&["sh", "-c", &script]), None).unwrap();
            let pid2 = c.start(&dies, None, false, &mut |_| Ok(())).unwrap();
            say(&format!("ready {pid1} {pid2}"));
            // Stay up, stdio handles and all, until killed.
            loop {
                std::thread::park();
            }
        }
        "second" => {
            let pid1: u32 = std::env::var("PID1").unwrap().parse().unwrap();
            let pid2: u32 = std::env::var("PID2").unwrap().parse().unwrap();
            let mut restorable = c.restorable();
            restorable.sort();
            let mut expected = vec![dies.clone(), keep.clone()];
            expected.sort();
            assert_eq!(restorable, expected);

            let mut slot = None;
            let (alive, pid) = c.restore(&keep, &mut collect_into(&mut slot)).unwrap();
            assert!(alive);
            assert_eq!(pid, Some(pid1));
            assert_eq!(c.status(&keep).unwrap(), berth_core::Status::Running);
            let mut io = slot.expect("stdio reattached");
            io.stdin.as_mut().expect("stdin reattached").write_all(b"after\n").unwrap();
            eventually("the echo after the restore", || {
                String::from_utf8_lossy(&io.stdout.lock().unwrap()).contains("got:after\n")
            });
            // The exec exited while no engine was listening: its exit arrives now.
            let ex = rec.wait_exit(&keep, "waiter");
            assert_eq!(ex.info.exit_code, 9);

            let mut attached = false;
            let (alive, pid) = c
                .restore(&dies, &mut |_| {
                    attached = true;
                    Ok(())
                })
                .unwrap();
            assert!(!alive);
            assert!(!attached, "a dead container's stdio is not reattached");
            assert_eq!(pid, Some(pid2));
            let exit = rec.wait_exit(&dies, &dies);
            assert_eq!(exit.info.exit_code, 42);
            assert_eq!(c.delete_task(&dies).unwrap().0, 42);
            c.delete(&dies).unwrap();

            io.stdin.take().unwrap().close().unwrap();
            assert_eq!(rec.wait_exit(&keep, &keep).info.exit_code, 7);
            assert_eq!(rec.trace(&keep), ["exit:waiter", "exit:init"]);
            let (out, _) = io.finish();
            assert!(out.ends_with("got:after\n"), "{out:?}");
            c.delete(&keep).unwrap();
            say("ok");
        }
        other => panic!("unknown role {other}"),
    }
}

fn run_engine(role: &str, root: &Path, tag: &str, env: &[(&str, String)]) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "engine_child", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(ROOT, root)
        .env(TAG, tag)
        .env(BUNDLE_ENV, bundle())
        .stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn read_until(out: &mut impl BufRead, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "engine ended before printing {prefix:?}");
        // libtest prints "test engine_child ... " on the same line before the test's output.
        if let Some(at) = line.find(prefix) {
            return line.get(at + prefix.len()..).unwrap_or_default().trim_end().to_string();
        }
    }
}

/// When the test fails, kills and deletes whatever the engines left, so a failure does not
/// leave containers and monitors running.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut cfg = Config::new(&self.0);
        cfg.helper = Helper::Path(PathBuf::from(env!("CARGO_BIN_EXE_berth-monitor")));
        if let Ok(c) = Client::new(cfg, Recorder::new()) {
            for id in c.restorable() {
                let _ = c.restore(&id, &mut |_| Ok(()));
                let _ = c.stop(&id, libc::SIGKILL, std::time::Duration::from_secs(5));
                let _ = c.delete(&id);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
    }
}

#[test]
fn restore_after_the_engine_is_killed() {
    rustix::process::set_child_subreaper(Some(rustix::process::Pid::INIT)).unwrap();
    let root = tempfile::Builder::new().prefix("berth-client-restore").tempdir().unwrap();
    let _cleanup = Cleanup(root.path().to_path_buf());
    let tag = format!("{}", std::process::id());

    let mut first = run_engine("first", root.path(), &tag, &[]);
    let mut out = BufReader::new(first.stdout.take().unwrap());
    let ready = read_until(&mut out, "@@ ready ");
    let (pid1, pid2) = ready.split_once(' ').unwrap();
    let helper: u32 = std::fs::read_to_string(root.path().join(".berth-helper.pid")).unwrap().trim().parse().unwrap();
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(alive(pid1.parse().unwrap()), "the container died with the engine");
    assert!(alive(helper), "the helper died with the engine");

    // While no engine runs, the exec and the second container exit.
    let tmp = rootfs().join("tmp");
    std::fs::write(tmp.join(format!("go-exec-{tag}")), "").unwrap();
    std::fs::write(tmp.join(format!("go-{tag}")), "").unwrap();
    eventually("the second container to exit and be reaped", || !alive(pid2.parse().unwrap()));

    let second = run_engine("second", root.path(), &tag, &[("PID1", pid1.to_string()), ("PID2", pid2.to_string())]);
    let output = second.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && text.contains("@@ ok"), "second engine failed:\n{text}");

    // Nothing is left: the helper exits with its last client and, orphaned by the first
    // engine, is reaped here.
    let status =
        rustix::process::waitpid(rustix::process::Pid::from_raw(helper as i32), rustix::process::WaitOptions::empty());
    assert!(matches!(status, Ok(Some(_))), "helper {helper}: {status:?}");
    assert!(pids_mentioning(&root.path().to_string_lossy()).is_empty());
    for f in [format!("go-exec-{tag}"), format!("go-{tag}")] {
        let _ = std::fs::remove_file(tmp.join(f));
    }
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".berth-helper"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
