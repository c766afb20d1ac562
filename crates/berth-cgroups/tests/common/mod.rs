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
