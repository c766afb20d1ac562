//! The security suite: one test (or more) per known container-runtime escape class, each
//! written so that a runtime with that hole fails it (see docs/security.md for the table of
//! classes, defences and tests).
//!
//! Where a test's attack could succeed silently (a write that should fail, a mount that should
//! land inside the root), it also runs a *negative control*: the same probe against a target
//! that is not protected, which must show the effect. That proves the probe detects the
//! escape, so a passing run means the defence worked, not that the probe was blind.
//!
//! Run as root against the real kernel: `cargo test -p berth-cli --test security`.

mod common;

use std::fs;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use serde_json::{json, Value};

/// Replaces `path` (file, directory or link) in a rootfs with a symlink to `target`.
fn make_symlink(rootfs: &Path, path: &str, target: &str) {
    let p = rootfs.join(path.trim_start_matches('/'));
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&p).unwrap(),
        Ok(_) => fs::remove_file(&p).unwrap(),
        Err(_) => {}
    }
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, &p).unwrap();
}

/// Removes the mount whose destination is `dest` from the spec.
fn drop_mount(b: &mut Bundle, dest: &str) {
    b.config["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != dest);
    b.write();
}

/// Mount points (field 5) of a mountinfo text, with their filesystem type and super options.
fn mountinfo(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mp = pre.split(' ').nth(4)?.to_string();
            let mut post = post.split(' ');
            let fstype = post.next()?.to_string();
            let opts = post.nth(1).unwrap_or_default().to_string();
            Some((mp, fstype, opts))
        })
        .collect()
}

// =============================================================================================
// 1. Symlinks pointing out of the root (CVE-2019-19921, CVE-2023-27561, CVE-2025-31133,
//    CVE-2026-47766, CVE-2021-30465's static form)

#[test]
fn symlinked_proc_sys_dev_and_dev_pts_are_refused() {
    // A runtime that followed these links would mount procfs/sysfs/devpts/tmpfs somewhere the
    // image chose: with /proc -> / the LSM label writes of CVE-2019-19921 went to a file the
    // image controls; /dev -> elsewhere makes device nodes (and the /dev/null used for
    // masking) land where the image wants. berth requires ordinary directories.
    let env = Env::new();
    const ALL_DEV: &[&str] = &["/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"];
    let cases: &[(&str, &str, &str, &[&str], &str)] = &[
        // (path, link target, name, mounts dropped from the spec, expected message)
        ("/proc", "/", "proc", &[], "/proc must be mounted on an ordinary directory"),
        ("/proc", "../../../..", "proc-dots", &[], "/proc must be mounted on an ordinary directory"),
        ("/sys", "/etc", "sys", &[], "/sys must be mounted on an ordinary directory"),
        ("/dev", "/tmp/fakedev", "dev", &[], "/dev must be mounted on an ordinary directory"),
        // No /dev mount in the spec: the image's /dev is used as is, so the device nodes
        // must not be created through the link.
        ("/dev", "/tmp/fakedev", "dev-nomount", ALL_DEV, "/dev in the rootfs is a symlink"),
        ("/dev/pts", "/proc/sys/kernel", "devpts", &["/dev"], "/dev/pts must be mounted on an ordinary directory"),
    ];
    for (path, target, name, dropped, needle) in cases {
        let mut b = env.bundle_own(&["sh", "-c", "echo STARTED"]);
        fs::create_dir_all(b.rootfs().join("tmp/fakedev")).unwrap();
        make_symlink(b.rootfs(), path, target);
        for d in *dropped {
            drop_mount(&mut b, d);
        }
        create_and_run_fail_clean(&env, &b, name, needle);
        // Nothing was created through the link.
        assert_eq!(fs::read_dir(b.rootfs().join("tmp/fakedev")).unwrap().count(), 0, "{name}: wrote through /dev");
    }
    env.finish();
}

/// Restores `/proc/sys/kernel/core_pattern` on drop if a test (through a runtime bug) changed
/// it, so that a failing run does not leave the host with a container-chosen core handler.
struct CorePatternGuard(String);

impl CorePatternGuard {
    fn new() -> CorePatternGuard {
        CorePatternGuard(fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap())
    }

    fn changed(&self) -> bool {
        fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap() != self.0
    }
}

impl Drop for CorePatternGuard {
    fn drop(&mut self) {
        if self.changed() {
            let _ = fs::write("/proc/sys/kernel/core_pattern", self.0.trim_end());
        }
    }
}

#[test]
fn dev_null_symlinked_to_a_procfs_file_is_never_used_for_masking() {
    // CVE-2025-31133: masked files are bind mounts of the container's /dev/null. An image (no
    // /dev mount in the spec, so the image's own /dev is used) whose /dev/null is a symlink to
    // /proc/sys/kernel/core_pattern made runc bind the *host-global* core_pattern, writable,
    // onto every masked file: the masked file would then read as the core pattern instead of
    // empty, and a privileged container could write it. berth replaces the link with a real
    // 1:3 node while populating /dev and checks 1:3 before masking.
    let env = Env::new();
    let guard = CorePatternGuard::new();
    // Every masked file (the default spec's that this kernel has, and one of the image) must
    // be the null device.
    let masked_files: Vec<String> = default_config()["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .filter(|p| Path::new(p).is_file())
        .chain(["/etc/masked-file".to_string()])
        .collect();
    assert!(masked_files.len() > 1, "{masked_files:?}");
    let script = format!(
        "echo \"masked=[$(cat /etc/masked-file)]\"; \
         echo '|/bin/false berth-sec-test' > /etc/masked-file 2>/dev/null; \
         stat -c 'null=%F %t:%T' /dev/null; \
         for f in {}; do stat -c \"$f %t:%T\" $f; done; \
         grep -c ' /etc/masked-file ' /proc/self/mountinfo",
        masked_files.join(" ")
    );
    let mut b = env.bundle_own(&["sh", "-c", &script]);
    for d in ["/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"] {
        drop_mount(&mut b, d);
    }
    fs::write(b.rootfs().join("etc/masked-file"), "image content\n").unwrap();
    make_symlink(b.rootfs(), "/dev/null", "/proc/sys/kernel/core_pattern");
    b.push("/linux/maskedPaths", json!("/etc/masked-file"));
    let out = env.berth(&["run", "--bundle", b.dir(), &env.id("devnull")]);
    let text = out.ok();
    assert!(text.contains("masked=[]\n"), "the masked file is not empty: {text}");
    assert!(text.contains("null=character special file 1:3\n"), "{text}");
    for f in &masked_files {
        assert!(text.contains(&format!("{f} 1:3\n")), "{f} is not masked with the null device: {text}");
    }
    assert!(text.ends_with("1\n"), "the masked file is not a mount: {text}");
    assert!(!guard.changed(), "the host's core_pattern changed");

    // With /dev bind-mounted from the host (berth then creates no device nodes) the only
    // defence left is the check before masking: a /dev/null that is a link to a procfs file,
    // or a regular file, is refused rather than bound onto the masked paths.
    for (name, make, needle) in [
        ("devnull-link", true, "/dev/null cannot be used for masking"),
        ("devnull-file", false, "/dev/null is not the null device (1:3)"),
    ] {
        let dev = tempfile::tempdir().unwrap();
        if make {
            symlink("/proc/sys/kernel/core_pattern", dev.path().join("null")).unwrap();
        } else {
            fs::write(dev.path().join("null"), "not a device\n").unwrap();
        }
        let mut b = env.bundle_own(&["sh", "-c", "echo STARTED"]);
        for d in ["/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"] {
            drop_mount(&mut b, d);
        }
        b.push("/mounts", json!({"destination": "/dev", "type": "bind", "source": dev.path(), "options": ["rbind"]}));
        fails_clean(&env, &b, "run", &env.id(name), needle);
    }
    assert!(!guard.changed(), "the host's core_pattern changed");
    env.finish();
}

#[test]
fn dev_console_symlinked_to_a_procfs_file_is_refused() {
    // CVE-2025-52565: /dev/console is a bind mount of the container's PTY. With the image's own
    // /dev (no /dev mount in the spec) and /dev/console a symlink to a procfs file, following
    // the link mounts over that procfs file instead (runc bound a procfs file onto
    // /dev/console, read-write). The PTY must end up on /dev/console itself, or the container
    // must be refused, and the procfs file must stay what it is.
    let env = Env::new();
    let mut b = env.bundle_own(&["sh", "-c", "stat -c '%F' /proc/sys/kernel/core_pattern /dev/console"]);
    for d in ["/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"] {
        drop_mount(&mut b, d);
    }
    b.push(
        "/mounts",
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
    );
    make_symlink(b.rootfs(), "/dev/console", "/proc/sys/kernel/core_pattern");
    b.set("/process/terminal", json!(true));
    let id = env.id("console");
    let sock = b.file("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let (out, master) = create_with_console(&env, &b, &id, &listener);
    // runc refuses this since 1.2.8 (O_NOFOLLOW on the mount target); so does berth.
    out.fails_with("/dev/console in the rootfs is a symlink");
    assert!(master.is_none(), "a PTY master was sent although setup failed");
    LeakProbe::with_bundle(&id, env.root(), &b).assert_clean();
    // Without the link the same bundle runs: /dev/console is the PTY and the procfs file is
    // untouched (what a runtime that followed the link would have covered with the PTY).
    fs::remove_file(b.rootfs().join("dev/console")).unwrap();
    let id = env.id("console-ok");
    let (out, master) = create_with_console(&env, &b, &id, &listener);
    out.ok();
    let pid = env.pid_of(&id);
    env.berth(&["start", &id]).ok();
    let text = read_all(master.expect("no PTY master received"));
    assert_eq!(env.reap(pid), 0, "{text}");
    assert_eq!(text.replace('\r', ""), "regular empty file\ncharacter special file\n");
    env.finish();
}

/// Accepts a connection on `listener` unless `give_up` says the peer cannot come any more
/// (or the patience deadline passed), so that a runtime failing before it connects fails the
/// test instead of hanging it.
fn accept_unless(listener: &UnixListener, give_up: impl Fn() -> bool) -> Option<std::os::unix::net::UnixStream> {
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false).unwrap();
                return Some(conn);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if give_up() || std::time::Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// `berth create --console-socket` (detached), receiving the PTY master it sends, if any.
fn create_with_console(env: &Env, b: &Bundle, id: &str, listener: &UnixListener) -> (Out, Option<OwnedFd>) {
    let sock = listener.local_addr().unwrap().as_pathname().unwrap().to_path_buf();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            env.detached(b, id, &["create", "--console-socket", sock.to_str().unwrap(), "--bundle", b.dir(), id])
        });
        let master = accept_unless(listener, || h.is_finished()).and_then(|conn| recv_fd(&conn));
        (h.join().unwrap(), master)
    })
}

/// Reads a PTY master until the other side is closed (EIO) or the patience deadline.
fn read_all(master: OwnedFd) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        let mut fds = [rustix::event::PollFd::new(&master, rustix::event::PollFlags::IN)];
        let ts = rustix::event::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
        if rustix::event::poll(&mut fds, Some(&ts)).unwrap_or(0) == 0 {
            continue;
        }
        match rustix::io::read(&master, &mut buf) {
            Ok(0) | Err(rustix::io::Errno::IO) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => continue,
            Err(e) => panic!("reading the terminal: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn mount_destinations_through_symlinks_stay_inside_the_root() {
    // The image has /mnt/abs -> /etc and /mnt/dots -> ../../../../etc. A runtime that joins
    // "rootfs" + destination and lets the kernel follow the links mounts on the host's /etc
    // (in the container's mount namespace, which still sees the host tree during setup) and
    // creates the missing mount point directories in the host's /etc. With in-root
    // resolution both mounts land on the rootfs's own /etc.
    let env = Env::new();
    let id = env.id("mntlink");
    let (a, d) = (format!("berth-sec-{id}-a"), format!("berth-sec-{id}-d"));
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("marker"), "from the host\n").unwrap();
    let mut b = env.bundle_own(&["sh", "-c", "cat /proc/self/mountinfo"]);
    make_symlink(b.rootfs(), "/mnt/abs", "/etc");
    make_symlink(b.rootfs(), "/mnt/dots", "../../../../etc");
    b.push(
        "/mounts",
        json!({"destination": format!("/mnt/abs/{a}"), "type": "tmpfs", "source": "tmpfs", "options": ["size=1236k"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": format!("/mnt/dots/{d}"), "type": "bind", "source": src.path(), "options": ["rbind", "ro"]}),
    );
    let host_before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let out = env.berth(&["run", "--bundle", b.dir(), &id]);
    let mounts = mountinfo(out.ok());
    // Both mounts are visible inside, on the rootfs's /etc. A mount that had landed outside
    // the new root would not be listed at all: pivot_root and the detach of the old root
    // drop every mount that is not under the new root from the container's namespace.
    assert!(
        mounts.iter().any(|(mp, fs, opts)| *mp == format!("/etc/{a}") && fs == "tmpfs" && opts.contains("size=1236k")),
        "tmpfs not at /etc/{a} inside the container: {mounts:?}"
    );
    assert!(mounts.iter().any(|(mp, _, _)| *mp == format!("/etc/{d}")), "bind not at /etc/{d}: {mounts:?}");
    assert!(b.rootfs().join("etc").join(&a).is_dir() && b.rootfs().join("etc").join(&d).is_dir());
    // The host's /etc and mount table are untouched.
    assert!(!Path::new("/etc").join(&a).exists() && !Path::new("/etc").join(&d).exists(), "created in the host's /etc");
    let host_after = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host_after.contains(&a) && !host_after.contains(&d), "host mount table gained a mount");
    assert_eq!(mountinfo(&host_before).len(), mountinfo(&host_after).len(), "host mount count changed");
    env.finish();
}

// =============================================================================================
// 2. Rename-exchange race on mount destinations (CVE-2021-30465)

#[test]
fn rename_exchange_race_on_mount_destinations_never_escapes_the_root() {
    // CVE-2021-30465: a container sharing a volume with the one being created swaps a path
    // component of a mount destination for a symlink between the runtime's check and its
    // mount(2), so the mount lands outside the rootfs. Here a host thread (equivalent to a
    // racer in a sibling container: it only needs the shared directory) exchanges `d` (a
    // directory) and `l` (a symlink to a host directory, `outside`) with
    // renameat2(RENAME_EXCHANGE) in a tight loop, while container B is created again and
    // again with two tmpfs mounts whose destinations go through /vol/d.
    //
    // Why B's own mountinfo is the witness: B prints /proc/self/mountinfo after pivot_root,
    // which only lists mounts under B's root. If a tmpfs had been mounted on the host's
    // `outside` (the symlink followed by the kernel, outside the root), the detach of the old
    // root would have dropped it and it would be missing from B's list; with in-root
    // resolution the link is followed as if the rootfs were /, so it always shows up, either
    // under /vol/d or under the rootfs's own copy of the `outside` path.
    const RUNS: usize = 50;
    let env = Env::new();
    let vol = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let (vol_path, outside_path) = (vol.path().canonicalize().unwrap(), outside.path().canonicalize().unwrap());
    fs::create_dir(vol_path.join("d")).unwrap();
    symlink(&outside_path, vol_path.join("l")).unwrap();
    let mut b = env.bundle_own(&["cat", "/proc/self/mountinfo"]);
    // The rootfs has its own directory at the link target's path, so a link followed in-root
    // leads somewhere real and such runs can succeed (and be checked) too.
    fs::create_dir_all(b.rootfs().join(outside_path.strip_prefix("/").unwrap())).unwrap();
    b.push("/mounts", json!({"destination": "/vol", "type": "bind", "source": vol_path, "options": ["rbind", "rw"]}));
    b.push(
        "/mounts",
        json!({"destination": "/vol/d/m1", "type": "tmpfs", "source": "tmpfs", "options": ["size=1236k"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/vol/d/m2/deeper", "type": "tmpfs", "source": "tmpfs", "options": ["size=2468k"]}),
    );
    let (mut ok, mut via_link, mut failed) = (0, 0, Vec::new());
    let ((), swaps) = with_rename_exchange_racer(&vol_path, "d", "l", || {
        for i in 0..RUNS {
            let id = env.id(&format!("race{i}"));
            let out = env.berth(&["run", "--bundle", b.dir(), &id]);
            if out.code == Some(0) {
                let mounts = mountinfo(&out.stdout);
                for size in ["size=1236k", "size=2468k"] {
                    assert!(
                        mounts.iter().any(|(_, fs, opts)| fs == "tmpfs" && opts.contains(size)),
                        "run {i}: the tmpfs with {size} is not inside the container's root: {mounts:?}"
                    );
                }
                // Through the link, in-root: under the rootfs's own copy of `outside`.
                if mounts.iter().any(|(mp, _, _)| mp.starts_with(&*outside_path.to_string_lossy())) {
                    via_link += 1;
                }
                ok += 1;
            } else {
                // A lost race may fail the create (e.g. a component turned into a link while
                // its directory was being made); it must fail cleanly.
                out.code_is(1);
                LeakProbe::with_bundle(&id, env.root(), &b).assert_clean();
                failed.push(out.stderr);
            }
        }
    });
    assert!(swaps > 0, "the racer never ran");
    eprintln!(
        "race: {ok} runs succeeded ({via_link} of them mounted through the link, inside the root), {} failed \
         cleanly, {swaps} exchanges; failures: {failed:?}",
        failed.len()
    );
    // The link's target was never written to or mounted on.
    let written: Vec<_> = fs::read_dir(&outside_path).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(written.is_empty(), "created outside the root through the link: {written:?}");
    let outside_str = outside_path.to_string_lossy().into_owned();
    assert!(mount_leaks(&[outside_str, vol_path.to_string_lossy().into_owned()]).is_empty());
    env.finish();
}

// =============================================================================================
// 3. Leaked descriptors and cwd (CVE-2024-21626, "Leaky Vessels")

#[test]
fn cwd_through_proc_self_fd_is_refused_for_run_and_exec() {
    // runc leaked a descriptor of the host's /sys/fs/cgroup into its init; a process.cwd of
    // /proc/self/fd/7 (or `runc exec --cwd`) then started the process with a host directory
    // as its cwd, from which ../../.. reaches the host's /. berth resolves the cwd in the
    // root without magic links (so /proc/self/fd/N is refused whatever N refers to, even
    // when it does not exist) and checks getcwd afterwards.
    let env = Env::new();
    for n in 3..=20 {
        let mut b = env.bundle(&["sh", "-c", "echo STARTED; pwd"]);
        b.set("/process/cwd", json!(format!("/proc/self/fd/{n}")));
        let out = fails_clean(&env, &b, "run", &env.id(&format!("cwd{n}")), "process.cwd");
        assert!(!out.stdout.contains("STARTED"));
    }
    // The same through exec into a running container.
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("cwd-exec");
    let pid = env.run_detached(&b, &id);
    for n in 3..=20 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = env.berth(&["exec", "--cwd", &cwd, &id, "sh", "-c", "echo STARTED; pwd"]);
        out.fails_with("process.cwd");
        assert!(!out.stdout.contains("STARTED"), "{out:?}");
    }
    // Control: an ordinary cwd works through the same path, so the refusals are specific.
    assert_eq!(env.berth(&["exec", "--cwd", "/tmp", &id, "pwd"]).ok(), "/tmp\n");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn a_host_directory_leaked_by_berths_caller_never_reaches_the_container() {
    // The caller of berth (a shim, a script) leaks fd 7 open on the host's / without
    // close-on-exec. A cwd of /proc/self/fd/7 must still be refused, and an ordinary container
    // started the same way must not have fd 7 (berth closes inherited descriptors at startup
    // and marks everything close-on-exec before the process execs).
    let env = Env::new();
    let leak = |b: &Bundle, id: &str, run: &str| -> std::process::Output {
        let script = format!("exec 7</; exec {BERTH} --root {} {run} --bundle {} {id}", env.root().display(), b.dir());
        let (out, err) = (fs::File::create(b.file("leak.out")).unwrap(), fs::File::create(b.file("leak.err")).unwrap());
        let status = Command::new("sh").arg("-c").arg(&script).stdin(Stdio::null()).stdout(out).stderr(err).status();
        std::process::Output {
            status: status.unwrap(),
            stdout: fs::read(b.file("leak.out")).unwrap(),
            stderr: fs::read(b.file("leak.err")).unwrap(),
        }
    };
    let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
    b.set("/process/cwd", json!("/proc/self/fd/7"));
    let id = env.id("leak-cwd");
    let out = leak(&b, &id, "run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("process.cwd"), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("STARTED"), "{out:?}");
    LeakProbe::with_bundle(&id, env.root(), &b).assert_clean();
    // A normal container started with the leak holds only stdio (looked at from the host: a
    // shell listing its own descriptors would see its pipes and directory handles).
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("leak-fds");
    let pidfile = b.file("pid");
    let out = leak(&b, &id, &format!("run -d --pid-file {}", pidfile.display()));
    assert!(out.status.success(), "{out:?}");
    let pid: i32 = fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    env.adopt(pid);
    let mut fds: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            format!("{}->{}", e.file_name().to_string_lossy(), fs::read_link(e.path()).unwrap().display())
        })
        .collect();
    fds.sort();
    assert_eq!(fds.len(), 3, "descriptors of the container's process: {fds:?}");
    assert!(fds.iter().all(|f| !f.ends_with("->/")), "{fds:?}");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    // Control: the shell really did hand fd 7 (the host's /) to berth.
    let out = Command::new("sh").arg("-c").arg("exec 7</; readlink /proc/self/fd/7").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/\n");
    env.finish();
}

#[test]
fn a_host_directory_passed_on_purpose_still_cannot_become_the_cwd() {
    // With --preserve-fds the container's process really does hold a host directory as fd 3
    // (the negative control below walks through it into the host's /). That is the
    // caller's choice for the process to use; the runtime must still never start the process
    // *in* it, for run as for exec.
    let env = Env::new();
    let via_sh = |args: &str| -> Out {
        let script = format!("exec 3</; exec {BERTH} --root {} {args}", env.root().display());
        let o = Command::new("sh").arg("-c").arg(&script).stdin(Stdio::null()).output().unwrap();
        Out {
            cmd: script,
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    let host_entry = "usr"; // in the host's /, not in the busybox rootfs
    assert!(Path::new("/").join(host_entry).is_dir() && !shared_rootfs().join(host_entry).exists());
    let probe = format!("ls /proc/$$/fd/3/ | grep -qx {host_entry} && echo HOST-ROOT-REACHABLE; echo STARTED");
    // Control: fd 3 reaches the host's / from inside the container.
    let b = env.bundle(&["sh", "-c", &probe]);
    let out = via_sh(&format!("run --preserve-fds 1 --bundle {} {}", b.dir(), env.id("passed-ctl")));
    assert!(out.ok().contains("HOST-ROOT-REACHABLE"), "the control cannot see the host through fd 3: {out:?}");
    // run with cwd /proc/self/fd/3
    let mut b = env.bundle(&["sh", "-c", &probe]);
    b.set("/process/cwd", json!("/proc/self/fd/3"));
    let id = env.id("passed-run");
    let out = via_sh(&format!("run --preserve-fds 1 --bundle {} {id}", b.dir()));
    out.fails_with("process.cwd");
    assert!(!out.stdout.contains("STARTED"), "{out:?}");
    LeakProbe::with_bundle(&id, env.root(), &b).assert_clean();
    // exec --cwd /proc/self/fd/3
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("passed-exec");
    let pid = env.run_detached(&b, &id);
    let out = via_sh(&format!("exec --preserve-fds 1 --cwd /proc/self/fd/3 {id} sh -c 'echo STARTED; pwd'"));
    out.fails_with("process.cwd");
    assert!(!out.stdout.contains("STARTED"), "{out:?}");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

// =============================================================================================
// 4. Overwriting the runtime binary from a container (CVE-2019-5736)

/// A writable copy of the berth binary in a temporary directory. The attacks run against the
/// copy, so that a failing test (a successful attack) corrupts the copy, never the build.
struct BerthCopy {
    _dir: tempfile::TempDir,
    path: PathBuf,
    original: Vec<u8>,
}

impl BerthCopy {
    fn new() -> BerthCopy {
        let dir = tempfile::Builder::new().prefix("berth-copy-").tempdir().unwrap();
        let path = dir.path().join("berth");
        fs::copy(BERTH, &path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        let original = fs::read(&path).unwrap();
        BerthCopy { _dir: dir, path, original }
    }

    /// `<copy> --root <env root> args...`.
    fn command(&self, env: &Env, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root").arg(env.root()).args(args).stdin(Stdio::null());
        cmd
    }

    /// Runs the copy with stdout/stderr in `<bundle>/<label>.out|.err` (a container it starts
    /// inherits them); returns when the copy exits.
    fn detached(&self, env: &Env, b: &Bundle, label: &str, args: &[&str]) -> Out {
        let (o, e) = (b.file(&format!("{label}.out")), b.file(&format!("{label}.err")));
        let status = self
            .command(env, args)
            .stdout(fs::File::create(&o).unwrap())
            .stderr(fs::File::create(&e).unwrap())
            .status()
            .unwrap();
        Out {
            cmd: format!("berth-copy {}", args.join(" ")),
            code: status.code(),
            stdout: fs::read_to_string(o).unwrap(),
            stderr: fs::read_to_string(e).unwrap(),
        }
    }

    /// `run -d` of the bundle with the copy; returns the init pid (registered for reaping).
    fn run_detached(&self, env: &Env, b: &Bundle, id: &str) -> i32 {
        let pidfile = b.file(&format!("{id}.pid"));
        self.detached(env, b, id, &["run", "-d", "--pid-file", pidfile.to_str().unwrap(), "--bundle", b.dir(), id])
            .ok();
        let pid = fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        env.adopt(pid);
        pid
    }

    #[track_caller]
    fn assert_unchanged(&self) {
        let now = fs::read(&self.path).unwrap();
        assert!(now == self.original, "the berth binary was modified from inside a container");
    }
}

/// Copies the dynamic loader and the shared libraries the berth binary needs (per `ldd`)
/// into a rootfs, at the same paths: the rootfs then looks like any glibc-based image, in
/// which the runtime's binary can run. (berth is dynamically linked; in a busybox-only
/// rootfs its exec fails with ENOENT for lack of the loader, which would hide the attack.)
fn install_berth_libraries(rootfs: &Path) {
    let out = Command::new("ldd").arg(BERTH).output().expect("ldd");
    assert!(out.status.success(), "ldd {BERTH}: {}", String::from_utf8_lossy(&out.stderr));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) else { continue };
        let dst = rootfs.join(path.trim_start_matches('/'));
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(path, &dst).unwrap_or_else(|e| panic!("copying {path}: {e}"));
    }
}

/// Waits until `file` contains `needle`; returns its content.
#[track_caller]
fn wait_for_text(file: &Path, needle: &str) -> String {
    let mut text = String::new();
    let ok = wait_until(|| {
        text = fs::read_to_string(file).unwrap_or_default();
        text.contains(needle)
    });
    assert!(ok, "{needle:?} never appeared in {}: {text}", file.display());
    text
}

/// The container-side half of the CVE-2019-5736 proof of concept: find a process of the
/// container that is not busybox (the runtime's binary, made to run inside the container),
/// keep a read-only descriptor of its `/proc/PID/exe`, wait for it to exit (so the kernel no
/// longer refuses writes with ETXTBSY) and for the test's go-ahead (/ctl/release: the
/// `berth exec` on the host runs the same file until it has exited), then reopen the
/// descriptor for writing through `/proc/self/fd/3` and append to it.
const EXE_HOLDER: &str = r#"
me=$$; found=
while [ -z "$found" ]; do
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}; [ "$pid" = "$me" ] && continue
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case "$exe" in ''|*/busybox) continue;; esac
    found=$pid; break
  done
  [ -n "$found" ] || usleep 10000
done
exec 3<"/proc/$found/exe" || { echo open-failed; exit 1; }
echo "opened $found $exe"
while [ -e "/proc/$found" ] || [ ! -e /ctl/release ]; do usleep 10000; done
if err=$( (echo pwned >>/proc/self/fd/3) 2>&1 ); then echo write-ok; else echo "write-failed: $err"; fi
"#;

/// Runs [`EXE_HOLDER`] as the init of a container started by `copy`, then execs `target`
/// (blocking on a stdin pipe the test holds) into it, releases it once the holder has its
/// descriptor, and returns what the holder reported.
fn exe_overwrite_attempt(env: &Env, copy: &BerthCopy, b: &mut Bundle, name: &str, target: &[&str]) -> String {
    let ctl = tempfile::tempdir().unwrap();
    b.push("/mounts", json!({"destination": "/ctl", "type": "bind", "source": ctl.path(), "options": ["rbind"]}));
    let id = env.id(name);
    let pid = copy.run_detached(env, b, &id);
    let mut args = vec!["exec", id.as_str()];
    args.extend_from_slice(target);
    let mut exec = copy
        .command(env, &args)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(b.file("target.out")).unwrap())
        .stderr(fs::File::create(b.file("target.err")).unwrap())
        .spawn()
        .unwrap();
    let holder_out = b.file(&format!("{id}.out"));
    wait_for_text(&holder_out, "opened");
    // Release the target: it reads "{}" and EOF, and exits.
    {
        use std::io::Write;
        let mut stdin = exec.stdin.take().unwrap();
        let _ = stdin.write_all(b"{}");
    }
    exec.wait().unwrap();
    fs::write(ctl.path().join("release"), "").unwrap();
    let text = wait_for_text(&holder_out, "write-");
    assert_eq!(env.reap(pid), 0, "{text}");
    env.berth(&["delete", &id]).ok();
    text
}

#[test]
fn a_container_cannot_overwrite_the_runtime_binary_through_proc_pid_exe() {
    // The container makes the runtime run its own binary inside the container: a process
    // whose args are ["/proc/self/exe", ...] execs, from a clone of berth, the berth binary
    // itself (the `#!/proc/self/exe` entrypoint of the original PoC does the same through the
    // kernel's script loader). Here it is `berth update --resources - x`, which blocks reading
    // stdin until the test releases it. berth re-executes itself from a detached read-only
    // bind mount of its binary whenever the binary is writable (crates/berth-linux/src/
    // seal.rs), so the reopened descriptor refers to a read-only mount: EROFS.
    let env = Env::new();
    let copy = BerthCopy::new();
    let mut b = env.bundle_own(&["sh", "-c", EXE_HOLDER]);
    install_berth_libraries(b.rootfs());
    let text =
        exe_overwrite_attempt(&env, &copy, &mut b, "exe-berth", &["/proc/self/exe", "update", "--resources", "-", "x"]);
    assert!(text.contains("write-failed") && text.contains("Read-only file system"), "{text}");
    // It really was berth that ran inside the container (it complained about container `x`),
    // and the holder saw its exe as the root of a mount of its own: the detached bind.
    let target_err = fs::read_to_string(b.file("target.err")).unwrap();
    assert!(target_err.contains("container") && target_err.contains("does not exist"), "not berth: {target_err}");
    copy.assert_unchanged();

    // Negative control: the same attack against a binary that is NOT protected (a writable
    // copy of busybox, run from a read-write volume) succeeds and modifies the file. This is
    // what would happen to an unsealed runtime binary.
    let vol = tempfile::tempdir().unwrap();
    fs::copy(BUSYBOX, vol.path().join("cat")).unwrap();
    let mut b = env.bundle_own(&["sh", "-c", EXE_HOLDER]);
    b.push(
        "/mounts",
        json!({"destination": "/data", "type": "bind", "source": vol.path(), "options": ["rbind", "rw"]}),
    );
    let text = exe_overwrite_attempt(&env, &copy, &mut b, "exe-control", &["/data/cat"]);
    assert!(text.contains("write-ok"), "the control attack failed, so the probe proves nothing: {text}");
    assert!(fs::read(vol.path().join("cat")).unwrap().ends_with(b"pwned\n"), "control binary not modified");
    env.finish();
}

/// Polls every process of the container that is not busybox and tries to open its
/// `/proc/PID/exe` for writing, logging each attempt to /ctl/log, until /ctl/stop exists.
const EXE_POLLER: &str = r#"
me=$$
while [ ! -e /ctl/stop ]; do
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}; [ "$pid" = "$me" ] && continue
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case "$exe" in ''|*/busybox) continue;; esac
    if err=$( (exec 4>>"$p/exe") 2>&1 ); then echo "WRITABLE $pid $exe" >>/ctl/log
    else echo "refused $pid $exe: $err" >>/ctl/log; fi
  done
done
echo finished >>/ctl/log
"#;

#[test]
fn berth_processes_entering_a_container_are_never_writable_through_proc_pid_exe() {
    // Attack 2: `berth exec` into a container in which a process polls /proc/*/exe, trying to
    // open any runtime process's binary for writing. The poller has CAP_SYS_PTRACE, so
    // berth's non-dumpable flag (which alone keeps an ordinary container out of
    // /proc/PID/exe of a berth process) does not stop it: this checks the seal itself. Every
    // berth process the container can see, the exec'd clones before they exec and a berth
    // binary run inside, must refuse the write (EROFS or ETXTBSY).
    let env = Env::new();
    let copy = BerthCopy::new();
    let ctl = tempfile::tempdir().unwrap();
    let mut b = env.bundle_own(&["sh", "-c", EXE_POLLER]);
    install_berth_libraries(b.rootfs());
    b.push("/mounts", json!({"destination": "/ctl", "type": "bind", "source": ctl.path(), "options": ["rbind", "rw"]}));
    for set in ["bounding", "effective", "permitted"] {
        b.push(&format!("/process/capabilities/{set}"), json!("CAP_SYS_PTRACE"));
    }
    let id = env.id("exe-poll");
    let pid = copy.run_detached(&env, &b, &id);
    // Exec clones are visible to the poller only between clone and exec: some are caught,
    // some are not, and every catch must be a refusal.
    for _ in 0..30 {
        copy.command(&env, &["exec", &id, "true"]).output().unwrap();
    }
    // One berth process that stays until the poller has tried it, so that the check cannot
    // pass by never seeing a berth process.
    let mut held = copy
        .command(&env, &["exec", &id, "/proc/self/exe", "update", "--resources", "-", "x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_text(&ctl.path().join("log"), "refused");
    drop(held.stdin.take());
    held.wait().unwrap();
    fs::write(ctl.path().join("stop"), "").unwrap();
    let log = wait_for_text(&ctl.path().join("log"), "finished");
    assert!(!log.contains("WRITABLE"), "a berth process's binary was writable from the container:\n{log}");
    for line in log.lines().filter(|l| l.starts_with("refused")) {
        assert!(
            // EROFS/ETXTBSY: the seal (and the running binary); the others: the process is gone.
            ["Read-only file system", "Text file busy", "nonexistent directory", "No such file"]
                .iter()
                .any(|e| line.contains(e)),
            "unexpected outcome: {line}"
        );
    }
    copy.assert_unchanged();
    assert_eq!(env.reap(pid), 0);
    env.berth(&["delete", &id]).ok();
    env.finish();
}

/// Removes the immutable attribute again (an immutable file cannot be deleted), even if the
/// test fails half-way.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let st = Command::new("chattr").arg("+i").arg(path).status().expect("chattr (e2fsprogs)");
        assert!(st.success(), "chattr +i {} failed (the filesystem must support it)", path.display());
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn seal_protection_tells_writable_read_only_and_immutable_binaries_apart() {
    // berth_linux::seal::protection() inspects /proc/self/exe, so it is checked here from a
    // copy of this very test binary, run three ways, each re-running only this test with
    // BERTH_SEAL_PROBE set (in which case it just prints the verdict).
    const NAME: &str = "seal_protection_tells_writable_read_only_and_immutable_binaries_apart";
    if std::env::var_os("BERTH_SEAL_PROBE").is_some() {
        println!("PROTECTION={:?}", berth_linux::seal::protection().unwrap());
        return;
    }
    init();
    let dir = tempfile::Builder::new().prefix("berth-seal-").tempdir().unwrap();
    let bin = dir.path().join("probe");
    fs::copy(std::env::current_exe().unwrap(), &bin).unwrap();
    let verdict = |mut cmd: Command| -> String {
        let out = cmd.env("BERTH_SEAL_PROBE", "1").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let at = text
            .find("PROTECTION=")
            .unwrap_or_else(|| panic!("no verdict: {text} {}", String::from_utf8_lossy(&out.stderr)));
        text[at + "PROTECTION=".len()..].split_whitespace().next().unwrap_or_default().to_string()
    };
    let args = ["--exact", NAME, "--nocapture", "--test-threads=1"];
    let mut plain = Command::new(&bin);
    plain.args(args);
    assert_eq!(verdict(plain), "None", "a writable binary must be reported as unprotected");
    // On a read-only bind mount (in a private mount namespace, so the host never sees it).
    let mut ro = Command::new("unshare");
    ro.args(["-m", "--propagation", "private", "sh", "-c", "mount --bind -o ro \"$0\" \"$0\" && exec \"$0\" \"$@\""])
        .arg(&bin)
        .args(args);
    assert_eq!(verdict(ro), "ReadOnlyMount");
    let _immutable = Immutable::set(&bin);
    let mut imm = Command::new(&bin);
    imm.args(args);
    assert_eq!(verdict(imm), "Immutable");
}

#[test]
fn an_immutable_runtime_binary_is_not_re_executed_and_a_writable_one_is_sealed() {
    // End to end with the berth binary: the init of a created container (still a clone of
    // berth, waiting for `start`) shows whether berth re-executed itself (the marker it puts
    // in its own environment) and where its binary lives.
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let probe = |copy: &BerthCopy, name: &str| -> (bool, bool, Option<i32>) {
        let id = env.id(name);
        copy.detached(&env, &b, &id, &["create", "--bundle", b.dir(), &id]).ok();
        let pid = env.pid_of(&id);
        let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
        let reexec = environ.split(|c| *c == 0).any(|v| v == b"BERTH_SEALED_REEXEC=1");
        let exe = fs::File::open(format!("/proc/{pid}/exe")).unwrap();
        let ro = rustix::fs::fstatvfs(&exe).unwrap().f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY);
        env.berth(&["delete", "-f", &id]).ok();
        env.reap(pid);
        // Root on the host may open the non-dumpable init's exe; once the init is gone (no
        // more ETXTBSY), reopening that descriptor for writing fails with EROFS (sealed) or
        // EPERM (immutable), as it would for a container holding it.
        use std::os::fd::AsRawFd;
        let reopen = format!("/proc/self/fd/{}", exe.as_raw_fd());
        let err = fs::OpenOptions::new().append(true).open(reopen).err().and_then(|e| e.raw_os_error());
        (reexec, ro, err)
    };
    let writable = BerthCopy::new();
    assert_eq!(
        probe(&writable, "seal-rw"),
        (true, true, Some(libc::EROFS)),
        "writable binary: re-exec from a read-only mount"
    );
    writable.assert_unchanged();
    let immutable = BerthCopy::new();
    let _guard = Immutable::set(&immutable.path);
    assert_eq!(probe(&immutable, "seal-imm"), (false, false, Some(libc::EPERM)), "immutable binary: no re-exec");
    env.finish();
}

// =============================================================================================
// 5. Capabilities (CVE-2022-29162 and its siblings in crun, buildah, CRI-O, Moby)

/// The process's capability sets (from /proc/self/status text).
fn caps_of(status: &str) -> [u64; 5] {
    ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"].map(|f| status_caps(status, f))
}

#[test]
fn inheritable_and_ambient_capabilities_are_empty_unless_asked_for() {
    // runc's spec and `runc exec --cap` used to fill the inheritable set: a non-root process
    // could then exec a program with inheritable file capabilities and gain them.
    let env = Env::new();
    let status = "grep ^Cap /proc/self/status";
    // The default spec (which lists ambient capabilities but no inheritable ones), as root.
    let out = env.berth(&["run", "--bundle", env.bundle(&["sh", "-c", status]).dir(), &env.id("caps-default")]);
    let [inh, _, eff, _, amb] = caps_of(out.ok());
    assert_eq!((inh, amb), (0, 0), "{}", out.stdout);
    assert_eq!(eff, cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]));
    // exec --cap as a non-root user: the capability reaches the bounding set, never the
    // inheritable set (and so not the ambient set either, which needs inheritable).
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("caps-exec");
    let pid = env.run_detached(&b, &id);
    for user in ["1000:1000", "0:0"] {
        let out = env.berth(&["exec", "-u", user, "--cap", "CAP_NET_RAW", &id, "sh", "-c", status]);
        let [inh, _, _, bnd, amb] = caps_of(out.ok());
        assert_eq!((inh, amb), (0, 0), "exec -u {user} --cap: {}", out.stdout);
        assert_ne!(bnd & cap_bit("CAP_NET_RAW"), 0, "--cap did not reach the bounding set: {}", out.stdout);
    }
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    // A spec that asks for inheritable and ambient capabilities gets exactly them.
    let mut b = env.bundle(&["sh", "-c", status]);
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let raw = json!(["CAP_NET_RAW"]);
    for set in ["bounding", "effective", "permitted", "inheritable", "ambient"] {
        b.set(&format!("/process/capabilities/{set}"), raw.clone());
    }
    let out = env.berth(&["run", "--bundle", b.dir(), &env.id("caps-asked")]);
    let [inh, prm, eff, _, amb] = caps_of(out.ok());
    let want = cap_bit("CAP_NET_RAW");
    assert_eq!((inh, prm, eff, amb), (want, want, want, want), "{}", out.stdout);
    env.finish();
}

/// Sets `security.capability` on `path` to `cap_net_raw+ei`: inheritable CAP_NET_RAW with the
/// effective bit, no permitted bits (a VFS_CAP_REVISION_2 `vfs_cap_data`, what
/// `setcap cap_net_raw+ei` writes).
fn set_file_caps_net_raw_ei(path: &Path) {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;
    let words: [u32; 5] = [VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, 0, 1 << 13, 0, 0];
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    rustix::fs::setxattr(path, "security.capability", &bytes, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setting file capabilities on {}: {e}", path.display()));
}

#[test]
fn inheritable_file_capabilities_grant_nothing_to_a_non_root_process() {
    // The exploitation step of CVE-2022-29162: a non-root process with CAP_NET_RAW in its
    // inheritable set execs a binary carrying `cap_net_raw+ei` and gains it as permitted
    // (P'prm = P.inh & F.inh). With an empty inheritable set it gains nothing.
    // noNewPrivileges is off, as in the vulnerable setups: with it the kernel would refuse
    // the gain anyway and the test would not isolate the inheritable set.
    let env = Env::new();
    let run = |inheritable: &[&str], name: &str| -> [u64; 5] {
        let mut b = env.bundle_own(&["/capbin/cat", "/proc/self/status"]);
        fs::create_dir(b.rootfs().join("capbin")).unwrap();
        let helper = b.rootfs().join("capbin/cat");
        fs::copy(BUSYBOX, &helper).unwrap();
        set_file_caps_net_raw_ei(&helper);
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        b.set("/process/noNewPrivileges", json!(false));
        // CAP_NET_RAW is in the bounding set, so only the inheritable set decides.
        b.push("/process/capabilities/bounding", json!("CAP_NET_RAW"));
        b.set("/process/capabilities/inheritable", json!(inheritable));
        let out = env.berth(&["run", "--bundle", b.dir(), &env.id(name)]);
        caps_of(out.ok())
    };
    let [_, prm, eff, _, _] = run(&[], "filecaps");
    assert_eq!((prm, eff), (0, 0), "a non-root process gained capabilities from a file's inheritable set");
    // Negative control: with CAP_NET_RAW asked for in the inheritable set the same helper does
    // gain it, so the helper's file capabilities are real and the check above can fail.
    let [inh, prm, eff, _, _] = run(&["CAP_NET_RAW"], "filecaps-control");
    let want = cap_bit("CAP_NET_RAW");
    assert_eq!((inh, prm, eff), (want, want, want), "the control did not gain CAP_NET_RAW");
    env.finish();
}

// =============================================================================================
// 6. seccomp through the runtime

const ARCHES: [&str; 3] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];

/// mkdir is refused with EXDEV ("Invalid cross-device link", an errno nothing else here
/// produces) and personality(PER_LINUX32) with EPERM; personality(PER_LINUX) stays allowed.
fn errno_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHES,
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
        ]
    })
}

const SECCOMP_SCRIPT: &str = "mkdir /tmp/d 2>&1; echo mkdir=$?; linux32 true 2>&1; echo linux32=$?; \
                              linux64 true; echo linux64=$?";

#[test]
fn seccomp_errno_and_argument_filters_apply_to_the_init_and_exec() {
    let env = Env::new();
    let scratch = json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"});
    // Negative control: without the profile everything succeeds, so each refusal below is
    // the filter's doing.
    let mut b = env.bundle(&["sh", "-c", SECCOMP_SCRIPT]);
    b.push("/mounts", scratch.clone());
    let out = env.berth(&["run", "--bundle", b.dir(), &env.id("sc-none")]);
    assert_eq!(out.ok(), "mkdir=0\nlinux32=0\nlinux64=0\n");
    b.set("/linux/seccomp", errno_profile());
    let out = env.berth(&["run", "--bundle", b.dir(), &env.id("sc-errno")]);
    let text = out.ok();
    assert!(text.contains("Invalid cross-device link") && text.contains("mkdir=1"), "{text}");
    assert!(text.contains("Operation not permitted") && text.contains("linux32=1"), "{text}");
    assert!(text.contains("linux64=0"), "personality(PER_LINUX) was refused too: {text}");
    // Processes exec'd into the container get the same filter.
    let mut b = env.bundle(&["sleep", "100000"]);
    b.push("/mounts", scratch);
    b.set("/linux/seccomp", errno_profile());
    let id = env.id("sc-exec");
    let pid = env.run_detached(&b, &id);
    let out = env.berth(&["exec", &id, "sh", "-c", SECCOMP_SCRIPT]);
    let text = out.ok();
    assert!(text.contains("Invalid cross-device link") && text.contains("mkdir=1"), "{text}");
    assert!(text.contains("linux32=1") && text.contains("linux64=0"), "{text}");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

#[test]
fn a_seccomp_profile_that_cannot_be_applied_never_runs_the_container() {
    // A spec that asks for seccomp either gets its filter or does not start: never a
    // container without the filter it asked for.
    let env = Env::new();
    let cases = [
        ("sc-arch", json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_NOSUCH"]}), "seccomp"),
        (
            "sc-argidx",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES, "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ]}),
            "seccomp",
        ),
        (
            "sc-flag",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES, "flags": ["SECCOMP_FILTER_FLAG_NOSUCH"]}),
            "seccomp",
        ),
        ("sc-action", json!({"defaultAction": "SCMP_ACT_NOSUCH", "architectures": ARCHES}), "seccomp"),
        // Valid rules, but more than the kernel's 4096 BPF instructions.
        (
            "sc-toolong",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls":
                (0..4500).map(|v| json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                         "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}))
                         .collect::<Vec<_>>()}),
            "BPF_MAXINSNS",
        ),
        // NOTIFY rules whose fd cannot be handed to an agent: nobody could answer them.
        (
            "sc-nolistener",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES,
                   "listenerPath": "/nonexistent/berth-agent.sock",
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "listenerPath",
        ),
        // A filter that denies everything, execve included: the init cannot even send its
        // error any more, but it leaves it in memory shared with berth (sync.rs), so the
        // container fails with the reason instead of hanging or running unfiltered.
        (
            "sc-denyall",
            json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ARCHES}),
            "linux.seccomp must allow execve",
        ),
    ];
    for (name, profile, needle) in cases {
        let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
        b.set("/linux/seccomp", profile);
        fails_clean(&env, &b, "run", &env.id(name), needle);
    }
    env.finish();
}

/// What the seccomp agent got: the containerProcessState JSON and the syscall numbers of the
/// notifications it answered.
struct AgentReport {
    state: Value,
    syscalls: Vec<i32>,
}

/// A minimal seccomp agent: accepts one connection on `listener`, reads the JSON and the
/// listener fd, then answers `answers` notifications with `-errno`.
fn seccomp_agent(listener: &UnixListener, answers: usize, errno: i32) -> AgentReport {
    use std::io::Read;
    let mut conn = accept_unless(listener, || false).expect("the runtime never connected to listenerPath");
    let mut first = [0u8; 4096];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let n = rustix::net::recvmsg(&conn, &mut [IoSliceMut::new(&mut first)], &mut anc, RecvFlags::CMSG_CLOEXEC)
        .unwrap()
        .bytes;
    let mut fd = None;
    for m in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(mut r) = m {
            fd = r.next();
        }
    }
    let fd = fd.expect("no seccomp fd received with the container process state");
    let mut json = first[..n].to_vec();
    conn.read_to_end(&mut json).unwrap();
    let state: Value = serde_json::from_slice(&json).unwrap();
    let mut syscalls = Vec::new();
    for _ in 0..answers {
        // Never block forever: a container that does not make the call fails the test.
        let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        let ts = rustix::event::Timespec { tv_sec: PATIENCE.as_secs() as i64, tv_nsec: 0 };
        assert_eq!(rustix::event::poll(&mut fds, Some(&ts)).unwrap(), 1, "no seccomp notification arrived");
        let notif = berth_sys::seccomp::notif_recv(std::os::fd::AsFd::as_fd(&fd)).unwrap();
        syscalls.push(notif.data.nr);
        let resp = libc::seccomp_notif_resp { id: notif.id, val: 0, error: -errno, flags: 0 };
        berth_sys::seccomp::notif_send(std::os::fd::AsFd::as_fd(&fd), &resp).unwrap();
    }
    AgentReport { state, syscalls }
}

#[test]
fn seccomp_notify_hands_the_fd_and_process_state_to_the_listener() {
    // SCMP_ACT_NOTIFY: the runtime connects to listenerPath and sends the runtime-spec
    // containerProcessState with the notify fd (SCM_RIGHTS); the agent then decides each
    // notified syscall. Here it answers EMLINK ("Too many links"), which the container sees.
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", "mkdir /tmp/d 2>&1; echo mkdir=$?"]);
    b.push("/mounts", json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    let sock = b.file("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES,
               "listenerPath": sock, "listenerMetadata": "berth-sec-metadata",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    let id = env.id("notify");
    let (report, pid) = std::thread::scope(|s| {
        let agent = s.spawn(|| seccomp_agent(&listener, 1, libc::EMLINK));
        env.detached(&b, &id, &["create", "--bundle", b.dir(), &id]).ok();
        let pid = env.pid_of(&id);
        env.berth(&["start", &id]).ok();
        (agent.join().unwrap(), pid)
    });
    assert_eq!(env.reap(pid), 0);
    let out = env.output_of(&b, &id);
    assert!(out.contains("Too many links") && out.contains("mkdir=1"), "{out}");
    assert_eq!(report.syscalls, [libc::SYS_mkdir as i32], "notified syscalls");
    let st = &report.state;
    assert_eq!(st["ociVersion"], b.config["ociVersion"], "{st}");
    assert_eq!(st["fds"], json!(["seccompFd"]), "{st}");
    assert_eq!(st["pid"], json!(pid), "{st}");
    assert_eq!(st["metadata"], json!("berth-sec-metadata"), "{st}");
    assert_eq!(st["state"]["id"], json!(id), "{st}");
    assert_eq!(st["state"]["pid"], json!(pid), "{st}");
    assert_eq!(st["state"]["bundle"], json!(b.dir()), "{st}");
    env.berth(&["delete", &id]).ok();
    env.finish();
}

// =============================================================================================
// 7. User namespaces and idmapped mounts

/// The host ids a container's process sees for `path`, as `uid:gid`.
fn owner(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).unwrap();
    format!("{}:{}", m.uid(), m.gid())
}

/// `Uid:` and `Gid:` (real ids) of a host process, as `uid:gid`.
fn host_ids(pid: i32) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let real =
        |k: &str| status.lines().find(|l| l.starts_with(k)).unwrap().split_whitespace().nth(1).unwrap().to_string();
    format!("{}:{}", real("Uid:"), real("Gid:"))
}

#[test]
fn a_user_namespace_maps_the_containers_root_to_the_configured_host_id() {
    // As root, linux.uidMappings 0 -> 100000 (65536 ids): the init runs as host uid 100000,
    // and inside it is root with exactly that map.
    let env = Env::new();
    let mut b = env.bundle_own(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; echo ready; exec sleep 100000",
    ]);
    // The mapped root must be able to reach the rootfs.
    fs::set_permissions(b.path(), fs::Permissions::from_mode(0o755)).unwrap();
    b.push("/linux/namespaces", json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.set("/linux/uidMappings", map.clone());
    b.set("/linux/gidMappings", map);
    let id = env.id("userns");
    let pid = env.run_detached(&b, &id);
    let text = wait_for_text(&b.file(&format!("{id}.out")), "ready");
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["0", "100000", "65536"], "{text}");
    assert_eq!(lines[1], ["0", "100000", "65536"], "{text}");
    assert_eq!(lines[2], ["0"], "{text}");
    assert_eq!(host_ids(pid), "100000:100000", "the init's ids on the host");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}

/// Source directory for the idmapped-mount tests: `root` owned by 0:0 and `one` by 1:1.
fn idmap_source() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("berth-idmap-").tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(d.path().join("root"), "").unwrap();
    fs::write(d.path().join("one"), "").unwrap();
    std::os::unix::fs::chown(d.path().join("one"), Some(1), Some(1)).unwrap();
    d
}

const STAT_SCRIPT: &str = "for f in /idm/root /idm/one /plain/root; do stat -c \"$f=%u:%g\" $f; done";

#[test]
fn an_idmapped_bind_mount_shows_files_under_the_mapped_ids() {
    // runc's semantics (tests/integration/idmap.bats): a mount's uidMappings map ids on disk
    // (containerID) to the ids the mount presents (hostID). Without a user namespace the
    // container sees those presented ids; a plain bind of the same directory is unchanged.
    let env = Env::new();
    let src = idmap_source();
    let mut b = env.bundle_own(&["sh", "-c", STAT_SCRIPT]);
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.push(
        "/mounts",
        json!({"destination": "/idm", "type": "bind", "source": src.path(), "options": ["bind"],
               "uidMappings": map, "gidMappings": map}),
    );
    b.push("/mounts", json!({"destination": "/plain", "type": "bind", "source": src.path(), "options": ["bind"]}));
    let out = env.berth(&["run", "--bundle", b.dir(), &env.id("idmap")]);
    assert_eq!(out.ok(), "/idm/root=100000:100000\n/idm/one=100001:100001\n/plain/root=0:0\n");
    // The files on the host are untouched.
    assert_eq!(owner(&src.path().join("root")), "0:0");
    env.finish();
}

#[test]
fn the_idmap_option_maps_host_files_into_the_containers_user_namespace() {
    // With a user namespace (0 -> 100000) and the `idmap` option (no mappings on the mount:
    // the container's are used), files owned by host root appear owned by the container's
    // root; through a plain bind they are unmapped (the overflow id).
    let env = Env::new();
    let src = idmap_source();
    let mut b = env.bundle_own(&["sh", "-c", STAT_SCRIPT]);
    // The mapped root must be able to reach the rootfs, and cannot create directories in
    // the (host-root-owned) rootfs: the mount points exist beforehand, as in an image.
    fs::set_permissions(b.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(b.rootfs().join("idm")).unwrap();
    fs::create_dir(b.rootfs().join("plain")).unwrap();
    b.push("/linux/namespaces", json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.set("/linux/uidMappings", map.clone());
    b.set("/linux/gidMappings", map);
    b.push(
        "/mounts",
        json!({"destination": "/idm", "type": "bind", "source": src.path(), "options": ["bind", "idmap"]}),
    );
    b.push("/mounts", json!({"destination": "/plain", "type": "bind", "source": src.path(), "options": ["bind"]}));
    let out = env.berth(&["run", "--bundle", b.dir(), &env.id("idmap-opt")]);
    let overflow = fs::read_to_string("/proc/sys/kernel/overflowuid").unwrap().trim().to_string();
    assert_eq!(out.ok(), format!("/idm/root=0:0\n/idm/one=1:1\n/plain/root={overflow}:{overflow}\n"));
    env.finish();
}

#[test]
fn an_idmapped_mount_the_filesystem_refuses_fails_clearly() {
    // sysfs (like procfs, devtmpfs and cgroupfs) does not support idmapped mounts: the
    // container must fail, naming the mount and the likely reason, and leave nothing.
    let env = Env::new();
    let mut b = env.bundle(&["sh", "-c", "echo STARTED"]);
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.push(
        "/mounts",
        json!({"destination": "/data", "type": "bind", "source": "/sys/kernel", "options": ["bind"],
               "uidMappings": map, "gidMappings": map}),
    );
    let out = fails_clean(&env, &b, "run", &env.id("idmap-sysfs"), "creating an idmapped mount of /sys/kernel");
    out.fails_with("may not support idmapped mounts");
    out.fails_with("(/data)");
    env.finish();
}

/// An unprivileged host user created for the rootless test (`useradd`, idempotent), deleted
/// again on drop.
struct TestUser {
    name: &'static str,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn get() -> TestUser {
        let name = "berthsec";
        let id = |flag: &str| Command::new("id").arg(flag).arg(name).output().unwrap();
        if !id("-u").status.success() {
            let st = Command::new("useradd")
                .args(["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
                .status()
                .expect("useradd (passwd package)");
            // A concurrent run may have created it in the meantime.
            assert!(st.success() || id("-u").status.success(), "useradd {name} failed");
        }
        let num = |flag: &str| String::from_utf8_lossy(&id(flag).stdout).trim().parse::<u32>().unwrap();
        TestUser { name, uid: num("-u"), gid: num("-g") }
    }

    /// `setpriv` to this user (no supplementary groups, no capabilities) running `prog args`.
    fn command(&self, prog: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--inh-caps=-all")
            .arg("--")
            .arg(prog)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(self.name).status();
    }
}

fn chown_r(path: &Path, uid: u32, gid: u32) {
    let st = Command::new("chown").arg("-R").arg("-h").arg(format!("{uid}:{gid}")).arg(path).status().unwrap();
    assert!(st.success(), "chown -R {}", path.display());
}

#[test]
fn rootless_berth_maps_the_containers_root_to_the_unprivileged_user() {
    // berth run by an unprivileged user (created for the test), with the config of
    // `berth spec --rootless`: the container's root is that user on the host (its init's
    // /proc status), its uid_map says so, and a file it creates on a bind mount belongs to
    // that user.
    let env = Env::new();
    let user = TestUser::get();
    // The binary and everything the user touches must be reachable by the user.
    let copy = BerthCopy::new();
    fs::set_permissions(copy.path.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    let mut b = env.bundle_own(&[]);
    let out_dir = b.file("out");
    fs::create_dir(&out_dir).unwrap();
    fs::remove_file(b.file("config.json")).unwrap();
    chown_r(b.path(), user.uid, user.gid);
    let state = b.file("state");
    let bundle_dir = b.path().to_path_buf();
    // stdout/stderr go to files: a detached container inherits them.
    let berth = |args: &[&str]| -> Out {
        let mut full = vec!["--root", state.to_str().unwrap()];
        full.extend_from_slice(args);
        let (o, e) = (bundle_dir.join("user.out"), bundle_dir.join("user.err"));
        let status = user
            .command(&copy.path, &full)
            .current_dir(&bundle_dir)
            .stdout(fs::File::create(&o).unwrap())
            .stderr(fs::File::create(&e).unwrap())
            .status()
            .unwrap();
        Out {
            cmd: format!("(as {}) berth {}", user.name, args.join(" ")),
            code: status.code(),
            stdout: fs::read_to_string(o).unwrap(),
            stderr: fs::read_to_string(e).unwrap(),
        }
    };
    berth(&["spec", "--rootless"]).ok();
    b.config = serde_json::from_slice(&fs::read(b.file("config.json")).unwrap()).unwrap();
    assert_eq!(b.config["linux"]["uidMappings"], json!([{"containerID": 0, "hostID": user.uid, "size": 1}]));
    b.set("/process/terminal", json!(false));
    b.set(
        "/process/args",
        json!([
            "sh",
            "-c",
            "cat /proc/self/uid_map > /out/uid_map; id -u > /out/id; touch /out/created; exec sleep 100000"
        ]),
    );
    b.push("/mounts", json!({"destination": "/out", "type": "bind", "source": out_dir, "options": ["rbind", "rw"]}));
    let id = env.id("rootless");
    let pidfile = b.file("pid");
    let out = berth(&["run", "-d", "--pid-file", pidfile.to_str().unwrap(), "--bundle", b.dir(), &id]);
    out.ok();
    let pid: i32 = fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    env.adopt(pid);
    assert!(wait_until(|| out_dir.join("created").exists()), "the container did not start: {out:?}");
    assert_eq!(host_ids(pid), format!("{}:{}", user.uid, user.gid), "the init's ids on the host");
    let map: Vec<String> =
        fs::read_to_string(out_dir.join("uid_map")).unwrap().split_whitespace().map(String::from).collect();
    assert_eq!(map, ["0", &user.uid.to_string(), "1"]);
    assert_eq!(fs::read_to_string(out_dir.join("id")).unwrap(), "0\n");
    assert_eq!(owner(&out_dir.join("created")), format!("{}:{}", user.uid, user.gid));
    berth(&["kill", &id, "KILL"]).ok();
    env.reap(pid);
    berth(&["delete", &id]).ok();
    LeakProbe::with_bundle(&id, &state, &b).assert_clean();
    env.finish();
}

// =============================================================================================
// 8. Bad input never panics: the command line (config.json parsing and validation are
//    fuzzed by berth-spec's proptests, run by `cargo test`)

/// Words the argument fuzzer combines: every command and flag, valid and invalid values,
/// empty strings, non-UTF-8 bytes. Paths point into the case's own temporary directory, so
/// nothing outside it can be touched whatever the combination.
fn cli_word(dir: &Path, i: usize) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    const WORDS: &[&str] = &[
        "spec",
        "create",
        "run",
        "start",
        "state",
        "kill",
        "delete",
        "list",
        "ps",
        "exec",
        "events",
        "update",
        "pause",
        "resume",
        "help",
        "hcs-config",
        "checkpoint",
        "--root",
        "--log",
        "--log-format",
        "json",
        "text",
        "--debug",
        "--systemd-cgroup",
        "--rootless",
        "--rootless=true",
        "--criu",
        "-v",
        "--version",
        "-h",
        "--help",
        "-f",
        "--force",
        "--format",
        "table",
        "-a",
        "--all",
        "-q",
        "--stats",
        "--interval",
        "0",
        "-1",
        "5s",
        "1e309",
        "nan",
        "--memory",
        "1k",
        "-1g",
        "--pids-limit",
        "--cpu-quota",
        "--cpuset-cpus",
        "--resources",
        "-",
        "-u",
        "1:",
        "0:0",
        "4294967296",
        "--cwd",
        "/proc/self/fd/3",
        "--cap",
        "CAP_NOPE",
        "CAP_NET_RAW",
        "--process",
        "--preserve-fds",
        "99999999999",
        "--bundle",
        "-b",
        "-d",
        "--detach",
        "--pid-file",
        "--console-socket",
        "--no-pivot",
        "-t",
        "--tty",
        "-e",
        "A=B",
        "=",
        "--",
        "",
        " ",
        "x",
        "KILL",
        "SIGFOO",
        "999",
        "--seccomp",
        "--lcow-option",
        "--process",
        "-p",
        "--keep",
    ];
    match i % (WORDS.len() + 4) {
        n if n < WORDS.len() => WORDS[n].into(),
        n if n == WORDS.len() => dir.join("f").into(),
        n if n == WORDS.len() + 1 => dir.into(),
        n if n == WORDS.len() + 2 => std::ffi::OsString::from_vec(vec![0xff, b'a']),
        _ => "a".repeat(5000).into(),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]

    #[test]
    fn no_command_line_makes_berth_panic(words in proptest::collection::vec(0usize..10_000, 0..7)) {
        init();
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<std::ffi::OsString> = words.iter().map(|w| cli_word(dir.path(), *w)).collect();
        let (o, e) = (dir.path().join("out"), dir.path().join("err"));
        let mut child = Command::new(BERTH)
            .arg("--root")
            .arg(dir.path().join("root"))
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&o).unwrap())
            .stderr(fs::File::create(&e).unwrap())
            .spawn()
            .unwrap();
        let mut status = None;
        let finished = wait_until(|| {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if !finished {
            let _ = child.kill();
            let _ = child.wait();
        }
        let stderr = fs::read_to_string(&e).unwrap_or_default();
        proptest::prop_assert!(finished, "berth {args:?} hung");
        let status = status.unwrap();
        // A panic exits 101 with "panicked at"; a crash has no exit code.
        proptest::prop_assert!(status.code().is_some_and(|c| c != 101), "berth {args:?}: {status:?}\n{stderr}");
        proptest::prop_assert!(!stderr.contains("panicked"), "berth {args:?} panicked:\n{stderr}");
    }
}

// =============================================================================================
// 9. The devices cgroup enforces exactly the spec's rules. As runc 1.1: deny everything, then
//    `linux.resources.devices` in order, then runc's fixed default allow list. Nothing comes
//    from `linux.devices`: creating a node in the container is not permission to use it.

/// runc 1.1's default allow list as the v1 kernel lists it (`devices.list` of a runc 1.1.5
/// container with a deny-all spec on this host): mknod of anything, null, zero, full, random,
/// urandom, tty, ptmx, net/tun and every pts.
const RUNC_1_1_DEVICES_LIST: &[&str] = &[
    "b *:* m",
    "c *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
    "c 136:* rwm",
];

/// Writes to and reads from /dev/kmsg, printing `write=ok`/`read=ok` or the tool's error, then
/// checks that /dev/null (a default rule) still works. /dev/kmsg is a device no default rule
/// allows, which root can write and (with CAP_SYSLOG, since this host sets dmesg_restrict)
/// read; the message goes to the kernel log at debug level.
const KMSG_PROBE: &str = "w=$( (echo '<7>berth devices test' > /dev/kmsg) 2>&1 ) && w=ok; echo \"write=$w\"; \
     r=$(dd if=/dev/kmsg of=/dev/null bs=8192 count=1 2>&1) && r=ok; echo \"read=$r\"; \
     n=$( (echo x > /dev/null) 2>&1 ) && n=ok; echo \"null=$n\"";

const KMSG_DENIED: [&str; 3] = [
    "write=sh: can't create /dev/kmsg: Operation not permitted",
    "read=dd: can't open '/dev/kmsg': Operation not permitted",
    "null=ok",
];
const KMSG_ALLOWED: [&str; 3] = ["write=ok", "read=ok", "null=ok"];

/// A bundle whose spec has the default deny-all device rule followed by `rules`, /dev/kmsg in
/// `linux.devices`, and CAP_SYSLOG (so that only the devices cgroup can refuse a read).
fn kmsg_bundle(env: &Env, script: &str, rules: &[Value]) -> Bundle {
    let mut b = env.bundle(&["sh", "-c", script]);
    assert_eq!(b.config["linux"]["resources"]["devices"], json!([{"allow": false, "access": "rwm"}]));
    for r in rules {
        b.push("/linux/resources/devices", r.clone());
    }
    b.push("/linux/devices", json!({"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o600}));
    for set in ["bounding", "effective", "permitted"] {
        b.push(&format!("/process/capabilities/{set}"), json!("CAP_SYSLOG"));
    }
    b
}

fn allow_kmsg(access: &str) -> Value {
    json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": access})
}

/// The lines of `text` that start with `prefix`, without it.
fn tagged<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter_map(|l| l.strip_prefix(prefix)).collect()
}

/// The probe's three result lines.
fn kmsg_result(text: &str) -> Vec<&str> {
    text.lines().filter(|l| ["write=", "read=", "null="].iter().any(|p| l.starts_with(p))).collect()
}

#[test]
fn linux_devices_grant_no_device_access_on_cgroup_v1() {
    // Before the fix every linux.devices entry got an implicit "c 1:11 rwm" allow rule, so a
    // deny-all spec still let the container write the host's kernel log.
    let env = Env::new();
    let script = format!(
        "echo STARTED; grep :devices: /proc/self/cgroup; sed 's/^/list: /' /sys/fs/cgroup/devices/devices.list; {KMSG_PROBE}"
    );
    let id = env.id("kmsg-v1");
    let out = env.berth(&["run", "--bundle", kmsg_bundle(&env, &script, &[]).dir(), &id]);
    let text = out.ok();
    // The v1 devices controller decided: the process is in the container's own devices cgroup.
    let line = text.lines().find(|l| l.contains(":devices:")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with(&format!("/{id}")), "not in the container's v1 devices cgroup: {text}");
    assert_eq!(kmsg_result(text), KMSG_DENIED, "{text}");
    // Exactly runc 1.1's list: the spec's deny-all, the defaults, nothing for /dev/kmsg.
    let mut list = tagged(text, "list: ");
    list.sort_unstable();
    let mut want = RUNC_1_1_DEVICES_LIST.to_vec();
    want.sort_unstable();
    assert_eq!(list, want, "{text}");
    // Negative control: a spec rule allowing c 1:11 makes both work, so the probe sees access.
    let id = env.id("kmsg-v1-allowed");
    let out = env.berth(&["run", "--bundle", kmsg_bundle(&env, &script, &[allow_kmsg("rw")]).dir(), &id]);
    let text = out.ok();
    assert_eq!(kmsg_result(text), KMSG_ALLOWED, "{text}");
    assert!(tagged(text, "list: ").contains(&"c 1:11 rw"), "{text}");
    env.finish();
}

/// `berth --root <root> args...` in a private mount namespace where the v1 devices hierarchy
/// is unmounted: berth then finds no v1 devices controller and uses cgroup2's eBPF device
/// program, as on a unified host. The output goes to `<bundle>/<label>.out` and `.err`.
fn berth_without_v1_devices(env: &Env, b: &Bundle, label: &str, args: &[&str]) -> Out {
    let out = fs::File::create(b.file(&format!("{label}.out"))).unwrap();
    let err = fs::File::create(b.file(&format!("{label}.err"))).unwrap();
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", "umount /sys/fs/cgroup/devices && exec \"$@\"", "sh"])
        .arg(BERTH)
        .arg("--root")
        .arg(env.root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .expect("running unshare (util-linux)");
    Out {
        cmd: format!("unshare -m ... berth {}", args.join(" ")),
        code: status.code(),
        stdout: fs::read_to_string(b.file(&format!("{label}.out"))).unwrap(),
        stderr: fs::read_to_string(b.file(&format!("{label}.err"))).unwrap(),
    }
}

/// `run -d` without the v1 devices hierarchy; returns the init pid.
fn run_detached_v2_devices(env: &Env, b: &Bundle, id: &str) -> i32 {
    let pidfile = b.file(&format!("{id}.pid"));
    berth_without_v1_devices(
        env,
        b,
        id,
        &["run", "-d", "--pid-file", pidfile.to_str().unwrap(), "--bundle", b.dir(), id],
    )
    .ok();
    let pid: i32 = fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    env.adopt(pid);
    pid
}

/// Asserts that the container of `id` (init `pid`) is governed by a cgroup2 device program
/// only: no v1 devices directory for it, its init in the root v1 devices cgroup (which allows
/// everything), and at least one device program attached to its cgroup2 directory.
fn assert_ebpf_devices_only(id: &str, pid: i32) {
    use std::os::fd::AsFd;
    assert!(!v1_cgroup_dir("devices", id).exists(), "berth created a v1 devices cgroup");
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = |pred: &dyn Fn(&str) -> bool| -> String {
        cg.lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctl, p) = (f.next()?, f.next()?, f.next()?);
                pred(ctl).then(|| p.to_string())
            })
            .unwrap_or_else(|| panic!("{cg}"))
    };
    assert_eq!(path(&|c| c.split(',').any(|c| c == "devices")), "/", "init not in the root v1 devices cgroup: {cg}");
    let v2 = path(&|c| c.is_empty());
    assert!(v2.ends_with(&format!("/{id}")), "init not in the container's cgroup2 directory: {cg}");
    let dir = Path::new("/sys/fs/cgroup/unified").join(v2.trim_start_matches('/'));
    let f = fs::File::open(&dir).unwrap();
    let mut ids = [0u32; 16];
    let n = berth_sys::bpf::prog_query(f.as_fd(), berth_sys::bpf::BPF_CGROUP_DEVICE, &mut ids).unwrap();
    assert!(n >= 1, "no device program attached to {}", dir.display());
}

#[test]
fn linux_devices_grant_no_device_access_with_the_cgroup_v2_device_program() {
    // The same hole and check through berth's eBPF program, end to end on this hybrid host.
    let env = Env::new();
    let script = format!("echo STARTED; {KMSG_PROBE}; echo done; exec sleep 100000");
    for (name, rules, want) in
        [("kmsg-v2", vec![], KMSG_DENIED), ("kmsg-v2-allowed", vec![allow_kmsg("rw")], KMSG_ALLOWED)]
    {
        let b = kmsg_bundle(&env, &script, &rules);
        let id = env.id(name);
        let pid = run_detached_v2_devices(&env, &b, &id);
        let text = wait_for_text(&b.file(&format!("{id}.out")), "done");
        assert_ebpf_devices_only(&id, pid);
        // The allowed case is the negative control: the probe sees access through the program.
        assert_eq!(kmsg_result(&text), want, "{name}: {text}");
        env.berth(&["delete", "-f", &id]).ok();
        env.reap(pid);
    }
    env.finish();
}

#[test]
fn berth_update_changes_device_rules_of_a_running_container() {
    // deny -> allow -> deny for c 1:11, seen by processes inside the running container, on
    // the v1 controller and through the v2 program. The default rules stay in force across
    // updates (/dev/null keeps working): an update's rules are composed like create's.
    let env = Env::new();
    for v2 in [false, true] {
        let b = kmsg_bundle(&env, "sleep 100000", &[]);
        let id = env.id(if v2 { "update-dev-v2" } else { "update-dev-v1" });
        let pid = if v2 { run_detached_v2_devices(&env, &b, &id) } else { env.run_detached(&b, &id) };
        if v2 {
            assert_ebpf_devices_only(&id, pid);
        } else {
            assert!(v1_cgroup_dir("devices", &id).exists());
        }
        let probe = |step: &str| -> String {
            let out = env.berth(&["exec", &id, "sh", "-c", KMSG_PROBE]);
            format!("{step}: {}", kmsg_result(out.ok()).join(" | "))
        };
        let update = |devices: Value| {
            let f = b.file("resources.json");
            fs::write(&f, json!({"devices": devices}).to_string()).unwrap();
            env.berth(&["update", "--resources", f.to_str().unwrap(), &id]).ok();
            // The recorded spec follows (what exec and a later update see), without the
            // defaults, which are never part of the spec.
            let state: Value =
                serde_json::from_slice(&fs::read(env.root().join(&id).join("state.json")).unwrap()).unwrap();
            assert_eq!(state["spec"]["linux"]["resources"]["devices"], devices, "recorded device rules");
        };
        let want = |step: &str, r: [&str; 3]| format!("{step}: {}", r.join(" | "));
        assert_eq!(probe("created"), want("created", KMSG_DENIED), "v2={v2}");
        update(json!([allow_kmsg("rw")]));
        assert_eq!(probe("allowed"), want("allowed", KMSG_ALLOWED), "v2={v2}");
        update(json!([{"allow": false, "access": "rwm"}]));
        assert_eq!(probe("denied again"), want("denied again", KMSG_DENIED), "v2={v2}");
        env.berth(&["delete", "-f", &id]).ok();
        env.reap(pid);
    }
    env.finish();
}

#[test]
fn a_fifo_in_linux_devices_is_created_with_its_mode_and_owner() {
    // A FIFO entry is valid (the runtime spec lists type "p"); it used to be turned into a
    // device cgroup rule of type p, which the cgroup code refused, so the container failed.
    // The process runs as the FIFO's owner (root here has no CAP_DAC_OVERRIDE).
    let env = Env::new();
    let script = "echo STARTED; [ -p /dev/myfifo ] && echo fifo=yes; stat -c '%A %u:%g %t:%T' /dev/myfifo; \
                  (echo through-the-fifo > /dev/myfifo &); cat /dev/myfifo";
    let want = "STARTED\nfifo=yes\nprw-r----- 1000:1001 0:0\nthrough-the-fifo\n";
    // major/minor are meaningless for a FIFO and ignored.
    let fifo = json!({"path": "/dev/myfifo", "type": "p", "major": 1, "minor": 11, "fileMode": 0o640, "uid": 1000, "gid": 1001});
    let mut b = env.bundle(&["sh", "-c", script]);
    b.set("/process/user", json!({"uid": 1000, "gid": 1001}));
    b.push("/linux/devices", fifo.clone());
    let out = env.berth(&["run", "--bundle", b.dir(), &env.id("fifo")]);
    assert_eq!(out.ok(), want);
    // In a user namespace too (device nodes are bound from the host there; a FIFO is made).
    let mut b = env.bundle_own(&["sh", "-c", script]);
    fs::set_permissions(b.path(), fs::Permissions::from_mode(0o755)).unwrap();
    b.push("/linux/namespaces", json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.set("/linux/uidMappings", map.clone());
    b.set("/linux/gidMappings", map);
    b.set("/process/user", json!({"uid": 1000, "gid": 1001}));
    b.push("/linux/devices", fifo);
    let out = env.berth(&["run", "--bundle", b.dir(), &env.id("fifo-userns")]);
    assert_eq!(out.ok(), want);
    env.finish();
}

// =============================================================================================
// 10. User and group ids out of range. runc accepts 0..=2147483647. 4294967295 is `(uid_t)-1`,
//     which setresuid/setresgid read as "leave unchanged": passed through, the process stayed
//     root.

const ID_RANGE: &str = "is out of range (0 to 2147483647)";

/// What a process prints if it runs at all: the sentinel, then its ids.
const PRINT_IDS: &str = "echo STARTED; echo ids=$(id -u):$(id -g); grep ^Groups: /proc/self/status";

#[test]
fn a_uid_of_4294967295_is_refused_instead_of_running_as_root() {
    let env = Env::new();
    for (ptr, needle) in [
        ("/process/user/uid", format!("process.user.uid: 4294967295 {ID_RANGE}")),
        ("/process/user/gid", format!("process.user.gid: 4294967295 {ID_RANGE}")),
    ] {
        let mut b = env.bundle(&["sh", "-c", PRINT_IDS]);
        b.set(ptr, json!(4_294_967_295u32));
        // `run` first: if the process starts, its output shows which ids it got.
        fails_clean(&env, &b, "run", &env.id("id-minus-one"), &needle);
        fails_clean(&env, &b, "create", &env.id("id-minus-one"), &needle);
    }
    // Control: the largest valid ids are used as given.
    let mut b = env.bundle(&["sh", "-c", PRINT_IDS]);
    b.set(
        "/process/user",
        json!({"uid": 2_147_483_647u32, "gid": 2_147_483_646u32, "additionalGids": [2_147_483_647u32]}),
    );
    let out = env.berth(&["run", "--bundle", b.dir(), &env.id("id-max")]);
    assert_eq!(out.ok(), "STARTED\nids=2147483647:2147483646\nGroups:\t2147483647 \n");
    env.finish();
}

#[test]
fn out_of_range_ids_in_config_json_are_refused_naming_the_field() {
    let env = Env::new();
    let user_ns = |b: &mut Bundle| {
        b.push("/linux/namespaces", json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        b.set("/linux/uidMappings", map.clone());
        b.set("/linux/gidMappings", map);
    };
    let idmapped_mount = |b: &mut Bundle, uid_map: Value, gid_map: Value| {
        fs::create_dir_all(b.file("vol")).unwrap();
        b.push(
            "/mounts",
            json!({"destination": "/data", "type": "bind", "source": b.file("vol"), "options": ["rbind"],
                   "uidMappings": uid_map, "gidMappings": gid_map}),
        );
    };
    let one = |c: u64, h: u64, s: u64| json!([{"containerID": c, "hostID": h, "size": s}]);
    type Case = (&'static str, Box<dyn Fn(&mut Bundle)>, String);
    let cases: Vec<Case> = vec![
        (
            "uid",
            Box::new(|b| {
                b.set("/process/user/uid", json!(2_147_483_648u32));
            }),
            format!("process.user.uid: 2147483648 {ID_RANGE}"),
        ),
        (
            "gid",
            Box::new(|b| {
                b.set("/process/user/gid", json!(3_000_000_000u32));
            }),
            format!("process.user.gid: 3000000000 {ID_RANGE}"),
        ),
        (
            "addgids",
            Box::new(|b| {
                b.set("/process/user/additionalGids", json!([5, 4_294_967_295u32]));
            }),
            format!("process.user.additionalGids[1]: 4294967295 {ID_RANGE}"),
        ),
        (
            "uidmap-host",
            Box::new(move |b| {
                user_ns(b);
                b.set("/linux/uidMappings", one(0, 2_147_483_648, 1));
            }),
            format!("linux.uidMappings[0].hostID: 2147483648 {ID_RANGE}"),
        ),
        (
            "uidmap-container",
            Box::new(move |b| {
                user_ns(b);
                b.push("/linux/uidMappings", json!({"containerID": 4_294_967_295u32, "hostID": 1, "size": 1}));
            }),
            format!("linux.uidMappings[1].containerID: 4294967295 {ID_RANGE}"),
        ),
        (
            "gidmap-end",
            Box::new(move |b| {
                user_ns(b);
                b.push("/linux/gidMappings", json!({"containerID": 2_147_483_600u32, "hostID": 200000, "size": 100}));
            }),
            format!("linux.gidMappings[1].size: containerID 2147483600 + size 100 - 1 = 2147483699 {ID_RANGE}"),
        ),
        (
            "mount-uidmap",
            Box::new(move |b| idmapped_mount(b, one(0, 4_294_967_295, 1), one(0, 1000, 1))),
            format!("mounts[7].uidMappings[0].hostID: 4294967295 {ID_RANGE}"),
        ),
        (
            "mount-gidmap-end",
            Box::new(move |b| idmapped_mount(b, one(0, 1000, 1), one(0, 2_147_483_647, 2))),
            format!("mounts[7].gidMappings[0].size: hostID 2147483647 + size 2 - 1 = 2147483648 {ID_RANGE}"),
        ),
    ];
    for (name, mutate, needle) in cases {
        let mut b = env.bundle_own(&["sh", "-c", PRINT_IDS]);
        fs::set_permissions(b.path(), fs::Permissions::from_mode(0o755)).unwrap();
        mutate(&mut b);
        create_and_run_fail_clean(&env, &b, name, &needle);
    }
    env.finish();
}

/// The pids of a container's processes (`berth ps --format json`), sorted.
fn container_pids(env: &Env, id: &str) -> Vec<i64> {
    let out = env.berth(&["ps", "--format", "json", id]);
    let v: Value = serde_json::from_str(out.ok()).unwrap();
    let mut pids: Vec<i64> = v.as_array().unwrap().iter().map(|p| p.as_i64().unwrap()).collect();
    pids.sort_unstable();
    pids
}

#[test]
fn exec_refuses_out_of_range_users_and_groups() {
    let env = Env::new();
    let b = env.bundle(&["sleep", "100000"]);
    let id = env.id("exec-ids");
    let pid = env.run_detached(&b, &id);
    let before = container_pids(&env, &id);
    let process_file = |name: &str, user: Value| -> String {
        let f = b.file(name);
        let doc = json!({"args": ["sh", "-c", PRINT_IDS], "cwd": "/", "env": ["PATH=/bin"], "user": user});
        fs::write(&f, doc.to_string()).unwrap();
        f.to_str().unwrap().to_string()
    };
    let cmd = ["sh", "-c", PRINT_IDS];
    let cases: Vec<(Vec<String>, String)> = vec![
        (vec!["--user".into(), "4294967295".into()], format!("--user \"4294967295\": uid 4294967295 {ID_RANGE}")),
        (vec!["-u".into(), "0:4294967295".into()], format!("--user \"0:4294967295\": gid 4294967295 {ID_RANGE}")),
        (vec!["--user".into(), "2147483648:0".into()], format!("--user \"2147483648:0\": uid 2147483648 {ID_RANGE}")),
        (
            vec!["--additional-gids".into(), "4294967295".into()],
            format!("--additional-gids \"4294967295\": gid 4294967295 {ID_RANGE}"),
        ),
        (
            vec!["-g".into(), "5,2147483648".into()],
            format!("--additional-gids \"5,2147483648\": gid 2147483648 {ID_RANGE}"),
        ),
        (
            vec!["--process".into(), process_file("p-uid.json", json!({"uid": 4_294_967_295u32, "gid": 0}))],
            format!("--process: user.uid: 4294967295 {ID_RANGE}"),
        ),
        (
            vec!["--process".into(), process_file("p-gid.json", json!({"uid": 0, "gid": 4_294_967_295u32}))],
            format!("--process: user.gid: 4294967295 {ID_RANGE}"),
        ),
        (
            vec![
                "--process".into(),
                process_file("p-groups.json", json!({"uid": 0, "gid": 0, "additionalGids": [2_147_483_648u32]})),
            ],
            format!("--process: user.additionalGids[0]: 2147483648 {ID_RANGE}"),
        ),
    ];
    for (flags, needle) in cases {
        let mut args: Vec<&str> = vec!["exec"];
        args.extend(flags.iter().map(String::as_str));
        args.push(&id);
        if !flags.iter().any(|f| f == "--process") {
            args.extend(cmd);
        }
        let out = env.berth(&args);
        // The error is logged as msg="...", with its quotes escaped.
        out.fails_with(&needle.replace('"', "\\\""));
        // A failure of exec itself, as runc's: 255.
        out.code_is(255);
        assert!(!out.stdout.contains("STARTED"), "the process ran: {out:?}");
        assert_eq!(container_pids(&env, &id), before, "{args:?} left a process in the container");
    }
    // Control: the largest valid ids are accepted on every path.
    let out = env.berth(&["exec", "-u", "2147483647:2147483647", "-g", "2147483647", &id, "sh", "-c", PRINT_IDS]);
    assert_eq!(out.ok(), "STARTED\nids=2147483647:2147483647\nGroups:\t2147483647 \n");
    let f = process_file("p-max.json", json!({"uid": 2_147_483_647u32, "gid": 2_147_483_647u32}));
    let out = env.berth(&["exec", "--process", &f, &id]);
    assert!(out.ok().starts_with("STARTED\nids=2147483647:2147483647\n"), "{out:?}");
    env.berth(&["delete", "-f", &id]).ok();
    env.reap(pid);
    env.finish();
}
