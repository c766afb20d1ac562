//! VM isolation through the embedding API (docs/vm-isolation.md): the same `create`, `start`,
//! `exec`, stdio and events as for any container, with the annotation
//! `org.berth.isolation=vm` in the spec. The monitor forks the VM supervisor where it would
//! fork a native init. One boot (seconds under TCG).
//!
//! Without the guest image (`scripts/vm-image`, run by scripts/test) or QEMU the test says
//! SKIPPED with the reason.

mod common;

use std::io::Write;
use std::path::Path;

use berth_core::{Client as _, Status};
use common::*;

fn missing() -> Option<String> {
    if !Path::new("/usr/bin/qemu-system-x86_64").exists() {
        return Some("qemu-system-x86_64 missing (apt-get install qemu-system-x86)".into());
    }
    // The helper (berth-monitor) is built beside the test's target directory.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = target.join("vm");
    if !dir.join("vmlinuz").exists() || !dir.join("initramfs.cpio").exists() {
        return Some(format!("no guest image in {} (scripts/vm-image)", dir.display()));
    }
    None
}

#[test]
fn a_vm_container_through_the_api() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED a_vm_container_through_the_api: {why}");
        return;
    }
    let t = std::time::Instant::now();
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let id = id("vm");
    let mut s = spec(&["sh", "-c", "read line; echo \"out:$line\"; busybox uname -r; echo err >&2; exit 3"]);
    s.set_annotations(Some([("org.berth.isolation".to_string(), "vm".to_string())].into_iter().collect()));
    c.create(&id, &s, None).unwrap();
    assert_eq!(c.status(&id).unwrap(), Status::Created);
    // The VM's processes are in the container's host cgroup.
    let qemu = pids_mentioning(&c.root().join(&id).to_string_lossy())
        .into_iter()
        .find(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(b"/usr/bin/qemu-system")))
        .expect("a QEMU for the container");
    let cg = std::fs::read_to_string(format!("/proc/{qemu}/cgroup")).unwrap();
    assert!(cg.contains(&id), "QEMU is not in the container's cgroup: {cg}");

    let mut slot = None;
    let pid = c.start(&id, None, true, &mut collect_into(&mut slot)).unwrap();
    let mut io = slot.unwrap();
    assert!(pid > 0);
    // exec while the init waits for its stdin: it runs in the guest.
    let mut eslot = None;
    c.exec(&id, "e1", &process(&["busybox", "uname", "-r"]), false, &mut collect_into(&mut eslot)).unwrap();
    let eexit = rec.wait_exit(&id, "e1");
    assert_eq!(eexit.info.exit_code, 0);
    let (eout, _) = eslot.unwrap().finish();
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_string();
    assert!(eout.contains("cloud-amd64") && eout.trim() != host, "exec in the VM: {eout:?}");

    // The processes and statistics are the guest's: the init's shell (waiting for its stdin),
    // with a guest pid; not the supervisor (the pid `start` returned), QEMU or virtiofsd.
    let pids = c.list_pids(&id).unwrap();
    assert!(!pids.is_empty() && !pids.contains(&pid) && !pids.contains(&qemu), "list_pids: {pids:?}");
    let summary = c.summary(&id).unwrap();
    let sh = summary.iter().find(|p| p.args.first().map(String::as_str) == Some("sh"));
    let sh = sh.unwrap_or_else(|| panic!("no shell in the summary: {summary:?}"));
    assert!(sh.args.iter().any(|a| a.contains("read line")) && pids.contains(&sh.pid), "{summary:?}");
    assert!(summary.iter().all(|p| !p.command.contains("qemu")), "{summary:?}");
    let stats = c.stats(&id).unwrap();
    let mem = stats.metrics.memory.usage.usage;
    assert!(mem > 0 && mem < 64 << 20, "memory usage {mem} is not the guest container's");
    assert!((1..=4).contains(&stats.metrics.pids.current), "pids.current {}", stats.metrics.pids.current);

    let mut stdin = io.stdin.take().expect("stdin writer");
    stdin.write_all(b"hi\n").unwrap();
    stdin.close().unwrap();
    let exit = rec.wait_exit(&id, &id);
    assert_eq!(exit.info.exit_code, 3);
    assert_eq!(exit.info.pid, pid);
    let (out, err) = io.finish();
    assert!(out.starts_with("out:hi\n") && out.contains("cloud-amd64"), "{out:?}");
    assert_eq!(err, "err\n");
    assert_eq!(
        rec.trace(&id),
        ["create:init", "start:init", "exec-added:e1", "exec-started:e1", "exit:e1", "exit:init"]
    );
    let (code, _) = c.delete_task(&id).unwrap();
    assert_eq!(code, 3);
    c.delete(&id).unwrap();
    assert!(!c.root().join(&id).exists());
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let left: Vec<u32> = pids_mentioning(&c.root().join(&id).to_string_lossy());
    assert!(left.is_empty(), "processes of the VM left: {left:?}");
    eprintln!("VM API test: {:.1}s", t.elapsed().as_secs_f64());
}
