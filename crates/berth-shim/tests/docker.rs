//! End-to-end tests with Docker (Debian's docker.io, 20.10) running berth as a runtime
//! (`--add-runtime berth=<path>`, `docker run --runtime berth`): dockerd drives berth through
//! containerd and containerd's runc shim (`io.containerd.runc.v2` with berth as its binary),
//! exactly as it drives runc.
//!
//! Each test runs its own private daemons entirely under a temporary directory: a containerd
//! (own config, root, state, socket) and a dockerd using it (`--containerd`; own data root,
//! exec root, pid file, socket, daemon.json and key file, cgroup parent; no bridge, no
//! iptables, the cgroupfs driver, the vfs storage driver). The system's
//! /run/containerd/containerd.sock and /var/run/docker.sock are never used. The image is a
//! busybox rootfs the test builds (scripts/lib.sh) and `docker import`s; nothing is pulled.
//!
//! Each test ends with a leak check after both daemons have stopped: no container or berth
//! state left, no mount under the test's directory, no cgroup directory under the daemon's
//! cgroup parent or named after a container, no process of the private daemons (containerd,
//! dockerd, shims). The test process is a child subreaper (this machine's PID 1 does not reap
//! orphans) and reaps the shims; the tests run one at a time (a process-wide lock).
//!
//! Needs root and the Debian packages docker.io, containerd, runc (the reference the exit
//! codes are compared with), busybox-static and bsdutils (`script`, for a terminal); a missing
//! one fails the test with the package name (scripts/test installs them).

mod common;
#[path = "../../berth-cgroups/tests/common/place.rs"]
mod place;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{berth_bin, lock, need, pids_of_children, run, Out};
use place::{place_of, skip_part, Place};

/// Debian's docker.io CLI and daemon (a static newer CLI may be first on `PATH`; the test is
/// about the 20.10 pair).
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
const IMAGE: &str = "berth/busybox:docker";

/// Reaps the processes orphaned to this test process (the shims, once the daemons are gone)
/// as they exit, for at most `grace`; returns those still alive then. (No command runs while
/// this is called, and the lock is held, so every child of ours is such an orphan.)
fn reap_exited_orphans(grace: Duration) -> Vec<(i32, String)> {
    let deadline = Instant::now() + grace;
    loop {
        let kids = pids_of_children();
        for (pid, _, s) in &kids {
            if *s == 'Z' {
                if let Some(p) = rustix::process::Pid::from_raw(*pid) {
                    let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
                }
            }
        }
        let alive: Vec<(i32, String)> =
            kids.into_iter().filter(|(_, _, s)| *s != 'Z').map(|(pid, comm, _)| (pid, comm)).collect();
        if alive.is_empty() || Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_and_reap(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
    }
}

/// Mount points under `dir` (deepest first).
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points
}

/// The cgroup hierarchies mounted here (v1 controllers and cgroup2).
fn hierarchies() -> Vec<PathBuf> {
    place::cgroup_mounts().into_iter().filter(|(root, ..)| root == "/").map(|(_, point, ..)| point).collect()
}

/// Directories named after one of `ids`, anywhere in any cgroup hierarchy.
fn cgroup_dirs_named(ids: &[String]) -> Vec<String> {
    fn walk(dir: &Path, ids: &[String], depth: usize, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if ids.iter().any(|id| name.contains(id.as_str())) {
                out.push(e.path().display().to_string());
            }
            if depth < 8 {
                walk(&e.path(), ids, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    if ids.is_empty() {
        return out;
    }
    for h in hierarchies() {
        walk(&h, ids, 0, &mut out);
    }
    out
}

/// Processes whose command line mentions `needle`, or whose cgroup path does.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let cmdline =
            String::from_utf8_lossy(&fs::read(e.path().join("cmdline")).unwrap_or_default()).replace('\0', " ");
        let cgroup = fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        if cmdline.contains(needle) || cgroup.contains(needle) {
            out.push(format!("process {pid}: {}", cmdline.trim()));
        }
    }
    out
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

// ---- the private daemons ------------------------------------------------------------------

struct Docker {
    dir: tempfile::TempDir,
    containerd: Option<Child>,
    dockerd: Option<Child>,
    /// The daemon's `--cgroup-parent`: every container's cgroup is `<parent>/<id>`.
    cgroup_parent: String,
    /// Ids of the containers the test made and saw, for the leak check.
    ids: Vec<String>,
    /// Whether /run/docker existed before (dockerd 20.10 always creates /run/docker/plugins).
    run_docker_existed: bool,
    finished: bool,
}

impl Docker {
    fn start() -> Docker {
        need(DOCKERD, "docker.io");
        need(DOCKER, "docker.io");
        need("containerd", "containerd");
        need("containerd-shim-runc-v2", "containerd");
        need("runc", "runc");
        let berth = berth_bin();
        // Short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new().prefix("bdock").tempdir_in("/tmp").expect("tempdir");
        let d = dir.path().to_path_buf();
        let cgroup_parent = format!("/berth-docker-{}", d.file_name().expect("name").to_string_lossy());
        let run_docker_existed = Path::new("/run/docker").exists();
        let mut dk = Docker {
            dir,
            containerd: None,
            dockerd: None,
            cgroup_parent,
            ids: Vec::new(),
            run_docker_existed,
            finished: false,
        };

        // containerd, private: dockerd 20.10 would otherwise use the system's
        // /run/containerd/containerd.sock whenever it exists.
        let sock = d.join("c.sock");
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{}\"\n",
            d.join("ctd/root").display(),
            d.join("ctd/state").display(),
            sock.display()
        );
        fs::write(d.join("containerd.toml"), config).expect("containerd config");
        let log = fs::File::create(d.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("containerd.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        dk.containerd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            if let Some(st) = dk.containerd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("containerd exited ({st}):\n{}", dk.log("containerd.log"));
            }
            assert!(Instant::now() < deadline, "containerd did not come up:\n{}", dk.log("containerd.log"));
            std::thread::sleep(Duration::from_millis(20));
        }

        // dockerd. Its configuration file also keeps it off /etc/docker (the identity key).
        let daemon_json = serde_json::json!({
            "runtimes": {"berth": {"path": berth}},
            "deprecated-key-path": d.join("key.json"),
        });
        fs::write(d.join("daemon.json"), daemon_json.to_string()).expect("daemon.json");
        let log = fs::File::create(d.join("dockerd.log")).expect("log");
        let child = Command::new(DOCKERD)
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("d.sock").display()))
            .arg("--containerd")
            .arg(&sock)
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false", "--ip-forward=false"])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs", "--storage-driver", "vfs"])
            .arg("--cgroup-parent")
            .arg(&dk.cgroup_parent)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        dk.dockerd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = dk.dockerd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("dockerd exited ({st}):\n{}", dk.log("dockerd.log"));
            }
            if d.join("d.sock").exists() && dk.docker(&["version"]).code == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "dockerd did not come up:\n{}", dk.log("dockerd.log"));
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = dk.docker(&["info", "--format", "{{json .Runtimes}}"]);
        assert!(o.code == 0 && o.stdout.contains("\"berth\""), "berth is not a runtime of dockerd: {o:?}");

        // The image: a busybox rootfs, imported as the single layer.
        need("busybox", "busybox-static");
        let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lib.sh");
        let rootfs = d.join("rootfs");
        let mut cmd = Command::new("bash");
        cmd.args(["-c", ". \"$1\" && build_busybox_rootfs \"$2\" && tar -C \"$2\" -cf \"$3\" ."])
            .arg("bash")
            .arg(&lib)
            .arg(&rootfs)
            .arg(d.join("rootfs.tar"));
        let o = run(cmd, None, Duration::from_secs(60));
        assert_eq!(o.code, 0, "building the rootfs: {o:?}");
        let tar = d.join("rootfs.tar").to_string_lossy().into_owned();
        let o = dk.docker(&["import", "-c", "CMD [\"/bin/sh\"]", &tar, IMAGE]);
        assert_eq!(o.code, 0, "docker import: {o:?}");
        let _ = fs::remove_dir_all(&rootfs);
        let _ = fs::remove_file(&tar);
        dk
    }

    fn log(&self, name: &str) -> String {
        let text = fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("d.sock").display())
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(DOCKER);
        cmd.env("DOCKER_CONFIG", self.dir.path().join("cli")).arg("-H").arg(self.host());
        cmd
    }

    fn docker(&self, args: &[&str]) -> Out {
        let mut cmd = self.cmd();
        cmd.args(args);
        run(cmd, None, Duration::from_secs(60))
    }

    fn docker_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut cmd = self.cmd();
        cmd.args(args);
        run(cmd, Some(stdin), Duration::from_secs(60))
    }

    /// `docker run --runtime RUNTIME --network none ARGS` (the bridge is off, so there is no
    /// default network).
    fn run_with(&self, runtime: &str, args: &[&str]) -> Out {
        let mut v = vec!["run", "--runtime", runtime, "--network", "none"];
        v.extend(args);
        self.docker(&v)
    }

    /// `docker ...` inside a pseudo-terminal of `rows` x `cols` (`script`), for `-t`.
    fn docker_tty(&self, args: &str, rows: u16, cols: u16) -> Out {
        need("script", "bsdutils");
        let line = format!("stty rows {rows} cols {cols}; {DOCKER} -H {} {args}", self.host());
        let mut cmd = Command::new("script");
        cmd.env("DOCKER_CONFIG", self.dir.path().join("cli")).args(["-qec", &line, "/dev/null"]);
        run(cmd, None, Duration::from_secs(60))
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        let o = self.docker(&["inspect", "--format", format, name]);
        assert_eq!(o.code, 0, "docker inspect {name}: {o:?}");
        o.stdout.trim().to_string()
    }

    /// The id of container `name`, remembered for the leak check.
    fn id_of(&mut self, name: &str) -> String {
        let id = self.inspect(name, "{{.Id}}");
        assert_eq!(id.len(), 64, "container id of {name}: {id:?}");
        if !self.ids.contains(&id) {
            self.ids.push(id.clone());
        }
        id
    }

    /// berth's state root under dockerd: containerd's runc shim runs the runtime with
    /// `--root <exec-root>/runtime-runc/<namespace>` (runc's directory, whatever the runtime).
    fn state_root(&self) -> PathBuf {
        self.dir.path().join("exec/runtime-runc/moby")
    }

    /// The cgroup directory of container `id` in `hierarchy`.
    fn cgroup_dir(&self, hierarchy: &Path, id: &str) -> PathBuf {
        hierarchy.join(self.cgroup_parent.trim_start_matches('/')).join(id)
    }

    /// What container `id` left after its removal: berth state, cgroups, mounts, processes.
    fn leaks_of(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.state_root().join(id).exists() {
            out.push(format!("berth state {}", self.state_root().join(id).display()));
        }
        out.extend(cgroup_dirs_named(&[id.to_string()]).into_iter().map(|d| format!("cgroup directory {d}")));
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        out.extend(info.lines().filter(|l| l.contains(id)).map(|l| format!("mount {l}")));
        out.extend(processes_mentioning(id));
        out
    }

    /// No leak of container `id`, once its shim (which containerd tells to shut down after
    /// the delete, asynchronously) has exited and been reaped: waits for that, boundedly.
    #[track_caller]
    fn assert_gone(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut leaks = self.leaks_of(id);
        while !leaks.is_empty() && Instant::now() < deadline {
            reap_exited_orphans(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(20));
            leaks = self.leaks_of(id);
        }
        assert!(leaks.is_empty(), "container {id} left:\n{}", leaks.join("\n"));
    }

    /// Stops dockerd, then containerd (each SIGTERM, then SIGKILL after a while).
    fn stop_daemons(&mut self) {
        for child in [self.dockerd.take(), self.containerd.take()].into_iter().flatten() {
            let mut c = child;
            if let Some(p) = rustix::process::Pid::from_raw(c.id() as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every container and the image removed through Docker, the daemons stopped, and then
    /// nothing of it all may be left.
    fn finish(mut self) {
        let o = self.docker(&["ps", "-a", "-q"]);
        assert_eq!(o.stdout.trim(), "", "containers left: {o:?}");
        let o = self.docker(&["rmi", IMAGE]);
        assert_eq!(o.code, 0, "docker rmi: {o:?}");
        let o = self.docker(&["images", "-q"]);
        assert_eq!(o.stdout.trim(), "", "images left: {o:?}");
        self.stop_daemons();
        let stragglers = reap_exited_orphans(Duration::from_secs(15));

        let mut leaks: Vec<String> =
            stragglers.iter().map(|(pid, comm)| format!("process {pid} ({comm}) still running")).collect();
        let d = self.dir.path().to_string_lossy().into_owned();
        leaks.extend(processes_mentioning(&d));
        leaks.extend(processes_mentioning(&self.cgroup_parent));
        leaks.extend(mounts_under(self.dir.path()).into_iter().map(|m| format!("mount {m}")));
        // (berth's compiled-seccomp cache, `.cache`, is kept there by design, as crun does.)
        let state: Vec<String> = fs::read_dir(self.state_root())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name() != ".cache")
            .map(|e| format!("berth state {}", e.path().display()))
            .collect();
        leaks.extend(state);
        leaks.extend(cgroup_dirs_named(&self.ids).into_iter().map(|c| format!("cgroup directory {c}")));
        for h in hierarchies() {
            let parent = h.join(self.cgroup_parent.trim_start_matches('/'));
            for e in fs::read_dir(&parent).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    leaks.push(format!("cgroup directory {}", e.path().display()));
                }
            }
        }
        assert!(leaks.is_empty(), "left behind after the daemons stopped:\n{}", leaks.join("\n"));
        self.cleanup();
        self.finished = true;
    }

    /// Removes whatever is left (also after a failed test): containers, daemons, orphans,
    /// mounts, the cgroup parent (created by berth for the first container; nobody removes it).
    fn cleanup(&mut self) {
        if self.dockerd.is_some() {
            let ids = self.docker(&["ps", "-a", "-q"]).stdout;
            for id in ids.lines().filter(|l| !l.is_empty()) {
                self.docker(&["rm", "-f", id]);
            }
        }
        self.stop_daemons();
        for (pid, comm) in reap_exited_orphans(Duration::from_secs(15)) {
            eprintln!("killing leftover process {pid} ({comm})");
            kill_and_reap(pid);
        }
        for m in mounts_under(self.dir.path()) {
            let _ = rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
        for h in hierarchies() {
            let parent = h.join(self.cgroup_parent.trim_start_matches('/'));
            if let Ok(rd) = fs::read_dir(&parent) {
                for e in rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
                    let _ = fs::remove_dir(e.path());
                }
                if let Err(e) = fs::remove_dir(&parent) {
                    eprintln!("removing {}: {e}", parent.display());
                }
            }
        }
        if !self.run_docker_existed {
            // Only if empty: another dockerd may have started meanwhile.
            let _ = fs::remove_dir("/run/docker/plugins");
            let _ = fs::remove_dir("/run/docker");
        }
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if !self.finished {
            self.cleanup();
        }
    }
}

// ---- the tests --------------------------------------------------------------------------

/// `docker run --rm` through berth: output, stdin, and the exit codes Docker derives, compared
/// with runc's under the same daemon. Docker gives 127 and 126 from the runtime's error text
/// (moby's `translateContainerdStartErr`, the CLI's `runStartContainerErr`: "executable file
/// not found" / "no such file or directory" → 127, "permission denied" → 126).
#[test]
fn docker_run_output_and_exit_codes() {
    let _g = lock();
    let mut d = Docker::start();

    let o = d.run_with("berth", &["--rm", IMAGE, "sh", "-c", "echo hello from berth; echo to-stderr >&2"]);
    assert_out(&o, 0, "hello from berth", "docker run");
    assert!(o.stderr.contains("to-stderr"), "stderr: {o:?}");

    let o = d.docker_in(
        &["run", "--runtime", "berth", "--network", "none", "--rm", "-i", IMAGE, "sh", "-c", "read a; echo got:$a"],
        b"through stdin\n",
    );
    assert_out(&o, 0, "got:through stdin", "docker run -i");

    // --init: Docker binds its docker-init (tini) into the container as the init.
    let o = d.run_with("berth", &["--rm", "--init", IMAGE, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; exit 4"]);
    assert_out(&o, 4, "/sbin/docker-init -- sh -c", "docker run --init");
    // The host's pid namespace: after the init exits, the shim kills what is left in the
    // cgroup (`kill --all ID 9` on the stopped container), which must succeed.
    let cidfile = d.dir.path().join("pidhost.cid").to_string_lossy().into_owned();
    let o = d.run_with(
        "berth",
        &["--rm", "--pid", "host", "--cidfile", &cidfile, IMAGE, "sh", "-c", "sleep 100000 & echo host-pid-ns; exit 4"],
    );
    assert_out(&o, 4, "host-pid-ns", "docker run --pid host");
    let id = fs::read_to_string(&cidfile).expect("--cidfile").trim().to_string();
    d.ids.push(id.clone());
    d.assert_gone(&id);

    let cases: [(&str, &[&str], i32); 5] = [
        ("exit 0", &["sh", "-c", "exit 0"], 0),
        ("exit 3", &["sh", "-c", "exit 3"], 3),
        ("a command not in $PATH", &["nosuchcommand"], 127),
        ("a missing absolute path", &["/nonexistent"], 127),
        ("a file that is not executable", &["/etc/passwd"], 126),
    ];
    for (what, cmd, want) in cases {
        for runtime in ["runc", "berth"] {
            let mut a = vec!["--rm", IMAGE];
            a.extend(cmd);
            let o = d.run_with(runtime, &a);
            assert_eq!(o.code, want, "docker run --runtime {runtime} of {what}: exit {} (want {want})\n{o:?}", o.code);
        }
    }
    d.finish();
}

/// A detached container through its whole life: exec, top, stats, logs, pause/unpause, stop
/// (the SIGTERM reaches the process), rm; a terminal with its size.
#[test]
fn docker_detached_lifecycle_and_tty() {
    let _g = lock();
    let mut d = Docker::start();
    let o = d.run_with(
        "berth",
        &[
            "-d",
            "--name",
            "c1",
            IMAGE,
            "sh",
            "-c",
            "echo started; trap 'echo got-term; exit 42' TERM; sleep 100000 & wait",
        ],
    );
    assert_eq!(o.code, 0, "docker run -d: {o:?}");
    let id = d.id_of("c1");
    assert_eq!(o.stdout.trim(), id);
    assert_eq!(d.inspect("c1", "{{.State.Status}} {{.HostConfig.Runtime}}"), "running berth");
    // berth's own state, where containerd's runc shim keeps it.
    let state = d.state_root().join(&id).join("state.json");
    assert!(state.is_file(), "no berth state at {}", state.display());

    let o = d.docker(&["exec", "c1", "sh", "-c", "echo in-exec; echo exec-stderr >&2; exit 5"]);
    assert_out(&o, 5, "in-exec", "docker exec");
    assert!(o.stderr.contains("exec-stderr"), "exec stderr: {o:?}");
    let o = d.docker_in(&["exec", "-i", "c1", "head", "-n", "1"], b"through exec stdin\n");
    assert_out(&o, 0, "through exec stdin", "docker exec -i");
    // A command that cannot start: Docker 20.10's exec exits 126 whatever the text (as with
    // runc), and its CLI prints the runtime's message on stdout.
    let o = d.docker(&["exec", "c1", "nosuchcommand"]);
    assert!(o.code == 126 && o.stdout.contains("executable file not found"), "exec of a missing command: {o:?}");

    // top: the init and its child (berth's `ps --format json` under containerd).
    let o = d.docker(&["top", "c1"]);
    assert_eq!(o.code, 0, "docker top: {o:?}");
    assert!(o.stdout.contains("sleep 100000") && o.stdout.contains("trap"), "docker top: {}", o.stdout);
    let pid = d.inspect("c1", "{{.State.Pid}}");
    assert!(
        o.stdout.lines().any(|l| l.split_whitespace().nth(1) == Some(pid.as_str())),
        "top lacks pid {pid}: {}",
        o.stdout
    );

    // stats: read from the container's cgroups by the shim.
    let o = d.docker(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}", "c1"]);
    assert_eq!(o.code, 0, "docker stats: {o:?}");
    assert!(o.stdout.starts_with("c1 2 "), "docker stats (2 processes expected): {}", o.stdout);

    let o = d.docker(&["logs", "c1"]);
    assert_out(&o, 0, "started", "docker logs");

    // pause/unpause: the freezer of whichever hierarchy holds it.
    let o = d.docker(&["pause", "c1"]);
    assert_eq!(o.code, 0, "docker pause: {o:?}");
    assert_eq!(d.inspect("c1", "{{.State.Status}} {{.State.Paused}}"), "paused true");
    let freezer = match place_of("freezer") {
        Place::V1(h) => Some((d.cgroup_dir(&h, &id).join("freezer.state"), "FROZEN", "THAWED")),
        Place::V2(h) => Some((d.cgroup_dir(&h, &id).join("cgroup.freeze"), "1", "0")),
        Place::Nowhere(why) => {
            skip_part("freezer state on the host", &why);
            None
        }
    };
    if let Some((f, frozen, _)) = &freezer {
        assert_eq!(fs::read_to_string(f).unwrap_or_default().trim(), *frozen, "{}", f.display());
    }
    let o = d.docker(&["exec", "c1", "true"]);
    assert!(o.code != 0 && o.stderr.contains("is paused"), "exec into a paused container: {o:?}");
    let o = d.docker(&["unpause", "c1"]);
    assert_eq!(o.code, 0, "docker unpause: {o:?}");
    assert_eq!(d.inspect("c1", "{{.State.Status}} {{.State.Paused}}"), "running false");
    if let Some((f, _, thawed)) = &freezer {
        assert_eq!(fs::read_to_string(f).unwrap_or_default().trim(), *thawed, "{}", f.display());
    }
    let o = d.docker(&["exec", "c1", "echo", "after-unpause"]);
    assert_out(&o, 0, "after-unpause", "docker exec after unpause");

    // stop: SIGTERM through berth's kill; the trap's exit code shows it arrived (a SIGKILL
    // after the timeout would give 137).
    let o = d.docker(&["stop", "-t", "30", "c1"]);
    assert_eq!(o.code, 0, "docker stop: {o:?}");
    assert_eq!(d.inspect("c1", "{{.State.Status}} {{.State.ExitCode}}"), "exited 42");
    assert_out(&d.docker(&["logs", "c1"]), 0, "got-term", "docker logs after stop");
    let o = d.docker(&["rm", "c1"]);
    assert_eq!(o.code, 0, "docker rm: {o:?}");
    d.assert_gone(&id);

    // A real-time stop signal (systemd images use SIGRTMIN+3): docker stop sends 37 through
    // the runtime's `kill`; if that fails, Docker SIGKILLs after 2 s (137). runc shows the
    // expectation holds.
    for runtime in ["runc", "berth"] {
        let o = d.run_with(
            runtime,
            &[
                "-d",
                "--name",
                "rt",
                "--stop-signal",
                "SIGRTMIN+3",
                IMAGE,
                "sh",
                "-c",
                "trap 'exit 43' 37; sleep 100000 & wait",
            ],
        );
        assert_eq!(o.code, 0, "docker run -d --stop-signal: {o:?}");
        let rid = d.id_of("rt");
        let o = d.docker(&["stop", "-t", "30", "rt"]);
        assert_eq!(o.code, 0, "docker stop with SIGRTMIN+3: {o:?}");
        assert_eq!(
            d.inspect("rt", "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 43",
            "SIGRTMIN+3 did not reach the {runtime} container:\n{}",
            d.log("dockerd.log")
        );
        assert_eq!(d.docker(&["rm", "rt"]).code, 0);
        d.assert_gone(&rid);
    }

    // docker kill: SIGKILL, 137.
    let o = d.run_with("berth", &["-d", "--name", "k1", IMAGE, "sleep", "100000"]);
    assert_eq!(o.code, 0, "docker run -d: {o:?}");
    let kid = d.id_of("k1");
    let o = d.docker(&["kill", "k1"]);
    assert_eq!(o.code, 0, "docker kill: {o:?}");
    assert_eq!(d.docker(&["wait", "k1"]).stdout.trim(), "137");
    assert_eq!(d.docker(&["rm", "k1"]).code, 0);
    d.assert_gone(&kid);

    // A terminal: berth hands the pty to the shim through the console socket; the size the
    // client sets after the start (ResizePty on the shim's end) reaches the process.
    let o = d.docker_tty(
        &format!(
            "run --rm -t --runtime berth --network none {IMAGE} sh -c 'tty; i=0; \
             while [ $i -lt 100 ] && ! stty -a | grep -q \"rows 33; columns 91\"; do sleep 0.1; i=$((i+1)); done; \
             stty -a | head -n 1; echo tty-ok; exit 7'"
        ),
        33,
        91,
    );
    assert!(
        o.code == 7
            && o.stdout.contains("/dev/pts/0")
            && o.stdout.contains("rows 33; columns 91")
            && o.stdout.contains("tty-ok"),
        "docker run -t: {o:?}"
    );
    d.finish();
}

/// `-m`, `--pids-limit` and `--cpus` in the container's cgroups, wherever each controller lives
/// on this host, read on the host and inside the container; and restart policies.
#[test]
fn docker_limits_and_restart_policy() {
    let _g = lock();
    let mut d = Docker::start();
    let o = d.run_with(
        "berth",
        &["-d", "--name", "lim", "-m", "64m", "--pids-limit", "42", "--cpus", "0.5", IMAGE, "sleep", "100000"],
    );
    assert_eq!(o.code, 0, "docker run -d with limits: {o:?}");
    let id = d.id_of("lim");
    // A container without limits, as the control: the same probes must see no limit there.
    let o = d.run_with("berth", &["-d", "--name", "free", IMAGE, "sleep", "100000"]);
    assert_eq!(o.code, 0, "docker run -d: {o:?}");
    let free = d.id_of("free");

    // (controller, file on v1, value, file on cgroup2, value, value without limits)
    let checks = [
        ("memory", "memory.limit_in_bytes", "67108864", "memory.max", "67108864"),
        ("pids", "pids.max", "42", "pids.max", "42"),
        ("cpu", "cpu.cfs_quota_us", "50000", "cpu.max", "50000 100000"),
    ];
    for (controller, v1_file, v1_want, v2_file, v2_want) in checks {
        let (h, v1) = match place_of(controller) {
            Place::V1(h) => (h, true),
            Place::V2(h) => (h, false),
            Place::Nowhere(why) => {
                skip_part(&format!("{controller} limit"), &why);
                continue;
            }
        };
        let (file, want) = if v1 { (v1_file, v1_want) } else { (v2_file, v2_want) };
        let host = d.cgroup_dir(&h, &id).join(file);
        let got = fs::read_to_string(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
        assert_eq!(got.trim(), want, "{}", host.display());
        let host_free = d.cgroup_dir(&h, &free).join(file);
        let got_free = fs::read_to_string(&host_free).unwrap_or_else(|e| panic!("{}: {e}", host_free.display()));
        assert_ne!(got_free.trim(), want, "{} (no limit set)", host_free.display());
        let pid = d.inspect("lim", "{{.State.Pid}}");
        let procs = fs::read_to_string(d.cgroup_dir(&h, &id).join("cgroup.procs")).unwrap_or_default();
        assert!(procs.lines().any(|l| l == pid), "the init {pid} is not in {}", d.cgroup_dir(&h, &id).display());

        // Inside: Docker 20.10 keeps the host's cgroup namespace on a v1 host and has the
        // runtime mount the container's own cgroup of each hierarchy at /sys/fs/cgroup/<name>.
        if v1 {
            let name = h.file_name().expect("hierarchy name").to_string_lossy().into_owned();
            let inside = format!("/sys/fs/cgroup/{name}/{file}");
            for (c, want_inside, same) in [("lim", want, true), ("free", got_free.trim(), false)] {
                let o = d.docker(&["exec", c, "cat", &inside]);
                assert_eq!(o.code, 0, "reading {inside} in {c}: {o:?}");
                assert_eq!(o.stdout.trim(), want_inside, "{inside} inside {c}");
                assert_eq!(o.stdout.trim() == want, same, "{inside} inside {c}");
            }
        } else {
            skip_part(
                &format!("{controller} limit read inside the container"),
                &format!(
                    "{controller} is on cgroup2 ({}): the inside view depends on Docker's cgroup namespace",
                    h.display()
                ),
            );
        }
    }
    // docker update: Docker's whole LinuxResources through `berth update --resources -`.
    let o =
        d.docker(&["update", "--memory", "128m", "--memory-swap", "256m", "--pids-limit", "50", "--cpus", "1", "lim"]);
    assert_eq!(o.code, 0, "docker update: {o:?}");
    let updated = [
        ("memory", "memory.limit_in_bytes", "134217728", "memory.max", "134217728"),
        ("pids", "pids.max", "50", "pids.max", "50"),
        ("cpu", "cpu.cfs_quota_us", "100000", "cpu.max", "100000 100000"),
    ];
    for (controller, v1_file, v1_want, v2_file, v2_want) in updated {
        let (file, want, h) = match place_of(controller) {
            Place::V1(h) => (v1_file, v1_want, h),
            Place::V2(h) => (v2_file, v2_want, h),
            Place::Nowhere(why) => {
                skip_part(&format!("{controller} update"), &why);
                continue;
            }
        };
        let f = d.cgroup_dir(&h, &id).join(file);
        assert_eq!(fs::read_to_string(&f).unwrap_or_default().trim(), want, "{} after docker update", f.display());
    }
    assert_eq!(d.inspect("lim", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}"), "134217728 50");
    let o =
        d.docker(&["update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "42", "--cpus", "0.5", "lim"]);
    assert_eq!(o.code, 0, "docker update back: {o:?}");

    // The shim's stats see the limit too.
    let o = d.docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "lim"]);
    assert!(o.code == 0 && o.stdout.contains("/ 64MiB"), "docker stats: {o:?}");
    // The pids limit is enforced. A subshell forks until the kernel refuses (busybox sh gives
    // up at the first refused fork): then the init, the exec'd shell, the subshell and 39
    // sleeps make 42. Once the subshell is gone, 41 are left, and the refusal is counted.
    match place_of("pids") {
        Place::V1(h) => {
            let name = h.file_name().expect("hierarchy name").to_string_lossy().into_owned();
            let script = format!(
                "(i=0; while [ $i -lt 60 ]; do sleep 1000 & i=$((i+1)); done) 2>/dev/null; \
                 read n < /sys/fs/cgroup/{name}/pids.current; read e < /sys/fs/cgroup/{name}/pids.events; \
                 echo current=$n events=$e"
            );
            let o = d.docker(&["exec", "lim", "sh", "-c", &script]);
            assert_out(&o, 0, "current=41 events=max 1", "forking past --pids-limit");
        }
        Place::V2(_) => skip_part(
            "pids limit enforcement",
            "pids is on cgroup2: the inside view depends on Docker's cgroup namespace",
        ),
        Place::Nowhere(why) => skip_part("pids limit enforcement", &why),
    }
    for c in ["lim", "free"] {
        let o = d.docker(&["rm", "-f", c]);
        assert_eq!(o.code, 0, "docker rm -f {c}: {o:?}");
    }
    d.assert_gone(&id);
    d.assert_gone(&free);

    // on-failure:2: two restarts, then it stays exited. Each restart is a new berth container
    // with the same id (create, start, delete again).
    let o = d
        .run_with("berth", &["-d", "--name", "r1", "--restart", "on-failure:2", IMAGE, "sh", "-c", "echo run; exit 1"]);
    assert_eq!(o.code, 0, "docker run --restart on-failure:2: {o:?}");
    let r1 = d.id_of("r1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = d.inspect("r1", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}");
        if s == "exited 2 1" {
            break;
        }
        assert!(Instant::now() < deadline, "on-failure:2 never settled: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = d.docker(&["logs", "r1"]).stdout;
    assert_eq!(logs.lines().filter(|l| *l == "run").count(), 3, "three runs expected: {logs}");
    assert_eq!(d.docker(&["rm", "r1"]).code, 0);
    d.assert_gone(&r1);

    // always: restarts after every exit, also a clean one; rm -f ends it, restarting or not.
    let o = d.run_with("berth", &["-d", "--name", "r2", "--restart", "always", IMAGE, "sh", "-c", "echo run; exit 0"]);
    assert_eq!(o.code, 0, "docker run --restart always: {o:?}");
    let r2 = d.id_of("r2");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: u32 = d.inspect("r2", "{{.RestartCount}}").parse().expect("restart count");
        if n >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "restart always: only {n} restarts");
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = d.docker(&["rm", "-f", "r2"]);
    assert_eq!(o.code, 0, "docker rm -f r2: {o:?}");
    d.assert_gone(&r2);
    d.finish();
}
