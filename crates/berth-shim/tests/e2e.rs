//! End-to-end tests with real engines: a private containerd (Debian's package) running the
//! berth shim and containerd's runc shim with berth as its runtime binary, and podman with
//! berth as its OCI runtime.
//!
//! Each test builds a busybox OCI image from the host's static busybox (tests/busybox-oci.sh),
//! runs its engine entirely under a temporary directory (own config, root, state, sockets;
//! a containerd namespace of its own), and cleans up: tasks, containers, the daemon, and the
//! processes that were orphaned to this test process (shims, conmon), which this process
//! reaps as a child subreaper (this machine's PID 1 does not reap orphans). The tests run one
//! at a time (a process-wide lock): they share the subreaper role.
//!
//! Needs root and the Debian packages containerd, runc, podman, conmon, busybox-static; a
//! missing one fails the test with the package name.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static LOCK: Mutex<()> = Mutex::new(());

const IMAGE: &str = "docker.io/library/berth-busybox:latest";

fn lock() -> MutexGuard<'static, ()> {
    let g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    rustix::process::set_child_subreaper(Some(rustix::process::Pid::INIT)).expect("becoming a child subreaper");
    g
}

fn need(bin: &str, package: &str) {
    let ok =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file())).unwrap_or(false);
    assert!(ok, "{bin} not found: install the Debian package {package} (scripts/setup)");
}

fn shim_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-berth-v2"))
}

/// The berth CLI from the same target directory and profile, built if missing.
fn berth_bin() -> PathBuf {
    let dir = shim_bin().parent().expect("target dir").to_path_buf();
    let berth = dir.join("berth");
    if !berth.is_file() {
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "berth-cli", "--bin", "berth"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        let st = cmd.status().expect("running cargo build for the berth CLI");
        assert!(st.success(), "building the berth CLI failed");
    }
    assert!(berth.is_file(), "{} missing", berth.display());
    berth
}

/// Output of a finished command.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with a deadline (killed past it), stdout/stderr captured through files so a
/// chatty child never blocks on a full pipe.
fn run(mut cmd: Command, stdin: Option<&[u8]>, limit: Duration) -> Out {
    let dir = tempfile::tempdir().expect("tempdir");
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    cmd.stdout(fs::File::create(&o).expect("out file")).stderr(fs::File::create(&e).expect("err file"));
    match stdin {
        Some(data) => {
            let i = dir.path().join("in");
            fs::write(&i, data).expect("stdin file");
            cmd.stdin(fs::File::open(&i).expect("stdin"));
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    let desc = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|err| panic!("spawning {desc}: {err}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "timed out after {limit:?}: {desc}\nstdout: {}\nstderr: {}",
                fs::read_to_string(&o).unwrap_or_default(),
                fs::read_to_string(&e).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    Out {
        code: status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout: fs::read_to_string(&o).unwrap_or_default(),
        stderr: fs::read_to_string(&e).unwrap_or_default(),
    }
}

fn pids_of_children() -> Vec<(i32, String, char)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else { continue };
        let comm = stat.get(stat.find('(').map_or(0, |i| i + 1)..close).unwrap_or_default().to_string();
        let mut rest = stat.get(close + 2..).unwrap_or_default().split(' ');
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == me {
            out.push((pid, comm, state));
        }
    }
    out
}

/// Kills and reaps every process orphaned to this test process (it holds no other children
/// while the lock is held and no command runs). Gives them `grace` to exit on their own.
fn reap_orphans(grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        let kids = pids_of_children();
        let alive = kids.iter().filter(|(_, _, s)| *s != 'Z').count();
        for (pid, _, s) in &kids {
            if *s == 'Z' {
                if let Some(p) = rustix::process::Pid::from_raw(*pid) {
                    let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
                }
            }
        }
        if alive == 0 {
            return;
        }
        if Instant::now() > deadline {
            for (pid, comm, _) in kids {
                eprintln!("killing leftover process {pid} ({comm})");
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
                }
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unmounts whatever is still mounted under `dir` (deepest first).
fn unmount_under(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = rustix::mount::unmount(p.as_str(), rustix::mount::UnmountFlags::DETACH);
    }
}

fn image_tar(dir: &Path) -> PathBuf {
    need("busybox", "busybox-static");
    let tar = dir.join("busybox-oci.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/busybox-oci.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(&tar).arg(IMAGE);
    let o = run(cmd, None, Duration::from_secs(60));
    assert_eq!(o.code, 0, "building the image: {}", o.stderr);
    tar
}

// ---- containerd -------------------------------------------------------------------------

struct Containerd {
    dir: tempfile::TempDir,
    daemon: Option<Child>,
    sock: String,
    ns: String,
    events: Option<Child>,
}

impl Containerd {
    fn start() -> Containerd {
        need("containerd", "containerd");
        need("ctr", "containerd");
        need("runc", "runc");
        // Short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new().prefix("bshim").tempdir_in("/tmp").expect("tempdir");
        let d = dir.path();
        let sock = d.join("c.sock").to_string_lossy().into_owned();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[debug]\n  level = \"debug\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
        );
        fs::write(d.join("config.toml"), config).expect("config");
        let log = fs::File::create(d.join("containerd.log")).expect("log");
        let path = format!(
            "{}:{}",
            shim_bin().parent().expect("dir").display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .env("BERTH_SHIM_ROOT", d.join("berth"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        let ns = format!("berth-e2e-{}", std::process::id());
        let c = Containerd { dir, daemon: Some(daemon), sock, ns, events: None };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if Path::new(&c.sock).exists() && c.ctr(&["version"]).code == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "containerd did not come up:\n{}", c.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        let tar = image_tar(c.dir.path());
        let o = c.ctr(&["images", "import", &tar.to_string_lossy()]);
        assert_eq!(o.code, 0, "import: {}{}", o.stdout, o.stderr);
        c
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.args(["-a", &self.sock, "-n", &self.ns]);
        cmd
    }

    fn ctr(&self, args: &[&str]) -> Out {
        let mut cmd = self.cmd();
        cmd.args(args);
        run(cmd, None, Duration::from_secs(60))
    }

    fn ctr_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut cmd = self.cmd();
        cmd.args(args);
        run(cmd, Some(stdin), Duration::from_secs(60))
    }

    /// `ctr ...` inside a pseudo-terminal (`script`), for `-t`.
    fn ctr_tty(&self, args: &str) -> Out {
        need("script", "bsdutils");
        let line = format!("ctr -a {} -n {} {args}", self.sock, self.ns);
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        run(cmd, None, Duration::from_secs(60))
    }

    fn start_events(&mut self) {
        let f = fs::File::create(self.dir.path().join("events.txt")).expect("events file");
        let child = self.cmd().arg("events").stdout(f).stderr(Stdio::null()).spawn().expect("ctr events");
        self.events = Some(child);
        // `ctr events` subscribes asynchronously; give it a moment before the first event.
        std::thread::sleep(Duration::from_millis(300));
    }

    /// `/tasks/*` topics seen for container `id`, in order, with their exec id (if any).
    fn task_events(&mut self, id: &str) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        if let Some(mut e) = self.events.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
        let text = fs::read_to_string(self.dir.path().join("events.txt")).unwrap_or_default();
        let needle = format!("\"container_id\":\"{id}\"");
        text.lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| {
                let topic = l.split_whitespace().find(|w| w.starts_with("/tasks/"))?.to_string();
                let exec = l.split("\"exec_id\":\"").nth(1).and_then(|r| r.split('"').next());
                let exit_of = l.split("\"id\":\"").nth(1).and_then(|r| r.split('"').next());
                Some(match (topic.as_str(), exec, exit_of) {
                    (_, Some(e), _) => format!("{topic} {e}"),
                    ("/tasks/exit", None, Some(x)) if x != id => format!("{topic} {x}"),
                    _ => topic,
                })
            })
            .collect()
    }

    fn task_status(&self, id: &str) -> String {
        let o = self.ctr(&["task", "ls"]);
        o.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut e) = self.events.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
        let tasks = self.ctr(&["task", "ls", "-q"]).stdout;
        for t in tasks.lines().filter(|l| !l.is_empty()) {
            self.ctr(&["task", "kill", "-s", "KILL", t]);
        }
        for t in tasks.lines().filter(|l| !l.is_empty()) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.ctr(&["task", "rm", "-f", t]).code != 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for c in self.ctr(&["containers", "ls", "-q"]).stdout.lines().filter(|l| !l.is_empty()) {
            self.ctr(&["containers", "rm", c]);
        }
        if let Some(mut d) = self.daemon.take() {
            if let Some(p) = rustix::process::Pid::from_raw(d.id() as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while d.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        // Shims exit once their tasks are gone (the berth shim after its last container).
        reap_orphans(Duration::from_secs(15));
        unmount_under(self.dir.path());
        let _ = fs::remove_dir_all(format!("/run/containerd/runc/{}", self.ns));
    }
}

fn assert_out(o: &Out, code: i32, stdout_has: &str, what: &str) {
    assert!(
        o.code == code && o.stdout.contains(stdout_has),
        "{what}: expected exit {code} and {stdout_has:?} on stdout, got exit {}\nstdout: {}\nstderr: {}",
        o.code,
        o.stdout,
        o.stderr
    );
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The scenario both containerd tests run, with `runtime` flags for `ctr run`.
fn containerd_scenario(c: &mut Containerd, runtime: &[&str], tag: &str) {
    let run = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["run".into()];
        v.extend(runtime.iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };

    // Output and exit code of a foreground run.
    let id1 = format!("{tag}-fg");
    let v = run(&["--rm", IMAGE, &id1, "sh", "-c", "echo hello from berth; echo to-stderr >&2; exit 3"]);
    let o = c.ctr(&args(&v));
    assert_out(&o, 3, "hello from berth", "ctr run");
    assert!(o.stderr.contains("to-stderr"), "stderr: {}", o.stderr);

    // stdin reaches the process. (ctr 1.6's `run` never closes a task's stdin, whatever the
    // shim, so the process reads a fixed amount rather than up to EOF.)
    let id_in = format!("{tag}-stdin");
    let v = run(&["--rm", IMAGE, &id_in, "sh", "-c", "read a; read b; echo got:$a+$b"]);
    let o = c.ctr_in(&args(&v), b"one\ntwo\n");
    assert_out(&o, 0, "got:one+two", "ctr run with stdin");

    // A detached container: exec, pause/resume, metrics, ps, kill.
    c.start_events();
    let id = format!("{tag}-d");
    let v = run(&["-d", IMAGE, &id, "sleep", "1000"]);
    let o = c.ctr(&args(&v));
    assert_eq!(o.code, 0, "ctr run -d: {}{}", o.stdout, o.stderr);
    assert_eq!(c.task_status(&id), "RUNNING");

    let o = c.ctr(&["task", "exec", "--exec-id", "e1", &id, "sh", "-c", "echo exec-out; exit 5"]);
    assert_out(&o, 5, "exec-out", "ctr task exec");
    let o = c.ctr_in(&["task", "exec", "--exec-id", "e2", &id, "head", "-n", "1"], b"through exec stdin\n");
    assert_out(&o, 0, "through exec stdin", "ctr task exec with stdin");

    let o = c.ctr(&["task", "pause", &id]);
    assert_eq!(o.code, 0, "pause: {}", o.stderr);
    assert_eq!(c.task_status(&id), "PAUSED");
    let o = c.ctr(&["task", "resume", &id]);
    assert_eq!(o.code, 0, "resume: {}", o.stderr);
    assert_eq!(c.task_status(&id), "RUNNING");

    let o = c.ctr(&["task", "metrics", &id]);
    assert_eq!(o.code, 0, "metrics: {}", o.stderr);
    for key in ["memory.usage_in_bytes", "cpuacct.usage", "pids.current"] {
        assert!(o.stdout.contains(key), "metrics lack {key}: {}", o.stdout);
    }
    let pids_line = o.stdout.lines().find(|l| l.starts_with("pids.current")).unwrap_or_default().to_string();
    assert!(pids_line.ends_with(" 1") || pids_line.contains(" 1 "), "one process expected: {pids_line}");

    let o = c.ctr(&["task", "ps", &id]);
    assert_eq!(o.code, 0, "ps: {}", o.stderr);
    assert_eq!(o.stdout.lines().skip(1).filter(|l| !l.trim().is_empty()).count(), 1, "ps: {}", o.stdout);

    let o = c.ctr(&["task", "kill", "-s", "KILL", &id]);
    assert_eq!(o.code, 0, "kill: {}", o.stderr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.task_status(&id) != "STOPPED" {
        assert!(Instant::now() < deadline, "task did not stop after SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = c.ctr(&["task", "delete", &id]);
    assert_eq!(o.code, 0, "task delete: {}", o.stderr);
    assert_eq!(c.ctr(&["containers", "rm", &id]).code, 0);

    let got = c.task_events(&id);
    let want = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added e1",
        "/tasks/exec-started e1",
        "/tasks/exit e1",
        "/tasks/exec-added e2",
        "/tasks/exec-started e2",
        "/tasks/exit e2",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ];
    assert_eq!(got, want, "task events of {id}");

    // A terminal.
    let id_t = format!("{tag}-tty");
    let line = format!("{} --rm -t {IMAGE} {id_t} sh -c 'tty; echo tty-ok; exit 7'", args(&run(&[])).join(" "));
    let o = c.ctr_tty(&line);
    assert!(o.code == 7 && o.stdout.contains("/dev/pts/0") && o.stdout.contains("tty-ok"), "ctr run -t: {o:?}");
}

#[test]
fn berth_shim_under_containerd() {
    let _g = lock();
    let mut c = Containerd::start();
    containerd_scenario(&mut c, &["--runtime", "io.containerd.berth.v2"], "bs");

    // The whole namespace shares one shim process: two containers, one shim.
    for id in ["g1", "g2"] {
        let o = c.ctr(&["run", "-d", "--runtime", "io.containerd.berth.v2", IMAGE, id, "sleep", "1000"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
    let shims: Vec<_> = pids_of_children()
        .into_iter()
        .filter(|(_, comm, s)| comm.starts_with("containerd-shim") && *s != 'Z')
        .collect();
    assert_eq!(shims.len(), 1, "one grouped shim expected: {shims:?}");
    let connect = |id: &str| c.ctr(&["task", "ls"]).stdout.contains(id);
    assert!(connect("g1") && connect("g2"));

    // OOM: the event is published before the exit.
    c.start_events();
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.berth.v2",
        "--memory-limit",
        "8388608",
        IMAGE,
        "oom",
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(o.code, 137, "OOM-killed container: {o:?}");
    let ev = c.task_events("oom");
    assert_eq!(ev, ["/tasks/create", "/tasks/start", "/tasks/oom", "/tasks/exit", "/tasks/delete"], "OOM events");

    // Checkpoint is refused clearly.
    let o = c.ctr(&["task", "checkpoint", "g1"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("not implemented") || o.stderr.contains("CRIU"), "checkpoint: {}", o.stderr);
}

#[test]
fn runc_shim_with_berth_binary() {
    let _g = lock();
    let berth = berth_bin();
    let mut c = Containerd::start();
    let b = berth.to_string_lossy().into_owned();
    containerd_scenario(&mut c, &["--runtime", "io.containerd.runc.v2", "--runc-binary", &b], "rs");
}

// ---- podman -----------------------------------------------------------------------------

struct Podman {
    dir: tempfile::TempDir,
    berth: PathBuf,
}

impl Podman {
    fn new() -> Podman {
        need("podman", "podman");
        need("conmon", "conmon");
        let dir = tempfile::Builder::new().prefix("bpod").tempdir_in("/tmp").expect("tempdir");
        let p = Podman { dir, berth: berth_bin() };
        let tar = image_tar(p.dir.path());
        let o = p.podman(&["load", "-i", &tar.to_string_lossy()]);
        assert_eq!(o.code, 0, "podman load: {o:?}");
        p
    }

    fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--runtime")
            .arg(&self.berth)
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"]);
        cmd
    }

    fn podman(&self, args: &[&str]) -> Out {
        let mut cmd = self.cmd();
        cmd.args(args);
        run(cmd, None, Duration::from_secs(120))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.podman(&["rm", "-a", "-f", "-t", "0"]);
        reap_orphans(Duration::from_secs(15));
        unmount_under(self.dir.path());
    }
}

#[test]
fn podman_with_berth_runtime() {
    let _g = lock();
    let p = Podman::new();
    let common = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
    let mut a: Vec<&str> = vec!["run", "--rm"];
    a.extend(common);
    a.extend([IMAGE, "sh", "-c", "echo hello-podman; exit 3"]);
    let o = p.podman(&a);
    assert_out(&o, 3, "hello-podman", "podman run");

    let mut a: Vec<&str> = vec!["run", "-d", "--name", "p1"];
    a.extend(common);
    a.extend([IMAGE, "sleep", "1000"]);
    let o = p.podman(&a);
    assert_eq!(o.code, 0, "podman run -d: {o:?}");
    let o = p.podman(&["exec", "p1", "sh", "-c", "echo in-exec; exit 4"]);
    assert_out(&o, 4, "in-exec", "podman exec");
    let o = p.podman(&["inspect", "--format", "{{.State.Status}}", "p1"]);
    assert_out(&o, 0, "running", "podman inspect");
    let o = p.podman(&["stop", "-t", "1", "p1"]);
    assert_eq!(o.code, 0, "podman stop: {o:?}");
    let o = p.podman(&["inspect", "--format", "{{.State.Status}}", "p1"]);
    assert_out(&o, 0, "exited", "podman inspect after stop");
    let o = p.podman(&["rm", "p1"]);
    assert_eq!(o.code, 0, "podman rm: {o:?}");
    let o = p.podman(&["ps", "-a", "-q"]);
    assert_eq!(o.stdout.trim(), "", "no containers left");

    // A terminal (console socket).
    need("script", "bsdutils");
    let mut line = format!("{:?}", p.cmd());
    line = line.replace('"', "");
    let line = format!("{line} run --rm -t {} {IMAGE} sh -c 'tty; exit 6'", common.join(" "));
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    let o = run(cmd, None, Duration::from_secs(120));
    assert!(o.code == 6 && o.stdout.contains("/dev/pts/0"), "podman run -t: {o:?}");
}
