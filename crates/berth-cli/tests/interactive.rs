//! Interactive and multi-process containers (issue 3): terminals through a console socket and
//! in a foreground `run`, exec in bulk, hooks, passed descriptors, exec refusals.

mod common;

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Receives the descriptor a runtime sends over a console socket, and the payload (the
/// PTY slave's name).
fn recv_master(listener: &UnixListener) -> (OwnedFd, String) {
    let (conn, _) = listener.accept().expect("accept on the console socket");
    let (fd, name) = recv_fd_with(&conn).expect("no descriptor received on the console socket");
    (fd, String::from_utf8_lossy(&name).into_owned())
}

fn type_line(master: BorrowedFd<'_>, line: &str) {
    rustix::io::write(master, line.as_bytes()).expect("writing to the terminal");
}

#[test]
fn terminal_session_through_a_console_socket() {
    let env = Env::new();
    let mut b = env.bundle(&["sh"]);
    b.set("/process/terminal", json!(true));
    b.set("/process/consoleSize", json!({"height": 24, "width": 80}));
    let id = env.id("tty");
    let sock = b.file("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let create = std::thread::scope(|s| {
        let h = s.spawn(|| {
            env.detached(&b, &id, &["create", "--console-socket", sock.to_str().unwrap(), "--bundle", b.dir(), &id])
        });
        let got = recv_master(&listener);
        (h.join().unwrap(), got)
    });
    let (out, (master, name)) = create;
    out.ok();
    assert!(name.starts_with("/dev/pts/"), "console socket payload {name:?}");
    let pid = env.pid_of(&id);
    env.berth(&["start", &id]).ok();
    // A real shell on the other end: it echoes and evaluates what we type.
    type_line(master.as_fd(), "echo hello-$((6*7))\n");
    read_until(master.as_fd(), "hello-42");
    // consoleSize was applied...
    type_line(master.as_fd(), "stty size\n");
    read_until(master.as_fd(), "24 80");
    type_line(master.as_fd(), "tty\n");
    read_until(master.as_fd(), "/dev/pts/");
    // ...and a resize reaches the container's terminal.
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize { ws_row: 50, ws_col: 132, ws_xpixel: 0, ws_ypixel: 0 },
    )
    .unwrap();
    type_line(master.as_fd(), "stty size\n");
    read_until(master.as_fd(), "50 132");
    // It is the shell's controlling terminal, and /dev/console is the same PTY.
    type_line(
        master.as_fd(),
        "ls -l /dev/console | wc -l; cat /proc/self/stat | cut -d' ' -f7 | grep -vq '^0$' && echo has-ctty\n",
    );
    read_until(master.as_fd(), "has-ctty");
    type_line(master.as_fd(), "exit 3\n");
    assert_eq!(env.reap(pid), 3);
    env.wait_status(&id, "stopped");
    env.berth(&["delete", &id]).ok();
    env.finish();
}

#[test]
fn foreground_run_proxies_the_terminal_in_raw_mode_and_follows_resizes() {
    let env = Env::new();
    let mut b = env.bundle(&["sh"]);
    b.set("/process/terminal", json!(true));
    let id = env.id("fg-tty");
    // The test's own PTY plays the user's terminal: berth runs as the session leader with
    // it as controlling terminal (util-linux setsid -c), so a resize sends berth SIGWINCH.
    let master = rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY).unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize { ws_row: 30, ws_col: 90, ws_xpixel: 0, ws_ypixel: 0 },
    )
    .unwrap();
    let name = rustix::pty::ptsname(&master, Vec::new()).unwrap().into_string().unwrap();
    let slave = fs::OpenOptions::new().read(true).write(true).open(&name).unwrap();
    let mut child = Command::new("setsid")
        .arg("-c")
        .arg(BERTH)
        .args(["--root", env.root().to_str().unwrap(), "run", "--bundle", b.dir(), &id])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()))
        .spawn()
        .unwrap();
    type_line(master.as_fd(), "stty size\n");
    read_until(master.as_fd(), "30 90");
    // berth put our terminal in raw mode: no local echo or line editing on the host side.
    let attrs = rustix::termios::tcgetattr(&slave).unwrap();
    assert!(!attrs.local_modes.contains(rustix::termios::LocalModes::ICANON), "host terminal not in raw mode");
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize { ws_row: 41, ws_col: 101, ws_xpixel: 0, ws_ypixel: 0 },
    )
    .unwrap();
    // SIGWINCH is asynchronous: ask until the container sees the new size.
    let deadline = Instant::now() + PATIENCE;
    let mut seen = String::new();
    while Instant::now() < deadline && !seen.contains("41 101") {
        type_line(master.as_fd(), "stty size\n");
        std::thread::sleep(Duration::from_millis(100));
        let mut buf = [0u8; 4096];
        let _ = rustix::io::ioctl_fionbio(&master, true);
        while let Ok(n) = rustix::io::read(&master, &mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(seen.contains("41 101"), "resize not followed: {seen:?}");
    type_line(master.as_fd(), "exit 5\n");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5));
    // The terminal mode was restored when berth exited.
    let attrs = rustix::termios::tcgetattr(&slave).unwrap();
    assert!(attrs.local_modes.contains(rustix::termios::LocalModes::ICANON), "host terminal left in raw mode");
    env.finish();
}

fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn two_hundred_execs_leak_nothing() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("execs");
    let pid = env.run_detached(&b, &id);
    let before_init = fd_count(pid);
    for i in 0..200 {
        let out = env.berth(&["exec", &id, "sh", "-c", &format!("exit {}", i % 7)]);
        out.code_is(i % 7);
    }
    // Only the init is left in the container, with the descriptors it had; no zombie.
    let pids: Vec<i32> = serde_json::from_str(env.berth(&["ps", "-f", "json", &id]).ok()).unwrap();
    assert_eq!(pids, [pid], "processes left in the container");
    assert_eq!(fd_count(pid), before_init, "descriptors of the init changed");
    // No berth process is left behind either.
    let stray: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read_to_string(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| c.contains(&id) && c.contains("exec"))
        .collect();
    assert!(stray.is_empty(), "berth exec processes left: {stray:?}");
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    assert!(children.trim().is_empty(), "the init has children left: {children}");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn exec_is_refused_unless_the_container_runs() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("refuse");
    let pid = env.run_detached(&b, &id);
    env.berth(&["pause", &id]).ok();
    env.berth(&["exec", &id, "true"]).fails_with("paused");
    env.berth(&["resume", &id]).ok();
    env.berth(&["exec", &id, "true"]).ok();
    env.berth(&["kill", &id, "KILL"]).ok();
    env.reap(pid);
    env.wait_status(&id, "stopped");
    env.berth(&["exec", &id, "true"]).fails_with("cannot exec in a stopped container");
    env.berth(&["kill", &id]).fails_with("not running");
    env.berth(&["delete", &id]).ok();
    env.finish();
}

#[test]
fn exec_applies_the_process_file_and_user_parsing_is_exact() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("procfile");
    let pid = env.run_detached(&b, &id);
    let process = json!({
        "args": ["sh", "-c", "id -u; grep -E '^(CapEff|CapInh|NoNewPrivs)' /proc/self/status; pwd"],
        "cwd": "/tmp",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 2},
        "noNewPrivileges": true,
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
    });
    let pf = b.file("process.json");
    fs::write(&pf, process.to_string()).unwrap();
    let out = env.berth(&["exec", "--process", pf.to_str().unwrap(), &id]);
    let text = out.ok();
    // As root, the process keeps exactly the bounding set across exec (non-root users keep
    // only ambient capabilities, which need inheritable ones, so this is checked as root).
    assert!(text.starts_with("0\n"), "{text}");
    assert!(text.contains("CapEff:\t0000000000000020"), "{text}");
    assert!(text.contains("CapInh:\t0000000000000000"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    assert!(text.trim_end().ends_with("/tmp"), "{text}");
    // `-u 1` is uid 1, never 0 (crun CVE-2026-30892); garbage is an error, not uid 0.
    assert_eq!(env.berth(&["exec", "-u", "1", &id, "id", "-u"]).ok(), "1\n");
    env.berth(&["exec", "-u", "1x", &id, "id", "-u"]).fails_with("--user");
    env.berth(&["exec", "-u", "", &id, "id", "-u"]).fails_with("--user");
    // --cap adds to the effective set but never to the inheritable one (CVE-2022-29162).
    let caps = |args: &[&str]| -> (u64, u64) {
        let mut a = vec!["exec"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[id.as_str(), "grep", "-E", "^Cap(Inh|Eff)", "/proc/self/status"]);
        let out = env.berth(&a);
        let text = out.ok().to_string();
        let get = |k: &str| {
            let l = text.lines().find(|l| l.starts_with(k)).unwrap_or_else(|| panic!("{k} missing: {text}"));
            u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        (get("CapInh"), get("CapEff"))
    };
    let (inh, eff) = caps(&[]);
    assert_eq!(inh, 0);
    assert_eq!(eff & (1 << 13), 0, "CAP_NET_RAW present without --cap");
    let (inh, eff) = caps(&["--cap", "CAP_NET_RAW"]);
    assert_eq!(inh, 0, "--cap reached the inheritable set");
    assert_ne!(eff & (1 << 13), 0, "--cap CAP_NET_RAW not effective");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

/// A hook script that appends `phase status mntns pid-of-state` to `log`.
fn hook_script(log: &str) -> String {
    format!(
        "#!/bin/sh\nstate=$(cat)\nstatus=$(echo \"$state\" | sed -n 's/.*\"status\":\"\\([a-z]*\\)\".*/\\1/p')\n\
         id=$(echo \"$state\" | sed -n 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/p')\n\
         echo \"$1 $status $(readlink /proc/self/ns/mnt) $id\" >> {log}\n"
    )
}

#[test]
fn hooks_run_in_order_in_the_right_namespaces_with_the_state() {
    let env = Env::new();
    let mut b = env.bundle_own(&["sh", "-c", "echo main >> /hooklog/log"]);
    let logdir = b.file("hooklog");
    fs::create_dir(&logdir).unwrap();
    let host_hook = b.file("hook.sh");
    fs::write(&host_hook, hook_script(&format!("{}/log", logdir.display()))).unwrap();
    let inner_hook = b.rootfs().join("hook.sh");
    fs::write(&inner_hook, hook_script("/hooklog/log")).unwrap();
    for p in [&host_hook, &inner_hook] {
        Command::new("chmod").arg("755").arg(p).status().unwrap();
    }
    b.set("/root/readonly", json!(false));
    b.push("/mounts", json!({"destination": "/hooklog", "type": "bind", "source": logdir, "options": ["rbind", "rw"]}));
    let h = |phase: &str, path: &str| json!([{"path": path, "args": ["hook", phase], "timeout": 10}]);
    let host = host_hook.to_str().unwrap();
    b.set(
        "/hooks",
        json!({
            "prestart": h("prestart", host),
            "createRuntime": h("createRuntime", host),
            "createContainer": h("createContainer", host),
            "startContainer": h("startContainer", "/hook.sh"),
            "poststart": h("poststart", host),
            "poststop": h("poststop", host),
        }),
    );
    let id = env.id("hooks");
    env.berth(&["run", "--bundle", b.dir(), &id]).ok();
    let log = fs::read_to_string(logdir.join("log")).unwrap();
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.split(' ').collect()).collect();
    let phases: Vec<&str> = lines.iter().map(|l| l[0]).collect();
    // main runs after startContainer; poststart may run before or after main finished, but
    // always after startContainer and before poststop.
    let pos = |p: &str| phases.iter().position(|x| *x == p).unwrap_or_else(|| panic!("{p} missing: {log}"));
    assert!(pos("prestart") < pos("createRuntime"), "{log}");
    assert!(pos("createRuntime") < pos("createContainer"), "{log}");
    assert!(pos("createContainer") < pos("startContainer"), "{log}");
    assert!(pos("startContainer") < pos("main"), "{log}");
    assert!(pos("startContainer") < pos("poststart"), "{log}");
    assert!(pos("poststart") < pos("poststop") && pos("main") < pos("poststop"), "{log}");
    let host_ns = fs::read_link("/proc/self/ns/mnt").unwrap().to_string_lossy().into_owned();
    for l in &lines {
        if l[0] == "main" {
            continue;
        }
        let in_container = l[0] == "createContainer" || l[0] == "startContainer";
        assert_eq!(l[2] != host_ns, in_container, "{} ran in the wrong mount namespace: {log}", l[0]);
        assert_eq!(l[3], id, "{} got the wrong state: {log}", l[0]);
    }
    let status = |p: &str| lines.iter().find(|l| l[0] == p).unwrap()[1];
    assert_eq!(status("prestart"), "creating");
    assert_eq!(status("createContainer"), "creating");
    assert_eq!(status("startContainer"), "created");
    assert_eq!(status("poststart"), "running");
    assert_eq!(status("poststop"), "stopped");
    env.finish();
}

#[test]
fn hook_timeout_and_warn_only_phases() {
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    b.set("/hooks", json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}));
    let id = env.id("hook-timeout");
    // The message proves the 1 s timeout, not the hook's own 30 s, ended it.
    env.berth(&["run", "--bundle", b.dir(), &id]).fails_with("timed out after 1s");
    // A failing poststop only warns: the container runs and exits normally.
    let mut b = env.bundle(&["sh", "-c", "echo ran"]);
    b.set("/hooks", json!({"poststop": [{"path": "/bin/false"}]}));
    let id = env.id("hook-warn");
    let out = env.berth(&["run", "--bundle", b.dir(), &id]);
    assert_eq!(out.ok(), "ran\n");
    assert!(out.stderr.contains("hooks.poststop[0]"), "no warning for the failing poststop: {}", out.stderr);
    env.finish();
}

/// A hook that appends `== PHASE`, then its environment (sorted, one variable a line), to
/// `log`. The commands are named by path: a hook may run without PATH. `bin` is where `env`
/// and `sort` are: /usr/bin on the host, /bin in the busybox rootfs.
fn env_hook(phase: &str, bin: &str, log: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("{{ echo '== {phase}'; {bin}/env | {bin}/sort; }} >> {log}")]})
}

/// The sections an [`env_hook`] log holds: phase -> the variables, without those the shell
/// sets itself (PWD, OLDPWD, SHLVL, _).
fn env_sections(log: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for l in log.lines() {
        if let Some(p) = l.strip_prefix("== ") {
            out.push((p.to_string(), Vec::new()));
        } else if let Some((_, vars)) = out.last_mut() {
            let name = l.split('=').next().unwrap_or_default();
            if !["PWD", "OLDPWD", "SHLVL", "_"].contains(&name) {
                vars.push(l.to_string());
            }
        }
    }
    out
}

#[test]
fn hooks_without_env_get_the_runtimes_environment_and_container_hooks_the_processs() {
    // runc 1.1 (measured with runc 1.1.5 on this host): a hook without `env` inherits the
    // environment of the process that runs it. For prestart, createRuntime, poststart and
    // poststop that is the runtime, called here with BERTH_IT_CALLER set. createContainer and
    // startContainer run in runc's init, whose environment is the container process's by
    // then: process.env for createContainer, and for startContainer exactly what the process
    // gets, HOME included. A hook with `env` gets only that, `env: []` nothing at all.
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", "/bin/env | /bin/sort > /data/process.env"]);
    let logtmp = tempfile::tempdir().unwrap();
    let logdir = logtmp.path().canonicalize().unwrap();
    let log = logdir.join("hooks.log");
    let host = |phase: &str| env_hook(phase, "/usr/bin", log.to_str().unwrap());
    b.set("/process/env", json!(["PATH=/bin", "BERTH_IT_SPEC=from-the-spec"]));
    b.push("/mounts", json!({"destination": "/data", "type": "bind", "source": logdir, "options": ["rbind", "rw"]}));
    let mut only = host("createRuntime-with-env");
    only["env"] = json!(["ONLY=this"]);
    let mut empty = host("createRuntime-with-empty-env");
    empty["env"] = json!([]);
    b.set(
        "/hooks",
        json!({
            "prestart": [host("prestart")],
            "createRuntime": [host("createRuntime"), only, empty],
            "createContainer": [host("createContainer")],
            "startContainer": [env_hook("startContainer", "/bin", "/data/hooks.log")],
            "poststart": [host("poststart")],
            "poststop": [host("poststop")],
        }),
    );
    let id = env.id("hook-env");
    let out =
        env.command(&["run", "--bundle", b.dir(), &id]).env("BERTH_IT_CALLER", "from-the-caller").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = fs::read_to_string(&log).unwrap();
    let sections = env_sections(&text);
    let vars = |phase: &str| -> Vec<String> {
        sections
            .iter()
            .find(|(p, _)| p == phase)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{phase} missing: {text}"))
    };
    let caller = "BERTH_IT_CALLER=from-the-caller".to_string();
    let spec_var = "BERTH_IT_SPEC=from-the-spec".to_string();
    let host_path = format!("PATH={}", std::env::var("PATH").unwrap());
    for phase in ["prestart", "createRuntime", "poststart", "poststop"] {
        let v = vars(phase);
        assert!(v.contains(&caller) && v.contains(&host_path), "{phase} lacks the runtime's environment: {v:?}");
        assert!(!v.contains(&spec_var), "{phase} got the process's environment: {v:?}");
        // berth's own re-exec marker (the seal) is not the caller's.
        assert!(!v.iter().any(|x| x.starts_with("BERTH_SEALED")), "{phase}: {v:?}");
    }
    assert_eq!(vars("createRuntime-with-env"), ["ONLY=this"]);
    assert_eq!(vars("createRuntime-with-empty-env"), Vec::<String>::new());
    // process.env, as the init holds it before HOME is looked up.
    assert_eq!(vars("createContainer"), [spec_var.clone(), "PATH=/bin".to_string()]);
    let process: Vec<String> =
        env_sections(&format!("== process\n{}", fs::read_to_string(logdir.join("process.env")).unwrap())).remove(0).1;
    // (Sorted: `sort` ran in the container.)
    assert_eq!(process, [spec_var, "HOME=/root".to_string(), "PATH=/bin".to_string()]);
    assert_eq!(vars("startContainer"), process, "startContainer sees what the process gets");
    env.finish();
}

#[test]
fn create_container_hooks_run_in_the_container_rootfs() {
    // runc chdirs to the rootfs before it runs createContainer hooks: the rootfs as the
    // container sees it before pivot_root, with its mounts (proc here), not the host's view.
    let env = Env::new();
    let mut b = env.bundle(&["true"]);
    let log = b.file("cwd.log");
    let script = format!(
        "{{ pwd -P; if test -e proc/self/status; then echo proc-mounted; else echo no-proc-here; fi; }} > {}",
        log.display()
    );
    b.set("/hooks/createContainer", json!([{"path": "/bin/sh", "args": ["sh", "-c", script]}]));
    let id = env.id("hook-cwd");
    env.berth(&["run", "--bundle", b.dir(), &id]).ok();
    assert_eq!(fs::read_to_string(&log).unwrap(), format!("{}\nproc-mounted\n", b.rootfs().display()));
    env.finish();
}

/// A poststart hook that fails with a message, and a poststop hook that appends `poststop` to
/// `log` (to count its runs). With `procs` (a container's cgroup.procs), the poststart hook
/// first waits until two processes are there (the process and its background child), so
/// that stopping the container has more than the init to kill; it fails differently if they
/// never are.
fn failing_poststart(b: &mut Bundle, log: &std::path::Path, procs: Option<&std::path::Path>) {
    let wait = procs.map_or(String::new(), |p| {
        format!(
            "n=0; for i in $(seq 1000); do n=$(wc -l < {p}); [ $n -ge 2 ] && break; sleep 0.01; done; \
             [ $n -ge 2 ] || {{ echo background-never-started >&2; exit 4; }}; ",
            p = p.display()
        )
    });
    b.set(
        "/hooks",
        json!({
            "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", format!("{wait}echo hook-says-no >&2; exit 3")]}],
            "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo poststop >> {}", log.display())]}],
        }),
    );
}

#[track_caller]
fn assert_poststart_failure(out: &Out) {
    out.code_is(1);
    for needle in ["hooks.poststart[0]", "exit status: 3", "hook-says-no"] {
        assert!(out.stderr.contains(needle), "the error lacks {needle:?}: {out:?}");
    }
}

/// Reaps the zombies that a container without a pid namespace left to this process (the
/// subreaper of its killed processes). Only dead ones: a live process is a leak to report.
fn reap_zombies_of(id: &str) {
    let me = std::process::id() as i32;
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let cgroup = fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        if parent_of(pid) == Some(me) && proc_state(pid) == Some('Z') && cgroup.contains(id) {
            let _ =
                rustix::process::waitpid(rustix::process::Pid::from_raw(pid), rustix::process::WaitOptions::empty());
        }
    }
}

#[test]
fn failing_poststart_hook_fails_run_and_removes_the_container() {
    // runtime-spec PR 1262 and runc: a failing poststart hook is an error; the container is
    // stopped and, for `run`, destroyed (poststop hooks included) like any failed run.
    let env = Env::new();
    // Without a pid namespace the init's death takes nothing else down: the background
    // sleep must be killed too (the leak probe looks for any process in the cgroups).
    for (label, detach, pidns) in [("detached", true, true), ("fg", false, true), ("hostpid", true, false)] {
        let mut b = env.bundle(&["sh", "-c", "sleep 100000 & exec sleep 100000"]);
        if !pidns {
            b.drop_namespace("pid");
        }
        let id = env.id(&format!("poststart-run-{label}"));
        let log = b.file("poststop.log");
        failing_poststart(&mut b, &log, Some(&v1_cgroup_dir("pids", &id).join("cgroup.procs")));
        let probe = LeakProbe::with_bundle(&id, env.root(), &b);
        let mut args = vec!["run", "--bundle", b.dir(), &id];
        if detach {
            args.insert(1, "-d");
        }
        // Output to files, and a deadline: with the container left running, a foreground
        // run would wait for `sleep 100000`.
        let (o, e) = (b.file(&format!("{label}.out")), b.file(&format!("{label}.err")));
        let mut child = env
            .command(&args)
            .stdout(fs::File::create(&o).unwrap())
            .stderr(fs::File::create(&e).unwrap())
            .spawn()
            .unwrap();
        let mut status = None;
        wait_until(|| {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "berth {} did not return: the container kept running after its poststart hook failed",
                args.join(" ")
            );
        };
        let out = Out {
            cmd: format!("berth {}", args.join(" ")),
            code: status.code(),
            stdout: fs::read_to_string(&o).unwrap(),
            stderr: fs::read_to_string(&e).unwrap(),
        };
        assert_poststart_failure(&out);
        reap_zombies_of(&id);
        probe.assert_clean();
        assert_eq!(fs::read_to_string(&log).unwrap_or_default(), "poststop\n", "{label}: poststop hooks run once");
    }
    env.finish();
}

#[test]
fn failing_poststart_hook_fails_start_and_stops_the_container() {
    // `start` reports the failure and stops the container; what is left is a stopped
    // container, which `delete` removes (running poststop), as after any process exit.
    // Without a pid namespace, stopping it kills every process in its cgroups.
    let env = Env::new();
    for (label, pidns) in [("pidns", true), ("hostpid", false)] {
        let mut b = env.bundle(&["sh", "-c", "sleep 100000 & exec sleep 100000"]);
        if !pidns {
            b.drop_namespace("pid");
        }
        let id = env.id(&format!("poststart-start-{label}"));
        let log = b.file("poststop.log");
        let procs = v1_cgroup_dir("pids", &id).join("cgroup.procs");
        failing_poststart(&mut b, &log, Some(&procs));
        let pid = env.create(&b, &id);
        assert_poststart_failure(&env.berth(&["start", &id]));
        assert_eq!(env.status(&id), "stopped");
        assert_eq!(fs::read_to_string(&procs).unwrap(), "", "{label}: processes left running in the container");
        assert_eq!(env.reap(pid), 128 + 9, "the init was not killed");
        reap_zombies_of(&id);
        assert!(!log.exists(), "poststop ran before delete");
        env.berth(&["delete", &id]).ok();
        assert_eq!(fs::read_to_string(&log).unwrap(), "poststop\n");
    }
    env.finish();
}

/// Runs the bundle with `berth run FLAGS` from a shell that first runs `prelude` (opening
/// descriptors, exporting variables); returns the descriptor numbers `ls -1` printed before
/// the `LISTEN_FDS=` line, in numeric order, and the whole output.
fn fds_in_container(env: &Env, b: &Bundle, prelude: &str, flags: &str, id: &str) -> (Vec<String>, String) {
    let script =
        format!("{prelude}; exec {BERTH} --root {} run {flags} --bundle {} {id}", env.root().display(), b.dir());
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut fds: Vec<u32> =
        text.lines().take_while(|l| !l.starts_with("LISTEN_FDS=")).filter_map(|l| l.trim().parse().ok()).collect();
    fds.sort_unstable();
    (fds.iter().map(u32::to_string).collect(), text)
}

#[test]
fn only_stdio_preserved_and_listen_fds_reach_the_process() {
    let env = Env::new();
    // No pipeline: while a pipeline starts, the shell itself briefly holds its pipe ends,
    // and `ls` would race with that and list them.
    let mut b = env.bundle(&["sh", "-c", "ls -1 /proc/$$/fd; echo LISTEN_FDS=$LISTEN_FDS"]);
    b.set("/process/env", json!(["PATH=/bin"]));
    // The shell leaks descriptors 4 and 5 (a host directory, like CVE-2024-21626's leaked
    // cgroup fd) into berth; only 3 is meant for the container (--preserve-fds 1).
    let (fds, text) = fds_in_container(&env, &b, "exec 3</dev/null 4</ 5</tmp", "--preserve-fds 1", &env.id("fds"));
    assert_eq!(fds, ["0", "1", "2", "3"], "descriptors in the container: {text}");
    assert!(text.contains("LISTEN_FDS=\n"), "{text}");
    // Socket activation: LISTEN_FDS=2 for berth's own pid passes 3 and 4 and tells the
    // container.
    let prelude = "exec 3</dev/null 4</dev/null 5</; export LISTEN_FDS=2 LISTEN_PID=$$";
    let (fds, text) = fds_in_container(&env, &b, prelude, "", &env.id("listen"));
    assert_eq!(fds, ["0", "1", "2", "3", "4"], "descriptors in the container: {text}");
    assert!(text.contains("LISTEN_FDS=2\n"), "{text}");
    env.finish();
}

#[test]
fn fd_audit_of_a_created_init() {
    // runc's "detect fd leak as comprehensively as possible": between create and start the
    // init holds only stdio, its exec fifo and the channel it reports on; after start only
    // what the process opened itself.
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("audit");
    let pid = env.create(&b, &id);
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let entry = entry.unwrap();
        let fd: i32 = entry.file_name().to_string_lossy().parse().unwrap();
        let target = fs::read_link(entry.path()).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        if fd <= 2 {
            continue;
        }
        assert!(
            target.ends_with("exec.fifo") || target.starts_with("socket:"),
            "unexpected descriptor {fd} -> {target} in the created init"
        );
        let flags = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
        let f = flags.lines().find(|l| l.starts_with("flags:")).unwrap();
        let bits = u32::from_str_radix(f.split_whitespace().nth(1).unwrap(), 8).unwrap();
        assert_ne!(bits & libc::O_CLOEXEC as u32, 0, "descriptor {fd} -> {target} is not close-on-exec");
    }
    env.berth(&["start", &id]).ok();
    env.wait_status(&id, "running");
    let _ = wait_until(|| fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p.ends_with("busybox")));
    let fds: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut fds: Vec<i32> = fds.iter().map(|f| f.parse().unwrap()).collect();
    fds.sort_unstable();
    assert_eq!(fds, [0, 1, 2], "descriptors of the running process");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn ps_json_is_an_array_of_host_pids_and_kill_all_reaches_every_process() {
    let env = Env::new();
    let b = env.bundle(&["sh", "-c", "sleep 100000 & sleep 100000 & wait"]);
    let id = env.id("psall");
    let pid = env.run_detached(&b, &id);
    let mut pids: Vec<i32> = Vec::new();
    assert!(
        wait_until(|| {
            pids = serde_json::from_str(env.berth(&["ps", "--format", "json", &id]).ok()).unwrap();
            pids.len() == 3
        }),
        "expected 3 processes, got {pids:?}"
    );
    for p in &pids {
        let cmd = fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap();
        assert!(cmd.starts_with("sh") || cmd.starts_with("sleep"), "pid {p} is {cmd:?}, not a container process");
    }
    env.berth(&["kill", "--all", &id, "KILL"]).ok();
    env.reap(pid);
    assert!(
        wait_until(|| pids.iter().all(|p| proc_state(*p).is_none_or(|s| s == 'Z'))),
        "a process survived kill --all"
    );
    let _: Value = env.state(&id);
    env.berth(&["delete", &id]).ok();
    env.finish();
}

#[test]
fn the_terminal_belongs_to_the_process_user_for_run_and_exec() {
    // runc hands the pty to the process user (fixStdioPermissions chowns the uid; the group
    // is devpts' gid=5, "tty", in runc's default spec), so that the user owns its terminal:
    // mesg, write, and programs that reopen it. Checked for the init (create + start) and
    // for `exec -t --user`.
    let env = Env::new();
    let probe = "stat -c %u:%g $(tty); echo OWNER-DONE; sleep 1000";
    let mut b = env.bundle(&["sh", "-c", probe]);
    b.set("/process/terminal", json!(true)).set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let id = env.id("tty-owner");
    let sock = b.file("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let (out, (master, _)) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            env.detached(&b, &id, &["create", "--console-socket", sock.to_str().unwrap(), "--bundle", b.dir(), &id])
        });
        let got = recv_master(&listener);
        (h.join().unwrap(), got)
    });
    out.ok();
    let pid = env.pid_of(&id);
    env.berth(&["start", &id]).ok();
    let text = read_until(master.as_fd(), "OWNER-DONE");
    assert!(text.contains("1000:5"), "the init's terminal is not 1000:tty: {text:?}");
    for user in ["1000:1000", "2000:3000"] {
        // A detached exec process is re-parented to us (the subreaper) and must be reaped,
        // or the container's init could not finish dying when it is deleted.
        let pidfile = b.file("exec.pid");
        let (out, (xmaster, _)) = std::thread::scope(|s| {
            let h = s.spawn(|| {
                env.berth(&[
                    "exec",
                    "-d",
                    "-t",
                    "--pid-file",
                    pidfile.to_str().unwrap(),
                    "--console-socket",
                    sock.to_str().unwrap(),
                    "--user",
                    user,
                    &id,
                    "sh",
                    "-c",
                    "stat -c %u:%g $(tty); echo EXEC-DONE; sleep 1",
                ])
            });
            let got = recv_master(&listener);
            (h.join().unwrap(), got)
        });
        out.ok();
        let text = read_until(xmaster.as_fd(), "EXEC-DONE");
        env.reap(fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap());
        let uid = &user[..user.find(':').unwrap()];
        assert!(text.contains(&format!("{uid}:5")), "exec -t --user {user}: terminal not {uid}:tty: {text:?}");
    }
    env.berth(&["delete", "--force", &id]).ok();
    env.reap(pid);
    env.finish();
}
