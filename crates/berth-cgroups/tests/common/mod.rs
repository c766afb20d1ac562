//! Helpers for the tests that run against the real kernel (as root).
//!
//! The test harness is multi-threaded, so processes are started with
//! `std::process::Command` (busybox `sh -c`) and moved into the cgroup by
//! pid from the parent; each script blocks on a line from stdin until it has
//! been moved. Every cgroup is named `/berth-test-<name>-<pid>` and removed by
//! [`TestCgroup`]'s `Drop`, processes first.

#![allow(dead_code)]

mod place;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use berth_cgroups::Cgroup;
pub use place::*;

pub const BUSYBOX: &str = "/bin/busybox";

pub fn unique(name: &str) -> String {
    format!("/berth-test-{name}-{}", std::process::id())
}

/// Owns a cgroup for the duration of a test; kills its processes and
/// removes it on drop (also when the test fails).
pub struct TestCgroup {
    pub cg: Cgroup,
}

impl TestCgroup {
    pub fn new(cg: Cgroup) -> Self {
        TestCgroup { cg }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = self.cg.signal_all(libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cg.pids().map(|p| !p.is_empty()).unwrap_or(false) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.cg.destroy();
    }
}

/// Thaws a cgroup when dropped. Declared after the [`Proc`]s of a test that
/// freezes, it runs before their drop, which would otherwise wait forever for
/// a v1-frozen process (it cannot act on SIGKILL) when the test fails while
/// the cgroup is frozen.
pub struct ThawOnDrop<'a>(pub &'a Cgroup);

impl Drop for ThawOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.thaw();
    }
}

/// A busybox shell waiting for one line on stdin before running `script`.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: BufReader<ChildStdout>,
}

impl Proc {
    /// Starts `sh -c "read _go; <script>"`; call [`Proc::go`] after moving it.
    pub fn spawn(script: &str) -> Proc {
        let mut child = Command::new(BUSYBOX)
            .args(["sh", "-c", &format!("read _go; {script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn busybox");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Proc { child, stdin, stdout }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends one line to the script (the first one starts it).
    pub fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().expect("stdin open");
        writeln!(s, "{line}").expect("write to child");
        s.flush().expect("flush");
    }

    pub fn go(&mut self) {
        self.send("go");
    }

    pub fn read_line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).expect("read child stdout");
        l.trim_end().to_owned()
    }

    /// Closes stdin, waits, and returns (status, rest of stdout, stderr).
    pub fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        drop(self.stdin.take());
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stdout, &mut out);
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        let status = self.child.wait().expect("wait");
        (status, out, err)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Reap: PID 1 on this host does not, so an unwaited child would stay
        // a zombie in the cgroup and keep rmdir busy.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())).trim().to_owned()
}

/// Waits until `cond` holds; panics after a generous deadline. The deadline
/// only bounds a hang, it is not a timing assertion.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn resources(json: &str) -> oci_spec::runtime::LinuxResources {
    serde_json::from_str(json).expect("valid linux.resources JSON")
}

/// The spec's rules plus the default allow list, as the runtime does.
pub fn with_default_devices(mut r: oci_spec::runtime::LinuxResources) -> oci_spec::runtime::LinuxResources {
    let mut d = r.devices().clone().unwrap_or_default();
    d.extend(berth_cgroups::default_allowed_devices());
    r.set_devices(Some(d));
    r
}

/// Makes this test process the reaper of orphans from our scripts: PID 1 on
/// this host does not reap, so a grandchild that outlives its shell would
/// stay a zombie forever.
pub fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let me = rustix::process::getpid();
        rustix::process::set_child_subreaper(Some(me)).expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// Reaps exactly `pids` (never `waitpid(-1)`, which could steal another
/// test's child); pids that are not our children are ignored.
pub fn reap(pids: &[i32]) {
    for &pid in pids {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
        }
    }
}

// ---- a v1-only consumer next to berth -------------------------------------------------

/// Serialises the tests of one binary that use hugetlb: the v1-consumer tests bind it to a
/// v1 hierarchy for a moment, and while they do cgroup2 does not offer it.
pub fn hugetlb_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A limit no machine can reach counts as no limit. A new hugetlb cgroup's `hugetlb.*.max`
/// reads 9223372036854771712, not `max` (the kernel's maximum rounded down to whole huge
/// pages), and so does `i64::MAX` bytes, what some engines write for "unlimited".
pub const UNREACHABLE: u64 = 1 << 62;

/// The limit files of `controller` in cgroup2 directory `dir` that hold something other than
/// `max`, with their contents, and whether that value limits anything (see [`UNREACHABLE`]).
pub fn limit_files(dir: &Path, controller: &str) -> Vec<(PathBuf, String, bool)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_limit = match controller {
            "hugetlb" => name.starts_with("hugetlb.") && name.ends_with(".max"),
            _ => name == format!("{controller}.max"),
        };
        if !is_limit {
            continue;
        }
        let v = std::fs::read_to_string(e.path()).unwrap_or_default();
        let values: Vec<&str> = v.lines().filter_map(|l| l.split_whitespace().last()).collect();
        if values.iter().all(|x| *x == "max") {
            continue;
        }
        let limits = values.iter().any(|x| x.parse::<u64>().is_ok_and(|n| n < UNREACHABLE));
        out.push((e.path(), v.trim().to_owned(), limits));
    }
    out
}

/// The limits of `controller` that limit something in `dir`, as "file = value".
pub fn limits_set(dir: &Path, controller: &str) -> Vec<String> {
    limit_files(dir, controller)
        .into_iter()
        .filter(|(_, _, limits)| *limits)
        .map(|(f, v, _)| format!("{} = {v}", f.display()))
        .collect()
}

/// Every directory of the cgroup2 tree at `mount`, parents before children.
pub fn cgroup2_dirs(mount: &Path) -> Vec<PathBuf> {
    let mut out = vec![mount.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let mut kids: Vec<PathBuf> = std::fs::read_dir(&out[i])
            .map(|rd| rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect())
            .unwrap_or_default();
        kids.sort();
        out.extend(kids);
        i += 1;
    }
    out
}

/// Whether `dir`'s `cgroup.subtree_control` enables `controller` for its children.
pub fn enables(dir: &Path, controller: &str) -> bool {
    std::fs::read_to_string(dir.join("cgroup.subtree_control"))
        .is_ok_and(|s| s.split_whitespace().any(|c| c == controller))
}

/// What keeps `controller` in use on the cgroup2 tree at `mount`, leaving out the root's own
/// enable and anything below `ours` (a path below the mount): directories that enable it for
/// their children, and directories with its limits set.
pub fn other_users_on_cgroup2(mount: &Path, controller: &str, ours: &str) -> Vec<String> {
    let ours = mount.join(ours.trim_start_matches('/'));
    let mut out = Vec::new();
    for d in cgroup2_dirs(mount) {
        if d.starts_with(&ours) {
            continue;
        }
        if d != mount && enables(&d, controller) {
            out.push(format!("{} enables {controller}", d.display()));
        }
        out.extend(limits_set(&d, controller));
    }
    out
}

/// Takes `controller` out of every `cgroup.subtree_control` of the cgroup2 tree, so that a
/// v1 consumer could bind it, and puts it back on drop (once the controller is back on
/// cgroup2). Refuses, leaving everything as it was, when that would lift a limit in force;
/// so the files the controller gets back hold its defaults, as they did.
pub struct FreedOnCgroup2 {
    pub controller: String,
    pub mount: PathBuf,
    /// Directories it was enabled in, parents first.
    disabled: Vec<PathBuf>,
}

impl FreedOnCgroup2 {
    pub fn new(controller: &str) -> Result<FreedOnCgroup2, String> {
        let mount = match place_of(controller) {
            Place::V2(m) => m,
            Place::V1(m) => {
                return Err(format!(
                    "{controller} is a v1 hierarchy mounted at {}: berth uses it there and cannot bind it to cgroup2",
                    m.display()
                ))
            }
            Place::Nowhere(why) => return Err(why),
        };
        let enabled: Vec<PathBuf> = cgroup2_dirs(&mount).into_iter().filter(|d| enables(d, controller)).collect();
        for d in &enabled {
            for kid in cgroup2_dirs(d).into_iter().skip(1).filter(|k| k.parent() == Some(d.as_path())) {
                let set = limits_set(&kid, controller);
                if !set.is_empty() {
                    return Err(format!(
                        "{controller} is in use on cgroup2 ({}); freeing it would lift those limits",
                        set.join(", ")
                    ));
                }
            }
        }
        let mut freed = FreedOnCgroup2 { controller: controller.to_owned(), mount, disabled: Vec::new() };
        // Children first: the kernel refuses to disable a controller a child still enables.
        for d in enabled.iter().rev() {
            if let Err(e) = std::fs::write(d.join("cgroup.subtree_control"), format!("-{controller}")) {
                return Err(format!("cannot free {controller} in {}: {e}", d.display()));
            }
            freed.disabled.insert(0, d.clone());
        }
        Ok(freed)
    }
}

impl Drop for FreedOnCgroup2 {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while place_of(&self.controller) != Place::V2(self.mount.clone()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for d in &self.disabled {
            if d.is_dir() {
                if let Err(e) = std::fs::write(d.join("cgroup.subtree_control"), format!("+{}", self.controller)) {
                    let _ = writeln!(
                        std::io::stderr(),
                        "restoring +{} in {}: {e} (the host was left with it disabled there)",
                        self.controller,
                        d.display()
                    );
                }
            }
        }
    }
}

/// Mounts `controller` as a v1 hierarchy, as a v1-only runtime does (crun needs
/// `mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb` on a hybrid host), in a private
/// mount namespace so nothing shows outside, and unmounts it again. `Ok(hierarchy id)` as
/// `/proc/cgroups` showed it while mounted; `Err(mount's message)` if the kernel refused.
pub fn mount_as_v1(controller: &str) -> Result<u32, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(
            "mount -t cgroup -o \"$1\" cgroup \"$2\" || exit 1
             awk -v c=\"$1\" '$1 == c { print $2 }' /proc/cgroups
             umount \"$2\"",
        )
        .args(["sh", controller])
        .arg(dir.path())
        .output()
        .expect("run unshare");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        return Err(format!("{}{}", String::from_utf8_lossy(&out.stderr).trim(), text));
    }
    text.parse().map_err(|_| format!("no hierarchy id for {controller} while mounted: {text:?}"))
}

/// [`mount_as_v1`] until it works or a deadline passes: the kernel releases the cgroup2
/// state of a controller just disabled (or of a cgroup just removed) asynchronously.
pub fn mount_as_v1_eventually(controller: &str) -> Result<u32, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match mount_as_v1(controller) {
            Ok(id) => return Ok(id),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Waits for `controller` to be back on cgroup2 after a v1 hierarchy of it was unmounted
/// (the kernel destroys the hierarchy asynchronously).
pub fn wait_back_on_cgroup2(controller: &str, mount: &Path) {
    wait_until(&format!("{controller} back on cgroup2"), || place_of(controller) == Place::V2(mount.to_path_buf()));
}

/// Removes, on drop, the parent directory of each of a cgroup's directories (a shared
/// parent like `/berth`, made by `create` for a nested path), once the test's cgroup is gone.
/// Declare it before the [`TestCgroup`], so that it drops after it.
pub struct RmParents(Vec<PathBuf>);

impl RmParents {
    pub fn of(cg: &Cgroup) -> RmParents {
        RmParents(cg.dirs().filter_map(|d| d.parent().map(Path::to_path_buf)).collect())
    }
}

impl Drop for RmParents {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}
