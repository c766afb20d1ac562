//! VM isolation through the CLI (`org.berth.isolation=vm`, docs/vm-isolation.md): real QEMU
//! (microvm, TCG here), Debian's cloud kernel, virtiofsd, the guest agent. Each test boots a
//! VM (seconds under TCG), so there are few, each checking several things of one boot.
//!
//! They need the guest image (`scripts/vm-image`, which `scripts/test` runs); without it (or
//! without QEMU) each test says SKIPPED with the reason, except the missing-asset tests,
//! which need nothing.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;
use serde_json::json;

/// Why the VM tests cannot run here, if they cannot. The guest image is (re)built once per
/// test binary with the agent of this checkout (`cargo build -p berth-vm-agent`, then
/// `scripts/vm-image`, both no-ops when up to date): the tests skip only when it cannot be
/// built (no QEMU, no network for the kernel download, no busybox-static, ...).
fn missing() -> Option<String> {
    static WHY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    WHY.get_or_init(|| {
        if !Path::new("/usr/bin/qemu-system-x86_64").exists() {
            return Some("qemu-system-x86_64 missing (apt-get install qemu-system-x86)".into());
        }
        let exe = PathBuf::from(BERTH);
        let Some(target) = exe.ancestors().nth(2).map(Path::to_path_buf) else {
            return Some(format!("no target directory above {}", exe.display()));
        };
        let dir = target.join("vm");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut build = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"));
        build.args(["build", "-q", "-p", "berth-vm-agent"]).current_dir(&repo);
        if exe.parent().is_some_and(|d| d.ends_with("release")) {
            build.arg("--release");
        }
        let agent = exe.with_file_name("berth-vm-agent");
        if !build.status().map(|s| s.success()).unwrap_or(false) {
            return Some("building berth-vm-agent failed".into());
        }
        match std::process::Command::new(repo.join("scripts/vm-image")).arg(&dir).arg(&agent).output() {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "scripts/vm-image {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("scripts/vm-image: {e}")),
        }
    })
    .clone()
}

macro_rules! need_vm {
    ($name:expr) => {
        if let Some(why) = missing() {
            skipped($name, &why);
            return;
        }
    };
}

fn skipped(name: &str, why: &str) {
    eprintln!("SKIPPED {name}: {why}");
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.log");
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(log) {
        use std::io::Write;
        let _ = writeln!(f, "vm::{name}: {why}");
    }
}

/// Records how long a VM test took (reported by scripts/test: the VM tests' share of CI).
fn timed(name: &str, t: Instant) {
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vm-test-times.log");
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(log) {
        use std::io::Write;
        let _ = writeln!(f, "{name} {:.1}s", t.elapsed().as_secs_f64());
    }
}

fn vm_bundle(env: &Env, args: &[&str]) -> Bundle {
    let mut b = env.bundle_own(args);
    b.set("/annotations", json!({"org.berth.isolation": "vm"}));
    b.write();
    b
}

fn host_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_string()
}

/// The QEMU process of a VM container: the supervisor's child running qemu-system.
fn qemu_of(supervisor: i32) -> Option<i32> {
    let children = fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children")).ok()?;
    children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()).find(|p| {
        fs::read(format!("/proc/{p}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("qemu-system"))
            .unwrap_or(false)
    })
}

#[test]
fn vm_run_output_exit_code_guest_kernel_and_shared_rootfs() {
    need_vm!("vm_run_output_exit_code_guest_kernel_and_shared_rootfs");
    let t = Instant::now();
    let env = Env::new();
    // (The allocation is the memory test's negative control: without a limit it succeeds.)
    let script = "echo out; echo err >&2; uname -r; cat /data/from-host; echo guest-wrote > /data/from-guest; \
                  head -c 48000000 /dev/zero | tail > /dev/null; echo tail-status $?; exit 3";
    let mut b = vm_bundle(&env, &["sh", "-c", script]);
    b.set("/root/readonly", json!(false));
    b.write();
    fs::write(b.rootfs().join("data/from-host"), "host-wrote\n").unwrap();
    let id = env.id("vmrun");
    let probe = LeakProbe::with_bundle(&id, env.root(), &b);
    let out = env.berth(&["run", "--bundle", b.dir(), &id]);
    out.code_is(3);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"out"), "{out:?}", out = out.stdout);
    assert!(out.stderr.contains("err"), "stderr: {}", out.stderr);
    // The guest's own kernel: Debian's cloud kernel, not the host's.
    let guest = lines.get(1).copied().unwrap_or_default();
    assert!(guest.contains("cloud-amd64"), "uname -r in the VM: {guest:?}");
    assert_ne!(guest, host_release());
    // The rootfs is shared both ways, read-write.
    assert_eq!(lines.get(2), Some(&"host-wrote"));
    assert_eq!(fs::read_to_string(b.rootfs().join("data/from-guest")).unwrap(), "guest-wrote\n");
    assert_eq!(lines.get(3), Some(&"tail-status 0"), "without a memory limit: {lines:?}");
    probe.assert_clean();
    // Negative control: the same bundle without the annotation runs on the host's kernel.
    let native = env.bundle(&["uname", "-r"]);
    native.write();
    let nid = env.id("native");
    let out = env.berth(&["run", "--bundle", native.dir(), &nid]);
    assert_eq!(out.ok().trim(), host_release());
    env.finish();
    timed("vm_run_output_exit_code_guest_kernel_and_shared_rootfs", t);
}

#[test]
fn vm_lifecycle_exec_signals_pause_resume() {
    need_vm!("vm_lifecycle_exec_signals_pause_resume");
    let t = Instant::now();
    let env = Env::new();
    let b = vm_bundle(
        &env,
        &[
            "sh",
            "-c",
            "trap 'echo got-TERM; exit 7' TERM; trap 'echo got-RT' 37; echo started; while true; do sleep 0.1; done",
        ],
    );
    let id = env.id("vmlife");
    let probe = LeakProbe::with_bundle(&id, env.root(), &b);
    let sup = env.create(&b, &id);
    assert_eq!(env.status(&id), "created");
    // The supervisor holds the VM: QEMU is its child, in the container's host cgroup.
    let qemu = qemu_of(sup).expect("QEMU is a child of the supervisor");
    // In every hierarchy, v1 controllers included (memory: the guest's RAM is charged to the
    // container; freezer: pause stops the VM), not only the cgroup2 one clone3 places it in.
    let cg = fs::read_to_string(format!("/proc/{qemu}/cgroup")).unwrap();
    for line in
        cg.lines().filter(|l| ["memory", "pids", "freezer", "cpu", ""].iter().any(|c| l.split(':').nth(1) == Some(*c)))
    {
        assert!(line.ends_with(&id), "QEMU is not in the container's cgroup: {line} (all: {cg})");
    }
    assert!(cg.lines().any(|l| l.contains(":memory:")) || !std::path::Path::new("/sys/fs/cgroup/memory").exists());
    env.berth(&["start", &id]).ok();
    assert!(wait_until(|| env.output_of(&b, &id).contains("started")), "no output: {}", env.output_of(&b, &id));
    assert_eq!(env.status(&id), "running");
    // ps lists the container's processes in the guest (guest pids, from the agent), not the
    // host processes that hold the VM (the supervisor, QEMU, virtiofsd) in its host cgroup.
    let pids: Vec<i32> = serde_json::from_str(env.berth(&["ps", "--format", "json", &id]).ok().trim()).unwrap();
    assert!(!pids.is_empty(), "ps --format json: no processes");
    assert!(
        !pids.contains(&sup) && !pids.contains(&qemu),
        "ps --format json lists host processes: {pids:?} (supervisor {sup}, QEMU {qemu})"
    );
    let table = env.berth(&["ps", &id]).ok().to_string();
    assert!(table.lines().next().is_some_and(|h| h.contains("PID") && h.contains("CMD")), "ps header: {table}");
    assert!(!table.contains("qemu") && !table.contains("virtiofsd"), "ps lists the VM's host processes: {table}");
    // The container's init (its shell, with the trap in its command line) is a row, and its
    // pid is one of the JSON list's (the init does not change; its `sleep`s come and go).
    let init_row = table.lines().find(|l| l.contains("trap")).unwrap_or_else(|| panic!("no init in ps: {table}"));
    let init_pid: i32 = init_row.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap();
    assert!(pids.contains(&init_pid), "the init's pid {init_pid} is not in {pids:?}");
    env.berth(&["ps", &id, "-o", "pid"]).fails_with("not supported for a VM container");
    // Stats are the guest container cgroup's: a shell and a sleep use a few MiB in the guest,
    // where the host cgroup holds the whole VM (QEMU: hundreds of MiB).
    let ev: serde_json::Value = serde_json::from_str(env.berth(&["events", "--stats", &id]).ok().trim()).unwrap();
    let mem = ev["data"]["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    assert!(mem > 0 && mem < 64 << 20, "memory usage {mem} is not the guest container's: {ev}");
    let npids = ev["data"]["pids"]["current"].as_u64().unwrap_or(0);
    assert!((1..=8).contains(&npids), "pids.current {npids} is not the guest container's: {ev}");
    assert!(ev["data"]["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "no CPU usage: {ev}");
    // The guest has loopback only (excluded), so no interface: the host's (the supervisor's
    // network namespace is the host's) must not show through.
    let ifaces = ev["data"]["network_interfaces"].as_array().cloned().unwrap_or_default();
    assert!(ifaces.is_empty(), "network interfaces of the host in the VM container's stats: {ifaces:?}");
    // exec: output and exit status through the stand-in; it sees the container's init.
    let out = env.berth(&["exec", &id, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; exit 5"]);
    out.code_is(5);
    assert!(out.stdout.contains("trap"), "exec saw: {}", out.stdout);
    // exec -t: a terminal in the guest, relayed through the stand-in's host PTY (negative
    // control: the same probe without -t sees no terminal).
    let out = env.berth(&["exec", "-t", &id, "sh", "-c", "test -t 0 && test -t 1 && echo exec-tty; exit 4"]);
    out.code_is(4);
    assert!(out.stdout.contains("exec-tty"), "exec -t: {}", out.stdout);
    let out = env.berth(&["exec", &id, "sh", "-c", "test -t 1 && echo exec-tty; exit 0"]);
    assert!(!out.ok().contains("exec-tty"), "exec without -t has a terminal");
    // A failing exec is an error, as natively.
    env.berth(&["exec", &id, "/no/such/binary"]).fails_with("no/such/binary");
    // pause/resume freeze the whole VM (supervisor, QEMU, virtiofsd) through the freezer.
    env.berth(&["pause", &id]).ok();
    assert_eq!(env.status(&id), "paused");
    let st = fs::read_to_string(format!("/proc/{qemu}/status")).unwrap();
    env.berth(&["exec", &id, "true"]).fails_with("paused");
    // A frozen VM cannot answer: ps and stats say so at once rather than hang.
    env.berth(&["ps", &id]).fails_with("paused");
    env.berth(&["events", "--stats", &id]).fails_with("paused");
    env.berth(&["resume", &id]).ok();
    assert_eq!(
        env.status(&id),
        "running",
        "QEMU while paused: {}",
        st.lines().find(|l| l.starts_with("State")).unwrap_or("")
    );
    env.berth(&["exec", &id, "true"]).ok();
    // A real-time signal is forwarded too (systemd stops on SIGRTMIN+3), and the VM lives on.
    env.berth(&["kill", &id, "37"]).ok();
    assert!(
        wait_until(|| env.output_of(&b, &id).contains("got-RT")),
        "SIGRTMIN+3 did not reach the guest; supervisor alive: {}, status {}",
        fs::metadata(format!("/proc/{sup}")).is_ok(),
        env.status(&id)
    );
    assert_eq!(env.status(&id), "running");
    // A signal reaches the guest's init, whose exit status becomes the container's.
    env.berth(&["kill", &id, "TERM"]).ok();
    assert_eq!(env.reap(sup), 7);
    assert!(env.output_of(&b, &id).contains("got-TERM"));
    assert_eq!(env.status(&id), "stopped");
    // A stopped container has no VM to ask.
    env.berth(&["ps", "--format", "json", &id]).fails_with("stopped");
    env.berth(&["delete", &id]).ok();
    probe.assert_clean();
    env.finish();
    timed("vm_lifecycle_exec_signals_pause_resume", t);
}

#[test]
fn vm_terminal_and_memory_limit_inside_the_guest() {
    need_vm!("vm_terminal_and_memory_limit_inside_the_guest");
    let t = Instant::now();
    let env = Env::new();
    // A terminal of the given size, and the memory limit enforced by the guest's cgroup:
    // 48 MB held by `tail` (no newline: it keeps everything) under a 32 MiB limit is
    // OOM-killed inside the guest.
    let script = "test -t 0 && echo is-a-tty; stty size; cat /sys/fs/cgroup/memory.max; \
                  head -c 48000000 /dev/zero | tail > /dev/null; echo tail-status $?";
    let mut b = vm_bundle(&env, &["sh", "-c", script]);
    b.set("/process/terminal", json!(true));
    b.set("/process/consoleSize", json!({"height": 30, "width": 100}));
    b.set("/linux/resources/memory", json!({"limit": 32 << 20, "swap": 32 << 20}));
    b.write();
    let id = env.id("vmtty");
    let probe = LeakProbe::with_bundle(&id, env.root(), &b);
    let out = env.berth(&["run", "--bundle", b.dir(), &id]);
    let text = out.stdout.replace('\r', "");
    out.code_is(0);
    assert!(text.contains("is-a-tty"), "{text}");
    assert!(text.contains("30 100"), "stty size: {text}");
    assert!(text.contains(&(32u64 << 20).to_string()), "memory.max in the guest: {text}");
    assert!(text.contains("tail-status 137"), "the allocation was not OOM-killed in the guest: {text}");
    probe.assert_clean();
    env.finish();
    timed("vm_terminal_and_memory_limit_inside_the_guest", t);
}

/// Runs a VM container detached, breaks its VM with `breaker`, and checks the result: the
/// container exits with 255, `vm/failure` (and the container's stderr) say why, and after
/// `delete` nothing is left.
fn vm_failure(
    name: &str,
    script: &str,
    env_vars: &[(&str, &str)],
    breaker: impl FnOnce(&Env, &Bundle, i32),
    why: &str,
) {
    let env = Env::new();
    let mut b = vm_bundle(&env, &["sh", "-c", script]);
    b.remove("/linux/readonlyPaths");
    b.set("/process/capabilities/bounding", json!(["CAP_SYS_ADMIN", "CAP_KILL"]));
    b.set("/process/capabilities/effective", json!(["CAP_SYS_ADMIN", "CAP_KILL"]));
    b.set("/process/capabilities/permitted", json!(["CAP_SYS_ADMIN", "CAP_KILL"]));
    b.write();
    let id = env.id(name);
    let probe = LeakProbe::with_bundle(&id, env.root(), &b);
    let mut cmd = env.command(&["run", "-d", "--bundle", b.dir(), &id]);
    cmd.stdout(fs::File::create(b.file("out")).unwrap()).stderr(fs::File::create(b.file("err")).unwrap());
    for (k, v) in env_vars {
        cmd.env(k, v);
    }
    assert!(cmd.status().unwrap().success(), "run -d: {}", fs::read_to_string(b.file("err")).unwrap());
    let sup = env.pid_of(&id);
    breaker(&env, &b, sup);
    assert_eq!(env.reap(sup), 255);
    assert_eq!(env.status(&id), "stopped");
    let failure = fs::read_to_string(env.root().join(&id).join("vm/failure")).unwrap();
    assert!(failure.contains(why), "vm/failure: {failure}");
    let err = fs::read_to_string(b.file("err")).unwrap();
    assert!(err.contains("VM failure") && err.contains(why), "container stderr: {err}");
    env.berth(&["delete", &id]).ok();
    probe.assert_clean();
    env.finish();
}

#[test]
fn vm_qemu_killed_is_the_container_exit() {
    need_vm!("vm_qemu_killed_is_the_container_exit");
    let t = Instant::now();
    vm_failure(
        "vmq9",
        "while true; do sleep 1; done",
        &[],
        |_, _, sup| {
            let q = qemu_of(sup).expect("QEMU");
            rustix::process::kill_process(rustix::process::Pid::from_raw(q).unwrap(), rustix::process::Signal::KILL)
                .unwrap();
        },
        "QEMU was killed by signal 9",
    );
    timed("vm_qemu_killed_is_the_container_exit", t);
}

#[test]
fn vm_agent_not_answering_is_the_container_exit() {
    need_vm!("vm_agent_not_answering_is_the_container_exit");
    let t = Instant::now();
    vm_failure(
        "vmhang",
        "while true; do sleep 1; done",
        &[("BERTH_VM_AGENT_TIMEOUT", "3"), ("BERTH_VM_PING_INTERVAL", "1")],
        |_, _, sup| {
            // A stopped QEMU answers nothing: the guest is as good as hung.
            let q = qemu_of(sup).expect("QEMU");
            rustix::process::kill_process(rustix::process::Pid::from_raw(q).unwrap(), rustix::process::Signal::STOP)
                .unwrap();
        },
        "stopped answering",
    );
    timed("vm_agent_not_answering_is_the_container_exit", t);
}

#[test]
fn vm_guest_kernel_panic_is_the_container_exit() {
    need_vm!("vm_guest_kernel_panic_is_the_container_exit");
    let t = Instant::now();
    vm_failure(
        "vmpanic",
        "while [ ! -e /tmp/go ]; do sleep 0.2; done; echo c > /proc/sysrq-trigger; sleep 100",
        &[],
        |_, b, _| fs::write(b.rootfs().join("tmp/go"), "").unwrap(),
        "guest kernel panic",
    );
    timed("vm_guest_kernel_panic_is_the_container_exit", t);
}

#[test]
fn vm_twenty_create_delete_cycles_leave_nothing() {
    need_vm!("vm_twenty_create_delete_cycles_leave_nothing");
    let t = Instant::now();
    let env = Env::new();
    let b = vm_bundle(&env, &["true"]);
    let n: usize = std::env::var("BERTH_VM_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    for i in 0..n {
        let id = env.id(&format!("vmcycle{i}"));
        let probe = LeakProbe::with_bundle(&id, env.root(), &b);
        env.detached(&b, &id, &["create", "--bundle", b.dir(), &id]).ok();
        let st = env.state(&id);
        if st["pid"].as_i64().unwrap_or(0) <= 0 {
            let vm = env.root().join(&id).join("vm");
            let read = |f: &str| fs::read_to_string(vm.join(f)).unwrap_or_default();
            panic!(
                "cycle {i}: created, then {st}\nfailure: {}\nvmm.log: {}\nconsole: {}",
                read("failure"),
                read("vmm.log"),
                read("console.log")
            );
        }
        let sup = env.pid_of(&id);
        assert!(qemu_of(sup).is_some(), "cycle {i}: no QEMU");
        env.berth(&["delete", "--force", &id]).ok();
        let _ = env.reap(sup);
        probe.assert_clean();
    }
    env.finish();
    timed("vm_twenty_create_delete_cycles_leave_nothing", t);
}

#[test]
fn vm_missing_qemu_or_kernel_names_the_package() {
    let env = Env::new();
    let b = vm_bundle(&env, &["true"]);
    for (var, value, needle) in [
        ("BERTH_VM_QEMU", "/nonexistent/qemu", "qemu-system-x86"),
        ("BERTH_VM_VIRTIOFSD", "/nonexistent/virtiofsd", "qemu-system-common"),
        ("BERTH_VM_DIR", "/nonexistent", "linux-image-cloud-amd64"),
    ] {
        let id = env.id("vmmissing");
        let probe = LeakProbe::with_bundle(&id, env.root(), &b);
        let mut cmd = env.command(&["create", "--bundle", b.dir(), &id]);
        cmd.env(var, value);
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{var}: {stderr}");
        assert!(stderr.contains(needle), "{var}: the error does not name {needle}: {stderr}");
        probe.assert_clean();
    }
    // A bad isolation value names the annotation.
    let mut bad = env.bundle(&["true"]);
    bad.set("/annotations", json!({"org.berth.isolation": "hyperv"}));
    bad.write();
    let id = env.id("vmbad");
    let probe = LeakProbe::with_bundle(&id, env.root(), &bad);
    // (The log line escapes the quotes of `annotations["org.berth.isolation"]`.)
    env.berth(&["create", "--bundle", bad.dir(), &id])
        .fails_with(r#"annotations[\"org.berth.isolation\"]"#)
        .fails_with("hyperv");
    probe.assert_clean();
    env.finish();
}
