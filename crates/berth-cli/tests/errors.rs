//! Clean failure: every error path of `berth create`/`run`/`start`/`delete` exits 1 with a
//! message naming what is wrong, and leaves no host mount, no cgroup directory, no state
//! directory and no process behind ([`common::LeakProbe`], checked before and after).
//!
//! The last section proves that each of the leak checks can fail, by leaking on purpose.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Bundle errors

#[test]
fn bad_json() {
    let env = Env::new();
    let b = env.bundle_own(&["true"]);
    fs::write(b.file("config.json"), "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [").unwrap();
    create_and_run_fail_clean(&env, &b, "badjson", "EOF while parsing");
    fs::write(b.file("config.json"), "[]").unwrap();
    create_and_run_fail_clean(&env, &b, "notobject", "invalid type");
    fs::remove_file(b.file("config.json")).unwrap();
    create_and_run_fail_clean(&env, &b, "noconfig", "config.json");
    env.finish();
}

#[test]
fn invalid_spec_fields() {
    let env = Env::new();
    let mut b = env.bundle_own(&[]);
    create_and_run_fail_clean(&env, &b, "noargs", "process.args: must not be empty");
    b.set("/process/args", json!(["true"]));
    b.set("/linux/namespaces", json!([{"type": "pid"}]));
    b.remove("/hostname");
    create_and_run_fail_clean(&env, &b, "nomntns", "mount namespace");
    env.finish();
}

#[test]
fn missing_rootfs() {
    let env = Env::new();
    let mut b = env.bundle_own(&["true"]);
    b.set("/root/path", json!("no-such-rootfs"));
    create_and_run_fail_clean(&env, &b, "norootfs", "root.path: rootfs");
    env.finish();
}

#[test]
fn missing_bundle_and_invalid_id() {
    let env = Env::new();
    let b = env.bundle_own(&["true"]);
    let id = env.id("nobundle");
    let gone = b.path().join("does-not-exist");
    let out = env.detached(&b, "nobundle", &["create", "--bundle", gone.to_str().unwrap(), &id]);
    out.fails_with("does-not-exist").code_is(1);
    LeakProbe::with_bundle(&id, env.root(), &b).assert_clean();
    for bad in ["../escape", "a/b", "has space", ".."] {
        let out = env.detached(&b, "badid", &["create", "--bundle", b.dir(), bad]);
        out.fails_with("container id").code_is(1);
    }
    assert_eq!(fs::read_dir(env.root()).map(|d| d.count()).unwrap_or(0), 0, "state root not empty");
    env.finish();
}

#[test]
fn terminal_without_console_socket() {
    let env = Env::new();
    let mut b = env.bundle_own(&["true"]);
    b.set("/process/terminal", json!(true));
    fails_clean(&env, &b, "create", &env.id("tty"), "--console-socket");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Mounts

#[test]
fn unknown_filesystem_type() {
    let env = Env::new();
    let mut b = env.bundle_own(&["true"]);
    b.push("/mounts", json!({"destination": "/data/x", "type": "nosuchfs", "source": "none"}));
    create_and_run_fail_clean(&env, &b, "badfs", "mounting nosuchfs on /data/x");
    env.finish();
}

#[test]
fn missing_bind_source() {
    let env = Env::new();
    let mut b = env.bundle_own(&["true"]);
    b.push(
        "/mounts",
        json!({"destination": "/data", "type": "bind", "source": "/nonexistent/berth-src", "options": ["rbind"]}),
    );
    create_and_run_fail_clean(&env, &b, "nosrc", "bind source /nonexistent/berth-src is not accessible");
    env.finish();
}

#[test]
fn mount_failing_after_other_mounts_succeeded() {
    // A good bind and a tmpfs first, then a mount that fails: the earlier mounts live only in
    // the dead init's namespace.
    let env = Env::new();
    let host = tempfile::tempdir().unwrap();
    let mut b = env.bundle_own(&["true"]);
    b.push("/mounts", json!({"destination": "/data/ok", "type": "bind", "source": host.path(), "options": ["rbind"]}));
    b.push("/mounts", json!({"destination": "/data/tmp", "type": "tmpfs", "source": "tmpfs"}));
    b.push(
        "/mounts",
        json!({"destination": "/data/bad", "type": "tmpfs", "source": "tmpfs", "options": ["size=nonsense"]}),
    );
    create_and_run_fail_clean(&env, &b, "latemount", "mounting tmpfs on /data/bad");
    assert!(mount_leaks(&[host.path().to_string_lossy().into_owned()]).is_empty());
    env.finish();
}

struct HostMount(PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg(&self.0).status();
    }
}

fn sh_ok(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

#[test]
fn rootfs_propagation_shared_on_a_shared_host_mount() {
    // The bundle lives on a host mount that is shared (as on systemd hosts). With
    // rootfsPropagation rshared the container's setup mounts must still not propagate to the
    // host, and pivot_root must work (it refuses a shared parent mount).
    let env = Env::new();
    let host = tempfile::tempdir().unwrap();
    let hp = host.path().canonicalize().unwrap();
    sh_ok(&format!("mount -t tmpfs berth-it-shared {0} && mount --make-shared {0}", hp.display()));
    let _guard = HostMount(hp.clone());
    let bundle = hp.join("bundle");
    copy_tree(shared_rootfs(), &bundle.join("rootfs"));
    let mut config = default_config().clone();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["sh", "-c", "awk '$5 == \"/\" {print $7}' /proc/self/mountinfo"]);
    config["linux"]["rootfsPropagation"] = json!("rshared");
    fs::write(bundle.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let id = env.id("rshared");
    let out = env.berth(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    // The container's root is shared, as asked.
    assert!(out.ok().starts_with("shared:"), "{out:?}");
    let after = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let hp_s = hp.to_string_lossy().into_owned();
    let count = |s: &str| s.lines().filter(|l| l.contains(&hp_s)).count();
    assert_eq!(count(&after), count(&before), "mounts propagated to the host:\n{after}");
    let mut probe = LeakProbe::new(&id, env.root());
    probe.needles.push(bundle.to_string_lossy().into_owned());
    probe.assert_clean();
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// The process

#[test]
fn args0_not_found() {
    let env = Env::new();
    let mut b = env.bundle_own(&["no-such-command"]);
    // (The text log format escapes the quotes around the name, so the needles avoid them.)
    create_and_run_fail_clean(&env, &b, "noexe", "no-such-command\\\": executable file not found in $PATH");
    // Go's exec.LookPath words, as runc prints them (Docker and podman map them to 127/126).
    b.set("/process/args", json!(["/bin/no-such-file"]));
    create_and_run_fail_clean(
        &env,
        &b,
        "noabs",
        "/bin/no-such-file\\\": stat /bin/no-such-file: no such file or directory",
    );
    // A directory is not executable either.
    b.set("/process/args", json!(["/etc"]));
    create_and_run_fail_clean(&env, &b, "isdir", "/etc\\\": permission denied");
    env.finish();
}

#[test]
fn cwd_that_is_a_file() {
    let env = Env::new();
    let mut b = env.bundle_own(&["true"]);
    b.set("/process/cwd", json!("/etc/passwd"));
    create_and_run_fail_clean(&env, &b, "cwdfile", "process.cwd");
    env.finish();
}

#[test]
fn late_init_failure_bad_sysctl() {
    // Fails after the rootfs is built and pivot_root is done.
    let env = Env::new();
    let mut b = env.bundle_own(&["true"]);
    b.set("/linux/sysctl", json!({"net.ipv4.berth_no_such_key": "1"}));
    create_and_run_fail_clean(&env, &b, "sysctl", "linux.sysctl net.ipv4.berth_no_such_key");
    // One outside the container's namespaces is refused before anything is created.
    b.set("/linux/sysctl", json!({"kernel.berth_nope": "1"}));
    create_and_run_fail_clean(&env, &b, "sysctl2", "is not in a separate kernel namespace");
    env.finish();
}

#[test]
fn negative_oom_score_adj_needs_cap_sys_resource() {
    // This machine's capability bounding set lacks CAP_SYS_RESOURCE, so lowering
    // oom_score_adj is refused; the message must say why.
    let env = Env::new();
    let bnd = fs::read_to_string("/proc/self/status").unwrap();
    let has_sys_resource = status_caps(&bnd, "CapEff:") & (1 << 24) != 0;
    let mut b = env.bundle_own(&["cat", "/proc/self/oom_score_adj"]);
    b.set("/process/oomScoreAdj", json!(-500));
    if has_sys_resource {
        // On a host that has it, negative values must work.
        let id = env.id("oomneg");
        assert_eq!(env.berth(&["run", "--bundle", b.dir(), &id]).ok(), "-500\n");
    } else {
        create_and_run_fail_clean(&env, &b, "oomneg", "process.oomScoreAdj: cannot set -500");
        let out = fails_clean(&env, &b, "run", &env.id("oomneg"), "CAP_SYS_RESOURCE");
        assert!(out.stderr.contains("Permission denied"), "{out:?}");
    }
    env.finish();
}

#[test]
fn rlimit_above_the_hard_limit() {
    // The very last step before exec (after every mount, after dropping pdeathsig).
    let env = Env::new();
    let mut b = env.bundle_own(&["true"]);
    b.set("/process/rlimits", json!([{"type": "RLIMIT_NOFILE", "soft": 1u64 << 40, "hard": 1u64 << 40}]));
    create_and_run_fail_clean(&env, &b, "rlimit", "process.rlimits RLIMIT_NOFILE");
    env.finish();
}

#[test]
fn failing_prestart_hook() {
    let env = Env::new();
    let mut b = env.bundle_own(&["true"]);
    b.set("/hooks/prestart", json!([{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-says-no >&2; exit 3"]}]));
    let out = fails_clean(&env, &b, "create", &env.id("hook"), "hooks.prestart[0]");
    assert!(out.stderr.contains("exit status: 3"), "{out:?}");
    fails_clean(&env, &b, "run", &env.id("hook"), "hooks.prestart[0]");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Cgroups

#[test]
fn cgroup_limit_that_the_kernel_rejects() {
    // cpuset.cpus naming a CPU that does not exist: the cgroup directories are created in
    // every hierarchy, then the write fails; all of them must be removed.
    let env = Env::new();
    let mut b = env.bundle_own(&["true"]);
    b.set("/linux/resources/cpu", json!({"cpus": "999"}));
    create_and_run_fail_clean(&env, &b, "cpuset", "linux.resources.cpu.cpus");
    env.finish();
}

#[test]
fn cgroup_path_that_cannot_be_created() {
    // A custom cgroupsPath whose parent is a file: mkdir fails (ENOTDIR) after the first
    // directories were made.
    let env = Env::new();
    let mut b = env.bundle_own(&["true"]);
    let id = env.id("cgpath");
    let path = format!("/berth-it-{id}/cgroup.procs/child");
    b.set("/linux/cgroupsPath", json!(path));
    let mut probe = LeakProbe::with_bundle(&id, env.root(), &b);
    probe.cgroup_paths.push(format!("berth-it-{id}"));
    let out = env.detached(&b, "cgpath", &["create", "--bundle", b.dir(), &id]);
    out.fails_with("Not a directory").code_is(1);
    assert!(out.stderr.contains("cgroup"), "{out:?}");
    probe.assert_clean();
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// A pre-existing frozen cgroup (issue 12): a process started there could never run, so create
// and run refuse it, as runc does, and leave the cgroup (which is not berth's) as it was.

/// One mounted cgroup hierarchy, from /proc/self/mountinfo (no assumption about the layout).
struct Hierarchy {
    mount: PathBuf,
    /// A v1 hierarchy holding the freezer controller.
    freezer: bool,
    /// The cgroup2 hierarchy.
    unified: bool,
}

fn hierarchies() -> Vec<Hierarchy> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split_whitespace();
            let fstype = post.next()?;
            let opts = post.nth(1).unwrap_or("");
            let mount = PathBuf::from(pre.split_whitespace().nth(4)?);
            match fstype {
                "cgroup" => Some(Hierarchy { mount, freezer: opts.split(',').any(|o| o == "freezer"), unified: false }),
                "cgroup2" => Some(Hierarchy { mount, freezer: false, unified: true }),
                _ => None,
            }
        })
        .collect()
}

/// A cgroup made by the test, as an administrator would (v1 cpusets initialised), in the
/// hierarchies `which` selects. Drop thaws it, kills and reaps anything in it and removes it.
struct PreCgroup {
    rel: String,
    dirs: Vec<PathBuf>,
    freezer: PathBuf,
    unified: PathBuf,
}

impl PreCgroup {
    fn new(rel: &str, which: impl Fn(&Hierarchy) -> bool) -> PreCgroup {
        let mut dirs = Vec::new();
        let (mut freezer, mut unified) = (None, None);
        for h in hierarchies().into_iter().filter(|h| which(h)) {
            let d = h.mount.join(rel.trim_start_matches('/'));
            fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            if !h.unified && d.join("cpuset.cpus").exists() {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    fs::write(d.join(f), fs::read_to_string(h.mount.join(f)).unwrap().trim()).unwrap();
                }
            }
            if h.freezer {
                freezer = Some(d.clone());
            }
            if h.unified {
                unified = Some(d.clone());
            }
            dirs.push(d);
        }
        let need = "this test needs a v1 freezer hierarchy and a cgroup2 mount (a hybrid host)";
        PreCgroup { rel: rel.to_string(), dirs, freezer: freezer.expect(need), unified: unified.expect(need) }
    }

    fn set(&self, dir: &Path, file: &str, v: &str) {
        fs::write(dir.join(file), v).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()));
    }

    /// Everything that must not change: which directories exist, their processes and freezer
    /// settings.
    fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in &self.dirs {
            let r = |f: &str| fs::read_to_string(d.join(f)).unwrap_or_else(|e| format!("<{e}>"));
            out.push(format!("{} exists={} procs={:?}", d.display(), d.is_dir(), r("cgroup.procs")));
        }
        out.push(fs::read_to_string(self.freezer.join("freezer.state")).unwrap());
        out.push(fs::read_to_string(self.unified.join("cgroup.freeze")).unwrap());
        out
    }
}

impl Drop for PreCgroup {
    fn drop(&mut self) {
        let _ = fs::write(self.freezer.join("freezer.state"), "THAWED");
        let _ = fs::write(self.unified.join("cgroup.freeze"), "0");
        let me = std::process::id() as i32;
        // Anything berth left inside (only if the test failed), and sub-cgroups berth made.
        for d in &self.dirs {
            for sub in [d.join("child"), d.clone()] {
                for pid in fs::read_to_string(sub.join("cgroup.procs")).unwrap_or_default().lines() {
                    let Ok(pid) = pid.trim().parse::<i32>() else { continue };
                    let p = rustix::process::Pid::from_raw(pid).unwrap();
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    if parent_of(pid) == Some(me) {
                        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
                    }
                }
                wait_until(|| fs::read_to_string(sub.join("cgroup.procs")).map_or(true, |s| s.trim().is_empty()));
                let _ = fs::remove_dir(&sub);
            }
        }
    }
}

const FROZEN_NEEDLE: &str = "container's cgroup unexpectedly frozen";

#[test]
fn starting_into_a_frozen_pre_existing_cgroup_is_refused() {
    let env = Env::new();
    let mut b = env.bundle_own(&["sh", "-c", "echo STARTED"]);
    let pre = PreCgroup::new(&format!("/berth-it-frozen-{}", std::process::id()), |_| true);
    b.set("/linux/cgroupsPath", json!(pre.rel));

    // v1: freezer.state FROZEN.
    pre.set(&pre.freezer, "freezer.state", "FROZEN");
    let before = pre.snapshot();
    let state_file = pre.freezer.join("freezer.state");
    for cmd in ["run", "create"] {
        let out = fails_clean(&env, &b, cmd, &env.id("frozen-v1"), FROZEN_NEEDLE);
        assert!(out.stderr.contains("linux.cgroupsPath"), "the message must name the field: {out:?}");
        assert!(out.stderr.contains(state_file.to_str().unwrap()), "the message must name the file: {out:?}");
        assert_eq!(pre.snapshot(), before, "`berth {cmd}` changed the pre-existing cgroup");
    }
    pre.set(&pre.freezer, "freezer.state", "THAWED");

    // cgroup2 only: cgroup.freeze 1 in the container's unified directory.
    pre.set(&pre.unified, "cgroup.freeze", "1");
    let before = pre.snapshot();
    let freeze_file = pre.unified.join("cgroup.freeze");
    for cmd in ["run", "create"] {
        let out = fails_clean(&env, &b, cmd, &env.id("frozen-v2"), FROZEN_NEEDLE);
        assert!(out.stderr.contains("linux.cgroupsPath"), "the message must name the field: {out:?}");
        assert!(out.stderr.contains(freeze_file.to_str().unwrap()), "the message must name the file: {out:?}");
        assert_eq!(pre.snapshot(), before, "`berth {cmd}` changed the pre-existing cgroup");
    }
    pre.set(&pre.unified, "cgroup.freeze", "0");

    // Control: the same cgroup, thawed, runs the container.
    let id = env.id("thawed");
    let out = env.detached_within(&b, &id, &["run", "--bundle", b.dir(), &id], Some(2 * PATIENCE));
    out.ok();
    assert!(out.stdout.contains("STARTED"), "{out:?}");
    env.finish();
}

#[test]
fn frozen_refusal_removes_only_the_cgroup_directories_berth_created() {
    let env = Env::new();
    let mut b = env.bundle_own(&["sh", "-c", "echo STARTED"]);
    // Pre-existing only where the freezers live: berth makes the other hierarchies' directories.
    let pre = PreCgroup::new(&format!("/berth-it-frozen-part-{}", std::process::id()), |h| h.freezer || h.unified);
    let mine = |rel: &str| -> Vec<PathBuf> {
        hierarchies()
            .iter()
            .map(|h| h.mount.join(rel.trim_start_matches('/')))
            .filter(|d| !pre.dirs.contains(d))
            .collect()
    };
    b.set("/linux/cgroupsPath", json!(pre.rel));
    pre.set(&pre.freezer, "freezer.state", "FROZEN");
    let before = pre.snapshot();
    for cmd in ["run", "create"] {
        fails_clean(&env, &b, cmd, &env.id("frozen-part"), FROZEN_NEEDLE);
        for d in mine(&pre.rel) {
            assert!(!d.exists(), "`berth {cmd}` left {}", d.display());
        }
        assert_eq!(pre.snapshot(), before, "`berth {cmd}` changed the pre-existing cgroup");
    }

    // Below a frozen cgroup every directory is berth's; a new cgroup there is frozen too.
    let child = format!("{}/child", pre.rel);
    b.set("/linux/cgroupsPath", json!(child));
    for (file, on, off) in
        [(pre.freezer.join("freezer.state"), "FROZEN", "THAWED"), (pre.unified.join("cgroup.freeze"), "1", "0")]
    {
        fs::write(&file, on).unwrap();
        let before = pre.snapshot();
        for cmd in ["run", "create"] {
            let out = fails_clean(&env, &b, cmd, &env.id("frozen-parent"), FROZEN_NEEDLE);
            assert!(out.stderr.contains("linux.cgroupsPath"), "{out:?}");
            for h in hierarchies() {
                let d = h.mount.join(child.trim_start_matches('/'));
                assert!(!d.exists(), "`berth {cmd}` left {}", d.display());
            }
            for d in mine(&pre.rel) {
                assert!(!d.exists(), "`berth {cmd}` left {}", d.display());
            }
            assert_eq!(pre.snapshot(), before, "`berth {cmd}` changed the pre-existing cgroup");
        }
        fs::write(&file, off).unwrap();
    }
    env.finish();
}

#[test]
fn a_failed_create_leaves_a_pre_existing_cgroup_in_place() {
    // The cgroup is the administrator's, made before berth ran: a create that fails after
    // joining it (here: args[0] does not exist) must remove only what berth made.
    let env = Env::new();
    let mut b = env.bundle_own(&["/nonexistent-binary"]);
    let pre = PreCgroup::new(&format!("/berth-it-preexisting-{}", std::process::id()), |_| true);
    b.set("/linux/cgroupsPath", json!(pre.rel));
    for cmd in ["run", "create"] {
        fails_clean(&env, &b, cmd, &env.id("pre-existing"), "nonexistent-binary");
        for d in &pre.dirs {
            assert!(d.is_dir(), "`berth {cmd}` removed the pre-existing cgroup {}", d.display());
        }
    }
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Lifecycle errors

#[test]
fn duplicate_id_leaves_the_first_container_alone() {
    let env = Env::new();
    let b = env.bundle_own(&["sleep", "1000"]);
    let other = env.bundle_own(&["true"]);
    let id = env.id("dup");
    let pid = env.create(&b, &id);
    let state_before = fs::read_to_string(env.root().join(&id).join("state.json")).unwrap();
    let out = env.detached(&other, "dup", &["create", "--bundle", other.dir(), &id]);
    out.fails_with("already exists").code_is(1);
    let out = env.detached(&other, "dup2", &["run", "--bundle", other.dir(), &id]);
    out.fails_with("already exists").code_is(1);
    // The first container is untouched.
    assert_eq!(fs::read_to_string(env.root().join(&id).join("state.json")).unwrap(), state_before);
    assert_eq!(env.status(&id), "created");
    assert!(v1_cgroup_dir("pids", &id).exists());
    env.berth(&["delete", &id]).ok();
    assert_eq!(env.reap(pid), 137);
    let mut probe = LeakProbe::with_bundle(&id, env.root(), &b);
    probe.needles.push(other.dir().to_string());
    probe.assert_clean();
    env.finish();
}

#[test]
fn start_of_a_running_container() {
    let env = Env::new();
    let b = env.bundle_own(&["sleep", "1000"]);
    let id = env.id("startrun");
    let pid = env.run_detached(&b, &id);
    env.berth(&["start", &id]).fails_with("already running").code_is(1);
    assert_eq!(env.status(&id), "running");
    // A created container starts once.
    let id2 = env.id("starttwice");
    let pid2 = env.create(&b, &id2);
    env.berth(&["start", &id2]).ok();
    env.berth(&["start", &id2]).fails_with("already running");
    for (i, p) in [(&id, pid), (&id2, pid2)] {
        env.berth(&["delete", "--force", i]).ok();
        env.reap(p);
        LeakProbe::with_bundle(i, env.root(), &b).assert_clean();
    }
    env.finish();
}

#[test]
fn delete_of_a_running_container_without_force() {
    let env = Env::new();
    let b = env.bundle_own(&["sleep", "1000"]);
    let id = env.id("delrun");
    let pid = env.run_detached(&b, &id);
    env.berth(&["delete", &id]).fails_with("not stopped").code_is(1);
    // Still there and still running.
    assert_eq!(env.status(&id), "running");
    assert!(v1_cgroup_dir("pids", &id).exists());
    env.berth(&["delete", "--force", &id]).ok();
    assert_eq!(env.reap(pid), 137);
    LeakProbe::with_bundle(&id, env.root(), &b).assert_clean();
    env.finish();
}

#[test]
fn commands_on_a_container_that_does_not_exist() {
    let env = Env::new();
    let id = env.id("ghost");
    for args in [vec!["start", &id], vec!["state", &id], vec!["kill", &id], vec!["delete", &id]] {
        env.berth(&args).fails_with("does not exist").code_is(1);
    }
    // exec's own failures exit 255, as in runc.
    env.berth(&["exec", &id, "true"]).fails_with("does not exist").code_is(255);
    // delete --force of nothing succeeds, as with runc (containerd's shim relies on it).
    env.berth(&["delete", "--force", &id]).ok();
    // ... and removes a directory left without a state file (a create that was killed).
    fs::create_dir_all(env.root().join(&id)).unwrap();
    env.berth(&["delete", &id]).fails_with("does not exist");
    env.berth(&["delete", "--force", &id]).ok();
    assert!(!env.root().join(&id).exists());
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// The leak checker itself: each check must be able to fail.

fn probe_for(env: &Env, name: &str) -> (String, LeakProbe) {
    let id = env.id(name);
    let p = LeakProbe::new(&id, env.root());
    assert!(p.leaks().is_empty(), "{:?}", p.leaks());
    (id, p)
}

#[test]
fn leak_check_sees_a_state_directory() {
    let env = Env::new();
    let (id, p) = probe_for(&env, "lc-state");
    fs::create_dir(env.root().join(&id)).unwrap();
    let l = p.leaks();
    assert!(l.len() == 1 && l[0].contains("state directory"), "{l:?}");
    fs::remove_dir(env.root().join(&id)).unwrap();
    p.assert_clean();
    env.finish();
}

#[test]
fn leak_check_sees_a_cgroup_directory_in_every_hierarchy() {
    let env = Env::new();
    let hierarchies = cgroup_hierarchies();
    assert!(!hierarchies.is_empty(), "no cgroup hierarchy mounted");
    for h in hierarchies {
        let (id, mut p) = probe_for(&env, "lc-cgroup");
        let dir = h.join("berth").join(&id);
        fs::create_dir_all(&dir).unwrap();
        let l = p.leaks();
        let _ = fs::remove_dir(&dir);
        assert!(l.iter().any(|x| x.contains("cgroup directory") && x.contains(&id)), "{}: {l:?}", h.display());
        // A custom cgroupsPath that does not contain the id.
        let custom = format!("berth-it-custom-{}", std::process::id());
        fs::create_dir_all(h.join(&custom)).unwrap();
        p.cgroup_paths.push(custom.clone());
        let l = p.leaks();
        let _ = fs::remove_dir(h.join(&custom));
        assert!(l.iter().any(|x| x.contains(&custom)), "{}: {l:?}", h.display());
        p.assert_clean();
    }
    env.finish();
}

#[test]
fn leak_check_sees_a_host_mount() {
    let env = Env::new();
    let b = env.bundle_own(&["true"]);
    let (id, mut p) = probe_for(&env, "lc-mount");
    p.needles.push(b.dir().to_string());
    p.needles.push(b.rootfs().to_string_lossy().into_owned());
    let target = b.rootfs().join("data");
    sh_ok(&format!("mount -t tmpfs berth-it-leak {}", target.display()));
    let l = p.leaks();
    sh_ok(&format!("umount {}", target.display()));
    assert!(l.len() == 1 && l[0].contains("host mount") && l[0].contains("berth-it-leak"), "{l:?}");
    p.assert_clean();
    let _ = id;
    env.finish();
}

#[test]
fn leak_check_sees_a_process_by_command_line() {
    let env = Env::new();
    let (id, p) = probe_for(&env, "lc-cmdline");
    let mut child = Command::new("sh").args(["-c", "read x", "sh", &id]).stdin(Stdio::piped()).spawn().unwrap();
    assert!(wait_until(|| !p.leaks().is_empty()));
    let l = p.leaks();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(l.iter().any(|x| x.contains(&format!("process {}", child.id()))), "{l:?}");
    p.assert_clean();
    env.finish();
}

#[test]
fn leak_check_sees_a_process_by_cgroup_and_a_zombie_by_pid() {
    let env = Env::new();
    let (id, mut p) = probe_for(&env, "lc-cgproc");
    let dir = Path::new("/sys/fs/cgroup/pids/berth").join(&id);
    fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
    fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
    let l = p.leaks();
    child.kill().unwrap();
    // Not reaped yet: a zombie child of ours, which the pid check must report.
    p.pids.push(child.id() as i32);
    assert!(wait_until(|| proc_state(child.id() as i32) == Some('Z')));
    fs::remove_dir(&dir).unwrap();
    let zombie = p.leaks();
    child.wait().unwrap();
    assert!(l.iter().any(|x| x.contains(&format!("process {}", child.id())) && x.contains(&id)), "{l:?}");
    assert!(zombie.iter().any(|x| x.contains("still our child")), "{zombie:?}");
    p.assert_clean();
    env.finish();
}

#[test]
#[should_panic(expected = "not re-parented to the test process")]
fn reap_fails_clearly_without_a_subreaper() {
    // What a test sees if the init it waits for went to another reaper: pid 1 is never our
    // child.
    init();
    reap(1);
}
