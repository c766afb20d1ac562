//! The harness of the end-to-end tests: a private containerd (Debian's package) whose
//! config, root, state and socket live under a temporary directory, driven with `ctr`; the
//! processes it orphans (shims, containers) are reaped by the test process, a child
//! subreaper (this machine's PID 1 does not reap orphans). Tests take [`lock`] first: they
//! share the subreaper role.
//!
//! Needs root and the Debian packages containerd, runc, busybox-static; a missing one fails
//! the test with the package name.
#![allow(dead_code)]
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub static LOCK: Mutex<()> = Mutex::new(());

pub const IMAGE: &str = "docker.io/library/berth-busybox:latest";

pub fn lock() -> MutexGuard<'static, ()> {
    let g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    rustix::process::set_child_subreaper(Some(rustix::process::Pid::INIT)).expect("becoming a child subreaper");
    g
}

/// Fails the test naming the package when `bin` (a name on `PATH`, or an absolute path) is
/// missing.
pub fn need(bin: &str, package: &str) {
    let ok = if bin.starts_with('/') {
        Path::new(bin).is_file()
    } else {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
    };
    assert!(ok, "{bin} not found: install the Debian package {package} (scripts/test installs it)");
}

pub fn shim_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-berth-v2"))
}

/// The berth CLI from the same target directory and profile, built if missing.
pub fn berth_bin() -> PathBuf {
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
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with a deadline (killed past it), stdout/stderr captured through files so a
/// chatty child never blocks on a full pipe.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, limit: Duration) -> Out {
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

pub fn pids_of_children() -> Vec<(i32, String, char)> {
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
/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s.get(i + 2..i + 3)).map(|st| st != "Z" && st != "X"))
        .unwrap_or(false)
}

pub fn reap_orphans(grace: Duration) {
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
            // Killing a shim orphans its containers to this process: repeat until none is left.
            for (pid, comm, _) in kids {
                eprintln!("killing leftover process {pid} ({comm})");
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
                }
            }
            if Instant::now() > deadline + Duration::from_secs(10) {
                return;
            }
            continue;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unmounts whatever is still mounted under `dir` (deepest first).
pub fn unmount_under(dir: &Path) {
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

pub fn image_tar(dir: &Path) -> PathBuf {
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

pub struct Containerd {
    pub dir: tempfile::TempDir,
    daemon: Option<Child>,
    pub sock: String,
    pub ns: String,
    events: Option<Child>,
}

impl Containerd {
    pub fn start() -> Containerd {
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
        let ns = format!("berth-e2e-{}", std::process::id());
        let mut c = Containerd { dir, daemon: None, sock, ns, events: None };
        c.start_daemon();
        let tar = image_tar(c.dir.path());
        let o = c.ctr(&["images", "import", &tar.to_string_lossy()]);
        assert_eq!(o.code, 0, "import: {}{}", o.stdout, o.stderr);
        c
    }

    /// Starts containerd (again) on the same configuration, and waits until it answers.
    pub fn start_daemon(&mut self) {
        if let Err(e) = self.try_start_daemon() {
            panic!("{e}");
        }
    }

    fn try_start_daemon(&mut self) -> Result<(), String> {
        if self.daemon.is_some() {
            return Err("containerd is running already".into());
        }
        let d = self.dir.path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("containerd.log"))
            .map_err(|e| format!("containerd.log: {e}"))?;
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
            .stdout(log.try_clone().map_err(|e| format!("containerd.log: {e}"))?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting containerd: {e}"))?;
        self.daemon = Some(daemon);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if Path::new(&self.sock).exists() && self.ctr(&["version"]).code == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("containerd did not come up:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` of containerd (its shims and their containers live on).
    pub fn kill_daemon(&mut self) {
        let mut d = self.daemon.take().expect("containerd is not running");
        d.kill().expect("kill -9 containerd");
        d.wait().expect("reaping containerd");
    }

    /// containerd's pid.
    pub fn daemon_pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(|d| d.id() as i32)
    }

    /// The task's bundle directory (containerd's, under its state directory).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.path().join("state/io.containerd.runtime.v2.task").join(&self.ns).join(id)
    }

    /// berth's state directory of a container (the shims run with `BERTH_SHIM_ROOT` here).
    pub fn berth_state(&self, id: &str) -> PathBuf {
        self.dir.path().join("berth").join(&self.ns).join(id)
    }

    /// The live shim server processes of this containerd (pid, listening socket path).
    pub fn shim_servers(&self) -> Vec<(i32, String)> {
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { continue };
            let argv: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_shim = argv.first().is_some_and(|a| a.ends_with("containerd-shim-berth-v2"));
            if !is_shim || argv.last().map(String::as_str) != Some("serve") || !alive(pid) {
                continue;
            }
            let flag = |f: &str| argv.iter().position(|a| a == f).and_then(|i| argv.get(i + 1)).cloned();
            if flag("-address").as_deref() != Some(self.sock.as_str()) {
                continue;
            }
            out.push((pid, flag("-socket").unwrap_or_default()));
        }
        out.sort();
        out
    }

    /// The pid of the shim server serving task `id` (from the address in its bundle).
    pub fn shim_of(&self, id: &str) -> Option<i32> {
        let address = fs::read_to_string(self.bundle(id).join("address")).ok()?;
        let socket = address.trim().trim_start_matches("unix://").to_string();
        self.shim_servers().into_iter().find(|(_, s)| *s == socket).map(|(p, _)| p)
    }

    /// The init pid `ctr task ls` shows for `id` (0 if none).
    pub fn task_pid(&self, id: &str) -> i32 {
        let o = self.ctr(&["task", "ls"]);
        o.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.args(["-a", &self.sock, "-n", &self.ns]);
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Out {
        let mut cmd = self.cmd();
        cmd.args(args);
        run(cmd, None, Duration::from_secs(60))
    }

    pub fn ctr_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut cmd = self.cmd();
        cmd.args(args);
        run(cmd, Some(stdin), Duration::from_secs(60))
    }

    /// `ctr ...` inside a pseudo-terminal (`script`), for `-t`.
    pub fn ctr_tty(&self, args: &str) -> Out {
        need("script", "bsdutils");
        let line = format!("ctr -a {} -n {} {args}", self.sock, self.ns);
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        run(cmd, None, Duration::from_secs(60))
    }

    pub fn start_events(&mut self) {
        let f = fs::File::create(self.dir.path().join("events.txt")).expect("events file");
        let child = self.cmd().arg("events").stdout(f).stderr(Stdio::null()).spawn().expect("ctr events");
        self.events = Some(child);
        // `ctr events` subscribes asynchronously: poke containerd (a namespace label update is
        // an event) until the subscription shows it, so no later event can be missed.
        let path = self.dir.path().join("events.txt");
        let deadline = Instant::now() + Duration::from_secs(20);
        for i in 0.. {
            let ns = self.ns.clone();
            self.ctr(&["namespaces", "label", &ns, &format!("berth-probe={i}")]);
            std::thread::sleep(Duration::from_millis(20));
            if fs::read_to_string(&path).unwrap_or_default().contains("/namespaces/update") {
                break;
            }
            assert!(Instant::now() < deadline, "ctr events never showed an event");
        }
    }

    /// `/tasks/*` topics seen for container `id`, in order, with their exec id (if any).
    pub fn task_events(&mut self, id: &str) -> Vec<String> {
        // Every scenario ends with the task's delete: wait for it to arrive.
        let path = self.dir.path().join("events.txt");
        let needle = format!("\"container_id\":\"{id}\"");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("/tasks/delete") && l.contains(&needle))
        {
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

    pub fn task_status(&self, id: &str) -> String {
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
        // A test that failed while containerd was down: bring it back to clean up its tasks.
        if self.daemon.is_none() {
            if let Err(e) = self.try_start_daemon() {
                eprintln!("{e}");
            }
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
        // ctr's default cgroups path is /<namespace>/<id>: the runtimes remove the
        // containers' directories, not the namespace's parent (as runc does). Ours to remove.
        let left = remove_cgroup_parent(&self.ns);
        if !left.is_empty() {
            eprintln!("cgroup directories left: {left:?}");
        }
    }
}

/// Removes `<hierarchy>/<name>` (and empty directories below it) in every mounted cgroup
/// hierarchy; returns those that could not be removed.
pub fn remove_cgroup_parent(name: &str) -> Vec<PathBuf> {
    fn rm(dir: &Path) -> bool {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => return true,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return true,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return false,
            }
        }
    }
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut left = Vec::new();
    for l in info.lines() {
        let Some((pre, post)) = l.split_once(" - ") else { continue };
        let fstype = post.split_whitespace().next().unwrap_or("");
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let Some(mp) = pre.split_whitespace().nth(4) else { continue };
        let d = Path::new(mp).join(name);
        if d.exists() && !rm(&d) {
            left.push(d);
        }
    }
    left
}

pub fn assert_out(o: &Out, code: i32, stdout_has: &str, what: &str) {
    assert!(
        o.code == code && o.stdout.contains(stdout_has),
        "{what}: expected exit {code} and {stdout_has:?} on stdout, got exit {}\nstdout: {}\nstderr: {}",
        o.code,
        o.stdout,
        o.stderr
    );
}

pub fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
