//! Shared helpers of the `berth` CLI integration tests: a busybox rootfs built from the host's
//! static busybox, OCI bundles, a private state root per test, a runner for the binary, and
//! the leak checker (host mounts, cgroup directories, state directories, processes).
//!
//! The tests run as root against the real kernel: real namespaces, mounts and cgroups.
//!
//! Orphans. A detached container's init (after `berth create` or `berth run -d` exits) is
//! re-parented to the nearest child subreaper, or to PID 1, which on the development machine
//! never reaps orphans. So the test process makes itself a child subreaper ([`init`]) and each
//! test reaps the inits it started, by pid ([`Env::reap`], [`Env::finish`]). Nothing here calls
//! `waitpid(-1)`: that would steal the exit status of a `Command` another test thread waits for.
//! If the subreaper were missing, [`Env::reap`] fails with a message saying so, and
//! `lifecycle::detached_init_is_reaped_by_the_callers_subreaper` checks the mechanism itself.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

// Where each cgroup controller lives (from /proc/cgroups and mountinfo, not from berth), and
// how a test reports that it cannot run here: shared with the berth-cgroups tests.
#[path = "../../../berth-cgroups/tests/common/place.rs"]
mod place;
#[allow(unused_imports)]
pub use place::*;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{Pid, WaitOptions};
use serde_json::{json, Value};

/// The binary under test.
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// The static busybox the rootfs is built from (Debian package busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";

/// How long helpers wait for a container to reach a state before giving up. A deadline only:
/// no test asserts on how long anything took.
pub const PATIENCE: Duration = Duration::from_secs(30);

static INIT: OnceLock<()> = OnceLock::new();

/// Checks the preconditions once per test binary and makes this process a child subreaper.
pub fn init() {
    INIT.get_or_init(|| {
        assert!(
            rustix::process::geteuid().is_root(),
            "berth's integration tests must run as root: they create real namespaces, mounts and cgroups"
        );
        let bb = fs::read(BUSYBOX).unwrap_or_else(|e| {
            panic!("{BUSYBOX}: {e}; the tests build their rootfs from it: install busybox-static (scripts/setup)")
        });
        // A dynamically linked busybox would fail inside the rootfs with a confusing ENOENT.
        let head = &bb[..bb.len().min(8192)];
        assert!(
            !head.windows(8).any(|w| w == b"ld-linux"),
            "{BUSYBOX} is dynamically linked; install busybox-static (scripts/setup)"
        );
        rustix::process::set_child_subreaper(Some(Pid::INIT)).expect("PR_SET_CHILD_SUBREAPER");
        assert!(
            rustix::process::child_subreaper().expect("PR_GET_CHILD_SUBREAPER").is_some(),
            "the test process could not become a child subreaper"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Rootfs and bundles

/// Builds a busybox rootfs in `dir`: bin/busybox, one symlink per applet, /etc/passwd and
/// /etc/group with root, `user` (1000) and `nobody`, and the directories every container
/// mounts on (pre-created so that containers sharing this rootfs never race to create them).
pub fn build_rootfs(dir: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user", "data"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    let out = Command::new(BUSYBOX).arg("--list").output().expect("busybox --list");
    assert!(out.status.success(), "busybox --list failed");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        // `busybox --list` names busybox itself: a symlink there would replace the binary.
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n").unwrap();
}

/// A rootfs shared by every test of this binary that does not modify it, built once.
pub fn shared_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        init();
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("berth-it");
        fs::create_dir_all(&base).unwrap();
        // Rootfs directories of earlier runs whose process is gone.
        for e in fs::read_dir(&base).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("rootfs-").and_then(|p| p.parse::<i32>().ok()) {
                let alive = Pid::from_raw(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
                if !alive {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("rootfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        build_rootfs(&dir);
        dir.canonicalize().unwrap()
    })
}

/// Copies a directory tree, keeping symlinks as symlinks.
pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    fs::set_permissions(dst, fs::metadata(src).unwrap().permissions()).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            symlink(fs::read_link(&from).unwrap(), &to).unwrap();
        } else if ft.is_dir() {
            copy_tree(&from, &to);
        } else {
            fs::copy(&from, &to).unwrap();
        }
    }
}

/// runc's default config.json as `berth spec` writes it (read once).
pub fn default_config() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BERTH).arg("spec").current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "berth spec: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap()
    })
}

/// An OCI bundle in a temporary directory.
pub struct Bundle {
    dir: tempfile::TempDir,
    path: PathBuf,
    rootfs: PathBuf,
    /// The config that [`Bundle::write`] stores as config.json.
    pub config: Value,
}

impl Bundle {
    fn make(args: &[&str], own_rootfs: bool) -> Bundle {
        init();
        let dir = tempfile::Builder::new().prefix("berth-bundle-").tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap();
        let mut config = default_config().clone();
        let rootfs = if own_rootfs {
            let r = path.join("rootfs");
            copy_tree(shared_rootfs(), &r);
            config["root"]["path"] = json!("rootfs");
            r
        } else {
            let r = shared_rootfs().to_path_buf();
            config["root"]["path"] = json!(r);
            r
        };
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        let b = Bundle { dir, path, rootfs, config };
        b.write();
        b
    }

    /// A bundle on the shared rootfs (which the container must not modify).
    pub fn new(args: &[&str]) -> Bundle {
        Bundle::make(args, false)
    }

    /// A bundle with its own copy of the rootfs, at `<bundle>/rootfs`.
    pub fn own_rootfs(args: &[&str]) -> Bundle {
        Bundle::make(args, true)
    }

    /// The bundle directory (canonical).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bundle directory as a string, for command lines.
    pub fn dir(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The rootfs (canonical).
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// Sets the value at a JSON pointer (`/process/user/uid`), creating missing objects, and
    /// rewrites config.json.
    pub fn set(&mut self, pointer: &str, v: Value) -> &mut Bundle {
        let mut cur = &mut self.config;
        let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        let (last, parents) = parts.split_last().unwrap();
        for p in parents {
            if !cur.get(*p).is_some_and(Value::is_object) {
                cur[*p] = json!({});
            }
            cur = cur.get_mut(*p).unwrap();
        }
        cur[*last] = v;
        self.write();
        self
    }

    /// Removes the value at a JSON pointer and rewrites config.json.
    pub fn remove(&mut self, pointer: &str) -> &mut Bundle {
        let (parent, last) = pointer.rsplit_once('/').unwrap();
        if let Some(obj) = self.config.pointer_mut(parent).and_then(Value::as_object_mut) {
            obj.remove(last);
        }
        self.write();
        self
    }

    /// Appends to the array at `pointer` and rewrites config.json.
    pub fn push(&mut self, pointer: &str, v: Value) -> &mut Bundle {
        if self.config.pointer(pointer).is_none() {
            self.set(pointer, json!([]));
        }
        self.config.pointer_mut(pointer).and_then(Value::as_array_mut).unwrap().push(v);
        self.write();
        self
    }

    /// Removes the namespace of type `ns` from linux.namespaces.
    pub fn drop_namespace(&mut self, ns: &str) -> &mut Bundle {
        let list = self.config.pointer_mut("/linux/namespaces").and_then(Value::as_array_mut).unwrap();
        list.retain(|n| n["type"] != ns);
        self.write();
        self
    }

    /// Writes config.json.
    pub fn write(&self) {
        fs::write(self.path.join("config.json"), serde_json::to_vec_pretty(&self.config).unwrap()).unwrap();
    }

    /// A file in the bundle directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Keeps the temporary directory alive as long as the bundle.
    pub fn tempdir(&self) -> &tempfile::TempDir {
        &self.dir
    }
}

// ---------------------------------------------------------------------------------------------
// Running berth

/// What a finished command did.
#[derive(Debug)]
pub struct Out {
    /// The command line, for messages.
    pub cmd: String,
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

impl Out {
    fn describe(&self) -> String {
        format!("`{}` exited with {:?}\n--- stdout\n{}\n--- stderr\n{}", self.cmd, self.code, self.stdout, self.stderr)
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{}", self.describe());
        &self.stdout
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code_is(&self, code: i32) -> &Out {
        assert_eq!(self.code, Some(code), "{}", self.describe());
        self
    }

    /// Asserts a non-zero exit whose stderr contains `needle` (a stable part of the message).
    #[track_caller]
    pub fn fails_with(&self, needle: &str) -> &Out {
        assert!(matches!(self.code, Some(c) if c != 0), "expected a failure: {}", self.describe());
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}: {}", self.describe());
        self
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test's state root, container ids and cleanup.
pub struct Env {
    root: tempfile::TempDir,
    root_path: PathBuf,
    ids: Mutex<Vec<String>>,
    pids: Mutex<Vec<i32>>,
    needles: Mutex<Vec<String>>,
    finished: bool,
}

impl Env {
    /// A fresh state root.
    pub fn new() -> Env {
        init();
        let root = tempfile::Builder::new().prefix("berth-root-").tempdir().unwrap();
        let root_path = root.path().canonicalize().unwrap();
        Env {
            root,
            root_path,
            ids: Mutex::new(Vec::new()),
            pids: Mutex::new(Vec::new()),
            needles: Mutex::new(Vec::new()),
            finished: false,
        }
    }

    /// The state root (`--root`).
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    /// A container id unique across tests and test binaries: `it<pid>x<n>-<name>`. The number
    /// is followed by `-`, so no id is a substring of another and leak checks cannot confuse
    /// two tests' containers.
    pub fn id(&self, name: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("it{}x{n}-{name}", std::process::id());
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    /// A bundle on the shared rootfs whose paths the final leak check covers.
    pub fn bundle(&self, args: &[&str]) -> Bundle {
        let b = Bundle::new(args);
        self.watch(&b);
        b
    }

    /// A bundle with its own rootfs copy whose paths the final leak check covers.
    pub fn bundle_own(&self, args: &[&str]) -> Bundle {
        let b = Bundle::own_rootfs(args);
        self.watch(&b);
        b
    }

    /// Adds a bundle's paths to the final mount leak check.
    pub fn watch(&self, b: &Bundle) {
        let mut n = self.needles.lock().unwrap();
        n.push(b.dir().to_string());
        n.push(b.rootfs().to_string_lossy().into_owned());
    }

    /// `berth --root <root> args...`, stdin from /dev/null, output captured. Only for commands
    /// that leave nothing running with our pipes open (not `create`, not `run -d`).
    pub fn berth(&self, args: &[&str]) -> Out {
        let mut cmd = self.command(args);
        run(&mut cmd, args)
    }

    /// `berth --root <root> args...` as a `Command` for callers that need control of stdio.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BERTH);
        cmd.arg("--root").arg(&self.root_path).args(args).stdin(Stdio::null());
        cmd
    }

    /// Runs a command that leaves a container behind (`create`, `run -d`): its stdout and
    /// stderr, which the container inherits, go to `<bundle>/<label>.out` and `.err`, so this
    /// returns when berth exits, not when the container does. The returned stdout/stderr are
    /// what the files held at that point.
    pub fn detached(&self, b: &Bundle, label: &str, args: &[&str]) -> Out {
        self.detached_within(b, label, args, None)
    }

    /// [`Env::detached`] that gives up when berth has not exited after `deadline` (a hang
    /// bound, not a timing assertion): berth is killed and reaped and the test fails. Whatever
    /// berth left running is re-parented to this process and must be cleaned up by the caller.
    #[track_caller]
    pub fn detached_within(&self, b: &Bundle, label: &str, args: &[&str], deadline: Option<Duration>) -> Out {
        let out = fs::File::create(b.file(&format!("{label}.out"))).unwrap();
        let err = fs::File::create(b.file(&format!("{label}.err"))).unwrap();
        let mut cmd = self.command(args);
        cmd.stdout(out).stderr(err);
        let status = match deadline {
            None => cmd.status().unwrap(),
            Some(d) => {
                let mut child = cmd.spawn().unwrap();
                let end = Instant::now() + d;
                loop {
                    if let Some(st) = child.try_wait().unwrap() {
                        break st;
                    }
                    if Instant::now() > end {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "`berth {}` still running after {d:?} (hung); stderr so far: {}",
                            args.join(" "),
                            fs::read_to_string(b.file(&format!("{label}.err"))).unwrap_or_default()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        Out {
            cmd: format!("berth {}", args.join(" ")),
            code: status.code(),
            stdout: fs::read_to_string(b.file(&format!("{label}.out"))).unwrap(),
            stderr: fs::read_to_string(b.file(&format!("{label}.err"))).unwrap(),
        }
    }

    /// `berth create --bundle <b> <id>` (detached stdio), asserting success; returns the init
    /// pid and registers it for reaping.
    pub fn create(&self, b: &Bundle, id: &str) -> i32 {
        self.detached(b, id, &["create", "--bundle", b.dir(), id]).ok();
        self.pid_of(id)
    }

    /// `berth run -d --bundle <b> <id>`, asserting success; returns the init pid.
    pub fn run_detached(&self, b: &Bundle, id: &str) -> i32 {
        let pidfile = b.file(&format!("{id}.pid"));
        self.detached(b, id, &["run", "-d", "--pid-file", pidfile.to_str().unwrap(), "--bundle", b.dir(), id]).ok();
        let pid: i32 = fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        self.pids.lock().unwrap().push(pid);
        pid
    }

    /// What the container wrote to its (detached) stdout so far.
    pub fn output_of(&self, b: &Bundle, id: &str) -> String {
        fs::read_to_string(b.file(&format!("{id}.out"))).unwrap_or_default()
    }

    /// `berth state <id>` parsed.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let out = self.berth(&["state", id]);
        serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("state {id}: {e}: {}", out.stdout))
    }

    /// The status field of `berth state`.
    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// The init pid from `berth state`, registered for reaping.
    #[track_caller]
    pub fn pid_of(&self, id: &str) -> i32 {
        let pid = self.state(id)["pid"].as_i64().unwrap() as i32;
        assert!(pid > 0, "state of {id} has no pid");
        self.pids.lock().unwrap().push(pid);
        pid
    }

    /// Polls `berth state` until the status is `want`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str) {
        let mut last = String::new();
        let ok = wait_until(|| {
            last = self.status(id);
            last == want
        });
        assert!(ok, "container {id} did not become {want} (last status: {last})");
    }

    /// Registers a process that will be re-parented to us (an orphan of a container without a
    /// pid namespace) so that cleanup reaps it.
    pub fn adopt(&self, pid: i32) {
        self.pids.lock().unwrap().push(pid);
    }

    /// Reaps an init this process inherited as subreaper; returns its wait status as a shell
    /// would (exit code, or 128+signal).
    #[track_caller]
    pub fn reap(&self, pid: i32) -> i32 {
        self.pids.lock().unwrap().retain(|p| *p != pid);
        reap(pid)
    }

    /// Deletes every container of this test, reaps their inits and asserts that nothing
    /// leaked: no host mount mentioning a bundle, rootfs or id, no cgroup directory, no state
    /// directory, no process.
    #[track_caller]
    pub fn finish(mut self) {
        self.finished = true;
        self.cleanup();
        let ids = self.ids.lock().unwrap().clone();
        let needles = self.needles.lock().unwrap().clone();
        let mut leaks = Vec::new();
        for id in ids {
            let mut p = LeakProbe::new(&id, &self.root_path);
            p.needles.extend(needles.iter().cloned());
            leaks.extend(p.leaks());
        }
        assert!(leaks.is_empty(), "leaks after the test:\n{}", leaks.join("\n"));
    }

    fn cleanup(&self) {
        let ids = self.ids.lock().unwrap().clone();
        for id in &ids {
            if self.root_path.join(id).exists() {
                let _ = self.berth(&["delete", "--force", id]);
            }
        }
        let pids = std::mem::take(&mut *self.pids.lock().unwrap());
        for pid in pids {
            // Only our own children: a pid we no longer own may belong to someone else now.
            if parent_of(pid) == Some(std::process::id() as i32) {
                if let Some(p) = Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    let _ = rustix::process::waitpid(Some(p), WaitOptions::empty());
                }
            }
        }
    }
}

impl Default for Env {
    fn default() -> Env {
        Env::new()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !self.finished {
            self.cleanup();
        }
        let _ = &self.root;
    }
}

fn run(cmd: &mut Command, args: &[&str]) -> Out {
    let o = cmd.output().unwrap_or_else(|e| panic!("spawning berth: {e}"));
    Out {
        cmd: format!("berth {}", args.join(" ")),
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `berth args...` without `--root` (global-flag tests).
pub fn berth_raw(args: &[&str]) -> Out {
    init();
    let mut cmd = Command::new(BERTH);
    cmd.args(args).stdin(Stdio::null());
    run(&mut cmd, args)
}

/// Spawns `berth --root <root> args...` with stdout piped, and returns the child plus a
/// reader of its stdout lines.
pub fn spawn_piped(env: &Env, args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = env.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// Reads one line (without the newline).
pub fn read_line(r: &mut impl BufRead) -> String {
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s.trim_end().to_string()
}

/// Polls `f` every 10 ms until it is true or [`PATIENCE`] ran out; returns the last result.
pub fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Blocking `waitpid(pid)` for a process this test process inherited; 128+N for a signal.
#[track_caller]
pub fn reap(pid: i32) -> i32 {
    let p = Pid::from_raw(pid).unwrap();
    match rustix::process::waitpid(Some(p), WaitOptions::empty()) {
        Ok(Some((_, st))) => st.exit_status().or_else(|| st.terminating_signal().map(|s| 128 + s)).unwrap_or(-1),
        Ok(None) => panic!("waitpid({pid}) returned nothing"),
        Err(e) => panic!(
            "waitpid({pid}): {e}: the container init was not re-parented to the test process; \
             the tests must run as a child subreaper (common::init) or under one"
        ),
    }
}

/// The parent pid of `pid` from /proc, if it exists.
pub fn parent_of(pid: i32) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The process state letter of `pid` from /proc (`Z` for a zombie).
pub fn proc_state(pid: i32) -> Option<char> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

// ---------------------------------------------------------------------------------------------
// Leak checking

/// Everything one container may leave on the host, and the checks that find it.
#[derive(Debug, Clone)]
pub struct LeakProbe {
    /// Container id.
    pub id: String,
    /// State root the container was created under.
    pub state_root: PathBuf,
    /// Strings whose presence in a host mountinfo line means a leaked mount (the id, bundle
    /// and rootfs paths).
    pub needles: Vec<String>,
    /// Cgroup paths (relative to a hierarchy root) that must not exist in any hierarchy,
    /// beyond directories named after the id (for a custom `linux.cgroupsPath`).
    pub cgroup_paths: Vec<String>,
    /// Pids that must be gone (not alive, not an unreaped zombie of ours).
    pub pids: Vec<i32>,
}

impl LeakProbe {
    /// A probe for container `id` under `state_root`.
    pub fn new(id: &str, state_root: &Path) -> LeakProbe {
        LeakProbe {
            id: id.to_string(),
            state_root: state_root.to_path_buf(),
            needles: vec![id.to_string()],
            cgroup_paths: Vec::new(),
            pids: Vec::new(),
        }
    }

    /// A probe covering a bundle's directory and rootfs too.
    pub fn with_bundle(id: &str, state_root: &Path, b: &Bundle) -> LeakProbe {
        let mut p = LeakProbe::new(id, state_root);
        p.needles.push(b.dir().to_string());
        p.needles.push(b.rootfs().to_string_lossy().into_owned());
        p
    }

    /// Every leak found, one description each.
    pub fn leaks(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(mount_leaks(&self.needles));
        out.extend(cgroup_leaks(&self.id, &self.cgroup_paths));
        let dir = self.state_root.join(&self.id);
        if dir.exists() {
            out.push(format!("state directory {} still exists", dir.display()));
        }
        out.extend(process_leaks(&self.id, &self.cgroup_paths, &self.pids));
        out
    }

    /// Panics with every leak found.
    #[track_caller]
    pub fn assert_clean(&self) {
        let l = self.leaks();
        assert!(l.is_empty(), "container {} leaked:\n{}", self.id, l.join("\n"));
    }
}

/// Lines of the host's /proc/self/mountinfo (this process is in the host mount namespace)
/// that mention any needle.
pub fn mount_leaks(needles: &[String]) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter(|l| needles.iter().any(|n| !n.is_empty() && l.contains(n.as_str())))
        .map(|l| format!("host mount: {l}"))
        .collect()
}

/// The cgroup hierarchies mounted on this host (v1 controllers and the v2 mount).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let mountpoint = pre.split_whitespace().nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mountpoint))
        })
        .collect()
}

/// Cgroup directories named after `id` anywhere in any hierarchy, and `extra` paths in each.
pub fn cgroup_leaks(id: &str, extra: &[String]) -> Vec<String> {
    fn walk(dir: &Path, id: &str, depth: usize, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().contains(id) {
                out.push(format!("cgroup directory {}", p.display()));
            }
            if depth < 8 {
                walk(&p, id, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    for h in cgroup_hierarchies() {
        walk(&h, id, 0, &mut out);
        for x in extra {
            let p = h.join(x.trim_start_matches('/'));
            if p.exists() {
                out.push(format!("cgroup directory {}", p.display()));
            }
        }
    }
    out
}

/// Processes whose command line or cgroup mentions `id` (or one of `cgroup_paths`), and
/// `pids` that still exist as our children (an unreaped zombie counts).
pub fn process_leaks(id: &str, cgroup_paths: &[String], pids: &[i32]) -> Vec<String> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cgroup = fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        let in_cgroup = cgroup.lines().any(|l| {
            let path = l.splitn(3, ':').nth(2).unwrap_or("");
            path.split('/').any(|c| c.contains(id))
                || cgroup_paths.iter().any(|c| path.trim_end_matches('/') == c.trim_end_matches('/'))
        });
        if cmdline.contains(id) || in_cgroup {
            out.push(format!("process {pid} ({}) cgroups: {}", cmdline.trim(), cgroup.replace('\n', " ")));
        }
    }
    for &pid in pids {
        if parent_of(pid) == Some(me) {
            out.push(format!("process {pid} (state {:?}) is still our child", proc_state(pid)));
        }
    }
    out
}

/// Host cgroup directory `berth/<id>` in the first v1 hierarchy with `controller`.
pub fn v1_cgroup_dir(controller: &str, id: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup").join(controller).join("berth").join(id)
}

/// Capability numbers of the names used in tests.
pub fn cap_bit(name: &str) -> u64 {
    let n = match name {
        "CAP_CHOWN" => 0,
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_FOWNER" => 3,
        "CAP_KILL" => 5,
        "CAP_SETGID" => 6,
        "CAP_SETUID" => 7,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_RAW" => 13,
        "CAP_SYS_ADMIN" => 21,
        "CAP_AUDIT_WRITE" => 29,
        other => panic!("cap_bit: add {other}"),
    };
    1u64 << n
}

/// The mask of a list of capability names.
pub fn cap_mask(names: &[&str]) -> u64 {
    names.iter().map(|n| cap_bit(n)).fold(0, |a, b| a | b)
}

/// A `Cap*:` line of /proc/self/status parsed.
pub fn status_caps(status: &str, field: &str) -> u64 {
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} missing in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// Runs `berth <cmd> --bundle <b> <id>` (detached stdio, so a leaked container cannot hold
/// our pipes), which must exit 1 with `needle` in its stderr, must never start the
/// container's process (which would print `STARTED`), and must leave nothing behind.
#[track_caller]
pub fn fails_clean(env: &Env, b: &Bundle, cmd: &str, id: &str, needle: &str) -> Out {
    let probe = LeakProbe::with_bundle(id, env.root(), b);
    probe.assert_clean();
    let out = env.detached_within(b, id, &[cmd, "--bundle", b.dir(), id], Some(2 * PATIENCE));
    out.fails_with(needle);
    out.code_is(1);
    assert!(!out.stdout.contains("STARTED"), "the container's process ran: {out:?}");
    probe.assert_clean();
    out
}

/// Both `create` and `run` fail cleanly with `needle`.
#[track_caller]
pub fn create_and_run_fail_clean(env: &Env, b: &Bundle, name: &str, needle: &str) {
    fails_clean(env, b, "create", &env.id(name), needle);
    fails_clean(env, b, "run", &env.id(name), needle);
}

// ---------------------------------------------------------------------------------------------
// Descriptors over unix sockets, terminals, races

/// Receives one descriptor sent with SCM_RIGHTS on a connected unix socket (a console
/// socket's PTY master, a seccomp agent's listener) and the bytes sent with it. None when
/// the peer closed the connection without sending one (it failed).
pub fn recv_fd_with(conn: &std::os::unix::net::UnixStream) -> Option<(std::os::fd::OwnedFd, Vec<u8>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut buf = vec![0u8; 8192];
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let n = rustix::net::recvmsg(conn, &mut [std::io::IoSliceMut::new(&mut buf)], &mut anc, RecvFlags::CMSG_CLOEXEC)
        .ok()?
        .bytes;
    let mut fd = None;
    for m in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(mut r) = m {
            fd = r.next();
        }
    }
    buf.truncate(n);
    fd.map(|f| (f, buf))
}

/// [`recv_fd_with`] without the bytes.
pub fn recv_fd(conn: &std::os::unix::net::UnixStream) -> Option<std::os::fd::OwnedFd> {
    recv_fd_with(conn).map(|(f, _)| f)
}

/// Reads a PTY master until `needle` appears in what was read, or panics after the patience
/// deadline. Returns everything read.
#[track_caller]
pub fn read_until(master: std::os::fd::BorrowedFd<'_>, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let mut fds = [rustix::event::PollFd::from_borrowed_fd(master, rustix::event::PollFlags::IN)];
        let ts = rustix::event::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
        if rustix::event::poll(&mut fds, Some(&ts)).unwrap_or(0) == 0 {
            continue;
        }
        match rustix::io::read(master, &mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => continue,
            Err(_) => break,
        }
        if String::from_utf8_lossy(&got).contains(needle) {
            return String::from_utf8_lossy(&got).into_owned();
        }
    }
    panic!("{needle:?} not seen on the terminal; got {:?}", String::from_utf8_lossy(&got));
}

/// Runs `f` while a second thread swaps the entries `a` and `b` of directory `dir` with
/// `renameat2(RENAME_EXCHANGE)` in a tight loop: what a sibling container sharing a volume
/// can do to a mount destination between a runtime's check and its mount (CVE-2021-30465).
/// Returns `f`'s result and the number of swaps. The racer stops when `f` returns or panics.
pub fn with_rename_exchange_racer<T>(dir: &Path, a: &str, b: &str, f: impl FnOnce() -> T) -> (T, u64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    /// Stops the racer also when `f` panics (the scope would otherwise wait for it forever).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let racer = s.spawn(|| {
            let d = fs::File::open(dir).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(&d, a, &d, b, rustix::fs::RenameFlags::EXCHANGE).unwrap();
                n += 1;
            }
            n
        });
        let stopper = Stop(&stop);
        let out = f();
        drop(stopper);
        (out, racer.join().unwrap())
    })
}
