//! Faults end to end, on a private containerd (tests/common/mod.rs) with the real shim and
//! real containers: a shim killed with SIGKILL costs exactly its own containers (one
//! container by default, one pod, or the group a runtime option asked for); a shim killed
//! while `ctr run` starts a container leaves nothing behind; containerd killed with SIGKILL
//! and restarted finds its tasks running, and the exit code of one that exited meanwhile.
//!
//! The leak probe ([`leftovers`]) looks for everything a container can leave: a mount under
//! its bundle, a cgroup directory in any hierarchy, berth's state directory, containerd's
//! bundle, a live process in its cgroup, a stdio fifo, a live shim socket, a task or a
//! container record. Each test shows it finds them on a running container first.

mod common;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use common::*;

const RT: &str = "io.containerd.berth.v2";

/// `sh -c` script: wait for `/berth-go` in the container, then exit 42.
const EXIT_42_ON_GO: &str = "until [ -e /berth-go ]; do sleep 0.05; done; exit 42";

/// `ctr run -d` (without stdio: a detached ctr leaves its fifos to whoever deletes the task,
/// which after a shim's crash is nobody; that is ctr's, not the shim's).
fn run_d(c: &Containerd, id: &str, extra: &[&str], cmd: &[&str]) {
    let mut v = vec!["run", "-d", "--null-io", "--runtime", RT];
    v.extend_from_slice(extra);
    v.push(IMAGE);
    v.push(id);
    v.extend_from_slice(cmd);
    let o = c.ctr(&v);
    assert_eq!(o.code, 0, "ctr run -d {id}: {}{}", o.stdout, o.stderr);
}

/// Reaps the zombies among this process's children (killed shims and containers are
/// orphaned to it), without touching live processes.
fn reap_zombies() {
    for (pid, _, state) in pids_of_children() {
        if state == 'Z' {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
            }
        }
    }
}

fn mount_points() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .collect()
}

/// Live processes whose cgroup (any hierarchy) is `/<ns>/<id>`, ctr's default cgroups path.
fn processes_in_cgroup(cgpath: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cg) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else { continue };
        if cg.lines().any(|l| l.rsplit(':').next() == Some(cgpath)) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Everything container `id` left behind (empty: nothing). ctr's stdio fifos are looked for
/// with `fifos` (they live in the host-wide /run/containerd/fifo, so `id` must be unique to
/// this test process).
fn leftovers(c: &Containerd, id: &str, fifos: bool) -> Vec<String> {
    reap_zombies();
    let mut v = Vec::new();
    let bundle = c.bundle(id);
    let b = bundle.to_string_lossy().into_owned();
    for m in mount_points() {
        if m == b || m.starts_with(&format!("{b}/")) {
            v.push(format!("mount {m}"));
        }
    }
    let cgpath = format!("/{}/{id}", c.ns);
    for h in fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let p = h.path().join(&c.ns).join(id);
        if p.is_dir() {
            v.push(format!("cgroup {}", p.display()));
        }
    }
    if c.berth_state(id).exists() {
        v.push(format!("berth state {}", c.berth_state(id).display()));
    }
    if bundle.exists() {
        v.push(format!("bundle {b}"));
    }
    for pid in processes_in_cgroup(&cgpath) {
        v.push(format!("process {pid} in cgroup {cgpath}"));
    }
    // ctr's stdio fifos: /run/containerd/fifo/<random>/<id>-stdin|stdout|stderr. They are
    // the client's: ctr removes them when it deletes the task, and a ctr whose task failed to
    // start does not (with any shim). What must not be is a process still holding one.
    for f in ctr_fifos(id, fifos) {
        for pid in holders(&f) {
            v.push(format!("fifo {} held open by {pid}", f.display()));
        }
    }
    if let Ok(address) = fs::read_to_string(bundle.join("address")) {
        let socket = address.trim().trim_start_matches("unix://").to_string();
        if c.shim_servers().iter().any(|(_, s)| *s == socket) {
            v.push(format!("a live shim serving {socket}"));
        }
    }
    if c.ctr(&["task", "ls", "-q"]).stdout.lines().any(|l| l == id) {
        v.push("a task in containerd".into());
    }
    v
}

/// ctr's stdio fifos for `id` (none unless `fifos`).
fn ctr_fifos(id: &str, fifos: bool) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let dirs = if fifos { fs::read_dir("/run/containerd/fifo").ok() } else { None };
    for d in dirs.into_iter().flatten().flatten() {
        for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.strip_prefix(id).and_then(|r| r.strip_prefix('-')).is_some_and(|r| r.starts_with("std")) {
                out.push(f.path());
            }
        }
    }
    out
}

/// The live processes with `path` open.
fn holders(path: &std::path::Path) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let open = fs::read_dir(e.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == path));
        if open && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Waits (bounded) until `id` has left nothing behind.
fn wait_clean(c: &Containerd, id: &str, what: &str) {
    wait_clean_of(c, id, false, what)
}

fn wait_clean_of(c: &Containerd, id: &str, fifos: bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = leftovers(c, id, fifos);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {id} left {left:?}\ncontainerd log:\n{}", tail(&c.log(), 40));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The socket path of the shim serving `id` (from its bundle's address).
fn socket_of(c: &Containerd, id: &str) -> std::path::PathBuf {
    let address = fs::read_to_string(c.bundle(id).join("address")).expect("the bundle's address");
    address.trim().trim_start_matches("unix://").into()
}

fn kill9(pid: i32) {
    let p = rustix::process::Pid::from_raw(pid).expect("pid");
    rustix::process::kill_process(p, rustix::process::Signal::KILL).expect("kill -9");
}

/// The survivors' checks: still running with the same init, exec works, and an exit code
/// arrives. `exiter` runs [`EXIT_42_ON_GO`]; `others` run anything long-lived.
fn survivors_are_fine(c: &Containerd, exiter: &str, others: &[&str], pids: &[(String, i32)]) {
    for (id, pid) in pids {
        assert_eq!(c.task_status(id), "RUNNING", "{id} was taken down\ncontainerd log:\n{}", tail(&c.log(), 40));
        assert_eq!(c.task_pid(id), *pid, "{id}'s init changed");
        assert!(alive(*pid), "{id}'s init {pid} is gone");
    }
    for id in others.iter().chain([&exiter]) {
        let o = c.ctr(&["task", "exec", "--exec-id", "after-crash", id, "sh", "-c", "echo exec-ok; exit 3"]);
        assert_out(&o, 3, "exec-ok", &format!("exec into {id} after another shim's crash"));
    }
    let o = c.ctr(&["task", "exec", "--exec-id", "go", exiter, "touch", "/berth-go"]);
    assert_eq!(o.code, 0, "exec touch in {exiter}: {o:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.task_status(exiter) != "STOPPED" {
        assert!(Instant::now() < deadline, "{exiter} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(deleted_exit_code(c, exiter), 42, "{exiter}'s exit code");
}

/// `ctr task delete ID` and the exit code it reports (ctr 1.6 logs a non-zero one as a
/// warning, "task ID exit with non-zero exit code N", and exits 0).
fn deleted_exit_code(c: &Containerd, id: &str) -> i32 {
    let o = c.ctr(&["task", "delete", id]);
    assert_eq!(o.code, 0, "ctr task delete {id}: {o:?}");
    o.stderr
        .split(&format!("task {id} exit with non-zero exit code "))
        .nth(1)
        .and_then(|r| r.split(|ch: char| !ch.is_ascii_digit()).next())
        .map_or(0, |n| n.parse().expect("exit code"))
}

/// The probe sees a running container's mount, cgroup, state, bundle, process and shim.
fn probe_sees(c: &Containerd, id: &str) {
    let left = leftovers(c, id, false).join("\n");
    for what in ["mount ", "cgroup ", "berth state ", "bundle ", "process ", "a live shim", "a task"] {
        assert!(left.contains(what), "the leak probe misses the {what:?} of running {id}: {left}");
    }
}

#[test]
fn a_killed_shim_costs_only_its_own_container() {
    let _g = lock();
    let c = Containerd::start();
    run_d(&c, "a1", &[], &["sleep", "1000"]);
    run_d(&c, "b1", &[], &["sh", "-c", EXIT_42_ON_GO]);
    run_d(&c, "b2", &[], &["sleep", "1000"]);
    probe_sees(&c, "a1");
    let pids: Vec<(String, i32)> = ["b1", "b2"].iter().map(|id| (id.to_string(), c.task_pid(id))).collect();
    let a_shim = c.shim_of("a1").expect("a1's shim");
    let a_socket = socket_of(&c, "a1");
    let a_init = c.task_pid("a1");

    // One shim per container.
    let (s1, s2) = (c.shim_of("b1"), c.shim_of("b2"));
    assert!(s1.is_some() && s2.is_some() && s1 != s2 && s1 != Some(a_shim), "shared shims: {a_shim} {s1:?} {s2:?}");

    kill9(a_shim);
    wait_clean(&c, "a1", "after kill -9 of a1's shim");
    assert!(!alive(a_init), "a1's init survived its shim's cleanup");
    assert!(!a_socket.exists(), "the dead shim's socket {} is left", a_socket.display());
    survivors_are_fine(&c, "b1", &["b2"], &pids);

    // The id is usable again.
    assert_eq!(c.ctr(&["containers", "rm", "a1"]).code, 0);
    let o = c.ctr(&["run", "--rm", "--runtime", RT, IMAGE, "a1", "sh", "-c", "echo again; exit 5"]);
    assert_out(&o, 5, "again", "ctr run with a1's id after the crash");
}

#[test]
fn a_killed_pod_shim_costs_only_its_pod() {
    let _g = lock();
    let c = Containerd::start();
    // As containerd's CRI annotates a pod: the sandbox (pause) container carries its own id.
    let pod = |sandbox: &str, kind: &str| -> Vec<String> {
        vec![
            "--annotation".into(),
            format!("io.kubernetes.cri.sandbox-id={sandbox}"),
            "--annotation".into(),
            format!("io.kubernetes.cri.container-type={kind}"),
        ]
    };
    run_d(&c, "pa", &args(&pod("pa", "sandbox")), &["sleep", "1000"]);
    run_d(&c, "pa-c1", &args(&pod("pa", "container")), &["sleep", "1000"]);
    run_d(&c, "pb", &args(&pod("pb", "sandbox")), &["sleep", "1000"]);
    run_d(&c, "pb-c1", &args(&pod("pb", "container")), &["sh", "-c", EXIT_42_ON_GO]);
    run_d(&c, "solo", &[], &["sleep", "1000"]);
    let shim = |id: &str| c.shim_of(id).unwrap_or_else(|| panic!("{id}'s shim"));
    assert_eq!(shim("pa"), shim("pa-c1"), "a pod shares one shim");
    assert_eq!(shim("pb"), shim("pb-c1"), "a pod shares one shim");
    assert_ne!(shim("pa"), shim("pb"), "two pods share a shim");
    assert_ne!(shim("pa"), shim("solo"));
    assert_ne!(shim("pb"), shim("solo"));
    let pids: Vec<(String, i32)> = ["pb", "pb-c1", "solo"].iter().map(|id| (id.to_string(), c.task_pid(id))).collect();

    kill9(shim("pa"));
    wait_clean(&c, "pa", "after kill -9 of pod pa's shim");
    wait_clean(&c, "pa-c1", "after kill -9 of pod pa's shim");
    survivors_are_fine(&c, "pb-c1", &["pb", "solo"], &pids);
}

#[test]
fn the_grouping_option_shares_a_shim_and_its_fate() {
    let _g = lock();
    let c = Containerd::start();
    let conf = c.dir.path().join("berth-grouped.toml");
    fs::write(&conf, "# one shim for every container outside a pod\ngroup = \"namespace\"\n").expect("config");
    let conf = conf.to_string_lossy().into_owned();
    let grouped = ["--runtime-config-path", conf.as_str()];
    run_d(&c, "g1", &grouped, &["sleep", "1000"]);
    run_d(&c, "g2", &grouped, &["sleep", "1000"]);
    run_d(&c, "g3", &grouped, &["sh", "-c", EXIT_42_ON_GO]);
    run_d(&c, "n1", &[], &["sh", "-c", EXIT_42_ON_GO]);
    run_d(&c, "n2", &[], &["sleep", "1000"]);
    // A pod is still grouped by pod, whatever the option.
    let mut p = grouped.to_vec();
    p.extend(["--annotation", "io.kubernetes.cri.sandbox-id=pod1"]);
    run_d(&c, "p1", &p, &["sleep", "1000"]);
    let shim = |id: &str| c.shim_of(id).unwrap_or_else(|| panic!("{id}'s shim"));
    assert_eq!(shim("g1"), shim("g2"), "the option groups g1 and g2");
    assert_eq!(shim("g1"), shim("g3"), "the option groups g1 and g3");
    for other in ["n1", "n2", "p1"] {
        assert_ne!(shim("g1"), shim(other), "{other} is in the option's group");
    }
    assert_ne!(shim("n1"), shim("n2"), "containers without the option share a shim");

    // The group shares its fate: survivors outside it are untouched.
    let pids: Vec<(String, i32)> = ["n1", "n2", "p1"].iter().map(|id| (id.to_string(), c.task_pid(id))).collect();
    let g_socket = socket_of(&c, "g1");
    kill9(shim("g1"));
    for id in ["g1", "g2", "g3"] {
        wait_clean(&c, id, "after kill -9 of the grouped shim");
    }
    assert!(!g_socket.exists(), "the dead shim's socket {} is left", g_socket.display());
    survivors_are_fine(&c, "n1", &["n2", "p1"], &pids);

    // And within a surviving group, exit codes still arrive: group two and let one exit.
    run_d(&c, "h1", &grouped, &["sleep", "1000"]);
    run_d(&c, "h2", &grouped, &["sh", "-c", EXIT_42_ON_GO]);
    assert_eq!(shim("h1"), shim("h2"));
    let pids = vec![("h1".to_string(), c.task_pid("h1"))];
    survivors_are_fine(&c, "h2", &["h1"], &pids);
}

#[test]
fn runtime_options_berth_does_not_understand_fail_the_start_and_leave_nothing() {
    let _g = lock();
    let c = Containerd::start();
    let bad = c.dir.path().join("berth-bad.toml");
    fs::write(&bad, "group = \"namespace\"\nbinary_name = \"/usr/bin/runc\"\n").expect("config");
    let bad = bad.to_string_lossy().into_owned();
    let missing = c.dir.path().join("nonexistent.toml").to_string_lossy().into_owned();
    for (i, (path, want)) in [
        (bad.as_str(), format!("{bad}: unknown setting \"binary_name\"")),
        (missing.as_str(), format!("ConfigPath {missing}")),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("bad{i}");
        let o = c.ctr(&["run", "-d", "--runtime", RT, "--runtime-config-path", path, IMAGE, &id, "sleep", "1000"]);
        assert_ne!(o.code, 0, "a start with {path} succeeded: {o:?}");
        assert!(o.stderr.contains(want.as_str()), "the error does not name the problem ({want}): {}", o.stderr);
        eprintln!("refused as: {}", o.stderr.trim());
        wait_clean(&c, &id, "after a refused start");
        assert!(c.shim_servers().is_empty(), "a shim was left running: {:?}", c.shim_servers());
        // Nothing ran: no process ever joined the container's cgroup (it was never made).
        assert_eq!(c.task_status(&id), "");
    }
}

/// A pseudo-random sequence (xorshift64*), seeded from the clock unless BERTH_SHIM_SEED.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("BERTH_SHIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
        });
        eprintln!("seed {seed} (BERTH_SHIM_SEED={seed} repeats this run)");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The berth shim processes of this containerd: (pid, action: start, serve or delete).
fn shim_processes(c: &Containerd) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !argv.first().is_some_and(|a| a.ends_with("containerd-shim-berth-v2"))
            || !argv.windows(2).any(|w| w[0] == "-address" && w[1] == c.sock)
        {
            continue;
        }
        if alive(pid) {
            out.push((pid, argv.last().cloned().unwrap_or_default()));
        }
    }
    out
}

#[test]
fn killing_the_shim_during_ctr_run_leaves_nothing() {
    let _g = lock();
    let c = Containerd::start();
    let trials: usize = std::env::var("BERTH_SHIM_KILL_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let mut rng = Rng::new();
    let id = &format!("victim-{}", std::process::id());
    // The probe sees a running container's traces (and the fifos of a foreground run, which
    // live only while ctr runs).
    run_d(&c, id, &[], &["sleep", "1000"]);
    probe_sees(&c, id);
    // The id's shim socket (one shim per container: the same path for every trial).
    let socket = socket_of(&c, id);
    c.ctr(&["task", "kill", "-s", "KILL", id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.ctr(&["task", "delete", id]).code != 0 && !c.task_status(id).is_empty() {
        assert!(Instant::now() < deadline, "cleaning up the probe's container");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.ctr(&["containers", "rm", id]).code, 0);
    wait_clean(&c, id, "after a normal delete");

    let (mut killed_start, mut killed_server, mut missed, mut completed, mut ctr_fifo_leaks) = (0, 0, 0, 0, 0);
    let mut socket_left_for_next_start = 0;
    let started = Instant::now();
    for trial in 0..trials {
        // 0-50 ms; every other trial 0-5 ms, to hit the short-lived start action often.
        let delay =
            if trial % 2 == 0 { Duration::from_millis(rng.below(51)) } else { Duration::from_micros(rng.below(5001)) };
        let mut cmd = c.cmd();
        cmd.args(["run", "--rm", "--runtime", RT, IMAGE, id, "sh", "-c", "echo ran; exit 7"]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("ctr run");
        // The delay counts from the shim's appearance (ctr and containerd take longer than
        // 50 ms to get there): the kill lands in the start action, the server's create or
        // start, or the running container.
        let appeared = Instant::now() + Duration::from_secs(20);
        while shim_processes(&c).is_empty()
            && child.try_wait().expect("try_wait").is_none()
            && Instant::now() < appeared
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(delay);
        let victims: Vec<(i32, String)> =
            shim_processes(&c).into_iter().filter(|(_, action)| action == "start" || action == "serve").collect();
        for (pid, action) in &victims {
            if rustix::process::kill_process(
                rustix::process::Pid::from_raw(*pid).expect("pid"),
                rustix::process::Signal::KILL,
            )
            .is_ok()
            {
                if action == "start" {
                    killed_start += 1;
                } else {
                    killed_server += 1;
                }
            }
        }
        if victims.is_empty() {
            missed += 1;
        }
        let o = wait_output(child, Duration::from_secs(60));
        if o.0 == 7 && o.1.contains("ran") {
            completed += 1;
        }
        assert!(
            !o.2.contains("already exists"),
            "trial {trial} (kill after {delay:?}): the id is still taken: {o:?}\ncontainerd log:\n{}",
            tail(&c.log(), 40)
        );
        // ctr's --rm removes the container record when it can; when the task's cleanup had not
        // finished yet, it could not: that is containerd's client, not what the shim left.
        wait_for_task_cleanup(&c, id);
        if c.ctr(&["containers", "ls", "-q"]).stdout.lines().any(|l| l == id) {
            let o = c.ctr(&["containers", "rm", id]);
            assert_eq!(o.code, 0, "trial {trial}: ctr containers rm: {o:?}");
        }
        wait_clean_of(&c, id, true, &format!("trial {trial} (kill -9 of {victims:?} after {delay:?}; ctr: {o:?})"));
        // What ctr left of its own (its fifo directory, held by no one): removed as ctr would.
        let left = ctr_fifos(id, true);
        if !left.is_empty() {
            ctr_fifo_leaks += 1;
            for dir in left.iter().filter_map(|f| f.parent()).collect::<std::collections::BTreeSet<_>>() {
                let _ = fs::remove_dir_all(dir);
            }
        }
        // The shim's socket is removed by the cleanup (`delete`), or by the server itself when
        // its start died first. When both died, or the server died before containerd
        // connected, containerd's start fails and it runs no cleanup at all (it deletes the
        // bundle): the socket stays until the next start of the id finds it dead and
        // replaces it.
        if o.2.contains("failed to start shim") {
            socket_left_for_next_start += 1;
        } else {
            assert!(
                !socket.exists(),
                "trial {trial} (kill -9 of {victims:?} after {delay:?}; ctr: {o:?}): the shim's socket is left"
            );
        }
        // A server exits once containerd shut it down, or its start died: promptly, well
        // before the 60 s a reservation lasts or the 10 s an idle server lingers.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !shim_processes(&c).is_empty() {
            assert!(
                Instant::now() < deadline,
                "trial {trial} (kill -9 of {victims:?} after {delay:?}; ctr: {o:?}): shim processes left: {:?}",
                shim_processes(&c)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!(
        "{trials} trials in {:?}: killed a start action {killed_start} times, a server {killed_server} times, \
         no shim yet or any more {missed} times; {completed} runs completed; ctr left its fifos {ctr_fifo_leaks} times; \
         containerd's start of the shim failed (it cleans nothing up then) {socket_left_for_next_start} times",
        started.elapsed()
    );
    assert!(killed_server > 0, "no trial killed a shim server: the delays miss the window");
    // The id works after all that.
    let o = c.ctr(&["run", "--rm", "--runtime", RT, IMAGE, id, "sh", "-c", "echo final; exit 9"]);
    assert_out(&o, 9, "final", "ctr run after the trials");
    wait_clean_of(&c, id, true, "after the final run");
    assert!(!socket.exists(), "the shim's socket is left after the final run");
}

/// Waits until containerd no longer lists task `id` (its cleanup after a dead shim runs
/// asynchronously).
fn wait_for_task_cleanup(c: &Containerd, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.ctr(&["task", "ls", "-q"]).stdout.lines().any(|l| l == id) {
        if c.task_status(id) == "STOPPED" {
            // The kill came after the exit: delete it as ctr would have.
            c.ctr(&["task", "delete", id]);
        }
        assert!(Instant::now() < deadline, "task {id} is still listed\n{}", tail(&c.log(), 40));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_output(mut child: std::process::Child, limit: Duration) -> (i32, String, String) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ctr run did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    (status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)), out, err)
}

#[test]
fn containerd_restart_with_running_tasks() {
    let _g = lock();
    let mut c = Containerd::start();
    let conf = c.dir.path().join("berth-grouped.toml");
    fs::write(&conf, "group = \"namespace\"\n").expect("config");
    let conf = conf.to_string_lossy().into_owned();
    let grouped = ["--runtime-config-path", conf.as_str()];
    // One container per shim, and two sharing one (the grouping option).
    run_d(&c, "r1", &[], &["sleep", "1000"]);
    run_d(&c, "r2", &[], &["sh", "-c", EXIT_42_ON_GO]);
    run_d(&c, "r3", &grouped, &["sleep", "1000"]);
    run_d(&c, "r4", &grouped, &["sh", "-c", EXIT_42_ON_GO]);
    let ids = ["r1", "r2", "r3", "r4"];
    let pids: Vec<i32> = ids.iter().map(|id| c.task_pid(id)).collect();
    let shims: Vec<i32> = ids.iter().map(|id| c.shim_of(id).expect("shim")).collect();

    c.kill_daemon();
    // While containerd is down, r2 and r4 exit 42 (their rootfs is mounted in the bundle).
    for (i, id) in ids.iter().enumerate().filter(|(_, id)| ["r2", "r4"].contains(id)) {
        fs::write(c.bundle(id).join("rootfs/berth-go"), "").expect("writing into the rootfs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(pids[i]) {
            assert!(Instant::now() < deadline, "{id} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    c.start_daemon();

    for (i, id) in ids.iter().enumerate() {
        assert!(alive(shims[i]), "{id}'s shim died with containerd");
        assert_eq!(c.shim_of(id), Some(shims[i]), "{id} is served by another shim");
    }
    for (i, id) in ["r1", "r3"].iter().enumerate() {
        let i = i * 2;
        assert_eq!(c.task_status(id), "RUNNING", "{id} after containerd's restart");
        assert_eq!(c.task_pid(id), pids[i]);
        let o = c.ctr(&["task", "exec", "--exec-id", "after-restart", id, "sh", "-c", "echo exec-ok; exit 4"]);
        assert_out(&o, 4, "exec-ok", &format!("exec into {id} after containerd's restart"));
    }
    for id in ["r2", "r4"] {
        assert_eq!(c.task_status(id), "STOPPED", "{id} after containerd's restart");
        assert_eq!(deleted_exit_code(&c, id), 42, "{id}'s exit code, which came while containerd was down");
        assert_eq!(c.ctr(&["containers", "rm", id]).code, 0);
        wait_clean(&c, id, "after deleting a task that exited while containerd was down");
    }
    // A running task still reports a later exit through the restarted containerd.
    let o = c.ctr(&["task", "kill", "-s", "KILL", "r1"]);
    assert_eq!(o.code, 0, "kill r1: {o:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.task_status("r1") != "STOPPED" {
        assert!(Instant::now() < deadline, "r1 did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(deleted_exit_code(&c, "r1"), 137, "r1's exit code after SIGKILL");
}
