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
//! missing one fails the test with the package name. The containerd harness is
//! tests/common/mod.rs.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

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

    // One shim per container by default; the runtime option `group = "namespace"` puts the
    // containers that carry it into one.
    for id in ["s1", "s2"] {
        let o = c.ctr(&["run", "-d", "--runtime", "io.containerd.berth.v2", IMAGE, id, "sleep", "1000"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
    assert_ne!(c.shim_of("s1"), c.shim_of("s2"), "one shim per container expected");
    let conf = c.dir.path().join("grouped.toml");
    fs::write(&conf, "group = \"namespace\"\n").expect("config");
    let conf = conf.to_string_lossy().into_owned();
    for id in ["g1", "g2"] {
        let o = c.ctr(&[
            "run",
            "-d",
            "--runtime",
            "io.containerd.berth.v2",
            "--runtime-config-path",
            &conf,
            IMAGE,
            id,
            "sleep",
            "1000",
        ]);
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
    assert!(c.shim_of("g1").is_some() && c.shim_of("g1") == c.shim_of("g2"), "one grouped shim expected");
    assert_eq!(c.shim_servers().len(), 3, "shims: {:?}", c.shim_servers());
    let listed = c.ctr(&["task", "ls"]).stdout;
    assert!(["s1", "s2", "g1", "g2"].iter().all(|id| listed.contains(id)), "{listed}");

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
