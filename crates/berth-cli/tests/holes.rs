//! Holes the public OCI conformance suites (runtime-tools validation, runc's integration tests,
//! crun's tests, youki's contest) found in berth, which runc and crun do not have. Each test
//! fails on a berth with the hole (see docs/security.md, "Found by the conformance suites").
//!
//! Run as root against the real kernel: `cargo test -p berth-cli --test holes`.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

// =============================================================================================
// Namespace paths must be of the declared type

/// What one sandboxed berth run did: its exit code and output, and the mount table of the
/// mount namespace it was started from, before and after.
struct Sandboxed {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    before: String,
    after: String,
}

/// Runs `berth --root ROOT ARGS` from a private, throw-away mount namespace (`unshare -m
/// --propagation private`). A berth that let a container's setup happen in its caller's mount
/// namespace (a `mount` entry whose path is another kind of namespace) would mount over, and
/// pivot_root, that namespace: here that harms only the sandbox, and the sandbox's mount table
/// before and after the run shows it. The shell opens the result files before berth runs, so
/// they stay writable even if its root was changed under it.
fn sandboxed(env: &Env, dir: &Path, args: &[&str]) -> Sandboxed {
    let files = ["before", "after", "out", "err", "rc"].map(|n| dir.join(format!("sandbox.{n}")));
    let script = r#"exec 3>"$1" 4>"$2" 5>"$3" 6>"$4" 7>"$5"; shift 5
cat /proc/self/mountinfo >&3
"$@" >&5 2>&6 </dev/null
echo $? >&7
cat /proc/self/mountinfo >&4 || echo "the sandbox lost its mount table: $?" >&4
exit 0"#;
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .args(&files)
        .arg(BERTH)
        .arg("--root")
        .arg(env.root())
        .args(args)
        .stdin(Stdio::null())
        .status()
        .expect("unshare (util-linux)");
    assert!(status.success(), "the sandbox shell failed: {status:?}");
    let read = |i: usize| fs::read_to_string(&files[i]).unwrap_or_default();
    Sandboxed { code: read(4).trim().parse().ok(), stdout: read(2), stderr: read(3), before: read(0), after: read(1) }
}

/// The mount points and filesystem types of a mountinfo text, in order (ids differ between
/// namespaces and runs; what is mounted where must not).
fn mount_table(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            Some(format!("{} {}", pre.split(' ').nth(4)?, post.split(' ').next()?))
        })
        .collect()
}

/// The spec's namespace list with `typ` replaced by `{type, path}` at the end; returns the
/// index of that entry.
fn with_namespace_path(b: &mut Bundle, typ: &str, path: &str) -> usize {
    let mut list: Vec<Value> =
        b.config["linux"]["namespaces"].as_array().unwrap().iter().filter(|n| n["type"] != typ).cloned().collect();
    list.push(json!({"type": typ, "path": path}));
    let i = list.len() - 1;
    b.set("/linux/namespaces", Value::Array(list));
    i
}

#[test]
fn a_namespace_path_of_another_type_is_refused_before_anything_exists() {
    let env = Env::new();
    let host_before = mount_table(&fs::read_to_string("/proc/self/mountinfo").unwrap());
    // (declared type, /proc/self/ns entry of another type, what that entry is)
    let mut cases: Vec<(&str, &str, &str)> = vec![
        ("mount", "net", "network"),
        ("network", "mnt", "mount"),
        ("pid", "net", "network"),
        ("ipc", "uts", "uts"),
        ("uts", "ipc", "ipc"),
        ("user", "net", "network"),
        ("cgroup", "mnt", "mount"),
        ("time", "net", "network"),
    ];
    // The dangerous one in every variant: a mount namespace that is not one.
    for (entry, kind) in
        [("pid", "pid"), ("ipc", "ipc"), ("uts", "uts"), ("user", "user"), ("cgroup", "cgroup"), ("time", "time")]
    {
        cases.push(("mount", entry, kind));
    }
    for (declared, entry, kind) in cases {
        let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
        let path = format!("/proc/self/ns/{entry}");
        let i = with_namespace_path(&mut b, declared, &path);
        let needle = format!("linux.namespaces[{i}].path: {path} is a {kind} namespace, not {declared}");
        for cmd in ["create", "run"] {
            let id = env.id(&format!("ns-{declared}-{entry}"));
            let probe = LeakProbe::with_bundle(&id, env.root(), &b);
            let s = sandboxed(&env, b.path(), &[cmd, "--bundle", b.dir(), &id]);
            let what = format!("{cmd} with {declared} = {path}: exit {:?}\n{}\n{}", s.code, s.stdout, s.stderr);
            assert!(!s.stdout.contains("STARTED"), "the container ran: {what}");
            assert_eq!(mount_table(&s.before), mount_table(&s.after), "the caller's mount table changed: {what}");
            assert_eq!(s.code, Some(1), "{what}");
            assert!(s.stderr.contains(&needle), "stderr lacks {needle:?}: {what}");
            // A create that was accepted leaves an init behind in the sandbox: delete it.
            let _ = env.berth(&["delete", "--force", &id]);
            probe.assert_clean();
        }
    }
    // A path that is not a namespace at all, and one that does not exist.
    for (path, needle) in
        [("/etc/hostname", "is not a namespace file"), ("/proc/self/ns/nosuch", "cannot open /proc/self/ns/nosuch")]
    {
        let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
        let i = with_namespace_path(&mut b, "network", path);
        let id = env.id("ns-notns");
        let probe = LeakProbe::with_bundle(&id, env.root(), &b);
        let s = sandboxed(&env, b.path(), &["run", "--bundle", b.dir(), &id]);
        let what = format!("{path}: exit {:?}\n{}\n{}", s.code, s.stdout, s.stderr);
        assert_eq!(s.code, Some(1), "{what}");
        assert!(s.stderr.contains(&format!("linux.namespaces[{i}].path: ")) && s.stderr.contains(needle), "{what}");
        assert!(!s.stdout.contains("STARTED"), "{what}");
        probe.assert_clean();
    }
    assert_eq!(host_before, mount_table(&fs::read_to_string("/proc/self/mountinfo").unwrap()));
    env.finish();
}

#[test]
fn namespace_paths_of_the_right_type_are_joined() {
    // The control for the refusals above: the same mechanism with matching types works, and
    // the container really is in the namespaces it named (here: a sleeping container's).
    let env = Env::new();
    let host = env.bundle(&["sleep", "1000"]);
    let hid = env.id("ns-host");
    let hpid = env.run_detached(&host, &hid);
    let mut b = env.bundle(&["sh", "-c", "for n in net ipc uts; do readlink /proc/self/ns/$n; done"]);
    for t in ["network", "ipc", "uts"] {
        let entry = match t {
            "network" => "net",
            x => x,
        };
        with_namespace_path(&mut b, t, &format!("/proc/{hpid}/ns/{entry}"));
    }
    let id = env.id("ns-join");
    let out = env.berth(&["run", "--bundle", b.dir(), &id]);
    let want: Vec<String> = ["net", "ipc", "uts"]
        .iter()
        .map(|n| fs::read_link(format!("/proc/{hpid}/ns/{n}")).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(out.ok().lines().collect::<Vec<_>>(), want);
    env.berth(&["delete", "--force", &hid]).ok();
    env.reap(hpid);
    env.finish();
}

// =============================================================================================
// --no-pivot must not leave the host's procfs and sysfs in the container's mount namespace

/// A container process that tries to mount a fresh procfs (and sysfs) from a new user, mount,
/// pid (and network) namespace. The kernel allows that only if the mount namespace already
/// holds a fully visible instance of the filesystem (`mount_too_revealing`). A container's own
/// /proc has masked paths over it, so it does not count, but the host's /proc does: after a
/// chroot (`--no-pivot`) it is still in the namespace, just out of sight.
/// Mapping uid 0 in the new user namespace (`unshare -r`) needs CAP_SETFCAP (Linux 5.12), as
/// in runc's test of the same hole (tests/integration/no_pivot.bats).
const NESTED_MOUNTS: &str = "unshare -mrpf sh -c 'mount -t proc none /proc' 2>&1 && echo PROC-MOUNTED; \
                             unshare -mrnf sh -c 'mount -t sysfs none /sys' 2>&1 && echo SYSFS-MOUNTED; \
                             echo DONE";

#[test]
fn no_pivot_leaves_no_bare_procfs_or_sysfs_for_a_nested_mount() {
    let env = Env::new();
    let bundle = || {
        let mut b = env.bundle(&["sh", "-c", NESTED_MOUNTS]);
        for set in ["bounding", "permitted", "effective"] {
            b.push(&format!("/process/capabilities/{set}"), json!("CAP_SETFCAP"));
        }
        b
    };
    // runc's behaviour with pivot_root, and what --no-pivot must match.
    for no_pivot in [false, true] {
        let b = bundle();
        let id = env.id(if no_pivot { "nopivot" } else { "pivot" });
        let mut args = vec!["run", "--bundle", b.dir()];
        if no_pivot {
            args.push("--no-pivot");
        }
        args.push(&id);
        let out = env.berth(&args);
        let text = out.ok();
        assert!(text.contains("DONE"), "{text}");
        assert!(!text.contains("PROC-MOUNTED"), "no_pivot={no_pivot}: a nested procfs mount succeeded:\n{text}");
        assert!(!text.contains("SYSFS-MOUNTED"), "no_pivot={no_pivot}: a nested sysfs mount succeeded:\n{text}");
        assert!(text.contains("mount: permission denied"), "no_pivot={no_pivot}: not refused with EPERM:\n{text}");
    }
    // Negative control: with nothing masked, the container's own /proc and /sys are fully
    // visible, and the same nested mounts succeed. So the probe can see a bare procfs.
    let mut b = bundle();
    b.set("/linux/maskedPaths", json!([])).set("/linux/readonlyPaths", json!([]));
    let id = env.id("nopivot-control");
    let out = env.berth(&["run", "--no-pivot", "--bundle", b.dir(), &id]);
    let text = out.ok();
    assert!(text.contains("PROC-MOUNTED"), "the control could not mount procfs:\n{text}");
    env.finish();
}
