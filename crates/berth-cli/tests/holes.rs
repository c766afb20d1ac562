//! Holes the public OCI conformance suites (runtime-tools validation, runc's integration tests,
//! crun's tests, youki's contest) found in berth, which runc and crun do not have. Each test
//! fails on a berth with the hole (see docs/security.md, "Found by the conformance suites").
//!
//! Run as root against the real kernel: `cargo test -p berth-cli --test holes`.

mod common;

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustix::event::{PollFd, PollFlags};
use serde_json::{json, Value};

// =============================================================================================
// Namespace paths must be of the declared type

/// What one sandboxed berth run did: its exit code and output, and the mount table of the
/// mount namespace it was started from, before and after.
struct Sandboxed {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    before: String,
    after: String,
}

/// Runs `berth --root ROOT ARGS` from a private, throw-away mount namespace (`unshare -m
/// --propagation private`). A berth that let a container's setup happen in its caller's mount
/// namespace (a `mount` entry whose path is another kind of namespace) would mount over, and
/// pivot_root, that namespace: here that harms only the sandbox, and the sandbox's mount table
/// before and after the run shows it. The shell opens the result files before berth runs, so
/// they stay writable even if its root was changed under it.
fn sandboxed(env: &Env, dir: &Path, args: &[&str]) -> Sandboxed {
    let files = ["before", "after", "out", "err", "rc"].map(|n| dir.join(format!("sandbox.{n}")));
    let script = r#"exec 3>"$1" 4>"$2" 5>"$3" 6>"$4" 7>"$5"; shift 5
cat /proc/self/mountinfo >&3
"$@" >&5 2>&6 </dev/null
echo $? >&7
cat /proc/self/mountinfo >&4 || echo "the sandbox lost its mount table: $?" >&4
exit 0"#;
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .args(&files)
        .arg(BERTH)
        .arg("--root")
        .arg(env.root())
        .args(args)
        .stdin(Stdio::null())
        .status()
        .expect("unshare (util-linux)");
    assert!(status.success(), "the sandbox shell failed: {status:?}");
    let read = |i: usize| fs::read_to_string(&files[i]).unwrap_or_default();
    Sandboxed { code: read(4).trim().parse().ok(), stdout: read(2), stderr: read(3), before: read(0), after: read(1) }
}

/// The mount points and filesystem types of a mountinfo text, in order (ids differ between
/// namespaces and runs; what is mounted where must not).
fn mount_table(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            Some(format!("{} {}", pre.split(' ').nth(4)?, post.split(' ').next()?))
        })
        .collect()
}

/// The spec's namespace list with `typ` replaced by `{type, path}` at the end; returns the
/// index of that entry.
fn with_namespace_path(b: &mut Bundle, typ: &str, path: &str) -> usize {
    let mut list: Vec<Value> =
        b.config["linux"]["namespaces"].as_array().unwrap().iter().filter(|n| n["type"] != typ).cloned().collect();
    list.push(json!({"type": typ, "path": path}));
    let i = list.len() - 1;
    b.set("/linux/namespaces", Value::Array(list));
    i
}

#[test]
fn a_namespace_path_of_another_type_is_refused_before_anything_exists() {
    let env = Env::new();
    let host_before = mount_table(&fs::read_to_string("/proc/self/mountinfo").unwrap());
    // (declared type, /proc/self/ns entry of another type, what that entry is)
    let mut cases: Vec<(&str, &str, &str)> = vec![
        ("mount", "net", "network"),
        ("network", "mnt", "mount"),
        ("pid", "net", "network"),
        ("ipc", "uts", "uts"),
        ("uts", "ipc", "ipc"),
        ("user", "net", "network"),
        ("cgroup", "mnt", "mount"),
        ("time", "net", "network"),
    ];
    // The dangerous one in every variant: a mount namespace that is not one.
    for (entry, kind) in
        [("pid", "pid"), ("ipc", "ipc"), ("uts", "uts"), ("user", "user"), ("cgroup", "cgroup"), ("time", "time")]
    {
        cases.push(("mount", entry, kind));
    }
    for (declared, entry, kind) in cases {
        let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
        let path = format!("/proc/self/ns/{entry}");
        let i = with_namespace_path(&mut b, declared, &path);
        let needle = format!("linux.namespaces[{i}].path: {path} is a {kind} namespace, not {declared}");
        for cmd in ["create", "run"] {
            let id = env.id(&format!("ns-{declared}-{entry}"));
            let probe = LeakProbe::with_bundle(&id, env.root(), &b);
            let s = sandboxed(&env, b.path(), &[cmd, "--bundle", b.dir(), &id]);
            let what = format!("{cmd} with {declared} = {path}: exit {:?}\n{}\n{}", s.code, s.stdout, s.stderr);
            assert!(!s.stdout.contains("STARTED"), "the container ran: {what}");
            assert_eq!(mount_table(&s.before), mount_table(&s.after), "the caller's mount table changed: {what}");
            assert_eq!(s.code, Some(1), "{what}");
            assert!(s.stderr.contains(&needle), "stderr lacks {needle:?}: {what}");
            // A create that was accepted leaves an init behind in the sandbox: delete it.
            let _ = env.berth(&["delete", "--force", &id]);
            probe.assert_clean();
        }
    }
    // A path that is not a namespace at all, and one that does not exist.
    for (path, needle) in
        [("/etc/hostname", "is not a namespace file"), ("/proc/self/ns/nosuch", "cannot open /proc/self/ns/nosuch")]
    {
        let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
        let i = with_namespace_path(&mut b, "network", path);
        let id = env.id("ns-notns");
        let probe = LeakProbe::with_bundle(&id, env.root(), &b);
        let s = sandboxed(&env, b.path(), &["run", "--bundle", b.dir(), &id]);
        let what = format!("{path}: exit {:?}\n{}\n{}", s.code, s.stdout, s.stderr);
        assert_eq!(s.code, Some(1), "{what}");
        assert!(s.stderr.contains(&format!("linux.namespaces[{i}].path: ")) && s.stderr.contains(needle), "{what}");
        assert!(!s.stdout.contains("STARTED"), "{what}");
        probe.assert_clean();
    }
    // The host's mount table: nothing new that is the containers' (other test binaries, a
    // containerd end-to-end test say, may mount their own things meanwhile).
    let rootfs = shared_rootfs().to_string_lossy().into_owned();
    let new: Vec<String> = mount_table(&fs::read_to_string("/proc/self/mountinfo").unwrap())
        .into_iter()
        .filter(|m| !host_before.contains(m) && (m.contains(&rootfs) || m.contains("berth-bundle")))
        .collect();
    assert!(new.is_empty(), "the host gained the containers' mounts: {new:?}");
    env.finish();
}

#[test]
fn namespace_paths_of_the_right_type_are_joined() {
    // The control for the refusals above: the same mechanism with matching types works, and
    // the container really is in the namespaces it named (here: a sleeping container's).
    let env = Env::new();
    let host = env.bundle(&["sleep", "1000"]);
    let hid = env.id("ns-host");
    let hpid = env.run_detached(&host, &hid);
    let mut b = env.bundle(&["sh", "-c", "for n in net ipc uts; do readlink /proc/self/ns/$n; done"]);
    for t in ["network", "ipc", "uts"] {
        let entry = match t {
            "network" => "net",
            x => x,
        };
        with_namespace_path(&mut b, t, &format!("/proc/{hpid}/ns/{entry}"));
    }
    let id = env.id("ns-join");
    let out = env.berth(&["run", "--bundle", b.dir(), &id]);
    let want: Vec<String> = ["net", "ipc", "uts"]
        .iter()
        .map(|n| fs::read_link(format!("/proc/{hpid}/ns/{n}")).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(out.ok().lines().collect::<Vec<_>>(), want);
    env.berth(&["delete", "--force", &hid]).ok();
    env.reap(hpid);
    env.finish();
}

// =============================================================================================
// --no-pivot must not leave the host's procfs and sysfs in the container's mount namespace

/// A container process that tries to mount a fresh procfs (and sysfs) from a new user, mount,
/// pid (and network) namespace. The kernel allows that only if the mount namespace already
/// holds a fully visible instance of the filesystem (`mount_too_revealing`). A container's own
/// /proc has masked paths over it, so it does not count, but the host's /proc does: after a
/// chroot (`--no-pivot`) it is still in the namespace, just out of sight.
/// Mapping uid 0 in the new user namespace (`unshare -r`) needs CAP_SETFCAP (Linux 5.12), as
/// in runc's test of the same hole (tests/integration/no_pivot.bats).
const NESTED_MOUNTS: &str = "unshare -mrpf sh -c 'mount -t proc none /proc' 2>&1 && echo PROC-MOUNTED; \
                             unshare -mrnf sh -c 'mount -t sysfs none /sys' 2>&1 && echo SYSFS-MOUNTED; \
                             echo DONE";

#[test]
fn no_pivot_leaves_no_bare_procfs_or_sysfs_for_a_nested_mount() {
    let env = Env::new();
    let bundle = || {
        let mut b = env.bundle(&["sh", "-c", NESTED_MOUNTS]);
        for set in ["bounding", "permitted", "effective"] {
            b.push(&format!("/process/capabilities/{set}"), json!("CAP_SETFCAP"));
        }
        b
    };
    // runc's behaviour with pivot_root, and what --no-pivot must match.
    for no_pivot in [false, true] {
        let b = bundle();
        let id = env.id(if no_pivot { "nopivot" } else { "pivot" });
        let mut args = vec!["run", "--bundle", b.dir()];
        if no_pivot {
            args.push("--no-pivot");
        }
        args.push(&id);
        let out = env.berth(&args);
        let text = out.ok();
        assert!(text.contains("DONE"), "{text}");
        assert!(!text.contains("PROC-MOUNTED"), "no_pivot={no_pivot}: a nested procfs mount succeeded:\n{text}");
        assert!(!text.contains("SYSFS-MOUNTED"), "no_pivot={no_pivot}: a nested sysfs mount succeeded:\n{text}");
        assert!(text.contains("mount: permission denied"), "no_pivot={no_pivot}: not refused with EPERM:\n{text}");
    }
    // Negative control: with nothing masked, the container's own /proc and /sys are fully
    // visible, and the same nested mounts succeed. So the probe can see a bare procfs.
    let mut b = bundle();
    b.set("/linux/maskedPaths", json!([])).set("/linux/readonlyPaths", json!([]));
    let id = env.id("nopivot-control");
    let out = env.berth(&["run", "--no-pivot", "--bundle", b.dir(), &id]);
    let text = out.ok();
    assert!(text.contains("PROC-MOUNTED"), "the control could not mount procfs:\n{text}");
    env.finish();
}

// =============================================================================================
// seccomp notify on the runtime's own syscalls must not deadlock

const ARCHES: [&str; 3] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];

/// A seccomp agent for the duration of a test: it accepts every connection on its socket,
/// takes the listener fd each one carries, and answers every notification with
/// SECCOMP_USER_NOTIF_FLAG_CONTINUE (let the syscall run), counting them. A runtime that
/// traps on one of its own syscalls before the agent has the fd blocks forever.
struct ContinueAgent {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ContinueAgent {
    fn start(sock: &Path) -> ContinueAgent {
        let listener = UnixListener::bind(sock).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, a, c) = (stop.clone(), answered.clone(), connections.clone());
        let thread = std::thread::spawn(move || {
            let mut fds: Vec<OwnedFd> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                if let Ok((conn, _)) = listener.accept() {
                    conn.set_nonblocking(false).unwrap();
                    if let Some(fd) = recv_fd(&conn) {
                        c.fetch_add(1, Ordering::Relaxed);
                        fds.push(fd);
                    }
                }
                let mut polls: Vec<PollFd<'_>> = fds.iter().map(|f| PollFd::new(f, PollFlags::IN)).collect();
                let ts = rustix::event::Timespec { tv_sec: 0, tv_nsec: 2_000_000 };
                if polls.is_empty() {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                if rustix::event::poll(&mut polls, Some(&ts)).unwrap_or(0) == 0 {
                    continue;
                }
                let ready: Vec<bool> = polls.iter().map(|p| p.revents().contains(PollFlags::IN)).collect();
                let hup: Vec<bool> =
                    polls.iter().map(|p| p.revents().intersects(PollFlags::HUP | PollFlags::ERR)).collect();
                drop(polls);
                for (i, fd) in fds.iter().enumerate() {
                    if !ready[i] {
                        continue;
                    }
                    if let Ok(n) = berth_sys::seccomp::notif_recv(fd.as_fd()) {
                        let resp = libc::seccomp_notif_resp {
                            id: n.id,
                            val: 0,
                            error: 0,
                            flags: berth_sys::seccomp::USER_NOTIF_FLAG_CONTINUE,
                        };
                        let _ = berth_sys::seccomp::notif_send(fd.as_fd(), &resp);
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let mut i = 0;
                fds.retain(|_| {
                    i += 1;
                    !hup[i - 1] || ready[i - 1]
                });
            }
        });
        ContinueAgent { stop, answered, connections, thread: Some(thread) }
    }
}

impl Drop for ContinueAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs a berth command with a deadline: a hang (a deadlocked init) kills it and fails the
/// test instead of stalling the suite.
fn berth_with_deadline(env: &Env, args: &[&str], deadline: Duration) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    let mut child =
        env.command(args).stdout(fs::File::create(&o).unwrap()).stderr(fs::File::create(&e).unwrap()).spawn().unwrap();
    let start = std::time::Instant::now();
    let mut status = None;
    while start.elapsed() < deadline {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("berth {} hung for {deadline:?} (deadlocked on a seccomp notification?)", args.join(" "));
    };
    Out {
        cmd: format!("berth {}", args.join(" ")),
        code: status.code(),
        stdout: fs::read_to_string(&o).unwrap_or_default(),
        stderr: fs::read_to_string(&e).unwrap_or_default(),
    }
}

/// runc's "important syscalls" (tests/integration/seccomp-notify.bats), then every syscall
/// berth's own setup makes in the init and in exec (but `write`, which berth refuses to
/// notify, as runc does).
const RUNC_IMPORTANT: &[&str] = &["execve", "openat", "open", "read", "close"];
const BERTH_SETUP: &[&str] = &[
    "execve",
    "openat",
    "open",
    "openat2",
    "read",
    "close",
    "close_range",
    "sendmsg",
    "recvmsg",
    "getcwd",
    "fchdir",
    "chdir",
    "capset",
    "capget",
    "prctl",
    "setresuid",
    "setresgid",
    "setgroups",
    "fcntl",
    "newfstatat",
    "statx",
    "access",
    "faccessat",
    "faccessat2",
    "umask",
    "rt_sigaction",
    "rt_sigprocmask",
    "setrlimit",
    "prlimit64",
    "ioctl",
    "getpid",
    "exit_group",
];

#[test]
fn seccomp_notify_on_the_runtimes_own_syscalls_never_deadlocks() {
    let env = Env::new();
    let limit = Duration::from_secs(20);
    for (list_name, names) in [("runc", RUNC_IMPORTANT), ("berth", BERTH_SETUP)] {
        for nnp in [false, true] {
            let mut b = env.bundle(&["sleep", "1000"]);
            let sock = b.file("agent.sock");
            let agent = ContinueAgent::start(&sock);
            b.set("/process/noNewPrivileges", json!(nnp)).set(
                "/linux/seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES, "listenerPath": sock,
                       "syscalls": [{"names": names, "action": "SCMP_ACT_NOTIFY"}]}),
            );
            let what = format!("{list_name} list, noNewPrivileges={nnp}");
            // run (foreground): the init's own setup under the filter.
            let mut fg = b.config.clone();
            fg["process"]["args"] = json!(["/bin/true"]);
            let fg_bundle = env.bundle(&["/bin/true"]);
            fs::write(fg_bundle.file("config.json"), serde_json::to_vec(&fg).unwrap()).unwrap();
            let id = env.id("notify-run");
            let out = berth_with_deadline(&env, &["run", "--bundle", fg_bundle.dir(), &id], limit);
            assert_eq!(out.code, Some(0), "{what}: run failed: {}", out.stderr);
            // run -d, then exec: the exec process's setup under the filter too.
            let id = env.id("notify-exec");
            let out = berth_with_deadline(&env, &["run", "-d", "--bundle", b.dir(), &id], limit);
            assert_eq!(out.code, Some(0), "{what}: run -d failed: {}", out.stderr);
            let pid = env.pid_of(&id);
            let out = berth_with_deadline(&env, &["exec", &id, "/bin/true"], limit);
            assert_eq!(out.code, Some(0), "{what}: exec failed: {}", out.stderr);
            env.berth(&["delete", "--force", &id]).ok();
            env.reap(pid);
            assert!(agent.connections.load(Ordering::Relaxed) >= 3, "{what}: the agent did not get three listeners");
            assert!(agent.answered.load(Ordering::Relaxed) > 0, "{what}: no notification reached the agent");
        }
    }
    env.finish();
}

// =============================================================================================
// The caller's stdio is never chowned or chmodded when it is a host file

/// Owner, group and mode of a file.
fn owner_mode(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).unwrap();
    (m.uid(), m.gid(), m.mode())
}

#[test]
fn host_files_given_as_stdio_keep_their_owner_and_mode() {
    // runc hands the container's stdio to the process user (fixStdioPermissions) unless it is
    // /dev/null, so a regular file or a host terminal given as stdio ends up owned by the
    // container's uid. berth changes the owner only of pipes and sockets (which exist only
    // for this process tree), never of a file, a device or a terminal of the host.
    let env = Env::new();
    // A regression would hand the host's /dev/null to uid 1000: put it back whatever happens.
    struct RestoreDevNull((u32, u32, u32));
    impl Drop for RestoreDevNull {
        fn drop(&mut self) {
            let (uid, gid, mode) = self.0;
            let _ = std::os::unix::fs::chown("/dev/null", Some(uid), Some(gid));
            let _ = fs::set_permissions("/dev/null", std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777));
        }
    }
    let _restore = RestoreDevNull(owner_mode(Path::new("/dev/null")));
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("stdout");
    let err_file = dir.path().join("stderr");
    let pty = rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY).unwrap();
    rustix::pty::grantpt(&pty).unwrap();
    rustix::pty::unlockpt(&pty).unwrap();
    let slave_path = rustix::pty::ptsname(&pty, Vec::new()).unwrap().to_string_lossy().into_owned();
    let slave_path = Path::new(&slave_path);
    for (uid, gid) in [(1000, 1000), (0, 0)] {
        let mut b = env.bundle(&["sh", "-c", "echo out; echo err >&2; echo STARTED"]);
        b.set("/process/user", json!({"uid": uid, "gid": gid}));
        fs::write(&out_file, "").unwrap();
        fs::write(&err_file, "").unwrap();
        fs::set_permissions(&out_file, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
        for stdin in ["/dev/null", slave_path.to_str().unwrap()] {
            let watched = [Path::new("/dev/null"), slave_path, &out_file, &err_file];
            let before: Vec<_> = watched.iter().map(|p| owner_mode(p)).collect();
            let id = env.id("stdio-owner");
            let status = env
                .command(&["run", "--bundle", b.dir(), &id])
                .stdin(fs::File::open(stdin).unwrap())
                .stdout(fs::File::options().append(true).open(&out_file).unwrap())
                .stderr(fs::File::options().append(true).open(&err_file).unwrap())
                .status()
                .unwrap();
            let text = fs::read_to_string(&out_file).unwrap();
            assert!(status.success() && text.contains("STARTED"), "uid {uid}, stdin {stdin}: {status:?} {text}");
            let after: Vec<_> = watched.iter().map(|p| owner_mode(p)).collect();
            assert_eq!(before, after, "uid {uid}, stdin {stdin}: a host file changed owner or mode ({watched:?})");
            // exec with the same stdio.
            let id = env.id("stdio-owner-exec");
            let pid = env.run_detached(&env.bundle(&["sleep", "1000"]), &id);
            let status = env
                .command(&["exec", "--user", &format!("{uid}:{gid}"), &id, "sh", "-c", "echo exec-out; echo e >&2"])
                .stdin(fs::File::open(stdin).unwrap())
                .stdout(fs::File::options().append(true).open(&out_file).unwrap())
                .stderr(fs::File::options().append(true).open(&err_file).unwrap())
                .status()
                .unwrap();
            assert!(status.success(), "exec: {status:?}");
            assert!(fs::read_to_string(&out_file).unwrap().contains("exec-out"));
            let after: Vec<_> = watched.iter().map(|p| owner_mode(p)).collect();
            assert_eq!(before, after, "exec as {uid}, stdin {stdin}: a host file changed owner or mode");
            env.berth(&["delete", "--force", &id]).ok();
            env.reap(pid);
        }
    }
    env.finish();
}

#[test]
fn a_non_root_process_can_reopen_its_stdio_pipes() {
    // What runc's stdio chown is for: a process that is not root opens /dev/stdout (a
    // reopen of /proc/self/fd/1, checked against the pipe's owner, root's caller), as many
    // images' entrypoints do. Pipes (and sockets) exist only for this process tree, so
    // handing them to the process user exposes nothing of the host.
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", "echo via-reopen >/dev/stdout && stat -L -c %u /proc/self/fd/1"]);
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let id = env.id("stdio-pipe");
    let out = env.berth(&["run", "--bundle", b.dir(), &id]);
    assert_eq!(out.ok().lines().collect::<Vec<_>>(), ["via-reopen", "1000"], "{out:?}");
    let id = env.id("stdio-pipe-exec");
    let pid = env.run_detached(&env.bundle(&["sleep", "1000"]), &id);
    let out = env.berth(&[
        "exec",
        "--user",
        "1000:1000",
        &id,
        "sh",
        "-c",
        "echo via-reopen >/dev/stdout && stat -L -c %u /proc/self/fd/1",
    ]);
    assert_eq!(out.ok().lines().collect::<Vec<_>>(), ["via-reopen", "1000"], "{out:?}");
    env.berth(&["delete", "--force", &id]).ok();
    env.reap(pid);
    env.finish();
}
