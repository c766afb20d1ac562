//! Leak checks: after many create/start/exec/delete cycles, including failing ones, nothing is
//! left: no descriptor in the engine process, no monitor or container process, no zombie, no
//! cgroup directory, no state directory. A test binary of its own, so no other test opens or
//! closes descriptors while the count is taken.

mod common;

use std::io::Write;
use std::path::Path;

use berth_client::Client;
use berth_core::{Client as _, ErrorKind};
use common::*;

fn fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_default();
            format!("{} -> {target}", e.file_name().to_string_lossy())
        })
        .collect();
    v.sort();
    v
}

fn children_of(ppid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let parent = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)).and_then(|p| p.parse().ok());
        if parent == Some(ppid) {
            out.push(pid);
        }
    }
    out
}

fn cycle(c: &Client, rec: &Recorder, i: usize, ids: &mut Vec<String>) {
    let id = id(&format!("leak{i}"));
    ids.push(id.clone());
    c.create(&id, &spec(&["cat"]), None).unwrap();
    let mut slot = None;
    c.start(&id, None, true, &mut collect_into(&mut slot)).unwrap();
    let mut io = slot.unwrap();
    let mut eslot = None;
    c.exec(&id, "e", &process(&["echo", "x"]), false, &mut collect_into(&mut eslot)).unwrap();
    let e = c
        .exec(&id, "bad", &process(&["sleep", "100"]), true, &mut |_| Err(berth_core::Error::system("no")))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::System);
    let e = c.exec(&id, "noexe", &process(&["/nope"]), false, &mut |_| Ok(())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidParameter);
    rec.wait_exit(&id, "e");
    assert_eq!(eslot.unwrap().finish().0, "x\n");
    let mut w = io.stdin.take().unwrap();
    w.write_all(b"bye").unwrap();
    w.close().unwrap();
    rec.wait_exit(&id, &id);
    assert_eq!(io.finish().0, "bye");
    assert_eq!(c.delete_task(&id).unwrap().0, 0);
    c.delete(&id).unwrap();

    // Error paths: a create that fails in the container's init, a created container
    // deleted without being started, a start whose attach fails.
    let bad = common::id(&format!("leakbad{i}"));
    ids.push(bad.clone());
    assert!(c.create(&bad, &spec(&["/no/such/binary"]), None).is_err());
    let created = common::id(&format!("leakcreated{i}"));
    ids.push(created.clone());
    c.create(&created, &spec(&["true"]), None).unwrap();
    assert!(c.start(&created, None, true, &mut |_| Err(berth_core::Error::system("no"))).is_err());
    c.delete(&created).unwrap();
}

#[test]
fn cycles_leave_nothing_behind() {
    let rec = Recorder::new();
    let c = client_with(rec.clone());
    let root = c.root().to_path_buf();
    let root_s = root.to_string_lossy().into_owned();
    let helper = c.helper_pid();
    let mut ids = Vec::new();
    // One warm-up cycle: threads and lazily opened descriptors of the test itself.
    cycle(&c, &rec, 0, &mut ids);
    let before = fds();
    for i in 1..=25 {
        cycle(&c, &rec, i, &mut ids);
    }
    let after = fds();
    assert_eq!(before, after, "descriptors leaked in the engine process");

    // Monitors exit after delete and the helper reaps them: no child, no zombie.
    eventually("every monitor to be reaped", || children_of(helper).is_empty());
    assert_eq!(pids_mentioning(&root_s), [helper]);
    let left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".berth-helper"))
        .collect();
    assert!(left.is_empty(), "state left behind: {left:?}");
    for id in &ids {
        for d in cgroup_dirs(id) {
            assert!(!d.exists(), "cgroup {} left behind", d.display());
        }
    }
    // The helper exits with its last client and is reaped by it.
    drop(c);
    assert!(
        !Path::new(&format!("/proc/{helper}")).exists(),
        "helper {helper} still exists after the client was dropped"
    );
    assert!(pids_mentioning(&root_s).is_empty());
}
