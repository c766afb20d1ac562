//! VM isolation through containerd (docs/vm-isolation.md): `ctr run --annotation
//! org.berth.isolation=vm` with berth's shim runs the container in a microvm (QEMU under TCG
//! here, Debian's cloud kernel, the guest image `scripts/vm-image` builds in target/vm). One
//! boot for the foreground run and one for the detached container: each takes seconds.
//!
//! Without the guest image or QEMU the test says SKIPPED with the reason (scripts/test
//! builds the image, so CI runs it).

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const ANNOTATION: &str = "org.berth.isolation=vm";

fn missing() -> Option<String> {
    if !Path::new("/usr/bin/qemu-system-x86_64").exists() {
        return Some("qemu-system-x86_64 missing (apt-get install qemu-system-x86)".into());
    }
    let dir = shim_bin().parent().and_then(|d| d.parent()).map(|t| t.join("vm")).unwrap_or_default();
    if !dir.join("vmlinuz").exists() || !dir.join("initramfs.cpio").exists() {
        return Some(format!("no guest image in {} (scripts/vm-image)", dir.display()));
    }
    None
}

/// QEMU and virtiofsd processes serving containers under `dir` (their command lines name the
/// container's state directory or bundle).
fn vmm_processes(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if (cmd.contains("qemu-system") || cmd.contains("virtiofsd")) && cmd.contains(&needle) {
            found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn ctr_run_with_the_vm_annotation_runs_in_a_vm() {
    let _g = lock();
    if let Some(why) = missing() {
        eprintln!("SKIPPED ctr_run_with_the_vm_annotation_runs_in_a_vm: {why}");
        return;
    }
    let t = Instant::now();
    let mut c = Containerd::start();
    let host = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_string();
    let rt = ["--runtime", "io.containerd.berth.v2"];

    // Foreground: output, exit code, the guest's own kernel.
    let o = c.ctr(&[
        "run",
        rt[0],
        rt[1],
        "--rm",
        "--annotation",
        ANNOTATION,
        IMAGE,
        "vm-fg",
        "sh",
        "-c",
        "echo vm-out; uname -r; exit 3",
    ]);
    assert_out(&o, 3, "vm-out", "ctr run (vm)");
    let guest = o.stdout.lines().nth(1).unwrap_or_default().trim().to_string();
    assert!(guest.contains("cloud-amd64") && guest != host, "guest kernel {guest:?}, host {host:?}");
    // The runtime option `isolation = "vm"` (berth's shim settings file) instead of the
    // annotation.
    let conf = c.dir.path().join("vm.toml");
    fs::write(&conf, "isolation = \"vm\"\n").unwrap();
    let conf = conf.to_string_lossy().into_owned();
    let o = c.ctr(&["run", rt[0], rt[1], "--runtime-config-path", &conf, "--rm", IMAGE, "vm-opt", "uname", "-r"]);
    assert_out(&o, 0, "cloud-amd64", "ctr run with isolation = \"vm\"");
    // Negative control: without the annotation the same image runs on the host's kernel.
    let o = c.ctr(&["run", rt[0], rt[1], "--rm", IMAGE, "native-fg", "uname", "-r"]);
    assert_out(&o, 0, &host, "ctr run (native)");

    // Detached: exec, kill, delete; the events in the usual order.
    c.start_events();
    let o = c.ctr(&["run", rt[0], rt[1], "-d", "--annotation", ANNOTATION, IMAGE, "vm-d", "sleep", "1000"]);
    assert_eq!(o.code, 0, "ctr run -d (vm): {}{}", o.stdout, o.stderr);
    assert_eq!(c.task_status("vm-d"), "RUNNING");
    assert!(!vmm_processes(c.dir.path()).is_empty(), "no QEMU/virtiofsd for the VM container");
    let o = c.ctr(&["task", "exec", "--exec-id", "e1", "vm-d", "sh", "-c", "uname -r; exit 5"]);
    assert_out(&o, 5, "cloud-amd64", "ctr task exec (vm)");
    // Pids and Stats come from the guest: one process (the sleep), not the supervisor, QEMU
    // and virtiofsd that hold the VM in the host cgroup; the guest container's memory, not the
    // whole VM's.
    let task_pid = c
        .ctr(&["task", "ls"])
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("vm-d"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let o = c.ctr(&["task", "ps", "vm-d"]);
    assert_eq!(o.code, 0, "ps: {}", o.stderr);
    let rows: Vec<&str> = o.stdout.lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(rows.len(), 1, "ctr task ps (vm): {}", o.stdout);
    assert_ne!(rows[0].split_whitespace().next(), Some(task_pid.as_str()), "ps shows the supervisor: {}", o.stdout);
    let o = c.ctr(&["task", "metrics", "vm-d"]);
    assert_eq!(o.code, 0, "metrics: {}", o.stderr);
    let value = |key: &str| -> u64 {
        let line = o.stdout.lines().find(|l| l.split_whitespace().next() == Some(key));
        line.and_then(|l| l.split_whitespace().last()).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
    };
    assert_eq!(value("pids.current"), 1, "metrics (vm): {}", o.stdout);
    let mem = value("memory.usage_in_bytes");
    assert!(mem > 0 && mem < 64 << 20, "memory usage {mem} is not the guest container's: {}", o.stdout);
    let o = c.ctr(&["task", "kill", "-s", "KILL", "vm-d"]);
    assert_eq!(o.code, 0, "kill: {}", o.stderr);
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.task_status("vm-d") != "STOPPED" {
        assert!(Instant::now() < deadline, "the VM task did not stop after SIGKILL");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.ctr(&["task", "delete", "vm-d"]).code, 0);
    assert_eq!(c.ctr(&["containers", "rm", "vm-d"]).code, 0);
    let got = c.task_events("vm-d");
    let want = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added e1",
        "/tasks/exec-started e1",
        "/tasks/exit e1",
        "/tasks/exit",
        "/tasks/delete",
    ];
    assert_eq!(got, want, "task events of the VM container");
    // Nothing of the VMs is left.
    let left = vmm_processes(c.dir.path());
    assert!(left.is_empty(), "VM processes left: {left:?}");
    drop(c);
    eprintln!("VM shim test: {:.1}s", t.elapsed().as_secs_f64());
}
