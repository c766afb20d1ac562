//! Faults (issue 16): a `berth` process killed at any point leaves nothing that `delete -f`
//! cannot remove, never a corrupt `list`, and never an id that cannot be used again.
//!
//! The tests of this binary take one lock each: they reap orphaned container processes by
//! pid, which must not race another test's `Command::wait` of its own children.
//!
//! Run as root against the real kernel: `cargo test -p berth-cli --test faults`.

mod common;

use std::fs;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

/// A small deterministic pseudo-random sequence (xorshift), so a failing trial can be re-run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Reaps every zombie child of this process: the inits and exec processes of killed berth
/// commands, re-parented to us (the subreaper).
fn reap_orphans() {
    let me = std::process::id() as i32;
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if parent_of(pid) == Some(me) && proc_state(pid) == Some('Z') {
            let _ =
                rustix::process::waitpid(rustix::process::Pid::from_raw(pid), rustix::process::WaitOptions::empty());
        }
    }
}

/// `berth list --format json` parses, and every entry is a well-formed state.
#[track_caller]
fn list_is_sound(env: &Env, what: &str) {
    let out = env.berth(&["list", "--format", "json"]);
    let text = out.ok();
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: list is not JSON ({e}): {text}"));
    for c in v.as_array().into_iter().flatten() {
        let status = c["status"].as_str().unwrap_or("");
        assert!(
            ["creating", "created", "running", "paused", "stopped"].contains(&status),
            "{what}: corrupt list entry {c}"
        );
        assert!(c["id"].as_str().is_some_and(|s| !s.is_empty()), "{what}: corrupt list entry {c}");
    }
    assert!(!out.stderr.contains("skipping"), "{what}: list skipped an entry: {}", out.stderr);
}

/// Starts `berth ARGS`, kills it with SIGKILL after `delay`, and waits for it.
fn kill_after(env: &Env, args: &[&str], delay: Duration) {
    let mut child = env.command(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_killed_create_or_run_leaves_nothing_that_delete_cannot_remove() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let b = env.bundle(&["sleep", "1000"]);
    let trials: usize = std::env::var("BERTH_FAULT_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for cmd in ["create", "run"] {
        for t in 0..trials {
            let delay = Duration::from_micros(rng.next() % 10_001);
            let id = env.id(&format!("k{cmd}"));
            let what = format!("{cmd} trial {t} (killed after {delay:?})");
            let mut args = vec![cmd, "--bundle", b.dir()];
            if cmd == "run" {
                args.push("-d");
            }
            args.push(&id);
            kill_after(&env, &args, delay);
            list_is_sound(&env, &what);
            let out = env.berth(&["delete", "--force", &id]);
            assert_eq!(out.code, Some(0), "{what}: delete -f: {}", out.stderr);
            reap_orphans();
            let probe = LeakProbe::with_bundle(&id, env.root(), &b);
            let mut leaks = probe.leaks();
            if !leaks.is_empty() {
                // A process killed a moment ago may still be on its way out.
                std::thread::sleep(Duration::from_millis(200));
                reap_orphans();
                leaks = probe.leaks();
            }
            assert!(leaks.is_empty(), "{what}: leaked:\n{}", leaks.join("\n"));
            // The id is usable again.
            if t % 20 == 0 {
                let pid = env.run_detached(&b, &id);
                env.berth(&["delete", "--force", &id]).ok();
                env.reap(pid);
            }
        }
    }
    env.finish();
}

/// Processes that are clones of a `berth … exec ID` (the exec child before its execve).
fn exec_clones(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(" exec ") && cmd.contains(id) {
            out.push(format!("{} {cmd}", e.file_name().to_string_lossy()));
        }
    }
    out
}

#[test]
fn a_killed_exec_leaves_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let b = env.bundle(&["sleep", "1000"]);
    let id = env.id("kexec");
    let pid = env.run_detached(&b, &id);
    let trials: usize = std::env::var("BERTH_FAULT_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let in_container = || -> Vec<i32> {
        serde_json::from_str(env.berth(&["ps", "--format", "json", &id]).ok().trim()).unwrap_or_default()
    };
    for t in 0..trials {
        let delay = Duration::from_micros(rng.next() % 10_001);
        kill_after(&env, &["exec", &id, "sleep", "1000"], delay);
        // A half-made exec process must die with the killed berth (pdeathsig).
        let mut clones = exec_clones(&id);
        if !clones.is_empty() {
            wait_until(|| exec_clones(&id).is_empty());
            clones = exec_clones(&id);
        }
        assert!(clones.is_empty(), "trial {t}: the exec's child outlived the killed berth: {clones:?}");
        reap_orphans();
        // An exec killed after its process started had succeeded: that process runs on, as a
        // detached one would, in the container. Nothing else may be there.
        for p in in_container().into_iter().filter(|p| *p != pid) {
            let cmd = fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
            assert!(cmd.starts_with("sleep\0"), "trial {t}: a process other than the exec'd one: {p} {cmd:?}");
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(p).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
        assert!(wait_until(|| in_container() == [pid]), "trial {t}: {:?}", in_container());
        reap_orphans();
        assert_eq!(env.status(&id), "running", "trial {t}");
    }
    // exec still works.
    assert_eq!(env.berth(&["exec", &id, "echo", "alive"]).ok(), "alive\n");
    env.berth(&["delete", "--force", &id]).ok();
    env.reap(pid);
    reap_orphans();
    env.finish();
}

// =============================================================================================
// A bad environment: a clear error and nothing left, or a clean delete

/// A tmpfs mounted for the test, unmounted (lazily) when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new(opts: &str) -> Tmpfs {
        let d = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", opts, "tmpfs"]).arg(d.path()).status();
        assert!(st.unwrap().success(), "mount -t tmpfs -o {opts}");
        Tmpfs(d)
    }
    fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_or_read_only_state_root_fails_clearly_and_leaves_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let b = env.bundle(&["sh", "-c", "echo STARTED"]);
    // Full: a 12 KiB tmpfs filled up, with the state root made while there was room.
    let full = Tmpfs::new("size=12k");
    let root = full.path().join("root");
    fs::create_dir(&root).unwrap();
    let _ = fs::write(full.path().join("fill"), vec![0u8; 64 * 1024]);
    // Read-only: a tmpfs remounted read-only with the state root on it.
    let ro = Tmpfs::new("size=1m");
    fs::create_dir(ro.path().join("root")).unwrap();
    let st = std::process::Command::new("mount").args(["-o", "remount,ro"]).arg(ro.path()).status().unwrap();
    assert!(st.success());
    for (root, needle) in [(root, "No space left on device"), (ro.path().join("root"), "Read-only file system")] {
        for cmd in ["create", "run"] {
            let id = env.id("badroot");
            let probe = LeakProbe::with_bundle(&id, &root, &b);
            let out =
                env.command(&[]).args(["--root"]).arg(&root).args([cmd, "--bundle", b.dir(), &id]).output().unwrap();
            let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert_eq!(out.status.code(), Some(1), "{cmd} on {}: {stderr}", root.display());
            assert!(stderr.contains(needle) && stderr.contains(&*root.to_string_lossy()), "{cmd}: {stderr}");
            assert!(!stdout.contains("STARTED"), "{cmd}: the container ran");
            probe.assert_clean();
        }
    }
    env.finish();
}

#[test]
fn a_rootfs_that_vanishes_while_the_container_runs_is_still_deleted_cleanly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let fs_ = Tmpfs::new("size=64m");
    let rootfs = fs_.path().join("rootfs");
    copy_tree(shared_rootfs(), &rootfs);
    for mntns in [true, false] {
        let mut b = env.bundle(&["sleep", "1000"]);
        b.set("/root/path", serde_json::json!(rootfs));
        if !mntns {
            b.drop_namespace("mount");
            b.remove("/linux/maskedPaths").remove("/linux/readonlyPaths");
            b.set("/root/readonly", serde_json::json!(false));
        }
        let id = env.id("vanish");
        let pid = env.run_detached(&b, &id);
        // The filesystem under the rootfs goes away (lazily: the container keeps its copy).
        let st = std::process::Command::new("umount").arg("-l").arg(fs_.path()).status().unwrap();
        assert!(st.success());
        assert_eq!(env.status(&id), "running");
        env.berth(&["delete", "--force", &id]).ok();
        env.reap(pid);
        let mut probe = LeakProbe::with_bundle(&id, env.root(), &b);
        probe.needles.push(rootfs.to_string_lossy().into_owned());
        probe.assert_clean();
        // Mount it again for the next round (same path, fresh content).
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(fs_.path())
            .status()
            .unwrap();
        assert!(st.success());
        copy_tree(shared_rootfs(), &rootfs);
    }
    env.finish();
}

#[test]
fn a_missing_cgroup_controller_is_a_clear_error_for_a_spec_that_needs_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    // Where the memory controller lives on this host (a v1 hierarchy, or cgroup2).
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let memory_v1 = info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split_whitespace();
        (post.next()? == "cgroup" && post.nth(1)?.split(',').any(|o| o == "memory"))
            .then(|| pre.split_whitespace().nth(4).map(str::to_string))?
    });
    let Some(memory_v1) = memory_v1 else {
        eprintln!("SKIPPED: the memory controller is not a v1 hierarchy on this host; nothing to unmount");
        return;
    };
    let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
    b.set("/linux/resources/memory", serde_json::json!({"limit": 67108864}));
    let id = env.id("nomem");
    let probe = LeakProbe::with_bundle(&id, env.root(), &b);
    // In a private mount namespace without that hierarchy, berth cannot reach the controller.
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", "umount \"$1\" && shift && exec \"$@\"", "sh"])
        .arg(&memory_v1)
        .arg(BERTH)
        .arg("--root")
        .arg(env.root())
        .args(["run", "--bundle", b.dir(), &id])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("linux.resources.memory: the memory controller is not available on this host"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("STARTED"));
    probe.assert_clean();
    // The control: with the controller in reach, the same spec runs.
    assert!(env.berth(&["run", "--bundle", b.dir(), &env.id("withmem")]).ok().contains("STARTED"));
    env.finish();
}
