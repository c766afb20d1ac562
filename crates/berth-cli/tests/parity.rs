//! runc 1.1 parity of the command line (issue 14 items 1-3): the options runc has, the exit
//! codes and message words that podman, containerd and Docker act on, and exec's semantics.
//!
//! Where it is practical a test runs the same command against runc as well and asserts the
//! same exit code and key words. Those comparisons need the `runc` binary (scripts/test and
//! scripts/setup install it); without it they print `SKIPPED: ...` and return, and only the
//! berth half of the test ran.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers

/// The container's cgroup directories on the host, from `/proc/PID/cgroup` and the host's
/// cgroup mounts: (the controllers field, e.g. `memory` or `` for cgroup2, the directory).
fn cgroup_dirs(pid: i32) -> Vec<(String, PathBuf)> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts: Vec<(String, Vec<String>, PathBuf)> = info
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split_whitespace();
            let fstype = post.next()?.to_string();
            let opts = post.nth(1)?.split(',').map(str::to_string).collect();
            Some((fstype, opts, PathBuf::from(pre.split_whitespace().nth(4)?)))
        })
        .filter(|(t, _, _)| t == "cgroup" || t == "cgroup2")
        .collect();
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut out = Vec::new();
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (n, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let mount = if n == "0" {
            mounts.iter().find(|(t, _, _)| t == "cgroup2")
        } else {
            mounts.iter().find(|(t, opts, _)| t == "cgroup" && ctrls.split(',').all(|c| opts.iter().any(|o| o == c)))
        };
        if let Some((_, _, m)) = mount {
            out.push((ctrls.to_string(), m.join(path.trim_start_matches('/'))));
        }
    }
    out
}

/// The v1 directory of `controller` in the container's cgroup, if it has one.
fn v1_dir_of(pid: i32, controller: &str) -> Option<PathBuf> {
    cgroup_dirs(pid).into_iter().find(|(c, _)| c.split(',').any(|x| x == controller)).map(|(_, d)| d)
}

/// Pids in the container's cgroup (its freezer or pids hierarchy, else cgroup2).
fn cgroup_pids(pid: i32) -> Vec<i32> {
    let dir = v1_dir_of(pid, "freezer")
        .or_else(|| v1_dir_of(pid, "pids"))
        .or_else(|| cgroup_dirs(pid).into_iter().find(|(c, _)| c.is_empty()).map(|(_, d)| d))
        .unwrap();
    fs::read_to_string(dir.join("cgroup.procs")).unwrap().lines().filter_map(|l| l.parse().ok()).collect()
}

/// Waits until the detached output of a container contains `needle`.
#[track_caller]
fn wait_output(env: &Env, b: &Bundle, id: &str, needle: &str) {
    let ok = wait_until(|| env.output_of(b, id).contains(needle));
    assert!(ok, "{id} never printed {needle:?}; output: {:?}", env.output_of(b, id));
}

/// runc, for side-by-side comparisons, with its own state root.
struct Runc {
    root: tempfile::TempDir,
    ids: Vec<String>,
}

impl Runc {
    /// None (after printing why) when runc is not installed.
    fn new(test: &str) -> Option<Runc> {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("runc").is_file()))
            .unwrap_or(false);
        if !found {
            eprintln!("SKIPPED: {test}: runc is not installed (scripts/test installs it); the comparison with runc did not run");
            return None;
        }
        Some(Runc { root: tempfile::Builder::new().prefix("berth-runc-").tempdir().unwrap(), ids: Vec::new() })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(self.root.path()).args(args).stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        let o = self.command(args).output().unwrap();
        Out {
            cmd: format!("runc {}", args.join(" ")),
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// `runc run -d` with the container's stdio in files (it outlives runc).
    fn run_detached(&mut self, env: &Env, b: &Bundle, id: &str) -> i32 {
        let out = fs::File::create(b.file(&format!("runc-{id}.out"))).unwrap();
        let pidfile = b.file(&format!("runc-{id}.pid"));
        let st = self
            .command(&["run", "-d", "--pid-file", pidfile.to_str().unwrap(), "--bundle", b.dir(), id])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .status()
            .unwrap();
        assert!(st.success(), "runc run -d {id}: {}", fs::read_to_string(b.file(&format!("runc-{id}.out"))).unwrap());
        self.ids.push(id.to_string());
        let pid: i32 = fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        env.adopt(pid);
        pid
    }

    fn status(&self, id: &str) -> String {
        let out = self.run(&["state", id]);
        let v: Value = serde_json::from_str(out.ok()).unwrap();
        v["status"].as_str().unwrap().to_string()
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.run(&["delete", "-f", id]);
        }
    }
}

/// Exit code and stderr of the same command line against berth and runc.
#[track_caller]
fn same_outcome(berth: &Out, runc: &Out, code: i32, needle: &str) {
    berth.code_is(code);
    runc.code_is(code);
    for o in [berth, runc] {
        if !needle.is_empty() {
            assert!(o.stderr.contains(needle), "{} lacks {needle:?}: {}", o.cmd, o.stderr);
        }
    }
}

// =============================================================================================
// 1. Options runc 1.1 has

#[test]
fn run_keep_leaves_the_container_stopped_with_its_cgroup() {
    let env = Env::new();
    let b = env.bundle(&["sh", "-c", "cat /proc/self/cgroup; exit 3"]);
    let id = env.id("keep");
    let out = env.berth(&["run", "--keep", "--bundle", b.dir(), &id]);
    out.code_is(3);
    let st = env.state(&id);
    assert_eq!(st["status"], "stopped", "{st}");
    assert_eq!(st["pid"], 0, "{st}");
    // The cgroup directories the process was in are still there, in every hierarchy.
    let dirs: Vec<PathBuf> = out
        .stdout
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .filter(|p| p.contains(&id))
        .map(|p| PathBuf::from(p.trim_start_matches('/')))
        .collect();
    assert!(!dirs.is_empty(), "the process was in no cgroup of its own: {}", out.stdout);
    let leaks = cgroup_leaks(&id, &[]);
    assert!(!leaks.is_empty(), "run --keep removed the cgroup");
    // `delete` removes it, as after any stopped container.
    env.berth(&["delete", &id]).ok();
    assert!(cgroup_leaks(&id, &[]).is_empty());
    // Without --keep the container is gone when run returns (the control).
    let id2 = env.id("nokeep");
    env.berth(&["run", "--bundle", b.dir(), &id2]).code_is(3);
    env.berth(&["state", &id2]).fails_with("does not exist");
    // `create` has no --keep (as in runc).
    let id3 = env.id("createkeep");
    env.detached(&b, &id3, &["create", "--keep", "--bundle", b.dir(), &id3]).code_is(1);
    env.finish();
}

#[test]
fn update_takes_cpu_share_and_cpu_shares() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("cpushare");
    let pid = env.run_detached(&b, &id);
    let Some(cpu) = v1_dir_of(pid, "cpu") else {
        eprintln!("SKIPPED: update_takes_cpu_share_and_cpu_shares: no v1 cpu hierarchy on this host");
        env.finish();
        return;
    };
    env.berth(&["update", "--cpu-share", "512", &id]).ok();
    assert_eq!(fs::read_to_string(cpu.join("cpu.shares")).unwrap().trim(), "512");
    env.berth(&["update", "--cpu-shares", "256", &id]).ok();
    assert_eq!(fs::read_to_string(cpu.join("cpu.shares")).unwrap().trim(), "256");
    env.berth(&["update", "--cpu-share", "many", &id]).fails_with("--cpu-share");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn exec_into_a_paused_container_needs_ignore_paused() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("paused");
    let pid = env.run_detached(&b, &id);
    env.berth(&["pause", &id]).ok();
    let before = cgroup_pids(pid).len();
    // runc's refusal, exit 255; nothing ran.
    let out = env.berth(&["exec", &id, "sh", "-c", "echo STARTED"]);
    out.fails_with("cannot exec in a paused container (use --ignore-paused to override)").code_is(255);
    assert!(!out.stdout.contains("STARTED"));
    assert_eq!(env.status(&id), "paused");
    // With --ignore-paused the process joins the frozen cgroup and waits there.
    let (mut child, mut stdout) = spawn_piped(&env, &["exec", "--ignore-paused", &id, "sh", "-c", "echo ran"]);
    assert!(wait_until(|| cgroup_pids(pid).len() > before), "the exec process never joined the container's cgroup");
    // Every process, the new one included, is stopped: the container reads paused.
    env.wait_status(&id, "paused");
    assert!(child.try_wait().unwrap().is_none(), "exec finished while the container was paused");
    env.berth(&["resume", &id]).ok();
    assert_eq!(read_line(&mut stdout), "ran");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

/// Creates `sub` under each of the container's cgroup directories (what the caller of
/// `exec --cgroup` must do: berth, like runc, does not create it).
fn make_sub_cgroups(pid: i32, sub: &str) {
    for (ctrls, dir) in cgroup_dirs(pid) {
        let d = dir.join(sub);
        fs::create_dir_all(&d).unwrap();
        if ctrls.split(',').any(|c| c == "cpuset") {
            // A v1 cpuset takes no task before its cpus and mems are set.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                fs::write(d.join(f), fs::read_to_string(dir.join(f)).unwrap()).unwrap();
            }
        }
    }
}

#[test]
fn exec_cgroup_joins_an_existing_sub_cgroup() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("subcg");
    let pid = env.run_detached(&b, &id);
    make_sub_cgroups(pid, "sub");
    let lines = |out: &Out| -> Vec<(String, String)> {
        out.ok()
            .lines()
            .map(|l| {
                let mut f = l.splitn(3, ':');
                f.next();
                (f.next().unwrap().to_string(), f.next().unwrap().to_string())
            })
            .collect()
    };
    // No controller prefix: every hierarchy, cgroup v1 and v2 (this hybrid host has both).
    let all = lines(&env.berth(&["exec", "--cgroup", "sub", &id, "cat", "/proc/self/cgroup"]));
    assert!(all.iter().any(|(c, _)| c.is_empty()) || !Path::new("/sys/fs/cgroup/unified").exists());
    for (c, p) in &all {
        assert!(p.ends_with(&format!("{id}/sub")), "hierarchy {c:?}: {p}");
    }
    // With prefixes, only the named controllers move.
    let some =
        lines(&env.berth(&["exec", "--cgroup", "memory:sub", "--cgroup", "pids:sub", &id, "cat", "/proc/self/cgroup"]));
    for (c, p) in &some {
        let named = c.split(',').any(|x| x == "memory" || x == "pids");
        assert_eq!(p.ends_with(&format!("{id}/sub")), named, "hierarchy {c:?}: {p}");
        if !named {
            assert!(p.ends_with(&id), "hierarchy {c:?}: {p}");
        }
    }
    // Several controllers in one prefix.
    let two = lines(&env.berth(&["exec", "--cgroup", "memory,pids:sub", &id, "cat", "/proc/self/cgroup"]));
    assert_eq!(two, some);
    // delete removes the sub-cgroups with the container's.
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn exec_cgroup_refusals() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("subcgbad");
    let pid = env.run_detached(&b, &id);
    make_sub_cgroups(pid, "sub");
    for (args, needle) in [
        (vec!["--cgroup", "nosub"], "no such file or directory"),
        (vec!["--cgroup", "../escape"], "is not a sub cgroup path"),
        (vec!["--cgroup", "memory:../../x"], "is not a sub cgroup path"),
        (vec!["--cgroup", "a:b:c"], "invalid --cgroup argument: a:b:c"),
        (vec!["--cgroup", "sub", "--cgroup", "sub"], "missing <controller>: prefix"),
        (vec!["--cgroup", "bogus:sub"], "unknown controller bogus"),
    ] {
        let mut full = vec!["exec"];
        full.extend(args.iter().copied());
        full.extend([id.as_str(), "sh", "-c", "echo STARTED"]);
        let out = env.berth(&full);
        out.fails_with(needle).code_is(255);
        assert!(!out.stdout.contains("STARTED"), "{out:?}");
        assert!(out.stderr.contains("--cgroup"), "the message names the flag: {out:?}");
    }
    // Nothing was left in the container's cgroup but the init.
    assert_eq!(cgroup_pids(pid), [pid]);
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn kill_0_probes_liveness() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("kill0");
    let pid = env.create(&b, &id);
    env.berth(&["kill", &id, "0"]).ok();
    assert_eq!(env.status(&id), "created");
    env.berth(&["start", &id]).ok();
    env.berth(&["kill", &id, "0"]).ok();
    env.berth(&["pause", &id]).ok();
    env.berth(&["kill", &id, "0"]).ok();
    assert_eq!(env.status(&id), "paused");
    env.berth(&["resume", &id]).ok();
    env.berth(&["kill", &id, "KILL"]).ok();
    env.reap(pid);
    env.wait_status(&id, "stopped");
    env.berth(&["kill", &id, "0"]).fails_with("container not running").code_is(1);
    env.berth(&["delete", &id]).ok();
    env.finish();
}

#[test]
fn kill_sends_real_time_signals() {
    let env = Env::new();
    let script = "trap 'echo got37' 37; trap 'echo got64' 64; trap 'echo got36' 36; \
                  trap 'echo got35; exit 0' 35; echo ready; while :; do sleep 0.1; done";
    let b = env.bundle(&["sh", "-c", script]);
    let id = env.id("rtsig");
    let pid = env.run_detached(&b, &id);
    wait_output(&env, &b, &id, "ready");
    env.berth(&["kill", &id, "37"]).ok();
    wait_output(&env, &b, &id, "got37");
    env.berth(&["kill", &id, "SIGRTMAX"]).ok();
    wait_output(&env, &b, &id, "got64");
    env.berth(&["kill", "--all", &id, "36"]).ok();
    wait_output(&env, &b, &id, "got36");
    env.berth(&["kill", &id, "rtmin+1"]).ok();
    assert_eq!(env.reap(pid), 0);
    wait_output(&env, &b, &id, "got35");
    env.berth(&["kill", &id, "65"]).fails_with("65").code_is(1);
    env.berth(&["delete", &id]).ok();
    env.finish();
}

#[test]
fn exec_process_and_update_resources_from_inherited_descriptors() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("devfd");
    let pid = env.run_detached(&b, &id);
    let proc_file = b.file("proc.json");
    fs::write(
        &proc_file,
        json!({"args": ["sh", "-c", "echo fromfd; ls /proc/$$/fd; ls -l /proc/$$/fd >&2"], "cwd": "/", "env": ["PATH=/bin"],
               "user": {"uid": 0, "gid": 0}})
        .to_string(),
    )
    .unwrap();
    let res_file = b.file("res.json");
    fs::write(&res_file, json!({"pids": {"limit": 77}}).to_string()).unwrap();
    // Descriptor 7 carries the document; 8 is a host directory leaked into berth, which the
    // container must never see (CVE-2024-21626).
    let run = |args: &str| {
        let script = format!("exec 7<\"$1\" 8</; exec {BERTH} --root {} {args} {id}", env.root().display());
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(if args.starts_with("exec") { &proc_file } else { &res_file })
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run("exec -p /dev/fd/7");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("fromfd"));
    let fds: Vec<&str> = lines.collect();
    assert_eq!(fds, ["0", "1", "2"], "descriptors of the exec process: {}", String::from_utf8_lossy(&o.stderr));
    let o = run("update -r /dev/fd/7");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    if let Some(d) = v1_dir_of(pid, "pids") {
        assert_eq!(fs::read_to_string(d.join("pids.max")).unwrap().trim(), "77");
    }
    // /dev/stdin works too (the usual pipe).
    let mut c = env.command(&["exec", "-p", "/dev/stdin", &id]);
    c.stdin(fs::File::open(&proc_file).unwrap());
    let o = c.output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("fromfd\n"), "{o:?}");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

fn features() -> Value {
    let out = berth_raw(&["features"]);
    serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("features is not JSON: {e}: {}", out.stdout))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn features_lists_what_this_build_supports() {
    let f = features();
    let version = berth_raw(&["--version"]);
    let spec_line = version.ok().lines().find_map(|l| l.strip_prefix("spec: ")).unwrap().to_string();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert_eq!(f["ociVersionMax"], json!(spec_line));
    assert_eq!(
        strings(&f["hooks"]),
        ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
    );
    let opts = strings(&f["mountOptions"]);
    for o in ["ro", "rw", "nosuid", "bind", "rbind", "rprivate", "rro", "rnosuid", "tmpcopyup", "idmap"] {
        assert!(opts.contains(&o.to_string()), "mountOptions lacks {o}: {opts:?}");
    }
    // Filesystem data options are not mount options (the spec's rule).
    for o in ["mode=755", "size=65536k", "mode"] {
        assert!(!opts.contains(&o.to_string()), "mountOptions has {o}");
    }
    let linux = &f["linux"];
    let ns = strings(&linux["namespaces"]);
    assert_eq!(ns, ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"]);
    let caps = strings(&linux["capabilities"]);
    assert_eq!(caps.len(), 41);
    assert_eq!(caps[0], "CAP_CHOWN");
    assert_eq!(caps[40], "CAP_CHECKPOINT_RESTORE");
    // berth manages cgroups through cgroupfs only and refuses --systemd-cgroup.
    assert_eq!(linux["cgroup"], json!({"v1": true, "v2": true, "systemd": false, "systemdUser": false}));
    assert_eq!(linux["seccomp"]["enabled"], true);
    for a in ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_NOTIFY", "SCMP_ACT_LOG"] {
        assert!(strings(&linux["seccomp"]["actions"]).contains(&a.to_string()), "{a}");
    }
    assert_eq!(strings(&linux["seccomp"]["operators"]).len(), 7);
    assert!(strings(&linux["seccomp"]["archs"]).contains(&"SCMP_ARCH_X86_64".to_string()));
    // berth applies the LSM fields where the host has the LSM (and refuses them as runc 1.1
    // where it has not): compiled in.
    assert_eq!(linux["apparmor"]["enabled"], true);
    assert_eq!(linux["selinux"]["enabled"], true);
    // Annotations in berth's own namespace; runc's are runc's.
    let ann = f["annotations"].as_object().unwrap();
    assert_eq!(
        ann["io.berth.version"],
        json!(version.stdout.lines().next().unwrap().strip_prefix("berth version ").unwrap())
    );
    assert_eq!(ann["io.berth.checkpoint.enabled"], "false");
    assert!(ann.contains_key("io.github.seccomp.libseccomp.version"));
    assert!(!ann.keys().any(|k| k.starts_with("org.opencontainers.runc.")), "{ann:?}");
    // No arguments, as runc.
    berth_raw(&["features", "extra"]).code_is(1);
}

#[test]
fn features_has_runcs_shape() {
    init();
    let Some(runc) = Runc::new("features_has_runcs_shape") else { return };
    let theirs: Value = serde_json::from_str(runc.run(&["features"]).ok()).unwrap();
    let ours = features();
    fn keys(v: &Value, prefix: &str, out: &mut Vec<String>) {
        if let Some(o) = v.as_object() {
            for (k, v) in o {
                if prefix.ends_with("annotations") {
                    continue;
                }
                let p = format!("{prefix}.{k}");
                out.push(p.clone());
                keys(v, &p, out);
            }
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    keys(&theirs, "", &mut a);
    keys(&ours, "", &mut b);
    a.sort();
    b.sort();
    assert_eq!(b, a, "berth's features document has runc 1.1's shape");
    // Where both know a value, the lists agree.
    assert_eq!(ours["hooks"], theirs["hooks"]);
    for op in strings(&theirs["linux"]["seccomp"]["operators"]) {
        assert!(strings(&ours["linux"]["seccomp"]["operators"]).contains(&op), "{op}");
    }
    for o in strings(&theirs["mountOptions"]) {
        assert!(strings(&ours["mountOptions"]).contains(&o), "runc knows mount option {o}, berth does not list it");
    }
}

/// Every command with its flags (runc 1.1's, and berth's own).
const COMMANDS: &[(&str, &[&str])] = &[
    ("spec", &["--bundle", "--rootless", "--seccomp"]),
    ("create", &["--bundle", "--console-socket", "--pid-file", "--no-pivot", "--no-new-keyring", "--preserve-fds"]),
    (
        "run",
        &[
            "--bundle",
            "--console-socket",
            "--detach",
            "--keep",
            "--pid-file",
            "--no-subreaper",
            "--no-pivot",
            "--no-new-keyring",
            "--preserve-fds",
        ],
    ),
    ("start", &[]),
    ("state", &[]),
    ("kill", &["--all"]),
    ("delete", &["--force"]),
    ("list", &["--format", "--quiet"]),
    ("ps", &["--format"]),
    (
        "exec",
        &[
            "--console-socket",
            "--cwd",
            "--env",
            "--tty",
            "--user",
            "--additional-gids",
            "--process",
            "--detach",
            "--pid-file",
            "--process-label",
            "--apparmor",
            "--no-new-privs",
            "--cap",
            "--preserve-fds",
            "--cgroup",
            "--ignore-paused",
        ],
    ),
    ("pause", &[]),
    ("resume", &[]),
    ("events", &["--interval", "--stats"]),
    (
        "update",
        &[
            "--resources",
            "--blkio-weight",
            "--cpu-period",
            "--cpu-quota",
            "--cpu-share",
            "--cpu-rt-period",
            "--cpu-rt-runtime",
            "--cpuset-cpus",
            "--cpuset-mems",
            "--memory",
            "--memory-reservation",
            "--memory-swap",
            "--pids-limit",
            "--l3-cache-schema",
            "--mem-bw-schema",
        ],
    ),
    ("features", &[]),
    ("hcs-config", &["--bundle", "--lcow-kernel-dir", "--lcow-option", "--process"]),
];

#[test]
fn help_for_every_command() {
    let top = berth_raw(&["--help"]);
    for (cmd, flags) in COMMANDS {
        assert!(top.ok().contains(&format!("\n  {cmd} ")), "berth --help does not list {cmd}");
        let long = berth_raw(&[cmd, "--help"]);
        let text = long.ok();
        assert!(text.contains(&format!("berth {cmd}")), "berth {cmd} --help: {text}");
        for f in *flags {
            assert!(text.contains(f), "berth {cmd} --help does not describe {f}: {text}");
        }
        assert_eq!(berth_raw(&[cmd, "-h"]).ok(), text, "berth {cmd} -h");
        assert_eq!(berth_raw(&["help", cmd]).ok(), text, "berth help {cmd}");
        assert_eq!(berth_raw(&["h", cmd]).ok(), text, "berth h {cmd}");
    }
    for cmd in ["checkpoint", "restore"] {
        assert!(top.ok().contains(&format!("\n  {cmd} ")), "berth --help does not list {cmd}");
    }
    assert_eq!(berth_raw(&["help"]).ok(), top.ok());
    assert_eq!(berth_raw(&["h"]).ok(), top.ok());
    assert_eq!(berth_raw(&["-h"]).ok(), top.ok());
}

#[test]
fn unknown_commands_exit_3() {
    berth_raw(&["nosuchcmd"]).fails_with("No help topic for 'nosuchcmd'").code_is(3);
    berth_raw(&["help", "nosuchcmd"]).fails_with("No help topic for 'nosuchcmd'").code_is(3);
    // An unknown flag is a usage error: 1, as in runc.
    berth_raw(&["list", "--bogus"]).code_is(1);
}

#[test]
fn global_flags_take_their_values() {
    let env = Env::new();
    let root = env.root().to_str().unwrap();
    // `--rootless VALUE`, space-separated, as runc's string flag.
    for v in ["auto", "false"] {
        let out = berth_raw(&["--root", root, "--rootless", v, "list"]);
        assert!(out.ok().starts_with("ID"), "{out:?}");
        berth_raw(&["--root", root, &format!("--rootless={v}"), "list"]).ok();
    }
    // The value is used: rootless, the default state root is $XDG_RUNTIME_DIR/berth, which
    // is an error without XDG_RUNTIME_DIR; not rootless, it is /run/berth.
    let raw = |args: &[&str]| {
        let o = Command::new(BERTH).args(args).env_remove("XDG_RUNTIME_DIR").stdin(Stdio::null()).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = raw(&["--rootless", "true", "state", "nosuch"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("XDG_RUNTIME_DIR"), "{err}");
    let (code, err) = raw(&["--rootless", "false", "state", "nosuch"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not exist"), "{err}");
    // An invalid value is an error.
    berth_raw(&["--root", root, "--rootless", "bogus", "list"]).fails_with("--rootless \"bogus\"").code_is(1);
    // --log-level sets the level.
    let log = env.root().join("log.txt");
    let out = berth_raw(&[
        "--root",
        root,
        "--log",
        log.to_str().unwrap(),
        "--log-level",
        "debug",
        "--log-format",
        "json",
        "state",
        "nosuch",
    ]);
    out.code_is(1);
    berth_raw(&["--root", root, "--log-level", "loud", "list"]).fails_with("--log-level").code_is(1);
    // --criu takes its path (used by nothing: checkpoint and restore are refused).
    berth_raw(&["--root", root, "--criu", "/usr/sbin/criu", "list"]).ok();
    env.finish();
}

#[test]
fn checkpoint_and_restore_are_refused() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("cr");
    let pid = env.run_detached(&b, &id);
    let out = env.berth(&["checkpoint", &id]);
    out.fails_with("checkpoint is not supported").code_is(1);
    assert!(out.stderr.contains("CRIU"), "{out:?}");
    assert_eq!(env.status(&id), "running");
    let out = env.berth(&["restore", "--bundle", b.dir(), &env.id("restored")]);
    out.fails_with("restore is not supported").code_is(1);
    // podman decides that a runtime can checkpoint when `checkpoint --help` exits 0: berth
    // explains the refusal and exits 1.
    let help = env.berth(&["checkpoint", "--help"]);
    help.code_is(1);
    assert!(help.stdout.contains("not supported"), "{help:?}");
    // podman probes pod restore with `restore --lsm-mount-context` and looks for
    // "flag needs an argument": berth must not seem to support that either.
    let out = env.berth(&["restore", "--lsm-mount-context"]);
    assert!(!out.stderr.contains("flag needs an argument") && !out.stdout.contains("flag needs an argument"));
    out.code_is(1);
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn the_container_gets_its_own_session_keyring_unless_no_new_keyring() {
    let env = Env::new();
    // /proc/keys lines end with `<description>: <summary>`; $0 is the container id.
    let script = "grep \"_ses\\.$0:\" /proc/keys; echo STARTED; exec sleep 100000";
    let mut b = env.bundle(&[]);
    // /proc/keys is masked in runc's default spec.
    let masked: Vec<Value> =
        b.config["linux"]["maskedPaths"].as_array().unwrap().iter().filter(|p| *p != "/proc/keys").cloned().collect();
    b.set("/linux/maskedPaths", json!(masked));
    for (flag, name) in [(None, "keyring"), (Some("--no-new-keyring"), "nokeyring")] {
        let id = env.id(name);
        b.set("/process/args", json!(["sh", "-c", script, id]));
        let pidfile = b.file(&format!("{id}.pid"));
        let mut cmd = vec!["run", "-d", "--pid-file", pidfile.to_str().unwrap(), "--bundle", b.dir()];
        cmd.extend(flag);
        cmd.push(&id);
        env.detached(&b, &id, &cmd).ok();
        let pid: i32 = fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        env.adopt(pid);
        wait_output(&env, &b, &id, "STARTED");
        let init = env.output_of(&b, &id);
        let exec = env.berth(&["exec", &id, "grep", &format!("_ses.{id}:"), "/proc/keys"]);
        if flag.is_none() {
            // The init's session keyring is `_ses.<id>`; exec joins that same keyring (one
            // keyring of that name, the same serial).
            let line = init.lines().next().unwrap();
            assert!(line.contains(&format!("_ses.{id}:")), "the init has no _ses.{id} keyring: {init}");
            let serial = line.split_whitespace().next().unwrap();
            assert_eq!(exec.ok().lines().count(), 1, "{}", exec.stdout);
            assert_eq!(
                exec.stdout.split_whitespace().next(),
                Some(serial),
                "exec joined another keyring: {}",
                exec.stdout
            );
        } else {
            assert_eq!(init, "STARTED\n", "a keyring was made despite --no-new-keyring");
            exec.code_is(1);
            assert_eq!(exec.stdout, "");
        }
        env.berth(&["delete", "-f", &id]).ok();
        env.reap(pid);
    }
    env.finish();
}

#[test]
fn foreground_run_reaps_orphans_unless_no_subreaper() {
    let env = Env::new();
    // No pid namespace: an orphan of the container goes to the nearest subreaper, which is
    // `berth run` itself (the init's parent) unless --no-subreaper; then it is this test. The
    // container kills the orphan and waits (10 s at most) for it to be reaped.
    let mut b = env.bundle(&[
        "sh",
        "-c",
        "p=$(sh -c 'sleep 100000 </dev/null >/dev/null 2>&1 & echo $!'); \
         echo orphan=$p; echo parent=$PPID; grep PPid /proc/$p/status; kill $p; \
         for i in $(seq 1000); do [ -e /proc/$p ] || break; sleep 0.01; done; \
         if [ -e /proc/$p ]; then echo not-reaped; else echo reaped; fi",
    ]);
    b.drop_namespace("pid");
    for (flag, name) in [(None, "reaper"), (Some("--no-subreaper"), "noreaper")] {
        let id = env.id(name);
        let mut cmd = vec!["run", "--bundle", b.dir()];
        cmd.extend(flag);
        cmd.push(&id);
        let out = env.berth(&cmd);
        let text = out.ok();
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().to_string();
        env.adopt(field("orphan=").parse().unwrap());
        if flag.is_none() {
            assert_eq!(field("PPid:"), field("parent="), "the orphan was not re-parented to berth run: {text}");
            assert!(text.contains("\nreaped\n"), "berth run did not reap the orphan: {text}");
        } else {
            assert_eq!(field("PPid:"), std::process::id().to_string(), "{text}");
            // The test process is its parent now, and does not reap it until the end.
            assert!(text.contains("\nnot-reaped\n"), "{text}");
        }
    }
    env.finish();
}

// =============================================================================================
// 2. Exit codes and the words clients match

#[test]
fn exec_runtime_failures_exit_255() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("x255");
    let pid = env.run_detached(&b, &id);
    let started = |out: &Out| assert!(!out.stdout.contains("STARTED"), "the process ran: {out:?}");
    let probe = ["sh", "-c", "echo STARTED"];
    let with = |flags: &[&str], target: &str, cmd: &[&str]| {
        let mut a = vec!["exec"];
        a.extend(flags);
        a.push(target);
        a.extend(cmd);
        env.berth(&a)
    };
    let out = with(&[], "nosuch", &probe);
    out.fails_with("does not exist").code_is(255);
    let out = with(&["--pid-file", "/nonexistent/dir/pid"], &id, &probe);
    out.fails_with("/nonexistent/dir/pid").code_is(255);
    let out = with(&[], &id, &["nosuchbinary"]);
    out.fails_with("executable file not found in $PATH").code_is(255);
    let out = with(&["--user", "abc"], &id, &probe);
    out.fails_with("--user").code_is(255);
    started(&out);
    let out = with(&["--cwd", "relative"], &id, &probe);
    out.fails_with("absolute").code_is(255);
    started(&out);
    let out = with(&[], &id, &[]);
    out.fails_with("process args cannot be empty").code_is(255);
    // The process's own status passes through unchanged.
    with(&[], &id, &["sh", "-c", "exit 1"]).code_is(1);
    with(&[], &id, &["sh", "-c", "exit 255"]).code_is(255);
    // A usage error (unknown flag) is 1, as in runc.
    with(&["--bogus"], &id, &probe).code_is(1);
    env.berth(&["kill", &id, "KILL"]).ok();
    env.reap(pid);
    env.wait_status(&id, "stopped");
    with(&[], &id, &probe).fails_with("cannot exec in a stopped container").code_is(255);
    env.berth(&["delete", &id]).ok();
    env.finish();
}

#[test]
fn a_container_put_into_a_non_empty_cgroup_warns() {
    let env = Env::new();
    let id = env.id("nonempty");
    let rel = format!("{id}-pre");
    let Some(pids_root) = cgroup_hierarchies().into_iter().find(|h| h.join("pids.max").exists() || h.ends_with("pids"))
    else {
        eprintln!("SKIPPED: a_container_put_into_a_non_empty_cgroup_warns: no pids hierarchy");
        return;
    };
    let pre = pids_root.join(&rel);
    /// Kills the squatter and removes the pre-created cgroup even when the test fails.
    struct Squat(std::process::Child, String);
    impl Drop for Squat {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            for h in cgroup_hierarchies() {
                let _ = fs::remove_dir(h.join(&self.1));
            }
        }
    }
    fs::create_dir_all(&pre).unwrap();
    let mut squatter = Squat(Command::new("sleep").arg("100000").spawn().unwrap(), rel.clone());
    fs::write(pre.join("cgroup.procs"), squatter.0.id().to_string()).unwrap();
    let mut b = env.bundle(&["sleep", "100000"]);
    b.set("/linux/cgroupsPath", json!(format!("/{rel}")));
    let out = env.detached(&b, &id, &["create", "--bundle", b.dir(), &id]);
    out.ok();
    assert!(out.stderr.contains("container's cgroup is not empty: 1 process(es) found"), "{out:?}");
    assert!(out.stderr.contains("warning"), "{out:?}");
    let pid = env.pid_of(&id);
    squatter.0.kill().unwrap();
    squatter.0.wait().unwrap();
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    for h in cgroup_hierarchies() {
        let _ = fs::remove_dir(h.join(&rel));
    }
    // An empty pre-existing cgroup gives no warning (the control).
    fs::create_dir_all(&pre).unwrap();
    let id2 = env.id("empty");
    let out = env.detached(&b, &id2, &["create", "--bundle", b.dir(), &id2]);
    out.ok();
    assert!(!out.stderr.contains("not empty"), "{out:?}");
    let pid2 = env.pid_of(&id2);
    env.berth(&["delete", "-f", &id2]).ok();
    env.reap(pid2);
    for h in cgroup_hierarchies() {
        let _ = fs::remove_dir(h.join(&rel));
    }
    env.finish();
}

#[test]
fn messages_contain_the_words_clients_match() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("words");
    let pid = env.run_detached(&b, &id);
    // Unknown container, every command (containerd: "does not exist"; moby: "container does
    // not exist"; podman: "does not exist").
    for cmd in [&["state"][..], &["kill"], &["delete"], &["start"], &["pause"], &["resume"], &["ps"], &["exec"]] {
        let mut a = cmd.to_vec();
        a.push("nosuch");
        if cmd == ["exec"] {
            a.push("true");
        }
        env.berth(&a).fails_with("container does not exist");
    }
    // Docker and podman map these to 127 and 126.
    env.berth(&["exec", &id, "nosuchbinary"]).fails_with("executable file not found in $PATH");
    env.berth(&["exec", &id, "/bin/nosuchbinary"]).fails_with("no such file or directory");
    env.berth(&["exec", &id, "/etc"]).fails_with("permission denied");
    // The same at create (docker run).
    let mut bad = env.bundle(&["/bin/nosuchbinary"]);
    fails_clean(&env, &bad, "create", &env.id("enoent"), "no such file or directory");
    bad.set("/process/args", json!(["/etc"]));
    fails_clean(&env, &bad, "run", &env.id("eacces"), "permission denied");
    bad.set("/process/args", json!(["nosuchbinary"]));
    fails_clean(&env, &bad, "run", &env.id("enopath"), "executable file not found in $PATH");
    // runc's libcontainer texts.
    env.detached(&b, "dup", &["create", "--bundle", b.dir(), &id]).fails_with("container with given ID already exists");
    env.detached(&b, "badid", &["create", "--bundle", b.dir(), "a@b"]).fails_with("invalid container ID format");
    env.berth(&["start", &id]).fails_with("cannot start an already running container");
    env.berth(&["resume", &id]).fails_with("container not paused");
    env.berth(&["kill", &id, "FOO"]).fails_with("unknown signal \\\"FOO\\\"");
    env.berth(&["pause", &id]).ok();
    env.berth(&["pause", &id]).fails_with("container not running");
    env.berth(&["exec", &id, "true"]).fails_with("cannot exec in a paused container");
    env.berth(&["resume", &id]).ok();
    env.berth(&["kill", &id, "KILL"]).ok();
    env.reap(pid);
    env.wait_status(&id, "stopped");
    // containerd treats these as "already finished" (checkKillError).
    env.berth(&["kill", &id]).fails_with("container not running");
    env.berth(&["kill", &id, "9"]).fails_with("container not running");
    env.berth(&["pause", &id]).fails_with("container not running");
    env.berth(&["start", &id]).fails_with("cannot start a container that has stopped");
    env.berth(&["exec", &id, "true"]).fails_with("cannot exec in a stopped container");
    // The shim's kill --all after the init exited succeeds, as in runc.
    env.berth(&["kill", "--all", &id, "9"]).ok();
    env.berth(&["delete", &id]).ok();
    env.finish();
}

#[test]
fn exit_codes_and_words_match_runc() {
    let env = Env::new();
    let Some(mut runc) = Runc::new("exit_codes_and_words_match_runc") else {
        env.finish();
        return;
    };
    let b = env.bundle(&["sleep", "100000"]);
    let (bid, rid) = (env.id("cmpb"), env.id("cmpr"));
    let bpid = env.run_detached(&b, &bid);
    let _rpid = runc.run_detached(&env, &b, &rid);
    let both = |args: &dyn Fn(&str) -> Vec<String>| {
        let a = args(&bid);
        let r = args(&rid);
        (
            env.berth(&a.iter().map(String::as_str).collect::<Vec<_>>()),
            runc.run(&r.iter().map(String::as_str).collect::<Vec<_>>()),
        )
    };
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (o1, o2) = (berth_raw(&["nosuchcmd"]), runc.run(&["nosuchcmd"]));
    same_outcome(&o1, &o2, 3, "No help topic for 'nosuchcmd'");
    let (o1, o2) = both(&|_| v(&["exec", "nosuch", "true"]));
    same_outcome(&o1, &o2, 255, "container does not exist");
    let (o1, o2) = both(&|id| v(&["exec", id, "nosuchbinary"]));
    same_outcome(&o1, &o2, 255, "executable file not found in $PATH");
    let (o1, o2) = both(&|id| v(&["exec", id, "/bin/nosuchbinary"]));
    same_outcome(&o1, &o2, 255, "no such file or directory");
    let (o1, o2) = both(&|id| v(&["exec", id, "/etc"]));
    same_outcome(&o1, &o2, 255, "permission denied");
    let (o1, o2) = both(&|id| v(&["exec", id, "sh", "-c", "exit 3"]));
    same_outcome(&o1, &o2, 3, "");
    let (o1, o2) = both(&|id| v(&["exec", id]));
    same_outcome(&o1, &o2, 255, "process args cannot be empty");
    let (o1, o2) = both(&|id| v(&["kill", id, "0"]));
    same_outcome(&o1, &o2, 0, "");
    let (o1, o2) = both(&|id| v(&["kill", id, "FOO"]));
    same_outcome(&o1, &o2, 1, "unknown signal \\\"FOO\\\"");
    let (o1, o2) = both(&|id| v(&["start", id]));
    same_outcome(&o1, &o2, 1, "cannot start an already running container");
    let (o1, o2) = both(&|id| v(&["resume", id]));
    same_outcome(&o1, &o2, 1, "container not paused");
    let (o1, o2) = both(&|id| v(&["pause", id]));
    same_outcome(&o1, &o2, 0, "");
    let (o1, o2) = both(&|id| v(&["kill", id, "0"]));
    same_outcome(&o1, &o2, 0, "");
    let (o1, o2) = both(&|id| v(&["exec", id, "true"]));
    same_outcome(&o1, &o2, 255, "cannot exec in a paused container (use --ignore-paused to override)");
    let (o1, o2) = both(&|id| v(&["resume", id]));
    same_outcome(&o1, &o2, 0, "");
    let (o1, o2) = both(&|id| v(&["kill", id, "KILL"]));
    same_outcome(&o1, &o2, 0, "");
    env.reap(bpid);
    env.wait_status(&bid, "stopped");
    assert!(wait_until(|| runc.status(&rid) == "stopped"));
    let (o1, o2) = both(&|id| v(&["kill", id, "0"]));
    same_outcome(&o1, &o2, 1, "container not running");
    let (o1, o2) = both(&|id| v(&["kill", "--all", id, "9"]));
    same_outcome(&o1, &o2, 0, "");
    let (o1, o2) = both(&|id| v(&["exec", id, "true"]));
    same_outcome(&o1, &o2, 255, "cannot exec in a stopped container");
    let (o1, o2) = both(&|id| v(&["start", id]));
    same_outcome(&o1, &o2, 1, "cannot start a container that has stopped");
    env.berth(&["delete", &bid]).ok();
    drop(runc);
    env.finish();
}

// =============================================================================================
// 3. exec semantics

#[test]
fn env_is_deduplicated_and_exec_env_overrides_the_spec() {
    let env = Env::new();
    // The init runs `env` itself (a shell would add its own variables).
    let mut b = env.bundle(&["env"]);
    b.set("/process/env", json!(["PATH=/bin", "FOO=spec", "BAR=1", "FOO=spec2", "TERM=xterm"]));
    let out = env.berth(&["run", "--bundle", b.dir(), &env.id("envinit")]);
    // The last value wins, in the place of the first (runc's os.Setenv).
    let init: Vec<&str> = out.ok().lines().collect();
    assert_eq!(&init[..4], ["PATH=/bin", "FOO=spec2", "BAR=1", "TERM=xterm"], "{init:?}");
    assert_eq!(init.iter().filter(|l| l.starts_with("FOO=")).count(), 1, "{init:?}");
    b.set("/process/args", json!(["sleep", "100000"]));
    let id = env.id("envdup");
    let pid = env.run_detached(&b, &id);
    // exec: -e overrides the spec's, and a later -e an earlier one.
    let out = env.berth(&["exec", "-e", "FOO=cli", "-e", "NEW=x", "-e", "FOO=cli2", &id, "env"]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(&lines[..5], ["PATH=/bin", "FOO=cli2", "BAR=1", "TERM=xterm", "NEW=x"], "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("FOO=")).count(), 1);
    // The executable lookup uses the final PATH.
    env.berth(&["exec", "-e", "PATH=/nowhere", &id, "sleep", "0"]).fails_with("executable file not found in $PATH");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn init_and_exec_processes_lead_their_own_session() {
    let env = Env::new();
    let stat = "read pid comm state ppid pgrp sid rest < /proc/$$/stat; echo $pid $pgrp $sid";
    let b = env.bundle(&["sh", "-c", &format!("{stat}; echo STARTED; exec sleep 100000")]);
    let id = env.id("setsid");
    let pid = env.run_detached(&b, &id);
    wait_output(&env, &b, &id, "STARTED");
    let init = env.output_of(&b, &id);
    let f: Vec<&str> = init.lines().next().unwrap().split(' ').collect();
    assert_eq!((f[1], f[2]), (f[0], f[0]), "init pid pgrp sid: {init}");
    let out = env.berth(&["exec", &id, "sh", "-c", stat]);
    let f: Vec<String> = out.ok().split_whitespace().map(str::to_string).collect();
    assert_eq!((&f[1], &f[2]), (&f[0], &f[0]), "exec pid pgrp sid: {}", out.stdout);
    // Foreground run too (the process must not be in berth's process group).
    let b2 = env.bundle(&["sh", "-c", stat]);
    let out = env.berth(&["run", "--bundle", b2.dir(), &env.id("setsidfg")]);
    let f: Vec<String> = out.ok().split_whitespace().map(str::to_string).collect();
    assert_eq!((&f[1], &f[2]), (&f[0], &f[0]), "run pid pgrp sid: {}", out.stdout);
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn exec_unknown_cap_warns_and_is_skipped() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("capwarn");
    let pid = env.run_detached(&b, &id);
    let out = env.berth(&[
        "exec",
        "--cap",
        "CAP_FOO",
        "--cap",
        "CAP_SYS_ADMIN",
        "--cap",
        "NET_RAW",
        &id,
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    let eff = status_caps(out.ok(), "CapEff:");
    assert_ne!(eff & cap_bit("CAP_SYS_ADMIN"), 0, "CAP_SYS_ADMIN was not added: {}", out.stdout);
    assert_eq!(eff & cap_bit("CAP_NET_RAW"), 0, "NET_RAW (no CAP_ prefix) is unknown, as in runc");
    assert!(
        out.stderr.contains("CAP_FOO") && out.stderr.contains("NET_RAW") && out.stderr.contains("warning"),
        "{out:?}"
    );
    assert!(out.stderr.contains("unknown or unavailable capabilities"), "{out:?}");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn exec_additional_gids_add_to_the_specs() {
    let env = Env::new();
    let mut b = env.bundle(&["sleep", "100000"]);
    b.set("/process/user/additionalGids", json!([10]));
    let id = env.id("gids");
    let pid = env.run_detached(&b, &id);
    let out = env.berth(&["exec", "-g", "5", "-g", "7", &id, "cat", "/proc/self/status"]);
    let groups = out.ok().lines().find_map(|l| l.strip_prefix("Groups:")).unwrap().trim().to_string();
    assert_eq!(groups, "5 7 10");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn exec_process_file_and_per_process_flags_are_exclusive() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("pflags");
    let pid = env.run_detached(&b, &id);
    let f = b.file("p.json");
    fs::write(&f, json!({"args": ["sh", "-c", "echo STARTED"], "cwd": "/"}).to_string()).unwrap();
    for flag in [
        &["-e", "A=B"][..],
        &["--cwd", "/tmp"],
        &["-u", "1"],
        &["-g", "1"],
        &["--cap", "CAP_KILL"],
        &["-t"],
        &["--no-new-privs"],
    ] {
        let mut a = vec!["exec", "-p", f.to_str().unwrap()];
        a.extend(flag);
        a.push(&id);
        let out = env.berth(&a);
        out.fails_with(flag[0]).code_is(1);
        assert!(out.stderr.contains("--process"), "{out:?}");
        assert!(!out.stdout.contains("STARTED"));
    }
    // Flags about the exec itself combine with -p.
    let pidfile = b.file("p.pid");
    let out = env.berth(&["exec", "-p", f.to_str().unwrap(), "--pid-file", pidfile.to_str().unwrap(), &id]);
    assert_eq!(out.ok(), "STARTED\n");
    assert!(pidfile.exists());
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}
